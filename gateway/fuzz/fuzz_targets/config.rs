//! The config loader on arbitrary text: the input is split on NUL into
//! gateway.toml, registry.toml (the ledger), rules.toml and routing.toml in
//! a temp dir, then loaded. It must answer Ok or file:line errors, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir")).path()
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let d = dir();
    for name in ["gateway.toml", "registry.toml", "rules.toml", "routing.toml"] {
        let part = parts.next().unwrap_or_default();
        std::fs::write(d.join(name), part).expect("write fuzz input");
    }
    let env = |name: &str| (name == "SET").then(|| "value".to_string());
    let _ = gridwatch::config::Config::load_with_env(&d.join("gateway.toml"), &env);
});
