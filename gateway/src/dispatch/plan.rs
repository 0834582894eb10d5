//! The routing plan, pure: which people hear of an alarm event, on which
//! channel, with what to fall back to. Roles come from the matching
//! `[[route]]`s, people from the household's [`Audience`] (its residents,
//! grid, family and neighbours), channels from `[roles]` in order of
//! preference, limited by what is configured and what the person can be
//! reached on.
//!
//! The planning functions take narrow inputs ([`Routes`], [`Audience`],
//! [`Letterhead`], the clock and an id source), never the whole `Config`:
//! the `of` constructors are the only places that read the config, so the
//! plan is tested on hand-made households (tests below).

use crate::ack_link::{AckSigner, LINK_TTL_MS};
use crate::alarms::{Alarm, Planned};
use crate::config::{Config, DeviceKind, Route};
use crate::model::{
    AlarmKind, ChannelKind, EpochMs, EventKind, Locale, Recipient, ResidentInfo, Role,
};
use crate::notification::{MessageContext, Notification, SounderCommand};
use std::collections::BTreeMap;

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

/// A reachable person: a contact, or a resident (`{household}.r{n}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: String,
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    /// Name of a `[channels.webhook.*]` (contacts only).
    pub webhook: Option<String>,
}

impl Person {
    fn address(&self, kind: ChannelKind) -> Option<&str> {
        match kind {
            // A landline gets no SMS: the person moves to their next channel.
            ChannelKind::Sms => self
                .phone
                .as_deref()
                .filter(|p| crate::util::number::classify(p).takes_sms()),
            ChannelKind::Voice => self.phone.as_deref(),
            ChannelKind::Email => self.email.as_deref(),
            ChannelKind::Webhook => self.webhook.as_deref(),
            ChannelKind::Console => Some(&self.name),
            ChannelKind::Mqtt
            | ChannelKind::Sounder
            | ChannelKind::Upstream
            | ChannelKind::Gb26875 => None,
        }
    }
}

/// The people bound to one household, by role: its residents, family,
/// the residents of its neighbour homes, and its grid's workers, directors
/// and fire brigade. Planning reads this instead of the registry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Audience {
    by_role: BTreeMap<Role, Vec<Person>>,
}

impl Audience {
    /// With `people` bound in `role` (in this order, after any already there).
    pub fn with(mut self, role: Role, people: Vec<Person>) -> Audience {
        self.by_role.entry(role).or_default().extend(people);
        self
    }

    /// The people of one role.
    pub fn people(&self, role: Role) -> &[Person] {
        self.by_role.get(&role).map_or(&[], Vec::as_slice)
    }

    /// The household's people from the registry; empty for an unknown household.
    /// A system alarm (empty household: the box itself) reaches the grid roles
    /// of every grid of the site, each person once.
    pub fn of(cfg: &Config, household_id: &str) -> Audience {
        let contacts = |ids: &[String]| -> Vec<Person> {
            ids.iter()
                .filter_map(|id| cfg.contact(id))
                .map(|c| Person {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    phone: c.phone.clone(),
                    email: c.email.clone(),
                    webhook: c.webhook.clone(),
                })
                .collect()
        };
        if household_id.is_empty() {
            let every_grid = |pick: fn(&crate::config::Grid) -> &Vec<String>| {
                let mut ids: Vec<String> = Vec::new();
                for id in cfg.registry.grids.iter().flat_map(|g| pick(g).iter()) {
                    if !ids.contains(id) {
                        ids.push(id.clone());
                    }
                }
                contacts(&ids)
            };
            return Audience::default()
                .with(Role::GridWorker, every_grid(|g| &g.grid_workers))
                .with(Role::Director, every_grid(|g| &g.directors))
                .with(Role::FireBrigade, every_grid(|g| &g.fire_brigade))
                .with(Role::Operator, every_grid(|g| &g.operators));
        }
        let Some(hh) = cfg.household(household_id) else {
            return Audience::default();
        };
        let grid = cfg.grid(&hh.grid);
        let of_grid = |pick: fn(&crate::config::Grid) -> &Vec<String>| {
            grid.map(|g| contacts(pick(g))).unwrap_or_default()
        };
        Audience::default()
            .with(Role::Resident, residents(hh))
            .with(Role::Family, contacts(&hh.family))
            .with(
                Role::Neighbour,
                hh.neighbours
                    .iter()
                    .filter_map(|id| cfg.household(id))
                    .flat_map(residents)
                    .collect(),
            )
            .with(Role::GridWorker, of_grid(|g| &g.grid_workers))
            .with(Role::Director, of_grid(|g| &g.directors))
            .with(Role::FireBrigade, of_grid(|g| &g.fire_brigade))
            .with(Role::Operator, of_grid(|g| &g.operators))
    }
}

/// The residents of one household, ids `{household}.r{n}` (1-based), so a
/// resident is one person whether told as resident or as neighbour.
fn residents(h: &crate::config::Household) -> Vec<Person> {
    h.residents
        .iter()
        .enumerate()
        .map(|(i, r)| Person {
            id: format!("{}.r{}", h.id, i + 1),
            name: r.name.clone(),
            phone: r.phone.clone(),
            email: r.email.clone(),
            webhook: None,
        })
        .collect()
}

/// What routing reads of the config: the routes and each role's channels
/// in order of preference.
#[derive(Debug, Clone, Copy)]
pub struct Routes<'a> {
    pub routes: &'a [Route],
    pub prefs: &'a BTreeMap<Role, Vec<ChannelKind>>,
}

impl<'a> Routes<'a> {
    /// `[[route]]` and `[roles]` of the config.
    pub fn of(cfg: &'a Config) -> Routes<'a> {
        Routes {
            routes: &cfg.routing.routes,
            prefs: &cfg.routing.roles,
        }
    }

    /// Roles that the matching routes notify for this alarm's kind and severity.
    pub fn roles_for(&self, alarm: &Alarm) -> Vec<Role> {
        let mut roles: Vec<Role> = self
            .routes
            .iter()
            .filter(|r| r.kinds.contains(&alarm.kind) && r.severities.contains(&alarm.severity))
            .flat_map(|r| r.notify.iter().copied())
            .collect();
        roles.sort();
        roles.dedup();
        roles
    }
}

/// Channels for one person of one role: first usable preference, then fallbacks;
/// the console when nothing else reaches them (so nobody is silently skipped).
fn choose(
    prefs: &[ChannelKind],
    role: Role,
    p: &Person,
    avail: &dyn Availability,
) -> Option<Planned> {
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
            .then(|| (ChannelKind::Console, p.name.clone()))
    })?;
    Some(Planned {
        recipient: Recipient {
            contact_id: p.id.clone(),
            role,
            name: p.name.clone(),
        },
        channel,
        address,
        fallbacks: usable.collect(),
    })
}

/// Everyone the routes name for this alarm, one entry per person (first role wins).
pub fn route_recipients(
    routes: Routes,
    audience: &Audience,
    alarm: &Alarm,
    avail: &dyn Availability,
) -> Vec<Planned> {
    people_of_roles(routes, audience, alarm, &routes.roles_for(alarm), avail)
}

/// The people of the given roles for this alarm's household, one entry per person.
pub fn people_of_roles(
    routes: Routes,
    audience: &Audience,
    alarm: &Alarm,
    roles: &[Role],
    avail: &dyn Availability,
) -> Vec<Planned> {
    let mut out: Vec<Planned> = Vec::new();
    for &role in roles {
        let prefs = routes.prefs.get(&role).map_or(&[][..], Vec::as_slice);
        for p in audience.people(role) {
            if out.iter().any(|o| o.recipient.contact_id == p.id) {
                continue;
            }
            match choose(prefs, role, p, avail) {
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
    routes: Routes,
    audience: &Audience,
    alarm: &Alarm,
    event: EventKind,
    roles: &[Role],
    avail: &dyn Availability,
) -> Vec<Planned> {
    if !roles.is_empty() {
        return people_of_roles(routes, audience, alarm, roles, avail);
    }
    match event {
        EventKind::Raised | EventKind::Escalated | EventKind::Reminder => {
            route_recipients(routes, audience, alarm, avail)
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

/// What every notification of the site carries besides the event and the
/// recipient, read from the config once per event ([`Letterhead::of`]).
#[derive(Debug, Clone, Default)]
pub struct Letterhead {
    pub locale: Locale,
    pub site_name: String,
    /// `public_url` without its trailing slash: ack links hang below it.
    pub base_url: String,
    /// The alarm household's residents, as messages describe them.
    pub residents: Vec<ResidentInfo>,
    /// An upstream broker is configured: it gets every event.
    pub upstream: bool,
    /// A fire monitoring centre link is configured.
    pub gb26875: bool,
    /// Phones of the planned contacts, for a group robot's @-mentions.
    pub phones: BTreeMap<String, String>,
}

impl Letterhead {
    /// From the config, for `alarm`'s household and the `planned` people.
    pub fn of(cfg: &Config, alarm: &Alarm, planned: &[Planned]) -> Letterhead {
        Letterhead {
            locale: cfg.gateway.site.locale,
            site_name: cfg.gateway.site.name.clone(),
            base_url: cfg
                .gateway
                .http
                .public_url
                .trim_end_matches('/')
                .to_string(),
            residents: cfg
                .household(&alarm.household_id)
                .map(|h| h.residents.iter().map(|r| r.info()).collect())
                .unwrap_or_default(),
            upstream: cfg.gateway.upstream.is_some(),
            gb26875: cfg.gateway.gb26875.is_some(),
            phones: planned
                .iter()
                .filter_map(|p| {
                    let phone = cfg.contact(&p.recipient.contact_id)?.phone.clone()?;
                    Some((p.recipient.contact_id.clone(), phone))
                })
                .collect(),
        }
    }
}

/// Builds one notification per planned recipient, plus the broker event.
/// Delivery ids come from `new_id` (fresh ULIDs in the daemon): they are
/// fixed here, stored with the entry, and so stay the same across retries
/// and restarts.
pub fn notifications(
    head: &Letterhead,
    signer: &AckSigner,
    input: &EventInput,
    planned: &[Planned],
    new_id: &mut dyn FnMut() -> String,
) -> Vec<Notification> {
    let alarm = input.alarm;
    let (cause, note) = match &alarm.resolution {
        Some(r) if input.event == EventKind::Resolved => {
            (Some(r.cause.as_str().to_string()), r.note.clone())
        }
        _ => (None, None),
    };
    let context = MessageContext {
        locale: head.locale,
        site_name: head.site_name.clone(),
        residents: head.residents.clone(),
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
    let base_url = &head.base_url;
    let mut out: Vec<Notification> = planned
        .iter()
        .map(|p| {
            let delivery_id = new_id();
            let token = signer.sign(&delivery_id, input.at + LINK_TTL_MS);
            let mut ctx = context.clone();
            ctx.others_notified = planned
                .iter()
                .filter(|o| o.recipient.contact_id != p.recipient.contact_id)
                .map(|o| o.recipient.name.clone())
                .collect();
            if p.channel == ChannelKind::Webhook {
                ctx.robot_mentions = robot_mentions(head, planned, &p.address);
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
    if head.upstream {
        machines.push(ChannelKind::Upstream);
    }
    // The monitoring centre hears of state changes only (raised, cleared,
    // resolved), for devices of the component table: all of them by default.
    if head.gb26875
        && crate::config::gb26875::mapping::component_status(view.kind, input.event).is_some()
    {
        machines.push(ChannelKind::Gb26875);
    }
    for channel in machines {
        out.push(Notification {
            delivery_id: new_id(),
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
fn robot_mentions(head: &Letterhead, planned: &[Planned], hook: &str) -> Vec<String> {
    let mut phones: Vec<String> = planned
        .iter()
        .filter(|o| o.channel == ChannelKind::Webhook && o.address == hook)
        .filter_map(|o| head.phones.get(&o.recipient.contact_id).cloned())
        .collect();
    phones.dedup();
    phones
}

/// The detectors an alarm of one home can sound (联动), read from the
/// registry once ([`Sounders::of`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sounders {
    /// The other smoke-capable detectors of the home and, with `[linkage]
    /// neighbours`, of its neighbours, in registry order.
    pub linked: Vec<String>,
    /// The alarm's own device is smoke-capable (it is silenced too).
    pub own: bool,
    /// `[linkage] sound_on`: the severities that sound the linked detectors.
    pub sound_on: Vec<crate::model::Severity>,
}

impl Sounders {
    /// From the registry and `[linkage]`, for `alarm`'s home.
    pub fn of(cfg: &Config, alarm: &Alarm) -> Sounders {
        let smoke = |k: DeviceKind| matches!(k, DeviceKind::Smoke | DeviceKind::Combo);
        let mut homes: Vec<&str> = vec![alarm.household_id.as_str()];
        if cfg.routing.linkage.neighbours {
            if let Some(h) = cfg.household(&alarm.household_id) {
                for n in &h.neighbours {
                    if !homes.contains(&n.as_str()) {
                        homes.push(n);
                    }
                }
            }
        }
        Sounders {
            linked: homes
                .iter()
                .flat_map(|h| cfg.household_devices(h))
                .filter(|d| smoke(d.kind) && d.id != alarm.device_id)
                .map(|d| d.id.clone())
                .collect(),
            own: cfg.device(&alarm.device_id).is_some_and(|d| smoke(d.kind)),
            sound_on: cfg.routing.linkage.sound_on.clone(),
        }
    }
}

/// Linked sounders (联动): on a raised smoke or fire alarm of a severity in
/// `[linkage] sound_on`, a `sound` command to every linked detector. Each
/// command is an outbox entry like any notification, so it survives a crash.
pub fn sounder_commands(
    sounders: &Sounders,
    alarm: &Alarm,
    at: EpochMs,
    new_id: &mut dyn FnMut() -> String,
) -> Vec<Notification> {
    let smoke_like = matches!(alarm.kind, AlarmKind::Smoke | AlarmKind::FireConfirmed);
    if !smoke_like || !sounders.sound_on.contains(&alarm.severity) {
        return Vec::new();
    }
    sounders
        .linked
        .iter()
        .map(|id| {
            sounder_entry(
                alarm,
                id.clone(),
                EventKind::Raised,
                SounderCommand::Sound,
                at,
                new_id(),
            )
        })
        .collect()
}

/// `silence` commands to the sounders an alarm of this home sets off (the
/// duty board's 消音 after a cooking false alarm), whatever the alarm's kind:
/// a sounder may also have been set off by another alarm of the same home.
pub fn silence_commands(
    sounders: &Sounders,
    alarm: &Alarm,
    at: EpochMs,
    new_id: &mut dyn FnMut() -> String,
) -> Vec<Notification> {
    let own = sounders.own.then(|| alarm.device_id.clone());
    own.into_iter()
        .chain(sounders.linked.iter().cloned())
        .map(|id| {
            sounder_entry(
                alarm,
                id,
                EventKind::Acked,
                SounderCommand::Silence,
                at,
                new_id(),
            )
        })
        .collect()
}

fn sounder_entry(
    alarm: &Alarm,
    device: String,
    event: EventKind,
    cmd: SounderCommand,
    at: EpochMs,
    delivery_id: String,
) -> Notification {
    Notification {
        delivery_id,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dur;
    use crate::model::Severity;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// Channels configured: those in the set (and any webhook name).
    struct Up(BTreeSet<ChannelKind>);

    impl Availability for Up {
        fn is_available(&self, kind: ChannelKind, _webhook: Option<&str>) -> bool {
            self.0.contains(&kind)
        }
    }

    fn all_up() -> Up {
        Up([
            ChannelKind::Sms,
            ChannelKind::Voice,
            ChannelKind::Email,
            ChannelKind::Webhook,
            ChannelKind::Console,
        ]
        .into())
    }

    fn alarm() -> Alarm {
        serde_json::from_value(serde_json::json!({
            "id": "A1", "site": "s", "kind": "smoke", "severity": "critical",
            "state": "active_unacked", "condition": "firing", "device_id": "smk-1",
            "household_id": "h1", "address": "3-2-501", "location": "厨房",
            "opened_at": 0, "updated_at": 0, "value": 0.2, "threshold": 0.15, "unit": "dB/m",
            "reading_ts": 0, "peak": 0.2, "count": 1, "acks": [], "resolution": null,
            "verification": null, "recipients": [], "timeline": []
        }))
        .unwrap()
    }

    fn person(id: &str, phone: Option<&str>) -> Person {
        Person {
            id: id.into(),
            name: format!("name-{id}"),
            phone: phone.map(Into::into),
            email: Some(format!("{id}@example.org")),
            webhook: None,
        }
    }

    fn route(notify: Vec<Role>) -> Route {
        Route {
            kinds: vec![AlarmKind::Smoke],
            severities: vec![Severity::Critical],
            notify,
            escalate_after: None,
            escalate_to: Vec::new(),
            repeat: Some(Dur::from_secs(180)),
        }
    }

    fn counter() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("D{n}")
        }
    }

    #[test]
    fn plans_the_route_roles_from_the_audience_in_preference_order() {
        let routes = [route(vec![Role::Family, Role::Resident])];
        let prefs = BTreeMap::from([
            (Role::Resident, vec![ChannelKind::Voice, ChannelKind::Sms]),
            (Role::Family, vec![ChannelKind::Sms, ChannelKind::Email]),
        ]);
        let audience = Audience::default()
            .with(Role::Resident, vec![person("h1.r1", Some("0571-87654321"))])
            .with(Role::Family, vec![person("c-son", Some("13800138000"))])
            .with(Role::Director, vec![person("c-dir", Some("13900139000"))]);
        let plan = route_recipients(
            Routes {
                routes: &routes,
                prefs: &prefs,
            },
            &audience,
            &alarm(),
            &all_up(),
        );
        let got: Vec<_> = plan
            .iter()
            .map(|p| {
                (
                    p.recipient.contact_id.as_str(),
                    p.channel,
                    p.fallbacks.len(),
                )
            })
            .collect();
        // Roles in their fixed order; the landline resident is called, never texted.
        assert_eq!(
            got,
            vec![
                ("h1.r1", ChannelKind::Voice, 0),
                ("c-son", ChannelKind::Sms, 1),
            ]
        );
    }

    #[test]
    fn nobody_is_skipped_silently_the_console_takes_the_unreachable() {
        let routes = [route(vec![Role::GridWorker])];
        let prefs = BTreeMap::from([(Role::GridWorker, vec![ChannelKind::Sms])]);
        let audience = Audience::default().with(Role::GridWorker, vec![person("c-wang", None)]);
        let r = Routes {
            routes: &routes,
            prefs: &prefs,
        };
        let plan = route_recipients(r, &audience, &alarm(), &all_up());
        assert_eq!(plan[0].channel, ChannelKind::Console);
        assert_eq!(plan[0].address, "name-c-wang");
        let none = Up(BTreeSet::new());
        assert!(route_recipients(r, &audience, &alarm(), &none).is_empty());
    }

    #[test]
    fn notifications_take_their_ids_and_site_from_the_inputs() {
        let a = alarm();
        let planned = vec![
            Planned {
                recipient: Recipient {
                    contact_id: "c-wang".into(),
                    role: Role::GridWorker,
                    name: "王".into(),
                },
                channel: ChannelKind::Webhook,
                address: "grid-robot".into(),
                fallbacks: Vec::new(),
            },
            Planned {
                recipient: Recipient {
                    contact_id: "c-li".into(),
                    role: Role::Director,
                    name: "李".into(),
                },
                channel: ChannelKind::Webhook,
                address: "grid-robot".into(),
                fallbacks: Vec::new(),
            },
        ];
        let head = Letterhead {
            site_name: "西湖小区".into(),
            base_url: "https://gw.example".into(),
            upstream: true,
            phones: BTreeMap::from([("c-wang".into(), "13800138000".into())]),
            ..Letterhead::default()
        };
        let input = EventInput {
            alarm: &a,
            event: EventKind::Raised,
            at: 1_000,
            actor: None,
        };
        let signer = AckSigner::new(vec![7; 32]);
        let ns = notifications(&head, &signer, &input, &planned, &mut counter());
        let ids: Vec<_> = ns.iter().map(|n| n.delivery_id.as_str()).collect();
        assert_eq!(ids, ["D1", "D2", "D3", "D4"]);
        let kinds: Vec<_> = ns.iter().map(|n| n.channel).collect();
        use ChannelKind::*;
        assert_eq!(kinds, [Webhook, Webhook, Mqtt, Upstream]);
        assert!(ns[0].ack_url.starts_with("https://gw.example/ack/"));
        assert_eq!(ns[0].context.site_name, "西湖小区");
        assert_eq!(ns[0].context.robot_mentions, ["13800138000"]);
        assert_eq!(ns[0].context.others_notified, ["李"]);
    }

    #[test]
    fn sounders_sound_on_configured_severities_and_silence_the_own_device_first() {
        let mut a = alarm();
        let s = Sounders {
            linked: vec!["smk-2".into(), "smk-3".into()],
            own: true,
            sound_on: vec![Severity::Critical],
        };
        let sound = sounder_commands(&s, &a, 5, &mut counter());
        let to: Vec<_> = sound.iter().map(|n| n.address.as_str()).collect();
        assert_eq!(to, ["smk-2", "smk-3"]);
        assert!(sound
            .iter()
            .all(|n| n.context.sounder == Some(SounderCommand::Sound)));
        let silence = silence_commands(&s, &a, 6, &mut counter());
        let to: Vec<_> = silence.iter().map(|n| n.address.as_str()).collect();
        assert_eq!(to, ["smk-1", "smk-2", "smk-3"]);
        a.severity = Severity::Warning;
        assert!(sounder_commands(&s, &a, 5, &mut counter()).is_empty());
        a.severity = Severity::Critical;
        a.kind = AlarmKind::ResidualCurrent;
        assert!(sounder_commands(&s, &a, 5, &mut counter()).is_empty());
    }

    /// A compound of three homes in a row (h2 neighbours h1 and h3) with
    /// smoke, combo and leakage devices, loaded like the daemon loads it.
    fn row_of_homes(neighbours: bool) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            (
                "gateway.toml",
                "registry = \"registry.toml\"\nrules = \"rules.toml\"\nrouting = \"routing.toml\"\n\
                 [site]\nid = \"s\"\nname = \"S\"\n[mqtt]\nlisten = \"127.0.0.1:1883\"\n\
                 [http]\nlisten = \"127.0.0.1:8080\"\n[channels.console]\nenabled = true\n"
                    .to_string(),
            ),
            ("rules.toml", "[heartbeat]\nmqtt = \"5m\"\n".to_string()),
            (
                "routing.toml",
                format!(
                    "[roles]\ngrid_worker = [\"console\"]\n[[route]]\nkinds = [\"smoke\"]\n\
                     severities = [\"critical\"]\nnotify = [\"grid_worker\"]\n\
                     [linkage]\nneighbours = {neighbours}\n"
                ),
            ),
            ("registry.toml", {
                let mut r = String::from(
                    "[[grids]]\nid = \"g\"\nname = \"G\"\ngrid_workers = [\"c\"]\n\
                     [[contacts]]\nid = \"c\"\nname = \"C\"\n",
                );
                for (h, n) in [("h1", "\"h2\""), ("h2", "\"h1\", \"h3\""), ("h3", "\"h2\"")] {
                    r += &format!(
                        "[[households]]\nid = \"{h}\"\naddress = \"{h}\"\ngrid = \"g\"\nneighbours = [{n}]\n"
                    );
                }
                for (id, kind, h) in [
                    ("smk-1", "smoke", "h1"),
                    ("rcm-1", "residual_current", "h1"),
                    ("smk-2", "smoke", "h2"),
                    ("cmb-2", "combo", "h2"),
                    ("smk-2b", "smoke", "h2"),
                    ("smk-3", "smoke", "h3"),
                ] {
                    r += &format!("[[devices]]\nid = \"{id}\"\nkind = \"{kind}\"\nhousehold = \"{h}\"\n");
                }
                r
            }),
        ];
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let cfg = Config::load_with_env(&dir.path().join("gateway.toml"), &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        (dir, cfg)
    }

    #[test]
    fn linked_sounders_are_the_other_smoke_detectors_of_the_home_and_its_neighbours() {
        let mut a = alarm();
        a.device_id = "smk-2".into();
        a.household_id = "h2".into();
        let (_d, cfg) = row_of_homes(true);
        let s = Sounders::of(&cfg, &a);
        assert_eq!(s.linked, ["cmb-2", "smk-2b", "smk-1", "smk-3"]);
        assert!(s.own);
        let (_d, cfg) = row_of_homes(false);
        assert_eq!(Sounders::of(&cfg, &a).linked, ["cmb-2", "smk-2b"]);
        a.device_id = "rcm-1".into();
        a.household_id = "h1".into();
        let s = Sounders::of(&cfg, &a);
        assert_eq!(s.linked, ["smk-1"]);
        assert!(!s.own);
    }

    // --- properties over generated households ---------------------------

    const CHANNELS: [ChannelKind; 5] = [
        ChannelKind::Sms,
        ChannelKind::Voice,
        ChannelKind::Email,
        ChannelKind::Webhook,
        ChannelKind::Console,
    ];

    /// A pool of 6 people (mobile, landline, foreign, or no phone; email
    /// and webhook or not), bound by index to random roles: one person may be
    /// bound twice (family and grid worker, say).
    fn arb_world() -> impl Strategy<
        Value = (
            Audience,
            Vec<Role>,
            BTreeMap<Role, Vec<ChannelKind>>,
            BTreeSet<ChannelKind>,
        ),
    > {
        let phone = prop_oneof![
            Just(None),
            (0u32..100_000_000).prop_map(|n| Some(format!("138{n:08}"))),
            (0u32..100_000_000).prop_map(|n| Some(format!("0571-8{:07}", n % 10_000_000))),
            (0u32..100_000_000).prop_map(|n| Some(format!("(010) 6{:07}", n % 10_000_000))),
            (0u32..100_000_000).prop_map(|n| Some(format!("+86 139 {n:08}"))),
            Just(Some("+44 20 7946 0000".to_string())),
        ];
        let one = (phone, any::<bool>(), any::<bool>());
        let pool = proptest::collection::vec(one, 6).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (phone, email, hook))| Person {
                    id: format!("c{i}"),
                    name: format!("n{i}"),
                    phone,
                    email: email.then(|| format!("c{i}@example.org")),
                    webhook: hook.then(|| "robot".to_string()),
                })
                .collect::<Vec<_>>()
        });
        let binding = proptest::collection::vec(
            proptest::sample::subsequence((0..6).collect::<Vec<usize>>(), 0..=6),
            6,
        );
        let prefs = proptest::collection::vec(
            Just(CHANNELS.to_vec())
                .prop_shuffle()
                .prop_flat_map(|c| proptest::sample::subsequence(c, 0..=5)),
            6,
        );
        let up = proptest::sample::subsequence(CHANNELS.to_vec(), 0..=5);
        (
            pool,
            binding,
            proptest::sample::subsequence(Role::ALL.to_vec(), 1..=6),
            prefs,
            up,
        )
            .prop_map(|(pool, binding, notify, prefs, up)| {
                let mut audience = Audience::default();
                for (role, idx) in Role::ALL.iter().zip(binding) {
                    audience = audience.with(*role, idx.iter().map(|&i| pool[i].clone()).collect());
                }
                let prefs = Role::ALL.iter().copied().zip(prefs).collect();
                let mut up: BTreeSet<ChannelKind> = up.into_iter().collect();
                up.insert(ChannelKind::Console);
                (audience, notify, prefs, up)
            })
    }

    fn is_landline(phone: &str) -> bool {
        crate::util::number::classify(phone) == crate::util::number::NumberKind::Landline
    }

    proptest! {
        /// Each role of the route gets exactly its bound people (less those
        /// already planned under an earlier role), each contact once per
        /// event however often bound, and planning is deterministic.
        #[test]
        fn every_role_gets_its_people_and_each_contact_is_told_once(
            (audience, notify, prefs, up) in arb_world()
        ) {
            let routes = [route(notify.clone())];
            let r = Routes { routes: &routes, prefs: &prefs };
            let a = alarm();
            let plan = recipients_for_event(r, &audience, &a, EventKind::Raised, &[], &Up(up.clone()));
            let ids: Vec<_> = plan.iter().map(|p| p.recipient.contact_id.clone()).collect();
            let unique: BTreeSet<_> = ids.iter().cloned().collect();
            prop_assert_eq!(unique.len(), ids.len(), "a contact told twice: {:?}", ids);
            let mut roles = notify.clone();
            roles.sort();
            let mut earlier: BTreeSet<String> = BTreeSet::new();
            for role in roles {
                let want: Vec<String> = audience
                    .people(role)
                    .iter()
                    .map(|p| p.id.clone())
                    .filter(|id| !earlier.contains(id))
                    .fold(Vec::new(), |mut v, id| { if !v.contains(&id) { v.push(id) } v });
                let got: Vec<String> = plan
                    .iter()
                    .filter(|p| p.recipient.role == role)
                    .map(|p| p.recipient.contact_id.clone())
                    .collect();
                prop_assert_eq!(&got, &want, "role {}", role);
                earlier.extend(want);
            }
            let again = recipients_for_event(r, &audience, &a, EventKind::Raised, &[], &Up(up));
            prop_assert_eq!(plan, again);
        }

        /// A landline is never planned an SMS, neither first nor as a
        /// fallback; and the channels of a person keep the role's order of
        /// preference (the console stands in only when no preference reaches them).
        #[test]
        fn no_sms_to_a_landline_and_channels_keep_preference_order(
            (audience, notify, prefs, up) in arb_world()
        ) {
            let routes = [route(notify)];
            let r = Routes { routes: &routes, prefs: &prefs };
            let plan = route_recipients(r, &audience, &alarm(), &Up(up));
            for p in &plan {
                let chain: Vec<(ChannelKind, &str)> = std::iter::once((p.channel, p.address.as_str()))
                    .chain(p.fallbacks.iter().map(|(k, a)| (*k, a.as_str())))
                    .collect();
                for (kind, address) in &chain {
                    prop_assert!(!(*kind == ChannelKind::Sms && is_landline(address)), "SMS to landline {}", address);
                }
                let order = &prefs[&p.recipient.role];
                let positions: Vec<usize> = chain
                    .iter()
                    .filter_map(|(k, _)| order.iter().position(|o| o == k))
                    .collect();
                if positions.len() == chain.len() {
                    prop_assert!(positions.windows(2).all(|w| w[0] < w[1]), "order {:?} vs {:?}", chain, order);
                } else {
                    prop_assert_eq!(chain.len(), 1);
                    prop_assert_eq!(p.channel, ChannelKind::Console);
                }
            }
        }
    }
}
