//! Rules engine throughput: 10 000 devices of mixed kinds, every rule type
//! enabled (thresholds, overrides, rise, step, rate of rise, smoke flag and
//! analog, battery, heartbeat ticks), steady readings that change nothing.
//!
//! Run: `cargo bench -p gridwatch --bench rules`; criterion reports readings/s
//! (one element = one reading).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use gridwatch::config::{
    Device, DeviceKind, DeviceTransport, Dur, Override, PartialThreshold, Registry, Rules, Trend,
};
use gridwatch::model::{Flags, Metric, Reading, Transport, Values};
use gridwatch::rules::RuleEngine;

const DEVICES: usize = 10_000;
const KINDS: [DeviceKind; 4] = [
    DeviceKind::Smoke,
    DeviceKind::ResidualCurrent,
    DeviceKind::Temperature,
    DeviceKind::Combo,
];

fn rules() -> Rules {
    let mut rules = Rules::default();
    rules.residual_current.rise = Some(Trend {
        delta: 100.0,
        within: Dur::from_secs(600),
    });
    rules.residual_current.step = Some(Trend {
        delta: 50.0,
        within: Dur::from_secs(2),
    });
    rules.temperature.rate_of_rise = Some(Trend {
        delta: 8.0,
        within: Dur::from_secs(60),
    });
    // Every tenth device tuned.
    rules.overrides = (0..DEVICES)
        .step_by(10)
        .map(|i| Override {
            device: format!("dev-{i}"),
            residual_current: Some(PartialThreshold {
                alarm: Some(400.0),
                clear: Some(350.0),
                ..Default::default()
            }),
            temperature: None,
            smoke: None,
            allow_nonstandard: false,
            reason: None,
        })
        .collect();
    rules
}

fn registry() -> Registry {
    Registry {
        devices: (0..DEVICES)
            .map(|i| Device {
                id: format!("dev-{i}"),
                kind: KINDS[i % KINDS.len()],
                household: format!("h-{}", i / 3),
                location: String::new(),
                transport: DeviceTransport::Mqtt,
                gb26875: None,
            })
            .collect(),
        ..Registry::default()
    }
}

/// One steady reading per device: values well inside the normal band.
fn readings() -> Vec<Reading> {
    (0..DEVICES)
        .map(|i| {
            let mut values = Values::default();
            match KINDS[i % KINDS.len()] {
                DeviceKind::Smoke => values.set(Metric::SmokeDbM, 0.01),
                DeviceKind::ResidualCurrent => values.set(Metric::ResidualCurrentMa, 30.0),
                DeviceKind::Temperature => values.set(Metric::TemperatureC, 25.0),
                DeviceKind::Combo => {
                    values.set(Metric::SmokeDbM, 0.01);
                    values.set(Metric::TemperatureC, 25.0);
                }
            }
            values.set(Metric::BatteryPct, 80.0);
            Reading {
                device_id: format!("dev-{i}"),
                ts: 0,
                received: 0,
                values,
                flags: Flags::default(),
                transport: Transport::Mqtt,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut engine = RuleEngine::new(&rules(), &registry());
    let mut batch = readings();
    let mut out = Vec::with_capacity(1024);
    let mut round: i64 = 0;
    let mut group = c.benchmark_group("rules");
    group.throughput(Throughput::Elements(DEVICES as u64));
    group.bench_function("evaluate_10k_devices_steady", |b| {
        b.iter(|| {
            round += 1;
            let ts = round * 1_000;
            for (i, r) in batch.iter_mut().enumerate() {
                r.ts = ts;
                r.received = ts;
                // Small noise keeps the trend windows working.
                let wobble = ((round + i as i64) % 3) as f64;
                if r.values.get(Metric::ResidualCurrentMa).is_some() {
                    r.values.set(Metric::ResidualCurrentMa, 30.0 + wobble);
                }
                if r.values.get(Metric::TemperatureC).is_some() {
                    r.values.set(Metric::TemperatureC, 25.0 + wobble * 0.1);
                }
                engine.evaluate(r, &mut out);
            }
            // One tick per round of readings: heartbeat and hold checks are in the figure.
            engine.tick(ts, &mut out);
            assert!(out.is_empty(), "steady readings must change nothing");
            black_box(&out);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
