//! The appliance image (issue 7): `image` builds the kernel, the root disk (squashfs + dm-verity),
//! the command line and the manifest from the runner binary the suite uses; a second build
//! elsewhere must give the same bytes; a root disk with one byte changed must not boot; `qemu/run`
//! boots it (KVM if usable, else TCG) with the runner as PID 1, and the API inside is driven
//! through QEMU's port forwarding: health, the seed's curl with an every-second schedule (its
//! output must reach the serial console), `/attestation` (`none`), the attested-TLS port through
//! its forward (`runner verify`), then a clean ACPI power-off. The VM has a state disk
//! (`SW_STATE_DISK`, created and formatted by `qemu/run`): after the power-off the file system
//! is clean (unmounted, no journal to replay), and a second boot on the same disk brings the same
//! worker back (same id, listed, running again on the serial console, the first boot's
//! management token still valid; issue 11).
//!
//! The boot test is skipped, saying so, only when QEMU is not installed.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use appliance_image::disk::{self, Container};
use appliance_image::manifest::{Manifest, Measurement};
use appliance_image::measure::{
    amdsev_ovmf, fetch_tdvf, kernel_hashes_table, SnpParams, TdxParams,
};
use appliance_image::{
    Options, RunnerSource, CMDLINE_FILE, KERNEL_FILE, MANIFEST_FILE, ROOT_DISK_FILE,
    SNP_FIRMWARE_FILE, TDX_FIRMWARE_FILE,
};
use e2e::{json, Value};
use tempfile::TempDir;

/// The same image on a machine that looks like a cloud's: UEFI, a TPM, Azure's asset tag.
#[path = "image_cloud.rs"]
mod cloud;

/// The UEFI disk with a software TPM: the runner's evidence against the manifest's predictions.
#[path = "image_vtpm.rs"]
mod vtpm;

/// Boot to the first `200 /healthz`: TCG on a busy CI machine is slow.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);
const QEMU: &str = "qemu-system-x86_64";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The image cache (`image`'s default): the pinned kernel source is downloaded there and the
/// kernel and the AmdSev OVMF built there once.
fn cache_dir() -> PathBuf {
    appliance_image::util::default_cache_dir().expect("HOME or XDG_CACHE_HOME")
}

/// The runner configuration the test image carries (measured, in /etc/runner): a Sapphire key
/// store and a chain, neither reachable from the guest (the runner connects lazily, on first use).
const KEY_STORES_JSON: &str = r#"{
  "verifier_url": "http://10.0.2.2:9/",
  "stores": {
    "sapphire-testnet": {
      "registry": "0x1111111111111111111111111111111111111111",
      "key_store": "0x2222222222222222222222222222222222222222",
      "permitter": "0x3333333333333333333333333333333333333333"
    }
  }
}"#;
const CHAINS_JSON: &str = r#"{ "devnet": { "rpc_url": "http://10.0.2.2:9/" } }"#;

fn options(out: &Path, runner: &Path, cache: &Path) -> Options {
    let config = cache.join("e2e-runner-config");
    std::fs::create_dir_all(&config).expect("a directory for the runner's config files");
    std::fs::write(config.join("key-stores.json"), KEY_STORES_JSON).unwrap();
    std::fs::write(config.join("chains.json"), CHAINS_JSON).unwrap();
    let mut options = Options::new(
        repo_root(),
        out.to_owned(),
        cache.to_owned(),
        RunnerSource::Prebuilt(runner.to_owned()),
    );
    // Under TCG/KVM without SNP or TDX there is no TEE, and the boot test creates workers on
    // plain HTTP: a development image (`image --dev`), without RUNNER_REQUIRE_TEE and
    // RUNNER_CREATION_TLS_ONLY.
    options.dev = true;
    options.key_stores = Some(config.join("key-stores.json"));
    options.chains = Some(config.join("chains.json"));
    // The UEFI disk in every container (issue 18): the raw one boots below under OVMF.
    options.formats = vec![
        Container::Raw,
        Container::Gcp,
        Container::Azure,
        Container::Aws,
    ];
    // The expected TDX measurements, for the pinned TDVF (scripts/setup.sh makes it fetchable).
    options.tdx = Some(TdxParams::pinned(
        fetch_tdvf(cache).expect("the pinned TDVF (apt-get download; see scripts/setup.sh)"),
    ));
    // The SNP launch digest, for the pinned AmdSev OVMF (built once per cache, ~3 minutes).
    let jobs = appliance_image::util::default_jobs();
    options.snp = Some(SnpParams::pinned(
        amdsev_ovmf::build(cache, jobs).expect("the pinned AmdSev OVMF (see image/README.md)"),
        2,
    ));
    options
}

struct Bundle {
    dir: TempDir,
    manifest: Manifest,
}

impl Bundle {
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// One image build shared by the tests that run at the same time (deleted when both are done).
fn shared_bundle() -> Arc<Bundle> {
    static SHARED: Mutex<Weak<Bundle>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(bundle) = shared.upgrade() {
        return bundle;
    }
    let dir = tempfile::tempdir().expect("a temp dir for the image");
    let started = Instant::now();
    let manifest = appliance_image::build(&options(dir.path(), &e2e::runner_bin(), &cache_dir()))
        .expect("build the image");
    eprintln!(
        "image: built in {:.1} s: kernel {} B, root disk {:?} B",
        started.elapsed().as_secs_f64(),
        manifest.parts.kernel.size,
        manifest.parts.root_disk.as_ref().map(|p| p.size)
    );
    let bundle = Arc::new(Bundle { dir, manifest });
    *shared = Arc::downgrade(&bundle);
    bundle
}

async fn bundle() -> Arc<Bundle> {
    tokio::task::spawn_blocking(shared_bundle)
        .await
        .expect("the image build task")
}

#[tokio::test(flavor = "multi_thread")]
async fn two_builds_in_different_places_give_identical_bytes_and_manifests() {
    let first = bundle().await;
    // The second build differs in what must not matter: the output directory, the runner's path
    // and file time. It shares the cache: the kernel is built once per cache (minutes on this
    // machine); its own reproducibility is checked where it is built (image/README.md).
    let second = tempfile::tempdir().unwrap();
    let runner_copy = second.path().join("some-other-name");
    std::fs::copy(e2e::runner_bin(), &runner_copy).unwrap();
    let out = second.path().join("bundle");
    let options = options(&out, &runner_copy, &cache_dir());
    let manifest = tokio::task::spawn_blocking(move || appliance_image::build(&options))
        .await
        .unwrap()
        .expect("the second build");

    assert_eq!(manifest, first.manifest);
    for file in [
        KERNEL_FILE,
        ROOT_DISK_FILE,
        CMDLINE_FILE,
        MANIFEST_FILE,
        SNP_FIRMWARE_FILE,
        TDX_FIRMWARE_FILE,
    ] {
        let a = std::fs::read(first.path().join(file)).unwrap();
        let b = std::fs::read(out.join(file)).unwrap();
        assert!(a == b, "{file} differs between the two builds");
    }
    // The UEFI disks: the UKI and Google's tar.gz byte for byte; the 1 GiB raw disk and VHD by
    // the SHA-256 each build computed of its own files (in the equal manifests) and their sizes.
    for file in [disk::UKI_FILE, disk::GCP_FILE] {
        let a = std::fs::read(first.path().join(file)).unwrap();
        let b = std::fs::read(out.join(file)).unwrap();
        assert!(a == b, "{file} differs between the two builds");
    }
    let uefi = manifest.uefi.as_ref().expect("the manifest's uefi section");
    for (format, part) in &uefi.disk {
        let size = std::fs::metadata(out.join(&part.file)).unwrap().len();
        assert_eq!(size, part.size, "{format}: {}", part.file);
    }
    assert_eq!(
        uefi.disk.keys().map(String::as_str).collect::<Vec<_>>(),
        ["aws", "azure", "gcp", "raw"]
    );
    assert_eq!(
        uefi.disk["raw"].size % (1 << 30),
        0,
        "a whole number of GiB"
    );
    let uki = std::fs::read(out.join(disk::UKI_FILE)).unwrap();
    assert_eq!(uefi.uki.sha256, appliance_image::util::sha256_hex(&uki));
    assert_eq!(uefi.uki.path, "EFI/BOOT/BOOTX64.EFI");
    // The UKI's command line is the bundle's with the root disk found by its partition's GUID.
    let root_hash = &manifest.root.verity.as_ref().expect("verity").root_hash;
    let partuuid = format!("PARTUUID={}", disk::root_partition_guid(root_hash));
    assert_eq!(
        uefi.uki.cmdline,
        manifest.parts.cmdline.value.replace("/dev/vda", &partuuid)
    );
    for platform in [
        "qemu-ovmf-tpm",
        "gcp-tdx",
        "gcp-snp-vtpm",
        "azure-vtpm",
        "aws-snp",
    ] {
        let prediction = &uefi.predictions[platform];
        assert!(!prediction.trust.is_empty(), "{platform}");
        let uki_event = prediction
            .events
            .iter()
            .find(|e| e.what == "the UKI")
            .unwrap_or_else(|| panic!("{platform}: no UKI event"));
        let expected = match uki_event.digest_alg.as_str() {
            "sha256" => &uefi.uki.authenticode_sha256,
            _ => &uefi.uki.authenticode_sha384,
        };
        assert_eq!(&uki_event.digest, expected, "{platform}");
    }
    // And the manifest describes what is there: the disk's hash, and a command line that maps
    // it through dm-verity with the root hash the manifest records.
    let disk = std::fs::read(out.join(ROOT_DISK_FILE)).unwrap();
    let part = manifest.parts.root_disk.as_ref().expect("a root disk");
    assert_eq!(part.size, disk.len() as u64);
    assert_eq!(part.sha256, appliance_image::util::sha256_hex(&disk));
    assert!(manifest.parts.initrd.is_none());
    let verity = manifest.root.verity.as_ref().expect("verity parameters");
    let cmdline = &manifest.parts.cmdline.value;
    assert!(
        cmdline.contains(&format!(" {} {} ", verity.root_hash, verity.salt)),
        "{cmdline}"
    );
    assert!(cmdline.contains("root=/dev/dm-0"), "{cmdline}");
    let init = manifest.root.files.iter().find(|f| f.path == "init");
    assert_eq!(init.map(|f| f.mode.as_str()), Some("100755"), "{init:?}");
    assert_eq!(manifest.kernel.build, "minimal");
    assert!(manifest.kernel.modules.is_empty(), "everything is built in");
    // TDX: the registers the image determines are computed (RTMR0 is the host's).
    match &manifest.measurements.tdx {
        Measurement::Computed { values, .. } => {
            for register in ["mrtd", "rtmr1", "rtmr2", "rtmr3"] {
                let value = values.get(register).map(String::as_str).unwrap_or_default();
                assert_eq!(value.len(), 96, "{register}: {value:?}");
            }
            assert!(!values.contains_key("rtmr0"));
        }
        other => panic!("TDX measurements not computed: {other:?}"),
    }
    // SNP: the launch digest for the firmware the bundle carries, which is the pinned build.
    match &manifest.measurements.snp {
        Measurement::Computed { values, parameters } => {
            assert_eq!(values["launch_digest"].len(), 96, "{values:?}");
            assert_eq!(parameters["ovmf_sha256"], amdsev_ovmf::EXPECTED_SHA256);
        }
        other => panic!("SNP launch digest not computed: {other:?}"),
    }
    // The same digest from an independent implementation: virtee's sev-snp-measure (Python).
    let Measurement::Computed { values, .. } = &manifest.measurements.snp else {
        unreachable!()
    };
    let independent = sev_snp_measure(&out, &manifest.parts.cmdline.value);
    assert_eq!(values["launch_digest"], independent, "sev-snp-measure");
    let carried = std::fs::read(out.join(SNP_FIRMWARE_FILE)).unwrap();
    assert_eq!(
        appliance_image::util::sha256_hex(&carried),
        amdsev_ovmf::EXPECTED_SHA256
    );
    assert_eq!(
        manifest.firmware.snp.sha256.as_deref(),
        Some(amdsev_ovmf::EXPECTED_SHA256)
    );
}

/// The SNP launch digest of the bundle in `dir` (2 x EPYC-v4, guest features 0x1, no initrd)
/// from virtee's `sev-snp-measure`, which `scripts/setup.sh` installs.
fn sev_snp_measure(dir: &Path, cmdline: &str) -> String {
    let tool = PathBuf::from(std::env::var_os("HOME").expect("HOME"))
        .join(".cache/smart-worker/sev-snp-measure/bin/sev-snp-measure");
    assert!(
        tool.exists(),
        "{} is missing: run scripts/setup.sh",
        tool.display()
    );
    let output = Command::new(&tool)
        .args(["--mode", "snp", "--vcpus", "2", "--vcpu-type", "EPYC-v4"])
        .args(["--guest-features", "0x1"])
        .arg("--ovmf")
        .arg(dir.join(SNP_FIRMWARE_FILE))
        .arg("--kernel")
        .arg(dir.join(KERNEL_FILE))
        .arg("--append")
        .arg(cmdline)
        .output()
        .expect("run sev-snp-measure");
    assert!(
        output.status.success(),
        "sev-snp-measure: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// QEMU started by `qemu/run`, killed if the test ends without a clean power-off.
struct Vm {
    child: Child,
    serial: PathBuf,
    qmp: PathBuf,
    http: String,
    https: String,
}

impl Drop for Vm {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Vm {
    /// Everything QEMU and the guest wrote to the serial console so far, without colours.
    fn serial(&self) -> String {
        let raw = std::fs::read(&self.serial).unwrap_or_default();
        strip_ansi(&String::from_utf8_lossy(&raw))
    }

    fn tail(&self) -> String {
        let serial = self.serial();
        let lines: Vec<&str> = serial.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Waits for QEMU to exit; panics with `what` and the console's tail after `timeout`.
    async fn wait_exit(&mut self, timeout: Duration, what: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{what} after {timeout:?}:\n{}",
                self.tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("QEMU exited ({status}):\n{}", self.tail());
        }
    }

    /// Sends one QMP command and returns its `return` (events before it are skipped).
    fn qmp(&self, command: &str) -> Value {
        let stream = UnixStream::connect(&self.qmp).expect("connect to QMP");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut line = String::new();
        reader.read_line(&mut line).expect("QMP greeting");
        let mut answer = |execute: &str| -> Value {
            writeln!(writer, "{}", json!({ "execute": execute })).expect("QMP write");
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("QMP read");
                let value: Value = serde_json::from_str(&line).expect("QMP JSON");
                if let Some(error) = value.get("error") {
                    panic!("QMP {execute}: {error}");
                }
                if let Some(ret) = value.get("return") {
                    return ret.clone();
                }
            }
        };
        answer("qmp_capabilities");
        answer(command)
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn qemu_installed() -> bool {
    Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Boot number `n` of a test (its serial log and QMP socket in `dir` carry the number), with
/// `state_disk` attached as the appliance's state disk (`qemu/run` creates it if missing).
fn boot(bundle: &Path, dir: &Path, n: u32, state_disk: Option<&Path>) -> Vm {
    boot_with(bundle, dir, n, state_disk, None, &[], "")
}

/// [`boot`] with this firmware (`SW_BIOS`), extra QEMU arguments and extra kernel command-line
/// words (`SW_CMDLINE_APPEND`, e.g. `RUNNER_*` settings; not measured: development only).
fn boot_with(
    bundle: &Path,
    dir: &Path,
    n: u32,
    state_disk: Option<&Path>,
    bios: Option<&Path>,
    extra: &[String],
    cmdline_append: &str,
) -> Vm {
    boot_qemu_run(
        bundle,
        dir,
        n,
        state_disk,
        bios,
        extra,
        cmdline_append,
        None,
    )
}

/// [`boot_with`], or with `uefi_disk` the UEFI disk under OVMF (`SW_DISK`).
#[allow(clippy::too_many_arguments)]
fn boot_qemu_run(
    bundle: &Path,
    dir: &Path,
    n: u32,
    state_disk: Option<&Path>,
    bios: Option<&Path>,
    extra: &[String],
    cmdline_append: &str,
    uefi_disk: Option<&Path>,
) -> Vm {
    let serial = dir.join(format!("serial-{n}.log"));
    let qmp = dir.join(format!("qmp-{n}.sock"));
    let http = format!("127.0.0.1:{}", free_port());
    let https = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(&serial).unwrap();
    let mut command = Command::new("bash");
    command
        .arg(repo_root().join("qemu/run"))
        .arg(bundle)
        .env("SW_HTTP", &http)
        .env("SW_HTTPS", &https)
        .env("SW_QMP", &qmp)
        .env("SW_CMDLINE_APPEND", cmdline_append)
        .env_remove("SW_STATE_DISK");
    if let Some(disk) = state_disk {
        command.env("SW_STATE_DISK", disk);
    }
    match bios {
        Some(bios) => command.env("SW_BIOS", bios),
        None => command.env_remove("SW_BIOS"),
    };
    match uefi_disk {
        Some(disk) => command.env("SW_DISK", disk),
        None => command.env_remove("SW_DISK"),
    };
    if !extra.is_empty() {
        command.arg("--").args(extra);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("run qemu/run");
    Vm {
        child,
        serial,
        qmp,
        http,
        https,
    }
}

/// Debian's stock OVMF (package `ovmf`, no Secure Boot), what `qemu/run` boots the UEFI disk
/// with (`SW_OVMF_CODE`'s default): the code, and the variable store's template.
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Which accelerator the boot in `serial` ran under (`qemu/run` says so on the console).
fn accelerator(serial: &str) -> &'static str {
    if serial.contains("with kvm") {
        "KVM"
    } else {
        "TCG"
    }
}

/// `dir/w.js`: the seed's worker, logging `tag` and its config's keys on each run (what
/// [`wait_for_runs`] looks for).
fn write_seed_worker(dir: &Path, tag: &str) {
    std::fs::write(
        dir.join("w.js"),
        format!(
            "export default {{\n  async tasks(rnr, ctx) {{\n    const config = await rnr.getConfig();\n    \
             console.log({}, \"ran with\", Object.keys(config).join(\",\"));\n  }},\n}};\n",
            e2e::js::lit(tag)
        ),
    )
    .unwrap();
}

/// An HTTP client for the guest's forwarded ports (no proxy), `timeout` per request.
fn guest_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap()
}

/// The bundle's raw UEFI disk (`image --format raw`) booted by `qemu/run` (`SW_DISK`) under
/// Debian's OVMF, from the disk alone, with `extra` QEMU arguments. The image's key stores need a
/// gas wallet key, which the runner makes and seals on the state disk (`dir/state.img`):
/// attached after the UEFI disk, found by its serial as on the direct boot.
fn boot_uefi_disk(bundle: &Path, dir: &Path, extra: &[String]) -> Vm {
    let raw = bundle.join(disk::RAW_FILE);
    let state = dir.join("state.img");
    boot_qemu_run(bundle, dir, 1, Some(&state), None, extra, "", Some(&raw))
}

/// Waits for the first `200` from `/healthz`; returns the time since `started`.
async fn wait_healthy(vm: &mut Vm, client: &reqwest::Client, started: Instant) -> Duration {
    loop {
        vm.assert_running();
        if let Ok(response) = client.get(vm.url("/healthz")).send().await {
            if response.status() == 200 {
                return started.elapsed();
            }
        }
        assert!(
            started.elapsed() < BOOT_TIMEOUT,
            "no 200 from /healthz within {BOOT_TIMEOUT:?}:\n{}",
            vm.tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// ACPI power button → graceful shutdown → power off → QEMU exits 0; returns the serial log.
async fn power_down(vm: &mut Vm) -> String {
    vm.qmp("system_powerdown");
    let status = vm.wait_exit(SHUTDOWN_TIMEOUT, "no power-off").await;
    let serial = vm.serial();
    assert!(status.success(), "QEMU exit {status}:\n{}", vm.tail());
    assert!(serial.contains("power button pressed"), "{serial}");
    assert!(
        serial.contains("the runner stopped; powering off"),
        "{serial}"
    );
    assert!(serial.contains("reboot: Power down"), "{serial}");
    serial
}

/// `dumpe2fs -h` of the state disk, or `None` when e2fsprogs is not installed.
fn ext4_header(disk: &Path) -> Option<String> {
    let found = ["dumpe2fs", "/usr/sbin/dumpe2fs", "/sbin/dumpe2fs"]
        .into_iter()
        .find_map(|bin| Command::new(bin).arg("-h").arg(disk).output().ok())?;
    assert!(found.status.success(), "dumpe2fs: {found:?}");
    Some(String::from_utf8_lossy(&found.stdout).into_owned())
}

/// The seed's command (README), with an every-second schedule.
fn curl_create(dir: &Path, url: &str) -> Option<String> {
    let output = Command::new("curl")
        .current_dir(dir)
        .args(["-isS", "--noproxy", "*", "--max-time", "120", url])
        .args(["-F", "script=@w.js", "-F", "type=module"])
        .args([
            "-F",
            "schedule=\"*/1 * * * * *\"",
            "-F",
            r#"config={"a":1}"#,
        ])
        .output();
    match output {
        Ok(output) => {
            assert!(output.status.success(), "curl failed: {output:?}");
            Some(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("run curl: {e}"),
    }
}

/// Waits (two minutes at most) until the worker tagged `tag` has printed its line `n` times on
/// the serial console.
async fn wait_for_runs(vm: &mut Vm, tag: &str, n: usize, what: &str) {
    let runs_seen = |serial: &str| {
        serial
            .lines()
            .filter(|l| l.contains(tag) && l.contains("ran with a"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while runs_seen(&vm.serial()) < n {
        vm.assert_running();
        assert!(
            Instant::now() < deadline,
            "{what} did not appear {n} times on the serial console:\n{}",
            vm.tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The address of the gas wallet the runner made and logged (`gas_wallet=0x…`).
fn gas_wallet_address(serial: &str) -> String {
    serial
        .lines()
        .find(|l| l.contains("the gas wallet was made by this runner"))
        .and_then(|l| l.split("gas_wallet=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no gas wallet address on the serial console:\n{serial}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_boots_under_qemu_serves_workers_and_powers_off_cleanly() {
    if !qemu_installed() {
        eprintln!(
            "SKIPPED the_image_boots_under_qemu...: {QEMU} is not installed \
             (scripts/setup.sh installs qemu-system-x86 from bookworm-backports)"
        );
        return;
    }
    let bundle = bundle().await;
    let dir = tempfile::tempdir().unwrap();
    // Does not exist yet: qemu/run creates and formats it.
    let disk = dir.path().join("state.img");
    let started = Instant::now();
    let mut vm = boot(bundle.path(), dir.path(), 1, Some(&disk));
    let client = guest_client(Duration::from_secs(60));

    // 1. Boot to the first 200.
    let boot_time = wait_healthy(&mut vm, &client, started).await;
    let serial = vm.serial();
    eprintln!(
        "image: first 200 from /healthz {:.2} s after qemu/run started ({}, state disk created)",
        boot_time.as_secs_f64(),
        accelerator(&serial)
    );
    assert!(serial.contains("runner is PID 1"), "{serial}");
    assert!(serial.contains("network up"), "{serial}");
    assert!(
        serial.contains("http://0.0.0.0:8080") && serial.contains("listening"),
        "{serial}"
    );
    assert!(
        serial.contains("state disk (serial sw-state) mounted on /var/lib/runner"),
        "{serial}"
    );
    assert!(
        serial.contains("state directory open: workers are kept across restarts"),
        "{serial}"
    );
    // The key stores and chains come from the files the image carries; with no gas wallet key
    // anywhere, the runner made one and sealed it on the state disk.
    assert!(
        serial.contains("Sapphire key store configured") && serial.contains("sapphire-testnet"),
        "{serial}"
    );
    let gas_wallet = gas_wallet_address(&serial);

    // 2. The seed's curl, every second; the worker's console output reaches the serial console.
    let tag = format!("image-e2e-{}", std::process::id());
    write_seed_worker(dir.path(), &tag);
    let created: Value = match curl_create(dir.path(), &vm.url("/")) {
        Some(output) => {
            assert!(output.starts_with("HTTP/1.1 201"), "curl:\n{output}");
            let body = output.split("\r\n\r\n").nth(1).unwrap_or_default();
            serde_json::from_str(body.trim()).expect("JSON body")
        }
        None => {
            eprintln!(
                "curl is not installed: creating the worker with reqwest's multipart instead"
            );
            let form = reqwest::multipart::Form::new()
                .part(
                    "script",
                    reqwest::multipart::Part::text(
                        std::fs::read_to_string(dir.path().join("w.js")).unwrap(),
                    )
                    .file_name("w.js"),
                )
                .text("type", "module")
                .text("schedule", "\"*/1 * * * * *\"")
                .text("config", r#"{"a":1}"#);
            let response = client
                .post(vm.url("/"))
                .multipart(form)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
            response.json().await.unwrap()
        }
    };
    let id = created["id"].as_str().expect("an id").to_owned();
    let token = created["token"]
        .as_str()
        .expect("a management token")
        .to_owned();
    wait_for_runs(&mut vm, &tag, 3, "the worker's output").await;
    let worker: Value = client
        .get(vm.url(&format!("/workers/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(worker["schedule"], "*/1 * * * * *", "{worker}");
    assert!(worker["runs"].as_u64().unwrap_or(0) >= 2, "{worker}");

    // 3. Attestation inside QEMU without a TEE: `none`, and marked insecure.
    let response = client
        .get(vm.url("/attestation?nonce=0a0b"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let attestation: Value = response.json().await.unwrap();
    assert_eq!(attestation["tee"], "none", "{attestation}");
    assert_eq!(attestation["insecure"], true, "{attestation}");
    assert_eq!(attestation["nonce"], "0a0b", "{attestation}");

    // 4. The attested-TLS listener through the 8443 forward: `runner verify` checks the `none`
    //    evidence in the certificate (allowed explicitly) before it sends the request. It reads
    //    the expected measurements from the image's own manifest (SNP digest, TDX registers) and
    //    says that TDX launches need RTMR[0].
    let https = format!("https://{}/healthz", vm.https);
    let manifest = bundle.path().join(MANIFEST_FILE);
    let verify = tokio::task::spawn_blocking(move || {
        Command::new(e2e::runner_bin())
            .args(["verify", "--allow-insecure-dev", "--expect"])
            .arg(&manifest)
            .arg(&https)
            .env("NO_PROXY", "127.0.0.1")
            .output()
            .expect("run `runner verify`")
    })
    .await
    .unwrap();
    assert!(
        verify.status.success(),
        "runner verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&verify.stdout), "ok");
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        stderr.contains("TDX launches are refused") && stderr.contains("RTMR[0]"),
        "{stderr}"
    );

    // 5. ACPI power button → graceful shutdown → power off → QEMU exits 0, the state disk
    //    unmounted first: the host sees a clean ext4 with no journal to replay.
    let serial = power_down(&mut vm).await;
    assert!(serial.contains("state disk unmounted cleanly"), "{serial}");
    match ext4_header(&disk) {
        Some(header) => {
            assert!(
                header
                    .lines()
                    .any(|l| l.starts_with("Filesystem state:") && l.ends_with(" clean")),
                "{header}"
            );
            assert!(!header.contains("needs_recovery"), "{header}");
        }
        None => eprintln!("dumpe2fs is not installed (e2fsprogs): the disk's state is not checked"),
    }

    // 6. Boot again on the same disk: the same worker is back before /healthz, listed, running
    //    on its schedule, and the first boot's token still manages it.
    let started = Instant::now();
    let mut vm = boot(bundle.path(), dir.path(), 2, Some(&disk));
    let boot_time = wait_healthy(&mut vm, &client, started).await;
    eprintln!(
        "image: second boot on the same state disk: first 200 from /healthz {:.2} s after qemu/run started",
        boot_time.as_secs_f64()
    );
    let serial = vm.serial();
    assert!(
        serial.contains("workers restored from the state directory")
            && serial.contains("restored=1 failed=0 refused=0"),
        "{serial}"
    );
    assert_eq!(
        gas_wallet_address(&serial),
        gas_wallet,
        "the runner's own gas wallet is kept sealed across reboots"
    );
    let listed: Value = client
        .get(vm.url("/workers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let workers = listed["workers"].as_array().expect("a list of workers");
    assert_eq!(workers.len(), 1, "{listed}");
    assert_eq!(workers[0]["id"], id, "{listed}");
    assert_eq!(workers[0]["schedule"], "*/1 * * * * *", "{listed}");
    wait_for_runs(&mut vm, &tag, 2, "the restored worker's output").await;
    let response = client
        .get(vm.url(&format!("/workers/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the first boot's token");
    let worker: Value = response.json().await.unwrap();
    assert!(worker["restored"]["at"].is_string(), "{worker}");
    assert!(worker["runs"].as_u64().unwrap_or(0) >= 1, "{worker}");
    let serial = power_down(&mut vm).await;
    assert!(serial.contains("state disk unmounted cleanly"), "{serial}");
}

/// The UEFI disk (`image --format raw`) boots from the disk alone — Debian's stock OVMF, no
/// `-kernel`/`-append`: the firmware finds `\EFI\BOOT\BOOTX64.EFI` on the ESP, systemd-stub
/// starts the kernel with the UKI's command line, and dm-init finds the root partition by its
/// PARTUUID — to `/healthz` and a worker created with the seed's curl that runs on its schedule;
/// then a clean power-off.
#[tokio::test(flavor = "multi_thread")]
async fn the_raw_uefi_disk_boots_under_stock_ovmf_from_the_disk_alone() {
    if !qemu_installed() {
        eprintln!("SKIPPED the_raw_uefi_disk_boots...: {QEMU} is not installed");
        return;
    }
    let ovmf = Path::new(OVMF_CODE);
    if !ovmf.exists() {
        eprintln!(
            "SKIPPED the_raw_uefi_disk_boots...: no {} (scripts/setup.sh installs ovmf)",
            ovmf.display()
        );
        return;
    }
    let bundle = bundle().await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut vm = boot_uefi_disk(bundle.path(), dir.path(), &[]);
    let client = guest_client(Duration::from_secs(60));
    let boot_time = wait_healthy(&mut vm, &client, started).await;
    let serial = vm.serial();
    eprintln!(
        "image: UEFI disk under OVMF: first 200 from /healthz {:.2} s after qemu/run started ({})",
        boot_time.as_secs_f64(),
        accelerator(&serial)
    );
    assert!(serial.contains("BdsDxe: starting Boot"), "{serial}");
    assert!(serial.contains("runner is PID 1"), "{serial}");
    assert!(
        serial.contains("state disk (serial sw-state) mounted on /var/lib/runner"),
        "{serial}"
    );
    let tag = format!("uefi-e2e-{}", std::process::id());
    write_seed_worker(dir.path(), &tag);
    match curl_create(dir.path(), &vm.url("/")) {
        Some(output) => assert!(output.starts_with("HTTP/1.1 201"), "curl:\n{output}"),
        None => eprintln!("curl is not installed: the worker is not created"),
    }
    if which_curl() {
        wait_for_runs(&mut vm, &tag, 2, "the worker's output").await;
    }
    power_down(&mut vm).await;
}

/// What OVMF measures when it boots the UEFI disk equals the manifest's `qemu-ovmf-tpm`
/// prediction: the same boot with a software TPM (swtpm, `tpm-crb`), QEMU killed once `/healthz`
/// answers, then the PCRs read from swtpm — PCR 4 (the UKI and its kernel), PCR 5 (the GPT, the
/// separators and ExitBootServices), PCR 9 (the kernel's command line and the stub's initrd),
/// PCR 11 (systemd-stub's sections) equal the predicted values, PCR 12 is empty (no command line
/// from a boot entry).
#[tokio::test(flavor = "multi_thread")]
async fn the_firmware_measures_the_uefi_disk_as_the_manifest_predicts() {
    let ovmf = Path::new(OVMF_CODE);
    if !qemu_installed() || !ovmf.exists() {
        eprintln!("SKIPPED the_firmware_measures_the_uefi_disk...: needs {QEMU} and ovmf");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(tpm) = e2e::swtpm::Swtpm::start(dir.path()) else {
        eprintln!("SKIPPED the_firmware_measures_the_uefi_disk...: swtpm is not installed");
        return;
    };
    let bundle = bundle().await;
    let started = Instant::now();
    let mut vm = boot_uefi_disk(bundle.path(), dir.path(), &tpm.qemu_args());
    let client = guest_client(Duration::from_secs(60));
    wait_healthy(&mut vm, &client, started).await;
    // Killed, not shut down: QEMU's clean exit would end swtpm and its PCRs with it.
    vm.child.kill().unwrap();
    vm.child.wait().unwrap();
    let read = tpm
        .pcr_read(&[4, 5, 9, 11, 12])
        .expect("the PCRs from swtpm");
    let uefi = bundle
        .manifest
        .uefi
        .as_ref()
        .expect("the manifest's uefi section");
    let predicted = &uefi.predictions["qemu-ovmf-tpm"].values;
    for (pcr, value) in ["PCR4", "PCR5", "PCR9", "PCR11"].iter().zip(&read) {
        assert_eq!(
            &hex_lower(value),
            &predicted[*pcr],
            "{pcr}: measured vs predicted"
        );
    }
    assert_eq!(
        read[4], [0u8; 32],
        "PCR12: nothing replaced the UKI's command line"
    );
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn which_curl() -> bool {
    Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The root disk comes from the host: the kernel checks every block it reads against the
/// dm-verity root hash on the (measured) command line. Changing one byte of the disk's first
/// 4 KiB block — the file system's superblock, which the kernel reads to mount the root, and, on
/// squashfs, the start of the compressed files — must stop the boot before the runner runs, with
/// dm-verity naming the corrupted block, and power the VM off (`panic_on_corruption`).
#[tokio::test(flavor = "multi_thread")]
async fn a_root_disk_with_one_byte_changed_does_not_boot() {
    if !qemu_installed() {
        eprintln!("SKIPPED a_root_disk_with_one_byte_changed...: {QEMU} is not installed");
        return;
    }
    let bundle = bundle().await;
    let dir = tempfile::tempdir().unwrap();
    let tampered = dir.path().join("bundle");
    std::fs::create_dir(&tampered).unwrap();
    for file in [KERNEL_FILE, CMDLINE_FILE, MANIFEST_FILE, ROOT_DISK_FILE] {
        std::fs::copy(bundle.path().join(file), tampered.join(file)).unwrap();
    }
    // Byte 200: past the squashfs superblock (96 bytes) and before erofs's (at 1024); dm-verity
    // checks whole blocks, so reading either superblock reads the changed byte's block.
    let mut disk = std::fs::read(tampered.join(ROOT_DISK_FILE)).unwrap();
    disk[200] ^= 0x01;
    std::fs::write(tampered.join(ROOT_DISK_FILE), &disk).unwrap();

    let started = Instant::now();
    let mut vm = boot(&tampered, dir.path(), 1, None);
    let status = vm
        .wait_exit(
            BOOT_TIMEOUT,
            "the VM with a tampered root disk is still running",
        )
        .await;
    let serial = vm.serial();
    eprintln!(
        "image: tampered root disk: QEMU exited ({status}) after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        serial.contains("verity") && serial.contains("data block 0 is corrupted"),
        "dm-verity names the block:\n{serial}"
    );
    assert!(
        !serial.contains("runner is PID 1"),
        "the runner must not start:\n{serial}"
    );
}

/// SNP measured direct boot, rehearsed without SEV (no SNP host here): the pinned AmdSev OVMF
/// starts only a kernel, initrd and command line whose SHA-256 match the hashes table QEMU fills
/// in with `kernel-hashes=on` — the table the launch digest covers. The table is written by the
/// same `sev` code the manifest's digest uses and loaded where the firmware reads it; the image
/// must boot with it to `/healthz`. With one bit of the command line's hash changed, the firmware
/// must not start the kernel: neither the runner's first line nor a kernel panic appears in
/// ten times as long as the good boot took to answer, and at least 60 s.
#[tokio::test(flavor = "multi_thread")]
async fn the_pinned_snp_firmware_starts_the_image_only_with_matching_hashes() {
    if !qemu_installed() {
        eprintln!("SKIPPED the_pinned_snp_firmware...: {QEMU} is not installed");
        return;
    }
    let bundle = bundle().await;
    let dir = tempfile::tempdir().unwrap();
    let ovmf = bundle.path().join(SNP_FIRMWARE_FILE);
    let table_gpa = amdsev_ovmf::check_firmware(&ovmf)
        .expect("the firmware's SEV metadata")
        .hashes_table_gpa;
    let table = kernel_hashes_table(
        &bundle.path().join(KERNEL_FILE),
        None,
        &bundle.manifest.parts.cmdline.value,
    )
    .unwrap();
    let load = |name: &str, table: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, table).unwrap();
        vec![
            "-device".to_owned(),
            format!(
                "loader,file={},addr={table_gpa:#x},force-raw=on",
                path.display()
            ),
        ]
    };

    let client = reqwest::Client::new();
    let started = Instant::now();
    // A state disk: the image's Sapphire key-store configuration needs the gas wallet kept there.
    let state_disk = dir.path().join("state.img");
    let mut vm = boot_with(
        bundle.path(),
        dir.path(),
        1,
        Some(&state_disk),
        Some(&ovmf),
        &load("table.bin", &table),
        "",
    );
    let healthy = wait_healthy(&mut vm, &client, started).await;
    let serial = vm.serial();
    assert!(serial.contains("runner is PID 1"), "{serial}");
    eprintln!(
        "image: under the AmdSev OVMF with the right hashes: /healthz 200 after {:.1} s",
        healthy.as_secs_f64()
    );
    drop(vm);

    // The command line's hash is the first entry's: header GUID (16), length (2), entry GUID
    // (16), length (2), then the hash.
    let mut bad = table.clone();
    let cmdline_hash = 16 + 2 + 16 + 2;
    bad[cmdline_hash] ^= 0x01;
    let started = Instant::now();
    let mut vm = boot_with(
        bundle.path(),
        dir.path(),
        2,
        Some(&state_disk),
        Some(&ovmf),
        &load("bad-table.bin", &bad),
        "",
    );
    let window = (healthy * 10).max(Duration::from_secs(60));
    while started.elapsed() < window {
        vm.assert_running();
        let serial = vm.serial();
        assert!(
            !serial.contains("runner is PID 1") && !serial.contains("Kernel panic"),
            "the firmware started the kernel with a wrong command-line hash:\n{serial}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Issue 21: in the appliance, init runs the server as its child in a memory cgroup below the
/// guest's RAM. A worker that fills the server's memory gets the server killed by the OOM killer
/// — not init, whose death would panic the kernel and reboot the VM — and init starts it again:
/// the API answers again, the worker kept on the state disk is back, the kernel booted once, and
/// the power button still powers off cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_for_memory_is_restarted_by_init_without_a_reboot() {
    if !qemu_installed() {
        eprintln!("SKIPPED a_server_killed_for_memory...: {QEMU} is not installed");
        return;
    }
    let bundle = bundle().await;
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("state.img");
    // The cgroup's limit far below the runner's own (a 2 GiB V8 heap, minutes of CPU), so that
    // only the cgroup can stop the worker.
    let settings = "RUNNER_SERVER_MEMORY_MAX=320M RUNNER_HEAP_LIMIT_MB=2048 \
                    RUNNER_CPU_LIMIT_MS=240000 RUNNER_WALL_LIMIT_MS=240000";
    let started = Instant::now();
    let mut vm = boot_with(
        bundle.path(),
        dir.path(),
        1,
        Some(&disk),
        None,
        &[],
        settings,
    );
    let client = guest_client(Duration::from_secs(60));
    let boot_time = wait_healthy(&mut vm, &client, started).await;
    let serial = vm.serial();
    eprintln!(
        "image (oom): /healthz 200 {:.2} s after qemu/run started",
        boot_time.as_secs_f64()
    );
    assert!(
        serial.contains("init: the runner's memory cgroup")
            && serial.contains("memory_max=320 MiB")
            && serial.contains(r#"set_by="RUNNER_SERVER_MEMORY_MAX""#),
        "{serial}"
    );
    assert!(serial.contains("init: started the runner") && serial.contains("start=1"));

    // A worker that keeps its memory on the V8 heap (arrays of doubles, 8 MiB each, every
    // element written) when asked to, and otherwise answers.
    let script = "export default {\n  async fetch(request) {\n    \
                  if (new URL(request.url).searchParams.has('hog')) {\n      \
                  const hoard = [];\n      \
                  for (let i = 0; ; i++) hoard.push(new Array(1 << 20).fill(i + 0.5));\n    }\n    \
                  return new Response('alive');\n  },\n};\n";
    let created: Value = client
        .post(vm.url("/"))
        .json(&json!({ "script": script }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().expect("an id").to_owned();
    let token = created["token"].as_str().expect("a token").to_owned();
    let alive = |client: reqwest::Client, url: String| async move {
        let response = client.get(url).send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    };
    let (status, body) = alive(client.clone(), vm.url(&format!("/w/{id}/"))).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "alive"));

    // The hog: the connection dies with the server.
    let hogged = Instant::now();
    let hog = client
        .get(vm.url(&format!("/w/{id}/?hog")))
        .timeout(Duration::from_secs(240))
        .send()
        .await;
    assert!(
        hog.as_ref().map_or(true, |r| r.status() != 200),
        "the hog answered: {hog:?}"
    );
    let deadline = Instant::now() + BOOT_TIMEOUT;
    while !vm.serial().contains("init: started the runner") || !vm.serial().contains("start=2") {
        vm.assert_running();
        assert!(
            Instant::now() < deadline,
            "init did not restart the runner:\n{}",
            vm.tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let back = wait_healthy(&mut vm, &client, hogged).await;
    let serial = vm.serial();
    eprintln!(
        "image (oom): /healthz 200 again {:.2} s after the hog was sent; console:\n{}",
        back.as_secs_f64(),
        serial
            .lines()
            .filter(|l| l.contains("init:") && !l.contains("reaped")
                || l.contains("out of memory")
                || l.contains("Killed process"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        serial.contains("init: the runner was killed by the out-of-memory killer"),
        "{serial}"
    );
    assert!(serial.contains("starting it again in 1s"), "{serial}");
    // The cgroup's limit, not the machine's memory, ran out: the kernel says so (its OOM kill
    // messages are errors, printed even with `quiet`), naming the server.
    assert!(
        serial.contains("Memory cgroup out of memory: Killed process")
            && serial.contains("(runner)"),
        "{serial}"
    );
    assert!(
        !serial.contains("Out of memory: Killed process"),
        "{serial}"
    );
    // No reboot, no panic: init started once, and the kernel's uptime when init restarted the
    // server is later than when init started (a reboot would start it from zero again).
    assert_eq!(serial.matches("runner is PID 1").count(), 1, "{serial}");
    assert!(!serial.contains("Kernel panic"), "{serial}");
    let uptime = |marker: &str| -> f64 {
        let line = serial.lines().find(|l| l.contains(marker)).unwrap();
        let value = line.split("kernel_uptime_s=\"").nth(1).unwrap();
        value.split('"').next().unwrap().parse().unwrap()
    };
    let (booted, restarted) = (uptime("runner is PID 1"), uptime("starting it again"));
    eprintln!(
        "image (oom): kernel uptime {booted} s at init's start, {restarted} s at the restart"
    );
    assert!(restarted > booted + 1.0, "{booted} → {restarted}");
    // The worker on the state disk is back, still managed by its token, and answers.
    assert!(serial.contains("restored=1 failed=0"), "{serial}");
    let response = client
        .get(vm.url(&format!("/workers/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, body) = alive(client.clone(), vm.url(&format!("/w/{id}/"))).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "alive"));

    // The power button still reaches the (new) server through init.
    let serial = power_down(&mut vm).await;
    assert!(serial.contains("state disk unmounted cleanly"), "{serial}");
}
