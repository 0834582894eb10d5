//! Voice calls and SMS through the box's own 4G module, end to end: the real
//! gateway dials a simulated Quectel-class module (`firmware-sim modem`) on
//! a pseudo-terminal. The SMS PDUs it sends are read back with an
//! independent decoder (Python's `smspdudecoder`, installed by scripts/test).

use gridwatch_e2e::compound::*;
use gridwatch_e2e::{firmware_sim_bin, mosquitto_pub, repo_root, wait_until_async, Gateway, POLL};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
const RESIDENT: &str = "+8613800000001";
const SON: &str = "+8613800000004";
const DUTY_ROOM: &str = "0571-87654321";

const REGISTRY: &str = r#"
[[grids]]
id = "g03"
name = "第三网格"
grid_workers = ["c-wang"]
directors = ["c-li"]
fire_brigade = ["c-xihu-119"]

[[households]]
id = "h-3-2-501"
address = "3幢2单元501室"
grid = "g03"
residents = [{ name = "张奶奶", phone = "+8613800000001", lives_alone = true, age = 82 }]
family = ["c-zhang-son", "c-duty-room"]

[[devices]]
id = "smk-3-2-501-k"
kind = "smoke"
household = "h-3-2-501"
location = "厨房"

[[contacts]]
id = "c-wang"
name = "王芳(网格员)"

[[contacts]]
id = "c-li"
name = "李书记"

[[contacts]]
id = "c-xihu-119"
name = "西湖消防中队值班室"

[[contacts]]
id = "c-zhang-son"
name = "张伟"
phone = "+8613800000004"

[[contacts]]
id = "c-duty-room"
name = "物业值班室"
phone = "0571-87654321"
"#;

const ROUTING: &str = r#"
[roles]
resident = ["voice", "sms"]
family = ["voice", "sms"]

[[route]]
kinds = ["smoke"]
severities = ["critical"]
notify = ["resident", "family"]
repeat = "3s"
"#;

/// `[channels.*]` for a modem at `link`: quick timings so a test call is seconds.
fn modem_toml(link: &Path, at_timeout: &str) -> String {
    format!(
        r#"
[channels.modem]
device = "{}"
at_timeout = "{at_timeout}"
ring_timeout = "10s"
key_wait = "2s"

[channels.voice]
backend = "modem"
retries = 1
retry_after = "1s"
play_times = 2

[channels.sms]
provider = "modem"
"#,
        link.display()
    )
}

/// `firmware-sim modem` on a pty linked at `link`, logging its events to `log`.
struct ModemSim {
    child: Child,
    log: PathBuf,
    out: PathBuf,
}

impl ModemSim {
    async fn start(link: &Path, log: &Path, args: &[&str]) -> ModemSim {
        let out = log.with_extension("out");
        let file = std::fs::File::create(&out).unwrap();
        let child = Command::new(firmware_sim_bin())
            .arg("modem")
            .arg("--link")
            .arg(link)
            .arg("--log")
            .arg(log)
            .args(args)
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn firmware-sim modem");
        let start = Instant::now();
        while !link.exists() {
            assert!(start.elapsed() < Duration::from_secs(20), "no modem pty");
            tokio::time::sleep(POLL).await;
        }
        ModemSim {
            child,
            log: log.to_path_buf(),
            out,
        }
    }

    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn of(&self, event: &str, number: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == event && e["number"] == number)
            .collect()
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for ModemSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn smoke(gw: &Gateway) {
    let body = json!({"values": {"smoke_db_m": 0.3}, "flags": ["smoke_alarm"]}).to_string();
    mosquitto_pub(gw.mqtt_port(), &reading_topic(SMOKE_KITCHEN), body).await;
}

async fn gateway(dir: &Path, link: &Path, at_timeout: &str) -> Gateway {
    let _ = dir;
    Gateway::builder()
        .fixture_file("registry.toml", REGISTRY)
        .fixture_file("routing.toml", ROUTING)
        .fixture_file("rules.toml", "")
        .extra_toml(modem_toml(link, at_timeout))
        .start()
        .await
}

/// One PDU as Python's smspdudecoder reads it: recipient, text, (ref, count, seq).
type Decoded = (String, String, Option<(u64, u64, u64)>);

/// The PDUs read by Python's smspdudecoder.
fn decode_independently(pdus: &[String]) -> Vec<Decoded> {
    const PY: &str = r#"
import json, sys
from io import StringIO
from smspdudecoder.fields import SMSSubmit
for line in sys.stdin:
    d = SMSSubmit.decode(StringIO(line.strip()))
    ud = d["user_data"]
    part = None
    for el in (ud.get("header") or {}).get("elements", []):
        if el["iei"] == 0:
            part = [el["data"]["reference"], el["data"]["parts_count"], el["data"]["part_number"]]
    print(json.dumps({"to": d["recipient"]["number"], "toa": d["recipient"]["toa"]["ton"],
                      "enc": d["dcs"]["encoding"], "text": ud["data"], "part": part}, ensure_ascii=False))
"#;
    use std::io::Write;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(PY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test installs smspdudecoder)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pdus.join("\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "smspdudecoder failed (is it installed? scripts/test does it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["enc"], "ucs2", "{v}");
            let part = v["part"].as_array().map(|p| {
                (
                    p[0].as_u64().unwrap(),
                    p[1].as_u64().unwrap(),
                    p[2].as_u64().unwrap(),
                )
            });
            // The decoder gives the digits and the type of number apart.
            let plus = if v["toa"] == "international" { "+" } else { "" };
            (
                format!("{plus}{}", v["to"].as_str().unwrap()),
                v["text"].as_str().unwrap().to_string(),
                part,
            )
        })
        .collect()
}

fn timeline(detail: &Value) -> Vec<Value> {
    detail["timeline"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kitchen_fire_calls_resident_and_family_key_one_acks_unanswered_falls_back_to_modem_sms() {
    let dir = gridwatch_e2e::temp_dir();
    let link = dir.path().join("ttyMODEM");
    let sim = ModemSim::start(
        &link,
        &dir.path().join("modem.jsonl"),
        &[
            "--answer",
            "never",
            "--ring-limit",
            "2",
            "--callee",
            &format!("{RESIDENT}=after:1,press:1"),
        ],
    )
    .await;
    let gw = gateway(dir.path(), &link, "3s").await;
    let api = gw.api();
    smoke(&gw).await;

    // The resident answers, hears the message and presses 1: her role is acked by phone.
    let (id, acked_at) = wait_until_async(
        "the resident's key 1 acks the resident role",
        WAIT,
        POLL,
        || async {
            let a = api.open_alarm(SMOKE_KITCHEN, "smoke").await?;
            let id = a["id"].as_str()?.to_string();
            let d = api.alarm(&id).await;
            let ack = d["acks"]
                .as_array()?
                .iter()
                .find(|k| k["role"] == "resident")?
                .clone();
            Some((id, ack["at"].as_i64()?))
        },
    )
    .await;
    let d = api.alarm(&id).await;
    let ack = d["acks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "resident")
        .unwrap()
        .clone();
    assert_eq!(ack["by"], "h-3-2-501.r1", "{d}");
    assert_eq!(ack["note"], "acked by phone", "{d}");
    let calls: Vec<Value> = timeline(&d)
        .into_iter()
        .filter(|t| t["what"] == "call")
        .collect();
    assert!(
        calls.iter().any(|c| c["by"] == "h-3-2-501.r1"
            && c["role"] == "resident"
            && c["detail"] == "answered, key 1 (call 1 of 2)"),
        "the answered call is on the timeline: {calls:?}"
    );
    let spoke = sim.of("spoke", RESIDENT);
    let text = spoke[0]["text"].as_str().unwrap();
    assert!(
        text.contains("烟感报警") && text.contains("3幢2单元501室"),
        "{text}"
    );
    assert!(
        text.ends_with("按1确认。"),
        "the call ends on 'press 1': {text}"
    );
    assert!(!text.contains("http"), "no link read aloud: {text}");

    // The son never answers: called twice (retries = 1), then an SMS through the modem.
    let sms = wait_until_async(
        "the son's SMS after two unanswered calls",
        WAIT,
        POLL,
        || async {
            let parts = sim.of("sms", SON);
            let n = parts.first()?["parts"].as_u64()?;
            (parts.len() as u64 >= n).then_some(parts)
        },
    )
    .await;
    // Before it: exactly two calls to him, both unanswered (reminders call again later).
    let events = sim.events();
    let first_sms = events
        .iter()
        .position(|e| e["event"] == "sms" && e["number"] == SON)
        .unwrap();
    let before = &events[..first_sms];
    let dials = before
        .iter()
        .filter(|e| e["event"] == "dial" && e["number"] == SON)
        .count();
    assert_eq!(dials, 2, "{}", sim.output());
    let ends: Vec<&Value> = before
        .iter()
        .filter(|e| e["event"] == "call_end" && e["number"] == SON)
        .collect();
    assert_eq!(ends.len(), 2, "{}", sim.output());
    assert!(ends.iter().all(|e| e["outcome"] == "no_answer"), "{ends:?}");

    // Read back independently: UCS-2, concatenated parts that join to the text.
    let pdus: Vec<String> = sms
        .iter()
        .map(|p| p["pdu"].as_str().unwrap().to_string())
        .collect();
    let decoded = decode_independently(&pdus);
    let n = decoded.len();
    assert!(
        n >= 2,
        "a Chinese SMS with its link is longer than 70 characters: {decoded:?}"
    );
    let reference = decoded[0].2.unwrap().0;
    let mut joined = String::new();
    for (i, (to, text, part)) in decoded.iter().enumerate() {
        assert_eq!(to, SON);
        assert_eq!(
            *part,
            Some((reference, n as u64, i as u64 + 1)),
            "{decoded:?}"
        );
        assert!(
            text.encode_utf16().count() <= 67,
            "one part holds at most 67 UCS-2 units"
        );
        joined.push_str(text);
    }
    assert!(joined.starts_with("【紧急】烟感报警"), "{joined}");
    for want in ["龙井苑小区", "3幢2单元501室", "厨房", "张奶奶", "/ack/"] {
        assert!(joined.contains(want), "{want} missing from {joined}");
    }
    assert!(joined.chars().count() <= 140, "{joined}");

    // The duty room is a landline: called, never sent an SMS.
    let duty = DUTY_ROOM.replace('-', "");
    wait_until_async("the duty room called twice", WAIT, POLL, || async {
        sim.of("call_end", &duty).len() >= 2
    })
    .await;
    assert!(sim.of("sms", &duty).is_empty(), "no SMS to a landline");
    assert!(sim
        .events()
        .iter()
        .all(|e| e["event"] != "sms" || e["number"] != duty));

    // Reminders: the family's go on, the resident's stopped with her ack.
    wait_until_async(
        "two family reminders after the resident's ack",
        WAIT,
        POLL,
        || async {
            let d = api.alarm(&id).await;
            let after: Vec<Value> = timeline(&d)
                .into_iter()
                .filter(|t| t["what"] == "reminder" && t["at"].as_i64().unwrap_or(0) > acked_at)
                .collect();
            (after.len() >= 2).then_some(after)
        },
    )
    .await
    .iter()
    .for_each(|r| {
        let roles = r["detail"].as_str().unwrap_or_default();
        assert!(roles.contains("family"), "{r}");
        assert!(
            !roles.contains("resident"),
            "no reminder to an acked role: {r}"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modem_that_stops_answering_mid_call_fails_the_call_uses_sms_and_is_reopened() {
    let dir = gridwatch_e2e::temp_dir();
    let link = dir.path().join("ttyMODEM");
    // Silent from the first dial for 8 s, then answering again (a module reset).
    let sim = ModemSim::start(
        &link,
        &dir.path().join("modem.jsonl"),
        &[
            "--answer",
            "after:1",
            "--mute-after-calls",
            "1",
            "--mute-for",
            "8",
        ],
    )
    .await;
    let gw = gateway(dir.path(), &link, "1s").await;
    let api = gw.api();
    smoke(&gw).await;

    // The call broke off: failed on the timeline, and /readyz names the channels stage.
    let id = wait_until_async("a failed call on the timeline", WAIT, POLL, || async {
        let a = api.open_alarm(SMOKE_KITCHEN, "smoke").await?;
        let id = a["id"].as_str()?.to_string();
        let d = api.alarm(&id).await;
        timeline(&d)
            .iter()
            .any(|t| {
                t["what"] == "call"
                    && t["detail"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("failed"))
            })
            .then_some(id)
    })
    .await;
    let url = format!("{}/readyz", gw.base_url());
    wait_until_async("/readyz names the modem", WAIT, POLL, || async {
        let r = reqwest::get(&url).await.ok()?;
        let status = r.status().as_u16();
        let body: Value = r.json().await.ok()?;
        let ch = body["stages"]["channels"].as_str()?.to_string();
        (status == 503 && ch.contains("modem")).then_some(())
    })
    .await;

    // Once the module answers again it is reopened; the SMS fallback goes out through it.
    wait_until_async(
        "/readyz ready again after the reopen",
        WAIT,
        POLL,
        || async { api.readyz().await == Some(200) },
    )
    .await;
    wait_until_async(
        "the SMS fallback sent by the reopened modem",
        WAIT,
        POLL,
        || async { !sim.of("sms", RESIDENT).is_empty() },
    )
    .await;
    let d = api.alarm(&id).await;
    let sms_sent = timeline(&d).iter().any(|t| {
        t["what"] == "delivery"
            && t["channel"] == "sms"
            && t["status"] == "sent"
            && t["recipient"]["contact_id"] == "h-3-2-501.r1"
    });
    assert!(sms_sent, "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_call_retries_the_same_delivery_after_restart() {
    const ONLY_RESIDENT: &str = r#"
[roles]
resident = ["voice", "sms"]

[[route]]
kinds = ["smoke"]
severities = ["critical"]
notify = ["resident"]
"#;
    let dir = gridwatch_e2e::temp_dir();
    let link = dir.path().join("ttyMODEM");
    let sim = ModemSim::start(
        &link,
        &dir.path().join("modem.jsonl"),
        &["--callee", &format!("{RESIDENT}=after:3,press:1")],
    )
    .await;
    let mut gw = Gateway::builder()
        .fixture_file("registry.toml", REGISTRY)
        .fixture_file("routing.toml", ONLY_RESIDENT)
        .fixture_file("rules.toml", "")
        .extra_toml(modem_toml(&link, "3s"))
        .start()
        .await;
    smoke(&gw).await;
    wait_until_async("the resident's phone rings", WAIT, POLL, || async {
        !sim.of("dial", RESIDENT).is_empty()
    })
    .await;
    gw.kill9();
    gw.restart().await;

    let api = gw.api();
    let id = wait_until_async(
        "the resident acks by phone after the restart",
        WAIT,
        POLL,
        || async {
            let a = api.open_alarm(SMOKE_KITCHEN, "smoke").await?;
            let id = a["id"].as_str()?.to_string();
            let d = api.alarm(&id).await;
            d["acks"]
                .as_array()?
                .iter()
                .any(|k| k["role"] == "resident")
                .then_some(id)
        },
    )
    .await;
    assert!(
        sim.of("dial", RESIDENT).len() >= 2,
        "called again after the restart"
    );
    let d = api.alarm(&id).await;
    let voice: Vec<Value> = timeline(&d)
        .into_iter()
        .filter(|t| t["what"] == "delivery" && t["channel"] == "voice")
        .collect();
    let ids: std::collections::BTreeSet<&str> = voice
        .iter()
        .filter_map(|t| t["delivery_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 1, "one delivery, resumed with its id: {voice:?}");
    assert!(voice.iter().any(|t| t["status"] == "sent"), "{voice:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_two_on_the_modem_acks_with_the_false_alarm_note_and_does_not_resolve() {
    const ONLY_RESIDENT: &str = r#"
[roles]
resident = ["voice", "sms"]

[[route]]
kinds = ["smoke"]
severities = ["critical"]
notify = ["resident"]
"#;
    let dir = gridwatch_e2e::temp_dir();
    let link = dir.path().join("ttyMODEM");
    let sim = ModemSim::start(
        &link,
        &dir.path().join("modem.jsonl"),
        &["--callee", &format!("{RESIDENT}=after:1,press:2")],
    )
    .await;
    let gw = Gateway::builder()
        .fixture_file("registry.toml", REGISTRY)
        .fixture_file("routing.toml", ONLY_RESIDENT)
        .fixture_file("rules.toml", "")
        .extra_toml(modem_toml(&link, "3s"))
        .start()
        .await;
    smoke(&gw).await;
    let api = gw.api();
    let (id, ack) = wait_until_async("the resident's key 2", WAIT, POLL, || async {
        let a = api.open_alarm(SMOKE_KITCHEN, "smoke").await?;
        let id = a["id"].as_str()?.to_string();
        let d = api.alarm(&id).await;
        let ack = d["acks"]
            .as_array()?
            .iter()
            .find(|k| k["role"] == "resident")?
            .clone();
        Some((id, ack))
    })
    .await;
    assert_eq!(ack["note"], "reported as false alarm / cooking", "{ack}");
    assert_eq!(ack["by"], "h-3-2-501.r1");
    let d = api.alarm(&id).await;
    assert_ne!(d["state"], "resolved", "{d}");
    assert!(
        timeline(&d)
            .iter()
            .any(|t| t["what"] == "call" && t["detail"] == "answered, key 2 (call 1 of 2)"),
        "{d}"
    );
    assert!(sim.of("sms", RESIDENT).is_empty(), "answered: no SMS");
    assert_eq!(
        api.metric_value(
            "gridwatch_voice_calls_total",
            &[("backend", "modem"), ("outcome", "answered")]
        )
        .await,
        Some(1.0)
    );
}

/// `gridwatch test-notify --channel voice` calls through the modem (started
/// for the command) and prints how the call ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_notify_calls_through_the_modem_and_prints_the_outcome() {
    let dir = gridwatch_e2e::temp_dir();
    let link = dir.path().join("ttyMODEM");
    let sim = ModemSim::start(
        &link,
        &dir.path().join("modem.jsonl"),
        &["--callee", &format!("{RESIDENT}=after:1,press:1")],
    )
    .await;
    let config = Gateway::builder()
        .fixture_file("registry.toml", REGISTRY)
        .fixture_file("routing.toml", ROUTING)
        .fixture_file("rules.toml", "")
        .extra_toml(modem_toml(&link, "3s"))
        .write_config(
            dir.path(),
            gridwatch_e2e::free_port(),
            gridwatch_e2e::free_port(),
        );
    let out = tokio::process::Command::new(gridwatch_e2e::gridwatch_bin())
        .args(["test-notify", "--config"])
        .arg(&config)
        .args(["--contact", "h-3-2-501.r1", "--channel", "voice"])
        .output()
        .await
        .expect("run gridwatch test-notify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sim.output()
    );
    assert!(
        stdout.contains("call answered, key 1 (call 1 of 2)"),
        "{stdout}"
    );
    assert!(stdout.contains("confirmed"), "{stdout}");
    assert_eq!(sim.of("dial", RESIDENT).len(), 1, "{}", sim.output());
}
