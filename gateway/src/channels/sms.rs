//! The SMS channel, one provider per box (`[channels.sms] provider`):
//!
//! - `template`: any HTTP gateway; the body is a minijinja template over the
//!   named fields of [`render::sms_fields`], so JSON, form or XML bodies work.
//!   Success is HTTP 2xx (such gateways have no common verdict field).
//! - `aliyun`: 阿里云短信 SendSms (RPC API 2017-05-25), signed with
//!   HMAC-SHA1 as Aliyun's "V2 RPC signature" documents; success is `Code == "OK"`.
//! - `tencent`: 腾讯云短信 SendSms (API 2021-01-11), signed with
//!   TC3-HMAC-SHA256; success is every `SendStatusSet[].Code == "Ok"`.
//!
//! Chinese providers only send approved templates: the message is the
//! template's text with variables filled from `params`, and a variable is
//! never a URL (the ack link's base lives in the approved text, `ack_token` varies).
//! A landline never gets an SMS: [`SmsChannel::send`] refuses it at once,
//! so the recipient moves to its next channel.

use super::http::{exchange, parse_url, post, snippet};
use super::number::{self, NumberKind};
use super::{render, ChannelError, SendError};
use crate::config::{SmsConfig, SmsParams, SmsProvider};
use crate::notification::Notification;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;

const ALIYUN_ENDPOINT: &str = "https://dysmsapi.aliyuncs.com/";
const TENCENT_ENDPOINT: &str = "https://sms.tencentcloudapi.com/";
const TENCENT_REGION: &str = "ap-guangzhou";

/// The configured provider, every key checked at load.
pub(super) struct SmsChannel {
    provider: Provider,
    timeout: Duration,
}

enum Provider {
    Template {
        url: Url,
        headers: Vec<(String, String)>,
        env: minijinja::Environment<'static>,
        json_body: bool,
    },
    Aliyun {
        endpoint: Url,
        key_id: String,
        key_secret: String,
        sign_name: String,
        template_code: String,
        /// Template variable → field name.
        params: BTreeMap<String, String>,
    },
    Tencent {
        endpoint: Url,
        secret_id: String,
        secret_key: String,
        app_id: String,
        region: String,
        sign_name: String,
        template_id: String,
        /// Field names, in the template's {1}, {2}… order.
        params: Vec<String>,
    },
}

impl SmsChannel {
    /// Builds the provider from `[channels.sms]`; a missing or misplaced key is named.
    pub(super) fn new(cfg: &SmsConfig) -> Result<SmsChannel, ChannelError> {
        let bad = |key: &'static str, reason: &str| ChannelError::Sms {
            key,
            reason: reason.to_string(),
        };
        let need = |key: &'static str, v: &Option<String>| -> Result<String, ChannelError> {
            match v.as_deref().map(str::trim) {
                Some(s) if !s.is_empty() => Ok(s.to_string()),
                _ => Err(bad(key, "is required by this provider")),
            }
        };
        let provider_name = provider_name(cfg.provider);
        let unused = |key: &'static str, set: bool| -> Result<(), ChannelError> {
            if set {
                return Err(ChannelError::Sms {
                    key,
                    reason: format!("is not used by provider {provider_name}"),
                });
            }
            Ok(())
        };
        let endpoint = |default: &str| -> Result<Url, ChannelError> {
            parse_url(cfg.endpoint.as_deref().unwrap_or(default)).map_err(|reason| {
                ChannelError::Sms {
                    key: "endpoint",
                    reason,
                }
            })
        };
        let check_field = |key: &'static str, field: &str| -> Result<(), ChannelError> {
            if !render::SMS_FIELDS.contains(&field) {
                return Err(ChannelError::Sms {
                    key,
                    reason: format!(
                        "{field:?} is not a field; use one of {}",
                        render::SMS_FIELDS.join(", ")
                    ),
                });
            }
            if field == "ack_url" {
                return Err(ChannelError::Sms {
                    key,
                    reason: "providers refuse URLs in variables: put the link's base in the \
                             approved template and use ack_token"
                        .into(),
                });
            }
            Ok(())
        };
        let provider = match cfg.provider {
            // The modem is built by `Channels::new` (it shares the port with voice).
            SmsProvider::Modem => {
                return Err(ChannelError::Sms {
                    key: "provider",
                    reason: "the modem provider is not an HTTP provider".into(),
                })
            }
            SmsProvider::Template => {
                for (k, set) in [
                    ("endpoint", cfg.endpoint.is_some()),
                    ("access_key_id", cfg.access_key_id.is_some()),
                    ("access_key_secret", cfg.access_key_secret.is_some()),
                    ("secret_id", cfg.secret_id.is_some()),
                    ("secret_key", cfg.secret_key.is_some()),
                    ("sdk_app_id", cfg.sdk_app_id.is_some()),
                    ("sign_name", cfg.sign_name.is_some()),
                    ("template_code", cfg.template_code.is_some()),
                    ("template_id", cfg.template_id.is_some()),
                    ("params", cfg.params.is_some()),
                    ("region", cfg.region.is_some()),
                ] {
                    unused(k, set)?;
                }
                let url = parse_url(&need("url", &cfg.url)?)
                    .map_err(|reason| ChannelError::Sms { key: "url", reason })?;
                let body = need("body", &cfg.body)?;
                let json_body = body.trim_start().starts_with(['{', '[']);
                let env = template_env(&body, json_body).map_err(|reason| ChannelError::Sms {
                    key: "body",
                    reason,
                })?;
                let mut headers: Vec<(String, String)> = cfg
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                for (k, v) in &headers {
                    if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                        || reqwest::header::HeaderValue::from_str(v).is_err()
                    {
                        return Err(bad("headers", &format!("{k:?} is not a valid header")));
                    }
                }
                if json_body
                    && !headers
                        .iter()
                        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                {
                    headers.push(("Content-Type".into(), "application/json".into()));
                }
                let ch = Provider::Template {
                    url,
                    headers,
                    env,
                    json_body,
                };
                if let Provider::Template { env, json_body, .. } = &ch {
                    probe_body(env, *json_body, &[]).map_err(|reason| ChannelError::Sms {
                        key: "body",
                        reason,
                    })?;
                }
                ch
            }
            SmsProvider::Aliyun => {
                unused("url", cfg.url.is_some())?;
                unused("body", cfg.body.is_some())?;
                unused("headers", !cfg.headers.is_empty())?;
                unused("secret_id", cfg.secret_id.is_some())?;
                unused("template_id", cfg.template_id.is_some())?;
                let params = match &cfg.params {
                    Some(SmsParams::Named(m)) => m.clone(),
                    Some(SmsParams::Positional(_)) => return Err(bad(
                        "params",
                        "Aliyun templates name their variables: params = { name = \"field\", … }",
                    )),
                    None => BTreeMap::new(),
                };
                for f in params.values() {
                    check_field("params", f)?;
                }
                Provider::Aliyun {
                    endpoint: endpoint(ALIYUN_ENDPOINT)?,
                    key_id: need("access_key_id", &cfg.access_key_id)?,
                    key_secret: need("access_key_secret", &cfg.access_key_secret)?,
                    sign_name: need("sign_name", &cfg.sign_name)?,
                    template_code: need("template_code", &cfg.template_code)?,
                    params,
                }
            }
            SmsProvider::Tencent => {
                unused("url", cfg.url.is_some())?;
                unused("body", cfg.body.is_some())?;
                unused("headers", !cfg.headers.is_empty())?;
                unused("access_key_id", cfg.access_key_id.is_some())?;
                unused("template_code", cfg.template_code.is_some())?;
                let params = match &cfg.params {
                    Some(SmsParams::Positional(v)) => v.clone(),
                    Some(SmsParams::Named(_)) => {
                        return Err(bad(
                            "params",
                            "Tencent templates number their variables {1}, {2}…: params = [\"field\", …]",
                        ))
                    }
                    None => Vec::new(),
                };
                for f in &params {
                    check_field("params", f)?;
                }
                Provider::Tencent {
                    endpoint: endpoint(TENCENT_ENDPOINT)?,
                    secret_id: need("secret_id", &cfg.secret_id)?,
                    secret_key: need("secret_key", &cfg.secret_key)?,
                    app_id: need("sdk_app_id", &cfg.sdk_app_id)?,
                    region: cfg.region.clone().unwrap_or_else(|| TENCENT_REGION.into()),
                    sign_name: need("sign_name", &cfg.sign_name)?,
                    template_id: need("template_id", &cfg.template_id)?,
                    params,
                }
            }
        };
        Ok(SmsChannel {
            provider,
            timeout: cfg.timeout.std(),
        })
    }

    /// The provider's name: the `target` label of refusal metrics.
    pub(super) fn target(&self) -> &'static str {
        match self.provider {
            Provider::Template { .. } => "template",
            Provider::Aliyun { .. } => "aliyun",
            Provider::Tencent { .. } => "tencent",
        }
    }

    /// Sends one SMS to `n.address`; a landline or a non-number is refused
    /// before anything goes out (final: the recipient moves on).
    pub(super) async fn send(
        &self,
        client: &reqwest::Client,
        n: &Notification,
    ) -> Result<(), SendError> {
        let phone = match number::classify(&n.address) {
            NumberKind::Mobile(m) => m,
            NumberKind::Foreign => n.address.trim().to_string(),
            NumberKind::Landline => {
                return Err(SendError::refused(
                    "landline",
                    false,
                    format!("sms: {} is a landline; SMS cannot reach it", n.address),
                ))
            }
            NumberKind::Invalid => {
                return Err(SendError::refused(
                    "bad_number",
                    false,
                    format!("sms: {:?} is not a phone number", n.address),
                ))
            }
        };
        // A generic gateway gets the number as the ledger writes it (as it
        // always did); the cloud providers get the form they document.
        let fields = match self.provider {
            Provider::Template { .. } => render::sms_fields(n, n.address.trim()),
            _ => render::sms_fields(n, &phone),
        };
        let what = format!("sms {}", self.target());
        match &self.provider {
            Provider::Template { url, headers, .. } => {
                let body = self.render_template(&fields).map_err(|e| {
                    SendError::permanent(format!("{what}: the body template failed: {e}"))
                })?;
                post(
                    client,
                    &what,
                    url,
                    headers,
                    body,
                    &n.delivery_id,
                    self.timeout,
                )
                .await
                .map(|_| ())
            }
            Provider::Aliyun {
                endpoint,
                key_id,
                key_secret,
                sign_name,
                template_code,
                params,
            } => {
                let vars: serde_json::Map<String, Value> = params
                    .iter()
                    .map(|(var, field)| (var.clone(), Value::String(field_value(&fields, field))))
                    .collect();
                let mut q: BTreeMap<String, String> = BTreeMap::new();
                for (k, v) in [
                    ("AccessKeyId", key_id.as_str()),
                    ("Action", "SendSms"),
                    ("Format", "JSON"),
                    ("RegionId", "cn-hangzhou"),
                    ("SignatureMethod", "HMAC-SHA1"),
                    ("SignatureVersion", "1.0"),
                    ("Version", "2017-05-25"),
                    ("PhoneNumbers", phone.as_str()),
                    ("SignName", sign_name.as_str()),
                    ("TemplateCode", template_code.as_str()),
                    ("OutId", n.delivery_id.as_str()),
                ] {
                    q.insert(k.into(), v.into());
                }
                q.insert("SignatureNonce".into(), ulid::Ulid::new().to_string());
                q.insert(
                    "Timestamp".into(),
                    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                );
                q.insert("TemplateParam".into(), Value::Object(vars).to_string());
                let body = aliyun_signed_form(&q, key_secret);
                let headers = [(
                    "Content-Type".to_string(),
                    "application/x-www-form-urlencoded".to_string(),
                )];
                let (status, answer) = exchange(
                    client,
                    &what,
                    endpoint,
                    &headers,
                    body,
                    &n.delivery_id,
                    self.timeout,
                )
                .await?;
                aliyun_verdict(&what, status, &answer)
            }
            Provider::Tencent {
                endpoint,
                secret_id,
                secret_key,
                app_id,
                region,
                sign_name,
                template_id,
                params,
            } => {
                let body = serde_json::json!({
                    "PhoneNumberSet": [tencent_number(&phone)],
                    "SmsSdkAppId": app_id,
                    "SignName": sign_name,
                    "TemplateId": template_id,
                    "TemplateParamSet": params.iter().map(|f| field_value(&fields, f)).collect::<Vec<_>>(),
                    "SessionContext": n.delivery_id,
                })
                .to_string();
                let ts = chrono::Utc::now().timestamp();
                let host = host_header(endpoint);
                let auth = tc3_authorization(secret_id, secret_key, &host, ts, &body);
                let headers = vec![
                    ("Authorization".to_string(), auth),
                    (
                        "Content-Type".to_string(),
                        "application/json; charset=utf-8".to_string(),
                    ),
                    ("X-TC-Action".to_string(), "SendSms".to_string()),
                    ("X-TC-Timestamp".to_string(), ts.to_string()),
                    ("X-TC-Version".to_string(), "2021-01-11".to_string()),
                    ("X-TC-Region".to_string(), region.clone()),
                ];
                let (status, answer) = exchange(
                    client,
                    &what,
                    endpoint,
                    &headers,
                    body,
                    &n.delivery_id,
                    self.timeout,
                )
                .await?;
                tencent_verdict(&what, status, &answer)
            }
        }
    }

    fn render_template(&self, fields: &[(&'static str, String)]) -> Result<String, String> {
        let Provider::Template { env, .. } = &self.provider else {
            return Err("not a template provider".into());
        };
        render_body(env, fields)
    }
}

fn provider_name(p: SmsProvider) -> &'static str {
    match p {
        SmsProvider::Template => "template",
        SmsProvider::Aliyun => "aliyun",
        SmsProvider::Tencent => "tencent",
        SmsProvider::Modem => "modem",
    }
}

pub(super) fn field_value(fields: &[(&'static str, String)], name: &str) -> String {
    fields
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// The body template: `{{ text }}` in a JSON body is escaped for the inside
/// of a JSON string (the form gridwatch's first SMS templates used), and the
/// `json` filter gives a whole JSON literal (`"to": {{ phone|json }}`).
/// Undefined names are errors at load, not empty strings in a fire.
/// Shared with the voice template backend.
pub(super) fn template_env(
    body: &str,
    json_body: bool,
) -> Result<minijinja::Environment<'static>, String> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_filter(
        "json",
        |v: minijinja::Value| -> Result<minijinja::Value, minijinja::Error> {
            let s = match v.as_str() {
                Some(s) => serde_json::to_string(s),
                None => serde_json::to_string(&v),
            }
            .map_err(|e| {
                minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
            })?;
            Ok(minijinja::Value::from_safe_string(s))
        },
    );
    if json_body {
        env.set_formatter(|out, state, value| {
            if value.is_safe() {
                return minijinja::escape_formatter(out, state, value);
            }
            let s = value.to_string();
            let quoted = serde_json::to_string(&s).unwrap_or_default();
            let inner = quoted
                .strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .unwrap_or("");
            out.write_str(inner).map_err(minijinja::Error::from)
        });
    }
    env.add_template_owned("body", body.to_string())
        .map_err(|e| format!("template does not parse: {e}"))?;
    Ok(env)
}

/// Renders the `body` template of [`template_env`] over the named fields.
pub(super) fn render_body(
    env: &minijinja::Environment<'static>,
    fields: &[(&'static str, String)],
) -> Result<String, String> {
    let ctx: BTreeMap<&str, &str> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.get_template("body")
        .and_then(|t| t.render(ctx))
        .map_err(|e| e.to_string())
}

/// Renders the template once with hostile values: it must use `phone`, and a
/// JSON body must stay JSON whatever the text holds. `extra` names fields
/// a caller adds to [`render::SMS_FIELDS`] (voice: `delivery_id`).
pub(super) fn probe_body(
    env: &minijinja::Environment<'static>,
    json_body: bool,
    extra: &[&'static str],
) -> Result<(), String> {
    // A "+" keeps `"to": {{ phone }}` (no quotes) from passing as a JSON number.
    let probe_phone = "+8613800000000";
    let ctx: BTreeMap<&str, &str> = render::SMS_FIELDS
        .iter()
        .chain(extra)
        .map(|f| match *f {
            "phone" => (*f, probe_phone),
            _ => (*f, "a \"quoted\"\\ line\nnext\t{{phone}} & x=y"),
        })
        .collect();
    let body = env
        .get_template("body")
        .and_then(|t| t.render(ctx))
        .map_err(|e| {
            format!(
                "template fails: {e} (fields: {})",
                render::SMS_FIELDS.join(", ")
            )
        })?;
    // Digits only: a form body percent-encodes the "+".
    if !body.contains(&probe_phone[1..]) {
        return Err("the template never uses {{ phone }}".into());
    }
    if json_body {
        serde_json::from_str::<Value>(&body).map_err(|e| {
            format!(
                "a body starting with {{ or [ must render to JSON (put fields inside strings, \
                 e.g. {{\"to\":\"{{{{phone}}}}\",\"text\":\"{{{{text}}}}\"}}): {e}"
            )
        })?;
    }
    Ok(())
}

/// Aliyun's percent-encoding: RFC 3986 unreserved characters stay, every
/// other byte is `%XY` (space is `%20`, `*` is `%2A`, `~` stays).
pub(super) fn aliyun_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// The signed form body: StringToSign = "POST&%2F&" + encode(canonical
/// query), Signature = base64(HMAC-SHA1(key = secret + "&", StringToSign)).
pub(super) fn aliyun_signed_form(q: &BTreeMap<String, String>, secret: &str) -> String {
    let canonical: String = q
        .iter()
        .map(|(k, v)| format!("{}={}", aliyun_encode(k), aliyun_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let to_sign = format!("POST&{}&{}", aliyun_encode("/"), aliyun_encode(&canonical));
    let mut mac = match Hmac::<sha1::Sha1>::new_from_slice(format!("{secret}&").as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(to_sign.as_bytes());
    let sig = B64.encode(mac.finalize().into_bytes());
    format!("{canonical}&Signature={}", aliyun_encode(&sig))
}

/// Aliyun answers `{"Code":"OK",…}`, or a code such as
/// `isv.BUSINESS_LIMIT_CONTROL` (rate limit: retry) or
/// `isv.MOBILE_NUMBER_ILLEGAL` (final), also in the body of a 4xx.
pub(super) fn aliyun_verdict(what: &str, status: StatusCode, body: &str) -> Result<(), SendError> {
    let v: Value = serde_json::from_str(body).map_err(|_| http_or_bad(what, status, body))?;
    let code = v.get("Code").and_then(Value::as_str).unwrap_or("");
    if code == "OK" && status.is_success() {
        return Ok(());
    }
    if code.is_empty() {
        return Err(http_or_bad(what, status, body));
    }
    let msg = v.get("Message").and_then(Value::as_str).unwrap_or("");
    let retryable = code == "isv.BUSINESS_LIMIT_CONTROL"
        || code.starts_with("Throttling")
        || code.starts_with("isp.")
        || code == "ServiceUnavailable"
        || status.is_server_error();
    Err(SendError::refused(
        code,
        retryable,
        format!("{what}: refused {code}: {}", snippet(msg)),
    ))
}

/// Tencent answers `{"Response":{"SendStatusSet":[{"Code":"Ok",…}]}}`, or
/// `{"Response":{"Error":{"Code":…,"Message":…}}}` for the whole request.
fn tencent_verdict(what: &str, status: StatusCode, body: &str) -> Result<(), SendError> {
    let v: Value = serde_json::from_str(body).map_err(|_| http_or_bad(what, status, body))?;
    let resp = v.get("Response").unwrap_or(&Value::Null);
    let refused = |code: &str, msg: &str| {
        let retryable = code.starts_with("RequestLimitExceeded")
            || code.starts_with("InternalError")
            || code.contains("ThirtySecondLimit")
            || status.is_server_error();
        SendError::refused(
            code,
            retryable,
            format!("{what}: refused {code}: {}", snippet(msg)),
        )
    };
    if let Some(err) = resp.get("Error") {
        let code = err.get("Code").and_then(Value::as_str).unwrap_or("unknown");
        let msg = err.get("Message").and_then(Value::as_str).unwrap_or("");
        return Err(refused(code, msg));
    }
    let set = resp
        .get("SendStatusSet")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| http_or_bad(what, status, body))?;
    for s in set {
        let code = s.get("Code").and_then(Value::as_str).unwrap_or("unknown");
        if code != "Ok" {
            let msg = s.get("Message").and_then(Value::as_str).unwrap_or("");
            return Err(refused(code, msg));
        }
    }
    if !status.is_success() {
        return Err(http_or_bad(what, status, body));
    }
    Ok(())
}

/// An answer without the provider's verdict: classified by HTTP status.
pub(super) fn http_or_bad(what: &str, status: StatusCode, body: &str) -> SendError {
    if status.is_success() {
        SendError::refused(
            "bad_answer",
            true,
            format!("{what}: answer without a result code: {}", snippet(body)),
        )
    } else {
        super::http::status_error(what, status, &snippet(body))
    }
}

/// E.164 for Tencent: mainland mobiles get +86.
fn tencent_number(phone: &str) -> String {
    if phone.starts_with('+') {
        phone
            .chars()
            .filter(|c| *c == '+' || c.is_ascii_digit())
            .collect()
    } else {
        format!("+86{phone}")
    }
}

/// The Host header reqwest sends for `url` (port only when not the scheme's default).
fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// TC3-HMAC-SHA256 `Authorization` for a SendSms POST at `ts` (seconds):
/// CanonicalRequest over content-type, host and x-tc-action, credential
/// scope `{date}/sms/tc3_request`, keys derived TC3+key → date → service → tc3_request.
pub(super) fn tc3_authorization(id: &str, key: &str, host: &str, ts: i64, body: &str) -> String {
    let date = chrono::DateTime::from_timestamp(ts, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string();
    let signed_headers = "content-type;host;x-tc-action";
    let canonical = format!(
        "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:{host}\nx-tc-action:sendsms\n\n{signed_headers}\n{}",
        hex(&Sha256::digest(body.as_bytes()))
    );
    let scope = format!("{date}/sms/tc3_request");
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{ts}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac256(format!("TC3{key}").as_bytes(), date.as_bytes());
    let k_service = hmac256(&k_date, b"sms");
    let k_signing = hmac256(&k_service, b"tc3_request");
    let sig = hex(&hmac256(&k_signing, to_sign.as_bytes()));
    format!(
        "TC3-HMAC-SHA256 Credential={id}/{scope}, SignedHeaders={signed_headers}, Signature={sig}"
    )
}

fn hmac256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Dur, Locale};

    fn template(body: &str) -> SmsConfig {
        SmsConfig {
            url: Some("http://127.0.0.1:9001/sms".into()),
            body: Some(body.into()),
            timeout: Dur::from_secs(1),
            ..Default::default()
        }
    }

    fn render(ch: &SmsChannel, n: &Notification) -> String {
        ch.render_template(&render::sms_fields(n, "13800000001"))
            .unwrap()
    }

    #[test]
    fn the_first_json_template_still_works_and_escapes() {
        let ch = SmsChannel::new(&template(r#"{"to":"{{phone}}","text":"{{text}}"}"#)).unwrap();
        let mut n = render::tests::smoke(Locale::ZhCn);
        n.context.site_name = "龙井\"苑\"\n小区".into();
        let v: Value = serde_json::from_str(&render(&ch, &n)).unwrap();
        assert_eq!(v["to"], "13800000001");
        assert_eq!(v["text"], render::sms(&n));
    }

    #[test]
    fn json_filter_form_bodies_and_named_fields() {
        let ch = SmsChannel::new(&template(
            r#"{"to": {{ phone|json }}, "tpl": {"kind": {{ kind_zh|json }}, "token": {{ ack_token|json }}}}"#,
        ))
        .unwrap();
        let n = render::tests::smoke(Locale::ZhCn);
        let v: Value = serde_json::from_str(&render(&ch, &n)).unwrap();
        assert_eq!(v["tpl"]["kind"], "烟感报警");
        assert_eq!(v["tpl"]["token"], "tok123");

        let mut cfg = template("mobile={{ phone|urlencode }}&msg={{ text|urlencode }}");
        cfg.headers.insert(
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into(),
        );
        let ch = SmsChannel::new(&cfg).unwrap();
        let body = render(&ch, &n);
        assert!(
            body.starts_with("mobile=13800000001&msg=%E3%80%90"),
            "{body}"
        );
    }

    #[test]
    fn bad_templates_are_refused_at_load() {
        for body in [
            r#"{"to":{{phone}},"text":"{{text}}"}"#, // not JSON once filled
            r#"{"text":"{{text}}"}"#,                // no phone
            r#"{"to":"{{phone}}","x":"{{nosuch}}"}"#, // unknown field
            r#"{"to":"{{phone}"#,                    // does not parse
        ] {
            assert!(
                matches!(
                    SmsChannel::new(&template(body)),
                    Err(ChannelError::Sms { key: "body", .. })
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn provider_keys_are_checked() {
        let aliyun = SmsConfig {
            provider: SmsProvider::Aliyun,
            access_key_id: Some("id".into()),
            access_key_secret: Some("secret".into()),
            sign_name: Some("龙井苑".into()),
            template_code: Some("SMS_1".into()),
            params: Some(SmsParams::Named(
                [("addr".to_string(), "address".to_string())].into(),
            )),
            ..Default::default()
        };
        assert!(SmsChannel::new(&aliyun).is_ok());
        let mut c = aliyun.clone();
        c.template_code = None;
        assert!(matches!(
            SmsChannel::new(&c),
            Err(ChannelError::Sms {
                key: "template_code",
                ..
            })
        ));
        let mut c = aliyun.clone();
        c.params = Some(SmsParams::Named(
            [("l".to_string(), "ack_url".to_string())].into(),
        ));
        assert!(
            matches!(
                SmsChannel::new(&c),
                Err(ChannelError::Sms { key: "params", .. })
            ),
            "no URL variables"
        );
        let mut c = aliyun.clone();
        c.params = Some(SmsParams::Positional(vec!["address".into()]));
        assert!(SmsChannel::new(&c).is_err());
        let mut c = aliyun;
        c.url = Some("http://x/".into());
        assert!(matches!(
            SmsChannel::new(&c),
            Err(ChannelError::Sms { key: "url", .. })
        ));

        let tencent = SmsConfig {
            provider: SmsProvider::Tencent,
            secret_id: Some("AKID".into()),
            secret_key: Some("k".into()),
            sdk_app_id: Some("1400000000".into()),
            sign_name: Some("龙井苑".into()),
            template_id: Some("100".into()),
            params: Some(SmsParams::Positional(vec![
                "kind_zh".into(),
                "ack_token".into(),
            ])),
            ..Default::default()
        };
        assert!(SmsChannel::new(&tencent).is_ok());
        let mut c = tencent;
        c.params = Some(SmsParams::Positional(vec!["nope".into()]));
        assert!(SmsChannel::new(&c).is_err());
    }

    #[test]
    fn aliyun_encoding_and_signature() {
        assert_eq!(aliyun_encode("a b*c~d/é"), "a%20b%2Ac~d%2F%C3%A9");
        // Expected value recomputed with Python's urllib.parse.quote(safe="-_.~")
        // and hmac/sha1 from Aliyun's V2 RPC signature steps.
        let q: BTreeMap<String, String> = [
            ("AccessKeyId", "testid"),
            ("Action", "DescribeDedicatedHosts"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let form = aliyun_signed_form(&q, "testsecret");
        assert!(
            form.ends_with("&Signature=FlLOEDpglMevVZV6hIyPAHME4v0%3D"),
            "{form}"
        );
    }

    #[test]
    fn provider_verdicts() {
        let ok = StatusCode::OK;
        assert!(aliyun_verdict("a", ok, r#"{"Code":"OK","Message":"OK","BizId":"1"}"#).is_ok());
        let e = aliyun_verdict(
            "a",
            ok,
            r#"{"Code":"isv.MOBILE_NUMBER_ILLEGAL","Message":"非法手机号"}"#,
        )
        .unwrap_err();
        assert_eq!(e.code.as_deref(), Some("isv.MOBILE_NUMBER_ILLEGAL"));
        assert!(!e.retryable);
        assert!(
            aliyun_verdict("a", ok, r#"{"Code":"isv.BUSINESS_LIMIT_CONTROL"}"#)
                .unwrap_err()
                .retryable
        );
        let e = aliyun_verdict(
            "a",
            StatusCode::BAD_REQUEST,
            r#"{"Code":"SignatureDoesNotMatch","Message":"x"}"#,
        )
        .unwrap_err();
        assert_eq!(e.code.as_deref(), Some("SignatureDoesNotMatch"));
        assert!(aliyun_verdict("a", ok, "{}").is_err());

        assert!(tencent_verdict(
            "t",
            ok,
            r#"{"Response":{"SendStatusSet":[{"Code":"Ok"}],"RequestId":"r"}}"#
        )
        .is_ok());
        let e = tencent_verdict("t", ok, r#"{"Response":{"SendStatusSet":[{"Code":"Ok"},{"Code":"InvalidParameterValue.IncorrectPhoneNumber","Message":"bad"}]}}"#).unwrap_err();
        assert_eq!(
            e.code.as_deref(),
            Some("InvalidParameterValue.IncorrectPhoneNumber")
        );
        let e = tencent_verdict(
            "t",
            ok,
            r#"{"Response":{"Error":{"Code":"AuthFailure.SignatureFailure","Message":"x"}}}"#,
        )
        .unwrap_err();
        assert!(!e.retryable);
        assert!(
            tencent_verdict(
                "t",
                ok,
                r#"{"Response":{"Error":{"Code":"RequestLimitExceeded"}}}"#
            )
            .unwrap_err()
            .retryable
        );
        assert!(tencent_verdict("t", ok, r#"{"Response":{"SendStatusSet":[]}}"#).is_err());
    }

    #[test]
    fn tc3_matches_an_independent_computation() {
        // Recomputed with Python's hmac/hashlib from Tencent's published steps.
        let auth = tc3_authorization("AKIDEXAMPLE", "SECRET", "127.0.0.1:9", 1_700_000_000, "{}");
        assert!(auth.starts_with("TC3-HMAC-SHA256 Credential=AKIDEXAMPLE/2023-11-14/sms/tc3_request, SignedHeaders=content-type;host;x-tc-action, Signature="), "{auth}");
        assert!(auth.ends_with(TC3_EXPECTED), "{auth}");
    }

    const TC3_EXPECTED: &str = "9769056dd62e85296a895a67296986ffd018b08e8ae678766e4b7aa53731bf8f";

    #[tokio::test]
    async fn a_landline_never_gets_an_sms_request() {
        let ch = SmsChannel::new(&template(r#"{"to":"{{phone}}","text":"{{text}}"}"#)).unwrap();
        let client = reqwest::Client::new();
        let mut n = render::tests::smoke(Locale::ZhCn);
        n.address = "0571-88888888".into();
        // The URL points nowhere reachable: a request would fail as retryable, not as "landline".
        let e = ch.send(&client, &n).await.unwrap_err();
        assert_eq!(e.code.as_deref(), Some("landline"));
        assert!(!e.retryable);
    }
}
