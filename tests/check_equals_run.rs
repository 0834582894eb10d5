//! `check-config` and `run` accept and refuse the same configs, with the same
//! messages: both go through the runtime's one build step. Each broken config
//! is given to the real binary twice; `run` must exit (starting nothing) and
//! print exactly the lines `check-config` prints, each once.

use gridwatch_e2e::{check_config, free_port, gridwatch_bin, temp_dir, Gateway};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Generous: the machine may be busy; a refusal itself takes milliseconds.
const RUN_EXIT_WAIT: Duration = Duration::from_secs(60);

/// Configs that can never deliver (or never start), as extra gateway.toml
/// text appended to the fixture, and a fragment the error must contain.
const BROKEN: &[(&str, &str, &str)] = &[
    (
        "sms body that is not JSON",
        "[channels.sms]\nurl = \"http://127.0.0.1:9/sms\"\nbody = '{\"to\":{{phone}},\"text\":\"{{text}}\"}'\n",
        "[channels.sms] body",
    ),
    (
        "aliyun voice without its TTS template",
        "[channels.voice]\nbackend = \"aliyun\"\naccess_key_id = \"id\"\naccess_key_secret = \"s\"\ncalled_show_number = \"057188880000\"\n",
        "[channels.voice] tts_code: is required",
    ),
    (
        "template voice gateway URL with a space",
        "[channels.voice]\nbackend = \"template\"\nurl = \"http://exa mple.org/call\"\nbody = '{\"to\":\"{{phone}}\"}'\ncallback_secret = \"0123456789abcdef0123\"\n",
        "[channels.voice] url",
    ),
    (
        "a template key on the aliyun voice backend",
        "[channels.voice]\nbackend = \"aliyun\"\nurl = \"http://127.0.0.1:9/call\"\n",
        "[channels.voice] url: is not used by backend aliyun",
    ),
    (
        "webhook host with a space",
        "[channels.webhook.w]\nurl = \"http://exa mple.org/x\"\n",
        "[channels.webhook.w] url",
    ),
    (
        "webhook with a broken IPv6 host",
        "[channels.webhook.w]\nurl = \"http://[::1/x\"\n",
        "invalid IPv6 address",
    ),
    (
        "webhook without a host",
        "[channels.webhook.w]\nurl = \"http://\"\n",
        "empty host",
    ),
    (
        "smtp port that is not a number",
        "[channels.email]\nsmtp = \"smtp://host:notaport\"\nfrom = \"a@example.org\"\n",
        "invalid port number",
    ),
    (
        "upstream without a port",
        "[upstream]\nurl = \"mqtt://broker.example.org\"\n",
        "upstream url",
    ),
    (
        "upstream over mqtts (no TLS client)",
        "[upstream]\nurl = \"mqtts://broker.example.org:8883\"\n",
        "must start with mqtt://",
    ),
    (
        "event topic with a wildcard",
        "[channels.mqtt]\ntopic = \"gridwatch/+/alarms\"\n",
        "wildcards",
    ),
    (
        "event topic with an unknown placeholder",
        "[channels.mqtt]\ntopic = \"gridwatch/{site}/{alarm}\"\n",
        "unknown placeholder {alarm}",
    ),
    (
        "console flag of the wrong type",
        "[channels.console]\nenabled = \"yes\"\n",
        "gateway.toml:",
    ),
];

/// Runs `gridwatch run` until it exits; panics (after killing it) if it
/// keeps running, which means it started on a config check-config refused.
fn run_until_exit(config: &Path) -> (Option<i32>, String) {
    let dir = config.parent().expect("config has a directory");
    let err_path = dir.join("run.stderr");
    let err = std::fs::File::create(&err_path).expect("create run.stderr");
    let mut child = Command::new(gridwatch_bin())
        .args(["run", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn gridwatch run");
    let start = Instant::now();
    let status = loop {
        match child.try_wait().expect("wait for gridwatch run") {
            Some(status) => break status,
            None if start.elapsed() > RUN_EXIT_WAIT => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "gridwatch run kept running on {}:\n{}",
                    config.display(),
                    std::fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let text = std::fs::read_to_string(&err_path).expect("read run.stderr");
    (status.code(), text)
}

#[test]
fn check_config_and_run_refuse_the_same_configs_with_the_same_messages() {
    for (what, extra, fragment) in BROKEN {
        let dir = temp_dir();
        // The fixture's fire brigade needs its webhook; the broken ones are extra.
        let config = Gateway::builder()
            .webhook_url("http://127.0.0.1:9/alarm")
            .extra_toml(format!("\n{extra}"))
            .write_config(dir.path(), free_port(), free_port());

        let checked = check_config(&config, &[]);
        let stdout = String::from_utf8_lossy(&checked.stdout).to_string();
        assert_eq!(
            checked.status.code(),
            Some(1),
            "{what}: check-config must refuse:\n{stdout}"
        );
        let errors: Vec<&str> = stdout
            .lines()
            .filter(|l| !l.starts_with("warning: "))
            .collect();
        assert!(
            errors
                .iter()
                .any(|l| l.contains("gateway.toml:") && l.contains(fragment)),
            "{what}: expected an error at gateway.toml:LINE containing {fragment:?}:\n{stdout}"
        );

        let (code, stderr) = run_until_exit(&config);
        assert_eq!(code, Some(1), "{what}: run must refuse:\n{stderr}");
        for line in &errors {
            let copies = stderr.lines().filter(|l| l == line).count();
            assert_eq!(
                copies, 1,
                "{what}: run must print {line:?} exactly once:\n{stderr}"
            );
            if let Some((_, message)) = line.split_once(": ") {
                assert_eq!(
                    stderr.matches(message).count(),
                    1,
                    "{what}: the message is printed more than once:\n{stderr}"
                );
            }
        }
        assert!(
            !dir.path().join("data").exists(),
            "{what}: run opened the store before refusing the config"
        );
    }
}
