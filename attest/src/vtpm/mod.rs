//! TPM evidence inside [`crate::verify`]: the quote bound to the evidence's report_data, the
//! decision whether its attestation key (AK) is trusted, the event log replayed to the quoted
//! PCRs, and the image's predicted boot events on a TPM platform.
//!
//! Who vouches for the AK (see attest/README.md, "TPM trust per platform"):
//!
//! - Azure: the HCL report names it, and the hardware report (SNP, verified) binds the HCL
//!   report's runtime data ([`AkTrust::HardwareBound`]).
//! - A policy pin (`trusted_tpm_aks`): a dev/test TPM, e.g. swtpm ([`AkTrust::Pinned`]).
//! - A vTPM outside the TEE (Google's on N2D, AWS's NitroTPM): only with
//!   `allow_untrusted_vtpm` ([`AkTrust::UntrustedVtpm`]): the host can forge its PCRs. With the
//!   opt-in, a Google AK certificate the evidence carries must chain to Google's pinned root and
//!   certify the quoting AK ([`AkTrust::CloudCertified`], `gce_ak`); a quote without one is
//!   never taken for Google's (`gcp-snp-vtpm` predictions are not matched), so another tenant's
//!   software TPM cannot stand in for Google's vTPM. The certificate never replaces the opt-in.
//! - `none` evidence in dev mode with no pin configured ([`AkTrust::InsecureDev`]).

mod azure;
mod azure_tdx;
mod error;
mod gce_aia;
pub mod gce_ak;
pub(crate) mod get;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_azure_genoa;
#[cfg(test)]
pub(crate) mod tests_azure_tdx;
#[cfg(test)]
mod tests_gce;
#[cfg(test)]
mod tests_gce_get;
#[cfg(test)]
mod tests_get;
#[cfg(test)]
mod tests_recorded;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub(crate) use azure::{verify_azure, AzureHardware};
pub use error::{TdReportField, TpmFailure, VtpmError};

use crate::error::VerifyError;
use crate::eventlog::{check_image_events, verify_pcr_event_log, EventLogError};
use crate::measurement::UefiPlatform;
use crate::policy::Policy;
use crate::tpm::{TpmEvidence, VerifiedTpmQuote};

/// A TPM attestation key's name (nameAlg ‖ digest of its public area), as a policy pins it.
/// Hex in JSON and on the command line.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AkName(pub Vec<u8>);

impl fmt::Display for AkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for AkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AkName({self})")
    }
}

impl FromStr for AkName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s.trim()).map_err(|e| format!("AK name: {e}"))?;
        // nameAlg (2 bytes) and a SHA-256/384/512 digest.
        if ![34, 50, 66].contains(&bytes.len()) {
            return Err(format!(
                "AK name is {} bytes; a TPM name is 2 + 32/48/64 (nameAlg ‖ digest)",
                bytes.len()
            ));
        }
        Ok(AkName(bytes))
    }
}

impl Serialize for AkName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AkName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

/// Who certifies a cloud vTPM's attestation key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AkIssuer {
    /// Google Compute Engine (its EK/AK CA, pinned in `vtpm/gce_ca/`).
    Google,
}

impl fmt::Display for AkIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AkIssuer::Google => "Google",
        })
    }
}

/// Why the TPM's attestation key was trusted. Every accepted TPM quote says which; only
/// [`AkTrust::HardwareBound`] rests on the TEE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AkTrust {
    /// Azure: the vTPM runs in the paravisor inside the TEE; the HCL report, bound by the
    /// verified hardware report, names the AK.
    HardwareBound,
    /// The policy pins this AK's name (`trusted_tpm_aks`): a TPM the operator vouches for.
    Pinned,
    /// A vTPM outside the TEE, accepted because the policy says `allow_untrusted_vtpm`: the
    /// cloud's host can make it quote any PCR values.
    UntrustedVtpm,
    /// A vTPM outside the TEE, accepted by `allow_untrusted_vtpm`, whose AK the cloud certifies
    /// (its certificate chains to the cloud's pinned root and names this AK): the quote comes
    /// from the cloud's vTPM, not from a software TPM in another guest. Still the cloud's word:
    /// its host runs the vTPM outside the TEE and can make it quote any PCR values.
    CloudCertified {
        /// Who certified the AK.
        issuer: AkIssuer,
    },
    /// `none` evidence in dev mode, no AK pinned: nothing vouches for the TPM.
    InsecureDev,
    /// A vTPM outside the TEE that nothing vouches for, beside hardware evidence that identifies
    /// the image by itself (e.g. Google's vTPM on a C3 TD whose RTMRs show the image): its quote
    /// is checked (bound to the report_data), its PCRs and log are not relied on.
    NotRelied,
}

impl fmt::Display for AkTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AkTrust::HardwareBound => "AK bound by the verified hardware report (vTPM in the TEE)",
            AkTrust::Pinned => "AK pinned by the policy (trusted_tpm_aks)",
            AkTrust::UntrustedVtpm => {
                "UNTRUSTED vTPM outside the TEE, accepted by allow_untrusted_vtpm: the host can forge its PCRs"
            }
            AkTrust::CloudCertified { issuer } => {
                return write!(
                    f,
                    "vTPM OUTSIDE the TEE, accepted by allow_untrusted_vtpm; its AK is certified by {issuer}: the quote is {issuer}'s vTPM's, but {issuer}'s host can still forge its PCRs (the cloud's word, not the hardware's)"
                )
            }
            AkTrust::InsecureDev => "INSECURE dev mode: nothing vouches for this TPM",
            AkTrust::NotRelied => {
                "vTPM outside the TEE, not relied on: the hardware evidence identifies the image"
            }
        })
    }
}

/// What a verified TPM quote showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedTpm {
    /// The AK's name.
    pub ak_name: AkName,
    /// Why the AK was trusted.
    pub ak_trust: AkTrust,
    /// The quoted SHA-256 PCR values.
    pub pcrs: BTreeMap<u32, [u8; 32]>,
    /// True when the evidence's event log replayed to the quoted PCRs.
    pub event_log_replayed: bool,
    /// The TPM platform of the manifest's predictions (`qemu-ovmf-tpm`, `azure-vtpm`, …) whose
    /// boot events the log shows, when the image was identified by the TPM.
    pub uefi_platform: Option<String>,
    /// With [`AkTrust::CloudCertified`]: the AK certificate's subject (Google names the zone,
    /// project and instance there).
    pub ak_certificate_subject: Option<String>,
}

/// Where the TPM sits relative to the evidence's TEE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TpmHost {
    /// `none` evidence: no TEE at all.
    NoTee,
    /// SNP or TDX evidence with a TPM beside it: the TPM is the cloud's, outside the TEE.
    OutsideTee,
    /// Azure: the vTPM's AK is bound by the verified HCL report.
    Azure,
}

/// Decides whether the policy trusts the AK `name` of a TPM at `host`. A vTPM outside the TEE
/// that nothing vouches for is not relied on when the hardware evidence identified the image
/// itself (`must_identify` false), and refused otherwise. With the opt-in, an AK certificate in
/// the evidence must verify at `now` (returned: its subject).
fn ak_trust(
    host: TpmHost,
    name: &AkName,
    evidence: &TpmEvidence,
    ak: &crate::tpm::AkPublic,
    policy: &Policy,
    must_identify: bool,
    now: u64,
) -> Result<(AkTrust, Option<String>), VtpmError> {
    if host == TpmHost::Azure {
        return Ok((AkTrust::HardwareBound, None));
    }
    if policy.trusted_tpm_aks.contains(name) {
        return Ok((AkTrust::Pinned, None));
    }
    match (host, &evidence.ak_cert) {
        (TpmHost::OutsideTee, Some(cert)) if policy.allow_untrusted_vtpm => {
            let subject = gce_ak::verify_ak_certificate(cert, ak, now)?;
            tracing::warn!(ak = %name, %subject, "accepting a vTPM OUTSIDE the TEE (allow_untrusted_vtpm) whose AK Google certifies: the quote is Google's vTPM's, but Google's host can forge its PCR values");
            return Ok((
                AkTrust::CloudCertified {
                    issuer: AkIssuer::Google,
                },
                Some(subject),
            ));
        }
        _ => {}
    }
    let trust = match host {
        TpmHost::OutsideTee if policy.allow_untrusted_vtpm => {
            tracing::warn!(ak = %name, "accepting a vTPM OUTSIDE the TEE (allow_untrusted_vtpm): the cloud's host can forge its PCR values, so the image identity rests on trusting the cloud");
            Ok(AkTrust::UntrustedVtpm)
        }
        TpmHost::OutsideTee if !must_identify => Ok(AkTrust::NotRelied),
        TpmHost::OutsideTee => Err(VtpmError::UntrustedVtpm {
            ak_name: name.to_string(),
        }),
        TpmHost::NoTee if policy.allow_insecure_dev && policy.trusted_tpm_aks.is_empty() => {
            tracing::warn!(ak = %name, "accepting a TPM in INSECURE dev mode: no AK is pinned, nothing vouches for it");
            Ok(AkTrust::InsecureDev)
        }
        TpmHost::NoTee | TpmHost::Azure => Err(VtpmError::AkNotTrusted {
            ak_name: name.to_string(),
        }),
    }?;
    Ok((trust, None))
}

/// A UKI booted by systemd-stub extends PCR 12 with a command line that replaces its own
/// (the boot entry's LoadOptions: the host's, without Secure Boot) and with credentials, PCR 13
/// with system extensions, both read from the ESP the host can write. The image predicts none:
/// any such event (PCRs 12 and 13 are quoted, so the replay vouches for the log) is refused.
fn refuse_stub_overrides(replayed: &crate::eventlog::ReplayedLog) -> Result<(), VtpmError> {
    use crate::eventlog::{EventType, MeasuredRegister};
    match replayed.log.events.iter().find(|e| {
        matches!(e.register, MeasuredRegister::Pcr(12 | 13)) && e.event_type != EventType::NoAction
    }) {
        Some(e) => Err(VtpmError::UnpredictedStubEvent {
            pcr: match e.register {
                MeasuredRegister::Pcr(i) => i,
                _ => 0,
            },
            event_type: e.event_type,
            offset: e.offset,
        }),
        None => Ok(()),
    }
}

/// The policy's TPM platforms (predictions over PCRs, not RTMRs), those of the manifest's
/// platforms that fit where the TPM is first: the image's predictions for several platforms may
/// be alike (the same UKI in PCR4), and the one named should be this evidence's. A vTPM outside
/// the TEE accepted with no certificate ([`AkTrust::UntrustedVtpm`]) is never Google's: Google
/// certifies its vTPM's AK, so a quote without that certificate may come from any TPM.
fn tpm_platforms(policy: &Policy, host: TpmHost, trust: AkTrust) -> Vec<&UefiPlatform> {
    let fitting: &[&str] = match host {
        TpmHost::Azure => &["azure-vtpm"],
        TpmHost::OutsideTee => &["gcp-snp-vtpm", "aws-snp"],
        TpmHost::NoTee => &["qemu-ovmf-tpm"],
    };
    let mut platforms: Vec<&UefiPlatform> = policy
        .expected
        .uefi
        .iter()
        .filter(|p| !p.prediction.is_tdx())
        .filter(|p| !(trust == AkTrust::UntrustedVtpm && p.platform == GOOGLE_VTPM_PLATFORM))
        .collect();
    platforms.sort_by_key(|p| !fitting.contains(&p.platform.as_str()));
    platforms
}

/// The manifest's platform of Google's vTPM beside SNP.
const GOOGLE_VTPM_PLATFORM: &str = "gcp-snp-vtpm";

/// Checks an already verified quote (`quote`, of `evidence`): the AK's trust at `host`, the
/// event log's replay to the quoted PCRs, and the image's predicted boot events. With
/// `must_identify` (the hardware evidence did not identify the image: Azure, a cloud firmware's
/// launch digest) a TPM platform of the policy must match; otherwise its predictions are checked
/// when the policy has some. `now` (Unix seconds) for an AK certificate's validity.
pub(crate) fn check(
    evidence: &TpmEvidence,
    quote: VerifiedTpmQuote,
    host: TpmHost,
    policy: &Policy,
    must_identify: bool,
    now: u64,
) -> Result<VerifiedTpm, VerifyError> {
    let ak_name = AkName(quote.ak_name);
    let (ak_trust, ak_certificate_subject) = ak_trust(
        host,
        &ak_name,
        evidence,
        &quote.ak,
        policy,
        must_identify,
        now,
    )?;
    let pcrs = quote.quoted.pcrs;
    if ak_trust == AkTrust::NotRelied {
        tracing::info!(ak = %ak_name, "a vTPM outside the TEE beside hardware evidence that identifies the image: its quote is bound to the report_data, its PCRs are not relied on");
        return Ok(VerifiedTpm {
            ak_name,
            ak_trust,
            pcrs,
            event_log_replayed: false,
            uefi_platform: None,
            ak_certificate_subject,
        });
    }
    let quoted: BTreeMap<u32, Vec<u8>> = pcrs.iter().map(|(i, v)| (*i, v.to_vec())).collect();
    let replayed = match evidence.event_log.as_deref() {
        Some(log) => Some(verify_pcr_event_log(log, &quoted)?),
        None => None,
    };
    let platforms = tpm_platforms(policy, host, ak_trust);
    let mut uefi_platform = None;
    if must_identify || !platforms.is_empty() {
        if platforms.is_empty() {
            return Err(VtpmError::NoTpmPlatform.into());
        }
        let replayed = replayed.as_ref().ok_or(EventLogError::Missing)?;
        let mut first_refusal = None;
        for platform in platforms {
            match check_image_events(replayed, &platform.prediction) {
                Ok(()) => {
                    uefi_platform = Some(platform.platform.clone());
                    break;
                }
                Err(e) => {
                    first_refusal.get_or_insert(e);
                }
            }
        }
        if uefi_platform.is_none() {
            return Err(first_refusal.unwrap_or(EventLogError::Missing).into());
        }
        refuse_stub_overrides(replayed)?;
    }
    tracing::info!(ak = %ak_name, trust = %ak_trust, platform = ?uefi_platform, "TPM quote accepted");
    Ok(VerifiedTpm {
        ak_name,
        ak_trust,
        pcrs,
        event_log_replayed: replayed.is_some(),
        uefi_platform,
        ak_certificate_subject,
    })
}
