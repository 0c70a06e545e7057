//! Test support: the public vectors under `testdata/` and a fake configfs-tsm kernel.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::evidence::{CertKind, SnpCert, SnpEvidence, TdxCollateral, TdxEvidence};
use crate::host::{Fs, RootedFs};
use crate::tsm::REPORT_DIR;

pub(crate) mod vectors {
    use super::*;
    use crate::eventlog::{EventLog, EventType, HashAlg, LogKind, MeasuredRegister};
    use crate::eventlog::{PlatformPrediction, PredictedEvent};
    use crate::measurement::{ExpectedMeasurements, TdxFirmware, TdxMeasurements, UefiPlatform};

    pub(crate) const MILAN_REPORT_HEX: &str = include_str!("../testdata/snp/report_milan.hex");
    pub(crate) const MILAN_VCEK: &[u8] = include_bytes!("../testdata/snp/vcek_milan.der");
    pub(crate) const TURIN_VCEK: &[u8] = include_bytes!("../testdata/snp/vcek_turin.der");
    pub(crate) const GCP_V5_VMPL0: &[u8] = include_bytes!("../testdata/snp/gcp_milan_v5_vmpl0.bin");
    pub(crate) const GCP_V5_VMPL0_VCEK: &[u8] =
        include_bytes!("../testdata/snp/gcp_milan_v5_vmpl0_vcek.der");
    pub(crate) const GCP_V5_VMPL1: &[u8] = include_bytes!("../testdata/snp/gcp_milan_v5_vmpl1.bin");
    pub(crate) const GCP_V5_VMPL1_VCEK: &[u8] =
        include_bytes!("../testdata/snp/gcp_milan_v5_vmpl1_vcek.der");

    /// The registers of a recorded TDX quote's TD report, read with dcap-qvl's parser (its
    /// signature is not checked here).
    pub(crate) fn quote_registers(quote: &[u8]) -> crate::measurement::TdxMeasurements {
        let quote = dcap_qvl::quote::Quote::parse(quote).unwrap();
        crate::tdx::verify::registers(quote.report.as_td10().unwrap())
    }

    pub(crate) const TDX_V4: &[u8] = include_bytes!("../testdata/tdx/tdx_quote");
    pub(crate) const TDX_V4_COLLATERAL: &str =
        include_str!("../testdata/tdx/tdx_quote_collateral.json");
    pub(crate) const TDX_V5: &[u8] = include_bytes!("../testdata/tdx/tdx_quote_td15ex");
    pub(crate) const TDX_V5_COLLATERAL: &str =
        include_str!("../testdata/tdx/tdx_quote_td15ex_collateral.json");
    pub(crate) const TDX_OUTDATED: &[u8] = include_bytes!("../testdata/tdx/tdx_quote_outdated");
    pub(crate) const TDX_OUTDATED_COLLATERAL: &str =
        include_str!("../testdata/tdx/tdx_quote_outdated_collateral.json");

    /// Google Cloud C3 TDX, Container-Optimized OS 113: the CCEL log area (256 KiB, 0xFF padded)
    /// and the quote taken after boot (google/go-tdx-guest; testdata/eventlog/README.md).
    pub(crate) const GCP_TDX_CCEL: &[u8] =
        include_bytes!("../testdata/eventlog/gcp_tdx_cos113_ccel.bin");
    pub(crate) const GCP_TDX_QUOTE: &[u8] =
        include_bytes!("../testdata/eventlog/gcp_tdx_cos113_quote.bin");
    /// Intel's collateral for that quote's platform (FMSPC 00806F050000): the TCB info recorded
    /// by automata-network, the QE identity and CRLs of dcap-qvl's sample (testdata/README.md).
    pub(crate) const GCP_TDX_COLLATERAL: &str =
        include_str!("../testdata/tdx/gcp_tdx_cos113_collateral.json");
    /// Google Compute Engine N2D SEV-SNP, Ubuntu 24.04: the vTPM's event log (go-tpm-tools).
    pub(crate) const GCE_TPM_LOG: &[u8] =
        include_bytes!("../testdata/eventlog/gce_ubuntu2404_sevsnp_tpm.bin");
    /// A laptop's TPM event log with a StartupLocality 3 event (go-tpm-tools).
    pub(crate) const LOCALITY3_TPM_LOG: &[u8] =
        include_bytes!("../testdata/eventlog/glinux_laptop_locality3_tpm.bin");

    /// The recorded GCP quote's registers (read without checking its signature).
    pub(crate) fn gcp_registers() -> TdxMeasurements {
        quote_registers(GCP_TDX_QUOTE)
    }

    /// Predictions for the recorded boot: its two boot applications in RTMR[1], RTMR[1..2] values.
    pub(crate) fn gcp_prediction(app_digests: &[Vec<u8>]) -> UefiPlatform {
        let got = gcp_registers();
        let rtmr1 = MeasuredRegister::Rtmr(1);
        UefiPlatform {
            platform: "gcp-tdx".into(),
            prediction: PlatformPrediction {
                trust: "Google's TDX firmware".into(),
                closed: Default::default(),
                events: app_digests
                    .iter()
                    .map(|d| PredictedEvent {
                        register: rtmr1,
                        event_type: EventType::EfiBootServicesApplication,
                        digest_alg: HashAlg::Sha384,
                        digest: d.clone(),
                        what: "boot application".into(),
                        optional: false,
                    })
                    .collect(),
                values: [
                    (rtmr1, got.rtmr1.0.to_vec()),
                    (MeasuredRegister::Rtmr(2), got.rtmr2.0.to_vec()),
                ]
                .into(),
            },
        }
    }

    /// The Authenticode digests of the recorded boot's applications (shim, GRUB), from its log.
    pub(crate) fn recorded_apps() -> Vec<Vec<u8>> {
        EventLog::parse(GCP_TDX_CCEL, LogKind::Ccel)
            .unwrap()
            .events
            .iter()
            .filter(|e| e.event_type == EventType::EfiBootServicesApplication)
            .map(|e| e.digest(HashAlg::Sha384).unwrap().to_vec())
            .collect()
    }

    /// Google's recorded C3 firmware allowed by its MRTD, and the recorded boot's predictions.
    pub(crate) fn gcp_policy() -> ExpectedMeasurements {
        ExpectedMeasurements {
            uefi: vec![gcp_prediction(&recorded_apps())],
            tdx_firmware: vec![TdxFirmware {
                mrtd: gcp_registers().mrtd,
                rtmr0: None,
                label: Some("Google Cloud C3 TDX firmware (recorded)".into()),
            }],
            ..Default::default()
        }
    }

    /// A time inside every SNP vector's certificates' validity (2026-01-01).
    pub(crate) fn snp_now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    pub(crate) fn milan_report() -> Vec<u8> {
        hex::decode(MILAN_REPORT_HEX.trim()).unwrap()
    }

    pub(crate) fn snp(report: &[u8], vcek: &[u8]) -> SnpEvidence {
        SnpEvidence {
            report: report.to_vec(),
            certs: vec![SnpCert {
                kind: CertKind::Vcek,
                der: vcek.to_vec(),
            }],
            tpm: None,
        }
    }

    pub(crate) fn milan() -> SnpEvidence {
        snp(&milan_report(), MILAN_VCEK)
    }

    pub(crate) fn tdx(quote: &[u8], collateral: &str) -> TdxEvidence {
        TdxEvidence {
            quote: quote.to_vec(),
            collateral: Some(serde_json::from_str(collateral).unwrap()),
            event_log: None,
            tpm: None,
        }
    }

    /// The window in which every part of `c` is valid: the latest issue date of TCB info,
    /// QE identity and both CRLs, to the earliest next update.
    pub(crate) fn collateral_window(c: &TdxCollateral) -> (u64, u64) {
        use x509_cert::der::Decode;
        let json_dates = |json: &str| {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            (
                rfc3339(v["issueDate"].as_str().unwrap()),
                rfc3339(v["nextUpdate"].as_str().unwrap()),
            )
        };
        let mut from = 0u64;
        let mut to = u64::MAX;
        for (a, b) in [json_dates(&c.tcb_info), json_dates(&c.qe_identity)] {
            from = from.max(a);
            to = to.min(b);
        }
        for crl in [&c.root_ca_crl, &c.pck_crl] {
            let crl = x509_cert::crl::CertificateList::from_der(crl).unwrap();
            from = from.max(crl.tbs_cert_list.this_update.to_unix_duration().as_secs());
            if let Some(next) = crl.tbs_cert_list.next_update {
                to = to.min(next.to_unix_duration().as_secs());
            }
        }
        assert!(from < to, "collateral window is empty");
        (from, to)
    }

    /// The middle of the collateral's window.
    pub(crate) fn tdx_now(e: &TdxEvidence) -> SystemTime {
        let (from, to) = collateral_window(e.collateral.as_ref().unwrap());
        UNIX_EPOCH + Duration::from_secs(from + (to - from) / 2)
    }

    /// `YYYY-MM-DDTHH:MM:SSZ` → unix seconds.
    fn rfc3339(s: &str) -> u64 {
        let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
        let (y, m, d) = (n(0..4), n(5..7), n(8..10));
        let (hh, mm, ss) = (n(11..13), n(14..16), n(17..19));
        // Days from civil (Howard Hinnant's algorithm).
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        (days * 86_400 + hh * 3600 + mm * 60 + ss) as u64
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), 0);
        assert_eq!(rfc3339("2026-01-01T00:00:00Z"), 1_767_225_600);
        assert_eq!(rfc3339("2000-02-29T12:34:56Z"), 951_827_696);
    }
}

/// What the fake kernel puts in `outblob` for an inblob.
pub(crate) type Outblob = fn(&[u8]) -> Vec<u8>;

/// configfs-tsm emulated over a temporary directory: `mkdir` in the report directory creates
/// `provider` and `generation`; a write to `inblob` bumps `generation` and fills `outblob` and
/// `auxblob`. `racy` bumps `generation` again when `outblob` is read (another writer).
#[derive(Debug)]
pub(crate) struct FakeKernel {
    pub(crate) fs: RootedFs,
    pub(crate) provider: &'static str,
    pub(crate) outblob: Outblob,
    pub(crate) auxblob: Vec<u8>,
    pub(crate) racy: bool,
    pub(crate) created: Mutex<Vec<PathBuf>>,
}

impl FakeKernel {
    pub(crate) fn new(root: &Path, provider: &'static str, outblob: Outblob) -> Self {
        let fs = RootedFs::new(root);
        std::fs::create_dir_all(fs.real(Path::new(REPORT_DIR))).unwrap();
        FakeKernel {
            fs,
            provider,
            outblob,
            auxblob: Vec::new(),
            racy: false,
            created: Mutex::new(Vec::new()),
        }
    }

    fn in_report_dir(path: &Path) -> bool {
        path.parent() == Some(Path::new(REPORT_DIR))
    }

    fn bump(&self, entry: &Path) -> io::Result<()> {
        let g = entry.join("generation");
        let n: u64 = String::from_utf8_lossy(&self.fs.read(&g)?)
            .trim()
            .parse()
            .unwrap();
        std::fs::write(self.fs.real(&g), format!("{}\n", n + 1))
    }
}

impl Fs for FakeKernel {
    fn real(&self, path: &Path) -> PathBuf {
        self.fs.real(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.fs.is_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.fs.exists(path)
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.fs.create_dir(path)?;
        if Self::in_report_dir(path) {
            let real = self.fs.real(path);
            std::fs::write(real.join("provider"), format!("{}\n", self.provider))?;
            std::fs::write(real.join("generation"), "0\n")?;
            self.created.lock().unwrap().push(path.to_path_buf());
        }
        Ok(())
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        if Self::in_report_dir(path) {
            std::fs::remove_dir_all(self.fs.real(path))
        } else {
            self.fs.remove_dir(path)
        }
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let data = self.fs.read(path)?;
        if self.racy && path.file_name().is_some_and(|n| n == "outblob") {
            if let Some(entry) = path.parent() {
                self.bump(entry)?;
            }
        }
        Ok(data)
    }
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let entry = path.parent().filter(|p| Self::in_report_dir(p));
        match (entry, path.file_name()) {
            (Some(entry), Some(name)) if name == "inblob" => {
                let real = self.fs.real(entry);
                std::fs::write(real.join("inblob"), data)?;
                std::fs::write(real.join("outblob"), (self.outblob)(data))?;
                std::fs::write(real.join("auxblob"), &self.auxblob)?;
                self.bump(entry)
            }
            _ => self.fs.write(path, data),
        }
    }
}

/// A TPM log's PCR 4 boot applications as the manifest's predicted events (JSON), for
/// `gcp-snp-vtpm`-style policies over recorded logs.
pub(crate) fn pcr4_boot_apps_json(log: &crate::eventlog::EventLog) -> Vec<serde_json::Value> {
    use crate::eventlog::{EventType, HashAlg, MeasuredRegister};
    log.events
        .iter()
        .filter(|e| {
            e.register == MeasuredRegister::Pcr(4)
                && e.event_type == EventType::EfiBootServicesApplication
        })
        .filter_map(|e| {
            Some(serde_json::json!({"register": "PCR4", "event_type": "EV_EFI_BOOT_SERVICES_APPLICATION",
                "digest_alg": "sha256", "digest": hex::encode(e.digest(HashAlg::Sha256)?),
                "what": "a boot application of the recorded log"}))
        })
        .collect()
}

/// The first boot application's event (`EV_EFI_BOOT_SERVICES_APPLICATION`) of a recorded log,
/// for tests that tamper with it.
pub(crate) fn first_boot_app(log: &[u8], kind: crate::eventlog::LogKind) -> crate::eventlog::Event {
    crate::eventlog::EventLog::parse(log, kind)
        .unwrap()
        .events
        .into_iter()
        .find(|e| e.event_type == crate::eventlog::EventType::EfiBootServicesApplication)
        .unwrap()
}
