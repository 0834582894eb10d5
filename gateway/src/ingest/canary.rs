//! The ingress canary: proof, every `[selfwatch] canary`, that a device can
//! still get a message into gridwatch. gridwatch's own MQTT connection is
//! older than most broker failures (a poisoned listener keeps old
//! connections and drops new ones), so only a *fresh* client on the listener
//! devices use can tell. Each probe connects such a client, publishes a
//! random nonce on [`TOPIC`], and waits until the uplink handler has seen
//! that nonce (the [`Tap`]). Two failed probes in a row make the `broker`
//! stage unhealthy: `/readyz` 503, no watchdog keep-alive,
//! `gridwatch_canary_failures_total`, alert `GridwatchIngestDeaf`.
//!
//! The same tap proves at start that gridwatch's own subscription exists
//! before the device listeners open ([`wait_subscribed`]).

use crate::metrics::Metrics;
use crate::net::Endpoint;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// The canary's topic: under `sensors/#` so it takes the path of every
/// uplink. The handler recognises it first: a canary message is never a
/// reading, and a stranger publishing here cannot pass a probe without its
/// random nonce.
pub const TOPIC: &str = "sensors/_gridwatch/canary";

/// Nonces longer than this are not ours (and are not looked up).
const MAX_NONCE: usize = 64;

/// Where probes wait for their nonce to come out of the uplink handler.
#[derive(Clone, Default)]
pub struct Tap {
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>,
}

impl Tap {
    /// Registers `nonce`; the receiver completes when the handler sees it.
    fn expect(&self, nonce: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(nonce.to_string(), tx);
        }
        rx
    }

    fn forget(&self, nonce: &str) {
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(nonce);
        }
    }

    /// Called by the uplink handler with the payload of a message on [`TOPIC`].
    pub fn seen(&self, payload: &[u8]) {
        if payload.len() > MAX_NONCE {
            return;
        }
        let Ok(nonce) = std::str::from_utf8(payload) else {
            return;
        };
        let waiter = self.waiting.lock().ok().and_then(|mut w| w.remove(nonce));
        if let Some(tx) = waiter {
            let _ = tx.send(());
        }
    }
}

fn nonce() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How far a failed probe got, for `/readyz` and the log.
fn failure(stage: &str, detail: impl std::fmt::Display) -> String {
    format!("canary: {stage}: {detail}")
}

/// One probe: a fresh client (clean session, its own id) connects to `ep`,
/// publishes a nonce QoS 1, and the nonce must reach the handler's `tap`
/// within `timeout`. `Err` says which step failed.
pub async fn probe(ep: &Endpoint, tap: &Tap, timeout: Duration) -> Result<(), String> {
    let nonce = nonce();
    let mut seen = tap.expect(&nonce);
    let mut o = MqttOptions::new(
        format!("gridwatch-canary-{}", &nonce[..12]),
        ep.host.clone(),
        ep.port,
    );
    o.set_clean_session(true);
    o.set_keep_alive(Duration::from_secs(5));
    if let Some((u, p)) = &ep.credentials {
        o.set_credentials(u.clone(), p.clone());
    }
    let (client, mut el) = AsyncClient::new(o, 4);
    let mut step = "no CONNACK";
    let outcome = tokio::time::timeout(timeout, async {
        loop {
            tokio::select! {
                ev = el.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        if ack.code != ConnectReturnCode::Success {
                            return Err(failure("connect refused", format!("{:?}", ack.code)));
                        }
                        client
                            .try_publish(TOPIC, QoS::AtLeastOnce, false, nonce.clone().into_bytes())
                            .map_err(|e| failure("publish", e))?;
                        step = "no PUBACK";
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        step = "acknowledged by the broker but not seen in ingest";
                    }
                    Ok(_) => {}
                    Err(e) => return Err(failure(step, format!("connection failed: {e}"))),
                },
                r = &mut seen => {
                    return r.map_err(|_| failure(step, "tap closed"));
                }
            }
        }
    })
    .await;
    tap.forget(&nonce);
    let _ = client.try_disconnect();
    // Let the DISCONNECT go out; a closed socket is fine too.
    let _ = tokio::time::timeout(Duration::from_millis(100), el.poll()).await;
    match outcome {
        Ok(r) => r,
        Err(_) => Err(failure(step, format!("within {} ms", timeout.as_millis()))),
    }
}

/// Probes `ep` every `every` forever. After a failure the confirming probe
/// runs at once, so a failure is reported within `every + 2 × timeout` (20 s
/// with the defaults). Publishes `Some(reason)` on `state` after two failures
/// in a row, `None` after a success.
pub async fn run(
    ep: Endpoint,
    tap: Tap,
    every: Duration,
    timeout: Duration,
    state: watch::Sender<Option<String>>,
    metrics: Arc<Metrics>,
) {
    let mut failed_in_a_row: u32 = 0;
    loop {
        let wait = if failed_in_a_row == 1 {
            Duration::ZERO
        } else {
            every
        };
        tokio::time::sleep(wait).await;
        match probe(&ep, &tap, timeout).await {
            Ok(()) => {
                if failed_in_a_row >= 2 {
                    tracing::info!("ingress canary passes again: devices reach ingest");
                }
                failed_in_a_row = 0;
                state.send_replace(None);
            }
            Err(reason) => {
                metrics.canary_failures_total.inc();
                failed_in_a_row = failed_in_a_row.saturating_add(1);
                if failed_in_a_row >= 2 {
                    if state.borrow().is_none() {
                        tracing::error!(%reason, "INGRESS DEAF: a fresh MQTT client cannot get a message into gridwatch; devices cannot report (broker stage unhealthy)");
                    }
                    state.send_replace(Some(reason));
                } else {
                    tracing::warn!(%reason, "ingress canary probe failed; probing again at once");
                }
            }
        }
    }
}

/// At start: publishes nonces on [`TOPIC`] through gridwatch's own `client`
/// until one comes back through its subscription, which proves the
/// subscription exists. Retries every 200 ms (a publish that arrives before
/// the SUBSCRIBE is dropped by the broker).
pub async fn wait_subscribed(client: &AsyncClient, tap: &Tap) {
    let mut attempts: u32 = 0;
    loop {
        let nonce = nonce();
        let seen = tap.expect(&nonce);
        if client
            .publish(TOPIC, QoS::AtMostOnce, false, nonce.clone().into_bytes())
            .await
            .is_err()
        {
            tap.forget(&nonce);
            return; // the event loop is gone; its supervisor reports it
        }
        let ok = tokio::time::timeout(Duration::from_millis(200), seen).await;
        tap.forget(&nonce);
        if matches!(ok, Ok(Ok(()))) {
            return;
        }
        attempts = attempts.saturating_add(1);
        if attempts % 50 == 0 {
            tracing::warn!(
                attempts,
                "gridwatch's own subscription not confirmed yet: device listeners stay closed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_tap_completes_only_its_own_nonce() {
        let tap = Tap::default();
        let mut rx = tap.expect("abc");
        tap.seen(b"abd");
        tap.seen(&[0xff, 0xfe]);
        tap.seen(&[b'a'; 100]);
        assert!(rx.try_recv().is_err(), "a wrong nonce passes nothing");
        tap.seen(b"abc");
        assert!(rx.await.is_ok());
        tap.seen(b"abc"); // seen twice: harmless
        assert!(tap.waiting.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_probe_against_nothing_fails_with_the_step() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let ep = Endpoint {
            host: "127.0.0.1".into(),
            port,
            credentials: None,
        };
        let err = probe(&ep, &Tap::default(), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(err.starts_with("canary: no CONNACK"), "{err}");
    }
}
