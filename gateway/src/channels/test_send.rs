//! A clearly marked test message through the real send path (the same
//! channels, signing, mentions, provider and robot budget as an alarm), and
//! what each receiver answered. Used by `gridwatch test-notify` (before the
//! daemon runs) and by the duty board's 发送测试 button
//! (`POST /api/v1/contacts/{id}/test`, in the daemon).
//!
//! It talks to the receivers directly, not through the alarm outbox: a test
//! message must never sit in the outbox or on the duty board as an alarm.

use super::{mask, Channels};
use crate::config::{Config, Locale};
use crate::model::{
    now_ms, rfc3339_ms, AlarmKind, AlarmState, AlarmView, ChannelKind, EventKind, Recipient, Role,
    Severity,
};
use crate::notification::{MessageContext, Notification};
use serde::Serialize;

/// One test send to make: a contact on one of its channels.
#[derive(Debug, Clone)]
pub struct TestTarget {
    pub recipient: Recipient,
    pub channel: ChannelKind,
    pub address: String,
    phones: Vec<String>,
}

/// What one receiver answered to a test message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestAnswer {
    pub contact_id: String,
    pub name: String,
    pub role: Role,
    pub channel: ChannelKind,
    /// The address, masked (phone numbers and e-mail addresses).
    pub to: String,
    /// `confirmed` (the receiver confirmed it), `refused` (it answered no, or
    /// could not be reached), `not_configured` (no such channel in the config).
    pub outcome: &'static str,
    /// The receiver's refusal code (e.g. DingTalk `310000`), when it gave one.
    pub code: Option<String>,
    /// Whether the refusal may pass later (rate limit, 5xx, timeout).
    pub retryable: bool,
    pub reason: Option<String>,
}

impl TestAnswer {
    /// True when the receiver confirmed.
    pub fn confirmed(&self) -> bool {
        self.outcome == "confirmed"
    }

    /// One line as `gridwatch test-notify` prints it.
    pub fn line(&self) -> String {
        let to = format!(
            "{} ({}) {} {}",
            self.name,
            self.contact_id,
            self.channel.as_str(),
            self.to
        );
        match self.outcome {
            "confirmed" => format!("{to}: confirmed by the receiver"),
            "not_configured" => format!(
                "{to}: NOT CONFIGURED (no [channels.{}] for it)",
                self.channel.as_str()
            ),
            _ => format!(
                "{to}: REFUSED{} {}: {}",
                self.code
                    .as_ref()
                    .map(|c| format!(" [{c}]"))
                    .unwrap_or_default(),
                if self.retryable {
                    "(may pass later)"
                } else {
                    "(final)"
                },
                self.reason.as_deref().unwrap_or("")
            ),
        }
    }
}

/// Why there is nobody to test.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TargetError {
    #[error("no contact {0:?} in the registry")]
    UnknownContact(String),
    #[error("contact {0:?} has no role (in no grid or family)")]
    NoRole(String),
    #[error("unknown {what} {value:?}")]
    Unknown { what: &'static str, value: String },
}

fn parse<T: serde::de::DeserializeOwned>(what: &'static str, s: &str) -> Result<T, TargetError> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        TargetError::Unknown {
            what,
            value: s.to_string(),
        }
    })
}

/// The role the registry gives a contact (the first grid list or family it is in).
pub fn role_of(cfg: &Config, id: &str) -> Option<Role> {
    let reg = &cfg.registry;
    for g in &reg.grids {
        if g.grid_workers.iter().any(|c| c == id) {
            return Some(Role::GridWorker);
        }
        if g.directors.iter().any(|c| c == id) {
            return Some(Role::Director);
        }
        if g.fire_brigade.iter().any(|c| c == id) {
            return Some(Role::FireBrigade);
        }
        if g.operators.iter().any(|c| c == id) {
            return Some(Role::Operator);
        }
    }
    reg.households
        .iter()
        .any(|h| h.family.iter().any(|c| c == id))
        .then_some(Role::Family)
}

/// The households' residents as contacts (`{household}.r{n}`, 1-based, as
/// dispatch names them), so they can be tested like anyone else.
fn residents(cfg: &Config) -> Vec<crate::config::Contact> {
    cfg.registry
        .households
        .iter()
        .flat_map(|h| {
            h.residents
                .iter()
                .enumerate()
                .map(|(i, r)| crate::config::Contact {
                    id: format!("{}.r{}", h.id, i + 1),
                    name: r.name.clone(),
                    phone: r.phone.clone(),
                    email: r.email.clone(),
                    webhook: None,
                    console: None,
                })
        })
        .collect()
}

/// The contact `contact` (a registry contact or a resident) and/or every contact of `role`, each on the
/// channels to test: `channel`, or each channel of its role's `[roles]` list
/// that the contact has an address for.
pub fn targets(
    cfg: &Config,
    contact: Option<&str>,
    role: Option<&str>,
    channel: Option<&str>,
) -> Result<Vec<TestTarget>, TargetError> {
    let only: Option<ChannelKind> = channel.map(|c| parse("channel", c)).transpose()?;
    let residents = residents(cfg);
    let mut people: Vec<(Role, &crate::config::Contact)> = Vec::new();
    if let Some(id) = contact {
        if let Some(r) = residents.iter().find(|r| r.id == id) {
            people.push((Role::Resident, r));
        } else {
            let c = cfg
                .contact(id)
                .ok_or_else(|| TargetError::UnknownContact(id.to_string()))?;
            let role = role_of(cfg, id).ok_or_else(|| TargetError::NoRole(id.to_string()))?;
            people.push((role, c));
        }
    }
    if let Some(r) = role {
        let role: Role = parse("role", r)?;
        if role == Role::Resident {
            people.extend(residents.iter().map(|r| (role, r)));
        }
        for c in &cfg.registry.contacts {
            if role_of(cfg, &c.id) == Some(role) {
                people.push((role, c));
            }
        }
    }
    let mut out = Vec::new();
    for (role, c) in people {
        let prefs: Vec<ChannelKind> = match only {
            Some(k) => vec![k],
            None => cfg.routing.roles.get(&role).cloned().unwrap_or_default(),
        };
        for kind in prefs {
            let address = match kind {
                ChannelKind::Sms | ChannelKind::Voice => c.phone.clone(),
                ChannelKind::Email => c.email.clone(),
                ChannelKind::Webhook => c.webhook.clone(),
                ChannelKind::Console => Some(c.name.clone()),
                _ => None,
            };
            let Some(address) = address else { continue };
            out.push(TestTarget {
                recipient: Recipient {
                    contact_id: c.id.clone(),
                    role,
                    name: c.name.clone(),
                },
                channel: kind,
                address,
                phones: c.phone.iter().cloned().collect(),
            });
        }
    }
    Ok(out)
}

/// Sends the test message to one target and says what the receiver answered.
pub async fn send(cfg: &Config, channels: &Channels, t: &TestTarget) -> TestAnswer {
    let mut answer = TestAnswer {
        contact_id: t.recipient.contact_id.clone(),
        name: t.recipient.name.clone(),
        role: t.recipient.role,
        channel: t.channel,
        to: mask(&t.address),
        outcome: "confirmed",
        code: None,
        retryable: false,
        reason: None,
    };
    if !channels.is_configured(t.channel, Some(&t.address)) {
        answer.outcome = "not_configured";
        return answer;
    }
    if let Err(e) = channels.send(&test_message(cfg, t)).await {
        answer.outcome = "refused";
        answer.code = e.code;
        answer.retryable = e.retryable;
        answer.reason = Some(e.reason);
    }
    answer
}

/// The test message: an `info` notice whose every line says it is a test.
pub fn test_message(cfg: &Config, t: &TestTarget) -> Notification {
    let zh = cfg.gateway.site.locale == Locale::ZhCn;
    let now = now_ms();
    let id = format!("test-{}", ulid::Ulid::new());
    let base = cfg.gateway.http.public_url.trim_end_matches('/');
    Notification {
        delivery_id: id.clone(),
        event: EventKind::Raised,
        alarm: AlarmView {
            id: id.clone(),
            site: cfg.gateway.site.id.clone(),
            kind: AlarmKind::Smoke,
            severity: Severity::Info,
            state: AlarmState::ActiveUnacked,
            condition: crate::model::Condition::Firing,
            device_id: "test-notify".into(),
            household_id: "test-notify".into(),
            address: if zh {
                "【测试消息，请忽略】gridwatch 通知测试".into()
            } else {
                "[TEST, please ignore] gridwatch test-notify".into()
            },
            location: if zh {
                "无需处置".into()
            } else {
                "no action needed".into()
            },
            opened_at: rfc3339_ms(now),
            value: None,
            threshold: None,
            unit: String::new(),
            trigger: None,
        },
        recipient: t.recipient.clone(),
        channel: t.channel,
        address: t.address.clone(),
        ack_url: format!("{base}/ack/test"),
        context: MessageContext {
            locale: cfg.gateway.site.locale,
            site_name: cfg.gateway.site.name.clone(),
            robot_mentions: t.phones.clone(),
            ..Default::default()
        },
        created: now,
    }
}
