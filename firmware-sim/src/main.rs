//! `firmware-sim`: drive simulated devices against a gridwatch gateway over MQTT.

use clap::{Args, Parser, Subcommand};
use firmware_sim::mqtt::BrokerAddr;
use firmware_sim::run::{self, LoadOptions, ScenarioOptions};
use firmware_sim::scenario::FORMAT_HELP;
use firmware_sim::schedule::{AlarmKind, LoadPlan};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Simulated smoke detectors and current-leak monitors for gridwatch.
///
/// Publishes SPEC §3 readings (QoS 1) on sensors/{device_id}/reading and waits
/// for every PUBACK before exiting. Exit code 1 on any error (e.g. no broker).
#[derive(Parser, Debug)]
#[command(name = "firmware-sim", version, after_long_help = FORMAT_HELP)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Play a scenario file (timed steps, ramps, status messages).
    #[command(after_long_help = FORMAT_HELP)]
    Scenario(ScenarioCmd),
    /// Offered-load test: N devices, a total reading rate, a duration.
    Load(LoadCmd),
}

#[derive(Args, Debug)]
struct ScenarioCmd {
    /// Scenario TOML file (format: see --help).
    file: PathBuf,
    /// MQTT broker.
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// Play this many times faster (ts stays the real send time).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Also write each reading as a replay line (SPEC §1) to this JSONL file.
    #[arg(long)]
    record: Option<PathBuf>,
    /// No MQTT and no sleeping: print (and record) the readings with computed timestamps.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: first timestamp in epoch ms (default: now).
    #[arg(long, requires = "dry_run")]
    start_ts: Option<i64>,
}

#[derive(Args, Debug)]
struct LoadCmd {
    /// Number of simulated devices, named {prefix}{i:05}.
    #[arg(long)]
    devices: u32,
    /// Total readings per second over all devices.
    #[arg(long)]
    rate: f64,
    /// Run time in seconds.
    #[arg(long)]
    duration: f64,
    /// MQTT broker.
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// Every K-th reading is an alarm reading; 0 = none.
    #[arg(long, default_value_t = 1000)]
    alarm_every: u64,
    /// Alarm readings: smoke (smoke_db_m 0.3 + smoke_alarm, immediate) or
    /// residual-current (800 mA, debounced by the gateway's `for`).
    #[arg(long, value_enum, default_value_t = AlarmKind::Smoke)]
    alarm_kind: AlarmKind,
    /// Device id prefix.
    #[arg(long, default_value = "load-")]
    prefix: String,
    /// Parallel MQTT connections (devices are spread over them).
    #[arg(long, default_value_t = 4)]
    connections: u32,
    /// Unacknowledged QoS 1 publishes per connection.
    #[arg(long, default_value_t = 100)]
    inflight: u16,
    /// Write a registry.toml naming the simulated devices (SPEC §2).
    #[arg(long)]
    registry_out: Option<PathBuf>,
    /// With --registry-out: write it and exit without connecting.
    #[arg(long, requires = "registry_out")]
    registry_only: bool,
    /// Write one JSON line {"device_id","ts"} per alarm reading sent.
    #[arg(long)]
    alarms_out: Option<PathBuf>,
}

fn client_id() -> String {
    format!("firmware-sim-{}", std::process::id())
}

async fn scenario(cmd: ScenarioCmd) -> anyhow::Result<()> {
    let opts = ScenarioOptions {
        file: cmd.file,
        mqtt: BrokerAddr::parse(&cmd.mqtt)?,
        speed: cmd.speed,
        record: cmd.record,
        dry_run: cmd.dry_run,
        start_ts: cmd.start_ts,
        client_id: client_id(),
    };
    run::run_scenario(&opts, &mut std::io::stdout()).await?;
    Ok(())
}

async fn load(cmd: LoadCmd) -> anyhow::Result<()> {
    if !(cmd.duration.is_finite() && cmd.duration >= 0.0) {
        anyhow::bail!("--duration must be a non-negative number of seconds");
    }
    let plan = LoadPlan::try_new(
        cmd.devices,
        cmd.rate,
        Duration::from_secs_f64(cmd.duration),
        cmd.alarm_every,
        cmd.connections,
    )?;
    let opts = LoadOptions {
        plan,
        mqtt: BrokerAddr::parse(&cmd.mqtt)?,
        prefix: cmd.prefix,
        alarm_kind: cmd.alarm_kind,
        inflight: cmd.inflight,
        registry_out: cmd.registry_out,
        registry_only: cmd.registry_only,
        alarms_out: cmd.alarms_out,
        client_id: client_id(),
    };
    if opts.registry_only {
        run::write_registry(&opts)?;
        return Ok(());
    }
    run::run_load(&opts, &mut std::io::stdout()).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Scenario(c) => scenario(c).await,
        Cmd::Load(c) => load(c).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("firmware-sim: error: {e}");
            ExitCode::FAILURE
        }
    }
}
