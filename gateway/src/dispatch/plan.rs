//! The routing plan, pure: which people hear of an alarm event, on which
//! channel, with what to fall back to. Roles come from the matching
//! `[[route]]`s, people from the registry (the household's grid, family and
//! neighbours), channels from `[roles]` in order of preference, limited by
//! what is configured and what the person can be reached on.

use crate::ack_link::{AckSigner, LINK_TTL_MS};
use crate::alarms::{Alarm, Planned};
use crate::config::Config;
use crate::config::DeviceKind;
use crate::model::{AlarmKind, ChannelKind, EpochMs, EventKind, Recipient, Role};
use crate::notification::{MessageContext, Notification, SounderCommand};

/// Whether a channel is usable (configured), asked per channel and webhook name.
pub trait Availability {
    /// True when `kind` (and for webhooks, the named hook) can be used.
    fn is_available(&self, kind: ChannelKind, webhook: Option<&str>) -> bool;
}

impl Availability for crate::channels::Channels {
    fn is_available(&self, kind: ChannelKind, webhook: Option<&str>) -> bool {
        self.is_configured(kind, webhook)
    }
}

/// A reachable person, from a contact or a neighbour's resident entry.
struct Reach<'a> {
    id: String,
    name: &'a str,
    phone: Option<&'a str>,
    email: Option<&'a str>,
    webhook: Option<&'a str>,
}

impl Reach<'_> {
    fn address(&self, kind: ChannelKind) -> Option<&str> {
        match kind {
            // A landline gets no SMS: the person moves to their next channel.
            ChannelKind::Sms => self
                .phone
                .filter(|p| crate::util::number::classify(p).takes_sms()),
            ChannelKind::Voice => self.phone,
            ChannelKind::Email => self.email,
            ChannelKind::Webhook => self.webhook,
            ChannelKind::Console => Some(self.name),
            ChannelKind::Mqtt
            | ChannelKind::Sounder
            | ChannelKind::Upstream
            | ChannelKind::Gb26875 => None,
        }
    }
}

/// Roles that the matching routes notify for this alarm's kind and severity.
pub fn roles_for(cfg: &Config, alarm: &Alarm) -> Vec<Role> {
    let mut roles: Vec<Role> = cfg
        .routing
        .routes
        .iter()
        .filter(|r| r.kinds.contains(&alarm.kind) && r.severities.contains(&alarm.severity))
        .flat_map(|r| r.notify.iter().copied())
        .collect();
    roles.sort();
    roles.dedup();
    roles
}

/// People of one role for the alarm's household.
/// A system alarm (no household: the box itself) reaches the people of that
/// role in every grid of the site.
fn people<'a>(cfg: &'a Config, alarm: &Alarm, role: Role) -> Vec<Reach<'a>> {
    let contact_ids: Vec<&String> = if alarm.household_id.is_empty() {
        let mut ids: Vec<&String> = cfg
            .registry
            .grids
            .iter()
            .flat_map(|g| grid_people(g, role))
            .collect();
        let mut seen = std::collections::HashSet::new();
        ids.retain(|id| seen.insert(*id));
        ids
    } else {
        let Some(hh) = cfg.household(&alarm.household_id) else {
            return Vec::new();
        };
        match role {
            Role::Resident => return residents(hh),
            Role::Family => hh.family.iter().collect(),
            Role::Neighbour => return neighbours(cfg, &hh.neighbours),
            Role::GridWorker | Role::Director | Role::FireBrigade | Role::Operator => cfg
                .grid(&hh.grid)
                .map(|g| grid_people(g, role))
                .unwrap_or_default(),
        }
    };
    contact_ids
        .into_iter()
        .filter_map(|id| cfg.contact(id))
        .map(|c| Reach {
            id: c.id.clone(),
            name: &c.name,
            phone: c.phone.as_deref(),
            email: c.email.as_deref(),
            webhook: c.webhook.as_deref(),
        })
        .collect()
}

/// The contacts a grid names for a role (none for the household roles).
fn grid_people(g: &crate::config::Grid, role: Role) -> Vec<&String> {
    match role {
        Role::GridWorker => g.grid_workers.iter().collect(),
        Role::Director => g.directors.iter().collect(),
        Role::FireBrigade => g.fire_brigade.iter().collect(),
        Role::Operator => g.operators.iter().collect(),
        Role::Resident | Role::Family | Role::Neighbour => Vec::new(),
    }
}

/// Residents of the neighbour households: contact id `{household}.r{n}` (1-based).
fn neighbours<'a>(cfg: &'a Config, households: &[String]) -> Vec<Reach<'a>> {
    households
        .iter()
        .filter_map(|id| cfg.household(id))
        .flat_map(residents)
        .collect()
}

/// The residents of one household, with the same `{household}.r{n}` ids
/// (1-based), so a resident is one person whether told as resident or neighbour.
fn residents(h: &crate::config::Household) -> Vec<Reach<'_>> {
    h.residents
        .iter()
        .enumerate()
        .map(|(i, r)| Reach {
            id: format!("{}.r{}", h.id, i + 1),
            name: &r.name,
            phone: r.phone.as_deref(),
            email: r.email.as_deref(),
            webhook: None,
        })
        .collect()
}

/// Channels for one person of one role: first usable preference, then fallbacks;
/// the console when nothing else reaches them (so nobody is silently skipped).
fn choose(cfg: &Config, role: Role, p: &Reach, avail: &dyn Availability) -> Option<Planned> {
    let prefs = cfg
        .routing
        .roles
        .get(&role)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut usable = prefs.iter().filter_map(|&kind| {
        let addr = p.address(kind)?;
        let hook = (kind == ChannelKind::Webhook).then_some(addr);
        avail
            .is_available(kind, hook)
            .then(|| (kind, addr.to_string()))
    });
    let (channel, address) = usable.next().or_else(|| {
        avail
            .is_available(ChannelKind::Console, None)
            .then(|| (ChannelKind::Console, p.name.to_string()))
    })?;
    Some(Planned {
        recipient: Recipient {
            contact_id: p.id.clone(),
            role,
            name: p.name.to_string(),
        },
        channel,
        address,
        fallbacks: usable.collect(),
    })
}

/// Everyone the routes name for this alarm, one entry per person (first role wins).
pub fn route_recipients(cfg: &Config, alarm: &Alarm, avail: &dyn Availability) -> Vec<Planned> {
    people_of_roles(cfg, alarm, &roles_for(cfg, alarm), avail)
}

/// The people of the given roles for this alarm's household, one entry per person.
pub fn people_of_roles(
    cfg: &Config,
    alarm: &Alarm,
    roles: &[Role],
    avail: &dyn Availability,
) -> Vec<Planned> {
    let mut out: Vec<Planned> = Vec::new();
    for &role in roles {
        for p in people(cfg, alarm, role) {
            if out.iter().any(|o| o.recipient.contact_id == p.id) {
                continue;
            }
            match choose(cfg, role, &p, avail) {
                Some(planned) => out.push(planned),
                None => tracing::warn!(
                    alarm = %alarm.id,
                    contact = %p.id,
                    role = %role,
                    "recipient has no usable channel"
                ),
            }
        }
    }
    out
}

/// Who hears of an event: the targeted roles for timer events, route
/// recipients for raise/escalate, everyone who was told for the all-clear,
/// webhook systems for the other state changes.
pub fn recipients_for_event(
    cfg: &Config,
    alarm: &Alarm,
    event: EventKind,
    roles: &[Role],
    avail: &dyn Availability,
) -> Vec<Planned> {
    if !roles.is_empty() {
        return people_of_roles(cfg, alarm, roles, avail);
    }
    match event {
        EventKind::Raised | EventKind::Escalated | EventKind::Reminder => {
            route_recipients(cfg, alarm, avail)
        }
        // The all-clear is not worth waking anyone with a call: it goes on
        // the person's next channel when they have one.
        EventKind::Resolved => alarm
            .recipients
            .iter()
            .cloned()
            .map(|mut p| {
                if p.channel == ChannelKind::Voice && !p.fallbacks.is_empty() {
                    let (channel, address) = p.fallbacks.remove(0);
                    p.channel = channel;
                    p.address = address;
                }
                p
            })
            .collect(),
        EventKind::Acked | EventKind::Cleared | EventKind::Verified => alarm
            .recipients
            .iter()
            .filter(|p| p.channel == ChannelKind::Webhook)
            .cloned()
            .collect(),
    }
}

/// Everything a notification needs besides the recipient.
pub struct EventInput<'a> {
    pub alarm: &'a Alarm,
    pub event: EventKind,
    pub at: EpochMs,
    pub actor: Option<String>,
}

/// Builds one notification per planned recipient, plus the broker event.
/// Delivery ids are fresh ULIDs: they are fixed here, stored with the entry,
/// and so stay the same across retries and restarts.
pub fn notifications(
    cfg: &Config,
    signer: &AckSigner,
    input: &EventInput,
    planned: &[Planned],
) -> Vec<Notification> {
    let alarm = input.alarm;
    let residents = cfg
        .household(&alarm.household_id)
        .map(|h| h.residents.iter().map(|r| r.info()).collect())
        .unwrap_or_default();
    let (cause, note) = match &alarm.resolution {
        Some(r) if input.event == EventKind::Resolved => {
            (Some(r.cause.as_str().to_string()), r.note.clone())
        }
        _ => (None, None),
    };
    let context = MessageContext {
        locale: cfg.gateway.site.locale,
        site_name: cfg.gateway.site.name.clone(),
        residents,
        others_notified: Vec::new(),
        reading_ts: alarm.reading_ts,
        peak: alarm.peak,
        count: alarm.count,
        actor: input.actor.clone(),
        cause,
        note,
        robot_mentions: Vec::new(),
        sounder: None,
    };
    let view = alarm.view();
    let base_url = cfg.gateway.http.public_url.trim_end_matches('/');
    let mut out: Vec<Notification> = planned
        .iter()
        .map(|p| {
            let delivery_id = ulid::Ulid::new().to_string();
            let token = signer.sign(&delivery_id, input.at + LINK_TTL_MS);
            let mut ctx = context.clone();
            ctx.others_notified = planned
                .iter()
                .filter(|o| o.recipient.contact_id != p.recipient.contact_id)
                .map(|o| o.recipient.name.clone())
                .collect();
            if p.channel == ChannelKind::Webhook {
                ctx.robot_mentions = robot_mentions(cfg, planned, &p.address);
            }
            Notification {
                delivery_id,
                event: input.event,
                alarm: view.clone(),
                recipient: p.recipient.clone(),
                channel: p.channel,
                address: p.address.clone(),
                ack_url: format!("{base_url}/ack/{token}"),
                context: ctx,
                created: input.at,
            }
        })
        .collect();
    let mut ctx = context;
    ctx.others_notified = planned.iter().map(|o| o.recipient.name.clone()).collect();
    let mut machines = vec![ChannelKind::Mqtt];
    if cfg.gateway.upstream.is_some() {
        machines.push(ChannelKind::Upstream);
    }
    // The monitoring centre hears of state changes only (raised, cleared,
    // resolved), for devices of the component table: all of them by default.
    if cfg.gateway.gb26875.is_some()
        && crate::config::gb26875::mapping::component_status(view.kind, input.event).is_some()
    {
        machines.push(ChannelKind::Gb26875);
    }
    for channel in machines {
        out.push(Notification {
            delivery_id: ulid::Ulid::new().to_string(),
            event: input.event,
            alarm: view.clone(),
            recipient: if channel == ChannelKind::Gb26875 {
                centre_recipient()
            } else {
                broker_recipient()
            },
            channel,
            address: String::new(),
            ack_url: format!("{base_url}/"),
            context: ctx.clone(),
            created: input.at,
        });
    }
    out
}

/// Phones of everybody planned on webhook `hook` (a group robot posts once
/// per event and @-mentions them all); the channel keeps only mobiles.
fn robot_mentions(cfg: &Config, planned: &[Planned], hook: &str) -> Vec<String> {
    let mut phones: Vec<String> = planned
        .iter()
        .filter(|o| o.channel == ChannelKind::Webhook && o.address == hook)
        .filter_map(|o| cfg.contact(&o.recipient.contact_id)?.phone.clone())
        .collect();
    phones.dedup();
    phones
}

/// Linked sounders (联动): on a raised smoke or fire alarm of a severity in
/// `[linkage] sound_on`, a `sound` command to every other smoke-capable
/// detector of the household and, when configured, of the neighbour homes.
/// Each command is an outbox entry like any notification, so it survives a crash.
pub fn sounder_commands(cfg: &Config, alarm: &Alarm, at: EpochMs) -> Vec<Notification> {
    let link = &cfg.routing.linkage;
    let smoke_like = matches!(alarm.kind, AlarmKind::Smoke | AlarmKind::FireConfirmed);
    if !smoke_like || !link.sound_on.contains(&alarm.severity) {
        return Vec::new();
    }
    linked_sounders(cfg, alarm)
        .into_iter()
        .map(|id| sounder_entry(alarm, id, EventKind::Raised, SounderCommand::Sound, at))
        .collect()
}

/// `silence` commands to the sounders an alarm of this home sets off (the
/// duty board's 消音 after a cooking false alarm), whatever the alarm's kind:
/// a sounder may also have been set off by another alarm of the same home.
pub fn silence_commands(cfg: &Config, alarm: &Alarm, at: EpochMs) -> Vec<Notification> {
    let mut ids = linked_sounders(cfg, alarm);
    if cfg
        .device(&alarm.device_id)
        .is_some_and(|d| matches!(d.kind, DeviceKind::Smoke | DeviceKind::Combo))
    {
        ids.insert(0, alarm.device_id.clone());
    }
    ids.into_iter()
        .map(|id| sounder_entry(alarm, id, EventKind::Acked, SounderCommand::Silence, at))
        .collect()
}

/// The other smoke-capable detectors of the home and, with `[linkage] neighbours`, of its neighbours.
fn linked_sounders(cfg: &Config, alarm: &Alarm) -> Vec<String> {
    let mut homes: Vec<&str> = vec![alarm.household_id.as_str()];
    if cfg.routing.linkage.neighbours {
        if let Some(h) = cfg.household(&alarm.household_id) {
            homes.extend(h.neighbours.iter().map(String::as_str));
        }
    }
    cfg.registry
        .devices
        .iter()
        .filter(|d| {
            homes.contains(&d.household.as_str())
                && matches!(d.kind, DeviceKind::Smoke | DeviceKind::Combo)
                && d.id != alarm.device_id
        })
        .map(|d| d.id.clone())
        .collect()
}

fn sounder_entry(
    alarm: &Alarm,
    device: String,
    event: EventKind,
    cmd: SounderCommand,
    at: EpochMs,
) -> Notification {
    Notification {
        delivery_id: ulid::Ulid::new().to_string(),
        event,
        alarm: alarm.view(),
        recipient: broker_recipient(),
        channel: ChannelKind::Sounder,
        address: device,
        ack_url: String::new(),
        context: MessageContext {
            sounder: Some(cmd),
            ..MessageContext::default()
        },
        created: at,
    }
}

/// The pseudo-recipient of GB/T 26875 frames: the city fire remote-monitoring centre.
pub fn centre_recipient() -> Recipient {
    Recipient {
        contact_id: "gb26875".into(),
        role: Role::FireBrigade,
        name: "消防远程监控中心".into(),
    }
}

/// The pseudo-recipient of broker events (the district platform listens there).
pub fn broker_recipient() -> Recipient {
    Recipient {
        contact_id: "mqtt".into(),
        role: Role::Director,
        name: "MQTT".into(),
    }
}
