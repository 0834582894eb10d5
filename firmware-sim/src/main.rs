//! `firmware-sim`: drive simulated devices against a gridwatch gateway over MQTT and Modbus.

use clap::{Args, Parser, Subcommand};
use firmware_sim::bank::{Bank, Behaviour};
use firmware_sim::centre;
use firmware_sim::modbus::{self, RtuPty, SharedBank};
use firmware_sim::mqtt::BrokerAddr;
use firmware_sim::payload::MetricValue;
use firmware_sim::registry;
use firmware_sim::run::{self, LoadOptions, ScenarioOptions};
use firmware_sim::scenario::FORMAT_HELP;
use firmware_sim::schedule::{AlarmKind, LoadPlan};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Simulated smoke detectors and current-leak monitors for gridwatch.
///
/// Publishes docs/contract.md §3 readings (QoS 1) on sensors/{device_id}/reading and waits
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
    /// Serve N simulated Modbus monitors (generic-rcm layout) with fixed values.
    Modbus(ModbusCmd),
    /// Play a 4G module (Quectel-class AT dialogue: calls, TTS, keys, PDU SMS) on a pty.
    Modem(ModemCmd),
    /// A GB/T 26875.3 fire monitoring centre: logs decoded frames and confirms
    /// them. Type on stdin: confirm | deny | silent | drop | inspect [MIN] |
    /// sync [+SECS] | query 81|84|85|88 | quit.
    Centre(CentreCmd),
}

#[derive(Args, Debug)]
struct ModemCmd {
    /// Link this path to the pty (what `[channels.modem] device` names).
    #[arg(long)]
    link: PathBuf,
    /// How callees answer: after[:SECS] (default after:1), never, busy.
    #[arg(long, default_value = "after:1")]
    answer: String,
    /// Keys every answering callee presses once the message was read (e.g. 1).
    #[arg(long, default_value = "")]
    press: String,
    /// One callee's own behaviour: NUMBER=after[:SECS]|never|busy[,press:DIGITS] (repeatable).
    #[arg(long = "callee")]
    callees: Vec<String>,
    /// A call nobody answers ends with NO ANSWER after this many seconds.
    #[arg(long, default_value_t = 5.0)]
    ring_limit: f64,
    /// Seconds one reading of the message takes.
    #[arg(long, default_value_t = 0.3)]
    speak: f64,
    /// Go silent (answer no AT at all) once this many calls were dialled, mid-call.
    #[arg(long)]
    mute_after_calls: Option<u32>,
    /// ...for this many seconds, then answer again.
    #[arg(long, default_value_t = 5.0)]
    mute_for: f64,
    /// Also append the JSON event lines here.
    #[arg(long)]
    log: Option<PathBuf>,
}

async fn modem(cmd: ModemCmd) -> anyhow::Result<()> {
    use firmware_sim::modem::{parse_answer, parse_callee, Callee, ModemOptions};
    let secs = |v: f64, what: &str| {
        if v.is_finite() && v >= 0.0 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(anyhow::anyhow!("--{what} must be a number of seconds"))
        }
    };
    let default = Callee {
        answer: parse_answer(&cmd.answer).map_err(anyhow::Error::msg)?,
        press: cmd.press.clone(),
    };
    let mut callees = std::collections::HashMap::new();
    for c in &cmd.callees {
        let (n, c) = parse_callee(c).map_err(anyhow::Error::msg)?;
        callees.insert(n, c);
    }
    let opts = ModemOptions {
        default,
        callees,
        ring_limit: secs(cmd.ring_limit, "ring-limit")?,
        speak: secs(cmd.speak, "speak")?,
        mute_after_calls: cmd.mute_after_calls,
        mute_for: secs(cmd.mute_for, "mute-for")?,
        log: cmd.log.clone(),
    };
    let pty = firmware_sim::modem::serve(Some(&cmd.link), opts)?;
    println!("modem on {} (linked at {})", pty.path, cmd.link.display());
    linger(None).await;
    drop(pty);
    Ok(())
}

#[derive(Args, Debug)]
struct CentreCmd {
    /// Listen here for the gateway's connection.
    #[arg(long, default_value = "127.0.0.1:9900")]
    listen: String,
    /// The centre's address (the gateway's `centre_address`).
    #[arg(long, default_value_t = 88888)]
    address: u64,
    /// How send-data frames are answered at start: confirm, deny or silent.
    #[arg(long, default_value = "confirm")]
    mode: String,
}

/// Where and how the simulated Modbus monitors answer.
#[derive(Args, Debug, Clone)]
struct ModbusServeArgs {
    /// Serve Modbus TCP here (e.g. 127.0.0.1:5020).
    #[arg(long = "modbus-listen", alias = "listen")]
    modbus_listen: Option<String>,
    /// Serve Modbus RTU on a new pty; its path is printed, and also linked here.
    #[arg(long)]
    rtu_link: Option<PathBuf>,
    /// Serve Modbus RTU on a new pty and print its path.
    #[arg(long)]
    rtu_pty: bool,
    /// A unit that never answers (repeatable).
    #[arg(long = "silent-unit", value_name = "UNIT")]
    silent: Vec<String>,
    /// A unit that answers after MS milliseconds (repeatable).
    #[arg(long = "slow-unit", value_name = "UNIT:MS")]
    slow: Vec<String>,
    /// A unit that answers every request with an exception (default code 4).
    #[arg(long = "exception-unit", value_name = "UNIT[:CODE]")]
    exception: Vec<String>,
}

impl ModbusServeArgs {
    fn enabled(&self) -> bool {
        self.modbus_listen.is_some() || self.rtu_link.is_some() || self.rtu_pty
    }

    fn behaviours(&self) -> anyhow::Result<Vec<(u8, Behaviour)>> {
        let mut out = Vec::new();
        for (kind, list) in [
            ("silent", &self.silent),
            ("slow", &self.slow),
            ("exception", &self.exception),
        ] {
            for spec in list {
                out.push(Behaviour::parse_flag(kind, spec).map_err(anyhow::Error::msg)?);
            }
        }
        Ok(out)
    }

    /// Starts the servers; what they hold must live as long as they serve.
    async fn start(&self, bank: &SharedBank) -> anyhow::Result<Option<RtuPty>> {
        modbus::apply_behaviours(bank, &self.behaviours()?);
        if let Some(addr) = &self.modbus_listen {
            let local = modbus::serve_tcp(addr, bank.clone()).await?;
            println!("modbus tcp listening on {local}");
        }
        let pty = if self.rtu_pty || self.rtu_link.is_some() {
            let pty = modbus::serve_rtu_pty(self.rtu_link.as_deref(), bank.clone())?;
            match &pty.link {
                Some(l) => println!("modbus rtu on {} (linked at {})", pty.path, l.display()),
                None => println!("modbus rtu on {}", pty.path),
            }
            Some(pty)
        } else {
            None
        };
        Ok(pty)
    }
}

#[derive(Args, Debug)]
struct ModbusCmd {
    #[command(flatten)]
    serve: ModbusServeArgs,
    /// Number of monitors.
    #[arg(long, default_value_t = 1)]
    monitors: u32,
    /// Monitors per unit id (circuits of one multi-circuit monitor, 2 registers apart).
    #[arg(long, default_value_t = 1)]
    per_unit: u32,
    /// Unit id of the first monitor.
    #[arg(long, default_value_t = 1)]
    first_unit: u8,
    /// Residual current every monitor reports, mA.
    #[arg(long, default_value_t = 30.0)]
    residual_ma: f64,
    /// Temperature every monitor reports, °C.
    #[arg(long, default_value_t = 25.0, allow_hyphen_values = true)]
    temperature_c: f64,
    /// Device id prefix (ids are {prefix}{i:05}).
    #[arg(long, default_value = "mb-")]
    prefix: String,
    /// Write a registry.toml naming the monitors, polled at ENDPOINT.
    #[arg(long, requires = "endpoint")]
    registry_out: Option<PathBuf>,
    /// Endpoint written into --registry-out (tcp://HOST:PORT or rtu:///dev/...).
    #[arg(long)]
    endpoint: Option<String>,
    /// Poll interval written into --registry-out.
    #[arg(long, default_value = "1s")]
    every: String,
    /// Stop after this many seconds (default: serve until killed).
    #[arg(long)]
    duration: Option<f64>,
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
    /// Also write each reading as a replay line (docs/contract.md §1) to this JSONL file.
    #[arg(long)]
    record: Option<PathBuf>,
    /// No MQTT and no sleeping: print (and record) the readings with computed timestamps.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: first timestamp in epoch ms (default: now).
    #[arg(long, requires = "dry_run")]
    start_ts: Option<i64>,
    #[command(flatten)]
    modbus: ModbusServeArgs,
    /// The gateway's registry.toml: its Modbus devices are simulated as
    /// monitors (by unit id) instead of publishing over MQTT.
    #[arg(long)]
    registry: Option<PathBuf>,
    /// With Modbus: keep serving this many seconds after the last message
    /// (default: until killed).
    #[arg(long)]
    linger: Option<f64>,
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
    /// Send the alarm readings on a connection of their own, as a detector
    /// has, instead of among the telemetry of the shared connections.
    #[arg(long)]
    alarm_connection: bool,
    /// Write a registry.toml naming the simulated devices (docs/contract.md §2).
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
    let bank = if cmd.modbus.enabled() {
        let Some(reg) = &cmd.registry else {
            anyhow::bail!("Modbus needs --registry (the gateway's registry.toml names the unit of each device)");
        };
        let monitors = modbus::registry_monitors(reg)?;
        let bank = modbus::bank_from_registry(&monitors);
        if bank.is_empty() {
            anyhow::bail!(
                "{}: no generic-rcm Modbus device to simulate",
                reg.display()
            );
        }
        Some(Arc::new(Mutex::new(bank)))
    } else {
        None
    };
    let _pty = match &bank {
        Some(b) => cmd.modbus.start(b).await?,
        None => None,
    };
    let opts = ScenarioOptions {
        file: cmd.file,
        mqtt: BrokerAddr::parse(&cmd.mqtt)?,
        speed: cmd.speed,
        record: cmd.record,
        dry_run: cmd.dry_run,
        start_ts: cmd.start_ts,
        client_id: client_id(),
        modbus: bank.clone(),
    };
    run::run_scenario(&opts, &mut std::io::stdout()).await?;
    if bank.is_some() && !cmd.dry_run {
        linger(cmd.linger).await;
    }
    Ok(())
}

/// Keeps the process (and its servers) alive for `secs`, or until SIGINT/SIGTERM.
async fn linger(secs: Option<f64>) {
    use tokio::signal::unix::{signal, SignalKind};
    let wait = async {
        match secs {
            Some(s) if s.is_finite() && s >= 0.0 => {
                tokio::time::sleep(Duration::from_secs_f64(s)).await
            }
            _ => std::future::pending().await,
        }
    };
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut t) => {
                t.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = wait => {}
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn serve_monitors(cmd: ModbusCmd) -> anyhow::Result<()> {
    if !cmd.serve.enabled() {
        anyhow::bail!("give --listen HOST:PORT, --rtu-pty or --rtu-link PATH");
    }
    if cmd.per_unit == 0 || cmd.monitors == 0 {
        anyhow::bail!("--monitors and --per-unit must be at least 1");
    }
    let mut bank = Bank::default();
    let mut placed = Vec::new();
    for i in 0..cmd.monitors {
        let unit = u32::from(cmd.first_unit) + i / cmd.per_unit;
        let unit = match u8::try_from(unit) {
            Ok(u) if u <= 247 => u,
            _ => anyhow::bail!(
                "{} monitors at {} per unit need unit ids past 247: raise --per-unit",
                cmd.monitors,
                cmd.per_unit
            ),
        };
        let offset = u16::try_from((i % cmd.per_unit) * 2)?;
        let id = format!("{}{i:05}", cmd.prefix);
        bank.add_monitor(&id, unit, offset);
        let values = [
            (
                "residual_current_ma".to_string(),
                MetricValue(cmd.residual_ma),
            ),
            ("temperature_c".to_string(), MetricValue(cmd.temperature_c)),
        ]
        .into_iter()
        .collect();
        bank.set_reading(&id, &values, &[]);
        placed.push((id, unit, offset));
    }
    if let (Some(path), Some(endpoint)) = (&cmd.registry_out, &cmd.endpoint) {
        std::fs::write(
            path,
            registry::modbus_registry_toml(&placed, endpoint, &cmd.every),
        )?;
        println!(
            "registry with {} monitors written to {}",
            placed.len(),
            path.display()
        );
    }
    let bank = Arc::new(Mutex::new(bank));
    let _pty = cmd.serve.start(&bank).await?;
    println!("serving {} monitors", cmd.monitors);
    linger(cmd.duration).await;
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
        alarm_connection: cmd.alarm_connection,
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

fn centre_mode(s: &str) -> anyhow::Result<centre::Mode> {
    Ok(match s {
        "confirm" => centre::Mode::Confirm,
        "deny" => centre::Mode::Deny,
        "silent" => centre::Mode::Silent,
        other => anyhow::bail!("mode {other:?}: confirm, deny or silent"),
    })
}

/// Runs the centre until stdin closes or says `quit`; one line per frame on stdout.
async fn centre(cmd: CentreCmd) -> anyhow::Result<()> {
    use gb26875::adu::Adu;
    use gb26875::frame::Command;
    use tokio::io::AsyncBufReadExt;
    let c = centre::Centre::start(&cmd.listen, cmd.address, centre_mode(&cmd.mode)?).await?;
    println!(
        "centre listening on {} as address {}",
        c.addr(),
        cmd.address
    );
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut shown = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let log = c.received();
                for r in log.iter().skip(shown) {
                    match &r.frame {
                        Ok(f) => println!(
                            "{:>8.3}s conn {} serial {} cmd {} from {} adu {:?} -> {}",
                            r.at.as_secs_f64(), r.connection, f.serial, f.command, f.source, r.adu, r.answer
                        ),
                        Err(e) => println!("{:>8.3}s conn {} bad frame: {e} -> {}", r.at.as_secs_f64(), r.connection, r.answer),
                    }
                }
                shown = log.len();
            }
            line = lines.next_line() => {
                let Some(line) = line? else { return Ok(()) };
                let words: Vec<&str> = line.split_whitespace().collect();
                let sent = match words.as_slice() {
                    ["confirm"] | ["deny"] | ["silent"] => {
                        c.set_mode(centre_mode(words[0])?);
                        None
                    }
                    ["drop"] => {
                        c.drop_connection().await;
                        None
                    }
                    ["inspect"] => c.inspect(0).await,
                    ["inspect", m] => c.inspect(m.parse()?).await,
                    ["sync"] | ["sync", _] => {
                        let shift: i64 = words.get(1).map(|s| s.trim_start_matches('+').parse()).transpose()?.unwrap_or(0);
                        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
                        c.send(Command::Control, &Adu::SyncClock(centre::label_of_unix(now + shift))).await
                    }
                    ["query", t] => {
                        let adu = match *t {
                            "81" => Adu::ReadUitdStatus,
                            "85" => Adu::ReadUitdVersion,
                            "88" => Adu::ReadUitdTime,
                            "84" => Adu::ReadUitdOperations { count: 10, since: centre::now_label() },
                            other => anyhow::bail!("query {other}: 81, 84, 85 or 88"),
                        };
                        c.send(Command::Request, &adu).await
                    }
                    ["quit"] => return Ok(()),
                    _ => {
                        eprintln!("commands: confirm | deny | silent | drop | inspect [MIN] | sync [+SECS] | query 81|84|85|88 | quit");
                        None
                    }
                };
                if let Some(serial) = sent {
                    println!("sent serial {serial}");
                }
            }
        }
    }
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
        Cmd::Modbus(c) => serve_monitors(c).await,
        Cmd::Modem(c) => modem(c).await,
        Cmd::Centre(c) => centre(c).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("firmware-sim: error: {e}");
            ExitCode::FAILURE
        }
    }
}
