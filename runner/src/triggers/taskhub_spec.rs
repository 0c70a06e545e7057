//! The `taskhub` creation field of a worker (issues 8 and 17): parsed and checked field by
//! field, and its form in the worker's record.

use std::str::FromStr;

use contracts::taskhub::Address;
use contracts::taskhub::HubKind;
use contracts::taskhub::B256;
use contracts::taskhub::U256;
use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

/// A worker's TaskHub trigger, as requested and as stored in its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskHubSpec {
    /// A chain name of the runner's configuration.
    pub chain: String,
    pub address: Address,
    /// Whose `TasksAvailable` event: ours (default) or Escrin's.
    pub kind: HubKind,
    /// Ours: only this hub's events; `None`: every hub of the contract.
    pub hub_id: Option<U256>,
    /// Escrin's: only this generator's events; `None`: every generator.
    pub generator: Option<Address>,
    /// Escrin's: only events with this context; `None`: any.
    pub context: Option<B256>,
    /// The first block watched; `None` until [`TaskHubTrigger::prepare`] (then: from the head
    /// of the first poll).
    pub start_block: Option<u64>,
}

/// [`TaskHubSpec`] in a worker record.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskHubRecord {
    pub chain: String,
    /// `0x` + 40 hex digits.
    pub address: String,
    /// `escrin`; absent: ours (records from before issue 17 have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Decimal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_id: Option<String>,
    /// `0x` + 40 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
    /// `0x` + 64 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_block: Option<u64>,
}

/// The `kind` values of the creation field.
pub(super) const KIND_SMART_WORKER: &str = "smart-worker";
pub(super) const KIND_ESCRIN: &str = "escrin";

pub(super) fn kind_name(kind: HubKind) -> &'static str {
    match kind {
        HubKind::SmartWorker => KIND_SMART_WORKER,
        HubKind::Escrin => KIND_ESCRIN,
    }
}

fn parse_kind(text: &str) -> Result<HubKind, String> {
    match text {
        KIND_SMART_WORKER => Ok(HubKind::SmartWorker),
        KIND_ESCRIN => Ok(HubKind::Escrin),
        other => Err(format!(
            "taskhub.kind {other:?} is not a hub kind ({KIND_SMART_WORKER:?} or {KIND_ESCRIN:?})"
        )),
    }
}

const FIELDS: [&str; 6] = ["chain", "address", "kind", "hub_id", "generator", "context"];

impl TaskHubSpec {
    /// The creation field: `{"chain": "...", "address": "0x...", "hub_id": 1 | "1" | "0x1"}`,
    /// or for Escrin's hub `{"chain", "address", "kind": "escrin", "generator": "0x…"?,
    /// "context": "0x…(32 bytes)"?}`. The message names what is wrong (for a `400`).
    pub fn parse(value: &Value) -> Result<Self, String> {
        let Value::Object(object) = value else {
            return Err(
                "taskhub must be a JSON object {\"chain\", \"address\", \"kind\"?, \"hub_id\"?, \"generator\"?, \"context\"?}".into(),
            );
        };
        if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(format!(
                "taskhub: unknown field {unknown:?} (fields: {})",
                FIELDS.join(", ")
            ));
        }
        let kind = match object.get("kind") {
            None | Some(Value::Null) => HubKind::SmartWorker,
            Some(Value::String(s)) => parse_kind(s.trim())?,
            Some(_) => return Err("taskhub.kind must be a string".into()),
        };
        let chain = match object.get("chain") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
            None | Some(Value::Null) => return Err("taskhub.chain is required".into()),
            Some(_) => return Err("taskhub.chain must be a non-empty string".into()),
        };
        let address = match object.get("address") {
            Some(Value::String(s)) => parse_address("taskhub.address", s.trim())?,
            None | Some(Value::Null) => return Err("taskhub.address is required".into()),
            Some(_) => return Err("taskhub.address must be a string".into()),
        };
        let hub_id = match object.get("hub_id") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(
                n.as_u64()
                    .map(U256::from)
                    .ok_or_else(|| format!("taskhub.hub_id {n} is not a hub id"))?,
            ),
            Some(Value::String(s)) => Some(
                U256::from_str(s.trim())
                    .map_err(|_| format!("taskhub.hub_id {s:?} is not a number"))?,
            ),
            Some(_) => return Err("taskhub.hub_id must be a number or a string".into()),
        };
        if hub_id == Some(U256::ZERO) {
            return Err("taskhub.hub_id: hub ids start at 1".into());
        }
        let generator = match object.get("generator") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(parse_address("taskhub.generator", s.trim())?),
            Some(_) => return Err("taskhub.generator must be a string".into()),
        };
        let context = match object.get("context") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(parse_context(s.trim())?),
            Some(_) => return Err("taskhub.context must be a string".into()),
        };
        match kind {
            HubKind::Escrin if hub_id.is_some() => {
                return Err("taskhub.hub_id: Escrin's TaskHub has no hub ids (filter with generator or context)".into())
            }
            HubKind::SmartWorker if generator.is_some() || context.is_some() => {
                return Err("taskhub.generator and taskhub.context are for Escrin's TaskHub (\"kind\": \"escrin\")".into())
            }
            _ => {}
        }
        Ok(TaskHubSpec {
            chain,
            address,
            kind,
            hub_id,
            generator,
            context,
            start_block: None,
        })
    }

    /// The form-field spelling: the same object as JSON text.
    pub fn parse_text(text: &str) -> Result<Self, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("taskhub is not valid JSON: {e}"))?;
        Self::parse(&value)
    }

    pub fn to_record(&self) -> TaskHubRecord {
        TaskHubRecord {
            chain: self.chain.clone(),
            address: self.address.to_checksum(None),
            kind: match self.kind {
                HubKind::SmartWorker => None,
                kind => Some(kind_name(kind).to_owned()),
            },
            hub_id: self.hub_id.map(|id| id.to_string()),
            generator: self.generator.map(|a| a.to_checksum(None)),
            context: self.context.map(|c| c.to_string()),
            start_block: self.start_block,
        }
    }

    pub fn from_record(record: &TaskHubRecord) -> Result<Self, String> {
        Ok(TaskHubSpec {
            chain: record.chain.clone(),
            address: Address::from_str(&record.address)
                .map_err(|e| format!("taskhub address {:?}: {e}", record.address))?,
            kind: record
                .kind
                .as_deref()
                .map(parse_kind)
                .transpose()?
                .unwrap_or_default(),
            generator: record
                .generator
                .as_deref()
                .map(Address::from_str)
                .transpose()
                .map_err(|e| format!("taskhub generator: {e}"))?,
            context: record
                .context
                .as_deref()
                .map(B256::from_str)
                .transpose()
                .map_err(|e| format!("taskhub context: {e}"))?,
            hub_id: record
                .hub_id
                .as_deref()
                .map(U256::from_str)
                .transpose()
                .map_err(|e| format!("taskhub hub id: {e}"))?,
            start_block: record.start_block,
        })
    }
}

/// `0x` and 64 hex digits (Escrin's `bytes32 context`).
fn parse_context(text: &str) -> Result<B256, String> {
    let digits = text.strip_prefix("0x").unwrap_or("");
    if digits.len() != 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "taskhub.context {text:?} is not 32 bytes (0x followed by 64 hex digits)"
        ));
    }
    B256::from_str(text).map_err(|e| format!("taskhub.context {text:?}: {e}"))
}

/// `0x` and 40 hex digits, not zero; mixed case must be a valid EIP-55 checksum. `field` names
/// it in messages.
fn parse_address(field: &str, text: &str) -> Result<Address, String> {
    let malformed = || format!("{field} {text:?} is not an address (0x followed by 40 hex digits)");
    let digits = text.strip_prefix("0x").ok_or_else(malformed)?;
    if digits.len() != 40 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed());
    }
    let mixed = digits.bytes().any(|b| b.is_ascii_uppercase())
        && digits.bytes().any(|b| b.is_ascii_lowercase());
    let address = if mixed {
        Address::parse_checksummed(text, None).map_err(|_| {
            format!("{field} {text:?} has mixed case but not a valid EIP-55 checksum")
        })?
    } else {
        Address::from_str(text).map_err(|_| malformed())?
    };
    if address == Address::ZERO {
        return Err(format!("{field} is the zero address"));
    }
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_creation_field_is_checked_field_by_field() {
        let spec = TaskHubSpec::parse(&json!({
            "chain": "local",
            "address": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
            "hub_id": "0x2",
        }))
        .unwrap();
        assert_eq!(spec.hub_id, Some(U256::from(2)));
        assert_eq!(spec.start_block, None);
        let checksummed = TaskHubSpec::parse_text(
            r#"{"chain":"local","address":"0x5FbDB2315678afecb367f032d93F642f64180aa3","hub_id":3}"#,
        )
        .unwrap();
        assert_eq!(checksummed.address, spec.address);
        let record = checksummed.to_record();
        assert_eq!(record.hub_id.as_deref(), Some("3"));
        assert_eq!(TaskHubSpec::from_record(&record).unwrap(), checksummed);

        let bad = |value: Value| TaskHubSpec::parse(&value).unwrap_err();
        for address in [
            "5fbdb2315678afecb367f032d93f642f64180aa3",
            "0x5fbdb2315678afecb367f032d93f642f64180a",
            "0x5fbdb2315678afecb367f032d93f642f64180aaz",
            "0xnothex",
        ] {
            let err = bad(json!({"chain": "local", "address": address}));
            assert!(err.contains("is not an address"), "{address}: {err}");
        }
        let err =
            bad(json!({"chain": "local", "address": "0x5FBdb2315678afecb367f032d93F642f64180aa3"}));
        assert!(err.contains("checksum"), "{err}");
        let zero = format!("0x{}", "0".repeat(40));
        assert!(bad(json!({"chain": "c", "address": zero})).contains("zero"));
        assert!(
            bad(json!({"address": "0x5fbdb2315678afecb367f032d93f642f64180aa3"}))
                .contains("chain is required")
        );
        assert!(bad(json!({"chain": "c"})).contains("address is required"));
        assert!(
            bad(json!({"chain": "c", "address": spec.address.to_string(), "hub_id": 0}))
                .contains("start at 1")
        );
        assert!(
            bad(json!({"chain": "c", "address": spec.address.to_string(), "hub_id": -1}))
                .contains("hub_id")
        );
        assert!(
            bad(json!({"chain": "c", "address": spec.address.to_string(), "hubid": 1}))
                .contains("unknown field")
        );
        assert!(bad(json!("local")).contains("JSON object"));
        assert!(TaskHubSpec::parse_text("{oops")
            .unwrap_err()
            .starts_with("taskhub is not valid JSON"));
    }

    #[test]
    fn escrin_hubs_take_generator_and_context_and_no_hub_id() {
        let address = "0x5fbdb2315678afecb367f032d93f642f64180aa3";
        let generator = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";
        let context = format!("0x{}", "ab".repeat(32));
        let spec = TaskHubSpec::parse(&json!({
            "chain": "local", "address": address, "kind": "escrin",
            "generator": generator, "context": context,
        }))
        .unwrap();
        assert_eq!(spec.kind, HubKind::Escrin);
        assert_eq!(spec.generator, Some(Address::from_str(generator).unwrap()));
        assert_eq!(spec.context, Some(B256::repeat_byte(0xab)));
        let record = spec.to_record();
        assert_eq!(record.kind.as_deref(), Some("escrin"));
        assert_eq!(TaskHubSpec::from_record(&record).unwrap(), spec);
        // Without kind: ours, and the record stays as before issue 17.
        let ours = TaskHubSpec::parse(&json!({"chain": "local", "address": address})).unwrap();
        assert_eq!(ours.kind, HubKind::SmartWorker);
        let record = ours.to_record();
        assert_eq!(record.kind, None);
        assert_eq!(
            serde_json::to_value(&record).unwrap(),
            json!({"chain": "local", "address": ours.address.to_checksum(None)})
        );
        let explicit = TaskHubSpec::parse(
            &json!({"chain": "local", "address": address, "kind": "smart-worker"}),
        )
        .unwrap();
        assert_eq!(explicit, ours);

        let bad = |value: Value| TaskHubSpec::parse(&value).unwrap_err();
        let escrin = |extra: Value| {
            let mut v = json!({"chain": "local", "address": address, "kind": "escrin"});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            v
        };
        assert!(bad(escrin(json!({"hub_id": 1}))).contains("no hub ids"));
        assert!(
            bad(json!({"chain": "local", "address": address, "generator": generator}))
                .contains("\"kind\": \"escrin\"")
        );
        assert!(
            bad(json!({"chain": "local", "address": address, "context": context}))
                .contains("Escrin")
        );
        assert!(bad(escrin(json!({"kind": "Escrin"}))).contains("not a hub kind"));
        assert!(bad(escrin(json!({"kind": 1}))).contains("kind must be a string"));
        assert!(bad(escrin(json!({"generator": "0x1234"}))).contains("taskhub.generator"));
        assert!(bad(escrin(json!({"context": "0x1234"}))).contains("not 32 bytes"));
        assert!(bad(escrin(json!({"context": "ab".repeat(32)}))).contains("not 32 bytes"));
        assert!(
            bad(escrin(json!({"context": format!("0x{}", "zz".repeat(32))})))
                .contains("not 32 bytes")
        );
    }
}
