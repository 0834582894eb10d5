//! The published sample frames of GB/T 26875.3-2011, byte for byte.
//!
//! Source: the example set that circulates with the standard among 用传 and
//! centre vendors (数据包格式示例, "上传 2号10区 感烟探测器 火警 12年9月26日9时58分02秒"
//! and the ten examples after it), as transcribed in the public write-up
//! `GB26875文档.md`, section 示例, of github.com/ActorLancer/GB-T-26875.3.2011-rs.
//! The standard's own text was not at hand to compare them with; every
//! checksum below was recomputed and matches. In all of them the device's
//! address is 889 (`79 03 00 00 00 00`) and the centre's 88888
//! (`38 5B 01 00 00 00`); frames are stamped 2012-09-26 09:58:32 (the
//! captions say :02, which is the objects' time label).

use crate::adu::{status, Adu, ComponentAddress, Operation, OP_INSPECTION_ANSWER};
use crate::frame::{Command, Deframer, Frame, TimeLabel};

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

const DEVICE: u64 = 889;
const CENTRE: u64 = 88888;

/// Frame time of the samples (09:58:32, 2012-09-26).
const SENT: TimeLabel = TimeLabel {
    second: 0x20,
    minute: 58,
    hour: 9,
    day: 26,
    month: 9,
    year: 12,
};
/// The centre's answers are stamped 3 s later.
const ANSWERED: TimeLabel = TimeLabel {
    second: 0x23,
    ..SENT
};
/// The objects' time label (09:58:02).
const EVENT: TimeLabel = TimeLabel { second: 2, ..SENT };

/// Example 1, device: 2号10区 点型光电感烟探测器 (type 40) 火警.
const FIRE: &str = "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 30 00 02 02 01 01 01 28 0A 00 02 00 02 00 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 00 02 3A 09 1A 09 0C 46 23 23";
/// Examples 1–5, centre's confirm.
const CENTRE_CONFIRM: &str =
    "40 40 01 00 01 01 23 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 00 00 03 AB 23 23";
/// Examples 1–5, centre's deny.
const CENTRE_DENY: &str =
    "40 40 01 00 01 01 23 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 00 00 06 AE 23 23";
/// Example 2: 用传主电源故障 (type 21, status bit 3).
const POWER_FAULT: &str = "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 09 00 02 15 01 08 02 3A 09 1A 09 0C 42 23 23";
/// Example 3: 查岗应答 operation record (type 24, flag bit 5, operator 1).
const INSPECTION_ANSWER: &str = "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 0A 00 02 18 01 20 01 02 3A 09 1A 09 0C 5F 23 23";
/// Example 4: software version V1.1 (type 25).
const VERSION: &str = "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 04 00 02 19 01 01 01 C7 23 23";
/// Example 5: the device's clock (type 28).
const CLOCK: &str = "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 08 00 02 1C 01 02 3A 09 1A 09 0C 40 23 23";
/// Example 6: centre reads the device's status (81) and the answer (cmd 5, type 21).
const READ_STATUS: &str = "40 40 01 00 01 01 20 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 03 00 04 51 01 00 FE 23 23";
const READ_STATUS_ANSWER: &str = "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 09 00 05 15 01 08 02 3A 09 1A 09 0C 45 23 23";
/// Examples 6–11: the device's deny and confirm.
const DEVICE_DENY: &str =
    "40 40 01 00 01 01 23 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 00 00 06 AE 23 23";
const DEVICE_CONFIRM: &str =
    "40 40 01 00 01 01 23 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 00 00 03 AB 23 23";
/// Example 7: read software version (85) and the answer (type 25).
const READ_VERSION: &str = "40 40 01 00 01 01 20 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 03 00 04 55 01 00 02 23 23";
const READ_VERSION_ANSWER: &str = "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 04 00 05 19 01 01 01 CA 23 23";
/// Example 8: read the device's clock (88) and the answer (type 28).
const READ_TIME: &str = "40 40 01 00 01 01 20 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 03 00 04 58 01 00 05 23 23";
const READ_TIME_ANSWER: &str = "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 08 00 05 1C 01 02 3A 09 1A 09 0C 43 23 23";
/// Example 9: initialise the device (89).
const INIT: &str = "40 40 01 00 01 01 20 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 03 00 01 59 01 00 03 23 23";
/// Example 10: time sync (90) to 2012-09-26 09:58:02.
const SYNC: &str = "40 40 01 00 01 01 20 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 08 00 01 5A 01 02 3A 09 1A 09 0C 7D 23 23";
/// Example 11: 查岗 (91) with 0x0A (10 minutes to answer) in the reserved byte.
const INSPECTION: &str = "40 40 01 00 01 01 20 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 03 00 01 5B 01 0A 0F 23 23";

fn frame(from: u64, to: u64, time: TimeLabel, command: Command, adu: Vec<u8>) -> Frame {
    Frame {
        serial: 1,
        version: (1, 1),
        time,
        source: from,
        destination: to,
        command: command as u8,
        adu,
    }
}

/// Decodes the sample and checks that our encoder gives the same bytes back.
fn round_trip(sample: &str) -> Frame {
    let bytes = hex(sample);
    let f = Frame::decode(&bytes).unwrap();
    assert_eq!(f.encode().unwrap(), bytes, "re-encoding {sample}");
    f
}

#[test]
fn fire_alarm_of_smoke_detector_2_in_zone_10() {
    let f = round_trip(FIRE);
    assert_eq!(f.command(), Some(Command::SendData));
    assert_eq!((f.source, f.destination, f.time), (DEVICE, CENTRE, SENT));
    let Adu::ComponentStatus(objs) = Adu::decode(&f.adu).unwrap() else {
        panic!("not a type-2 ADU")
    };
    assert_eq!(objs.len(), 1);
    let c = &objs[0];
    assert_eq!(
        (c.system_type, c.system_address, c.component_type),
        (1, 1, 40)
    );
    assert_eq!(
        c.address,
        ComponentAddress {
            zone: 10,
            position: 2
        }
    );
    // The sample sets only 火警: bit 0 (normal operation) is 0. Accepted.
    assert_eq!(c.status, status::FIRE);
    assert_eq!(c.time, EVENT);
    // Built from values, our encoder writes the same bytes.
    let adu = Adu::ComponentStatus(objs.clone()).encode().unwrap();
    let built = frame(DEVICE, CENTRE, SENT, Command::SendData, adu);
    assert_eq!(built.encode().unwrap(), hex(FIRE));
}

#[test]
fn centre_confirm_and_deny() {
    for (sample, cmd) in [
        (CENTRE_CONFIRM, Command::Confirm),
        (CENTRE_DENY, Command::Deny),
    ] {
        let f = round_trip(sample);
        assert_eq!(f, frame(CENTRE, DEVICE, ANSWERED, cmd, vec![]));
    }
    for (sample, cmd) in [
        (DEVICE_CONFIRM, Command::Confirm),
        (DEVICE_DENY, Command::Deny),
    ] {
        let f = round_trip(sample);
        assert_eq!(f, frame(DEVICE, CENTRE, ANSWERED, cmd, vec![]));
    }
}

#[test]
fn main_power_fault_of_the_device() {
    let f = round_trip(POWER_FAULT);
    assert_eq!(
        Adu::decode(&f.adu).unwrap(),
        Adu::UitdStatus {
            status: 0x08,
            time: EVENT
        }
    );
    let adu = Adu::UitdStatus {
        status: 0x08,
        time: EVENT,
    };
    let built = frame(
        DEVICE,
        CENTRE,
        SENT,
        Command::SendData,
        adu.encode().unwrap(),
    );
    assert_eq!(built.encode().unwrap(), hex(POWER_FAULT));
}

#[test]
fn inspection_answer_is_type_24_with_bit_5() {
    let f = round_trip(INSPECTION_ANSWER);
    let ops = vec![Operation {
        flags: OP_INSPECTION_ANSWER,
        operator: 1,
        time: EVENT,
    }];
    assert_eq!(
        Adu::decode(&f.adu).unwrap(),
        Adu::UitdOperations(ops.clone())
    );
    let built = frame(
        DEVICE,
        CENTRE,
        SENT,
        Command::SendData,
        Adu::UitdOperations(ops).encode().unwrap(),
    );
    assert_eq!(built.encode().unwrap(), hex(INSPECTION_ANSWER));
}

#[test]
fn version_and_clock_uploads() {
    let v = round_trip(VERSION);
    assert_eq!(
        Adu::decode(&v.adu).unwrap(),
        Adu::UitdVersion { major: 1, minor: 1 }
    );
    let c = round_trip(CLOCK);
    assert_eq!(Adu::decode(&c.adu).unwrap(), Adu::UitdTime(EVENT));
}

#[test]
fn queries_and_their_answers() {
    for (query, answer, q, a) in [
        (
            READ_STATUS,
            READ_STATUS_ANSWER,
            Adu::ReadUitdStatus,
            Adu::UitdStatus {
                status: 0x08,
                time: EVENT,
            },
        ),
        (
            READ_VERSION,
            READ_VERSION_ANSWER,
            Adu::ReadUitdVersion,
            Adu::UitdVersion { major: 1, minor: 1 },
        ),
        (
            READ_TIME,
            READ_TIME_ANSWER,
            Adu::ReadUitdTime,
            Adu::UitdTime(EVENT),
        ),
    ] {
        let fq = round_trip(query);
        assert_eq!(fq.command(), Some(Command::Request));
        assert_eq!(Adu::decode(&fq.adu).unwrap(), q);
        assert_eq!(
            frame(CENTRE, DEVICE, SENT, Command::Request, q.encode().unwrap()),
            fq
        );
        let fa = round_trip(answer);
        assert_eq!(fa.command(), Some(Command::Response));
        assert_eq!(fa.serial, fq.serial, "an answer echoes the query's serial");
        let built = frame(DEVICE, CENTRE, SENT, Command::Response, a.encode().unwrap());
        assert_eq!(built.encode().unwrap(), hex(answer));
    }
}

#[test]
fn control_commands_init_sync_and_inspection() {
    let i = round_trip(INIT);
    assert_eq!(i.command(), Some(Command::Control));
    assert_eq!(Adu::decode(&i.adu).unwrap(), Adu::InitUitd);
    let s = round_trip(SYNC);
    assert_eq!(Adu::decode(&s.adu).unwrap(), Adu::SyncClock(EVENT));
    let q = round_trip(INSPECTION);
    // The reserved byte is 0x0A here, not 0: tolerated and kept.
    assert_eq!(
        Adu::decode(&q.adu).unwrap(),
        Adu::Inspection { reserved: 10 }
    );
}

#[test]
fn a_stream_of_every_sample_in_odd_pieces_gives_every_frame() {
    let all = [
        FIRE,
        CENTRE_CONFIRM,
        POWER_FAULT,
        CENTRE_DENY,
        INSPECTION_ANSWER,
        VERSION,
        CLOCK,
        READ_STATUS,
        READ_STATUS_ANSWER,
        INIT,
        SYNC,
        INSPECTION,
    ];
    let stream: Vec<u8> = all.iter().flat_map(|s| hex(s)).collect();
    let mut d = Deframer::new();
    let mut got = Vec::new();
    for piece in stream.chunks(7) {
        d.push(piece);
        while let Some(f) = d.next_frame() {
            got.push(f.unwrap().encode().unwrap());
        }
    }
    let want: Vec<Vec<u8>> = all.iter().map(|s| hex(s)).collect();
    assert_eq!(got, want);
}
