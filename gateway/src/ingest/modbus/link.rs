//! One link (a TCP connection or a serial bus) and the devices behind it: the
//! only place that does Modbus I/O.
//!
//! tokio-modbus 0.17 has no timeout and no reconnect of its own, so this loop
//! owns both: exactly one request is in flight at a time, every request runs
//! under the device's `timeout`, and a broken link is reopened with capped,
//! jittered exponential backoff while the schedule keeps running (devices due
//! meanwhile count as failed polls, without I/O).
//!
//! A reply that arrives after its timeout would be read as the answer to the
//! next request. On TCP the connection is therefore dropped after a timeout
//! and reopened at the next poll (cheap, and no stale byte can cross over);
//! a transaction-id mismatch is answered the same way, with one retry on the
//! fresh connection. A serial port cannot be reopened that freely (other
//! devices share it and a re-open flushes nothing already in flight), so on
//! RTU every request first discards bytes nobody asked for ([`Drain`]) and a
//! reply from the wrong unit is retried once.

use super::endpoint::{Endpoint, Parity};
use super::plan::{Block, BlockData, ReadPlan};
use super::schedule::{Breaker, BreakerState, Schedule};
use crate::config::Table;
use crate::ingest::{Input, Lanes};
use crate::metrics::Metrics;
use crate::model::{now_ms, Flags, Reading, Transport, Values};
use crate::util::Backoff;
use rand::Rng;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::prelude::{Slave, SlaveContext};

/// One device as the link polls it.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkDevice {
    pub id: String,
    pub unit: u8,
    pub plan: ReadPlan,
    pub every: Duration,
    pub timeout: Duration,
}

/// A link and its devices, as built from the config.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkSpec {
    pub endpoint: Endpoint,
    pub devices: Vec<LinkDevice>,
}

/// How one poll ended; the `outcome` label of `gridwatch_modbus_polls_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollOutcome {
    Ok,
    Timeout,
    Exception,
    TransportError,
    ProtocolError,
    /// The link is down and waiting for its next reconnect attempt.
    LinkDown,
    /// The device's breaker is open.
    Skipped,
}

impl PollOutcome {
    /// Every outcome, for metric labels.
    pub const ALL: [PollOutcome; 7] = [
        PollOutcome::Ok,
        PollOutcome::Timeout,
        PollOutcome::Exception,
        PollOutcome::TransportError,
        PollOutcome::ProtocolError,
        PollOutcome::LinkDown,
        PollOutcome::Skipped,
    ];

    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PollOutcome::Ok => "ok",
            PollOutcome::Timeout => "timeout",
            PollOutcome::Exception => "exception",
            PollOutcome::TransportError => "transport_error",
            PollOutcome::ProtocolError => "protocol_error",
            PollOutcome::LinkDown => "link_down",
            PollOutcome::Skipped => "skipped",
        }
    }
}

/// Longest wait for a TCP connect or a serial open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the breaker gauges are recounted.
const GAUGE_EVERY: Duration = Duration::from_secs(1);

enum Conn {
    Up(Context),
    Down { failures: u32, retry_at: Instant },
}

/// What one request ended with.
enum CallError {
    Timeout,
    Exception(tokio_modbus::ExceptionCode),
    Transport(io::Error),
    Protocol(String),
}

/// The polling loop of one link.
pub struct Link {
    spec: LinkSpec,
    label: String,
    lanes: Lanes,
    metrics: Arc<Metrics>,
    backoff: Backoff,
    conn: Conn,
}

impl Link {
    /// A link that has not connected yet.
    pub fn new(spec: LinkSpec, lanes: Lanes, metrics: Arc<Metrics>) -> Link {
        let label = spec.endpoint.label();
        Link {
            spec,
            label,
            lanes,
            metrics,
            backoff: Backoff::LINK,
            conn: Conn::Down {
                failures: 0,
                retry_at: Instant::now(),
            },
        }
    }

    /// Polls forever (until the task is aborted on reload or the pipe closes).
    pub async fn run(mut self) {
        let start = Instant::now();
        let every = self.spec.devices.iter().map(|d| d.every).collect();
        let mut schedule = Schedule::new(every, start);
        let mut breakers = vec![Breaker::new(); self.spec.devices.len()];
        let mut gauges_at = start;
        self.metrics.touch_modbus_link(&self.label);
        self.metrics
            .modbus_link_up
            .with_label_values(&[&self.label])
            .set(0);
        tracing::info!(endpoint = %self.label, devices = self.spec.devices.len(), "modbus link polling");
        while let Some(due) = schedule.peek() {
            tokio::time::sleep_until(due.at.into()).await;
            let now = Instant::now();
            self.metrics
                .modbus_poll_delay_seconds
                .with_label_values(&[&self.label])
                .observe(now.saturating_duration_since(due.at).as_secs_f64());
            let i = due.device;
            let (outcome, data) = if breakers[i].allow(now) {
                self.poll(i).await
            } else {
                (PollOutcome::Skipped, None)
            };
            let done_at = Instant::now();
            match outcome {
                PollOutcome::Ok | PollOutcome::Exception | PollOutcome::ProtocolError => {
                    // The device answered: it is alive, whatever it said.
                    breakers[i].success();
                }
                PollOutcome::Timeout => {
                    let jitter = rand::thread_rng().gen_range(0.8..1.2);
                    if breakers[i].failure(done_at, jitter) {
                        tracing::warn!(endpoint = %self.label, device = %self.spec.devices[i].id, "modbus device not answering: breaker open, skipping it for a while");
                    }
                }
                _ => {}
            }
            self.metrics
                .modbus_polls_total
                .with_label_values(&[&self.label, outcome.as_str()])
                .inc();
            let skipped = schedule.done(done_at);
            if skipped > 0 {
                self.metrics
                    .modbus_cycles_skipped_total
                    .with_label_values(&[&self.label])
                    .inc_by(u64::from(skipped));
            }
            let id = self.spec.devices[i].id.clone();
            if !deliver(&self.lanes, &self.metrics, id, data).await {
                return;
            }
            if done_at >= gauges_at {
                gauges_at = done_at + GAUGE_EVERY;
                self.count_breakers(&breakers, done_at);
            }
        }
    }

    fn count_breakers(&self, breakers: &[Breaker], now: Instant) {
        for s in BreakerState::ALL {
            let n = breakers.iter().filter(|b| b.state(now) == s).count();
            self.metrics
                .modbus_breakers
                .with_label_values(&[&self.label, s.as_str()])
                .set(n as i64);
        }
    }

    /// Reads every block of device `i`.
    async fn poll(&mut self, i: usize) -> (PollOutcome, Option<(Values, Flags)>) {
        let dev = self.spec.devices[i].clone();
        let mut replies = Vec::with_capacity(dev.plan.blocks.len());
        for block in &dev.plan.blocks {
            match self.call_retrying(&dev, *block).await {
                Ok(data) => replies.push(data),
                Err(outcome) => return (outcome, None),
            }
        }
        match dev.plan.decode(&replies) {
            Ok(vf) => (PollOutcome::Ok, Some(vf)),
            Err(e) => {
                tracing::warn!(endpoint = %self.label, device = %dev.id, error = %e, "modbus reply does not fit the profile");
                (PollOutcome::ProtocolError, None)
            }
        }
    }

    /// One block, retried once on a fresh connection (TCP) or after a drain
    /// (RTU) when the link broke or answered out of step.
    async fn call_retrying(
        &mut self,
        dev: &LinkDevice,
        block: Block,
    ) -> Result<BlockData, PollOutcome> {
        let mut retried = false;
        loop {
            if !self.ensure_connected().await {
                return Err(PollOutcome::LinkDown);
            }
            let Conn::Up(ctx) = &mut self.conn else {
                return Err(PollOutcome::LinkDown);
            };
            let err = match call(ctx, dev.unit, block, dev.timeout).await {
                Ok(data) => return Ok(data),
                Err(e) => e,
            };
            let tcp = matches!(self.spec.endpoint, Endpoint::Tcp { .. });
            match err {
                CallError::Exception(code) => {
                    tracing::debug!(endpoint = %self.label, device = %dev.id, ?code, "modbus exception reply");
                    return Err(PollOutcome::Exception);
                }
                CallError::Timeout => {
                    if tcp {
                        // A late reply must never be read as the next device's answer.
                        self.drop_link(0);
                    }
                    return Err(PollOutcome::Timeout);
                }
                CallError::Transport(e) => {
                    tracing::warn!(endpoint = %self.label, error = %e, "modbus link broken; reconnecting");
                    self.drop_link(0);
                    if retried {
                        return Err(PollOutcome::TransportError);
                    }
                }
                CallError::Protocol(msg) => {
                    tracing::warn!(endpoint = %self.label, device = %dev.id, error = %msg, "modbus reply out of step; retrying once");
                    if tcp {
                        self.drop_link(0);
                    }
                    if retried {
                        return Err(PollOutcome::ProtocolError);
                    }
                }
            }
            retried = true;
        }
    }

    /// Marks the link down; the next attempt is after `failures` backoff steps (0: at once).
    fn drop_link(&mut self, failures: u32) {
        let retry_at = if failures == 0 {
            Instant::now()
        } else {
            Instant::now() + self.backoff.delay(failures)
        };
        self.conn = Conn::Down { failures, retry_at };
        self.metrics
            .modbus_link_up
            .with_label_values(&[&self.label])
            .set(0);
    }

    /// Connects when the backoff allows; true when the link is up.
    async fn ensure_connected(&mut self) -> bool {
        let failures = match &self.conn {
            Conn::Up(_) => return true,
            Conn::Down { failures, retry_at } => {
                if Instant::now() < *retry_at {
                    return false;
                }
                *failures
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connect(&self.spec.endpoint)).await {
            Ok(Ok(ctx)) => {
                if failures > 0 {
                    tracing::info!(endpoint = %self.label, "modbus link back up");
                }
                self.conn = Conn::Up(ctx);
                self.metrics
                    .modbus_connects_total
                    .with_label_values(&[&self.label])
                    .inc();
                self.metrics
                    .modbus_link_up
                    .with_label_values(&[&self.label])
                    .set(1);
                true
            }
            Ok(Err(e)) => {
                let next = failures.saturating_add(1);
                if next == 1 || next.is_power_of_two() {
                    tracing::warn!(endpoint = %self.label, error = %e, attempts = next, "cannot open modbus link");
                }
                self.drop_link(next);
                false
            }
            Err(_) => {
                let next = failures.saturating_add(1);
                tracing::warn!(endpoint = %self.label, attempts = next, "opening modbus link timed out");
                self.drop_link(next);
                false
            }
        }
    }
}

/// Hands a reading (or a failed poll) to the rules stage; false when the pipe is closed.
async fn deliver(
    lanes: &Lanes,
    metrics: &Metrics,
    id: String,
    data: Option<(Values, Flags)>,
) -> bool {
    let now = now_ms();
    let input = match data {
        Some((values, flags)) => {
            metrics.readings_total.with_label_values(&["modbus"]).inc();
            Input::Reading(Reading {
                device_id: id,
                ts: now,
                received: now,
                values,
                flags,
                transport: Transport::Modbus,
            })
        }
        None => Input::PollFailed {
            device_id: id,
            at: now,
        },
    };
    lanes.send(input).await
}

/// One read request under a timeout.
async fn call(
    ctx: &mut Context,
    unit: u8,
    block: Block,
    limit: Duration,
) -> Result<BlockData, CallError> {
    ctx.set_slave(Slave(unit));
    let (start, count) = (block.start, block.count);
    let fut = async {
        match block.table {
            Table::Input => ctx
                .read_input_registers(start, count)
                .await
                .map(|r| r.map(BlockData::Words)),
            Table::Holding => ctx
                .read_holding_registers(start, count)
                .await
                .map(|r| r.map(BlockData::Words)),
            Table::Discrete => ctx
                .read_discrete_inputs(start, count)
                .await
                .map(|r| r.map(BlockData::Bits)),
            Table::Coil => ctx
                .read_coils(start, count)
                .await
                .map(|r| r.map(BlockData::Bits)),
        }
    };
    match tokio::time::timeout(limit, fut).await {
        Err(_) => Err(CallError::Timeout),
        Ok(Err(tokio_modbus::Error::Transport(e))) => Err(CallError::Transport(e)),
        Ok(Err(tokio_modbus::Error::Protocol(e))) => Err(CallError::Protocol(e.to_string())),
        Ok(Ok(Err(code))) => Err(CallError::Exception(code)),
        Ok(Ok(Ok(data))) => Ok(data),
    }
}

/// Opens the link.
async fn connect(ep: &Endpoint) -> io::Result<Context> {
    match ep {
        Endpoint::Tcp { host, port } => {
            let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
            stream.set_nodelay(true)?;
            Ok(tokio_modbus::client::tcp::attach(stream))
        }
        Endpoint::Rtu {
            path,
            baud,
            parity,
            data_bits,
            stop_bits,
        } => {
            use tokio_serial::SerialPortBuilderExt;
            let parity = match parity {
                Parity::None => tokio_serial::Parity::None,
                Parity::Even => tokio_serial::Parity::Even,
                Parity::Odd => tokio_serial::Parity::Odd,
            };
            let data_bits = match data_bits {
                5 => tokio_serial::DataBits::Five,
                6 => tokio_serial::DataBits::Six,
                7 => tokio_serial::DataBits::Seven,
                _ => tokio_serial::DataBits::Eight,
            };
            let stop_bits = if *stop_bits == 2 {
                tokio_serial::StopBits::Two
            } else {
                tokio_serial::StopBits::One
            };
            let port = tokio_serial::new(path.as_str(), *baud)
                .parity(parity)
                .data_bits(data_bits)
                .stop_bits(stop_bits)
                .open_native_async()
                .map_err(io::Error::other)?;
            Ok(tokio_modbus::client::rtu::attach(Drain { inner: port }))
        }
    }
}

/// A transport that throws away every byte waiting to be read before it
/// writes: with one request in flight, such bytes can only be the late reply
/// to a request that already timed out.
#[derive(Debug)]
pub struct Drain<T> {
    inner: T,
}

impl<T: AsyncRead + Unpin> AsyncRead for Drain<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Drain<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut scratch = [0u8; 256];
        loop {
            let mut rb = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                    tracing::debug!(
                        bytes = rb.filled().len(),
                        "discarded unsolicited modbus bytes"
                    );
                }
                _ => break,
            }
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn drain_discards_unsolicited_bytes_before_writing() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut d = Drain { inner: a };
        b.write_all(b"stale").await.unwrap();
        tokio::task::yield_now().await;
        d.write_all(b"req").await.unwrap();
        let mut got = [0u8; 3];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"req");
        b.write_all(b"fresh").await.unwrap();
        let mut reply = [0u8; 5];
        d.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"fresh");
    }
}
