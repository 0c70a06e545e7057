//! The recorded swtpm evidence of `testdata/tpm/` (the benchmark's TPM case): a swtpm whose PCRs
//! were extended with every event of Google's recorded N2D vTPM log (45 KB), quoted by our
//! client, with that log. `record_swtpm_evidence` (ignored) writes it again.

use std::sync::Arc;

use super::get::{LocalTpm, TpmPath};
use crate::eventlog::{EventLog, EventType, HashAlg, LogKind, MeasuredRegister};
use crate::host::RootedFs;
use crate::tpm::tests::swtpm::Swtpm;
use crate::tpm::Hierarchy;
use crate::{boot_log, AkName, AkTrust, Attester, Evidence, Policy};

const GCE_LOG: &[u8] = include_bytes!("../../testdata/eventlog/gce_ubuntu2404_sevsnp_tpm.bin");
const RECORDED: &str = include_str!("../../testdata/tpm/swtpm_gce_log_evidence.json");
/// The report_data the recorded evidence is bound to.
pub(crate) const RECORDED_REPORT_DATA: [u8; 64] = [0x42; 64];

/// The recorded file: the evidence, the swtpm's AK name, and the policy's predictions (the
/// log's boot applications in PCR4).
pub(crate) fn recorded() -> (Evidence, Policy) {
    let v: serde_json::Value = serde_json::from_str(RECORDED).unwrap();
    let evidence = Evidence::from_json(&v["evidence"].to_string()).unwrap();
    let mut policy: Policy = serde_json::from_value(v["policy"].clone()).unwrap();
    policy.expected_report_data = Some(RECORDED_REPORT_DATA);
    (evidence, policy)
}

#[test]
fn the_recorded_swtpm_evidence_verifies() {
    let (e, p) = recorded();
    let v = crate::verify(&e, &p, std::time::SystemTime::now()).unwrap();
    let t = v.tpm.unwrap();
    assert_eq!(t.ak_trust, AkTrust::Pinned);
    assert_eq!(t.uefi_platform.as_deref(), Some("gcp-snp-vtpm"));
    assert_eq!(e.tpm().unwrap().event_log.as_deref(), Some(GCE_LOG));
}

#[test]
#[ignore = "writes attest/testdata/tpm/swtpm_gce_log_evidence.json"]
fn record_swtpm_evidence() {
    let (swtpm, mut tpm) = Swtpm::start();
    let log = EventLog::parse(GCE_LOG, LogKind::Tpm).unwrap();
    assert_eq!(log.replay(HashAlg::Sha256).unwrap().startup_locality, 0);
    for e in log
        .events
        .iter()
        .filter(|e| e.event_type != EventType::NoAction)
    {
        let MeasuredRegister::Pcr(i) = e.register else {
            panic!("a PCR")
        };
        let d: [u8; 32] = e.digest(HashAlg::Sha256).unwrap().try_into().unwrap();
        tpm.pcr_extend(i, &d).unwrap();
    }
    let (handle, ak) = tpm.create_primary_ak(Hierarchy::Endorsement).unwrap();
    tpm.flush_context(handle).unwrap();
    drop(tpm);
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join(boot_log::TPM_LOG.trim_start_matches('/'));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, GCE_LOG).unwrap();
    let a = Attester::with_fs_and_tpm(
        Arc::new(RootedFs::new(root.path())),
        Some(LocalTpm::at(TpmPath::Tcp(swtpm.addr()))),
    );
    let evidence = a.evidence(RECORDED_REPORT_DATA).unwrap();
    let events = crate::testing::pcr4_boot_apps_json(&log);
    let policy = serde_json::json!({
        "allow_insecure_dev": true,
        "trusted_tpm_aks": [AkName(ak.name().unwrap()).to_string()],
        "expected": {"uefi": [{"platform": "gcp-snp-vtpm", "prediction": {
            "trust": "swtpm replaying Google's recorded N2D log; AK pinned", "events": events}}]}
    });
    let out = serde_json::json!({
        "origin": "attest/src/vtpm/tests_recorded.rs record_swtpm_evidence: Debian swtpm 0.7.1 with Google's recorded N2D vTPM log (testdata/eventlog, Apache-2.0) extended into its PCRs",
        "evidence": serde_json::from_str::<serde_json::Value>(&evidence.to_json()).unwrap(),
        "policy": policy,
    });
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/tpm/swtpm_gce_log_evidence.json"
    );
    std::fs::write(path, serde_json::to_string_pretty(&out).unwrap() + "\n").unwrap();
}
