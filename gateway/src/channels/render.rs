//! Message rendering: pure functions from a [`Notification`] to what each
//! channel sends. No I/O, so every wording is unit-tested and benchmarked,
//! and dispatch can reuse [`webhook_json`] for the MQTT alarm events.
//!
//! Every message says, in this order (docs/contract.md §5): what (severity and kind, and
//! what happened to the alarm), where (compound, address, location in the
//! home), when (local time, UTC+8), the reading and its threshold, who lives
//! there, who else has been notified, and the acknowledgement link. The order
//! is the fire-station duty officer's: they must grasp an alarm in five
//! seconds, so the first line alone tells them how bad and what.

use crate::config::{Locale, WebhookFormat};
use crate::model::{AlarmKind, AlarmState, Condition, EpochMs, EventKind, Metric, Severity};
use crate::model::{AlarmView, ResidentInfo, Trigger};
use crate::notification::Notification;
use crate::rules::SignalCause;
use chrono::{DateTime, FixedOffset, Offset as _};
use serde_json::{json, Map, Value};

/// Most characters an SMS may carry (docs/contract.md §5); counted in chars, not bytes.
pub const SMS_MAX_CHARS: usize = 140;

/// WeCom group robots refuse markdown content over 4096 UTF-8 bytes.
const WECOM_MAX_BYTES: usize = 4096;

/// DingTalk robots take up to 20000 bytes of markdown; keep well below.
const DINGTALK_MAX_BYTES: usize = 18000;

/// Feishu robots refuse request bodies over 20 KB.
const FEISHU_MAX_BYTES: usize = 18000;

/// China Standard Time; the compounds are all in China and it has no DST.
const UTC8_SECS: i32 = 8 * 3600;

/// Email subject: `[gridwatch][{severity}] {kind} {address} — {localized tail}`.
///
/// The prefix uses wire names so mail filters and the acceptance tests can
/// match it in any locale; the tail is for people.
pub fn subject(n: &Notification) -> String {
    let a = &n.alarm;
    let loc = n.context.locale;
    let event = match event_word(loc, n.event) {
        Some(w) if loc == Locale::ZhCn => format!("（{w}）"),
        Some(w) => format!(" ({w})"),
        None => String::new(),
    };
    let mut s = format!(
        "[gridwatch][{}] {} {} — {}{}",
        a.severity.as_str(),
        a.kind.as_str(),
        a.address,
        kind_label(loc, a.kind),
        event
    );
    if !n.context.site_name.is_empty() {
        s.push(' ');
        s.push_str(&n.context.site_name);
    }
    one_line(&s)
}

/// The full message, for email and console: one fact per line, in docs/contract.md §5 order.
pub fn text(n: &Notification) -> String {
    let m = Message::of(n);
    let sep = label_sep(n.context.locale);
    let mut out = String::with_capacity(512);
    out.push_str(&m.headline);
    out.push('\n');
    for (label, value) in &m.lines {
        out.push_str(label);
        out.push_str(sep);
        out.push_str(value);
        out.push('\n');
    }
    if let Some((label, url)) = &m.link {
        out.push_str(label);
        out.push_str(sep);
        out.push_str(url);
        out.push('\n');
    }
    out.push_str(&m.footer);
    out.push('\n');
    out
}

/// The SMS text: at most [`SMS_MAX_CHARS`] chars, essentials first
/// (severity and kind, where, who lives there, time, reading), then the
/// acknowledgement link only when it fits whole (a cut link is useless).
pub fn sms(n: &Notification) -> String {
    let loc = n.context.locale;
    let a = &n.alarm;
    let mut head = format!(
        "{}{}{}",
        severity_tag(loc, a.severity),
        kind_label(loc, a.kind),
        trend_tag_suffix(loc, a)
    );
    if let Some(w) = event_word(loc, n.event) {
        match loc {
            Locale::ZhCn => head.push_str(&format!("[{w}]")),
            Locale::En => head.push_str(&format!(" ({w})")),
        }
    }
    let mut parts = vec![
        head,
        join_nonempty(&[&n.context.site_name, &a.address, &a.location], " "),
    ];
    let residents = sms_residents(loc, &n.context.residents);
    if !residents.is_empty() {
        parts.push(residents);
    }
    parts.push(local_time(alarm_time(n)).format("%H:%M").to_string());
    if let Some(v) = a.value {
        let mut r = format!("{}{}", num(v), a.unit);
        if let Some(t) = a.threshold {
            match loc {
                Locale::ZhCn => r.push_str(&format!("(阈值{})", num(t))),
                Locale::En => r.push_str(&format!(" (thr {})", num(t))),
            }
        }
        if let Some((delta, within_s)) = trend_figures(a.trigger) {
            let change = format!("{}{}", num(delta), a.unit);
            match loc {
                Locale::ZhCn => r.push_str(&format!("({}内升{change})", span(loc, within_s))),
                Locale::En => r.push_str(&format!(" (+{change} in {})", span(loc, within_s))),
            }
        }
        parts.push(r);
    }
    let (first_sep, sep) = match loc {
        Locale::ZhCn => ("：", "，"),
        Locale::En => (": ", "; "),
    };
    let mut essentials = parts[0].clone();
    for (i, p) in parts.iter().enumerate().skip(1) {
        essentials.push_str(if i == 1 { first_sep } else { sep });
        essentials.push_str(p);
    }
    let essentials = one_line(&essentials);
    if !n.ack_url.is_empty() {
        let link = match loc {
            Locale::ZhCn => format!("。确认：{}", n.ack_url),
            Locale::En => format!(". Ack: {}", n.ack_url),
        };
        if essentials.chars().count() + link.chars().count() <= SMS_MAX_CHARS {
            return essentials + &link;
        }
    }
    truncate_chars(&essentials, SMS_MAX_CHARS)
}

/// A role as people say it (住户, 网格员, …), e.g. after an actor's name.
pub fn role_label(locale: Locale, role: crate::model::Role) -> &'static str {
    use crate::model::Role;
    match (locale, role) {
        (Locale::ZhCn, Role::Resident) => "住户",
        (Locale::ZhCn, Role::GridWorker) => "网格员",
        (Locale::ZhCn, Role::Director) => "社区书记",
        (Locale::ZhCn, Role::FireBrigade) => "消防中队",
        (Locale::ZhCn, Role::Family) => "家属",
        (Locale::ZhCn, Role::Neighbour) => "邻居",
        (Locale::En, Role::Resident) => "resident",
        (Locale::En, Role::GridWorker) => "grid worker",
        (Locale::En, Role::Director) => "director",
        (Locale::En, Role::FireBrigade) => "fire brigade",
        (Locale::En, Role::Family) => "family",
        (Locale::En, Role::Neighbour) => "neighbour",
    }
}

/// What a call reads aloud: the SMS text without the link (a URL read out
/// is noise), then what the keys do, ending on "按1确认" / "press 1".
pub fn voice(n: &Notification) -> String {
    let mut quiet = n.clone();
    quiet.ack_url.clear();
    let text = sms(&quiet);
    let text = text.trim_end_matches(['。', '.']);
    match n.context.locale {
        Locale::ZhCn => format!("{text}。误报或做饭请按2。按1确认。"),
        Locale::En => {
            format!("{text}. Press 2 for a false alarm or cooking. Press 1 to acknowledge.")
        }
    }
}

/// The webhook body of `format = "json"` (docs/contract.md §5), also the MQTT alarm-event payload.
///
/// Built field by field rather than by serialising the structs so the wire
/// shape is the one written in the spec, whatever the internal types become.
/// `alarm` carries every [`AlarmView`] field (`condition` is an addition to the spec's example).
pub fn webhook_json(n: &Notification) -> Value {
    let r = &n.recipient;
    json!({
        "event": n.event.as_str(),
        "delivery_id": n.delivery_id,
        "alarm": alarm_json(&n.alarm),
        "recipient": {
            "contact_id": r.contact_id,
            "role": r.role.as_str(),
            "name": r.name,
        },
        "ack_url": n.ack_url,
    })
}

/// The webhook body in the configured format; the chat-robot formats carry the same content as [`text`].
///
/// - `wecom`: 企业微信群机器人 markdown message, `{"msgtype":"markdown","markdown":{"content":…}}`,
///   content at most 4096 bytes — following 企业微信开发者中心 «群机器人配置说明»
///   (developer.work.weixin.qq.com/document/path/91770).
/// - `dingtalk`: 钉钉自定义机器人 markdown message, `{"msgtype":"markdown","markdown":{"title":…,"text":…}}`
///   — following 钉钉开放平台 «自定义机器人发送群消息» / «消息类型»
///   (open.dingtalk.com/document/orgapp/custom-robots-send-group-messages).
/// - `feishu`: 飞书自定义机器人 text message, `{"msg_type":"text","content":{"text":…}}`
///   — following 飞书开放平台 «自定义机器人使用指南»
///   (open.feishu.cn/document/client-docs/bot-v3/add-custom-bot).
pub fn webhook_body(n: &Notification, format: WebhookFormat) -> Value {
    robot_body(n, format, &RobotExtras::default())
}

/// What a group-robot post adds to the message: the keyword its security
/// setting requires, and who is @-mentioned.
#[derive(Debug, Clone, Copy, Default)]
pub struct RobotExtras<'a> {
    /// Put at the very start of the text (自定义关键词).
    pub keyword: Option<&'a str>,
    /// Mainland mobiles (11 digits) to @-mention.
    pub mobiles: &'a [String],
    /// @-mention everybody in the group.
    pub all: bool,
}

/// [`webhook_body`] with a keyword and mentions, as each platform documents them:
/// DingTalk `at.atMobiles` plus `@<mobile>` in the markdown text (a mention
/// not written in the text is not shown); WeCom `mentioned_mobile_list`,
/// which only `text` messages honour, so a post that mentions is a text
/// message; Feishu `<at user_id="all">` (mentioning one person needs their
/// Feishu user id, which a phone ledger does not have).
pub fn robot_body(n: &Notification, format: WebhookFormat, x: &RobotExtras) -> Value {
    let kw = x.keyword.map(|k| format!("{k} ")).unwrap_or_default();
    match format {
        WebhookFormat::Json => webhook_json(n),
        WebhookFormat::Wecom if x.all || !x.mobiles.is_empty() => {
            let mut list: Vec<String> = x.mobiles.to_vec();
            if x.all {
                list.push("@all".to_string());
            }
            json!({
                "msgtype": "text",
                "text": {
                    "content": truncate_bytes(&format!("{kw}{}", text(n)), WECOM_MAX_BYTES),
                    "mentioned_mobile_list": list,
                },
            })
        }
        WebhookFormat::Wecom => json!({
            "msgtype": "markdown",
            "markdown": {
                "content": truncate_bytes(&format!("{kw}{}", markdown(n, "\n")), WECOM_MAX_BYTES),
            },
        }),
        WebhookFormat::Dingtalk => {
            let ats: String = x.mobiles.iter().map(|m| format!(" @{m}")).collect();
            let mut body = truncate_bytes(
                &format!("{kw}{}", markdown(n, "\n\n")),
                DINGTALK_MAX_BYTES - ats.len(),
            );
            if !ats.is_empty() {
                body.push_str("\n\n");
                body.push_str(ats.trim_start());
            }
            json!({
                "msgtype": "markdown",
                "markdown": {
                    "title": format!("{kw}{}", Message::of(n).headline),
                    "text": body,
                },
                "at": { "atMobiles": x.mobiles, "isAtAll": x.all },
            })
        }
        WebhookFormat::Feishu => {
            let at = if x.all {
                "<at user_id=\"all\">所有人</at> "
            } else {
                ""
            };
            json!({
                "msg_type": "text",
                "content": {
                    "text": truncate_bytes(&format!("{kw}{at}{}", text(n)), FEISHU_MAX_BYTES),
                },
            })
        }
    }
}

/// One robot post for several events that queued beyond the robot's
/// budget: a headline with the count, then one line per event, most
/// severe first, each naming its alarm (kind, address, location, time, event)
/// and its ack link, so nothing in the summary is anonymous.
pub fn robot_summary(items: &[&Notification], format: WebhookFormat, x: &RobotExtras) -> Value {
    let mut sorted: Vec<&Notification> = items.to_vec();
    sorted.sort_by(|a, b| {
        b.alarm
            .severity
            .cmp(&a.alarm.severity)
            .then(a.created.cmp(&b.created))
    });
    let loc = sorted.first().map_or(Locale::ZhCn, |n| n.context.locale);
    let zh = loc == Locale::ZhCn;
    let title = if zh {
        format!("【汇总】{}条告警消息", sorted.len())
    } else {
        format!("[summary] {} alarm messages", sorted.len())
    };
    let lines: Vec<String> = sorted
        .iter()
        .map(|n| {
            let a = &n.alarm;
            let what = event_word(loc, n.event)
                .map(|w| {
                    if zh {
                        format!("[{w}]")
                    } else {
                        format!(" ({w})")
                    }
                })
                .unwrap_or_default();
            format!(
                "{}{}{what} {} {} {} · {} · {}",
                severity_tag(loc, a.severity),
                kind_label(loc, a.kind),
                one_line(&n.context.site_name),
                one_line(&a.address),
                one_line(&a.location),
                local_time(alarm_time(n)).format("%H:%M:%S"),
                n.ack_url,
            )
        })
        .collect();
    let kw = x.keyword.map(|k| format!("{k} ")).unwrap_or_default();
    let plain = format!("{kw}{title}\n{}", lines.join("\n"));
    match format {
        WebhookFormat::Json => json!({ "summary": title, "lines": lines }),
        WebhookFormat::Wecom => {
            let mut list: Vec<String> = x.mobiles.to_vec();
            if x.all {
                list.push("@all".into());
            }
            json!({
                "msgtype": "text",
                "text": {
                    "content": truncate_bytes(&plain, WECOM_MAX_BYTES),
                    "mentioned_mobile_list": list,
                },
            })
        }
        WebhookFormat::Dingtalk => {
            let ats: String = x.mobiles.iter().map(|m| format!(" @{m}")).collect();
            let md = format!("{kw}**{title}**\n\n{}", lines.join("\n\n"));
            let mut text = truncate_bytes(&md, DINGTALK_MAX_BYTES - ats.len());
            if !ats.is_empty() {
                text.push_str("\n\n");
                text.push_str(ats.trim_start());
            }
            json!({
                "msgtype": "markdown",
                "markdown": { "title": format!("{kw}{title}"), "text": text },
                "at": { "atMobiles": x.mobiles, "isAtAll": x.all },
            })
        }
        WebhookFormat::Feishu => {
            let at = if x.all {
                "<at user_id=\"all\">所有人</at> "
            } else {
                ""
            };
            json!({
                "msg_type": "text",
                "content": {
                    "text": truncate_bytes(&format!("{at}{plain}"), FEISHU_MAX_BYTES),
                },
            })
        }
    }
}

/// The named fields an SMS template or a provider's template variables are
/// made of (`[channels.sms] body` / `params`). Short values, because
/// providers cap each variable (Aliyun 35 chars, Tencent 6–12 for some
/// template types); `ack_token` is the token alone, for templates whose
/// approved text holds the link's fixed base.
pub fn sms_fields(n: &Notification, phone: &str) -> Vec<(&'static str, String)> {
    let a = &n.alarm;
    let loc = n.context.locale;
    let resident = n
        .context
        .residents
        .first()
        .map(|r| {
            let mut s = one_line(&r.name);
            if let Some(age) = r.age {
                s.push_str(&age.to_string());
                s.push_str(if loc == Locale::ZhCn { "岁" } else { "y" });
            }
            if r.lives_alone {
                s.push_str(if loc == Locale::ZhCn {
                    "独居"
                } else {
                    " alone"
                });
            }
            s
        })
        .unwrap_or_default();
    let token = n
        .ack_url
        .rsplit_once("/ack/")
        .map(|(_, t)| t.to_string())
        .unwrap_or_default();
    vec![
        ("phone", phone.to_string()),
        ("text", sms(n)),
        ("kind", a.kind.as_str().to_string()),
        ("kind_zh", kind_label(Locale::ZhCn, a.kind).to_string()),
        ("severity", severity_label(loc, a.severity).to_string()),
        ("address", one_line(&a.address)),
        ("location", one_line(&a.location)),
        ("resident", resident),
        (
            "time",
            local_time(alarm_time(n)).format("%m-%d %H:%M").to_string(),
        ),
        ("value", a.value.map(num).unwrap_or_default()),
        ("unit", one_line(&a.unit)),
        ("ack_token", token),
        ("ack_url", n.ack_url.clone()),
        ("site_name", one_line(&n.context.site_name)),
    ]
}

/// Names of [`sms_fields`], for checking a configured template at load.
pub const SMS_FIELDS: &[&str] = &[
    "phone",
    "text",
    "kind",
    "kind_zh",
    "severity",
    "address",
    "location",
    "resident",
    "time",
    "value",
    "unit",
    "ack_token",
    "ack_url",
    "site_name",
];

/// Human name of a severity, e.g. `紧急` / `CRITICAL`.
pub fn severity_label(locale: Locale, s: Severity) -> &'static str {
    match (locale, s) {
        (Locale::ZhCn, Severity::Info) => "提示",
        (Locale::ZhCn, Severity::Warning) => "预警",
        (Locale::ZhCn, Severity::Alarm) => "告警",
        (Locale::ZhCn, Severity::Critical) => "紧急",
        (Locale::En, Severity::Info) => "INFO",
        (Locale::En, Severity::Warning) => "WARNING",
        (Locale::En, Severity::Alarm) => "ALARM",
        (Locale::En, Severity::Critical) => "CRITICAL",
    }
}

/// Human name of an alarm kind, e.g. `烟感报警` / `Smoke alarm`.
pub fn kind_label(locale: Locale, k: AlarmKind) -> &'static str {
    match (locale, k) {
        (Locale::ZhCn, AlarmKind::Smoke) => "烟感报警",
        (Locale::ZhCn, AlarmKind::ResidualCurrent) => "剩余电流报警",
        (Locale::ZhCn, AlarmKind::Temperature) => "温度报警",
        (Locale::ZhCn, AlarmKind::FireConfirmed) => "确认火警",
        (Locale::ZhCn, AlarmKind::DeviceFault) => "设备故障",
        (Locale::ZhCn, AlarmKind::LowBattery) => "电池电量低",
        (Locale::ZhCn, AlarmKind::Tamper) => "防拆报警",
        (Locale::ZhCn, AlarmKind::Offline) => "设备离线",
        (Locale::En, AlarmKind::Smoke) => "Smoke alarm",
        (Locale::En, AlarmKind::ResidualCurrent) => "Residual current alarm",
        (Locale::En, AlarmKind::Temperature) => "Temperature alarm",
        (Locale::En, AlarmKind::FireConfirmed) => "Fire confirmed",
        (Locale::En, AlarmKind::DeviceFault) => "Device fault",
        (Locale::En, AlarmKind::LowBattery) => "Low battery",
        (Locale::En, AlarmKind::Tamper) => "Tamper alarm",
        (Locale::En, AlarmKind::Offline) => "Device offline",
    }
}

/// What happened to the alarm, short; `None` for `alarm.raised` (the kind already says it).
pub fn event_word(locale: Locale, e: EventKind) -> Option<&'static str> {
    let w = match (locale, e) {
        (_, EventKind::Raised) => return None,
        (Locale::ZhCn, EventKind::Escalated) => "升级",
        (Locale::ZhCn, EventKind::Reminder) => "提醒：仍未确认",
        (Locale::ZhCn, EventKind::Acked) => "已确认",
        (Locale::ZhCn, EventKind::Cleared) => "传感器已恢复正常",
        (Locale::ZhCn, EventKind::Resolved) => "已处理",
        (Locale::ZhCn, EventKind::Verified) => "已核查",
        (Locale::En, EventKind::Escalated) => "escalated",
        (Locale::En, EventKind::Reminder) => "reminder: still not acknowledged",
        (Locale::En, EventKind::Acked) => "acknowledged",
        (Locale::En, EventKind::Cleared) => "sensor back to normal",
        (Locale::En, EventKind::Resolved) => "resolved",
        (Locale::En, EventKind::Verified) => "verified",
    };
    Some(w)
}

/// The message as labelled facts, rendered to plain text or markdown.
struct Message {
    headline: String,
    lines: Vec<(&'static str, String)>,
    link: Option<(&'static str, String)>,
    footer: String,
}

impl Message {
    fn of(n: &Notification) -> Message {
        let loc = n.context.locale;
        let zh = loc == Locale::ZhCn;
        let a = &n.alarm;
        let mut lines = Vec::with_capacity(9);
        lines.extend(event_lines(n));
        let where_sep = if zh { " " } else { ", " };
        lines.push((
            if zh { "地点" } else { "Where" },
            join_nonempty(&[&n.context.site_name, &a.address, &a.location], where_sep),
        ));
        lines.push((if zh { "时间" } else { "When" }, when(n)));
        if let Some(r) = reading(loc, a, n.context.peak, n.context.count) {
            lines.push((if zh { "读数" } else { "Reading" }, r));
        }
        lines.push((
            if zh { "住户" } else { "Residents" },
            residents(loc, &n.context.residents),
        ));
        let others = if n.context.others_notified.is_empty() {
            (if zh {
                "无（仅通知您）"
            } else {
                "nobody else"
            })
            .to_string()
        } else {
            n.context.others_notified.join(if zh { "、" } else { ", " })
        };
        lines.push((if zh { "已通知" } else { "Also notified" }, others));
        let link = (!n.ack_url.is_empty()).then(|| {
            let needs_ack = matches!(
                n.event,
                EventKind::Raised | EventKind::Escalated | EventKind::Reminder | EventKind::Cleared
            ) && a.state == AlarmState::ActiveUnacked;
            let label = match (zh, needs_ack) {
                (true, true) => "立即确认",
                (true, false) => "详情",
                (false, true) => "Acknowledge",
                (false, false) => "Details",
            };
            (label, n.ack_url.clone())
        });
        let footer = if zh {
            format!("报警编号 {} · 设备 {}", a.id, a.device_id)
        } else {
            format!("Alarm {} · device {}", a.id, a.device_id)
        };
        Message {
            headline: headline(n),
            lines: lines.into_iter().map(|(l, v)| (l, one_line(&v))).collect(),
            link,
            footer: one_line(&footer),
        }
    }
}

/// `【紧急】烟感报警 升级` / `[CRITICAL] Smoke alarm — escalated`.
fn headline(n: &Notification) -> String {
    let loc = n.context.locale;
    let a = &n.alarm;
    let mut h = format!(
        "{}{}{}",
        severity_tag(loc, a.severity),
        kind_label(loc, a.kind),
        trend_tag_suffix(loc, a)
    );
    if let Some(w) = event_word(loc, n.event) {
        h.push_str(if loc == Locale::ZhCn { " " } else { " — " });
        h.push_str(w);
    }
    if n.event == EventKind::Cleared {
        h.push_str(match loc {
            Locale::ZhCn => "（报警仍需人工处理）",
            Locale::En => " (the alarm still needs a person to resolve it)",
        });
    }
    one_line(&h)
}

fn severity_tag(loc: Locale, s: Severity) -> String {
    match loc {
        Locale::ZhCn => format!("【{}】", severity_label(loc, s)),
        Locale::En => format!("[{}] ", severity_label(loc, s)),
    }
}

/// Who acted and how the alarm ended, for acked/resolved/verified events.
fn event_lines(n: &Notification) -> Vec<(&'static str, String)> {
    let zh = n.context.locale == Locale::ZhCn;
    let c = &n.context;
    let mut out = Vec::new();
    let actor_label = match n.event {
        EventKind::Acked => Some(if zh { "确认人" } else { "Acknowledged by" }),
        EventKind::Resolved => Some(if zh { "处理人" } else { "Resolved by" }),
        EventKind::Verified => Some(if zh { "核查人" } else { "Verified by" }),
        _ => None,
    };
    if let (Some(label), Some(actor)) = (actor_label, &c.actor) {
        out.push((label, actor.clone()));
    }
    if n.event == EventKind::Resolved && (c.cause.is_some() || c.note.is_some()) {
        let cause = c.cause.as_deref().map(|x| cause_label(n.context.locale, x));
        let note = c.note.as_deref().filter(|s| !s.is_empty());
        let v = match (cause, note) {
            (Some(c), Some(note)) => format!("{c}{}{note}", if zh { "；" } else { "; " }),
            (Some(c), None) => c.to_string(),
            (None, Some(note)) => note.to_string(),
            (None, None) => String::new(),
        };
        if !v.is_empty() {
            out.push((if zh { "处理结果" } else { "Outcome" }, v));
        }
    }
    out
}

/// Translates a resolution cause's wire name; unknown causes are shown as given.
fn cause_label(loc: Locale, cause: &str) -> &str {
    let Some(c) = crate::model::Cause::from_name(cause) else {
        return cause;
    };
    let (zh, en) = match c {
        crate::model::Cause::Fire => ("火灾", "fire"),
        crate::model::Cause::ElectricalFault => ("电气故障", "electrical fault"),
        crate::model::Cause::Cooking => ("烹饪油烟", "cooking"),
        crate::model::Cause::FalseAlarm => ("误报", "false alarm"),
        crate::model::Cause::Test => ("测试", "test"),
        crate::model::Cause::Other => ("其他", "other"),
    };
    if loc == Locale::ZhCn {
        zh
    } else {
        en
    }
}

/// When the alarm opened, in local time; other events add when this update happened.
fn when(n: &Notification) -> String {
    let opened = local_time(alarm_time(n));
    let mut s = opened.format("%Y-%m-%d %H:%M:%S").to_string();
    if n.context.locale == Locale::En {
        s.push_str(" (UTC+8)");
    }
    if n.event != EventKind::Raised && n.created > 0 {
        let now = local_time(n.created);
        let fmt = if now.date_naive() == opened.date_naive() {
            "%H:%M:%S"
        } else {
            "%Y-%m-%d %H:%M:%S"
        };
        let t = now.format(fmt).to_string();
        match n.context.locale {
            Locale::ZhCn => s.push_str(&format!("（本次通知 {t}）")),
            Locale::En => s.push_str(&format!(", this update {t}")),
        }
    }
    s
}

/// The alarm's opening time: `opened_at`, else the reading time, else the event time.
fn alarm_time(n: &Notification) -> EpochMs {
    DateTime::parse_from_rfc3339(&n.alarm.opened_at)
        .map(|t| t.timestamp_millis())
        .ok()
        .or((n.context.reading_ts > 0).then_some(n.context.reading_ts))
        .unwrap_or(n.created)
}

fn local_time(ms: EpochMs) -> DateTime<FixedOffset> {
    // east_opt only fails outside ±24 h; UTC is the harmless fallback.
    let tz = FixedOffset::east_opt(UTC8_SECS).unwrap_or(chrono::Utc.fix());
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&tz)
}

/// `烟雾浓度 0.21 dB/m（阈值 0.15）`, with peak and repeat count when the condition fired again.
fn reading(loc: Locale, a: &AlarmView, peak: Option<f64>, count: u32) -> Option<String> {
    let v = a.value?;
    let zh = loc == Locale::ZhCn;
    let mut s = format!("{} {}", metric_label(loc, a), with_unit(v, &a.unit));
    if let Some(t) = a.threshold {
        if zh {
            s.push_str(&format!("（阈值 {}）", num(t)));
        } else {
            s.push_str(&format!(" (threshold {})", num(t)));
        }
    }
    if let Some(t) = trend_phrase(loc, a) {
        s.push_str(if zh { "，" } else { ", " });
        s.push_str(&t);
    }
    let peak = peak.filter(|p| *p > v);
    if peak.is_some() || count > 1 {
        let mut extra = Vec::new();
        if let Some(p) = peak {
            extra.push(if zh {
                format!("峰值 {}", with_unit(p, &a.unit))
            } else {
                format!("peak {}", with_unit(p, &a.unit))
            });
        }
        if count > 1 {
            extra.push(if zh {
                format!("共触发 {count} 次")
            } else {
                format!("fired {count} times")
            });
        }
        if zh {
            s.push_str(&format!("，{}", extra.join("，")));
        } else {
            s.push_str(&format!("; {}", extra.join(", ")));
        }
    }
    Some(s)
}

/// The measured quantity's name, from the unit (a fire_confirmed alarm may carry smoke or temperature).
fn metric_label(loc: Locale, a: &AlarmView) -> &'static str {
    let metric = Metric::ALL
        .into_iter()
        .find(|m| m.unit() == a.unit)
        .or(match a.kind {
            AlarmKind::Smoke => Some(Metric::SmokeDbM),
            AlarmKind::ResidualCurrent => Some(Metric::ResidualCurrentMa),
            AlarmKind::Temperature => Some(Metric::TemperatureC),
            AlarmKind::LowBattery => Some(Metric::BatteryPct),
            _ => None,
        });
    let zh = loc == Locale::ZhCn;
    match metric {
        Some(Metric::SmokeDbM) => {
            if zh {
                "烟雾浓度"
            } else {
                "smoke density"
            }
        }
        Some(Metric::ResidualCurrentMa) => {
            if zh {
                "剩余电流"
            } else {
                "residual current"
            }
        }
        Some(Metric::TemperatureC) => {
            if zh {
                "温度"
            } else {
                "temperature"
            }
        }
        Some(Metric::BatteryPct) => {
            if zh {
                "电池电量"
            } else {
                "battery"
            }
        }
        Some(Metric::RssiDbm) => {
            if zh {
                "信号强度"
            } else {
                "signal"
            }
        }
        None => {
            if zh {
                "读数"
            } else {
                "value"
            }
        }
    }
}

fn with_unit(v: f64, unit: &str) -> String {
    if unit.is_empty() {
        num(v)
    } else {
        format!("{} {unit}", num(v))
    }
}

/// A reading as people write it: at most three decimals, no trailing zeros (`0.21`, `320`).
fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// `张奶奶，82岁，独居` / `张奶奶, age 82, lives alone`; several residents separated.
fn residents(loc: Locale, rs: &[ResidentInfo]) -> String {
    let zh = loc == Locale::ZhCn;
    if rs.is_empty() {
        return (if zh { "未登记" } else { "not registered" }).to_string();
    }
    let one = |r: &ResidentInfo| {
        let mut parts = vec![r.name.clone()];
        if let Some(age) = r.age {
            parts.push(if zh {
                format!("{age}岁")
            } else {
                format!("age {age}")
            });
        }
        if r.lives_alone {
            parts.push((if zh { "独居" } else { "lives alone" }).to_string());
        }
        parts.join(if zh { "，" } else { ", " })
    };
    rs.iter()
        .map(one)
        .collect::<Vec<_>>()
        .join(if zh { "；" } else { "; " })
}

/// `张奶奶 独居 82岁`: what a responder needs from the residents, tersely.
fn sms_residents(loc: Locale, rs: &[ResidentInfo]) -> String {
    let zh = loc == Locale::ZhCn;
    let one = |r: &ResidentInfo| {
        let mut parts = vec![r.name.clone()];
        if r.lives_alone {
            parts.push((if zh { "独居" } else { "lives alone" }).to_string());
        }
        if let Some(age) = r.age {
            parts.push(if zh {
                format!("{age}岁")
            } else {
                format!("{age}y")
            });
        }
        parts.join(" ")
    };
    rs.iter()
        .map(one)
        .collect::<Vec<_>>()
        .join(if zh { "、" } else { ", " })
}

/// The `alarm` object of the webhook body.
fn alarm_json(a: &AlarmView) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), a.id.clone().into());
    m.insert("site".into(), a.site.clone().into());
    m.insert("kind".into(), a.kind.as_str().into());
    m.insert("severity".into(), a.severity.as_str().into());
    m.insert("state".into(), a.state.as_str().into());
    m.insert(
        "condition".into(),
        match a.condition {
            Condition::Firing => "firing",
            Condition::Cleared => "cleared",
        }
        .into(),
    );
    m.insert("device_id".into(), a.device_id.clone().into());
    m.insert("household_id".into(), a.household_id.clone().into());
    m.insert("address".into(), a.address.clone().into());
    m.insert("location".into(), a.location.clone().into());
    m.insert("opened_at".into(), a.opened_at.clone().into());
    m.insert("value".into(), a.value.map_or(Value::Null, Value::from));
    m.insert(
        "threshold".into(),
        a.threshold.map_or(Value::Null, Value::from),
    );
    m.insert("unit".into(), a.unit.clone().into());
    if let Some(t) = &a.trigger {
        m.insert("trigger".into(), trigger_json(t));
    }
    Value::Object(m)
}

/// `alarm.trigger`: `{"rule":"rise","delta":120.0,"within_s":600.0}`; figures only for trends.
fn trigger_json(t: &Trigger) -> Value {
    let mut m = Map::new();
    m.insert("rule".into(), t.rule.as_str().into());
    if let Some(d) = t.delta {
        m.insert("delta".into(), d.into());
    }
    if let Some(w) = t.within_s {
        m.insert("within_s".into(), w.into());
    }
    Value::Object(m)
}

/// A trend trigger's observed change and window, when it has both.
fn trend_figures(t: Option<Trigger>) -> Option<(f64, f64)> {
    let t = t.filter(|t| t.is_trend())?;
    Some((t.delta?, t.within_s?))
}

/// The trend rule's name for people: `缓慢上升` / `slow rise`.
pub fn trend_label(loc: Locale, rule: SignalCause) -> Option<&'static str> {
    let zh = loc == Locale::ZhCn;
    Some(match rule {
        SignalCause::Rise => {
            if zh {
                "缓慢上升"
            } else {
                "slow rise"
            }
        }
        SignalCause::Step => {
            if zh {
                "突变"
            } else {
                "sudden step"
            }
        }
        SignalCause::RateOfRise => {
            if zh {
                "温升过快"
            } else {
                "rapid rise"
            }
        }
        _ => return None,
    })
}

/// `（缓慢上升）` / ` (slow rise)` after the kind when a trend fired the alarm; else empty.
fn trend_tag_suffix(loc: Locale, a: &AlarmView) -> String {
    match a.trigger.and_then(|t| trend_label(loc, t.rule)) {
        Some(l) if loc == Locale::ZhCn => format!("（{l}）"),
        Some(l) => format!(" ({l})"),
        None => String::new(),
    }
}

/// What the trend saw: `10分钟内上升 120 mA（缓慢上升）` /
/// `rose 120 mA within 10 min (slow rise)`. The reading alone ("37 °C") looks
/// harmless; the change is why it is an alarm.
fn trend_phrase(loc: Locale, a: &AlarmView) -> Option<String> {
    let t = a.trigger?;
    let label = trend_label(loc, t.rule)?;
    let (delta, within_s) = trend_figures(Some(t))?;
    let change = with_unit(delta, &a.unit);
    let within = span(loc, within_s);
    let step = t.rule == SignalCause::Step;
    Some(match loc {
        Locale::ZhCn => {
            let verb = if step { "突增" } else { "上升" };
            format!("{within}内{verb} {change}（{label}）")
        }
        Locale::En => {
            let verb = if step { "jumped" } else { "rose" };
            format!("{verb} {change} within {within} ({label})")
        }
    })
}

/// A rule window for people: `1小时`, `10分钟`, `2秒` / `1 h`, `10 min`, `2 s`.
fn span(loc: Locale, secs: f64) -> String {
    let zh = loc == Locale::ZhCn;
    let whole = secs.fract() == 0.0 && secs >= 1.0;
    let (n, unit) = if whole && secs % 3600.0 == 0.0 {
        (secs / 3600.0, if zh { "小时" } else { " h" })
    } else if whole && secs % 60.0 == 0.0 {
        (secs / 60.0, if zh { "分钟" } else { " min" })
    } else {
        (secs, if zh { "秒" } else { " s" })
    };
    format!("{}{unit}", num(n))
}

/// Markdown for the chat robots: bold headline and labels, the link as a link.
fn markdown(n: &Notification, line_sep: &str) -> String {
    let m = Message::of(n);
    let sep = label_sep(n.context.locale);
    let mut out = format!("**{}**", m.headline);
    for (label, value) in &m.lines {
        out.push_str(line_sep);
        out.push_str(&format!("**{label}**{sep}{value}"));
    }
    if let Some((label, url)) = &m.link {
        out.push_str(line_sep);
        out.push_str(&format!("[{label}]({url})"));
    }
    out.push_str(line_sep);
    out.push_str(&m.footer);
    out
}

fn label_sep(loc: Locale) -> &'static str {
    match loc {
        Locale::ZhCn => "：",
        Locale::En => ": ",
    }
}

fn join_nonempty(parts: &[&str], sep: &str) -> String {
    parts
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(sep)
}

/// Control characters (newlines from a ledger cell, say) become spaces, so
/// one fact stays on one line and no header can be injected.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Cuts to at most `max` chars, ending with `…` when something was cut.
fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Cuts to at most `max` UTF-8 bytes on a char boundary.
fn truncate_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{Recipient, Role};
    use crate::notification::MessageContext;

    /// The docs/contract.md §5 example alarm: smoke, critical, 张奶奶 82 living alone.
    pub(crate) fn smoke(locale: Locale) -> Notification {
        Notification {
            delivery_id: "01JDDELIVERY0000000000001".into(),
            event: EventKind::Raised,
            alarm: AlarmView {
                id: "01JDALARM000000000000000A".into(),
                site: "xihu-longjing".into(),
                kind: AlarmKind::Smoke,
                severity: Severity::Critical,
                state: AlarmState::ActiveUnacked,
                condition: Condition::Firing,
                device_id: "smk-3-2-501-k".into(),
                household_id: "h-3-2-501".into(),
                address: "3幢2单元501室".into(),
                location: "厨房".into(),
                opened_at: "2026-11-24T10:00:00.123Z".into(),
                value: Some(0.21),
                threshold: Some(0.15),
                unit: "dB/m".into(),
                trigger: None,
            },
            recipient: Recipient {
                contact_id: "c-xihu-119".into(),
                role: Role::FireBrigade,
                name: "西湖消防中队值班室".into(),
            },
            channel: crate::model::ChannelKind::Webhook,
            address: "fire119".into(),
            ack_url: "http://127.0.0.1:8080/ack/tok123".into(),
            context: MessageContext {
                locale,
                site_name: "龙井苑小区".into(),
                residents: vec![ResidentInfo {
                    name: "张奶奶".into(),
                    lives_alone: true,
                    age: Some(82),
                }],
                others_notified: vec!["王芳(网格员)".into(), "李明(社区书记)".into()],
                reading_ts: 1_795_514_400_123,
                peak: Some(0.21),
                count: 1,
                actor: None,
                cause: None,
                note: None,
                robot_mentions: Vec::new(),
                sounder: None,
            },
            created: 1_795_514_400_200,
        }
    }

    /// Asserts that each needle occurs in `hay`, each after the previous one.
    fn assert_in_order(hay: &str, needles: &[&str]) {
        let mut from = 0;
        for n in needles {
            match hay[from..].find(n) {
                Some(i) => from += i + n.len(),
                None => panic!("{n:?} missing or out of order in:\n{hay}"),
            }
        }
    }

    #[test]
    fn zh_text_says_everything_in_order() {
        let t = text(&smoke(Locale::ZhCn));
        assert!(t.starts_with("【紧急】烟感报警\n"), "{t}");
        assert_in_order(
            &t,
            &[
                "【紧急】",
                "烟感报警",
                "龙井苑小区",
                "3幢2单元501室",
                "厨房",
                "2026-11-24 18:00:00",
                "烟雾浓度 0.21 dB/m（阈值 0.15）",
                "张奶奶",
                "82岁",
                "独居",
                "王芳(网格员)、李明(社区书记)",
                "http://127.0.0.1:8080/ack/tok123",
            ],
        );
    }

    #[test]
    fn en_text_says_everything_in_order() {
        let t = text(&smoke(Locale::En));
        assert!(t.starts_with("[CRITICAL] Smoke alarm\n"), "{t}");
        assert_in_order(
            &t,
            &[
                "CRITICAL",
                "Smoke alarm",
                "龙井苑小区",
                "3幢2单元501室",
                "厨房",
                "2026-11-24 18:00:00",
                "0.21 dB/m (threshold 0.15)",
                "张奶奶",
                "age 82",
                "lives alone",
                "王芳(网格员), 李明(社区书记)",
                "http://127.0.0.1:8080/ack/tok123",
            ],
        );
    }

    #[test]
    fn subject_prefix_uses_wire_names() {
        let s = subject(&smoke(Locale::ZhCn));
        assert_eq!(
            s,
            "[gridwatch][critical] smoke 3幢2单元501室 — 烟感报警 龙井苑小区"
        );
        let mut n = smoke(Locale::En);
        n.event = EventKind::Acked;
        let s = subject(&n);
        assert!(
            s.starts_with("[gridwatch][critical] smoke 3幢2单元501室 — Smoke alarm (acknowledged)"),
            "{s}"
        );
    }

    #[test]
    fn subject_has_no_line_breaks_from_ledger_data() {
        let mut n = smoke(Locale::ZhCn);
        n.alarm.address = "3幢\r\nBcc: x@evil.example".into();
        assert!(!subject(&n).contains(['\r', '\n']));
    }

    #[test]
    fn every_event_has_its_wording() {
        let cases = [
            (EventKind::Raised, "【紧急】烟感报警\n", "Smoke alarm\n"),
            (EventKind::Escalated, "升级", "escalated"),
            (
                EventKind::Reminder,
                "提醒：仍未确认",
                "still not acknowledged",
            ),
            (EventKind::Acked, "已确认", "acknowledged"),
            (
                EventKind::Cleared,
                "传感器已恢复正常（报警仍需人工处理）",
                "sensor back to normal",
            ),
            (EventKind::Resolved, "已处理", "resolved"),
            (EventKind::Verified, "已核查", "verified"),
        ];
        for (event, zh, en) in cases {
            for (loc, word) in [(Locale::ZhCn, zh), (Locale::En, en)] {
                let mut n = smoke(loc);
                n.event = event;
                let t = text(&n);
                let first = t.lines().next().unwrap_or_default().to_string() + "\n";
                assert!(first.contains(word), "{event:?} {loc:?}: {t}");
                // Every event still carries where, who lives there, and the link.
                assert_in_order(
                    &t,
                    &[
                        "3幢2单元501室",
                        "张奶奶",
                        "http://127.0.0.1:8080/ack/tok123",
                    ],
                );
            }
        }
    }

    #[test]
    fn acked_and_resolved_name_the_actor_cause_and_note() {
        let mut n = smoke(Locale::ZhCn);
        n.event = EventKind::Acked;
        n.alarm.state = AlarmState::ActiveAcked;
        n.context.actor = Some("王芳(网格员)".into());
        let t = text(&n);
        assert!(t.contains("确认人：王芳(网格员)"), "{t}");
        assert!(t.contains("详情：http"), "{t}");

        n.event = EventKind::Resolved;
        n.alarm.state = AlarmState::Resolved;
        n.context.cause = Some("cooking".into());
        n.context.note = Some("炒菜油烟，已开窗".into());
        let t = text(&n);
        assert_in_order(
            &t,
            &[
                "已处理",
                "处理人：王芳(网格员)",
                "处理结果：烹饪油烟；炒菜油烟，已开窗",
                "3幢2单元501室",
            ],
        );

        let mut n = smoke(Locale::En);
        n.event = EventKind::Resolved;
        n.context.actor = Some("Wang Fang".into());
        n.context.cause = Some("false_alarm".into());
        let t = text(&n);
        assert!(t.contains("Resolved by: Wang Fang"), "{t}");
        assert!(t.contains("Outcome: false alarm"), "{t}");
    }

    #[test]
    fn repeats_show_peak_and_count() {
        let mut n = smoke(Locale::ZhCn);
        n.context.peak = Some(0.3);
        n.context.count = 3;
        let t = text(&n);
        assert!(t.contains("峰值 0.3 dB/m，共触发 3 次"), "{t}");
    }

    #[test]
    fn later_events_show_when_the_update_happened() {
        let mut n = smoke(Locale::ZhCn);
        n.event = EventKind::Reminder;
        n.created += 3 * 60 * 1000;
        assert!(
            text(&n).contains("2026-11-24 18:00:00（本次通知 18:03:00）"),
            "{}",
            text(&n)
        );
    }

    #[test]
    fn every_kind_and_severity_is_translated() {
        for loc in [Locale::ZhCn, Locale::En] {
            let mut seen = std::collections::HashSet::new();
            for k in AlarmKind::ALL {
                let l = kind_label(loc, k);
                assert!(!l.is_empty() && l != k.as_str(), "{loc:?} {k}");
                assert!(seen.insert(l), "{loc:?}: duplicate label {l}");
            }
            for s in Severity::ALL {
                let l = severity_label(loc, s);
                assert!(!l.is_empty() && l != s.as_str(), "{loc:?} {s}");
                assert!(seen.insert(l), "{loc:?}: duplicate label {l}");
            }
        }
        // zh labels are Chinese, en labels are ASCII.
        for k in AlarmKind::ALL {
            assert!(!kind_label(Locale::ZhCn, k).is_ascii());
            assert!(kind_label(Locale::En, k).is_ascii());
        }
    }

    #[test]
    fn sms_essentials_first_then_link() {
        let s = sms(&smoke(Locale::ZhCn));
        assert!(s.chars().count() <= SMS_MAX_CHARS, "{s}");
        assert_in_order(
            &s,
            &[
                "【紧急】烟感报警",
                "3幢2单元501室",
                "厨房",
                "独居",
                "82岁",
                "18:00",
                "0.21dB/m(阈值0.15)",
                "http://127.0.0.1:8080/ack/tok123",
            ],
        );
        let s = sms(&smoke(Locale::En));
        assert!(s.chars().count() <= SMS_MAX_CHARS, "{s}");
        assert_in_order(
            &s,
            &[
                "[CRITICAL] Smoke alarm",
                "3幢2单元501室",
                "lives alone",
                "82",
                "18:00",
                "0.21dB/m",
                "Ack: http",
            ],
        );
    }

    #[test]
    fn sms_long_address_is_cut_at_140_chars_and_drops_the_link() {
        for loc in [Locale::ZhCn, Locale::En] {
            let mut n = smoke(loc);
            n.context.site_name = "杭州市西湖区西溪街道古荡湾社区龙井苑老旧小区改造示范片区".into();
            n.alarm.address =
                "第三网格十二幢东侧二单元地下室楼梯间旁边的公共配电箱附近的五楼五零一室".repeat(3);
            n.alarm.location = "主卧室靠窗一侧吊顶上方".into();
            let s = sms(&n);
            assert_eq!(s.chars().count(), SMS_MAX_CHARS, "{s}");
            assert!(s.ends_with('…'), "{s}");
            assert!(!s.contains("http"), "{s}");
            assert!(s.starts_with(&format!(
                "{}{}",
                severity_tag(loc, Severity::Critical),
                kind_label(loc, AlarmKind::Smoke)
            )));
        }
    }

    #[test]
    fn sms_keeps_link_when_it_fits_exactly() {
        let n = smoke(Locale::ZhCn);
        let full = sms(&n);
        assert!(full.contains(&n.ack_url));
        // Lengthen the address until the link no longer fits: it is dropped whole, never cut.
        let mut n = n;
        let mut had_link_dropped = false;
        for extra in 0..140 {
            n.alarm.address = format!("3幢2单元501室{}", "号".repeat(extra));
            let s = sms(&n);
            assert!(s.chars().count() <= SMS_MAX_CHARS);
            if !s.contains(&n.ack_url) {
                assert!(!s.contains("http"), "cut link: {s}");
                had_link_dropped = true;
            }
        }
        assert!(had_link_dropped);
    }

    #[test]
    fn webhook_json_is_the_spec_body() {
        let n = smoke(Locale::ZhCn);
        let expected = serde_json::json!({
            "event": "alarm.raised",
            "delivery_id": "01JDDELIVERY0000000000001",
            "alarm": {
                "id": "01JDALARM000000000000000A", "site": "xihu-longjing", "kind": "smoke",
                "severity": "critical", "state": "active_unacked", "condition": "firing",
                "device_id": "smk-3-2-501-k", "household_id": "h-3-2-501",
                "address": "3幢2单元501室", "location": "厨房",
                "opened_at": "2026-11-24T10:00:00.123Z", "value": 0.21, "threshold": 0.15, "unit": "dB/m"
            },
            "recipient": {"contact_id": "c-xihu-119", "role": "fire_brigade", "name": "西湖消防中队值班室"},
            "ack_url": "http://127.0.0.1:8080/ack/tok123"
        });
        assert_eq!(webhook_json(&n), expected);
        // The alarm object has exactly the AlarmView fields, as serde would name them.
        assert_eq!(
            webhook_json(&n)["alarm"],
            serde_json::to_value(&n.alarm).unwrap()
        );
    }

    /// A residual-current warning raised by the slow-rise rule: +120 mA within 10 min.
    fn slow_rise(locale: Locale) -> Notification {
        let mut n = smoke(locale);
        n.alarm.kind = AlarmKind::ResidualCurrent;
        n.alarm.severity = Severity::Warning;
        n.alarm.device_id = "rcm-3-2-db".into();
        n.alarm.location = "楼道配电箱".into();
        n.alarm.value = Some(170.0);
        n.alarm.threshold = None;
        n.alarm.unit = "mA".into();
        n.alarm.trigger = Some(Trigger {
            rule: SignalCause::Rise,
            delta: Some(120.0),
            within_s: Some(600.0),
        });
        n.context.peak = Some(170.0);
        n
    }

    #[test]
    fn trend_alarms_say_which_trend_and_what_it_saw() {
        let n = slow_rise(Locale::ZhCn);
        let t = text(&n);
        assert!(t.starts_with("【预警】剩余电流报警（缓慢上升）\n"), "{t}");
        assert!(
            t.contains("读数：剩余电流 170 mA，10分钟内上升 120 mA（缓慢上升）\n"),
            "{t}"
        );
        assert!(!t.contains("阈值"), "{t}");
        let s = sms(&n);
        assert!(s.chars().count() <= SMS_MAX_CHARS, "{s}");
        assert_in_order(
            &s,
            &[
                "【预警】剩余电流报警（缓慢上升）",
                "楼道配电箱",
                "170mA(10分钟内升120mA)",
            ],
        );
        let n = slow_rise(Locale::En);
        let t = text(&n);
        assert!(
            t.starts_with("[WARNING] Residual current alarm (slow rise)\n"),
            "{t}"
        );
        assert!(
            t.contains("Reading: residual current 170 mA, rose 120 mA within 10 min (slow rise)\n"),
            "{t}"
        );
        let s = sms(&n);
        assert_in_order(
            &s,
            &[
                "[WARNING] Residual current alarm (slow rise)",
                "170mA (+120mA in 10 min)",
            ],
        );
        // Step and rate of rise have their own words; windows read as people say them.
        let mut n = slow_rise(Locale::ZhCn);
        n.alarm.trigger = Some(Trigger {
            rule: SignalCause::Step,
            delta: Some(60.0),
            within_s: Some(2.0),
        });
        assert!(text(&n).contains("2秒内突增 60 mA（突变）"), "{}", text(&n));
        let mut n = slow_rise(Locale::En);
        n.alarm.kind = AlarmKind::Temperature;
        n.alarm.severity = Severity::Alarm;
        n.alarm.value = Some(39.5);
        n.alarm.unit = "°C".into();
        n.alarm.trigger = Some(Trigger {
            rule: SignalCause::RateOfRise,
            delta: Some(9.5),
            within_s: Some(3600.0),
        });
        let t = text(&n);
        assert!(
            t.contains("temperature 39.5 °C, rose 9.5 °C within 1 h (rapid rise)"),
            "{t}"
        );
    }

    #[test]
    fn threshold_and_flag_triggers_read_as_before() {
        for rule in [SignalCause::Threshold, SignalCause::Flag] {
            let mut n = smoke(Locale::ZhCn);
            let before = (text(&n), sms(&n));
            n.alarm.trigger = Some(Trigger {
                rule,
                delta: None,
                within_s: None,
            });
            assert_eq!((text(&n), sms(&n)), before);
            assert_eq!(
                webhook_json(&n)["alarm"]["trigger"],
                serde_json::json!({ "rule": rule.as_str() })
            );
        }
    }

    #[test]
    fn webhook_json_names_the_trigger() {
        let n = slow_rise(Locale::ZhCn);
        let v = webhook_json(&n);
        assert_eq!(
            v["alarm"]["trigger"],
            serde_json::json!({"rule": "rise", "delta": 120.0, "within_s": 600.0})
        );
        assert!(v["alarm"]["threshold"].is_null());
        assert_eq!(v["alarm"], serde_json::to_value(&n.alarm).unwrap());
    }

    #[test]
    fn webhook_json_missing_value_is_null() {
        let mut n = smoke(Locale::En);
        n.alarm.kind = AlarmKind::Offline;
        n.alarm.value = None;
        n.alarm.threshold = None;
        let v = webhook_json(&n);
        assert!(v["alarm"]["value"].is_null() && v["alarm"]["threshold"].is_null());
        assert!(!text(&n).contains("Reading"));
    }

    #[test]
    fn robot_formats_carry_the_text_content() {
        let n = smoke(Locale::ZhCn);
        let w = webhook_body(&n, WebhookFormat::Wecom);
        assert_eq!(w["msgtype"], "markdown");
        let c = w["markdown"]["content"].as_str().unwrap();
        assert_in_order(
            c,
            &[
                "**【紧急】烟感报警**",
                "3幢2单元501室",
                "独居",
                "[立即确认](http://127.0.0.1:8080/ack/tok123)",
            ],
        );

        let d = webhook_body(&n, WebhookFormat::Dingtalk);
        assert_eq!(d["msgtype"], "markdown");
        assert_eq!(d["markdown"]["title"], "【紧急】烟感报警");
        assert_in_order(
            d["markdown"]["text"].as_str().unwrap(),
            &["烟感报警", "3幢2单元501室", "独居", "tok123"],
        );

        let f = webhook_body(&n, WebhookFormat::Feishu);
        assert_eq!(f["msg_type"], "text");
        assert_eq!(f["content"]["text"].as_str().unwrap(), text(&n));

        assert_eq!(webhook_body(&n, WebhookFormat::Json), webhook_json(&n));
    }

    #[test]
    fn robots_mention_by_mobile_and_start_with_the_keyword() {
        let n = smoke(Locale::ZhCn);
        let mobiles = vec!["13800000001".to_string(), "13900000002".to_string()];
        let x = RobotExtras {
            keyword: Some("火警"),
            mobiles: &mobiles,
            all: false,
        };
        let d = robot_body(&n, WebhookFormat::Dingtalk, &x);
        assert_eq!(d["at"]["atMobiles"], json!(mobiles));
        assert_eq!(d["at"]["isAtAll"], false);
        let t = d["markdown"]["text"].as_str().unwrap();
        assert!(t.starts_with("火警 **【紧急】烟感报警**"), "{t}");
        assert!(t.ends_with("@13800000001 @13900000002"), "{t}");
        assert!(d["markdown"]["title"].as_str().unwrap().starts_with("火警"));

        let w = robot_body(&n, WebhookFormat::Wecom, &x);
        assert_eq!(w["msgtype"], "text", "only text messages honour mentions");
        assert_eq!(w["text"]["mentioned_mobile_list"], json!(mobiles));
        assert!(w["text"]["content"].as_str().unwrap().starts_with("火警 "));

        let none = RobotExtras::default();
        assert_eq!(
            robot_body(&n, WebhookFormat::Wecom, &none)["msgtype"],
            "markdown"
        );
        assert!(
            robot_body(&n, WebhookFormat::Dingtalk, &none)["at"]["atMobiles"]
                .as_array()
                .unwrap()
                .is_empty()
        );

        let all = RobotExtras {
            all: true,
            ..Default::default()
        };
        let f = robot_body(&n, WebhookFormat::Feishu, &all);
        assert!(f["content"]["text"]
            .as_str()
            .unwrap()
            .starts_with("<at user_id=\"all\">"));
        let w = robot_body(&n, WebhookFormat::Wecom, &all);
        assert_eq!(w["text"]["mentioned_mobile_list"], json!(["@all"]));
    }

    #[test]
    fn wecom_content_stays_under_its_byte_limit() {
        let mut n = smoke(Locale::ZhCn);
        n.context.others_notified = vec!["很长的名字(邻居)".to_string(); 400];
        let w = webhook_body(&n, WebhookFormat::Wecom);
        let c = w["markdown"]["content"].as_str().unwrap();
        assert!(c.len() <= WECOM_MAX_BYTES, "{}", c.len());
        assert!(c.starts_with("**【紧急】烟感报警**"));
    }

    #[test]
    fn numbers_read_like_people_write_them() {
        assert_eq!(num(0.21), "0.21");
        assert_eq!(num(320.0), "320");
        assert_eq!(num(0.1 + 0.2), "0.3");
        assert_eq!(num(-0.0001), "0");
        assert_eq!(num(31.25), "31.25");
    }
}
