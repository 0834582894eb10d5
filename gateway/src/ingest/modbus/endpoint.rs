//! Endpoint URLs (docs/contract.md §4): `tcp://host:port` and
//! `rtu:///dev/ttyUSB0?baud=9600&parity=N[&data_bits=8&stop_bits=1]`.

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

/// Where a link goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Modbus TCP (a device, or a serial server in front of an RS-485 bus).
    Tcp { host: String, port: u16 },
    /// Modbus RTU on a local serial port.
    Rtu {
        path: String,
        baud: u32,
        parity: Parity,
        data_bits: u8,
        stop_bits: u8,
    },
}

/// Why an endpoint URL is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("modbus endpoint {url:?}: {why}")]
pub struct EndpointError {
    pub url: String,
    pub why: String,
}

impl Endpoint {
    /// Parses an endpoint URL.
    pub fn parse(url: &str) -> Result<Endpoint, EndpointError> {
        let err = |why: &str| EndpointError {
            url: url.to_string(),
            why: why.to_string(),
        };
        if let Some(rest) = url.strip_prefix("tcp://") {
            let rest = rest.trim_end_matches('/');
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| err("expected tcp://host:port"))?;
            let port: u16 = port
                .parse()
                .map_err(|_| err("port must be a number 1-65535"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() || port == 0 {
                return Err(err("expected tcp://host:port"));
            }
            return Ok(Endpoint::Tcp {
                host: host.to_string(),
                port,
            });
        }
        let rest = url
            .strip_prefix("rtu://")
            .ok_or_else(|| err("must start with tcp:// or rtu://"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if !path.starts_with('/') || path.len() < 2 {
            return Err(err("expected rtu:///dev/ttyX?baud=9600&parity=N"));
        }
        let mut ep = (9600u32, Parity::None, 8u8, 1u8);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| err("query must be key=value pairs"))?;
            match k {
                "baud" => {
                    ep.0 = v
                        .parse()
                        .ok()
                        .filter(|b| *b > 0)
                        .ok_or_else(|| err("baud must be a positive number"))?
                }
                "parity" => {
                    ep.1 = match v {
                        "N" | "n" | "none" => Parity::None,
                        "E" | "e" | "even" => Parity::Even,
                        "O" | "o" | "odd" => Parity::Odd,
                        _ => return Err(err("parity must be N, E or O")),
                    }
                }
                "data_bits" => {
                    ep.2 = v
                        .parse()
                        .ok()
                        .filter(|b| (5..=8).contains(b))
                        .ok_or_else(|| err("data_bits must be 5 to 8"))?
                }
                "stop_bits" => {
                    ep.3 = v
                        .parse()
                        .ok()
                        .filter(|b| (1..=2).contains(b))
                        .ok_or_else(|| err("stop_bits must be 1 or 2"))?
                }
                _ => return Err(err(&format!("unknown option {k:?}"))),
            }
        }
        Ok(Endpoint::Rtu {
            path: path.to_string(),
            baud: ep.0,
            parity: ep.1,
            data_bits: ep.2,
            stop_bits: ep.3,
        })
    }

    /// The `endpoint` metric label: the URL without its query (bounded by the config).
    pub fn label(&self) -> String {
        match self {
            Endpoint::Tcp { host, port } => format!("tcp://{host}:{port}"),
            Endpoint::Rtu { path, .. } => format!("rtu://{path}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_and_rtu() {
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1:5020").unwrap(),
            Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 5020
            }
        );
        assert_eq!(
            Endpoint::parse("rtu:///dev/ttyUSB0?baud=19200&parity=E&stop_bits=2").unwrap(),
            Endpoint::Rtu {
                path: "/dev/ttyUSB0".into(),
                baud: 19200,
                parity: Parity::Even,
                data_bits: 8,
                stop_bits: 2
            }
        );
        assert_eq!(
            Endpoint::parse("rtu:///dev/ttyS1").unwrap().label(),
            "rtu:///dev/ttyS1"
        );
        for bad in [
            "tcp://x",
            "tcp://:502",
            "tcp://x:0",
            "udp://x:1",
            "rtu://dev",
            "rtu:///dev/x?baud=0",
            "rtu:///dev/x?parity=X",
            "rtu:///dev/x?speed=1",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
