//! `gridwatch test-notify (--contact ID | --role ROLE) [--channel KIND]`:
//! sends a clearly marked test message through the real send path (the same
//! channels, signing, mentions and provider as an alarm) and prints what
//! each receiver answered. Exit 0 only when every receiver confirmed.
//!
//! It talks to the receivers directly, not through the daemon's outbox: an
//! installer runs it before the daemon is started, and a test message must
//! never sit in the alarm outbox or on the duty board.

use crate::channels::mask;
use crate::config::{Config, Locale};
use crate::model::{
    now_ms, rfc3339_ms, AlarmKind, AlarmState, AlarmView, ChannelKind, EventKind, Recipient, Role,
    Severity,
};
use crate::notification::{MessageContext, Notification};
use std::path::PathBuf;
use std::process::ExitCode;

/// `gridwatch test-notify ...`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["contact", "role"])))]
pub struct TestNotifyArgs {
    #[arg(long, default_value = "config/gateway.toml")]
    pub config: PathBuf,
    /// A contact id from the registry (`[[contacts]] id`, or a resident's `{household}.r{n}`).
    #[arg(long)]
    pub contact: Option<String>,
    /// Every contact of a role: resident, grid_worker, director, fire_brigade, family.
    #[arg(long)]
    pub role: Option<String>,
    /// Only this channel (voice, sms, email, webhook, console); default: each channel of the role's list.
    #[arg(long)]
    pub channel: Option<String>,
}

/// One test send to make.
struct Target {
    recipient: Recipient,
    channel: ChannelKind,
    address: String,
    phones: Vec<String>,
}

/// Runs the command; prints one line per receiver.
pub fn test_notify(args: &TestNotifyArgs) -> ExitCode {
    // The same build step as run: the channels are the daemon's own.
    let (config, parts) = match crate::runtime::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gridwatch test-notify: invalid configuration:\n{e}");
            return ExitCode::from(2);
        }
    };
    let mut channels = parts.channels;
    let targets = match targets(&config, args) {
        Ok(t) if t.is_empty() => {
            eprintln!("gridwatch test-notify: nobody to send to (no contact with an address on those channels)");
            return ExitCode::from(2);
        }
        Ok(t) => t,
        Err(e) => {
            eprintln!("gridwatch test-notify: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gridwatch test-notify: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        // Voice: the modem's port task runs for the calls; a cloud provider's
        // acceptance of the call is its answer here (the call's result goes
        // to the daemon's callback, not to this command).
        let (calls_tx, mut calls_rx) = tokio::sync::mpsc::channel(16);
        channels.start(crate::health::Health::new(), calls_tx, None);
        let mut all_ok = true;
        for t in targets {
            let n = test_message(&config, &t);
            let to = format!(
                "{} ({}) {} {}",
                t.recipient.name,
                t.recipient.contact_id,
                t.channel.as_str(),
                mask(&t.address)
            );
            if !channels.is_configured(t.channel, Some(&t.address)) {
                println!(
                    "{to}: NOT CONFIGURED (no [channels.{}] for it)",
                    t.channel.as_str()
                );
                all_ok = false;
                continue;
            }
            let result = channels.send(&n).await;
            // A call reports how it ended before its send returns.
            while let Ok(r) = calls_rx.try_recv() {
                println!("{to}: call {}", r.detail());
            }
            match result {
                Ok(()) => println!("{to}: confirmed by the receiver"),
                Err(e) => {
                    all_ok = false;
                    println!(
                        "{to}: REFUSED{} {}: {}",
                        e.code.map(|c| format!(" [{c}]")).unwrap_or_default(),
                        if e.retryable {
                            "(may pass later)"
                        } else {
                            "(final)"
                        },
                        e.reason
                    );
                }
            }
        }
        if all_ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("unknown {what} {s:?}"))
}

/// Contacts of the role (or the one contact), each on the channels to test.
fn targets(cfg: &Config, args: &TestNotifyArgs) -> Result<Vec<Target>, String> {
    let only: Option<ChannelKind> = args
        .channel
        .as_deref()
        .map(|c| parse("channel", c))
        .transpose()?;
    let reg = &cfg.registry;
    // Residents are contacts too (`{household}.r{n}`, 1-based, as dispatch names them).
    let residents: Vec<crate::config::Contact> = reg
        .households
        .iter()
        .flat_map(|h| {
            h.residents
                .iter()
                .enumerate()
                .map(|(i, r)| crate::config::Contact {
                    id: format!("{}.r{}", h.id, i + 1),
                    name: r.name.clone(),
                    phone: r.phone.clone(),
                    email: r.email.clone(),
                    webhook: None,
                    console: None,
                })
        })
        .collect();
    let mut people: Vec<(Role, &crate::config::Contact)> = Vec::new();
    let role_of = |id: &str| -> Option<Role> {
        for g in &reg.grids {
            if g.grid_workers.iter().any(|c| c == id) {
                return Some(Role::GridWorker);
            }
            if g.directors.iter().any(|c| c == id) {
                return Some(Role::Director);
            }
            if g.fire_brigade.iter().any(|c| c == id) {
                return Some(Role::FireBrigade);
            }
        }
        reg.households
            .iter()
            .any(|h| h.family.iter().any(|c| c == id))
            .then_some(Role::Family)
    };
    if let Some(id) = &args.contact {
        if let Some(r) = residents.iter().find(|r| r.id == *id) {
            people.push((Role::Resident, r));
        }
    }
    if let Some(id) = args.contact.as_ref().filter(|_| people.is_empty()) {
        let c = cfg
            .contact(id)
            .ok_or_else(|| format!("no contact {id:?} in the registry"))?;
        let role = role_of(id)
            .ok_or_else(|| format!("contact {id:?} has no role (in no grid or family)"))?;
        people.push((role, c));
    }
    if let Some(r) = &args.role {
        let role: Role = parse("role", r)?;
        if role == Role::Resident {
            people.extend(residents.iter().map(|r| (role, r)));
        }
        for c in &reg.contacts {
            if role_of(&c.id) == Some(role) {
                people.push((role, c));
            }
        }
    }
    let mut out = Vec::new();
    for (role, c) in people {
        let prefs: Vec<ChannelKind> = match only {
            Some(k) => vec![k],
            None => cfg.routing.roles.get(&role).cloned().unwrap_or_default(),
        };
        for kind in prefs {
            let address = match kind {
                ChannelKind::Sms | ChannelKind::Voice => c.phone.clone(),
                ChannelKind::Email => c.email.clone(),
                ChannelKind::Webhook => c.webhook.clone(),
                ChannelKind::Console => Some(c.name.clone()),
                _ => None,
            };
            let Some(address) = address else { continue };
            out.push(Target {
                recipient: Recipient {
                    contact_id: c.id.clone(),
                    role,
                    name: c.name.clone(),
                },
                channel: kind,
                address,
                phones: c.phone.iter().cloned().collect(),
            });
        }
    }
    Ok(out)
}

/// The test message: an `info` notice whose every line says it is a test.
fn test_message(cfg: &Config, t: &Target) -> Notification {
    let zh = cfg.gateway.site.locale == Locale::ZhCn;
    let now = now_ms();
    let id = format!("test-{}", ulid::Ulid::new());
    let base = cfg.gateway.http.public_url.trim_end_matches('/');
    Notification {
        delivery_id: id.clone(),
        event: EventKind::Raised,
        alarm: AlarmView {
            id: id.clone(),
            site: cfg.gateway.site.id.clone(),
            kind: AlarmKind::Smoke,
            severity: Severity::Info,
            state: AlarmState::ActiveUnacked,
            condition: crate::model::Condition::Firing,
            device_id: "test-notify".into(),
            household_id: "test-notify".into(),
            address: if zh {
                "【测试消息，请忽略】gridwatch 通知测试".into()
            } else {
                "[TEST, please ignore] gridwatch test-notify".into()
            },
            location: if zh {
                "无需处置".into()
            } else {
                "no action needed".into()
            },
            opened_at: rfc3339_ms(now),
            value: None,
            threshold: None,
            unit: String::new(),
            trigger: None,
        },
        recipient: t.recipient.clone(),
        channel: t.channel,
        address: t.address.clone(),
        ack_url: format!("{base}/ack/test"),
        context: MessageContext {
            locale: cfg.gateway.site.locale,
            site_name: cfg.gateway.site.name.clone(),
            robot_mentions: t.phones.clone(),
            ..Default::default()
        },
        created: now,
    }
}
