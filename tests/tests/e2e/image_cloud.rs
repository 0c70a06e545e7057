//! The appliance image on a machine that looks like a cloud's (issue 18, the guest side): a TPM
//! under UEFI firmware, and Azure's DMI asset tag.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{
    boot_with, bundle, guest_client, power_down, qemu_installed, wait_healthy, OVMF_CODE,
    OVMF_VARS, QEMU,
};

/// The DMI chassis asset tag Azure's VMs carry.
const AZURE_ASSET_TAG: &str = "7783-7084-3265-9085";

/// One request as the fake wire server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    headers: HashMap<String, String>,
    body: String,
}

const GOAL_STATE: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<GoalState>\
    <Version>2012-11-30</Version><Incarnation>5</Incarnation>\
    <Machine><ExpectedState>Started</ExpectedState></Machine>\
    <Container><ContainerId>0d3c1b8a-5e2f-4c8e-9a41-6b7f00e2d9aa</ContainerId>\
    <RoleInstanceList><RoleInstance><InstanceId>5f1e.e2e._appliance</InstanceId>\
    </RoleInstance></RoleInstanceList></Container></GoalState>";

/// A stand-in for Azure's wire server on a loopback port (the guest reaches it as 10.0.2.2):
/// the goal state to a GET, 200 to a POST, every request recorded.
async fn fake_wire_server() -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method,
              uri: axum::http::Uri,
              headers: axum::http::HeaderMap,
              body: axum::body::Bytes| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(Seen {
                    method: method.to_string(),
                    uri: uri.to_string(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
                        .collect(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                if method == axum::http::Method::GET {
                    GOAL_STATE.to_owned()
                } else {
                    String::new()
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, seen)
}

/// Under Debian's OVMF with swtpm attached as `tpm-crb`, and with Azure's asset tag in the
/// SMBIOS tables: the kernel finds the TPM and the firmware's event log, init mounts securityfs
/// and reads the log (`attest::boot_log`), and reports ready to the wire server — here a loopback
/// server named by `RUNNER_AZURE_WIRE_SERVER` — with the goal state's identifiers, while the
/// appliance serves as usual. Skipped, saying so, without QEMU, swtpm or OVMF.
#[tokio::test(flavor = "multi_thread")]
async fn on_an_azure_like_vm_with_a_tpm_init_reads_the_event_log_and_reports_ready() {
    let swtpm = Command::new("swtpm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let ovmf = Path::new(OVMF_CODE).is_file() && Path::new(OVMF_VARS).is_file();
    if !qemu_installed() || !swtpm || !ovmf {
        eprintln!(
            "SKIPPED on_an_azure_like_vm...: needs {QEMU}, swtpm and ovmf (scripts/setup.sh)"
        );
        return;
    }
    let bundle = bundle().await;
    let dir = tempfile::tempdir().unwrap();
    // One flash image, variables then code: what `-bios` (qemu/run's SW_BIOS) loads.
    let firmware = dir.path().join("OVMF.fd");
    let mut image = std::fs::read(OVMF_VARS).unwrap();
    image.extend(std::fs::read(OVMF_CODE).unwrap());
    std::fs::write(&firmware, image).unwrap();
    let tpm_dir = dir.path().join("tpm");
    std::fs::create_dir(&tpm_dir).unwrap();
    let tpm = e2e::swtpm::Swtpm::start(&tpm_dir).expect("swtpm starts");
    let (port, seen) = fake_wire_server().await;

    let mut extra = tpm.qemu_args();
    extra.extend([
        "-smbios".to_owned(),
        format!("type=3,asset={AZURE_ASSET_TAG}"),
    ]);
    // The image's key stores need a gas wallet key, which the runner keeps on the state disk.
    let disk = dir.path().join("state.img");
    let started = Instant::now();
    let mut vm = boot_with(
        bundle.path(),
        dir.path(),
        1,
        Some(&disk),
        Some(&firmware),
        &extra,
        &format!("RUNNER_AZURE_WIRE_SERVER=10.0.2.2:{port}"),
    );
    let client = guest_client(Duration::from_secs(60));
    let boot_time = wait_healthy(&mut vm, &client, started).await;
    eprintln!(
        "image: OVMF + swtpm + Azure asset tag: first 200 after {:.2} s",
        boot_time.as_secs_f64()
    );

    // The report runs beside the boot: wait for its second request.
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().len() < 2 {
        vm.assert_running();
        assert!(
            Instant::now() < deadline,
            "no health report within 60 s: {:?}\n{}",
            seen.lock().unwrap(),
            vm.tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let (get, post) = (&requests[0], &requests[1]);
    assert_eq!(
        (get.method.as_str(), get.uri.as_str()),
        ("GET", "/machine/?comp=goalstate")
    );
    assert_eq!(
        (post.method.as_str(), post.uri.as_str()),
        ("POST", "/machine/?comp=health")
    );
    for request in [get, post] {
        assert_eq!(request.headers["x-ms-version"], "2012-11-30", "{request:?}");
    }
    assert_eq!(post.headers["content-type"], "text/xml;charset=utf-8");
    for part in [
        "<GoalStateIncarnation>5</GoalStateIncarnation>",
        "<ContainerId>0d3c1b8a-5e2f-4c8e-9a41-6b7f00e2d9aa</ContainerId>",
        "<InstanceId>5f1e.e2e._appliance</InstanceId>",
        "<State>Ready</State>",
    ] {
        assert!(post.body.contains(part), "{part} in {}", post.body);
    }

    let serial = vm.serial();
    assert!(
        serial.contains("securityfs mounted on /sys/kernel/security"),
        "{serial}"
    );
    let tpm_log_bytes: usize = serial
        .lines()
        .find_map(|line| {
            let rest = line.split("init: boot event log kind=tpm bytes=").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no TPM event log read by init:\n{serial}"));
    // OVMF's log: the Spec ID header event and at least the firmware's own measurements.
    assert!(tpm_log_bytes > 1024, "{tpm_log_bytes} bytes");
    assert!(
        serial.contains("reported ready to Azure's wire server"),
        "{serial}"
    );
    power_down(&mut vm).await;
}
