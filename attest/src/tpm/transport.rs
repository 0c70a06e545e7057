//! How command bytes reach a TPM: the kernel's resource manager device (`/dev/tpmrm0`) or
//! swtpm's TCP server socket. Both carry raw TPM 2.0 command and response bytes.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::TpmError;

/// The largest response a TPM sends (the kernel's TPM_BUFSIZE).
pub const MAX_RESPONSE: usize = 4096;

/// Sends one TPM command and returns its whole response.
pub trait Transport {
    /// Writes `command` and reads the response (header included).
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TpmError>;
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TpmError> {
        (**self).transact(command)
    }
}

/// The kernel's TPM device. Use `/dev/tpmrm0` (the in-kernel resource manager: transient
/// objects are flushed when the file is closed, and other users' objects never collide with
/// ours); `/dev/tpm0` works too but leaves objects behind.
pub struct DeviceTransport {
    file: File,
    path: PathBuf,
}

/// The resource-manager device path.
pub const TPMRM_DEVICE: &str = "/dev/tpmrm0";

impl DeviceTransport {
    /// Opens the device read-write.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, TpmError> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| TpmError::io(format!("open {}", path.display()), e))?;
        Ok(Self { file, path })
    }

    /// Uses an already open device (or anything with the device's one-command-per-write,
    /// one-response-per-read behaviour, e.g. a socket to `swtpm chardev`); `path` names it in
    /// errors.
    pub fn from_file(file: File, path: impl Into<PathBuf>) -> Self {
        Self {
            file,
            path: path.into(),
        }
    }
}

impl Transport for DeviceTransport {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TpmError> {
        // The device takes one whole command per write and returns one whole response per read.
        self.file
            .write_all(command)
            .map_err(|e| TpmError::io(format!("write {}", self.path.display()), e))?;
        let mut buf = vec![0u8; MAX_RESPONSE];
        let n = self
            .file
            .read(&mut buf)
            .map_err(|e| TpmError::io(format!("read {}", self.path.display()), e))?;
        buf.truncate(n);
        Ok(buf)
    }
}

/// swtpm's (or any raw TPM-over-TCP server's) command socket: `swtpm socket --server
/// type=tcp,port=P`.
pub struct TcpTransport {
    stream: TcpStream,
}

impl TcpTransport {
    /// Connects, with a 30 s read/write timeout per command.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Self, TpmError> {
        let stream = TcpStream::connect(addr).map_err(|e| TpmError::io("connect to TPM", e))?;
        let timeout = Some(Duration::from_secs(30));
        stream
            .set_read_timeout(timeout)
            .and_then(|()| stream.set_write_timeout(timeout))
            .map_err(|e| TpmError::io("set TPM socket timeouts", e))?;
        Ok(Self { stream })
    }
}

impl Transport for TcpTransport {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TpmError> {
        self.stream
            .write_all(command)
            .map_err(|e| TpmError::io("write TPM command", e))?;
        // A stream: read the 10-byte header, then the rest of the size it announces.
        let mut response = vec![0u8; 10];
        self.stream
            .read_exact(&mut response)
            .map_err(|e| TpmError::io("read TPM response header", e))?;
        let size = u32::from_be_bytes([response[2], response[3], response[4], response[5]]);
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if !(10..=MAX_RESPONSE).contains(&size) {
            return Err(TpmError::Malformed {
                what: "TPM response",
                reason: format!("header announces {size} bytes"),
            });
        }
        response.resize(size, 0);
        self.stream
            .read_exact(&mut response[10..])
            .map_err(|e| TpmError::io("read TPM response", e))?;
        Ok(response)
    }
}
