//! A runner response, read completely, with assertion helpers for the API contract.

use std::fmt;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;

/// A complete HTTP response from the runner.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub(crate) async fn read(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("read the runner's {status} response body: {e}"));
        Reply {
            status,
            headers,
            body,
        }
    }

    /// The value of header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body parsed as JSON; panics (showing the reply) if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("expected a JSON body ({e}), got: {self}"))
    }

    /// Asserts `status`, showing the whole reply when it differs.
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "unexpected reply: {self}");
        self
    }

    /// Asserts a successful creation (`201`, body `{"id": "<non-empty string>"}`) and returns the id.
    pub fn created_id(&self) -> String {
        self.assert_status(201);
        match self.json().get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => panic!("201 without a string \"id\": {self}"),
        }
    }

    /// Asserts an error reply: `status` and a JSON body `{"error": "<message>"}` whose message
    /// mentions at least one of `mentions` (case-insensitive; no check when empty); returns the
    /// message.
    pub fn expect_error(&self, status: u16, mentions: &[&str]) -> String {
        self.assert_status(status);
        let message = self
            .json()
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("error reply without a string \"error\": {self}"))
            .to_owned();
        let lower = message.to_lowercase();
        assert!(
            mentions.is_empty() || mentions.iter().any(|m| lower.contains(&m.to_lowercase())),
            "error message should mention one of {mentions:?}: {message:?}"
        );
        message
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}
