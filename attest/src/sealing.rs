//! Sealing roots: 32-byte secrets the untrusted host cannot get, one per purpose.
//!
//! - **SEV-SNP**: the AMD secure processor derives a key (`MSG_KEY_REQ` through
//!   `/dev/sev-guest`) from a root only it holds, mixed with launch values it measured itself.
//!   [`sealing_request`] says exactly which; in short: root **VCEK**, mixed with the **launch
//!   measurement** (another kernel, initrd or command line gets another key, so a new image cannot
//!   read an old image's state) and the **guest policy** (the same image launched with a weaker
//!   policy, e.g. debug allowed so the host can read guest memory, gets another key), at **VMPL 0**.
//! - **TDX** has no such derived key: [`SealingError::NoDerivedKey`]. The caller runs stateless
//!   or uses a key released to this image's identity by a key store (issue 5's Sapphire store).
//! - **No TEE** (development): nothing here; the runner keeps a random root in a 0600 file and
//!   says loudly that it is insecure (`runner::state`).
//!
//! The hardware key is never used directly: [`SealingRoot::derive`] (HKDF-SHA256, salt
//! [`HKDF_SALT`], info = the purpose) gives each use its own independent key, so e.g. the state
//! store's key ([`PURPOSE_STATE`]) tells nothing about the `local` key store's root
//! ([`PURPOSE_LOCAL_KEYS`]).
//!
//! What a VCEK-rooted key means in practice:
//! - It is bound to **this chip**: the same image on another host gets another key, so sealed
//!   state does not follow a disk to another machine (VMRK would, but exists only with a
//!   migration agent, which our guest policy does not allow).
//! - Every VM running **the same image on the same chip** gets the same key. That is what makes
//!   state survive a reboot, and also why the state store binds each record to its own directory
//!   (a store id), not only to the key.
//! - `TCB_VERSION` and `GUEST_SVN` are not selected: we do not pin a TCB of our own choosing into
//!   the key. Whether a firmware TCB update changes a VCEK-rooted key has not been checked on
//!   hardware (none here); if it does, records sealed before the update are refused (reported,
//!   not lost silently) and need an explicit migration.
//! - `IMAGE_ID` / `FAMILY_ID` are not selected: they come from an ID block, which our launch does
//!   not use; the measurement already names the image.
//! - VMPL 0: only software at VMPL 0 (the runner, there being no SVSM) can ask for this key. A
//!   guest under an SVSM (running at VMPL ≥ 1) gets a device error: run stateless there.

use std::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::attester::Attester;
use crate::detect::Tee;
use crate::error::Error;
use crate::snp::DerivedKeyRequest;

/// HKDF salt: the domain of every sealing root derived here. Changing it changes every key.
pub const HKDF_SALT: &[u8] = b"smart-worker/sealing/v1";

/// Purpose label of the runner's sealed state directory (issue 11).
pub const PURPOSE_STATE: &str = "smart-worker/state/v1";

/// Purpose label of the `local` key store's root (issue 5).
pub const PURPOSE_LOCAL_KEYS: &str = "smart-worker/local-keys/v1";

/// A 32-byte secret for one purpose. Wiped when dropped; `Debug` does not print it.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SealingRoot([u8; 32]);

impl SealingRoot {
    /// Wraps key bytes from elsewhere (a development root file, a key released by a key store).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SealingRoot(bytes)
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// An independent key for `purpose`: HKDF-SHA256 with salt [`HKDF_SALT`], this root as input
    /// key material and `purpose` as info. Different purposes give unrelated keys.
    pub fn derive(&self, purpose: &str) -> SealingRoot {
        let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), &self.0);
        let mut out = [0u8; 32];
        match hk.expand(purpose.as_bytes(), &mut out) {
            Ok(()) => SealingRoot(out),
            // HKDF-SHA256 gives up to 255 × 32 bytes; 32 is always valid.
            Err(_) => unreachable!("32 bytes is a valid HKDF-SHA256 output length"),
        }
    }
}

impl fmt::Debug for SealingRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealingRoot(..)")
    }
}

/// No sealing root could be obtained.
#[derive(Debug, thiserror::Error)]
pub enum SealingError {
    /// This TEE offers no key derived from the measurement (TDX).
    #[error("a {tee} guest has no measurement-bound derived key: run stateless, or use a key released to this image by a key store")]
    NoDerivedKey {
        /// The TEE found.
        tee: Tee,
    },
    /// Not in a TEE: there is no hardware key (development: use an insecure file root).
    #[error("no TEE (not an SNP guest, no /dev/sev-guest): there is no hardware sealing key; development mode needs an (insecure) file root")]
    NoTee,
    /// An SNP guest, but the secure processor did not give the key (device absent or not
    /// openable, firmware refusal, e.g. VMPL 0 asked from a higher VMPL).
    #[error("SNP derived key: {0}")]
    Device(#[source] Error),
    /// The purpose label was empty.
    #[error("a sealing purpose label must not be empty")]
    EmptyPurpose,
}

/// The request sent to the secure processor: root VCEK; guest policy and launch measurement
/// mixed in; VMPL 0; nothing else (see the module documentation for why each).
pub fn sealing_request() -> DerivedKeyRequest {
    // `DerivedKeyRequest`'s default is exactly this sealing key; the test below pins its bits.
    DerivedKeyRequest::default()
}

/// This machine's sealing root for `purpose` (detects the TEE; blocking ioctl: call from
/// `spawn_blocking` in async code).
pub fn derived_root(purpose: &str) -> Result<SealingRoot, SealingError> {
    Attester::detect().sealing_root(purpose)
}

impl Attester {
    /// The sealing root for `purpose` on the TEE this attester found: the SNP derived key
    /// ([`sealing_request`]) through HKDF with `purpose`; a typed error elsewhere.
    pub fn sealing_root(&self, purpose: &str) -> Result<SealingRoot, SealingError> {
        if purpose.is_empty() {
            return Err(SealingError::EmptyPurpose);
        }
        match self.tee() {
            Tee::Snp => {
                let key = self
                    .snp_derived_key(&sealing_request())
                    .map_err(SealingError::Device)?;
                Ok(SealingRoot::from_bytes(*key.as_bytes()).derive(purpose))
            }
            tee @ Tee::Tdx => Err(SealingError::NoDerivedKey { tee }),
            Tee::None => Err(SealingError::NoTee),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use sev::firmware::guest::GuestFieldSelect;

    use super::*;
    use crate::snp::DerivationRoot;

    fn touch(root: &Path, path: &str) {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"").unwrap();
    }

    #[test]
    fn request_mixes_policy_and_measurement_from_the_vcek_at_vmpl0() {
        let r = sealing_request();
        assert_eq!(r.root, DerivationRoot::Vcek);
        assert_eq!(r.vmpl, 0);
        // GUEST_FIELD_SELECT as the firmware reads it: bit 0 guest policy, bit 3 measurement.
        let mut bits = GuestFieldSelect(0);
        bits.set_guest_policy(r.mix.guest_policy);
        bits.set_image_id(r.mix.image_id);
        bits.set_family_id(r.mix.family_id);
        bits.set_measurement(r.mix.measurement);
        bits.set_svn(r.mix.guest_svn);
        bits.set_tcb_version(r.mix.tcb_version);
        assert_eq!(bits.0, 0b00_1001);
    }

    #[test]
    fn purposes_give_independent_keys_and_the_derivation_is_stable() {
        let hw = SealingRoot::from_bytes([7; 32]);
        let state = hw.derive(PURPOSE_STATE);
        let keys = hw.derive(PURPOSE_LOCAL_KEYS);
        assert_ne!(state, keys);
        assert_ne!(state.as_bytes(), hw.as_bytes());
        assert_eq!(state, hw.derive(PURPOSE_STATE));
        // Another hardware key (another image) gives another key for the same purpose.
        assert_ne!(
            state,
            SealingRoot::from_bytes([8; 32]).derive(PURPOSE_STATE)
        );
        // Pinned: HKDF-SHA256(salt = HKDF_SALT, ikm = [7; 32], info = PURPOSE_STATE).
        let mut expected = [0u8; 32];
        Hkdf::<Sha256>::new(Some(b"smart-worker/sealing/v1"), &[7; 32])
            .expand(b"smart-worker/state/v1", &mut expected)
            .unwrap();
        assert_eq!(state.as_bytes(), &expected);
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(
            format!("{:?}", SealingRoot::from_bytes([0xaa; 32])),
            "SealingRoot(..)"
        );
    }

    #[test]
    fn without_a_tee_there_is_no_hardware_root() {
        let root = tempfile::tempdir().unwrap();
        let a = Attester::detect_at(root.path());
        assert!(matches!(
            a.sealing_root(PURPOSE_STATE),
            Err(SealingError::NoTee)
        ));
        assert!(matches!(
            a.sealing_root(""),
            Err(SealingError::EmptyPurpose)
        ));
    }

    #[test]
    fn tdx_has_no_derived_key() {
        let root = tempfile::tempdir().unwrap();
        touch(root.path(), "dev/tdx_guest");
        let e = Attester::detect_at(root.path())
            .sealing_root(PURPOSE_STATE)
            .unwrap_err();
        assert!(matches!(e, SealingError::NoDerivedKey { tee: Tee::Tdx }));
        assert!(e.to_string().contains("no measurement-bound derived key"));
    }

    #[test]
    fn snp_detected_but_device_absent_is_a_device_error() {
        // Detection sees a (fake) /dev/sev-guest; the ioctl goes to the real one, absent here.
        if Path::new("/dev/sev-guest").exists() {
            return; // a real SNP guest: nothing to show
        }
        let root = tempfile::tempdir().unwrap();
        touch(root.path(), "dev/sev-guest");
        let a = Attester::detect_at(root.path());
        assert_eq!(a.tee(), Tee::Snp);
        let e = a.sealing_root(PURPOSE_STATE).unwrap_err();
        assert!(
            matches!(&e, SealingError::Device(Error::Io { path, .. }) if path == Path::new("/dev/sev-guest")),
            "{e:?}"
        );
        assert!(e.to_string().contains("/dev/sev-guest"), "{e}");
    }
}
