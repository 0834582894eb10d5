//! GB/T 26875.3: gridwatch as a user information transmission device
//! (用户信息传输装置, 用传) towards the city fire remote-monitoring centre
//! (城市消防远程监控中心).
//!
//! - The codec is the workspace crate `gb26875` (pure; shared with the centre
//!   simulator of `firmware-sim` and the fuzz target), re-exported here.
//! - [`mapping`] (in `config`, built from the registry): device → component
//!   (部件) table and alarm → component status.
//! - [`link`]: the TCP client. Frames come from the outbox (channel
//!   `gb26875`), written in the same transaction as the alarm change, so
//!   nothing is lost across a centre outage or `kill -9`; an entry leaves the
//!   outbox only after the centre's confirm.
//! - [`LinkState`]: what the API and the duty board show (link, 查岗, clock offset).

pub mod link;

/// The component table lives with the config it is built from (a lower layer).
pub use crate::config::gb26875::mapping;

pub use gb26875::{adu, frame};

use crate::model::EpochMs;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// How long a 查岗 waits for an answer when the centre does not say
/// (GB 26875.1: the prompt stays for 10 min).
pub const INSPECTION_WINDOW_MS: EpochMs = 10 * 60 * 1000;

/// One 查岗 (inspection) from the centre. Kept in the store (record
/// [`INSPECTIONS_RECORD`]), so an unanswered one is still on the board after
/// a restart, with its deadline, and `gridwatch report` can list it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Inspection {
    /// The centre's frame serial, for logs.
    pub serial: u16,
    pub received_at: EpochMs,
    /// When the centre stops waiting for 查岗应答.
    pub deadline: EpochMs,
    /// When a person answered (the type-24 frame was queued).
    pub answered_at: Option<EpochMs>,
    pub answered_by: Option<String>,
    /// When the centre confirmed the answer.
    pub confirmed_at: Option<EpochMs>,
    /// Set once the window passed with no answer (and the audit trail says so).
    #[serde(default)]
    pub unanswered: bool,
}

/// What the link tells the API and the board.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Snapshot {
    pub configured: bool,
    pub link_up: bool,
    pub centre: String,
    pub pending: usize,
    pub last_error: Option<String>,
    /// The centre's clock minus ours at its last time sync, seconds.
    pub clock_offset_s: Option<i64>,
    /// Most recent first, at most [`KEEP_INSPECTIONS`].
    pub inspections: Vec<Inspection>,
}

/// Inspections kept for the board and the report.
pub const KEEP_INSPECTIONS: usize = 50;

/// The store record holding the recent inspections, newest first.
pub const INSPECTIONS_RECORD: &str = "gb26875_inspections";

/// The stored inspections, newest first; empty (with an ERROR) when the
/// record cannot be read, so a damaged record never stops the link.
pub fn stored_inspections(store: &crate::store::Store) -> Vec<Inspection> {
    match store.record::<Vec<Inspection>>(INSPECTIONS_RECORD) {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the stored 查岗 list; starting with none");
            Vec::new()
        }
    }
}

/// A person's 查岗应答 on its way to the link.
#[derive(Debug, Clone)]
pub struct Answer {
    pub by: String,
    /// Operator number in the type-24 object.
    pub operator: u8,
}

/// Shared between the link task and the HTTP API; cheap to clone.
#[derive(Clone)]
pub struct LinkState {
    inner: Arc<Mutex<Snapshot>>,
    answers: Option<mpsc::Sender<Answer>>,
}

/// Why a 查岗应答 was not taken.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AnswerError {
    #[error("no [gb26875] monitoring centre is configured")]
    NotConfigured,
    #[error("no 查岗 from the monitoring centre is waiting for an answer")]
    NothingToAnswer,
    #[error("the link to the monitoring centre is stopped")]
    Stopped,
}

impl LinkState {
    /// State of a gateway without `[gb26875]`.
    pub fn disabled() -> LinkState {
        LinkState {
            inner: Arc::new(Mutex::new(Snapshot::default())),
            answers: None,
        }
    }

    /// State of a configured link and the receiving end of board answers.
    pub fn new(centre: String) -> (LinkState, mpsc::Receiver<Answer>) {
        let (tx, rx) = mpsc::channel(16);
        let s = LinkState {
            inner: Arc::new(Mutex::new(Snapshot {
                configured: true,
                centre,
                ..Snapshot::default()
            })),
            answers: Some(tx),
        };
        (s, rx)
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> Snapshot {
        match self.inner.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        match self.inner.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// Answers the open 查岗 on behalf of `by` (a duty officer or director).
    pub async fn answer(&self, by: &str, now: EpochMs) -> Result<(), AnswerError> {
        let tx = self.answers.as_ref().ok_or(AnswerError::NotConfigured)?;
        let open = self
            .snapshot()
            .inspections
            .iter()
            .any(|i| i.answered_at.is_none() && i.deadline > now);
        if !open {
            return Err(AnswerError::NothingToAnswer);
        }
        tx.send(Answer {
            by: by.to_string(),
            operator: 1,
        })
        .await
        .map_err(|_| AnswerError::Stopped)
    }
}
