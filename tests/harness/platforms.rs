//! The platform fakes of `tests/fakes/platforms.py` (DingTalk, WeCom, Feishu
//! robots; Aliyun and Tencent SMS; a Standard Webhooks receiver), run as a
//! child process on a free port of 127.0.0.1 and stopped on drop.
//!
//! They are written in Python from the platforms' documentation, not from
//! gridwatch's code, so a signature both sides got wrong the same way
//! cannot pass.

use crate::bins::repo_root;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The running fakes.
pub struct Platforms {
    child: Child,
    port: u16,
}

impl Platforms {
    /// Starts the fakes with `config` (tokens, secrets, keywords, templates; see the script).
    pub fn start(config: &Value) -> Platforms {
        let script = repo_root().join("tests/fakes/platforms.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(config.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", script.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the fakes' port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("platform fakes did not print a port: {line:?}"));
        Platforms { child, port }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Merges `{platform: {key: value}}` into the fakes' running config
    /// (e.g. the callback URL of a gateway started after the fakes).
    pub async fn configure(&self, patch: &Value) {
        let resp = reqwest::Client::new()
            .post(self.url("/_config"))
            .json(patch)
            .send()
            .await
            .expect("POST /_config of the platform fakes");
        assert!(resp.status().is_success(), "{}", resp.status());
    }

    /// Every push the Aliyun voice fake made to the callback, with the answer it got.
    pub async fn pushes(&self) -> Vec<Value> {
        let resp = reqwest::get(self.url("/_pushes"))
            .await
            .expect("GET /_pushes of the platform fakes");
        resp.json::<Vec<Value>>().await.expect("pushes as JSON")
    }

    /// Every request seen so far: `platform`, `path`, `query`, `headers`,
    /// `body` (JSON or form fields), `answer` (what the fake replied), `status`, `note`.
    pub async fn requests(&self) -> Vec<Value> {
        let resp = reqwest::get(self.url("/_requests"))
            .await
            .expect("GET /_requests of the platform fakes");
        resp.json::<Vec<Value>>().await.expect("requests as JSON")
    }

    /// Requests to one platform (`dingtalk`, `wecom`, `feishu`, `aliyun`, `tencent`, `json`).
    pub async fn requests_to(&self, platform: &str) -> Vec<Value> {
        self.requests()
            .await
            .into_iter()
            .filter(|r| r["platform"] == platform)
            .collect()
    }
}

impl Drop for Platforms {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
