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
    /// Print an argon2id hash of a password read from stdin, for `[[mqtt.users]] password_hash`.
    HashPassword,
    /// Delete one household's alarms, deliveries, pending notifications and
    /// audit entries from the store (the daemon must be stopped).
    Purge {
        #[arg(long)]
        household: String,
        /// Count what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, default_value = "config/gateway.toml")]
        config: PathBuf,
    },
}

fn hash_password() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let pw = line.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!pw.is_empty(), "empty password");
    println!("{}", gridwatch::security::password::hash_password(pw)?);
    Ok(())
}

fn purge(path: &Path, household: &str, dry_run: bool) -> anyhow::Result<()> {
    let config = Config::load(path).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    let dir = config.data_dir();
    anyhow::ensure!(dir.exists(), "no store at {}", dir.display());
    let (store, _) = gridwatch::store::Store::open(&dir).with_context(|| {
        format!(
            "cannot open the store at {} (stop the daemon first)",
            dir.display()
        )
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let rep = rt.block_on(store.purge_household(household, dry_run))?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    println!(
        "household {household}: {verb} {} alarms, {} deliveries, {} pending notifications, {} audit entries, {} ack-link claims",
        rep.alarms, rep.deliveries, rep.outbox, rep.audit, rep.ack_claims
    );
    if config.household(household).is_some() {
        println!("note: the household is still in the registry; remove it there too to stop new alarms naming it");
    }
    Ok(())
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
        Cmd::HashPassword => match hash_password() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gridwatch: {e:#}");
                ExitCode::FAILURE
            }
        },
        Cmd::Purge {
            household,
            dry_run,
            config,
        } => match purge(&config, &household, dry_run) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gridwatch: {e:#}");
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
