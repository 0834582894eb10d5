//! What the store's journal costs on the write path: the alarms stage's
//! commit + flush (one alarm and its 5 notifications, then fsync) and the
//! sender's outbox drain (record each delivery done, flush every 64), with
//! the journal (`Store::open`) and without it (`Store::open_existing`, the
//! sled-only path operator commands use: exactly the store before the
//! journal existed).
//!
//! ```sh
//! cargo run --release -p gridwatch --example store_cost -- 300 3000
//! ```
//! Arguments: alarms to commit one by one, notifications to drain.

use gridwatch::alarms::Alarm;
use gridwatch::dispatch::{DeliveryRecord, DeliveryStatus, Outgoing};
use gridwatch::model::{ChannelKind, EventKind, Recipient, Role};
use gridwatch::notification::{MessageContext, Notification};
use gridwatch::store::Store;
use std::time::Instant;

fn alarm(i: usize) -> Alarm {
    serde_json::from_value(serde_json::json!({
        "id": format!("alarm-{i:06}"), "site": "s", "kind": "smoke", "severity": "critical",
        "state": "active_unacked", "condition": "firing", "device_id": format!("smk-{i}"),
        "household_id": "h", "address": "3幢2单元501室", "location": "厨房", "opened_at": 1,
        "updated_at": 1, "value": 0.21, "threshold": 0.15, "unit": "dB/m", "reading_ts": 1,
        "peak": 0.21, "count": 1, "acks": [], "resolution": null, "verification": null,
        "recipients": [], "timeline": []
    }))
    .expect("alarm fixture")
}

fn outgoing(a: &Alarm, n: usize) -> Outgoing {
    Outgoing {
        notification: Notification {
            delivery_id: format!("{}-{n}", a.id),
            event: EventKind::Raised,
            alarm: a.view(),
            recipient: Recipient {
                contact_id: format!("c{n}"),
                role: Role::GridWorker,
                name: "王芳".into(),
            },
            channel: ChannelKind::Console,
            address: "王芳".into(),
            ack_url: "http://127.0.0.1:8080/ack/x".into(),
            context: MessageContext::default(),
            created: 1,
        },
        fallbacks: Vec::new(),
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn run(journal: bool, alarms: usize, drain: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("data");
    let store = if journal {
        Store::open(&path)?.0
    } else {
        drop(Store::open(&path)?);
        Store::open_existing(&path)?
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut lat = Vec::with_capacity(alarms);
    for i in 0..alarms {
        let a = alarm(i);
        let outs = (0..5).map(|n| outgoing(&a, n)).collect();
        let t = Instant::now();
        store.commit(std::slice::from_ref(&a), outs)?;
        rt.block_on(store.flush())?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    // Drain: queue `drain` notifications, then mark each sent.
    let mut queued = Vec::new();
    for i in 0..drain / 5 {
        let a = alarm(alarms + i);
        let outs = (0..5).map(|n| outgoing(&a, n)).collect();
        queued.extend(store.commit(std::slice::from_ref(&a), outs)?);
    }
    rt.block_on(store.flush())?;
    let t = Instant::now();
    for (k, p) in queued.iter().enumerate() {
        let mut rec = DeliveryRecord::pending(&p.item.notification);
        rec.status = DeliveryStatus::Sent;
        store.record_delivery(p.key, &rec, true)?;
        if k % 64 == 63 {
            rt.block_on(store.flush())?;
        }
    }
    rt.block_on(store.flush())?;
    let per_s = queued.len() as f64 / t.elapsed().as_secs_f64();
    println!(
        "{:<16} commit+flush p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms | outbox drain {:.0} notifications/s",
        if journal { "sled + journal" } else { "sled only" },
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        pct(&mut lat, 1.0),
        per_s
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let alarms = args.next().and_then(|a| a.parse().ok()).unwrap_or(300);
    let drain = args.next().and_then(|a| a.parse().ok()).unwrap_or(3000);
    for journal in [false, true, false, true] {
        run(journal, alarms, drain)?;
    }
    Ok(())
}
