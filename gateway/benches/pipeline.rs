//! The other hot pure functions of the alarm path, one criterion group each:
//! payload parsing (every reading), the routing plan and notification
//! building (every alarm event), and message rendering (every notification).
//!
//! Run: `cargo bench -p gridwatch --bench pipeline`. The routing and rendering
//! benches use the e2e compound (tests/fixtures/compound): a smoke alarm in a
//! home whose grid worker, director, fire brigade, family and neighbour homes
//! are all told. Figures: docs/benchmarks.md.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use gridwatch::ack_link::AckSigner;
use gridwatch::alarms::Alarm;
use gridwatch::channels::render;
use gridwatch::config::Config;
use gridwatch::dispatch::{
    notifications, route_recipients, Audience, Availability, EventInput, Letterhead, Routes,
};
use gridwatch::ingest::payload::parse_reading;
use gridwatch::model::{
    AlarmKind, AlarmState, ChannelKind, Condition, EventKind, Severity, Transport,
};
use std::path::Path;

const NOW: i64 = 1_764_000_000_000;

/// Every channel is configured.
struct All;

impl Availability for All {
    fn is_available(&self, _: ChannelKind, _: Option<&str>) -> bool {
        true
    }
}

fn config() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().expect("temp dir");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/compound");
    for name in ["registry.toml", "rules.toml", "routing.toml"] {
        std::fs::copy(fixture.join(name), dir.path().join(name)).expect("copy fixture");
    }
    let gateway = r#"registry = "registry.toml"
rules = "rules.toml"
routing = "routing.toml"

[site]
id = "xihu-longjing"
name = "西湖区龙井社区"

[channels.email]
smtp = "smtp://127.0.0.1:2525"
from = "gridwatch <alarm@example.org>"

[channels.sms]
url = "http://127.0.0.1:9/sms"
body = '{"to":"{{phone}}","text":"{{text}}"}'

[channels.webhook.fire119]
url = "http://127.0.0.1:9/hook"
"#;
    std::fs::write(dir.path().join("gateway.toml"), gateway).expect("write gateway.toml");
    let cfg = Config::load(&dir.path().join("gateway.toml")).expect("compound config loads");
    (dir, cfg)
}

fn smoke_alarm() -> Alarm {
    Alarm {
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
        opened_at: NOW,
        updated_at: NOW,
        value: Some(0.21),
        threshold: Some(0.15),
        unit: "dB/m".into(),
        reading_ts: NOW,
        trigger: None,
        peak: Some(0.21),
        count: 1,
        acks: Vec::new(),
        resolution: None,
        verification: None,
        recipients: Vec::new(),
        escalated: false,
        told_at: Default::default(),
        timeline: Vec::new(),
    }
}

fn bench_parse(c: &mut Criterion) {
    let normal =
        br#"{"ts":1764000000000,"values":{"residual_current_ma":42},"battery_pct":87,"rssi":-71}"#;
    let smoke = br#"{"ts":1764000000000,"values":{"smoke_db_m":0.3},"flags":["smoke_alarm"]}"#;
    let mut g = c.benchmark_group("parse_reading");
    g.throughput(Throughput::Elements(1));
    g.bench_function("telemetry", |b| {
        b.iter(|| {
            parse_reading(
                black_box("load-00042"),
                black_box(normal),
                NOW,
                4096,
                Transport::Mqtt,
            )
        })
    });
    g.bench_function("smoke_alarm", |b| {
        b.iter(|| {
            parse_reading(
                black_box("load-00042"),
                black_box(smoke),
                NOW,
                4096,
                Transport::Mqtt,
            )
        })
    });
    g.finish();
}

fn bench_routing(c: &mut Criterion) {
    let (_dir, cfg) = config();
    let alarm = smoke_alarm();
    let signer = AckSigner::new(vec![7; 32]);
    let audience = Audience::of(&cfg, &alarm.household_id);
    let planned = route_recipients(Routes::of(&cfg), &audience, &alarm, &All);
    assert!(
        planned.len() >= 5,
        "compound smoke route plans {} people",
        planned.len()
    );
    let mut g = c.benchmark_group("routing");
    g.throughput(Throughput::Elements(1));
    g.bench_function("route_recipients", |b| {
        b.iter(|| {
            let audience = Audience::of(black_box(&cfg), &alarm.household_id);
            route_recipients(Routes::of(&cfg), &audience, black_box(&alarm), &All)
        })
    });
    let input = EventInput {
        alarm: &alarm,
        event: EventKind::Raised,
        at: NOW,
        actor: None,
    };
    g.bench_function("notifications", |b| {
        b.iter(|| {
            let head = Letterhead::of(black_box(&cfg), &alarm, &planned);
            notifications(
                &head,
                &signer,
                black_box(&input),
                black_box(&planned),
                &mut || ulid::Ulid::new().to_string(),
            )
        })
    });
    g.finish();
}

fn bench_render(c: &mut Criterion) {
    let (_dir, cfg) = config();
    let alarm = smoke_alarm();
    let signer = AckSigner::new(vec![7; 32]);
    let audience = Audience::of(&cfg, &alarm.household_id);
    let planned = route_recipients(Routes::of(&cfg), &audience, &alarm, &All);
    let input = EventInput {
        alarm: &alarm,
        event: EventKind::Raised,
        at: NOW,
        actor: None,
    };
    let head = Letterhead::of(&cfg, &alarm, &planned);
    let all = notifications(&head, &signer, &input, &planned, &mut || {
        ulid::Ulid::new().to_string()
    });
    let n = &all[0];
    let mut g = c.benchmark_group("render");
    g.throughput(Throughput::Elements(1));
    g.bench_function("text", |b| b.iter(|| render::text(black_box(n))));
    g.bench_function("sms", |b| b.iter(|| render::sms(black_box(n))));
    g.bench_function("webhook_json", |b| {
        b.iter(|| render::webhook_json(black_box(n)))
    });
    g.finish();
}

criterion_group!(benches, bench_parse, bench_routing, bench_render);
criterion_main!(benches);
