//! `district.toml`: the district duty room (`gridwatch district`). Read with
//! the same machinery as gateway.toml (`${ENV}`, every error with file:line),
//! and checked once, here, for both `district --check` and the daemon.

use super::source::{Report, Seg::K, Source};
use super::{
    ApiToken, ChannelsConfig, ConfigError, ConfigErrors, Contact, Dur, HttpConfig, Locale,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistrictFile {
    pub district: DistrictSection,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub channels: ChannelsConfig,
    /// The district's own people (duty officers) and the compounds' directors.
    #[serde(default)]
    pub contacts: Vec<Contact>,
}

/// `[district]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistrictSection {
    pub id: String,
    pub name: String,
    /// The district broker: `mqtt://user:pass@host:port`.
    pub broker: String,
    /// Prefix the boxes put before every upstream topic (`[upstream] prefix`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Silence after which a box is offline.
    #[serde(default = "default_box_timeout")]
    pub box_timeout: Dur,
    /// SVG of the district with `id="site-<site id>"` elements.
    #[serde(default)]
    pub plan: Option<String>,
    /// Data directory (sled).
    #[serde(default = "default_data")]
    pub data: String,
    #[serde(default)]
    pub locale: Locale,
    /// Contact ids told when any box goes offline (the duty room).
    #[serde(default)]
    pub duty: Vec<String>,
    pub sites: BTreeMap<String, SiteEntry>,
}

/// `[district.sites.<site id>]`: one compound's box.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteEntry {
    pub name: String,
    /// The HMAC key shared with that box (`[upstream] command_key` there).
    pub key: String,
    /// Contact ids of the compound's director(s), told when its box goes offline.
    #[serde(default)]
    pub directors: Vec<String>,
    /// Where the compound is on the district plan (SVG element id), default `site-<id>`.
    #[serde(default)]
    pub plan_id: Option<String>,
}

fn default_box_timeout() -> Dur {
    Dur::from_secs(90)
}

fn default_data() -> String {
    "data-district".into()
}

/// The loaded, checked district config.
#[derive(Debug, Clone)]
pub struct DistrictConfig {
    pub file: DistrictFile,
    /// The directory district.toml is in (relative paths start there).
    pub base: PathBuf,
    /// What the file allows but probably did not mean (file:line), said by
    /// `district --check` and at start.
    pub warnings: Vec<ConfigError>,
}

impl DistrictConfig {
    /// Reads and checks district.toml; every error with file:line.
    pub fn load(path: &Path) -> Result<DistrictConfig, ConfigErrors> {
        Self::load_with_env(path, &|n| std::env::var(n).ok())
    }

    /// [`DistrictConfig::load`] with an explicit environment.
    pub fn load_with_env(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<DistrictConfig, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: None,
                column: None,
                message: format!("cannot read config: {e}"),
            }])
        })?;
        let src = Source::new(path, text);
        let mut rep = Report::default();
        let file: Option<DistrictFile> = src.deserialize(env, &[], &mut rep.errors);
        let Some(file) = file else {
            return Err(ConfigErrors(rep.errors));
        };
        check(&src, &file, &mut rep);
        if !rep.errors.is_empty() {
            return Err(ConfigErrors(rep.errors));
        }
        Ok(DistrictConfig {
            file,
            base: path.parent().unwrap_or(Path::new("")).to_path_buf(),
            warnings: rep.warnings,
        })
    }

    /// The data directory, relative to district.toml.
    pub fn data_dir(&self) -> PathBuf {
        self.base.join(&self.file.district.data)
    }

    /// The plan file, when one is configured.
    pub fn plan_path(&self) -> Option<PathBuf> {
        self.file.district.plan.as_ref().map(|p| self.base.join(p))
    }

    /// A contact by id.
    pub fn contact(&self, id: &str) -> Option<&Contact> {
        self.file.contacts.iter().find(|c| c.id == id)
    }

    /// API tokens.
    pub fn tokens(&self) -> &[ApiToken] {
        &self.file.http.tokens
    }
}

fn check(src: &Source, f: &DistrictFile, rep: &mut Report) {
    let d = &f.district;
    if !d.broker.starts_with("mqtt://") && !d.broker.starts_with("mqtts://") {
        rep.errors.push(src.error_at(
            &[K("district"), K("broker")],
            format!("broker {:?} must start with mqtt:// or mqtts://", d.broker),
        ));
    } else if let Err(e) = crate::net::parse_url(&d.broker) {
        rep.errors
            .push(src.error_at(&[K("district"), K("broker")], e.to_string()));
    }
    if d.sites.is_empty() {
        rep.errors.push(src.error_at(
            &[K("district")],
            "no [district.sites.<id>]: the district follows no compound",
        ));
    }
    let t = d.box_timeout.std();
    if t < std::time::Duration::from_secs(2) {
        rep.errors.push(src.error_at(
            &[K("district"), K("box_timeout")],
            "box_timeout must be at least 2s",
        ));
    }
    let known = |id: &str| f.contacts.iter().any(|c| c.id == id);
    for id in &d.duty {
        if !known(id) {
            rep.errors.push(src.error_at(
                &[K("district"), K("duty")],
                format!("duty contact {id:?} is not in [[contacts]]"),
            ));
        }
    }
    for (site, s) in &d.sites {
        let is_id = !site.is_empty()
            && site
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !is_id {
            rep.errors.push(src.error_at(
                &[K("district"), K("sites"), K(site)],
                format!("site id {site:?} must use only a-z, 0-9, '-' and '_'"),
            ));
        }
        if s.key.len() < 16 {
            rep.errors.push(src.error_at(
                &[K("district"), K("sites"), K(site), K("key")],
                "key must be at least 16 bytes (the box's [upstream] command_key; use ${ENV})",
            ));
        }
        for id in &s.directors {
            if !known(id) {
                rep.errors.push(src.error_at(
                    &[K("district"), K("sites"), K(site), K("directors")],
                    format!("director {id:?} is not in [[contacts]]"),
                ));
            }
        }
    }
    for c in &f.contacts {
        if c.webhook
            .as_ref()
            .is_some_and(|w| !f.channels.webhook.contains_key(w))
        {
            rep.errors.push(src.error_at(
                &[K("contacts")],
                format!(
                    "contact {:?}: webhook {:?} is not in [channels.webhook]",
                    c.id, c.webhook
                ),
            ));
        }
        let landline = c
            .phone
            .as_deref()
            .is_some_and(crate::util::number::is_landline);
        if landline && c.webhook.is_none() && c.email.is_none() && c.console != Some(true) {
            rep.warnings.push(src.error_at(
                &[K("contacts")],
                format!(
                    "contact {:?}: phone {} is a landline (no SMS) and there is no webhook, \
                     email or console: box_offline cannot reach them",
                    c.id,
                    crate::util::mask(c.phone.as_deref().unwrap_or_default())
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contact_reachable_only_by_a_landline_is_warned_about() {
        let text = GOOD.replace("phone = \"13800000001\"", "phone = \"0571-87654321\"");
        let cfg = load(&text).unwrap();
        let w: Vec<String> = cfg.warnings.iter().map(|w| w.to_string()).collect();
        assert!(
            w.iter().any(|w| w.contains("\"li\"")
                && w.contains("landline")
                && w.contains("district.toml:")),
            "{w:?}"
        );
        assert!(load(GOOD).unwrap().warnings.is_empty());
    }

    fn load(text: &str) -> Result<DistrictConfig, ConfigErrors> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("district.toml");
        std::fs::write(&p, text).unwrap();
        DistrictConfig::load_with_env(&p, &|n| (n == "K").then(|| "0123456789abcdef".to_string()))
    }

    const GOOD: &str = r#"
[district]
id = "xihu"
name = "西湖消防中队"
broker = "mqtt://127.0.0.1:1884"
box_timeout = "30s"
duty = ["duty"]

[district.sites.ljy]
name = "龙井苑小区"
key = "${K}"
directors = ["li"]

[[contacts]]
id = "duty"
name = "值班室"
console = true

[[contacts]]
id = "li"
name = "李书记"
phone = "13800000001"
"#;

    #[test]
    fn a_good_file_loads_with_env_expanded() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.file.district.sites["ljy"].key, "0123456789abcdef");
        assert_eq!(c.file.district.box_timeout.std().as_secs(), 30);
        assert_eq!(c.contact("duty").unwrap().console, Some(true));
        assert_eq!(c.contact("li").unwrap().console, None);
    }

    #[test]
    fn errors_name_file_and_line() {
        let bad = GOOD
            .replace("mqtt://127.0.0.1:1884", "http://x")
            .replace("directors = [\"li\"]", "directors = [\"nobody\"]")
            .replace("key = \"${K}\"", "key = \"short\"");
        let e = load(&bad).unwrap_err().to_string();
        assert!(e.contains("district.toml:5:"), "{e}");
        assert!(e.contains("must start with mqtt://"), "{e}");
        assert!(e.contains("director \"nobody\""), "{e}");
        assert!(e.contains("at least 16 bytes"), "{e}");
        let unknown = load(&GOOD.replace("box_timeout", "box_timout"))
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("box_timout"), "{unknown}");
    }
}
