//! `loadrun`: the load harness of docs/benchmarks.md in one command.
//!
//! ```text
//! scripts/loadrun --rates 1000,5000,20000 --duration 10
//! ```
//!
//! The script builds the release `gridwatch`, `firmware-sim` and `loadrun`
//! in one cargo call and runs this binary, which for every broker and offered rate starts a fresh gateway and prints one
//! Markdown table, the knee (highest rate with alarm p99 under 5 ms), and on
//! request the scale (`--scale 10000,100000`) and kill -9 recovery
//! (`--recovery 2500`) tables; `--compare nodered` adds the same load
//! through Mosquitto + Node-RED (bench/nodered/), the ratios, and a kill -9
//! durability comparison.

use anyhow::{bail, Context};
use gridwatch_e2e::bins::target_dir;
use gridwatch_e2e::load::{self, Bins, BrokerMode, LoadSpec};
use gridwatch_e2e::nodered::{self, Target};
use std::time::Duration;

/// Alarm p99 target of the issue.
const TARGET_P99_MS: f64 = 5.0;

#[derive(Debug)]
struct Args {
    rates: Vec<f64>,
    duration: f64,
    devices: u32,
    alarms_per_sec: f64,
    brokers: Vec<BrokerMode>,
    connections: u32,
    inflight: u16,
    alarm_connection: bool,
    debug: bool,
    scale: Vec<u32>,
    recovery: Option<u32>,
    compare_nodered: bool,
    durability: u32,
}

const USAGE: &str =
    "usage: loadrun [--rates R1,R2,..] [--duration S] [--devices N] [--alarms-per-sec A]
               [--broker embedded|mosquitto|both] [--connections C] [--inflight W]
               [--alarm-connection own|shared]
               [--scale N1,N2,..] [--recovery DEVICES] [--debug]
               [--compare nodered] [--durability ALARMS]
  --rates       offered readings/s, one run each (default 1000,5000,20000); 0 rates = none
  --duration    seconds of load per run (default 10)
  --devices     simulated devices (default 10007, prime: each alarm on its own device)
  --alarms-per-sec  smoke alarm readings per second in the load (default 20)
  --broker      embedded (default), mosquitto (external, started here) or both
  --alarm-connection  own: alarm readings on a connection of their own, as a
                detector has; shared (default): behind the telemetry of the shared connections
  --scale       also time start→ready and RSS with these numbers of registered devices
  --recovery    also kill -9 with DEVICES×4 pending webhooks and time ready and drain
  --compare nodered  also run every rate through Mosquitto + Node-RED (bench/nodered/,
                installed by bench/nodered/install), print the ratios, and compare kill -9
                durability (Mosquitto in front of both)
  --durability  alarms in the kill -9 comparison (default 200; 0 = skip it)
  --debug       use the debug binaries (CI smoke) instead of the release ones";

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        rates: vec![1000.0, 5000.0, 20000.0],
        duration: 10.0,
        devices: 10007,
        alarms_per_sec: 20.0,
        brokers: vec![BrokerMode::Embedded],
        connections: 4,
        inflight: 100,
        alarm_connection: false,
        debug: false,
        scale: Vec::new(),
        recovery: None,
        compare_nodered: false,
        durability: 200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--debug" {
            a.debug = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        let list = |v: &str| -> anyhow::Result<Vec<f64>> {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.trim()
                        .parse::<f64>()
                        .with_context(|| format!("{flag}: {s:?}"))
                })
                .collect()
        };
        match flag.as_str() {
            "--rates" => a.rates = list(&value)?.into_iter().filter(|r| *r > 0.0).collect(),
            "--duration" => a.duration = value.parse().context("--duration")?,
            "--devices" => a.devices = value.parse().context("--devices")?,
            "--alarms-per-sec" => a.alarms_per_sec = value.parse().context("--alarms-per-sec")?,
            "--connections" => a.connections = value.parse().context("--connections")?,
            "--inflight" => a.inflight = value.parse().context("--inflight")?,
            "--alarm-connection" => match value.as_str() {
                "own" => a.alarm_connection = true,
                "shared" => a.alarm_connection = false,
                other => bail!("--alarm-connection {other:?}: own or shared"),
            },
            "--scale" => a.scale = list(&value)?.into_iter().map(|n| n as u32).collect(),
            "--recovery" => a.recovery = Some(value.parse().context("--recovery")?),
            "--durability" => a.durability = value.parse().context("--durability")?,
            "--compare" => match value.as_str() {
                "nodered" => a.compare_nodered = true,
                other => bail!("--compare {other:?}: only nodered"),
            },
            "--broker" => {
                a.brokers = match value.as_str() {
                    "embedded" => vec![BrokerMode::Embedded],
                    "mosquitto" => vec![BrokerMode::Mosquitto],
                    "both" => vec![BrokerMode::Embedded, BrokerMode::Mosquitto],
                    other => bail!("--broker {other:?}: embedded, mosquitto or both"),
                }
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(a)
}

/// Locates the binaries. Nothing is built here: a cargo build started from
/// inside `cargo run` sees a different environment and relinks gridwatch, so
/// `scripts/loadrun` builds everything in one cargo call first, and `--debug`
/// uses the test harness's (built only when missing).
fn bins(debug: bool) -> anyhow::Result<Bins> {
    if debug {
        return Ok(Bins {
            gridwatch: gridwatch_e2e::gridwatch_bin(),
            firmware_sim: gridwatch_e2e::firmware_sim_bin(),
        });
    }
    let dir = target_dir().join("release");
    // The gridwatch under test may come from another profile (`edge`, what
    // edge boxes run); the load generator always comes from release.
    let profile = std::env::var("GRIDWATCH_PROFILE").unwrap_or_else(|_| "release".into());
    let bins = Bins {
        gridwatch: target_dir().join(&profile).join("gridwatch"),
        firmware_sim: dir.join("firmware-sim"),
    };
    for path in [&bins.gridwatch, &bins.firmware_sim] {
        if !path.exists() {
            bail!(
                "{} is missing: run scripts/loadrun (it builds the binaries first)",
                path.display()
            );
        }
    }
    Ok(bins)
}

/// One run of the sweep: the arguments' load at `rate` through `broker`.
fn spec(args: &Args, rate: f64, broker: BrokerMode) -> LoadSpec {
    LoadSpec {
        rate,
        duration: args.duration,
        devices: args.devices,
        alarms_per_sec: args.alarms_per_sec,
        broker,
        connections: args.connections,
        inflight: args.inflight,
        alarm_connection: args.alarm_connection,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let bins = bins(args.debug)?;
    eprintln!(
        "loadrun: gridwatch under test: {}",
        bins.gridwatch.display()
    );
    if args.compare_nodered {
        nodered::check_installed()?;
        eprintln!("loadrun: comparing with {}", nodered::versions());
    }
    let mut rows = Vec::new();
    for &broker in &args.brokers {
        for &rate in &args.rates {
            eprintln!(
                "loadrun: {} at {rate}/s for {}s ...",
                broker.label(),
                args.duration
            );
            rows.push(load::run_once(&bins, &spec(&args, rate, broker)).await);
        }
    }
    if args.compare_nodered {
        for &rate in &args.rates {
            eprintln!(
                "loadrun: mosquitto + node-red at {rate}/s for {}s ...",
                args.duration
            );
            let spec = spec(&args, rate, BrokerMode::Mosquitto);
            rows.push(nodered::run_once(&bins, &spec).await);
        }
    }
    if !rows.is_empty() {
        println!("{}", load::table(&rows));
        let mut labels: Vec<&str> = args.brokers.iter().map(|b| b.label()).collect();
        if args.compare_nodered {
            labels.push(nodered::LABEL);
        }
        for label in labels {
            let mine: Vec<_> = rows.iter().filter(|r| r.broker == label).cloned().collect();
            match load::knee(&mine, TARGET_P99_MS) {
                Some(k) => println!(
                    "knee ({label}): {k:.0} readings/s offered with alarm p99 < {TARGET_P99_MS} ms"
                ),
                None => println!(
                    "knee ({label}): none of the offered rates kept alarm p99 < {TARGET_P99_MS} ms"
                ),
            }
        }
    }
    if args.compare_nodered && !rows.is_empty() {
        println!(
            "\ngridwatch vs Mosquitto + Node-RED ({}):\n\n{}",
            nodered::versions(),
            nodered::ratio_table(&rows)
        );
    }
    if args.compare_nodered && args.durability > 0 {
        let mut d = Vec::new();
        for target in [Target::Gridwatch, Target::NodeRed] {
            eprintln!(
                "loadrun: kill -9 of {} with {} alarms waiting for a dead webhook ...",
                target.label(),
                args.durability
            );
            d.push(nodered::run_durability(&bins, target, args.durability).await);
        }
        println!("\n{}", nodered::durability_table(&d));
    }
    if !args.scale.is_empty() {
        let mut scale = Vec::new();
        for &n in &args.scale {
            eprintln!("loadrun: scale with {n} devices ...");
            scale.push(load::run_scale(&bins, n, Duration::from_secs(3)).await);
        }
        println!("\n{}", load::scale_table(&scale));
    }
    if let Some(devices) = args.recovery {
        eprintln!("loadrun: kill -9 recovery with {devices} alarms × 4 webhooks ...");
        let r = load::run_recovery(&bins, devices).await;
        println!("\n{}", load::recovery_table(&r));
    }
    Ok(())
}
