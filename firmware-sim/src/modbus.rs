//! Serving the simulated monitors of a [`Bank`] over Modbus TCP and over
//! Modbus RTU on a pseudo-terminal, with tokio-modbus's server side.
//!
//! Which scenario devices are Modbus monitors, and under which unit id, is
//! read from the gateway's `registry.toml` (devices whose `transport` is
//! `{ modbus = {...} }`); the endpoint written there does not matter here.

use crate::bank::{Answer, Bank, Behaviour};
use serde::Deserialize;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio_modbus::prelude::SlaveRequest;
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Response};

/// A bank shared by the servers and the scenario player.
pub type SharedBank = Arc<Mutex<Bank>>;

/// Why the Modbus side could not start.
#[derive(Debug, thiserror::Error)]
pub enum ModbusSimError {
    #[error("cannot read registry {path}: {source}")]
    ReadRegistry { path: PathBuf, source: io::Error },
    #[error("registry {path}: {source}")]
    ParseRegistry {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("cannot listen for Modbus TCP on {addr}: {source}")]
    Listen { addr: String, source: io::Error },
    #[error("cannot open a pty for Modbus RTU: {0}")]
    Pty(String),
    #[error("cannot link {link} to the pty: {source}")]
    Link { link: PathBuf, source: io::Error },
}

#[derive(Deserialize)]
struct RegistryView {
    #[serde(default)]
    devices: Vec<DeviceView>,
}

#[derive(Deserialize)]
struct DeviceView {
    id: String,
    #[serde(default)]
    transport: Option<toml::Value>,
}

/// A Modbus monitor named in a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryMonitor {
    pub id: String,
    pub unit: u8,
    pub offset: u16,
    pub profile: String,
}

/// The Modbus devices of a registry file.
pub fn registry_monitors(path: &Path) -> Result<Vec<RegistryMonitor>, ModbusSimError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModbusSimError::ReadRegistry {
        path: path.to_path_buf(),
        source,
    })?;
    parse_registry(&text).map_err(|source| ModbusSimError::ParseRegistry {
        path: path.to_path_buf(),
        source,
    })
}

/// [`registry_monitors`] on text.
pub fn parse_registry(text: &str) -> Result<Vec<RegistryMonitor>, toml::de::Error> {
    let reg: RegistryView = toml::from_str(text)?;
    Ok(reg
        .devices
        .into_iter()
        .filter_map(|d| {
            let m = d.transport?.get("modbus")?.clone();
            let int = |k: &str| m.get(k).and_then(toml::Value::as_integer);
            Some(RegistryMonitor {
                unit: u8::try_from(int("unit")?).ok()?,
                offset: u16::try_from(int("offset").unwrap_or(0)).ok()?,
                profile: m.get("profile")?.as_str()?.to_string(),
                id: d.id,
            })
        })
        .collect())
}

/// A bank of the registry's monitors; those with a profile other than
/// `generic-rcm` are left out with a warning (the simulator speaks only that).
pub fn bank_from_registry(monitors: &[RegistryMonitor]) -> Bank {
    let mut bank = Bank::default();
    for m in monitors {
        if m.profile != "generic-rcm" {
            tracing::warn!(device = %m.id, profile = %m.profile, "not simulated: firmware-sim serves the generic-rcm layout only");
            continue;
        }
        bank.add_monitor(&m.id, m.unit, m.offset);
    }
    bank
}

/// Misbehaviour asked for on the command line, applied to a bank.
pub fn apply_behaviours(bank: &SharedBank, list: &[(u8, Behaviour)]) {
    let mut b = bank.lock().unwrap_or_else(|e| e.into_inner());
    for (unit, behaviour) in list {
        b.set_behaviour(*unit, *behaviour);
    }
}

/// The tokio-modbus service answering from a bank.
#[derive(Clone)]
pub struct SimService {
    bank: SharedBank,
}

impl SimService {
    /// A service answering from `bank`.
    pub fn new(bank: SharedBank) -> SimService {
        SimService { bank }
    }
}

type Reply = Result<Option<Response>, ExceptionCode>;

impl Service for SimService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Reply> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let answer = self
            .bank
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .answer(req.slave, &req.request);
        Box::pin(async move {
            match answer {
                Answer::Silent => Ok(None),
                Answer::Reply { delay, result } => {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    result.map(Some)
                }
            }
        })
    }
}

/// Listens on `addr` and serves every connection from `bank` (in a task).
/// Returns the bound address (`:0` picks a free port).
pub async fn serve_tcp(addr: &str, bank: SharedBank) -> Result<SocketAddr, ModbusSimError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ModbusSimError::Listen {
            addr: addr.to_string(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| ModbusSimError::Listen {
            addr: addr.to_string(),
            source,
        })?;
    let server = tokio_modbus::server::tcp::Server::new(listener);
    tokio::spawn(async move {
        let on_connected = |stream: tokio::net::TcpStream, _peer: SocketAddr| {
            let service = SimService::new(bank.clone());
            async move {
                let _ = stream.set_nodelay(true);
                Ok(Some((service, stream)))
            }
        };
        let on_error = |e: io::Error| tracing::debug!(error = %e, "modbus tcp connection ended");
        if let Err(e) = server.serve(&on_connected, on_error).await {
            tracing::error!(error = %e, "modbus tcp server stopped");
        }
    });
    Ok(local)
}

/// A pty serving Modbus RTU; keep it alive as long as the bus should exist.
pub struct RtuPty {
    /// The slave side's path (`/dev/pts/N`): what the gateway opens.
    pub path: String,
    /// The symlink made to it, if asked for.
    pub link: Option<PathBuf>,
    // Held open so the master never sees a hang-up when the gateway closes
    // and reopens the port.
    _slave: tokio_serial::SerialStream,
}

impl Drop for RtuPty {
    fn drop(&mut self) {
        if let Some(l) = &self.link {
            let _ = std::fs::remove_file(l);
        }
    }
}

/// Opens a pty pair, serves Modbus RTU on its master side (in a task) and
/// optionally links `link` to the slave side, for configs written in advance.
pub fn serve_rtu_pty(link: Option<&Path>, bank: SharedBank) -> Result<RtuPty, ModbusSimError> {
    use tokio_serial::SerialPort;
    let (master, slave) =
        tokio_serial::SerialStream::pair().map_err(|e| ModbusSimError::Pty(e.to_string()))?;
    let path = slave
        .name()
        .ok_or_else(|| ModbusSimError::Pty("the pty has no name".into()))?;
    if let Some(l) = link {
        let _ = std::fs::remove_file(l);
        std::os::unix::fs::symlink(&path, l).map_err(|source| ModbusSimError::Link {
            link: l.to_path_buf(),
            source,
        })?;
    }
    let server = tokio_modbus::server::rtu::Server::new(master);
    tokio::spawn(async move {
        if let Err(e) = server.serve_forever(SimService::new(bank)).await {
            tracing::error!(error = %e, "modbus rtu server stopped");
        }
    });
    Ok(RtuPty {
        path,
        link: link.map(Path::to_path_buf),
        _slave: slave,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_modbus_devices_are_found() {
        let text = r#"
[[devices]]
id = "smk"
kind = "smoke"
household = "h"
transport = "mqtt"

[[devices]]
id = "rcm-1"
kind = "residual_current"
household = "h"
transport = { modbus = { endpoint = "tcp://127.0.0.1:5020", unit = 3, profile = "generic-rcm", every = "1s" } }

[[devices]]
id = "rcm-2"
kind = "residual_current"
household = "h"
transport = { modbus = { endpoint = "tcp://127.0.0.1:5020", unit = 3, offset = 2, profile = "acrel-asj" } }
"#;
        let m = parse_registry(text).unwrap();
        assert_eq!(
            m,
            vec![
                RegistryMonitor {
                    id: "rcm-1".into(),
                    unit: 3,
                    offset: 0,
                    profile: "generic-rcm".into()
                },
                RegistryMonitor {
                    id: "rcm-2".into(),
                    unit: 3,
                    offset: 2,
                    profile: "acrel-asj".into()
                },
            ]
        );
        let bank = bank_from_registry(&m);
        assert!(bank.has("rcm-1"));
        assert!(!bank.has("rcm-2"));
    }
}
