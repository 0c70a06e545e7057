//! The open-files limit (`RLIMIT_NOFILE`) and the connection cap under it.
//!
//! At start the runner raises its soft limit to the hard one (the appliance's init gets the
//! kernel's 1,024 soft / 4,096 hard), so that the connection cap, not `EMFILE`, is what binds.
//! The cap is then kept below the limit with room for everything else: the workers' threads,
//! their outgoing sockets and the state directory's files ([`reserved`]).

/// Descriptors kept for the runner itself (its runtime, logs, state directory, listeners).
pub const RESERVED_BASE: u64 = 256;
/// Descriptors kept per worker (its event loop, outgoing connections, files it touches).
pub const RESERVED_PER_WORKER: u64 = 16;
/// The cap never goes below this, even when the limit is smaller than the reserve.
pub const MIN_CONNECTIONS: usize = 16;

/// The open-files limit before and after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    pub before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the limits (an error if they
/// cannot be read or set).
pub fn raise() -> std::io::Result<FdLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the rlimit we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(FdLimit {
        before,
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    })
}

/// Descriptors kept out of the connection budget for `max_workers` workers.
pub fn reserved(max_workers: usize) -> u64 {
    RESERVED_BASE.saturating_add(RESERVED_PER_WORKER.saturating_mul(max_workers as u64))
}

/// The connection cap to use: `wanted`, lowered so that it fits under the soft limit `soft`
/// after [`reserved`]; never lowered below [`MIN_CONNECTIONS`].
pub fn connection_cap(wanted: usize, soft: u64, max_workers: usize) -> usize {
    let room = soft.saturating_sub(reserved(max_workers));
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    wanted.min(room.max(MIN_CONNECTIONS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_under_the_open_files_limit() {
        // The appliance: 4,096 after raising, 128 workers: room for 1,792.
        assert_eq!(connection_cap(1_024, 4_096, 128), 1_024);
        assert_eq!(connection_cap(4_000, 4_096, 128), 4_096 - 256 - 16 * 128);
        // A limit below the reserve still serves a few.
        assert_eq!(connection_cap(1_024, 1_024, 128), MIN_CONNECTIONS);
        assert_eq!(connection_cap(10, 1 << 20, 128), 10);
    }

    #[test]
    fn raising_reaches_the_hard_limit() {
        let limit = raise().expect("read and raise RLIMIT_NOFILE");
        assert_eq!(limit.soft, limit.hard);
        assert!(limit.soft >= limit.before);
    }
}
