//! The embedded MQTT broker (rumqttd). It is transport, never storage:
//! rumqttd keeps nothing on disk, so everything that must survive lives in
//! our store. `Broker::start` blocks and has no shutdown, so it runs on its
//! own OS thread for the life of the process.

use super::device_auth::DeviceAuth;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings, TlsConfig};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the embedded broker is secured: logins (when users are configured)
/// and an optional TLS listener.
#[derive(Clone, Default)]
pub struct Security {
    /// `None`: anonymous access (no `[[mqtt.users]]`).
    pub auth: Option<Arc<DeviceAuth>>,
    /// TLS listener address, PEM certificate chain and key paths.
    pub tls: Option<(SocketAddr, String, String)>,
}

/// How much of the recent uplink stream the broker keeps in memory, as
/// rumqttd's commit log of gridwatch's subscription: `segments` segments of
/// `segment_bytes` each; when the last is full the oldest is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    pub segment_bytes: usize,
    pub segments: usize,
}

impl Buffer {
    /// Four segments: a quarter of the memory is freed at a time, so the
    /// kept backlog never drops below three quarters of `mib`.
    pub fn from_mib(mib: u32) -> Buffer {
        let total = (mib.max(1) as usize) * 1024 * 1024;
        Buffer {
            segment_bytes: total / 4,
            segments: 4,
        }
    }
}

impl Default for Buffer {
    fn default() -> Buffer {
        Buffer::from_mib(16)
    }
}

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

fn broker_config(listen: SocketAddr, sec: &Security, buffer: Buffer) -> Config {
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: BROKER_MAX_PAYLOAD,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    if let Some(auth) = &sec.auth {
        let auth = auth.clone();
        connections.set_auth_handler(move |client_id: String, user: String, pass: String| {
            let auth = auth.clone();
            async move {
                // argon2 is slow on purpose: keep it off the broker's I/O threads.
                let res = tokio::task::spawn_blocking(move || {
                    let r = auth.check(&client_id, &user, &pass, crate::model::now_ms());
                    if let Err(why) = r {
                        tracing::warn!(client_id = %client_id.chars().take(64).collect::<String>(), user = %user.chars().take(64).collect::<String>(), reason = ?why, "MQTT login refused");
                    }
                    r.is_ok()
                })
                .await;
                res.unwrap_or(false)
            }
        });
    }
    let mut v4 = HashMap::new();
    v4.insert(
        "tcp".to_string(),
        ServerSettings {
            name: "gridwatch-v4".into(),
            listen,
            tls: None,
            next_connection_delay_ms: 1,
            connections: connections.clone(),
        },
    );
    if let Some((addr, cert, key)) = &sec.tls {
        v4.insert(
            "tls".to_string(),
            ServerSettings {
                name: "gridwatch-v4-tls".into(),
                listen: *addr,
                tls: Some(TlsConfig::Rustls {
                    capath: None,
                    certpath: cert.clone(),
                    keypath: key.clone(),
                }),
                next_connection_delay_ms: 1,
                connections,
            },
        );
    }
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 20_000,
            max_outgoing_packet_count: 200,
            // The broker is not storage: this is only the backlog our own
            // subscription may lag by (`[mqtt] broker_buffer_mib`).
            max_segment_size: buffer.segment_bytes,
            max_segment_count: buffer.segments,
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
    start_secured(listen, &Security::default(), Buffer::default())
}

/// [`start`] with logins and TLS as `sec` says, keeping `buffer` of recent uplinks.
pub fn start_secured(
    listen: &str,
    sec: &Security,
    buffer: Buffer,
) -> Result<SocketAddr, BrokerError> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| BrokerError::BadAddress(listen.to_string()))?;
    // Fail clearly when the port is taken, instead of connecting to someone else's broker.
    drop(TcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr, source })?);
    if let Some((tls_addr, _, _)) = &sec.tls {
        drop(
            TcpListener::bind(tls_addr).map_err(|source| BrokerError::Bind {
                addr: *tls_addr,
                source,
            })?,
        );
    }
    let cfg = broker_config(addr, sec, buffer);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_setting_sizes_the_brokers_commit_log() {
        let addr: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        let small = broker_config(addr, &Security::default(), Buffer::from_mib(2));
        assert_eq!(small.router.max_segment_size, 512 * 1024);
        assert_eq!(small.router.max_segment_count, 4);
        let default = broker_config(addr, &Security::default(), Buffer::default());
        assert_eq!(
            default.router.max_segment_size * default.router.max_segment_count,
            16 * 1024 * 1024
        );
    }
}
