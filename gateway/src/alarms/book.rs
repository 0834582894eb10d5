//! The alarm state machine (docs/contract.md §8), pure: signals and people's actions in,
//! transitions out. It owns the rule "one open alarm per (subject, kind)" and
//! the lifecycle `active_unacked → active_acked → resolved → verified`, with
//! the condition (`firing`/`cleared`) tracked beside it. A cleared condition
//! never resolves an alarm: only a person does.

use super::record::{Alarm, Resolution, RoleAck, TimelineEntry, TimelineKind, Verification};
use crate::config::Route;
use crate::model::{AlarmKind, AlarmState, Cause, Condition, EpochMs, EventKind, Role, Trigger};
use crate::rules::{Signal, SignalCause};
use std::collections::HashMap;

/// A verified alarm whose condition fires again within this window reopens.
pub const REOPEN_WINDOW_MS: i64 = 10 * 60 * 1000;

/// Where an alarm's subject is, for the record (filled from the registry).
#[derive(Debug, Clone, Default)]
pub struct Place {
    pub address: String,
    pub location: String,
}

/// A change the rest of the pipe must act on: which alarm, and which event it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub alarm_id: String,
    pub event: EventKind,
    /// For acks: the role that acked (reminders for that role stop).
    pub role: Option<Role>,
    /// For timer events: only these roles hear of it (empty: the event's usual audience).
    pub roles: Vec<Role>,
}

/// Why a person's action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("no alarm {0}")]
    NotFound(String),
    #[error("{0} is not a contact bound to this alarm, and no role was given")]
    UnknownActor(String),
    #[error("store: {0}")]
    Store(String),
    #[error("alarm {id} is {state}; {action} needs {needs}")]
    WrongState {
        id: String,
        state: &'static str,
        action: &'static str,
        needs: &'static str,
    },
}

/// Subject key: the device, or the household for household-level kinds.
fn subject(kind: AlarmKind, device_id: &str, household_id: &str) -> String {
    if kind == AlarmKind::FireConfirmed {
        format!("hh:{household_id}")
    } else {
        format!("dev:{device_id}")
    }
}

/// All alarms that can still change, indexed by subject and kind.
#[derive(Debug, Default)]
pub struct AlarmBook {
    alarms: HashMap<String, Alarm>,
    /// (subject, kind) → id of the latest alarm for it (open, resolved or recently verified).
    latest: HashMap<(String, AlarmKind), String>,
    /// Alarms changed since the last `take_dirty`: they must be written to the store.
    dirty: Vec<String>,
}

impl AlarmBook {
    /// Rebuilds the book from stored records (at start).
    pub fn from_records(records: Vec<Alarm>) -> AlarmBook {
        let mut book = AlarmBook::default();
        let mut sorted = records;
        sorted.sort_by_key(|a| a.opened_at);
        for a in sorted {
            let key = (subject(a.kind, &a.device_id, &a.household_id), a.kind);
            book.latest.insert(key, a.id.clone());
            book.alarms.insert(a.id.clone(), a);
        }
        book
    }

    /// One alarm.
    pub fn get(&self, id: &str) -> Option<&Alarm> {
        self.alarms.get(id)
    }

    /// Alarms not yet resolved.
    pub fn open(&self) -> impl Iterator<Item = &Alarm> {
        self.alarms.values().filter(|a| a.state.is_open())
    }

    /// Number of alarms not yet resolved.
    pub fn open_count(&self) -> usize {
        self.open().count()
    }

    /// Applies a rule signal. `new_id` is called only when a new alarm is opened.
    pub fn on_signal(
        &mut self,
        s: &Signal,
        site: &str,
        place: impl FnOnce() -> Place,
        new_id: impl FnOnce() -> String,
    ) -> Option<Transition> {
        let key = (subject(s.kind, &s.device_id, &s.household_id), s.kind);
        let existing = self.latest.get(&key).cloned();
        match s.condition {
            Condition::Cleared => {
                let id = existing?;
                let a = self.alarms.get_mut(&id)?;
                if a.condition == Condition::Cleared {
                    return None;
                }
                a.condition = Condition::Cleared;
                a.updated_at = s.ts;
                a.value = s.value.or(a.value);
                a.timeline
                    .push(TimelineEntry::new(s.ts, TimelineKind::Cleared));
                let closed = a.state == AlarmState::Verified;
                self.mark(&id);
                if closed {
                    // Tracked (a later episode may reopen it), but nobody needs telling.
                    return None;
                }
                Some(Transition {
                    alarm_id: id,
                    event: EventKind::Cleared,
                    role: None,
                    roles: Vec::new(),
                })
            }
            Condition::Firing => {
                if let Some(id) = existing {
                    if let Some(t) = self.fire_existing(&id, s) {
                        self.mark(&id);
                        return t;
                    }
                }
                let id = new_id();
                self.mark(&id);
                let a = open_alarm(id.clone(), site, s, place());
                self.latest.insert(key, id.clone());
                self.alarms.insert(id.clone(), a);
                Some(Transition {
                    alarm_id: id,
                    event: EventKind::Raised,
                    role: None,
                    roles: Vec::new(),
                })
            }
        }
    }

    /// A firing signal for a subject that has an alarm. `None` means "open a new one".
    fn fire_existing(&mut self, id: &str, s: &Signal) -> Option<Option<Transition>> {
        let a = self.alarms.get_mut(id)?;
        let transition = |event| {
            Some(Some(Transition {
                alarm_id: id.to_string(),
                event,
                role: None,
                roles: Vec::new(),
            }))
        };
        let started = a.condition == Condition::Cleared;
        if !a.state.is_open() && !started {
            // The same firing episode goes on after a person resolved it: keep
            // the record current, but only a new episode reopens.
            update_reading(a, s);
            return Some(None);
        }
        match a.state {
            AlarmState::Verified => {
                let verified_at = a.verification.as_ref().map_or(a.updated_at, |v| v.at);
                if s.ts - verified_at > REOPEN_WINDOW_MS {
                    return None;
                }
                reopen(a, s);
                transition(EventKind::Raised)
            }
            AlarmState::Resolved => {
                reopen(a, s);
                transition(EventKind::Raised)
            }
            AlarmState::ActiveUnacked | AlarmState::ActiveAcked => {
                update_reading(a, s);
                a.condition = Condition::Firing;
                if (started && s.severity >= a.severity) || s.severity > a.severity {
                    take_trigger(a, s);
                }
                if started {
                    a.count += 1;
                    a.timeline
                        .push(TimelineEntry::new(s.ts, TimelineKind::Repeat));
                }
                if s.severity > a.severity {
                    let from = a.severity;
                    a.severity = s.severity;
                    a.timeline.push(
                        TimelineEntry::new(s.ts, TimelineKind::Escalated)
                            .detail(format!("{} → {}", from, s.severity)),
                    );
                    return transition(EventKind::Escalated);
                }
                Some(None)
            }
        }
    }

    /// Adds a line to an alarm's timeline (e.g. a call's outcome); false
    /// when the alarm is unknown (removed by retention since).
    pub fn note(&mut self, id: &str, entry: TimelineEntry) -> bool {
        let Some(a) = self.alarms.get_mut(id) else {
            return false;
        };
        a.timeline.push(entry);
        self.dirty.push(id.to_string());
        true
    }

    /// A person acknowledges for a role. Acks are per role: one role's ack
    /// leaves the others' reminders running. A repeated ack of the same role is
    /// recorded but is not a new event.
    pub fn ack(
        &mut self,
        id: &str,
        by: &str,
        role: Role,
        note: Option<String>,
        at: EpochMs,
    ) -> Result<Option<Transition>, ActionError> {
        let a = self
            .alarms
            .get_mut(id)
            .ok_or_else(|| ActionError::NotFound(id.to_string()))?;
        self.dirty.push(id.to_string());
        if !a.state.is_open() {
            return Err(wrong_state(a, "ack", "an open alarm"));
        }
        let first_for_role = !a.acked_by_role(role);
        a.acks.push(RoleAck {
            role,
            by: by.to_string(),
            at,
            note: note.clone(),
        });
        a.timeline.push(TimelineEntry {
            at,
            what: TimelineKind::Acked,
            by: Some(by.to_string()),
            role: Some(role),
            detail: note,
        });
        a.updated_at = at;
        a.state = AlarmState::ActiveAcked;
        Ok(first_for_role.then(|| Transition {
            alarm_id: id.to_string(),
            event: EventKind::Acked,
            role: Some(role),
            roles: Vec::new(),
        }))
    }

    /// The feedback step: a person says what it was and what was done.
    pub fn resolve(
        &mut self,
        id: &str,
        by: &str,
        cause: Cause,
        note: Option<String>,
        at: EpochMs,
    ) -> Result<Transition, ActionError> {
        let a = self
            .alarms
            .get_mut(id)
            .ok_or_else(|| ActionError::NotFound(id.to_string()))?;
        self.dirty.push(id.to_string());
        if !a.state.is_open() {
            return Err(wrong_state(a, "resolve", "an open alarm"));
        }
        a.state = AlarmState::Resolved;
        a.resolution = Some(Resolution {
            by: by.to_string(),
            cause,
            note: note.clone(),
            at,
        });
        a.timeline.push(TimelineEntry {
            at,
            what: TimelineKind::Resolved,
            by: Some(by.to_string()),
            role: None,
            detail: Some(match &note {
                Some(n) => format!("{}: {n}", cause.as_str()),
                None => cause.as_str().to_string(),
            }),
        });
        a.updated_at = at;
        Ok(Transition {
            alarm_id: id.to_string(),
            event: EventKind::Resolved,
            role: None,
            roles: Vec::new(),
        })
    }

    /// The verify step (核查) that closes the loop.
    pub fn verify(
        &mut self,
        id: &str,
        by: &str,
        note: Option<String>,
        at: EpochMs,
    ) -> Result<Transition, ActionError> {
        let a = self
            .alarms
            .get_mut(id)
            .ok_or_else(|| ActionError::NotFound(id.to_string()))?;
        self.dirty.push(id.to_string());
        if a.state != AlarmState::Resolved {
            return Err(wrong_state(a, "verify", "a resolved alarm"));
        }
        a.state = AlarmState::Verified;
        a.verification = Some(Verification {
            by: by.to_string(),
            note: note.clone(),
            at,
        });
        a.timeline.push(TimelineEntry {
            at,
            what: TimelineKind::Verified,
            by: Some(by.to_string()),
            role: None,
            detail: note,
        });
        a.updated_at = at;
        Ok(Transition {
            alarm_id: id.to_string(),
            event: EventKind::Verified,
            role: None,
            roles: Vec::new(),
        })
    }

    /// Mutable access for the service to record recipients after planning.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Alarm> {
        self.mark(id);
        self.alarms.get_mut(id)
    }

    /// Escalation and reminders due at `now` (docs/contract.md §2 `escalate_after`, `repeat`):
    /// when a role of a matching route has not acked within `escalate_after`,
    /// `escalate_to` is notified once and the unacked roles are reminded; then
    /// the unacked roles are reminded every `repeat` until they ack — no cap.
    /// Runs on the clock, so it needs no reading to arrive.
    pub fn due_timers(&mut self, routes: &[Route], now: EpochMs) -> Vec<Transition> {
        let mut out = Vec::new();
        let mut changed = Vec::new();
        for a in self.alarms.values_mut().filter(|a| a.state.is_open()) {
            let before = out.len();
            timers_of(a, routes, now, &mut out);
            if out.len() > before {
                changed.push(a.id.clone());
            }
        }
        self.dirty.extend(changed);
        out
    }

    /// Records that roles were told now (raise, escalation or reminder).
    pub fn told(&mut self, id: &str, roles: &[Role], at: EpochMs) {
        if let Some(a) = self.alarms.get_mut(id) {
            for r in roles {
                a.told_at.insert(*r, at);
            }
            self.dirty.push(id.to_string());
        }
    }

    /// Ids of alarms changed since the last call, each once.
    pub fn take_dirty(&mut self) -> Vec<String> {
        let mut d = std::mem::take(&mut self.dirty);
        d.sort();
        d.dedup();
        d
    }

    fn mark(&mut self, id: &str) {
        self.dirty.push(id.to_string());
    }
}

fn timers_of(a: &mut Alarm, routes: &[Route], now: EpochMs, out: &mut Vec<Transition>) {
    let matching = routes
        .iter()
        .filter(|r| r.kinds.contains(&a.kind) && r.severities.contains(&a.severity));
    let mut remind: Vec<Role> = Vec::new();
    let mut escalate_to: Vec<Role> = Vec::new();
    for r in matching {
        let unacked: Vec<Role> = r
            .notify
            .iter()
            .copied()
            .filter(|role| !a.acked_by_role(*role))
            .collect();
        if unacked.is_empty() {
            continue;
        }
        let escalate_due = r
            .escalate_after
            .is_some_and(|d| now - episode_start(a) >= d.as_ms());
        if escalate_due && !a.escalated && !r.escalate_to.is_empty() {
            escalate_to.extend(r.escalate_to.iter().copied());
            remind.extend(unacked.iter().copied());
            continue;
        }
        // Reminders start after the escalation (or at once when the route has none).
        let reminding = r.escalate_after.is_none() || a.escalated;
        if let (Some(every), true) = (r.repeat, reminding) {
            for role in unacked {
                let last = a.told_at.get(&role).copied().unwrap_or(a.opened_at);
                if now - last >= every.as_ms() {
                    remind.push(role);
                }
            }
        }
    }
    remind.sort();
    remind.dedup();
    escalate_to.sort();
    escalate_to.dedup();
    if !escalate_to.is_empty() {
        a.escalated = true;
        a.timeline.push(
            TimelineEntry::new(now, TimelineKind::Escalated).detail(format!(
                "unacked after escalate_after → {}",
                escalate_to
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            )),
        );
        out.push(Transition {
            alarm_id: a.id.clone(),
            event: EventKind::Escalated,
            role: None,
            roles: escalate_to,
        });
    }
    if !remind.is_empty() {
        for r in &remind {
            a.told_at.insert(*r, now);
        }
        a.timeline.push(
            TimelineEntry::new(now, TimelineKind::Reminder).detail(
                remind
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        );
        out.push(Transition {
            alarm_id: a.id.clone(),
            event: EventKind::Reminder,
            role: None,
            roles: remind,
        });
    }
}

fn wrong_state(a: &Alarm, action: &'static str, needs: &'static str) -> ActionError {
    ActionError::WrongState {
        id: a.id.clone(),
        state: a.state.as_str(),
        action,
        needs,
    }
}

fn open_alarm(id: String, site: &str, s: &Signal, place: Place) -> Alarm {
    Alarm {
        id,
        site: site.to_string(),
        kind: s.kind,
        severity: s.severity,
        state: AlarmState::ActiveUnacked,
        condition: Condition::Firing,
        device_id: s.device_id.clone(),
        household_id: s.household_id.clone(),
        address: place.address,
        location: place.location,
        opened_at: s.ts,
        updated_at: s.ts,
        value: s.value,
        threshold: s.threshold,
        unit: s.unit.to_string(),
        reading_ts: s.ts,
        trigger: trigger_of(s),
        peak: s.value,
        count: 1,
        acks: Vec::new(),
        resolution: None,
        verification: None,
        recipients: Vec::new(),
        escalated: false,
        told_at: Default::default(),
        timeline: vec![TimelineEntry::new(s.ts, TimelineKind::Opened)
            .detail(format!("{} {}", s.kind, s.severity))],
    }
}

fn update_reading(a: &mut Alarm, s: &Signal) {
    a.value = s.value.or(a.value);
    // A trend-triggered alarm shows no level: a lesser threshold condition
    // later does not decide it (its severity stays the highest seen).
    if s.threshold.is_some() && !a.trigger.is_some_and(|t| t.is_trend()) {
        a.threshold = s.threshold;
    }
    a.reading_ts = s.ts;
    a.updated_at = s.ts;
    if let Some(v) = s.value {
        a.peak = Some(a.peak.map_or(v, |p| p.max(v)));
    }
}

/// The alarm's trigger for a deciding signal; `None` for a repeat, which decides nothing.
fn trigger_of(s: &Signal) -> Option<Trigger> {
    (s.cause != SignalCause::Repeat).then(|| Trigger {
        rule: s.cause,
        delta: s.trend.map(|t| t.delta),
        within_s: s.trend.map(|t| t.within_ms as f64 / 1000.0),
    })
}

/// A signal decided the alarm's severity anew (opened again, or rose): the
/// trigger and the threshold shown beside the reading are now its own, so a
/// trend never shows a stale threshold and a threshold never a stale trend.
fn take_trigger(a: &mut Alarm, s: &Signal) {
    if let Some(t) = trigger_of(s) {
        a.trigger = Some(t);
        a.threshold = s.threshold;
    }
}

/// When the people were last told afresh: the opening, or the latest
/// reopening (its acks were cleared, so `escalate_after` counts from there).
fn episode_start(a: &Alarm) -> EpochMs {
    a.timeline
        .iter()
        .rev()
        .find(|e| e.what == TimelineKind::Reopened)
        .map_or(a.opened_at, |e| e.at.max(a.opened_at))
}

fn reopen(a: &mut Alarm, s: &Signal) {
    update_reading(a, s);
    if s.severity >= a.severity {
        take_trigger(a, s);
    }
    a.state = AlarmState::ActiveUnacked;
    a.condition = Condition::Firing;
    a.severity = a.severity.max(s.severity);
    a.count += 1;
    a.acks.clear();
    a.escalated = false;
    a.told_at.clear();
    a.resolution = None;
    a.verification = None;
    a.timeline
        .push(TimelineEntry::new(s.ts, TimelineKind::Reopened));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;
    use crate::rules::SignalCause;
    use proptest::prelude::*;

    fn sig(kind: AlarmKind, sev: Severity, cond: Condition, ts: EpochMs) -> Signal {
        Signal {
            device_id: "smk-1".into(),
            household_id: "h-1".into(),
            kind,
            severity: sev,
            condition: cond,
            value: Some(0.2),
            threshold: Some(0.15),
            unit: "dB/m",
            cause: SignalCause::Threshold,
            trend: None,
            ts,
            received: ts,
        }
    }

    fn apply(book: &mut AlarmBook, s: &Signal, n: &mut u32) -> Option<Transition> {
        book.on_signal(s, "site", Place::default, || {
            *n += 1;
            format!("a{n}")
        })
    }

    #[test]
    fn repeat_updates_one_alarm_and_rise_escalates() {
        let mut b = AlarmBook::default();
        let mut n = 0;
        let t = apply(
            &mut b,
            &sig(
                AlarmKind::ResidualCurrent,
                Severity::Warning,
                Condition::Firing,
                1,
            ),
            &mut n,
        )
        .unwrap();
        assert_eq!(t.event, EventKind::Raised);
        assert!(apply(
            &mut b,
            &sig(
                AlarmKind::ResidualCurrent,
                Severity::Warning,
                Condition::Cleared,
                2
            ),
            &mut n
        )
        .is_some());
        assert_eq!(
            apply(
                &mut b,
                &sig(
                    AlarmKind::ResidualCurrent,
                    Severity::Warning,
                    Condition::Firing,
                    3
                ),
                &mut n
            ),
            None
        );
        let t = apply(
            &mut b,
            &sig(
                AlarmKind::ResidualCurrent,
                Severity::Alarm,
                Condition::Firing,
                4,
            ),
            &mut n,
        )
        .unwrap();
        assert_eq!(t.event, EventKind::Escalated);
        assert_eq!(n, 1);
        let a = b.get("a1").unwrap();
        assert_eq!(a.count, 2);
        assert_eq!(a.severity, Severity::Alarm);
    }

    #[test]
    fn trigger_follows_the_deciding_signal_not_repeats() {
        let mut b = AlarmBook::default();
        let mut n = 0;
        let rise = Signal {
            severity: Severity::Warning,
            value: Some(170.0),
            threshold: None,
            unit: "mA",
            cause: SignalCause::Rise,
            trend: Some(crate::rules::TrendChange {
                delta: 120.0,
                within_ms: 600_000,
            }),
            ..sig(
                AlarmKind::ResidualCurrent,
                Severity::Warning,
                Condition::Firing,
                1,
            )
        };
        apply(&mut b, &rise, &mut n);
        let want = Trigger {
            rule: SignalCause::Rise,
            delta: Some(120.0),
            within_s: Some(600.0),
        };
        assert_eq!(b.get("a1").unwrap().trigger, Some(want));
        assert_eq!(b.get("a1").unwrap().view().trigger, Some(want));
        // A repeat reading decides nothing: the trend stays the trigger.
        let repeat = Signal {
            cause: SignalCause::Repeat,
            trend: None,
            value: Some(180.0),
            ..rise.clone()
        };
        assert_eq!(apply(&mut b, &repeat, &mut n), None);
        let a = b.get("a1").unwrap();
        assert_eq!(
            (a.trigger, a.value, a.threshold),
            (Some(want), Some(180.0), None)
        );
        // The threshold takes it to Alarm: trigger and level are the threshold's.
        let level = Signal {
            severity: Severity::Alarm,
            threshold: Some(300.0),
            cause: SignalCause::Threshold,
            trend: None,
            ..rise.clone()
        };
        assert_eq!(
            apply(&mut b, &level, &mut n).unwrap().event,
            EventKind::Escalated
        );
        let a = b.get("a1").unwrap();
        assert_eq!(
            a.trigger.map(|t| (t.rule, t.delta)),
            Some((SignalCause::Threshold, None))
        );
        assert_eq!(a.threshold, Some(300.0));
        // A record stored before `trigger` existed still reads.
        let mut old = serde_json::to_value(a).unwrap();
        old.as_object_mut().unwrap().remove("trigger");
        let back: Alarm = serde_json::from_value(old).unwrap();
        assert_eq!(back.trigger, None);
    }

    #[test]
    fn lifecycle_and_reopen_window() {
        let mut b = AlarmBook::default();
        let mut n = 0;
        apply(
            &mut b,
            &sig(AlarmKind::Smoke, Severity::Critical, Condition::Firing, 0),
            &mut n,
        );
        assert_eq!(
            b.verify("a1", "c-li", None, 1).unwrap_err().to_string(),
            "alarm a1 is active_unacked; verify needs a resolved alarm"
        );
        let t = b
            .ack("a1", "c-wang", Role::GridWorker, None, 2)
            .unwrap()
            .unwrap();
        assert_eq!(t.role, Some(Role::GridWorker));
        assert_eq!(
            b.ack("a1", "c-wang", Role::GridWorker, None, 3).unwrap(),
            None,
            "second ack of a role is no new event"
        );
        assert!(b
            .ack("a1", "c-zhang-son", Role::Family, None, 3)
            .unwrap()
            .is_some());
        b.resolve("a1", "c-wang", Cause::Cooking, Some("炒菜".into()), 4)
            .unwrap();
        b.verify("a1", "c-li", None, 5).unwrap();
        assert!(b.resolve("a1", "c-wang", Cause::Cooking, None, 6).is_err());
        // the same episode going on does not reopen; a new one (cleared, then firing) does
        let going_on = sig(AlarmKind::Smoke, Severity::Critical, Condition::Firing, 6);
        assert_eq!(apply(&mut b, &going_on, &mut n), None);
        assert_eq!(b.get("a1").unwrap().state, AlarmState::Verified);
        let cleared = sig(AlarmKind::Smoke, Severity::Critical, Condition::Cleared, 7);
        apply(&mut b, &cleared, &mut n);
        // fires again within 10 min → the same alarm reopens
        let t = apply(
            &mut b,
            &sig(
                AlarmKind::Smoke,
                Severity::Critical,
                Condition::Firing,
                5 + REOPEN_WINDOW_MS,
            ),
            &mut n,
        )
        .unwrap();
        assert_eq!((t.alarm_id.as_str(), t.event), ("a1", EventKind::Raised));
        assert_eq!(b.get("a1").unwrap().state, AlarmState::ActiveUnacked);
        assert!(b.get("a1").unwrap().acks.is_empty());
        // after the window a new alarm opens
        b.resolve("a1", "c-wang", Cause::Cooking, None, 10).unwrap();
        b.verify("a1", "c-li", None, 11).unwrap();
        let cleared = sig(AlarmKind::Smoke, Severity::Critical, Condition::Cleared, 12);
        apply(&mut b, &cleared, &mut n);
        let t = apply(
            &mut b,
            &sig(
                AlarmKind::Smoke,
                Severity::Critical,
                Condition::Firing,
                12 + REOPEN_WINDOW_MS,
            ),
            &mut n,
        )
        .unwrap();
        assert_eq!(t.alarm_id, "a2");
    }

    #[test]
    fn cleared_without_alarm_is_nothing() {
        let mut b = AlarmBook::default();
        let mut n = 0;
        assert_eq!(
            apply(
                &mut b,
                &sig(AlarmKind::Smoke, Severity::Critical, Condition::Cleared, 0),
                &mut n
            ),
            None
        );
    }

    fn route() -> Route {
        Route {
            kinds: vec![AlarmKind::Smoke],
            severities: vec![Severity::Critical],
            notify: vec![Role::GridWorker, Role::Family],
            escalate_after: Some(crate::config::Dur::from_secs(60)),
            escalate_to: vec![Role::Director],
            repeat: Some(crate::config::Dur::from_secs(180)),
        }
    }

    fn events(ts: &[Transition]) -> Vec<(EventKind, Vec<Role>)> {
        ts.iter().map(|t| (t.event, t.roles.clone())).collect()
    }

    #[test]
    fn escalation_then_reminders_to_unacked_roles_only_without_cap() {
        let mut b = AlarmBook::default();
        let mut n = 0;
        apply(
            &mut b,
            &sig(AlarmKind::Smoke, Severity::Critical, Condition::Firing, 0),
            &mut n,
        );
        let routes = [route()];
        assert!(b.due_timers(&routes, 59_999).is_empty());
        assert_eq!(
            events(&b.due_timers(&routes, 60_000)),
            vec![
                (EventKind::Escalated, vec![Role::Director]),
                (EventKind::Reminder, vec![Role::GridWorker, Role::Family]),
            ]
        );
        assert!(
            b.due_timers(&routes, 60_001).is_empty(),
            "escalation happens once"
        );
        b.ack("a1", "c-zhang-son", Role::Family, None, 100_000)
            .unwrap();
        assert!(b.due_timers(&routes, 239_999).is_empty());
        assert_eq!(
            events(&b.due_timers(&routes, 240_000)),
            vec![(EventKind::Reminder, vec![Role::GridWorker])],
            "the family's ack stops only the family's reminders"
        );
        for k in 2..30 {
            let at = 60_000 + k * 180_000;
            assert_eq!(
                events(&b.due_timers(&routes, at)).len(),
                1,
                "reminder {k} still comes"
            );
        }
        b.ack("a1", "c-wang", Role::GridWorker, None, 10_000_000)
            .unwrap();
        assert!(
            b.due_timers(&routes, 20_000_000).is_empty(),
            "all roles acked: silence"
        );
        assert!(b.take_dirty().contains(&"a1".to_string()));
    }

    #[test]
    fn a_reopened_alarm_gives_its_people_escalate_after_again() {
        let mut b = AlarmBook::default();
        let mut n = 0;
        let fire = |ts| sig(AlarmKind::Smoke, Severity::Critical, Condition::Firing, ts);
        apply(&mut b, &fire(0), &mut n);
        for role in [Role::GridWorker, Role::Family] {
            b.ack("a1", "someone", role, None, 10).unwrap();
        }
        b.resolve("a1", "c-wang", Cause::Cooking, None, 20).unwrap();
        b.verify("a1", "c-li", None, 30).unwrap();
        apply(
            &mut b,
            &sig(AlarmKind::Smoke, Severity::Critical, Condition::Cleared, 40),
            &mut n,
        );
        // Fires again 5 minutes after it first opened: the same alarm reopens.
        let reopened_at = 300_000;
        let t = apply(&mut b, &fire(reopened_at), &mut n).unwrap();
        assert_eq!((t.alarm_id.as_str(), t.event), ("a1", EventKind::Raised));
        let routes = [route()];
        assert!(
            b.due_timers(&routes, reopened_at + 1).is_empty(),
            "not escalated the moment it reopens"
        );
        assert!(b.due_timers(&routes, reopened_at + 59_999).is_empty());
        assert_eq!(
            events(&b.due_timers(&routes, reopened_at + 60_000))[0],
            (EventKind::Escalated, vec![Role::Director]),
            "escalated escalate_after past the reopening"
        );
    }

    #[test]
    fn timers_survive_a_rebuild_from_records() {
        let mut b = AlarmBook::default();
        let mut n = 0;
        apply(
            &mut b,
            &sig(AlarmKind::Smoke, Severity::Critical, Condition::Firing, 0),
            &mut n,
        );
        let routes = [route()];
        b.due_timers(&routes, 60_000);
        let records: Vec<Alarm> = b.alarms.values().cloned().collect();
        let json = serde_json::to_string(&records).unwrap();
        let mut again = AlarmBook::from_records(serde_json::from_str(&json).unwrap());
        assert!(
            again.due_timers(&routes, 61_000).is_empty(),
            "no second escalation after restart"
        );
        assert_eq!(
            events(&again.due_timers(&routes, 240_000)),
            vec![(EventKind::Reminder, vec![Role::GridWorker, Role::Family])]
        );
    }

    fn arb_signal() -> impl Strategy<Value = (u8, u8, bool)> {
        (0u8..3, 0u8..4, any::<bool>())
    }

    proptest! {
        /// No signal sequence opens two alarms for one (device, kind), and a
        /// cleared condition never resolves an alarm by itself.
        #[test]
        fn one_open_alarm_per_subject_and_no_self_resolve(seq in proptest::collection::vec(arb_signal(), 1..60)) {
            let mut b = AlarmBook::default();
            let mut n = 0;
            for (i, (k, sev, firing)) in seq.into_iter().enumerate() {
                let kind = [AlarmKind::Smoke, AlarmKind::ResidualCurrent, AlarmKind::Temperature][k as usize];
                let cond = if firing { Condition::Firing } else { Condition::Cleared };
                apply(&mut b, &sig(kind, Severity::ALL[sev as usize], cond, i as i64), &mut n);
                let mut seen = std::collections::HashSet::new();
                for a in b.open() {
                    prop_assert!(seen.insert((a.device_id.clone(), a.kind)), "two open alarms for {:?}", a.kind);
                }
                prop_assert_eq!(b.alarms.values().filter(|a| !a.state.is_open()).count(), 0);
            }
        }

        /// Acks of one role never silence another role's reminders: whatever
        /// roles acked, the reminders go to exactly the route's unacked roles,
        /// after the escalation or without one.
        #[test]
        fn acks_of_one_role_never_silence_another(
            notify in proptest::sample::subsequence(Role::ALL.to_vec(), 1..=6),
            acked in proptest::sample::subsequence(Role::ALL.to_vec(), 0..=6),
            escalates in any::<bool>(),
        ) {
            let mut b = AlarmBook::default();
            let mut n = 0;
            apply(&mut b, &sig(AlarmKind::Smoke, Severity::Critical, Condition::Firing, 0), &mut n);
            for role in &acked {
                b.ack("a1", "someone", *role, None, 1_000).unwrap();
            }
            let mut r = route();
            r.notify = notify.clone();
            if !escalates {
                r.escalate_after = None;
                r.escalate_to.clear();
            }
            let routes = [r];
            let mut unacked: Vec<Role> = notify.iter().copied().filter(|r| !acked.contains(r)).collect();
            unacked.sort();
            let expected = if unacked.is_empty() {
                Vec::new()
            } else {
                vec![(EventKind::Reminder, unacked.clone())]
            };
            let first = events(&b.due_timers(&routes, 180_000));
            if escalates && !unacked.is_empty() {
                prop_assert_eq!(first[0].clone(), (EventKind::Escalated, vec![Role::Director]));
                prop_assert_eq!(first[1..].to_vec(), expected.clone());
            } else {
                prop_assert_eq!(first, expected.clone());
            }
            prop_assert_eq!(events(&b.due_timers(&routes, 360_000)), expected);
        }
    }
}
