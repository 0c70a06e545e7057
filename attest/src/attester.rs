//! Getting evidence on this machine: detection once, then evidence per request.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::detect::{self, Detection, Interface, SEV_GUEST_DEVICE};
use crate::error::Error;
use crate::evidence::Evidence;
use crate::host::{Fs, RootedFs};
use crate::snp::{DerivedKey, DerivedKeyRequest};
use crate::tpm::HclReportKind;
use crate::vtpm::get::{ccel_log, LocalTpm};
use crate::{none, snp, tdx, tsm, Tee};

/// This machine's TEE and TPM, detected once, and the way to their evidence.
#[derive(Debug, Clone)]
pub struct Attester {
    fs: Arc<dyn Fs>,
    detection: Detection,
    tpm: Option<LocalTpm>,
}

impl Attester {
    /// Detects the TEE of this machine (file-system root `/`).
    pub fn detect() -> Self {
        Self::detect_at("/")
    }

    /// Detects the TEE as seen under `root` (a fake `/sys` and `/dev` tree in tests). The
    /// `/dev/sev-guest` ioctls always use the real device.
    pub fn detect_at(root: impl Into<PathBuf>) -> Self {
        Self::with_fs(Arc::new(RootedFs::new(root)))
    }

    pub(crate) fn with_fs(fs: Arc<dyn Fs>) -> Self {
        let tpm = LocalTpm::probe(fs.as_ref());
        Self::with_fs_and_tpm(fs, tpm)
    }

    /// Detection with the TPM given (tests: a swtpm).
    pub(crate) fn with_fs_and_tpm(fs: Arc<dyn Fs>, tpm: Option<LocalTpm>) -> Self {
        let mut detection = detect::probe(fs.as_ref());
        if let Some(kind) = tpm.as_ref().and_then(|t| t.azure) {
            detection = Detection {
                tee: match kind {
                    HclReportKind::Snp => Tee::Snp,
                    HclReportKind::Tdx => Tee::Tdx,
                },
                interface: Interface::AzureVtpm,
            };
        }
        match detection.tee {
            Tee::None => tracing::warn!(
                "no TEE found (no configfs-tsm provider, no /dev/sev-guest, no /dev/tdx_guest): evidence will be `none`, marked insecure"
            ),
            tee => tracing::info!(%tee, interface = ?detection.interface, "TEE detected"),
        }
        Attester { fs, detection, tpm }
    }

    /// True when the machine has a TPM: its evidence carries a quote (and the TPM event log).
    pub fn has_tpm(&self) -> bool {
        self.tpm.is_some()
    }

    /// True when [`Attester::snp_derived_key`] can work: SEV-SNP with the guest device (not
    /// Azure, whose paravisor holds it).
    pub fn has_snp_derived_key(&self) -> bool {
        self.detection.tee == Tee::Snp && self.detection.interface != Interface::AzureVtpm
    }

    /// The TEE found.
    pub fn tee(&self) -> Tee {
        self.detection.tee
    }

    /// The TEE and the interface its evidence comes from.
    pub fn detection(&self) -> Detection {
        self.detection
    }

    /// Fresh evidence carrying `report_data` (see [`crate::report_data_for`]): the TEE's, with
    /// a TPM quote over PCRs 0–15 bound to the same report_data and the TPM event log when the
    /// machine has a TPM (a TPM that fails is an error), and a TDX guest's CCEL log. On Azure,
    /// the vTPM's evidence (HCL report and quote).
    pub fn evidence(&self, report_data: [u8; 64]) -> Result<Evidence, Error> {
        let fs = self.fs.as_ref();
        if let (Interface::AzureVtpm, Some(tpm)) = (self.detection.interface, &self.tpm) {
            return tpm
                .azure_evidence(fs, &report_data)
                .map(Evidence::AzureVtpm);
        }
        let mut evidence = self.tee_evidence(fs, report_data)?;
        if let Evidence::Tdx(t) = &mut evidence {
            t.event_log = ccel_log(fs)?;
        }
        if let Some(tpm) = &self.tpm {
            let quote = Some(tpm.evidence(fs, &report_data)?);
            match &mut evidence {
                Evidence::Snp(e) => e.tpm = quote,
                Evidence::Tdx(e) => e.tpm = quote,
                Evidence::None(e) => e.tpm = quote,
                Evidence::AzureVtpm(_) => {}
            }
        }
        Ok(evidence)
    }

    fn tee_evidence(
        &self,
        fs: &dyn crate::host::Fs,
        report_data: [u8; 64],
    ) -> Result<Evidence, Error> {
        match (self.detection.tee, self.detection.interface) {
            (Tee::None, _) => Ok(Evidence::None(none::evidence(&report_data))),
            (Tee::Snp, Interface::ConfigfsTsm) => {
                match tsm::report(fs, &report_data)
                    .and_then(|r| expect_provider(r, Tee::Snp))
                    .and_then(|r| snp::get::from_tsm(r, &report_data))
                {
                    Ok(e) => Ok(Evidence::Snp(e)),
                    Err(e) if fs.exists(Path::new(SEV_GUEST_DEVICE)) => {
                        tracing::warn!(error = %e, "configfs-tsm SNP report failed; using /dev/sev-guest");
                        snp::get::from_device(&report_data).map(Evidence::Snp)
                    }
                    Err(e) => Err(e),
                }
            }
            (Tee::Snp, _) => snp::get::from_device(&report_data).map(Evidence::Snp),
            (Tee::Tdx, Interface::ConfigfsTsm) => tsm::report(fs, &report_data)
                .and_then(|r| expect_provider(r, Tee::Tdx))
                .and_then(|r| tdx::get::from_tsm(r, &report_data))
                .map(Evidence::Tdx),
            (Tee::Tdx, _) => Err(Error::TdxQuoteNeedsConfigfs),
        }
    }

    /// A key derived by the AMD secure processor (SEV-SNP only, through `/dev/sev-guest`).
    pub fn snp_derived_key(&self, request: &DerivedKeyRequest) -> Result<DerivedKey, Error> {
        if self.detection.tee != Tee::Snp {
            return Err(Error::Unsupported {
                what: "an SNP derived key",
                tee: self.detection.tee,
            });
        }
        if self.detection.interface == Interface::AzureVtpm {
            return Err(Error::Unsupported {
                what: "an SNP derived key on Azure (the paravisor holds the SEV guest device)",
                tee: self.detection.tee,
            });
        }
        snp::get::derived_key(request)
    }
}

/// The entry's provider must still be the one detection found.
fn expect_provider(report: tsm::TsmReport, tee: Tee) -> Result<tsm::TsmReport, Error> {
    if tsm::tee_of_provider(&report.provider) == Some(tee) {
        Ok(report)
    } else {
        Err(Error::UnknownProvider(report.provider))
    }
}

/// Detects this machine's TEE.
pub fn detect() -> Tee {
    Attester::detect().tee()
}

/// Fresh evidence from this machine's TEE carrying `report_data`.
pub fn evidence(report_data: [u8; 64]) -> Result<Evidence, Error> {
    Attester::detect().evidence(report_data)
}

/// A key derived by the AMD secure processor (SEV-SNP guests only).
pub fn snp_derived_key(request: &DerivedKeyRequest) -> Result<DerivedKey, Error> {
    Attester::detect().snp_derived_key(request)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::error::{SnpError, VerifyError};
    use crate::evidence::{CertKind, SnpCert};
    use crate::policy::Policy;
    use crate::testing::{vectors, FakeKernel};
    use crate::tsm::REPORT_DIR;

    const RD: [u8; 64] = [0x5a; 64];

    fn touch(root: &Path, path: &str) {
        let p = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"").unwrap();
    }

    fn entries_left(root: &Path) -> usize {
        std::fs::read_dir(root.join(REPORT_DIR.trim_start_matches('/')))
            .unwrap()
            .count()
    }

    /// The Milan vector with our report_data in place (its signature no longer matches).
    fn snp_outblob(inblob: &[u8]) -> Vec<u8> {
        let mut r = vectors::milan_report();
        r[crate::snp::layout::REPORT_DATA].copy_from_slice(inblob);
        r
    }

    /// The v4 TDX vector with our report_data in place.
    fn tdx_outblob(inblob: &[u8]) -> Vec<u8> {
        let mut q = vectors::TDX_V4.to_vec();
        q[568..632].copy_from_slice(inblob);
        q
    }

    fn ignores_inblob(_: &[u8]) -> Vec<u8> {
        vectors::milan_report()
    }

    #[test]
    fn no_tee_gives_insecure_none_evidence_that_verifiers_refuse_by_default() {
        let root = tempfile::tempdir().unwrap();
        let a = Attester::detect_at(root.path());
        assert_eq!(
            a.detection(),
            Detection {
                tee: Tee::None,
                interface: Interface::None
            }
        );
        let e = a.evidence(RD).unwrap();
        assert!(e.is_insecure());
        assert_eq!(
            e,
            Evidence::None(crate::NoneEvidence {
                report_data: RD,
                tpm: None
            })
        );
        let now = std::time::SystemTime::now();
        assert_eq!(
            crate::verify(&e, &Policy::default(), now),
            Err(VerifyError::Insecure)
        );
        let dev = Policy {
            allow_insecure_dev: true,
            expected_report_data: Some(RD),
            ..Default::default()
        };
        let v = crate::verify(&e, &dev, now).unwrap();
        assert!(v.insecure);
        assert_eq!(v.tee, Tee::None);
        // Dev mode still checks the binding.
        let other = Policy {
            expected_report_data: Some([0; 64]),
            ..dev
        };
        assert!(matches!(
            crate::verify(&e, &other, now),
            Err(VerifyError::ReportDataMismatch { .. })
        ));
        assert!(matches!(
            a.snp_derived_key(&DerivedKeyRequest::default()),
            Err(Error::Unsupported { tee: Tee::None, .. })
        ));
    }

    #[test]
    fn guest_devices_are_detected_without_configfs() {
        let root = tempfile::tempdir().unwrap();
        touch(root.path(), "/dev/sev-guest");
        assert_eq!(
            Attester::detect_at(root.path()).detection(),
            Detection {
                tee: Tee::Snp,
                interface: Interface::SevGuestDevice
            }
        );
        let root = tempfile::tempdir().unwrap();
        touch(root.path(), "/dev/tdx_guest");
        let a = Attester::detect_at(root.path());
        assert_eq!(
            a.detection(),
            Detection {
                tee: Tee::Tdx,
                interface: Interface::TdxGuestDevice
            }
        );
        assert!(matches!(a.evidence(RD), Err(Error::TdxQuoteNeedsConfigfs)));
    }

    #[test]
    fn configfs_is_preferred_and_serves_snp_reports_with_the_certificate_table() {
        let root = tempfile::tempdir().unwrap();
        touch(root.path(), "/dev/sev-guest");
        let mut kernel = FakeKernel::new(root.path(), "sev_guest", snp_outblob);
        let vcek = SnpCert {
            kind: CertKind::Vcek,
            der: vectors::MILAN_VCEK.to_vec(),
        };
        kernel.auxblob = crate::snp::certs::encode(std::slice::from_ref(&vcek));
        let kernel = Arc::new(kernel);
        let a = Attester::with_fs(kernel.clone());
        assert_eq!(
            a.detection(),
            Detection {
                tee: Tee::Snp,
                interface: Interface::ConfigfsTsm
            }
        );
        let Evidence::Snp(e) = a.evidence(RD).unwrap() else {
            panic!("expected SNP evidence")
        };
        assert_eq!(&e.report[crate::snp::layout::REPORT_DATA], &RD[..]);
        assert_eq!(e.certs, [vcek]);
        // Every entry made (one for detection, one for the report) was removed.
        assert_eq!(kernel.created.lock().unwrap().len(), 2);
        assert_eq!(entries_left(root.path()), 0);
        // Our report_data in a report the firmware signed over other data: refused.
        let mut p = Policy::default();
        p.snp.allow_smt = true;
        assert_eq!(
            crate::verify(&Evidence::Snp(e), &p, vectors::snp_now()),
            Err(VerifyError::Snp(SnpError::BadSignature))
        );
    }

    #[test]
    fn configfs_serves_tdx_quotes() {
        let root = tempfile::tempdir().unwrap();
        let a = Attester::with_fs(Arc::new(FakeKernel::new(
            root.path(),
            "tdx_guest",
            tdx_outblob,
        )));
        assert_eq!(a.tee(), Tee::Tdx);
        let Evidence::Tdx(e) = a.evidence(RD).unwrap() else {
            panic!("expected TDX evidence")
        };
        assert_eq!(&e.quote[568..632], &RD[..]);
        assert!(e.collateral.is_none());
        assert_eq!(entries_left(root.path()), 0);
    }

    #[test]
    fn a_generation_change_while_reading_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let mut kernel = FakeKernel::new(root.path(), "sev_guest", snp_outblob);
        kernel.racy = true;
        let a = Attester::with_fs(Arc::new(kernel));
        assert!(matches!(
            a.evidence(RD),
            Err(Error::GenerationChanged {
                before: 1,
                after: 2
            })
        ));
        assert_eq!(entries_left(root.path()), 0);
    }

    #[test]
    fn a_report_without_our_report_data_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let a = Attester::with_fs(Arc::new(FakeKernel::new(
            root.path(),
            "sev_guest",
            ignores_inblob,
        )));
        assert!(matches!(
            a.evidence(RD),
            Err(Error::ReportDataNotEchoed("SNP report"))
        ));
    }

    #[test]
    fn an_unknown_provider_falls_back_to_the_devices() {
        let root = tempfile::tempdir().unwrap();
        touch(root.path(), "/dev/tdx_guest");
        let a = Attester::with_fs(Arc::new(FakeKernel::new(
            root.path(),
            "arm_cca_guest",
            tdx_outblob,
        )));
        assert_eq!(a.detection().interface, Interface::TdxGuestDevice);
        assert_eq!(entries_left(root.path()), 0);
    }

    #[test]
    fn a_configfs_directory_without_a_provider_falls_back_and_leaves_nothing() {
        // A plain directory: mkdir works but no kernel fills the entry.
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(REPORT_DIR.trim_start_matches('/'))).unwrap();
        let a = Attester::detect_at(root.path());
        assert_eq!(a.tee(), Tee::None);
        assert_eq!(entries_left(root.path()), 0);
    }
}
