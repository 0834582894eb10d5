//! `gridwatch import --ledger FILE`: loads the compound's ledger (台账) of
//! homes, residents, devices and contacts from a CSV or XLSX file into
//! `registry.toml` (docs/contract.md §1, layout in docs/ledger.md).
//!
//! All or nothing: every bad row is reported at once with its row number;
//! the new registry is written to a temp file beside the target, checked
//! with [`Config::load`] together with the rules and routing that will use
//! it (what `check-config` does), and only then renamed over the target,
//! whose previous version is kept as `registry.toml.bak`. `--dry-run` does
//! the same checks in a temp directory and writes nothing.

pub mod parse;
pub mod source;
pub mod write;

use crate::config::{Config, ConfigErrors};
use parse::{Context, RowError};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// What to import, and where.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The ledger file (`.csv`, `.xlsx`, `.xls`, `.ods`).
    pub ledger: PathBuf,
    /// gateway.toml: its registry gives the grids, its rules and routing check the result.
    pub config: PathBuf,
    /// Check only; write nothing.
    pub dry_run: bool,
    /// Where to write; default: the registry gateway.toml names.
    pub out: Option<PathBuf>,
}

/// Why an import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the current configuration {path} does not load; fix it first (gridwatch check-config):\n{errors}")]
    CurrentConfig { path: String, errors: ConfigErrors },
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error("{}", rows_text(.file, .errors))]
    Rows { file: String, errors: Vec<RowError> },
    #[error("the imported registry does not pass check-config; nothing was written:\n{}", .0.join("\n"))]
    Check(Vec<String>),
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path} as TOML to check the result: {source}")]
    GatewayToml {
        path: String,
        #[source]
        source: toml::de::Error,
    },
}

fn rows_text(file: &str, errors: &[RowError]) -> String {
    let mut s: Vec<String> = errors.iter().map(|e| format!("{file}: {e}")).collect();
    s.push(format!(
        "{} error(s) in the ledger; nothing was written",
        errors.len()
    ));
    s.join("\n")
}

/// What a successful import did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub homes: usize,
    pub residents: usize,
    pub devices: usize,
    pub contacts: usize,
    /// Grid contacts kept from the previous registry.
    pub kept_contacts: usize,
    /// Devices and homes of the previous registry that the ledger does not have.
    pub removed_devices: Vec<String>,
    pub removed_homes: Vec<String>,
    /// The registry written (or that would be).
    pub out: PathBuf,
    /// The previous registry, when one was replaced.
    pub backup: Option<PathBuf>,
    /// check-config's summary of the result.
    pub summary: String,
    pub dry_run: bool,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImportError {
    let path = path.display().to_string();
    move |source| ImportError::Io { what, path, source }
}

/// Runs the import; `now` (RFC 3339) is written into the header comment.
pub fn import(opts: &ImportOptions, now: &str) -> Result<Outcome, ImportError> {
    let current = Config::load(&opts.config).map_err(|errors| ImportError::CurrentConfig {
        path: opts.config.display().to_string(),
        errors,
    })?;
    let sheet = source::read(&opts.ledger)?;
    let ctx = Context {
        grids: current
            .registry
            .grids
            .iter()
            .map(|g| g.id.clone())
            .collect(),
        webhooks: Some(current.gateway.channels.webhook.keys().cloned().collect()),
    };
    let file = opts.ledger.display().to_string();
    let ledger = parse::parse(&sheet, &ctx).map_err(|errors| ImportError::Rows {
        file: file.clone(),
        errors,
    })?;
    let source_name = opts
        .ledger
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or(file);
    let text = write::registry_toml(&current.registry, &ledger, &source_name, now);
    let base = opts.config.parent().unwrap_or(Path::new("")).to_path_buf();
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| base.join(&current.gateway.registry));
    let check_dir = tempfile::Builder::new()
        .prefix("gridwatch-import-")
        .tempdir()
        .map_err(io("create a temp dir for", Path::new("the check")))?;

    // The candidate: beside the target (same filesystem, so the final rename
    // is atomic), or in the temp dir for a dry run.
    let candidate_dir = if opts.dry_run {
        check_dir.path().to_path_buf()
    } else {
        out.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    };
    let mut candidate = tempfile::Builder::new()
        .prefix(".registry-import-")
        .suffix(".toml")
        .tempfile_in(&candidate_dir)
        .map_err(io("create a temp file in", &candidate_dir))?;
    candidate
        .write_all(text.as_bytes())
        .and_then(|()| candidate.as_file().sync_all())
        .map_err(io("write", candidate.path()))?;

    let summary = check(
        &opts.config,
        &current,
        candidate.path(),
        check_dir.path(),
        &out,
    )?;
    let (removed_devices, removed_homes) = write::removed(&current.registry, &ledger);
    let mut outcome = Outcome {
        homes: ledger.homes.len(),
        residents: ledger.residents(),
        devices: ledger.devices.len(),
        contacts: ledger.contacts.len(),
        kept_contacts: write::kept_contacts(&current.registry, &ledger).len(),
        removed_devices: removed_devices.into_iter().map(String::from).collect(),
        removed_homes: removed_homes.into_iter().map(String::from).collect(),
        out: out.clone(),
        backup: None,
        summary,
        dry_run: opts.dry_run,
    };
    if opts.dry_run {
        return Ok(outcome);
    }
    if out.exists() {
        let mut name = out.file_name().unwrap_or_default().to_os_string();
        name.push(".bak");
        let bak = out.with_file_name(name);
        std::fs::copy(&out, &bak).map_err(io("back up the registry to", &bak))?;
        outcome.backup = Some(bak);
    }
    candidate
        .persist(&out)
        .map_err(|e| io("replace", &out)(e.error))?;
    Ok(outcome)
}

/// Loads a copy of gateway.toml whose `registry` is the candidate (and whose
/// other file paths are made absolute), so the result is checked with the
/// same rules and routing as `check-config` will. Returns its summary line.
fn check(
    config: &Path,
    current: &Config,
    candidate: &Path,
    dir: &Path,
    out: &Path,
) -> Result<String, ImportError> {
    let text = std::fs::read_to_string(config).map_err(io("read", config))?;
    let mut doc: toml::Table =
        toml::from_str(&text).map_err(|source| ImportError::GatewayToml {
            path: config.display().to_string(),
            source,
        })?;
    let base = config.parent().unwrap_or(Path::new(""));
    let abs = |name: &str| -> Result<String, ImportError> {
        let p = base.join(name);
        std::path::absolute(&p)
            .map(|p| p.display().to_string())
            .map_err(io("resolve", &p))
    };
    let g = &current.gateway;
    let candidate = std::path::absolute(candidate).map_err(io("resolve", candidate))?;
    doc.insert(
        "registry".into(),
        toml::Value::String(candidate.display().to_string()),
    );
    doc.insert("rules".into(), toml::Value::String(abs(&g.rules)?));
    doc.insert("routing".into(), toml::Value::String(abs(&g.routing)?));
    if !g.profiles.is_empty() {
        let list: Result<Vec<toml::Value>, ImportError> = g
            .profiles
            .iter()
            .map(|p| abs(p).map(toml::Value::String))
            .collect();
        doc.insert("profiles".into(), toml::Value::Array(list?));
    }
    // The compound plan is read relative to gateway.toml too.
    if let Some(plan) = &g.site.plan {
        if let Some(site) = doc.get_mut("site").and_then(toml::Value::as_table_mut) {
            site.insert("plan".into(), toml::Value::String(abs(plan)?));
        }
    }
    let gateway = dir.join("gateway.toml");
    let body = toml::to_string(&doc).map_err(|e| ImportError::Check(vec![e.to_string()]))?;
    std::fs::write(&gateway, body).map_err(io("write", &gateway))?;
    match Config::load(&gateway) {
        Ok(cfg) => Ok(cfg.summary()),
        Err(errors) => Err(ImportError::Check(
            errors
                .0
                .iter()
                .map(|e| {
                    let mut e = e.clone();
                    if e.file == candidate {
                        e.file = PathBuf::from(format!("{} (imported)", out.display()));
                    } else if e.file == gateway {
                        e.file = config.to_path_buf();
                    }
                    e.to_string()
                })
                .collect(),
        )),
    }
}

#[cfg(test)]
mod tests;
