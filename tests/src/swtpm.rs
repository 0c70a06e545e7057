//! A software TPM (`swtpm`, Debian's package) for QEMU's `tpm-emulator`, and reading its PCRs
//! from the host once the guest is gone: the image tests compare what the firmware measured with
//! the manifest's predictions.
//!
//! QEMU talks to swtpm over its control socket and hands it the data channel (CMD_SET_DATAFD). After
//! QEMU is killed (not shut down: a clean exit sends CMD_SHUTDOWN, which ends swtpm and its state),
//! the control socket is free again: [`Swtpm::pcr_read`] passes swtpm one end of a socket pair the
//! same way and sends TPM2_PCR_Read over the other.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// swtpm's control command that passes the data channel's descriptor.
const CMD_SET_DATAFD: u32 = 16;
const TPM2_CC_PCR_READ: u32 = 0x17e;
const TPM_ALG_SHA256: u16 = 0x000b;

pub struct Swtpm {
    child: Child,
    ctrl: PathBuf,
}

impl Swtpm {
    /// Starts `swtpm socket --tpm2` with its state and control socket in `dir`; `None` when swtpm
    /// is not installed.
    pub fn start(dir: &Path) -> Option<Swtpm> {
        let ctrl = dir.join("swtpm-ctrl");
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--tpmstate"])
            .arg(format!("dir={}", dir.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", ctrl.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let started = Instant::now();
        while !ctrl.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "swtpm made no control socket"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Swtpm { child, ctrl })
    }

    /// QEMU's arguments for a TPM 2.0 CRB device backed by this swtpm.
    pub fn qemu_args(&self) -> Vec<String> {
        vec![
            "-chardev".into(),
            format!("socket,id=swtpm,path={}", self.ctrl.display()),
            "-tpmdev".into(),
            "emulator,id=tpm0,chardev=swtpm".into(),
            "-device".into(),
            "tpm-crb,tpmdev=tpm0".into(),
        ]
    }

    /// The SHA-256 bank's value of each PCR in `pcrs`, once no QEMU holds the control socket.
    pub fn pcr_read(&self, pcrs: &[u32]) -> std::io::Result<Vec<[u8; 32]>> {
        let ctrl = UnixStream::connect(&self.ctrl)?;
        let (mut ours, theirs) = UnixStream::pair()?;
        send_fd(&ctrl, CMD_SET_DATAFD, theirs.as_raw_fd())?;
        let mut result = [0u8; 4];
        (&ctrl).read_exact(&mut result)?;
        if result != [0; 4] {
            return Err(std::io::Error::other(format!(
                "CMD_SET_DATAFD: {}",
                u32::from_be_bytes(result)
            )));
        }
        pcrs.iter()
            .map(|&pcr| pcr_read_one(&mut ours, pcr))
            .collect()
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// TPM2_PCR_Read of one PCR in the SHA-256 bank.
fn pcr_read_one(tpm: &mut UnixStream, pcr: u32) -> std::io::Result<[u8; 32]> {
    let mut select = [0u8; 3];
    select[(pcr / 8) as usize] |= 1 << (pcr % 8);
    let mut body = Vec::new();
    body.extend_from_slice(&1u32.to_be_bytes());
    body.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    body.push(3);
    body.extend_from_slice(&select);
    let mut command = Vec::new();
    command.extend_from_slice(&0x8001u16.to_be_bytes()); // TPM_ST_NO_SESSIONS
    command.extend_from_slice(&(10 + body.len() as u32).to_be_bytes());
    command.extend_from_slice(&TPM2_CC_PCR_READ.to_be_bytes());
    command.extend_from_slice(&body);
    tpm.write_all(&command)?;
    let mut header = [0u8; 10];
    tpm.read_exact(&mut header)?;
    let size = u32::from_be_bytes(header[2..6].try_into().unwrap()) as usize;
    let code = u32::from_be_bytes(header[6..10].try_into().unwrap());
    let mut rest = vec![0u8; size.saturating_sub(10)];
    tpm.read_exact(&mut rest)?;
    if code != 0 {
        return Err(std::io::Error::other(format!("TPM2_PCR_Read: {code:#x}")));
    }
    // pcrUpdateCounter, TPML_PCR_SELECTION (count, then hash + sizeofSelect + select each),
    // TPML_DIGEST (count, then size + digest).
    let mut at = 4;
    let selections = u32::from_be_bytes(rest[at..at + 4].try_into().unwrap());
    at += 4;
    for _ in 0..selections {
        at += 3 + rest[at + 2] as usize;
    }
    at += 4;
    let len = u16::from_be_bytes(rest[at..at + 2].try_into().unwrap()) as usize;
    at += 2;
    rest.get(at..at + len)
        .and_then(|d| d.try_into().ok())
        .ok_or_else(|| std::io::Error::other("TPM2_PCR_Read: no SHA-256 digest"))
}

/// Sends the 4-byte big-endian `command` with `fd` attached (SCM_RIGHTS).
fn send_fd(socket: &UnixStream, command: u32, fd: i32) -> std::io::Result<()> {
    let bytes = command.to_be_bytes();
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let fd_size = std::mem::size_of::<i32>() as u32;
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(fd_size) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the sendmsg call.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    message.msg_controllen = space as _;
    // SAFETY: the control buffer is CMSG_SPACE(4) bytes, so the first header and its 4 data bytes
    // lie inside it.
    let sent = unsafe {
        let header = libc::CMSG_FIRSTHDR(&message);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(fd_size) as _;
        std::ptr::copy_nonoverlapping(
            (&fd as *const i32).cast::<u8>(),
            libc::CMSG_DATA(header),
            fd_size as usize,
        );
        libc::sendmsg(socket.as_raw_fd(), &message, 0)
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
