//! Configuration: four TOML files (docs/contract.md §2) read once, checked whole, and
//! handed to the stages as one immutable `Config`.
//!
//! Loading never stops at the first problem: syntax and type errors of every
//! file, missing `${ENV}` variables, dangling references and standards
//! violations are all collected, each with its file and line, so an installer
//! fixes a ledger in one pass. `${ENV}` expansion is described in
//! [`env`](self::env) (forms) and `source` (how positions are kept).

mod check;
pub mod district;
pub mod duration;
mod env;
pub mod gb26875;
pub mod plan;
pub mod profile;
mod source;
pub mod types;
mod vendor;

pub use duration::Dur;
pub use profile::{Profile, ProfileEntry, RegType, Table, WordOrder, BUILTIN_PROFILE};
pub use types::*;

use source::{entry, EntryCheck, Report, Seg::K, Source};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The whole configuration, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// `gateway.toml`.
    pub gateway: GatewayFile,
    /// The compound's ledger.
    pub registry: Registry,
    /// Thresholds and trends.
    pub rules: Rules,
    /// Who gets what.
    pub routing: Routing,
    /// Path of gateway.toml as given.
    pub path: PathBuf,
    /// Modbus profiles by name: the built-in ones and those of the `profiles` files.
    pub profiles: BTreeMap<String, Profile>,
    /// Non-fatal findings (e.g. a secret written in clear, a role channel that is not configured).
    pub warnings: Vec<ConfigError>,
    /// gateway.toml as read, so checks made after loading (the runtime's
    /// build step) still point at file:line.
    gateway_text: Arc<str>,
    devices: HashMap<String, usize>,
    households: HashMap<String, usize>,
    contacts: HashMap<String, usize>,
    grids: HashMap<String, usize>,
    /// Devices of each household, in registry order: linked sounders are
    /// looked up per alarm, and a compound can hold ten thousand devices.
    household_devices: HashMap<String, Vec<usize>>,
}

/// One problem in a config file, with its position when known.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The file, as a path built from the gateway.toml path given.
    pub file: PathBuf,
    /// 1-based line.
    pub line: Option<usize>,
    /// 1-based column, in characters.
    pub column: Option<usize>,
    /// What is wrong, and when it helps, how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every error found by one load, sorted by file then line.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The files gateway.toml names, by key.
const FILE_KEYS: [&str; 3] = ["registry", "rules", "routing"];

impl Config {
    /// Reads gateway.toml and the files it names (relative to gateway.toml's
    /// directory), expands `${ENV}` in string values, checks everything, and
    /// returns ALL errors found (not just the first).
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::load_with_env(path, &|name| std::env::var(name).ok())
    }

    /// [`Config::load`] with an explicit environment, so tests and `check-config
    /// --env-file` style callers need not touch the process environment.
    pub fn load_with_env(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let mut rep = Report::default();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: None,
                column: None,
                message: format!("cannot read config: {e}"),
            }])
        })?;
        let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let gateway_text: Arc<str> = Arc::from(text.as_str());
        let gw_src = Source::new(path, text);
        let mut gateway: Option<GatewayFile> = gw_src.deserialize(env, &[], &mut rep.errors);
        if let Some(g) = &mut gateway {
            check::resolve_secret_files(&gw_src, g, &base, &mut rep);
        }

        // File names: from the typed file, or, when it failed on something
        // else, from the plain strings written there, so the other files are
        // still checked in the same run.
        let names: Vec<Option<String>> = FILE_KEYS
            .iter()
            .map(|key| match &gateway {
                Some(g) => Some(match *key {
                    "registry" => g.registry.clone(),
                    "rules" => g.rules.clone(),
                    _ => g.routing.clone(),
                }),
                None => gw_src
                    .raw_str(&[K(key)])
                    .filter(|s| !s.contains('$'))
                    .map(str::to_string),
            })
            .collect();
        let mut sources = Vec::new();
        for (key, name) in FILE_KEYS.iter().zip(names) {
            let Some(name) = name else {
                sources.push(None);
                continue;
            };
            let p = base.join(&name);
            match std::fs::read_to_string(&p) {
                Ok(text) => sources.push(Some(Source::new(&p, text))),
                Err(e) => {
                    rep.errors.push(gw_src.error_at(
                        &[K(key)],
                        format!("cannot read {key} file {}: {e}", p.display()),
                    ));
                    sources.push(None);
                }
            }
        }
        let [reg_src, rules_src, routing_src]: [Option<Source>; 3] =
            sources.try_into().unwrap_or_else(|_| [None, None, None]);

        let registry_entries: [EntryCheck; 4] = [
            entry::<Grid>("grids"),
            entry::<Household>("households"),
            entry::<Device>("devices"),
            entry::<Contact>("contacts"),
        ];
        let registry: Option<Registry> = reg_src.as_ref().and_then(|s| {
            s.deserialize_blocks(env, &registry_entries, Registry::append, &mut rep.errors)
        });
        let rules: Option<Rules> = rules_src
            .as_ref()
            .and_then(|s| s.deserialize(env, &[entry::<Override>("override")], &mut rep.errors));
        let routing: Option<Routing> = routing_src
            .as_ref()
            .and_then(|s| s.deserialize(env, &[entry::<Route>("route")], &mut rep.errors));

        let mut profiles = profile::builtin_profiles();
        if let Some(g) = &gateway {
            check::gateway(&gw_src, g, env, &mut rep);
            profiles = profile::load(&gw_src, g, &base, env, &mut rep);
        }
        if let (Some(src), Some(r)) = (&reg_src, &registry) {
            profile::check_devices(src, r, &profiles, &mut rep);
        }
        if let Some(g) = &mut gateway {
            plan::load(
                &gw_src,
                g,
                reg_src.as_ref(),
                registry.as_ref(),
                &base,
                &mut rep,
            );
        }
        if let (Some(src), Some(r)) = (&reg_src, &registry) {
            check::registry(
                src,
                r,
                gateway.as_ref().map(|g| &g.channels.webhook),
                &mut rep,
            );
        }
        if let Some(g) = &gateway {
            let reg = reg_src.as_ref().zip(registry.as_ref());
            gb26875::check(&gw_src, g, reg, &mut rep);
        }
        if let (Some(src), Some(r)) = (&rules_src, &rules) {
            check::rules(src, r, registry.as_ref(), &mut rep);
        }
        if let (Some(src), Some(r)) = (&routing_src, &routing) {
            check::routing(src, r, gateway.as_ref().map(|g| &g.channels), &mut rep);
        }

        let Report {
            mut errors,
            mut warnings,
        } = rep;
        sort(&mut errors);
        sort(&mut warnings);
        match (gateway, registry, rules, routing) {
            (Some(gateway), Some(registry), Some(rules), Some(routing)) if errors.is_empty() => {
                let mut cfg = Config::assemble(
                    gateway,
                    registry,
                    rules,
                    routing,
                    profiles,
                    path.to_path_buf(),
                    warnings,
                );
                cfg.gateway_text = gateway_text;
                Ok(cfg)
            }
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// Reads another rules file (e.g. a proposed change for `replay --against`),
    /// with the same checks as at load, against this config's registry.
    pub fn load_rules(&self, path: &Path) -> Result<Rules, ConfigErrors> {
        let env = |name: &str| std::env::var(name).ok();
        let mut rep = Report::default();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: None,
                column: None,
                message: format!("cannot read rules: {e}"),
            }])
        })?;
        let src = Source::new(path, text);
        let rules: Option<Rules> =
            src.deserialize(&env, &[entry::<Override>("override")], &mut rep.errors);
        if let Some(r) = &rules {
            check::rules(&src, r, Some(&self.registry), &mut rep);
        }
        sort(&mut rep.errors);
        match rules {
            Some(r) if rep.errors.is_empty() => Ok(r),
            _ => Err(ConfigErrors(rep.errors)),
        }
    }

    fn assemble(
        gateway: GatewayFile,
        registry: Registry,
        rules: Rules,
        routing: Routing,
        profiles: BTreeMap<String, Profile>,
        path: PathBuf,
        warnings: Vec<ConfigError>,
    ) -> Config {
        fn index<'a>(ids: impl Iterator<Item = &'a String>) -> HashMap<String, usize> {
            ids.enumerate().map(|(i, id)| (id.clone(), i)).collect()
        }
        Config {
            devices: index(registry.devices.iter().map(|d| &d.id)),
            households: index(registry.households.iter().map(|h| &h.id)),
            contacts: index(registry.contacts.iter().map(|c| &c.id)),
            grids: index(registry.grids.iter().map(|g| &g.id)),
            household_devices: registry.devices.iter().enumerate().fold(
                HashMap::new(),
                |mut m: HashMap<String, Vec<usize>>, (i, d)| {
                    m.entry(d.household.clone()).or_default().push(i);
                    m
                },
            ),
            gateway,
            registry,
            rules,
            routing,
            profiles,
            path,
            warnings,
            gateway_text: Arc::from(""),
        }
    }

    /// An error at a key of gateway.toml (e.g. `["channels", "sms", "body"]`),
    /// with its line and column: for checks made after loading, so every
    /// refusal names its place the same way. Re-reads the kept text; only
    /// called on the error path.
    pub fn gateway_error(&self, keys: &[&str], message: impl Into<String>) -> ConfigError {
        let src = Source::new(&self.path, self.gateway_text.to_string());
        let path: Vec<source::Seg> = keys.iter().map(|k| K(k)).collect();
        src.error_at(&path, message)
    }

    /// A device by id.
    pub fn device(&self, id: &str) -> Option<&Device> {
        self.devices
            .get(id)
            .and_then(|&i| self.registry.devices.get(i))
    }

    /// A household by id.
    pub fn household(&self, id: &str) -> Option<&Household> {
        self.households
            .get(id)
            .and_then(|&i| self.registry.households.get(i))
    }

    /// A contact by id.
    pub fn contact(&self, id: &str) -> Option<&Contact> {
        self.contacts
            .get(id)
            .and_then(|&i| self.registry.contacts.get(i))
    }

    /// The devices installed in a household, in registry order.
    pub fn household_devices(&self, household_id: &str) -> impl Iterator<Item = &Device> {
        self.household_devices
            .get(household_id)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.registry.devices.get(i))
    }

    /// A grid by id.
    pub fn grid(&self, id: &str) -> Option<&Grid> {
        self.grids.get(id).and_then(|&i| self.registry.grids.get(i))
    }

    /// storage.path resolved against gateway.toml's directory (absolute paths kept).
    pub fn data_dir(&self) -> PathBuf {
        let base = self.path.parent().unwrap_or(Path::new(""));
        base.join(&self.gateway.storage.path)
    }

    /// storage.backup_dir resolved like [`Config::data_dir`].
    pub fn backup_dir(&self) -> PathBuf {
        let base = self.path.parent().unwrap_or(Path::new(""));
        base.join(&self.gateway.storage.backup_dir)
    }

    /// A one-line summary for check-config, e.g.
    /// `site xihu-longjing (龙井苑小区): 2 grids, 9 households, 13 devices, 9 contacts, 5 routes`.
    pub fn summary(&self) -> String {
        let r = &self.registry;
        format!(
            "site {} ({}): {} grids, {} households, {} devices, {} contacts, {} routes",
            self.gateway.site.id,
            self.gateway.site.name,
            r.grids.len(),
            r.households.len(),
            r.devices.len(),
            r.contacts.len(),
            self.routing.routes.len()
        )
    }
}

fn sort(list: &mut [ConfigError]) {
    list.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
}

#[cfg(test)]
mod tests;
