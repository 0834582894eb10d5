//! Modbus profile files through `Config::load`: the shipped vendor profiles
//! load and decode as documented, and broken profile files are refused with
//! file and line.

use gridwatch::config::{Config, BUILTIN_PROFILE};
use gridwatch::ingest::modbus::plan::{BlockData, ReadPlan};
use gridwatch::model::{Flag, Metric};
use std::path::{Path, PathBuf};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gateway.toml")
}

#[test]
fn shipped_vendor_profiles_load_and_decode_as_documented() {
    let cfg = Config::load(&shipped()).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = cfg.profiles.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["acrel-asj", BUILTIN_PROFILE, "schneider-vigirex-rhu"]
    );

    // Acrel ASJ: residual current at 0x0000, status word at 0x001B, bit 2 = break → fault.
    let plan = ReadPlan::new(&cfg.profiles["acrel-asj"], 0).unwrap();
    let spans: Vec<(u16, u16)> = plan.blocks.iter().map(|b| (b.start, b.count)).collect();
    assert_eq!(spans, [(0x00, 1), (0x1B, 1)], "far apart: two short reads");
    let read = |status: u16| {
        plan.decode(&[BlockData::Words(vec![320]), BlockData::Words(vec![status])])
            .unwrap()
    };
    let (v, f) = read(0b011); // warning + alarm, no break
    assert_eq!(v.get(Metric::ResidualCurrentMa), Some(320.0));
    assert!(!f.has(Flag::Fault));
    assert!(read(0b100).1.has(Flag::Fault), "bit 2 = break = fault");

    // Vigirex RHU: register 401 (1-based) is address 400.
    let plan = ReadPlan::new(&cfg.profiles["schneider-vigirex-rhu"], 0).unwrap();
    assert_eq!((plan.blocks[0].start, plan.blocks[0].count), (400, 1));
    let (v, _) = plan.decode(&[BlockData::Words(vec![35])]).unwrap();
    assert_eq!(v.get(Metric::ResidualCurrentMa), Some(35.0));
}

/// A copy of the shipped config in a temp dir with the given profile files and
/// the rcm device of 3幢2单元 moved to Modbus with `profile`.
fn with_profiles(files: &[(&str, &str)], profile: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let src = shipped().parent().unwrap().to_path_buf();
    for f in ["rules.toml", "routing.toml", "plan.svg"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let reg = std::fs::read_to_string(src.join("registry.toml")).unwrap();
    let reg = reg.replacen(
        "transport = \"mqtt\"                   # an MQTT-connected monitor",
        &format!("transport = {{ modbus = {{ endpoint = \"tcp://127.0.0.1:5020\", unit = 1, profile = \"{profile}\" }} }} #"),
        1,
    );
    assert!(reg.contains(profile), "registry edit did not apply");
    std::fs::write(dir.path().join("registry.toml"), reg).unwrap();
    let gw = std::fs::read_to_string(src.join("gateway.toml")).unwrap();
    let list: Vec<String> = files.iter().map(|(n, _)| format!("{n:?}")).collect();
    let start = gw.find("profiles = [").unwrap();
    let end = start + gw[start..].find('\n').unwrap();
    let gw = format!(
        "{}profiles = [{}]{}",
        &gw[..start],
        list.join(", "),
        &gw[end..]
    );
    std::fs::write(dir.path().join("gateway.toml"), gw).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let path = dir.path().join("gateway.toml");
    (dir, path)
}

fn errors(path: &Path) -> Vec<String> {
    match Config::load(path) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn a_device_may_use_a_profile_from_a_file() {
    let text = "[profiles.my-rcm]\nregisters = [{ metric = \"residual_current_ma\", table = \"input\", address = 7 }]\n";
    let (_d, path) = with_profiles(&[("p.toml", text)], "my-rcm");
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.profiles.contains_key("my-rcm"));
}

#[test]
fn profile_errors_name_file_and_line() {
    let bad = "[profiles.p]\nregisters = [\n  { metric = \"residual_current_ma\", table = \"input\", address = 0 },\n  { metric = \"temperature_c\", table = \"coil\", address = 1 },\n]\n";
    let (_d, path) = with_profiles(&[("bad.toml", bad)], "p");
    let errs = errors(&path);
    assert!(
        errs.iter()
            .any(|e| e.contains("bad.toml:4:") && e.contains("\"input\" or \"holding\"")),
        "{errs:#?}"
    );

    let typo = "[profiles.p]\nregisters = [\n  { metric = \"residual_current_ma\", tabel = \"input\", address = 0 },\n]\n";
    let (_d, path) = with_profiles(&[("typo.toml", typo)], "p");
    let errs = errors(&path);
    assert!(
        errs.iter()
            .any(|e| e.contains("typo.toml:3:") && e.contains("tabel")),
        "{errs:#?}"
    );

    let builtin = "[profiles.generic-rcm]\nregisters = [{ metric = \"residual_current_ma\", table = \"input\", address = 0 }]\n";
    let (_d, path) = with_profiles(&[("b.toml", builtin)], BUILTIN_PROFILE);
    let errs = errors(&path);
    assert!(
        errs.iter()
            .any(|e| e.contains("b.toml:1:") && e.contains("built in")),
        "{errs:#?}"
    );

    let one = "[profiles.dup]\nregisters = [{ metric = \"residual_current_ma\", table = \"input\", address = 0 }]\n";
    let (_d, path) = with_profiles(&[("one.toml", one), ("two.toml", one)], "dup");
    let errs = errors(&path);
    assert!(
        errs.iter()
            .any(|e| e.contains("two.toml:1:") && e.contains("defined twice")),
        "{errs:#?}"
    );

    let (_d, path) = with_profiles(&[("one.toml", one)], "nope");
    let errs = errors(&path);
    assert!(
        errs.iter().any(|e| e.contains("registry.toml:")
            && e.contains("unknown modbus profile \"nope\"")
            && e.contains("dup")),
        "{errs:#?}"
    );

    let (_d, path) = with_profiles(&[], "generic-rcm");
    let gw = path.to_string_lossy().to_string();
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "profiles = []",
        "profiles = [\"missing.toml\"]",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let errs = errors(&path);
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&format!("{gw}:")) && e.contains("cannot read profile file")),
        "{errs:#?}"
    );
}
