//! Starts a private swtpm (TPM 2.0, TCP) per test: its own state directory and free ports.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use crate::tpm::{DeviceTransport, TcpTransport, Tpm};

/// A running swtpm; killed (and its state removed) on drop.
pub(crate) struct Swtpm {
    child: Child,
    _state: tempfile::TempDir,
    /// The TCP command socket (`None` for `start_chardev`). swtpm serves one connection at a
    /// time: close the first client before connecting another.
    addr: Option<std::net::SocketAddr>,
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn not_installed() -> ! {
    panic!("swtpm is not installed: run scripts/setup.sh (Debian packages swtpm, swtpm-tools)")
}

/// Fails the test (never skips it) when there is no `swtpm` to run.
fn require_swtpm() {
    match Command::new("swtpm").arg("--version").output() {
        Err(e) if e.kind() == ErrorKind::NotFound => not_installed(),
        Err(e) => panic!("run swtpm --version: {e}"),
        Ok(_) => {}
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

impl Swtpm {
    /// The TCP command socket's address (of a swtpm from [`Swtpm::start`]).
    pub(crate) fn addr(&self) -> std::net::SocketAddr {
        self.addr.expect("a TCP swtpm")
    }

    /// Starts swtpm and connects to its command socket. Fails (never skips) when swtpm is not
    /// installed.
    pub(crate) fn start() -> (Swtpm, Tpm<TcpTransport>) {
        // Two ports picked by the kernel and released: another process may grab one in
        // between, so a swtpm that exits at once is retried on new ports.
        for _ in 0..5 {
            if let Some(started) = Self::try_start() {
                return started;
            }
        }
        panic!("swtpm did not start on 5 pairs of ports");
    }

    /// Starts `swtpm chardev` on one end of a socket pair and returns the other end as a
    /// [`DeviceTransport`]: the same write-a-command, read-a-response use as `/dev/tpmrm0`.
    pub(crate) fn start_chardev() -> (Swtpm, Tpm<DeviceTransport>) {
        require_swtpm();
        let state = tempfile::tempdir().expect("temp dir");
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        // swtpm refuses fds 0..2: the shell moves the socket (its stdin) to fd 3.
        let spawned = Command::new("sh")
            .arg("-c")
            .arg(r#"exec swtpm chardev --tpm2 --fd 3 --tpmstate dir="$0" --flags not-need-init,startup-clear 3<&0 </dev/null"#)
            .arg(state.path())
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sh");
        let swtpm = Swtpm {
            child: spawned,
            _state: state,
            addr: None,
        };
        let file = File::from(OwnedFd::from(ours));
        (
            swtpm,
            Tpm::new(DeviceTransport::from_file(file, "swtpm chardev socket")),
        )
    }

    fn try_start() -> Option<(Swtpm, Tpm<TcpTransport>)> {
        let state = tempfile::tempdir().expect("temp dir");
        let (port, ctrl) = (free_port(), free_port());
        let spawned = Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={ctrl},bindaddr=127.0.0.1"))
            .arg("--tpmstate")
            .arg(format!("dir={}", state.path().display()))
            .arg("--flags")
            .arg("not-need-init,startup-clear")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == ErrorKind::NotFound => not_installed(),
            Err(e) => panic!("spawn swtpm: {e}"),
        };
        let mut swtpm = Swtpm {
            child,
            _state: state,
            addr: Some(([127, 0, 0, 1], port).into()),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = swtpm.child.try_wait() {
                return None;
            }
            if let Ok(transport) = TcpTransport::connect(("127.0.0.1", port)) {
                return Some((swtpm, Tpm::new(transport)));
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = swtpm.child.kill();
        panic!("swtpm did not listen on port {port} within 10 s");
    }
}
