//! The two commands' I/O: pacing, publishing, recording and reporting. The
//! decisions (what to send, when) come from `scenario` and `schedule`.

use crate::bank::Behaviour;
use crate::modbus::SharedBank;
use crate::mqtt::{BrokerAddr, Counts, MqttError, Publisher, PublisherConfig};
use crate::payload::{now_ms, reading_topic, record_line, status_topic, Payload};
use crate::registry::registry_toml;
use crate::scenario::{Body, Scenario, ScenarioError};
use crate::schedule::{device_id, load_payload, AlarmKind, LoadPlan, PlanError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long to wait for outstanding PUBACKs at the end of a run.
const ACK_DEADLINE: Duration = Duration::from_secs(30);

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    Mqtt(#[from] MqttError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("--speed must be a positive number, got {0}")]
    BadSpeed(f64),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("load task failed: {0}")]
    Task(String),
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// A line-per-record output file (`--record`, `--alarms-out`).
struct LineFile {
    path: PathBuf,
    out: BufWriter<File>,
}

impl LineFile {
    fn create(path: &Path) -> Result<LineFile, RunError> {
        let file = File::create(path).map_err(write_err(path))?;
        Ok(LineFile {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    fn line(&mut self, line: &str) -> Result<(), RunError> {
        writeln!(self.out, "{line}").map_err(write_err(&self.path))
    }

    fn close(mut self) -> Result<(), RunError> {
        self.out.flush().map_err(write_err(&self.path))
    }
}

/// `firmware-sim scenario` options.
#[derive(Debug, Clone)]
pub struct ScenarioOptions {
    pub file: PathBuf,
    pub mqtt: BrokerAddr,
    pub speed: f64,
    pub record: Option<PathBuf>,
    /// No MQTT, no sleeping: print and record readings with computed timestamps.
    pub dry_run: bool,
    /// First timestamp of a dry run (epoch ms); now when absent.
    pub start_ts: Option<i64>,
    pub client_id: String,
    /// Simulated Modbus monitors: readings of these devices go to their
    /// registers instead of MQTT, and their status messages silence (offline)
    /// or wake (online) their unit.
    pub modbus: Option<SharedBank>,
}

/// What a scenario run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScenarioSummary {
    pub readings: u64,
    pub statuses: u64,
    pub counts: Counts,
}

/// Runs a scenario, printing one line per message to `out`.
pub async fn run_scenario(
    opts: &ScenarioOptions,
    out: &mut (dyn Write + Send),
) -> Result<ScenarioSummary, RunError> {
    if !(opts.speed.is_finite() && opts.speed > 0.0) {
        return Err(RunError::BadSpeed(opts.speed));
    }
    let scenario = Scenario::load(&opts.file)?;
    for w in scenario.warnings() {
        tracing::warn!(file = %opts.file.display(), "{w}");
    }
    let messages = scenario.expand();
    let mut record = opts.record.as_deref().map(LineFile::create).transpose()?;
    let on_modbus = |device: &str| {
        opts.modbus
            .as_ref()
            .is_some_and(|b| b.lock().unwrap_or_else(|e| e.into_inner()).has(device))
    };
    let needs_mqtt = messages.iter().any(|m| !on_modbus(&m.device));
    let publisher = if opts.dry_run || !needs_mqtt {
        None
    } else {
        let cfg = PublisherConfig::new(opts.client_id.clone());
        Some(Publisher::connect(&opts.mqtt, cfg).await?)
    };
    let _ = writeln!(
        out,
        "scenario {:?}: {} messages{}",
        scenario.file.name,
        messages.len(),
        if opts.dry_run { " (dry run)" } else { "" }
    );
    let start = Instant::now();
    let base_ts = opts.start_ts.unwrap_or_else(now_ms);
    let mut summary = ScenarioSummary::default();
    for m in &messages {
        let scaled = m.offset.div_f64(opts.speed);
        let ts = match &publisher {
            None if opts.dry_run => {
                base_ts.saturating_add(i64::try_from(scaled.as_millis()).unwrap_or(i64::MAX))
            }
            _ => {
                tokio::time::sleep_until((start + scaled).into()).await;
                now_ms()
            }
        };
        if let (Some(bank), false) = (&opts.modbus, opts.dry_run) {
            if on_modbus(&m.device) {
                let what = set_register(bank, &m.device, &m.body);
                summary.readings += u64::from(matches!(m.body, Body::Reading { .. }));
                summary.statuses += u64::from(matches!(m.body, Body::Status(_)));
                let _ = writeln!(
                    out,
                    "+{:>8.3}s  {:<18} modbus {what}",
                    m.offset.as_secs_f64(),
                    m.device
                );
                continue;
            }
        }
        let (topic, bytes, what) = match &m.body {
            Body::Reading { values, flags } => {
                let payload = Payload {
                    ts,
                    values: values.clone(),
                    flags: flags.clone(),
                };
                if let Some(rec) = record.as_mut() {
                    rec.line(&record_line(&m.device, &payload))?;
                }
                summary.readings += 1;
                let what = format!("reading {}", payload.summary());
                (reading_topic(&m.device), payload.to_json(), what)
            }
            Body::Status(s) => {
                summary.statuses += 1;
                let what = format!("status {}", s.as_str());
                (
                    status_topic(&m.device),
                    s.as_str().as_bytes().to_vec(),
                    what,
                )
            }
        };
        if let Some(p) = &publisher {
            p.publish(topic, bytes).await?;
        }
        let _ = writeln!(
            out,
            "+{:>8.3}s  {:<18} {what}",
            m.offset.as_secs_f64(),
            m.device
        );
    }
    if let Some(rec) = record {
        rec.close()?;
    }
    match publisher {
        Some(p) => {
            summary.counts = p.finish(ACK_DEADLINE).await?;
            let _ = writeln!(
                out,
                "done: published {}, acked {} ({} readings, {} status) in {:.2}s",
                summary.counts.published,
                summary.counts.acked,
                summary.readings,
                summary.statuses,
                start.elapsed().as_secs_f64()
            );
        }
        None if !opts.dry_run => {
            let _ = writeln!(
                out,
                "done: {} readings, {} status messages in {:.2}s",
                summary.readings,
                summary.statuses,
                start.elapsed().as_secs_f64()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "done (dry run): {} readings, {} status messages, nothing published",
                summary.readings, summary.statuses
            );
        }
    }
    Ok(summary)
}

/// Applies one scenario message to a Modbus monitor; returns what it did, for the log.
fn set_register(bank: &SharedBank, device: &str, body: &Body) -> String {
    let mut b = bank.lock().unwrap_or_else(|e| e.into_inner());
    match body {
        Body::Reading { values, flags } => {
            b.set_reading(device, values, flags);
            let vals: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("registers {} {:?}", vals.join(" "), flags)
        }
        Body::Status(s) => {
            let Some(unit) = b.unit_of(device) else {
                return String::new();
            };
            let behaviour = match s {
                crate::scenario::DeviceStatus::Offline => Behaviour::Silent,
                crate::scenario::DeviceStatus::Online => Behaviour::Normal,
            };
            b.set_behaviour(unit, behaviour);
            format!("unit {unit} {:?}", behaviour)
        }
    }
}

/// `firmware-sim load` options.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub plan: LoadPlan,
    pub mqtt: BrokerAddr,
    pub prefix: String,
    pub alarm_kind: AlarmKind,
    pub inflight: u16,
    /// Alarm readings on a connection of their own.
    pub alarm_connection: bool,
    pub registry_out: Option<PathBuf>,
    /// Write the registry and stop, without connecting.
    pub registry_only: bool,
    pub alarms_out: Option<PathBuf>,
    pub client_id: String,
}

/// What a load run did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadSummary {
    pub offered_rate: f64,
    pub achieved_rate: f64,
    pub counts: Counts,
    pub alarms: u64,
}

/// Writes `--registry-out` if asked.
pub fn write_registry(opts: &LoadOptions) -> Result<(), RunError> {
    if let Some(path) = &opts.registry_out {
        let text = registry_toml(&opts.prefix, opts.plan.devices, opts.alarm_kind);
        std::fs::write(path, text).map_err(write_err(path))?;
    }
    Ok(())
}

/// Runs a load test over `plan.connections` parallel connections and reports to `out`.
pub async fn run_load(
    opts: &LoadOptions,
    out: &mut (dyn Write + Send),
) -> Result<LoadSummary, RunError> {
    write_registry(opts)?;
    let plan = opts.plan;
    let mut publishers = Vec::new();
    for c in 0..plan.connections {
        let mut cfg = PublisherConfig::new(format!("{}-{c}", opts.client_id));
        cfg.inflight = opts.inflight;
        cfg.queue = usize::from(opts.inflight).max(100) * 4;
        publishers.push(Publisher::connect(&opts.mqtt, cfg).await?);
    }
    let alarm_publisher = if opts.alarm_connection {
        let mut cfg = PublisherConfig::new(format!("{}-alarms", opts.client_id));
        cfg.inflight = opts.inflight;
        cfg.queue = usize::from(opts.inflight).max(100) * 4;
        Some(Arc::new(Publisher::connect(&opts.mqtt, cfg).await?))
    } else {
        None
    };
    let _ = writeln!(
        out,
        "load: {} readings at {}/s for {:.1}s over {} devices, {} connections",
        plan.total(),
        plan.rate,
        plan.duration.as_secs_f64(),
        plan.devices,
        plan.connections
    );
    let prefix: Arc<str> = Arc::from(opts.prefix.as_str());
    let start = Instant::now();
    let tasks: Vec<_> = publishers
        .into_iter()
        .enumerate()
        .map(|(c, p)| {
            let prefix = Arc::clone(&prefix);
            let kind = opts.alarm_kind;
            let c = u32::try_from(c).unwrap_or(u32::MAX);
            let alarms = alarm_publisher.clone();
            tokio::spawn(
                async move { run_connection(plan, c, &prefix, kind, (p, alarms), start).await },
            )
        })
        .collect();
    let mut alarms: Vec<(String, i64)> = Vec::new();
    let mut publishers = Vec::new();
    for t in tasks {
        let (p, a) = t.await.map_err(|e| RunError::Task(e.to_string()))??;
        publishers.push(p);
        alarms.extend(a);
    }
    let send_elapsed = start.elapsed();
    let mut counts = Counts::default();
    let mut first_err = None;
    if let Some(a) = alarm_publisher {
        match Arc::try_unwrap(a) {
            Ok(a) => publishers.push(a),
            Err(_) => first_err = Some(MqttError::Closed("alarm connection still shared".into())),
        }
    }
    for p in publishers {
        match p.finish(ACK_DEADLINE).await {
            Ok(c) => {
                counts.published += c.published;
                counts.acked += c.acked;
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e.into());
    }
    let window = send_elapsed.max(plan.duration).as_secs_f64();
    let summary = LoadSummary {
        offered_rate: plan.rate,
        achieved_rate: if window > 0.0 {
            counts.published as f64 / window
        } else {
            counts.published as f64
        },
        counts,
        alarms: alarms.len() as u64,
    };
    if let Some(path) = &opts.alarms_out {
        alarms.sort_by_key(|(_, ts)| *ts);
        let mut f = LineFile::create(path)?;
        for (device_id, ts) in &alarms {
            f.line(&serde_json::json!({ "device_id": device_id, "ts": ts }).to_string())?;
        }
        f.close()?;
    }
    let _ = writeln!(
        out,
        "done: offered {:.1}/s, achieved {:.1}/s; published {}, acked {}; alarm readings {}; all acked after {:.2}s",
        summary.offered_rate,
        summary.achieved_rate,
        counts.published,
        counts.acked,
        summary.alarms,
        start.elapsed().as_secs_f64()
    );
    Ok(summary)
}

/// Sends connection `c`'s share of the plan on schedule; returns the publisher
/// (to await its acks) and the alarm readings sent (device id, ts).
async fn run_connection(
    plan: LoadPlan,
    c: u32,
    prefix: &str,
    kind: AlarmKind,
    (publisher, alarm_publisher): (Publisher, Option<Arc<Publisher>>),
    start: Instant,
) -> Result<(Publisher, Vec<(String, i64)>), RunError> {
    let mut rng = StdRng::from_entropy();
    let mut alarms = Vec::new();
    for k in plan.readings_of(c) {
        let target = start + plan.offset(k);
        if Instant::now() < target {
            tokio::time::sleep_until(target.into()).await;
        }
        let id = device_id(prefix, plan.device_of(k));
        let ts = now_ms();
        let alarm = plan.is_alarm(k);
        let payload = load_payload(kind, alarm, rng.gen_range(20..=60), ts);
        let via = match (&alarm_publisher, alarm) {
            (Some(a), true) => a.as_ref(),
            _ => &publisher,
        };
        via.publish(reading_topic(&id), payload.to_json()).await?;
        if alarm {
            alarms.push((id, ts));
        }
    }
    Ok((publisher, alarms))
}
