//! Named webhooks (`[channels.webhook.NAME]`): one POST of
//! [`render::webhook_body`] per recipient per event.

use super::http::{parse_url, post_json, webhook_url_error};
use super::{render, ChannelError, SendError};
use crate::config::{WebhookConfig, WebhookFormat};
use crate::notification::Notification;
use reqwest::Url;
use std::time::Duration;

/// One configured webhook, its URL checked at load.
pub(super) struct WebhookChannel {
    name: String,
    url: Url,
    format: WebhookFormat,
    timeout: Duration,
}

impl WebhookChannel {
    /// Checks the URL of `[channels.webhook.NAME]`.
    pub(super) fn new(name: &str, cfg: &WebhookConfig) -> Result<WebhookChannel, ChannelError> {
        let url = parse_url(&cfg.url).map_err(|r| webhook_url_error(name, r))?;
        Ok(WebhookChannel {
            name: name.to_string(),
            url,
            format: cfg.format,
            timeout: cfg.timeout.std(),
        })
    }

    /// POSTs the notification in this webhook's format.
    pub(super) async fn send(
        &self,
        client: &reqwest::Client,
        n: &Notification,
    ) -> Result<(), SendError> {
        let body = render::webhook_body(n, self.format).to_string();
        let what = format!("webhook {}", self.name);
        post_json(client, &what, &self.url, body, &n.delivery_id, self.timeout).await
    }
}
