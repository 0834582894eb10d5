//! MQTT peers: a subscriber that collects what the broker delivers, the real
//! `mosquitto_pub` client, and the real `firmware-sim` binary.

use crate::bins::firmware_sim_bin;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A subscriber on its own task, collecting `(topic, payload)` in order of arrival.
pub struct MqttWatcher {
    client: AsyncClient,
    received: Received,
    task: JoinHandle<()>,
}

/// Messages as received: `(topic, payload)`.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

static CLIENT_SEQ: AtomicU64 = AtomicU64::new(0);

impl MqttWatcher {
    /// Connects to `127.0.0.1:port`, subscribes to `filter` at QoS 1 and
    /// returns once the broker has acknowledged the subscription (retrying the
    /// connection for up to 20 s while the broker comes up). It subscribes
    /// again after every reconnection.
    pub async fn subscribe(port: u16, filter: &str) -> MqttWatcher {
        let id = format!(
            "e2e-watch-{}-{}",
            std::process::id(),
            CLIENT_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let received = Received::default();
        let (subacked_tx, subacked_rx) = oneshot::channel();
        let sink = received.clone();
        let resubscriber = client.clone();
        let filter_owned = filter.to_string();
        let task = tokio::spawn(async move {
            let mut subacked_tx = Some(subacked_tx);
            loop {
                match eventloop.poll().await {
                    // Clean session: subscribe on every (re)connection, so a
                    // restarted broker keeps feeding the watcher.
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = resubscriber.try_subscribe(filter_owned.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subacked_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        sink.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(_) => {}
                    // The broker is not up yet, or went away: try again.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        match tokio::time::timeout(crate::WAIT, subacked_rx).await {
            Ok(Ok(())) => {}
            _ => {
                task.abort();
                panic!(
                    "MqttWatcher: no SUBACK for {filter:?} from 127.0.0.1:{port} within {:?}",
                    crate::WAIT
                )
            }
        }
        MqttWatcher {
            client,
            received,
            task,
        }
    }

    /// Everything received so far.
    pub fn messages(&self) -> Vec<(String, Vec<u8>)> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Received messages whose payload is JSON, as `(topic, json)`.
    pub fn json_messages(&self) -> Vec<(String, Value)> {
        self.messages()
            .into_iter()
            .filter_map(|(t, p)| serde_json::from_slice(&p).ok().map(|v| (t, v)))
            .collect()
    }

    /// Publishes through this watcher's own connection (QoS 1).
    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("queue PUBLISH");
    }
}

impl Drop for MqttWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Publishes `payload` on `topic` at QoS 1 with the real `mosquitto_pub`
/// (payload passed with `-f`, so any bytes go through unchanged); panics if
/// the client is missing or fails.
pub async fn mosquitto_pub(port: u16, topic: &str, payload: impl AsRef<[u8]>) {
    let file = tempfile::NamedTempFile::new().expect("temp file for the payload");
    std::fs::write(file.path(), payload.as_ref()).expect("write the payload file");
    let output = tokio::process::Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-t",
            topic,
        ])
        .arg("-f")
        .arg(file.path())
        .stdin(Stdio::null())
        .output()
        .await;
    let output = match output {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "mosquitto_pub is not installed: run scripts/test (it installs Debian's mosquitto-clients) \
             or `apt-get install mosquitto-clients`"
        ),
        Err(e) => panic!("cannot run mosquitto_pub: {e}"),
    };
    assert!(
        output.status.success(),
        "mosquitto_pub -p {port} -t {topic} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `firmware-sim scenario FILE --mqtt 127.0.0.1:PORT` to completion; panics with its output on failure.
pub async fn firmware_sim_scenario(port: u16, file: &Path) {
    let started = Instant::now();
    let output = tokio::process::Command::new(firmware_sim_bin())
        .arg("scenario")
        .arg(file)
        .args(["--mqtt", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(crate::WAIT * 3, output).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("cannot run firmware-sim: {e}"),
        Err(_) => panic!(
            "firmware-sim scenario {} did not finish within {:?}",
            file.display(),
            started.elapsed()
        ),
    };
    assert!(
        output.status.success(),
        "firmware-sim scenario {} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        file.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
