//! Network addresses the gateway connects to, parsed once when the config is
//! built: the MQTT broker URL shared by the MQTT source (`[mqtt] external`)
//! and upstream forwarding (`[upstream] url`). Bottom layer: no imports from
//! the pipe's stages.

/// Why the MQTT connection settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum MqttSetupError {
    #[error("{0:?}: expected mqtt://[user:pass@]host:port")]
    BadUrl(String),
    #[error("mqtt.embedded = false needs mqtt.external")]
    NoExternal,
}

/// Where and how to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, String)>,
}

/// Parses `mqtt://[user:pass@]host:port`.
pub fn parse_url(url: &str) -> Result<Endpoint, MqttSetupError> {
    let bad = || MqttSetupError::BadUrl(crate::util::mask(&redact_password(url)));
    let rest = url.strip_prefix("mqtt://").ok_or_else(bad)?;
    let rest = rest.trim_end_matches('/');
    let (creds, hostport) = match rest.rsplit_once('@') {
        Some((c, h)) => {
            let (u, p) = c.split_once(':').unwrap_or((c, ""));
            (Some((u.to_string(), p.to_string())), h)
        }
        None => (None, rest),
    };
    let (host, port) = hostport.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok(Endpoint {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        credentials: creds,
    })
}

/// `url` with the password of its user-info replaced by `***`, for messages
/// (a `${ENV}` password is expanded by the time an error is written).
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// An MQTT topic to publish on, with `{name}` placeholders filled per
/// message: checked once when the config is built (no wildcards, only known
/// placeholders), so a publish never fails on a topic the broker refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate(String);

impl TopicTemplate {
    /// Checks `template` against the placeholders the publisher fills.
    pub fn parse(template: &str, placeholders: &[&str]) -> Result<TopicTemplate, String> {
        if template.is_empty() {
            return Err("the topic is empty".into());
        }
        if template.contains(['+', '#']) {
            return Err("a topic to publish on must not contain MQTT wildcards (+ or #)".into());
        }
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                return Err(format!("unclosed placeholder in {template:?}"));
            };
            let name = &after[..close];
            if !placeholders.contains(&name) {
                let known: Vec<String> = placeholders.iter().map(|p| format!("{{{p}}}")).collect();
                return Err(format!(
                    "unknown placeholder {{{name}}} (known: {})",
                    known.join(", ")
                ));
            }
            rest = &after[close + 1..];
        }
        Ok(TopicTemplate(template.to_string()))
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("mqtt://gw:secret@127.0.0.1:1884").unwrap(),
            Endpoint {
                host: "127.0.0.1".into(),
                port: 1884,
                credentials: Some(("gw".into(), "secret".into()))
            }
        );
        assert_eq!(parse_url("mqtt://broker:1883/").unwrap().port, 1883);
        assert_eq!(parse_url("mqtt://[::1]:1883").unwrap().host, "::1");
        for bad in [
            "http://x:1",
            "mqtt://x",
            "mqtt://:1883",
            "mqtt://x:99999",
            "mqtts://x:8883",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_never_show_the_password() {
        let e = parse_url("mqtt://gw:s3cret@host").unwrap_err().to_string();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(e.contains("gw:***@host"), "{e}");
        assert_eq!(redact_password("mqtt://host:1883"), "mqtt://host:1883");
    }

    #[test]
    fn topic_templates() {
        let known = ["site", "alarm_id"];
        assert!(TopicTemplate::parse("gridwatch/{site}/alarms/{alarm_id}", &known).is_ok());
        assert!(TopicTemplate::parse("fixed/topic", &known).is_ok());
        for bad in ["", "a/+/b", "a/#", "a/{sit}/b", "a/{site"] {
            assert!(TopicTemplate::parse(bad, &known).is_err(), "{bad}");
        }
    }
}
