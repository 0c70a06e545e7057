//! Verification time per SEV-SNP report (VCEK- and VLEK-signed) and per TDX quote (with
//! Google's C3 quote also its CCEL log and image check), of a TDX boot event log alone (replay
//! against the quote's RTMRs plus the image check), and of TPM evidence (quote, 45 KB log
//! replayed, image check), on the public test vectors.
//!
//! `attest-bench [runs]` (default 200): one warm-up verification each (loads AMD's roots), then
//! `runs` timed verifications; prints min / median / max in milliseconds.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use attest::{
    CertKind, Digest48, Evidence, ExpectedMeasurements, Policy, SnpCert, SnpEvidence,
    SnpMeasurement, TdxEvidence, TdxFirmware, TdxMeasurements, UefiPlatform,
};
use base64::Engine as _;

const MILAN_REPORT_HEX: &str = include_str!("../../testdata/snp/report_milan.hex");
const MILAN_VCEK: &[u8] = include_bytes!("../../testdata/snp/vcek_milan.der");
const GCP_REPORT: &[u8] = include_bytes!("../../testdata/snp/gcp_milan_v5_vmpl0.bin");
const GCP_VCEK: &[u8] = include_bytes!("../../testdata/snp/gcp_milan_v5_vmpl0_vcek.der");
const TDX_V4: &[u8] = include_bytes!("../../testdata/tdx/tdx_quote");
const TDX_V4_COLLATERAL: &str = include_str!("../../testdata/tdx/tdx_quote_collateral.json");
const TDX_V5: &[u8] = include_bytes!("../../testdata/tdx/tdx_quote_td15ex");
const TDX_V5_COLLATERAL: &str = include_str!("../../testdata/tdx/tdx_quote_td15ex_collateral.json");
const GCP_CCEL: &[u8] = include_bytes!("../../testdata/eventlog/gcp_tdx_cos113_ccel.bin");
const GCP_TDX_QUOTE: &[u8] = include_bytes!("../../testdata/eventlog/gcp_tdx_cos113_quote.bin");
const GCP_TDX_COLLATERAL: &str = include_str!("../../testdata/tdx/gcp_tdx_cos113_collateral.json");
/// AWS c6a: a VLEK-signed report and the host's certificate table, base64 in a JSON document.
const AWS_VLEK: &str = include_str!("../../testdata/snp/aws_c6a_vlek_identity.json");
/// `none` evidence with a swtpm quote over PCRs 0–15 and Google's 45 KB N2D log (recorded by
/// attest's `record_swtpm_evidence`), with its policy (pinned AK, the log's boot applications).
const SWTPM_EVIDENCE: &str = include_str!("../../testdata/tpm/swtpm_gce_log_evidence.json");

/// Inside the SNP certificates' validity (2026-01-01).
const SNP_NOW: u64 = 1_767_225_600;
/// Inside the v4 collateral's window (2025-07-01).
const TDX_V4_NOW: u64 = 1_751_328_000;
/// Inside the v5 collateral's window (2026-10-20).
const TDX_V5_NOW: u64 = 1_792_454_400;
/// Inside the GCP C3 collateral's window (2025-06-26).
const GCP_TDX_NOW: u64 = 1_750_975_000;
/// Inside the AWS VLEK's validity (2026-10-07).
const AWS_NOW: u64 = 1_791_400_000;

struct Case {
    name: &'static str,
    evidence: Evidence,
    policy: Policy,
    now: SystemTime,
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200)
        .max(1);
    let cases = match cases() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("attest-bench: bad test vector: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "attest-bench: {runs} verifications per case ({} build)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    for case in &cases {
        time(case.name, runs, || {
            attest::verify(&case.evidence, &case.policy, case.now)
                .map(drop)
                .map_err(|e| e.to_string())
        });
    }
    match boot_log_case() {
        Ok((rtmrs, prediction)) => time("TDX CCEL log (GCP C3) + image", runs, || {
            let replayed = attest::eventlog::verify_tdx_event_log(GCP_CCEL, &rtmrs)
                .map_err(|e| e.to_string())?;
            attest::eventlog::check_image_events(&replayed, &prediction).map_err(|e| e.to_string())
        }),
        Err(e) => {
            eprintln!("attest-bench: bad test vector: {e}");
            std::process::exit(2);
        }
    }
}

/// Runs `check` once (warm-up), then `runs` timed times; exits on the first failure.
fn time(name: &str, runs: usize, check: impl Fn() -> Result<(), String>) {
    if let Err(e) = check() {
        eprintln!("attest-bench: {name} does not verify: {e}");
        std::process::exit(1);
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let result = check();
        times.push(start.elapsed());
        if let Err(e) = result {
            eprintln!("attest-bench: {name} stopped verifying: {e}");
            std::process::exit(1);
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{:<32} min {:>8.3} ms   median {:>8.3} ms   max {:>8.3} ms",
        name,
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
}

/// The recorded GCP quote's RTMRs and a prediction of its boot (its two boot applications in
/// RTMR[1], RTMR[1..2] values), as the image check would get them from a manifest.
fn boot_log_case() -> Result<([Digest48; 4], attest::eventlog::PlatformPrediction), String> {
    use attest::eventlog::{EventLog, EventType, HashAlg, LogKind, MeasuredRegister};
    let rtmr = |i: usize| -> Result<Digest48, String> {
        let at = 48 + 328 + 48 * i;
        GCP_TDX_QUOTE
            .get(at..at + 48)
            .and_then(|b| b.try_into().ok())
            .map(Digest48)
            .ok_or_else(|| "short quote".to_string())
    };
    let rtmrs = [rtmr(0)?, rtmr(1)?, rtmr(2)?, rtmr(3)?];
    let log = EventLog::parse(GCP_CCEL, LogKind::Ccel).map_err(|e| e.to_string())?;
    let events = log
        .events
        .iter()
        .filter(|e| e.event_type == EventType::EfiBootServicesApplication)
        .map(|e| attest::eventlog::PredictedEvent {
            register: e.register,
            event_type: e.event_type,
            digest_alg: HashAlg::Sha384,
            digest: e.digest(HashAlg::Sha384).unwrap_or_default().to_vec(),
            what: "boot application".into(),
            optional: false,
        })
        .collect();
    let values = [1, 2]
        .map(|i| (MeasuredRegister::Rtmr(i as u8), rtmrs[i].0.to_vec()))
        .into();
    Ok((
        rtmrs,
        attest::eventlog::PlatformPrediction {
            trust: String::new(),
            closed: Default::default(),
            events,
            values,
        },
    ))
}

fn cases() -> Result<Vec<Case>, String> {
    let milan = hex::decode(MILAN_REPORT_HEX.trim()).map_err(|e| e.to_string())?;
    Ok(vec![
        snp_case("SNP report v2 (Milan)", milan, MILAN_VCEK)?,
        snp_case("SNP report v5 (Milan, GCP)", GCP_REPORT.to_vec(), GCP_VCEK)?,
        tdx_case("TDX quote v4", TDX_V4, TDX_V4_COLLATERAL, TDX_V4_NOW)?,
        tdx_case(
            "TDX quote v5 (TD 1.5)",
            TDX_V5,
            TDX_V5_COLLATERAL,
            TDX_V5_NOW,
        )?,
        aws_case()?,
        gcp_tdx_case()?,
        tpm_case()?,
    ])
}

/// The recorded AWS report with the VLEK from its certificate table (`{guid, offset, length}`
/// entries, the VLEK's GUID a8074bc2-…).
fn aws_case() -> Result<Case, String> {
    const VLEK_GUID: [u8; 16] = [
        0xa8, 0x07, 0x4b, 0xc2, 0xa2, 0x5a, 0x48, 0x3e, 0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8,
        0xa1,
    ];
    let v: serde_json::Value = serde_json::from_str(AWS_VLEK).map_err(|e| e.to_string())?;
    let b64 = |field: &str| -> Result<Vec<u8>, String> {
        base64::engine::general_purpose::STANDARD
            .decode(v[field].as_str().ok_or("no field")?)
            .map_err(|e| e.to_string())
    };
    let (report, table) = (b64("document")?, b64("aux")?);
    let entry = table.get(..24).ok_or("short table")?;
    let field =
        |at: usize| u32::from_le_bytes([entry[at], entry[at + 1], entry[at + 2], entry[at + 3]]);
    let (offset, length) = (field(16) as usize, field(20) as usize);
    if entry[..16] != VLEK_GUID {
        return Err("the first entry is not the VLEK".into());
    }
    let vlek = table.get(offset..offset + length).ok_or("short table")?;
    let mut case = snp_case("SNP report v5 (Milan, AWS VLEK)", report, vlek)?;
    if let Evidence::Snp(e) = &mut case.evidence {
        e.certs[0].kind = CertKind::Vlek;
    }
    case.policy.snp.min_tcb = attest::SnpMinTcb::default();
    case.now = UNIX_EPOCH + Duration::from_secs(AWS_NOW);
    Ok(case)
}

/// Google's C3 quote with Intel's collateral for its FMSPC and its CCEL log: quote, log replay
/// and image check, as `verify` does them for a cloud TDX boot.
fn gcp_tdx_case() -> Result<Case, String> {
    let (_, prediction) = boot_log_case()?;
    let mrtd = GCP_TDX_QUOTE
        .get(48 + 136..48 + 136 + 48)
        .and_then(|b| b.try_into().ok())
        .map(Digest48)
        .ok_or("short quote")?;
    Ok(Case {
        name: "TDX v4 + CCEL log (GCP C3)",
        evidence: Evidence::Tdx(TdxEvidence {
            quote: GCP_TDX_QUOTE.to_vec(),
            collateral: Some(serde_json::from_str(GCP_TDX_COLLATERAL).map_err(|e| e.to_string())?),
            event_log: Some(GCP_CCEL.to_vec()),
            tpm: None,
        }),
        policy: Policy {
            expected: ExpectedMeasurements {
                uefi: vec![UefiPlatform {
                    platform: "gcp-tdx".into(),
                    prediction,
                }],
                tdx_firmware: vec![TdxFirmware {
                    mrtd,
                    rtmr0: None,
                    label: None,
                }],
                ..Default::default()
            },
            ..Policy::default()
        },
        now: UNIX_EPOCH + Duration::from_secs(GCP_TDX_NOW),
    })
}

/// The recorded swtpm evidence: quote, AK trust (pinned), 45 KB log replay, image check.
fn tpm_case() -> Result<Case, String> {
    let v: serde_json::Value = serde_json::from_str(SWTPM_EVIDENCE).map_err(|e| e.to_string())?;
    let evidence = Evidence::from_json(&v["evidence"].to_string()).map_err(|e| e.to_string())?;
    let mut policy: Policy =
        serde_json::from_value(v["policy"].clone()).map_err(|e| e.to_string())?;
    policy.expected_report_data = Some([0x42; 64]);
    Ok(Case {
        name: "TPM quote + 45 KB log (swtpm)",
        evidence,
        policy,
        now: SystemTime::now(),
    })
}

fn snp_case(name: &'static str, report: Vec<u8>, vcek: &[u8]) -> Result<Case, String> {
    let digest: [u8; 48] = report
        .get(0x90..0xC0)
        .and_then(|s| s.try_into().ok())
        .ok_or("short report")?;
    let mut policy = Policy::default();
    policy.snp.allow_smt = true;
    policy.snp.vmpl = 0;
    // The recorded Milan report (2022) predates AMD-SB-3019's minimum TCB; the bench times the
    // checks, not that policy.
    policy.snp.min_tcb = attest::SnpMinTcb::none();
    policy.expected.snp.push(SnpMeasurement {
        launch_digest: Digest48(digest),
        label: None,
    });
    Ok(Case {
        name,
        evidence: Evidence::Snp(SnpEvidence {
            report,
            certs: vec![SnpCert {
                kind: CertKind::Vcek,
                der: vcek.to_vec(),
            }],
            tpm: None,
        }),
        policy,
        now: UNIX_EPOCH + Duration::from_secs(SNP_NOW),
    })
}

fn tdx_case(name: &'static str, quote: &[u8], collateral: &str, now: u64) -> Result<Case, String> {
    let collateral = serde_json::from_str(collateral).map_err(|e| e.to_string())?;
    let reg = |offset: usize| -> Result<Digest48, String> {
        quote
            .get(offset..offset + 48)
            .and_then(|s| s.try_into().ok())
            .map(Digest48)
            .ok_or_else(|| "short quote".to_string())
    };
    // TD report body: at 48 (v4) or 54 (v5: body type and size first).
    let body = if quote.first() == Some(&5) { 54 } else { 48 };
    let mut policy = Policy::default();
    policy.expected.tdx.push(TdxMeasurements {
        mrtd: reg(body + 136)?,
        rtmr0: reg(body + 328)?,
        rtmr1: reg(body + 376)?,
        rtmr2: reg(body + 424)?,
        rtmr3: reg(body + 472)?,
        label: None,
    });
    Ok(Case {
        name,
        evidence: Evidence::Tdx(TdxEvidence {
            quote: quote.to_vec(),
            collateral: Some(collateral),
            event_log: None,
            tpm: None,
        }),
        policy,
        now: UNIX_EPOCH + Duration::from_secs(now),
    })
}
