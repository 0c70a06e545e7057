//! The image manifest's predictions (`uefi.predictions`, written by the image tool) and the check
//! of a replayed log against them: the image-identifying events are there, in order, no other
//! boot application ran, and the predicted register values are the replayed ones.
//!
//! ```json
//! "uefi": {"uki": {…}, "disk": {…}, "predictions": {"gcp-tdx": {
//!   "trust": "<what a verifier must trust on this platform>",
//!   "events": [{"register": "RTMR1", "event_type": "EV_EFI_BOOT_SERVICES_APPLICATION",
//!               "digest_alg": "sha384", "digest": "<hex>", "what": "the UKI"}],
//!   "values": {"RTMR1": "<hex>", "RTMR2": "<hex>"}}}}
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Event, EventLogError, EventType, HashAlg, MeasuredRegister, ReplayedLog};
use crate::encoding::hex_vec;

/// One event the firmware will log for this image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PredictedEvent {
    /// The register it extends ("PCR4", "RTMR1", …).
    pub register: MeasuredRegister,
    /// Its type ("EV_EFI_BOOT_SERVICES_APPLICATION", …).
    pub event_type: EventType,
    /// The bank of `digest`.
    pub digest_alg: HashAlg,
    /// The digest the firmware will log (hex).
    #[serde(with = "hex_vec")]
    pub digest: Vec<u8>,
    /// For people: what it is ("the UKI"); named in errors.
    #[serde(default)]
    pub what: String,
    /// The event may be absent: e.g. Linux's EFI stub measures into RTMR[2] only when the
    /// firmware offers no TPM. When logged it must be where predicted, with this digest; an
    /// absent optional event is safe only in a [`PlatformPrediction::closed`] register.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// The predictions for one platform (a cloud and its firmware's way of measuring).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformPrediction {
    /// For people: what a verifier must trust on this platform beyond the log.
    #[serde(default)]
    pub trust: String,
    /// Events that must be in the log, in this order per register.
    #[serde(default)]
    pub events: Vec<PredictedEvent>,
    /// Register values the replayed log must have (hex).
    #[serde(default, with = "hex_map")]
    pub values: BTreeMap<MeasuredRegister, Vec<u8>>,
    /// Registers that may hold nothing but the predicted events: any other event logged in them
    /// (EV_NO_ACTION aside) is refused. For a register whose value cannot be predicted as one
    /// number (it has optional events), this is what still pins it.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub closed: BTreeSet<MeasuredRegister>,
}

impl PlatformPrediction {
    /// Every register the prediction names.
    pub fn registers(&self) -> BTreeSet<MeasuredRegister> {
        self.events
            .iter()
            .map(|e| e.register)
            .chain(self.values.keys().copied())
            .chain(self.closed.iter().copied())
            .collect()
    }

    /// True if the prediction is about TDX RTMRs (a CCEL log), false for TPM PCRs.
    pub fn is_tdx(&self) -> bool {
        self.registers()
            .iter()
            .any(|r| matches!(r, MeasuredRegister::Rtmr(_)))
    }

    fn validate(&self, platform: &str) -> Result<(), EventLogError> {
        let bad = |reason: String| EventLogError::BadPredictions(format!("{platform}: {reason}"));
        let registers = self.registers();
        if registers.iter().any(|r| *r == MeasuredRegister::Mrtd) {
            return Err(bad("MRTD is the firmware's, not the image's".into()));
        }
        let rtmrs = registers
            .iter()
            .filter(|r| matches!(r, MeasuredRegister::Rtmr(_)))
            .count();
        if rtmrs != 0 && rtmrs != registers.len() {
            return Err(bad("mixes PCRs and RTMRs".into()));
        }
        for e in &self.events {
            if e.optional && !self.closed.contains(&e.register) {
                return Err(bad(format!(
                    "{} {} is optional but {} is not closed: its absence could hide another event",
                    e.register, e.event_type, e.register
                )));
            }
            if e.digest.len() != e.digest_alg.size() {
                return Err(bad(format!(
                    "{} {} digest is {} bytes, {} has {}",
                    e.register,
                    e.event_type,
                    e.digest.len(),
                    e.digest_alg,
                    e.digest_alg.size()
                )));
            }
        }
        for (register, value) in &self.values {
            if ![32, 48, 64].contains(&value.len()) {
                return Err(bad(format!("{register} value is {} bytes", value.len())));
            }
        }
        Ok(())
    }
}

/// Every platform's predictions from an image manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImagePredictions {
    /// Platform name (`gcp-tdx`, `azure-vtpm`, `qemu-ovmf-tpm`, …) → its predictions.
    pub platforms: BTreeMap<String, PlatformPrediction>,
}

impl ImagePredictions {
    /// Reads `uefi.predictions` of an image build's `manifest.json`. A manifest without them (a
    /// direct-boot-only image) gives no platforms; malformed ones are refused.
    pub fn from_image_manifest(manifest: &serde_json::Value) -> Result<Self, EventLogError> {
        let Some(predictions) = manifest.get("uefi").and_then(|u| u.get("predictions")) else {
            return Ok(ImagePredictions::default());
        };
        let platforms: BTreeMap<String, PlatformPrediction> =
            serde_json::from_value(predictions.clone())
                .map_err(|e| EventLogError::BadPredictions(e.to_string()))?;
        for (name, prediction) in &platforms {
            prediction.validate(name)?;
        }
        Ok(ImagePredictions { platforms })
    }
}

/// Checks a replayed log against one platform's predictions: every predicted event (optional
/// ones if logged) is in its register with its digest, in the predicted order; the register has
/// no EV_EFI_BOOT_SERVICES_APPLICATION (nor boot/runtime services driver) the prediction does not
/// name (another boot path, other code), and a closed register no other event at all; each
/// predicted value equals the replayed one. Every register used must be one the quote vouched
/// for ([`ReplayedLog::verified`]).
pub fn check_image_events(
    replayed: &ReplayedLog,
    prediction: &PlatformPrediction,
) -> Result<(), EventLogError> {
    if prediction.registers().is_empty() {
        return Err(EventLogError::BadPredictions(
            "the platform predicts no event and no value: it would accept any boot".into(),
        ));
    }
    for register in prediction.registers() {
        if !replayed.verified.contains(&register) {
            return Err(EventLogError::RegisterNotQuoted { register });
        }
    }
    let mut by_register: BTreeMap<MeasuredRegister, Vec<&super::PredictedEvent>> = BTreeMap::new();
    for e in &prediction.events {
        if !replayed.log.has_bank(e.digest_alg) {
            return Err(EventLogError::UnsupportedAlgorithm(format!(
                "the prediction's {} digest of {} needs a bank the log does not have",
                e.digest_alg, e.register
            )));
        }
        by_register.entry(e.register).or_default().push(e);
    }
    for register in &prediction.closed {
        by_register.entry(*register).or_default();
    }
    for (register, predicted) in by_register {
        let logged: Vec<&Event> = replayed
            .log
            .events
            .iter()
            .filter(|e| e.register == register && e.event_type != EventType::NoAction)
            .collect();
        let closed = prediction.closed.contains(&register);
        check_register(register, &predicted, &logged, replayed.alg, closed)?;
    }
    for (register, expected) in &prediction.values {
        let value = replayed.value(*register).unwrap_or_default();
        if value.len() != expected.len() {
            return Err(EventLogError::UnsupportedAlgorithm(format!(
                "the predicted {register} value has {} bytes, the replayed {} bank {}",
                expected.len(),
                replayed.alg,
                value.len()
            )));
        }
        if &value != expected {
            return Err(EventLogError::DoesNotReplay {
                register: *register,
                expected: hex::encode(expected),
                replayed: hex::encode(value),
            });
        }
    }
    Ok(())
}

fn check_register(
    register: MeasuredRegister,
    predicted: &[&PredictedEvent],
    logged: &[&Event],
    replay_alg: HashAlg,
    closed: bool,
) -> Result<(), EventLogError> {
    let mut matched = vec![false; logged.len()];
    let mut next = 0;
    for p in predicted {
        let found = (next..logged.len()).find(|&j| {
            logged[j].event_type == p.event_type
                && logged[j].digest(p.digest_alg) == Some(p.digest.as_slice())
        });
        if let Some(j) = found {
            matched[j] = true;
            next = j + 1;
            continue;
        }
        if p.optional {
            continue;
        }
        let other_app = (next..logged.len())
            .find(|&j| logged[j].event_type == EventType::EfiBootServicesApplication);
        return Err(match other_app {
            Some(j) if p.event_type == EventType::EfiBootServicesApplication => {
                EventLogError::WrongUkiDigest {
                    register,
                    what: p.what.clone(),
                    expected: hex::encode(&p.digest),
                    logged: logged[j]
                        .digest(p.digest_alg)
                        .map(hex::encode)
                        .unwrap_or_default(),
                }
            }
            _ => EventLogError::MissingEvent {
                register,
                event_type: p.event_type,
                digest: hex::encode(&p.digest),
                what: p.what.clone(),
            },
        });
    }
    let alg = predicted
        .first()
        .map(|p| p.digest_alg)
        .unwrap_or(replay_alg);
    if let Some(j) =
        (0..logged.len()).find(|&j| !matched[j] && (closed || is_code(logged[j].event_type)))
    {
        return Err(EventLogError::UnexpectedEvent {
            register,
            event_type: logged[j].event_type,
            digest: logged[j].digest(alg).map(hex::encode).unwrap_or_default(),
            offset: logged[j].offset,
        });
    }
    Ok(())
}

/// Events that record code the firmware ran: a boot application (loader, UKI) or a UEFI driver
/// (e.g. from an option ROM).
fn is_code(t: EventType) -> bool {
    matches!(
        t,
        EventType::EfiBootServicesApplication
            | EventType::EfiBootServicesDriver
            | EventType::EfiRuntimeServicesDriver
    )
}

/// `BTreeMap<MeasuredRegister, Vec<u8>>` with hex values.
mod hex_map {
    use std::collections::BTreeMap;

    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    use super::MeasuredRegister;

    pub(super) fn serialize<S: Serializer>(
        map: &BTreeMap<MeasuredRegister, Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(map.iter().map(|(k, v)| (k.to_string(), hex::encode(v))))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<MeasuredRegister, Vec<u8>>, D::Error> {
        let text = BTreeMap::<MeasuredRegister, String>::deserialize(d)?;
        text.into_iter()
            .map(|(k, v)| Ok((k, hex::decode(v.trim()).map_err(D::Error::custom)?)))
            .collect()
    }
}
