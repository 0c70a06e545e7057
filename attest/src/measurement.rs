//! Launch measurements: the values the image build records in its manifest and the verifier
//! expects. One set of types for both, so the manifest is the single source of truth.
//!
//! JSON form (each digest is 96 lowercase hex digits):
//!
//! ```json
//! {
//!   "snp": [{ "launch_digest": "…", "label": "4 vCPU EPYC-v4" }],
//!   "tdx": [{ "mrtd": "…", "rtmr0": "…", "rtmr1": "…", "rtmr2": "…", "rtmr3": "…" }],
//!   "uefi": [{ "platform": "gcp-tdx", "prediction": { "trust": "…", "events": […], "values": {…} } }],
//!   "tdx_firmware": [{ "mrtd": "…", "label": "Google Cloud C3 TDX firmware" }],
//!   "snp_firmware": [{ "launch_digest": "…", "label": "Azure paravisor (HCL)" }],
//!   "endorsed_firmware": [{ "uefi_digest": "…", "signed_at": 1798761600, "tdx_mrtds": ["…"], "snp_launch_digests": ["…"] }]
//! }
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{MeasurementError, Register};
use crate::eventlog::{EventLogError, ImagePredictions, PlatformPrediction};

/// A 48-byte (SHA-384 sized) measurement register value: the SNP launch digest, TDX MRTD or an
/// RTMR. Hex in text forms.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest48(pub [u8; 48]);

impl Digest48 {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; 48] {
        &self.0
    }
}

impl fmt::Display for Digest48 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Digest48 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest48({self})")
    }
}

impl FromStr for Digest48 {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::encoding::parse::<48>(s).map(Digest48)
    }
}

impl Serialize for Digest48 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::encoding::hex_array::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Digest48 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::encoding::hex_array::deserialize(d).map(Digest48)
    }
}

/// One accepted SEV-SNP launch: the launch digest (`MEASUREMENT` in the report), which depends
/// on the firmware, kernel, initrd, command line, vCPU count and type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpMeasurement {
    /// The 48-byte launch digest.
    pub launch_digest: Digest48,
    /// Free text for people (which VM shape this digest is for); not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// A key whose signature over a cloud's SNP launch the verifier accepts in place of each launch
/// digest: the launch's ID block, which the AMD secure processor checks at launch and whose key
/// it reports as `ID_KEY_DIGEST` (SHA-384 of the key). Azure signs its paravisor's launches with
/// Microsoft's ID key, and recommends pinning that key rather than the launch digest, which
/// changes with every paravisor update. Trusting it means trusting whatever firmware the key's
/// holder signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpIdKey {
    /// SHA-384 of the ID public key, as the report's `ID_KEY_DIGEST` carries it.
    pub digest: Digest48,
    /// Free text for people (whose key); not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// One accepted TDX launch: the build-time measurement and the four runtime registers as they
/// are when the runner asks for its quote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdxMeasurements {
    /// MRTD: the TD's initial contents (firmware).
    pub mrtd: Digest48,
    /// RTMR0: firmware configuration (TD HOB, ACPI tables).
    pub rtmr0: Digest48,
    /// RTMR1: the kernel (and the loader).
    pub rtmr1: Digest48,
    /// RTMR2: the kernel command line and initrd.
    pub rtmr2: Digest48,
    /// RTMR3: extended at run time; zero unless something extends it.
    pub rtmr3: Digest48,
    /// Free text for people; not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl TdxMeasurements {
    fn registers(&self) -> [(Register, &Digest48); 5] {
        [
            (Register::Mrtd, &self.mrtd),
            (Register::Rtmr0, &self.rtmr0),
            (Register::Rtmr1, &self.rtmr1),
            (Register::Rtmr2, &self.rtmr2),
            (Register::Rtmr3, &self.rtmr3),
        ]
    }
}

/// The measurements a verifier accepts, per TEE. An empty list for a TEE refuses every launch
/// on that TEE (fail closed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedMeasurements {
    /// Accepted SNP launch digests.
    #[serde(default)]
    pub snp: Vec<SnpMeasurement>,
    /// Accepted TDX register sets.
    #[serde(default)]
    pub tdx: Vec<TdxMeasurements>,
    /// Accepted UEFI boots of the image, per platform: the boot events and register values the
    /// image manifest predicts (`uefi.predictions`). A TDX launch whose registers are not one of
    /// `tdx` is checked against the TDX platforms here with its event log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uefi: Vec<UefiPlatform>,
    /// Cloud TDX firmware (MRTD) the verifier accepts for UEFI boots. The firmware is the cloud's,
    /// not the image's: this allow-list is the only source of accepted MRTDs, never the evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tdx_firmware: Vec<TdxFirmware>,
    /// Cloud SNP firmware (launch digests: Azure's paravisor, AWS's or Google's UEFI firmware)
    /// the verifier accepts when a TPM quote identifies the image (`uefi`'s TPM platforms). The
    /// firmware is the cloud's: this allow-list is the only source, never the evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snp_firmware: Vec<SnpMeasurement>,
    /// Cloud SNP firmware accepted by the key that signed its launch (`SnpIdKey`; Azure's
    /// paravisor: Microsoft's ID key), with the same role as `snp_firmware`. Only from the
    /// policy, never the evidence; an all-zero digest (no ID block) never matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snp_id_keys: Vec<SnpIdKey>,
    /// Cloud firmware Google endorsed: filled from launch endorsements verified under Google's
    /// root (`runner … --gce-endorsement`, see `crate::endorsement`); accepted like
    /// `tdx_firmware` (without an RTMR[0] pin) and `snp_firmware`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endorsed_firmware: Vec<EndorsedFirmware>,
}

/// The measurements of one UEFI build that Google signed in a launch endorsement which verified
/// under the pinned root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndorsedFirmware {
    /// SHA-384 of the UEFI binary.
    pub uefi_digest: Digest48,
    /// When Google signed the endorsement (Unix seconds).
    pub signed_at: u64,
    /// Until when its signing chain is valid (Unix seconds): evidence verified later does not
    /// get the endorsement. Absent in a hand-written policy: no end.
    #[serde(default = "no_end")]
    pub valid_until: u64,
    /// The TDX MRTDs it endorses (one per RAM size and memory-acceptance mode).
    #[serde(default)]
    pub tdx_mrtds: Vec<Digest48>,
    /// The SEV-SNP launch digests it endorses (one per vCPU count).
    #[serde(default)]
    pub snp_launch_digests: Vec<Digest48>,
}

/// One platform's predicted UEFI boot of the image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UefiPlatform {
    /// The manifest's platform name (`gcp-tdx`, `azure-vtpm`, `qemu-ovmf-tpm`, …).
    pub platform: String,
    /// Its predicted events and register values.
    pub prediction: PlatformPrediction,
}

/// An accepted cloud TDX firmware: its MRTD, and optionally the RTMR[0] it must have produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdxFirmware {
    /// The firmware's MRTD.
    pub mrtd: Digest48,
    /// If set, RTMR[0] must equal it. RTMR[0] holds the firmware's configuration (TD HOB, ACPI
    /// tables, Secure Boot variables: the host's and the cloud's, per VM shape); unset, its
    /// events are authenticated by the replay but their content is not judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr0: Option<Digest48>,
    /// Free text for people (whose firmware, where the value comes from); not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

fn no_end() -> u64 {
    u64::MAX
}

impl ExpectedMeasurements {
    /// The Google endorsement naming this TDX firmware MRTD and still valid at `now` (Unix
    /// seconds), if any.
    pub fn tdx_endorsement(&self, mrtd: &Digest48, now: u64) -> Option<&EndorsedFirmware> {
        self.endorsed_firmware
            .iter()
            .find(|e| now <= e.valid_until && e.tdx_mrtds.contains(mrtd))
    }

    /// The Google endorsement naming this SNP launch digest and still valid at `now` (Unix
    /// seconds), if any.
    pub fn snp_endorsement(&self, digest: &Digest48, now: u64) -> Option<&EndorsedFirmware> {
        self.endorsed_firmware
            .iter()
            .find(|e| now <= e.valid_until && e.snp_launch_digests.contains(digest))
    }

    /// Why an SNP launch is a cloud firmware this policy accepts (a TPM must then identify the
    /// image): its digest allow-listed, endorsed by Google and valid at `now`, or signed by an
    /// allowed ID key. `None` if none of these.
    pub fn snp_cloud_firmware(
        &self,
        launch_digest: &Digest48,
        id_key_digest: &[u8; 48],
        now: u64,
    ) -> Option<String> {
        if let Some(m) = self
            .snp_firmware
            .iter()
            .find(|m| &m.launch_digest == launch_digest)
        {
            return Some(format!(
                "allow-listed ({})",
                m.label.as_deref().unwrap_or("snp_firmware")
            ));
        }
        if let Some(e) = self.snp_endorsement(launch_digest, now) {
            return Some(format!(
                "endorsed by Google (UEFI {}, signed at {})",
                e.uefi_digest, e.signed_at
            ));
        }
        if id_key_digest.iter().any(|b| *b != 0) {
            if let Some(k) = self
                .snp_id_keys
                .iter()
                .find(|k| &k.digest.0 == id_key_digest)
            {
                return Some(format!(
                    "signed by ID key {} ({})",
                    k.digest,
                    k.label.as_deref().unwrap_or("snp_id_keys")
                ));
            }
        }
        None
    }

    /// Accepts `got` if it equals one of the expected SNP launch digests.
    pub fn check_snp(&self, got: &Digest48) -> Result<(), MeasurementError> {
        if self.snp.is_empty() {
            return Err(MeasurementError::NoneExpected { tee: "snp" });
        }
        if self.snp.iter().any(|m| &m.launch_digest == got) {
            return Ok(());
        }
        Err(MeasurementError::Mismatch {
            register: Register::LaunchDigest,
            got: got.to_string(),
        })
    }

    /// Accepts `got` if all five registers equal one expected set. On refusal the error names
    /// the first differing register of the closest expected set.
    pub fn check_tdx(&self, got: &TdxMeasurements) -> Result<(), MeasurementError> {
        let mut closest: Option<(usize, Register, String)> = None;
        for expected in &self.tdx {
            let differing: Vec<(Register, &Digest48)> = got
                .registers()
                .into_iter()
                .zip(expected.registers())
                .filter(|((_, g), (_, e))| g != e)
                .map(|(g, _)| g)
                .collect();
            let Some((register, value)) = differing.first() else {
                return Ok(());
            };
            if closest
                .as_ref()
                .is_none_or(|(n, _, _)| differing.len() < *n)
            {
                closest = Some((differing.len(), *register, value.to_string()));
            }
        }
        match closest {
            None => Err(MeasurementError::NoneExpected { tee: "tdx" }),
            Some((_, register, got)) => Err(MeasurementError::Mismatch { register, got }),
        }
    }
}

/// Why an image build's manifest gave no expected measurements.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// No `measurements` object: not an image manifest.
    #[error("no `measurements` object: not an image build's manifest.json")]
    NotAManifest,
    /// A computed value is missing or not 96 hex digits.
    #[error("measurements.{tee}.values.{register}: {reason}")]
    BadValue {
        /// "snp" or "tdx".
        tee: &'static str,
        /// The register's name in the manifest.
        register: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `uefi.predictions` is malformed.
    #[error(transparent)]
    Predictions(#[from] EventLogError),
    /// Neither TEE has a measurement the verifier could check.
    #[error("the manifest gives no measurement a verifier can check: {0}")]
    NothingUsable(String),
}

impl ExpectedMeasurements {
    /// The measurements an image build's `manifest.json` records: per TEE, `{"status":
    /// "computed", "values": {…}, "parameters": {…}}` or `{"status": "not_computed", "reason":
    /// …}`. SNP: the launch digest. TDX: MRTD and RTMR[1..3] from the manifest; RTMR[0] holds the
    /// host's VM configuration (ACPI tables, memory, vCPUs), which the image build cannot know,
    /// so it comes from `tdx_rtmr0` (read from a known-good boot on that host) — without it no
    /// TDX launch is accepted. `uefi.predictions`, when present, become [`Self::uefi`] (the
    /// cloud firmware's MRTDs are not in the manifest: see [`Self::tdx_firmware`]). Returns the
    /// measurements and, for people, a note for each TEE whose launches will be refused.
    pub fn from_image_manifest(
        manifest: &serde_json::Value,
        tdx_rtmr0: Option<Digest48>,
    ) -> Result<(Self, Vec<String>), ManifestError> {
        let measurements = manifest
            .get("measurements")
            .filter(|m| m.is_object())
            .ok_or(ManifestError::NotAManifest)?;
        let computed = |tee: &str| {
            let entry = measurements.get(tee)?;
            (entry.get("status")?.as_str()? == "computed").then_some(entry)
        };
        let value = |entry: &serde_json::Value, tee: &'static str, register: &'static str| {
            let text = entry
                .get("values")
                .and_then(|values| values.get(register))
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| ManifestError::BadValue {
                    tee,
                    register,
                    reason: "missing".into(),
                })?;
            text.parse::<Digest48>()
                .map_err(|reason| ManifestError::BadValue {
                    tee,
                    register,
                    reason,
                })
        };
        let mut expected = ExpectedMeasurements::default();
        let mut notes = Vec::new();
        match computed("snp") {
            Some(entry) => {
                let parameter = |name: &str| {
                    entry
                        .get("parameters")
                        .and_then(|p| p.get(name))
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("?")
                        .to_owned()
                };
                expected.snp.push(SnpMeasurement {
                    launch_digest: value(entry, "snp", "launch_digest")?,
                    label: Some(format!(
                        "image manifest: {} vCPU {}",
                        parameter("vcpus"),
                        parameter("vcpu_type")
                    )),
                });
            }
            None => {
                notes.push("SNP launches are refused: the manifest has no SNP launch digest".into())
            }
        }
        match (computed("tdx"), tdx_rtmr0) {
            (Some(entry), Some(rtmr0)) => expected.tdx.push(TdxMeasurements {
                mrtd: value(entry, "tdx", "mrtd")?,
                rtmr0,
                rtmr1: value(entry, "tdx", "rtmr1")?,
                rtmr2: value(entry, "tdx", "rtmr2")?,
                rtmr3: value(entry, "tdx", "rtmr3")?,
                label: Some("image manifest, RTMR[0] given".into()),
            }),
            (Some(_), None) => notes.push(
                "TDX launches are refused: RTMR[0] is the host's (ACPI tables, VM shape) and not \
                 in the manifest; give it (--tdx-rtmr0) from a known-good boot on that host"
                    .into(),
            ),
            (None, _) => {
                notes.push("TDX launches are refused: the manifest has no TDX values".into())
            }
        }
        let predictions = ImagePredictions::from_image_manifest(manifest)?;
        if predictions
            .platforms
            .values()
            .any(PlatformPrediction::is_tdx)
        {
            notes.push(
                "TDX UEFI boots (the manifest's TDX platforms) are accepted only on cloud firmware \
                 whose MRTD the policy lists (expected.tdx_firmware); the manifest cannot know it"
                    .into(),
            );
        }
        for (platform, prediction) in predictions.platforms {
            if prediction.registers().is_empty() {
                notes.push(format!(
                    "UEFI platform {platform} is refused: the manifest predicts nothing for it"
                ));
                continue;
            }
            expected.uefi.push(UefiPlatform {
                platform,
                prediction,
            });
        }
        if expected.snp.is_empty() && expected.tdx.is_empty() && expected.uefi.is_empty() {
            return Err(ManifestError::NothingUsable(notes.join("; ")));
        }
        Ok((expected, notes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(byte: u8) -> Digest48 {
        Digest48([byte; 48])
    }

    fn tdx(bytes: [u8; 5]) -> TdxMeasurements {
        TdxMeasurements {
            mrtd: digest(bytes[0]),
            rtmr0: digest(bytes[1]),
            rtmr1: digest(bytes[2]),
            rtmr2: digest(bytes[3]),
            rtmr3: digest(bytes[4]),
            label: None,
        }
    }

    #[test]
    fn digest_hex_round_trip_and_length_is_enforced() {
        let d = digest(0xab);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(48)));
        assert_eq!(serde_json::from_str::<Digest48>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest48>(&format!("\"{}\"", "ab".repeat(47))).is_err());
        assert!("zz".repeat(48).parse::<Digest48>().is_err());
    }

    #[test]
    fn snp_check_accepts_listed_digest_only() {
        let expected = ExpectedMeasurements {
            snp: vec![SnpMeasurement {
                launch_digest: digest(1),
                label: None,
            }],
            ..Default::default()
        };
        assert!(expected.check_snp(&digest(1)).is_ok());
        assert!(matches!(
            expected.check_snp(&digest(2)),
            Err(MeasurementError::Mismatch {
                register: Register::LaunchDigest,
                ..
            })
        ));
        assert!(matches!(
            ExpectedMeasurements::default().check_snp(&digest(1)),
            Err(MeasurementError::NoneExpected { tee: "snp" })
        ));
    }

    #[test]
    fn tdx_check_names_the_differing_register() {
        let expected = ExpectedMeasurements {
            tdx: vec![tdx([1, 2, 3, 4, 5])],
            ..Default::default()
        };
        assert!(expected.check_tdx(&tdx([1, 2, 3, 4, 5])).is_ok());
        for (i, register) in [
            Register::Mrtd,
            Register::Rtmr0,
            Register::Rtmr1,
            Register::Rtmr2,
            Register::Rtmr3,
        ]
        .into_iter()
        .enumerate()
        {
            let mut bytes = [1, 2, 3, 4, 5];
            bytes[i] = 9;
            match expected.check_tdx(&tdx(bytes)) {
                Err(MeasurementError::Mismatch { register: r, got }) => {
                    assert_eq!(r, register);
                    assert_eq!(got, "09".repeat(48));
                }
                other => panic!("expected a mismatch on {register:?}, got {other:?}"),
            }
        }
    }

    #[test]
    fn manifest_json_form_parses() {
        let json = format!(
            r#"{{"snp":[{{"launch_digest":"{a}","label":"4 vCPU"}}],
                "tdx":[{{"mrtd":"{a}","rtmr0":"{a}","rtmr1":"{a}","rtmr2":"{a}","rtmr3":"{a}"}}]}}"#,
            a = "11".repeat(48)
        );
        let m: ExpectedMeasurements = serde_json::from_str(&json).unwrap();
        assert_eq!(m.snp[0].label.as_deref(), Some("4 vCPU"));
        assert_eq!(m.tdx[0].rtmr3, digest(0x11));
        let back: ExpectedMeasurements =
            serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }

    /// The `measurements` of an image manifest as the image tool writes them.
    fn image_manifest(snp: &str, tdx: &str) -> serde_json::Value {
        serde_json::json!({
            "schema": 2,
            "measurements": {
                "snp": {
                    "status": "computed",
                    "values": { "launch_digest": snp },
                    "parameters": { "vcpus": "2", "vcpu_type": "EPYC-v4" }
                },
                "tdx": {
                    "status": "computed",
                    "values": { "mrtd": tdx, "rtmr1": tdx, "rtmr2": tdx, "rtmr3": "00".repeat(48) },
                    "parameters": {}
                }
            }
        })
    }

    #[test]
    fn an_image_manifest_gives_its_snp_digest_and_tdx_registers_with_a_given_rtmr0() {
        let manifest = image_manifest(&"11".repeat(48), &"22".repeat(48));
        let (expected, notes) =
            ExpectedMeasurements::from_image_manifest(&manifest, Some(digest(0x33))).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert!(expected.check_snp(&digest(0x11)).is_ok());
        assert!(expected.check_snp(&digest(0x12)).is_err());
        let mut launch = tdx([0x22, 0x33, 0x22, 0x22, 0x00]);
        assert!(expected.check_tdx(&launch).is_ok());
        launch.rtmr0 = digest(0x34);
        assert!(matches!(
            expected.check_tdx(&launch),
            Err(MeasurementError::Mismatch {
                register: Register::Rtmr0,
                ..
            })
        ));
    }

    #[test]
    fn without_rtmr0_tdx_is_refused_and_said_so() {
        let manifest = image_manifest(&"11".repeat(48), &"22".repeat(48));
        let (expected, notes) = ExpectedMeasurements::from_image_manifest(&manifest, None).unwrap();
        assert!(expected.tdx.is_empty());
        assert!(matches!(
            expected.check_tdx(&tdx([0x22, 0x33, 0x22, 0x22, 0x00])),
            Err(MeasurementError::NoneExpected { tee: "tdx" })
        ));
        assert!(notes.iter().any(|n| n.contains("RTMR[0]")), "{notes:?}");
        assert!(expected.check_snp(&digest(0x11)).is_ok());
    }

    #[test]
    fn broken_or_empty_manifests_are_refused() {
        let bare = serde_json::json!({ "snp": [] });
        assert!(matches!(
            ExpectedMeasurements::from_image_manifest(&bare, None),
            Err(ManifestError::NotAManifest)
        ));
        let short = image_manifest(&"11".repeat(47), &"22".repeat(48));
        assert!(matches!(
            ExpectedMeasurements::from_image_manifest(&short, None),
            Err(ManifestError::BadValue {
                tee: "snp",
                register: "launch_digest",
                ..
            })
        ));
        let none = serde_json::json!({ "measurements": {
            "snp": { "status": "not_computed", "reason": "--no-snp" },
            "tdx": { "status": "not_computed", "reason": "--no-tdx" }
        }});
        assert!(matches!(
            ExpectedMeasurements::from_image_manifest(&none, Some(digest(1))),
            Err(ManifestError::NothingUsable(_))
        ));
    }

    #[test]
    fn uefi_predictions_are_read_when_present() {
        let rtmr = |d: &str| {
            serde_json::json!({"trust": "the cloud's firmware",
            "events": [{"register": "RTMR1", "event_type": "EV_EFI_BOOT_SERVICES_APPLICATION",
                        "digest_alg": "sha384", "digest": d, "what": "the UKI"}],
            "values": {"RTMR1": "22".repeat(48)}})
        };
        let mut manifest = serde_json::json!({ "measurements": {
            "snp": { "status": "not_computed", "reason": "--no-snp" },
            "tdx": { "status": "not_computed", "reason": "--no-tdx" }
        }});
        manifest["uefi"] = serde_json::json!({"uki": {}, "disk": {}, "predictions": {
            "gcp-tdx": rtmr(&"55".repeat(48)),
            "azure-vtpm": {"trust": "Azure's vTPM", "values": {"PCR4": "33".repeat(32)}},
            "aws-snp": {"trust": "nothing predicted yet", "events": [], "values": {}}
        }});
        let (expected, notes) = ExpectedMeasurements::from_image_manifest(&manifest, None).unwrap();
        let names: Vec<&str> = expected.uefi.iter().map(|p| p.platform.as_str()).collect();
        assert_eq!(names, ["azure-vtpm", "gcp-tdx"]);
        assert!(expected.uefi[1].prediction.is_tdx());
        assert!(expected.tdx_firmware.is_empty(), "never from the manifest");
        assert!(
            notes.iter().any(|n| n.contains("tdx_firmware")),
            "{notes:?}"
        );
        // The policy JSON carries them.
        let back: ExpectedMeasurements =
            serde_json::from_str(&serde_json::to_string(&expected).unwrap()).unwrap();
        assert_eq!(back, expected);
        manifest["uefi"]["predictions"]["gcp-tdx"] = rtmr("55");
        assert!(matches!(
            ExpectedMeasurements::from_image_manifest(&manifest, None),
            Err(ManifestError::Predictions(_))
        ));
    }
}
