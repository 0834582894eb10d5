//! The box side of district commands: checks each command from
//! `gridwatch/{site}/commands` (signature, time window, nonce) and hands it to
//! the alarms stage, the one owner of alarm state, as a person's action
//! "via district room". Every refusal is counted and logged.

use super::command::{self, Action, Refusal};
use crate::alarms::{ActionError, Command};
use crate::metrics::Metrics;
use crate::model::{now_ms, Cause, Role};
use crate::store::Store;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// What the timeline says of an action that came from the district.
pub const VIA: &str = "via district room (区级值班室)";

/// Checks and applies commands for one site.
pub struct Inbox {
    pub site: String,
    pub key: Vec<u8>,
    pub store: Store,
    pub alarms: mpsc::Sender<Command>,
    pub metrics: Arc<Metrics>,
}

impl Inbox {
    /// Applies commands until the upstream session goes away.
    pub async fn run(self, mut rx: mpsc::Receiver<Vec<u8>>) {
        while let Some(payload) = rx.recv().await {
            let outcome = self.handle(&payload).await;
            let label = match &outcome {
                Ok(()) => "applied",
                Err(r) => r.reason(),
            };
            self.metrics
                .district_commands_total
                .with_label_values(&[label])
                .inc();
            if let Err(r) = outcome {
                tracing::warn!(site = %self.site, refused = %r, "district command refused");
            }
        }
    }

    async fn handle(&self, payload: &[u8]) -> Result<(), Refusal> {
        let c = command::parse(payload)?;
        let now = now_ms();
        command::verify(&self.key, &self.site, &c, now)?;
        // After the signature: a forger cannot burn nonces.
        let fresh = self
            .store
            .claim_nonce(
                &self.site,
                &c.nonce,
                c.ts,
                now - command::MAX_AGE_MS - command::MAX_AHEAD_MS,
            )
            .map_err(|e| Refusal::Rejected(format!("store: {e}")))?;
        if !fresh {
            return Err(Refusal::Replayed(c.nonce));
        }
        let note = Some(match &c.note {
            Some(n) if !n.trim().is_empty() => format!("{VIA}: {n}"),
            _ => VIA.to_string(),
        });
        let (reply, answer) = oneshot::channel();
        let cmd = match c.cmd {
            Action::Ack => {
                let role = Role::parse(&c.role)
                    .ok_or_else(|| Refusal::Malformed(format!("unknown role {:?}", c.role)))?;
                Command::Ack {
                    id: c.alarm_id.clone(),
                    by: c.by.clone(),
                    role: Some(role),
                    note,
                    reply,
                }
            }
            Action::Resolve => {
                let cause: Cause =
                    c.cause
                        .as_deref()
                        .and_then(Cause::from_name)
                        .ok_or_else(|| {
                            Refusal::Malformed(format!(
                                "resolve needs a known cause, got {:?}",
                                c.cause
                            ))
                        })?;
                Command::Resolve {
                    id: c.alarm_id.clone(),
                    by: c.by.clone(),
                    cause,
                    note,
                    reply,
                }
            }
            Action::Verify => Command::Verify {
                id: c.alarm_id.clone(),
                by: c.by.clone(),
                note,
                reply,
            },
        };
        self.alarms
            .send(cmd)
            .await
            .map_err(|_| Refusal::Rejected("alarms stage stopped".into()))?;
        match answer.await {
            Ok(Ok(_)) => {
                tracing::info!(site = %self.site, alarm = %c.alarm_id, cmd = c.cmd.as_str(), role = %c.role, "district command applied");
                Ok(())
            }
            Ok(Err(ActionError::NotFound(id))) => Err(Refusal::UnknownAlarm(id)),
            Ok(Err(e)) => Err(Refusal::Rejected(e.to_string())),
            Err(_) => Err(Refusal::Rejected("alarms stage dropped the command".into())),
        }
    }
}
