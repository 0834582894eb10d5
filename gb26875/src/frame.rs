//! The frame (数据包): start `@@`, control unit (serial, version, time label,
//! source, destination, ADU length, command), ADU, checksum, end `##`
//! (GB/T 26875.3-2011 §6.6). Multi-byte fields are little-endian.

/// Start characters `@@` (64, 64).
pub const START: [u8; 2] = *b"@@";
/// End characters `##` (35, 35).
pub const END: [u8; 2] = *b"##";
/// Longest application data unit the standard allows.
pub const MAX_ADU: usize = 1024;
/// Start plus control unit: the bytes before the ADU.
pub const HEADER_LEN: usize = 27;
/// A frame with an empty ADU (confirm, deny, heartbeat).
pub const MIN_FRAME: usize = HEADER_LEN + 3;
/// Largest address: six bytes.
pub const MAX_ADDRESS: u64 = (1 << 48) - 1;
/// Main protocol version; fixed by the standard.
pub const VERSION_MAJOR: u8 = 1;

/// Control-unit commands (命令字节, §6.6 table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// 控制命令 (centre → device: time sync, 查岗, initialise).
    Control = 1,
    /// 发送数据 (device → centre: alarms and states; empty = heartbeat).
    SendData = 2,
    /// 确认.
    Confirm = 3,
    /// 请求 (a query).
    Request = 4,
    /// 应答 (the answer to a query).
    Response = 5,
    /// 否认.
    Deny = 6,
}

impl Command {
    /// The command of a command byte, `None` for reserved and user values.
    pub fn from_u8(b: u8) -> Option<Command> {
        Some(match b {
            1 => Command::Control,
            2 => Command::SendData,
            3 => Command::Confirm,
            4 => Command::Request,
            5 => Command::Response,
            6 => Command::Deny,
            _ => return None,
        })
    }

    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Control => "control",
            Command::SendData => "send_data",
            Command::Confirm => "confirm",
            Command::Request => "request",
            Command::Response => "response",
            Command::Deny => "deny",
        }
    }
}

/// A time label (时间标签, §8.2.2): second, minute, hour, day, month, year
/// since 2000, one byte each, in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TimeLabel {
    pub second: u8,
    pub minute: u8,
    pub hour: u8,
    pub day: u8,
    pub month: u8,
    /// Years since 2000 (0–99).
    pub year: u8,
}

impl TimeLabel {
    /// The six bytes as sent.
    pub fn to_bytes(self) -> [u8; 6] {
        [
            self.second,
            self.minute,
            self.hour,
            self.day,
            self.month,
            self.year,
        ]
    }

    /// Reads six bytes; no range check (see [`TimeLabel::is_valid`]).
    pub fn from_bytes(b: [u8; 6]) -> TimeLabel {
        TimeLabel {
            second: b[0],
            minute: b[1],
            hour: b[2],
            day: b[3],
            month: b[4],
            year: b[5],
        }
    }

    /// Every field in the standard's range (day 1–31, month 1–12, year 0–99).
    pub fn is_valid(self) -> bool {
        self.second < 60
            && self.minute < 60
            && self.hour < 24
            && (1..=31).contains(&self.day)
            && (1..=12).contains(&self.month)
            && self.year < 100
    }
}

/// One frame. `command` is the raw byte so an unknown command still decodes
/// (and can be denied with its serial).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// 业务流水号: the sender's per-connection counter; answers echo it.
    pub serial: u16,
    /// (main, user) version; main is 1.
    pub version: (u8, u8),
    /// When the frame was sent.
    pub time: TimeLabel,
    /// Six-byte address of the sender.
    pub source: u64,
    /// Six-byte address of the receiver.
    pub destination: u64,
    pub command: u8,
    /// The application data unit; empty for confirm, deny and heartbeats.
    pub adu: Vec<u8>,
}

/// Why a frame cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("ADU of {0} bytes is over the standard's {MAX_ADU}")]
    AduTooLong(usize),
    #[error("address {0} does not fit six bytes")]
    Address(u64),
    #[error("time label {0:?} is out of range")]
    Time(TimeLabel),
    #[error("protocol main version must be {VERSION_MAJOR}, not {0}")]
    Version(u8),
    #[error("command byte 0 is reserved")]
    Command,
}

/// Why received bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{0} bytes is shorter than the smallest frame ({MIN_FRAME})")]
    TooShort(usize),
    #[error("frame does not start with @@")]
    BadStart,
    #[error("frame does not end with ##")]
    BadEnd,
    #[error("ADU length {0} is over the standard's {MAX_ADU}")]
    AduTooLong(usize),
    #[error("ADU length field says {declared} bytes but the frame holds {actual}")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("checksum {found:#04x} does not match the bytes ({expected:#04x})")]
    Checksum { expected: u8, found: u8 },
}

/// A rejected frame, with as much of its header as could be read so the
/// receiver can deny it with the sender's serial.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct BadFrame {
    pub serial: Option<u16>,
    pub from: Option<u64>,
    pub error: DecodeError,
}

/// Sum of the bytes mod 256 (the standard's checksum runs from the serial to
/// the end of the ADU).
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b))
}

fn addr_bytes(a: u64) -> [u8; 6] {
    let b = a.to_le_bytes();
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}

fn addr_from(b: &[u8]) -> u64 {
    let mut full = [0u8; 8];
    full[..6].copy_from_slice(&b[..6]);
    u64::from_le_bytes(full)
}

impl Frame {
    /// The known command, if the byte is one.
    pub fn command(&self) -> Option<Command> {
        Command::from_u8(self.command)
    }

    /// Encodes, refusing anything the standard does not allow.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        if self.adu.len() > MAX_ADU {
            return Err(EncodeError::AduTooLong(self.adu.len()));
        }
        for a in [self.source, self.destination] {
            if a > MAX_ADDRESS {
                return Err(EncodeError::Address(a));
            }
        }
        if !self.time.is_valid() {
            return Err(EncodeError::Time(self.time));
        }
        if self.version.0 != VERSION_MAJOR {
            return Err(EncodeError::Version(self.version.0));
        }
        if self.command == 0 {
            return Err(EncodeError::Command);
        }
        let mut out = Vec::with_capacity(MIN_FRAME + self.adu.len());
        out.extend_from_slice(&START);
        out.extend_from_slice(&self.serial.to_le_bytes());
        out.extend_from_slice(&[self.version.0, self.version.1]);
        out.extend_from_slice(&self.time.to_bytes());
        out.extend_from_slice(&addr_bytes(self.source));
        out.extend_from_slice(&addr_bytes(self.destination));
        out.extend_from_slice(&(self.adu.len() as u16).to_le_bytes());
        out.push(self.command);
        out.extend_from_slice(&self.adu);
        out.push(checksum(&out[2..]));
        out.extend_from_slice(&END);
        Ok(out)
    }

    /// Decodes exactly one frame (tolerant: any version, any time label).
    pub fn decode(b: &[u8]) -> Result<Frame, BadFrame> {
        let partial = |error| BadFrame {
            serial: (b.len() >= 4).then(|| u16::from_le_bytes([b[2], b[3]])),
            from: (b.len() >= 18).then(|| addr_from(&b[12..18])),
            error,
        };
        if b.len() >= 2 && b[..2] != START {
            return Err(partial(DecodeError::BadStart));
        }
        if b.len() >= HEADER_LEN {
            let declared = u16::from_le_bytes([b[24], b[25]]) as usize;
            if declared > MAX_ADU {
                return Err(partial(DecodeError::AduTooLong(declared)));
            }
        }
        if b.len() < MIN_FRAME {
            return Err(partial(DecodeError::TooShort(b.len())));
        }
        let declared = u16::from_le_bytes([b[24], b[25]]) as usize;
        let actual = b.len() - MIN_FRAME;
        if declared != actual {
            return Err(partial(DecodeError::LengthMismatch { declared, actual }));
        }
        if b[b.len() - 2..] != END {
            return Err(partial(DecodeError::BadEnd));
        }
        let ck_at = b.len() - 3;
        let expected = checksum(&b[2..ck_at]);
        if b[ck_at] != expected {
            return Err(partial(DecodeError::Checksum {
                expected,
                found: b[ck_at],
            }));
        }
        let mut t = [0u8; 6];
        t.copy_from_slice(&b[6..12]);
        Ok(Frame {
            serial: u16::from_le_bytes([b[2], b[3]]),
            version: (b[4], b[5]),
            time: TimeLabel::from_bytes(t),
            source: addr_from(&b[12..18]),
            destination: addr_from(&b[18..24]),
            command: b[26],
            adu: b[HEADER_LEN..ck_at].to_vec(),
        })
    }
}

/// Cuts frames out of a TCP byte stream: several frames in one read (粘包)
/// and a frame split over reads both work. Garbage before `@@` is skipped;
/// a frame with a bad length, end or checksum is reported once and the
/// search resumes after its start, so one bad frame never wedges the link.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
}

/// Most bytes a [`Deframer`] holds while waiting for the rest of a frame: one largest frame.
pub const MAX_BUFFERED: usize = MIN_FRAME + MAX_ADU;

impl Deframer {
    /// An empty deframer.
    pub fn new() -> Deframer {
        Deframer::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held, not yet a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame (or rejected frame), or `None` until more bytes come.
    pub fn next_frame(&mut self) -> Option<Result<Frame, BadFrame>> {
        // Skip to the next "@@" (keep a lone trailing '@': it may be half a start).
        let start = self.buf.windows(2).position(|w| w == START);
        match start {
            Some(0) => {}
            Some(i) => {
                self.buf.drain(..i);
            }
            None => {
                let keep = usize::from(self.buf.last() == Some(&START[0]));
                let cut = self.buf.len() - keep;
                self.buf.drain(..cut);
                return None;
            }
        }
        if self.buf.len() < HEADER_LEN {
            return None;
        }
        let declared = u16::from_le_bytes([self.buf[24], self.buf[25]]) as usize;
        if declared > MAX_ADU {
            let bad = Frame::decode(&self.buf[..HEADER_LEN]).err();
            self.buf.drain(..2);
            return bad.map(Err);
        }
        let total = MIN_FRAME + declared;
        if self.buf.len() < total {
            return None;
        }
        let res = Frame::decode(&self.buf[..total]);
        match res {
            Ok(f) => {
                self.buf.drain(..total);
                Some(Ok(f))
            }
            Err(e) => {
                // Resume after this start: a real frame may begin inside.
                self.buf.drain(..2);
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_time() -> impl Strategy<Value = TimeLabel> {
        (0u8..60, 0u8..60, 0u8..24, 1u8..=31, 1u8..=12, 0u8..100).prop_map(
            |(second, minute, hour, day, month, year)| TimeLabel {
                second,
                minute,
                hour,
                day,
                month,
                year,
            },
        )
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        (
            any::<u16>(),
            any::<u8>(),
            arb_time(),
            0..=MAX_ADDRESS,
            0..=MAX_ADDRESS,
            1u8..=255,
            proptest::collection::vec(any::<u8>(), 0..=MAX_ADU),
        )
            .prop_map(
                |(serial, user, time, source, destination, command, adu)| Frame {
                    serial,
                    version: (1, user),
                    time,
                    source,
                    destination,
                    command,
                    adu,
                },
            )
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(f in arb_frame()) {
            let bytes = f.encode().unwrap();
            prop_assert_eq!(Frame::decode(&bytes).unwrap(), f);
        }

        #[test]
        fn any_bytes_decode_or_fail_cleanly(b in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let _ = Frame::decode(&b);
            let mut d = Deframer::new();
            d.push(&b);
            let mut n = 0;
            while d.next_frame().is_some() {
                n += 1;
                prop_assert!(n <= b.len());
            }
            prop_assert!(d.buffered() <= MAX_BUFFERED + 1);
        }

        #[test]
        fn frames_survive_any_split_and_garbage(
            fs in proptest::collection::vec(arb_frame(), 1..4),
            cuts in proptest::collection::vec(1usize..200, 1..20),
            junk in proptest::collection::vec(any::<u8>().prop_filter("no @", |b| *b != b'@'), 0..8),
        ) {
            let mut stream = junk.clone();
            for f in &fs {
                stream.extend(f.encode().unwrap());
            }
            let mut d = Deframer::new();
            let mut got = Vec::new();
            let mut rest = stream.as_slice();
            let mut cuts = cuts.into_iter().cycle();
            while !rest.is_empty() {
                let n = cuts.next().unwrap_or(1).min(rest.len());
                d.push(&rest[..n]);
                rest = &rest[n..];
                while let Some(r) = d.next_frame() {
                    got.push(r.unwrap());
                }
            }
            prop_assert_eq!(got, fs);
        }
    }

    #[test]
    fn encode_refuses_what_the_standard_forbids() {
        let ok = Frame {
            serial: 0,
            version: (1, 1),
            time: TimeLabel {
                second: 0,
                minute: 0,
                hour: 0,
                day: 1,
                month: 1,
                year: 26,
            },
            source: 1,
            destination: 2,
            command: 2,
            adu: vec![],
        };
        assert!(ok.encode().is_ok());
        let long = Frame {
            adu: vec![0; MAX_ADU + 1],
            ..ok.clone()
        };
        assert_eq!(long.encode(), Err(EncodeError::AduTooLong(MAX_ADU + 1)));
        let addr = Frame {
            source: MAX_ADDRESS + 1,
            ..ok.clone()
        };
        assert!(matches!(addr.encode(), Err(EncodeError::Address(_))));
        let time = Frame {
            time: TimeLabel {
                month: 13,
                ..ok.time
            },
            ..ok.clone()
        };
        assert!(matches!(time.encode(), Err(EncodeError::Time(_))));
        let cmd = Frame { command: 0, ..ok };
        assert_eq!(cmd.encode(), Err(EncodeError::Command));
    }

    #[test]
    fn bad_frames_are_reported_with_their_serial_and_the_stream_goes_on() {
        let f = Frame {
            serial: 0x0107,
            version: (1, 1),
            time: TimeLabel {
                second: 1,
                minute: 2,
                hour: 3,
                day: 4,
                month: 5,
                year: 26,
            },
            source: 88888,
            destination: 889,
            command: 1,
            adu: vec![91, 1, 0],
        };
        let mut bad = f.encode().unwrap();
        let ck = bad.len() - 3;
        bad[ck] ^= 0xFF;
        let e = Frame::decode(&bad).unwrap_err();
        assert_eq!(e.serial, Some(0x0107));
        assert_eq!(e.from, Some(88888));
        assert!(matches!(e.error, DecodeError::Checksum { .. }));

        let mut d = Deframer::new();
        d.push(&bad);
        d.push(&f.encode().unwrap());
        assert!(matches!(d.next_frame(), Some(Err(_))));
        assert_eq!(d.next_frame(), Some(Ok(f)));
        assert_eq!(d.next_frame(), None);

        let mut huge = vec![b'@', b'@'];
        huge.extend([0u8; 22]);
        huge.extend(2000u16.to_le_bytes());
        huge.push(2);
        assert_eq!(
            Frame::decode(&huge).unwrap_err().error,
            DecodeError::AduTooLong(2000)
        );
    }
}
