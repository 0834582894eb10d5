//! A QoS 1 publisher over rumqttc that knows how many of its publishes the
//! broker has acknowledged, fails fast when no broker is there, and keeps
//! unacknowledged publishes across a dropped connection.

use rand::Rng;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, Request,
};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// `--mqtt` is not `HOST:PORT`.
    #[error("invalid --mqtt address {0:?}: expected HOST:PORT, e.g. 127.0.0.1:1883")]
    BadAddress(String),
    /// No broker answered within the connect window.
    #[error("cannot connect to MQTT broker at {addr} within {secs}s: {source}")]
    Connect {
        addr: String,
        secs: u64,
        source: Box<ConnectionError>,
    },
    /// The connection dropped and did not come back within the reconnect window.
    #[error("lost the MQTT broker at {addr} and could not reconnect within {secs}s: {last}")]
    Lost {
        addr: String,
        secs: u64,
        last: String,
    },
    /// The event loop is gone, so the request could not be queued.
    #[error("MQTT client closed: {0}")]
    Closed(String),
    /// Not every publish was acknowledged before the deadline.
    #[error("{missing} of {published} publishes not acknowledged by the broker within {secs}s")]
    Unacked {
        missing: u64,
        published: u64,
        secs: u64,
    },
}

/// A broker address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
}

impl BrokerAddr {
    /// Parses `HOST:PORT`.
    pub fn parse(s: &str) -> Result<BrokerAddr, MqttError> {
        let bad = || MqttError::BadAddress(s.to_string());
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        Ok(BrokerAddr {
            host: host.trim_matches(|c| c == '[' || c == ']').to_string(),
            port,
        })
    }
}

impl std::fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// How a publisher connects.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    pub client_id: String,
    /// Unacknowledged QoS 1 publishes allowed on the wire.
    pub inflight: u16,
    /// Requests queued between the caller and the event loop.
    pub queue: usize,
    /// How long the first connect may take (retries included) before giving up.
    pub connect_window: Duration,
    /// How long a dropped connection may stay down before giving up.
    pub reconnect_window: Duration,
}

impl PublisherConfig {
    /// Defaults for a client id: 100 in flight, 3 s to connect, 30 s to reconnect.
    pub fn new(client_id: impl Into<String>) -> PublisherConfig {
        PublisherConfig {
            client_id: client_id.into(),
            inflight: 100,
            queue: 100,
            connect_window: Duration::from_secs(3),
            reconnect_window: Duration::from_secs(30),
        }
    }
}

#[derive(Default)]
struct Shared {
    published: AtomicU64,
    acked: AtomicU64,
    stopping: AtomicBool,
    acks: Notify,
}

/// A connected QoS 1 publisher; its event loop runs in its own task.
pub struct Publisher {
    client: AsyncClient,
    shared: Arc<Shared>,
    task: JoinHandle<Result<(), MqttError>>,
}

/// Published and acknowledged counts of a finished publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub published: u64,
    pub acked: u64,
}

impl Publisher {
    /// Connects and waits for the broker's CONNACK; fails within `connect_window`
    /// when nobody answers.
    pub async fn connect(addr: &BrokerAddr, cfg: PublisherConfig) -> Result<Publisher, MqttError> {
        let mut opts = MqttOptions::new(cfg.client_id.clone(), addr.host.clone(), addr.port);
        opts.set_inflight(cfg.inflight.max(1));
        opts.set_keep_alive(Duration::from_secs(15));
        opts.set_clean_session(true);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, cfg.queue.max(1));
        let window_secs = cfg.connect_window.as_secs().max(1);
        eventloop
            .network_options
            .set_connection_timeout(window_secs);
        let shared = Arc::new(Shared::default());
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(drive(
            eventloop,
            Arc::clone(&shared),
            addr.to_string(),
            cfg,
            ready_tx,
        ));
        match ready_rx.await {
            Ok(()) => Ok(Publisher {
                client,
                shared,
                task,
            }),
            Err(_) => match task.await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) => Err(MqttError::Closed("event loop ended before CONNACK".into())),
                Err(e) => Err(MqttError::Closed(e.to_string())),
            },
        }
    }

    /// Queues one QoS 1 publish; waits while the queue is full (backpressure).
    pub async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), MqttError> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| MqttError::Closed(e.to_string()))?;
        self.shared.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Publishes queued so far.
    pub fn published(&self) -> u64 {
        self.shared.published.load(Ordering::Relaxed)
    }

    /// PUBACKs received so far.
    pub fn acked(&self) -> u64 {
        self.shared.acked.load(Ordering::Relaxed)
    }

    /// Waits until every publish has its PUBACK (or `deadline` passes), then
    /// disconnects cleanly.
    pub async fn finish(self, deadline: Duration) -> Result<Counts, MqttError> {
        let started = Instant::now();
        while self.acked() < self.published() {
            if self.task.is_finished() {
                break;
            }
            if started.elapsed() >= deadline {
                break;
            }
            let _ =
                tokio::time::timeout(Duration::from_millis(50), self.shared.acks.notified()).await;
        }
        let counts = Counts {
            published: self.published(),
            acked: self.acked(),
        };
        self.shared.stopping.store(true, Ordering::Relaxed);
        let _ = self.client.disconnect().await;
        let ended = tokio::time::timeout(Duration::from_secs(2), self.task).await;
        if let Ok(Ok(Err(e))) = ended {
            return Err(e);
        }
        if counts.acked < counts.published {
            return Err(MqttError::Unacked {
                missing: counts.published - counts.acked,
                published: counts.published,
                secs: deadline.as_secs(),
            });
        }
        Ok(counts)
    }
}

/// Capped exponential backoff with jitter: 100 ms, 200 ms, ... up to 2 s.
fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(5)).min(2_000);
    let jitter = rand::thread_rng().gen_range(0..=base / 2);
    Duration::from_millis(base + jitter)
}

/// Publishes that were not acknowledged when the connection dropped, with their
/// packet ids cleared so the next session numbers them afresh.
fn take_unacked(pending: &mut VecDeque<Request>) -> Vec<Request> {
    pending
        .drain(..)
        .filter_map(|r| match r {
            Request::Publish(mut p) => {
                p.pkid = 0;
                Some(Request::Publish(p))
            }
            Request::PubAck(_) | Request::PingReq(_) | Request::PingResp(_) => None,
            other => Some(other),
        })
        .collect()
}

async fn drive(
    mut eventloop: EventLoop,
    shared: Arc<Shared>,
    addr: String,
    cfg: PublisherConfig,
    ready: oneshot::Sender<()>,
) -> Result<(), MqttError> {
    let mut ready = Some(ready);
    let mut stash: Vec<Request> = Vec::new();
    let mut down_since: Option<Instant> = Some(Instant::now());
    let mut attempt: u32 = 0;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                shared.acked.fetch_add(1, Ordering::Relaxed);
                shared.acks.notify_waiters();
            }
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                // rumqttc drops the unacked publishes on a new session: give them back.
                for r in stash.drain(..).rev() {
                    eventloop.pending.push_front(r);
                }
                down_since = None;
                attempt = 0;
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                } else {
                    tracing::info!(broker = %addr, "reconnected to MQTT broker");
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return Ok(()),
            Ok(_) => {}
            Err(e) => {
                if shared.stopping.load(Ordering::Relaxed) {
                    return Ok(());
                }
                stash.extend(take_unacked(&mut eventloop.pending));
                let since = *down_since.get_or_insert_with(Instant::now);
                let connected_before = ready.is_none();
                let window = if connected_before {
                    cfg.reconnect_window
                } else {
                    cfg.connect_window
                };
                if since.elapsed() >= window {
                    let secs = window.as_secs();
                    return Err(if connected_before {
                        MqttError::Lost {
                            addr,
                            secs,
                            last: e.to_string(),
                        }
                    } else {
                        MqttError::Connect {
                            addr,
                            secs,
                            source: Box::new(e),
                        }
                    });
                }
                if connected_before && attempt == 0 {
                    tracing::warn!(broker = %addr, error = %e, "MQTT connection lost, reconnecting");
                }
                let wait = backoff(attempt).min(window.saturating_sub(since.elapsed()));
                attempt = attempt.saturating_add(1);
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_addresses() {
        assert_eq!(
            BrokerAddr::parse("127.0.0.1:1883").unwrap(),
            BrokerAddr {
                host: "127.0.0.1".into(),
                port: 1883
            }
        );
        assert_eq!(BrokerAddr::parse("[::1]:1884").unwrap().host, "::1");
        for bad in ["127.0.0.1", ":1883", "host:port", "host:70000"] {
            assert!(BrokerAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) >= Duration::from_millis(100));
        assert!(backoff(0) <= Duration::from_millis(150));
        assert!(backoff(20) >= Duration::from_millis(2_000));
        assert!(backoff(20) <= Duration::from_millis(3_000));
    }

    #[test]
    fn unacked_publishes_are_kept_with_fresh_packet_ids() {
        let mut p = rumqttc::Publish::new("sensors/a/reading", QoS::AtLeastOnce, vec![1]);
        p.pkid = 42;
        let mut pending = VecDeque::from(vec![
            Request::Publish(p),
            Request::PubAck(rumqttc::PubAck::new(3)),
        ]);
        let kept = take_unacked(&mut pending);
        assert!(pending.is_empty());
        assert_eq!(kept.len(), 1);
        match &kept[0] {
            Request::Publish(p) => assert_eq!(p.pkid, 0),
            other => panic!("{other:?}"),
        }
    }
}
