//! The policy options about TPM evidence and cloud firmware: which TPM attestation keys are
//! trusted, whether a vTPM outside the TEE may identify the image, and the clouds' firmware
//! measurements (never in the image manifest: the firmware is the cloud's): allow-listed, or
//! endorsed by Google in launch endorsements verified under Google's root.

use std::path::{Path, PathBuf};

/// Options shared by `runner verify`, `deploy` and `verifier` (flattened into `PolicyArgs`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TpmPolicyArgs {
    /// Accept a vTPM OUTSIDE the TEE (Google's on N2D, AWS's NitroTPM) to identify the image.
    /// The cloud's host can make such a vTPM quote anything: the image identity then rests on
    /// trusting the cloud. Off by default.
    #[arg(long)]
    pub allow_untrusted_vtpm: bool,
    /// Trust the TPM attestation key with this name (hex: nameAlg ‖ digest, as `Verified`
    /// reports it), e.g. a test machine's swtpm (repeatable).
    #[arg(long = "tpm-ak", value_name = "HEX")]
    pub tpm_aks: Vec<attest::AkName>,
    /// A cloud TDX firmware's MRTD (96 hex digits) accepted for UEFI boots whose event log shows
    /// the image (repeatable), e.g. from Google's signed launch endorsement; or Azure's TDX
    /// paravisor, whose vTPM quote then identifies the image.
    #[arg(long = "tdx-mrtd", value_name = "HEX")]
    pub tdx_mrtds: Vec<attest::Digest48>,
    /// A cloud SNP firmware's launch digest (96 hex digits; Azure's paravisor, AWS's or
    /// Google's firmware) accepted when a TPM quote identifies the image (repeatable).
    #[arg(long = "snp-firmware", value_name = "HEX")]
    pub snp_firmware: Vec<attest::Digest48>,
    /// A Google launch endorsement (`<measurement>.binarypb` from
    /// storage.googleapis.com/gce_tcb_integrity/ovmf_x64_csm/{tdx,sevsnp}/), verified now
    /// under `--gce-root`: the TDX MRTDs and SNP launch digests it names are accepted like
    /// `--tdx-mrtd` / `--snp-firmware` (repeatable).
    #[arg(long = "gce-endorsement", value_name = "FILE", requires = "gce_root")]
    pub gce_endorsements: Vec<PathBuf>,
    /// Google's root for launch endorsements, `GCE-cc-tcb-root_1.crt` (DER or PEM), as
    /// published at https://pki.goog/cloud_integrity/GCE-cc-tcb-root_1.crt. Not built in.
    #[arg(long = "gce-root", value_name = "FILE")]
    pub gce_root: Option<PathBuf>,
}

/// Why the TPM and cloud-firmware options could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum TpmPolicyError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// An endorsement was given without `--gce-root`.
    #[error("--gce-endorsement needs --gce-root (Google's GCE-cc-tcb-root_1.crt)")]
    NoRoot,
    /// An endorsement (or the root) was refused.
    #[error("Google launch endorsement {path}: {source}")]
    Endorsement {
        path: String,
        source: attest::endorsement::EndorsementError,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, TpmPolicyError> {
    std::fs::read(path).map_err(|source| TpmPolicyError::Read {
        path: path.display().to_string(),
        source,
    })
}

impl TpmPolicyArgs {
    /// The `--gce-endorsement` files, each verified at `now` (Unix seconds) under `--gce-root`.
    pub fn endorsed_firmware(
        &self,
        now: u64,
    ) -> Result<Vec<attest::EndorsedFirmware>, TpmPolicyError> {
        if self.gce_endorsements.is_empty() {
            return Ok(Vec::new());
        }
        let root_path = self.gce_root.as_deref().ok_or(TpmPolicyError::NoRoot)?;
        let root = attest::endorsement::certificate_der(&read(root_path)?).map_err(|source| {
            TpmPolicyError::Endorsement {
                path: root_path.display().to_string(),
                source,
            }
        })?;
        self.gce_endorsements
            .iter()
            .map(|path| {
                let refused = |source| TpmPolicyError::Endorsement {
                    path: path.display().to_string(),
                    source,
                };
                let endorsed = attest::endorsement::GoogleEndorsement::parse(&read(path)?)
                    .and_then(|e| e.verify(&root, now))
                    .map_err(refused)?;
                tracing::info!(file = %path.display(), uefi = %endorsed.uefi_digest,
                    signed_at = endorsed.signed_at, tdx = endorsed.tdx_mrtds.len(),
                    snp = endorsed.snp_launch_digests.len(),
                    "accepting the firmware measurements Google endorsed");
                Ok(endorsed)
            })
            .collect()
    }

    /// Adds these options to `policy`, verifying the endorsements now.
    pub fn apply(&self, policy: &mut attest::Policy) -> Result<(), TpmPolicyError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let endorsed = self.endorsed_firmware(now)?;
        self.apply_at(policy, endorsed);
        Ok(())
    }

    fn apply_at(&self, policy: &mut attest::Policy, endorsed: Vec<attest::EndorsedFirmware>) {
        policy.expected.endorsed_firmware.extend(endorsed);
        policy.allow_untrusted_vtpm = self.allow_untrusted_vtpm;
        if self.allow_untrusted_vtpm {
            tracing::warn!("--allow-untrusted-vtpm: a vTPM outside the TEE may identify the image; the cloud's host could forge it");
        }
        policy.trusted_tpm_aks.extend(self.tpm_aks.iter().cloned());
        policy
            .expected
            .tdx_firmware
            .extend(self.tdx_mrtds.iter().map(|mrtd| attest::TdxFirmware {
                mrtd: *mrtd,
                rtmr0: None,
                label: Some("--tdx-mrtd".into()),
            }));
        policy
            .expected
            .snp_firmware
            .extend(self.snp_firmware.iter().map(|d| attest::SnpMeasurement {
                launch_digest: *d,
                label: Some("--snp-firmware".into()),
            }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        tpm: TpmPolicyArgs,
    }

    #[test]
    fn the_options_fill_the_policy_and_default_to_strict() {
        let mut strict = attest::Policy::default();
        Cli::parse_from(["x"]).tpm.apply(&mut strict).unwrap();
        assert_eq!(strict, attest::Policy::default());

        let name = format!("000b{}", "ab".repeat(32));
        let mrtd = "11".repeat(48);
        let snp = "22".repeat(48);
        let cli = Cli::parse_from([
            "x",
            "--allow-untrusted-vtpm",
            "--tpm-ak",
            &name,
            "--tdx-mrtd",
            &mrtd,
            "--snp-firmware",
            &snp,
        ]);
        let mut p = attest::Policy::default();
        cli.tpm.apply(&mut p).unwrap();
        assert!(p.allow_untrusted_vtpm);
        assert_eq!(p.trusted_tpm_aks, [name.parse::<attest::AkName>().unwrap()]);
        assert_eq!(p.expected.tdx_firmware[0].mrtd.to_string(), mrtd);
        assert_eq!(p.expected.snp_firmware[0].launch_digest.to_string(), snp);
        assert!(Cli::try_parse_from(["x", "--tpm-ak", "abcd"]).is_err());
    }

    const TESTDATA: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../attest/testdata/gce-endorsement/"
    );

    #[test]
    fn a_gce_endorsement_verified_under_the_root_fills_the_policy() {
        let file = |name: &str| format!("{TESTDATA}{name}");
        let endorsement = file("endorsement.binarypb");
        let cli = Cli::parse_from([
            "x",
            "--gce-endorsement",
            &endorsement,
            "--gce-root",
            &file("root.der"),
        ]);
        // 2027-01-15: inside the test signing certificate's validity.
        let endorsed = cli.tpm.endorsed_firmware(1_800_000_000).unwrap();
        let mut p = attest::Policy::default();
        cli.tpm.apply_at(&mut p, endorsed);
        assert_eq!(p.expected.endorsed_firmware.len(), 1);
        assert_eq!(p.expected.endorsed_firmware[0].tdx_mrtds.len(), 2);

        // Another root, an expired certificate, no root: refused, nothing accepted.
        let other = Cli::parse_from([
            "x",
            "--gce-endorsement",
            &endorsement,
            "--gce-root",
            &file("other-root.der"),
        ]);
        assert!(matches!(
            other.tpm.endorsed_firmware(1_800_000_000),
            Err(TpmPolicyError::Endorsement {
                source: attest::endorsement::EndorsementError::NotIssuedByRoot(_),
                ..
            })
        ));
        assert!(matches!(
            cli.tpm.endorsed_firmware(1_900_000_000),
            Err(TpmPolicyError::Endorsement {
                source: attest::endorsement::EndorsementError::NotValidAt { .. },
                ..
            })
        ));
        assert!(Cli::try_parse_from(["x", "--gce-endorsement", &endorsement]).is_err());
    }
}
