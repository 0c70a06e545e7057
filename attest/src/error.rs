//! Typed errors: one variant per failed check, so a caller can tell a bad signature from a wrong
//! measurement or a stale collateral.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Getting evidence (or a derived key) from this machine failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of the configfs-tsm interface or a device could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// configfs-tsm names a provider this crate does not know.
    #[error("configfs-tsm provider {0:?} is not supported (expected sev_guest or tdx_guest)")]
    UnknownProvider(String),
    /// The report entry's `generation` moved while it was read: another writer used the same
    /// entry, so the outblob may not answer our inblob.
    #[error("configfs-tsm report generation changed from {before} to {after} while reading")]
    GenerationChanged {
        /// Generation right after our inblob write.
        before: u64,
        /// Generation after reading outblob and auxblob.
        after: u64,
    },
    /// The `generation` file did not hold a number.
    #[error("configfs-tsm generation is not a number: {0:?}")]
    BadGeneration(String),
    /// The SEV guest device refused the request.
    #[error("SEV guest device: {0}")]
    SnpDevice(String),
    /// A TDX quote needs configfs-tsm (Linux ≥ 6.7); `/dev/tdx_guest` alone only gives a
    /// TDREPORT, which cannot be verified off the machine.
    #[error("TDX quote needs configfs-tsm (/sys/kernel/config/tsm/report, Linux >= 6.7); /dev/tdx_guest alone cannot produce a quote")]
    TdxQuoteNeedsConfigfs,
    /// The returned report or quote could not be parsed.
    #[error("the TEE returned a malformed {what}: {reason}")]
    Malformed {
        /// "SNP report", "TDX quote", "certificate table".
        what: &'static str,
        /// Parser message.
        reason: String,
    },
    /// The returned report or quote does not carry the report_data we asked for.
    #[error("the TEE's {0} does not carry the requested report_data")]
    ReportDataNotEchoed(&'static str),
    /// The machine has a TPM and it did not give a quote (opening the device, a command, the
    /// AK): evidence is refused rather than sent without the TPM.
    #[error("TPM: {0}")]
    Tpm(#[from] crate::tpm::TpmError),
    /// Azure TDX: the instance metadata service did not turn the HCL report's TDREPORT into a
    /// quote (unreachable, slow, an error, or an answer that is not this report's quote).
    #[error("Azure TD quote: {0}")]
    AzureImds(#[from] crate::tpm::ImdsError),
    /// The firmware's boot event log is there but could not be read.
    #[error(transparent)]
    BootLog(#[from] crate::boot_log::BootLogError),
    /// The operation exists only on another TEE (e.g. a derived key outside SEV-SNP).
    #[error("{what} is not available on TEE {tee}")]
    Unsupported {
        /// The operation.
        what: &'static str,
        /// The TEE found.
        tee: crate::Tee,
    },
}

/// A measurement register, as named in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Register {
    /// SEV-SNP `MEASUREMENT` (launch digest).
    LaunchDigest,
    /// TDX MRTD.
    Mrtd,
    /// TDX RTMR0.
    Rtmr0,
    /// TDX RTMR1.
    Rtmr1,
    /// TDX RTMR2.
    Rtmr2,
    /// TDX RTMR3.
    Rtmr3,
}

impl fmt::Display for Register {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Register::LaunchDigest => "SNP launch digest",
            Register::Mrtd => "MRTD",
            Register::Rtmr0 => "RTMR0",
            Register::Rtmr1 => "RTMR1",
            Register::Rtmr2 => "RTMR2",
            Register::Rtmr3 => "RTMR3",
        })
    }
}

/// The launch measurement is not one the policy expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeasurementError {
    /// The policy lists no measurement for this TEE.
    #[error("no expected measurement is configured for {tee}")]
    NoneExpected {
        /// "snp" or "tdx".
        tee: &'static str,
    },
    /// A UEFI-booted TD runs on firmware whose MRTD is not in the policy's allow-list
    /// (`expected.tdx_firmware`) nor Google-endorsed (`expected.endorsed_firmware`).
    #[error("MRTD {mrtd} is not a cloud TDX firmware the policy allows (expected.tdx_firmware) or Google endorsed (expected.endorsed_firmware)")]
    FirmwareNotAllowed {
        /// The quote's MRTD, hex.
        mrtd: String,
    },
    /// An SNP launch digest is neither the image's (`expected.snp`) nor a cloud firmware's the
    /// policy allows for vTPM-identified boots (`expected.snp_firmware`).
    #[error("SNP launch digest {launch_digest} is not a cloud firmware the policy allows (expected.snp_firmware)")]
    SnpFirmwareNotAllowed {
        /// The report's launch digest, hex.
        launch_digest: String,
    },
    /// The register differs from every expected value.
    #[error("{register} {got} is not an expected measurement")]
    Mismatch {
        /// The (first) differing register.
        register: Register,
        /// The measured value, hex.
        got: String,
    },
}

/// A certificate of the SEV-SNP chain, as named in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertName {
    /// AMD Root Key.
    Ark,
    /// AMD SEV Key.
    Ask,
    /// Versioned Chip Endorsement Key.
    Vcek,
    /// AMD SEV VLEK signing key (signs VLEKs).
    Asvk,
    /// Versioned Loaded Endorsement Key (a cloud provider's).
    Vlek,
}

impl fmt::Display for CertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertName::Ark => "ARK",
            CertName::Ask => "ASK",
            CertName::Vcek => "VCEK",
            CertName::Asvk => "ASVK",
            CertName::Vlek => "VLEK",
        })
    }
}

/// A SEV-SNP check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnpError {
    /// The report is not a 1184-byte SNP attestation report the `sev` crate can parse.
    #[error("malformed SNP report: {0}")]
    MalformedReport(String),
    /// The report's format version is older than 2.
    #[error("SNP report version {0} is not supported")]
    UnsupportedVersion(u32),
    /// The report is signed with something other than ECDSA P-384 with SHA-384 (1).
    #[error("SNP report signature algorithm {0} is not supported")]
    UnsupportedSignatureAlgorithm(u32),
    /// The firmware did not sign the report (MASK_CHIP_KEY, or signing key "none").
    #[error("the SNP report is not signed")]
    Unsigned,
    /// The report names a reserved signing key.
    #[error("SNP report signing key {0} is not supported (only the VCEK, 0, and a VLEK, 1)")]
    UnsupportedSigningKey(u32),
    /// Neither the evidence nor the verifier supplied a VCEK.
    #[error("no VCEK certificate: none in the evidence's certificate table and none supplied")]
    MissingVcek,
    /// A certificate could not be parsed.
    #[error("malformed {cert} certificate: {reason}")]
    MalformedCertificate {
        /// Which certificate.
        cert: CertName,
        /// Parser message.
        reason: String,
    },
    /// AMD's built-in ARK/ASK chain for a generation failed its own check (never expected).
    #[error("built-in AMD {generation} root chain is invalid: {reason}")]
    BuiltinRoots {
        /// "Milan", "Genoa" or "Turin".
        generation: &'static str,
        /// The `sev` crate's message.
        reason: String,
    },
    /// The report is signed by a VLEK and the evidence's certificate table has none.
    #[error("the report is signed by a VLEK and the evidence carries no VLEK certificate")]
    MissingVlek,
    /// No AMD ASVK (Milan, Genoa, Turin) signs the VLEK.
    #[error("the VLEK is not signed by AMD's Milan, Genoa or Turin ASVK")]
    VlekNotSignedByAmd,
    /// No AMD ASK (Milan, Genoa, Turin) signs the VCEK.
    #[error("the VCEK is not signed by AMD's Milan, Genoa or Turin ASK")]
    VcekNotSignedByAmd,
    /// A certificate is not valid yet at the verification time.
    #[error("{cert} certificate is not valid before {not_before} (unix {now})")]
    CertificateNotYetValid {
        /// Which certificate.
        cert: CertName,
        /// Its notBefore, unix seconds.
        not_before: u64,
        /// The verification time, unix seconds.
        now: u64,
    },
    /// A certificate has expired at the verification time.
    #[error("{cert} certificate expired at {not_after} (unix {now})")]
    CertificateExpired {
        /// Which certificate.
        cert: CertName,
        /// Its notAfter, unix seconds.
        not_after: u64,
        /// The verification time, unix seconds.
        now: u64,
    },
    /// The VCEK lacks a TCB or hardware-ID extension AMD always includes.
    #[error("the VCEK has no {0} extension")]
    VcekMissingExtension(&'static str),
    /// The signing key's certificate (VCEK, or a cloud's VLEK) certifies a different TCB than the
    /// report's REPORTED_TCB.
    #[error("the signing key's certificate (VCEK/VLEK) {component} SPL {vcek} differs from the report's reported_tcb {report}")]
    VcekTcbMismatch {
        /// "bootloader", "tee", "snp", "microcode" or "fmc".
        component: &'static str,
        /// The VCEK's value.
        vcek: u8,
        /// The report's value.
        report: u8,
    },
    /// The VCEK belongs to another chip than the report's CHIP_ID.
    #[error("VCEK hardware ID differs from the report's chip_id")]
    VcekChipIdMismatch,
    /// The ECDSA P-384 signature over the report does not verify with the VCEK.
    #[error("the SNP report signature does not verify with the VCEK")]
    BadSignature,
    /// The guest policy allows debugging (the host can read guest memory).
    #[error("the SNP guest policy allows debugging")]
    DebugAllowed,
    /// The guest policy allows a migration agent, and the verifier's policy does not.
    #[error("the SNP guest policy allows a migration agent")]
    MigrationAgentAllowed,
    /// SMT is enabled on the platform, and the verifier's policy does not allow it.
    #[error("SMT is enabled on the SNP platform and the policy does not allow it")]
    SmtEnabled,
    /// The report comes from another VMPL than the policy expects.
    #[error("SNP report is from VMPL {got}, expected {expected}")]
    VmplMismatch {
        /// Expected VMPL.
        expected: u32,
        /// The report's VMPL.
        got: u32,
    },
    /// A component of REPORTED_TCB is below the policy's minimum.
    #[error("SNP reported TCB {component} SPL {got} is below the minimum {min}")]
    TcbTooLow {
        /// "bootloader", "tee", "snp", "microcode" or "fmc".
        component: &'static str,
        /// The minimum.
        min: u8,
        /// The report's value.
        got: u8,
    },
}

/// A TDX check failed. Collateral and chain failures carry dcap-qvl's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TdxError {
    /// The quote could not be parsed, or has a version, TEE type or key type we do not take.
    #[error("malformed or unsupported TDX quote: {0}")]
    MalformedQuote(String),
    /// Neither the evidence nor the verifier supplied collateral.
    #[error(
        "no TDX collateral (TCB info, QE identity, CRLs): none in the evidence and none supplied"
    )]
    MissingCollateral,
    /// The collateral could not be parsed (JSON, CRL, PEM).
    #[error("malformed TDX collateral: {0}")]
    MalformedCollateral(String),
    /// The collateral is outside its validity window at the verification time.
    #[error("TDX collateral is not valid at the verification time: {0}")]
    CollateralExpired(String),
    /// Intel's signature over the TCB info or QE identity does not verify.
    #[error("TDX collateral signature is invalid: {0}")]
    CollateralSignature(String),
    /// A certificate chain (PCK, or the collateral signer) does not lead to Intel's SGX root CA,
    /// is expired or revoked.
    #[error("TDX certificate chain to Intel's root is invalid: {0}")]
    CertificateChain(String),
    /// The PCK certificate does not sign the QE report.
    #[error("the QE report signature does not verify with the PCK certificate")]
    QeReportSignature,
    /// The QE report does not bind the attestation key (hash mismatch).
    #[error("the QE report does not bind the quote's attestation key")]
    QeReportBinding,
    /// The quoting enclave does not match Intel's QE identity.
    #[error("the quoting enclave does not match the QE identity: {0}")]
    QeIdentity(String),
    /// The attestation key's signature over the quote header and TD report does not verify.
    #[error("the TDX quote signature does not verify with the attestation key")]
    BadSignature,
    /// No TCB level of the TCB info matches the platform, or the FMSPC differs.
    #[error("TDX TCB level does not match: {0}")]
    TcbMatch(String),
    /// The platform's TCB is revoked.
    #[error("TDX TCB status is Revoked")]
    TcbRevoked,
    /// The TCB status is not one the policy accepts.
    #[error("TDX TCB status {status} is not accepted (advisories: {advisories:?})")]
    TcbStatusNotAccepted {
        /// dcap-qvl's status name, e.g. "OutOfDate".
        status: String,
        /// Intel security advisories for this platform.
        advisories: Vec<String>,
    },
    /// The TD's attributes allow debugging.
    #[error("the TD is debuggable (TD attributes DEBUG bit set)")]
    DebugEnabled,
    /// Another TD attribute is not acceptable (migratable, reserved bits, service TD, …).
    #[error("TD attributes are not acceptable: {0}")]
    Attributes(String),
    /// dcap-qvl refused for a reason this crate does not classify.
    #[error("TDX quote verification failed: {0}")]
    Other(String),
}

/// Verification refused the evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The evidence is from no TEE (dev mode) and the policy does not allow insecure evidence.
    #[error("insecure evidence (TEE none, dev mode) refused: the policy does not allow it")]
    Insecure,
    /// The evidence's TEE is not one the policy accepts.
    #[error("evidence from TEE {0} is not accepted by the policy")]
    TeeNotAccepted(crate::Tee),
    /// An SEV-SNP check failed.
    #[error(transparent)]
    Snp(#[from] SnpError),
    /// A TDX check failed.
    #[error(transparent)]
    Tdx(#[from] TdxError),
    /// The launch measurement is not expected.
    #[error(transparent)]
    Measurement(#[from] MeasurementError),
    /// The boot event log is missing, does not replay to the quoted registers, or does not show
    /// the image's predicted boot.
    #[error(transparent)]
    EventLog(#[from] crate::eventlog::EventLogError),
    /// The TPM quote does not verify (its AK, signature, nonce, PCR values; Azure's HCL report).
    #[error("TPM quote refused: {0}")]
    Tpm(crate::vtpm::TpmFailure),
    /// The TPM quote verified but the policy does not accept it (its AK's trust, or nothing
    /// identifies the image).
    #[error(transparent)]
    Vtpm(#[from] crate::vtpm::VtpmError),
    /// The verifier could not get (or check) the collateral this evidence needs.
    #[error("collateral: {0}")]
    Collateral(#[from] crate::collateral::CollateralError),
    /// The report_data is not the one the verifier expects (not bound to this key and nonce).
    #[error("report_data {got} differs from the expected {expected}")]
    ReportDataMismatch {
        /// Expected, hex.
        expected: String,
        /// Found, hex.
        got: String,
    },
}

impl From<crate::tpm::TpmError> for VerifyError {
    fn from(e: crate::tpm::TpmError) -> Self {
        VerifyError::Tpm(e.into())
    }
}
