//! The comparison of docs/benchmarks.md (gridwatch against Mosquitto + Node-RED): what a user would
//! otherwise deploy — Mosquitto + Node-RED doing the same smoke
//! threshold-and-notify job — under the same load as gridwatch, in the same
//! run (`loadrun --compare nodered`, docs/benchmarks.md).
//!
//! The flow is committed in bench/nodered/ (flows.json, settings.js, a
//! pinned node-red in package.json / package-lock.json, installed with
//! `npm ci` by bench/nodered/install). The harness starts Mosquitto and
//! `node red.js` on free ports with a temp user dir, hands the flow the ports
//! and a compound.json made from the same registry and rules gridwatch gets,
//! and measures from outside exactly as for gridwatch: readings the flow
//! handled (its `GET /bench/stats`), CPU and peak RSS of node and Mosquitto,
//! alarm latency at the same webhook sink.
//!
//! The durability comparison kills the processing process (gridwatch or
//! node) with SIGKILL while every alarm is waiting for a webhook that is
//! down, brings the webhook up, restarts the process, and counts alarms that
//! never arrive.

use crate::api::Api;
use crate::bins::repo_root;
use crate::http_sink::HttpSink;
use crate::load::{
    self, cpu_seconds, play_load, start_mosquitto, status_mib, write_config, write_registry, Bins,
    BrokerConn, LoadSpec, Proc, Row, DRAIN, HOOK_PATH, ROUTING_TOML, RULES_TOML,
};
use crate::{free_port, temp_dir};
use anyhow::{bail, Context};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The label of Node-RED rows in the load table.
pub const LABEL: &str = "nodered";

/// bench/nodered/ in the repository.
pub fn bench_dir() -> PathBuf {
    repo_root().join("bench").join("nodered")
}

/// The installed Node-RED entry point (present after bench/nodered/install).
pub fn red_js() -> PathBuf {
    bench_dir().join("node_modules/node-red/red.js")
}

/// Fails with the install command when Node-RED or node is missing.
pub fn check_installed() -> anyhow::Result<()> {
    if !red_js().exists() {
        bail!(
            "Node-RED is not installed: run bench/nodered/install (scripts/loadrun --compare nodered does it)"
        );
    }
    Command::new("node")
        .arg("--version")
        .output()
        .context("node is not on PATH")?;
    Ok(())
}

/// "node vX, node-red Y, mosquitto Z", for the report.
pub fn versions() -> String {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let red = std::fs::read_to_string(bench_dir().join("node_modules/node-red/package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    let mosquitto = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "mosquitto"]
        .into_iter()
        .find_map(|b| Command::new(b).arg("-h").output().ok())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.replace("mosquitto version ", ""))
        })
        .unwrap_or_else(|| "?".into());
    format!("node {node}, node-red {red}, mosquitto {mosquitto}")
}

/// The flow's lookup table from gridwatch's own config files: the smoke rule
/// of `rules` (`[smoke] alarm`, `alarm_flag`) and, for every device of
/// `registry`, its household, address, location and whom the load routing
/// notifies (smoke → the grid workers of the household's grid, by webhook).
pub fn compound_json(registry: &str, rules: &str) -> anyhow::Result<Value> {
    let registry: toml::Table = toml::from_str(registry).context("registry.toml")?;
    let rules: toml::Table = toml::from_str(rules).context("rules.toml")?;
    let smoke = rules
        .get("smoke")
        .and_then(|s| s.as_table())
        .context("rules.toml has no [smoke]")?;
    let alarm = smoke
        .get("alarm")
        .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
        .context("[smoke] alarm")?;
    let alarm_flag = smoke
        .get("alarm_flag")
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    let list = |key: &str| -> Vec<&toml::Table> {
        registry
            .get(key)
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|t| t.as_table()).collect())
            .unwrap_or_default()
    };
    let field = |t: &toml::Table, k: &str| t.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let names: HashMap<String, String> = list("contacts")
        .into_iter()
        .filter_map(|c| Some((field(c, "id")?, field(c, "name").unwrap_or_default())))
        .collect();
    let workers: HashMap<String, Vec<Value>> = list("grids")
        .into_iter()
        .filter_map(|g| {
            let ids = g.get("grid_workers")?.as_array()?;
            let notify = ids
                .iter()
                .filter_map(|id| id.as_str())
                .map(|id| {
                    json!({
                        "contact_id": id,
                        "role": "grid_worker",
                        "name": names.get(id).cloned().unwrap_or_default(),
                    })
                })
                .collect();
            Some((field(g, "id")?, notify))
        })
        .collect();
    let households: HashMap<String, (String, Option<String>)> = list("households")
        .into_iter()
        .filter_map(|h| Some((field(h, "id")?, (field(h, "address")?, field(h, "grid")))))
        .collect();
    let mut devices = Map::new();
    for d in list("devices") {
        let (Some(id), Some(household)) = (field(d, "id"), field(d, "household")) else {
            continue;
        };
        let Some((address, grid)) = households.get(&household) else {
            bail!("device {id}: unknown household {household}");
        };
        let notify = grid
            .as_ref()
            .and_then(|g| workers.get(g))
            .cloned()
            .unwrap_or_default();
        devices.insert(
            id,
            json!({
                "household": household,
                "address": address,
                "location": field(d, "location").unwrap_or_default(),
                "notify": notify,
            }),
        );
    }
    Ok(json!({
        "rules": {"smoke": {"alarm": alarm, "alarm_flag": alarm_flag}},
        "devices": devices,
    }))
}

/// What the flow's `GET /bench/stats` says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Readings the threshold function ran on.
    pub handled: u64,
    /// Alarms it raised.
    pub alarms: u64,
    /// The mqtt in node reports a broker connection.
    pub connected: bool,
}

/// A running Node-RED with the committed flow; killed on drop.
pub struct NodeRed {
    proc: Proc,
    port: u16,
    user_dir: PathBuf,
}

impl NodeRed {
    /// Starts `node red.js` with bench/nodered/settings.js, user dir
    /// `dir`/nodered (flows.json copied in on the first start only, so a
    /// restart finds what the first run left), and waits until the flow is
    /// subscribed; returns it and the spawn → subscribed time.
    pub async fn start(
        dir: &Path,
        mqtt_port: u16,
        webhook_url: &str,
        compound: &Path,
    ) -> (NodeRed, Duration) {
        let user_dir = dir.join("nodered");
        std::fs::create_dir_all(&user_dir).expect("create the Node-RED user dir");
        let flows = user_dir.join("flows.json");
        if !flows.exists() {
            std::fs::copy(bench_dir().join("flows.json"), &flows).expect("copy flows.json");
        }
        let port = free_port();
        let log_path = user_dir.join("node-red.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open node-red.log");
        let start = Instant::now();
        let child = Command::new("node")
            .arg(red_js())
            .arg("--settings")
            .arg(bench_dir().join("settings.js"))
            .arg("--userDir")
            .arg(&user_dir)
            .env("PORT", port.to_string())
            .env("GW_MQTT_PORT", mqtt_port.to_string())
            .env("GW_WEBHOOK_URL", webhook_url)
            .env("GW_COMPOUND", compound)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn node red.js (is node installed?): {e}"));
        let mut nr = NodeRed {
            proc: Proc::new(child, "node-red"),
            port,
            user_dir,
        };
        loop {
            if nr.stats().await.is_some_and(|s| s.connected) {
                return (nr, start.elapsed());
            }
            nr.proc.check_alive(&log_path);
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "Node-RED not subscribed within 60 s\n{}",
                crate::tail(&log_path, 30)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The flow's counters; `None` while it does not answer.
    pub async fn stats(&self) -> Option<Stats> {
        let url = format!("http://127.0.0.1:{}/bench/stats", self.port);
        let fetched = async { reqwest::get(&url).await.ok()?.json::<Value>().await.ok() };
        let v = tokio::time::timeout(Duration::from_secs(10), fetched)
            .await
            .ok()??;
        Some(Stats {
            handled: v["handled"].as_u64()?,
            alarms: v["alarms"].as_u64()?,
            connected: v["mqtt"] == "connected",
        })
    }

    /// The node process's pid.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// Panics with the log tail if node exited.
    pub fn check_alive(&mut self) {
        let log = self.user_dir.join("node-red.log");
        self.proc.check_alive(&log);
    }
}

/// Writes registry.toml (as for gridwatch) and compound.json into `dir`;
/// returns compound.json's path.
pub fn write_compound(bins: &Bins, dir: &Path, devices: u32) -> PathBuf {
    let registry = write_registry(bins, dir, "registry.toml", devices);
    let text = std::fs::read_to_string(&registry).expect("read registry.toml");
    let compound = compound_json(&text, RULES_TOML).expect("compound.json from the registry");
    let path = dir.join("compound.json");
    std::fs::write(&path, compound.to_string()).expect("write compound.json");
    path
}

/// One load run through Mosquitto + Node-RED at `spec.rate`; `spec.broker`
/// is ignored. The row's `cpu s` / `peak rss` are node's, `broker cpu s`
/// and the broker peak RSS Mosquitto's; Node-RED has no outbox (`-`).
pub async fn run_once(bins: &Bins, spec: &LoadSpec) -> Row {
    let dir = temp_dir();
    let sink = HttpSink::start().await;
    let (mut mosquitto, mqtt_port) = start_mosquitto(dir.path());
    let compound = write_compound(bins, dir.path(), spec.devices);
    let (mut nr, _) = NodeRed::start(dir.path(), mqtt_port, &sink.url(HOOK_PATH), &compound).await;
    let handled_before = nr.stats().await.map_or(0, |s| s.handled);
    let cpu_before = cpu_seconds(nr.pid());
    let broker_cpu_before = cpu_seconds(mosquitto.pid());

    let (sent, load_elapsed, alarms) = play_load(bins, spec, mqtt_port, dir.path()).await;

    let drain_start = Instant::now();
    let mut last = nr.stats().await.map_or(0, |s| s.handled);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = nr.stats().await.map_or(last, |s| s.handled);
        let done = sink.requests_to(HOOK_PATH).len() >= alarms.len() && now == last;
        last = now;
        if done || drain_start.elapsed() > DRAIN {
            break;
        }
    }
    nr.check_alive();
    let handled = last.saturating_sub(handled_before);
    let latencies = load::alarm_latencies(&sink, &alarms);
    let row = Row {
        broker: LABEL,
        offered: spec.rate,
        sent_rate: sent as f64 / load_elapsed.max(spec.duration),
        handled_rate: handled as f64 / load_elapsed.max(spec.duration),
        sent,
        handled,
        alarms_sent: alarms.len(),
        alarms_received: latencies.len(),
        latency_ms: load::latency_summary(&latencies),
        cpu_s: cpu_seconds(nr.pid()) - cpu_before,
        broker_cpu_s: Some(cpu_seconds(mosquitto.pid()) - broker_cpu_before),
        peak_rss_mib: status_mib(nr.pid(), "VmHWM"),
        broker_peak_rss_mib: Some(status_mib(mosquitto.pid(), "VmHWM")),
        outbox: f64::NAN,
        shed: f64::NAN,
    };
    nr.kill9();
    mosquitto.kill9();
    row
}

/// CPU seconds (process + broker) per 1 000 readings handled.
pub fn cpu_per_1k(r: &Row) -> f64 {
    (r.cpu_s + r.broker_cpu_s.unwrap_or(0.0)) * 1000.0 / (r.handled.max(1) as f64)
}

/// Peak RSS of the process plus the external broker, MiB.
pub fn rss_total(r: &Row) -> f64 {
    r.peak_rss_mib + r.broker_peak_rss_mib.unwrap_or(0.0)
}

/// The ratio table: every gridwatch row against the Node-RED row at the
/// same offered rate. Ratios read "how many times better gridwatch is":
/// Node-RED ÷ gridwatch for costs (p99, CPU, RSS), gridwatch ÷ Node-RED
/// for handled readings/s.
pub fn ratio_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| offered/s | gridwatch broker | handled/s gw / nr | ×handled | alarms received gw / nr | p99 ms gw / nr | ×p99 | cpu s per 1k readings gw / nr | ×cpu | peak rss MiB incl. broker gw / nr | ×rss |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let ratio = |a: f64, b: f64| {
        if a.is_finite() && b.is_finite() && b > 0.0 {
            format!("{:.2}", a / b)
        } else {
            "-".to_string()
        }
    };
    let p99 = |r: &Row| {
        r.latency_ms
            .map_or("-".to_string(), |l| format!("{:.2}", l[1]))
    };
    for nr in rows.iter().filter(|r| r.broker == LABEL) {
        for gw in rows
            .iter()
            .filter(|r| r.broker != LABEL && r.offered == nr.offered)
        {
            let _ = writeln!(
                out,
                "| {:.0} | {} | {:.0} / {:.0} | {} | {} / {} of {} | {} / {} | {} | {:.3} / {:.3} | {} | {:.1} / {:.1} | {} |",
                nr.offered,
                gw.broker,
                gw.handled_rate,
                nr.handled_rate,
                ratio(gw.handled_rate, nr.handled_rate),
                gw.alarms_received,
                nr.alarms_received,
                nr.alarms_sent,
                p99(gw),
                p99(nr),
                ratio(nr.p99(), gw.p99()),
                cpu_per_1k(gw),
                cpu_per_1k(nr),
                ratio(cpu_per_1k(nr), cpu_per_1k(gw)),
                rss_total(gw),
                rss_total(nr),
                ratio(rss_total(nr), rss_total(gw)),
            );
        }
    }
    out
}

/// Which process does the threshold-and-notify job in a durability run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// gridwatch behind the same external Mosquitto.
    Gridwatch,
    /// The committed Node-RED flow.
    NodeRed,
}

impl Target {
    /// Name in the table.
    pub fn label(self) -> &'static str {
        match self {
            Target::Gridwatch => "gridwatch",
            Target::NodeRed => LABEL,
        }
    }
}

/// One kill -9 durability run.
#[derive(Debug, Clone, PartialEq)]
pub struct DurabilityRow {
    /// Who processed the alarms.
    pub target: &'static str,
    /// Alarm readings published (one per device, all acked by Mosquitto).
    pub alarms: usize,
    /// Alarms the process had taken (gridwatch: open alarms; Node-RED:
    /// raised by the flow) when it was killed.
    pub taken_at_kill: u64,
    /// Restart → ready (gridwatch `/readyz`, Node-RED subscribed), ms.
    pub ready_ms: f64,
    /// Alarms that reached the sink after the restart (distinct devices).
    pub delivered: usize,
    /// Alarms that never arrived.
    pub lost: usize,
    /// Webhook requests received in all (duplicates included).
    pub requests: usize,
}

/// How long after the restart a run waits for the alarms to arrive: longer
/// than the 30 s backoff cap, so anything the process still had would be
/// retried at least once within it.
const AFTER_RESTART: Duration = Duration::from_secs(40);

/// kill -9 with every alarm waiting for a dead webhook: both targets read
/// from one Mosquitto (persistent session, QoS 1); `alarms` smoke readings
/// on `alarms` devices at 500/s while the webhook port refuses connections;
/// once the process has taken them all (or nothing moved for 5 s), SIGKILL,
/// the webhook comes up on its port, the process restarts in the same
/// directory; alarms that have not arrived within 40 s count as lost.
pub async fn run_durability(bins: &Bins, target: Target, alarms: u32) -> DurabilityRow {
    let dir = temp_dir();
    let (mut mosquitto, mqtt_port) = start_mosquitto(dir.path());
    let sink_port = free_port(); // nothing listens yet: connection refused.
    let hook = format!("http://127.0.0.1:{sink_port}{HOOK_PATH}");
    let http_port = free_port();
    let api = Api::new(
        format!("http://127.0.0.1:{http_port}"),
        crate::DUTY_TOKEN.to_string(),
    );
    let compound = write_compound(bins, dir.path(), alarms);
    let start = |dir: PathBuf| {
        let (api, hook, compound) = (api.clone(), hook.clone(), compound.clone());
        async move {
            match target {
                Target::Gridwatch => {
                    let (p, ready) = load::start_gridwatch(bins, &dir, &api).await;
                    (Running::Gridwatch(p), ready)
                }
                Target::NodeRed => {
                    let (nr, ready) = NodeRed::start(&dir, mqtt_port, &hook, &compound).await;
                    (Running::NodeRed(nr), ready)
                }
            }
        }
    };
    if target == Target::Gridwatch {
        write_config(
            dir.path(),
            &BrokerConn::External(mqtt_port),
            http_port,
            &hook,
            ROUTING_TOML,
        );
    }
    let (mut running, _) = start(dir.path().to_path_buf()).await;

    let rate = 500.0;
    let spec = LoadSpec {
        rate,
        duration: f64::from(alarms) / rate,
        devices: alarms,
        alarms_per_sec: rate,
        broker: load::BrokerMode::Mosquitto,
        connections: 1,
        inflight: 100,
        alarm_connection: false,
    };
    let (_, _, sent) = play_load(bins, &spec, mqtt_port, dir.path()).await;

    // Kill once the process has taken every alarm, or nothing moved for 5 s.
    let wait_start = Instant::now();
    let (mut peak, mut peak_at) = (0u64, Instant::now());
    let taken_at_kill = loop {
        let taken = running.taken(&api).await;
        if taken > peak {
            (peak, peak_at) = (taken, Instant::now());
        }
        if taken >= sent.len() as u64
            || peak_at.elapsed() > Duration::from_secs(5)
            || wait_start.elapsed() > Duration::from_secs(120)
        {
            break taken;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Let a retry or two fail, as in the field (the webhook has been down a while).
    tokio::time::sleep(Duration::from_secs(1)).await;
    running.kill9();
    drop(running);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", sink_port))
        .await
        .expect("bind the sink port");
    let sink = HttpSink::start_on(listener).await;
    let (mut running, ready) = start(dir.path().to_path_buf()).await;
    let devices = |sink: &HttpSink| -> HashSet<String> {
        sink.requests_to(HOOK_PATH)
            .iter()
            .filter_map(|r| {
                r.json.as_ref()?["alarm"]["device_id"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    };
    let restarted = Instant::now();
    while devices(&sink).len() < sent.len() && restarted.elapsed() < AFTER_RESTART {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered = devices(&sink).len();
    let requests = sink.requests_to(HOOK_PATH).len();
    running.kill9();
    mosquitto.kill9();
    DurabilityRow {
        target: target.label(),
        alarms: sent.len(),
        taken_at_kill,
        ready_ms: ready.as_secs_f64() * 1000.0,
        delivered,
        lost: sent.len().saturating_sub(delivered),
        requests,
    }
}

/// The process under test in a durability run.
enum Running {
    Gridwatch(Proc),
    NodeRed(NodeRed),
}

impl Running {
    /// Alarms the process has taken so far.
    async fn taken(&self, api: &Api) -> u64 {
        match self {
            Running::Gridwatch(_) => api.open_alarms().await.len() as u64,
            Running::NodeRed(nr) => nr.stats().await.map_or(0, |s| s.alarms),
        }
    }

    fn kill9(&mut self) {
        match self {
            Running::Gridwatch(p) => p.kill9(),
            Running::NodeRed(nr) => nr.kill9(),
        }
    }
}

/// The durability rows as a Markdown table.
pub fn durability_table(rows: &[DurabilityRow]) -> String {
    let mut out = String::from(
        "| target | alarm readings | alarms taken at kill -9 | restart→ready ms | delivered after restart | lost | webhook requests |\n|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {} | {} | {} |",
            r.target, r.alarms, r.taken_at_kill, r.ready_ms, r.delivered, r.lost, r.requests
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTRY: &str = r#"
[[grids]]
id = "g1"
name = "网格"
grid_workers = ["c-a", "c-b"]

[[households]]
id = "h1"
address = "1幢101"
grid = "g1"

[[households]]
id = "h2"
address = "1幢102"

[[devices]]
id = "d1"
kind = "smoke"
household = "h1"
location = "厨房"
transport = "mqtt"

[[devices]]
id = "d2"
kind = "smoke"
household = "h2"
transport = "mqtt"

[[contacts]]
id = "c-a"
name = "张三"
webhook = "sink"
"#;

    #[test]
    fn compound_has_the_rules_threshold_and_each_devices_grid_workers() {
        let c = compound_json(REGISTRY, RULES_TOML).unwrap();
        assert_eq!(c["rules"]["smoke"]["alarm"], 0.15);
        assert_eq!(c["rules"]["smoke"]["alarm_flag"], true);
        let d1 = &c["devices"]["d1"];
        assert_eq!(d1["household"], "h1");
        assert_eq!(d1["address"], "1幢101");
        assert_eq!(d1["location"], "厨房");
        let ids: Vec<&str> = d1["notify"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["contact_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["c-a", "c-b"]);
        assert_eq!(d1["notify"][0]["name"], "张三");
        assert_eq!(d1["notify"][0]["role"], "grid_worker");
        // A household without a grid: nobody to notify, still known.
        assert_eq!(c["devices"]["d2"]["notify"], json!([]));
    }

    #[test]
    fn compound_rejects_a_device_of_an_unknown_household() {
        let bad = REGISTRY.replace("household = \"h2\"", "household = \"h9\"");
        let err = compound_json(&bad, RULES_TOML).unwrap_err();
        assert!(err.to_string().contains("h9"), "{err}");
    }

    fn row(broker: &'static str, handled: u64, p99: f64, cpu: f64, rss: f64) -> Row {
        Row {
            broker,
            offered: 1000.0,
            sent_rate: 1000.0,
            handled_rate: handled as f64 / 10.0,
            sent: 10_000,
            handled,
            alarms_sent: 200,
            alarms_received: 200,
            latency_ms: Some([1.0, p99, p99, p99]),
            cpu_s: cpu,
            broker_cpu_s: Some(1.0),
            peak_rss_mib: rss,
            broker_peak_rss_mib: Some(10.0),
            outbox: 0.0,
            shed: 0.0,
        }
    }

    #[test]
    fn ratios_say_how_many_times_better_gridwatch_is() {
        let rows = [
            row("mosquitto", 10_000, 2.0, 1.0, 90.0),
            row(LABEL, 5_000, 8.0, 4.0, 40.0),
        ];
        let t = ratio_table(&rows);
        let line = t.lines().nth(2).unwrap();
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells[1], "mosquitto");
        assert_eq!(cells[3], "2.00", "handled gw ÷ nr: {line}");
        assert_eq!(cells[6], "4.00", "p99 nr ÷ gw: {line}");
        // (4 + 1) s / 5k vs (1 + 1) s / 10k readings: 1.0 vs 0.2 s per 1k.
        assert_eq!(cells[7], "0.200 / 1.000");
        assert_eq!(cells[8], "5.00");
        // RSS incl. the broker: 100 vs 50 MiB.
        assert_eq!(cells[10], "0.50");
        assert_eq!(
            t.lines().count(),
            3,
            "one row per gridwatch row at the rate"
        );
    }
}
