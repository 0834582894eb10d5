//! The embedded MQTT broker (rumqttd). It is transport, never storage:
//! rumqttd keeps nothing on disk, so everything that must survive lives in
//! our store. `Broker::start` blocks and has no shutdown, so it runs on its
//! own OS thread for the life of the process.

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Why the embedded broker did not come up.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("mqtt listen address {0:?} is not host:port")]
    BadAddress(String),
    #[error("cannot listen for MQTT on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("embedded broker did not accept connections on {0} within 5 s")]
    NotReady(SocketAddr),
    #[error("cannot start broker thread: {0}")]
    Thread(std::io::Error),
}

/// Broker-side payload limit: above ours, so an oversize reading reaches the
/// gateway and is counted as `too_large` instead of dropping the device's link.
const BROKER_MAX_PAYLOAD: usize = 256 * 1024;

fn broker_config(listen: SocketAddr) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: BROKER_MAX_PAYLOAD,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let mut v4 = HashMap::new();
    v4.insert(
        "tcp".to_string(),
        ServerSettings {
            name: "gridwatch-v4".into(),
            listen,
            tls: None,
            next_connection_delay_ms: 1,
            connections,
        },
    );
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 20_000,
            max_outgoing_packet_count: 200,
            // Small segments: an edge box has 1–4 GB and the broker is not storage.
            max_segment_size: 4 * 1024 * 1024,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(v4),
        ..Default::default()
    }
}

/// Starts the broker on `listen` and waits until it accepts connections.
/// Returns the loopback address local clients should use.
pub fn start(listen: &str) -> Result<SocketAddr, BrokerError> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| BrokerError::BadAddress(listen.to_string()))?;
    // Fail clearly when the port is taken, instead of connecting to someone else's broker.
    drop(TcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr, source })?);
    let cfg = broker_config(addr);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(cfg);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(BrokerError::Thread)?;
    let local = loopback_of(addr);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&local, Duration::from_millis(200)).is_ok() {
            tracing::info!(%addr, "embedded MQTT broker listening");
            return Ok(local);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotReady(addr))
}

/// `0.0.0.0:p` → `127.0.0.1:p` (and `[::]` → `[::1]`): where our own client connects.
pub fn loopback_of(addr: SocketAddr) -> SocketAddr {
    let ip = match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        SocketAddr::V6(a) if a.ip().is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        _ => addr.ip(),
    };
    SocketAddr::new(ip, addr.port())
}

/// Whether something accepts TCP at `addr` (readiness).
pub fn is_up(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}
