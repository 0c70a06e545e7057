//! `POST /`: create a worker from JSON or form data, with the reference's
//! fields (`script`, `type`, `config`, `schedule`) and Escrin's spellings
//! (`code`, `type: "sw"`).

use axum::body::Bytes;
use axum::extract::FromRequest;
use axum::extract::Multipart;
use axum::extract::Request;
use axum::extract::State;
use axum::http::header;
use axum::http::HeaderMap;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;
use serde_json::Map;
use serde_json::Value;

use super::hosts::HostRouting;
use super::ApiError;
use super::AppState;
use crate::ownership::ManagementToken;
use crate::ownership::TokenHash;
use crate::pool::NewWorker;
use crate::triggers::cron::Schedule;
use crate::triggers::taskhub::TaskHubSpec;
use crate::worker::ScriptKind;

/// Limits on creation requests.
#[derive(Debug, Clone, Copy)]
pub struct CreateLimits {
    pub max_script_bytes: usize,
}

/// Room in a request body beyond the script: form framing, config, schedule.
const BODY_OVERHEAD_BYTES: usize = 1024 * 1024;

impl CreateLimits {
    pub fn max_body_bytes(&self) -> usize {
        self.max_script_bytes.saturating_add(BODY_OVERHEAD_BYTES)
    }
}

/// A config field as it arrived: already JSON, or text to parse as JSON.
#[derive(Debug)]
enum ConfigField {
    Json(Value),
    Text(String),
}

/// The creation fields as sent, before validation.
#[derive(Debug, Default)]
struct Fields {
    script: Option<String>,
    kind: Option<String>,
    config: Option<ConfigField>,
    schedule: Option<String>,
    hostname: Option<String>,
    /// JSON (an object) or, in forms, JSON text.
    taskhub: Option<ConfigField>,
}

/// `201 {"id", "token"}`: the management token is shown here once and never again.
pub async fn create_worker(
    State(state): State<AppState>,
    request: Request,
) -> Result<(StatusCode, HeaderMap, Json<Value>), ApiError> {
    let fields = read_fields(request, &state).await?;
    let token = ManagementToken::generate().map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no randomness for a management token: {e}"),
        )
    })?;
    let mut new = validate(fields, state.create_limits, &state.hosts, token.hash())?;
    if let Some(taskhub) = &mut new.taskhub {
        // The chain must answer before 201: its head is where watching starts.
        state.pool.taskhub().prepare(taskhub).await.map_err(|e| {
            let status = if e.is_unavailable() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_REQUEST
            };
            ApiError::new(status, e.to_string())
        })?;
    }
    let id = state.pool.create(new).await?;
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/workers/{id}")) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((
        StatusCode::CREATED,
        headers,
        Json(json!({ "id": id, "token": token.reveal() })),
    ))
}

/// `POST /` on plain HTTP under `--creation-tls-only`.
pub async fn refuse_plain_http() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "creation over plain HTTP is turned off on this runner (--creation-tls-only): a worker's config would cross the network in the clear; create it over the attested HTTPS listener, e.g. with `runner deploy`",
    )
}

async fn read_fields(request: Request, state: &AppState) -> Result<Fields, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match content_type.as_deref() {
        None | Some("") | Some("application/json") => {
            let body = read_body(request, state.create_limits.max_body_bytes()).await?;
            fields_from_json(&body)
        }
        Some(t) if t.ends_with("+json") => {
            let body = read_body(request, state.create_limits.max_body_bytes()).await?;
            fields_from_json(&body)
        }
        Some("application/x-www-form-urlencoded") => {
            let body = read_body(request, state.create_limits.max_body_bytes()).await?;
            // `curl -d '{"script": ...}'` labels JSON as a form: a form body
            // cannot start with `{`, so such a body is read as the JSON it is.
            if body.trim_ascii_start().starts_with(b"{") {
                fields_from_json(&body)
            } else {
                fields_from_urlencoded(&body)
            }
        }
        Some("multipart/form-data") => {
            let multipart = Multipart::from_request(request, state).await.map_err(|e| {
                ApiError::bad_request(format!(
                    "the request body could not be parsed as form data: {e}"
                ))
            })?;
            fields_from_multipart(multipart).await
        }
        Some(other) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content type: {other} (send application/json or form data)"),
        )),
    }
}

async fn read_body(request: Request, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| too_large(limit))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than the limit of {limit} bytes"),
    )
}

fn fields_from_json(body: &[u8]) -> Result<Fields, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the request body could not be parsed as JSON: {e}"))
    })?;
    let Value::Object(mut object) = value else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    let script = take_string(&mut object, "script")?.or(take_string(&mut object, "code")?);
    Ok(Fields {
        script,
        kind: take_string(&mut object, "type")?,
        // Escrin's runner also took the config as a JSON string inside the JSON body.
        config: object.remove("config").map(|config| match config {
            Value::String(text) => ConfigField::Text(text),
            value => ConfigField::Json(value),
        }),
        schedule: take_string(&mut object, "schedule")?,
        hostname: take_string(&mut object, "hostname")?.or(take_string(&mut object, "route")?),
        taskhub: object.remove("taskhub").map(ConfigField::Json),
    })
}

fn take_string(object: &mut Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match object.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(format!("{name} must be a string"))),
    }
}

fn fields_from_urlencoded(body: &[u8]) -> Result<Fields, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body could not be parsed as form data: {e}"
        ))
    })?;
    let mut fields = Fields::default();
    for (name, value) in pairs {
        fields.set(&name, value);
    }
    Ok(fields)
}

async fn fields_from_multipart(mut multipart: Multipart) -> Result<Fields, ApiError> {
    let mut fields = Fields::default();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(e)),
        };
        let name = field.name().unwrap_or_default().to_string();
        // Every part is text, file parts included (curl's `-F script=@w.js`).
        let bytes = field.bytes().await.map_err(multipart_error)?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| ApiError::bad_request(format!("{name} is not valid UTF-8 text")))?;
        fields.set(&name, text);
    }
    Ok(fields)
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    let status = error.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            status,
            format!("the request body is too large: {}", error.body_text()),
        );
    }
    ApiError::bad_request(format!(
        "the request body could not be parsed as form data: {}",
        error.body_text()
    ))
}

impl Fields {
    /// Records a form field; unknown names (Escrin's `name`, `args`, `debug`) are ignored.
    fn set(&mut self, name: &str, value: String) {
        match name {
            "script" | "code" => self.script = Some(value),
            "type" => self.kind = Some(value),
            "config" => self.config = Some(ConfigField::Text(value)),
            "schedule" => self.schedule = Some(value),
            "hostname" | "route" => self.hostname = Some(value),
            "taskhub" => self.taskhub = Some(ConfigField::Text(value)),
            _ => {}
        }
    }
}

fn validate(
    fields: Fields,
    limits: CreateLimits,
    hosts: &HostRouting,
    token_hash: TokenHash,
) -> Result<NewWorker, ApiError> {
    let script = fields
        .script
        .ok_or_else(|| ApiError::bad_request("script is required (the worker's bundled source)"))?;
    if script.len() > limits.max_script_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "script is {} bytes, more than the limit of {} bytes",
                script.len(),
                limits.max_script_bytes
            ),
        ));
    }
    if script.trim().is_empty() {
        return Err(ApiError::bad_request("script is empty"));
    }
    let kind = parse_kind(fields.kind.as_deref())?;
    let config_json = parse_config(fields.config)?;
    let schedule = match fields.schedule.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(
            Schedule::parse(text).map_err(|e| ApiError::bad_request(format!("schedule: {e}")))?,
        ),
    };
    let hostname = match fields.hostname.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(name) => Some(
            hosts
                .claimable(name)
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        ),
    };
    let taskhub = match fields.taskhub {
        None | Some(ConfigField::Json(Value::Null)) => None,
        Some(ConfigField::Text(text)) if text.trim().is_empty() => None,
        Some(ConfigField::Json(value)) => Some(TaskHubSpec::parse(&value)),
        Some(ConfigField::Text(text)) => Some(TaskHubSpec::parse_text(&text)),
    }
    .transpose()
    .map_err(ApiError::bad_request)?;
    Ok(NewWorker {
        kind,
        script,
        config_json,
        schedule,
        hostname,
        token_hash,
        taskhub,
    })
}

fn parse_kind(kind: Option<&str>) -> Result<ScriptKind, ApiError> {
    match kind.map(str::trim) {
        None | Some("") | Some("module") => Ok(ScriptKind::Module),
        Some("classic") | Some("sw") => Ok(ScriptKind::Classic),
        Some(other) => Err(ApiError::bad_request(format!(
            "type must be \"module\" or \"classic\" (or Escrin's \"sw\"), not {other:?}"
        ))),
    }
}

/// The config as JSON object text: `{}` when absent; anything but an object is refused.
fn parse_config(config: Option<ConfigField>) -> Result<String, ApiError> {
    let value = match config {
        None => return Ok("{}".into()),
        Some(ConfigField::Json(value)) => value,
        Some(ConfigField::Text(text)) if text.trim().is_empty() => return Ok("{}".into()),
        Some(ConfigField::Text(text)) => serde_json::from_str(&text)
            // serde_json's message holds only a position, never the text itself.
            .map_err(|e| ApiError::bad_request(format!("config is not valid JSON: {e}")))?,
    };
    match value {
        Value::Null => Ok("{}".into()),
        Value::Object(_) => Ok(value.to_string()),
        _ => Err(ApiError::bad_request("config must be a JSON object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: CreateLimits = CreateLimits {
        max_script_bytes: 64,
    };

    fn json_fields(body: &str) -> Result<NewWorker, ApiError> {
        validate(
            fields_from_json(body.as_bytes())?,
            LIMITS,
            &HostRouting::new(Some("example.com"), &[]).unwrap(),
            TokenHash::of("t"),
        )
    }

    #[test]
    fn json_with_escrin_spellings() {
        let new = json_fields(r#"{"code":"x()","type":"sw","name":"ignored"}"#).unwrap();
        assert_eq!(new.kind, ScriptKind::Classic);
        assert_eq!(new.script, "x()");
        assert_eq!(new.config_json, "{}");
    }

    #[test]
    fn config_must_be_an_object() {
        for bad in [r#"[1,2]"#, r#""str""#, r#""[1]""#, "3"] {
            let err = json_fields(&format!(r#"{{"script":"x","config":{bad}}}"#))
                .err()
                .unwrap();
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert!(err.message.contains("config"), "{}", err.message);
        }
        let form = parse_config(Some(ConfigField::Text("{\"a\": 1}".into()))).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&form).unwrap(),
            json!({"a": 1})
        );
        let err = parse_config(Some(ConfigField::Text("{oops".into()))).unwrap_err();
        assert!(err.message.starts_with("config is not valid JSON"));
    }

    #[test]
    fn config_as_a_json_string_in_a_json_body() {
        let new = json_fields(r#"{"code":"x()","config":"{\"a\": [1]}"}"#).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&new.config_json).unwrap(),
            json!({"a": [1]})
        );
        let err = json_fields(r#"{"code":"x()","config":"{oops"}"#)
            .err()
            .unwrap();
        assert!(
            err.message.starts_with("config is not valid JSON"),
            "{}",
            err.message
        );
    }

    #[test]
    fn wrong_field_types_name_the_field() {
        let err = json_fields(r#"{"script":42}"#).err().unwrap();
        assert_eq!(err.message, "script must be a string");
        let err = json_fields(r#"{"script":"x","type":"wasm"}"#)
            .err()
            .unwrap();
        assert!(err.message.starts_with("type must be"));
        let err = json_fields(r#"{"script":"x","schedule":"every day"}"#)
            .err()
            .unwrap();
        assert!(err.message.starts_with("schedule:"));
        let err = json_fields(r#"{"type":"module"}"#).err().unwrap();
        assert!(err.message.starts_with("script is required"));
    }

    #[test]
    fn hostnames_are_dns_names_lowercased() {
        let new = json_fields(r#"{"script":"x","hostname":"API.Example.com."}"#).unwrap();
        assert_eq!(new.hostname.as_deref(), Some("api.example.com"));
        for bad in [
            "exa mple.com",
            "-bad.example.com",
            "a..b.example.com",
            "x:80",
            "127.0.0.1",
            "localhost",
            "example.org",
        ] {
            let err = json_fields(&format!(r#"{{"script":"x","hostname":"{bad}"}}"#))
                .err()
                .unwrap();
            assert!(
                err.message.starts_with("hostname"),
                "{bad}: {}",
                err.message
            );
        }
    }

    #[test]
    fn taskhub_is_an_object_in_json_and_json_text_in_forms() {
        let address = "0x5fbdb2315678afecb367f032d93f642f64180aa3";
        let new = json_fields(&format!(
            r#"{{"script":"x","taskhub":{{"chain":"local","address":"{address}","hub_id":1}}}}"#
        ))
        .unwrap();
        let spec = new.taskhub.unwrap();
        assert_eq!(spec.chain, "local");
        assert_eq!(spec.start_block, None);
        let body = format!(
            "script=x&taskhub={}",
            url_escape(&format!(r#"{{"chain":"local","address":"{address}"}}"#))
        );
        let fields = fields_from_urlencoded(body.as_bytes()).unwrap();
        let new = validate(fields, LIMITS, &HostRouting::default(), TokenHash::of("t")).unwrap();
        assert_eq!(new.taskhub.unwrap().hub_id, None);
        let err = json_fields(r#"{"script":"x","taskhub":{"chain":"local","address":"0x12"}}"#)
            .err()
            .unwrap();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(
            err.message.starts_with("taskhub.address"),
            "{}",
            err.message
        );
        assert!(json_fields(r#"{"script":"x","taskhub":null}"#)
            .unwrap()
            .taskhub
            .is_none());
    }

    fn url_escape(text: &str) -> String {
        serde_urlencoded::to_string([("v", text)]).unwrap()[2..].to_owned()
    }

    #[test]
    fn oversize_scripts_are_413() {
        let script = "x".repeat(65);
        let err = json_fields(&format!(r#"{{"script":"{script}"}}"#))
            .err()
            .unwrap();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn malformed_json_is_a_400_that_says_so() {
        let err = fields_from_json(b"{not json").unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("could not be parsed as JSON"));
    }

    #[test]
    fn urlencoded_forms_take_a_quoted_schedule() {
        let fields = fields_from_urlencoded(
            b"script=x&type=module&schedule=%22*%2F5+*+*+*+*%22&config=%7B%22a%22%3A1%7D",
        )
        .unwrap();
        let new = validate(fields, LIMITS, &HostRouting::default(), TokenHash::of("t")).unwrap();
        assert_eq!(new.schedule.unwrap().as_str(), "*/5 * * * *");
        assert_eq!(new.config_json, r#"{"a":1}"#);
    }
}
