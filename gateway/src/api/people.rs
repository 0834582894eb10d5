//! What the duty board shows beside an alarm, derived from the registry and
//! the delivery records: who lives in the home (lives alone, age) and, per
//! recipient, on which channel they were told and whether it got through.
//! Pure functions of their inputs, so they are unit-tested without a runtime.

use crate::alarms::Alarm;
use crate::config::{Config, Household};
use crate::dispatch::{DeliveryRecord, DeliveryStatus};
use crate::model::{ChannelKind, EpochMs, EventKind, Role};
use serde::Serialize;

/// A home as the board shows it next to an alarm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HouseholdOut {
    pub id: String,
    pub address: String,
    pub grid: String,
    pub grid_name: Option<String>,
    /// Its building on the compound plan (`building` in the registry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub building: Option<String>,
    pub residents: Vec<ResidentOut>,
}

/// A resident: the duty officer needs to know who may need carrying out, and how to call them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResidentOut {
    pub name: String,
    pub lives_alone: bool,
    pub age: Option<u32>,
    pub phone: Option<String>,
}

/// The home `id` from the registry, if it is known.
pub fn household(cfg: &Config, id: &str) -> Option<HouseholdOut> {
    cfg.household(id).map(|h| household_out(cfg, h))
}

/// A registry home as the board shows it.
pub fn household_out(cfg: &Config, h: &Household) -> HouseholdOut {
    HouseholdOut {
        id: h.id.clone(),
        address: h.address.clone(),
        grid: h.grid.clone(),
        grid_name: cfg.grid(&h.grid).map(|g| g.name.clone()),
        building: h.building.clone(),
        residents: h
            .residents
            .iter()
            .map(|r| ResidentOut {
                name: r.name.clone(),
                lives_alone: r.lives_alone,
                age: r.age,
                phone: r.phone.clone(),
            })
            .collect(),
    }
}

/// One person told of the alarm on one channel, and how that went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotifiedOut {
    pub role: Role,
    pub contact_id: String,
    pub name: String,
    pub channel: ChannelKind,
    /// `pending` (not yet tried), `sent` or `failed`.
    pub status: &'static str,
    pub attempts: u32,
    pub at: Option<EpochMs>,
    pub error: Option<String>,
}

fn status_word(s: DeliveryStatus) -> &'static str {
    match s {
        DeliveryStatus::Pending => "pending",
        DeliveryStatus::Sent => "sent",
        DeliveryStatus::Failed => "failed",
    }
}

/// Who was told of `alarm` (raise, escalation, reminders) and on which
/// channel: one row per (contact, channel), the latest attempt winning. A
/// planned recipient with no delivery record yet shows as `pending`; a
/// fallback channel shows as a row of its own, so "email failed, SMS sent"
/// reads as two rows.
pub fn notified(alarm: &Alarm, deliveries: &[DeliveryRecord]) -> Vec<NotifiedOut> {
    let mut rows: Vec<NotifiedOut> = alarm
        .recipients
        .iter()
        .map(|p| NotifiedOut {
            role: p.recipient.role,
            contact_id: p.recipient.contact_id.clone(),
            name: p.recipient.name.clone(),
            channel: p.channel,
            status: "pending",
            attempts: 0,
            at: None,
            error: None,
        })
        .collect();
    let telling = |e: EventKind| {
        matches!(
            e,
            EventKind::Raised | EventKind::Escalated | EventKind::Reminder
        )
    };
    for d in deliveries
        .iter()
        .filter(|d| telling(d.event) && !machine(d.channel))
    {
        let row = NotifiedOut {
            role: d.recipient.role,
            contact_id: d.recipient.contact_id.clone(),
            name: d.recipient.name.clone(),
            channel: d.channel,
            status: status_word(d.status),
            attempts: d.attempts,
            at: Some(d.at),
            error: d.last_error.clone(),
        };
        match rows
            .iter_mut()
            .find(|r| r.contact_id == row.contact_id && r.channel == row.channel)
        {
            Some(r) if r.at.is_none_or(|at| at <= d.at) => *r = row,
            Some(_) => {}
            None => rows.push(row),
        }
    }
    rows.sort_by(|a, b| a.role.cmp(&b.role).then(a.name.cmp(&b.name)));
    rows
}

/// Broker events, forwarding and linked-sounder commands: nobody's delivery,
/// so they have no row in the board's per-role table (a sounder command used
/// to show under the director, the role of the broker pseudo-recipient).
fn machine(ch: ChannelKind) -> bool {
    matches!(
        ch,
        ChannelKind::Mqtt | ChannelKind::Sounder | ChannelKind::Upstream
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::Planned;
    use crate::model::Recipient;

    fn recipient(id: &str, role: Role) -> Recipient {
        Recipient {
            contact_id: id.into(),
            role,
            name: format!("name-{id}"),
        }
    }

    fn delivery(
        id: &str,
        role: Role,
        ch: ChannelKind,
        ev: EventKind,
        st: DeliveryStatus,
        at: EpochMs,
    ) -> DeliveryRecord {
        DeliveryRecord {
            alarm_id: "a".into(),
            delivery_id: format!("d-{id}-{at}"),
            event: ev,
            recipient: recipient(id, role),
            channel: ch,
            status: st,
            attempts: 1,
            last_error: None,
            code: None,
            at,
        }
    }

    fn alarm_with(recipients: Vec<Planned>) -> Alarm {
        let json = serde_json::json!({
            "id": "a", "site": "s", "kind": "smoke", "severity": "critical",
            "state": "active_unacked", "condition": "firing", "device_id": "d",
            "household_id": "h", "address": "", "location": "", "opened_at": 0,
            "updated_at": 0, "value": null, "threshold": null, "unit": "",
            "reading_ts": 0, "peak": null, "count": 1, "acks": [],
            "resolution": null, "verification": null, "recipients": [], "timeline": []
        });
        let mut a: Alarm = serde_json::from_value(json).unwrap();
        a.recipients = recipients;
        a
    }

    #[test]
    fn planned_rows_are_pending_until_a_delivery_says_otherwise() {
        let a = alarm_with(vec![
            Planned {
                recipient: recipient("c-wang", Role::GridWorker),
                channel: ChannelKind::Email,
                address: "w@x".into(),
                fallbacks: vec![],
            },
            Planned {
                recipient: recipient("c-119", Role::FireBrigade),
                channel: ChannelKind::Webhook,
                address: "fire119".into(),
                fallbacks: vec![],
            },
        ]);
        let ds = vec![
            delivery(
                "c-wang",
                Role::GridWorker,
                ChannelKind::Email,
                EventKind::Raised,
                DeliveryStatus::Failed,
                10,
            ),
            delivery(
                "c-wang",
                Role::GridWorker,
                ChannelKind::Sms,
                EventKind::Raised,
                DeliveryStatus::Sent,
                20,
            ),
            // The all-clear is not "being told of the alarm".
            delivery(
                "c-119",
                Role::FireBrigade,
                ChannelKind::Webhook,
                EventKind::Resolved,
                DeliveryStatus::Sent,
                30,
            ),
            delivery(
                "c-119",
                Role::FireBrigade,
                ChannelKind::Mqtt,
                EventKind::Raised,
                DeliveryStatus::Sent,
                30,
            ),
        ];
        let rows = notified(&a, &ds);
        let summary: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|r| (r.contact_id.as_str(), r.channel.as_str(), r.status))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("c-wang", "email", "failed"),
                ("c-wang", "sms", "sent"),
                ("c-119", "webhook", "pending"),
            ]
        );
    }

    #[test]
    fn sounder_commands_and_forwarding_are_no_persons_delivery() {
        let a = alarm_with(vec![]);
        let ds: Vec<DeliveryRecord> = [
            ChannelKind::Sounder,
            ChannelKind::Upstream,
            ChannelKind::Mqtt,
        ]
        .into_iter()
        .map(|ch| {
            delivery(
                "mqtt",
                Role::Director,
                ch,
                EventKind::Raised,
                DeliveryStatus::Sent,
                5,
            )
        })
        .collect();
        assert!(notified(&a, &ds).is_empty(), "{:?}", notified(&a, &ds));
    }

    #[test]
    fn the_latest_attempt_wins() {
        let a = alarm_with(vec![]);
        let ds = vec![
            delivery(
                "c",
                Role::Family,
                ChannelKind::Sms,
                EventKind::Raised,
                DeliveryStatus::Sent,
                50,
            ),
            delivery(
                "c",
                Role::Family,
                ChannelKind::Sms,
                EventKind::Reminder,
                DeliveryStatus::Failed,
                40,
            ),
        ];
        let rows = notified(&a, &ds);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, "sent");
    }
}
