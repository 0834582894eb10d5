//! The codec on the link's hot path: encoding a fire frame (every alarm state
//! change), decoding one, and deframing a TCP stream of 100 frames read in
//! 7-byte pieces (the worst case of split reads).
//!
//! Run: `cargo bench -p gb26875 --bench codec`. Figures: docs/benchmarks.md.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use gb26875::adu::{description, status, Adu, ComponentAddress, ComponentStatus};
use gb26875::frame::{Deframer, Frame, TimeLabel};

fn fire_frame(serial: u16) -> Frame {
    let time = TimeLabel {
        second: 2,
        minute: 58,
        hour: 9,
        day: 26,
        month: 9,
        year: 26,
    };
    let adu = Adu::ComponentStatus(vec![ComponentStatus {
        system_type: 1,
        system_address: 1,
        component_type: 42,
        address: ComponentAddress {
            zone: 10,
            position: 2,
        },
        status: status::NORMAL | status::FIRE,
        description: description(b"3-2-501 kitchen"),
        time,
    }]);
    Frame {
        serial,
        version: (1, 1),
        time,
        source: 889,
        destination: 88888,
        command: 2,
        adu: adu.encode().unwrap_or_default(),
    }
}

fn codec(c: &mut Criterion) {
    let f = fire_frame(1);
    let bytes = f.encode().unwrap_or_default();
    let mut g = c.benchmark_group("gb26875");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_fire_frame", |b| b.iter(|| black_box(&f).encode()));
    g.bench_function("decode_fire_frame_and_adu", |b| {
        b.iter(|| {
            let f = Frame::decode(black_box(&bytes)).ok()?;
            Adu::decode(&f.adu).ok()
        })
    });
    let stream: Vec<u8> = (0..100u16)
        .flat_map(|i| fire_frame(i).encode().unwrap_or_default())
        .collect();
    g.throughput(Throughput::Elements(100));
    g.bench_function("deframe_100_frames_in_7_byte_reads", |b| {
        b.iter(|| {
            let mut d = Deframer::new();
            let mut n = 0;
            for piece in stream.chunks(7) {
                d.push(piece);
                while let Some(Ok(_)) = d.next_frame() {
                    n += 1;
                }
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
