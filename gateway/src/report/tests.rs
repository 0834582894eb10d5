//! The report against scripted alarm sequences whose numbers are worked out
//! by hand in the comments.

use super::*;
use crate::alarms::{Planned, Resolution, RoleAck, TimelineEntry, TimelineKind};
use crate::model::{AlarmKind, AlarmState, ChannelKind, Condition, Recipient, Role::*, Severity};

/// 2025-11-24T16:00:00Z, which is local midnight in UTC+8.
const T0: EpochMs = 1_764_000_000_000;
const S: i64 = 1000;
const H: i64 = 3600 * S;
const UTC8: i32 = 8 * 3600;

fn alarm(id: &str, home: &str, opened: EpochMs, roles: &[Role]) -> Alarm {
    Alarm {
        id: id.into(),
        site: "site".into(),
        kind: AlarmKind::Smoke,
        severity: Severity::Critical,
        state: AlarmState::ActiveUnacked,
        condition: Condition::Firing,
        device_id: format!("smk-{home}"),
        household_id: home.into(),
        address: format!("addr {home}"),
        location: "厨房".into(),
        opened_at: opened,
        updated_at: opened,
        value: Some(0.2),
        threshold: Some(0.15),
        unit: "dB/m".into(),
        reading_ts: opened,
        trigger: None,
        peak: Some(0.2),
        count: 1,
        acks: Vec::new(),
        resolution: None,
        verification: None,
        recipients: roles
            .iter()
            .map(|r| Planned {
                recipient: Recipient {
                    contact_id: format!("c-{}", r.as_str()),
                    role: *r,
                    name: r.as_str().into(),
                },
                channel: ChannelKind::Sms,
                address: "+8613800000000".into(),
                fallbacks: Vec::new(),
            })
            .collect(),
        escalated: false,
        told_at: BTreeMap::new(),
        timeline: vec![TimelineEntry::new(opened, TimelineKind::Opened)],
    }
}

fn ack(a: &mut Alarm, role: Role, at: EpochMs) {
    a.acks.push(RoleAck {
        role,
        by: format!("c-{}", role.as_str()),
        at,
        note: None,
    });
    a.state = AlarmState::ActiveAcked;
}

fn resolve(a: &mut Alarm, cause: Cause, at: EpochMs) {
    a.resolution = Some(Resolution {
        by: "c-grid_worker".into(),
        cause,
        note: None,
        at,
    });
    a.state = AlarmState::Resolved;
}

fn grids() -> HashMap<String, String> {
    [("h1", "g03"), ("h2", "g03"), ("h5", "g05")]
        .into_iter()
        .map(|(h, g)| (h.to_string(), g.to_string()))
        .collect()
}

fn targets() -> Targets {
    let mut t = Targets {
        ack_ms: 300 * S,
        resolve_ms: 2 * H,
        roles: BTreeMap::new(),
        false_alarms_per_day: 5,
    };
    t.roles.insert(FireBrigade, (Some(60 * S), None));
    t
}

/// The scripted sequence: four alarms in the period, one before it.
fn sequence() -> Vec<Alarm> {
    // A1: g03, acked by the brigade after 30 s and the grid worker after 120 s
    // (and again at 200 s: only the first ack of a role counts), resolved after 30 min (fire).
    let mut a1 = alarm("a1", "h1", T0, &[GridWorker, Director, FireBrigade]);
    ack(&mut a1, FireBrigade, T0 + 30 * S);
    ack(&mut a1, GridWorker, T0 + 120 * S);
    ack(&mut a1, GridWorker, T0 + 200 * S);
    resolve(&mut a1, Cause::Fire, T0 + 1800 * S);
    // A2: g03, grid worker acks after 400 s (late), resolved after 9000 s (late).
    let mut a2 = alarm("a2", "h1", T0 + H, &[GridWorker, FireBrigade]);
    ack(&mut a2, GridWorker, T0 + H + 400 * S);
    resolve(&mut a2, Cause::ElectricalFault, T0 + H + 9000 * S);
    // A3: g03, nobody acked, still open 600 s later at the end of the period.
    let a3 = alarm("a3", "h2", T0 + 2 * H, &[GridWorker, Family]);
    // A4: before the period: not counted.
    let mut a4 = alarm("a4", "h5", T0 - 2 * H, &[GridWorker]);
    resolve(&mut a4, Cause::FalseAlarm, T0 - H);
    // A5: g05, opened before the period but reopened in it (T0+100 s): the
    // episode starts at the reopen; acked 60 s later; unresolved for 7700 s (late).
    let mut a5 = alarm("a5", "h5", T0 - 3 * H, &[GridWorker]);
    a5.timeline
        .push(TimelineEntry::new(T0 - 2 * H, TimelineKind::Resolved));
    a5.timeline
        .push(TimelineEntry::new(T0 + 100 * S, TimelineKind::Reopened));
    ack(&mut a5, GridWorker, T0 + 160 * S);
    vec![a1, a2, a3, a4, a5]
}

fn run(alarms: &[Alarm], until: EpochMs, offset: i32) -> Report {
    let grid_of = grids();
    let period = Period {
        since: T0 - H,
        until,
        grid_of: &grid_of,
        utc_offset_secs: offset,
    };
    compute(alarms, &period, &targets())
}

fn causes(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    let mut m: BTreeMap<String, u32> = CAUSES.iter().map(|c| (c.as_str().into(), 0)).collect();
    for (k, v) in pairs {
        m.insert(k.to_string(), *v);
    }
    m
}

#[allow(clippy::too_many_arguments)]
fn group(
    name: &str,
    alarms: u32,
    acked: u32,
    ack: (Option<f64>, Option<f64>, u32, f64),
    resolved: u32,
    res: (Option<f64>, Option<f64>, u32),
    c: &[(&str, u32)],
) -> Group {
    Group {
        name: name.into(),
        alarms,
        acked,
        ack_median_s: ack.0,
        ack_p90_s: ack.1,
        ack_overdue: ack.2,
        ack_target_s: ack.3,
        resolved,
        resolve_median_s: res.0,
        resolve_p90_s: res.1,
        resolve_overdue: res.2,
        resolve_target_s: 7200.0,
        causes: causes(c),
    }
}

#[test]
fn response_times_per_role_and_grid() {
    let r = run(&sequence(), T0 + 2 * H + 600 * S, UTC8);
    let both = [("fire", 1), ("electrical_fault", 1)];
    // First acks by anyone: A1 30, A5 60, A2 400 → p50 60, p90 400; A2 and A3 (600 s) late.
    // Resolutions: A1 1800, A2 9000 → p50 1800, p90 9000; A2 and A5 (7700 s open) late.
    assert_eq!(
        r.total,
        group(
            "all",
            4,
            3,
            (Some(60.0), Some(400.0), 2, 300.0),
            2,
            (Some(1800.0), Some(9000.0), 2),
            &both
        )
    );
    assert_eq!(
        r.roles,
        vec![
            // A1 120, A5 60, A2 400, A3 none → p50 120; A2 and A3 late.
            group(
                "grid_worker",
                4,
                3,
                (Some(120.0), Some(400.0), 2, 300.0),
                2,
                (Some(1800.0), Some(9000.0), 2),
                &both
            ),
            // Told of A1, never acked; it waited until the resolution (1800 s): late.
            group(
                "director",
                1,
                0,
                (None, None, 1, 300.0),
                1,
                (Some(1800.0), Some(1800.0), 0),
                &[("fire", 1)]
            ),
            // Its own 60 s target: A1 acked at 30 s, A2 never (waited 9000 s).
            group(
                "fire_brigade",
                2,
                1,
                (Some(30.0), Some(30.0), 1, 60.0),
                2,
                (Some(1800.0), Some(9000.0), 1),
                &both
            ),
            group(
                "family",
                1,
                0,
                (None, None, 1, 300.0),
                0,
                (None, None, 0),
                &[]
            ),
        ]
    );
    assert_eq!(
        r.grids,
        vec![
            // A1 30, A2 400, A3 none.
            group(
                "g03",
                3,
                2,
                (Some(30.0), Some(400.0), 2, 300.0),
                2,
                (Some(1800.0), Some(9000.0), 1),
                &both
            ),
            group(
                "g05",
                1,
                1,
                (Some(60.0), Some(60.0), 0, 300.0),
                0,
                (None, None, 1),
                &[]
            ),
        ]
    );
}

#[test]
fn false_alarms_flag_homes_over_the_daily_limit_in_local_days() {
    let mut alarms = Vec::new();
    let mut add = |home: &str, at: EpochMs, cause: Cause| {
        let mut a = alarm(&format!("{home}-{at}"), home, at, &[]);
        resolve(&mut a, cause, at + 60 * S);
        alarms.push(a);
    };
    // hA: 6 on one local day (4 false_alarm + 2 cooking) → flagged.
    for i in 0..6 {
        let cause = if i < 4 {
            Cause::FalseAlarm
        } else {
            Cause::Cooking
        };
        add("hA", T0 + (i + 1) * H, cause);
    }
    // hB: exactly the limit (5) → not flagged.
    for i in 0..5 {
        add("hB", T0 + (i + 1) * H, Cause::FalseAlarm);
    }
    // hC: 3 before local midnight, 3 after; a test and a fire do not count.
    for i in 0..3 {
        add("hC", T0 - (i + 1) * 10 * 60 * S, Cause::FalseAlarm);
        add("hC", T0 + (i + 1) * 10 * 60 * S, Cause::FalseAlarm);
    }
    add("hC", T0 + 2 * H, Cause::Test);
    add("hC", T0 + 3 * H, Cause::Fire);

    let r = run(&alarms, T0 + 10 * H, UTC8);
    type Row<'a> = (&'a str, u32, u32, Option<&'a str>, u32, bool);
    let rows: Vec<Row> = r
        .households
        .iter()
        .map(|h| {
            (
                h.household_id.as_str(),
                h.alarms,
                h.false_alarms,
                h.worst_day.as_deref(),
                h.worst_day_false_alarms,
                h.flagged,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("hA", 6, 6, Some("2025-11-25"), 6, true),
            // Ties between days: the earliest is shown.
            ("hC", 8, 6, Some("2025-11-24"), 3, false),
            ("hB", 5, 5, Some("2025-11-25"), 5, false),
        ]
    );
    assert_eq!(r.households[0].grid, "?");
    assert_eq!(r.total.causes["cooking"], 2);
    assert_eq!(r.total.causes["false_alarm"], 15);

    // In UTC, hC's six fall on one day: the day boundary is the site's, not UTC's.
    let utc = run(&alarms, T0 + 10 * H, 0);
    let hc = utc.households.iter().find(|h| h.household_id == "hC");
    assert!(hc.is_some_and(|h| h.flagged && h.worst_day_false_alarms == 6));
}

#[test]
fn nearest_rank_percentiles() {
    assert_eq!(percentile(&[], 50), None);
    assert_eq!(percentile(&[7], 90), Some(7));
    let v: Vec<i64> = (1..=10).collect();
    assert_eq!(percentile(&v, 50), Some(5));
    assert_eq!(percentile(&v, 90), Some(9));
    assert_eq!(percentile(&v, 100), Some(10));
    assert_eq!(percentile(&[1, 2, 3, 4], 50), Some(2));
}

#[test]
fn renders_every_format() {
    let r = run(&sequence(), T0 + 2 * H + 600 * S, UTC8);
    let table = render::render(&r, render::Format::Table).unwrap();
    assert!(table.contains("fire_brigade"), "{table}");
    let csv = render::render(&r, render::Format::Csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    // total + 4 roles + 2 grids + 3 homes (h1, h2, h5).
    assert_eq!(lines.len(), 1 + 1 + 4 + 2 + 3, "{csv}");
    assert!(lines[1].starts_with("total,all,4,3,60,400,2,300,2,1800,9000,2,7200,"));
    let html = render::render(&r, render::Format::Html).unwrap();
    assert!(html.contains("<td>g05</td>"));
    let json: serde_json::Value =
        serde_json::from_str(&render::render(&r, render::Format::Json).unwrap()).unwrap();
    assert_eq!(json["total"]["ack_overdue"], 2);
    assert_eq!(render::human_secs(Some(245.0)), "4m05s");
    assert_eq!(render::human_secs(Some(7260.0)), "2h01m");
}

#[test]
fn report_table_in_gateway_toml() {
    let c: ReportConfig = toml::from_str(
        "ack_target = \"2m\"\nfalse_alarms_per_day = 3\n[roles.fire_brigade]\nack_target = \"30s\"\n",
    )
    .unwrap();
    let t = Targets::from_config(&c);
    assert_eq!(
        (t.ack_ms, t.resolve_ms, t.false_alarms_per_day),
        (120_000, 7_200_000, 3)
    );
    assert_eq!(t.for_role(FireBrigade), (30_000, 7_200_000));
    assert_eq!(t.for_role(GridWorker), (120_000, 7_200_000));
    assert!(toml::from_str::<ReportConfig>("ack_targte = \"2m\"").is_err());
    assert!(toml::from_str::<ReportConfig>("[roles.mayor]\nack_target = \"1m\"").is_err());
}

#[test]
fn the_broker_pseudo_recipient_is_not_a_role() {
    let mut a = alarm("a", "h1", T0, &[GridWorker]);
    let mut broker = a.recipients[0].clone();
    broker.recipient = crate::dispatch::plan::broker_recipient();
    broker.channel = ChannelKind::Mqtt;
    a.recipients.push(broker);
    let r = run(&[a], T0 + 60 * S, UTC8);
    let names: Vec<&str> = r.roles.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["grid_worker"]);
}
