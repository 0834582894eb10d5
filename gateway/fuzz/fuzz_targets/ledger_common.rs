//! Shared by the ledger targets: check a sheet like `gridwatch import` does,
//! and when the ledger is accepted, the registry it would write must load.

use gridwatch::config::Registry;
use gridwatch::ledger::parse::{parse, Context, Sheet};
use gridwatch::ledger::write::registry_toml;

/// Parses the sheet against a registry with grids `g03` and `g05` (the template's) and webhook `fire119`;
/// an accepted ledger must round-trip through the registry TOML it writes.
pub fn check(sheet: &Sheet) {
    let ctx = Context {
        grids: ["g03".to_string(), "g05".to_string()].into(),
        webhooks: Some(["fire119".to_string()].into()),
    };
    if let Ok(ledger) = parse(sheet, &ctx) {
        let text = registry_toml(&Registry::default(), &ledger, "fuzz", "now");
        if let Err(e) = toml::from_str::<Registry>(&text) {
            panic!("an accepted ledger wrote a registry that does not load: {e}\n{text}");
        }
    }
}
