//! `gridwatch`: the daemon and its operator commands (SPEC §1).

use anyhow::Context;
use clap::{Parser, Subcommand};
use gridwatch::config::Config;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "gridwatch",
    version,
    about = "Alarm gateway for the fire-safety sensors of old residential compounds (老旧小区)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon.
    Run {
        #[arg(long, default_value = "config/gateway.toml")]
        config: PathBuf,
    },
    /// Validate the configuration: exit 0, or exit 1 with file:line errors.
    CheckConfig {
        #[arg(long, default_value = "config/gateway.toml")]
        config: PathBuf,
    },
    /// Backtest the rules on recorded readings (JSON Lines); sends nothing.
    Replay {
        /// One reading a line: the uplink payload plus "device_id"; "ts" is the clock.
        #[arg(long)]
        readings: PathBuf,
        #[arg(long, default_value = "config/gateway.toml")]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Also run these rules and print what the change would add and remove.
        #[arg(long)]
        against: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

mod replay {
    //! `gridwatch replay`: printing around the pure backtest in `gridwatch::replay`.

    use anyhow::Context;
    use gridwatch::config::Config;
    use gridwatch::replay::{self, AlarmEvent, Change, Difference};
    use std::path::Path;

    /// Loads, runs and prints.
    pub fn main(
        readings: &Path,
        config: &Path,
        json: bool,
        against: Option<&Path>,
    ) -> anyhow::Result<()> {
        let cfg =
            Config::load(config).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
        let rec = replay::read_jsonl(readings).context("reading the recorded readings")?;
        for s in &rec.skipped {
            eprintln!("{}:{}: skipped: {}", readings.display(), s.line, s.reason);
        }
        let unknown = rec
            .readings
            .iter()
            .filter(|r| cfg.device(&r.device_id).is_none())
            .count();
        if unknown > 0 {
            eprintln!("{unknown} reading(s) of devices not in the registry were ignored");
        }
        let events = replay::run(&cfg.rules, &cfg.registry, &rec.readings);
        match against {
            None => print_events(&events, json),
            Some(path) => {
                let proposed = cfg
                    .load_rules(path)
                    .map_err(|e| anyhow::anyhow!("invalid rules in {}:\n{e}", path.display()))?;
                let other = replay::run(&proposed, &cfg.registry, &rec.readings);
                let diff = replay::compare(&replay::episodes(&events), &replay::episodes(&other));
                print_diff(&diff, json, path);
            }
        }
        Ok(())
    }

    fn print_events(events: &[AlarmEvent], json: bool) {
        if json {
            for e in events {
                println!("{}", serde_json::to_string(e).unwrap_or_default());
            }
            return;
        }
        println!(
            "{:<15} {:<16} {:<11} {:<17} {:<9} {:<10} {:>8}",
            "time (UTC+8)", "device", "household", "kind", "severity", "event", "value"
        );
        for e in events {
            println!(
                "{:<15} {:<16} {:<11} {:<17} {:<9} {:<10} {:>8}",
                replay::local_time(e.ts),
                e.device_id,
                e.household_id,
                e.kind.as_str(),
                e.severity.as_str(),
                format!("{:?}", e.event).to_lowercase(),
                e.value
                    .map(|v| format!("{}", (v * 1000.0).round() / 1000.0))
                    .unwrap_or_default()
            );
        }
        let opened = events
            .iter()
            .filter(|e| e.event == replay::ReplayEvent::Opened)
            .count();
        println!("\n{opened} alarm(s) opened, {} event(s)", events.len());
    }

    fn print_diff(diff: &[Difference], json: bool, path: &Path) {
        if json {
            for d in diff {
                println!("{}", serde_json::to_string(d).unwrap_or_default());
            }
            return;
        }
        println!("what {} would change:", path.display());
        for d in diff {
            let sign = match d.change {
                Change::Added => "+ added  ",
                Change::Removed => "- removed",
                Change::Changed => "~ changed",
            };
            let was = d
                .was
                .map(|w| format!(" (was {})", w.as_str()))
                .unwrap_or_default();
            println!(
                "{sign} {} {:<16} {:<17} {}{was}",
                replay::local_time(d.episode.opened),
                d.episode.device_id,
                d.episode.kind.as_str(),
                d.episode.severity.as_str()
            );
        }
        let count = |c| diff.iter().filter(|d| d.change == c).count();
        println!(
            "\n{} added, {} removed, {} changed",
            count(Change::Added),
            count(Change::Removed),
            count(Change::Changed)
        );
    }
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // rumqttd logs every client disconnect as an error; broker health is
        // watched through /readyz instead. RUST_LOG=rumqttd=info brings it back.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=off,rumqttc=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn check_config(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                println!("warning: {w}");
            }
            println!("ok: {}", cfg.summary());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                println!("{e}");
            }
            println!("{} error(s)", errors.0.len());
            ExitCode::FAILURE
        }
    }
}

fn run(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    for w in &config.warnings {
        tracing::warn!("config: {w}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gridwatch")
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(gridwatch::runtime::run(config))?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::CheckConfig { config } => check_config(&config),
        Cmd::Replay {
            readings,
            config,
            format,
            against,
        } => match replay::main(
            &readings,
            &config,
            format == Format::Json,
            against.as_deref(),
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gridwatch replay: {e:#}");
                ExitCode::FAILURE
            }
        },
        Cmd::Run { config } => {
            init_logs();
            match run(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("gridwatch: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
