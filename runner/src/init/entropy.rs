//! Entropy at boot. The image is stateless: there is no seed file from a previous boot to restore.
//! The kernel seeds its CRNG from the CPU (RDSEED/RDRAND, which SNP and TDX guests trust, and
//! which the kernel credits by default), interrupts, and a hardware RNG such as `virtio-rng`
//! (host-provided: in a confidential guest it is mixed in but must not be the only source).
//!
//! Init checks that the CRNG is initialised, waiting a bounded time if not, and mixes extra CPU
//! randomness into the pool (written to `/dev/urandom`, never credited).

use std::io::Write;
use std::time::{Duration, Instant};

/// How long init waits for the kernel's CRNG before giving up.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum EntropyError {
    #[error("the kernel's random number generator was not ready after {0:?}")]
    NotReady(Duration),
    #[error("getrandom failed: {0}")]
    GetRandom(nix::errno::Errno),
}

/// Waits for the CRNG (bounded by [`READY_TIMEOUT`]), then mixes in CPU randomness.
pub fn check_and_seed() -> Result<(), EntropyError> {
    let started = Instant::now();
    let waited = wait_until_ready(READY_TIMEOUT)?;
    let mixed = mix_cpu_randomness();
    let available = std::fs::read_to_string("/proc/sys/kernel/random/entropy_avail")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    tracing::info!(
        waited_ms = waited.as_millis() as u64,
        cpu_bytes_mixed = mixed,
        entropy_avail = %available,
        hwrng = %std::fs::read_to_string("/sys/class/misc/hw_random/rng_current")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "none".to_owned()),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "init: kernel CRNG ready"
    );
    Ok(())
}

/// Returns how long it waited for `getrandom` to stop blocking.
fn wait_until_ready(timeout: Duration) -> Result<Duration, EntropyError> {
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let mut told = false;
    loop {
        match getrandom_nonblock(&mut byte) {
            Ok(()) => return Ok(started.elapsed()),
            Err(nix::errno::Errno::EAGAIN) if started.elapsed() < timeout => {
                if !told {
                    tracing::info!("init: waiting for the kernel CRNG");
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(nix::errno::Errno::EAGAIN) => return Err(EntropyError::NotReady(timeout)),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(EntropyError::GetRandom(e)),
        }
    }
}

fn getrandom_nonblock(buf: &mut [u8]) -> Result<(), nix::errno::Errno> {
    // SAFETY: the pointer and length describe `buf`, which outlives the call.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    if n < 0 {
        Err(nix::errno::Errno::last())
    } else {
        Ok(())
    }
}

/// Writes 64 bytes from RDSEED (or RDRAND) into `/dev/urandom`; returns how many were mixed.
fn mix_cpu_randomness() -> usize {
    let bytes = cpu_random_bytes::<64>();
    let Some(bytes) = bytes else {
        tracing::info!("init: the CPU has no RDSEED/RDRAND to mix in");
        return 0;
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")
        .and_then(|mut f| f.write_all(&bytes))
    {
        Ok(()) => bytes.len(),
        Err(e) => {
            tracing::warn!("init: cannot write to /dev/urandom: {e}");
            0
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn cpu_random_bytes<const N: usize>() -> Option<[u8; N]> {
    use std::arch::x86_64::{_rdrand64_step, _rdseed64_step};
    let rdseed = std::arch::is_x86_feature_detected!("rdseed");
    let rdrand = std::arch::is_x86_feature_detected!("rdrand");
    if !rdseed && !rdrand {
        return None;
    }
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        let mut value = 0u64;
        // Both instructions may transiently fail; retry a bounded number of times.
        let ok = (0..64).any(|_| {
            // SAFETY: the CPU supports the instruction (checked above); it only writes `value`.
            unsafe {
                if rdseed {
                    _rdseed64_step(&mut value) == 1
                } else {
                    _rdrand64_step(&mut value) == 1
                }
            }
        });
        if !ok {
            return None;
        }
        chunk.copy_from_slice(&value.to_ne_bytes()[..chunk.len()]);
    }
    Some(out)
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_random_bytes<const N: usize>() -> Option<[u8; N]> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_host_has_a_ready_crng() {
        assert!(wait_until_ready(Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn cpu_randomness_differs_between_draws() {
        if let (Some(a), Some(b)) = (cpu_random_bytes::<32>(), cpu_random_bytes::<32>()) {
            assert_ne!(a, b);
        }
    }
}
