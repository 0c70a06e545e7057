//! The wall clock at boot. The kernel sets it from the RTC (`CONFIG_RTC_HCTOSYS`); when it did not
//! (no RTC driver, or the RTC was read as garbage), init reads `/dev/rtc0` itself. A time before
//! [`EARLIEST_PLAUSIBLE`] is logged as untrustworthy.
//!
//! Inside a confidential guest the RTC and the kvm-clock are the host's: TLS certificate checks and
//! cron schedules depend on a time the host chooses. A trusted time source (e.g. NTS or Roughtime
//! checked inside the guest) is future work.

use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime};

/// 2025-01-01T00:00:00Z: no appliance image is older than this.
pub const EARLIEST_PLAUSIBLE: u64 = 1_735_689_600;

/// `struct rtc_time` from `<linux/rtc.h>` (the fields of `struct tm`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RtcTime {
    pub tm_sec: libc::c_int,
    pub tm_min: libc::c_int,
    pub tm_hour: libc::c_int,
    pub tm_mday: libc::c_int,
    pub tm_mon: libc::c_int,
    pub tm_year: libc::c_int,
    pub tm_wday: libc::c_int,
    pub tm_yday: libc::c_int,
    pub tm_isdst: libc::c_int,
}

// RTC_RD_TIME = _IOR('p', 0x09, struct rtc_time)
nix::ioctl_read!(rtc_rd_time, b'p', 0x09, RtcTime);

/// Logs the current time; sets it from `/dev/rtc0` when it is implausibly early.
pub fn check_and_set() {
    let now = unix_now();
    if now >= EARLIEST_PLAUSIBLE {
        tracing::info!(
            unix_time = now,
            "init: clock set (from the RTC by the kernel)"
        );
        return;
    }
    match read_rtc().map(|rtc| (rtc, rtc_to_unix(&rtc))) {
        Ok((_, Some(secs))) if secs >= EARLIEST_PLAUSIBLE => {
            let ts = nix::sys::time::TimeSpec::new(secs as libc::time_t, 0);
            match nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts) {
                Ok(()) => tracing::info!(unix_time = secs, "init: clock set from /dev/rtc0"),
                Err(e) => tracing::warn!("init: cannot set the clock: {e}"),
            }
        }
        Ok((rtc, _)) => {
            tracing::warn!(
                unix_time = now,
                ?rtc,
                "init: the clock and the RTC are implausible"
            )
        }
        Err(e) => tracing::warn!(unix_time = now, "init: clock implausible, no RTC: {e}"),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

fn read_rtc() -> Result<RtcTime, String> {
    let rtc = std::fs::File::open("/dev/rtc0").map_err(|e| format!("open /dev/rtc0: {e}"))?;
    let mut time = RtcTime::default();
    // SAFETY: RTC_RD_TIME fills a `struct rtc_time`, which `RtcTime` mirrors; the fd is open.
    unsafe { rtc_rd_time(rtc.as_raw_fd(), &mut time) }.map_err(|e| format!("RTC_RD_TIME: {e}"))?;
    Ok(time)
}

/// Seconds since 1970 for an RTC reading (UTC; `tm_year` counts from 1900, `tm_mon` from 0), or
/// `None` if a field is out of range.
pub fn rtc_to_unix(t: &RtcTime) -> Option<u64> {
    let in_range = (0..60).contains(&t.tm_sec)
        && (0..60).contains(&t.tm_min)
        && (0..24).contains(&t.tm_hour)
        && (1..=31).contains(&t.tm_mday)
        && (0..12).contains(&t.tm_mon)
        && t.tm_year >= 70;
    if !in_range {
        return None;
    }
    let days = days_from_civil(
        i64::from(t.tm_year) + 1900,
        i64::from(t.tm_mon) + 1,
        i64::from(t.tm_mday),
    );
    let secs = days * 86_400
        + i64::from(t.tm_hour) * 3600
        + i64::from(t.tm_min) * 60
        + i64::from(t.tm_sec);
    u64::try_from(secs).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtc(year: i32, mon: i32, mday: i32, hour: i32, min: i32, sec: i32) -> RtcTime {
        RtcTime {
            tm_year: year - 1900,
            tm_mon: mon - 1,
            tm_mday: mday,
            tm_hour: hour,
            tm_min: min,
            tm_sec: sec,
            ..RtcTime::default()
        }
    }

    #[test]
    fn rtc_readings_convert_to_unix_time() {
        assert_eq!(rtc_to_unix(&rtc(1970, 1, 1, 0, 0, 0)), Some(0));
        assert_eq!(
            rtc_to_unix(&rtc(2025, 1, 1, 0, 0, 0)),
            Some(EARLIEST_PLAUSIBLE)
        );
        // A leap day.
        assert_eq!(
            rtc_to_unix(&rtc(2024, 2, 29, 12, 34, 56)),
            Some(1_709_210_096)
        );
        assert_eq!(
            rtc_to_unix(&rtc(2026, 11, 25, 15, 52, 0)),
            Some(1_795_621_920)
        );
    }

    #[test]
    fn out_of_range_readings_are_refused() {
        assert_eq!(rtc_to_unix(&rtc(1969, 12, 31, 23, 59, 59)), None);
        assert_eq!(rtc_to_unix(&rtc(2025, 13, 1, 0, 0, 0)), None);
        assert_eq!(rtc_to_unix(&rtc(2025, 1, 1, 24, 0, 0)), None);
    }
}
