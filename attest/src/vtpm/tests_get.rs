//! The attester's side: a TPM that fails is an error, Azure's vTPM gives its own evidence kind,
//! a TDX guest's CCEL log is sent without its padding.

use std::sync::Arc;

use super::get::{LocalTpm, TpmPath};
use crate::eventlog::writer::LogWriter;
use crate::eventlog::{EventType, HashAlg};
use crate::host::RootedFs;
use crate::testing::{vectors, FakeKernel};
use crate::tpm::tests::azure_flow::{hcl_report, make_azure_ak, write_hcl_report};
use crate::tpm::tests::swtpm::Swtpm;
use crate::{Attester, Error, Evidence, Interface, Policy, Tee, VerifyError, VtpmError};

const RD: [u8; 64] = [0x6e; 64];

#[test]
fn a_tpm_device_that_does_not_answer_is_an_error_not_an_omission() {
    let root = tempfile::tempdir().unwrap();
    let dev = root.path().join("dev/tpmrm0");
    std::fs::create_dir_all(dev.parent().unwrap()).unwrap();
    std::fs::write(&dev, b"").unwrap(); // opens, but never answers a command
    let a = Attester::detect_at(root.path());
    assert!(a.has_tpm());
    assert_eq!(a.tee(), Tee::None);
    assert!(matches!(a.evidence(RD), Err(Error::Tpm(_))));

    // A swtpm that went away after detection.
    let (swtpm, tpm) = Swtpm::start();
    drop(tpm);
    let a = Attester::with_fs_and_tpm(
        Arc::new(RootedFs::new(root.path().join("elsewhere"))),
        Some(LocalTpm::at(TpmPath::Tcp(swtpm.addr()))),
    );
    drop(swtpm);
    assert!(matches!(a.evidence(RD), Err(Error::Tpm(_))));
}

#[test]
fn azure_vtpm_is_detected_and_gives_its_own_evidence_kind() {
    let (swtpm, mut tpm) = Swtpm::start();
    // What Azure's paravisor provides: a persistent RSA AK and the HCL report naming it (here
    // already carrying our report_data: swtpm does not refresh it).
    let ak = make_azure_ak(&mut tpm);
    let report = hcl_report(&ak.key, &RD);
    write_hcl_report(&mut tpm, &report);
    drop(tpm);

    let root = tempfile::tempdir().unwrap();
    let a = Attester::with_fs_and_tpm(
        Arc::new(RootedFs::new(root.path())),
        Some(LocalTpm::at(TpmPath::Tcp(swtpm.addr()))),
    );
    assert_eq!(a.detection().interface, Interface::AzureVtpm);
    assert_eq!(a.tee(), Tee::Snp);
    assert!(!a.has_snp_derived_key());
    assert!(matches!(
        a.snp_derived_key(&Default::default()),
        Err(Error::Unsupported { .. })
    ));
    let e = a.evidence(RD).unwrap();
    let Evidence::AzureVtpm(az) = &e else {
        panic!("Azure vTPM evidence, got {e:?}")
    };
    assert_eq!(az.hcl_report, report);
    assert_eq!(e.tee(), Tee::Snp);
    let json: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
    assert_eq!(json["tee"], "azure-vtpm");
    assert_eq!(Evidence::from_json(&e.to_json()).unwrap(), e);

    // Its SNP report needs the chip's VCEK from the verifier (the collateral client fetches it).
    assert!(crate::collateral::needs_collateral(&e, &Default::default()));

    // The report inside is not a signed SNP report (swtpm is not Azure): refused by the SNP
    // verifier, before anything of the vTPM is trusted.
    let mut p = Policy {
        expected_report_data: Some(RD),
        ..Default::default()
    };
    p.expected.uefi = super::tests::predictions(b"the UKI");
    assert!(matches!(
        crate::verify(&e, &p, std::time::SystemTime::now()),
        Err(VerifyError::Snp(_))
    ));

    // An HCL report holding a TDREPORT, sent without the quote Azure makes of it: the TDREPORT
    // is not verifiable off the machine, refused as such (no collateral would help).
    let mut tdx = az.clone();
    tdx.hcl_report[1216 + 8..1216 + 12].copy_from_slice(&4u32.to_le_bytes());
    let digest: [u8; 32] = tdx.hcl_report[32 + 0x50..32 + 0x70].try_into().unwrap();
    tdx.hcl_report[32 + 0x50..32 + 0x70].fill(0);
    tdx.hcl_report[32 + 128..32 + 160].copy_from_slice(&digest);
    let tdx = Evidence::AzureVtpm(tdx);
    assert_eq!(tdx.tee(), Tee::Tdx);
    assert!(!crate::collateral::needs_collateral(
        &tdx,
        &Default::default()
    ));
    assert_eq!(
        crate::verify(&tdx, &p, std::time::SystemTime::now()).unwrap_err(),
        VerifyError::Vtpm(VtpmError::AzureTdxNoQuote)
    );
}

#[test]
fn a_tdx_guest_sends_its_ccel_log_without_the_padding() {
    let root = tempfile::tempdir().unwrap();
    let mut w = LogWriter::new(1, &[HashAlg::Sha384]);
    w.measure(2, EventType::EfiAction, b"Calling EFI Application");
    let log = w.bytes();
    let mut area = log.clone();
    area.resize(64 << 10, 0xff);
    let file = root
        .path()
        .join(crate::boot_log::CCEL_LOG.trim_start_matches('/'));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, &area).unwrap();
    let kernel = FakeKernel::new(root.path(), "tdx_guest", |inblob| {
        let mut q = vectors::TDX_V4.to_vec();
        q[568..632].copy_from_slice(inblob);
        q
    });
    let a = Attester::with_fs_and_tpm(Arc::new(kernel), None);
    let Evidence::Tdx(t) = a.evidence(RD).unwrap() else {
        panic!("TDX evidence")
    };
    assert_eq!(t.event_log, Some(log));
    assert!(t.tpm.is_none());
}

#[test]
fn on_azure_tdx_the_evidence_carries_the_quote_imds_made_of_the_tdreport() {
    use crate::tpm::tests::imds::{http, quote_answer, serve_once};
    use crate::tpm::{HclReport, HclReportKind, Imds, ImdsError};

    let (swtpm, mut tpm) = Swtpm::start();
    let ak = make_azure_ak(&mut tpm);
    // Azure's TDX layout: report type 4, the runtime data's digest in the TDREPORT's REPORTDATA.
    let mut report = hcl_report(&ak.key, &RD);
    report[1216 + 8..1216 + 12].copy_from_slice(&4u32.to_le_bytes());
    let digest: [u8; 32] = report[32 + 0x50..32 + 0x70].try_into().unwrap();
    report[32 + 0x50..32 + 0x70].fill(0);
    report[32 + 128..32 + 160].copy_from_slice(&digest);
    let td_report = HclReport::parse(&report).unwrap().hw_report;
    write_hcl_report(&mut tpm, &report);
    drop(tpm);

    // A loopback IMDS answering with a "quote" of that TDREPORT (same REPORTDATA).
    let mut quote = vec![0x33; 5006];
    quote[568..632].copy_from_slice(&td_report[128..192]);
    let answer = quote.clone();
    let (imds, seen) = serve_once(move |_| Some(quote_answer(&answer)));
    let root = tempfile::tempdir().unwrap();
    let attester = |imds| {
        let mut local = LocalTpm::at(TpmPath::Tcp(swtpm.addr()));
        assert_eq!(local.azure, Some(HclReportKind::Tdx));
        local.imds = Imds {
            server: imds,
            timeout: std::time::Duration::from_secs(2),
        };
        Attester::with_fs_and_tpm(Arc::new(RootedFs::new(root.path())), Some(local))
    };
    let a = attester(imds);
    assert_eq!(a.tee(), Tee::Tdx);
    let e = a.evidence(RD).unwrap();
    let Evidence::AzureVtpm(az) = &e else {
        panic!("Azure vTPM evidence, got {e:?}")
    };
    assert_eq!(az.td_quote.as_deref(), Some(&quote[..]));
    let seen = seen.recv().unwrap();
    let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    use base64::Engine as _;
    let sent = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body["report"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        sent, td_report,
        "the HCL report's TDREPORT is what IMDS is asked to quote"
    );
    assert_eq!(Evidence::from_json(&e.to_json()).unwrap(), e);

    // IMDS failing: no evidence, the reason named (not evidence without its quote).
    let (imds, _seen) = serve_once(|_| Some(http(500, b"{}")));
    assert!(matches!(
        attester(imds).evidence(RD),
        Err(Error::AzureImds(ImdsError::Status { status: 500, .. }))
    ));
}
