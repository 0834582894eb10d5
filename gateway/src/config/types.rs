//! Config file shapes, one struct per TOML table of docs/contract.md §2. Every struct
//! denies unknown fields: a typo in an alarm gateway's config must fail loudly
//! at load, not silently disable a rule.

use crate::config::duration::Dur;
use crate::model::{AlarmKind, ChannelKind, ResidentInfo, Role, Severity};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `gateway.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    pub registry: String,
    pub rules: String,
    pub routing: String,
    #[serde(default)]
    pub profiles: Vec<String>,
    pub site: SiteConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub mqtt: MqttConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub channels: ChannelsConfig,
    #[serde(default)]
    pub upstream: Option<UpstreamConfig>,
    /// `[gb26875]`: the city fire remote-monitoring centre (GB/T 26875.3).
    #[serde(default)]
    pub gb26875: Option<Gb26875Config>,
    #[serde(default)]
    pub selfwatch: SelfwatchConfig,
    /// `[report]`: response-time targets (optional).
    #[serde(default)]
    pub report: ReportConfig,
}

/// `[site]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub locale: Locale,
    /// The compound plan (SVG, relative to gateway.toml): elements with
    /// `id="building-<name>"` are the buildings households name.
    #[serde(default)]
    pub plan: Option<String>,
    /// The plan's checked text, read once when the config is built.
    #[serde(skip)]
    pub plan_svg: Option<std::sync::Arc<str>>,
}

pub use crate::model::Locale;

/// `[storage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(default = "default_data_path")]
    pub path: String,
    /// How long verified (closed) alarms and their delivery records are kept;
    /// open, resolved-but-unverified alarms and pending notifications are never swept.
    #[serde(default = "default_retention")]
    pub retention: Dur,
    /// How often the store is compared with its journal while running (the
    /// journal file is re-read and its checksums verified).
    #[serde(default = "default_scrub_every")]
    pub scrub_every: Dur,
    /// Write a verified backup this often; `None` (the default): no scheduled backups.
    #[serde(default)]
    pub backup_every: Option<Dur>,
    /// Where scheduled backups go, relative to gateway.toml; best on another
    /// device than `path` (a USB stick, a network mount).
    #[serde(default = "default_backup_dir")]
    pub backup_dir: String,
    /// How many scheduled backups are kept (oldest removed first).
    #[serde(default = "default_backup_keep")]
    pub backup_keep: usize,
    /// How long an alarm's notifications wait for the disk to confirm its
    /// record. Past it they go out anyway, said in the log and counted: a
    /// stalled or failing disk must not hold an alarm back. The record is
    /// already in the journal (kept across a crash of the process); only a
    /// power cut in that window could lose it.
    #[serde(default = "default_flush_wait")]
    pub flush_wait: Dur,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: default_data_path(),
            retention: default_retention(),
            scrub_every: default_scrub_every(),
            backup_every: None,
            backup_dir: default_backup_dir(),
            backup_keep: default_backup_keep(),
            flush_wait: default_flush_wait(),
        }
    }
}

fn default_flush_wait() -> Dur {
    Dur::from_millis(250)
}

fn default_scrub_every() -> Dur {
    Dur::from_secs(3600)
}

fn default_backup_dir() -> String {
    "backups".into()
}

fn default_backup_keep() -> usize {
    7
}

fn default_retention() -> Dur {
    Dur::from_secs(180 * 24 * 3600)
}

/// `[selfwatch]`: the gateway's own heartbeat on MQTT, the district
/// platform's dead-man's switch for this box.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfwatchConfig {
    /// How often the heartbeat is published.
    #[serde(default = "default_heartbeat_every")]
    pub heartbeat: Dur,
    /// Topic; `{site}` is replaced by the site id.
    #[serde(default = "default_heartbeat_topic")]
    pub topic: String,
    /// How often a fresh MQTT client proves that devices can still reach
    /// gridwatch's ingest (the ingress canary); `"0s"` turns it off.
    #[serde(default = "default_canary_every")]
    pub canary: Dur,
    /// How long one canary probe may take, connect to seen in ingest.
    #[serde(default = "default_canary_timeout")]
    pub canary_timeout: Dur,
}

impl Default for SelfwatchConfig {
    fn default() -> Self {
        SelfwatchConfig {
            heartbeat: default_heartbeat_every(),
            topic: default_heartbeat_topic(),
            canary: default_canary_every(),
            canary_timeout: default_canary_timeout(),
        }
    }
}

fn default_canary_every() -> Dur {
    Dur::from_secs(10)
}

fn default_canary_timeout() -> Dur {
    Dur::from_secs(5)
}

fn default_heartbeat_every() -> Dur {
    Dur::from_secs(30)
}

/// `gridwatch/{site}/heartbeat`.
pub fn default_heartbeat_topic() -> String {
    "gridwatch/{site}/heartbeat".into()
}

fn default_data_path() -> String {
    "data".into()
}

/// `[mqtt]`: the embedded broker or an external one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    #[serde(default = "yes")]
    pub embedded: bool,
    #[serde(default = "default_mqtt_listen")]
    pub listen: String,
    #[serde(default)]
    pub external: Option<String>,
    #[serde(default)]
    pub users: Vec<MqttUser>,
    /// Largest accepted uplink payload in bytes.
    #[serde(default = "default_max_payload")]
    pub max_payload: usize,
    /// A second listener of the embedded broker with TLS (rustls).
    #[serde(default)]
    pub tls: Option<MqttTls>,
    /// An MQTT 5 listener of the embedded broker beside the 3.1.1 one
    /// (`"HOST:PORT"`; absent: none).
    #[serde(default)]
    pub listen_v5: Option<String>,
    /// Per-device ingest limit: messages a second, sustained (token bucket).
    #[serde(default = "default_device_rate")]
    pub device_rate: f64,
    /// Per-device ingest limit: messages accepted in a burst after a quiet period.
    #[serde(default = "default_device_burst")]
    pub device_burst: f64,
    /// Memory the embedded broker keeps of recent uplinks (MiB of payload):
    /// the backlog gridwatch's own subscription may fall behind by in a burst
    /// without losing readings (rumqttd skips what falls out of it). Under
    /// steady traffic it fills and stays full: it is most of the RSS growth
    /// under load (docs/benchmarks.md "RSS while working").
    #[serde(default = "default_broker_buffer_mib")]
    pub broker_buffer_mib: u32,
    /// `[[mqtt.format]]`: vendor uplink formats mapped onto readings (docs/contract.md §3),
    /// so a new detector brand needs config, not code.
    #[serde(default, rename = "format")]
    pub formats: Vec<VendorFormat>,
}

/// `[mqtt.tls]`: the embedded broker's TLS listener (PEM files).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTls {
    /// e.g. `"0.0.0.0:8883"`.
    pub listen: String,
    /// PEM certificate chain, relative to gateway.toml.
    pub cert: String,
    /// PEM private key, relative to gateway.toml.
    pub key: String,
}

fn default_device_rate() -> f64 {
    5.0
}
fn default_device_burst() -> f64 {
    30.0
}

/// 4 MiB: ~2 s of backlog at 20 000 readings/s, ~45 s at 1 000/s. What a
/// skip loses is telemetry only: alarms have the broker's urgent copy.
fn default_broker_buffer_mib() -> u32 {
    4
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            embedded: true,
            listen: default_mqtt_listen(),
            external: None,
            users: Vec::new(),
            max_payload: default_max_payload(),
            tls: None,
            listen_v5: None,
            device_rate: default_device_rate(),
            device_burst: default_device_burst(),
            broker_buffer_mib: default_broker_buffer_mib(),
            formats: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_mqtt_listen() -> String {
    "0.0.0.0:1883".into()
}
fn default_max_payload() -> usize {
    4096
}

/// `[[mqtt.users]]`: device credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttUser {
    pub username: String,
    /// argon2id PHC string (`gridwatch hash-password` makes one).
    pub password_hash: String,
    /// Device ids (globs, `*` and `?`) this credential speaks for; empty means
    /// the one device whose id is the username. The MQTT client id must be
    /// the username or one of these.
    #[serde(default)]
    pub devices: Vec<String>,
}

impl MqttUser {
    /// Whether this credential may speak for `device_id`.
    pub fn covers(&self, device_id: &str) -> bool {
        self.username == device_id
            || self
                .devices
                .iter()
                .any(|g| crate::security::glob::matches(g, device_id))
    }
}

/// `[[mqtt.format]]`: how one vendor's uplink (topic filter plus JSON
/// pointers) maps onto a docs/contract.md §3 reading. Checked by `config::vendor` and
/// compiled by `ingest::vendor`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorFormat {
    /// Shown in logs and errors.
    pub name: String,
    /// MQTT filter with `+` wildcards (no `#`), e.g. `"acme/+/up"`.
    pub topic: String,
    /// Where the device id comes from: `"topic:N"` (the N-th `+` level) or a JSON pointer.
    pub device: String,
    /// Put in front of the extracted id, so vendor serials map to registry ids.
    #[serde(default)]
    pub device_prefix: String,
    /// JSON pointer to the device's timestamp; receive time when left out.
    #[serde(default)]
    pub ts: Option<String>,
    /// Unit of `ts`: `ms` (default), `s`, or `rfc3339` (a string).
    #[serde(default)]
    pub ts_unit: TsUnit,
    /// docs/contract.md §3 metric name → pointer (or `{ pointer, scale }`).
    #[serde(default)]
    pub metrics: BTreeMap<String, VendorMetric>,
    /// docs/contract.md §3 flag name → pointer (or `{ pointer, equals }`).
    #[serde(default)]
    pub flags: BTreeMap<String, VendorFlag>,
}

/// Unit of a vendor timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TsUnit {
    /// Epoch milliseconds (a number).
    #[default]
    Ms,
    /// Epoch seconds (a number, fractions kept to the millisecond).
    S,
    /// An RFC 3339 string, e.g. `"2026-11-24T10:00:00.123Z"`.
    Rfc3339,
}

/// One metric of a vendor format: `"/ptr"` or `{ pointer = "/ptr", scale = 0.1 }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "PointerOr<MetricTable>")]
pub struct VendorMetric {
    /// JSON pointer (RFC 6901) to a number.
    pub pointer: String,
    /// Multiplier from the vendor's unit to the contract's unit (docs/contract.md §3).
    pub scale: f64,
}

/// The table form of [`VendorMetric`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricTable {
    pointer: String,
    #[serde(default = "unit_scale")]
    scale: f64,
}

fn unit_scale() -> f64 {
    1.0
}

impl From<PointerOr<MetricTable>> for VendorMetric {
    fn from(f: PointerOr<MetricTable>) -> Self {
        match f {
            PointerOr::Pointer(pointer) => VendorMetric {
                pointer,
                scale: 1.0,
            },
            PointerOr::Table(t) => VendorMetric {
                pointer: t.pointer,
                scale: t.scale,
            },
        }
    }
}

/// One flag of a vendor format: `"/ptr"` (set when true or a non-zero
/// number) or `{ pointer = "/ptr", equals = "ALARM" }` (set when equal).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "PointerOr<FlagTable>")]
pub struct VendorFlag {
    /// JSON pointer (RFC 6901).
    pub pointer: String,
    /// When given, the flag is set exactly when the value equals this scalar.
    pub equals: Option<serde_json::Value>,
}

/// The table form of [`VendorFlag`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagTable {
    pointer: String,
    #[serde(default)]
    equals: Option<serde_json::Value>,
}

impl From<PointerOr<FlagTable>> for VendorFlag {
    fn from(f: PointerOr<FlagTable>) -> Self {
        match f {
            PointerOr::Pointer(pointer) => VendorFlag {
                pointer,
                equals: None,
            },
            PointerOr::Table(t) => VendorFlag {
                pointer: t.pointer,
                equals: t.equals,
            },
        }
    }
}

/// A bare pointer string or a table `T`. Hand-written instead of
/// `#[serde(untagged)]` so a typo inside the table is reported as
/// "unknown field `scal`" rather than "did not match any variant".
#[derive(Debug, Clone, PartialEq)]
pub enum PointerOr<T> {
    Pointer(String),
    Table(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for PointerOr<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = PointerOr<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON pointer string like \"/data/smoke\" or an inline table")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(PointerOr::Pointer(s.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(PointerOr::Table)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_http_listen")]
    pub listen: String,
    #[serde(default = "default_public_url")]
    pub public_url: String,
    #[serde(default)]
    pub tokens: Vec<ApiToken>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_http_listen(),
            public_url: default_public_url(),
            tokens: Vec::new(),
        }
    }
}

fn default_http_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_public_url() -> String {
    "http://127.0.0.1:8080".into()
}

/// `[[http.tokens]]`: a bearer token with a role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    pub name: String,
    pub role: ApiRole,
    /// The token itself (best as `"${ENV}"`). Exactly one of `token`,
    /// `token_sha256` and `token_file` is set.
    #[serde(default)]
    pub token: String,
    /// SHA-256 hex digest of the token: the config then holds no usable secret.
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// A file holding the token, readable by its owner only (mode 600 or 400);
    /// read at load into `token`.
    #[serde(default)]
    pub token_file: Option<String>,
}

/// Roles of API tokens (docs/contract.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiRole {
    DutyOfficer,
    GridWorker,
    Director,
    Operator,
}

/// `[channels]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ChannelsConfig {
    #[serde(default)]
    pub email: Option<EmailConfig>,
    #[serde(default)]
    pub webhook: BTreeMap<String, WebhookConfig>,
    #[serde(default)]
    pub sms: Option<SmsConfig>,
    /// The box's own 4G/LTE module, shared by voice calls and modem SMS.
    #[serde(default)]
    pub modem: Option<ModemConfig>,
    #[serde(default)]
    pub voice: Option<VoiceConfig>,
    #[serde(default)]
    pub mqtt: Option<MqttEventsConfig>,
    #[serde(default)]
    pub console: Option<ConsoleConfig>,
    /// Tries on one channel before a recipient moves to its role's next
    /// channel (default 5); see `dispatch::retry`.
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

/// `[channels.email]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `smtp://host:port`, `smtps://host:port`, `smtp://host:port?tls=starttls`; user:pass allowed.
    pub smtp: String,
    pub from: String,
    #[serde(default = "default_send_timeout")]
    pub timeout: Dur,
}

fn default_send_timeout() -> Dur {
    Dur::from_secs(10)
}

/// `[channels.webhook.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    #[serde(default = "default_send_timeout")]
    pub timeout: Dur,
    /// Robots: the 加签 secret (DingTalk, Feishu); `json`: the Standard Webhooks key.
    #[serde(default)]
    pub secret: Option<String>,
    /// Robots: who is @-mentioned (default `recipients` for alarm and critical).
    #[serde(default)]
    pub mention: Option<Mention>,
    /// Robots: the word the robot's keyword security (自定义关键词) requires.
    #[serde(default)]
    pub keyword: Option<String>,
    /// Robots: the platform's budget of posts per minute (defaults 20 / 20 / 100).
    #[serde(default)]
    pub max_per_minute: Option<u32>,
    /// `json`: a JSON pointer into the answer that must be `true`, `0` or `"OK"`.
    #[serde(default)]
    pub success: Option<String>,
}

/// Who a group robot @-mentions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mention {
    None,
    Recipients,
    All,
}

/// Body shape of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    #[default]
    Json,
    Wecom,
    Dingtalk,
    Feishu,
}

/// `[channels.sms]`: one SMS provider. Which keys apply depends on
/// `provider`; the channel builder checks them and says which one is missing.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    #[serde(default)]
    pub provider: SmsProvider,
    /// `template`: the gateway URL.
    #[serde(default)]
    pub url: Option<String>,
    /// `template`: the body, a minijinja template over the notification's fields.
    #[serde(default)]
    pub body: Option<String>,
    /// `template`: extra request headers (e.g. Content-Type of a form body).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `aliyun`, `tencent`: the API endpoint (default the public one).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `aliyun`: AccessKey pair.
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub access_key_secret: Option<String>,
    /// `tencent`: API key pair.
    #[serde(default)]
    pub secret_id: Option<String>,
    #[serde(default)]
    pub secret_key: Option<String>,
    /// `tencent`: SMS application id and region.
    #[serde(default)]
    pub sdk_app_id: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// `aliyun`, `tencent`: the approved signature (签名) and template.
    #[serde(default)]
    pub sign_name: Option<String>,
    #[serde(default)]
    pub template_code: Option<String>,
    #[serde(default)]
    pub template_id: Option<String>,
    /// Template variables: a name → field table (aliyun) or a field list (tencent).
    #[serde(default)]
    pub params: Option<SmsParams>,
    #[serde(default = "default_send_timeout")]
    pub timeout: Dur,
}

/// `[channels.sms] provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SmsProvider {
    /// Any HTTP gateway, body from a template (the original behaviour).
    #[default]
    Template,
    /// Aliyun (阿里云短信) SendSms.
    Aliyun,
    /// Tencent Cloud (腾讯云短信) SendSms.
    Tencent,
    /// The box's own 4G module (PDU mode, UCS-2, long texts in parts; needs `[channels.modem]`).
    Modem,
}

/// `[channels.sms] params`: named (aliyun) or positional (tencent) template variables.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum SmsParams {
    Named(BTreeMap<String, String>),
    Positional(Vec<String>),
}

/// `[channels.modem]`: the 4G/LTE module (Quectel EC2x/EG9x class) on a serial port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModemConfig {
    /// The module's AT port, e.g. `/dev/ttyUSB2` (Quectel USB: the third interface).
    pub device: String,
    #[serde(default = "default_modem_baud")]
    pub baud: u32,
    /// Longest wait for the answer to one AT command; no answer means the module is gone.
    #[serde(default = "default_at_timeout")]
    pub at_timeout: Dur,
    /// How long a call may ring before it counts as not answered.
    #[serde(default = "default_ring_timeout")]
    pub ring_timeout: Dur,
    /// How long to wait for a key after the last reading of the message.
    #[serde(default = "default_key_wait")]
    pub key_wait: Dur,
}

fn default_modem_baud() -> u32 {
    115_200
}

fn default_at_timeout() -> Dur {
    Dur::from_secs(5)
}

fn default_ring_timeout() -> Dur {
    Dur::from_secs(40)
}

fn default_key_wait() -> Dur {
    Dur::from_secs(8)
}

/// `[channels.voice]`: calls that read the message aloud. Which keys apply
/// depends on `backend`; the channel builder checks them and names a missing one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceConfig {
    pub backend: VoiceBackend,
    /// Calls after the first when nobody answers (busy or no answer).
    #[serde(default = "default_voice_retries")]
    pub retries: u32,
    /// Wait between those calls.
    #[serde(default = "default_retry_after")]
    pub retry_after: Dur,
    /// How many times the message is read on one call.
    #[serde(default = "default_play_times")]
    pub play_times: u32,
    /// Shortest time between two calls to one number, retries included.
    /// Default: `aliyun` 1m (its voice flow control: one call a minute per
    /// callee), none for `modem` and `template`.
    #[serde(default)]
    pub per_callee_interval: Option<Dur>,
    /// `aliyun`: the Dyvmsapi endpoint (default the public one).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `aliyun`: AccessKey pair (write the secret as `${ENV}`).
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub access_key_secret: Option<String>,
    /// `aliyun`: the number shown to the callee (被叫显号).
    #[serde(default)]
    pub called_show_number: Option<String>,
    /// `aliyun`: the approved TTS template (文本转语音模板) code.
    #[serde(default)]
    pub tts_code: Option<String>,
    /// `aliyun`: template variable → notification field, as for SMS.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// `template`: the voice gateway URL.
    #[serde(default)]
    pub url: Option<String>,
    /// `template`: extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `template`: the body, a minijinja template over the notification's fields.
    #[serde(default)]
    pub body: Option<String>,
    /// `template`: a JSON pointer into the answer that must be `true`, `0` or `"OK"`.
    #[serde(default)]
    pub success: Option<String>,
    /// The secret that authenticates call-result callbacks: the token in the
    /// callback URL (`aliyun`, `template`) or the Standard Webhooks key
    /// `whsec_…` / bearer secret (`template`).
    #[serde(default)]
    pub callback_secret: Option<String>,
    /// How long to wait for a call's result callback before asking the
    /// provider (`aliyun`: QueryCallDetailByCallId); `template`: before the
    /// call counts as failed.
    #[serde(default = "default_callback_wait")]
    pub callback_wait: Dur,
    /// Longest wait for the provider's answer to one request.
    #[serde(default = "default_send_timeout")]
    pub timeout: Dur,
}

fn default_voice_retries() -> u32 {
    2
}

fn default_retry_after() -> Dur {
    Dur::from_secs(60)
}

fn default_play_times() -> u32 {
    2
}

fn default_callback_wait() -> Dur {
    Dur::from_secs(120)
}

/// `[channels.voice] backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoiceBackend {
    /// The module of `[channels.modem]`.
    Modem,
    /// Aliyun 语音服务 SingleCallByTts (Dyvmsapi 2017-05-25).
    Aliyun,
    /// Any HTTP voice gateway, body from a template, result by callback.
    Template,
}

impl VoiceBackend {
    /// `modem`, `aliyun`, `template`: the `backend` label of the call metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            VoiceBackend::Modem => "modem",
            VoiceBackend::Aliyun => "aliyun",
            VoiceBackend::Template => "template",
        }
    }
}

/// `[channels.mqtt]`: alarm events on the broker; always on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttEventsConfig {
    #[serde(default = "default_event_topic")]
    pub topic: String,
}

/// Default alarm-event topic (docs/contract.md §3).
pub fn default_event_topic() -> String {
    "gridwatch/{site}/alarms/{alarm_id}".into()
}

/// `[channels.console]`: print notifications on stdout (the no-outside-service channel).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// `[upstream]`: forward alarm events to a district/city broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub url: String,
    #[serde(default)]
    pub topic: Option<String>,
    /// Prefix of every upstream topic (compounds sharing one district broker).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Key shared with the district room for signed commands; absent: the
    /// box takes no commands from upstream.
    #[serde(default)]
    pub command_key: Option<String>,
    /// MQTT keep-alive of the upstream session.
    #[serde(default = "default_upstream_keep_alive")]
    pub keep_alive: Dur,
}

fn default_upstream_keep_alive() -> Dur {
    Dur::from_secs(30)
}

/// `registry.toml`: the compound's ledger (台账).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    #[serde(default)]
    pub grids: Vec<Grid>,
    #[serde(default)]
    pub households: Vec<Household>,
    #[serde(default)]
    pub devices: Vec<Device>,
    #[serde(default)]
    pub contacts: Vec<Contact>,
}

impl Registry {
    /// Adds `other`'s entries after this one's, as if its text followed: the
    /// registry is read one `[[entry]]` block at a time (see `config::source`).
    pub fn append(&mut self, other: Registry) {
        self.grids.extend(other.grids);
        self.households.extend(other.households);
        self.devices.extend(other.devices);
        self.contacts.extend(other.contacts);
    }
}

/// `[[grids]]`: a grid and the people responsible for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub grid_workers: Vec<String>,
    #[serde(default)]
    pub directors: Vec<String>,
    #[serde(default)]
    pub fire_brigade: Vec<String>,
    /// Who maintains the gateway box (运维): told of its system alarms
    /// (e.g. `store_damaged`) with the directors.
    #[serde(default)]
    pub operators: Vec<String>,
}

/// `[[households]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Household {
    pub id: String,
    pub address: String,
    pub grid: String,
    /// The building on the compound plan (`id="building-<name>"` in `[site] plan`).
    #[serde(default)]
    pub building: Option<String>,
    #[serde(default)]
    pub residents: Vec<Resident>,
    #[serde(default)]
    pub family: Vec<String>,
    #[serde(default)]
    pub neighbours: Vec<String>,
}

/// A resident of a household; their phone makes them reachable as a neighbour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resident {
    pub name: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub lives_alone: bool,
    #[serde(default)]
    pub age: Option<u32>,
}

impl Resident {
    /// What messages say about this resident.
    pub fn info(&self) -> ResidentInfo {
        ResidentInfo {
            name: self.name.clone(),
            lives_alone: self.lives_alone,
            age: self.age,
        }
    }
}

/// Kinds of device (docs/contract.md §2 `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Smoke,
    ResidualCurrent,
    Temperature,
    Combo,
}

/// `[[devices]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub id: String,
    pub kind: DeviceKind,
    pub household: String,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub transport: DeviceTransport,
    /// GB/T 26875 component overrides (defaults by kind and position).
    #[serde(default)]
    pub gb26875: Option<Gb26875Device>,
}

/// How a device reaches the gateway: `"mqtt"` or `{ modbus = {...} }`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeviceTransport {
    #[default]
    Mqtt,
    Modbus(ModbusDevice),
}

/// A Modbus-polled device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusDevice {
    /// `tcp://host:port` or `rtu:///dev/ttyX?baud=9600&parity=N`.
    pub endpoint: String,
    pub unit: u8,
    pub profile: String,
    #[serde(default = "default_poll_every")]
    pub every: Dur,
    /// Added to every address of the profile: multi-circuit monitors lay out
    /// one circuit after another under one unit id.
    #[serde(default)]
    pub offset: u16,
    /// Longest wait for one reply; 500 ms when left out.
    #[serde(default)]
    pub timeout: Option<Dur>,
}

fn default_poll_every() -> Dur {
    Dur::from_secs(2)
}

/// `[[contacts]]`: a person or a system that can be notified, in
/// registry.toml, in district.toml and as a ledger row.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// Name of a `[channels.webhook.*]`.
    #[serde(default)]
    pub webhook: Option<String>,
    /// district.toml only: also print this person's notices on the console
    /// (tours, tests). registry.toml refuses it: there the console is a
    /// channel of `[roles]`.
    #[serde(default)]
    pub console: Option<bool>,
}

/// `rules.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default = "ResidualCurrentRule::shipped")]
    pub residual_current: ResidualCurrentRule,
    #[serde(default = "TemperatureRule::shipped")]
    pub temperature: TemperatureRule,
    #[serde(default)]
    pub smoke: SmokeRule,
    #[serde(default)]
    pub heartbeat: HeartbeatRule,
    #[serde(default, rename = "override")]
    pub overrides: Vec<Override>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            residual_current: ResidualCurrentRule::shipped(),
            temperature: TemperatureRule::shipped(),
            smoke: SmokeRule::default(),
            heartbeat: HeartbeatRule::default(),
            overrides: Vec::new(),
        }
    }
}

/// A change of at least `delta` within `within`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trend {
    pub delta: f64,
    pub within: Dur,
}

/// `[residual_current]` (mA). GB 50116 §9.2.3: alarm value 300–500 mA.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidualCurrentRule {
    pub warning: Option<f64>,
    pub alarm: f64,
    pub clear: Option<f64>,
    #[serde(default = "default_for", rename = "for")]
    pub hold: Dur,
    #[serde(default)]
    pub rise: Option<Trend>,
    #[serde(default)]
    pub step: Option<Trend>,
}

impl ResidualCurrentRule {
    /// The shipped defaults.
    pub fn shipped() -> Self {
        ResidualCurrentRule {
            warning: Some(200.0),
            alarm: 300.0,
            clear: Some(250.0),
            hold: default_for(),
            rise: None,
            step: None,
        }
    }
}

fn default_for() -> Dur {
    Dur::from_secs(5)
}

/// `[temperature]` (°C at a cable or terminal).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemperatureRule {
    pub warning: Option<f64>,
    pub alarm: f64,
    #[serde(default)]
    pub clear: Option<f64>,
    #[serde(default = "default_for", rename = "for")]
    pub hold: Dur,
    #[serde(default)]
    pub rate_of_rise: Option<Trend>,
}

impl TemperatureRule {
    /// The shipped defaults.
    pub fn shipped() -> Self {
        TemperatureRule {
            warning: Some(60.0),
            alarm: 70.0,
            clear: None,
            hold: default_for(),
            rate_of_rise: None,
        }
    }
}

/// `[smoke]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmokeRule {
    #[serde(default = "yes")]
    pub alarm_flag: bool,
    #[serde(default = "default_smoke_alarm")]
    pub alarm: f64,
    #[serde(default)]
    pub clear: Option<f64>,
}

impl Default for SmokeRule {
    fn default() -> Self {
        SmokeRule {
            alarm_flag: true,
            alarm: default_smoke_alarm(),
            clear: None,
        }
    }
}

fn default_smoke_alarm() -> f64 {
    0.15
}

/// `[heartbeat]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRule {
    #[serde(default = "default_heartbeat")]
    pub mqtt: Dur,
    #[serde(default = "default_modbus_failures")]
    pub modbus_failures: u32,
}

impl Default for HeartbeatRule {
    fn default() -> Self {
        HeartbeatRule {
            mqtt: default_heartbeat(),
            modbus_failures: default_modbus_failures(),
        }
    }
}

fn default_heartbeat() -> Dur {
    Dur::from_secs(300)
}
fn default_modbus_failures() -> u32 {
    3
}

/// `[[override]]`: per-device tuning; any field left out keeps the kind's default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub device: String,
    #[serde(default)]
    pub residual_current: Option<PartialThreshold>,
    #[serde(default)]
    pub temperature: Option<PartialThreshold>,
    #[serde(default)]
    pub smoke: Option<PartialThreshold>,
    #[serde(default)]
    pub allow_nonstandard: bool,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The threshold fields an override may change.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialThreshold {
    pub warning: Option<f64>,
    pub alarm: Option<f64>,
    pub clear: Option<f64>,
    #[serde(rename = "for")]
    pub hold: Option<Dur>,
}

/// `routing.toml`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    #[serde(default)]
    pub roles: BTreeMap<Role, Vec<ChannelKind>>,
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub linkage: Linkage,
    #[serde(default)]
    pub rate_limit: RateLimit,
}

/// `[rate_limit]`: at most `max` notifications per person per `per` (first
/// alarms, escalations and all-clears always go out).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub max: u32,
    pub per: Dur,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            max: 6,
            per: Dur::from_secs(600),
        }
    }
}

/// `[linkage]`: linked sounders (联动). On a smoke or fire alarm of these
/// severities, the other detectors of the household (and of the neighbour
/// households) are told to sound, so a deaf or sleeping neighbour wakes too.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Linkage {
    #[serde(default = "default_sound_on")]
    pub sound_on: Vec<Severity>,
    /// How long the detectors sound.
    #[serde(default = "default_sound_secs")]
    pub secs: u32,
    /// Also the neighbour households' detectors.
    #[serde(default = "yes")]
    pub neighbours: bool,
}

impl Default for Linkage {
    fn default() -> Self {
        Linkage {
            sound_on: default_sound_on(),
            secs: default_sound_secs(),
            neighbours: true,
        }
    }
}

fn default_sound_on() -> Vec<Severity> {
    vec![Severity::Critical]
}
fn default_sound_secs() -> u32 {
    120
}

/// `[[route]]`: which roles hear of which kinds and severities.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub kinds: Vec<AlarmKind>,
    pub severities: Vec<Severity>,
    pub notify: Vec<Role>,
    #[serde(default)]
    pub escalate_after: Option<Dur>,
    #[serde(default)]
    pub escalate_to: Vec<Role>,
    #[serde(default)]
    pub repeat: Option<Dur>,
}

/// `[report]`: the targets the response-time report counts overdue answers
/// against. Optional; the defaults are 5 minutes to ack and 2 hours to resolve.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Time to ack beyond which an ack is overdue.
    #[serde(default = "default_ack_target")]
    pub ack_target: Dur,
    /// Time to resolve beyond which a resolution is overdue.
    #[serde(default = "default_resolve_target")]
    pub resolve_target: Dur,
    /// More false alarms than this on one day flag a home for a visit (GB 50440 practice).
    #[serde(default = "default_false_alarms_per_day")]
    pub false_alarms_per_day: u32,
    /// Per-role targets, e.g. `[report.roles.fire_brigade] ack_target = "1m"`.
    #[serde(default)]
    pub roles: BTreeMap<Role, RoleTargets>,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            ack_target: default_ack_target(),
            resolve_target: default_resolve_target(),
            false_alarms_per_day: default_false_alarms_per_day(),
            roles: BTreeMap::new(),
        }
    }
}

fn default_ack_target() -> Dur {
    Dur::from_secs(5 * 60)
}
fn default_resolve_target() -> Dur {
    Dur::from_secs(2 * 3600)
}
fn default_false_alarms_per_day() -> u32 {
    5
}

/// `[report.roles.ROLE]`: a role's own targets; a missing one keeps the global target.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleTargets {
    #[serde(default)]
    pub ack_target: Option<Dur>,
    #[serde(default)]
    pub resolve_target: Option<Dur>,
}

// ---- `[gb26875]` and the per-device `gb26875 = {…}` (checks: config/gb26875.rs) ----

/// `[gb26875]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gb26875Config {
    /// The centre, `tcp://host:port`.
    pub centre: CentreEndpoint,
    /// This box's address (six bytes, sent little-endian).
    pub address: u64,
    /// The centre's address.
    pub centre_address: u64,
    /// An empty send-data frame when nothing else was sent for this long.
    #[serde(default = "default_gb_heartbeat")]
    pub heartbeat: Dur,
    /// How long to wait for the centre's confirm.
    #[serde(default = "default_gb_timeout")]
    pub timeout: Dur,
    /// Resends after a deny or timeout before the link is reset.
    #[serde(default = "default_gb_retries")]
    pub retries: u32,
}

fn default_gb_heartbeat() -> Dur {
    Dur::from_secs(30)
}
fn default_gb_timeout() -> Dur {
    Dur::from_secs(10)
}
fn default_gb_retries() -> u32 {
    3
}

/// `tcp://host:port`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CentreEndpoint {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for CentreEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tcp://{}:{}", self.host, self.port)
    }
}

impl CentreEndpoint {
    /// Parses `tcp://host:port` (IPv6 hosts in brackets).
    pub fn parse(s: &str) -> Result<CentreEndpoint, String> {
        let rest = s
            .strip_prefix("tcp://")
            .ok_or_else(|| format!("centre {s:?} must be tcp://host:port"))?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("centre {s:?} has no port (write tcp://host:port)"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') {
            return Err(format!("centre {s:?} has no host"));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("centre {s:?}: port {port:?} is not 1-65535"))?;
        Ok(CentreEndpoint {
            host: host.to_string(),
            port,
        })
    }
}

impl<'de> Deserialize<'de> for CentreEndpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CentreEndpoint::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Per-device overrides: `gb26875 = { system_type = 1, system_address = 1,
/// component_type = 42, component_address = "10-2" }`; each field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gb26875Device {
    #[serde(default)]
    pub system_type: Option<u8>,
    #[serde(default)]
    pub system_address: Option<u8>,
    #[serde(default)]
    pub component_type: Option<u8>,
    #[serde(default, deserialize_with = "component_address")]
    pub component_address: Option<gb26875::ComponentAddress>,
}

/// Parses "zone-position", e.g. "10-2".
pub fn parse_component_address(s: &str) -> Result<gb26875::ComponentAddress, String> {
    let bad = || {
        format!(
            "component_address {s:?} must be \"zone-position\" with both 0-65535, e.g. \"10-2\""
        )
    };
    let (z, p) = s.split_once('-').ok_or_else(bad)?;
    Ok(gb26875::ComponentAddress {
        zone: z.trim().parse().map_err(|_| bad())?,
        position: p.trim().parse().map_err(|_| bad())?,
    })
}

fn component_address<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<gb26875::ComponentAddress>, D::Error> {
    let s = String::deserialize(d)?;
    parse_component_address(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}
