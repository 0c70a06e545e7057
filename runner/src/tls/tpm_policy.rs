//! The policy options about TPM evidence and cloud firmware: which TPM attestation keys are
//! trusted, whether a vTPM outside the TEE may identify the image, and the clouds' firmware
//! measurements (never in the image manifest: the firmware is the cloud's).

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
    /// the image (repeatable), e.g. from Google's signed launch endorsement.
    #[arg(long = "tdx-mrtd", value_name = "HEX")]
    pub tdx_mrtds: Vec<attest::Digest48>,
    /// A cloud SNP firmware's launch digest (96 hex digits; Azure's paravisor, AWS's or
    /// Google's firmware) accepted when a TPM quote identifies the image (repeatable).
    #[arg(long = "snp-firmware", value_name = "HEX")]
    pub snp_firmware: Vec<attest::Digest48>,
}

impl TpmPolicyArgs {
    /// Adds these options to `policy`.
    pub fn apply(&self, policy: &mut attest::Policy) {
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
        Cli::parse_from(["x"]).tpm.apply(&mut strict);
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
        cli.tpm.apply(&mut p);
        assert!(p.allow_untrusted_vtpm);
        assert_eq!(p.trusted_tpm_aks, [name.parse::<attest::AkName>().unwrap()]);
        assert_eq!(p.expected.tdx_firmware[0].mrtd.to_string(), mrtd);
        assert_eq!(p.expected.snp_firmware[0].launch_digest.to_string(), snp);
        assert!(Cli::try_parse_from(["x", "--tpm-ak", "abcd"]).is_err());
    }
}
