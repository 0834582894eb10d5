//! What the district room knows of its compounds: each box's liveness and
//! each compound alarm as the box last reported it. Pure: the caller passes
//! the time and persists what changed. The district never changes a
//! compound's alarm itself; it only mirrors the boxes' events.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// One compound alarm as last reported by its box.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompoundAlarm {
    pub site: String,
    pub alarm_id: String,
    /// The box's `alarm` object (SPEC §5), as sent.
    pub alarm: Value,
    /// Last event name (`alarm.raised`, `alarm.acked`, ...).
    pub last_event: String,
    /// Acks seen in events: who (the box's display of the actor) and when.
    #[serde(default)]
    pub acks: Vec<SeenAck>,
    /// When the district received the last event (epoch ms).
    pub updated: i64,
}

impl CompoundAlarm {
    /// The box's alarm state (`active`, `active_acked`, `cleared`, `resolved`, `verified`).
    pub fn state(&self) -> &str {
        self.alarm
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// Whether the alarm still needs someone (not resolved or verified).
    pub fn is_open(&self) -> bool {
        !matches!(self.state(), "resolved" | "verified")
    }
}

/// An ack as seen in an `alarm.acked` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeenAck {
    pub actor: String,
    pub at: i64,
}

/// A box's liveness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxState {
    pub site: String,
    /// Last retained status (`online` / `offline`, the box's last will).
    pub status: Option<String>,
    /// When anything was last heard from the box (epoch ms).
    pub last_seen: i64,
    /// When its last heartbeat came, and what it said.
    pub last_heartbeat: Option<i64>,
    #[serde(default)]
    pub heartbeat: Option<Value>,
    /// The open `box_offline` district alarm, if any.
    #[serde(default)]
    pub offline: Option<BoxOffline>,
}

/// A district alarm: a compound's box has gone silent or said it is offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxOffline {
    pub id: String,
    pub site: String,
    pub opened_at: i64,
    pub reason: String,
}

/// A change of a box's liveness the district must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum BoxChange {
    /// Raise `box_offline` for the site.
    WentOffline(BoxOffline),
    /// Clear it: the box is back.
    CameBack { site: String, alarm: BoxOffline },
}

/// Everything the district knows.
#[derive(Debug, Default)]
pub struct Book {
    pub boxes: BTreeMap<String, BoxState>,
    pub alarms: BTreeMap<(String, String), CompoundAlarm>,
}

impl Book {
    /// A book following `sites`, with what was stored and `now` as the start
    /// of the silence of boxes never heard from.
    pub fn new(
        sites: impl IntoIterator<Item = String>,
        stored_boxes: Vec<BoxState>,
        stored_alarms: Vec<CompoundAlarm>,
        now: i64,
    ) -> Book {
        let mut boxes: BTreeMap<String, BoxState> = stored_boxes
            .into_iter()
            .map(|b| (b.site.clone(), b))
            .collect();
        for site in sites {
            boxes.entry(site.clone()).or_insert(BoxState {
                site,
                status: None,
                last_seen: now,
                last_heartbeat: None,
                heartbeat: None,
                offline: None,
            });
        }
        // A restart of the district is not a box's silence: count from now.
        for b in boxes.values_mut() {
            b.last_seen = b.last_seen.max(now);
        }
        let alarms = stored_alarms
            .into_iter()
            .map(|a| ((a.site.clone(), a.alarm_id.clone()), a))
            .collect();
        Book { boxes, alarms }
    }

    /// An alarm event from `site`; returns the updated alarm, or why it was ignored.
    pub fn on_event(
        &mut self,
        site: &str,
        payload: &Value,
        now: i64,
    ) -> Result<(CompoundAlarm, Option<BoxChange>), &'static str> {
        let alarm = payload.get("alarm").ok_or("no alarm object")?;
        let id = alarm
            .get("id")
            .and_then(Value::as_str)
            .ok_or("alarm without id")?;
        let event = payload
            .get("event")
            .and_then(Value::as_str)
            .ok_or("no event name")?;
        let back = self.heard(site, now);
        let entry = self
            .alarms
            .entry((site.to_string(), id.to_string()))
            .or_insert_with(|| CompoundAlarm {
                site: site.to_string(),
                alarm_id: id.to_string(),
                alarm: Value::Null,
                last_event: String::new(),
                acks: Vec::new(),
                updated: now,
            });
        entry.alarm = alarm.clone();
        entry.last_event = event.to_string();
        entry.updated = now;
        if event == "alarm.acked" {
            let actor = payload
                .get("actor")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            entry.acks.push(SeenAck { actor, at: now });
        }
        Ok((entry.clone(), back))
    }

    /// A retained status message (`online` / `offline`).
    pub fn on_status(&mut self, site: &str, status: &str, now: i64) -> Option<BoxChange> {
        let b = self.boxes.get_mut(site)?;
        b.status = Some(status.to_string());
        if status == "offline" {
            return went_offline(b, now, "the box's last will: offline (连接断开)".into());
        }
        self.heard(site, now)
    }

    /// A heartbeat.
    pub fn on_heartbeat(&mut self, site: &str, beat: Value, now: i64) -> Option<BoxChange> {
        if let Some(b) = self.boxes.get_mut(site) {
            b.last_heartbeat = Some(now);
            b.heartbeat = Some(beat);
        }
        self.heard(site, now)
    }

    /// Anything from a box: it is alive (and online unless its last word was its will).
    fn heard(&mut self, site: &str, now: i64) -> Option<BoxChange> {
        let b = self.boxes.get_mut(site)?;
        b.last_seen = now;
        if b.status.as_deref() == Some("offline") {
            // Its retained will is stale: it speaks again.
            b.status = Some("online".into());
        }
        b.offline.take().map(|alarm| BoxChange::CameBack {
            site: site.to_string(),
            alarm,
        })
    }

    /// Boxes silent for longer than `timeout_ms` go offline.
    pub fn tick(&mut self, now: i64, timeout_ms: i64) -> Vec<BoxChange> {
        let mut out = Vec::new();
        for b in self.boxes.values_mut() {
            let silent = now - b.last_seen;
            if silent > timeout_ms {
                let why = format!("no heartbeat for {} s (心跳中断)", silent / 1000);
                out.extend(went_offline(b, now, why));
            }
        }
        out
    }

    /// Open compound alarms and open box alarms, by site.
    pub fn open_counts(&self) -> BTreeMap<String, usize> {
        let mut m: BTreeMap<String, usize> = self.boxes.keys().map(|s| (s.clone(), 0)).collect();
        for a in self.alarms.values().filter(|a| a.is_open()) {
            *m.entry(a.site.clone()).or_default() += 1;
        }
        m
    }
}

fn went_offline(b: &mut BoxState, now: i64, reason: String) -> Option<BoxChange> {
    if b.offline.is_some() {
        return None;
    }
    let alarm = BoxOffline {
        id: format!("box-offline-{}-{}", b.site, ulid::Ulid::new()),
        site: b.site.clone(),
        opened_at: now,
        reason,
    };
    b.offline = Some(alarm.clone());
    Some(BoxChange::WentOffline(alarm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn book(now: i64) -> Book {
        Book::new(["a".to_string(), "b".to_string()], vec![], vec![], now)
    }

    fn raised(id: &str, state: &str) -> Value {
        json!({"event": "alarm.raised", "alarm": {"id": id, "state": state, "kind": "smoke"}})
    }

    #[test]
    fn silence_raises_box_offline_once_and_any_word_clears_it() {
        let mut b = book(0);
        assert!(
            b.tick(90_000, 90_000).is_empty(),
            "exactly the timeout is not yet silence"
        );
        let c = b.tick(90_001, 90_000);
        assert_eq!(c.len(), 2, "both boxes silent: {c:?}");
        assert!(b.tick(120_000, 90_000).is_empty(), "raised once");
        let back = b.on_heartbeat("a", json!({}), 121_000);
        assert!(matches!(back, Some(BoxChange::CameBack { ref site, .. }) if site == "a"));
        assert!(b.boxes["a"].offline.is_none());
        assert!(b.boxes["b"].offline.is_some());
    }

    #[test]
    fn last_will_is_offline_at_once_and_online_clears() {
        let mut b = book(0);
        assert!(matches!(
            b.on_status("a", "offline", 10),
            Some(BoxChange::WentOffline(_))
        ));
        assert!(b.on_status("a", "offline", 20).is_none());
        assert!(matches!(
            b.on_status("a", "online", 30),
            Some(BoxChange::CameBack { .. })
        ));
        assert_eq!(b.boxes["a"].status.as_deref(), Some("online"));
    }

    #[test]
    fn unknown_sites_change_nothing() {
        let mut b = book(0);
        assert!(b.on_status("zzz", "offline", 10).is_none());
        assert!(!b.boxes.contains_key("zzz"));
    }

    #[test]
    fn events_mirror_the_box_and_count_open_alarms() {
        let mut b = book(0);
        b.on_event("a", &raised("A1", "active"), 5).unwrap();
        b.on_event("a", &raised("A2", "active"), 6).unwrap();
        let (acked, _) = b
            .on_event(
                "a",
                &json!({"event": "alarm.acked", "actor": "陈队长", "alarm": {"id": "A1", "state": "active_acked"}}),
                7,
            )
            .unwrap();
        assert_eq!(
            acked.acks,
            vec![SeenAck {
                actor: "陈队长".into(),
                at: 7
            }]
        );
        b.on_event("a", &raised("A2", "resolved"), 8).unwrap();
        assert_eq!(b.open_counts()["a"], 1);
        assert_eq!(b.open_counts()["b"], 0);
        assert!(b
            .on_event("a", &json!({"event": "alarm.raised"}), 9)
            .is_err());
    }

    #[test]
    fn an_event_from_a_box_marked_offline_brings_it_back() {
        let mut b = book(0);
        b.on_status("b", "offline", 1);
        let (_, back) = b.on_event("b", &raised("B1", "active"), 2).unwrap();
        assert!(matches!(back, Some(BoxChange::CameBack { .. })));
    }

    #[test]
    fn a_district_restart_does_not_count_as_silence() {
        let stored = vec![BoxState {
            site: "a".into(),
            status: Some("online".into()),
            last_seen: 1_000,
            last_heartbeat: Some(1_000),
            heartbeat: None,
            offline: None,
        }];
        let mut b = Book::new(["a".to_string()], stored, vec![], 500_000);
        assert!(b.tick(500_000 + 89_000, 90_000).is_empty());
    }
}
