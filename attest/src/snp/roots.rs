//! AMD's root (ARK) and signing (ASK) certificates for Milan, Genoa and Turin, as the `sev`
//! crate carries them, and the ASVKs that sign VLEKs (`asvk/`, AMD's published certificates;
//! see its README). Each chain is checked once (ARK self-signed, ARK signs ASK and ASVK, the
//! ASVK file's ARK is the built-in one); evidence never supplies a root.

use std::sync::OnceLock;

use sev::certs::snp::{builtin, ca, Certificate, Verifiable};

use crate::error::SnpError;

/// One processor generation's CA chain.
pub(crate) struct Roots {
    pub(crate) generation: &'static str,
    pub(crate) chain: ca::Chain,
    pub(crate) ark: x509_cert::Certificate,
    pub(crate) ask: x509_cert::Certificate,
    /// The ASVK (signs VLEKs), checked against `chain.ark`.
    pub(crate) asvk: Certificate,
}

type Loader = fn() -> std::io::Result<Certificate>;

const GENERATIONS: [(&str, Loader, Loader, &str); 3] = [
    (
        "Milan",
        builtin::milan::ark,
        builtin::milan::ask,
        include_str!("asvk/milan.pem"),
    ),
    (
        "Genoa",
        builtin::genoa::ark,
        builtin::genoa::ask,
        include_str!("asvk/genoa.pem"),
    ),
    (
        "Turin",
        builtin::turin::ark,
        builtin::turin::ask,
        include_str!("asvk/turin.pem"),
    ),
];

/// The checked chains, loaded once.
pub(crate) fn all() -> Result<&'static [Roots], SnpError> {
    static ROOTS: OnceLock<Result<Vec<Roots>, SnpError>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            GENERATIONS
                .iter()
                .map(|g| load(g.0, g.1, g.2, g.3))
                .collect()
        })
        .as_ref()
        .map(Vec::as_slice)
        .map_err(Clone::clone)
}

fn load(
    generation: &'static str,
    ark: Loader,
    ask: Loader,
    asvk_pem: &str,
) -> Result<Roots, SnpError> {
    let fail = |reason: String| SnpError::BuiltinRoots { generation, reason };
    let chain = ca::Chain {
        ark: ark().map_err(|e| fail(e.to_string()))?,
        ask: ask().map_err(|e| fail(e.to_string()))?,
    };
    (&chain).verify().map_err(|e| fail(e.to_string()))?;
    let asvk = load_asvk(&chain.ark, asvk_pem).map_err(fail)?;
    Ok(Roots {
        generation,
        ark: chain.ark.clone().into(),
        ask: chain.ask.clone().into(),
        chain,
        asvk,
    })
}

/// The ASVK of a `cert_chain` PEM (ASVK, then ARK): its ARK must be `ark`, byte for byte, and
/// sign the ASVK.
fn load_asvk(ark: &Certificate, pem: &str) -> Result<Certificate, String> {
    const END: &str = "-----END CERTIFICATE-----";
    let split = pem.find(END).map(|i| i + END.len()).ok_or("no PEM")?;
    let asvk = Certificate::from_pem(&pem.as_bytes()[..split]).map_err(|e| e.to_string())?;
    let file_ark =
        Certificate::from_pem(pem[split..].trim().as_bytes()).map_err(|e| e.to_string())?;
    let der = |c: &Certificate| c.to_der().map_err(|e| e.to_string());
    if der(&file_ark)? != der(ark)? {
        return Err("the ASVK file's ARK is not the built-in ARK".into());
    }
    (ark, &asvk)
        .verify()
        .map_err(|e| format!("the ARK does not sign the ASVK: {e}"))?;
    Ok(asvk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_chains_load_and_verify_for_three_generations() {
        let roots = all().unwrap();
        let names: Vec<_> = roots.iter().map(|r| r.generation).collect();
        assert_eq!(names, ["Milan", "Genoa", "Turin"]);
        for r in roots {
            let asvk: x509_cert::Certificate = r.asvk.clone().into();
            let subject = asvk.tbs_certificate.subject.to_string();
            assert!(
                subject.contains(&format!("CN=SEV-VLEK-{}", r.generation)),
                "{subject}"
            );
        }
    }

    #[test]
    fn an_asvk_file_must_carry_the_built_in_ark_which_signs_it() {
        let roots = all().unwrap();
        let (milan, genoa) = (&roots[0], &roots[1]);
        assert!(load_asvk(&milan.chain.ark, include_str!("asvk/milan.pem")).is_ok());
        // Genoa's file under Milan's ARK: another ARK.
        let err = load_asvk(&milan.chain.ark, include_str!("asvk/genoa.pem")).unwrap_err();
        assert!(err.contains("not the built-in ARK"), "{err}");
        // The right ARK but a certificate it did not sign in the ASVK's place (Genoa's ASK PEM
        // with Milan's ARK appended is refused by the signature, not by name).
        let genoa_ask = genoa.chain.ask.to_pem().unwrap();
        let milan_ark = milan.chain.ark.to_pem().unwrap();
        let forged = format!(
            "{}{}",
            String::from_utf8(genoa_ask).unwrap(),
            String::from_utf8(milan_ark).unwrap()
        );
        let err = load_asvk(&milan.chain.ark, &forged).unwrap_err();
        assert!(err.contains("does not sign"), "{err}");
    }
}
