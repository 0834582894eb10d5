//! Operator commands (docs/contract.md §1): `alarms` talks to a running daemon
//! over its HTTP API, `import` loads a ledger into registry.toml, `report`
//! computes response times from the store (or from the daemon's API when the
//! daemon holds the store). Each returns the process exit code; main.rs only
//! wires them in.

pub mod alarms;
pub mod client;
pub mod test_notify;

pub use crate::util::table;
pub use test_notify::{test_notify, TestNotifyArgs};

use crate::config::Config;
use crate::ledger::{self, ImportError, ImportOptions};
use crate::report::render::{self, Format};
use crate::store::{Store, StoreError};
use client::{exit, Client, ClientError};
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the daemon is and how to prove who we are.
#[derive(Debug, Clone, clap::Args)]
pub struct Daemon {
    /// Base URL of the daemon's HTTP API.
    #[arg(
        long,
        env = "GRIDWATCH_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// Bearer token (one of [[http.tokens]] in gateway.toml).
    #[arg(long, env = "GRIDWATCH_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

/// `gridwatch alarms ...`.
#[derive(Debug, Clone, clap::Args)]
pub struct AlarmsArgs {
    #[command(flatten)]
    pub daemon: Daemon,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub action: alarms::Action,
}

/// `gridwatch import ...`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// The ledger: .csv (UTF-8 or GBK) or .xlsx; layout in docs/ledger.md.
    #[arg(long)]
    pub ledger: PathBuf,
    #[arg(long, default_value = "config/gateway.toml")]
    pub config: PathBuf,
    /// Check everything, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where to write (default: the registry gateway.toml names).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `gridwatch report ...`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// The period: alarms opened within this long before now (e.g. 24h, 7d, 30d).
    #[arg(long, default_value = "7d")]
    pub since: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    #[arg(long, default_value = "config/gateway.toml")]
    pub config: PathBuf,
    /// Token for the daemon's API, used when the daemon holds the store.
    #[arg(long, env = "GRIDWATCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The daemon's URL (default: from [http] listen in the config).
    #[arg(long, env = "GRIDWATCH_URL")]
    pub url: Option<String>,
}

/// Runs `gridwatch alarms`.
pub fn alarms(args: &AlarmsArgs) -> ExitCode {
    let result = Client::new(&args.daemon.url, args.daemon.token.as_deref())
        .and_then(|c| alarms::run(&c, &args.action, args.json));
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string(), e.exit_code()),
    }
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("gridwatch: {message}");
    ExitCode::from(code)
}

/// Runs `gridwatch import`.
pub fn import(args: &ImportArgs) -> ExitCode {
    let opts = ImportOptions {
        ledger: args.ledger.clone(),
        config: args.config.clone(),
        dry_run: args.dry_run,
        out: args.out.clone(),
    };
    let now = crate::model::rfc3339_ms(crate::model::now_ms());
    match ledger::import(&opts, &now) {
        Ok(o) => {
            println!(
                "ledger ok: {} homes, {} residents, {} devices, {} contacts (+{} grid contacts kept from the registry)",
                o.homes, o.residents, o.devices, o.contacts, o.kept_contacts
            );
            if !o.removed_homes.is_empty() || !o.removed_devices.is_empty() {
                println!(
                    "not in the ledger, so removed from the registry: homes [{}], devices [{}]",
                    o.removed_homes.join(", "),
                    o.removed_devices.join(", ")
                );
            }
            println!("check-config: ok: {}", o.summary);
            if o.dry_run {
                println!("dry run: nothing written ({} unchanged)", o.out.display());
            } else {
                match &o.backup {
                    Some(b) => println!(
                        "wrote {} (previous version kept as {})",
                        o.out.display(),
                        b.display()
                    ),
                    None => println!("wrote {}", o.out.display()),
                }
                println!("a running daemon picks it up on POST /api/v1/reload or restart");
            }
            ExitCode::SUCCESS
        }
        Err(e @ ImportError::Rows { .. }) => {
            // One line per error on stdout (they are the command's result), summary on stderr.
            println!("{e}");
            ExitCode::FAILURE
        }
        Err(e) => fail(&e.to_string(), 1),
    }
}

/// Runs `gridwatch report`: from the store, or from the daemon's API when the daemon holds it.
pub fn report(args: &ReportArgs) -> ExitCode {
    let since = match crate::config::duration::parse_duration(&args.since) {
        Ok(d) => d,
        Err(e) => return fail(&format!("--since: {e}"), 2),
    };
    let cfg = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            return fail(
                &format!(
                    "the configuration {} does not load:\n{e}",
                    args.config.display()
                ),
                1,
            )
        }
    };
    let dir = cfg.data_dir();
    let store = match Store::open_existing(&dir) {
        Ok(s) => s,
        Err(StoreError::Locked { .. }) => return report_from_daemon(args, &cfg),
        Err(e) => return fail(&e.to_string(), 1),
    };
    let alarms = match store.alarms() {
        Ok(a) => a,
        Err(e) => return fail(&e.to_string(), 1),
    };
    let inspections = crate::gb26875::stored_inspections(&store);
    drop(store);
    let r = crate::report::for_config_with_inspections(
        &cfg,
        &alarms,
        &inspections,
        since,
        crate::model::now_ms(),
    );
    match render::render(&r, args.format) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string(), 1),
    }
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Table => "table",
        Format::Csv => "csv",
        Format::Html => "html",
        Format::Json => "json",
    }
}

/// The daemon holds the store (sled allows one process): ask its API for the same report.
fn report_from_daemon(args: &ReportArgs, cfg: &Config) -> ExitCode {
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", cfg.gateway.http.listen));
    let path = format!(
        "/api/v1/report?since={}&format={}",
        args.since,
        format_name(args.format)
    );
    let held = format!(
        "the store {} is held by the running gridwatch daemon (sled allows one process at a time)",
        cfg.data_dir().display()
    );
    let client = match Client::new(&url, args.token.as_deref()) {
        Ok(c) => c,
        Err(ClientError::NoToken) => {
            return fail(
                &format!(
                    "{held}; stop it, or give --token/GRIDWATCH_TOKEN to get the same report from its API ({url}{path})"
                ),
                exit::AUTH,
            )
        }
        Err(e) => return fail(&e.to_string(), e.exit_code()),
    };
    eprintln!("gridwatch: {held}; asking its API at {url}");
    match client.get_text(&path) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string(), e.exit_code()),
    }
}
