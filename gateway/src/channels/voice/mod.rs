//! The voice channel: a phone call that reads the SMS text aloud and ends
//! with "按1确认", through one of three backends behind this one channel:
//! the box's own modem, Aliyun 语音服务 (SingleCallByTts, [`aliyun`]) or any
//! HTTP voice gateway ([`template`]).
//!
//! One send is one call. Placing it ([`VoiceChannel::place`]) is quick and
//! holds a sender slot; waiting for its outcome ([`VoiceChannel::outcome`])
//! does not: the modem queues calls itself, and a cloud call's result comes
//! by callback (`api::voice`) or by polling the provider. A call that is
//! not answered (busy, no answer) is a retryable failure with code
//! `no_answer`/`busy`: the dispatch retry policy calls again `retries` times
//! `retry_after` apart, then moves the recipient to their role's next
//! channel. Calls to one number are paced by `per_callee_interval` (the
//! provider's flow control), retries included ([`CallBook::reserve`]).
//!
//! Every call's outcome, and a key pressed, is reported to the alarms stage
//! (the owner of alarm state), which writes it on the timeline and turns
//! key 1 / key 2 into an ack.
//!
//! A cloud call is written to the store (`voice_calls`) before its request
//! and removed once its outcome is handed back, so after a kill -9 the
//! resumed delivery waits for (or polls) the call already made, with the same
//! delivery id, instead of ringing again.

pub mod aliyun;
pub mod template;

use super::http::{exchange, parse_url};
use super::modem::at::{CallOutcome, Speech};
use super::modem::Modem;
use super::number::{self, NumberKind};
use super::{render, ChannelError, SendError};
use crate::config::{VoiceBackend, VoiceConfig};
use crate::model::{now_ms, EpochMs, Role};
use crate::notification::Notification;
use crate::store::Store;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

/// One call's result, for the alarm's timeline and the ack by key.
#[derive(Debug, Clone, PartialEq)]
pub struct CallReport {
    pub alarm_id: String,
    pub delivery_id: String,
    pub contact_id: String,
    pub role: Role,
    pub name: String,
    /// `modem`, `aliyun` or `template` (a metric label).
    pub backend: &'static str,
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

/// A cloud call as the store keeps it until its outcome is settled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacedCall {
    pub delivery_id: String,
    /// The provider's id (Aliyun `CallId`); empty while the request is out.
    /// After a restart such a call's receipt is still awaited for
    /// `callback_wait`; without one it is placed again.
    pub call_id: String,
    /// 1-based call number of the delivery.
    pub attempt: u32,
    pub placed_at: EpochMs,
    /// Set by the callback when the result came before anyone asked.
    #[serde(default)]
    pub result: Option<Settled>,
}

/// A call's outcome in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settled {
    /// `answered`, `no_answer`, `busy`, `failed`.
    pub outcome: String,
    #[serde(default)]
    pub key: Option<char>,
    #[serde(default)]
    pub reason: Option<String>,
}

impl Settled {
    pub fn new(o: &CallOutcome) -> Settled {
        Settled {
            outcome: o.as_str().to_string(),
            key: match o {
                CallOutcome::Answered { key } => *key,
                _ => None,
            },
            reason: match o {
                CallOutcome::Failed(r) => Some(r.clone()),
                _ => None,
            },
        }
    }

    pub fn outcome(&self) -> CallOutcome {
        match self.outcome.as_str() {
            "answered" => CallOutcome::Answered { key: self.key },
            "no_answer" => CallOutcome::NoAnswer,
            "busy" => CallOutcome::Busy,
            _ => CallOutcome::Failed(self.reason.clone().unwrap_or_default()),
        }
    }
}

/// What a callback did with a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Stored for its waiting delivery.
    Settled,
    /// No call of ours is waiting for this delivery id (late or duplicate).
    Unknown,
    /// The delivery waits for another call (a receipt of an earlier one).
    Stale,
}

/// The callback side of the voice channel, shared with the HTTP API: who
/// may post results, where they go, and the per-callee pace.
#[derive(Clone, Default)]
pub struct CallBook {
    inner: Arc<BookInner>,
}

#[derive(Default)]
struct BookInner {
    backend: Option<VoiceBackend>,
    store: OnceLock<Store>,
    settled: Notify,
    /// Callee → the time its last call was reserved for.
    pace: Mutex<HashMap<String, Instant>>,
    interval: Duration,
    /// `aliyun`: the token in the callback URL.
    token: Option<String>,
    /// `template`: the callback's signature or bearer secret.
    auth: Option<template::CallbackAuth>,
    /// Read-modify-write of one call record (callback and placement race).
    records: Mutex<()>,
    /// Writes of call records so far, and the last count known on disk.
    written: std::sync::atomic::AtomicU64,
    flushed: tokio::sync::Mutex<u64>,
}

/// Callees remembered for pacing before old entries are dropped.
const PACE_KEYS: usize = 4096;

impl CallBook {
    fn new(
        backend: VoiceBackend,
        interval: Duration,
        token: Option<String>,
        auth: Option<template::CallbackAuth>,
    ) -> CallBook {
        CallBook {
            inner: Arc::new(BookInner {
                backend: Some(backend),
                interval,
                token,
                auth,
                ..Default::default()
            }),
        }
    }

    /// The configured backend, `None` without `[channels.voice]`.
    pub fn backend(&self) -> Option<VoiceBackend> {
        self.inner.backend
    }

    /// Results are kept in `store` (set once, at start).
    pub(super) fn attach(&self, store: Store) {
        let _ = self.inner.store.set(store);
    }

    fn store(&self) -> Option<&Store> {
        self.inner.store.get()
    }

    /// Writes a call record and waits until it is on disk. Flushes go one
    /// at a time and each covers every write before it (group commit): many
    /// concurrent sled flushes can starve sled's own I/O threads and stall
    /// the whole store.
    async fn keep(&self, store: &Store, call: &PlacedCall) -> Result<(), crate::store::StoreError> {
        // A result the callback stored meanwhile is kept (a fast receipt
        // can arrive before the placement writes its call id).
        self.update(store, &call.delivery_id, |cur| {
            let mut call = call.clone();
            if let Some(cur) = cur {
                call.result = call.result.or(cur.result);
            }
            Some(call)
        })?;
        self.flush(store).await
    }

    /// Changes one call record under the record lock; `f` gets the current
    /// record and returns the one to write (`None`: leave it).
    fn update(
        &self,
        store: &Store,
        delivery_id: &str,
        f: impl FnOnce(Option<PlacedCall>) -> Option<PlacedCall>,
    ) -> Result<bool, crate::store::StoreError> {
        let _guard = match self.inner.records.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let cur = store.voice_call::<PlacedCall>(delivery_id)?;
        match f(cur) {
            Some(new) => {
                store.put_voice_call(&new.delivery_id, &new)?;
                self.inner
                    .written
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn flush(&self, store: &Store) -> Result<(), crate::store::StoreError> {
        use std::sync::atomic::Ordering;
        let mine = self.inner.written.load(Ordering::SeqCst);
        let mut flushed = self.inner.flushed.lock().await;
        if *flushed >= mine {
            return Ok(());
        }
        let upto = self.inner.written.load(Ordering::SeqCst);
        store.flush().await?;
        *flushed = upto;
        Ok(())
    }

    /// Whether an Aliyun push carries our callback token (constant time).
    pub fn aliyun_token_ok(&self, presented: Option<&str>) -> bool {
        match (&self.inner.token, presented) {
            (Some(want), Some(got)) => {
                crate::util::constant_time_eq(want.as_bytes(), got.as_bytes())
            }
            _ => false,
        }
    }

    /// Whether a template callback is authentic (see [`template::CallbackAuth`]).
    pub fn template_auth_ok(
        &self,
        header: &dyn Fn(&str) -> Option<String>,
        body: &str,
        now_s: i64,
    ) -> bool {
        self.inner
            .auth
            .as_ref()
            .is_some_and(|a| a.verify(header, body, now_s))
    }

    /// Stores a call's result for its delivery and wakes the waiting send.
    /// `call_id`, when given, must be the one the delivery waits for.
    pub async fn settle(
        &self,
        delivery_id: &str,
        call_id: Option<&str>,
        outcome: &CallOutcome,
    ) -> Result<Settle, crate::store::StoreError> {
        let Some(store) = self.store() else {
            return Ok(Settle::Unknown);
        };
        let mut verdict = Settle::Unknown;
        self.update(store, delivery_id, |cur| {
            let mut call = cur?;
            if let Some(id) = call_id {
                if !call.call_id.is_empty() && !id.is_empty() && call.call_id != id {
                    verdict = Settle::Stale;
                    return None;
                }
            }
            call.result = Some(Settled::new(outcome));
            verdict = Settle::Settled;
            Some(call)
        })?;
        if verdict != Settle::Settled {
            return Ok(verdict);
        }
        self.flush(store).await?;
        self.inner.settled.notify_waiters();
        Ok(Settle::Settled)
    }

    /// Reserves the next call slot for `callee` and returns how long to
    /// wait for it: calls to one number are at least the interval apart, so
    /// a retry due earlier waits (it is never dropped).
    pub fn reserve(&self, callee: &str, now: Instant) -> Duration {
        let interval = self.inner.interval;
        let mut pace = match self.inner.pace.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        if pace.len() >= PACE_KEYS {
            pace.retain(|_, t| *t + interval > now);
        }
        let slot = match pace.get(callee) {
            Some(last) if *last + interval > now => *last + interval,
            _ => now,
        };
        pace.insert(callee.to_string(), slot);
        slot - now
    }

    /// The provider answered a call request to `callee` at `at`: the next
    /// call is paced from then, not from the reservation, because the
    /// provider counts from when it received the request.
    pub fn answered(&self, callee: &str, at: Instant) {
        let mut pace = match self.inner.pace.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        let last = pace.entry(callee.to_string()).or_insert(at);
        if *last < at {
            *last = at;
        }
    }
}

/// The configured voice backend.
pub(super) struct VoiceChannel {
    backend: Backend,
    retries: u32,
    retry_after: Duration,
    play_times: u32,
    callback_wait: Duration,
    timeout: Duration,
    reports: Option<mpsc::Sender<CallReport>>,
    book: CallBook,
}

enum Backend {
    Modem(Modem),
    Aliyun {
        endpoint: Url,
        key_id: String,
        key_secret: String,
        show_number: String,
        tts_code: String,
        params: BTreeMap<String, String>,
    },
    Template {
        url: Url,
        headers: Vec<(String, String)>,
        env: minijinja::Environment<'static>,
        success: Option<String>,
    },
}

/// A call placed, its outcome still to come.
pub enum Placed {
    /// The modem places and follows the call in one go ([`VoiceChannel::outcome`]).
    Modem,
    /// A cloud call, followed through the store.
    Cloud(PlacedCall),
    /// A cloud call accepted by the provider with no store to follow it
    /// (`gridwatch test-notify`): the provider's acceptance is the answer.
    Unfollowed,
}

impl VoiceChannel {
    /// Builds the backend from `[channels.voice]`; a missing or misplaced key is named.
    pub(super) fn new(
        cfg: &VoiceConfig,
        modem: Option<Modem>,
    ) -> Result<VoiceChannel, ChannelError> {
        let bad = |key: &'static str, reason: &str| ChannelError::Voice {
            key,
            reason: reason.to_string(),
        };
        let need = |key: &'static str, v: &Option<String>| -> Result<String, ChannelError> {
            match v.as_deref().map(str::trim) {
                Some(s) if !s.is_empty() => Ok(s.to_string()),
                _ => Err(bad(key, "is required by this backend")),
            }
        };
        let name = cfg.backend.as_str();
        let unused = |key: &'static str, set: bool| -> Result<(), ChannelError> {
            if set {
                return Err(bad(key, &format!("is not used by backend {name}")));
            }
            Ok(())
        };
        if cfg.play_times == 0 {
            return Err(bad("play_times", "must be at least 1"));
        }
        let cloud_keys = [
            ("endpoint", cfg.endpoint.is_some()),
            ("access_key_id", cfg.access_key_id.is_some()),
            ("access_key_secret", cfg.access_key_secret.is_some()),
            ("called_show_number", cfg.called_show_number.is_some()),
            ("tts_code", cfg.tts_code.is_some()),
            ("params", !cfg.params.is_empty()),
        ];
        let template_keys = [
            ("url", cfg.url.is_some()),
            ("headers", !cfg.headers.is_empty()),
            ("body", cfg.body.is_some()),
            ("success", cfg.success.is_some()),
        ];
        let (backend, token, auth) = match cfg.backend {
            VoiceBackend::Modem => {
                for (k, set) in cloud_keys.into_iter().chain(template_keys) {
                    unused(k, set)?;
                }
                unused("callback_secret", cfg.callback_secret.is_some())?;
                let m = modem.ok_or(ChannelError::NoModem(
                    "[channels.voice] backend = \"modem\"",
                ))?;
                (Backend::Modem(m), None, None)
            }
            VoiceBackend::Aliyun => {
                for (k, set) in template_keys {
                    unused(k, set)?;
                }
                for field in cfg.params.values() {
                    if !render::SMS_FIELDS.contains(&field.as_str()) {
                        return Err(bad(
                            "params",
                            &format!(
                                "{field:?} is not a field; use one of {}",
                                render::SMS_FIELDS.join(", ")
                            ),
                        ));
                    }
                }
                let endpoint = parse_url(cfg.endpoint.as_deref().unwrap_or(aliyun::ENDPOINT))
                    .map_err(|reason| ChannelError::Voice {
                        key: "endpoint",
                        reason,
                    })?;
                let token = match cfg.callback_secret.as_deref().map(str::trim) {
                    Some(t) if t.len() < 16 => {
                        return Err(bad(
                            "callback_secret",
                            "the callback URL's token must be at least 16 characters",
                        ))
                    }
                    Some(t) => Some(t.to_string()),
                    None => None,
                };
                (
                    Backend::Aliyun {
                        endpoint,
                        key_id: need("access_key_id", &cfg.access_key_id)?,
                        key_secret: need("access_key_secret", &cfg.access_key_secret)?,
                        show_number: need("called_show_number", &cfg.called_show_number)?,
                        tts_code: need("tts_code", &cfg.tts_code)?,
                        params: cfg.params.clone(),
                    },
                    token,
                    None,
                )
            }
            VoiceBackend::Template => {
                for (k, set) in cloud_keys {
                    unused(k, set)?;
                }
                let url = parse_url(&need("url", &cfg.url)?)
                    .map_err(|reason| ChannelError::Voice { key: "url", reason })?;
                let body = need("body", &cfg.body)?;
                let json_body = body.trim_start().starts_with(['{', '[']);
                let env = super::sms::template_env(&body, json_body).map_err(|reason| {
                    ChannelError::Voice {
                        key: "body",
                        reason,
                    }
                })?;
                super::sms::probe_body(&env, json_body, &["delivery_id"]).map_err(|reason| {
                    ChannelError::Voice {
                        key: "body",
                        reason,
                    }
                })?;
                let mut headers: Vec<(String, String)> = cfg
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                for (k, v) in &headers {
                    if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                        || reqwest::header::HeaderValue::from_str(v).is_err()
                    {
                        return Err(bad("headers", &format!("{k:?} is not a valid header")));
                    }
                }
                if json_body
                    && !headers
                        .iter()
                        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                {
                    headers.push(("Content-Type".into(), "application/json".into()));
                }
                if let Some(p) = &cfg.success {
                    if !p.is_empty() && !p.starts_with('/') {
                        return Err(bad(
                            "success",
                            "a JSON pointer starts with / (e.g. \"/code\")",
                        ));
                    }
                }
                let secret = need("callback_secret", &cfg.callback_secret)?;
                let auth = template::CallbackAuth::parse(&secret).map_err(|reason| {
                    ChannelError::Voice {
                        key: "callback_secret",
                        reason,
                    }
                })?;
                (
                    Backend::Template {
                        url,
                        headers,
                        env,
                        success: cfg.success.clone(),
                    },
                    None,
                    Some(auth),
                )
            }
        };
        Ok(VoiceChannel {
            backend,
            retries: cfg.retries,
            retry_after: cfg.retry_after.std(),
            play_times: cfg.play_times,
            callback_wait: cfg.callback_wait.std(),
            timeout: cfg.timeout.std(),
            reports: None,
            book: CallBook::new(
                cfg.backend,
                cfg.per_callee_interval.map_or(
                    match cfg.backend {
                        VoiceBackend::Aliyun => aliyun::PER_CALLEE,
                        _ => Duration::ZERO,
                    },
                    |d| d.std(),
                ),
                token,
                auth,
            ),
        })
    }

    pub(super) fn set_reports(&mut self, tx: mpsc::Sender<CallReport>) {
        self.reports = Some(tx);
    }

    pub(super) fn book(&self) -> &CallBook {
        &self.book
    }

    /// `modem`, `aliyun` or `template`.
    pub(super) fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Modem(_) => "modem",
            Backend::Aliyun { .. } => "aliyun",
            Backend::Template { .. } => "template",
        }
    }

    /// Calls a delivery may make in all (1 + retries), and the wait between them.
    pub(super) fn calls(&self) -> (u32, Duration) {
        (self.retries.saturating_add(1), self.retry_after)
    }

    /// Places one call (the `attempt`-th of the delivery). The provider's
    /// refusal is on the timeline as a failed call, with its code.
    pub(super) async fn place(
        &self,
        client: &reqwest::Client,
        n: &Notification,
        attempt: u32,
    ) -> Result<Placed, SendError> {
        let Some(number) = crate::util::number::dialable(&n.address) else {
            return Err(SendError::refused(
                "bad_number",
                false,
                format!(
                    "voice: {:?} is not a phone number",
                    crate::util::mask(&n.address)
                ),
            ));
        };
        if matches!(self.backend, Backend::Modem(_)) {
            return Ok(Placed::Modem);
        }
        let store = self.book.store();
        if let Some(store) = store {
            match store.voice_call::<PlacedCall>(&n.delivery_id) {
                // A call of this delivery is out (placed before a restart):
                // wait for its result rather than ring again. Without a call
                // id the request may or may not have gone out; its callback
                // is still awaited (`await_result`).
                Ok(Some(c)) => {
                    tracing::info!(delivery = %n.delivery_id, attempt = c.attempt, "waiting for the result of the call placed before the restart");
                    return Ok(Placed::Cloud(c));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(delivery = %n.delivery_id, error = %e, "cannot read the voice call record")
                }
            }
        }
        let mut call = PlacedCall {
            delivery_id: n.delivery_id.clone(),
            call_id: String::new(),
            attempt,
            placed_at: now_ms(),
            result: None,
        };
        if let Some(store) = store {
            // Not flushed: lost in a crash, the call is simply placed again.
            if let Err(e) = store.put_voice_call(&call.delivery_id, &call) {
                return Err(SendError::retryable(format!(
                    "voice: cannot record the call: {e}"
                )));
            }
        }
        let result = match &self.backend {
            Backend::Modem(_) => return Ok(Placed::Modem),
            Backend::Aliyun { .. } => self.aliyun_call(client, n, &number).await,
            Backend::Template { .. } => self.template_call(client, n, &number).await,
        };
        self.book.answered(&callee_key(&n.address), Instant::now());
        match result {
            Ok(call_id) => {
                call.call_id = call_id;
                let Some(store) = store else {
                    return Ok(Placed::Unfollowed);
                };
                if let Err(e) = self.book.keep(store, &call).await {
                    // The call is out; its result still lands by callback on the
                    // delivery id, and without a CallId a restart calls again.
                    tracing::error!(delivery = %n.delivery_id, error = %e, "cannot record the call id");
                }
                Ok(Placed::Cloud(call))
            }
            Err(e) => {
                if let Some(store) = store {
                    if let Err(se) = store.remove_voice_call(&n.delivery_id) {
                        tracing::error!(delivery = %n.delivery_id, error = %se, "cannot remove the voice call record");
                    }
                }
                if let Some(code) = &e.code {
                    let o = CallOutcome::Failed(format!("refused {code}"));
                    self.report(n, &o, attempt).await;
                }
                Err(e)
            }
        }
    }

    /// Waits for the outcome of a placed call (no sender slot held) and
    /// turns it into the send's result: answered is sent; busy and no
    /// answer are retryable (`busy`, `no_answer`); a failed call is final.
    pub(super) async fn outcome(
        &self,
        client: &reqwest::Client,
        n: &Notification,
        placed: Placed,
        attempt: u32,
    ) -> Result<(), SendError> {
        let (outcome, attempt) = match placed {
            Placed::Unfollowed => return Ok(()),
            Placed::Modem => {
                let Backend::Modem(modem) = &self.backend else {
                    return Err(SendError::permanent("voice: not a modem backend"));
                };
                let number = crate::util::number::dialable(&n.address).unwrap_or_default();
                let speech = Speech {
                    text: render::voice(n),
                    play_times: self.play_times,
                };
                match modem
                    .call(&number, speech, n.alarm.severity, n.created)
                    .await
                {
                    Ok(o) => (o, attempt),
                    Err(e) => {
                        // The module is gone: this call failed; the next channel takes over.
                        let o = CallOutcome::Failed(e.to_string());
                        self.report(n, &o, attempt).await;
                        return Err(SendError::permanent(format!("voice: {e}")));
                    }
                }
            }
            Placed::Cloud(call) => {
                let o = self.await_result(client, &call).await;
                if let Some(store) = self.book.store() {
                    if let Err(e) = store.remove_voice_call(&call.delivery_id) {
                        tracing::error!(delivery = %call.delivery_id, error = %e, "cannot remove the voice call record");
                    }
                }
                match o {
                    Some(o) => (o, call.attempt),
                    None => return Err(SendError::retryable(
                        "voice: no result for the call requested before the restart; calling again",
                    )),
                }
            }
        };
        self.report(n, &outcome, attempt).await;
        let of = self.calls().0;
        match outcome {
            CallOutcome::Answered { .. } => Ok(()),
            CallOutcome::Failed(reason) => Err(SendError::refused(
                "call_failed",
                false,
                format!("voice: call failed: {reason}"),
            )),
            o => Err(SendError::refused(
                o.as_str(),
                true,
                format!("voice: {} (call {attempt} of {of})", o.as_str()),
            )),
        }
    }

    /// The callback's result, or the provider's answer when none came within
    /// `callback_wait`; a call whose result never shows is failed. `None`:
    /// a request cut off by a restart (no call id) got no result in time, so
    /// it is not known to have rung.
    async fn await_result(
        &self,
        client: &reqwest::Client,
        call: &PlacedCall,
    ) -> Option<CallOutcome> {
        let Some(store) = self.book.store() else {
            return Some(CallOutcome::Failed("no store to follow the call".into()));
        };
        let wait_ms = self.callback_wait.as_millis() as i64;
        let ask_from = call.placed_at + wait_ms;
        let give_up = match self.backend {
            Backend::Aliyun { .. } => call.placed_at + wait_ms.saturating_mul(5),
            _ => ask_from,
        };
        let poll_every =
            (self.callback_wait / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
        loop {
            let notified = self.book.inner.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match store.voice_call::<PlacedCall>(&call.delivery_id) {
                Ok(Some(c)) => {
                    if let Some(s) = c.result {
                        return Some(s.outcome());
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(delivery = %call.delivery_id, error = %e, "cannot read the voice call record")
                }
            }
            let now = now_ms();
            let next = if now >= ask_from {
                if call.call_id.is_empty() {
                    return None;
                }
                if let Backend::Aliyun { .. } = self.backend {
                    match self.aliyun_query(client, call).await {
                        Ok(Some(o)) => return Some(o),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(delivery = %call.delivery_id, error = %e.reason, "asking Aliyun for the call result failed")
                        }
                    }
                }
                if now >= give_up {
                    return Some(CallOutcome::Failed(format!(
                        "no call result within {}s",
                        (now - call.placed_at).max(0) / 1000
                    )));
                }
                poll_every
            } else {
                Duration::from_millis((ask_from - now) as u64)
            };
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(next) => {}
            }
        }
    }

    async fn aliyun_call(
        &self,
        client: &reqwest::Client,
        n: &Notification,
        number: &str,
    ) -> Result<String, SendError> {
        let Backend::Aliyun {
            endpoint,
            key_id,
            key_secret,
            show_number,
            tts_code,
            params,
        } = &self.backend
        else {
            return Err(SendError::permanent("voice: not the aliyun backend"));
        };
        let called = match number::classify(number) {
            NumberKind::Mobile(m) => m,
            NumberKind::Landline | NumberKind::Foreign => {
                number.chars().filter(char::is_ascii_digit).collect()
            }
            NumberKind::Invalid => {
                return Err(SendError::refused(
                    "bad_number",
                    false,
                    format!("voice aliyun: {number:?} is not a phone number"),
                ))
            }
        };
        let fields = render::sms_fields(n, &called);
        let form = aliyun::tts_form(
            &aliyun::Account { key_id, key_secret },
            &aliyun::TtsCall {
                called_number: &called,
                show_number,
                tts_code,
                params,
                fields: &fields,
                play_times: self.play_times,
                out_id: &n.delivery_id,
            },
            &ulid::Ulid::new().to_string(),
            &chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
        let what = "voice aliyun";
        let (status, answer) = exchange(
            client,
            what,
            endpoint,
            &form_headers(),
            form,
            &n.delivery_id,
            self.timeout,
        )
        .await?;
        aliyun::placed(what, status, &answer)
    }

    async fn aliyun_query(
        &self,
        client: &reqwest::Client,
        call: &PlacedCall,
    ) -> Result<Option<CallOutcome>, SendError> {
        let Backend::Aliyun {
            endpoint,
            key_id,
            key_secret,
            ..
        } = &self.backend
        else {
            return Ok(None);
        };
        let form = aliyun::query_form(
            &aliyun::Account { key_id, key_secret },
            &call.call_id,
            call.placed_at,
            &ulid::Ulid::new().to_string(),
            &chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
        let what = "voice aliyun query";
        let (status, answer) = exchange(
            client,
            what,
            endpoint,
            &form_headers(),
            form,
            &call.delivery_id,
            self.timeout,
        )
        .await?;
        aliyun::queried(what, status, &answer)
    }

    async fn template_call(
        &self,
        client: &reqwest::Client,
        n: &Notification,
        number: &str,
    ) -> Result<String, SendError> {
        let Backend::Template {
            url,
            headers,
            env,
            success,
        } = &self.backend
        else {
            return Err(SendError::permanent("voice: not the template backend"));
        };
        let what = "voice template";
        // The gateway gets the number as dialled, the words to speak (no
        // link read aloud) and the delivery id its callback must name.
        let mut fields = render::sms_fields(n, number);
        for (k, v) in fields.iter_mut() {
            if *k == "text" {
                *v = render::voice(n);
            }
        }
        fields.push(("delivery_id", n.delivery_id.clone()));
        let body = super::sms::render_body(env, &fields)
            .map_err(|e| SendError::permanent(format!("{what}: the body template failed: {e}")))?;
        let answer = super::http::post(
            client,
            what,
            url,
            headers,
            body,
            &n.delivery_id,
            self.timeout,
        )
        .await?;
        super::webhook::json_verdict(what, success.as_deref(), &answer)?;
        // The gateway reports by delivery id; its own call id is optional.
        Ok(n.delivery_id.clone())
    }

    async fn report(&self, n: &Notification, outcome: &CallOutcome, attempt: u32) {
        let of = self.calls().0;
        tracing::info!(
            delivery = %n.delivery_id,
            alarm = %n.alarm.id,
            to = %super::mask(&n.address),
            backend = self.backend_name(),
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
            backend: self.backend_name(),
            outcome: outcome.clone(),
            attempt,
            of,
            at: now_ms(),
        };
        // Awaited, not dropped when full: a key-1 ack must not get lost.
        if tx.send(r).await.is_err() {
            tracing::error!(delivery = %n.delivery_id, "call report not delivered: the alarms stage is gone");
        }
    }
}

/// One key per callee whatever the spelling: `+86 138…`, `138…`, `0571-…`.
pub(super) fn callee_key(raw: &str) -> String {
    match number::classify(raw) {
        NumberKind::Mobile(m) => m,
        _ => raw.chars().filter(char::is_ascii_digit).collect(),
    }
}

fn form_headers() -> [(String, String); 1] {
    [(
        "Content-Type".to_string(),
        "application/x-www-form-urlencoded".to_string(),
    )]
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
            backend: "modem",
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

    fn aliyun_cfg() -> VoiceConfig {
        VoiceConfig {
            backend: VoiceBackend::Aliyun,
            retries: 2,
            retry_after: crate::config::Dur::from_secs(60),
            play_times: 2,
            per_callee_interval: None,
            endpoint: None,
            access_key_id: Some("id".into()),
            access_key_secret: Some("secret".into()),
            called_show_number: Some("057188880000".into()),
            tts_code: Some("TTS_1".into()),
            params: [("addr".to_string(), "address".to_string())].into(),
            url: None,
            headers: BTreeMap::new(),
            body: None,
            success: None,
            callback_secret: Some("0123456789abcdef".into()),
            callback_wait: crate::config::Dur::from_secs(120),
            timeout: crate::config::Dur::from_secs(10),
        }
    }

    fn template_cfg() -> VoiceConfig {
        VoiceConfig {
            backend: VoiceBackend::Template,
            access_key_id: None,
            access_key_secret: None,
            called_show_number: None,
            tts_code: None,
            params: BTreeMap::new(),
            url: Some("http://127.0.0.1:9/call".into()),
            body: Some(r#"{"to":"{{phone}}","text":"{{text}}","id":"{{delivery_id}}"}"#.into()),
            callback_secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            ..aliyun_cfg()
        }
    }

    fn key_of(r: Result<VoiceChannel, ChannelError>) -> &'static str {
        match r {
            Err(ChannelError::Voice { key, .. }) => key,
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn backend_keys_are_checked_at_load() {
        let ch = VoiceChannel::new(&aliyun_cfg(), None).unwrap();
        assert_eq!(ch.backend_name(), "aliyun");
        assert_eq!(ch.calls(), (3, Duration::from_secs(60)));
        assert_eq!(
            ch.book().inner.interval,
            aliyun::PER_CALLEE,
            "Aliyun's default"
        );
        let mut c = aliyun_cfg();
        c.tts_code = None;
        assert_eq!(key_of(VoiceChannel::new(&c, None)), "tts_code");
        let mut c = aliyun_cfg();
        c.url = Some("http://x/".into());
        assert_eq!(key_of(VoiceChannel::new(&c, None)), "url");
        let mut c = aliyun_cfg();
        c.params.insert("x".into(), "nosuch".into());
        assert_eq!(key_of(VoiceChannel::new(&c, None)), "params");
        let mut c = aliyun_cfg();
        c.endpoint = Some("ftp://dyvmsapi".into());
        assert_eq!(key_of(VoiceChannel::new(&c, None)), "endpoint");
        let mut c = aliyun_cfg();
        c.callback_secret = Some("short".into());
        assert_eq!(key_of(VoiceChannel::new(&c, None)), "callback_secret");
        let mut c = aliyun_cfg();
        c.play_times = 0;
        assert_eq!(key_of(VoiceChannel::new(&c, None)), "play_times");

        let ch = VoiceChannel::new(&template_cfg(), None).unwrap();
        assert_eq!(ch.backend_name(), "template");
        assert_eq!(ch.book().inner.interval, Duration::ZERO);
        let mut c = template_cfg();
        c.callback_secret = None;
        assert_eq!(key_of(VoiceChannel::new(&c, None)), "callback_secret");
        let mut c = template_cfg();
        c.body = Some(r#"{"text":"{{text}}"}"#.into());
        assert_eq!(key_of(VoiceChannel::new(&c, None)), "body", "no phone");
        let mut c = template_cfg();
        c.url = Some("http://exa mple.org/".into());
        assert_eq!(key_of(VoiceChannel::new(&c, None)), "url");
        let mut c = template_cfg();
        c.tts_code = Some("TTS_1".into());
        assert_eq!(key_of(VoiceChannel::new(&c, None)), "tts_code");

        let mut c = aliyun_cfg();
        c.backend = VoiceBackend::Modem;
        assert_eq!(key_of(VoiceChannel::new(&c, None)), "access_key_id");
        let c = VoiceConfig {
            backend: VoiceBackend::Modem,
            ..template_cfg()
        };
        assert_eq!(key_of(VoiceChannel::new(&c, None)), "url");
    }

    #[test]
    fn calls_to_one_callee_are_paced_and_none_is_dropped() {
        let book = CallBook::new(VoiceBackend::Aliyun, Duration::from_secs(60), None, None);
        let t0 = Instant::now();
        assert_eq!(book.reserve("13800000001", t0), Duration::ZERO);
        // A retry due 10 s later waits for the rest of the minute.
        assert_eq!(
            book.reserve("13800000001", t0 + Duration::from_secs(10)),
            Duration::from_secs(50)
        );
        // Another delivery to the same callee queues behind it.
        assert_eq!(
            book.reserve("13800000001", t0 + Duration::from_secs(10)),
            Duration::from_secs(110)
        );
        assert_eq!(
            book.reserve("13800000004", t0),
            Duration::ZERO,
            "other callees are free"
        );
        // The provider answered that request 2 s after it was reserved: the
        // next call is a full interval after the answer.
        book.answered("13800000004", t0 + Duration::from_secs(2));
        assert_eq!(
            book.reserve("13800000004", t0 + Duration::from_secs(3)),
            Duration::from_secs(59)
        );
        assert_eq!(callee_key("+86 138-0000-0001"), callee_key("13800000001"));
    }

    #[test]
    fn settled_outcomes_round_trip() {
        for o in [
            CallOutcome::Answered { key: Some('2') },
            CallOutcome::Answered { key: None },
            CallOutcome::NoAnswer,
            CallOutcome::Busy,
            CallOutcome::Failed("200011 停机".into()),
        ] {
            assert_eq!(Settled::new(&o).outcome(), o);
        }
    }

    #[tokio::test]
    async fn callbacks_settle_only_the_call_a_delivery_waits_for() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("db")).unwrap();
        let book = CallBook::new(
            VoiceBackend::Aliyun,
            Duration::ZERO,
            Some("0123456789abcdef".into()),
            None,
        );
        let answered = CallOutcome::Answered { key: Some('1') };
        assert_eq!(
            book.settle("d-1", None, &answered).await.unwrap(),
            Settle::Unknown,
            "no store yet"
        );
        book.attach(store.clone());
        assert_eq!(
            book.settle("d-1", Some("c-1"), &answered).await.unwrap(),
            Settle::Unknown
        );
        store
            .put_voice_call(
                "d-1",
                &PlacedCall {
                    delivery_id: "d-1".into(),
                    call_id: "c-1".into(),
                    attempt: 2,
                    placed_at: 0,
                    result: None,
                },
            )
            .unwrap();
        assert_eq!(
            book.settle("d-1", Some("c-0"), &answered).await.unwrap(),
            Settle::Stale
        );
        assert_eq!(
            store
                .voice_call::<PlacedCall>("d-1")
                .unwrap()
                .unwrap()
                .result,
            None
        );
        assert_eq!(
            book.settle("d-1", Some("c-1"), &answered).await.unwrap(),
            Settle::Settled
        );
        assert_eq!(
            store
                .voice_call::<PlacedCall>("d-1")
                .unwrap()
                .unwrap()
                .result
                .unwrap()
                .outcome(),
            answered
        );
        assert!(book.aliyun_token_ok(Some("0123456789abcdef")));
        assert!(!book.aliyun_token_ok(Some("0123456789abcdeg")));
        assert!(!book.aliyun_token_ok(None));
        assert!(!CallBook::default().aliyun_token_ok(Some("")));
    }
}
