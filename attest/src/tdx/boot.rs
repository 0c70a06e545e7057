//! Which TDX launches the policy accepts: our direct-boot images by their exact MRTD and RTMRs
//! (`expected.tdx`), and UEFI boots in a cloud by an allow-listed (`expected.tdx_firmware`) or
//! Google-endorsed (`expected.endorsed_firmware`) firmware MRTD plus the boot
//! event log, replayed against the quote's RTMRs and checked against the image's predictions
//! (`expected.uefi`).

use crate::error::{MeasurementError, Register, VerifyError};
use crate::eventlog::{check_image_events, verify_tdx_event_log, EventLogError};
use crate::measurement::{ExpectedMeasurements, TdxMeasurements, UefiPlatform};

/// Accepts the verified quote's registers `got` (with the evidence's `event_log`) at `now` (Unix
/// seconds: an endorsement counts only while its chain is valid). Returns the UEFI platform
/// whose predictions matched, or `None` for an exact-register match.
pub(crate) fn check_launch(
    expected: &ExpectedMeasurements,
    got: &TdxMeasurements,
    event_log: Option<&[u8]>,
    now: u64,
) -> Result<Option<String>, VerifyError> {
    let platforms: Vec<&UefiPlatform> = expected
        .uefi
        .iter()
        .filter(|p| p.prediction.is_tdx())
        .collect();
    let exact = expected.check_tdx(got);
    if exact.is_ok() || platforms.is_empty() {
        return exact.map(|()| None).map_err(VerifyError::from);
    }
    let Some(log) = event_log else {
        // Without a log only the exact path could have accepted; say why it did not, unless the
        // policy has no exact values at all.
        return Err(match exact {
            Err(e) if !expected.tdx.is_empty() => e.into(),
            _ => EventLogError::Missing.into(),
        });
    };
    let firmware: Vec<_> = expected
        .tdx_firmware
        .iter()
        .filter(|f| f.mrtd == got.mrtd)
        .collect();
    let endorsed = expected.tdx_endorsement(&got.mrtd, now);
    if firmware.is_empty() && endorsed.is_none() {
        return Err(MeasurementError::FirmwareNotAllowed {
            mrtd: got.mrtd.to_string(),
        }
        .into());
    }
    // An allow-list entry for this MRTD decides RTMR[0]; an endorsement alone pins none.
    if !firmware.is_empty()
        && !firmware
            .iter()
            .any(|f| f.rtmr0.is_none_or(|r| r == got.rtmr0))
    {
        return Err(MeasurementError::Mismatch {
            register: Register::Rtmr0,
            got: got.rtmr0.to_string(),
        }
        .into());
    }
    let replayed = verify_tdx_event_log(log, &[got.rtmr0, got.rtmr1, got.rtmr2, got.rtmr3])?;
    let mut first_refusal = None;
    for platform in platforms {
        match check_image_events(&replayed, &platform.prediction) {
            Ok(()) => {
                tracing::debug!(platform = %platform.platform, "TDX boot log matches the image");
                return Ok(Some(platform.platform.clone()));
            }
            Err(e) => {
                first_refusal.get_or_insert(e);
            }
        }
    }
    Err(first_refusal.unwrap_or(EventLogError::Missing).into())
}

#[cfg(test)]
#[path = "boot_tests.rs"]
mod tests;
