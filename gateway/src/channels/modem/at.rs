//! The AT dialogue with a Quectel EC2x/EG9x-class module (3GPP TS 27.007 /
//! 27.005 plus Quectel's `QTTS` and `QTONEDET`), written against a [`Wire`]
//! so the whole call and SMS logic runs in unit tests against a scripted
//! peer, without a serial port.
//!
//! Traps this encodes: `ATD<n>;` answers `OK` as soon as the call is placed,
//! long before anyone picks up, so the state comes from polling `AT+CLCC`
//! (stat 0 active, 2 dialing, 3 alerting) and from the `BUSY` / `NO ANSWER`
//! / `NO CARRIER` result codes; TTS works only on an active call; keys come
//! as `+QTONEDET: <ASCII code>` URCs (49 is '1'); every command has a
//! deadline, and a module that misses it is treated as gone.

use super::pdu::{ucs2_hex, Pdu};
use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// One line from the module, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Ok,
    /// `ERROR`, `+CME ERROR: …`, `+CMS ERROR: …`.
    Error(String),
    NoCarrier,
    Busy,
    NoAnswer,
    /// `+CLCC: <idx>,<dir>,<stat>,…`: one call; `outgoing` is dir 0.
    Clcc {
        outgoing: bool,
        stat: u8,
    },
    /// `+QTONEDET: <ascii>`: the callee pressed a key.
    Key(char),
    /// `+QTTS: 0`: the module finished speaking.
    TtsDone,
    /// `+CMGS: <mr>`: the network took the SMS.
    Cmgs(u32),
    /// `> `: the module waits for the PDU.
    Prompt,
    /// Anything else (echo, `RING`, other URCs): ignored.
    Other(String),
}

/// Classifies one line (without its CR LF).
pub fn parse_line(raw: &str) -> Line {
    let l = raw.trim();
    match l {
        "OK" => return Line::Ok,
        "ERROR" => return Line::Error("ERROR".into()),
        "NO CARRIER" => return Line::NoCarrier,
        "BUSY" => return Line::Busy,
        "NO ANSWER" => return Line::NoAnswer,
        ">" => return Line::Prompt,
        _ => {}
    }
    if l.starts_with("+CME ERROR") || l.starts_with("+CMS ERROR") {
        return Line::Error(l.to_string());
    }
    if let Some(rest) = l.strip_prefix("+CLCC:") {
        let f: Vec<&str> = rest.split(',').map(str::trim).collect();
        if let (Some(dir), Some(stat)) = (
            f.get(1).and_then(|s| s.parse::<u8>().ok()),
            f.get(2).and_then(|s| s.parse::<u8>().ok()),
        ) {
            return Line::Clcc {
                outgoing: dir == 0,
                stat,
            };
        }
    }
    if let Some(rest) = l.strip_prefix("+QTONEDET:") {
        if let Some(c) = rest
            .trim()
            .parse::<u32>()
            .ok()
            .and_then(char::from_u32)
            .filter(|c| c.is_ascii_graphic())
        {
            return Line::Key(c);
        }
    }
    if let Some(rest) = l.strip_prefix("+QTTS:") {
        if rest.trim() == "0" {
            return Line::TtsDone;
        }
    }
    if let Some(rest) = l.strip_prefix("+CMGS:") {
        if let Ok(mr) = rest.trim().parse() {
            return Line::Cmgs(mr);
        }
    }
    Line::Other(l.to_string())
}

/// How a call ended, as the timeline and the board say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// Someone picked up and heard the message; `key` is the first key pressed.
    Answered {
        key: Option<char>,
    },
    NoAnswer,
    Busy,
    /// The call could not be made or broke off (module refused, TTS refused).
    Failed(String),
}

impl CallOutcome {
    /// `answered`, `no_answer`, `busy`, `failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CallOutcome::Answered { .. } => "answered",
            CallOutcome::NoAnswer => "no_answer",
            CallOutcome::Busy => "busy",
            CallOutcome::Failed(_) => "failed",
        }
    }
}

/// The module stopped answering or the port broke: it must be reopened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtError {
    #[error("modem did not answer {0:?} in time")]
    Silent(String),
    #[error("serial port: {0}")]
    Io(String),
}

/// The byte pipe to the module: write a command, read one line.
pub trait Wire: Send {
    /// Writes bytes as they are (the caller adds `\r` or Ctrl-Z).
    fn write(&mut self, bytes: &[u8]) -> impl Future<Output = Result<(), AtError>> + Send;
    /// The next non-empty line, `">"` for the SMS prompt, or `None` when
    /// nothing came until `deadline`.
    fn read_line(
        &mut self,
        deadline: Instant,
    ) -> impl Future<Output = Result<Option<String>, AtError>> + Send;
}

/// Timing of the dialogue (from `[channels.modem]`).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub at_timeout: Duration,
    pub ring_timeout: Duration,
    pub key_wait: Duration,
    /// How often `AT+CLCC` is asked while the phone rings.
    pub poll: Duration,
}

/// What to say on a call.
#[derive(Debug, Clone)]
pub struct Speech {
    pub text: String,
    pub play_times: u32,
}

/// The dialogue over one open port.
pub struct Dialogue<W: Wire> {
    wire: W,
    timing: Timing,
    /// Unsolicited codes that arrived while a command waited for its answer.
    urcs: VecDeque<Line>,
}

impl<W: Wire> Dialogue<W> {
    pub fn new(wire: W, timing: Timing) -> Self {
        Dialogue {
            wire,
            timing,
            urcs: VecDeque::new(),
        }
    }

    /// Sends one command and collects its lines up to the final result code
    /// (`OK`, an error, or for `ATD` a call result). Returns the lines
    /// before it and the final one.
    pub async fn command(&mut self, cmd: &str) -> Result<(Vec<Line>, Line), AtError> {
        let dial = cmd.starts_with("ATD");
        self.wire.write(format!("{cmd}\r").as_bytes()).await?;
        let deadline = Instant::now() + self.timing.at_timeout;
        let mut lines = Vec::new();
        loop {
            let Some(raw) = self.wire.read_line(deadline).await? else {
                return Err(AtError::Silent(cmd.to_string()));
            };
            match parse_line(&raw) {
                l @ (Line::Ok | Line::Error(_)) => return Ok((lines, l)),
                l @ (Line::NoCarrier | Line::Busy | Line::NoAnswer) if dial => {
                    return Ok((lines, l))
                }
                l @ (Line::NoCarrier
                | Line::Busy
                | Line::NoAnswer
                | Line::Key(_)
                | Line::TtsDone) => self.urcs.push_back(l),
                l => lines.push(l),
            }
        }
    }

    /// Checks that the module answers and puts it in the modes we rely on.
    pub async fn init(&mut self) -> Result<(), AtError> {
        // Answers still queued for a previous run (killed mid-dialogue) would
        // pair with the wrong commands: throw away whatever is waiting.
        while self
            .wire
            .read_line(Instant::now() + Duration::from_millis(300))
            .await?
            .is_some()
        {}
        // A module just powered up may swallow the first AT.
        let mut answered = false;
        for _ in 0..3 {
            match self.command("AT").await {
                Ok(_) => {
                    answered = true;
                    break;
                }
                Err(AtError::Silent(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        if !answered {
            return Err(AtError::Silent("AT".into()));
        }
        // ATH first: a call left up by a previous run (killed mid-call)
        // would make every new ATD fail.
        for cmd in ["ATH", "ATE0", "AT+CMEE=2", "AT+CMGF=0"] {
            self.command(cmd).await?;
        }
        Ok(())
    }

    /// Is the module still there? (`AT` → `OK`.)
    pub async fn ping(&mut self) -> Result<(), AtError> {
        self.command("AT").await.map(|_| ())
    }

    /// Waits until `deadline` for a URC that `pick` wants; other URCs stay queued.
    async fn wait_urc(
        &mut self,
        deadline: Instant,
        pick: impl Fn(&Line) -> bool,
    ) -> Result<Option<Line>, AtError> {
        if let Some(i) = self.urcs.iter().position(&pick) {
            return Ok(self.urcs.remove(i));
        }
        loop {
            let Some(raw) = self.wire.read_line(deadline).await? else {
                return Ok(None);
            };
            let l = parse_line(&raw);
            if pick(&l) {
                return Ok(Some(l));
            }
            if matches!(
                l,
                Line::NoCarrier | Line::Busy | Line::NoAnswer | Line::Key(_) | Line::TtsDone
            ) {
                self.urcs.push_back(l);
            }
        }
    }

    /// Takes a queued URC of the call's end, if any.
    fn take_end(&mut self) -> Option<Line> {
        let i = self
            .urcs
            .iter()
            .position(|l| matches!(l, Line::NoCarrier | Line::Busy | Line::NoAnswer))?;
        self.urcs.remove(i)
    }

    fn take_key(&mut self) -> Option<char> {
        let i = self.urcs.iter().position(|l| matches!(l, Line::Key(_)))?;
        match self.urcs.remove(i) {
            Some(Line::Key(c)) => Some(c),
            _ => None,
        }
    }

    /// Places one call, reads the message once it is answered, listens for
    /// a key, hangs up. `Err` only when the module itself failed.
    pub async fn call(&mut self, number: &str, speech: &Speech) -> Result<CallOutcome, AtError> {
        self.urcs.clear();
        let (_, fin) = self.command(&format!("ATD{number};")).await?;
        match fin {
            Line::Ok => {}
            Line::Busy => return Ok(CallOutcome::Busy),
            Line::NoAnswer | Line::NoCarrier => return Ok(CallOutcome::NoAnswer),
            Line::Error(e) => return Ok(CallOutcome::Failed(format!("ATD refused: {e}"))),
            other => return Ok(CallOutcome::Failed(format!("ATD: {other:?}"))),
        }
        let ring_until = Instant::now() + self.timing.ring_timeout;
        loop {
            match self.take_end() {
                Some(Line::Busy) => return Ok(CallOutcome::Busy),
                Some(_) => return Ok(CallOutcome::NoAnswer),
                None => {}
            }
            if Instant::now() >= ring_until {
                self.hang_up().await?;
                return Ok(CallOutcome::NoAnswer);
            }
            let (lines, _) = self.command("AT+CLCC").await?;
            let ours = lines.iter().find_map(|l| match l {
                Line::Clcc {
                    outgoing: true,
                    stat,
                } => Some(*stat),
                _ => None,
            });
            match ours {
                Some(0) => break,
                // Listed but not active (dialing, alerting): keep ringing.
                Some(_) => {}
                // Gone without a result code: the network ended it unanswered.
                None => {
                    if self.take_end() == Some(Line::Busy) {
                        return Ok(CallOutcome::Busy);
                    }
                    return Ok(CallOutcome::NoAnswer);
                }
            }
            let next = (Instant::now() + self.timing.poll).min(ring_until);
            let is_end = |l: &Line| matches!(l, Line::NoCarrier | Line::Busy | Line::NoAnswer);
            if let Some(l) = self.wait_urc(next, is_end).await? {
                self.urcs.push_back(l);
            }
        }
        self.speak_and_listen(speech).await
    }

    /// The answered part: enable key detection, speak `play_times` times
    /// (stopping at the first key), give the callee `key_wait` to press one.
    async fn speak_and_listen(&mut self, speech: &Speech) -> Result<CallOutcome, AtError> {
        let (_, fin) = self.command("AT+QTONEDET=1").await?;
        if fin != Line::Ok {
            tracing::warn!(answer = ?fin, "modem refused key detection (AT+QTONEDET=1); keys will not be heard");
        }
        let hex = ucs2_hex(&speech.text);
        // A module reads about 4–5 Chinese characters a second; allow slack.
        let speak_for = Duration::from_millis(400 * speech.text.chars().count() as u64)
            + Duration::from_secs(10);
        let mut key = None;
        for _ in 0..speech.play_times.max(1) {
            if let Some(k) = self.take_key() {
                key = Some(k);
                break;
            }
            let (_, fin) = self.command(&format!("AT+QTTS=2,\"{hex}\"")).await?;
            if let Line::Error(e) = fin {
                self.hang_up().await?;
                return Ok(CallOutcome::Failed(format!("speech refused: {e}")));
            }
            let until = Instant::now() + speak_for;
            let stop = |l: &Line| matches!(l, Line::TtsDone | Line::Key(_) | Line::NoCarrier);
            match self.wait_urc(until, stop).await? {
                Some(Line::Key(k)) => {
                    key = Some(k);
                    break;
                }
                Some(Line::NoCarrier) => return Ok(CallOutcome::Answered { key: None }),
                _ => {}
            }
        }
        if key.is_none() {
            key = self.take_key();
        }
        if key.is_none() {
            let until = Instant::now() + self.timing.key_wait;
            let stop = |l: &Line| matches!(l, Line::Key(_) | Line::NoCarrier);
            match self.wait_urc(until, stop).await? {
                Some(Line::Key(k)) => key = Some(k),
                Some(Line::NoCarrier) => return Ok(CallOutcome::Answered { key: None }),
                _ => {}
            }
        }
        self.hang_up().await?;
        Ok(CallOutcome::Answered { key })
    }

    async fn hang_up(&mut self) -> Result<(), AtError> {
        self.command("ATH").await.map(|_| ())
    }

    /// Sends one PDU: `AT+CMGS=<len>`, the `>` prompt, the PDU and Ctrl-Z,
    /// then `+CMGS: <mr>` and `OK`. `Ok(Err(reason))` when the network refused.
    pub async fn send_pdu(&mut self, pdu: &Pdu) -> Result<Result<u32, String>, AtError> {
        let cmd = format!("AT+CMGS={}", pdu.tpdu_len);
        self.wire.write(format!("{cmd}\r").as_bytes()).await?;
        let deadline = Instant::now() + self.timing.at_timeout;
        loop {
            let Some(raw) = self.wire.read_line(deadline).await? else {
                return Err(AtError::Silent(cmd));
            };
            match parse_line(&raw) {
                Line::Prompt => break,
                Line::Error(e) => return Ok(Err(e)),
                l @ (Line::Key(_) | Line::TtsDone | Line::NoCarrier) => self.urcs.push_back(l),
                _ => {}
            }
        }
        let mut body = pdu.hex.clone().into_bytes();
        body.push(0x1A);
        self.wire.write(&body).await?;
        // The network may take a while to accept: up to a minute on a weak cell.
        let deadline = Instant::now() + self.timing.at_timeout.max(Duration::from_secs(60));
        let mut mr = None;
        loop {
            let Some(raw) = self.wire.read_line(deadline).await? else {
                return Err(AtError::Silent("PDU".into()));
            };
            match parse_line(&raw) {
                Line::Cmgs(m) => mr = Some(m),
                Line::Ok => {
                    return Ok(mr.ok_or_else(|| "OK without +CMGS".to_string()));
                }
                Line::Error(e) => return Ok(Err(e)),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A scripted module: each command written gets the lines the script
    /// gives for it; `None` for a command means the module stays silent.
    pub(crate) struct Script {
        pub written: Arc<Mutex<Vec<String>>>,
        answers: VecDeque<(String, Option<Vec<&'static str>>)>,
        ready: VecDeque<String>,
    }

    impl Script {
        pub(crate) fn new(answers: Vec<(&str, Option<Vec<&'static str>>)>) -> Script {
            Script {
                written: Arc::default(),
                answers: answers
                    .into_iter()
                    .map(|(c, a)| (c.to_string(), a))
                    .collect(),
                ready: VecDeque::new(),
            }
        }
    }

    impl Wire for Script {
        async fn write(&mut self, bytes: &[u8]) -> Result<(), AtError> {
            let s = String::from_utf8_lossy(bytes).trim_end().to_string();
            self.written.lock().unwrap().push(s.clone());
            let Some((want, answer)) = self.answers.pop_front() else {
                panic!("unexpected command {s:?}");
            };
            assert!(s.starts_with(&want), "expected {want:?}, got {s:?}");
            if let Some(lines) = answer {
                self.ready.extend(lines.into_iter().map(String::from));
            }
            Ok(())
        }

        async fn read_line(&mut self, _deadline: Instant) -> Result<Option<String>, AtError> {
            Ok(self.ready.pop_front())
        }
    }

    fn timing() -> Timing {
        Timing {
            at_timeout: Duration::from_millis(50),
            ring_timeout: Duration::from_secs(30),
            key_wait: Duration::from_millis(10),
            poll: Duration::from_millis(1),
        }
    }

    fn speech(times: u32) -> Speech {
        Speech {
            text: "厨房烟感报警".into(),
            play_times: times,
        }
    }

    #[test]
    fn lines_are_classified() {
        assert_eq!(parse_line("OK\r"), Line::Ok);
        assert_eq!(
            parse_line("+CLCC: 1,0,3,0,0,\"+8613800000001\",145"),
            Line::Clcc {
                outgoing: true,
                stat: 3
            }
        );
        assert_eq!(parse_line("+QTONEDET: 49"), Line::Key('1'));
        assert_eq!(parse_line("+QTONEDET: 50"), Line::Key('2'));
        assert_eq!(parse_line("+QTTS: 0"), Line::TtsDone);
        assert_eq!(parse_line("+CMGS: 12"), Line::Cmgs(12));
        assert_eq!(
            parse_line("+CME ERROR: SIM not inserted"),
            Line::Error("+CME ERROR: SIM not inserted".into())
        );
        assert!(matches!(parse_line("+QTONEDET: x"), Line::Other(_)));
        assert!(matches!(parse_line("+CLCC: garbage"), Line::Other(_)));
    }

    #[tokio::test]
    async fn answered_call_speaks_then_hears_key_one() {
        let s = Script::new(vec![
            ("ATD+8613800000001;", Some(vec!["OK"])),
            (
                "AT+CLCC",
                Some(vec!["+CLCC: 1,0,3,0,0,\"+8613800000001\",145", "OK"]),
            ),
            (
                "AT+CLCC",
                Some(vec!["+CLCC: 1,0,0,0,0,\"+8613800000001\",145", "OK"]),
            ),
            ("AT+QTONEDET=1", Some(vec!["OK"])),
            ("AT+QTTS=2,\"53A8", Some(vec!["OK", "+QTTS: 0"])),
            ("AT+QTTS=2,", Some(vec!["OK", "+QTONEDET: 49"])),
            ("ATH", Some(vec!["OK"])),
        ]);
        let written = s.written.clone();
        let mut d = Dialogue::new(s, timing());
        let out = d.call("+8613800000001", &speech(2)).await.unwrap();
        assert_eq!(out, CallOutcome::Answered { key: Some('1') });
        assert_eq!(written.lock().unwrap().last().unwrap(), "ATH");
    }

    #[tokio::test]
    async fn busy_and_unanswered_calls() {
        let s = Script::new(vec![("ATD1", Some(vec!["BUSY"]))]);
        let mut d = Dialogue::new(s, timing());
        assert_eq!(
            d.call("10086", &speech(1)).await.unwrap(),
            CallOutcome::Busy
        );

        // OK, ringing, then the network says NO ANSWER.
        let s = Script::new(vec![
            ("ATD", Some(vec!["OK"])),
            (
                "AT+CLCC",
                Some(vec!["+CLCC: 1,0,3,0,0,\"10086\",129", "OK", "NO ANSWER"]),
            ),
        ]);
        let mut d = Dialogue::new(s, timing());
        assert_eq!(
            d.call("10086", &speech(1)).await.unwrap(),
            CallOutcome::NoAnswer
        );

        // Call gone from the list without a result code.
        let s = Script::new(vec![
            ("ATD", Some(vec!["OK"])),
            ("AT+CLCC", Some(vec!["OK"])),
        ]);
        let mut d = Dialogue::new(s, timing());
        assert_eq!(
            d.call("10086", &speech(1)).await.unwrap(),
            CallOutcome::NoAnswer
        );
    }

    #[tokio::test]
    async fn ringing_past_the_limit_hangs_up_as_no_answer() {
        let mut t = timing();
        t.ring_timeout = Duration::from_millis(0);
        let s = Script::new(vec![("ATD", Some(vec!["OK"])), ("ATH", Some(vec!["OK"]))]);
        let mut d = Dialogue::new(s, t);
        assert_eq!(
            d.call("10086", &speech(1)).await.unwrap(),
            CallOutcome::NoAnswer
        );
    }

    #[tokio::test]
    async fn answered_without_key_and_hung_up_by_callee() {
        let s = Script::new(vec![
            ("ATD", Some(vec!["OK"])),
            (
                "AT+CLCC",
                Some(vec!["+CLCC: 1,0,0,0,0,\"10086\",129", "OK"]),
            ),
            ("AT+QTONEDET=1", Some(vec!["OK"])),
            ("AT+QTTS", Some(vec!["OK", "NO CARRIER"])),
        ]);
        let mut d = Dialogue::new(s, timing());
        assert_eq!(
            d.call("10086", &speech(2)).await.unwrap(),
            CallOutcome::Answered { key: None }
        );
    }

    #[tokio::test]
    async fn silent_module_mid_call_is_an_error() {
        let s = Script::new(vec![("ATD", Some(vec!["OK"])), ("AT+CLCC", None)]);
        let mut d = Dialogue::new(s, timing());
        assert_eq!(
            d.call("10086", &speech(1)).await,
            Err(AtError::Silent("AT+CLCC".into()))
        );
    }

    #[tokio::test]
    async fn refused_dial_and_refused_speech_are_failed_calls() {
        let s = Script::new(vec![("ATD", Some(vec!["+CME ERROR: SIM not inserted"]))]);
        let mut d = Dialogue::new(s, timing());
        assert!(matches!(
            d.call("10086", &speech(1)).await.unwrap(),
            CallOutcome::Failed(r) if r.contains("SIM not inserted")
        ));
        let s = Script::new(vec![
            ("ATD", Some(vec!["OK"])),
            (
                "AT+CLCC",
                Some(vec!["+CLCC: 1,0,0,0,0,\"10086\",129", "OK"]),
            ),
            ("AT+QTONEDET=1", Some(vec!["OK"])),
            ("AT+QTTS", Some(vec!["ERROR"])),
            ("ATH", Some(vec!["OK"])),
        ]);
        let mut d = Dialogue::new(s, timing());
        assert!(matches!(
            d.call("10086", &speech(1)).await.unwrap(),
            CallOutcome::Failed(r) if r.contains("speech")
        ));
    }

    #[tokio::test]
    async fn sms_pdu_dialogue() {
        let pdu = super::super::pdu::encode("+8613800138000", "你好", 0)
            .unwrap()
            .remove(0);
        let s = Script::new(vec![
            ("AT+CMGS=18", Some(vec![">"])),
            ("0001000D91", Some(vec!["+CMGS: 7", "OK"])),
        ]);
        let written = s.written.clone();
        let mut d = Dialogue::new(s, timing());
        assert_eq!(d.send_pdu(&pdu).await.unwrap(), Ok(7));
        assert!(written.lock().unwrap()[1].ends_with('\u{1a}'));

        let s = Script::new(vec![
            ("AT+CMGS", Some(vec![">"])),
            ("00", Some(vec!["+CMS ERROR: 500"])),
        ]);
        let mut d = Dialogue::new(s, timing());
        assert_eq!(
            d.send_pdu(&pdu).await.unwrap(),
            Err("+CMS ERROR: 500".into())
        );
    }
}
