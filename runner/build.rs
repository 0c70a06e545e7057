//! Builds the V8 startup snapshot every worker isolate boots from: deno_runtime's
//! extensions plus the runner's `rnr` extension, already evaluated. Booting from
//! it takes milliseconds instead of hundreds of them, and the binary then needs
//! none of deno_runtime's JavaScript/TypeScript sources from disk at run time:
//! the lazily loaded sources the snapshot did not consume are transpiled here and
//! embedded with `include_str!`.

use std::fmt::Write as _;
use std::path::Path;
use std::path::PathBuf;

use deno_runtime::ops::bootstrap::SnapshotOptions;
use deno_runtime::snapshot::create_runtime_snapshot;
use deno_runtime::snapshot::LazyExtensionFileKind;

#[path = "src/worker/extension.rs"]
mod extension;

fn main() {
    println!("cargo:rerun-if-changed=src/worker/extension.rs");
    println!("cargo:rerun-if-changed=src/worker/js");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let snapshot_path = out_dir.join("RUNNER_SNAPSHOT.bin");
    let output = create_runtime_snapshot(
        snapshot_path,
        SnapshotOptions::default(),
        vec![rnr_from_this_checkout()],
    );

    let mut js = String::new();
    let mut esm = String::new();
    for file in &output.lazy_extension_files {
        if output.consumed_lazy_specifiers.contains(&file.specifier) {
            continue;
        }
        let source = std::fs::read_to_string(&file.path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.path.display()));
        let source = transpile(&file.specifier, source);
        let embedded = out_dir.join(format!("lazy_{}.js", sanitize(&file.specifier)));
        std::fs::write(&embedded, source).expect("writing an embedded source");
        println!("cargo:rerun-if-changed={}", file.path.display());
        let list = match file.kind {
            LazyExtensionFileKind::Js => &mut js,
            LazyExtensionFileKind::Esm => &mut esm,
        };
        writeln!(
            list,
            "    ({:?}, include_str!({:?})),",
            file.specifier,
            embedded.display().to_string()
        )
        .expect("writing to a String");
    }
    let code = format!(
        "/// Lazily loaded classic scripts the snapshot did not consume.\n\
         pub static RESIDUAL_LAZY_JS: &[(&str, &str)] = &[\n{js}];\n\
         /// Lazily loaded modules the snapshot did not consume.\n\
         pub static RESIDUAL_LAZY_ESM: &[(&str, &str)] = &[\n{esm}];\n"
    );
    std::fs::write(out_dir.join("residual_lazy_sources.rs"), code)
        .expect("writing residual_lazy_sources.rs");
}

/// The `rnr` extension with its JavaScript read from this checkout now. The extension macro
/// records the absolute path of `src/worker/js` when this build script is compiled, and cargo
/// reuses a compiled build script across checkouts that share a target directory (CI's fresh
/// clone, a second worktree): that path could be another checkout's, or one deleted since.
fn rnr_from_this_checkout() -> deno_core::Extension {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let mut extension = extension::rnr::lazy_init();
    let files: Vec<deno_core::ExtensionFileSource> = extension
        .esm_files
        .iter()
        .map(|file| {
            let name = file
                .specifier
                .rsplit('/')
                .next()
                .expect("a specifier has a file name");
            let path = manifest_dir.join("src/worker/js").join(name);
            let code = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            deno_core::ExtensionFileSource::new_computed(file.specifier, code.into())
        })
        .collect();
    extension.esm_files = std::borrow::Cow::Owned(files);
    extension
}

/// TypeScript sources become JavaScript; the transpiler picks the media type
/// from a URL's extension, so the specifier is given as a `file:` URL.
fn transpile(specifier: &str, source: String) -> String {
    if !(specifier.ends_with(".ts") || specifier.ends_with(".mts")) {
        return source;
    }
    let url = format!("file:///{}", sanitize(specifier));
    let name = deno_core::ModuleName::from(url);
    let (code, _source_map) = deno_runtime::transpile::maybe_transpile_source(name, source.into())
        .unwrap_or_else(|e| panic!("transpiling {specifier}: {e}"));
    code.as_str().to_owned()
}

fn sanitize(specifier: &str) -> String {
    let path = Path::new(specifier);
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("js")
        .to_owned();
    let stem: String = specifier
        .trim_end_matches(&format!(".{ext}"))
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{stem}.{ext}")
}
