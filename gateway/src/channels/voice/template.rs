//! Any HTTP voice gateway: the request body is the SMS template provider's
//! minijinja template (same engine, same fields, same load-time probe);
//! the call is placed when the gateway answers 2xx (and, with `success`,
//! the pointed-at value is `true`, `0` or `"OK"`). The result comes back by
//! `POST /api/v1/voice/callback/template` with this JSON:
//!
//! ```json
//! {"delivery_id": "…", "result": "answered|no_answer|busy|failed", "key": "1"}
//! ```
//!
//! authenticated with a Standard Webhooks signature (`callback_secret =
//! "whsec_…"`: headers `webhook-id`, `webhook-timestamp`, `webhook-signature`,
//! the same HMAC as our outgoing json webhooks) or a bearer secret.

use crate::channels::modem::at::CallOutcome;
use crate::util::constant_time_eq;
use serde_json::Value;

/// Signatures older or newer than this are refused (Standard Webhooks' tolerance).
const TOLERANCE_SECS: i64 = 300;

/// One result posted to the template callback.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub delivery_id: String,
    pub call_id: Option<String>,
    pub outcome: CallOutcome,
}

/// Reads the documented JSON shape; an unknown `result` or a missing
/// `delivery_id` is an error (answered 400), never a guess.
pub fn report(body: &str) -> Result<Report, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let delivery_id = v
        .get("delivery_id")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or("delivery_id (a string) is required")?
        .to_string();
    let key = match v.get("key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => s.chars().next(),
        Some(Value::Number(n)) => n.to_string().chars().next(),
        Some(_) => return Err("key must be a string such as \"1\"".into()),
    };
    if key.is_some_and(|k| !(k.is_ascii_digit() || k == '*' || k == '#')) {
        return Err("key must be a phone key 0-9, * or #".into());
    }
    let outcome = match v.get("result").and_then(Value::as_str) {
        Some("answered") => CallOutcome::Answered { key },
        Some("no_answer") => CallOutcome::NoAnswer,
        Some("busy") => CallOutcome::Busy,
        Some("failed") => CallOutcome::Failed(
            v.get("reason")
                .and_then(Value::as_str)
                .unwrap_or("reported failed by the voice gateway")
                .chars()
                .take(200)
                .collect(),
        ),
        _ => return Err("result must be answered, no_answer, busy or failed".into()),
    };
    Ok(Report {
        delivery_id,
        call_id: v.get("call_id").and_then(Value::as_str).map(str::to_string),
        outcome,
    })
}

/// How the template callback proves it comes from the gateway.
#[derive(Clone)]
pub enum CallbackAuth {
    /// Standard Webhooks: the decoded `whsec_` key.
    Signed(Vec<u8>),
    /// `Authorization: Bearer <secret>`.
    Bearer(String),
}

impl CallbackAuth {
    /// `whsec_<base64>` is a Standard Webhooks key; anything else a bearer secret.
    pub fn parse(secret: &str) -> Result<CallbackAuth, String> {
        use base64::Engine as _;
        match secret.strip_prefix("whsec_") {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map(CallbackAuth::Signed)
                .map_err(|e| format!("a Standard Webhooks secret is whsec_ + base64: {e}")),
            None if secret.len() < 16 => {
                Err("a bearer secret must be at least 16 characters".into())
            }
            None => Ok(CallbackAuth::Bearer(secret.to_string())),
        }
    }

    /// Whether the request is authentic. `header` reads a request header;
    /// `now_s` is the current Unix time.
    pub fn verify(&self, header: &dyn Fn(&str) -> Option<String>, body: &str, now_s: i64) -> bool {
        match self {
            CallbackAuth::Bearer(secret) => header("authorization")
                .and_then(|h| h.strip_prefix("Bearer ").map(str::to_string))
                .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), secret.as_bytes())),
            CallbackAuth::Signed(key) => {
                let (Some(id), Some(ts), Some(sigs)) = (
                    header("webhook-id"),
                    header("webhook-timestamp"),
                    header("webhook-signature"),
                ) else {
                    return false;
                };
                let Ok(t) = ts.trim().parse::<i64>() else {
                    return false;
                };
                if (now_s - t).abs() > TOLERANCE_SECS {
                    return false;
                }
                let want =
                    super::super::webhook::standard_webhooks_signature(key, &id, ts.trim(), body);
                // The header may list several space-separated `v1,<sig>` (key rotation).
                sigs.split_whitespace()
                    .filter_map(|s| s.strip_prefix("v1,"))
                    .any(|s| constant_time_eq(s.as_bytes(), want.as_bytes()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_shape_is_read_and_anything_else_refused() {
        let r = report(r#"{"delivery_id":"d-1","result":"answered","key":"2"}"#).unwrap();
        assert_eq!(r.delivery_id, "d-1");
        assert_eq!(r.outcome, CallOutcome::Answered { key: Some('2') });
        let r = report(r#"{"delivery_id":"d-1","result":"answered","key":1}"#).unwrap();
        assert_eq!(r.outcome, CallOutcome::Answered { key: Some('1') });
        assert_eq!(
            report(r#"{"delivery_id":"d","result":"no_answer"}"#)
                .unwrap()
                .outcome,
            CallOutcome::NoAnswer
        );
        for bad in [
            "",
            "[]",
            r#"{"result":"answered"}"#,
            r#"{"delivery_id":"d","result":"picked up"}"#,
            r#"{"delivery_id":"d","result":"answered","key":"x"}"#,
            r#"{"delivery_id":"d","result":"answered","key":[1]}"#,
        ] {
            assert!(report(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bearer_and_standard_webhooks_callbacks_are_verified() {
        let bearer = CallbackAuth::parse("a-long-shared-secret-1234").unwrap();
        let h = |v: &'static str| move |k: &str| (k == "authorization").then(|| v.to_string());
        assert!(bearer.verify(&h("Bearer a-long-shared-secret-1234"), "{}", 0));
        assert!(!bearer.verify(&h("Bearer a-long-shared-secret-1235"), "{}", 0));
        assert!(!bearer.verify(&|_: &str| None, "{}", 0));
        assert!(CallbackAuth::parse("short").is_err());
        assert!(CallbackAuth::parse("whsec_!!").is_err());

        let signed = CallbackAuth::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let CallbackAuth::Signed(key) = &signed else {
            panic!()
        };
        let body = r#"{"delivery_id":"d","result":"busy"}"#;
        let sig = super::super::super::webhook::standard_webhooks_signature(
            key,
            "msg_1",
            "1700000000",
            body,
        );
        let headers = move |k: &str| match k {
            "webhook-id" => Some("msg_1".to_string()),
            "webhook-timestamp" => Some("1700000000".to_string()),
            "webhook-signature" => Some(format!("v1,bogus v1,{sig}")),
            _ => None,
        };
        assert!(signed.verify(&headers, body, 1_700_000_010));
        assert!(!signed.verify(&headers, body, 1_700_001_000), "too old");
        assert!(
            !signed.verify(&headers, "{}", 1_700_000_010),
            "body changed"
        );
    }
}
