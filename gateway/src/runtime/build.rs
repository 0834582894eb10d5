//! The build step: a loaded [`Config`] becomes the typed parts the daemon
//! runs with (channels with parsed URLs and templates, socket addresses,
//! broker endpoints, topic templates), or every reason it cannot, each at
//! its file:line. It spawns nothing and touches no network or store, so
//! `check-config`, reload (SIGHUP, `POST /api/v1/reload`) and `run` all call
//! it and therefore accept and refuse exactly the same configs.

use crate::channels::{ChannelError, Channels};
use crate::config::{default_event_topic, ChannelsConfig, Config, ConfigError, ConfigErrors};
use crate::dispatch::upstream::UpstreamTarget;
use crate::net::{parse_url, Endpoint, TopicTemplate};
use std::net::SocketAddr;
use std::path::Path;

/// Placeholders of the alarm event topics (local `[channels.mqtt]` and `[upstream]`).
const EVENT_TOPIC_PLACEHOLDERS: [&str; 2] = ["site", "alarm_id"];

/// Everything the daemon needs from the config beyond the `Config` itself,
/// already parsed. Built by [`build`]; consumed by the runtime's spawn.
pub struct Parts {
    /// Every configured channel, built once.
    pub channels: Channels,
    /// `[mqtt] listen`.
    pub mqtt_listen: SocketAddr,
    /// `[mqtt.tls]`: listener address, certificate and key paths.
    pub mqtt_tls: Option<(SocketAddr, String, String)>,
    /// `[mqtt] listen_v5`: the MQTT 5 listener, when configured.
    pub mqtt_v5: Option<SocketAddr>,
    /// `[mqtt] external`, when the embedded broker is off.
    pub external: Option<Endpoint>,
    /// `[upstream]`.
    pub upstream: Option<UpstreamTarget>,
    /// `[http] listen`.
    pub http_listen: SocketAddr,
    /// `[channels.mqtt] topic` (or the default).
    pub events_topic: TopicTemplate,
}

/// Loads the config files and builds the parts: the one entry point of
/// `check-config`, reload and `run`. File-level errors (syntax, references,
/// standards) come first; the build's own errors only once those are fixed.
pub fn load(path: &Path) -> Result<(Config, Parts), ConfigErrors> {
    let config = Config::load(path)?;
    let parts = build(&config)?;
    Ok((config, parts))
}

/// Parses every string of `cfg` that the running parts use into its typed
/// value. Returns all errors found, sorted by position.
pub fn build(cfg: &Config) -> Result<Parts, ConfigErrors> {
    let gw = &cfg.gateway;
    let mut errors = Vec::new();
    let mqtt_listen = socket_addr(cfg, &["mqtt", "listen"], &gw.mqtt.listen, &mut errors);
    let mqtt_tls = gw.mqtt.tls.as_ref().and_then(|t| {
        socket_addr(cfg, &["mqtt", "tls", "listen"], &t.listen, &mut errors)
            .map(|a| (a, t.cert.clone(), t.key.clone()))
    });
    let mqtt_v5 = gw
        .mqtt
        .listen_v5
        .as_ref()
        .and_then(|a| socket_addr(cfg, &["mqtt", "listen_v5"], a, &mut errors));
    let http_listen = socket_addr(cfg, &["http", "listen"], &gw.http.listen, &mut errors);
    if let Err(reason) = http_url(&gw.http.public_url) {
        errors.push(cfg.gateway_error(
            &["http", "public_url"],
            format!("http public_url {:?}: {reason}", gw.http.public_url),
        ));
    }
    let external = match (&gw.mqtt.external, gw.mqtt.embedded) {
        (Some(url), _) => match parse_url(url) {
            Ok(ep) => Some(ep),
            Err(e) => {
                errors.push(cfg.gateway_error(&["mqtt", "external"], format!("mqtt external {e}")));
                None
            }
        },
        (None, false) => {
            errors.push(cfg.gateway_error(
                &["mqtt", "embedded"],
                "mqtt embedded = false needs `external = \"mqtt://host:port\"`",
            ));
            None
        }
        (None, true) => None,
    };
    let events_topic = gw
        .channels
        .mqtt
        .as_ref()
        .map(|m| m.topic.clone())
        .unwrap_or_else(default_event_topic);
    let events_topic = topic(
        cfg,
        &["channels", "mqtt", "topic"],
        &events_topic,
        &mut errors,
    );
    let upstream = gw.upstream.as_ref().and_then(|up| {
        if let Some(t) = &up.topic {
            topic(cfg, &["upstream", "topic"], t, &mut errors)?;
        }
        match UpstreamTarget::new(&up.url, up.topic.as_deref(), &gw.site.id) {
            Ok(mut t) => {
                t.prefix = up.prefix.clone();
                t.command_key = up.command_key.as_ref().map(|k| k.as_bytes().to_vec());
                t.heartbeat = gw.selfwatch.heartbeat.std();
                t.keep_alive = up.keep_alive.std();
                Some(t)
            }
            Err(e) => {
                errors.push(cfg.gateway_error(&["upstream", "url"], format!("upstream url {e}")));
                None
            }
        }
    });
    let channels = match Channels::new(&gw.channels, &gw.site) {
        Ok(c) => Some(c),
        Err(first) => {
            errors.extend(channel_errors(cfg, first));
            None
        }
    };
    errors.sort_by_key(|e| (e.line, e.column));
    match (
        channels,
        mqtt_listen,
        http_listen,
        events_topic,
        errors.is_empty(),
    ) {
        (Some(channels), Some(mqtt_listen), Some(http_listen), Some(events_topic), true) => {
            Ok(Parts {
                channels,
                mqtt_listen,
                mqtt_tls,
                mqtt_v5,
                external,
                upstream,
                http_listen,
                events_topic,
            })
        }
        _ => Err(ConfigErrors(errors)),
    }
}

/// A socket address, or an error at its key.
fn socket_addr(
    cfg: &Config,
    keys: &[&str],
    value: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<SocketAddr> {
    value
        .parse()
        .map_err(|_| {
            errors.push(cfg.gateway_error(
                keys,
                format!(
                    "{} {value:?} is not a socket address (write e.g. \"127.0.0.1:8080\")",
                    keys.join(" ")
                ),
            ))
        })
        .ok()
}

/// A checked topic template, or an error at its key.
fn topic(
    cfg: &Config,
    keys: &[&str],
    value: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<TopicTemplate> {
    TopicTemplate::parse(value, &EVENT_TOPIC_PLACEHOLDERS)
        .map_err(|reason| {
            errors.push(cfg.gateway_error(keys, format!("{} {value:?}: {reason}", keys.join(" "))))
        })
        .ok()
}

/// An absolute http(s) URL with a host (the base of acknowledgement links).
fn http_url(url: &str) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    match u.scheme() {
        "http" | "https" if u.host_str().is_some() => Ok(u),
        "http" | "https" => Err("URL has no host".into()),
        other => Err(format!("scheme {other:?} is not http or https")),
    }
}

/// Every channel error, not just the first one [`Channels::new`] stops at:
/// each configured channel is built on its own to find the others.
fn channel_errors(cfg: &Config, first: ChannelError) -> Vec<ConfigError> {
    let all = &cfg.gateway.channels;
    let only = |f: &dyn Fn(&mut ChannelsConfig)| {
        let mut c = ChannelsConfig::default();
        f(&mut c);
        c
    };
    let mut singles = Vec::new();
    if all.email.is_some() {
        singles.push(only(&|c| c.email = all.email.clone()));
    }
    for (name, hook) in &all.webhook {
        singles.push(only(&|c| {
            c.webhook.insert(name.clone(), hook.clone());
        }));
    }
    if all.sms.is_some() {
        singles.push(only(&|c| c.sms = all.sms.clone()));
    }
    if all.voice.is_some() {
        singles.push(only(&|c| {
            c.voice = all.voice.clone();
            c.modem = all.modem.clone();
        }));
    }
    let mut out: Vec<ConfigError> = singles
        .iter()
        .filter_map(|c| Channels::new(c, &cfg.gateway.site).err())
        .map(|e| channel_error(cfg, &e))
        .collect();
    if out.is_empty() {
        out.push(channel_error(cfg, &first));
    }
    out
}

/// A channel error at the key it is about.
fn channel_error(cfg: &Config, e: &ChannelError) -> ConfigError {
    let keys: Vec<&str> = match e {
        ChannelError::SmtpUrl { .. } => vec!["channels", "email", "smtp"],
        ChannelError::EmailFrom { .. } => vec!["channels", "email", "from"],
        ChannelError::WebhookUrl { name, .. } => vec!["channels", "webhook", name, "url"],
        ChannelError::Webhook { name, key, .. } => vec!["channels", "webhook", name, key],
        ChannelError::Sms { key, .. } => vec!["channels", "sms", key],
        ChannelError::Voice { key, .. } => vec!["channels", "voice", key],
        ChannelError::MaxAttempts => vec!["channels", "max_attempts"],
        _ => vec!["channels"],
    };
    cfg.gateway_error(&keys, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_needs_http_and_a_host() {
        assert!(http_url("http://127.0.0.1:8080").is_ok());
        assert!(http_url("https://gw.example.org/base").is_ok());
        for bad in [
            "http://",
            "http://exa mple.org",
            "ftp://x",
            "127.0.0.1:8080",
        ] {
            assert!(http_url(bad).is_err(), "{bad}");
        }
    }
}
