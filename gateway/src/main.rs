//! `gridwatch`: the daemon and its operator commands (docs/contract.md §1).

use anyhow::Context;
use clap::{Parser, Subcommand};
use gridwatch::config::Config;
use gridwatch::logs::LogFormat;
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
        /// Log line format: text for a terminal, json for journald/Loki.
        #[arg(long, value_enum, default_value = "text", env = "GRIDWATCH_LOG_FORMAT")]
        log_format: LogFormat,
        /// Mount test-only hooks (POST /test/wedge/{stage}); for the test suite, never in production.
        #[arg(long, hide = true)]
        test_hooks: bool,
    },
    /// Run the district duty room: many compounds' boxes through the district
    /// MQTT broker, one board, signed commands back to the boxes.
    District {
        #[arg(long, default_value = "config/district.toml")]
        config: PathBuf,
        /// Check district.toml and exit: 0 ok, 1 with file:line errors.
        #[arg(long)]
        check: bool,
        #[arg(long, value_enum, default_value = "text", env = "GRIDWATCH_LOG_FORMAT")]
        log_format: LogFormat,
    },
    /// Write the whole store (alarms, outbox, deliveries, keys) to a JSON Lines file.
    ///
    /// With --token (or $GRIDWATCH_TOKEN, an operator token) it asks the running
    /// daemon (POST /api/v1/backup); without, it reads the data directory
    /// directly, which needs the daemon stopped.
    Backup {
        #[arg(long, default_value = "config/gateway.toml")]
        config: PathBuf,
        /// Where to write the backup (created with mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// Operator token: take the backup from the running daemon over HTTP.
        #[arg(long, env = "GRIDWATCH_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Base URL of the running daemon; default http://{[http] listen}.
        #[arg(long)]
        url: Option<String>,
    },
    /// Create a new data directory from a backup file (the daemon must not run on it).
    Restore {
        /// The backup file written by `gridwatch backup`.
        #[arg(long)]
        from: PathBuf,
        /// The new data directory (must be missing or empty); `[storage] path` of the new box.
        #[arg(long)]
        data: PathBuf,
    },
    /// Validate the configuration: exit 0, or exit 1 with file:line errors.
    CheckConfig {
        #[arg(long, default_value = "config/gateway.toml")]
        config: PathBuf,
        /// Also print the GB/T 26875 component table to hand to the fire monitoring centre.
        #[arg(long)]
        gb26875: bool,
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
    /// Talk to a running daemon over its HTTP API: list, show, ack, resolve alarms.
    Alarms(gridwatch::cli::AlarmsArgs),
    /// Load homes, residents, devices and contacts from a ledger (CSV or XLSX) into registry.toml.
    Import(gridwatch::cli::ImportArgs),
    /// Response times per role and grid, causes, and homes with repeated false alarms.
    Report(gridwatch::cli::ReportArgs),
    /// Send a clearly marked test message to a contact or a role through the
    /// real channels and print each receiver's answer; exit 0 only when all confirmed.
    TestNotify(gridwatch::cli::TestNotifyArgs),
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

/// One line per error, then the count: what `check-config` prints on stdout
/// and `run` on stderr, from the same [`gridwatch::runtime::load`].
fn print_errors(out: &mut dyn std::io::Write, errors: &gridwatch::config::ConfigErrors) {
    for e in &errors.0 {
        let _ = writeln!(out, "{e}");
    }
    let _ = writeln!(out, "{} error(s)", errors.0.len());
}

fn check_config(path: &Path, gb26875: bool) -> ExitCode {
    match gridwatch::runtime::load(path) {
        Ok((cfg, _parts)) => {
            for w in &cfg.warnings {
                println!("warning: {w}");
            }
            println!("ok: {}", cfg.summary());
            if gb26875 {
                match &cfg.gateway.gb26875 {
                    Some(g) => println!(
                        "gb26875: this box is address {} (user information transmission device); centre {} at {}",
                        g.address, g.centre_address, g.centre
                    ),
                    None => println!("gb26875: no [gb26875] in gateway.toml; the table below is what would be sent"),
                }
                print!(
                    "{}",
                    gridwatch::gb26875::mapping::Table::build(&cfg.registry).render()
                );
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            print_errors(&mut std::io::stdout(), &errors);
            ExitCode::FAILURE
        }
    }
}

/// Loads and builds like `check-config`, then runs. A config that does not
/// build is printed once, line by line, and nothing is started.
fn run(path: &Path, opts: gridwatch::runtime::RunOptions) -> ExitCode {
    let (config, parts) = match gridwatch::runtime::load(path) {
        Ok(built) => built,
        Err(errors) => {
            print_errors(&mut std::io::stderr(), &errors);
            tracing::error!(
                errors = errors.0.len(),
                "invalid configuration: nothing started"
            );
            return ExitCode::FAILURE;
        }
    };
    for w in &config.warnings {
        tracing::warn!("config: {w}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gridwatch")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(gridwatch::runtime::spawn(config, parts, opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Each start error names its cause: printed once, without the chain.
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `gridwatch district`: check the file, or run the duty room.
fn district(path: &Path, check: bool) -> ExitCode {
    let cfg = match gridwatch::config::district::DistrictConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("invalid district configuration:\n{e}");
            return ExitCode::FAILURE;
        }
    };
    for w in &cfg.warnings {
        eprintln!("warning: {w}");
    }
    if check {
        println!(
            "ok: district {} follows {} compounds",
            cfg.file.district.id,
            cfg.file.district.sites.len()
        );
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gridwatch-district")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gridwatch: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(gridwatch::district::daemon::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("gridwatch district: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Creates `path` for writing with mode 0600: a backup holds phone numbers and keys.
fn create_private(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

fn backup(
    config: &Path,
    out: &Path,
    token: Option<String>,
    url: Option<String>,
) -> anyhow::Result<()> {
    let cfg = Config::load(config).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    match token {
        Some(token) => {
            let base = url.unwrap_or_else(|| format!("http://{}", cfg.gateway.http.listen));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let body = rt.block_on(async {
                let resp = reqwest::Client::new()
                    .post(format!("{}/api/v1/backup", base.trim_end_matches('/')))
                    .bearer_auth(token)
                    .send()
                    .await
                    .with_context(|| format!("cannot reach the daemon at {base}"))?;
                let status = resp.status();
                let body = resp.bytes().await.context("reading the backup")?;
                if !status.is_success() {
                    anyhow::bail!(
                        "daemon refused the backup ({status}): {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                Ok(body)
            })?;
            let mut f = create_private(out)?;
            std::io::Write::write_all(&mut f, &body).context("writing the backup")?;
            f.sync_all().context("syncing the backup")?;
            println!(
                "backup from {base} written to {} ({} bytes)",
                out.display(),
                body.len()
            );
        }
        None => {
            let dir = cfg.data_dir();
            let store = gridwatch::store::Store::open_existing(&dir).with_context(|| {
                format!(
                    "cannot open {} (is the daemon running? then pass --token with an operator token)",
                    dir.display()
                )
            })?;
            let f = create_private(out)?;
            let mut w = std::io::BufWriter::new(f);
            let counts = store.backup_to(&mut w).context("writing the backup")?;
            let f = w.into_inner().context("flushing the backup")?;
            f.sync_all().context("syncing the backup")?;
            println!(
                "backup of {} written to {}: {counts:?}",
                dir.display(),
                out.display()
            );
        }
    }
    Ok(())
}

fn restore(from: &Path, data: &Path) -> anyhow::Result<()> {
    let f = std::fs::File::open(from).with_context(|| format!("cannot open {}", from.display()))?;
    let counts = gridwatch::store::Store::restore_from(std::io::BufReader::new(f), data)
        .with_context(|| format!("restore into {} failed", data.display()))?;
    println!("restored into {}: {counts:?}", data.display());
    Ok(())
}

/// Prints an operator command's error and maps it to the exit code.
fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gridwatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::CheckConfig { config, gb26875 } => check_config(&config, gb26875),
        Cmd::District {
            config,
            check,
            log_format,
        } => {
            if !check {
                gridwatch::logs::init(log_format);
            }
            district(&config, check)
        }
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
        Cmd::Alarms(args) => gridwatch::cli::alarms(&args),
        Cmd::TestNotify(args) => gridwatch::cli::test_notify(&args),
        Cmd::Import(args) => gridwatch::cli::import(&args),
        Cmd::Report(args) => gridwatch::cli::report(&args),
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
        Cmd::Backup {
            config,
            out,
            token,
            url,
        } => exit(backup(&config, &out, token, url)),
        Cmd::Restore { from, data } => exit(restore(&from, &data)),
        Cmd::Run {
            config,
            log_format,
            test_hooks,
        } => {
            gridwatch::logs::init(log_format);
            run(&config, gridwatch::runtime::RunOptions { test_hooks })
        }
    }
}
