//! What happens after a failed send: the retry stage apart from the
//! channels (like Alertmanager's notifier/retrier split), so the policy is
//! pure and tested on its own. Channels only say what the receiver answered
//! ([`SendError`]: retryable or final); this decides retry, next channel or stop.

use crate::channels::SendError;
use crate::util::Backoff;
use std::time::Duration;

/// The decision after one failed try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try the same channel again after this wait.
    Retry(Duration),
    /// Move the recipient to its role's next channel now.
    NextChannel,
    /// Stop: a final refusal and no other channel (the delivery is `failed`).
    GiveUp,
}

/// `[channels] max_attempts` and the backoff between tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries on one channel before moving on (at least 1).
    pub max_attempts: u32,
    /// Voice: calls in all and the wait between them when a call was not
    /// answered (the failure codes `no_answer` and `busy`).
    pub unanswered: Option<(u32, Duration)>,
}

/// The failure codes of a call nobody answered (see `channels::voice`).
pub const UNANSWERED: [&str; 2] = ["no_answer", "busy"];

impl RetryPolicy {
    /// A policy; `max_attempts` below 1 is taken as 1 (the config refuses 0).
    pub fn new(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            unanswered: None,
        }
    }

    /// A call not answered is made again after `wait`, `calls` times in all,
    /// then the recipient moves on (or, with no other channel, the delivery
    /// fails: the alarm's reminders call again later).
    pub fn with_unanswered(mut self, calls: u32, wait: Duration) -> RetryPolicy {
        self.unanswered = Some((calls.max(1), wait));
        self
    }

    /// After the `tries_here`-th failed try on this channel (1-based):
    /// - a final refusal moves on at once (or gives up when there is nowhere to go);
    /// - a retryable one moves on after `max_attempts` tries;
    /// - with no other channel, a retryable failure is retried for as long as
    ///   it takes (capped backoff): an alarm with one way to reach someone is
    ///   never dropped because the receiver was down for a while.
    pub fn next(&self, err: &SendError, tries_here: u32, has_next_channel: bool) -> Next {
        if let (Some((calls, wait)), Some(code)) = (self.unanswered, err.code.as_deref()) {
            if UNANSWERED.contains(&code) {
                return match (tries_here >= calls, has_next_channel) {
                    (false, _) => Next::Retry(wait),
                    (true, true) => Next::NextChannel,
                    (true, false) => Next::GiveUp,
                };
            }
        }
        match (err.retryable, has_next_channel) {
            (false, true) => Next::NextChannel,
            (false, false) => Next::GiveUp,
            (true, true) if tries_here >= self.max_attempts => Next::NextChannel,
            (true, _) => Next::Retry(Backoff::DISPATCH.delay(tries_here)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retryable() -> SendError {
        SendError::refused("130101", true, "send too fast")
    }

    fn fatal() -> SendError {
        SendError::refused("310000", false, "keywords not in content")
    }

    #[test]
    fn a_final_refusal_moves_on_at_once() {
        let p = RetryPolicy::new(5);
        assert_eq!(p.next(&fatal(), 1, true), Next::NextChannel);
        assert_eq!(p.next(&fatal(), 1, false), Next::GiveUp);
    }

    #[test]
    fn retryable_failures_move_on_after_max_attempts() {
        let p = RetryPolicy::new(5);
        for t in 1..5 {
            assert!(
                matches!(p.next(&retryable(), t, true), Next::Retry(_)),
                "{t}"
            );
        }
        assert_eq!(p.next(&retryable(), 5, true), Next::NextChannel);
        assert_eq!(p.next(&retryable(), 9, true), Next::NextChannel);
        let p = RetryPolicy::new(1);
        assert_eq!(p.next(&retryable(), 1, true), Next::NextChannel);
    }

    #[test]
    fn without_another_channel_retryable_failures_keep_trying() {
        let p = RetryPolicy::new(5);
        for t in [1, 5, 50, u32::MAX] {
            match p.next(&SendError::retryable("timed out"), t, false) {
                Next::Retry(wait) => assert!(wait <= Duration::from_secs(36), "{wait:?}"),
                other => panic!("{t}: {other:?}"),
            }
        }
    }

    #[test]
    fn unanswered_calls_are_made_again_retry_after_apart_then_move_on() {
        let wait = Duration::from_secs(60);
        let p = RetryPolicy::new(5).with_unanswered(3, wait);
        let no_answer = SendError::refused("no_answer", true, "voice: no_answer");
        let busy = SendError::refused("busy", true, "voice: busy");
        assert_eq!(p.next(&no_answer, 1, true), Next::Retry(wait));
        assert_eq!(p.next(&busy, 2, true), Next::Retry(wait));
        assert_eq!(p.next(&no_answer, 3, true), Next::NextChannel);
        assert_eq!(p.next(&no_answer, 3, false), Next::GiveUp);
        // Other failures of the voice channel follow the general policy.
        assert_eq!(p.next(&fatal(), 1, true), Next::NextChannel);
        assert!(matches!(p.next(&retryable(), 1, true), Next::Retry(w) if w < wait));
        // Without the voice setting, the codes mean nothing special.
        assert!(matches!(
            RetryPolicy::new(1).next(&no_answer, 1, false),
            Next::Retry(w) if w < wait
        ));
    }

    #[test]
    fn zero_attempts_is_one() {
        assert_eq!(RetryPolicy::new(0).max_attempts, 1);
    }
}
