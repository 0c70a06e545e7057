//! Which TEE is this machine in: configfs-tsm first (it serves SNP and TDX alike), then the
//! SEV and TDX guest devices, else none.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::host::Fs;
use crate::tsm;

/// SEV-SNP guest device.
pub(crate) const SEV_GUEST_DEVICE: &str = "/dev/sev-guest";
/// TDX guest device.
pub(crate) const TDX_GUEST_DEVICE: &str = "/dev/tdx_guest";

/// A trusted execution environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tee {
    /// AMD SEV-SNP guest.
    Snp,
    /// Intel TDX guest.
    Tdx,
    /// No TEE: development mode, nothing is protected from the host.
    None,
}

impl fmt::Display for Tee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tee::Snp => "snp",
            Tee::Tdx => "tdx",
            Tee::None => "none",
        })
    }
}

/// The kernel interface evidence comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interface {
    /// `/sys/kernel/config/tsm/report` (Linux ≥ 6.7).
    ConfigfsTsm,
    /// `/dev/sev-guest` ioctls.
    SevGuestDevice,
    /// `/dev/tdx_guest` (no quote without configfs-tsm; see [`crate::Error::TdxQuoteNeedsConfigfs`]).
    TdxGuestDevice,
    /// Azure's vTPM: the paravisor holds the TEE's device; its report comes inside the HCL
    /// report (NV index 0x01400001), with a quote by the vTPM's AK.
    AzureVtpm,
    /// Nothing found.
    None,
}

/// What detection found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detection {
    /// The TEE.
    pub tee: Tee,
    /// Where its evidence comes from.
    pub interface: Interface,
}

pub(crate) fn probe(fs: &dyn Fs) -> Detection {
    if tsm::available(fs) {
        match tsm::provider(fs) {
            Ok(p) => match tsm::tee_of_provider(&p) {
                Some(tee) => {
                    return Detection {
                        tee,
                        interface: Interface::ConfigfsTsm,
                    }
                }
                None => {
                    tracing::warn!(provider = %p, "configfs-tsm provider not supported; trying the guest devices")
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "configfs-tsm present but unusable; trying the guest devices")
            }
        }
    }
    if fs.exists(Path::new(SEV_GUEST_DEVICE)) {
        return Detection {
            tee: Tee::Snp,
            interface: Interface::SevGuestDevice,
        };
    }
    if fs.exists(Path::new(TDX_GUEST_DEVICE)) {
        return Detection {
            tee: Tee::Tdx,
            interface: Interface::TdxGuestDevice,
        };
    }
    Detection {
        tee: Tee::None,
        interface: Interface::None,
    }
}
