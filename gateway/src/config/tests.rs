//! Load tests: a small valid compound written to a tempdir, broken one way per
//! test; each asserts the file AND line of the error.

use super::*;
use std::collections::HashMap;

const GATEWAY: &str = r#"registry = "registry.toml"
rules = "rules.toml"
routing = "routing.toml"

[site]
id = "t-site"
name = "Test"

[mqtt]
listen = "127.0.0.1:1883"

[http]
listen = "127.0.0.1:8080"

[[http.tokens]]
name = "ops"
role = "operator"
token = "${GW_T}"

[channels.console]
enabled = true

[channels.webhook.fire119]
url = "http://127.0.0.1:9/x"
"#;

const REGISTRY: &str = r#"[[grids]]
id = "g1"
name = "G1"
grid_workers = ["c-a"]
directors = ["c-a"]
fire_brigade = ["c-119"]

[[households]]
id = "h1"
address = "1"
grid = "g1"
residents = [{ name = "A", phone = "+8613800000001" }]
family = ["c-a"]
neighbours = ["h2"]

[[households]]
id = "h2"
address = "2"
grid = "g1"

[[devices]]
id = "d1"
kind = "smoke"
household = "h1"

[[devices]]
id = "rcm1"
kind = "residual_current"
household = "h1"
transport = { modbus = { endpoint = "tcp://127.0.0.1:5020", unit = 1, profile = "generic-rcm" } }

[[contacts]]
id = "c-a"
name = "A"
phone = "+8613800000002"

[[contacts]]
id = "c-119"
name = "119"
webhook = "fire119"
"#;

const RULES: &str = r#"[residual_current]
warning = 200
alarm = 300
clear = 250
for = "5s"

[temperature]
warning = 60
alarm = 70

[heartbeat]
mqtt = "5m"

[[override]]
device = "rcm1"
residual_current = { alarm = 400, clear = 350 }
"#;

const ROUTING: &str = r#"[roles]
grid_worker = ["console"]
director = ["console"]
fire_brigade = ["webhook"]
family = ["console"]

[[route]]
kinds = ["smoke"]
severities = ["alarm", "critical"]
notify = ["grid_worker", "director", "fire_brigade", "family"]
escalate_after = "60s"
escalate_to = ["director"]
"#;

/// The four files of a test compound.
#[derive(Clone)]
struct Files {
    gateway: String,
    registry: String,
    rules: String,
    routing: String,
    /// Other files beside gateway.toml (e.g. the plan SVG).
    extra: Vec<(String, String)>,
}

impl Files {
    fn valid() -> Files {
        Files {
            gateway: GATEWAY.into(),
            registry: REGISTRY.into(),
            rules: RULES.into(),
            routing: ROUTING.into(),
            extra: Vec::new(),
        }
    }

    /// Adds a file beside gateway.toml.
    fn with_file(mut self, name: &str, text: &str) -> Files {
        self.extra.push((name.into(), text.into()));
        self
    }

    fn text(&self, file: &str) -> &str {
        match file {
            "gateway.toml" => &self.gateway,
            "registry.toml" => &self.registry,
            "rules.toml" => &self.rules,
            _ => &self.routing,
        }
    }

    /// Replaces the one occurrence of `from` in `file`.
    fn edit(mut self, file: &str, from: &str, to: &str) -> Files {
        let text = match file {
            "gateway.toml" => &mut self.gateway,
            "registry.toml" => &mut self.registry,
            "rules.toml" => &mut self.rules,
            _ => &mut self.routing,
        };
        assert_eq!(
            text.matches(from).count(),
            1,
            "{from:?} must occur once in {file}"
        );
        *text = text.replacen(from, to, 1);
        self
    }

    fn load_env(&self, env: &[(&str, &str)]) -> (tempfile::TempDir, Result<Config, ConfigErrors>) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("gateway.toml", &self.gateway),
            ("registry.toml", &self.registry),
            ("rules.toml", &self.rules),
            ("routing.toml", &self.routing),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        for (name, text) in &self.extra {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let res = Config::load_with_env(&dir.path().join("gateway.toml"), &|n| env.get(n).cloned());
        (dir, res)
    }

    fn load(&self) -> Result<Config, ConfigErrors> {
        self.load_env(&[("GW_T", "s3cret")]).1
    }

    fn errors(&self) -> Vec<ConfigError> {
        match self.load() {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.0,
        }
    }

    /// 1-based line of the one line of `file` containing `needle`.
    fn line_of(&self, file: &str, needle: &str) -> usize {
        let hits: Vec<usize> = self
            .text(file)
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains(needle))
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(
            hits.len(),
            1,
            "{needle:?} must be on exactly one line of {file}"
        );
        hits[0]
    }

    /// Asserts an error in `file` on the line holding `needle`, whose message contains `msg`.
    fn expect(&self, file: &str, needle: &str, msg: &str) -> ConfigError {
        let errs = self.errors();
        self.find(&errs, file, needle, msg)
    }

    fn find(&self, list: &[ConfigError], file: &str, needle: &str, msg: &str) -> ConfigError {
        let line = self.line_of(file, needle);
        list.iter()
            .find(|e| e.file.ends_with(file) && e.line == Some(line) && e.message.contains(msg))
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "no error in {file}:{line} containing {msg:?}; got:\n{}",
                    ConfigErrors(list.to_vec())
                )
            })
    }
}

#[test]
fn fixture_is_valid_and_clean() {
    let cfg = Files::valid().load().unwrap();
    assert!(
        cfg.warnings.is_empty(),
        "{}",
        ConfigErrors(cfg.warnings.clone())
    );
    assert_eq!(cfg.gateway.http.tokens[0].token, "s3cret");
    assert_eq!(cfg.device("rcm1").map(|d| d.household.as_str()), Some("h1"));
    assert_eq!(cfg.household("h2").map(|h| h.address.as_str()), Some("2"));
    assert_eq!(
        cfg.contact("c-119").and_then(|c| c.webhook.as_deref()),
        Some("fire119")
    );
    assert_eq!(cfg.grid("g1").map(|g| g.name.as_str()), Some("G1"));
    assert!(cfg.device("nope").is_none());
    assert_eq!(cfg.data_dir(), cfg.path.parent().unwrap().join("data"));
    assert_eq!(
        cfg.summary(),
        "site t-site (Test): 1 grids, 2 households, 2 devices, 2 contacts, 1 routes"
    );
}

#[test]
fn shipped_config_loads_without_env() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gateway.toml");
    let cfg = Config::load_with_env(&path, &|_| None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.summary(),
        format!(
            "site xihu-longjing (龙井苑小区): 2 grids, 9 households, 13 devices, 9 contacts, {} routes",
            cfg.routing.routes.len()
        )
    );
    assert_eq!(cfg.routing.routes.len(), 5);
    let h = cfg.household("h-3-2-501").unwrap();
    assert_eq!(h.residents[0].name, "张奶奶");
    assert!(h.residents[0].lives_alone);
    assert_eq!(
        cfg.device("rcm-3-2-db").map(|d| d.kind),
        Some(DeviceKind::ResidualCurrent)
    );
    assert_eq!(cfg.rules.overrides[0].device, "rcm-3-2-db");
    assert!(cfg
        .gateway
        .channels
        .console
        .as_ref()
        .is_some_and(|c| c.enabled));
    // Demo tokens fall back to their defaults, and the loader says so.
    assert_eq!(cfg.gateway.http.tokens[0].token, "demo-duty");
    assert!(cfg
        .warnings
        .iter()
        .any(|w| w.message.contains("GW_TOKEN_DUTY")));
    // sms/email are not configured: warnings, not errors.
    assert!(cfg.warnings.iter().any(|w| w
        .message
        .contains("role grid_worker uses channel(s) sms, email")));
    for h in &cfg.registry.households {
        assert!(
            h.residents.iter().any(|r| r
                .phone
                .as_deref()
                .is_some_and(|p| p.starts_with("+86138000000"))),
            "{} has no resident phone",
            h.id
        );
    }
}

#[test]
fn shipped_config_takes_env_tokens() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gateway.toml");
    let cfg = Config::load_with_env(&path, &|n| {
        (n == "GW_TOKEN_DUTY").then(|| "real".to_string())
    })
    .unwrap();
    assert_eq!(cfg.gateway.http.tokens[0].token, "real");
    assert!(!cfg
        .warnings
        .iter()
        .any(|w| w.message.contains("GW_TOKEN_DUTY")));
}

#[test]
fn toml_syntax_error_has_position() {
    let f = Files::valid().edit("registry.toml", "id = \"h2\"", "id = \"h2");
    let e = f.expect("registry.toml", "id = \"h2", "TOML syntax error");
    assert!(e.column.is_some());
}

#[test]
fn unknown_top_level_key() {
    let f = Files::valid().edit("gateway.toml", "[site]", "colour = \"red\"\n\n[site]");
    f.expect("gateway.toml", "colour", "unknown field `colour`");
}

#[test]
fn unknown_nested_key_in_table_and_array_entry() {
    let f = Files::valid().edit(
        "gateway.toml",
        "name = \"Test\"",
        "name = \"Test\"\nnmae = \"x\"",
    );
    f.expect("gateway.toml", "nmae", "unknown field `nmae`");

    let f = Files::valid().edit(
        "registry.toml",
        "household = \"h1\"\n\n[[devices]]",
        "househld = \"h1\"\n\n[[devices]]",
    );
    let e = f.expect("registry.toml", "househld", "unknown field `househld`");
    assert_eq!(e.column, Some(1));
}

/// `console` is a district.toml contact key: registry.toml refuses it,
/// `false` included, at its line, as it did before the two files shared one
/// contact type.
#[test]
fn registry_contacts_refuse_the_district_console_key() {
    for v in ["true", "false"] {
        let f = Files::valid().edit(
            "registry.toml",
            "phone = \"+8613800000002\"",
            &format!("phone = \"+8613800000002\"\nconsole = {v}"),
        );
        f.expect(
            "registry.toml",
            "console =",
            "`console` is a district.toml key",
        );
    }
}

#[test]
fn several_typos_in_one_ledger_are_all_reported() {
    let f = Files::valid()
        .edit(
            "registry.toml",
            "household = \"h1\"\n\n[[devices]]",
            "househld = \"h1\"\n\n[[devices]]",
        )
        .edit("registry.toml", "name = \"119\"", "nam = \"119\"");
    let errs = f.errors();
    f.find(&errs, "registry.toml", "househld", "unknown field");
    f.find(&errs, "registry.toml", "nam = \"119\"", "unknown field");
}

#[test]
fn wrong_type() {
    let f = Files::valid().edit(
        "registry.toml",
        "grid = \"g1\"\nresidents",
        "grid = 3\nresidents",
    );
    f.expect("registry.toml", "grid = 3", "invalid type");
    let f = Files::valid().edit("rules.toml", "alarm = 70", "alarm = \"hot\"");
    f.expect("rules.toml", "alarm = \"hot\"", "invalid type");
}

#[test]
fn bad_duration_and_enum() {
    let f = Files::valid().edit("rules.toml", "for = \"5s\"", "for = \"5\"");
    f.expect("rules.toml", "for = \"5\"", "invalid duration");
    let f = Files::valid().edit(
        "routing.toml",
        "escalate_after = \"60s\"",
        "escalate_after = \"soon\"",
    );
    f.expect("routing.toml", "escalate_after", "invalid duration");
    let f = Files::valid().edit("registry.toml", "kind = \"smoke\"", "kind = \"gas\"");
    f.expect("registry.toml", "kind = \"gas\"", "unknown variant `gas`");
}

#[test]
fn dangling_references() {
    let base = Files::valid();
    let cases: [(&str, &str, &str, &str); 9] = [
        (
            "registry.toml",
            "grid = \"g1\"\nresidents",
            "grid = \"g99\"\nresidents",
            "unknown grid \"g99\" for household \"h1\"",
        ),
        (
            "registry.toml",
            "household = \"h1\"\n\n[[devices]]",
            "household = \"h9\"\n\n[[devices]]",
            "unknown household \"h9\" for device \"d1\"",
        ),
        (
            "registry.toml",
            "grid_workers = [\"c-a\"]",
            "grid_workers = [\"c-x\"]",
            "unknown contact \"c-x\" in grid_workers",
        ),
        (
            "registry.toml",
            "directors = [\"c-a\"]",
            "directors = [\"c-x\"]",
            "unknown contact \"c-x\" in directors",
        ),
        (
            "registry.toml",
            "fire_brigade = [\"c-119\"]",
            "fire_brigade = [\"c-x\"]",
            "unknown contact \"c-x\" in fire_brigade",
        ),
        (
            "registry.toml",
            "family = [\"c-a\"]",
            "family = [\"c-x\"]",
            "unknown contact \"c-x\" in family",
        ),
        (
            "registry.toml",
            "neighbours = [\"h2\"]",
            "neighbours = [\"h7\"]",
            "unknown household \"h7\" in neighbours",
        ),
        (
            "registry.toml",
            "webhook = \"fire119\"",
            "webhook = \"fire120\"",
            "unknown webhook \"fire120\"",
        ),
        (
            "rules.toml",
            "device = \"rcm1\"",
            "device = \"rcm9\"",
            "unknown device \"rcm9\"",
        ),
    ];
    for (file, from, to, msg) in cases {
        let f = base.clone().edit(file, from, to);
        let needle = to.lines().next().unwrap();
        f.expect(file, needle, msg);
    }
    let f = base.edit(
        "registry.toml",
        "neighbours = [\"h2\"]",
        "neighbours = [\"h2\", \"h1\"]",
    );
    let e = f.expect("registry.toml", "neighbours", "its own neighbour");
    // Points at the offending element, not the key.
    assert_eq!(e.column, Some("neighbours = [\"h2\", ".chars().count() + 1));
}

#[test]
fn duplicate_ids() {
    let base = Files::valid();
    let cases = [
        (
            "id = \"h2\"",
            "id = \"h1\"",
            "duplicate household id \"h1\"",
        ),
        ("id = \"rcm1\"", "id = \"d1\"", "duplicate device id \"d1\""),
        (
            "id = \"c-119\"",
            "id = \"c-a\"",
            "duplicate contact id \"c-a\"",
        ),
    ];
    for (from, to, msg) in cases {
        let f = base.clone().edit("registry.toml", from, to);
        // The second occurrence is reported; find its line.
        let second = f
            .text("registry.toml")
            .lines()
            .enumerate()
            .filter(|(_, l)| *l == to)
            .nth(1)
            .unwrap()
            .0
            + 1;
        let errs = f.errors();
        assert!(
            errs.iter().any(|e| e.file.ends_with("registry.toml")
                && e.line == Some(second)
                && e.message.contains(msg)),
            "{msg} at {second}: {}",
            ConfigErrors(errs.clone())
        );
    }
    let f = base.edit(
        "registry.toml",
        "[[households]]\nid = \"h1\"",
        "[[grids]]\nid = \"g1\"\nname = \"again\"\n\n[[households]]\nid = \"h1\"",
    );
    let second = f
        .text("registry.toml")
        .lines()
        .position(|l| l == "name = \"again\"")
        .unwrap();
    let errs = f.errors();
    assert!(
        errs.iter()
            .any(|e| e.message.contains("duplicate grid id \"g1\"") && e.line == Some(second)),
        "{}",
        ConfigErrors(errs)
    );
}

#[test]
fn missing_env_var_is_reported_at_its_value() {
    let (_d, res) = Files::valid().load_env(&[]);
    let errs = res.unwrap_err().0;
    Files::valid().find(&errs, "gateway.toml", "${GW_T}", "GW_T is not set");

    let f = Files::valid().edit(
        "registry.toml",
        "phone = \"+8613800000002\"",
        "phone = \"${PHONE_A}\"",
    );
    f.expect("registry.toml", "${PHONE_A}", "PHONE_A is not set");
}

#[test]
fn env_values_cannot_break_toml_and_keep_positions() {
    // A value with quotes, backslash and newline; a multi-line literal before a later error.
    let f = Files::valid()
        .edit(
            "registry.toml",
            "name = \"A\"\nphone",
            "name = \"\"\"${NAME}\n\"\"\"\nphone",
        )
        .edit(
            "registry.toml",
            "name = \"119\"",
            "name = \"${NAME}\"\nbogus = 1",
        );
    let (_d, res) = f.load_env(&[("GW_T", "x"), ("NAME", "a\"b\\c\nd = 1")]);
    let errs = res.unwrap_err().0;
    let e = f.find(&errs, "registry.toml", "bogus", "unknown field `bogus`");
    assert_eq!(e.column, Some(1));
    let f = f.edit("registry.toml", "\nbogus = 1", "");
    let (_d, res) = f.load_env(&[("GW_T", "x"), ("NAME", "a\"b\\c\nd = 1")]);
    let cfg = res.unwrap();
    // The multi-line literal keeps its own trailing newline.
    assert_eq!(cfg.contact("c-a").unwrap().name, "a\"b\\c\nd = 1\n");
    assert_eq!(cfg.contact("c-119").unwrap().name, "a\"b\\c\nd = 1");
}

#[test]
fn base_standards_violations() {
    let base = Files::valid();
    let cases = [
        ("alarm = 300", "alarm = 1200", "GB 14287.2"),
        ("alarm = 300", "alarm = 10", "GB 14287.2"),
        (
            "for = \"5s\"",
            "for = \"30s\"",
            "GB 14287 requires an alarm within 30 s",
        ),
        ("alarm = 70", "alarm = 150", "GB 14287.4"),
        ("mqtt = \"5m\"", "mqtt = \"26h\"", "over 25 h"),
        (
            "clear = 250",
            "clear = 300",
            "clear 300 must be below alarm 300",
        ),
        (
            "warning = 60",
            "warning = 80",
            "warning 80 must be at or below alarm 70",
        ),
    ];
    for (from, to, msg) in cases {
        base.clone()
            .edit("rules.toml", from, to)
            .expect("rules.toml", to, msg);
    }
    // allow_nonstandard is not a key of the base tables.
    base.edit(
        "rules.toml",
        "alarm = 300",
        "alarm = 1200\nallow_nonstandard = true",
    )
    .expect("rules.toml", "allow_nonstandard", "unknown field");
}

#[test]
fn override_standards_need_allow_and_reason() {
    let base = Files::valid();
    let bad = [
        (
            "residual_current = { alarm = 400, clear = 350 }",
            "residual_current = { alarm = 1200, clear = 350 }",
            "GB 14287.2",
        ),
        (
            "residual_current = { alarm = 400, clear = 350 }",
            "residual_current = { alarm = 400, clear = 350, for = \"40s\" }",
            "GB 14287 requires",
        ),
        (
            "residual_current = { alarm = 400, clear = 350 }",
            "temperature = { alarm = 150 }",
            "GB 14287.4",
        ),
    ];
    for (from, to, msg) in bad {
        let f = base.clone().edit("rules.toml", from, to);
        let e = f.expect("rules.toml", to, msg);
        assert!(e.message.contains("allow_nonstandard = true"), "{e}");

        let f2 = f
            .clone()
            .edit("rules.toml", to, &format!("{to}\nallow_nonstandard = true"));
        f2.expect("rules.toml", to, msg);
        let f3 = f.clone().edit(
            "rules.toml",
            to,
            &format!("{to}\nallow_nonstandard = true\nreason = \"  \""),
        );
        f3.expect("rules.toml", to, msg);

        let ok = f.edit(
            "rules.toml",
            to,
            &format!("{to}\nallow_nonstandard = true\nreason = \"rewiring\""),
        );
        let cfg = ok.load().unwrap_or_else(|e| panic!("{e}"));
        assert!(cfg
            .warnings
            .iter()
            .any(|w| w.message.contains("nonstandard setting allowed") && w.message.contains(msg)));
    }
    // Hysteresis is never allowed, and is judged on the merged values.
    let f = base.edit(
        "rules.toml",
        "residual_current = { alarm = 400, clear = 350 }",
        "residual_current = { alarm = 240 }\nallow_nonstandard = true\nreason = \"x\"",
    );
    f.expect(
        "rules.toml",
        "alarm = 240",
        "clear 250 must be below alarm 240",
    );
}

#[test]
fn mqtt_embedded_false_needs_external() {
    let f = Files::valid().edit("gateway.toml", "[mqtt]\n", "[mqtt]\nembedded = false\n");
    f.expect("gateway.toml", "embedded = false", "needs `external");
    let ok = Files::valid().edit(
        "gateway.toml",
        "[mqtt]\n",
        "[mqtt]\nembedded = false\nexternal = \"mqtt://127.0.0.1:1883\"\n",
    );
    assert!(ok.load().is_ok());
}

#[test]
fn gateway_value_checks() {
    let base = Files::valid();
    let cases = [
        ("id = \"t-site\"", "id = \"T Site\"", "site id"),
        (
            "listen = \"127.0.0.1:8080\"",
            "listen = \"localhost\"",
            "not a socket address",
        ),
        (
            "listen = \"127.0.0.1:1883\"",
            "listen = \"1883\"",
            "not a socket address",
        ),
        (
            "[http]\n",
            "[http]\npublic_url = \"ftp://x\"\n",
            "public_url",
        ),
    ];
    for (from, to, msg) in cases {
        let f = base.clone().edit("gateway.toml", from, to);
        f.expect("gateway.toml", to.lines().last().unwrap(), msg);
    }
}

#[test]
fn missing_named_file_points_at_gateway_line() {
    let f = Files::valid().edit(
        "gateway.toml",
        "rules = \"rules.toml\"",
        "rules = \"rulez.toml\"",
    );
    f.expect("gateway.toml", "rulez", "cannot read rules file");
}

#[test]
fn routing_checks() {
    let f = Files::valid().edit("routing.toml", "family = [\"console\"]\n", "");
    f.expect(
        "routing.toml",
        "notify =",
        "role family in notify of route #1 has no channels",
    );
    let f = Files::valid().edit("routing.toml", "kinds = [\"smoke\"]", "kinds = []");
    f.expect("routing.toml", "kinds = []", "empty kinds");
    let f = Files::valid().edit(
        "routing.toml",
        "notify = [\"grid_worker\", \"director\", \"fire_brigade\", \"family\"]",
        "notify = []",
    );
    f.expect("routing.toml", "notify = []", "empty notify");

    let warn = Files::valid().edit(
        "routing.toml",
        "grid_worker = [\"console\"]",
        "grid_worker = [\"sms\", \"console\"]",
    );
    let cfg = warn.load().unwrap();
    let w = &cfg.warnings[0];
    assert_eq!(
        w.line,
        Some(warn.line_of("routing.toml", "grid_worker = [\"sms\""))
    );
    assert!(w.message.contains("sms not configured"), "{w}");
}

#[test]
fn secrets_in_clear_warn() {
    let f = Files::valid()
        .edit("gateway.toml", "token = \"${GW_T}\"", "token = \"plain\"")
        .edit(
            "gateway.toml",
            "[channels.console]",
            "[upstream]\nurl = \"mqtt://gw:hunter2@127.0.0.1:1884\"\n\n[channels.console]",
        );
    let cfg = f.load().unwrap();
    let lines: Vec<_> = cfg
        .warnings
        .iter()
        .filter(|w| w.message.contains("secret written in clear"))
        .map(|w| w.line)
        .collect();
    assert_eq!(
        lines,
        vec![
            Some(f.line_of("gateway.toml", "token = \"plain\"")),
            Some(f.line_of("gateway.toml", "hunter2"))
        ]
    );
    let f = Files::valid().edit(
        "gateway.toml",
        "[channels.console]",
        "[upstream]\nurl = \"mqtt://gw:${UP}@127.0.0.1:1884\"\n\n[channels.console]",
    );
    let (_d, res) = f.load_env(&[("GW_T", "x"), ("UP", "p")]);
    assert!(res.unwrap().warnings.is_empty());
}

#[test]
fn device_checks() {
    let base = Files::valid();
    let cases = [
        (
            "profile = \"generic-rcm\"",
            "profile = \"acrel\"",
            "unknown modbus profile \"acrel\"",
        ),
        (
            "endpoint = \"tcp://127.0.0.1:5020\"",
            "endpoint = \"udp://x\"",
            "tcp:// or rtu://",
        ),
        ("id = \"d1\"", "id = \"d 1/x\"", "device id"),
    ];
    for (from, to, msg) in cases {
        base.clone()
            .edit("registry.toml", from, to)
            .expect("registry.toml", to, msg);
    }
    let long = format!("id = \"{}\"", "d".repeat(65));
    let f = base.clone().edit("registry.toml", "id = \"d1\"", &long);
    f.expect("registry.toml", &long, "1 to 64");
    let f = base.edit("registry.toml", "phone = \"+8613800000002\"", "");
    let cfg = f.load().unwrap();
    assert!(cfg
        .warnings
        .iter()
        .any(|w| w.message.contains("contact \"c-a\" has no phone")));
}

#[test]
fn errors_in_all_files_come_together_sorted() {
    let f = Files::valid()
        .edit("gateway.toml", "id = \"t-site\"", "id = \"T!\"")
        .edit(
            "registry.toml",
            "grid = \"g1\"\nresidents",
            "grid = \"g2\"\nresidents",
        )
        .edit(
            "registry.toml",
            "household = \"h1\"\n\n[[devices]]",
            "household = \"h3\"\n\n[[devices]]",
        )
        .edit("rules.toml", "for = \"5s\"", "for = \"1m\"")
        .edit("routing.toml", "kinds = [\"smoke\"]", "kinds = [\"smok\"]");
    let errs = f.errors();
    f.find(&errs, "gateway.toml", "id = \"T!\"", "site id");
    f.find(&errs, "registry.toml", "grid = \"g2\"", "unknown grid");
    f.find(
        &errs,
        "registry.toml",
        "household = \"h3\"",
        "unknown household",
    );
    f.find(&errs, "rules.toml", "for = \"1m\"", "GB 14287");
    f.find(&errs, "routing.toml", "smok", "unknown variant");
    let keys: Vec<_> = errs.iter().map(|e| (e.file.clone(), e.line)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(errs.len(), 5, "{}", ConfigErrors(errs.clone()));
}

#[test]
fn other_files_checked_when_gateway_has_a_typo() {
    let f = Files::valid()
        .edit("gateway.toml", "[site]", "typo = 1\n[site]")
        .edit("rules.toml", "alarm = 70", "alarm = 150");
    let errs = f.errors();
    f.find(&errs, "gateway.toml", "typo", "unknown field");
    f.find(&errs, "rules.toml", "alarm = 150", "GB 14287.4");
}

#[test]
fn display_format() {
    let e = ConfigError {
        file: "config/registry.toml".into(),
        line: Some(12),
        column: Some(1),
        message: "unknown grid \"g99\" for household \"h-3-2-501\"".into(),
    };
    assert_eq!(
        e.to_string(),
        "config/registry.toml:12:1: unknown grid \"g99\" for household \"h-3-2-501\""
    );
    let no_pos = ConfigError {
        line: None,
        column: None,
        ..e.clone()
    };
    assert_eq!(
        no_pos.to_string(),
        "config/registry.toml: unknown grid \"g99\" for household \"h-3-2-501\""
    );
    assert_eq!(
        ConfigErrors(vec![e.clone(), no_pos])
            .to_string()
            .lines()
            .count(),
        2
    );
}

#[test]
fn token_forms_are_exclusive_and_hashes_checked() {
    let sha = crate::security::password::sha256_hex(b"t");
    let hashed = Files::valid().edit(
        "gateway.toml",
        r#"token = "${GW_T}""#,
        &format!(r#"token_sha256 = "{sha}""#),
    );
    let cfg = hashed.load().unwrap();
    assert_eq!(
        cfg.gateway.http.tokens[0].token_sha256.as_deref(),
        Some(sha.as_str())
    );
    assert!(cfg.warnings.is_empty(), "a digest is not a secret in clear");
    Files::valid()
        .edit(
            "gateway.toml",
            r#"token = "${GW_T}""#,
            r#"token_sha256 = "abc""#,
        )
        .expect("gateway.toml", "token_sha256", "64 hex digits");
    Files::valid()
        .edit(
            "gateway.toml",
            r#"token = "${GW_T}""#,
            &format!("token = \"${{GW_T}}\"\ntoken_sha256 = \"{sha}\""),
        )
        .expect("gateway.toml", "[[http.tokens]]", "exactly one of");
    Files::valid()
        .edit(
            "gateway.toml",
            r#"token = "${GW_T}""#,
            r#"token_file = "missing.token""#,
        )
        .expect("gateway.toml", "token_file", "cannot read secret file");
}

#[test]
fn mqtt_users_need_argon2_hashes_and_tls_needs_files() {
    let hash = crate::security::password::hash_password("pw").unwrap();
    let ok = Files::valid().edit(
        "gateway.toml",
        "listen = \"127.0.0.1:1883\"\n",
        &format!("listen = \"127.0.0.1:1883\"\n[[mqtt.users]]\nusername = \"d1\"\npassword_hash = \"{hash}\"\ndevices = [\"d*\"]\n"),
    );
    let cfg = ok.load().unwrap();
    assert!(cfg.gateway.mqtt.users[0].covers("d1") && !cfg.gateway.mqtt.users[0].covers("rcm1"));
    Files::valid()
        .edit(
            "gateway.toml",
            "listen = \"127.0.0.1:1883\"\n",
            "listen = \"127.0.0.1:1883\"\n[[mqtt.users]]\nusername = \"d1\"\npassword_hash = \"hunter2\"\n",
        )
        .expect("gateway.toml", "hunter2", "not an argon2 PHC string");
    Files::valid()
        .edit(
            "gateway.toml",
            "listen = \"127.0.0.1:1883\"\n",
            "listen = \"127.0.0.1:1883\"\n[mqtt.tls]\nlisten = \"127.0.0.1:8883\"\ncert = \"nope.crt\"\nkey = \"nope.key\"\n",
        )
        .expect("gateway.toml", "nope.crt", "not found");
}

#[test]
fn broker_buffer_defaults_to_16_mib_and_refuses_zero() {
    let cfg = Files::valid().load().unwrap();
    assert_eq!(cfg.gateway.mqtt.broker_buffer_mib, 4);
    let small = Files::valid()
        .edit(
            "gateway.toml",
            "listen = \"127.0.0.1:1883\"",
            "listen = \"127.0.0.1:1883\"\nbroker_buffer_mib = 2",
        )
        .load()
        .unwrap();
    assert_eq!(small.gateway.mqtt.broker_buffer_mib, 2);
    Files::valid()
        .edit(
            "gateway.toml",
            "listen = \"127.0.0.1:1883\"",
            "listen = \"127.0.0.1:1883\"\nbroker_buffer_mib = 0",
        )
        .expect("gateway.toml", "broker_buffer_mib = 0", "outside 1..=1024");
}

#[test]
fn listen_v5_must_be_a_free_address_of_the_embedded_broker() {
    let ok = Files::valid()
        .edit(
            "gateway.toml",
            "listen = \"127.0.0.1:1883\"",
            "listen = \"127.0.0.1:1883\"\nlisten_v5 = \"127.0.0.1:1884\"",
        )
        .load()
        .unwrap();
    assert_eq!(ok.gateway.mqtt.listen_v5.as_deref(), Some("127.0.0.1:1884"));
    assert_eq!(Files::valid().load().unwrap().gateway.mqtt.listen_v5, None);
    for (bad, msg) in [
        ("listen_v5 = \"1884\"", "not a socket address"),
        ("listen_v5 = \"127.0.0.1:1883\"", "must differ"),
    ] {
        Files::valid()
            .edit(
                "gateway.toml",
                "listen = \"127.0.0.1:1883\"",
                &format!("listen = \"127.0.0.1:1883\"\n{bad}"),
            )
            .expect("gateway.toml", bad, msg);
    }
    Files::valid()
        .edit(
            "gateway.toml",
            "listen = \"127.0.0.1:1883\"",
            "embedded = false\nexternal = \"mqtt://127.0.0.1:1883\"\nlisten_v5 = \"127.0.0.1:1884\"",
        )
        .expect("gateway.toml", "listen_v5", "needs embedded = true");
}

#[test]
fn the_canary_defaults_to_10s_within_5s_and_refuses_nonsense() {
    let cfg = Files::valid().load().unwrap();
    assert_eq!(cfg.gateway.selfwatch.canary.std().as_secs(), 10);
    assert_eq!(cfg.gateway.selfwatch.canary_timeout.std().as_secs(), 5);
    let selfwatch = |body: &str| {
        Files::valid().edit(
            "gateway.toml",
            "[http]\n",
            &format!("[selfwatch]\n{body}\n\n[http]\n"),
        )
    };
    let off = selfwatch("canary = \"0s\"").load().unwrap();
    assert!(
        off.gateway.selfwatch.canary.std().is_zero(),
        "0s turns it off"
    );
    selfwatch("canary = \"500ms\"\ncanary_timeout = \"200ms\"").expect(
        "gateway.toml",
        "canary = \"500ms\"",
        "at least 1s",
    );
    selfwatch("canary = \"2s\"").expect("gateway.toml", "[selfwatch]", "at most canary");
    selfwatch("canary_timeout = \"50ms\"").expect(
        "gateway.toml",
        "canary_timeout",
        "at least 100ms",
    );
    selfwatch("canary = 10").expect("gateway.toml", "canary = 10", "");
}

#[test]
fn plan_must_draw_every_building_households_name_and_hold_no_script() {
    const SVG: &str = r#"<svg xmlns="http://www.w3.org/2000/svg"><rect id="building-1"/></svg>"#;
    let with_plan = Files::valid()
        .edit(
            "gateway.toml",
            "name = \"Test\"",
            "name = \"Test\"\nplan = \"plan.svg\"",
        )
        .edit(
            "registry.toml",
            "address = \"1\"",
            "address = \"1\"\nbuilding = \"1\"",
        );
    let cfg = with_plan.clone().with_file("plan.svg", SVG).load().unwrap();
    assert_eq!(cfg.gateway.site.plan_svg.as_deref(), Some(SVG));
    assert_eq!(cfg.household("h1").unwrap().building.as_deref(), Some("1"));

    with_plan
        .clone()
        .expect("gateway.toml", "plan = ", "cannot read plan");
    with_plan
        .clone()
        .with_file("plan.svg", "<svg><script>alert(1)</script></svg>")
        .expect("gateway.toml", "plan = ", "without scripts");
    with_plan
        .clone()
        .with_file("plan.svg", "<html></html>")
        .expect("gateway.toml", "plan = ", "not an SVG");
    with_plan
        .edit("registry.toml", "building = \"1\"", "building = \"9\"")
        .with_file("plan.svg", SVG)
        .expect(
            "registry.toml",
            "building = \"9\"",
            "building \"9\" of household \"h1\" is not on the plan",
        );
    // Without a plan, buildings are just names the board lists.
    Files::valid()
        .edit(
            "registry.toml",
            "address = \"1\"",
            "address = \"1\"\nbuilding = \"1\"",
        )
        .load()
        .unwrap();
}

const GB26875: &str = "[gb26875]\ncentre = \"tcp://127.0.0.1:9900\"\naddress = 889\ncentre_address = 88888\n\n[channels.console]";

#[test]
fn gb26875_link_and_component_overrides_load_typed() {
    let f = Files::valid()
        .edit("gateway.toml", "[channels.console]", GB26875)
        .edit(
            "registry.toml",
            "id = \"rcm1\"",
            "id = \"rcm1\"\ngb26875 = { component_type = 16, component_address = \"10-2\" }",
        );
    let cfg = f.load().unwrap();
    let g = cfg.gateway.gb26875.as_ref().unwrap();
    assert_eq!((g.centre.host.as_str(), g.centre.port), ("127.0.0.1", 9900));
    assert_eq!((g.address, g.centre_address, g.retries), (889, 88888, 3));
    assert_eq!(g.timeout.std(), std::time::Duration::from_secs(10));
    let table = super::gb26875::mapping::Table::build(&cfg.registry);
    let row = table.device("rcm1").unwrap();
    assert_eq!(row.component_type, 16);
    assert_eq!((row.address.zone, row.address.position), (10, 2));
}

#[test]
fn gb26875_bad_values_are_errors_at_their_line() {
    let base = Files::valid().edit("gateway.toml", "[channels.console]", GB26875);
    for (from, to, msg) in [
        (
            "tcp://127.0.0.1:9900",
            "http://127.0.0.1:9900",
            "must be tcp://host:port",
        ),
        ("tcp://127.0.0.1:9900", "tcp://127.0.0.1", "has no port"),
        ("address = 889", "address = 281474976710656", "six bytes"),
        (
            "centre_address = 88888",
            "centre_address = 889",
            "own address",
        ),
        (
            "centre_address = 88888",
            "centre_address = 88888\ntimeout = \"30s\"",
            "at most 10 s",
        ),
        (
            "centre_address = 88888",
            "centre_address = 88888\nretries = 50",
            "retries = 50",
        ),
    ] {
        let f = base.clone().edit("gateway.toml", from, to);
        let needle = to.lines().last().unwrap_or(to);
        f.expect("gateway.toml", needle, msg);
    }
    let dup = base.clone().edit(
        "registry.toml",
        "id = \"rcm1\"",
        "id = \"rcm1\"\ngb26875 = { component_address = \"1-1\" }",
    );
    dup.expect(
        "registry.toml",
        "component_address = \"1-1\"",
        "same GB/T 26875 component",
    );
    let bad = base.edit(
        "registry.toml",
        "id = \"rcm1\"",
        "id = \"rcm1\"\ngb26875 = { component_address = \"ten-2\" }",
    );
    bad.expect("registry.toml", "ten-2", "zone-position");
}

#[test]
fn household_devices_lists_each_homes_devices_in_registry_order() {
    let cfg = Files::valid()
        .edit(
            "registry.toml",
            "[[contacts]]\nid = \"c-a\"",
            "[[devices]]\nid = \"d2\"\nkind = \"smoke\"\nhousehold = \"h2\"\n\n\
             [[devices]]\nid = \"d3\"\nkind = \"smoke\"\nhousehold = \"h1\"\n\n\
             [[contacts]]\nid = \"c-a\"",
        )
        .load()
        .unwrap();
    let ids = |h: &str| -> Vec<String> { cfg.household_devices(h).map(|d| d.id.clone()).collect() };
    assert_eq!(ids("h1"), ["d1", "rcm1", "d3"]);
    assert_eq!(ids("h2"), ["d2"]);
    assert!(ids("nowhere").is_empty());
}

#[test]
fn a_flush_wait_outside_10ms_to_10s_is_refused_at_its_line() {
    for bad in ["5ms", "11s"] {
        let f = Files::valid().edit(
            "gateway.toml",
            "[mqtt]",
            &format!("[storage]\nflush_wait = \"{bad}\"\n\n[mqtt]"),
        );
        f.expect("gateway.toml", "flush_wait", "between 10ms and 10s");
    }
    let ok = Files::valid().edit(
        "gateway.toml",
        "[mqtt]",
        "[storage]\nflush_wait = \"1s\"\n\n[mqtt]",
    );
    assert_eq!(
        ok.load().unwrap().gateway.storage.flush_wait.std(),
        std::time::Duration::from_secs(1)
    );
}
