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
    /// Talk to a running daemon over its HTTP API: list, show, ack, resolve alarms.
    Alarms(gridwatch::cli::AlarmsArgs),
    /// Load homes, residents, devices and contacts from a ledger (CSV or XLSX) into registry.toml.
    Import(gridwatch::cli::ImportArgs),
    /// Response times per role and grid, causes, and homes with repeated false alarms.
    Report(gridwatch::cli::ReportArgs),
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
        Cmd::Alarms(args) => gridwatch::cli::alarms(&args),
        Cmd::Import(args) => gridwatch::cli::import(&args),
        Cmd::Report(args) => gridwatch::cli::report(&args),
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
