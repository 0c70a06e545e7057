//! Builds the V8 startup snapshot every worker isolate boots from: deno_runtime's
//! extensions plus the runner's `rnr` extension, already evaluated. Booting from
//! it takes milliseconds instead of hundreds of them, and the binary then needs
//! none of deno_runtime's JavaScript/TypeScript sources from disk at run time:
//! the lazily loaded sources the snapshot did not consume are transpiled here and
//! embedded with `include_str!`. The snapshot is the same bytes in every build of
//! one commit (see `build/reproducible.rs`), and names no path of this checkout.

use std::fmt::Write as _;
use std::path::Path;
use std::path::PathBuf;

use deno_runtime::snapshot::LazyExtensionFileKind;

#[path = "src/worker/extension.rs"]
mod extension;
#[path = "build/reproducible.rs"]
mod reproducible;

fn main() {
    println!("cargo:rerun-if-changed=src/worker/extension.rs");
    println!("cargo:rerun-if-changed=src/worker/js");
    // No GNU build ID in the runner: the linker computes it over the whole output, debug
    // information included, which names the checkout's directory; `strip` keeps the note, so
    // builds of one commit in two places would differ in those 20 bytes.
    println!("cargo:rustc-link-arg-bins=-Wl,--build-id=none");
    // Relative relocations packed as DT_RELR (glibc >= 2.36, binutils >= 2.38): the loader's
    // table shrinks from about 5 MB of `.rela.dyn` to a few KB, which the appliance would
    // otherwise read from its root disk (and verify) at every start.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let snapshot_path = out_dir.join("RUNNER_SNAPSHOT.bin");
    let output = reproducible::create_snapshot(snapshot_path, rnr_with_its_javascript());

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

/// `rnr.js` as a module, also the extension's entry point.
const RNR_JS: &str = "ext:rnr/rnr.js";

/// The extension's modules (`rnr.js` imports the others), in `src/worker/js`.
const RNR_FILES: [&str; 4] = ["rnr.js", "escrin.js", "sha512_256.js", "comlink.js"];

/// The `rnr` extension with its JavaScript, read from this checkout now. `extension!` is not
/// given the file: it would record the absolute path of `src/worker/js`, in the runner binary
/// and in this build script, which cargo reuses across checkouts sharing a target directory.
fn rnr_with_its_javascript() -> deno_core::Extension {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let files = RNR_FILES
        .iter()
        .map(|name| {
            let path = manifest_dir.join("src/worker/js").join(name);
            let code = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let specifier: &'static str = format!("ext:rnr/{name}").leak();
            deno_core::ExtensionFileSource::new_computed(specifier, code.into())
        })
        .collect();
    let mut extension = extension::rnr::lazy_init();
    extension.esm_files = std::borrow::Cow::Owned(files);
    extension.esm_entry_point = Some(RNR_JS);
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
