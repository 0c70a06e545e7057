//! Getting TPM evidence on this machine: find the TPM (`/dev/tpmrm0` under the attester's root)
//! and whether it is Azure's vTPM or Google's (its AK template and certificate in NV), then per
//! request a quote over PCRs 0–15 (SHA-256) bound to the report_data, with the firmware's TPM
//! event log beside it (and on Google, the AK's certificate). On an Azure TDX CVM, the quote
//! Azure's IMDS makes of the HCL report's TDREPORT ([`Imds`]).

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::boot_log::{self, BootLogKind};
use crate::error::Error;
use crate::host::Fs;
use crate::tpm::{
    is_azure_vtpm, AkCertificate, AkSource, AzureVtpmEvidence, DeviceTransport, HclReport,
    HclReportKind, Hierarchy, Imds, NvAuth, PcrSelection, Tpm, TpmError, TpmEvidence, Transport,
    AZURE_HCL_REPORT_INDEX, GCE_AK_CERT_INDEX_ECC, GCE_AK_CERT_INDEX_RSA,
    GCE_AK_TEMPLATE_INDEX_ECC, GCE_AK_TEMPLATE_INDEX_RSA, TPMRM_DEVICE,
};

/// The PCRs quoted: the firmware's and the boot's (0–7), the OS loader's and the kernel's
/// (8–15). 16–23 are debug and locality registers, not part of the boot.
pub(crate) const QUOTED_PCRS: Range<u32> = 0..16;

/// Where the TPM is.
#[derive(Clone, Debug)]
pub(crate) enum TpmPath {
    /// A character device (`/dev/tpmrm0`).
    Device(PathBuf),
    /// swtpm's TCP command socket (tests).
    #[cfg(test)]
    Tcp(std::net::SocketAddr),
}

/// This machine's TPM, found at detection.
#[derive(Clone, Debug)]
pub(crate) struct LocalTpm {
    path: TpmPath,
    /// On Azure: the TEE of the HCL report's hardware report.
    pub(crate) azure: Option<HclReportKind>,
    /// Azure TDX: where to get the TDREPORT's quote (Azure's IMDS unless `RUNNER_AZURE_IMDS`
    /// says otherwise). Asked only when the HCL report holds a TDREPORT.
    pub(crate) imds: Imds,
    /// On Google Compute Engine: where its AK's template and certificate are.
    pub(crate) gce: Option<GceAk>,
    /// On Google: the AK certificate's issuer, fetched once from its AIA URL.
    gce_intermediates: Vec<Vec<u8>>,
}

/// Google's AK in the vTPM's NV (as go-tpm-tools' `GceAttestationKeyECC`/`RSA` reads it): a
/// primary key of the endorsement hierarchy made from the template, and Google's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GceAk {
    pub(crate) template_index: u32,
    pub(crate) cert_index: u32,
}

impl GceAk {
    /// The ECC P-256 AK if the vTPM has its template and certificate, else the RSA one.
    fn probe<T: Transport>(tpm: &mut Tpm<T>) -> Option<GceAk> {
        [
            (GCE_AK_TEMPLATE_INDEX_ECC, GCE_AK_CERT_INDEX_ECC),
            (GCE_AK_TEMPLATE_INDEX_RSA, GCE_AK_CERT_INDEX_RSA),
        ]
        .into_iter()
        .find(|(template, cert)| {
            tpm.nv_read_public(*template).is_ok() && tpm.nv_read_public(*cert).is_ok()
        })
        .map(|(template_index, cert_index)| GceAk {
            template_index,
            cert_index,
        })
    }
}

type AnyTpm = Tpm<Box<dyn Transport + Send>>;

impl LocalTpm {
    /// The TPM under `fs`'s root, if its device exists. A device that does not open is still
    /// returned (not Azure): getting evidence then fails with the reason, rather than the TPM
    /// being left out silently.
    pub(crate) fn probe(fs: &dyn Fs) -> Option<LocalTpm> {
        if !fs.exists(Path::new(TPMRM_DEVICE)) {
            return None;
        }
        Some(Self::at(TpmPath::Device(fs.real(Path::new(TPMRM_DEVICE)))))
    }

    /// The TPM at `path`; asks it whether it is Azure's vTPM.
    pub(crate) fn at(path: TpmPath) -> LocalTpm {
        let mut tpm = LocalTpm {
            path,
            azure: None,
            gce: None,
            gce_intermediates: Vec::new(),
            imds: Imds::from_env(),
        };
        let opened = tpm.open().map(|mut t| {
            let azure = is_azure_vtpm(&mut t);
            (t, azure)
        });
        match opened {
            Ok((mut t, true)) => {
                let kind = t
                    .nv_read(NvAuth::Owner, AZURE_HCL_REPORT_INDEX)
                    .map_err(|e| e.to_string())
                    .and_then(|r| HclReport::parse(&r).map_err(|e| e.to_string()))
                    .map(|h| h.kind);
                tpm.azure = Some(kind.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "Azure vTPM: the current HCL report does not parse; assuming SNP");
                    HclReportKind::Snp
                }));
                tracing::info!(tee = ?tpm.azure, "Azure vTPM found (HCL report in NV 0x01400001)");
            }
            Ok((mut t, false)) => {
                tpm.gce = GceAk::probe(&mut t);
                if let Some(gce) = tpm.gce {
                    match t.nv_read(NvAuth::Owner, gce.cert_index) {
                        Ok(nv) => {
                            tpm.gce_intermediates = super::gce_aia::intermediates(der_prefix(&nv))
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "Google's AK certificate does not read from NV")
                        }
                    }
                }
                match tpm.gce {
                    Some(gce) => {
                        tracing::info!(tpm = ?tpm.path, template = format_args!("{:#x}", gce.template_index), cert = format_args!("{:#x}", gce.cert_index), "Google's vTPM found: evidence will carry a quote by Google's AK, its certificate and the TPM event log")
                    }
                    None => {
                        tracing::info!(tpm = ?tpm.path, "TPM found: evidence will carry a quote and the TPM event log")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "a TPM device is present but does not open: evidence requests will fail")
            }
        }
        tpm
    }

    fn open(&self) -> Result<AnyTpm, TpmError> {
        let transport: Box<dyn Transport + Send> = match &self.path {
            TpmPath::Device(path) => Box::new(DeviceTransport::open(path)?),
            #[cfg(test)]
            TpmPath::Tcp(addr) => Box::new(crate::tpm::TcpTransport::connect(addr)?),
        };
        Ok(Tpm::new(transport))
    }

    /// A quote over [`QUOTED_PCRS`] by our fixed AK (ECC P-256, a primary key of the
    /// endorsement hierarchy: the same TPM always gives the same key), with the TPM event log.
    /// On Google: by Google's AK (from its NV template), with its certificate from NV and its
    /// issuer as fetched at start-up from the leaf's AIA URL (`gce_aia`; none when that failed:
    /// the verifier also keeps Google's published intermediates).
    pub(crate) fn evidence(
        &self,
        fs: &dyn Fs,
        report_data: &[u8; 64],
    ) -> Result<TpmEvidence, Error> {
        let log = event_log(fs)?;
        let mut tpm = self.open()?;
        let selection = PcrSelection::sha256(QUOTED_PCRS)?;
        let ak = match self.gce {
            Some(gce) => AkSource::NvTemplate(gce.template_index),
            None => AkSource::Primary(Hierarchy::Endorsement),
        };
        let mut evidence = TpmEvidence::collect(&mut tpm, ak, report_data, &selection, log)?;
        if let Some(gce) = self.gce {
            let nv = tpm.nv_read(NvAuth::Owner, gce.cert_index)?;
            evidence.ak_cert = Some(AkCertificate {
                certificate: der_prefix(&nv).to_vec(),
                intermediates: self.gce_intermediates.clone(),
            });
        }
        Ok(evidence)
    }

    /// Azure: a fresh HCL report carrying `report_data` and a quote by the paravisor's AK; on
    /// TDX also the quote IMDS makes of the HCL report's TDREPORT (an HCL report that does not
    /// parse is sent as it is: the verifier refuses it with the reason).
    pub(crate) fn azure_evidence(
        &self,
        fs: &dyn Fs,
        report_data: &[u8; 64],
    ) -> Result<AzureVtpmEvidence, Error> {
        let log = event_log(fs)?;
        let mut tpm = self.open()?;
        let selection = PcrSelection::sha256(QUOTED_PCRS)?;
        let mut evidence = AzureVtpmEvidence::collect(&mut tpm, report_data, &selection, log)?;
        if let Ok(hcl) = HclReport::parse(&evidence.hcl_report) {
            if hcl.kind == HclReportKind::Tdx {
                evidence.td_quote = Some(self.imds.td_quote(&hcl.hw_report)?);
            }
        }
        Ok(evidence)
    }
}

/// The DER value at the start of `bytes` (an NV index may be larger than the certificate it
/// holds); all of `bytes` when its header does not parse (the verifier then refuses it).
fn der_prefix(bytes: &[u8]) -> &[u8] {
    let len = match bytes {
        [0x30, n, ..] if *n < 0x80 => Some(2 + usize::from(*n)),
        [0x30, 0x81, n, ..] => Some(3 + usize::from(*n)),
        [0x30, 0x82, hi, lo, ..] => Some(4 + (usize::from(*hi) << 8 | usize::from(*lo))),
        _ => None,
    };
    match len {
        Some(len) if len <= bytes.len() => &bytes[..len],
        _ => bytes,
    }
}

/// The TPM event log from securityfs; none (with a warning) when the kernel exposes none.
fn event_log(fs: &dyn Fs) -> Result<Option<Vec<u8>>, Error> {
    match boot_log::read_with(fs, BootLogKind::Tpm)? {
        Some(log) => Ok(Some(log.bytes)),
        None => {
            tracing::warn!(
                path = boot_log::TPM_LOG,
                "no TPM event log (securityfs not mounted, or the firmware left none): a verifier cannot replay the PCRs"
            );
            Ok(None)
        }
    }
}

/// The TDX firmware's CCEL log, cut after its last event (the area's padding is not sent).
pub(crate) fn ccel_log(fs: &dyn Fs) -> Result<Option<Vec<u8>>, Error> {
    let Some(log) = boot_log::read_with(fs, BootLogKind::Ccel)? else {
        return Ok(None);
    };
    let mut bytes = log.bytes;
    match crate::eventlog::EventLog::parse(&bytes, crate::eventlog::LogKind::Ccel) {
        Ok(parsed) => bytes.truncate(parsed.len),
        Err(e) => tracing::warn!(error = %e, "the CCEL log does not parse; sending it whole"),
    }
    Ok(Some(bytes))
}
