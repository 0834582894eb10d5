//! The real `gridwatch run` process on free loopback ports, with a temp config
//! dir made from the `compound` fixture and its own data dir.
//!
//! Its stdout and stderr go to files in the temp dir; when a test panics the
//! dir is kept and every panic raised here quotes the logs' tails.

use crate::api::Api;
use crate::bins::gridwatch_bin;
use crate::compound;
use crate::{free_port, tail, temp_dir};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Bearer token of the `duty_officer` API token in generated configs.
pub const DUTY_TOKEN: &str = "e2e-duty-token-0123456789";

/// Builds the temp config of a [`Gateway`]; every channel is optional.
#[derive(Debug, Clone, Default)]
pub struct GatewayBuilder {
    smtp_port: Option<u16>,
    webhook_url: Option<String>,
    sms_url: Option<String>,
    max_payload: Option<usize>,
    mqtt_lines: Vec<String>,
    extra_toml: String,
    fixture_overrides: Vec<(String, String)>,
    run_args: Vec<String>,
    run_env: Vec<(String, String)>,
    storage_path: Option<PathBuf>,
    profiles: Vec<String>,
    site_id: Option<String>,
    plan: bool,
}

impl GatewayBuilder {
    /// `[site] id` (default the fixture compound's), for several boxes in one test.
    pub fn site_id(mut self, id: impl Into<String>) -> Self {
        self.site_id = Some(id.into());
        self
    }

    /// `[channels.email] smtp = "smtp://127.0.0.1:{port}"`.
    pub fn smtp_port(mut self, port: u16) -> Self {
        self.smtp_port = Some(port);
        self
    }

    /// `[channels.webhook.fire119] url = {url}` (format json).
    pub fn webhook_url(mut self, url: impl Into<String>) -> Self {
        self.webhook_url = Some(url.into());
        self
    }

    /// `[channels.sms] url = {url}` with the body template `{"to":"{{phone}}","text":"{{text}}"}`.
    pub fn sms_url(mut self, url: impl Into<String>) -> Self {
        self.sms_url = Some(url.into());
        self
    }

    /// `[mqtt] max_payload` (the gateway's default is 4096 bytes).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = Some(bytes);
        self
    }

    /// A `key = value` line in gateway.toml's `[mqtt]` table (e.g. `listen_v5 = "…"`).
    pub fn mqtt_line(mut self, line: impl Into<String>) -> Self {
        self.mqtt_lines.push(line.into());
        self
    }

    /// Raw TOML appended to gateway.toml; start it with a table header.
    pub fn extra_toml(mut self, toml: impl Into<String>) -> Self {
        self.extra_toml.push('\n');
        self.extra_toml.push_str(&toml.into());
        self
    }

    /// `profiles = [...]`: Modbus profile files (written with [`GatewayBuilder::fixture_file`]).
    pub fn profiles(mut self, files: &[&str]) -> Self {
        self.profiles.extend(files.iter().map(|f| f.to_string()));
        self
    }

    /// Replaces a fixture file (`registry.toml`, `rules.toml`, `routing.toml`) with `content`.
    pub fn fixture_file(mut self, name: impl Into<String>, content: impl Into<String>) -> Self {
        self.fixture_overrides.push((name.into(), content.into()));
        self
    }

    /// An extra argument to `gridwatch run` (e.g. `--test-hooks`, `--log-format`).
    pub fn run_arg(mut self, arg: impl Into<String>) -> Self {
        self.run_args.push(arg.into());
        self
    }

    /// An environment variable for the gateway process (e.g. `NOTIFY_SOCKET`).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.run_env.push((key.into(), value.into()));
        self
    }

    /// `[site] plan = "plan.svg"` with this SVG as the compound plan.
    pub fn site_plan(mut self, svg: impl Into<String>) -> Self {
        self.plan = true;
        self.fixture_file("plan.svg", svg)
    }

    /// `[storage] path`: an existing data dir (e.g. a restored backup) instead of `data`.
    pub fn storage_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.storage_path = Some(path.into());
        self
    }

    /// Writes the config dir, starts the gateway and waits for `/readyz`.
    pub async fn start(self) -> Gateway {
        let dir = temp_dir();
        let http_port = free_port();
        let mqtt_port = free_port();
        let config = self.write_config(dir.path(), http_port, mqtt_port);
        let mut gateway = Gateway {
            config,
            logs: dir.path().to_path_buf(),
            dir: Some(dir),
            http_port,
            mqtt_port,
            child: None,
            runs: 0,
            run_args: self.run_args.clone(),
            run_env: self.run_env.clone(),
            api: Api::new(
                format!("http://127.0.0.1:{http_port}"),
                DUTY_TOKEN.to_string(),
            ),
        };
        gateway.spawn_and_wait_ready().await;
        gateway
    }

    /// Writes the fixture files and gateway.toml into `dir`; returns gateway.toml's path.
    pub fn write_config(&self, dir: &Path, http_port: u16, mqtt_port: u16) -> PathBuf {
        for name in ["registry.toml", "rules.toml", "routing.toml"] {
            std::fs::copy(compound::fixture_dir().join(name), dir.join(name))
                .unwrap_or_else(|e| panic!("copy fixture {name}: {e}"));
        }
        for (name, content) in &self.fixture_overrides {
            std::fs::write(dir.join(name), content)
                .unwrap_or_else(|e| panic!("write fixture {name}: {e}"));
        }
        let config = dir.join("gateway.toml");
        std::fs::write(&config, self.gateway_toml(http_port, mqtt_port))
            .expect("write gateway.toml");
        config
    }

    /// The gateway.toml text for these ports.
    pub fn gateway_toml(&self, http_port: u16, mqtt_port: u16) -> String {
        let mut toml = format!(
            r#"registry = "registry.toml"
rules = "rules.toml"
routing = "routing.toml"
profiles = {profiles:?}

[site]
id = "{site}"
name = "{site_name}"
locale = "zh-CN"
{plan}
[storage]
path = "{storage}"

[mqtt]
embedded = true
listen = "127.0.0.1:{mqtt_port}"
"#,
            site = self.site_id.as_deref().unwrap_or(compound::SITE),
            site_name = compound::SITE_NAME,
            plan = if self.plan {
                "plan = \"plan.svg\"\n"
            } else {
                ""
            },
            storage = self
                .storage_path
                .as_ref()
                .map_or("data".to_string(), |p| p.display().to_string()),
            profiles = self.profiles,
        );
        if let Some(bytes) = self.max_payload {
            let _ = writeln!(toml, "max_payload = {bytes}");
        }
        for line in &self.mqtt_lines {
            let _ = writeln!(toml, "{line}");
        }
        let _ = write!(
            toml,
            r#"
[http]
listen = "127.0.0.1:{http_port}"
public_url = "http://127.0.0.1:{http_port}"

[[http.tokens]]
name = "e2e-duty"
role = "duty_officer"
token = "{DUTY_TOKEN}"
"#
        );
        if let Some(port) = self.smtp_port {
            let _ = write!(
                toml,
                r#"
[channels.email]
smtp = "smtp://127.0.0.1:{port}"
from = "gridwatch <alarm@example.org>"
timeout = "5s"
"#
            );
        }
        if let Some(url) = &self.webhook_url {
            let _ = write!(
                toml,
                r#"
[channels.webhook.fire119]
url = "{url}"
format = "json"
timeout = "5s"
"#
            );
        }
        if let Some(url) = &self.sms_url {
            let _ = write!(
                toml,
                r#"
[channels.sms]
url = "{url}"
body = '{{"to":"{{{{phone}}}}","text":"{{{{text}}}}"}}'
timeout = "5s"
"#
            );
        }
        toml.push_str(&self.extra_toml);
        toml
    }
}

/// A running (or killed) `gridwatch run` process.
pub struct Gateway {
    config: PathBuf,
    logs: PathBuf,
    dir: Option<tempfile::TempDir>,
    http_port: u16,
    mqtt_port: u16,
    child: Option<Child>,
    runs: u32,
    run_args: Vec<String>,
    run_env: Vec<(String, String)>,
    api: Api,
}

impl Gateway {
    /// A builder with no channel configured.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }

    /// The embedded broker's port.
    pub fn mqtt_port(&self) -> u16 {
        self.mqtt_port
    }

    /// The HTTP port.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// `http://127.0.0.1:{http_port}` (also the configured `public_url`).
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The generated gateway.toml.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The temp dir holding config, data and logs.
    pub fn dir(&self) -> &Path {
        &self.logs
    }

    /// The process's stdout file (console notifications); appended across restarts.
    pub fn stdout_path(&self) -> PathBuf {
        self.logs.join("stdout.log")
    }

    /// The process's stderr file (logs); appended across restarts.
    pub fn stderr_path(&self) -> PathBuf {
        self.logs.join("stderr.log")
    }

    /// The API client (duty-officer token).
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// Paths and tails of the logs, for panic messages.
    pub fn diagnostics(&self) -> String {
        format!(
            "gateway dir {}\n--- stderr ({}) tail\n{}\n--- stdout ({}) tail\n{}",
            self.logs.display(),
            self.stderr_path().display(),
            tail(&self.stderr_path(), 40),
            self.stdout_path().display(),
            tail(&self.stdout_path(), 20)
        )
    }

    /// SIGKILL (a power cut) and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for the exit (SIGKILL after 20 s); returns the exit status.
    pub async fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("Gateway::stop: not running");
        let term = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(term.success(), "kill -TERM {} failed", child.id());
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if start.elapsed() > crate::WAIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "gateway did not exit within {:?} of SIGTERM\n{}",
                    crate::WAIT,
                    self.diagnostics()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts again with the same config and data dir (after `kill9` or `stop`) and waits for `/readyz`.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "Gateway::restart while running");
        self.spawn_and_wait_ready().await;
    }

    /// The process id while running (to send it signals, e.g. SIGHUP).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    async fn spawn_and_wait_ready(&mut self) {
        self.runs += 1;
        let stdout = self.open_log(&self.stdout_path());
        let stderr = self.open_log(&self.stderr_path());
        let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info,gridwatch=debug".into());
        let child = Command::new(gridwatch_bin())
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .args(&self.run_args)
            .current_dir(&self.logs)
            .env("RUST_LOG", rust_log)
            .envs(self.run_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn gridwatch run: {e}"));
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if self.api.readyz().await == Some(200) {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "gridwatch run exited ({status}) before /readyz answered 200\n{}",
                    self.diagnostics()
                );
            }
            if start.elapsed() > crate::WAIT {
                panic!(
                    "gridwatch /readyz not 200 within {:?}\n{}",
                    crate::WAIT,
                    self.diagnostics()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens a log file for appending, with a marker line per run.
    fn open_log(&self, path: &Path) -> File {
        use std::io::Write as _;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let _ = writeln!(file, "===== gridwatch run #{} =====", self.runs);
        file
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("kept gateway dir for inspection: {}", kept.display());
                eprintln!("{}", self.diagnostics());
            }
        }
    }
}

/// Runs `gridwatch check-config --config PATH` with extra environment variables; returns its output.
pub fn check_config(config: &Path, env: &[(String, String)]) -> std::process::Output {
    Command::new(gridwatch_bin())
        .arg("check-config")
        .arg("--config")
        .arg(config)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run gridwatch check-config: {e}"))
}
