//! The email channel: one SMTP message per recipient per event (lettre 0.11,
//! rustls). The `Message-ID` is derived from the delivery id, so a retried
//! send is the same message to the receiving side and its threading.

use super::http::error_chain;
use super::{render, ChannelError, SendError};
use crate::config::EmailConfig;
use crate::notification::Notification;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::Error as SmtpError;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// The configured SMTP relay.
pub(super) struct EmailChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    site: String,
    timeout: Duration,
}

impl EmailChannel {
    /// Builds the transport from `[channels.email] smtp` and checks `from`.
    pub(super) fn new(cfg: &EmailConfig, site: &str) -> Result<EmailChannel, ChannelError> {
        let timeout = cfg.timeout.std();
        let transport = transport(&cfg.smtp, timeout)?;
        let from = cfg
            .from
            .parse::<Mailbox>()
            .map_err(|e| ChannelError::EmailFrom {
                from: cfg.from.clone(),
                reason: e.to_string(),
            })?;
        Ok(EmailChannel {
            transport,
            from,
            site: site.to_string(),
            timeout,
        })
    }

    /// Sends `n` to `n.address`, the whole SMTP exchange under the configured timeout.
    pub(super) async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let msg = self.message(n)?;
        match tokio::time::timeout(self.timeout, self.transport.send(msg)).await {
            Ok(Ok(_response)) => Ok(()),
            Ok(Err(e)) => Err(smtp_error(&e)),
            Err(_) => Err(SendError::retryable(format!(
                "smtp: timed out after {:?}",
                self.timeout
            ))),
        }
    }

    /// The message for one recipient: subject and text from [`render`], ids from the delivery id.
    pub(super) fn message(&self, n: &Notification) -> Result<Message, SendError> {
        let to = n.address.parse::<Mailbox>().map_err(|e| {
            SendError::permanent(format!("smtp: invalid email address {:?}: {e}", n.address))
        })?;
        let id = header_safe(&n.delivery_id);
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(render::subject(n))
            .message_id(Some(format!("<{id}@gridwatch>")))
            .header(DeliveryIdHeader(id))
            .header(SiteHeader(header_safe(&self.site)))
            .header(ContentType::TEXT_PLAIN)
            .body(render::text(n))
            .map_err(|e| SendError::permanent(format!("smtp: building the message: {e}")))
    }
}

/// Builds the transport from `smtp://host:port` (plain), `smtps://host:port`
/// (implicit TLS) or `smtp://host:port?tls=starttls`, with optional `user:pass@`.
///
/// lettre's own URL parser is used (it percent-decodes credentials and knows
/// the default ports); it spells STARTTLS `tls=required`, so our documented
/// `tls=starttls` is translated first. Plain `smtp://` gives the same
/// transport as `builder_dangerous(host).port(port)`, `smtps://` as `relay`,
/// and STARTTLS as `starttls_relay`.
fn transport(
    url: &str,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, ChannelError> {
    let err = |reason: String| ChannelError::SmtpUrl {
        url: redact_password(url),
        reason,
    };
    let lettre_url = to_lettre_url(url).map_err(err)?;
    let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&lettre_url)
        .map_err(|e| err(e.to_string()))?;
    Ok(builder.timeout(Some(timeout)).build())
}

/// Checks scheme and `tls=` and rewrites `tls=starttls` to lettre's `tls=required`.
fn to_lettre_url(url: &str) -> Result<String, String> {
    let (scheme, _) = url
        .split_once("://")
        .ok_or_else(|| "expected smtp://host:port or smtps://host:port".to_string())?;
    if scheme != "smtp" && scheme != "smtps" {
        return Err(format!("scheme {scheme:?} is not smtp or smtps"));
    }
    let Some((base, query)) = url.split_once('?') else {
        return Ok(url.to_string());
    };
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("tls", "starttls" | "required")) if scheme == "smtp" => {
                pairs.push("tls=required")
            }
            Some(("tls", "opportunistic")) if scheme == "smtp" => pairs.push("tls=opportunistic"),
            Some(("tls", v)) => {
                return Err(format!(
                "tls={v} is not supported with {scheme}:// (use smtp://…?tls=starttls or smtps://)"
            ))
            }
            _ => return Err(format!("unknown parameter {pair:?} (only tls=starttls)")),
        }
    }
    if pairs.is_empty() {
        Ok(base.to_string())
    } else {
        Ok(format!("{base}?{}", pairs.join("&")))
    }
}

/// The URL with its password replaced by `***`, for error messages.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// SMTP 5xx (permanent) and client-side errors will repeat; 4xx, timeouts,
/// refused connections and TLS hiccups may pass later.
fn smtp_error(e: &SmtpError) -> SendError {
    let reason = format!("smtp: {}", error_chain(e));
    if e.is_permanent() || e.is_client() {
        SendError::permanent(reason)
    } else {
        SendError::retryable(reason)
    }
}

/// Keeps a header value to characters every mail system passes unchanged.
fn header_safe(s: &str) -> String {
    let kept: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    if kept.is_empty() {
        "unknown".to_string()
    } else {
        kept
    }
}

/// `X-Gridwatch-Delivery-Id`: the same id the webhooks carry, for receivers and support.
#[derive(Debug, Clone)]
struct DeliveryIdHeader(String);

impl Header for DeliveryIdHeader {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Gridwatch-Delivery-Id")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(DeliveryIdHeader(s.to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// `X-Gridwatch-Site`: which compound's gateway sent it, for mail filters.
#[derive(Debug, Clone)]
struct SiteHeader(String);

impl Header for SiteHeader {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Gridwatch-Site")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(SiteHeader(s.to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        assert_eq!(
            to_lettre_url("smtp://127.0.0.1:2525").unwrap(),
            "smtp://127.0.0.1:2525"
        );
        assert_eq!(
            to_lettre_url("smtp://u:p@mail.example.org:587?tls=starttls").unwrap(),
            "smtp://u:p@mail.example.org:587?tls=required"
        );
        assert_eq!(
            to_lettre_url("smtps://mail.example.org").unwrap(),
            "smtps://mail.example.org"
        );
        assert!(to_lettre_url("smtps://mail.example.org?tls=starttls").is_err());
        assert!(to_lettre_url("smtp://h?foo=bar").is_err());
        assert!(to_lettre_url("http://h").is_err());
        assert!(to_lettre_url("h:25").is_err());
    }

    #[test]
    fn transports_build_for_every_form() {
        let t = Duration::from_secs(1);
        for url in [
            "smtp://127.0.0.1:2525",
            "smtps://mail.example.org:465",
            "smtp://user:p%40ss@mail.example.org:587?tls=starttls",
        ] {
            assert!(transport(url, t).is_ok(), "{url}");
        }
        assert!(transport("smtp://", t).is_err());
    }

    #[test]
    fn password_redacted() {
        assert_eq!(
            redact_password("smtp://alarm:s3cr%40t@mail.example.org:587?tls=starttls"),
            "smtp://alarm:***@mail.example.org:587?tls=starttls"
        );
        assert_eq!(redact_password("smtp://h:25"), "smtp://h:25");
    }

    #[test]
    fn header_safe_keeps_ids() {
        assert_eq!(header_safe("01JD8X3Q"), "01JD8X3Q");
        assert_eq!(header_safe("a b>\r\nc"), "abc");
        assert_eq!(header_safe("\n"), "unknown");
    }
}
