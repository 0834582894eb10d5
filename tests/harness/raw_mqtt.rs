//! A raw-socket MQTT client for hostile-client and start-order tests: it
//! writes exactly the bytes it is given, broken ones included, which no
//! real client library will do. Deterministic: randomness comes from
//! [`Rng`] with a fixed seed.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// xorshift64*: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// MQTT's variable-length "remaining length".
pub fn remaining_length(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

fn string(s: &str) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

fn packet(first: u8, body: Vec<u8>) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(remaining_length(body.len()));
    out.extend(body);
    out
}

/// CONNECT, clean session, for protocol level 4 (3.1.1) or 5.
pub fn connect(client_id: &str, level: u8, keep_alive_s: u16) -> Vec<u8> {
    let mut body = string("MQTT");
    body.push(level);
    body.push(0x02);
    body.extend_from_slice(&keep_alive_s.to_be_bytes());
    if level == 5 {
        body.push(0); // no properties
    }
    body.extend(string(client_id));
    packet(0x10, body)
}

/// PUBLISH at QoS 1 with packet id `pkid`; for level 5 with a user
/// property (`user_property = Some((k, v))`) or none.
pub fn publish_qos1(
    topic: &str,
    payload: &[u8],
    pkid: u16,
    level: u8,
    user_property: Option<(&str, &str)>,
) -> Vec<u8> {
    let mut body = string(topic);
    body.extend_from_slice(&pkid.to_be_bytes());
    if level == 5 {
        let mut props = Vec::new();
        if let Some((k, v)) = user_property {
            props.push(0x26);
            props.extend(string(k));
            props.extend(string(v));
        }
        body.extend(remaining_length(props.len()));
        body.extend(props);
    }
    body.extend_from_slice(payload);
    packet(0x32, body)
}

/// SUBSCRIBE to one filter at QoS 1 (level 4 or 5).
pub fn subscribe(filter: &str, pkid: u16, level: u8) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if level == 5 {
        body.push(0);
    }
    body.extend(string(filter));
    body.push(1);
    packet(0x82, body)
}

/// Connects with a timeout.
pub async fn dial(addr: SocketAddr, timeout: Duration) -> Option<TcpStream> {
    tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .ok()?
        .ok()
}

/// Writes, ignoring errors (a hostile client does not care).
pub async fn send(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(bytes)).await;
}

/// Reads one packet: `(first byte, body)`; `None` on close, error or timeout.
pub async fn read_packet(stream: &mut TcpStream, timeout: Duration) -> Option<(u8, Vec<u8>)> {
    tokio::time::timeout(timeout, async {
        let first = stream.read_u8().await.ok()?;
        let mut len = 0usize;
        let mut shift = 0;
        loop {
            let b = stream.read_u8().await.ok()?;
            len += ((b & 0x7f) as usize) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 21 {
                return None;
            }
        }
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await.ok()?;
        Some((first, body))
    })
    .await
    .ok()
    .flatten()
}

/// CONNECT and one QoS-1 PUBLISH in a single write (MQTT lets a client
/// send before the CONNACK, and a detector in a hurry does); `Ok` once the
/// broker sent CONNACK (accepted) and the PUBACK, else what went wrong.
pub async fn publish_once(
    stream: &mut TcpStream,
    client_id: &str,
    topic: &str,
    payload: &[u8],
) -> Result<(), String> {
    let wait = Duration::from_secs(10);
    let mut both = connect(client_id, 4, 30);
    both.extend(publish_qos1(topic, payload, 1, 4, None));
    send(stream, &both).await;
    match read_packet(stream, wait).await {
        Some((0x20, body)) if body.get(1) == Some(&0) => {}
        other => return Err(format!("no CONNACK accepting us: {other:?}")),
    }
    match read_packet(stream, wait).await {
        Some((0x40, _)) => Ok(()),
        other => Err(format!("no PUBACK: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_length_encodes_like_the_spec_examples() {
        assert_eq!(remaining_length(0), vec![0]);
        assert_eq!(remaining_length(127), vec![0x7f]);
        assert_eq!(remaining_length(128), vec![0x80, 0x01]);
        assert_eq!(remaining_length(16_383), vec![0xff, 0x7f]);
        assert_eq!(remaining_length(2_097_152), vec![0x80, 0x80, 0x80, 0x01]);
    }

    #[test]
    fn the_rng_is_reproducible() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert_eq!(a.bytes(32), b.bytes(32));
    }
}
