//! Names from the `tests/fixtures/compound` ledger, in one place so that a
//! test's expectations read as "who" rather than as literals.

use std::path::PathBuf;

/// Directory of the fixture ledger (registry, rules, routing).
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/compound")
}

/// Site id written into the generated gateway.toml.
pub const SITE: &str = "xihu-longjing";
/// Site name written into the generated gateway.toml.
pub const SITE_NAME: &str = "龙井苑小区";

/// The home whose kitchen detector alarms in the foundation tests.
pub const HOUSEHOLD: &str = "h-3-2-501";
/// Its address.
pub const ADDRESS: &str = "3幢2单元501室";
/// Its kitchen smoke detector.
pub const SMOKE_KITCHEN: &str = "smk-3-2-501-k";
/// Location of that detector.
pub const SMOKE_KITCHEN_LOCATION: &str = "厨房";
/// The resident (lives alone, 82): never notified of her own alarm.
pub const RESIDENT_PHONE: &str = "+8613800000001";

/// A smoke detector in another grid (g05), whose people must not hear of g03's alarms.
pub const SMOKE_OTHER_GRID: &str = "smk-5-1-201-k";
/// Address of that home.
pub const OTHER_GRID_ADDRESS: &str = "5幢1单元201室";

/// Grid worker of g03: reached by email (grid_worker = ["email","sms"]).
pub const WANG: &str = "c-wang";
/// c-wang's email address.
pub const WANG_EMAIL: &str = "wang@example.org";
/// c-wang's phone (must not get an SMS: email comes first for grid workers).
pub const WANG_PHONE: &str = "+8613800000002";
/// Director of g03: reached by SMS (director = ["sms","email"]).
pub const LI: &str = "c-li";
/// c-li's phone.
pub const LI_PHONE: &str = "+8613800000003";
/// c-li's email (must not get mail: SMS comes first for directors).
pub const LI_EMAIL: &str = "li@example.org";
/// Fire brigade of g03: reached by webhook "fire119".
pub const FIRE_119: &str = "c-xihu-119";
/// Name of the fire brigade contact.
pub const FIRE_119_NAME: &str = "西湖消防中队值班室";
/// Phone of the fire brigade (must not get an SMS: webhook comes first).
pub const FIRE_119_PHONE: &str = "+8613800000119";
/// The resident's son: reached by email (family = ["email","sms"]).
pub const ZHANG_SON: &str = "c-zhang-son";
/// His email.
pub const ZHANG_SON_EMAIL: &str = "zhang.son@example.org";
/// His phone.
pub const ZHANG_SON_PHONE: &str = "+8613800000004";
/// Neighbour contact ids (`{household}.r{n}`) and phones, reached by SMS.
pub const NEIGHBOURS: [(&str, &str); 2] = [
    ("h-3-2-502.r1", "+8613800000011"),
    ("h-3-2-401.r1", "+8613800000012"),
];
/// Grid worker of g05: must not hear of g03's alarms.
pub const ZHAO: &str = "c-zhao";
/// c-zhao's email.
pub const ZHAO_EMAIL: &str = "zhao@example.org";
/// c-zhao's phone.
pub const ZHAO_PHONE: &str = "+8613800000005";
/// Resident of the g05 home.
pub const OTHER_GRID_RESIDENT_PHONE: &str = "+8613800000021";

/// The phones that get an SMS for a smoke alarm in h-3-2-501.
pub fn expected_sms_phones() -> Vec<&'static str> {
    let mut phones = vec![LI_PHONE];
    phones.extend(NEIGHBOURS.iter().map(|(_, phone)| *phone));
    phones
}

/// The email recipients of a smoke alarm in h-3-2-501.
pub fn expected_email_rcpts() -> Vec<&'static str> {
    vec![WANG_EMAIL, ZHANG_SON_EMAIL]
}

/// The uplink topic of a device.
pub fn reading_topic(device_id: &str) -> String {
    format!("sensors/{device_id}/reading")
}

/// A smoke reading: `smoke_db_m` plus the detector's own `smoke_alarm` flag.
pub fn smoke_reading(smoke_db_m: f64) -> String {
    format!(r#"{{"values":{{"smoke_db_m":{smoke_db_m}}},"flags":["smoke_alarm"]}}"#)
}

/// A `firmware-sim scenario` file sending one smoke reading from `device_id`.
///
/// The one place that knows the scenario format, so a format change is a one-line fix.
pub fn smoke_scenario(device_id: &str, smoke_db_m: f64) -> String {
    format!(
        r#"name = "e2e: one smoke reading of {device_id}"

[[step]]
at = "0s"
device = "{device_id}"
values = {{ smoke_db_m = {smoke_db_m} }}
flags = ["smoke_alarm"]
"#
    )
}
