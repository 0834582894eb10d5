//! A small blocking-style client of the daemon's HTTP API (docs/contract.md §6) for the
//! operator commands, turning each failure into a message that says what to
//! do and an exit code scripts can branch on.

use serde_json::Value;
use std::time::Duration;

/// Exit codes of the commands that talk to the daemon (docs/cli.md).
pub mod exit {
    /// Anything else (bad answer, server error).
    pub const OTHER: u8 = 1;
    /// The daemon could not be reached (connection refused, timeout).
    pub const UNREACHABLE: u8 = 3;
    /// No token, or the token was refused (401) or lacks the role (403).
    pub const AUTH: u8 = 4;
    /// No such alarm (404).
    pub const NOT_FOUND: u8 = 5;
    /// The daemon refused the action (409 wrong state, 422 bad input, 400).
    pub const REFUSED: u8 = 6;
}

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no API token: give --token or set GRIDWATCH_TOKEN (a token from [[http.tokens]] in gateway.toml)")]
    NoToken,
    #[error("cannot reach the gridwatch daemon at {url}: {reason} (is it running? set --url or GRIDWATCH_URL)")]
    Unreachable { url: String, reason: String },
    #[error("the daemon refused the token (401 {message}): check --token or GRIDWATCH_TOKEN")]
    Unauthorized { message: String },
    #[error("the token's role may not do this (403 {message})")]
    Forbidden { message: String },
    #[error("not found (404 {message})")]
    NotFound { message: String },
    #[error("refused ({status} {message})")]
    Refused { status: u16, message: String },
    #[error("the daemon answered {status}: {message}")]
    Server { status: u16, message: String },
    #[error("the daemon's answer from {url} is not what was expected: {reason}")]
    BadAnswer { url: String, reason: String },
    #[error("cannot start the HTTP client: {0}")]
    Setup(String),
}

impl ClientError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::NoToken
            | ClientError::Unauthorized { .. }
            | ClientError::Forbidden { .. } => exit::AUTH,
            ClientError::Unreachable { .. } => exit::UNREACHABLE,
            ClientError::NotFound { .. } => exit::NOT_FOUND,
            ClientError::Refused { .. } => exit::REFUSED,
            ClientError::Server { .. } | ClientError::BadAnswer { .. } | ClientError::Setup(_) => {
                exit::OTHER
            }
        }
    }
}

/// The daemon's base URL and a bearer token.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`); `token` is required.
    pub fn new(base: &str, token: Option<&str>) -> Result<Client, ClientError> {
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ClientError::NoToken)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
            rt,
        })
    }

    /// GET `path` and parse the JSON answer.
    pub fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        let text = self.call(self.http.get(self.url(path)), path)?;
        self.json(path, &text)
    }

    /// GET `path` and return the body as text (CSV, HTML).
    pub fn get_text(&self, path: &str) -> Result<String, ClientError> {
        self.call(self.http.get(self.url(path)), path)
    }

    /// POST `body` as JSON to `path` and parse the JSON answer.
    pub fn post_json(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let text = self.call(self.http.post(self.url(path)).json(body), path)?;
        self.json(path, &text)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn json(&self, path: &str, text: &str) -> Result<Value, ClientError> {
        serde_json::from_str(text).map_err(|e| ClientError::BadAnswer {
            url: self.url(path),
            reason: format!("not JSON: {e}"),
        })
    }

    fn call(&self, req: reqwest::RequestBuilder, path: &str) -> Result<String, ClientError> {
        let url = self.url(path);
        let req = req.bearer_auth(&self.token);
        self.rt.block_on(async {
            let resp = req.send().await.map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                reason: reason(&e),
            })?;
            let status = resp.status().as_u16();
            let text = resp.text().await.map_err(|e| ClientError::BadAnswer {
                url: url.clone(),
                reason: e.to_string(),
            })?;
            if (200..300).contains(&status) {
                return Ok(text);
            }
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| text.trim().chars().take(200).collect());
            Err(match status {
                401 => ClientError::Unauthorized { message },
                403 => ClientError::Forbidden { message },
                404 => ClientError::NotFound { message },
                400 | 409 | 422 => ClientError::Refused { status, message },
                _ => ClientError::Server { status, message },
            })
        })
    }
}

/// The root cause of a transport error, in words ("connection refused").
fn reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut source: Option<&dyn std::error::Error> = Some(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    if e.is_connect() && last.to_lowercase().contains("refused") {
        "connection refused".into()
    } else {
        last
    }
}
