//! Per-recipient rate limit, so a flapping sensor cannot send a resident a
//! hundred SMS. It never holds back what must arrive: the first `alarm.raised`
//! of an alarm, an escalation, or the all-clear. Machine channels (webhooks to
//! a fire-station system, broker events) are not limited.

use crate::config::RateLimit;
use crate::model::{ChannelKind, EpochMs, EventKind};
use std::collections::{HashMap, VecDeque};

/// Bounded memory: recipients beyond this are forgotten oldest-first.
const MAX_TRACKED: usize = 10_000;

/// Sliding-window counts of what each person was sent.
#[derive(Debug, Default)]
pub struct Limiter {
    sent: HashMap<String, VecDeque<EpochMs>>,
}

/// Whether an event to a person is exempt from the limit.
pub fn exempt(event: EventKind, first_raise: bool, channel: ChannelKind) -> bool {
    channel.is_machine()
        || channel == ChannelKind::Webhook
        || matches!(event, EventKind::Escalated | EventKind::Resolved)
        || (event == EventKind::Raised && first_raise)
}

impl Limiter {
    /// Records a send to `who` at `now` if within the limit (or exempt); false = suppress.
    pub fn allow(&mut self, limit: &RateLimit, who: &str, now: EpochMs, exempt: bool) -> bool {
        if self.sent.len() >= MAX_TRACKED && !self.sent.contains_key(who) {
            let window = limit.per.as_ms();
            self.sent
                .retain(|_, q| q.back().is_some_and(|t| now - *t < window));
        }
        let q = self.sent.entry(who.to_string()).or_default();
        while q.front().is_some_and(|t| now - *t >= limit.per.as_ms()) {
            q.pop_front();
        }
        if !exempt && q.len() >= limit.max as usize {
            return false;
        }
        q.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dur;

    fn limit() -> RateLimit {
        RateLimit {
            max: 3,
            per: Dur::from_secs(600),
        }
    }

    #[test]
    fn a_flapping_sensor_is_held_to_the_limit_per_window() {
        let mut l = Limiter::default();
        let allowed = (0..100)
            .filter(|i| l.allow(&limit(), "+86138", i * 1000, false))
            .count();
        assert_eq!(allowed, 3);
        assert!(l.allow(&limit(), "+86138", 600_000, false), "window slides");
        assert!(l.allow(&limit(), "other", 1000, false), "per recipient");
    }

    #[test]
    fn first_alarms_escalations_and_all_clears_always_pass() {
        let mut l = Limiter::default();
        for i in 0..10 {
            assert!(l.allow(&limit(), "p", i, true));
        }
        assert!(!l.allow(&limit(), "p", 11, false));
        assert!(exempt(EventKind::Raised, true, ChannelKind::Sms));
        assert!(!exempt(EventKind::Raised, false, ChannelKind::Sms));
        assert!(!exempt(EventKind::Reminder, false, ChannelKind::Sms));
        assert!(exempt(EventKind::Escalated, false, ChannelKind::Sms));
        assert!(exempt(EventKind::Resolved, false, ChannelKind::Email));
        assert!(exempt(EventKind::Reminder, false, ChannelKind::Webhook));
    }
}
