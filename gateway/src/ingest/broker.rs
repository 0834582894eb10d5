//! The embedded MQTT broker (rumqttd, patched: `vendor/rumqttd`). It is
//! transport, never storage: rumqttd keeps nothing on disk, so everything
//! that must survive lives in our store. `Broker::start` blocks and has no
//! shutdown, so it runs on its own OS thread for the life of the process.
//!
//! Start order: gridwatch's own client connects to an *internal* loopback
//! listener that is open from the start; the device listeners (3.1.1, TLS,
//! MQTT 5) bind their ports only when [`Embedded::open_device_listeners`]
//! is called, after gridwatch's subscription is proven to exist. Before, a
//! detector publishing the instant the port opened got its PUBACK and its
//! reading went nowhere.
//!
//! Supervision: when the router or any listener thread ends (returns or
//! panics) the `on_thread_exit` callback runs at once; the daemon exits
//! non-zero there, since rumqttd cannot be restarted in-process (no shutdown,
//! ports held by the threads that are still alive).

use super::device_auth::DeviceAuth;
use rumqttd::{
    Broker, Config, ConnectionSettings, Hooks, RouterConfig, ServerSettings, TlsConfig, UrgentCopy,
};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How the embedded broker is secured: logins (when users are configured)
/// and an optional TLS listener.
#[derive(Clone, Default)]
pub struct Security {
    /// `None`: anonymous access (no `[[mqtt.users]]`).
    pub auth: Option<Arc<DeviceAuth>>,
    /// TLS listener address, PEM certificate chain and key paths.
    pub tls: Option<(SocketAddr, String, String)>,
    /// MQTT 5 listener address (`[mqtt] listen_v5`).
    pub v5: Option<SocketAddr>,
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
        Buffer::from_mib(4)
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
    #[error("no free loopback port for the broker's internal listener: {0}")]
    InternalPort(std::io::Error),
}

/// Listener names (rumqttd `ServerSettings::name`, also the thread names).
const INTERNAL: &str = "gridwatch-internal";
const DEVICES_V4: &str = "gridwatch-v4";
const DEVICES_TLS: &str = "gridwatch-v4-tls";
const DEVICES_V5: &str = "gridwatch-v5";

/// Called with a broker thread's name when it ends.
pub type OnThreadExit = Arc<dyn Fn(&str) + Send + Sync>;

/// Broker-side payload limit: above ours, so an oversize reading reaches the
/// gateway and is counted as `too_large` instead of dropping the device's link.
const BROKER_MAX_PAYLOAD: usize = 256 * 1024;

fn broker_config(
    listen: SocketAddr,
    internal: SocketAddr,
    sec: &Security,
    buffer: Buffer,
) -> Config {
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
        "internal".to_string(),
        ServerSettings {
            name: INTERNAL.into(),
            listen: internal,
            tls: None,
            next_connection_delay_ms: 1,
            connections: connections.clone(),
        },
    );
    v4.insert(
        "tcp".to_string(),
        ServerSettings {
            name: DEVICES_V4.into(),
            listen,
            tls: None,
            next_connection_delay_ms: 1,
            connections: connections.clone(),
        },
    );
    let v5 = sec.v5.map(|addr| {
        HashMap::from([(
            "tcp".to_string(),
            ServerSettings {
                name: DEVICES_V5.into(),
                listen: addr,
                tls: None,
                next_connection_delay_ms: 1,
                connections: connections.clone(),
            },
        )])
    });
    if let Some((addr, cert, key)) = &sec.tls {
        v4.insert(
            "tls".to_string(),
            ServerSettings {
                name: DEVICES_TLS.into(),
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
        v5,
        ..Default::default()
    }
}

/// The running embedded broker.
pub struct Embedded {
    /// Where gridwatch's own client connects (loopback, open from the start).
    pub internal: SocketAddr,
    /// Loopback address of the 3.1.1 device listener: where the canary connects.
    pub devices: SocketAddr,
    /// The MQTT 5 device listener, when configured.
    pub devices_v5: Option<SocketAddr>,
    gate: watch::Sender<bool>,
    refuse_new: Arc<AtomicBool>,
    mute_new: Arc<AtomicBool>,
}

impl Embedded {
    /// Binds the device listeners (3.1.1, TLS, MQTT 5) and waits until the
    /// 3.1.1 one accepts connections. Call once gridwatch's own subscription
    /// exists. A port taken in the meantime ends its listener thread, which
    /// the exit callback reports.
    pub async fn open_device_listeners(&self) -> Result<(), BrokerError> {
        self.gate.send_replace(true);
        let local = self.devices;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(local).await.is_ok() {
                tracing::info!(devices = %local, v5 = ?self.devices_v5, "device listeners open (gridwatch's subscription is in place)");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(BrokerError::NotReady(local))
    }

    /// Test hook: while the returned flag is set, every listener closes
    /// each new connection at once and connections already open (gridwatch's
    /// own) keep working: the failure only a fresh client sees, as the canary
    /// is meant to.
    pub fn refuse_handle(&self) -> Arc<AtomicBool> {
        self.refuse_new.clone()
    }

    /// Test hook: while the returned flag is set, every listener accepts
    /// each new connection and never answers it (no CONNACK): the silent
    /// listener, which only the canary's timeout can catch.
    pub fn mute_handle(&self) -> Arc<AtomicBool> {
        self.mute_new.clone()
    }
}

/// Whether `addr` can be bound, found by binding it *without listening*: a
/// listener, however brief, takes in a detector that dials the instant the
/// port opens and then resets it when dropped, the reading lost.
fn check_free(addr: SocketAddr) -> std::io::Result<()> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As every listener here binds (SO_REUSEADDR): a port whose last
    // connections are in TIME_WAIT is free.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)
}

/// Starts the broker with logins, TLS and MQTT 5 as `sec` says, keeping
/// `buffer` of recent uplinks; `on_exit` runs when any broker thread ends.
/// Returns once the internal listener accepts connections.
pub fn start_secured(
    listen: &str,
    sec: &Security,
    buffer: Buffer,
    on_exit: OnThreadExit,
) -> Result<Embedded, BrokerError> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| BrokerError::BadAddress(listen.to_string()))?;
    // Fail clearly when a port is taken, instead of connecting to someone else's broker.
    let extra = [sec.tls.as_ref().map(|t| t.0), sec.v5];
    for a in std::iter::once(addr).chain(extra.into_iter().flatten()) {
        check_free(a).map_err(|source| BrokerError::Bind { addr: a, source })?;
    }
    let internal = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(BrokerError::InternalPort)?;
    let cfg = broker_config(addr, internal, sec, buffer);
    let (gate, gate_rx) = watch::channel(false);
    let refuse_new = Arc::new(AtomicBool::new(false));
    let mute_new = Arc::new(AtomicBool::new(false));
    let hooks = Hooks {
        on_thread_exit: Some(on_exit.clone()),
        gated: vec![DEVICES_V4.into(), DEVICES_TLS.into(), DEVICES_V5.into()],
        gate: Some(gate_rx),
        refuse_new: refuse_new.clone(),
        mute_new: mute_new.clone(),
        urgent_copy: Some(UrgentCopy {
            filter: super::urgent::FILTER.into(),
            prefix: super::urgent::PREFIX.into(),
            classify: Arc::new(super::urgent::copied),
        }),
    };
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = Broker::with_hooks(cfg, hooks);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
            // start() returns only when every listener thread has ended.
            on_exit("mqtt-broker");
        })
        .map_err(BrokerError::Thread)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&internal, Duration::from_millis(200)).is_ok() {
            tracing::info!(%internal, "embedded MQTT broker up (internal listener); device listeners wait for gridwatch's subscription");
            return Ok(Embedded {
                internal,
                devices: loopback_of(addr),
                devices_v5: sec.v5.map(loopback_of),
                gate,
                refuse_new,
                mute_new,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotReady(internal))
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
        let small = broker_config(addr, addr, &Security::default(), Buffer::from_mib(2));
        assert_eq!(small.router.max_segment_size, 512 * 1024);
        assert_eq!(small.router.max_segment_count, 4);
        let default = broker_config(addr, addr, &Security::default(), Buffer::default());
        assert_eq!(
            default.router.max_segment_size * default.router.max_segment_count,
            4 * 1024 * 1024
        );
    }

    fn exits() -> (OnThreadExit, std::sync::mpsc::Receiver<String>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let hook: OnThreadExit = Arc::new(move |name: &str| {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(name.to_string());
            }
        });
        (hook, rx)
    }

    #[test]
    fn device_listener_opens_only_when_asked() {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let (hook, exits) = exits();
        let listen = format!("127.0.0.1:{port}");
        let b = start_secured(&listen, &Security::default(), Buffer::from_mib(1), hook).unwrap();
        assert!(TcpStream::connect_timeout(&b.internal, Duration::from_secs(2)).is_ok());
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            TcpStream::connect_timeout(&b.devices, Duration::from_millis(500)).is_err(),
            "the device port must stay closed before the gate opens"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(b.open_device_listeners()).unwrap();
        assert!(TcpStream::connect_timeout(&b.devices, Duration::from_secs(2)).is_ok());
        assert!(exits.try_recv().is_err(), "no broker thread ended");
        std::mem::forget(b);
    }

    /// The broker's end of every TCP connection on `ports` (its local port
    /// is one of them), with its TCP_NODELAY setting.
    fn broker_side_nodelay(ports: &[u16]) -> Vec<(u16, bool)> {
        let mut found = Vec::new();
        let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
            return found;
        };
        for entry in dir.flatten() {
            let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            // SAFETY: the descriptor is duplicated at once; if another thread
            // closed it in between, the dup fails (EBADF) and it is skipped.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let Ok(owned) = borrowed.try_clone_to_owned() else {
                continue;
            };
            let sock = socket2::SockRef::from(&owned);
            let (Ok(local), Ok(_peer)) = (sock.local_addr(), sock.peer_addr()) else {
                continue; // not a socket, or a listener
            };
            let Some(port) = local.as_socket().map(|a| a.port()) else {
                continue;
            };
            if ports.contains(&port) {
                found.push((port, sock.nodelay().unwrap_or(false)));
            }
        }
        found
    }

    /// With Nagle's algorithm on, the broker's small writes to a subscriber
    /// waited for the peer's delayed ACK (40 ms on Linux): alarms left in
    /// bursts 20-60 ms late under steady traffic.
    #[test]
    fn checking_that_a_port_is_free_never_lets_a_client_in() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // Held bound, never listening: no other test's port-0 listener can
        // take this port while the check runs on it.
        let guard = tokio::net::TcpSocket::new_v4().unwrap();
        guard.set_reuseaddr(true).unwrap();
        guard.bind(addr).unwrap();
        // Dialers outnumbering the cores preempt the check between its
        // bind and its close: a listener there, however brief, lets one in.
        let stop = Arc::new(AtomicBool::new(false));
        let dialers: Vec<_> = (0..4)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut got_in = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if TcpStream::connect(addr).is_ok() {
                            got_in += 1;
                        }
                    }
                    got_in
                })
            })
            .collect();
        for _ in 0..20_000 {
            check_free(addr).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let got_in: i32 = dialers.into_iter().map(|d| d.join().unwrap()).sum();
        assert_eq!(got_in, 0, "clients got into the port check");
        drop(guard);
        let _taken = TcpListener::bind(addr).unwrap();
        assert!(check_free(addr).is_err(), "a taken port is not free");
    }

    #[test]
    fn the_broker_sends_at_once_on_every_accepted_connection() {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let (hook, _exits) = exits();
        let listen = format!("127.0.0.1:{port}");
        let b = start_secured(&listen, &Security::default(), Buffer::from_mib(1), hook).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(b.open_device_listeners()).unwrap();
        let _device = TcpStream::connect(b.devices).unwrap();
        let _own = TcpStream::connect(b.internal).unwrap();
        let ports = [b.devices.port(), b.internal.port()];
        let deadline = Instant::now() + Duration::from_secs(20);
        let accepted = loop {
            let found = broker_side_nodelay(&ports);
            if ports.iter().all(|p| found.iter().any(|(q, _)| q == p)) {
                break found;
            }
            assert!(
                Instant::now() < deadline,
                "the broker never accepted both connections: {found:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            accepted.iter().all(|(_, nodelay)| *nodelay),
            "accepted connections with Nagle on (port, TCP_NODELAY): {accepted:?}"
        );
        std::mem::forget(b);
    }

    #[test]
    fn a_broker_thread_that_ends_is_reported_at_once() {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let (hook, exits) = exits();
        let listen = format!("127.0.0.1:{port}");
        let b = start_secured(&listen, &Security::default(), Buffer::from_mib(1), hook).unwrap();
        // Someone takes the device port after the start check: opening the
        // gate makes the device listener thread fail to bind and end.
        let _thief = TcpListener::bind(("127.0.0.1", port)).unwrap();
        b.gate.send_replace(true);
        let name = exits
            .recv_timeout(Duration::from_secs(30))
            .expect("the exit hook runs when a listener thread ends");
        assert_eq!(name, DEVICES_V4);
        std::mem::forget(b);
    }
}
