//! `runner deploy`: create a worker on an appliance only after verifying it.
//!
//! The same fields as the creation API (`--script`, `--type`, `--schedule`,
//! `--config`), sent over an RA-TLS connection verified exactly as
//! `runner verify` does it (same code): the evidence must satisfy the policy
//! and bind the key the server proves in the handshake, or the script and
//! config never leave this machine.

use std::path::Path;
use std::path::PathBuf;

use bytes::Bytes;
use serde_json::json;
use serde_json::Map;
use serde_json::Value;

use super::verify;
use super::verify::VerifyCommandError;

/// `runner deploy`: create a worker on a verified appliance.
#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {
    /// The appliance's attested HTTPS endpoint.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    pub url: String,
    /// The worker's bundled source.
    #[arg(long)]
    pub script: PathBuf,
    /// `module` or `classic`.
    #[arg(long = "type", default_value = "module")]
    pub kind: String,
    /// A cron schedule for the worker's tasks() handler, e.g. "*/5 * * * *".
    #[arg(long)]
    pub schedule: Option<String>,
    /// The worker's private config: a JSON object, or a file holding one.
    #[arg(long)]
    pub config: Option<String>,
    /// A host name whose requests go to the worker's fetch handler.
    #[arg(long)]
    pub hostname: Option<String>,
    /// What to trust. With `--allow-insecure-dev` the config is protected from the network but
    /// not from the host.
    #[command(flatten)]
    pub policy: verify::PolicyArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("reading the script {path}: {source}")]
    Script {
        path: String,
        source: std::io::Error,
    },
    #[error("--config: {0}")]
    Config(String),
    #[error(transparent)]
    Verify(#[from] VerifyCommandError),
    #[error("the appliance refused the worker (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the appliance's answer is not the expected JSON: {0}")]
    Answer(String),
}

/// The created worker, and what was verified before sending it.
#[derive(Debug)]
pub struct Deployed {
    pub id: String,
    pub token: String,
    pub verified: attest::Verified,
}

/// Reads the inputs, verifies the appliance, and creates the worker.
pub async fn run(args: &DeployArgs) -> Result<Deployed, DeployError> {
    let body = request_body(args)?;
    let verifier = args.policy.verifier()?;
    let url = format!("{}/", args.url.trim_end_matches('/'));
    let answer = verify::send_verified(
        &url,
        verifier,
        "POST",
        &[(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        )],
        Bytes::from(body.to_string()),
    )
    .await?;
    let value: Value =
        serde_json::from_slice(&answer.body).map_err(|e| DeployError::Answer(format!("{e}")))?;
    if answer.status != 201 {
        return Err(DeployError::Refused {
            status: answer.status,
            message: value["error"].as_str().unwrap_or("no message").to_owned(),
        });
    }
    let field = |name: &str| {
        value[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| DeployError::Answer(format!("no {name:?} in the answer")))
    };
    Ok(Deployed {
        id: field("id")?,
        token: field("token")?,
        verified: answer.verified,
    })
}

/// The creation request as JSON; the config is read from a file when one exists at that path.
fn request_body(args: &DeployArgs) -> Result<Value, DeployError> {
    let script = std::fs::read_to_string(&args.script).map_err(|source| DeployError::Script {
        path: args.script.display().to_string(),
        source,
    })?;
    let mut body = Map::new();
    body.insert("script".into(), json!(script));
    body.insert("type".into(), json!(args.kind));
    if let Some(schedule) = &args.schedule {
        body.insert("schedule".into(), json!(schedule));
    }
    if let Some(hostname) = &args.hostname {
        body.insert("hostname".into(), json!(hostname));
    }
    if let Some(config) = &args.config {
        body.insert("config".into(), read_config(config)?);
    }
    Ok(Value::Object(body))
}

fn read_config(config: &str) -> Result<Value, DeployError> {
    let text = if !config.trim_start().starts_with('{') && Path::new(config).is_file() {
        std::fs::read_to_string(config)
            .map_err(|e| DeployError::Config(format!("reading {config}: {e}")))?
    } else {
        config.to_owned()
    };
    // serde_json's message holds only a position, never the config itself.
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| DeployError::Config(format!("not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(DeployError::Config("must be a JSON object".into()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(script: &Path, config: Option<&str>) -> DeployArgs {
        DeployArgs {
            url: "https://127.0.0.1:1".into(),
            script: script.to_owned(),
            kind: "module".into(),
            schedule: Some("* * * * * *".into()),
            config: config.map(str::to_owned),
            hostname: None,
            policy: verify::PolicyArgs::default(),
        }
    }

    #[test]
    fn the_config_comes_inline_or_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("w.js");
        std::fs::write(&script, "export default {}").unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(&file, r#"{"from": "file"}"#).unwrap();

        let inline = request_body(&args(&script, Some(r#"{"a": 1}"#))).unwrap();
        assert_eq!(inline["config"], json!({"a": 1}));
        assert_eq!(inline["script"], "export default {}");
        assert_eq!(inline["schedule"], "* * * * * *");
        let from_file = request_body(&args(&script, file.to_str())).unwrap();
        assert_eq!(from_file["config"], json!({"from": "file"}));
        let error = request_body(&args(&script, Some("[1]"))).unwrap_err();
        assert!(error.to_string().contains("JSON object"), "{error}");
        let error = request_body(&args(&dir.path().join("none.js"), None)).unwrap_err();
        assert!(error.to_string().contains("reading the script"), "{error}");
    }
}
