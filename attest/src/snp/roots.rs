//! AMD's root (ARK) and signing (ASK) certificates for Milan, Genoa and Turin, as the `sev`
//! crate carries them. Each pair is checked once (ARK self-signed, ARK signs ASK); evidence
//! never supplies a root.

use std::sync::OnceLock;

use sev::certs::snp::{builtin, ca, Certificate, Verifiable};

use crate::error::SnpError;

/// One processor generation's CA chain.
pub(crate) struct Roots {
    pub(crate) generation: &'static str,
    pub(crate) chain: ca::Chain,
    pub(crate) ark: x509_cert::Certificate,
    pub(crate) ask: x509_cert::Certificate,
}

type Loader = fn() -> std::io::Result<Certificate>;

const GENERATIONS: [(&str, Loader, Loader); 3] = [
    ("Milan", builtin::milan::ark, builtin::milan::ask),
    ("Genoa", builtin::genoa::ark, builtin::genoa::ask),
    ("Turin", builtin::turin::ark, builtin::turin::ask),
];

/// The checked chains, loaded once.
pub(crate) fn all() -> Result<&'static [Roots], SnpError> {
    static ROOTS: OnceLock<Result<Vec<Roots>, SnpError>> = OnceLock::new();
    ROOTS
        .get_or_init(|| GENERATIONS.iter().map(|g| load(g.0, g.1, g.2)).collect())
        .as_ref()
        .map(Vec::as_slice)
        .map_err(Clone::clone)
}

fn load(generation: &'static str, ark: Loader, ask: Loader) -> Result<Roots, SnpError> {
    let fail = |reason: String| SnpError::BuiltinRoots { generation, reason };
    let chain = ca::Chain {
        ark: ark().map_err(|e| fail(e.to_string()))?,
        ask: ask().map_err(|e| fail(e.to_string()))?,
    };
    (&chain).verify().map_err(|e| fail(e.to_string()))?;
    Ok(Roots {
        generation,
        ark: chain.ark.clone().into(),
        ask: chain.ask.clone().into(),
        chain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_chains_load_and_verify_for_three_generations() {
        let roots = all().unwrap();
        let names: Vec<_> = roots.iter().map(|r| r.generation).collect();
        assert_eq!(names, ["Milan", "Genoa", "Turin"]);
    }
}
