//! Checks on the VCEK certificate that the `sev` crate does not do: validity dates, the TCB it
//! certifies against the report's REPORTED_TCB, and its hardware ID against the report's
//! CHIP_ID (AMD, "VCEK Certificate and KDS Interface Specification" #57230, table 9).

use der::Decode;
use sev::firmware::host::TcbVersion;
use x509_cert::der;

use crate::error::{CertName, SnpError};

const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HW_ID: &str = "1.3.6.1.4.1.3704.1.4";

/// notBefore and notAfter, unix seconds.
pub(crate) fn validity(cert: &x509_cert::Certificate) -> (u64, u64) {
    let v = &cert.tbs_certificate.validity;
    (
        v.not_before.to_unix_duration().as_secs(),
        v.not_after.to_unix_duration().as_secs(),
    )
}

/// Refuses a certificate outside its validity window at `now` (unix seconds).
pub(crate) fn check_validity(
    name: CertName,
    cert: &x509_cert::Certificate,
    now: u64,
) -> Result<(), SnpError> {
    let (not_before, not_after) = validity(cert);
    if now < not_before {
        return Err(SnpError::CertificateNotYetValid {
            cert: name,
            not_before,
            now,
        });
    }
    if now > not_after {
        return Err(SnpError::CertificateExpired {
            cert: name,
            not_after,
            now,
        });
    }
    Ok(())
}

fn extension<'a>(cert: &'a x509_cert::Certificate, oid: &str) -> Option<&'a [u8]> {
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id.to_string() == oid)
        .map(|e| e.extn_value.as_bytes())
}

fn spl(cert: &x509_cert::Certificate, oid: &str, name: &'static str) -> Result<u8, SnpError> {
    let value = extension(cert, oid).ok_or(SnpError::VcekMissingExtension(name))?;
    u8::from_der(value).map_err(|e| SnpError::MalformedCertificate {
        cert: CertName::Vcek,
        reason: format!("{name} extension: {e}"),
    })
}

/// The VCEK's TCB extensions must equal the report's REPORTED_TCB (the VCEK is derived from it).
pub(crate) fn check_tcb(
    cert: &x509_cert::Certificate,
    reported: &TcbVersion,
) -> Result<(), SnpError> {
    let pairs = [
        ("bootloader", OID_BL_SPL, "blSPL", reported.bootloader),
        ("tee", OID_TEE_SPL, "teeSPL", reported.tee),
        ("snp", OID_SNP_SPL, "snpSPL", reported.snp),
        ("microcode", OID_UCODE_SPL, "ucodeSPL", reported.microcode),
    ];
    for (component, oid, name, report) in pairs {
        let vcek = spl(cert, oid, name)?;
        if vcek != report {
            return Err(SnpError::VcekTcbMismatch {
                component,
                vcek,
                report,
            });
        }
    }
    if let Some(report) = reported.fmc {
        let vcek = spl(cert, OID_FMC_SPL, "fmcSPL")?;
        if vcek != report {
            return Err(SnpError::VcekTcbMismatch {
                component: "fmc",
                vcek,
                report,
            });
        }
    }
    Ok(())
}

/// The VCEK's hwID must be the report's CHIP_ID: 64 bytes (Milan, Genoa) or the first 8 bytes
/// with the rest of CHIP_ID zero (Turin). AMD stores it raw in the extension value; an OCTET
/// STRING wrapping is accepted too.
pub(crate) fn check_chip_id(
    cert: &x509_cert::Certificate,
    chip_id: &[u8; 64],
) -> Result<(), SnpError> {
    let raw = extension(cert, OID_HW_ID).ok_or(SnpError::VcekMissingExtension("hwID"))?;
    let hwid = match raw {
        [0x04, len, rest @ ..] if *len as usize == rest.len() => rest,
        other => other,
    };
    let matches = matches!(hwid.len(), 8 | 64)
        && chip_id[..hwid.len()] == *hwid
        && chip_id[hwid.len()..].iter().all(|b| *b == 0);
    if matches {
        Ok(())
    } else {
        Err(SnpError::VcekChipIdMismatch)
    }
}
