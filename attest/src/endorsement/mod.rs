//! Google's signed launch endorsements of its confidential-VM firmware (`VMLaunchEndorsement`
//! of google/gce-tcb-verifier's `proto/endorsement.proto`): the MRTDs (TDX) and launch digests
//! (SEV-SNP, per vCPU count) of one UEFI build, signed RSA-PSS/SHA-256 by a key whose
//! certificate must chain to Google's root `GCE-cc-tcb-root`. A verified endorsement becomes an
//! [`EndorsedFirmware`] in the policy (`expected.endorsed_firmware`): from files given to the
//! verifier, or fetched by the measurement evidence names (`crate::collateral`, which also
//! checks that the endorsement names it). The root is the caller's (no built-in root: Google's
//! root bytes were not reachable when this was written).

mod proto;
mod verify;

use crate::measurement::{Digest48, EndorsedFirmware};
use proto::{Fields, Value};

/// Where Google publishes one endorsement per TDX MRTD: `<this><mrtd hex>.binarypb`.
pub const GOOGLE_TDX_ENDORSEMENTS: &str =
    "https://storage.googleapis.com/gce_tcb_integrity/ovmf_x64_csm/tdx/";
/// Where Google publishes one endorsement per SEV-SNP launch digest.
pub const GOOGLE_SNP_ENDORSEMENTS: &str =
    "https://storage.googleapis.com/gce_tcb_integrity/ovmf_x64_csm/sevsnp/";
/// Google's published root for these endorsements.
pub const GOOGLE_ROOT_URL: &str = "https://pki.goog/cloud_integrity/GCE-cc-tcb-root_1.crt";

/// Why an endorsement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndorsementError {
    /// The protobuf does not parse (offset into the endorsement file).
    #[error("malformed launch endorsement at byte {offset}: {reason}")]
    Malformed {
        /// Byte offset in the endorsement file.
        offset: usize,
        /// What is wrong there.
        reason: &'static str,
    },
    /// A required field is absent.
    #[error("launch endorsement has no {0}")]
    Missing(&'static str),
    /// A certificate (the root given, or the endorsement's signing certificate) does not parse.
    #[error("{what} certificate does not parse: {reason}")]
    Certificate {
        /// "root" or "signing".
        what: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// The signing certificate is not issued and signed by the pinned root.
    #[error("the endorsement's signing certificate does not chain to the pinned root: {0}")]
    NotIssuedByRoot(&'static str),
    /// A certificate is outside its validity at the verification time.
    #[error(
        "{what} certificate is not valid at {now} (valid {not_before}..{not_after}, Unix seconds)"
    )]
    NotValidAt {
        /// "root" or "signing".
        what: &'static str,
        /// The verification time.
        now: u64,
        /// Its notBefore.
        not_before: u64,
        /// Its notAfter.
        not_after: u64,
    },
    /// The signing certificate may not sign endorsements (a CA, or key usage without
    /// digitalSignature).
    #[error("the signing certificate is not for signing: {0}")]
    NotASigningCertificate(&'static str),
    /// The RSA-PSS/SHA-256 signature over the golden measurement does not verify.
    #[error("the launch endorsement's signature does not verify")]
    BadSignature,
    /// A valid endorsement, fetched for a measurement it does not name (a mirror answering with
    /// another firmware's endorsement).
    #[error("the launch endorsement does not name the {tee} measurement {measurement}")]
    NotNamed {
        /// "TDX MRTD" or "SEV-SNP launch digest".
        tee: &'static str,
        /// The measurement asked for (hex).
        measurement: String,
    },
}

/// Which of Google's endorsement series: TDX MRTDs or SEV-SNP launch digests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GoogleTee {
    /// Intel TDX: endorsements by MRTD.
    Tdx,
    /// AMD SEV-SNP: endorsements by launch digest.
    Snp,
}

impl GoogleTee {
    /// The directory Google publishes them under: `tdx` or `sevsnp`.
    pub fn dir(self) -> &'static str {
        match self {
            GoogleTee::Tdx => "tdx",
            GoogleTee::Snp => "sevsnp",
        }
    }

    fn measurement_name(self) -> &'static str {
        match self {
            GoogleTee::Tdx => "TDX MRTD",
            GoogleTee::Snp => "SEV-SNP launch digest",
        }
    }
}

/// One TDX launch configuration Google endorses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndorsedTdx {
    /// The VM's RAM in GiB (it shapes the TD HOB, hence the MRTD).
    pub ram_gib: u32,
    /// All memory accepted by the firmware.
    pub early_accept: bool,
    /// The MRTD.
    pub mrtd: Digest48,
}

/// One SEV-SNP launch Google endorses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndorsedSnp {
    /// The number of vCPUs (VMSAs) at launch.
    pub vcpus: u32,
    /// The launch digest (`MEASUREMENT`).
    pub launch_digest: Digest48,
}

/// A parsed, NOT yet verified launch endorsement: nothing in it may be trusted before
/// [`GoogleEndorsement::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoogleEndorsement {
    signed: Vec<u8>,
    signature: Vec<u8>,
    cert: Vec<u8>,
    signed_at: u64,
    uefi_digest: Digest48,
    tdx: Vec<EndorsedTdx>,
    snp: Vec<EndorsedSnp>,
}

impl GoogleEndorsement {
    /// Parses a `VMLaunchEndorsement` (the `.binarypb` Google publishes).
    pub fn parse(bytes: &[u8]) -> Result<Self, EndorsementError> {
        let (mut signed, mut signature) = (None, None);
        for field in Fields::new(bytes, 0) {
            let (field, at) = field?;
            match field.number {
                1 => {
                    signed = Some((
                        proto::bytes(field.value, at, "serialized_uefi_golden is not bytes")?,
                        at,
                    ))
                }
                2 => signature = Some(proto::bytes(field.value, at, "signature is not bytes")?),
                _ => {}
            }
        }
        let (signed, base) = signed.ok_or(EndorsementError::Missing("serialized_uefi_golden"))?;
        let signature = signature.ok_or(EndorsementError::Missing("signature"))?;
        let mut e = GoogleEndorsement {
            signed: signed.to_vec(),
            signature: signature.to_vec(),
            cert: Vec::new(),
            signed_at: 0,
            uefi_digest: Digest48([0; 48]),
            tdx: Vec::new(),
            snp: Vec::new(),
        };
        e.parse_golden(signed, base)?;
        Ok(e)
    }

    /// `VMGoldenMeasurement`: timestamp (1), cert (4), digest (5), sev_snp (7), tdx (8).
    fn parse_golden(&mut self, golden: &[u8], base: usize) -> Result<(), EndorsementError> {
        let (mut cert, mut digest, mut timestamp) = (None, None, None);
        for field in Fields::new(golden, base) {
            let (field, at) = field?;
            match field.number {
                1 => {
                    timestamp = Some(seconds(
                        proto::bytes(field.value, at, "timestamp is not a message")?,
                        at,
                    )?)
                }
                4 => cert = Some(proto::bytes(field.value, at, "cert is not bytes")?),
                5 => {
                    digest = Some(digest48(
                        proto::bytes(field.value, at, "digest is not bytes")?,
                        at,
                    )?)
                }
                7 => {
                    self.snp = snp(
                        proto::bytes(field.value, at, "sev_snp is not a message")?,
                        at,
                    )?
                }
                8 => self.tdx = tdx(proto::bytes(field.value, at, "tdx is not a message")?, at)?,
                _ => {}
            }
        }
        self.cert = cert.ok_or(EndorsementError::Missing("cert"))?.to_vec();
        self.uefi_digest = digest.ok_or(EndorsementError::Missing("digest"))?;
        self.signed_at = timestamp.ok_or(EndorsementError::Missing("timestamp"))?;
        Ok(())
    }

    /// The TDX launches it names (unverified until [`Self::verify`]).
    pub fn tdx(&self) -> &[EndorsedTdx] {
        &self.tdx
    }

    /// The SEV-SNP launches it names (unverified until [`Self::verify`]).
    pub fn snp(&self) -> &[EndorsedSnp] {
        &self.snp
    }

    /// SHA-384 of the UEFI binary it endorses.
    pub fn uefi_digest(&self) -> Digest48 {
        self.uefi_digest
    }

    /// When Google signed it (Unix seconds).
    pub fn signed_at(&self) -> u64 {
        self.signed_at
    }

    /// Verifies it at `now` (Unix seconds) under `root_der` (DER of Google's
    /// `GCE-cc-tcb-root`): the signing certificate issued and signed by that root, both valid
    /// at `now`, the signature over the golden measurement RSA-PSS/SHA-256 by the certificate's
    /// key. Returns the measurements a policy may then accept, until the chain expires
    /// (`valid_until`: each verification of evidence checks it again at its own time).
    pub fn verify(&self, root_der: &[u8], now: u64) -> Result<EndorsedFirmware, EndorsementError> {
        let key = verify::signing_certificate(&self.cert, root_der, now)?;
        verify::signature(&key.spki, &self.signed, &self.signature)?;
        tracing::info!(
            uefi = %self.uefi_digest,
            signed_at = self.signed_at,
            tdx = self.tdx.len(),
            snp = self.snp.len(),
            "Google launch endorsement verified"
        );
        Ok(EndorsedFirmware {
            uefi_digest: self.uefi_digest,
            signed_at: self.signed_at,
            valid_until: key.valid_until,
            tdx_mrtds: self.tdx.iter().map(|t| t.mrtd).collect(),
            snp_launch_digests: self.snp.iter().map(|s| s.launch_digest).collect(),
        })
    }
}

impl GoogleEndorsement {
    /// [`Self::verify`], and the endorsement must name `measurement` for `tee`.
    pub fn verify_naming(
        &self,
        root_der: &[u8],
        now: u64,
        tee: GoogleTee,
        measurement: &Digest48,
    ) -> Result<EndorsedFirmware, EndorsementError> {
        let named = match tee {
            GoogleTee::Tdx => self.tdx.iter().any(|t| &t.mrtd == measurement),
            GoogleTee::Snp => self.snp.iter().any(|s| &s.launch_digest == measurement),
        };
        if !named {
            return Err(EndorsementError::NotNamed {
                tee: tee.measurement_name(),
                measurement: measurement.to_string(),
            });
        }
        self.verify(root_der, now)
    }
}

/// A root certificate file's DER: the file itself (DER, as Google publishes
/// `GCE-cc-tcb-root_1.crt`) or the first certificate of a PEM text.
pub fn certificate_der(file: &[u8]) -> Result<Vec<u8>, EndorsementError> {
    let text = match std::str::from_utf8(file) {
        Ok(text) if text.contains("-----BEGIN CERTIFICATE-----") => text,
        _ => return Ok(file.to_vec()),
    };
    crate::collateral::x509::pem_certificates(text, "root")
        .map_err(|e| EndorsementError::Certificate {
            what: "root",
            reason: e.to_string(),
        })?
        .into_iter()
        .next()
        .ok_or(EndorsementError::Missing("root certificate"))
}

fn digest48(bytes: &[u8], at: usize) -> Result<Digest48, EndorsementError> {
    bytes
        .try_into()
        .map(Digest48)
        .map_err(|_| EndorsementError::Malformed {
            offset: at,
            reason: "a measurement is not 48 bytes",
        })
}

/// `google.protobuf.Timestamp`'s seconds (1).
fn seconds(message: &[u8], base: usize) -> Result<u64, EndorsementError> {
    let mut seconds = 0;
    for field in Fields::new(message, base) {
        let (field, at) = field?;
        if field.number == 1 {
            seconds = proto::varint(field.value, at, "timestamp seconds is not a varint")?;
        }
    }
    Ok(seconds)
}

/// `VMTdx`: measurements (2), each `{ram_gib (1), early_accept (2), mrtd (3)}`.
fn tdx(message: &[u8], base: usize) -> Result<Vec<EndorsedTdx>, EndorsementError> {
    let mut out = Vec::new();
    for field in Fields::new(message, base) {
        let (field, at) = field?;
        if field.number != 2 {
            continue;
        }
        let (mut ram_gib, mut early_accept, mut mrtd) = (0, false, None);
        for inner in Fields::new(
            proto::bytes(field.value, at, "a tdx measurement is not a message")?,
            at,
        ) {
            let (inner, at) = inner?;
            match (inner.number, inner.value) {
                (1, Value::Varint(v)) => {
                    ram_gib = u32::try_from(v).map_err(|_| EndorsementError::Malformed {
                        offset: at,
                        reason: "ram_gib exceeds 32 bits",
                    })?
                }
                (2, Value::Varint(v)) => early_accept = v != 0,
                (3, Value::Bytes(b)) => mrtd = Some(digest48(b, at)?),
                (1..=3, _) => {
                    return Err(EndorsementError::Malformed {
                        offset: at,
                        reason: "tdx measurement field of the wrong type",
                    })
                }
                _ => {}
            }
        }
        let mrtd = mrtd.ok_or(EndorsementError::Missing("tdx measurement's mrtd"))?;
        out.push(EndorsedTdx {
            ram_gib,
            early_accept,
            mrtd,
        });
    }
    Ok(out)
}

/// `VMSevSnp`: measurements (2), a `map<uint32, bytes>`: entries `{key (1), value (2)}`.
fn snp(message: &[u8], base: usize) -> Result<Vec<EndorsedSnp>, EndorsementError> {
    let mut out = Vec::new();
    for field in Fields::new(message, base) {
        let (field, at) = field?;
        if field.number != 2 {
            continue;
        }
        let (mut vcpus, mut digest) = (0, None);
        for inner in Fields::new(
            proto::bytes(field.value, at, "a sev_snp measurement is not a map entry")?,
            at,
        ) {
            let (inner, at) = inner?;
            match (inner.number, inner.value) {
                (1, Value::Varint(v)) => {
                    vcpus = u32::try_from(v).map_err(|_| EndorsementError::Malformed {
                        offset: at,
                        reason: "vCPU count exceeds 32 bits",
                    })?
                }
                (2, Value::Bytes(b)) => digest = Some(digest48(b, at)?),
                (1 | 2, _) => {
                    return Err(EndorsementError::Malformed {
                        offset: at,
                        reason: "sev_snp measurement field of the wrong type",
                    })
                }
                _ => {}
            }
        }
        let launch_digest =
            digest.ok_or(EndorsementError::Missing("sev_snp measurement's value"))?;
        out.push(EndorsedSnp {
            vcpus,
            launch_digest,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
