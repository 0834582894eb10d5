//! The ledger import against good and bad files, CSV and XLSX, with the
//! shipped configuration as the target.

use super::parse::{self, phone, Context, RowError, Sheet};
use super::source;
use super::*;
use crate::config::Config;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn template(ext: &str) -> PathBuf {
    repo().join(format!("config/ledger-template.{ext}"))
}

/// The Modbus profile files the shipped gateway.toml names.
fn copy_profiles(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to.join("profiles")).unwrap();
    for e in std::fs::read_dir(from.join("profiles")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join("profiles").join(p.file_name().unwrap())).unwrap();
    }
}

/// A copy of the shipped config in a temp dir; returns (dir, gateway.toml).
fn shipped_config() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "gateway.toml",
        "registry.toml",
        "rules.toml",
        "routing.toml",
        "plan.svg",
    ] {
        std::fs::copy(repo().join("config").join(f), dir.path().join(f)).unwrap();
    }
    copy_profiles(&repo().join("config"), dir.path());
    let gw = dir.path().join("gateway.toml");
    (dir, gw)
}

fn listing(dir: &Path) -> BTreeSet<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect()
}

fn opts(ledger: PathBuf, config: &Path, dry_run: bool) -> ImportOptions {
    ImportOptions {
        ledger,
        config: config.to_path_buf(),
        dry_run,
        out: None,
    }
}

fn ctx() -> Context {
    Context {
        grids: ["g03", "g05"].iter().map(|s| s.to_string()).collect(),
        webhooks: Some(["fire119".to_string()].into_iter().collect()),
    }
}

fn errors_of(csv: &str) -> Vec<RowError> {
    let sheet = source::csv_sheet(csv).unwrap();
    parse::parse(&sheet, &ctx()).expect_err("the ledger should be refused")
}

fn messages(errors: &[RowError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

/// The homes, residents and devices of a registry, comparable across files.
fn inventory(r: &crate::config::Registry) -> Vec<String> {
    let mut v: Vec<String> = r
        .households
        .iter()
        .map(|h| {
            let residents: Vec<String> = h
                .residents
                .iter()
                .map(|p| format!("{}/{:?}/{}/{:?}", p.name, p.phone, p.lives_alone, p.age))
                .collect();
            format!(
                "home {} {} {} {:?} family={:?} neighbours={:?}",
                h.id, h.address, h.grid, residents, h.family, h.neighbours
            )
        })
        .collect();
    v.extend(r.devices.iter().map(|d| {
        format!(
            "device {} {:?} {} {} {:?}",
            d.id, d.kind, d.household, d.location, d.transport
        )
    }));
    v.extend(r.contacts.iter().map(|c| {
        format!(
            "contact {} {} {:?} {:?} {:?}",
            c.id, c.name, c.phone, c.email, c.webhook
        )
    }));
    v.sort();
    v
}

#[test]
fn the_csv_template_imports_to_the_shipped_registry() {
    let (dir, gw) = shipped_config();
    let before = std::fs::read(dir.path().join("registry.toml")).unwrap();
    let shipped = Config::load(&gw).unwrap();
    let outcome = import(&opts(template("csv"), &gw, false), "2026-11-24T00:00:00Z").unwrap();
    assert_eq!(
        (
            outcome.homes,
            outcome.residents,
            outcome.devices,
            outcome.contacts,
            outcome.kept_contacts
        ),
        (9, 10, 13, 4, 5)
    );
    assert!(outcome.removed_devices.is_empty() && outcome.removed_homes.is_empty());
    // The result is what check-config loads, and it says the same as the hand-written registry.
    let imported = Config::load(&gw).unwrap();
    assert_eq!(inventory(&imported.registry), inventory(&shipped.registry));
    assert_eq!(imported.summary(), shipped.summary());
    // The previous registry is kept, byte for byte.
    let bak = dir.path().join("registry.toml.bak");
    assert_eq!(outcome.backup.as_deref(), Some(bak.as_path()));
    assert_eq!(std::fs::read(&bak).unwrap(), before);
    // No temp file left behind.
    let names: BTreeSet<String> = listing(dir.path()).into_iter().map(|(n, _)| n).collect();
    let expected: BTreeSet<String> = [
        "gateway.toml",
        "plan.svg",
        "profiles",
        "registry.toml",
        "registry.toml.bak",
        "rules.toml",
        "routing.toml",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(names, expected);
}

#[test]
fn the_xlsx_template_says_what_the_csv_template_says() {
    let csv = source::read(&template("csv")).unwrap();
    let xlsx = source::read(&template("xlsx")).unwrap();
    let a = parse::parse(&csv, &ctx()).unwrap();
    let b = parse::parse(&xlsx, &ctx()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.homes.len(), 9);
    // Same row numbers too: an error in either names the same row.
    let rows = |s: &Sheet| -> Vec<usize> { s.rows.iter().map(|r| r.number).collect() };
    assert_eq!(rows(&csv), rows(&xlsx));
}

#[test]
fn the_xlsx_template_imports_and_passes_check_config() {
    let (_dir, gw) = shipped_config();
    let shipped = Config::load(&gw).unwrap();
    import(&opts(template("xlsx"), &gw, false), "now").unwrap();
    let imported = Config::load(&gw).unwrap();
    assert_eq!(inventory(&imported.registry), inventory(&shipped.registry));
}

const BAD_CSV: &str = "\
type,id,home,name,address,grid,phone,email,lives_alone,age,neighbours,kind,location,transport,modbus_endpoint,modbus_unit
home,h1,,,1幢101室,g03,,,,,h2,,,,,
home,h2,,,1幢102室,g09,,,,,,,,,,
home,h1,,,1幢103室,g03,,,,,,,,,,
resident,,h1,张三,,,1380000,,,,,,,,,
resident,,h1,,,,13800000001,,maybe,200,,,,,,
device,d-1,h1,,,,,,,,,smoke,厨房,mqtt,,
device,d-1,h1,,,,,,,,,smoke,卧室,mqtt,,
device,d-2,h1,,,,,,,,,gas,厨房,mqtt,,
device,d-3,h9,,,,,,,,,smoke,厨房,mqtt,,
device,d 4,h1,,,,,,,,,smoke,,modbus,192.168.1.5:502,300
contact,c-1,h1,王五,,,,,,,,,,,,
contact,c-2,h1,赵六,,,13800000002,a@b,,,,,,,,
gadget,x,,,,,,,,,,,,,,
contact,c-3,h1,钱七,,,13800000003,,,,,smoke,,,,
";

#[test]
fn every_bad_row_is_reported_with_its_row_number() {
    let got = messages(&errors_of(BAD_CSV));
    let want = [
        r#"row 3: unknown grid "g09" (registry.toml has: g03, g05; grids are defined there)"#,
        r#"row 4: duplicate home id "h1" (first on row 2)"#,
        r#"row 5: bad phone "1380000": expected a mobile like 13800000001 or +8613800000001, or a landline like 0571-87654321"#,
        "row 6: missing required cell 姓名/name for a resident row",
        r#"row 6: 独居/lives_alone must be yes/no (是/否), not "maybe""#,
        r#"row 6: 年龄/age must be a whole number of years, not "200""#,
        r#"row 8: duplicate device id "d-1" (first on row 7)"#,
        r#"row 9: unknown device kind "gas" (smoke|residual_current|temperature|combo, 烟感|剩余电流|温度|组合)"#,
        r#"row 10: unknown home "h9" in 住户/home (no home row has this id)"#,
        r#"row 11: device id "d 4" must be 1 to 64 characters of A-Z a-z 0-9 . _ -"#,
        r#"row 11: modbus endpoint "192.168.1.5:502" must start with tcp:// or rtu://"#,
        r#"row 11: modbus unit "300" must be a number from 1 to 247"#,
        "row 12: contact needs a 电话/phone, 邮箱/email or 机器人/webhook: nobody could reach them",
        r#"row 13: bad email "a@b""#,
        r#"row 14: unknown row type "gadget" (home|resident|device|contact, 住户|居民|设备|联系人)"#,
        "row 15: column 设备类型/kind does not apply to a contact row (see docs/ledger.md)",
    ];
    assert_eq!(got, want);
}

#[test]
fn a_bad_ledger_writes_nothing() {
    let (dir, gw) = shipped_config();
    let ledger_dir = tempfile::tempdir().unwrap();
    let bad = ledger_dir.path().join("bad.csv");
    std::fs::write(&bad, BAD_CSV).unwrap();
    let before = listing(dir.path());
    let err = import(&opts(bad, &gw, false), "now").unwrap_err();
    match &err {
        ImportError::Rows { errors, .. } => assert_eq!(errors.len(), 16),
        other => panic!("expected row errors, got {other}"),
    }
    assert!(
        err.to_string().contains("bad.csv: row 3: unknown grid"),
        "{err}"
    );
    assert_eq!(listing(dir.path()), before);
}

#[test]
fn dry_run_checks_everything_and_writes_nothing() {
    let (dir, gw) = shipped_config();
    let before = listing(dir.path());
    let outcome = import(&opts(template("xlsx"), &gw, true), "now").unwrap();
    assert!(outcome.dry_run && outcome.backup.is_none());
    assert_eq!(outcome.devices, 13);
    assert_eq!(listing(dir.path()), before);
}

#[test]
fn a_result_that_fails_check_config_is_not_written() {
    // rules.toml overrides rcm-3-2-db; a ledger without it breaks the rules.
    let (dir, gw) = shipped_config();
    let text = std::fs::read_to_string(template("csv")).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.contains("rcm-3-2-db"))
        .map(|l| format!("{l}\n"))
        .collect();
    let ledger = dir.path().join("ledger.csv");
    std::fs::write(&ledger, without).unwrap();
    let before = listing(dir.path());
    let err = import(&opts(ledger, &gw, false), "now").unwrap_err();
    let ImportError::Check(lines) = &err else {
        panic!("expected a check failure, got {err}");
    };
    assert!(
        lines
            .iter()
            .any(|l| l.contains("rules.toml") && l.contains("rcm-3-2-db")),
        "{lines:?}"
    );
    assert_eq!(listing(dir.path()), before);
}

/// Writes rows to an XLSX sheet named 台账, with some cells as numbers the way Excel stores them.
fn xlsx(path: &Path, rows: &[&[&str]]) {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name("台账").unwrap();
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            let (r, c) = (r as u32, c as u16);
            match cell.parse::<f64>() {
                Ok(n) if !cell.is_empty() => ws.write_number(r, c, n).unwrap(),
                _ => ws.write_string(r, c, *cell).unwrap(),
            };
        }
    }
    wb.save(path).unwrap();
}

#[test]
fn xlsx_with_chinese_headers_reports_duplicate_ids_and_unknown_grids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("台账.xlsx");
    xlsx(
        &path,
        &[
            &[
                "类型",
                "编号",
                "住户",
                "姓名",
                "地址",
                "网格",
                "电话",
                "独居",
                "年龄",
                "设备类型",
                "位置",
            ],
            &["住户", "h-1", "", "", "1幢101室", "g03", "", "", "", "", ""],
            &[
                "居民",
                "",
                "h-1",
                "张奶奶",
                "",
                "",
                "13800000001",
                "是",
                "82",
                "",
                "",
            ],
            &["住户", "h-2", "", "", "1幢102室", "g07", "", "", "", "", ""],
            &[
                "设备", "smk-1", "h-1", "", "", "", "", "", "", "烟感", "厨房",
            ],
            &["住户", "h-1", "", "", "1幢103室", "g03", "", "", "", "", ""],
            &[
                "设备", "smk-1", "h-1", "", "", "", "", "", "", "烟感", "卧室",
            ],
        ],
    );
    let sheet = source::read(&path).unwrap();
    let got = messages(&parse::parse(&sheet, &ctx()).unwrap_err());
    assert_eq!(
        got,
        [
            r#"row 4: unknown grid "g07" (registry.toml has: g03, g05; grids are defined there)"#,
            r#"row 6: duplicate home id "h-1" (first on row 2)"#,
            r#"row 7: duplicate device id "smk-1" (first on row 5)"#,
        ]
    );
}

#[test]
fn xlsx_numbers_become_phones_and_ages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.xlsx");
    xlsx(
        &path,
        &[
            &[
                "类型", "编号", "住户", "姓名", "地址", "网格", "电话", "独居", "年龄",
            ],
            &["住户", "h-1", "", "", "1幢101室", "g03", "", "", ""],
            &[
                "居民",
                "",
                "h-1",
                "张奶奶",
                "",
                "",
                "13800000001",
                "是",
                "82",
            ],
        ],
    );
    let ledger = parse::parse(&source::read(&path).unwrap(), &ctx()).unwrap();
    let r = &ledger.homes[0].residents[0];
    assert_eq!(r.phone.as_deref(), Some("+8613800000001"));
    assert_eq!((r.lives_alone, r.age), (true, Some(82)));
}

#[test]
fn headers_are_english_or_chinese_in_any_order_and_rows_in_any_order() {
    let csv = "Lives Alone,姓名,TYPE,home,id,address,网格,邻居\n\
               yes,李四,resident,h-2,,,,\n\
               ,,home,,h-2,2幢,g05,h-3\n\
               ,,住户,,h-3,3幢,g05,\n";
    let ledger = parse::parse(&source::csv_sheet(csv).unwrap(), &ctx()).unwrap();
    assert_eq!(ledger.homes.len(), 2);
    assert_eq!(ledger.homes[0].residents[0].name, "李四");
    assert!(ledger.homes[0].residents[0].lives_alone);
    assert_eq!(ledger.homes[0].neighbours, ["h-3"]);
}

#[test]
fn unknown_and_missing_columns_are_reported_on_the_header_row() {
    let e = messages(&errors_of("编号,colour\nh1,red\n"));
    assert_eq!(
        e,
        [
            r#"row 1: unknown column "colour" (the columns are described in docs/ledger.md)"#,
            "row 1: no 类型/type column: the header must name it",
        ]
    );
}

#[test]
fn phones_are_normalised_to_e164() {
    for (raw, want) in [
        ("13800000001", "+8613800000001"),
        ("138 0000 0001", "+8613800000001"),
        ("+86 138-0000-0001", "+8613800000001"),
        ("0571-87654321", "+8657187654321"),
        ("+85291234567", "+85291234567"),
    ] {
        assert_eq!(phone(raw).as_deref(), Ok(want), "{raw}");
    }
    for bad in ["1380000", "12800000001", "abc", "+86", "87654321", ""] {
        assert!(phone(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn a_duplicate_is_reported_even_when_the_first_row_is_bad() {
    let e = messages(&errors_of(
        "type,id,address,grid\nhome,h1,x,g99\nhome,h1,y,g03\n",
    ));
    assert_eq!(
        e,
        [
            r#"row 2: unknown grid "g99" (registry.toml has: g03, g05; grids are defined there)"#,
            r#"row 3: duplicate home id "h1" (first on row 2)"#,
        ]
    );
}
