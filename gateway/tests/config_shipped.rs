//! The shipped `config/` through the public API, as `gridwatch check-config` sees it.

use gridwatch::config::Config;
use std::path::Path;

fn shipped() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gateway.toml")
}

#[test]
fn shipped_config_loads_with_the_agreed_ids() {
    let cfg = Config::load(&shipped()).unwrap_or_else(|e| panic!("{e}"));
    for w in &cfg.warnings {
        eprintln!("warning: {w}");
    }
    assert_eq!(cfg.registry.grids.len(), 2);
    assert_eq!(cfg.registry.households.len(), 9);
    assert_eq!(cfg.registry.devices.len(), 13);
    assert_eq!(cfg.registry.contacts.len(), 9);
    let g03 = cfg.grid("g03").unwrap();
    assert_eq!(g03.grid_workers, ["c-wang"]);
    assert_eq!(g03.directors, ["c-li"]);
    assert_eq!(g03.fire_brigade, ["c-xihu-119"]);
    assert_eq!(g03.operators, ["c-chen-ops"]);
    assert_eq!(cfg.grid("g05").unwrap().grid_workers, ["c-zhao"]);
    let h = cfg.household("h-3-2-501").unwrap();
    assert_eq!(h.address, "3幢2单元501室");
    assert_eq!(h.family, ["c-zhang-son"]);
    assert_eq!(h.neighbours, ["h-3-2-502", "h-3-2-401"]);
    assert_eq!(h.residents[0].age, Some(82));
    for id in [
        "smk-3-2-501-k",
        "smk-3-2-501-b",
        "tmp-3-2-501-k",
        "rcm-3-2-db",
        "smk-3-1-101-k",
        "smk-3-1-102-k",
        "smk-3-2-401-k",
        "smk-3-2-502-k",
        "smk-5-1-201-k",
        "smk-5-1-202-k",
        "smk-5-1-301-k",
        "smk-5-2-601-k",
        "rcm-5-1-db",
    ] {
        let d = cfg.device(id).unwrap_or_else(|| panic!("device {id}"));
        assert!(cfg.household(&d.household).is_some());
    }
    assert_eq!(cfg.device("rcm-5-1-db").unwrap().household, "h-5-1-201");
    assert_eq!(cfg.contact("c-xihu-119").unwrap().webhook, None);
    assert!(cfg.data_dir().ends_with("config/data"));
    assert!(cfg.summary().starts_with(
        "site xihu-longjing (龙井苑小区): 2 grids, 9 households, 13 devices, 9 contacts"
    ));
}
