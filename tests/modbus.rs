//! Modbus end-to-end tests: the real `gridwatch` polling the real
//! `firmware-sim` over Modbus TCP and RTU (a pty), plus interop with
//! independent implementations: `mbpoll` reading firmware-sim, and gridwatch
//! polling a pymodbus server. Timings are never asserted; cadence figures are
//! in docs/benchmarks.md.

use gridwatch_e2e::compound::*;
use gridwatch_e2e::{
    firmware_sim_bin, free_port, parse_metric, repo_root, tail, temp_dir, wait_until_async,
    Gateway, GatewayBuilder, SmtpSink, POLL,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Modbus tests wait longer than `WAIT`: a leak needs its ramp plus the 5 s hold.
const LONG: Duration = Duration::from_secs(60);

/// A running `firmware-sim` (killed on drop), its output in a file.
struct Sim {
    child: Option<Child>,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sim {
    /// Starts `firmware-sim ARGS` and waits until it prints `ready` (its server is up).
    async fn start(args: &[String], ready: &str) -> Sim {
        let dir = temp_dir();
        let out = dir.path().join("sim.out");
        let file = std::fs::File::create(&out).unwrap();
        let child = Command::new(firmware_sim_bin())
            .args(args)
            .current_dir(repo_root())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn firmware-sim: {e}"));
        let mut sim = Sim {
            child: Some(child),
            out,
            _dir: dir,
        };
        let start = Instant::now();
        while !sim.output().contains(ready) {
            if let Some(status) = sim.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("firmware-sim exited ({status}):\n{}", sim.output());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "firmware-sim did not print {ready:?}:\n{}",
                sim.output()
            );
            tokio::time::sleep(POLL).await;
        }
        sim
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// SIGKILL: the TCP peer dies.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- firmware-sim output tail\n{}", tail(&self.out, 30));
        }
    }
}

fn s(x: impl ToString) -> String {
    x.to_string()
}

/// The fixture registry with rcm-3-2-db moved to Modbus at `endpoint`, unit 1.
fn fixture_registry_on_modbus(endpoint: &str) -> String {
    let text = std::fs::read_to_string(fixture_dir().join("registry.toml")).unwrap();
    let from = "id = \"rcm-3-2-db\"\nkind = \"residual_current\"\nhousehold = \"h-3-2-501\"\nlocation = \"楼道配电箱\"\ntransport = \"mqtt\"";
    assert!(
        text.contains(from),
        "fixture registry changed: update this test"
    );
    text.replacen(
        from,
        &format!("id = \"rcm-3-2-db\"\nkind = \"residual_current\"\nhousehold = \"h-3-2-501\"\nlocation = \"楼道配电箱\"\ntransport = {{ modbus = {{ endpoint = \"{endpoint}\", unit = 1, profile = \"generic-rcm\", every = \"1s\" }} }}"),
        1,
    )
}

/// The device list of `GET /api/v1/devices`, by id.
async fn devices(gw: &Gateway) -> BTreeMap<String, Value> {
    let doc = gw.api().get_json("/api/v1/devices").await;
    doc["devices"]
        .as_array()
        .unwrap_or_else(|| panic!("no devices array: {doc}"))
        .iter()
        .map(|d| (d["id"].as_str().unwrap_or_default().to_string(), d.clone()))
        .collect()
}

/// Plays the shipped leak scenario (60 → 420 mA) against a gateway polling
/// rcm-3-2-db over `endpoint`; the alarm must reach the people of the
/// residual-current routes and nobody else.
async fn leak_is_alarmed(endpoint: &str, serve: &[String]) {
    let dir = temp_dir();
    let registry = fixture_registry_on_modbus(endpoint);
    let reg_path = dir.path().join("registry.toml");
    std::fs::write(&reg_path, &registry).unwrap();
    let smtp = SmtpSink::start().await;
    let mut args = vec![
        s("scenario"),
        s(repo_root().join("config/scenarios/leak.toml").display()),
        s("--speed"),
        s(3),
        s("--registry"),
        s(reg_path.display()),
    ];
    args.extend_from_slice(serve);
    let _sim = Sim::start(&args, "modbus").await;
    let gw = GatewayBuilder::default()
        .smtp_port(smtp.port())
        .webhook_url("http://127.0.0.1:9/nowhere")
        .fixture_file("registry.toml", registry)
        .start()
        .await;

    let alarm = wait_until_async(
        "a residual_current alarm at severity alarm for rcm-3-2-db",
        LONG,
        POLL,
        || async {
            let alarms = gw.api().alarms().await;
            let seen = format!("{alarms:?}");
            alarms
                .into_iter()
                .find(|a| {
                    a["device_id"] == "rcm-3-2-db"
                        && a["kind"] == "residual_current"
                        && a["severity"] == "alarm"
                })
                .ok_or(seen)
        },
    )
    .await;
    assert!(alarm["value"].as_f64().unwrap_or(0.0) >= 200.0, "{alarm}");
    // Residual-current warnings go to the grid worker and the family (fixture routing).
    for rcpt in [WANG_EMAIL, ZHANG_SON_EMAIL] {
        wait_until_async(
            &format!("an email about the leak to {rcpt}"),
            LONG,
            POLL,
            || async {
                smtp.messages_to(rcpt)
                    .iter()
                    .any(|m| m.subject.as_deref().is_some_and(|s| s.contains(ADDRESS)))
            },
        )
        .await;
    }
    for nobody in [LI_EMAIL, ZHAO_EMAIL] {
        assert!(
            smtp.messages_to(nobody).is_empty(),
            "{nobody} must not hear of a leak warning"
        );
    }
    let modbus = gw
        .api()
        .metric_value("gridwatch_readings_total", &[("transport", "modbus")])
        .await;
    assert!(modbus.unwrap_or(0.0) > 0.0);
    let offline = gw
        .api()
        .alarms()
        .await
        .into_iter()
        .any(|a| a["kind"] == "offline");
    assert!(!offline, "the polled monitor must never look offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leak_polled_over_modbus_tcp_raises_the_residual_current_alarm() {
    let port = free_port();
    leak_is_alarmed(
        &format!("tcp://127.0.0.1:{port}"),
        &[s("--modbus-listen"), format!("127.0.0.1:{port}")],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leak_polled_over_modbus_rtu_on_a_pty_raises_the_residual_current_alarm() {
    let dir = temp_dir();
    let link = dir.path().join("ttySIM");
    leak_is_alarmed(
        &format!("rtu://{}?baud=9600&parity=N", link.display()),
        &[s("--rtu-link"), s(link.display())],
    )
    .await;
}

/// `firmware-sim modbus` monitors on a fresh TCP port, their registry, and a gateway polling them.
async fn monitors(n: u32, extra: &[&str]) -> (Sim, Gateway, u16, String) {
    let port = free_port();
    let dir = temp_dir();
    let reg = dir.path().join("registry.toml");
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let mut args = vec![
        s("modbus"),
        s("--listen"),
        format!("127.0.0.1:{port}"),
        s("--monitors"),
        s(n),
        s("--registry-out"),
        s(reg.display()),
        s("--endpoint"),
        endpoint.clone(),
        s("--every"),
        s("1s"),
    ];
    args.extend(extra.iter().map(s));
    let sim = Sim::start(&args, "serving").await;
    let registry = std::fs::read_to_string(&reg).unwrap();
    let gw = load_gateway(registry).await;
    (sim, gw, port, endpoint)
}

/// A gateway for a generated registry (one grid, webhook contact "sink").
async fn load_gateway(registry: String) -> Gateway {
    GatewayBuilder::default()
        .fixture_file("registry.toml", registry)
        .fixture_file(
            "rules.toml",
            "[residual_current]\nwarning = 200\nalarm = 300\nclear = 250\nfor = \"5s\"\n\n[heartbeat]\nmodbus_failures = 3\n",
        )
        .fixture_file(
            "routing.toml",
            "[roles]\ngrid_worker = [\"webhook\"]\n\n[[route]]\nkinds = [\"residual_current\"]\nseverities = [\"warning\", \"alarm\"]\nnotify = [\"grid_worker\"]\n",
        )
        .extra_toml("[channels.webhook.sink]\nurl = \"http://127.0.0.1:9/nowhere\"\n")
        .start()
        .await
}

async fn metric(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    parse_metric(&gw.api().metrics().await, name, labels).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_silent_unit_among_five_costs_the_others_nothing() {
    misbehaving_unit_costs_the_others_nothing(&["--silent-unit", "3"]).await;
}

/// A unit answering after the 500 ms timeout: its late replies must never be
/// taken for another unit's (TCP reconnects after a timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_unit_among_five_costs_the_others_nothing() {
    misbehaving_unit_costs_the_others_nothing(&["--slow-unit", "3:700"]).await;
}

/// Unit 3 of five on one link misbehaves: the four others keep reading at
/// their cadence and stay online; unit 3 trips its breaker and goes offline.
async fn misbehaving_unit_costs_the_others_nothing(flags: &[&str]) {
    let (_sim, gw, _port, ep) = monitors(5, flags).await;
    let healthy = ["mb-00000", "mb-00001", "mb-00003", "mb-00004"];
    let silent = "mb-00002";
    // Each healthy monitor must show 8 distinct fresh readings while the
    // silent one times out, trips its breaker and goes offline.
    let mut stamps: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let start = Instant::now();
    loop {
        let devs = devices(&gw).await;
        for id in healthy {
            let d = &devs[id];
            if let Some(t) = d["last_seen"].as_str() {
                stamps.entry(id).or_default().insert(t.to_string());
                assert_eq!(d["online"], true, "healthy {id} went offline: {d}");
            }
        }
        let mut open = 0.0;
        for state in ["open", "half_open"] {
            let labels = [("endpoint", ep.as_str()), ("state", state)];
            open += metric(&gw, "gridwatch_modbus_breakers", &labels).await;
        }
        let fresh = healthy
            .iter()
            .all(|id| stamps.get(id).map_or(0, BTreeSet::len) >= 8);
        let silent_offline = devs[silent]["online"] == false;
        if fresh && silent_offline && open >= 1.0 {
            break;
        }
        assert!(
            start.elapsed() < LONG,
            "timed out: fresh readings {:?}, silent offline {silent_offline}, open breakers {open}\n{}",
            stamps.iter().map(|(k, v)| (*k, v.len())).collect::<Vec<_>>(),
            gw.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let offline: Vec<Value> = gw
        .api()
        .alarms()
        .await
        .into_iter()
        .filter(|a| a["kind"] == "offline")
        .collect();
    assert_eq!(offline.len(), 1, "{offline:?}");
    assert_eq!(offline[0]["device_id"], silent);
    assert!(
        metric(
            &gw,
            "gridwatch_modbus_polls_total",
            &[("endpoint", &ep), ("outcome", "timeout")]
        )
        .await
            >= 3.0
    );
    assert!(
        metric(
            &gw,
            "gridwatch_modbus_polls_total",
            &[("endpoint", &ep), ("outcome", "skipped")]
        )
        .await
            >= 1.0,
        "an open breaker skips the silent unit without I/O"
    );
    let out_of_step = metric(
        &gw,
        "gridwatch_modbus_polls_total",
        &[("endpoint", &ep), ("outcome", "protocol_error")],
    )
    .await;
    assert_eq!(
        out_of_step, 0.0,
        "a late reply was read as another unit's answer"
    );
    eprintln!(
        "cycles skipped: {}",
        metric(
            &gw,
            "gridwatch_modbus_cycles_skipped_total",
            &[("endpoint", &ep)]
        )
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_resumes_without_a_restart_when_the_tcp_peer_dies_and_comes_back() {
    let (mut sim, gw, port, ep) = monitors(2, &[]).await;
    let up = |gw: &Gateway| {
        let ep = ep.clone();
        let api = gw.api().clone();
        async move {
            parse_metric(
                &api.metrics().await,
                "gridwatch_modbus_link_up",
                &[("endpoint", &ep)],
            )
        }
    };
    wait_until_async("link up", LONG, POLL, || async {
        up(&gw).await == Some(1.0)
    })
    .await;
    sim.kill9();
    wait_until_async(
        "both monitors offline after the peer died",
        LONG,
        POLL,
        || async {
            let devs = devices(&gw).await;
            devs.values().all(|d| d["online"] == false) && up(&gw).await == Some(0.0)
        },
    )
    .await;
    let died_at = chrono_now_ms();
    let connects = metric(&gw, "gridwatch_modbus_connects_total", &[("endpoint", &ep)]).await;

    let _sim2 = Sim::start(
        &[
            s("modbus"),
            s("--listen"),
            format!("127.0.0.1:{port}"),
            s("--monitors"),
            s(2),
        ],
        "serving",
    )
    .await;
    wait_until_async(
        "both monitors online again with fresh readings",
        LONG,
        POLL,
        || async {
            let devs = devices(&gw).await;
            devs.values().all(|d| {
                d["online"] == true
                    && d["last_seen"]
                        .as_str()
                        .and_then(chrono_parse_ms)
                        .is_some_and(|t| t > died_at)
            })
        },
    )
    .await;
    assert!(metric(&gw, "gridwatch_modbus_connects_total", &[("endpoint", &ep)]).await > connects);
    assert!(
        metric(
            &gw,
            "gridwatch_modbus_polls_total",
            &[("endpoint", &ep), ("outcome", "link_down")]
        )
        .await
            + metric(
                &gw,
                "gridwatch_modbus_polls_total",
                &[("endpoint", &ep), ("outcome", "transport_error")]
            )
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exception_replies_are_counted_not_fatal() {
    let (_sim, gw, _port, ep) = monitors(2, &["--exception-unit", "2:6"]).await;
    wait_until_async(
        "exceptions counted while unit 1 keeps reading",
        LONG,
        POLL,
        || async {
            let exceptions = metric(
                &gw,
                "gridwatch_modbus_polls_total",
                &[("endpoint", &ep), ("outcome", "exception")],
            )
            .await;
            let devs = devices(&gw).await;
            let ok = devs["mb-00000"]["values"]["residual_current_ma"] == 30.0;
            (exceptions >= 5.0 && ok)
                .then_some(())
                .ok_or(format!("exceptions {exceptions}, unit 1 ok {ok}"))
        },
    )
    .await;
    assert_eq!(
        metric(&gw, "gridwatch_modbus_connects_total", &[("endpoint", &ep)]).await,
        1.0,
        "an exception reply must not cost the link"
    );
    assert_eq!(
        metric(&gw, "gridwatch_modbus_link_up", &[("endpoint", &ep)]).await,
        1.0
    );
}

/// Runs mbpoll (Debian package `mbpoll`) and returns the values it printed, by reference.
fn mbpoll(args: &[&str]) -> BTreeMap<u32, i64> {
    let out = Command::new("mbpoll")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("run mbpoll (apt-get install mbpoll; scripts/test installs it): {e}")
        });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mbpoll {args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .filter_map(|l| {
            let (r, v) = l.trim().strip_prefix('[')?.split_once("]:")?;
            let v = v.split_whitespace().next()?;
            Some((r.parse().ok()?, v.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbpoll_reads_firmware_sim_registers_over_tcp_and_rtu() {
    let port = free_port();
    let dir = temp_dir();
    let link = dir.path().join("ttySIM");
    let _sim = Sim::start(
        &[
            s("modbus"),
            s("--listen"),
            format!("127.0.0.1:{port}"),
            s("--rtu-link"),
            s(link.display()),
            s("--monitors"),
            s(4),
            s("--per-unit"),
            s(2),
            s("--residual-ma"),
            s(321),
            s("--temperature-c=-4.5"),
        ],
        "serving",
    )
    .await;
    let p = port.to_string();
    // Unit 2 holds monitors 2 and 3: input registers 0..4 (mbpoll references are 1-based).
    let regs = mbpoll(&[
        "-m",
        "tcp",
        "-p",
        &p,
        "-a",
        "2",
        "-t",
        "3",
        "-r",
        "1",
        "-c",
        "4",
        "-1",
        "127.0.0.1",
    ]);
    assert_eq!(
        regs,
        BTreeMap::from([(1, 321), (2, 65491), (3, 321), (4, 65491)]),
        "-45 = -4.5 °C as i16"
    );
    let bits = mbpoll(&[
        "-m",
        "tcp",
        "-p",
        &p,
        "-a",
        "1",
        "-t",
        "1",
        "-r",
        "1",
        "-c",
        "1",
        "-1",
        "127.0.0.1",
    ]);
    assert_eq!(bits, BTreeMap::from([(1, 0)]), "no fault");
    let path = link.display().to_string();
    let rtu = mbpoll(&[
        "-m", "rtu", "-b", "9600", "-P", "none", "-a", "1", "-t", "3", "-r", "1", "-c", "2", "-1",
        &path,
    ]);
    assert_eq!(rtu, BTreeMap::from([(1, 321), (2, 65491)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gridwatch_polls_a_pymodbus_server_with_generic_and_vendor_profiles() {
    let port = free_port();
    let script = repo_root().join("tests/fixtures/modbus/pymodbus_server.py");
    let mut py = PyServer(
        Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 {}: {e}", script.display())),
    );
    let ep = format!("tcp://127.0.0.1:{port}");
    let registry = format!(
        "[[grids]]\nid = \"g\"\nname = \"G\"\ngrid_workers = [\"c\"]\n\n[[households]]\nid = \"h\"\naddress = \"1\"\ngrid = \"g\"\n\n\
[[devices]]\nid = \"py-generic\"\nkind = \"residual_current\"\nhousehold = \"h\"\ntransport = {{ modbus = {{ endpoint = \"{ep}\", unit = 1, profile = \"generic-rcm\", every = \"1s\" }} }}\n\n\
[[devices]]\nid = \"py-acrel\"\nkind = \"residual_current\"\nhousehold = \"h\"\ntransport = {{ modbus = {{ endpoint = \"{ep}\", unit = 2, profile = \"acrel-asj\", every = \"1s\" }} }}\n\n\
[[contacts]]\nid = \"c\"\nname = \"C\"\nwebhook = \"sink\"\n"
    );
    let acrel =
        std::fs::read_to_string(repo_root().join("config/profiles/acrel-asj.toml")).unwrap();
    let gw = GatewayBuilder::default()
        .fixture_file("registry.toml", registry)
        .fixture_file("acrel-asj.toml", acrel)
        .fixture_file("rules.toml", "[heartbeat]\nmodbus_failures = 3\n")
        .fixture_file("routing.toml", "[roles]\ngrid_worker = [\"webhook\"]\n")
        .extra_toml("[channels.webhook.sink]\nurl = \"http://127.0.0.1:9/nowhere\"\n")
        .profiles(&["acrel-asj.toml"])
        .start()
        .await;
    let start = Instant::now();
    let (generic, acrel) = loop {
        if let Ok(Some(status)) = py.0.try_wait() {
            panic!(
                "pymodbus server exited: {status} (pip install pymodbus; scripts/test installs it)"
            );
        }
        let devs = devices(&gw).await;
        let g = devs["py-generic"].clone();
        let a = devs["py-acrel"].clone();
        let read = |d: &Value| d["values"].get("residual_current_ma").is_some();
        if read(&g) && read(&a) {
            break (g, a);
        }
        assert!(
            start.elapsed() < LONG,
            "pymodbus units not read: {g} {a}\n{}",
            gw.diagnostics()
        );
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(generic["values"]["residual_current_ma"], 250.0);
    assert!(
        (generic["values"]["temperature_c"].as_f64().unwrap() - 21.5).abs() < 1e-9,
        "{generic}"
    );
    assert_eq!(generic["flags"], serde_json::json!(["fault"]));
    assert_eq!(acrel["values"]["residual_current_ma"], 77.0);
    assert_eq!(
        acrel["flags"],
        serde_json::json!(["fault"]),
        "0x001B bit 2 = break"
    );
    let _ = py.0.kill();
}

/// Kills the pymodbus server when the test ends, however it ends.
struct PyServer(Child);

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Epoch ms of an RFC 3339 `YYYY-MM-DDTHH:MM:SS.mmmZ` stamp (the API's format).
fn chrono_parse_ms(t: &str) -> Option<i64> {
    let (date, time) = t.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, ms) = time.split_once('.').unwrap_or((time, "0"));
    let mut h = hms.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (h.next()?.ok()?, h.next()?.ok()?, h.next()?.ok()?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms.parse::<i64>().ok()?)
}

#[test]
fn rfc3339_parsing_helper_is_right() {
    assert_eq!(chrono_parse_ms("1970-01-01T00:00:01.500Z"), Some(1500));
    assert_eq!(
        chrono_parse_ms("2000-03-01T00:00:00.250Z"),
        Some(951_868_800_250)
    );
}
