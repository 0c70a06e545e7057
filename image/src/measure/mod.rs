//! Expected measurements of the image.
//!
//! Intel TDX: MRTD and RTMR[1..3] under a pinned TDVF, in [`tdx`].
//!
//! SEV-SNP: the launch digest of measured direct boot under the pinned AmdSev OVMF the image tool
//! builds ([`amdsev_ovmf`]), computed by the `sev` crate exactly as the AMD secure processor does
//! it: the OVMF image's pages and metadata sections, the page of SHA-256
//! hashes of kernel, initrd and command line that QEMU writes for `kernel-hashes=on`, and one VMSA
//! per vCPU (which depends on the vCPU type and the guest features). It is only valid for the OVMF
//! build, vCPU count and vCPU type it was computed with: the manifest records all three.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sev::measurement::sev_hashes::SevHashes;
use sev::measurement::snp::{snp_calc_launch_digest, SnpMeasurementArgs};
use sev::measurement::vcpu_types::CpuType;
use sev::measurement::vmsa::{GuestFeatures, VMMType};

use crate::manifest::{FirmwareSpec, Measurement};
use crate::util::{sha256_file, ToolError};

pub mod amdsev_ovmf;
pub mod tdx;
pub mod uefi;

pub use tdx::{fetch_tdvf, tdx_measurements, TdvfPin, TdxParams, TDVF_PIN};

/// SEV features of the guest's VMSA that QEMU ≥ 9.1 (KVM_SEV_INIT2) launches SNP guests with:
/// `SNPActive` only.
pub const DEFAULT_SNP_GUEST_FEATURES: u64 = 0x1;
pub const DEFAULT_SNP_VCPU_TYPE: &str = "EPYC-v4";

/// What the SNP launch digest depends on besides the image itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpParams {
    /// An OVMF built from `OvmfPkg/AmdSev/AmdSevX64.dsc` (it has the kernel-hashes table).
    pub ovmf: PathBuf,
    pub vcpus: u32,
    /// QEMU's `-cpu` model name, e.g. `EPYC-v4`, `EPYC-Milan`, `EPYC-Genoa`.
    pub vcpu_type: String,
    pub guest_features: u64,
    /// `ovmf` is the pinned build ([`amdsev_ovmf::build`]), not one given by hand.
    pub pinned: bool,
}

impl SnpParams {
    /// The pinned AmdSev OVMF at `ovmf` (as [`amdsev_ovmf::build`] returns it), launched with
    /// `vcpus` vCPUs of QEMU's default SNP model and guest features.
    pub fn pinned(ovmf: PathBuf, vcpus: u32) -> Self {
        SnpParams {
            ovmf,
            vcpus,
            vcpu_type: DEFAULT_SNP_VCPU_TYPE.into(),
            guest_features: DEFAULT_SNP_GUEST_FEATURES,
            pinned: true,
        }
    }

    /// The manifest's `firmware.snp` entry, for the firmware as the bundle carries it
    /// (`bundle_file`).
    pub fn firmware_spec(&self, bundle_file: &str) -> Result<FirmwareSpec, MeasureError> {
        let origin = if self.pinned {
            amdsev_ovmf::origin()
        } else {
            "an AmdSev OVMF given by hand (--snp-ovmf)".to_owned()
        };
        Ok(FirmwareSpec {
            file: Some(bundle_file.to_owned()),
            sha256: Some(sha256_file(&self.ovmf)?),
            note: format!(
                "{origin}; loaded with -bios by QEMU >= 9.1 (sev-snp-guest, kernel-hashes=on): \
                 the kernel, initrd and command line hashes are in the launch digest"
            ),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error("unknown SNP vCPU type {0:?} (one of: {known})", known = known_vcpu_types().join(", "))]
    VcpuType(String),
    #[error("SNP launch digest: {0}")]
    Snp(#[from] sev::error::MeasurementError),
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("TDVF {path}: {source}")]
    Tdvf {
        path: PathBuf,
        source: tdx::TdvfError,
    },
    #[error(transparent)]
    Deb(#[from] crate::deb::DebError),
    #[error("AmdSev OVMF: {0}")]
    AmdSevOvmf(#[from] amdsev_ovmf::AmdSevOvmfError),
    #[error("{deb} has no {file}")]
    TdvfMissing { deb: PathBuf, file: &'static str },
    #[error("TDX: kernel {path}: {reason}")]
    TdxKernel { path: PathBuf, reason: String },
    #[error("TDX: {0}")]
    TdxCmdline(String),
}

/// QEMU `-cpu` models and the `sev` crate's types (the VMSA carries the model's CPUID signature).
const VCPU_TYPES: &[(&str, CpuType)] = &[
    ("EPYC", CpuType::Epyc),
    ("EPYC-v1", CpuType::EpycV1),
    ("EPYC-v2", CpuType::EpycV2),
    ("EPYC-IBPB", CpuType::EpycIBPB),
    ("EPYC-v3", CpuType::EpycV3),
    ("EPYC-v4", CpuType::EpycV4),
    ("EPYC-Rome", CpuType::EpycRome),
    ("EPYC-Rome-v1", CpuType::EpycRomeV1),
    ("EPYC-Rome-v2", CpuType::EpycRomeV2),
    ("EPYC-Rome-v3", CpuType::EpycRomeV3),
    ("EPYC-Milan", CpuType::EpycMilan),
    ("EPYC-Milan-v1", CpuType::EpycMilanV1),
    ("EPYC-Milan-v2", CpuType::EpycMilanV2),
    ("EPYC-Genoa", CpuType::EpycGenoa),
    ("EPYC-Genoa-v1", CpuType::EpycGenoaV1),
    ("EPYC-Turin", CpuType::EpycTurin),
    ("EPYC-Turin-v1", CpuType::EpycTurinV1),
    ("EPYC-Turin-v2", CpuType::EpycTurinV2),
];

fn known_vcpu_types() -> Vec<&'static str> {
    VCPU_TYPES.iter().map(|(name, _)| *name).collect()
}

fn vcpu_type(name: &str) -> Result<CpuType, MeasureError> {
    VCPU_TYPES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, t)| *t)
        .ok_or_else(|| MeasureError::VcpuType(name.to_owned()))
}

/// The SNP launch digest (hex, 48 bytes) of `kernel`, `initrd` (none: QEMU hashes an empty one)
/// and `cmdline` booted by the OVMF
/// in `params` with QEMU's `kernel-hashes=on`, as a manifest entry with its parameters.
pub fn snp_launch_digest(
    params: &SnpParams,
    kernel: &Path,
    initrd: Option<&Path>,
    cmdline: &str,
) -> Result<Measurement, MeasureError> {
    let digest = snp_calc_launch_digest(SnpMeasurementArgs {
        vcpus: params.vcpus,
        vcpu_type: vcpu_type(&params.vcpu_type)?,
        ovmf_file: params.ovmf.clone(),
        guest_features: GuestFeatures(params.guest_features),
        kernel_file: Some(kernel.to_owned()),
        initrd_file: initrd.map(Path::to_owned),
        append: Some(cmdline),
        ovmf_hash_str: None,
        vmm_type: Some(VMMType::QEMU),
    })?;
    let values = BTreeMap::from([("launch_digest".to_owned(), digest.get_hex_ld())]);
    let parameters = BTreeMap::from([
        ("vcpus".to_owned(), params.vcpus.to_string()),
        ("vcpu_type".to_owned(), params.vcpu_type.clone()),
        (
            "guest_features".to_owned(),
            format!("{:#x}", params.guest_features),
        ),
        ("ovmf_sha256".to_owned(), sha256_file(&params.ovmf)?),
        ("vmm".to_owned(), "QEMU, kernel-hashes=on".to_owned()),
    ]);
    Ok(Measurement::Computed { values, parameters })
}

/// The table of SHA-256 hashes of `kernel`, `initrd` (none: of nothing) and `cmdline` that QEMU
/// writes into the AmdSev OVMF's hashes table with `kernel-hashes=on`, and the launch digest
/// covers (the same `sev` code computes both). The firmware refuses to start a kernel, initrd or
/// command line whose hash differs from the table's.
pub fn kernel_hashes_table(
    kernel: &Path,
    initrd: Option<&Path>,
    cmdline: &str,
) -> Result<Vec<u8>, MeasureError> {
    let hashes = SevHashes::new(kernel.to_owned(), initrd.map(Path::to_owned), Some(cmdline))?;
    Ok(hashes.construct_table()?.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name)
    }

    fn params(vcpus: u32) -> SnpParams {
        SnpParams {
            ovmf: testdata("ovmf_AmdSev_suffix.bin"),
            vcpus,
            vcpu_type: DEFAULT_SNP_VCPU_TYPE.into(),
            guest_features: DEFAULT_SNP_GUEST_FEATURES,
            pinned: false,
        }
    }

    fn digest(measurement: &Measurement) -> &str {
        match measurement {
            Measurement::Computed { values, .. } => &values["launch_digest"],
            Measurement::NotComputed { reason } => panic!("not computed: {reason}"),
        }
    }

    /// The `sev` crate's published vector (its test `test_snp_ovmf_hash_full_snp_only`, the same
    /// inputs as `sev-snp-measure --mode snp --vcpus 1 --vcpu-type EPYC-v4 --guest-features 0x1`).
    #[test]
    fn matches_the_published_vector() {
        let null = Path::new("/dev/null");
        let m =
            snp_launch_digest(&params(1), null, Some(null), "console=ttyS0 loglevel=7").unwrap();
        assert_eq!(
            digest(&m),
            "6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa"
        );
    }

    #[test]
    fn every_input_changes_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("vmlinuz");
        let initrd = dir.path().join("initrd.img");
        std::fs::write(&kernel, b"kernel").unwrap();
        std::fs::write(&initrd, b"initrd").unwrap();
        let base = snp_launch_digest(&params(2), &kernel, Some(&initrd), "console=ttyS0").unwrap();
        let base = digest(&base).to_owned();

        let other_cmdline =
            snp_launch_digest(&params(2), &kernel, Some(&initrd), "console=ttyS1").unwrap();
        assert_ne!(digest(&other_cmdline), base);
        let more_vcpus =
            snp_launch_digest(&params(4), &kernel, Some(&initrd), "console=ttyS0").unwrap();
        assert_ne!(digest(&more_vcpus), base);
        std::fs::write(&initrd, b"initrD").unwrap();
        let other_initrd =
            snp_launch_digest(&params(2), &kernel, Some(&initrd), "console=ttyS0").unwrap();
        assert_ne!(digest(&other_initrd), base);
    }

    /// The table holds SHA-256 of the kernel's bytes, of nothing for no initrd, and of the
    /// command line with its NUL, after QEMU's header GUID (target/i386/sev.c).
    #[test]
    fn the_hashes_table_holds_the_parts_hashes() {
        use sha2::{Digest, Sha256};
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("vmlinuz");
        std::fs::write(&kernel, b"a kernel").unwrap();
        let table = kernel_hashes_table(&kernel, None, "console=ttyS0").unwrap();
        let find = |needle: &[u8]| table.windows(needle.len()).position(|w| w == needle);
        let header_guid = [
            0x06, 0xd6, 0x38, 0x94, 0x22, 0x4f, 0xc9, 0x4c, 0xb4, 0x79, 0xa7, 0x93, 0xd4, 0x11,
            0xfd, 0x21,
        ];
        assert_eq!(find(&header_guid), Some(0));
        let kernel_hash = Sha256::digest(b"a kernel");
        let empty_hash = Sha256::digest(b"");
        let cmdline_hash = Sha256::digest(b"console=ttyS0\0");
        let (k, i, c) = (
            find(&kernel_hash).expect("the kernel's hash"),
            find(&empty_hash).expect("the empty initrd's hash"),
            find(&cmdline_hash).expect("the command line's hash"),
        );
        assert!(c < i && i < k, "QEMU's order: cmdline, initrd, kernel");

        let other = kernel_hashes_table(&kernel, None, "console=ttyS1").unwrap();
        assert_ne!(other, table);
    }

    #[test]
    fn unknown_vcpu_types_are_refused() {
        let mut p = params(1);
        p.vcpu_type = "Skylake-Server".into();
        let null = Path::new("/dev/null");
        let e = snp_launch_digest(&p, null, Some(null), "").unwrap_err();
        assert!(e.to_string().contains("EPYC-Milan"), "{e}");
    }
}
