//! Semantic checks of the parsed files: references between them, value
//! formats, and the fire-safety standards the rule defaults come from.
//! Pure: each check reads typed values and the span index, and only appends
//! to a [`Report`].

use super::env::expand;
// `Report` lives in `source` (so checks in sibling files need not import each
// other); re-exported here for code that still names `check::Report`.
pub(crate) use super::source::Report;
use super::source::{EnvLookup, Seg, Seg::I, Seg::K, Source};
use super::types::*;
use super::Dur;
use crate::model::{ChannelKind, Role};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Residual-current alarm setting range of GB 14287.2 detectors, mA.
const RC_ALARM_RANGE: std::ops::RangeInclusive<f64> = 20.0..=1000.0;
/// Highest temperature alarm setting of GB 14287.4 detectors, °C.
const TEMP_ALARM_MAX: f64 = 140.0;
/// Longest hold: GB 14287 demands an alarm within 30 s; leave 5 s for transport.
const MAX_HOLD: Duration = Duration::from_secs(25);
/// Longest MQTT heartbeat: a silent detector must be noticed within about a day.
const MAX_HEARTBEAT: Duration = Duration::from_secs(25 * 3600);
/// `gateway.toml` on its own.
pub(crate) fn gateway(src: &Source, gw: &GatewayFile, env: EnvLookup, rep: &mut Report) {
    let site = &gw.site;
    if site.id.is_empty()
        || !site
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        rep.errors.push(src.error_at(
            &[K("site"), K("id")],
            format!(
                "site id {:?} must be non-empty and use only a-z, 0-9, '-' and '_' (it is part of MQTT topics and alarm ids)",
                site.id
            ),
        ));
    }
    if gw.storage.path.trim().is_empty() {
        rep.errors
            .push(src.error_at(&[K("storage"), K("path")], "storage path is empty"));
    }
    housekeeping(src, gw, rep);
    mqtt(src, &gw.mqtt, rep);
    super::vendor::check(src, gw, rep);
    http(src, &gw.http, env, rep);
    channels(src, &gw.channels, rep);
    if let Some(up) = &gw.upstream {
        let path = [K("upstream"), K("url")];
        // mqtts:// is not offered: the MQTT client is built without TLS.
        if !has_scheme(&up.url, &["mqtt://"]) {
            rep.errors.push(src.error_at(
                &path,
                format!("upstream url {:?} must start with mqtt://", up.url),
            ));
        }
        secret_url(src, &path, rep);
        if let Some(key) = &up.command_key {
            if key.len() < 16 {
                rep.errors.push(src.error_at(
                    &[K("upstream"), K("command_key")],
                    "command_key must be at least 16 bytes (a shared HMAC key; use ${ENV})",
                ));
            }
        }
        if let Some(prefix) = &up.prefix {
            if prefix.contains(['+', '#']) || prefix.starts_with('/') {
                rep.errors.push(src.error_at(
                    &[K("upstream"), K("prefix")],
                    format!("prefix {prefix:?} must be a plain topic path (no wildcards, no leading '/')"),
                ));
            }
        }
        let ka = up.keep_alive.std();
        if ka < std::time::Duration::from_secs(5) || ka > std::time::Duration::from_secs(3600) {
            rep.errors.push(src.error_at(
                &[K("upstream"), K("keep_alive")],
                "keep_alive must be between 5s and 1h",
            ));
        }
    }
}

/// Shortest retention: a verified alarm may reopen within 10 min (docs/contract.md §8),
/// and operators look back over at least a day of closed alarms.
const MIN_RETENTION: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// `[storage] retention` and `[selfwatch]`.
fn housekeeping(src: &Source, gw: &GatewayFile, rep: &mut Report) {
    if gw.storage.retention.std() < MIN_RETENTION {
        rep.errors.push(src.error_at(
            &[K("storage"), K("retention")],
            format!(
                "storage retention = \"{}\" is under 1 day: closed alarms would vanish before anyone can look back at them",
                gw.storage.retention
            ),
        ));
    }
    let wait = gw.storage.flush_wait.std();
    if wait < std::time::Duration::from_millis(10) || wait > std::time::Duration::from_secs(10) {
        rep.errors.push(src.error_at(
            &[K("storage"), K("flush_wait")],
            format!(
                "storage flush_wait = \"{}\" must be between 10ms and 10s: it is how long an alarm may wait for the disk",
                gw.storage.flush_wait
            ),
        ));
    }
    if gw.storage.scrub_every.std() < std::time::Duration::from_secs(1) {
        rep.errors.push(src.error_at(
            &[K("storage"), K("scrub_every")],
            "storage scrub_every must be at least 1s",
        ));
    }
    if let Some(every) = gw.storage.backup_every {
        if every.std() < std::time::Duration::from_secs(1) {
            rep.errors.push(src.error_at(
                &[K("storage"), K("backup_every")],
                format!("storage backup_every = \"{every}\" must be at least 1s"),
            ));
        }
        if gw.storage.backup_dir.trim().is_empty() {
            rep.errors.push(src.error_at(
                &[K("storage"), K("backup_dir")],
                "storage backup_dir is empty",
            ));
        }
    }
    if gw.storage.backup_keep == 0 {
        rep.errors.push(src.error_at(
            &[K("storage"), K("backup_keep")],
            "storage backup_keep must be at least 1 (the newest backup is always kept)",
        ));
    }
    if gw.selfwatch.heartbeat.std() < std::time::Duration::from_secs(1) {
        rep.errors.push(src.error_at(
            &[K("selfwatch"), K("heartbeat")],
            "selfwatch heartbeat must be at least 1s",
        ));
    }
    if gw.selfwatch.topic.contains(['+', '#']) {
        rep.errors.push(src.error_at(
            &[K("selfwatch"), K("topic")],
            "selfwatch topic must not contain MQTT wildcards (+ or #)",
        ));
    }
    let (every, timeout) = (gw.selfwatch.canary.std(), gw.selfwatch.canary_timeout.std());
    if !every.is_zero() {
        if every < std::time::Duration::from_secs(1) {
            rep.errors.push(src.error_at(
                &[K("selfwatch"), K("canary")],
                "selfwatch canary must be at least 1s (or \"0s\" to turn the ingress canary off)",
            ));
        }
        if timeout < std::time::Duration::from_millis(100) || timeout > every {
            rep.errors.push(src.error_at(
                &[K("selfwatch"), K("canary_timeout")],
                format!(
                    "selfwatch canary_timeout = \"{}\" must be at least 100ms and at most canary (\"{}\")",
                    gw.selfwatch.canary_timeout, gw.selfwatch.canary
                ),
            ));
        }
    }
}

fn mqtt(src: &Source, m: &MqttConfig, rep: &mut Report) {
    match m.listen.parse::<SocketAddr>() {
        Err(_) => rep.errors.push(src.error_at(
            &[K("mqtt"), K("listen")],
            format!(
                "mqtt listen {:?} is not a socket address (write e.g. \"127.0.0.1:1883\")",
                m.listen
            ),
        )),
        Ok(addr) if m.embedded && !addr.ip().is_loopback() && m.users.is_empty() => {
            rep.warnings.push(src.error_at(
                &[K("mqtt"), K("listen")],
                format!(
                    "the embedded broker listens on {addr} with no [[mqtt.users]]: any host that reaches it can publish readings"
                ),
            ));
        }
        Ok(_) => {}
    }
    match &m.external {
        None if !m.embedded => rep.errors.push(src.error_at(
            &[K("mqtt"), K("embedded")],
            "mqtt embedded = false needs `external = \"mqtt://host:port\"` (the broker to use instead)",
        )),
        Some(url) => {
            let path = [K("mqtt"), K("external")];
            if !has_scheme(url, &["mqtt://"]) {
                rep.errors.push(src.error_at(
                    &path,
                    format!("mqtt external {url:?} must start with mqtt://"),
                ));
            }
            secret_url(src, &path, rep);
        }
        None => {}
    }
    let mut usernames: HashMap<&str, usize> = HashMap::new();
    for (i, u) in m.users.iter().enumerate() {
        if u.username.is_empty() || u.password_hash.is_empty() {
            rep.errors.push(src.error_at(
                &[K("mqtt"), K("users"), I(i)],
                "mqtt user needs a non-empty username and password_hash",
            ));
            continue;
        }
        if usernames.insert(&u.username, i).is_some() {
            rep.errors.push(src.error_at(
                &[K("mqtt"), K("users"), I(i), K("username")],
                format!("duplicate mqtt user {:?}", u.username),
            ));
        }
        if !crate::security::password::is_supported_hash(&u.password_hash) {
            rep.errors.push(src.error_at(
                &[K("mqtt"), K("users"), I(i), K("password_hash")],
                format!(
                    "mqtt user {:?}: password_hash is not an argon2 PHC string (make one with `gridwatch hash-password`); never write the password itself here",
                    u.username
                ),
            ));
        }
    }
    if let Some(v5) = &m.listen_v5 {
        let path = [K("mqtt"), K("listen_v5")];
        if v5.parse::<SocketAddr>().is_err() {
            rep.errors.push(src.error_at(
                &path,
                format!(
                    "mqtt listen_v5 {v5:?} is not a socket address (write e.g. \"0.0.0.0:1884\")"
                ),
            ));
        } else if *v5 == m.listen || m.tls.as_ref().is_some_and(|t| t.listen == *v5) {
            rep.errors.push(src.error_at(
                &path,
                "mqtt listen_v5 must differ from mqtt listen and mqtt tls listen",
            ));
        } else if !m.embedded {
            rep.errors.push(src.error_at(
                &path,
                "mqtt listen_v5 is a listener of the embedded broker: it needs embedded = true",
            ));
        }
    }
    if let Some(tls) = &m.tls {
        if tls.listen.parse::<SocketAddr>().is_err() {
            rep.errors.push(src.error_at(
                &[K("mqtt"), K("tls"), K("listen")],
                format!("mqtt tls listen {:?} is not a socket address", tls.listen),
            ));
        }
        if tls.listen == m.listen {
            rep.errors.push(src.error_at(
                &[K("mqtt"), K("tls"), K("listen")],
                "mqtt tls listen must differ from mqtt listen",
            ));
        }
    }
    let rate_ok = |v: f64| v.is_finite() && v > 0.0;
    if !rate_ok(m.device_rate) || !rate_ok(m.device_burst) || m.device_burst < 1.0 {
        rep.errors.push(src.error_at(
            &[K("mqtt"), K("device_rate")],
            "mqtt device_rate must be > 0 and device_burst >= 1 (messages per device)",
        ));
    }
    if !(1..=1024).contains(&m.broker_buffer_mib) {
        rep.errors.push(src.error_at(
            &[K("mqtt"), K("broker_buffer_mib")],
            format!(
                "mqtt broker_buffer_mib = {} is outside 1..=1024 (MiB of recent uplinks the embedded broker keeps; 4 is the default)",
                m.broker_buffer_mib
            ),
        ));
    }
}

/// Reads `token_file`s into `token` (refusing files readable by group or
/// others) and resolves the TLS file paths against gateway.toml's directory.
/// The only check that touches files; it runs before [`gateway`].
pub(crate) fn resolve_secret_files(
    src: &Source,
    gw: &mut GatewayFile,
    base: &Path,
    rep: &mut Report,
) {
    for (i, t) in gw.http.tokens.iter_mut().enumerate() {
        let Some(file) = &t.token_file else { continue };
        match crate::security::secret_file::read_secret(&base.join(file)) {
            Ok(secret) => t.token = secret,
            Err(e) => rep.errors.push(src.error_at(
                &[K("http"), K("tokens"), I(i), K("token_file")],
                format!("http token {:?}: {e}", t.name),
            )),
        }
    }
    if let Some(tls) = &mut gw.mqtt.tls {
        for (key, path) in [("cert", &mut tls.cert), ("key", &mut tls.key)] {
            let full = base.join(&*path);
            if !full.is_file() {
                rep.errors.push(src.error_at(
                    &[K("mqtt"), K("tls"), K(key)],
                    format!("mqtt tls {key} file {} not found", full.display()),
                ));
            }
            *path = full.to_string_lossy().into_owned();
        }
    }
}

fn http(src: &Source, h: &HttpConfig, env: EnvLookup, rep: &mut Report) {
    if h.listen.parse::<SocketAddr>().is_err() {
        rep.errors.push(src.error_at(
            &[K("http"), K("listen")],
            format!(
                "http listen {:?} is not a socket address (write e.g. \"127.0.0.1:8080\")",
                h.listen
            ),
        ));
    }
    if !has_scheme(&h.public_url, &["http://", "https://"]) {
        rep.errors.push(src.error_at(
            &[K("http"), K("public_url")],
            format!(
                "http public_url {:?} must start with http:// or https://",
                h.public_url
            ),
        ));
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut values: HashMap<&str, usize> = HashMap::new();
    for (i, t) in h.tokens.iter().enumerate() {
        let at = |k| [K("http"), K("tokens"), I(i), K(k)];
        if let Some(first) = names.insert(&t.name, i) {
            rep.errors.push(src.error_at(
                &at("name"),
                format!(
                    "duplicate http token name {:?} (also token #{})",
                    t.name,
                    first + 1
                ),
            ));
        }
        let forms = [
            src.raw_str(&at("token")).is_some(),
            t.token_sha256.is_some(),
            t.token_file.is_some(),
        ];
        if forms.iter().filter(|&&f| f).count() != 1 {
            rep.errors.push(src.error_at(
                &[K("http"), K("tokens"), I(i)],
                format!(
                    "http token {:?} needs exactly one of token, token_sha256, token_file",
                    t.name
                ),
            ));
            continue;
        }
        if let Some(h) = &t.token_sha256 {
            if !crate::security::password::is_sha256_hex(h) {
                rep.errors.push(src.error_at(
                    &at("token_sha256"),
                    format!(
                        "http token {:?}: token_sha256 must be 64 hex digits (sha256sum of the token)",
                        t.name
                    ),
                ));
            }
            continue;
        }
        if t.token_file.is_some() {
            // Read (and its permissions checked) by `resolve_secret_files`.
            continue;
        }
        if t.token.trim().is_empty() {
            rep.errors
                .push(src.error_at(&at("token"), format!("http token {:?} is empty", t.name)));
            continue;
        }
        if let Some(first) = values.insert(&t.token, i) {
            rep.errors.push(src.error_at(
                &at("token"),
                format!(
                    "http token {:?} has the same value as {:?}: a token must identify one role",
                    t.name, h.tokens[first].name
                ),
            ));
        }
        match src.raw_str(&at("token")) {
            Some(raw) if raw.contains("${") => {
                if let Ok(e) = expand(raw, env) {
                    if !e.defaulted.is_empty() {
                        rep.warnings.push(src.error_at(
                            &at("token"),
                            format!(
                                "http token {:?} uses the demo default written in the file because {} is not set; set it before the API is reachable by others",
                                t.name,
                                e.defaulted.join(", ")
                            ),
                        ));
                    }
                }
            }
            _ => rep.warnings.push(src.error_at(
                &at("token"),
                format!(
                    "secret written in clear (http token {:?}); use \"${{ENV}}\"",
                    t.name
                ),
            )),
        }
    }
}

fn channels(src: &Source, c: &ChannelsConfig, rep: &mut Report) {
    if let Some(e) = &c.email {
        let path = [K("channels"), K("email"), K("smtp")];
        if !has_scheme(&e.smtp, &["smtp://", "smtps://"]) {
            rep.errors.push(src.error_at(
                &path,
                format!(
                    "email smtp {:?} must start with smtp:// or smtps://",
                    e.smtp
                ),
            ));
        }
        secret_url(src, &path, rep);
        if !e.from.contains('@') {
            rep.errors.push(src.error_at(
                &[K("channels"), K("email"), K("from")],
                format!("email from {:?} is not an address", e.from),
            ));
        }
    }
    for (name, w) in &c.webhook {
        let path = [K("channels"), K("webhook"), K(name), K("url")];
        if !has_scheme(&w.url, &["http://", "https://"]) {
            rep.errors.push(src.error_at(
                &path,
                format!(
                    "webhook {name} url {:?} must start with http:// or https://",
                    w.url
                ),
            ));
        }
        secret_url(src, &path, rep);
    }
    modem_users(src, c, rep);
    if let Some(s) = c
        .sms
        .as_ref()
        .filter(|s| s.provider == SmsProvider::Template)
    {
        let path = [K("channels"), K("sms"), K("url")];
        if s.url.is_some() {
            secret_url(src, &path, rep);
        }
    }
    // Everything else about channels (robot secrets, SMS providers and
    // templates) is judged by the channel builders in the build step, which
    // check-config and run share.
}

/// Voice over the modem and modem SMS need `[channels.modem]`; the voice
/// knobs have sane bounds (a retry storm or a silent call helps nobody).
fn modem_users(src: &Source, c: &ChannelsConfig, rep: &mut Report) {
    let needs_modem = |what: &str, path: &[Seg]| {
        src.error_at(
            path,
            format!("{what} uses the modem but gateway.toml has no [channels.modem] device"),
        )
    };
    if let Some(s) = &c.sms {
        if s.provider == SmsProvider::Modem && c.modem.is_none() {
            let e = needs_modem(
                "[channels.sms] provider = \"modem\"",
                &[K("channels"), K("sms"), K("provider")],
            );
            rep.errors.push(e);
        }
    }
    if let Some(v) = &c.voice {
        if v.backend == VoiceBackend::Modem && c.modem.is_none() {
            let e = needs_modem(
                "[channels.voice] backend = \"modem\"",
                &[K("channels"), K("voice"), K("backend")],
            );
            rep.errors.push(e);
        }
        if !(1..=5).contains(&v.play_times) {
            rep.errors.push(src.error_at(
                &[K("channels"), K("voice"), K("play_times")],
                format!("voice play_times = {} must be 1 to 5", v.play_times),
            ));
        }
        if v.retries > 10 {
            rep.errors.push(src.error_at(
                &[K("channels"), K("voice"), K("retries")],
                format!("voice retries = {} must be at most 10", v.retries),
            ));
        }
    }
    if let Some(m) = &c.modem {
        if m.device.trim().is_empty() {
            rep.errors.push(src.error_at(
                &[K("channels"), K("modem"), K("device")],
                "modem device is empty; give the AT port, e.g. \"/dev/ttyUSB2\"",
            ));
        }
        if m.at_timeout.std().is_zero() || m.ring_timeout.std().is_zero() {
            rep.errors.push(src.error_at(
                &[K("channels"), K("modem")],
                "modem at_timeout and ring_timeout must be more than 0s",
            ));
        }
    }
}

/// Warns when the URL at `path` carries a password not given through `${...}`.
fn secret_url(src: &Source, path: &[Seg], rep: &mut Report) {
    let Some(raw) = src.raw_str(path) else { return };
    if url_password_in_clear(raw) {
        rep.warnings.push(src.error_at(
            path,
            "secret written in clear (password in URL); use \"${ENV}\"",
        ));
    }
}

/// Whether `url`'s user-info holds a password written literally.
fn url_password_in_clear(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return false;
    };
    match userinfo.split_once(':') {
        Some((_, pass)) => !pass.is_empty() && !pass.contains("${"),
        None => false,
    }
}

/// Whether `url` starts with one of `schemes` (a first, cheap check found in
/// the same pass as every other error; the full parse of host, port and path
/// is the runtime's build step, which `check-config` runs too).
fn has_scheme(url: &str, schemes: &[&str]) -> bool {
    schemes.iter().any(|s| {
        url.get(..s.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(s))
    })
}

/// Position of each id, reporting duplicates at the second occurrence.
fn index_ids<'a>(
    src: &Source,
    key: &'static str,
    what: &str,
    ids: impl Iterator<Item = &'a str>,
    rep: &mut Report,
) -> HashMap<&'a str, usize> {
    let mut idx = HashMap::new();
    for (i, id) in ids.enumerate() {
        if let Some(first) = idx.get(id) {
            let line = src
                .error_at(&[K(key), I(*first), K("id")], "")
                .line
                .map_or(String::new(), |l| format!(" (first at line {l})"));
            rep.errors.push(src.error_at(
                &[K(key), I(i), K("id")],
                format!("duplicate {what} id {id:?}{line}"),
            ));
        } else {
            idx.insert(id, i);
        }
    }
    idx
}

/// `registry.toml`; `webhooks` are the configured `[channels.webhook.*]` when gateway.toml parsed.
pub(crate) fn registry(
    src: &Source,
    reg: &Registry,
    webhooks: Option<&BTreeMap<String, WebhookConfig>>,
    rep: &mut Report,
) {
    let grids = index_ids(
        src,
        "grids",
        "grid",
        reg.grids.iter().map(|g| g.id.as_str()),
        rep,
    );
    let homes = index_ids(
        src,
        "households",
        "household",
        reg.households.iter().map(|h| h.id.as_str()),
        rep,
    );
    index_ids(
        src,
        "devices",
        "device",
        reg.devices.iter().map(|d| d.id.as_str()),
        rep,
    );
    let contacts = index_ids(
        src,
        "contacts",
        "contact",
        reg.contacts.iter().map(|c| c.id.as_str()),
        rep,
    );
    let contact_refs = |rep: &mut Report, key, i, field, list: &[String], owner: &str| {
        for (j, c) in list.iter().enumerate() {
            if !contacts.contains_key(c.as_str()) {
                rep.errors.push(src.error_at(
                    &[K(key), I(i), K(field), I(j)],
                    format!("unknown contact {c:?} in {field} of {owner}"),
                ));
            }
        }
    };
    for (i, g) in reg.grids.iter().enumerate() {
        let owner = format!("grid {:?}", g.id);
        contact_refs(rep, "grids", i, "grid_workers", &g.grid_workers, &owner);
        contact_refs(rep, "grids", i, "directors", &g.directors, &owner);
        contact_refs(rep, "grids", i, "fire_brigade", &g.fire_brigade, &owner);
        contact_refs(rep, "grids", i, "operators", &g.operators, &owner);
    }
    for (i, h) in reg.households.iter().enumerate() {
        let owner = format!("household {:?}", h.id);
        if !grids.contains_key(h.grid.as_str()) {
            rep.errors.push(src.error_at(
                &[K("households"), I(i), K("grid")],
                format!("unknown grid {:?} for {owner}", h.grid),
            ));
        }
        contact_refs(rep, "households", i, "family", &h.family, &owner);
        for (j, r) in h.residents.iter().enumerate() {
            if let Some(phone) = &r.phone {
                let who = format!("resident {} of {owner}", j + 1);
                let at = [K("households"), I(i), K("residents"), I(j), K("phone")];
                no_sms(src, &at, &who, phone, rep);
            }
        }
        for (j, n) in h.neighbours.iter().enumerate() {
            let at = [K("households"), I(i), K("neighbours"), I(j)];
            if *n == h.id {
                rep.errors
                    .push(src.error_at(&at, format!("{owner} lists itself as its own neighbour")));
            } else if !homes.contains_key(n.as_str()) {
                rep.errors.push(src.error_at(
                    &at,
                    format!("unknown household {n:?} in neighbours of {owner}"),
                ));
            }
        }
    }
    for (i, d) in reg.devices.iter().enumerate() {
        device(src, i, d, &homes, rep);
    }
    for (i, c) in reg.contacts.iter().enumerate() {
        if c.console.is_some() {
            rep.errors.push(src.error_at(
                &[K("contacts"), I(i), K("console")],
                format!(
                    "contact {:?}: `console` is a district.toml key; here a role reaches the console through [roles] in routing.toml",
                    c.id
                ),
            ));
        }
        if c.phone.is_none() && c.email.is_none() && c.webhook.is_none() {
            rep.warnings.push(src.error_at(
                &[K("contacts"), I(i), K("id")],
                format!(
                    "contact {:?} has no phone, email or webhook: nobody can reach them",
                    c.id
                ),
            ));
        }
        if let Some(phone) = &c.phone {
            no_sms(src, &[K("contacts"), I(i), K("phone")], &c.id, phone, rep);
        }
        if let (Some(w), Some(hooks)) = (&c.webhook, webhooks) {
            if !hooks.contains_key(w) {
                rep.errors.push(src.error_at(
                    &[K("contacts"), I(i), K("webhook")],
                    format!(
                        "unknown webhook {w:?} for contact {:?} (no [channels.webhook.{w}] in gateway.toml)",
                        c.id
                    ),
                ));
            }
        }
    }
}

/// Says which people SMS cannot reach (a landline, or not a number), so an
/// installer sees it before the first alarm: they get their next channel.
fn no_sms(src: &Source, at: &[Seg], who: &str, phone: &str, rep: &mut Report) {
    use crate::util::number::{classify, NumberKind};
    let what = match classify(phone) {
        NumberKind::Mobile(_) | NumberKind::Foreign => return,
        NumberKind::Landline => "a landline (座机)",
        NumberKind::Invalid => "not a phone number",
    };
    rep.warnings.push(src.error_at(
        at,
        format!(
            "{who}: phone {} is {what}: no SMS goes to it; they get their role's next channel (voice, email, webhook or the console)",
            crate::util::mask(phone)
        ),
    ));
}

fn device(src: &Source, i: usize, d: &Device, homes: &HashMap<&str, usize>, rep: &mut Report) {
    let at = |k| [K("devices"), I(i), K(k)];
    let id_ok = (1..=64).contains(&d.id.len())
        && d.id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !id_ok {
        rep.errors.push(src.error_at(
            &at("id"),
            format!(
                "device id {:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ - (it is part of MQTT topics)",
                d.id
            ),
        ));
    }
    if !homes.contains_key(d.household.as_str()) {
        rep.errors.push(src.error_at(
            &at("household"),
            format!("unknown household {:?} for device {:?}", d.household, d.id),
        ));
    }
    if let DeviceTransport::Modbus(m) = &d.transport {
        let mb = |k| [K("devices"), I(i), K("transport"), K("modbus"), K(k)];
        if !has_scheme(&m.endpoint, &["tcp://", "rtu://"]) {
            rep.errors.push(src.error_at(
                &mb("endpoint"),
                format!(
                    "modbus endpoint {:?} of device {:?} must start with tcp:// or rtu://",
                    m.endpoint, d.id
                ),
            ));
        }
        if !(1..=247).contains(&m.unit) {
            rep.errors.push(src.error_at(
                &mb("unit"),
                format!(
                    "modbus unit {} of device {:?} must be 1 to 247",
                    m.unit, d.id
                ),
            ));
        }
        if m.every.std().is_zero() {
            rep.errors.push(src.error_at(
                &mb("every"),
                format!("modbus poll interval of device {:?} is zero", d.id),
            ));
        }
    }
}

/// A standards limit broken by a threshold, in words naming the standard.
fn rc_alarm_violation(alarm: f64) -> Option<String> {
    (!RC_ALARM_RANGE.contains(&alarm)).then(|| {
        format!(
            "residual_current alarm {alarm} mA is outside 20–1000 mA, the setting range of GB 14287.2 detectors (GB 50116 §9.2.3 recommends 300–500 mA)"
        )
    })
}

fn temp_alarm_violation(alarm: f64) -> Option<String> {
    (alarm.is_nan() || alarm > TEMP_ALARM_MAX).then(|| {
        format!(
            "temperature alarm {alarm} °C is above {TEMP_ALARM_MAX} °C, the top of the setting range of GB 14287.4 detectors"
        )
    })
}

fn hold_violation(kind: &str, hold: Dur) -> Option<String> {
    (hold.std() > MAX_HOLD).then(|| {
        format!(
            "{kind} for = \"{hold}\" is over 25 s: GB 14287 requires an alarm within 30 s of the condition"
        )
    })
}

/// Hysteresis and level order, on effective values (base merged with override).
fn order_violations(
    kind: &str,
    warning: Option<f64>,
    alarm: f64,
    clear: Option<f64>,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(c) = clear {
        if c.is_nan() || alarm.is_nan() || c >= alarm {
            out.push((
                "clear",
                format!("{kind} clear {c} must be below alarm {alarm} (hysteresis: the condition would never clear)"),
            ));
        }
    }
    if let Some(w) = warning {
        if w.is_nan() || alarm.is_nan() || w > alarm {
            out.push((
                "warning",
                format!("{kind} warning {w} must be at or below alarm {alarm}"),
            ));
        }
    }
    out
}

/// `rules.toml`; `reg` when registry.toml parsed.
pub(crate) fn rules(src: &Source, r: &Rules, reg: Option<&Registry>, rep: &mut Report) {
    base_rules(src, r, rep);
    let devices: Option<HashMap<&str, &Device>> =
        reg.map(|reg| reg.devices.iter().map(|d| (d.id.as_str(), d)).collect());
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, o) in r.overrides.iter().enumerate() {
        let at_dev = [K("override"), I(i), K("device")];
        if let Some(first) = seen.insert(&o.device, i) {
            rep.errors.push(src.error_at(
                &at_dev,
                format!(
                    "second [[override]] for device {:?} (the first is override #{}): merge them",
                    o.device,
                    first + 1
                ),
            ));
        }
        if let Some(devices) = &devices {
            match devices.get(o.device.as_str()) {
                None => rep.errors.push(src.error_at(
                    &at_dev,
                    format!("unknown device {:?} in [[override]]", o.device),
                )),
                Some(d) => override_kind_fit(src, i, o, d, rep),
            }
        }
        override_thresholds(src, i, o, r, rep);
    }
}

fn base_rules(src: &Source, r: &Rules, rep: &mut Report) {
    let rc = &r.residual_current;
    let mut std_err = |path: &[Seg], v: Option<String>| {
        if let Some(msg) = v {
            rep.errors.push(src.error_at(path, msg));
        }
    };
    std_err(
        &[K("residual_current"), K("alarm")],
        rc_alarm_violation(rc.alarm),
    );
    std_err(
        &[K("residual_current"), K("for")],
        hold_violation("residual_current", rc.hold),
    );
    let t = &r.temperature;
    std_err(
        &[K("temperature"), K("alarm")],
        temp_alarm_violation(t.alarm),
    );
    std_err(
        &[K("temperature"), K("for")],
        hold_violation("temperature", t.hold),
    );
    if r.heartbeat.mqtt.std() > MAX_HEARTBEAT {
        std_err(
            &[K("heartbeat"), K("mqtt")],
            Some(format!(
                "heartbeat mqtt = \"{}\" is over 25 h: a dead detector would go unnoticed for more than a day (fire alarm systems must signal a lost device as a fault, GB 50116 / GB 14287)",
                r.heartbeat.mqtt
            )),
        );
    }
    if r.heartbeat.mqtt.std().is_zero() || r.heartbeat.modbus_failures == 0 {
        rep.errors.push(src.error_at(
            &[K("heartbeat")],
            "heartbeat mqtt and modbus_failures must be above zero",
        ));
    }
    let orders = [
        (
            "residual_current",
            order_violations("residual_current", rc.warning, rc.alarm, rc.clear),
        ),
        (
            "temperature",
            order_violations("temperature", t.warning, t.alarm, t.clear),
        ),
        (
            "smoke",
            order_violations("smoke", None, r.smoke.alarm, r.smoke.clear),
        ),
    ];
    for (table, list) in orders {
        for (field, msg) in list {
            rep.errors.push(src.error_at(&[K(table), K(field)], msg));
        }
    }
    let trends = [
        ("residual_current", "rise", rc.rise),
        ("residual_current", "step", rc.step),
        ("temperature", "rate_of_rise", t.rate_of_rise),
    ];
    for (table, field, trend) in trends {
        if let Some(tr) = trend {
            if tr.delta.is_nan() || tr.delta <= 0.0 || tr.within.std().is_zero() {
                rep.errors.push(src.error_at(
                    &[K(table), K(field)],
                    format!("{table} {field} needs delta above 0 and a non-zero within"),
                ));
            }
        }
    }
}

fn override_kind_fit(src: &Source, i: usize, o: &Override, d: &Device, rep: &mut Report) {
    let fits = |kind: &str| match kind {
        "residual_current" => d.kind == DeviceKind::ResidualCurrent,
        "smoke" => matches!(d.kind, DeviceKind::Smoke | DeviceKind::Combo),
        _ => true,
    };
    let set = [
        ("residual_current", o.residual_current.is_some()),
        ("temperature", o.temperature.is_some()),
        ("smoke", o.smoke.is_some()),
    ];
    for (kind, present) in set {
        if present && !fits(kind) {
            rep.warnings.push(src.error_at(
                &[K("override"), I(i), K(kind)],
                format!(
                    "override sets {kind} for device {:?}, which is a {:?} device: it has no effect",
                    d.id, d.kind
                ),
            ));
        }
    }
}

fn override_thresholds(src: &Source, i: usize, o: &Override, r: &Rules, rep: &mut Report) {
    let allowed = o.allow_nonstandard && o.reason.as_deref().is_some_and(|s| !s.trim().is_empty());
    let tables = [
        ("residual_current", &o.residual_current),
        ("temperature", &o.temperature),
        ("smoke", &o.smoke),
    ];
    for (kind, part) in tables {
        let Some(p) = part else { continue };
        let at = |field| [K("override"), I(i), K(kind), K(field)];
        let mut violations = Vec::new();
        match (kind, p.alarm) {
            ("residual_current", Some(a)) => {
                violations.extend(rc_alarm_violation(a).map(|m| ("alarm", m)))
            }
            ("temperature", Some(a)) => {
                violations.extend(temp_alarm_violation(a).map(|m| ("alarm", m)))
            }
            _ => {}
        }
        if let Some(h) = p.hold {
            violations.extend(hold_violation(kind, h).map(|m| ("for", m)));
        }
        for (field, msg) in violations {
            if allowed {
                rep.warnings.push(src.error_at(
                    &at(field),
                    format!(
                        "nonstandard setting allowed for device {:?}: {msg}",
                        o.device
                    ),
                ));
            } else {
                rep.errors.push(src.error_at(
                    &at(field),
                    format!(
                        "{msg}; to allow it for device {:?} set allow_nonstandard = true and a non-empty reason = \"...\" in this [[override]]",
                        o.device
                    ),
                ));
            }
        }
        let (w, a, c) = match kind {
            "residual_current" => {
                let b = &r.residual_current;
                (
                    p.warning.or(b.warning),
                    p.alarm.unwrap_or(b.alarm),
                    p.clear.or(b.clear),
                )
            }
            "temperature" => {
                let b = &r.temperature;
                (
                    p.warning.or(b.warning),
                    p.alarm.unwrap_or(b.alarm),
                    p.clear.or(b.clear),
                )
            }
            _ => (
                p.warning,
                p.alarm.unwrap_or(r.smoke.alarm),
                p.clear.or(r.smoke.clear),
            ),
        };
        for (field, msg) in order_violations(kind, w, a, c) {
            let field = if part_has(p, field) { field } else { "alarm" };
            rep.errors.push(src.error_at(
                &at(field),
                format!("{msg} for device {:?} (after this override)", o.device),
            ));
        }
    }
}

fn part_has(p: &PartialThreshold, field: &str) -> bool {
    match field {
        "clear" => p.clear.is_some(),
        "warning" => p.warning.is_some(),
        _ => p.alarm.is_some(),
    }
}

/// `routing.toml`; `channels` when gateway.toml parsed.
pub(crate) fn routing(
    src: &Source,
    r: &Routing,
    channels: Option<&ChannelsConfig>,
    rep: &mut Report,
) {
    for (i, route) in r.routes.iter().enumerate() {
        let at = |k| [K("route"), I(i), K(k)];
        for (field, empty) in [
            ("kinds", route.kinds.is_empty()),
            ("severities", route.severities.is_empty()),
            ("notify", route.notify.is_empty()),
        ] {
            if empty {
                rep.errors.push(src.error_at(
                    &at(field),
                    format!(
                        "route #{} has an empty {field}: it would never notify anyone",
                        i + 1
                    ),
                ));
            }
        }
        for (field, roles) in [
            ("notify", &route.notify),
            ("escalate_to", &route.escalate_to),
        ] {
            for (j, role) in roles.iter().enumerate() {
                if !r.roles.contains_key(role) {
                    rep.errors.push(src.error_at(
                        &[K("route"), I(i), K(field), I(j)],
                        format!(
                            "role {} in {field} of route #{} has no channels: add `{} = [...]` to [roles]",
                            role.as_str(),
                            i + 1,
                            role.as_str()
                        ),
                    ));
                }
            }
        }
        if !route.escalate_to.is_empty() && route.escalate_after.is_none() {
            rep.errors.push(src.error_at(
                &at("escalate_to"),
                format!("route #{} has escalate_to but no escalate_after", i + 1),
            ));
        }
        for (field, d) in [
            ("escalate_after", route.escalate_after),
            ("repeat", route.repeat),
        ] {
            if d.is_some_and(|d| d.std().is_zero()) {
                rep.errors.push(src.error_at(
                    &at(field),
                    format!("{field} of route #{} must be above zero", i + 1),
                ));
            }
        }
    }
    for (role, kinds) in &r.roles {
        role_channels(src, *role, kinds, channels, rep);
    }
}

fn role_channels(
    src: &Source,
    role: Role,
    kinds: &[ChannelKind],
    channels: Option<&ChannelsConfig>,
    rep: &mut Report,
) {
    let at = [K("roles"), K(role.as_str())];
    if kinds.is_empty() {
        rep.warnings.push(src.error_at(
            &at,
            format!(
                "role {} has no channels: it is shown on the duty board only",
                role.as_str()
            ),
        ));
        return;
    }
    let Some(ch) = channels else { return };
    let missing: Vec<&str> = kinds
        .iter()
        .filter(|k| !channel_configured(ch, **k))
        .map(|k| k.as_str())
        .collect();
    if !missing.is_empty() {
        let outcome = if missing.len() < kinds.len() {
            "those are skipped"
        } else if channel_configured(ch, ChannelKind::Console) {
            "this role falls back to the console"
        } else {
            "this role reaches nobody ([channels.console] is disabled): its alarms show on the duty board only"
        };
        rep.warnings.push(src.error_at(
            &at,
            format!(
                "role {} uses channel(s) {} not configured in gateway.toml [channels]; {outcome}",
                role.as_str(),
                missing.join(", "),
            ),
        ));
    }
}

/// Whether the daemon will use `kind`: the same answer as the built
/// channels' `is_configured` (a missing `[channels.console]` means enabled).
fn channel_configured(ch: &ChannelsConfig, kind: ChannelKind) -> bool {
    match kind {
        ChannelKind::Sms => ch.sms.is_some(),
        ChannelKind::Voice => ch.voice.is_some(),
        ChannelKind::Email => ch.email.is_some(),
        ChannelKind::Webhook => !ch.webhook.is_empty(),
        ChannelKind::Console => ch.console.as_ref().is_none_or(|c| c.enabled),
        ChannelKind::Mqtt => true,
        ChannelKind::Sounder | ChannelKind::Upstream | ChannelKind::Gb26875 => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_passwords_in_urls() {
        assert!(url_password_in_clear("mqtt://gw:hunter2@host:1883"));
        assert!(url_password_in_clear("smtp://u:p@h:25/x"));
        assert!(!url_password_in_clear("mqtt://gw:${PASS}@host:1883"));
        assert!(!url_password_in_clear("mqtt://gw@host:1883"));
        assert!(!url_password_in_clear("http://host:80/a@b"));
        assert!(!url_password_in_clear("no-scheme"));
    }

    #[test]
    fn standards_limits() {
        assert!(rc_alarm_violation(300.0).is_none());
        assert!(rc_alarm_violation(1000.0).is_none());
        assert!(rc_alarm_violation(1000.5).is_some());
        assert!(rc_alarm_violation(19.0).is_some());
        assert!(rc_alarm_violation(f64::NAN).is_some());
        assert!(temp_alarm_violation(140.0).is_none());
        assert!(temp_alarm_violation(141.0).is_some());
        assert!(temp_alarm_violation(f64::NAN).is_some());
        assert!(hold_violation("x", Dur::from_secs(25)).is_none());
        assert!(hold_violation("x", Dur::from_secs(26)).is_some());
    }
}
