//! Getting SEV-SNP evidence and derived keys on this machine.

use std::fmt;

use sev::firmware::guest::{
    AttestationReport, DerivedKey as SevDerivedKey, Firmware, GuestFieldSelect,
};
use sev::parser::ByteParser;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::layout;
use crate::error::Error;
use crate::evidence::{CertKind, SnpCert, SnpEvidence};
use crate::tsm::TsmReport;

/// Evidence from a configfs-tsm report (`outblob` = report, `auxblob` = certificate table).
pub(crate) fn from_tsm(report: TsmReport, report_data: &[u8; 64]) -> Result<SnpEvidence, Error> {
    let certs = super::certs::parse(&report.auxblob).map_err(|reason| Error::Malformed {
        what: "certificate table",
        reason,
    })?;
    checked(report.outblob, certs, report_data)
}

/// Evidence from the `/dev/sev-guest` extended-report ioctl (VMPL 0).
pub(crate) fn from_device(report_data: &[u8; 64]) -> Result<SnpEvidence, Error> {
    let mut fw = Firmware::open().map_err(|source| Error::Io {
        what: "open SEV guest device",
        path: crate::detect::SEV_GUEST_DEVICE.into(),
        source,
    })?;
    let (report, table) = fw
        .get_ext_report(None, Some(*report_data), Some(0))
        .map_err(|e| Error::SnpDevice(e.to_string()))?;
    let certs = table
        .unwrap_or_default()
        .iter()
        .map(|entry| SnpCert {
            kind: CertKind::from_guid(&entry.guid_string()),
            der: entry.data().to_vec(),
        })
        .collect();
    checked(report, certs, report_data)
}

/// Parses what the firmware returned and checks it answers our report_data.
fn checked(
    report: Vec<u8>,
    certs: Vec<SnpCert>,
    report_data: &[u8; 64],
) -> Result<SnpEvidence, Error> {
    let malformed = |reason: String| Error::Malformed {
        what: "SNP report",
        reason,
    };
    if report.len() != layout::LEN {
        return Err(malformed(format!(
            "{} bytes, expected {}",
            report.len(),
            layout::LEN
        )));
    }
    let parsed = AttestationReport::from_bytes(&report).map_err(|e| malformed(e.to_string()))?;
    if &parsed.report_data != report_data {
        return Err(Error::ReportDataNotEchoed("SNP report"));
    }
    tracing::debug!(certs = certs.len(), vmpl = parsed.vmpl, "SNP report");
    Ok(SnpEvidence {
        report,
        certs,
        tpm: None,
    })
}

/// The root key a derived key comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DerivationRoot {
    /// The VCEK: bound to this chip and its TCB.
    Vcek,
    /// The VM Root Key: bound to this VM's migration context (same key after migration).
    Vmrk,
}

/// Which launch values are mixed into a derived key (GUEST_FIELD_SELECT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyMix {
    /// The guest policy.
    pub guest_policy: bool,
    /// The ID block's image ID.
    pub image_id: bool,
    /// The ID block's family ID.
    pub family_id: bool,
    /// The launch measurement: a different image gets a different key.
    pub measurement: bool,
    /// The request's `guest_svn`.
    pub guest_svn: bool,
    /// The request's `tcb_version`.
    pub tcb_version: bool,
}

/// A request for a key derived by the AMD secure processor (MSG_KEY_REQ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DerivedKeyRequest {
    /// VCEK or VMRK.
    pub root: DerivationRoot,
    /// What is mixed in.
    pub mix: KeyMix,
    /// The VMPL mixed in; at least the caller's VMPL.
    pub vmpl: u32,
    /// Guest SVN mixed in (if selected); at most the ID block's.
    pub guest_svn: u32,
    /// TCB version mixed in (if selected); at most the committed TCB.
    pub tcb_version: u64,
}

impl Default for DerivedKeyRequest {
    /// A sealing key: from the VCEK, bound to the guest policy and the launch measurement.
    fn default() -> Self {
        DerivedKeyRequest {
            root: DerivationRoot::Vcek,
            mix: KeyMix {
                guest_policy: true,
                image_id: false,
                family_id: false,
                measurement: true,
                guest_svn: false,
                tcb_version: false,
            },
            vmpl: 0,
            guest_svn: 0,
            tcb_version: 0,
        }
    }
}

impl DerivedKeyRequest {
    fn to_sev(self) -> SevDerivedKey {
        let mut fields = GuestFieldSelect(0);
        fields.set_guest_policy(self.mix.guest_policy);
        fields.set_image_id(self.mix.image_id);
        fields.set_family_id(self.mix.family_id);
        fields.set_measurement(self.mix.measurement);
        fields.set_svn(self.mix.guest_svn);
        fields.set_tcb_version(self.mix.tcb_version);
        SevDerivedKey::new(
            self.root == DerivationRoot::Vmrk,
            fields,
            self.vmpl,
            self.guest_svn,
            self.tcb_version,
            None,
        )
    }
}

/// A 32-byte key from the secure processor. Wiped when dropped; `Debug` does not print it.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct DerivedKey([u8; 32]);

impl DerivedKey {
    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DerivedKey(..)")
    }
}

/// Asks `/dev/sev-guest` for a derived key (message version 1, no launch mitigation vector).
pub(crate) fn derived_key(request: &DerivedKeyRequest) -> Result<DerivedKey, Error> {
    let mut fw = Firmware::open().map_err(|source| Error::Io {
        what: "open SEV guest device",
        path: crate::detect::SEV_GUEST_DEVICE.into(),
        source,
    })?;
    let mut key = fw
        .get_derived_key(Some(1), request.to_sev())
        .map_err(|e| Error::SnpDevice(e.to_string()))?;
    let out = DerivedKey(key);
    key.zeroize();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_request_selects_policy_and_measurement_from_the_vcek() {
        let sev = DerivedKeyRequest::default().to_sev();
        assert_eq!(sev.get_root_key_select(), 0);
        // GUEST_FIELD_SELECT bit 0 (policy) and bit 3 (measurement).
        assert_eq!(sev.guest_field_select.0, 0b1001);
        let vmrk = DerivedKeyRequest {
            root: DerivationRoot::Vmrk,
            ..Default::default()
        };
        assert_eq!(vmrk.to_sev().get_root_key_select(), 1);
    }

    #[test]
    fn derived_key_debug_hides_the_key() {
        let k = DerivedKey([0xaa; 32]);
        assert_eq!(format!("{k:?}"), "DerivedKey(..)");
    }
}
