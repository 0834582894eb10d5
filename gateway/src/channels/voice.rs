//! The voice channel: a phone call that reads the SMS text aloud and ends
//! with "按1确认". An unanswered or busy call is tried again `retries` times,
//! `retry_after` apart; then the send fails for good so dispatch moves the
//! recipient to their role's next channel at once. Every call's outcome, and
//! a key pressed, is reported to the alarms stage (the owner of alarm state),
//! which writes it on the timeline and turns key 1 / key 2 into an ack.

use super::modem::at::{CallOutcome, Speech};
use super::modem::Modem;
use super::{render, SendError};
use crate::config::VoiceConfig;
use crate::model::{EpochMs, Role};
use crate::notification::Notification;
use std::time::Duration;
use tokio::sync::mpsc;

/// One call's result, for the alarm's timeline and the ack by key.
#[derive(Debug, Clone, PartialEq)]
pub struct CallReport {
    pub alarm_id: String,
    pub delivery_id: String,
    pub contact_id: String,
    pub role: Role,
    pub name: String,
    pub outcome: CallOutcome,
    /// 1-based call number of this delivery.
    pub attempt: u32,
    /// Calls this delivery may make in all (1 + retries).
    pub of: u32,
    pub at: EpochMs,
}

impl CallReport {
    /// The timeline's words: `answered, key 1 (call 1 of 3)`, `no_answer (call 2 of 3)`.
    pub fn detail(&self) -> String {
        let what = match &self.outcome {
            CallOutcome::Answered { key: Some(k) } => format!("answered, key {k}"),
            CallOutcome::Failed(reason) => format!("failed: {reason}"),
            o => o.as_str().to_string(),
        };
        format!("{what} (call {} of {})", self.attempt, self.of)
    }
}

/// The configured voice backend.
pub(super) struct VoiceChannel {
    modem: Modem,
    retries: u32,
    retry_after: Duration,
    play_times: u32,
    reports: Option<mpsc::Sender<CallReport>>,
}

impl VoiceChannel {
    pub(super) fn new(cfg: &VoiceConfig, modem: Modem) -> VoiceChannel {
        VoiceChannel {
            modem,
            retries: cfg.retries,
            retry_after: cfg.retry_after.std(),
            play_times: cfg.play_times,
            reports: None,
        }
    }

    pub(super) fn set_reports(&mut self, tx: mpsc::Sender<CallReport>) {
        self.reports = Some(tx);
    }

    /// Calls until answered or the tries run out.
    pub(super) async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let Some(number) = crate::util::number::dialable(&n.address) else {
            return Err(SendError::permanent(format!(
                "voice: {:?} is not a phone number",
                n.address
            )));
        };
        let speech = Speech {
            text: render::voice(n),
            play_times: self.play_times,
        };
        let of = self.retries + 1;
        let mut last = CallOutcome::NoAnswer;
        for attempt in 1..=of {
            let outcome = match self
                .modem
                .call(&number, speech.clone(), n.alarm.severity, n.created)
                .await
            {
                Ok(o) => o,
                Err(e) => {
                    // The module is gone: this call failed; the next channel takes over.
                    let o = CallOutcome::Failed(e.to_string());
                    self.report(n, &o, attempt, of).await;
                    return Err(SendError::permanent(format!("voice: {e}")));
                }
            };
            self.report(n, &outcome, attempt, of).await;
            match outcome {
                CallOutcome::Answered { .. } => return Ok(()),
                CallOutcome::Failed(reason) => {
                    return Err(SendError::permanent(format!(
                        "voice: call failed: {reason}"
                    )))
                }
                o => last = o,
            }
            if attempt < of {
                tokio::time::sleep(self.retry_after).await;
            }
        }
        Err(SendError::permanent(format!(
            "voice: {} after {of} call(s)",
            last.as_str()
        )))
    }

    async fn report(&self, n: &Notification, outcome: &CallOutcome, attempt: u32, of: u32) {
        tracing::info!(
            delivery = %n.delivery_id,
            alarm = %n.alarm.id,
            to = %super::mask(&n.address),
            outcome = outcome.as_str(),
            attempt,
            "call ended"
        );
        let Some(tx) = &self.reports else { return };
        let r = CallReport {
            alarm_id: n.alarm.id.clone(),
            delivery_id: n.delivery_id.clone(),
            contact_id: n.recipient.contact_id.clone(),
            role: n.recipient.role,
            name: n.recipient.name.clone(),
            outcome: outcome.clone(),
            attempt,
            of,
            at: crate::model::now_ms(),
        };
        // Awaited, not dropped when full: a key-1 ack must not get lost.
        if tx.send(r).await.is_err() {
            tracing::error!(delivery = %n.delivery_id, "call report not delivered: the alarms stage is gone");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_detail_says_outcome_key_and_attempt() {
        let mut r = CallReport {
            alarm_id: "a".into(),
            delivery_id: "d".into(),
            contact_id: "h.r1".into(),
            role: Role::Resident,
            name: "张奶奶".into(),
            outcome: CallOutcome::Answered { key: Some('1') },
            attempt: 1,
            of: 3,
            at: 0,
        };
        assert_eq!(r.detail(), "answered, key 1 (call 1 of 3)");
        r.outcome = CallOutcome::NoAnswer;
        r.attempt = 2;
        assert_eq!(r.detail(), "no_answer (call 2 of 3)");
    }
}
