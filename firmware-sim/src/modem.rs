//! A simulated Quectel-class 4G module on a pseudo-terminal: it answers the
//! AT dialogue gridwatch speaks (ATD, AT+CLCC, AT+QTTS, AT+QTONEDET, ATH,
//! AT+CMGS in PDU mode), can answer after N seconds, never answer, or be
//! busy, per callee; presses given keys once it has spoken; and logs what
//! it "spoke" and which SMS it was sent (decoded by its own PDU reader), one
//! JSON object a line, so tests and demos can show a call without hardware.

use serde_json::json;
use std::collections::HashMap;

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// How one callee behaves.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    After(Duration),
    Never,
    Busy,
}

/// A callee's behaviour and the keys they press after the first reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Callee {
    pub answer: Answer,
    pub press: String,
}

/// Parses `after[:SECS]`, `never`, `busy`.
pub fn parse_answer(s: &str) -> Result<Answer, String> {
    match s {
        "never" => Ok(Answer::Never),
        "busy" => Ok(Answer::Busy),
        "after" => Ok(Answer::After(Duration::from_secs(1))),
        _ => {
            let secs = s
                .strip_prefix("after:")
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("{s:?}: use after[:SECS], never or busy"))?;
            Ok(Answer::After(Duration::from_secs_f64(secs)))
        }
    }
}

/// Parses `NUMBER=ANSWER[,press:DIGITS]`.
pub fn parse_callee(s: &str) -> Result<(String, Callee), String> {
    let (number, rest) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: use NUMBER=after[:SECS]|never|busy[,press:DIGITS]"))?;
    let (ans, press) = match rest.split_once(",press:") {
        Some((a, p)) => (a, p.to_string()),
        None => (rest, String::new()),
    };
    if !press
        .chars()
        .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
    {
        return Err(format!("{s:?}: keys are 0-9, * and #"));
    }
    Ok((
        number.to_string(),
        Callee {
            answer: parse_answer(ans)?,
            press,
        },
    ))
}

/// Everything the simulated module does.
#[derive(Debug, Clone)]
pub struct ModemOptions {
    pub default: Callee,
    pub callees: HashMap<String, Callee>,
    /// A never-answering call ends with `NO ANSWER` after this long.
    pub ring_limit: Duration,
    /// How long speaking one text takes.
    pub speak: Duration,
    /// Stop answering anything once this many calls have been dialled (mid-call).
    pub mute_after_calls: Option<u32>,
    /// ...for this long, then answer again (a module that reset itself).
    pub mute_for: Duration,
    pub log: Option<PathBuf>,
}

/// One SMS-SUBMIT as read back from a PDU.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmittedSms {
    pub number: String,
    pub text: String,
    /// (reference, total, sequence) of a concatenated part.
    pub part: Option<(u8, u8, u8)>,
}

/// Reads an SMS-SUBMIT PDU (with SMSC prefix) in UCS-2 or 8-bit; written
/// from 3GPP TS 23.040, apart from gridwatch's encoder.
pub fn decode_submit(hex: &str) -> Result<SubmittedSms, String> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad hex at {i}"))
        })
        .collect::<Result<_, _>>()?;
    let mut i = 0usize;
    let get = |i: usize| bytes.get(i).copied().ok_or("PDU too short".to_string());
    let smsc_len = get(i)? as usize;
    i += 1 + smsc_len;
    let first = get(i)?;
    if first & 0x03 != 0x01 {
        return Err(format!("not an SMS-SUBMIT (first octet {first:02X})"));
    }
    let udhi = first & 0x40 != 0;
    let vpf = (first >> 3) & 0x03;
    i += 2; // first octet, TP-MR
    let digits = get(i)? as usize;
    let toa = get(i + 1)?;
    i += 2;
    let mut number = String::new();
    if toa == 0x91 {
        number.push('+');
    }
    for k in 0..digits.div_ceil(2) {
        let b = get(i + k)?;
        number.push(char::from(b'0' + (b & 0x0F)));
        if (b >> 4) != 0x0F {
            number.push(char::from(b'0' + (b >> 4)));
        }
    }
    i += digits.div_ceil(2);
    let _pid = get(i)?;
    let dcs = get(i + 1)?;
    i += 2;
    i += match vpf {
        0 => 0,
        2 => 1,
        _ => 7,
    };
    let udl = get(i)? as usize;
    i += 1;
    let ud = bytes
        .get(i..i + udl)
        .ok_or_else(|| "user data shorter than its length".to_string())?;
    let mut body = ud;
    let mut part = None;
    if udhi {
        let hl = *ud.first().ok_or("empty user data")? as usize;
        let h = ud.get(1..1 + hl).ok_or("short header")?;
        if h.len() >= 5 && h[0] == 0x00 && h[1] == 0x03 {
            part = Some((h[2], h[3], h[4]));
        }
        body = &ud[1 + hl..];
    }
    if dcs & 0x0C != 0x08 {
        return Err(format!("simulator reads UCS-2 only (DCS {dcs:02X})"));
    }
    let units: Vec<u16> = body
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
        .collect();
    let text = String::from_utf16(&units).map_err(|e| e.to_string())?;
    Ok(SubmittedSms { number, text, part })
}

fn ucs2_text(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    let units: Vec<u16> = bytes
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stat {
    Alerting,
    Active,
}

struct Call {
    number: String,
    callee: Callee,
    stat: Stat,
    dialled: Instant,
    spoken: u32,
    pressed: bool,
}

struct Sim {
    opts: ModemOptions,
    call: Option<Call>,
    calls: u32,
    mr: u32,
    muted_until: Option<Instant>,
    /// Lines to send at a time (URCs).
    timed: Vec<(Instant, String)>,
    log: Option<std::fs::File>,
}

impl Sim {
    fn log(&mut self, mut v: serde_json::Value) {
        // Wall-clock stamp: benchmarks measure reading → first ATD with it.
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if let Some(o) = v.as_object_mut() {
            o.insert("ts_ms".into(), ts.into());
        }
        println!("{v}");
        if let Some(f) = &mut self.log {
            use std::io::Write;
            let _ = writeln!(f, "{v}");
            let _ = f.flush();
        }
    }

    fn end_call(&mut self, outcome: &str) {
        if let Some(c) = self.call.take() {
            self.log(json!({"event": "call_end", "number": c.number, "outcome": outcome}));
        }
    }

    fn muted(&mut self, now: Instant) -> bool {
        match self.muted_until {
            Some(t) if now < t => true,
            Some(_) => {
                self.muted_until = None;
                self.log(json!({"event": "unmuted"}));
                false
            }
            None => false,
        }
    }

    /// Time passing: answers, ring limits, timed URCs.
    fn tick(&mut self, now: Instant) -> String {
        let mut out = String::new();
        let mut end: Option<(&str, &str)> = None;
        if let Some(c) = &mut self.call {
            match (&c.callee.answer, c.stat) {
                (Answer::After(d), Stat::Alerting) if now >= c.dialled + *d => {
                    c.stat = Stat::Active;
                    let n = c.number.clone();
                    self.log(json!({"event": "answered", "number": n}));
                }
                (Answer::Never, Stat::Alerting) if now >= c.dialled + self.opts.ring_limit => {
                    end = Some(("NO ANSWER", "no_answer"));
                }
                (Answer::Busy, Stat::Alerting) if now >= c.dialled + Duration::from_millis(300) => {
                    end = Some(("BUSY", "busy"));
                }
                _ => {}
            }
        }
        if let Some((urc, outcome)) = end {
            out.push_str(&format!("\r\n{urc}\r\n"));
            self.end_call(outcome);
        }
        let (due, later): (Vec<_>, Vec<_>) = self.timed.drain(..).partition(|(t, _)| *t <= now);
        self.timed = later;
        for (_, l) in due {
            out.push_str(&format!("\r\n{l}\r\n"));
        }
        out
    }

    /// One command line from gridwatch; the reply to write.
    fn command(&mut self, line: &str, now: Instant) -> String {
        let ok = "\r\nOK\r\n".to_string();
        let err = "\r\nERROR\r\n".to_string();
        let up = line.trim();
        if let Some(rest) = up.strip_prefix("ATD") {
            let number = rest.trim_end_matches(';').to_string();
            if self.call.is_some() {
                return err;
            }
            self.calls += 1;
            let callee = self
                .opts
                .callees
                .get(&number)
                .cloned()
                .unwrap_or_else(|| self.opts.default.clone());
            self.log(json!({"event": "dial", "number": number, "call": self.calls}));
            self.call = Some(Call {
                number,
                callee,
                stat: Stat::Alerting,
                dialled: now,
                spoken: 0,
                pressed: false,
            });
            if self.opts.mute_after_calls.is_some_and(|n| self.calls >= n) {
                self.muted_until = Some(now + self.opts.mute_for);
                self.log(json!({"event": "muted", "secs": self.opts.mute_for.as_secs_f64()}));
                // Dropped mid-call: the network ends it too.
                self.call = None;
            }
            return ok;
        }
        if up == "AT+CLCC" {
            let mut out = String::new();
            if let Some(c) = &self.call {
                let stat = match c.stat {
                    Stat::Active => 0,
                    Stat::Alerting => 3,
                };
                let toa = if c.number.starts_with('+') { 145 } else { 129 };
                out.push_str(&format!(
                    "\r\n+CLCC: 1,0,{stat},0,0,\"{}\",{toa}\r\n",
                    c.number
                ));
            }
            return out + &ok;
        }
        if let Some(rest) = up.strip_prefix("AT+QTTS=") {
            let Some(c) = &mut self.call else { return err };
            if c.stat != Stat::Active {
                return err;
            }
            let hex = rest
                .split_once(',')
                .map(|(_, h)| h.trim_matches('"'))
                .unwrap_or("");
            let text = ucs2_text(hex);
            c.spoken += 1;
            let done = now + self.opts.speak;
            let press = (!c.pressed && !c.callee.press.is_empty()).then(|| c.callee.press.clone());
            if press.is_some() {
                c.pressed = true;
            }
            let (n, times) = (c.number.clone(), c.spoken);
            self.timed.push((done, "+QTTS: 0".into()));
            if let Some(keys) = press {
                for (k, key) in keys.chars().enumerate() {
                    let at = done + Duration::from_millis(100 * (k as u64 + 1));
                    self.timed.push((at, format!("+QTONEDET: {}", key as u32)));
                }
                self.log(json!({"event": "press", "number": n, "keys": keys}));
            }
            self.log(json!({"event": "spoke", "number": n, "text": text, "time": times}));
            return ok;
        }
        if up == "ATH" {
            let outcome = match &self.call {
                Some(c) if c.stat == Stat::Active => "answered",
                _ => "hung_up",
            };
            self.end_call(outcome);
            return ok;
        }
        if matches!(
            up,
            "AT" | "ATE0" | "AT+CMEE=2" | "AT+CMGF=0" | "AT+QTONEDET=1"
        ) {
            return ok;
        }
        err
    }
}

/// A module on a pty; keep it alive as long as the modem should exist.
pub struct ModemPty {
    pub path: String,
    pub link: Option<PathBuf>,
    _slave: tokio_serial::SerialStream,
}

impl Drop for ModemPty {
    fn drop(&mut self) {
        if let Some(l) = &self.link {
            let _ = std::fs::remove_file(l);
        }
    }
}

/// Opens a pty pair, runs the module on its master side and links `link`
/// to the slave side (what gridwatch's `[channels.modem] device` names).
pub fn serve(link: Option<&Path>, opts: ModemOptions) -> anyhow::Result<ModemPty> {
    use tokio_serial::SerialPort;
    let (master, slave) = tokio_serial::SerialStream::pair()?;
    let path = slave
        .name()
        .ok_or_else(|| anyhow::anyhow!("the pty has no name"))?;
    if let Some(l) = link {
        let _ = std::fs::remove_file(l);
        std::os::unix::fs::symlink(&path, l)?;
    }
    let log = match &opts.log {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        ),
        None => None,
    };
    let sim = Sim {
        opts,
        call: None,
        calls: 0,
        mr: 0,
        muted_until: None,
        timed: Vec::new(),
        log,
    };
    tokio::spawn(run(master, sim));
    Ok(ModemPty {
        path,
        link: link.map(Path::to_path_buf),
        _slave: slave,
    })
}

async fn run(mut port: tokio_serial::SerialStream, mut sim: Sim) {
    let mut buf: Vec<u8> = Vec::new();
    // Some(len) while waiting for a PDU after `AT+CMGS=<len>`.
    let mut pdu_mode = false;
    let mut chunk = [0u8; 1024];
    loop {
        let read = tokio::time::timeout(Duration::from_millis(50), port.read(&mut chunk)).await;
        let now = Instant::now();
        let mut out = String::new();
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => {
                // The other side closed; wait for it to reopen.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Ok(n)) => {
                if sim.muted(now) {
                    continue;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(_) => {}
        }
        if sim.muted(now) {
            buf.clear();
            continue;
        }
        loop {
            if pdu_mode {
                let Some(end) = buf.iter().position(|&b| b == 0x1A) else {
                    break;
                };
                let pdu: Vec<u8> = buf.drain(..=end).collect();
                let hex = String::from_utf8_lossy(&pdu[..pdu.len() - 1])
                    .trim()
                    .to_string();
                pdu_mode = false;
                match decode_submit(&hex) {
                    Ok(sms) => {
                        sim.mr = (sim.mr + 1) % 256;
                        let (r, total, seq) = sms.part.unwrap_or((0, 1, 1));
                        sim.log(
                            json!({"event": "sms", "number": sms.number, "text": sms.text,
                            "ref": r, "parts": total, "part": seq, "pdu": hex}),
                        );
                        out.push_str(&format!("\r\n+CMGS: {}\r\n\r\nOK\r\n", sim.mr));
                    }
                    Err(e) => {
                        sim.log(json!({"event": "sms_refused", "reason": e, "pdu": hex}));
                        out.push_str("\r\n+CMS ERROR: 304\r\n");
                    }
                }
                continue;
            }
            let Some(end) = buf.iter().position(|&b| b == b'\r' || b == b'\n') else {
                break;
            };
            let line: Vec<u8> = buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line).trim().to_string();
            if line.is_empty() {
                continue;
            }
            if line.starts_with("AT+CMGS=") {
                pdu_mode = true;
                out.push_str("\r\n> ");
                continue;
            }
            out.push_str(&sim.command(&line, now));
        }
        out.push_str(&sim.tick(now));
        if !out.is_empty() && port.write_all(out.as_bytes()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_ucs2_submit_and_a_concatenated_part() {
        let s = decode_submit("0001000D91683108108300F00008044F60597D").unwrap();
        assert_eq!(s.number, "+8613800138000");
        assert_eq!(s.text, "你好");
        assert_eq!(s.part, None);
        let s = decode_submit("0041000A81501778563400080A0500030702014F60597D").unwrap();
        assert_eq!(s.number, "0571876543");
        assert_eq!(s.part, Some((7, 2, 1)));
        assert_eq!(s.text, "你好");
        assert!(decode_submit("00").is_err());
        assert!(decode_submit("zz").is_err());
    }

    #[test]
    fn callee_flags_parse() {
        let (n, c) = parse_callee("+8613800000001=after:2,press:1").unwrap();
        assert_eq!(n, "+8613800000001");
        assert_eq!(c.answer, Answer::After(Duration::from_secs(2)));
        assert_eq!(c.press, "1");
        assert_eq!(parse_callee("1=never").unwrap().1.answer, Answer::Never);
        assert!(parse_callee("1=sometimes").is_err());
        assert!(parse_callee("1=busy,press:x").is_err());
        assert!(parse_callee("no-equals").is_err());
    }
}
