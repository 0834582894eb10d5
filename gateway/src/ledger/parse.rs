//! The ledger layout and its validation, free of I/O: a [`Sheet`] of text
//! cells in, a [`Ledger`] or every problem with its row number out.
//!
//! One table, one row per thing; the `类型`/`type` column says what the row
//! is (home, resident, device, contact) and the other columns are read
//! according to it. docs/ledger.md is the user's description of the layout.

use crate::config::DeviceKind;
use std::collections::{BTreeSet, HashMap};
use std::fmt;

/// One row of the source: its number as a spreadsheet shows it (the header is
/// usually row 1) and its cells as text.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub number: usize,
    pub cells: Vec<String>,
}

/// The source table: the first non-empty row is the header.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sheet {
    pub rows: Vec<Row>,
}

/// A problem with one row (or the header), as the installer will fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Spreadsheet row number.
    pub row: usize,
    /// What is wrong, naming the column and the value.
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {}: {}", self.row, self.message)
    }
}

/// What the ledger is checked against: the grids and webhooks that exist.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Grid ids of the registry.
    pub grids: BTreeSet<String>,
    /// Names of `[channels.webhook.*]`; `None` skips the check.
    pub webhooks: Option<BTreeSet<String>>,
}

/// A home (`[[households]]`) with its residents and family contacts.
#[derive(Debug, Clone, PartialEq)]
pub struct Home {
    pub row: usize,
    pub id: String,
    pub address: String,
    pub grid: String,
    pub neighbours: Vec<String>,
    pub residents: Vec<Resident>,
    /// Contact ids of the residents' children (from contact rows' home column).
    pub family: Vec<String>,
}

/// A resident of a home.
#[derive(Debug, Clone, PartialEq)]
pub struct Resident {
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub lives_alone: bool,
    pub age: Option<u32>,
}

/// How a device is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    Mqtt,
    Modbus {
        endpoint: String,
        unit: u8,
        profile: String,
    },
}

/// A device (`[[devices]]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub id: String,
    pub kind: DeviceKind,
    pub home: String,
    pub location: String,
    pub transport: Transport,
}

/// A contact row is a registry `[[contacts]]` entry.
pub use crate::config::Contact;

/// A whole, valid ledger, in file order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ledger {
    pub homes: Vec<Home>,
    pub devices: Vec<Device>,
    pub contacts: Vec<Contact>,
}

impl Ledger {
    /// Number of residents over all homes.
    pub fn residents(&self) -> usize {
        self.homes.iter().map(|h| h.residents.len()).sum()
    }
}

/// The columns of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Col {
    Type,
    Id,
    Home,
    Name,
    Address,
    Grid,
    Phone,
    Email,
    LivesAlone,
    Age,
    Neighbours,
    Kind,
    Location,
    Transport,
    Endpoint,
    Unit,
    Profile,
    Webhook,
    Note,
}

impl Col {
    /// Every column, in template order.
    pub const ALL: [Col; 19] = [
        Col::Type,
        Col::Id,
        Col::Home,
        Col::Name,
        Col::Address,
        Col::Grid,
        Col::Phone,
        Col::Email,
        Col::LivesAlone,
        Col::Age,
        Col::Neighbours,
        Col::Kind,
        Col::Location,
        Col::Transport,
        Col::Endpoint,
        Col::Unit,
        Col::Profile,
        Col::Webhook,
        Col::Note,
    ];

    /// The English header (first) and its accepted spellings.
    pub fn english(self) -> &'static [&'static str] {
        match self {
            Col::Type => &["type"],
            Col::Id => &["id"],
            Col::Home => &["home", "household"],
            Col::Name => &["name"],
            Col::Address => &["address"],
            Col::Grid => &["grid"],
            Col::Phone => &["phone", "mobile"],
            Col::Email => &["email"],
            Col::LivesAlone => &["lives_alone"],
            Col::Age => &["age"],
            Col::Neighbours => &["neighbours", "neighbors"],
            Col::Kind => &["kind", "device_kind"],
            Col::Location => &["location"],
            Col::Transport => &["transport"],
            Col::Endpoint => &["modbus_endpoint", "endpoint"],
            Col::Unit => &["modbus_unit", "unit"],
            Col::Profile => &["modbus_profile", "profile"],
            Col::Webhook => &["webhook"],
            Col::Note => &["note", "notes", "remark"],
        }
    }

    /// The Chinese header (first) and its accepted spellings.
    pub fn chinese(self) -> &'static [&'static str] {
        match self {
            Col::Type => &["类型", "类别"],
            Col::Id => &["编号"],
            Col::Home => &["住户", "住户编号", "所属住户"],
            Col::Name => &["姓名", "名称"],
            Col::Address => &["地址", "门牌"],
            Col::Grid => &["网格"],
            Col::Phone => &["电话", "手机", "手机号"],
            Col::Email => &["邮箱", "电子邮件"],
            Col::LivesAlone => &["独居"],
            Col::Age => &["年龄"],
            Col::Neighbours => &["邻居"],
            Col::Kind => &["设备类型"],
            Col::Location => &["位置", "安装位置"],
            Col::Transport => &["接入方式"],
            Col::Endpoint => &["modbus地址"],
            Col::Unit => &["从站地址", "从站号"],
            Col::Profile => &["设备型号", "型号配置"],
            Col::Webhook => &["机器人", "群机器人"],
            Col::Note => &["备注"],
        }
    }

    /// `类型/type`: how errors name a column.
    pub fn label(self) -> String {
        format!("{}/{}", self.chinese()[0], self.english()[0])
    }

    fn parse_header(text: &str) -> Option<Col> {
        let key = normalise(text);
        Col::ALL.into_iter().find(|c| {
            c.english()
                .iter()
                .chain(c.chinese())
                .any(|a| normalise(a) == key)
        })
    }
}

/// Lower case, without spaces, underscores, dashes and a UTF-8 BOM.
fn normalise(s: &str) -> String {
    s.trim_start_matches('\u{feff}')
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// What a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Home,
    Resident,
    Device,
    Contact,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        match normalise(s).as_str() {
            "home" | "household" | "住户" => Some(Kind::Home),
            "resident" | "居民" | "住户人员" => Some(Kind::Resident),
            "device" | "设备" => Some(Kind::Device),
            "contact" | "联系人" | "家属" => Some(Kind::Contact),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Home => "home",
            Kind::Resident => "resident",
            Kind::Device => "device",
            Kind::Contact => "contact",
        }
    }

    /// Columns a row of this kind may fill (`type` and `note` always).
    fn columns(self) -> &'static [Col] {
        match self {
            Kind::Home => &[Col::Id, Col::Address, Col::Grid, Col::Neighbours],
            Kind::Resident => &[
                Col::Home,
                Col::Name,
                Col::Phone,
                Col::Email,
                Col::LivesAlone,
                Col::Age,
            ],
            Kind::Device => &[
                Col::Id,
                Col::Home,
                Col::Kind,
                Col::Location,
                Col::Transport,
                Col::Endpoint,
                Col::Unit,
                Col::Profile,
            ],
            Kind::Contact => &[
                Col::Id,
                Col::Home,
                Col::Name,
                Col::Phone,
                Col::Email,
                Col::Webhook,
            ],
        }
    }
}

/// The one Modbus profile built in (docs/contract.md §4).
pub const DEFAULT_PROFILE: &str = "generic-rcm";

/// Parses device kinds in English or Chinese.
pub fn device_kind(s: &str) -> Option<DeviceKind> {
    match normalise(s).as_str() {
        "smoke" | "烟感" | "烟感报警器" | "烟雾" => Some(DeviceKind::Smoke),
        "residualcurrent" | "剩余电流" | "漏电" | "电气火灾" => {
            Some(DeviceKind::ResidualCurrent)
        }
        "temperature" | "温度" | "测温" => Some(DeviceKind::Temperature),
        "combo" | "组合" | "复合" => Some(DeviceKind::Combo),
        _ => None,
    }
}

/// Parses yes/no in English or Chinese; an empty cell is no.
fn boolean(s: &str) -> Option<bool> {
    match normalise(s).as_str() {
        "" | "no" | "n" | "false" | "0" | "否" | "×" | "不是" => Some(false),
        "yes" | "y" | "true" | "1" | "是" | "√" | "✓" => Some(true),
        _ => None,
    }
}

/// Normalises a phone number to `+86…` form, or says why it is not one.
///
/// Accepted: mainland mobiles (`13800000001`, `138 0000 0001`,
/// `+86 138-0000-0001`), landlines with area code (`0571-87654321` →
/// `+8657187654321`) and other international numbers in E.164 (`+852…`).
pub fn phone(raw: &str) -> Result<String, String> {
    let s: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '(' | ')' | '（' | '）'))
        .collect();
    let bad = || {
        format!("bad phone {raw:?}: expected a mobile like 13800000001 or +8613800000001, or a landline like 0571-87654321")
    };
    let (plus, digits) = match s.strip_prefix('+') {
        Some(d) => (true, d),
        None => (false, s.as_str()),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let mobile =
        |d: &str| d.len() == 11 && d.starts_with('1') && matches!(d.as_bytes()[1], b'3'..=b'9');
    let national = if plus {
        match digits.strip_prefix("86") {
            Some(rest) => rest,
            None if (8..=15).contains(&digits.len()) => return Ok(format!("+{digits}")),
            None => return Err(bad()),
        }
    } else {
        digits
    };
    if mobile(national) {
        return Ok(format!("+86{national}"));
    }
    // Landline: area code (without its trunk 0) and number, 9 to 11 digits.
    let landline = national.strip_prefix('0').unwrap_or(national);
    let trunk_ok = plus || national.starts_with('0');
    if trunk_ok && !landline.starts_with('1') && (9..=11).contains(&landline.len()) {
        return Ok(format!("+86{landline}"));
    }
    Err(bad())
}

fn email(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    let ok = match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && !s.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("bad email {raw:?}"))
    }
}

/// Ids become TOML keys, MQTT topic parts and contact ids: ASCII letters, digits, `.`, `_`, `-`.
fn id_ok(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Splits a list cell on `;`, `,`, `、` and their full-width forms.
fn list(s: &str) -> Vec<String> {
    s.split([';', '；', ',', '，', '、'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// The header's column positions.
struct Header {
    at: HashMap<Col, usize>,
}

fn header(row: &Row, errors: &mut Vec<RowError>) -> Header {
    let mut at = HashMap::new();
    for (i, cell) in row.cells.iter().enumerate() {
        if cell.trim().is_empty() {
            continue;
        }
        match Col::parse_header(cell) {
            Some(col) => {
                if at.insert(col, i).is_some() {
                    errors.push(RowError {
                        row: row.number,
                        message: format!("column {} appears twice", col.label()),
                    });
                }
            }
            None => errors.push(RowError {
                row: row.number,
                message: format!(
                    "unknown column {:?} (the columns are described in docs/ledger.md)",
                    cell.trim()
                ),
            }),
        }
    }
    if !at.contains_key(&Col::Type) {
        errors.push(RowError {
            row: row.number,
            message: format!("no {} column: the header must name it", Col::Type.label()),
        });
    }
    Header { at }
}

/// One data row with its cells looked up by column.
struct Cells<'a> {
    row: &'a Row,
    header: &'a Header,
    kind: Kind,
    errors: Vec<String>,
}

impl<'a> Cells<'a> {
    fn get(&self, col: Col) -> &'a str {
        self.header
            .at
            .get(&col)
            .and_then(|&i| self.row.cells.get(i))
            .map(|s| s.trim())
            .unwrap_or("")
    }

    fn opt(&self, col: Col) -> Option<&'a str> {
        Some(self.get(col)).filter(|s| !s.is_empty())
    }

    fn required(&mut self, col: Col) -> Option<&'a str> {
        let v = self.opt(col);
        if v.is_none() {
            self.errors.push(format!(
                "missing required cell {} for a {} row",
                col.label(),
                self.kind.name()
            ));
        }
        v
    }

    fn id(&mut self, what: &str) -> Option<String> {
        let id = self.required(Col::Id)?;
        if id_ok(id) {
            Some(id.to_string())
        } else {
            self.errors.push(format!(
                "{what} id {id:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ -"
            ));
            None
        }
    }

    /// An optional cell checked by `f`: `Ok(None)` when blank; a bad value is recorded.
    fn valid(
        &mut self,
        col: Col,
        f: fn(&str) -> Result<String, String>,
    ) -> Result<Option<String>, ()> {
        match self.opt(col) {
            None => Ok(None),
            Some(v) => f(v).map(Some).map_err(|e| self.errors.push(e)),
        }
    }

    /// Cells filled in columns this kind of row does not use: data that would be lost.
    fn stray(&mut self) {
        let allowed = self.kind.columns();
        let mut cols: Vec<(&Col, &usize)> = self.header.at.iter().collect();
        cols.sort();
        for (col, &i) in cols {
            if matches!(col, Col::Type | Col::Note) || allowed.contains(col) {
                continue;
            }
            if self.row.cells.get(i).is_some_and(|c| !c.trim().is_empty()) {
                self.errors.push(format!(
                    "column {} does not apply to a {} row (see docs/ledger.md)",
                    col.label(),
                    self.kind.name()
                ));
            }
        }
    }
}

/// A row that passed its own checks, before cross-references are resolved.
enum Parsed {
    Home(Home),
    Resident {
        home: String,
        resident: Resident,
    },
    Device(Device),
    Contact {
        contact: Contact,
        homes: Vec<String>,
    },
}

fn parse_row(c: &mut Cells, ctx: &Context) -> Option<Parsed> {
    c.stray();
    match c.kind {
        Kind::Home => {
            let id = c.id("home");
            let address = c.required(Col::Address);
            let grid = c.required(Col::Grid);
            if let Some(g) = grid {
                if !ctx.grids.contains(g) {
                    let known: Vec<&str> = ctx.grids.iter().map(String::as_str).collect();
                    c.errors.push(format!(
                        "unknown grid {g:?} (registry.toml has: {}; grids are defined there)",
                        known.join(", ")
                    ));
                }
            }
            Some(Parsed::Home(Home {
                row: c.row.number,
                id: id?,
                address: address?.to_string(),
                grid: grid?.to_string(),
                neighbours: list(c.get(Col::Neighbours)),
                residents: Vec::new(),
                family: Vec::new(),
            }))
        }
        Kind::Resident => {
            let home = c.required(Col::Home);
            let name = c.required(Col::Name);
            let phone = c.valid(Col::Phone, phone);
            let mail = c.valid(Col::Email, email);
            let alone = c.get(Col::LivesAlone);
            let lives_alone = boolean(alone);
            if lives_alone.is_none() {
                c.errors.push(format!(
                    "{} must be yes/no (是/否), not {alone:?}",
                    Col::LivesAlone.label()
                ));
            }
            let age = match c.opt(Col::Age) {
                None => Some(None),
                Some(a) => match a.parse::<u32>() {
                    Ok(n) if n <= 130 => Some(Some(n)),
                    _ => {
                        c.errors.push(format!(
                            "{} must be a whole number of years, not {a:?}",
                            Col::Age.label()
                        ));
                        None
                    }
                },
            };
            Some(Parsed::Resident {
                home: home?.to_string(),
                resident: Resident {
                    name: name?.to_string(),
                    phone: phone.ok()?,
                    email: mail.ok()?,
                    lives_alone: lives_alone?,
                    age: age?,
                },
            })
        }
        Kind::Device => {
            let id = c.id("device");
            let home = c.required(Col::Home);
            let kind = c.required(Col::Kind).and_then(|k| {
                let parsed = device_kind(k);
                if parsed.is_none() {
                    c.errors.push(format!(
                        "unknown device kind {k:?} (smoke|residual_current|temperature|combo, 烟感|剩余电流|温度|组合)"
                    ));
                }
                parsed
            });
            let transport = device_transport(c);
            Some(Parsed::Device(Device {
                id: id?,
                kind: kind?,
                home: home?.to_string(),
                location: c.get(Col::Location).to_string(),
                transport: transport?,
            }))
        }
        Kind::Contact => {
            let id = c.id("contact");
            let name = c.required(Col::Name);
            let reachable = [Col::Phone, Col::Email, Col::Webhook]
                .iter()
                .any(|col| c.opt(*col).is_some());
            let phone = c.valid(Col::Phone, phone);
            let mail = c.valid(Col::Email, email);
            let webhook = c.opt(Col::Webhook).map(str::to_string);
            if let (Some(w), Some(hooks)) = (&webhook, &ctx.webhooks) {
                if !hooks.contains(w) {
                    c.errors.push(format!(
                        "unknown webhook {w:?} (no [channels.webhook.{w}] in gateway.toml)"
                    ));
                }
            }
            if !reachable {
                c.errors.push(format!(
                    "contact needs a {}, {} or {}: nobody could reach them",
                    Col::Phone.label(),
                    Col::Email.label(),
                    Col::Webhook.label()
                ));
            }
            Some(Parsed::Contact {
                contact: Contact {
                    id: id?,
                    name: name?.to_string(),
                    phone: phone.ok()?,
                    email: mail.ok()?,
                    webhook,
                    console: None,
                },
                homes: list(c.get(Col::Home)),
            })
        }
    }
}

fn device_transport(c: &mut Cells) -> Option<Transport> {
    let t = normalise(c.get(Col::Transport));
    match t.as_str() {
        "" | "mqtt" => {
            for col in [Col::Endpoint, Col::Unit, Col::Profile] {
                if c.opt(col).is_some() {
                    c.errors.push(format!(
                        "column {} is for modbus devices, but {} is mqtt",
                        col.label(),
                        Col::Transport.label()
                    ));
                }
            }
            Some(Transport::Mqtt)
        }
        "modbus" | "modbustcp" | "modbusrtu" => {
            let endpoint = c.required(Col::Endpoint).and_then(|e| {
                if e.starts_with("tcp://") || e.starts_with("rtu://") {
                    Some(e.to_string())
                } else {
                    c.errors.push(format!(
                        "modbus endpoint {e:?} must start with tcp:// or rtu://"
                    ));
                    None
                }
            });
            let unit = c.required(Col::Unit).and_then(|u| match u.parse::<u8>() {
                Ok(n) if (1..=247).contains(&n) => Some(n),
                _ => {
                    c.errors
                        .push(format!("modbus unit {u:?} must be a number from 1 to 247"));
                    None
                }
            });
            let profile = c.opt(Col::Profile).unwrap_or(DEFAULT_PROFILE).to_string();
            Some(Transport::Modbus {
                endpoint: endpoint?,
                unit: unit?,
                profile,
            })
        }
        _ => {
            c.errors.push(format!(
                "unknown transport {:?} (mqtt or modbus)",
                c.get(Col::Transport)
            ));
            None
        }
    }
}

/// Checks the whole sheet and returns the ledger, or every error found
/// (sorted by row), so the installer fixes the file in one pass.
pub fn parse(sheet: &Sheet, ctx: &Context) -> Result<Ledger, Vec<RowError>> {
    let mut errors = Vec::new();
    let mut rows = sheet
        .rows
        .iter()
        .filter(|r| r.cells.iter().any(|c| !c.trim().is_empty()));
    let Some(head) = rows.next() else {
        return Err(vec![RowError {
            row: 1,
            message: "the ledger is empty: expected a header row and data rows".into(),
        }]);
    };
    let header = header(head, &mut errors);
    if !header.at.contains_key(&Col::Type) {
        return Err(errors);
    }

    let mut parsed: Vec<(usize, Parsed)> = Vec::new();
    // Home ids named by home rows, valid or not: a reference to a home whose
    // own row has an error is not a second error.
    let mut declared: BTreeSet<String> = BTreeSet::new();
    // First row of each id, per kind: a duplicate is reported even when the
    // first row has errors of its own.
    let mut first: HashMap<(&'static str, String), usize> = HashMap::new();
    for row in rows {
        let type_cell = header
            .at
            .get(&Col::Type)
            .and_then(|&i| row.cells.get(i))
            .map(|s| s.trim())
            .unwrap_or("");
        if type_cell.starts_with('#') {
            continue; // a comment row
        }
        let err = |message: String| RowError {
            row: row.number,
            message,
        };
        let Some(kind) = Kind::parse(type_cell) else {
            errors.push(err(if type_cell.is_empty() {
                format!("missing required cell {}", Col::Type.label())
            } else {
                format!(
                    "unknown row type {type_cell:?} (home|resident|device|contact, 住户|居民|设备|联系人)"
                )
            }));
            continue;
        };
        let mut cells = Cells {
            row,
            header: &header,
            kind,
            errors: Vec::new(),
        };
        if kind == Kind::Home {
            if let Some(id) = cells.opt(Col::Id) {
                declared.insert(id.to_string());
            }
        }
        let p = parse_row(&mut cells, ctx);
        if kind != Kind::Resident {
            if let Some(id) = cells.opt(Col::Id) {
                match first.get(&(kind.name(), id.to_string())) {
                    Some(at) => cells.errors.insert(
                        0,
                        format!("duplicate {} id {id:?} (first on row {at})", kind.name()),
                    ),
                    None => {
                        first.insert((kind.name(), id.to_string()), row.number);
                    }
                }
            }
        }
        let row_errors = std::mem::take(&mut cells.errors);
        if row_errors.is_empty() {
            if let Some(p) = p {
                parsed.push((row.number, p));
            }
        }
        errors.extend(row_errors.into_iter().map(err));
    }
    let ledger = link(parsed, &declared, &mut errors);
    if errors.is_empty() {
        Ok(ledger)
    } else {
        errors.sort_by_key(|e| e.row);
        Err(errors)
    }
}

/// Second pass: duplicate ids and references between rows (in any order).
fn link(
    parsed: Vec<(usize, Parsed)>,
    declared: &BTreeSet<String>,
    errors: &mut Vec<RowError>,
) -> Ledger {
    let mut ledger = Ledger::default();
    let mut later = Vec::new();
    for (row, p) in parsed {
        match p {
            Parsed::Home(h) => ledger.homes.push(h),
            other => later.push((row, other)),
        }
    }
    let home_index: HashMap<String, usize> = ledger
        .homes
        .iter()
        .enumerate()
        .map(|(i, h)| (h.id.clone(), i))
        .collect();
    let unknown_home = |row: usize, id: &str, what: &str| {
        (!declared.contains(id)).then(|| RowError {
            row,
            message: format!("unknown home {id:?} in {what} (no home row has this id)"),
        })
    };
    for (row, p) in later {
        match p {
            Parsed::Home(_) => {}
            Parsed::Resident { home, resident } => match home_index.get(&home) {
                Some(&i) => ledger.homes[i].residents.push(resident),
                None => errors.extend(unknown_home(row, &home, &Col::Home.label())),
            },
            Parsed::Device(d) => {
                if home_index.contains_key(&d.home) {
                    ledger.devices.push(d);
                } else {
                    errors.extend(unknown_home(row, &d.home, &Col::Home.label()));
                }
            }
            Parsed::Contact { contact, homes: of } => {
                for h in &of {
                    match home_index.get(h) {
                        Some(&i) => ledger.homes[i].family.push(contact.id.clone()),
                        None => errors.extend(unknown_home(row, h, &Col::Home.label())),
                    }
                }
                ledger.contacts.push(contact);
            }
        }
    }
    for h in &ledger.homes {
        for n in &h.neighbours {
            if *n == h.id {
                errors.push(RowError {
                    row: h.row,
                    message: format!("home {:?} lists itself as its own neighbour", h.id),
                });
            } else if !home_index.contains_key(n) {
                errors.extend(unknown_home(h.row, n, &Col::Neighbours.label()));
            }
        }
    }
    ledger
}
