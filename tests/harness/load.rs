//! The load harness behind `loadrun` (docs/benchmarks.md): starts a gridwatch
//! process on free ports with a config made for the run (the simulated
//! devices' registry, smoke alarms routed to one webhook, limits that do not
//! interfere), catches the alarms in an in-process HTTP sink, plays
//! `firmware-sim load` at an offered rate and measures what came out.
//!
//! Everything is measured from outside the process: readings handled from
//! `gridwatch_readings_total`, CPU from `/proc/PID/stat`, peak RSS from
//! `VmHWM`, alarm latency from the reading's `ts` (send time, epoch ms) to the
//! sink's receive wall clock. Nothing here asserts a timing; the CI smoke test
//! only checks the table is complete.

use crate::api::{parse_metric, Api};
use crate::http_sink::HttpSink;
use crate::{free_port, temp_dir};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The path of the webhook the sink listens on.
pub const HOOK_PATH: &str = "/hook";

/// How long alarms may still trickle in after the load generator exits.
pub const DRAIN: Duration = Duration::from_secs(10);

/// Which broker the readings go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerMode {
    /// gridwatch's embedded rumqttd.
    Embedded,
    /// A Mosquitto started by the harness (`embedded = false`).
    Mosquitto,
}

impl BrokerMode {
    /// Name in the table.
    pub fn label(self) -> &'static str {
        match self {
            BrokerMode::Embedded => "embedded",
            BrokerMode::Mosquitto => "mosquitto",
        }
    }
}

/// The binaries a run uses (release for measurements, debug in CI).
#[derive(Debug, Clone)]
pub struct Bins {
    /// `gridwatch`.
    pub gridwatch: PathBuf,
    /// `firmware-sim`.
    pub firmware_sim: PathBuf,
}

/// One load run's knobs.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Offered readings per second.
    pub rate: f64,
    /// Seconds of load.
    pub duration: f64,
    /// Simulated devices; a prime count keeps every alarm on its own device
    /// (an open alarm is not raised twice).
    pub devices: u32,
    /// Alarm readings per second sprinkled into the load.
    pub alarms_per_sec: f64,
    /// The broker.
    pub broker: BrokerMode,
    /// `firmware-sim --connections`.
    pub connections: u32,
    /// `firmware-sim --inflight`.
    pub inflight: u16,
    /// `firmware-sim --alarm-connection`: alarms on a connection of their
    /// own (as a detector has) instead of behind the shared connections' telemetry.
    pub alarm_connection: bool,
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Broker label.
    pub broker: &'static str,
    /// Offered readings/s.
    pub offered: f64,
    /// Readings/s the generator managed to publish.
    pub sent_rate: f64,
    /// Readings/s the gateway accepted (counter delta over the load's wall time).
    pub handled_rate: f64,
    /// Readings the generator published.
    pub sent: u64,
    /// Readings the gateway accepted.
    pub handled: u64,
    /// Alarm readings sent.
    pub alarms_sent: usize,
    /// Alarms that reached the webhook sink.
    pub alarms_received: usize,
    /// Publish → webhook latency percentiles in ms (p50, p99, p999, max); `None` without samples.
    pub latency_ms: Option<[f64; 4]>,
    /// CPU seconds of the gridwatch process during the run.
    pub cpu_s: f64,
    /// CPU seconds of the external broker, if any.
    pub broker_cpu_s: Option<f64>,
    /// Peak RSS (VmHWM) of gridwatch in MiB.
    pub peak_rss_mib: f64,
    /// Peak RSS (VmHWM) of the external broker in MiB, if any (not a table
    /// column: the Node-RED comparison adds it to the process's own).
    pub broker_peak_rss_mib: Option<f64>,
    /// `gridwatch_outbox_pending` at the end.
    pub outbox: f64,
    /// Telemetry readings shed under overload (`gridwatch_readings_shed_total`,
    /// all reasons) during the run; NaN where there is no such counter.
    pub shed: f64,
}

impl Row {
    /// p99 in ms, or infinity without samples (never under a target).
    pub fn p99(&self) -> f64 {
        self.latency_ms.map_or(f64::INFINITY, |l| l[1])
    }
}

/// The table's column names, in order.
pub const COLUMNS: [&str; 16] = [
    "broker",
    "offered/s",
    "sent/s",
    "handled/s",
    "handled",
    "alarms",
    "received",
    "p50 ms",
    "p99 ms",
    "p999 ms",
    "max ms",
    "cpu s",
    "broker cpu s",
    "peak rss MiB",
    "outbox",
    "shed",
];

/// The rows as one Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!("| {} |\n", COLUMNS.join(" | "));
    let _ = writeln!(out, "|{}", "---:|".repeat(COLUMNS.len()));
    for r in rows {
        let lat = |i: usize| {
            r.latency_ms
                .map_or("-".to_string(), |l| format!("{:.2}", l[i]))
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {:.1} | {} | {} |",
            r.broker,
            r.offered,
            r.sent_rate,
            r.handled_rate,
            r.handled,
            r.alarms_sent,
            r.alarms_received,
            lat(0),
            lat(1),
            lat(2),
            lat(3),
            r.cpu_s,
            r.broker_cpu_s.map_or("-".to_string(), |c| format!("{c:.2}")),
            r.peak_rss_mib,
            if r.outbox.is_nan() {
                "-".to_string()
            } else {
                format!("{:.0}", r.outbox)
            },
            if r.shed.is_nan() {
                "-".to_string()
            } else {
                format!("{:.0}", r.shed)
            }
        );
    }
    out
}

/// The knee: the highest offered rate whose alarms all arrived with p99 under `target_ms`.
pub fn knee(rows: &[Row], target_ms: f64) -> Option<f64> {
    rows.iter()
        .filter(|r| r.alarms_received == r.alarms_sent && r.p99() < target_ms)
        .map(|r| r.offered)
        .fold(None, |best: Option<f64>, x| {
            Some(best.map_or(x, |b| b.max(x)))
        })
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The load rules: docs/contract.md §2 defaults, no overrides.
pub const RULES_TOML: &str = r#"[residual_current]
warning = 200
alarm = 300
clear = 250
for = "5s"

[temperature]
warning = 60
alarm = 70

[smoke]
alarm_flag = true
alarm = 0.15

[heartbeat]
mqtt = "5m"
modbus_failures = 3
"#;

/// Smoke alarms to the grid worker by webhook only; no escalation or
/// reminder inside a run; a rate limit far above what a run sends.
pub const ROUTING_TOML: &str = r#"[roles]
grid_worker = ["webhook"]

[[route]]
kinds = ["smoke"]
severities = ["alarm", "critical"]
notify = ["grid_worker"]

[rate_limit]
max = 1000000
per = "1s"

[linkage]
sound_on = []
"#;

/// gateway.toml for a load run.
pub fn gateway_toml(
    broker: &BrokerConn,
    http_port: u16,
    webhook_url: &str,
    registry_file: &str,
) -> String {
    let mqtt = match broker {
        BrokerConn::Embedded(port) => {
            format!("embedded = true\nlisten = \"127.0.0.1:{port}\"")
        }
        BrokerConn::External(port) => {
            format!("embedded = false\nexternal = \"mqtt://127.0.0.1:{port}\"")
        }
    };
    format!(
        r#"registry = "{registry_file}"
rules = "rules.toml"
routing = "routing.toml"

[site]
id = "load"
name = "load test"
locale = "zh-CN"

[storage]
path = "data"

[mqtt]
{mqtt}
device_rate = 100000.0
device_burst = 100000.0

[http]
listen = "127.0.0.1:{http_port}"
public_url = "http://127.0.0.1:{http_port}"

[[http.tokens]]
name = "load"
role = "duty_officer"
token = "{token}"

[channels.webhook.sink]
url = "{webhook_url}"
format = "json"
timeout = "5s"
"#,
        token = crate::DUTY_TOKEN
    )
}

/// Where gridwatch finds its broker.
#[derive(Debug, Clone, Copy)]
pub enum BrokerConn {
    /// The embedded broker listens on this port.
    Embedded(u16),
    /// An external broker on this port.
    External(u16),
}

impl BrokerConn {
    /// The port firmware-sim connects to.
    pub fn port(self) -> u16 {
        match self {
            BrokerConn::Embedded(p) | BrokerConn::External(p) => p,
        }
    }
}

/// A child process killed (and reaped) on drop.
pub struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    /// Takes ownership of a spawned child; `name` is used in panics.
    pub fn new(child: Child, name: &'static str) -> Proc {
        Proc { child, name }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Panics (naming the process and `log`) if it has exited.
    pub fn check_alive(&mut self, log: &Path) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status})\n{}", self.name, crate::tail(log, 30));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts Mosquitto on a free loopback port (anonymous, no persistence).
pub fn start_mosquitto(dir: &Path) -> (Proc, u16) {
    let port = free_port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n"
        ),
    )
    .expect("write mosquitto.conf");
    let log = File::create(dir.join("mosquitto.log")).expect("create mosquitto.log");
    // /usr/sbin is not on every PATH (scripts/test installs the package).
    let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("mosquitto");
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn mosquitto (is it installed?): {e}"));
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < crate::WAIT,
            "mosquitto did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (
        Proc {
            child,
            name: "mosquitto",
        },
        port,
    )
}

/// Writes `registry.toml` for `devices` simulated devices into `dir` with
/// `firmware-sim load --registry-only`.
pub fn write_registry(bins: &Bins, dir: &Path, file: &str, devices: u32) -> PathBuf {
    let path = dir.join(file);
    let status = Command::new(&bins.firmware_sim)
        .args(["load", "--devices", &devices.to_string()])
        .args(["--rate", "1", "--duration", "0", "--registry-only"])
        .arg("--registry-out")
        .arg(&path)
        .status()
        .expect("run firmware-sim load --registry-only");
    assert!(status.success(), "firmware-sim --registry-only: {status}");
    path
}

/// Writes rules.toml, routing.toml and gateway.toml into `dir` (the registry
/// must be there already); returns gateway.toml's path.
pub fn write_config(
    dir: &Path,
    broker: &BrokerConn,
    http_port: u16,
    webhook_url: &str,
    routing: &str,
) -> PathBuf {
    std::fs::write(dir.join("rules.toml"), RULES_TOML).expect("write rules.toml");
    std::fs::write(dir.join("routing.toml"), routing).expect("write routing.toml");
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        gateway_toml(broker, http_port, webhook_url, "registry.toml"),
    )
    .expect("write gateway.toml");
    config
}

/// Starts `gridwatch run` in `dir` (logs to gridwatch.log, warnings only);
/// returns it and how long `/readyz` took to answer 200.
pub async fn start_gridwatch(bins: &Bins, dir: &Path, api: &Api) -> (Proc, Duration) {
    let log_path = dir.join("gridwatch.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .expect("open gridwatch.log");
    let start = Instant::now();
    let child = Command::new(&bins.gridwatch)
        .arg("run")
        .arg("--config")
        .arg(dir.join("gateway.toml"))
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn gridwatch run: {e}"));
    let mut proc = Proc {
        child,
        name: "gridwatch",
    };
    loop {
        if api.readyz().await == Some(200) {
            return (proc, start.elapsed());
        }
        proc.check_alive(&log_path);
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "gridwatch not ready within 60 s\n{}",
            crate::tail(&log_path, 30)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// utime + stime of a process in seconds (`/proc/PID/stat`), 0 when unreadable.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / clock_ticks()
}

/// `getconf CLK_TCK` (100 on Linux unless it says otherwise).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// A `/proc/PID/status` field in kB (e.g. `VmHWM`, `VmRSS`) as MiB.
pub fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(&format!("{field}:")))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Wall clock in epoch ms with sub-ms precision.
pub fn epoch_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// `(device_id, ts)` per line of `--alarms-out`.
pub fn read_alarms_out(path: &Path) -> Vec<(String, i64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["device_id"].as_str()?.to_string(), v["ts"].as_i64()?)))
        .collect()
}

/// What `firmware-sim load` printed last: `published N`.
pub fn published_count(stdout: &str) -> u64 {
    stdout
        .split("published ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// One load run at `spec.rate`: a fresh gateway (and broker), the load, the measurements.
pub async fn run_once(bins: &Bins, spec: &LoadSpec) -> Row {
    let dir = temp_dir();
    let sink = HttpSink::start().await;
    let (mut mosquitto, conn) = match spec.broker {
        BrokerMode::Embedded => (None, BrokerConn::Embedded(free_port())),
        BrokerMode::Mosquitto => {
            let (p, port) = start_mosquitto(dir.path());
            (Some(p), BrokerConn::External(port))
        }
    };
    let http_port = free_port();
    write_registry(bins, dir.path(), "registry.toml", spec.devices);
    write_config(
        dir.path(),
        &conn,
        http_port,
        &sink.url(HOOK_PATH),
        ROUTING_TOML,
    );
    let api = Api::new(
        format!("http://127.0.0.1:{http_port}"),
        crate::DUTY_TOKEN.to_string(),
    );
    let (mut gw, _) = start_gridwatch(bins, dir.path(), &api).await;
    let handled_before = readings_total(&api).await;
    let shed_before = shed_total(&api).await;
    let cpu_before = cpu_seconds(gw.pid());
    let broker_cpu_before = mosquitto.as_ref().map(|m| cpu_seconds(m.pid()));

    let (sent, load_elapsed, alarms) = play_load(bins, spec, conn.port(), dir.path()).await;

    // Let the last readings and alarms through: until every alarm arrived and
    // the counter stopped moving, or DRAIN.
    let drain_start = Instant::now();
    let mut last = readings_total(&api).await;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = readings_total(&api).await;
        let done = sink.requests_to(HOOK_PATH).len() >= alarms.len() && now == last;
        last = now;
        if done || drain_start.elapsed() > DRAIN {
            break;
        }
    }
    gw.check_alive(&dir.path().join("gridwatch.log"));
    let handled = (last - handled_before).max(0.0) as u64;

    let latencies = alarm_latencies(&sink, &alarms);
    let latency_ms = latency_summary(&latencies);
    let outbox = parse_metric(&api.metrics().await, "gridwatch_outbox_pending", &[]).unwrap_or(0.0);
    let shed = shed_total(&api).await - shed_before;
    let row = Row {
        broker: spec.broker.label(),
        offered: spec.rate,
        sent_rate: sent as f64 / load_elapsed.max(spec.duration),
        handled_rate: handled as f64 / load_elapsed.max(spec.duration),
        sent,
        handled,
        alarms_sent: alarms.len(),
        alarms_received: latencies.len(),
        latency_ms,
        cpu_s: cpu_seconds(gw.pid()) - cpu_before,
        broker_cpu_s: mosquitto
            .as_ref()
            .zip(broker_cpu_before)
            .map(|(m, before)| cpu_seconds(m.pid()) - before),
        peak_rss_mib: status_mib(gw.pid(), "VmHWM"),
        broker_peak_rss_mib: mosquitto.as_ref().map(|m| status_mib(m.pid(), "VmHWM")),
        outbox,
        shed,
    };
    gw.kill9();
    if let Some(m) = mosquitto.as_mut() {
        m.kill9();
    }
    report_slow_flushes(&dir.path().join("gridwatch.log"), spec.rate);
    row
}

/// Repeats the gateway's slow-store-flush warnings on stderr: a disk that
/// stalled during a run explains a latency tail the table alone cannot.
fn report_slow_flushes(log: &Path, rate: f64) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    for line in text.lines().filter(|l| l.contains("slow store flush")) {
        eprintln!("loadrun: at {rate}/s the gateway logged: {line}");
    }
}

/// Plays `firmware-sim load` at `spec` against the broker on `mqtt_port`;
/// returns readings published, the generator's wall time in s, and the
/// alarm readings sent (`(device_id, ts)`, written to `dir`/alarms.jsonl).
pub async fn play_load(
    bins: &Bins,
    spec: &LoadSpec,
    mqtt_port: u16,
    dir: &Path,
) -> (u64, f64, Vec<(String, i64)>) {
    let alarm_every = ((spec.rate / spec.alarms_per_sec).round() as u64).max(1);
    let alarms_path = dir.join("alarms.jsonl");
    let load_start = Instant::now();
    let out = tokio::process::Command::new(&bins.firmware_sim)
        .args(["load", "--devices", &spec.devices.to_string()])
        .args(["--rate", &spec.rate.to_string()])
        .args(["--duration", &spec.duration.to_string()])
        .args(["--mqtt", &format!("127.0.0.1:{mqtt_port}")])
        .args(["--alarm-every", &alarm_every.to_string()])
        .args(["--alarm-kind", "smoke"])
        .args(["--connections", &spec.connections.to_string()])
        .args(["--inflight", &spec.inflight.to_string()])
        .args(spec.alarm_connection.then_some("--alarm-connection"))
        .arg("--alarms-out")
        .arg(&alarms_path)
        .output()
        .await
        .expect("run firmware-sim load");
    let load_elapsed = load_start.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "firmware-sim load failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (
        published_count(&stdout),
        load_elapsed,
        read_alarms_out(&alarms_path),
    )
}

/// Latency in ms of every webhook the sink got on [`HOOK_PATH`] for one of
/// `alarms` (matched by `alarm.device_id`), sorted.
pub fn alarm_latencies(sink: &HttpSink, alarms: &[(String, i64)]) -> Vec<f64> {
    let sent_at: HashMap<&str, i64> = alarms.iter().map(|(d, ts)| (d.as_str(), *ts)).collect();
    let timed: Vec<(&str, i64, f64)> = sink
        .requests_to(HOOK_PATH)
        .iter()
        .filter_map(|r| {
            let device = r.json.as_ref()?["alarm"]["device_id"].as_str()?;
            let (device, ts) = sent_at.get_key_value(device)?;
            Some((*device, *ts, epoch_ms(r.received_wall) - *ts as f64))
        })
        .collect();
    dump_latencies(&timed);
    let mut latencies: Vec<f64> = timed.iter().map(|(_, _, l)| *l).collect();
    latencies.sort_by(f64::total_cmp);
    latencies
}

/// With `LOADRUN_LATENCIES=FILE`, appends `device send_ts_ms latency_ms` per
/// alarm in send order, to see *which* alarms make the tail (the first after
/// start? a periodic one?).
fn dump_latencies(timed: &[(&str, i64, f64)]) {
    let Some(path) = std::env::var_os("LOADRUN_LATENCIES") else {
        return;
    };
    let mut rows = timed.to_vec();
    rows.sort_by_key(|(_, ts, _)| *ts);
    let text: String = rows
        .iter()
        .map(|(d, ts, l)| format!("{d} {ts} {l:.2}\n"))
        .collect();
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
    if let Err(e) = written {
        eprintln!("loadrun: cannot write {}: {e}", path.to_string_lossy());
    }
}

/// p50, p99, p999 and max of sorted latencies; `None` without samples.
pub fn latency_summary(sorted: &[f64]) -> Option<[f64; 4]> {
    let max = *sorted.last()?;
    Some([
        percentile(sorted, 0.50),
        percentile(sorted, 0.99),
        percentile(sorted, 0.999),
        max,
    ])
}

/// `gridwatch_readings_total` summed over sources.
pub async fn readings_total(api: &Api) -> f64 {
    parse_metric(&api.metrics().await, "gridwatch_readings_total", &[]).unwrap_or(0.0)
}

/// Start-up figures of a gateway with many registered devices.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleRow {
    /// Registered devices.
    pub devices: u32,
    /// Spawn → `/readyz` 200.
    pub ready_ms: f64,
    /// VmRSS right after ready, MiB.
    pub rss_ready_mib: f64,
    /// VmRSS after `settle` idle, MiB.
    pub rss_steady_mib: f64,
    /// VmHWM, MiB.
    pub peak_rss_mib: f64,
}

/// Start-to-ready time and RSS with `devices` registered (embedded broker, no load).
pub async fn run_scale(bins: &Bins, devices: u32, settle: Duration) -> ScaleRow {
    let dir = temp_dir();
    let http_port = free_port();
    write_registry(bins, dir.path(), "registry.toml", devices);
    write_config(
        dir.path(),
        &BrokerConn::Embedded(free_port()),
        http_port,
        "http://127.0.0.1:9/unused",
        ROUTING_TOML,
    );
    let api = Api::new(
        format!("http://127.0.0.1:{http_port}"),
        crate::DUTY_TOKEN.to_string(),
    );
    let (gw, ready) = start_gridwatch(bins, dir.path(), &api).await;
    let rss_ready = status_mib(gw.pid(), "VmRSS");
    tokio::time::sleep(settle).await;
    ScaleRow {
        devices,
        ready_ms: ready.as_secs_f64() * 1000.0,
        rss_ready_mib: rss_ready,
        rss_steady_mib: status_mib(gw.pid(), "VmRSS"),
        peak_rss_mib: status_mib(gw.pid(), "VmHWM"),
    }
}

/// The scale rows as a Markdown table.
pub fn scale_table(rows: &[ScaleRow]) -> String {
    let mut out = String::from(
        "| devices | start→ready ms | RSS at ready MiB | RSS steady MiB | peak RSS MiB |\n|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.1} | {:.1} | {:.1} |",
            r.devices, r.ready_ms, r.rss_ready_mib, r.rss_steady_mib, r.peak_rss_mib
        );
    }
    out
}

/// Figures of a kill -9 with a pending outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryRow {
    /// Alarms raised while the webhook was down.
    pub alarms: usize,
    /// Open alarms at the kill.
    pub open_at_kill: usize,
    /// Pending notifications at the kill.
    pub pending_at_kill: f64,
    /// Restart → `/readyz` 200.
    pub ready_ms: f64,
    /// Restart → outbox empty (the sink is up from the restart on).
    pub drained_ms: f64,
    /// Webhook requests the sink got after the restart.
    pub delivered: usize,
    /// Distinct `delivery_id`s among them.
    pub distinct: usize,
    /// VmHWM of the restarted process, MiB.
    pub peak_rss_mib: f64,
}

/// Routing for the recovery run: the grid worker role has four people.
const RECOVERY_WORKERS: [&str; 4] = ["c-load-gw", "c-load-gw2", "c-load-gw3", "c-load-gw4"];

/// Raises an alarm on each of `devices` devices while the webhook is
/// unreachable (each alarm → one notification per grid worker, 4 of them),
/// kills gridwatch with SIGKILL once the outbox holds them all, brings the
/// webhook up, restarts, and times ready and drain.
pub async fn run_recovery(bins: &Bins, devices: u32) -> RecoveryRow {
    let dir = temp_dir();
    let http_port = free_port();
    let mqtt_port = free_port();
    let sink_port = free_port(); // nothing listens yet: connection refused, retried.
    let registry = write_registry(bins, dir.path(), "registry.toml", devices);
    let text = std::fs::read_to_string(&registry).expect("read registry");
    let mut text = text.replacen(
        "grid_workers = [\"c-load-gw\"]",
        &format!("grid_workers = {:?}", RECOVERY_WORKERS),
        1,
    );
    assert!(
        text.contains("c-load-gw2"),
        "registry layout changed: grid_workers line not found"
    );
    for id in &RECOVERY_WORKERS[1..] {
        let _ = write!(
            text,
            "\n[[contacts]]\nid = \"{id}\"\nname = \"负载测试网格员{id}\"\nwebhook = \"sink\"\n"
        );
    }
    std::fs::write(&registry, text).expect("write registry");
    let conn = BrokerConn::Embedded(mqtt_port);
    write_config(
        dir.path(),
        &conn,
        http_port,
        &format!("http://127.0.0.1:{sink_port}{HOOK_PATH}"),
        ROUTING_TOML,
    );
    let api = Api::new(
        format!("http://127.0.0.1:{http_port}"),
        crate::DUTY_TOKEN.to_string(),
    );
    let (mut gw, _) = start_gridwatch(bins, dir.path(), &api).await;
    // Every reading an alarm, each device once.
    let rate = 500.0;
    let out = tokio::process::Command::new(&bins.firmware_sim)
        .args(["load", "--devices", &devices.to_string()])
        .args(["--rate", &rate.to_string()])
        .args(["--duration", &(f64::from(devices) / rate).to_string()])
        .args(["--mqtt", &format!("127.0.0.1:{mqtt_port}")])
        .args(["--alarm-every", "1", "--alarm-kind", "smoke"])
        .output()
        .await
        .expect("run firmware-sim load");
    assert!(
        out.status.success(),
        "firmware-sim load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = f64::from(devices) * RECOVERY_WORKERS.len() as f64;
    // Kill at the peak: when all are pending, or when the count stopped
    // growing for 5 s (a slow debug build under 10k retrying deliveries
    // needs that long between batches; a sender that gives up on an unreachable webhook
    // without a fallback shrinks the outbox again).
    let start = Instant::now();
    let (mut peak, mut peak_at) = (0.0, Instant::now());
    let pending_at_kill = loop {
        let pending = outbox(&api).await;
        if pending > peak {
            (peak, peak_at) = (pending, Instant::now());
        }
        let open = metric_or(&api, "gridwatch_alarms_open").await;
        if (pending >= want && open >= f64::from(devices))
            || peak_at.elapsed() > Duration::from_secs(5)
            || start.elapsed() > Duration::from_secs(120)
        {
            break pending;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let open_at_kill = api.open_alarms().await.len();
    gw.kill9();
    // The webhook comes up on the port it was configured with.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", sink_port))
        .await
        .expect("bind the sink port");
    let sink = HttpSink::start_on(listener).await;
    let restart = Instant::now();
    let (gw, ready) = start_gridwatch(bins, dir.path(), &api).await;
    let drained = loop {
        if outbox(&api).await == 0.0 {
            break restart.elapsed();
        }
        assert!(
            restart.elapsed() < Duration::from_secs(300),
            "outbox not drained within 300 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let requests = sink.requests_to(HOOK_PATH);
    let mut ids: Vec<String> = requests
        .iter()
        .filter_map(|r| r.json.as_ref()?["delivery_id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids.dedup();
    RecoveryRow {
        alarms: devices as usize,
        open_at_kill,
        pending_at_kill,
        ready_ms: ready.as_secs_f64() * 1000.0,
        drained_ms: drained.as_secs_f64() * 1000.0,
        delivered: requests.len(),
        distinct: ids.len(),
        peak_rss_mib: status_mib(gw.pid(), "VmHWM"),
    }
}

/// The recovery row as a Markdown table.
pub fn recovery_table(r: &RecoveryRow) -> String {
    format!(
        "| alarm readings | open alarms at kill -9 | pending at kill -9 | restart→ready ms | restart→outbox empty ms | webhooks received | distinct deliveries | peak RSS MiB |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n| {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {:.1} |\n",
        r.alarms, r.open_at_kill, r.pending_at_kill, r.ready_ms, r.drained_ms, r.delivered, r.distinct, r.peak_rss_mib
    )
}

/// `gridwatch_readings_shed_total` summed over its reasons (0 when absent).
pub async fn shed_total(api: &Api) -> f64 {
    let text = api.metrics().await;
    SHED_REASONS
        .iter()
        .filter_map(|r| parse_metric(&text, "gridwatch_readings_shed_total", &[("reason", r)]))
        .sum()
}

/// The `reason` labels of `gridwatch_readings_shed_total`.
pub const SHED_REASONS: [&str; 2] = ["coalesced", "queue_full"];

/// `gridwatch_outbox_pending`; -1 when /metrics does not answer in time (a
/// busy debug build), so a caller polls again instead of failing.
pub async fn outbox(api: &Api) -> f64 {
    metric_or(api, "gridwatch_outbox_pending").await
}

/// A metric's value; -1 when /metrics does not answer within 30 s.
async fn metric_or(api: &Api, name: &str) -> f64 {
    let url = format!("{}/metrics", api.base());
    let fetched = async {
        let response = reqwest::get(&url).await.ok()?;
        response.text().await.ok()
    };
    match tokio::time::timeout(Duration::from_secs(30), fetched).await {
        Ok(Some(text)) => parse_metric(&text, name, &[]).unwrap_or(0.0),
        _ => -1.0,
    }
}
