//! The running daemon: opens the store, starts the broker and the stages,
//! joins them with bounded channels, serves HTTP, and reloads config on
//! SIGHUP. The stages themselves live in their own modules; this is wiring.

pub mod devices;
pub mod rules_stage;

use crate::ack_link::AckSigner;
use crate::alarms::AlarmsStage;
use crate::api::{self, ApiState};
use crate::channels::Channels;
use crate::config::{default_event_topic, Config};
use crate::dispatch::{EventPublisher, Sender};
use crate::ingest::{broker, mqtt, Lanes};
use crate::metrics::Metrics;
use crate::rules::RuleEngine;
use crate::store::Store;
use devices::DeviceTable;
use std::path::PathBuf;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Capacities of the channels between stages: bounded everywhere.
const PRIORITY_LANE: usize = 1024;
const NORMAL_LANE: usize = 8192;
const SIGNALS: usize = 4096;
const COMMANDS: usize = 64;
const TO_SENDER: usize = 1024;
const MQTT_HANDOFF: usize = 1024;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error(transparent)]
    Mqtt(#[from] mqtt::MqttSetupError),
    #[error("channels: {0}")]
    Channels(#[from] crate::channels::ChannelError),
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Http {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the daemon until SIGTERM/SIGINT.
pub async fn run(config: Config) -> Result<(), StartError> {
    let metrics = Metrics::new();
    let data_dir = config.data_dir();
    let (store, report) = Store::open(&data_dir)?;
    if let Some(aside) = &report.moved_aside {
        metrics.store_recovered_total.inc();
        tracing::error!(moved_to = %aside.display(), "STORE WAS UNREADABLE: started empty; old data kept aside for inspection");
    }
    let signer = AckSigner::new(store.secret("ack-link-key")?);
    let site = config.gateway.site.clone();
    let mqtt_cfg = config.gateway.mqtt.clone();
    let embedded_at = if mqtt_cfg.embedded {
        Some(broker::start(&mqtt_cfg.listen)?)
    } else {
        None
    };
    let endpoint = mqtt::endpoint(&mqtt_cfg, embedded_at)?;
    let channels = Arc::new(Channels::new(&config.gateway.channels, &site)?);
    let events_topic = config
        .gateway
        .channels
        .mqtt
        .as_ref()
        .map(|m| m.topic.clone())
        .unwrap_or_else(default_event_topic);
    let http_listen = config.gateway.http.listen.clone();
    let (config_tx, config_rx) = watch::channel(Arc::new(config));

    // MQTT source.
    let (client, event_loop) = mqtt::client(&endpoint, &format!("gridwatch-{}", site.id));
    let (connected_tx, connected_rx) = watch::channel(false);
    let (pub_tx, pub_rx) = mpsc::channel(MQTT_HANDOFF);
    tokio::spawn(mqtt::run_event_loop(
        client.clone(),
        event_loop,
        pub_tx,
        Arc::new(connected_tx),
    ));
    let (prio_tx, prio_rx) = mpsc::channel(PRIORITY_LANE);
    let (norm_tx, norm_rx) = mpsc::channel(NORMAL_LANE);
    let lanes = Lanes {
        priority: prio_tx,
        normal: norm_tx,
    };
    // Modbus source: same lanes as MQTT.
    crate::ingest::modbus::spawn(config_rx.clone(), lanes.clone(), metrics.clone());
    let handler = mqtt::Handler::new(client.clone(), lanes, config_rx.clone(), metrics.clone());
    tokio::spawn(handler.run(pub_rx));

    // Rules.
    let devices = DeviceTable::default();
    let rules_alive = Arc::new(AtomicI64::new(crate::model::now_ms()));
    let (sig_tx, sig_rx) = mpsc::channel(SIGNALS);
    let engine = {
        let cfg = config_rx.borrow();
        RuleEngine::new(&cfg.rules, &cfg.registry)
    };
    tokio::spawn(rules_stage::run(
        rules_stage::RulesInputs {
            priority: prio_rx,
            normal: norm_rx,
            config: config_rx.clone(),
        },
        engine,
        devices.clone(),
        sig_tx,
        rules_alive.clone(),
    ));

    // Alarms and dispatch.
    let (send_tx, send_rx) = mpsc::channel(TO_SENDER);
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMANDS);
    let stage = AlarmsStage::new(
        config_rx.clone(),
        store.clone(),
        signer.clone(),
        channels.clone(),
        metrics.clone(),
        send_tx,
    )?;
    tokio::spawn(stage.run(sig_rx, cmd_rx));
    let publisher = EventPublisher::new(client.clone(), events_topic, site.id.clone());
    let sender = Sender::new(channels, publisher, store.clone(), metrics.clone());
    let pending = store.pending()?;
    metrics.outbox_pending.set(pending.len() as i64);
    tokio::spawn(sender.run(pending, send_rx));

    // HTTP.
    let state = ApiState {
        config: config_rx.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        commands: cmd_tx,
        devices,
        signer,
        broker_connected: connected_rx,
        rules_alive,
    };
    let listener = tokio::net::TcpListener::bind(&http_listen)
        .await
        .map_err(|source| StartError::Http {
            addr: http_listen.clone(),
            source,
        })?;
    tracing::info!(listen = %http_listen, site = %site.id, "gridwatch serving");
    let app = api::router(state);
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });

    wait_for_shutdown(config_tx).await;
    server.abort();
    if let Err(e) = store.flush().await {
        tracing::error!(error = %e, "final flush failed");
    }
    tracing::info!("gridwatch stopped");
    Ok(())
}

/// Waits for SIGTERM or SIGINT; reloads the config on SIGHUP (a bad config is
/// refused with its errors and the running one stays).
async fn wait_for_shutdown(config_tx: watch::Sender<Arc<Config>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; running until killed");
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => reload(&config_tx),
        }
    }
}

/// Re-reads the config from the path it was loaded from.
pub fn reload(config_tx: &watch::Sender<Arc<Config>>) {
    let path: PathBuf = config_tx.borrow().path.clone();
    match Config::load(&path) {
        Ok(cfg) => {
            config_tx.send_replace(Arc::new(cfg));
            tracing::info!(path = %path.display(), "config reloaded");
        }
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(error = %e, "config reload refused; the running config stays");
            }
        }
    }
}
