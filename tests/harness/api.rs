//! A client of the gateway's HTTP API (docs/contract.md §6) with a bearer token, plus a
//! Prometheus text parser for `/metrics` (docs/contract.md §7).

use serde_json::{json, Value};

/// HTTP API client bound to one gateway address and token.
#[derive(Clone)]
pub struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    /// A client for `http://{addr}` sending `Authorization: Bearer {token}`.
    pub fn new(base: String, token: String) -> Api {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .expect("build reqwest client");
        Api { base, token, http }
    }

    /// Base URL, e.g. `http://127.0.0.1:PORT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GET `path` with or without the token: `(status, body text)`; panics only if nothing answers.
    pub async fn get_raw(&self, path: &str, with_token: bool) -> (u16, String) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if with_token {
            request = request.bearer_auth(&self.token);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// POST JSON to `path` with the token: `(status, body as JSON or Null)`.
    pub async fn post_raw(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// GET a JSON document with the token; panics unless 200 + JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let (status, text) = self.get_raw(path, true).await;
        assert_eq!(status, 200, "GET {path} answered {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {text}"))
    }

    /// Status of `GET /healthz` (no token), or `None` when nothing answers.
    pub async fn healthz(&self) -> Option<u16> {
        self.status_of("/healthz").await
    }

    /// Status of `GET /readyz` (no token), or `None` when nothing answers.
    pub async fn readyz(&self) -> Option<u16> {
        self.status_of("/readyz").await
    }

    async fn status_of(&self, path: &str) -> Option<u16> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .timeout(std::time::Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        Some(response.status().as_u16())
    }

    /// `GET /api/v1/alarms` → the `alarms` array.
    pub async fn alarms(&self) -> Vec<Value> {
        alarms_of(self.get_json("/api/v1/alarms").await)
    }

    /// `GET /api/v1/alarms?state=open` → the `alarms` array.
    pub async fn open_alarms(&self) -> Vec<Value> {
        alarms_of(self.get_json("/api/v1/alarms?state=open").await)
    }

    /// The open alarm of `kind` for `device`, if there is one now.
    pub async fn open_alarm(&self, device: &str, kind: &str) -> Option<Value> {
        self.open_alarms()
            .await
            .into_iter()
            .find(|a| a["device_id"] == device && a["kind"] == kind)
    }

    /// `GET /api/v1/alarms/{id}`: the alarm with its `timeline`.
    pub async fn alarm(&self, id: &str) -> Value {
        self.get_json(&format!("/api/v1/alarms/{id}")).await
    }

    /// `POST /api/v1/alarms/{id}/ack` as contact `by`; panics unless 2xx.
    pub async fn ack(&self, id: &str, by: &str) -> Value {
        let path = format!("/api/v1/alarms/{id}/ack");
        let (status, body) = self
            .post_raw(&path, &json!({"by": by, "note": "e2e ack"}))
            .await;
        assert!(
            (200..300).contains(&status),
            "POST {path} answered {status}: {body}"
        );
        body
    }

    /// `POST /api/v1/alarms/{id}/resolve` as `by` with `cause`; panics unless 2xx.
    pub async fn resolve(&self, id: &str, by: &str, cause: &str) -> Value {
        let path = format!("/api/v1/alarms/{id}/resolve");
        let (status, body) = self
            .post_raw(
                &path,
                &json!({"by": by, "cause": cause, "note": "e2e resolve"}),
            )
            .await;
        assert!(
            (200..300).contains(&status),
            "POST {path} answered {status}: {body}"
        );
        body
    }

    /// `GET /metrics` text; panics unless 200.
    pub async fn metrics(&self) -> String {
        let (status, text) = self.get_raw("/metrics", false).await;
        assert_eq!(status, 200, "GET /metrics answered {status}: {text}");
        text
    }

    /// The value of metric `name` summed over the series carrying all `labels`; `None` if none does.
    pub async fn metric_value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        parse_metric(&self.metrics().await, name, labels)
    }
}

fn alarms_of(doc: Value) -> Vec<Value> {
    match doc.get("alarms") {
        Some(Value::Array(alarms)) => alarms.clone(),
        _ => panic!("expected {{\"alarms\":[...]}}, got {doc}"),
    }
}

/// Sums the samples of `name` in Prometheus text whose labels include all of
/// `labels` (other labels may be present); `None` when no sample matches.
pub fn parse_metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
            None => (series, Vec::new()),
        };
        if series_name != name {
            continue;
        }
        let matches = labels
            .iter()
            .all(|(k, v)| series_labels.iter().any(|(sk, sv)| sk == k && sv == v));
        if matches {
            if let Ok(v) = value.trim().parse::<f64>() {
                total = Some(total.unwrap_or(0.0) + v);
            }
        }
    }
    total
}

/// `a="x",b="y"` → pairs, honouring `\"` and `\\` escapes in values.
fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        value.push(match e {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key.trim_start_matches(',').trim().to_string(), value));
        rest = &after[end..];
    }
    out
}
