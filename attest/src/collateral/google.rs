//! Google's launch endorsements, fetched by the measurement the evidence names: Google publishes
//! one signed `VMLaunchEndorsement` per firmware build at `<base>/tdx/<MRTD hex>.binarypb` and
//! `<base>/sevsnp/<launch digest hex>.binarypb`. An answer counts only if it verifies under the
//! configured root at `now` and names exactly the measurement asked for (a mirror cannot answer
//! with another build's endorsement); it is cached until its signing chain expires, a 404 is
//! remembered like any other, and the budget of outbound requests applies. No configured root,
//! nothing fetched. Offline: from a directory laid out like the bucket, or the collateral bundle.

use std::time::SystemTime;

use super::error::CollateralError;
use super::{block_on, unix, CollateralClient};
use crate::endorsement::GoogleEndorsement;
pub use crate::endorsement::GoogleTee;
use crate::evidence::Evidence;
use crate::measurement::{Digest48, EndorsedFirmware, ExpectedMeasurements};

/// Where Google publishes its launch endorsements (`tdx/…`, `sevsnp/…` under it).
pub const GOOGLE_ENDORSEMENTS_URL: &str =
    "https://storage.googleapis.com/gce_tcb_integrity/ovmf_x64_csm";

impl CollateralClient {
    /// Google's endorsement of `measurement` for `tee`, verified at `now` (unix seconds) under
    /// the configured root and naming `measurement`. `Ok(None)`: no root configured (nothing is
    /// fetched), or Google publishes none for it (404, or absent offline).
    pub async fn google_endorsement(
        &self,
        tee: GoogleTee,
        measurement: &Digest48,
        now: u64,
    ) -> Result<Option<EndorsedFirmware>, CollateralError> {
        let Some(root) = self.config.google_root.as_deref() else {
            return Ok(None);
        };
        let verify = |body: &[u8], from: &str| {
            GoogleEndorsement::parse(body)
                .and_then(|e| e.verify_naming(root, now, tee, measurement))
                .map_err(|error| CollateralError::Endorsement {
                    url: from.to_owned(),
                    error,
                })
        };
        let path = format!("/{}/{measurement}.binarypb", tee.dir());
        if let Some(dir) = &self.config.google_dir {
            let file = dir.join(tee.dir()).join(format!("{measurement}.binarypb"));
            let from = file.display().to_string();
            return match std::fs::read(&file) {
                Ok(body) => verify(&body, &from).map(Some),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(CollateralError::Cache {
                    path: from,
                    reason: e.to_string(),
                }),
            };
        }
        let url = format!("{}{path}", self.config.google_url.trim_end_matches('/'));
        let check = |entry: &super::Entry| verify(&entry.body, &url).map(|e| Some(e.valid_until));
        match self
            .answer(format!("google:{path}"), url.clone(), &[], now, check)
            .await
        {
            Ok(entry) => verify(&entry.body, &url).map(Some),
            Err(CollateralError::NotFound { .. } | CollateralError::Offline { .. }) => {
                tracing::info!(tee = tee.dir(), %measurement, "Google publishes no launch endorsement for this measurement");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// [`Self::google_endorsement`] from synchronous code (on its own thread and runtime).
    pub fn google_endorsement_blocking(
        &self,
        tee: GoogleTee,
        measurement: &Digest48,
        now: SystemTime,
    ) -> Result<Option<EndorsedFirmware>, CollateralError> {
        block_on(self.google_endorsement(tee, measurement, unix(now)))
    }
}

/// The Google endorsement that could decide `evidence` under `expected` at `now`: its TDX
/// MRTD, when the policy accepts UEFI boots (`uefi`) and neither the exact registers, the
/// allow-list nor a loaded endorsement already accept it; its SNP launch digest, when a TPM
/// quote comes with it and neither the image's digests, the allow-list nor a loaded endorsement
/// accept it. Read from the unverified evidence: only the fetch depends on it, the decision is
/// the verification's.
pub(crate) fn wanted(
    evidence: &Evidence,
    expected: &ExpectedMeasurements,
    now: u64,
) -> Option<(GoogleTee, Digest48)> {
    match evidence {
        Evidence::Tdx(e) => {
            if !expected.uefi.iter().any(|p| p.prediction.is_tdx()) {
                return None;
            }
            let quote = dcap_qvl::quote::Quote::parse(&e.quote).ok()?;
            let td = quote.report.as_td10()?;
            let got = crate::tdx::verify::registers(td);
            let known = expected.check_tdx(&got).is_ok()
                || expected.tdx_firmware.iter().any(|f| f.mrtd == got.mrtd)
                || expected.tdx_endorsement(&got.mrtd, now).is_some();
            (!known).then_some((GoogleTee::Tdx, got.mrtd))
        }
        Evidence::Snp(e) => {
            e.tpm.as_ref()?;
            let digest = Digest48(
                e.report
                    .get(crate::snp::layout::MEASUREMENT)?
                    .try_into()
                    .ok()?,
            );
            // Unverified here: it only decides whether to fetch.
            let id_key: [u8; 48] = e
                .report
                .get(crate::snp::layout::ID_KEY_DIGEST)?
                .try_into()
                .ok()?;
            let known = expected.snp.iter().any(|m| m.launch_digest == digest)
                || expected.snp_cloud_firmware(&digest, &id_key, now).is_some();
            (!known).then_some((GoogleTee::Snp, digest))
        }
        // Azure's paravisor is not Google's firmware; `none` has no measurement.
        Evidence::AzureVtpm(_) | Evidence::None(_) => None,
    }
}
