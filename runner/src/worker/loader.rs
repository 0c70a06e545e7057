//! The module loader of a worker isolate: the worker's own script and nothing
//! else; in particular none of deno's built-in modules (`node:`, `ext:`) nor
//! package specifiers (`npm:`, `jsr:`).
//!
//! Refusing in `resolve` is not enough: when resolution fails, deno_core falls
//! back to its embedded sources for any specifier it has one for (`node:net`,
//! `ext:deno_web/…`) and loads that instead. So a refused specifier *resolves*,
//! to a `refused:` URL that deno_core has no source for, and loading that URL
//! fails with an error naming the specifier: a static import fails the worker's
//! creation, a dynamic `import()` rejects with a TypeError.

use deno_core::ModuleLoadOptions;
use deno_core::ModuleLoadReferrer;
use deno_core::ModuleLoadResponse;
use deno_core::ModuleLoader;
use deno_core::ModuleResolveResponse;
use deno_core::ModuleSpecifier;
use deno_core::ResolutionKind;
use deno_core::StaticModuleLoader;
use deno_error::JsErrorBox;

/// Schemes a worker may not import from.
const REFUSED_SCHEMES: [&str; 4] = ["node", "ext", "npm", "jsr"];
/// Scheme of the URL a refused specifier resolves to.
const REFUSED: &str = "refused";

/// [`StaticModuleLoader`] with the refusals above.
pub(super) struct WorkerModuleLoader(StaticModuleLoader);

impl WorkerModuleLoader {
    pub fn new(inner: StaticModuleLoader) -> Self {
        Self(inner)
    }
}

/// Whether `referrer` is one of deno's own modules: their imports of each other
/// are deno's business (they are resolved here when deno loads one lazily).
fn is_internal(referrer: &str) -> bool {
    referrer.starts_with("ext:") || referrer.starts_with("node:")
}

fn refusal(specifier: &str) -> JsErrorBox {
    JsErrorBox::type_error(format!(
        "import of \"{specifier}\" refused: a Smart Worker cannot import node:, npm:, jsr: or \
         ext: modules (it is one script on the web platform's APIs)"
    ))
}

impl ModuleLoader for WorkerModuleLoader {
    fn resolve(
        &self,
        specifier: &str,
        referrer: &str,
        kind: ResolutionKind,
    ) -> ModuleResolveResponse {
        let resolved = self.0.resolve(specifier, referrer, kind)?;
        if is_internal(referrer) || !REFUSED_SCHEMES.contains(&resolved.scheme()) {
            return Ok(resolved);
        }
        ModuleSpecifier::parse(&format!("{REFUSED}:{resolved}"))
            .map_err(|_| refusal(resolved.as_str()))
    }

    fn import_meta_resolve(
        &self,
        specifier: &str,
        referrer: &str,
    ) -> Result<ModuleSpecifier, JsErrorBox> {
        let resolved = self.resolve(specifier, referrer, ResolutionKind::DynamicImport)?;
        match resolved.as_str().strip_prefix(REFUSED) {
            Some(refused) => Err(refusal(refused.trim_start_matches(':'))),
            None => Ok(resolved),
        }
    }

    fn load(
        &self,
        specifier: &ModuleSpecifier,
        referrer: Option<&ModuleLoadReferrer>,
        options: ModuleLoadOptions,
    ) -> ModuleLoadResponse {
        if specifier.scheme() == REFUSED {
            return ModuleLoadResponse::Sync(Err(refusal(specifier.path())));
        }
        self.0.load(specifier, referrer, options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loader() -> WorkerModuleLoader {
        WorkerModuleLoader::new(StaticModuleLoader::default())
    }

    fn resolve(specifier: &str, referrer: &str) -> String {
        loader()
            .resolve(specifier, referrer, ResolutionKind::Import)
            .expect("resolves")
            .to_string()
    }

    #[test]
    fn refused_schemes_resolve_to_refused_urls() {
        for specifier in [
            "node:net",
            "NODE:fs",
            "ext:core/mod.js",
            "npm:left-pad",
            "jsr:@std/path",
        ] {
            let resolved = resolve(specifier, "file:///worker.js");
            assert!(resolved.starts_with("refused:"), "{specifier} → {resolved}");
        }
    }

    #[test]
    fn web_specifiers_and_deno_internal_imports_resolve_as_before() {
        assert_eq!(resolve("./a.js", "file:///worker.js"), "file:///a.js");
        assert_eq!(
            resolve("https://example.com/x.js", "file:///worker.js"),
            "https://example.com/x.js"
        );
        assert_eq!(resolve("node:net", "ext:deno_node/x.js"), "node:net");
    }

    #[test]
    fn loading_a_refused_url_names_the_specifier() {
        let loader = loader();
        let resolved = loader
            .resolve(
                "node:net",
                "file:///worker.js",
                ResolutionKind::DynamicImport,
            )
            .expect("resolves");
        let options = ModuleLoadOptions {
            is_dynamic_import: true,
            is_synchronous: false,
            requested_module_type: deno_core::RequestedModuleType::None,
        };
        let ModuleLoadResponse::Sync(Err(error)) = loader.load(&resolved, None, options) else {
            panic!("loading {resolved} should fail synchronously");
        };
        let message = error.to_string();
        assert!(message.contains("\"node:net\""), "{message}");
        let meta = loader.import_meta_resolve("node:net", "file:///worker.js");
        assert!(meta.is_err_and(|e| e.to_string().contains("\"node:net\"")));
    }
}
