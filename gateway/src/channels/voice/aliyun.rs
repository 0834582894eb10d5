//! Aliyun 语音服务 (Dyvmsapi, API 2017-05-25), pure request and answer
//! handling apart from I/O:
//!
//! - SingleCallByTts places the call: an RPC call signed like SendSms
//!   (the one signer in `sms`), accepted when `Code == "OK"` with a `CallId`;
//! - the call result (呼叫结果回执, VoiceReport) arrives by HTTP push as a JSON
//!   array of `{call_id, status_code, status_msg, dtmf, duration, out_id, …}`;
//!   `out_id` is our delivery id;
//! - QueryCallDetailByCallId asks for it when no push came in time; its
//!   `Data` is a JSON string holding `state` (the same status codes).
//!
//! Aliyun's HTTP push is not signed: the callback is authenticated by a
//! secret token in its URL (see `api::voice`).

use super::super::http::snippet;
use super::super::sms::{aliyun_signed_form, aliyun_verdict, field_value, http_or_bad};
use super::super::SendError;
use crate::channels::modem::at::CallOutcome;
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::BTreeMap;

/// The public Dyvmsapi endpoint.
pub const ENDPOINT: &str = "https://dyvmsapi.aliyuncs.com/";
/// Aliyun's voice flow control per callee: one call a minute (also 5 an
/// hour and 20 a day; those answer `isv.BUSINESS_LIMIT_CONTROL`, retried).
pub const PER_CALLEE: std::time::Duration = std::time::Duration::from_secs(60);
/// `ProdId` of voice notifications (语音通知) in QueryCallDetailByCallId.
const PROD_ID_TTS: &str = "11000000300006";

/// The fixed parts of every request (`Action` and the call's own fields apart).
pub struct Account<'a> {
    pub key_id: &'a str,
    pub key_secret: &'a str,
}

/// One SingleCallByTts call.
pub struct TtsCall<'a> {
    pub called_number: &'a str,
    pub show_number: &'a str,
    pub tts_code: &'a str,
    /// Template variable → field name.
    pub params: &'a BTreeMap<String, String>,
    pub fields: &'a [(&'static str, String)],
    pub play_times: u32,
    pub out_id: &'a str,
}

/// The common RPC parameters, `Timestamp` and `SignatureNonce` given so tests are repeatable.
fn common(a: &Account, action: &str, nonce: &str, timestamp: &str) -> BTreeMap<String, String> {
    let mut q = BTreeMap::new();
    for (k, v) in [
        ("AccessKeyId", a.key_id),
        ("Action", action),
        ("Format", "JSON"),
        ("RegionId", "cn-hangzhou"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("Version", "2017-05-25"),
        ("SignatureNonce", nonce),
        ("Timestamp", timestamp),
    ] {
        q.insert(k.to_string(), v.to_string());
    }
    q
}

/// The signed form body of SingleCallByTts.
pub fn tts_form(a: &Account, c: &TtsCall, nonce: &str, timestamp: &str) -> String {
    let mut q = common(a, "SingleCallByTts", nonce, timestamp);
    let vars: serde_json::Map<String, Value> = c
        .params
        .iter()
        .map(|(var, field)| (var.clone(), Value::String(field_value(c.fields, field))))
        .collect();
    q.insert("CalledNumber".into(), c.called_number.into());
    q.insert("CalledShowNumber".into(), c.show_number.into());
    q.insert("TtsCode".into(), c.tts_code.into());
    q.insert("TtsParam".into(), Value::Object(vars).to_string());
    // Aliyun plays a message at most 3 times.
    q.insert("PlayTimes".into(), c.play_times.clamp(1, 3).to_string());
    q.insert("OutId".into(), c.out_id.into());
    aliyun_signed_form(&q, a.key_secret)
}

/// The signed form body of QueryCallDetailByCallId (`QueryDate`: the call's day, ms).
pub fn query_form(
    a: &Account,
    call_id: &str,
    placed_at_ms: i64,
    nonce: &str,
    timestamp: &str,
) -> String {
    let mut q = common(a, "QueryCallDetailByCallId", nonce, timestamp);
    q.insert("CallId".into(), call_id.into());
    q.insert("ProdId".into(), PROD_ID_TTS.into());
    q.insert("QueryDate".into(), placed_at_ms.to_string());
    aliyun_signed_form(&q, a.key_secret)
}

/// SingleCallByTts's answer: the `CallId` when `Code == "OK"`, else the
/// refusal with Aliyun's code (flow control retryable; key, signature and
/// template errors final: see `sms::aliyun_verdict`).
pub fn placed(what: &str, status: StatusCode, body: &str) -> Result<String, SendError> {
    aliyun_verdict(what, status, body)?;
    let v: Value = serde_json::from_str(body).map_err(|_| http_or_bad(what, status, body))?;
    match v.get("CallId").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => Ok(id.to_string()),
        _ => Err(SendError::refused(
            "bad_answer",
            true,
            format!("{what}: Code OK without a CallId: {}", snippet(body)),
        )),
    }
}

/// QueryCallDetailByCallId's answer: the final outcome, or `None` while the
/// call is not over (no `Data` yet, or a state that is not a final one).
pub fn queried(
    what: &str,
    status: StatusCode,
    body: &str,
) -> Result<Option<CallOutcome>, SendError> {
    aliyun_verdict(what, status, body)?;
    let v: Value = serde_json::from_str(body).map_err(|_| http_or_bad(what, status, body))?;
    let data: Value = match v.get("Data") {
        Some(Value::String(s)) if !s.trim().is_empty() => {
            serde_json::from_str(s).unwrap_or(Value::Null)
        }
        Some(obj @ Value::Object(_)) => obj.clone(),
        _ => return Ok(None),
    };
    let state = text(&data, "state");
    if state.is_empty() {
        return Ok(None);
    }
    let msg = text(&data, "stateDesc");
    Ok(outcome(&state, &msg, &text(&data, "dtmf")))
}

/// One call result of a VoiceReport push.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub call_id: String,
    /// Our delivery id, as given in `OutId`.
    pub out_id: String,
    pub outcome: CallOutcome,
}

/// A VoiceReport push: a JSON array (Aliyun's HTTP batch push) or one
/// object. Entries without `out_id` or with a state that is not final are
/// skipped; a body that is not such JSON is an error (answered 400).
pub fn receipts(body: &str) -> Result<Vec<Receipt>, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let items = match v {
        Value::Array(a) => a,
        o @ Value::Object(_) => vec![o],
        _ => return Err("expected a JSON array of call reports".into()),
    };
    Ok(items
        .iter()
        .filter_map(|m| {
            let out_id = text(m, "out_id");
            let code = text(m, "status_code");
            if out_id.is_empty() || code.is_empty() {
                return None;
            }
            let outcome = outcome(&code, &text(m, "status_msg"), &text(m, "dtmf"))?;
            Some(Receipt {
                call_id: text(m, "call_id"),
                out_id,
                outcome,
            })
        })
        .collect())
}

/// A string field, numbers accepted (some pushes send `"duration": 10`).
fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// Aliyun's call status codes (呼叫状态码) as our call outcomes; `None` for
/// the states of a call still going on (double-call progress codes).
pub fn outcome(status_code: &str, status_msg: &str, dtmf: &str) -> Option<CallOutcome> {
    let key = dtmf
        .chars()
        .find(|c| c.is_ascii_digit() || *c == '*' || *c == '#');
    Some(match status_code {
        // Heard it all; hung up early; waited for a key that never came;
        // 300000: a key report (VoiceCallReport) of an answered call.
        "200000" | "200001" | "200008" | "300000" => CallOutcome::Answered { key },
        "200002" => CallOutcome::Busy,
        // Rang out; could not be reached (refused, out of coverage, phone off).
        "200003" | "200005" | "200007" | "200010" => CallOutcome::NoAnswer,
        "200101" | "200102" | "200103" => return None,
        other => CallOutcome::Failed(format!(
            "{other} {}",
            if status_msg.is_empty() {
                "call not completed"
            } else {
                status_msg
            }
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Account<'static> {
        Account {
            key_id: "testid",
            key_secret: "testsecret",
        }
    }

    #[test]
    fn the_tts_request_carries_the_documented_parameters_and_is_signed() {
        let params: BTreeMap<String, String> = [("addr".to_string(), "address".to_string())].into();
        let fields = vec![("address", "3幢2单元501室".to_string())];
        let form = tts_form(
            &account(),
            &TtsCall {
                called_number: "13800000001",
                show_number: "057188880000",
                tts_code: "TTS_1",
                params: &params,
                fields: &fields,
                play_times: 5,
                out_id: "d-1",
            },
            "nonce",
            "2026-11-29T07:00:00Z",
        );
        let q: BTreeMap<String, String> = form
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (
                    k.to_string(),
                    percent_encoding::percent_decode_str(v)
                        .decode_utf8()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect();
        assert_eq!(q["Action"], "SingleCallByTts");
        assert_eq!(q["Version"], "2017-05-25");
        assert_eq!(q["CalledNumber"], "13800000001");
        assert_eq!(q["CalledShowNumber"], "057188880000");
        assert_eq!(q["TtsCode"], "TTS_1");
        assert_eq!(q["TtsParam"], r#"{"addr":"3幢2单元501室"}"#);
        assert_eq!(q["PlayTimes"], "3", "Aliyun plays at most 3 times");
        assert_eq!(q["OutId"], "d-1");
        // The same signer as SendSms: recomputing over the other fields gives the same signature.
        let mut rest = q.clone();
        let sig = rest.remove("Signature").unwrap();
        let again = aliyun_signed_form(&rest, "testsecret");
        assert!(
            again.ends_with(&format!(
                "Signature={}",
                super::super::super::sms::aliyun_encode(&sig)
            )),
            "{again}"
        );
    }

    #[test]
    fn a_placed_call_needs_code_ok_and_a_call_id() {
        let ok = StatusCode::OK;
        assert_eq!(
            placed(
                "v",
                ok,
                r#"{"RequestId":"r","Code":"OK","Message":"OK","CallId":"116012354148^10281378"}"#
            )
            .unwrap(),
            "116012354148^10281378"
        );
        assert!(placed("v", ok, r#"{"Code":"OK"}"#).unwrap_err().retryable);
        let e = placed(
            "v",
            StatusCode::BAD_REQUEST,
            r#"{"Code":"SignatureDoesNotMatch","Message":"x"}"#,
        )
        .unwrap_err();
        assert_eq!(e.code.as_deref(), Some("SignatureDoesNotMatch"));
        assert!(!e.retryable);
        let e = placed("v", ok, r#"{"Code":"isv.BUSINESS_LIMIT_CONTROL"}"#).unwrap_err();
        assert!(e.retryable);
        assert!(
            !placed("v", ok, r#"{"Code":"isv.TTS_TEMPLATE_ILLEGAL"}"#)
                .unwrap_err()
                .retryable
        );
    }

    #[test]
    fn status_codes_map_to_outcomes_and_keys() {
        assert_eq!(
            outcome("200000", "", "1"),
            Some(CallOutcome::Answered { key: Some('1') })
        );
        assert_eq!(
            outcome("200001", "", ""),
            Some(CallOutcome::Answered { key: None })
        );
        assert_eq!(outcome("200002", "", ""), Some(CallOutcome::Busy));
        assert_eq!(outcome("200003", "", ""), Some(CallOutcome::NoAnswer));
        assert_eq!(outcome("200010", "关机", ""), Some(CallOutcome::NoAnswer));
        assert_eq!(
            outcome("200011", "停机", ""),
            Some(CallOutcome::Failed("200011 停机".into()))
        );
        assert_eq!(outcome("200103", "", ""), None);
    }

    #[test]
    fn voice_report_pushes_are_read_and_bad_ones_refused() {
        let r = receipts(
            r#"[{"call_id":"1^2","start_time":"2026-11-29 07:00:00","end_time":"2026-11-29 07:00:20",
                 "duration":"20","status_code":"200000","status_msg":"用户听完语音","out_id":"d-1","dtmf":"2"},
                {"call_id":"3^4","status_code":"200003","out_id":"d-2","duration":0},
                {"call_id":"5^6","status_code":"200000"}]"#,
        )
        .unwrap();
        assert_eq!(
            r,
            vec![
                Receipt {
                    call_id: "1^2".into(),
                    out_id: "d-1".into(),
                    outcome: CallOutcome::Answered { key: Some('2') }
                },
                Receipt {
                    call_id: "3^4".into(),
                    out_id: "d-2".into(),
                    outcome: CallOutcome::NoAnswer
                }
            ]
        );
        assert_eq!(
            receipts(r#"{"call_id":"1","status_code":"200002","out_id":"d"}"#)
                .unwrap()
                .len(),
            1
        );
        assert!(receipts("call ok").is_err());
        assert!(receipts("42").is_err());
    }

    #[test]
    fn query_answers_are_final_or_not_yet() {
        let ok = StatusCode::OK;
        let data = r#"{"Code":"OK","Data":"{\"state\":\"200002\",\"stateDesc\":\"用户占线\",\"duration\":0}"}"#;
        assert_eq!(queried("q", ok, data).unwrap(), Some(CallOutcome::Busy));
        assert_eq!(queried("q", ok, r#"{"Code":"OK"}"#).unwrap(), None);
        assert_eq!(
            queried("q", ok, r#"{"Code":"OK","Data":""}"#).unwrap(),
            None
        );
        assert!(queried("q", ok, r#"{"Code":"InvalidCallId"}"#).is_err());
    }
}
