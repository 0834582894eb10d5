//! The one HTTP POST that webhooks and the SMS gateway share, and the retry
//! classification of its outcome: 2xx is sent; 5xx, 408, 429, timeouts and
//! connection errors may pass later; other 4xx and redirects will not.

use super::{ChannelError, SendError};
use reqwest::{StatusCode, Url};
use std::time::Duration;

/// Header carrying the stable delivery id, so receivers drop duplicates of a retried send.
pub(super) const DELIVERY_ID_HEADER: &str = "X-Gridwatch-Delivery-Id";

/// How much of an error response body goes into the failure reason.
const ERROR_BODY_CHARS: usize = 200;

/// Parses a configured http(s) URL; anything else is refused at load.
pub(super) fn parse_url(url: &str) -> Result<Url, String> {
    let u = Url::parse(url).map_err(|e| e.to_string())?;
    match u.scheme() {
        "http" | "https" if u.host_str().is_some() => Ok(u),
        "http" | "https" => Err("URL has no host".into()),
        other => Err(format!("scheme {other:?} is not http or https")),
    }
}

/// POSTs `body` with `headers` within `timeout`; returns the answer's body
/// on 2xx. `what` names the target in failure reasons (never the URL, which
/// may carry a robot's secret key); the caller still reads the receiver's verdict.
pub(super) async fn post(
    client: &reqwest::Client,
    what: &str,
    url: &Url,
    headers: &[(String, String)],
    body: String,
    delivery_id: &str,
    timeout: Duration,
) -> Result<String, SendError> {
    let (status, text) = exchange(client, what, url, headers, body, delivery_id, timeout).await?;
    if status.is_success() {
        return Ok(text);
    }
    Err(status_error(what, status, &snippet(&text)))
}

/// POSTs `body` and returns any HTTP answer (status and body): cloud APIs
/// put their refusal code in the body of a 4xx too. Only "no answer" is an error.
pub(super) async fn exchange(
    client: &reqwest::Client,
    what: &str,
    url: &Url,
    headers: &[(String, String)],
    body: String,
    delivery_id: &str,
    timeout: Duration,
) -> Result<(StatusCode, String), SendError> {
    let mut req = client
        .post(url.clone())
        .timeout(timeout)
        .header(DELIVERY_ID_HEADER, delivery_id);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req
        .body(body)
        .send()
        .await
        .map_err(|e| transport_error(what, e))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| transport_error(what, e))?;
    Ok((status, text))
}

/// At most [`ERROR_BODY_CHARS`] of a receiver's answer, on one line, for a failure reason.
pub(super) fn snippet(body: &str) -> String {
    body.chars()
        .take(ERROR_BODY_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// The failure for a non-2xx answer, classified by status code; its code is `http_<status>`.
pub(super) fn status_error(what: &str, status: StatusCode, body: &str) -> SendError {
    let reason = if body.is_empty() {
        format!("{what}: HTTP {status}")
    } else {
        format!("{what}: HTTP {status}: {}", body.replace(['\r', '\n'], " "))
    };
    SendError::refused(
        format!("http_{}", status.as_u16()),
        is_retryable_status(status),
        reason,
    )
}

/// 5xx, 408 Request Timeout and 429 Too Many Requests may pass later; the rest will not.
pub(super) fn is_retryable_status(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// A request that got no HTTP answer: a bad request is permanent, anything on the wire may pass later.
fn transport_error(what: &str, e: reqwest::Error) -> SendError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let builder = e.is_builder();
    let reason = format!("{what}: {kind}: {}", error_chain(&e.without_url()));
    if builder {
        SendError::permanent(reason)
    } else {
        SendError::retryable(reason)
    }
}

/// An error and its sources on one line (reqwest hides the cause behind "error sending request").
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Turns a URL parse failure into the config error of a named webhook.
pub(super) fn webhook_url_error(name: &str, reason: String) -> ChannelError {
    ChannelError::WebhookUrl {
        name: name.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classification() {
        for code in [500, 502, 503, 504, 408, 429] {
            assert!(
                is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 410, 413, 422, 301, 302] {
            assert!(
                !is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
    }

    #[test]
    fn status_error_masks_body() {
        let e = status_error(
            "sms",
            StatusCode::BAD_REQUEST,
            "bad number +8613800000001\n",
        );
        assert!(!e.retryable);
        assert!(e.reason.contains("+86138****0001"), "{}", e.reason);
        assert!(!e.reason.contains('\n'));
    }

    #[test]
    fn only_http_urls() {
        assert!(parse_url("http://127.0.0.1:9000/alarm").is_ok());
        assert!(parse_url("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=x").is_ok());
        assert!(parse_url("ftp://example.org").is_err());
        assert!(parse_url("127.0.0.1:9000").is_err());
    }
}
