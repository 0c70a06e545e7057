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
    /// trusting the cloud. Off by default. With it, a Google vTPM's attestation key must carry
    /// Google's certificate (chained to Google's pinned EK/AK roots) to stand for `gcp-snp-vtpm`.
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
    /// The digest of a key whose signed SNP launches are accepted as cloud firmware (the
    /// report's ID_KEY_DIGEST, 96 hex digits; repeatable): Azure signs its paravisor with
    /// Microsoft's ID key, stable across paravisor updates, unlike the launch digest.
    #[arg(long = "snp-id-key", value_name = "HEX")]
    pub snp_id_keys: Vec<attest::Digest48>,
    /// A Google launch endorsement (`<measurement>.binarypb` from
    /// storage.googleapis.com/gce_tcb_integrity/ovmf_x64_csm/{tdx,sevsnp}/), verified now
    /// under `--gce-root`: the TDX MRTDs and SNP launch digests it names are accepted like
    /// `--tdx-mrtd` / `--snp-firmware` (repeatable).
    #[arg(long = "gce-endorsement", value_name = "FILE", requires = "gce_root")]
    pub gce_endorsements: Vec<PathBuf>,
    /// Google's root for launch endorsements, `GCE-cc-tcb-root_1.crt` (DER or PEM), as
    /// published at https://pki.goog/cloud_integrity/GCE-cc-tcb-root_1.crt. Not built in.
    /// With it (and collateral fetching on), a TDX MRTD or SNP launch digest the policy does not
    /// otherwise accept is looked up in Google's published endorsements and accepted if one
    /// verifies under this root and names it.
    #[arg(long = "gce-root", value_name = "FILE")]
    pub gce_root: Option<PathBuf>,
    /// Where Google's launch endorsements are fetched from (`tdx/<MRTD>.binarypb`,
    /// `sevsnp/<launch digest>.binarypb` under it). Default:
    /// https://storage.googleapis.com/gce_tcb_integrity/ovmf_x64_csm
    #[arg(long, value_name = "URL", requires = "gce_root")]
    pub gce_endorsement_url: Option<String>,
    /// Read Google's launch endorsements from this directory (laid out like the bucket:
    /// `tdx/…`, `sevsnp/…`) instead of the network.
    #[arg(long, value_name = "DIR", requires = "gce_root")]
    pub gce_endorsement_dir: Option<PathBuf>,
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
        let root = self.gce_root_der()?.ok_or(TpmPolicyError::NoRoot)?;
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

    /// Google's root (DER), if `--gce-root` is given.
    fn gce_root_der(&self) -> Result<Option<Vec<u8>>, TpmPolicyError> {
        let Some(path) = self.gce_root.as_deref() else {
            return Ok(None);
        };
        attest::endorsement::certificate_der(&read(path)?)
            .map(Some)
            .map_err(|source| TpmPolicyError::Endorsement {
                path: path.display().to_string(),
                source,
            })
    }

    /// Sets where the collateral client fetches Google's launch endorsements from, and under
    /// which root; without `--gce-root` it fetches none.
    pub fn fetch_endorsements(
        &self,
        config: &mut attest::collateral::CollateralConfig,
    ) -> Result<(), TpmPolicyError> {
        config.google_root = self.gce_root_der()?;
        if let Some(url) = &self.gce_endorsement_url {
            config.google_url.clone_from(url);
        }
        config.google_dir.clone_from(&self.gce_endorsement_dir);
        Ok(())
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
        policy
            .expected
            .snp_id_keys
            .extend(self.snp_id_keys.iter().map(|d| attest::SnpIdKey {
                digest: *d,
                label: Some("--snp-id-key".into()),
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
        let id_key = "33".repeat(48);
        let cli = Cli::parse_from([
            "x",
            "--allow-untrusted-vtpm",
            "--tpm-ak",
            &name,
            "--tdx-mrtd",
            &mrtd,
            "--snp-firmware",
            &snp,
            "--snp-id-key",
            &id_key,
        ]);
        let mut p = attest::Policy::default();
        cli.tpm.apply(&mut p).unwrap();
        assert!(p.allow_untrusted_vtpm);
        assert_eq!(p.trusted_tpm_aks, [name.parse::<attest::AkName>().unwrap()]);
        assert_eq!(p.expected.tdx_firmware[0].mrtd.to_string(), mrtd);
        assert_eq!(p.expected.snp_firmware[0].launch_digest.to_string(), snp);
        assert_eq!(p.expected.snp_id_keys[0].digest.to_string(), id_key);
        assert!(Cli::try_parse_from(["x", "--snp-id-key", "33"]).is_err());
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

    #[test]
    fn the_gce_root_makes_the_collateral_client_fetch_endorsements() {
        let root = format!("{TESTDATA}root.der");
        let mut config = attest::collateral::CollateralConfig::default();
        Cli::parse_from(["x"])
            .tpm
            .fetch_endorsements(&mut config)
            .unwrap();
        assert_eq!(config.google_root, None, "no root, nothing fetched");
        let cli = Cli::parse_from([
            "x",
            "--gce-root",
            &root,
            "--gce-endorsement-url",
            "http://mirror.local/ovmf",
            "--gce-endorsement-dir",
            "/srv/endorsements",
        ]);
        cli.tpm.fetch_endorsements(&mut config).unwrap();
        assert_eq!(config.google_root, Some(std::fs::read(&root).unwrap()));
        assert_eq!(config.google_url, "http://mirror.local/ovmf");
        assert_eq!(
            config.google_dir.as_deref(),
            Some(Path::new("/srv/endorsements"))
        );
        let default = Cli::parse_from(["x", "--gce-root", &root]);
        let mut config = attest::collateral::CollateralConfig::default();
        default.tpm.fetch_endorsements(&mut config).unwrap();
        assert_eq!(
            config.google_url,
            attest::collateral::GOOGLE_ENDORSEMENTS_URL
        );
        // Where to fetch from means nothing without a root to verify under.
        assert!(Cli::try_parse_from(["x", "--gce-endorsement-url", "http://x"]).is_err());
        assert!(Cli::try_parse_from(["x", "--gce-endorsement-dir", "/x"]).is_err());
    }
}
