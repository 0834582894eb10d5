//! The running daemon in two steps: [`build`] turns the config into typed
//! parts and spawns nothing (so `check-config` runs it too); [`spawn`] opens
//! the store, starts the broker and the stages, joins them with bounded
//! channels, serves HTTP, and reloads config on SIGHUP until told to stop.
//! The stages themselves live in their own modules; this is wiring.

pub mod build;
/// The device table moved to the rules stage that writes it.
pub use crate::rules::devices;
pub mod rules_stage;
pub mod store_damage;

use crate::ack_link::AckSigner;
use crate::alarms::AlarmsStage;
use crate::api::{self, ApiState};
use crate::channels::Channels;
use crate::config::Config;
use crate::config::ConfigErrors;
use crate::dispatch::upstream::Upstream;
use crate::dispatch::{EventPublisher, Sender};
use crate::health::{heartbeat, sd_notify, supervise, Health, Stage};
use crate::ingest::device_auth::{DeviceAuth, InternalCredential};
use crate::ingest::overload::{self, TelemetryQueue, MAX_PENDING_DEVICES};
use crate::ingest::{broker, mqtt, Lanes};
use crate::metrics::Metrics;
use crate::net::Endpoint;
use crate::rules::devices::DeviceTable;
use crate::rules::RuleEngine;
use crate::store::Store;
pub use build::{build, load, Parts};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Capacities of the channels between stages: bounded everywhere.
const PRIORITY_LANE: usize = 1024;
const SIGNALS: usize = 4096;
const COMMANDS: usize = 64;
const TO_SENDER: usize = 1024;
const CALL_REPORTS: usize = 64;

/// Why the daemon could not start. Each message is complete on its own (it
/// names its cause), so the binary prints it once, without the source chain.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config does not build: every error, each with file:line.
    #[error("invalid configuration:\n{0}")]
    Config(ConfigErrors),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// How the daemon runs, beyond its config file.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Mount the test-only hooks (`POST /test/wedge/{stage}`). Never in production.
    pub test_hooks: bool,
}

/// Runs the daemon until SIGTERM/SIGINT.
pub async fn run(config: Config) -> Result<(), StartError> {
    run_with(config, RunOptions::default()).await
}

/// Builds and runs the daemon with options until SIGTERM/SIGINT.
pub async fn run_with(config: Config, opts: RunOptions) -> Result<(), StartError> {
    let parts = build(&config).map_err(StartError::Config)?;
    spawn(config, parts, opts).await
}

/// Starts every stage from built parts, serves until SIGTERM/SIGINT, then
/// stops in order: health off, systemd told, HTTP closed, store flushed.
pub async fn spawn(config: Config, parts: Parts, opts: RunOptions) -> Result<(), StartError> {
    let Parts {
        channels,
        mqtt_listen,
        mqtt_tls,
        mqtt_v5,
        external,
        upstream,
        http_listen,
        events_topic,
    } = parts;
    let metrics = Metrics::new();
    let health = Health::new();
    let notifier = sd_notify::Notifier::from_env();
    let data_dir = config.data_dir();
    let (store, report) = Store::open(&data_dir)?;
    store_damage::announce_open(&report, &metrics, &health);
    let signer = AckSigner::new(store.secret("ack-link-key")?);
    let site = config.gateway.site.clone();
    let mqtt_cfg = config.gateway.mqtt.clone();
    let (security, internal) = broker_security(&mqtt_cfg, mqtt_tls, mqtt_v5);
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let embedded = if mqtt_cfg.embedded {
        Some(broker::start_secured(
            &mqtt_listen.to_string(),
            &security,
            broker::Buffer::from_mib(mqtt_cfg.broker_buffer_mib),
            broker_thread_exit(stopping.clone()),
        )?)
    } else {
        None
    };
    let credentials = internal.map(|c| (c.username, c.password));
    // Our own client uses the internal listener; the canary uses the one devices use.
    let (endpoint, canary_endpoint) = if let Some(e) = &embedded {
        let at = |a: SocketAddr| Endpoint {
            host: a.ip().to_string(),
            port: a.port(),
            credentials: credentials.clone(),
        };
        (at(e.internal), at(e.devices))
    } else {
        // `build` refuses `embedded = false` without a valid `external`.
        let ep = external.ok_or_else(|| {
            StartError::Config(ConfigErrors(vec![config.gateway_error(
                &["mqtt", "external"],
                "mqtt embedded = false needs `external = \"mqtt://host:port\"`",
            )]))
        })?;
        (ep.clone(), ep)
    };
    let mut channels = channels.with_store(store.clone());
    // Call outcomes go to the alarms stage like any person's action.
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMANDS);
    let (calls_tx, calls_rx) = mpsc::channel(CALL_REPORTS);
    channels.start(health.clone(), calls_tx);
    let call_book = channels.call_book();
    if let Some(backend) = channels.voice_backend() {
        // Every outcome from zero, so the first failure shows in increase().
        for outcome in ["answered", "no_answer", "busy", "failed"] {
            metrics
                .voice_calls_total
                .with_label_values(&[backend, outcome]);
        }
    }
    tokio::spawn(forward_calls(calls_rx, cmd_tx.clone()));
    let channels: Arc<Channels> = Arc::new(channels);
    let api_channels = channels.clone();
    let events_topic = events_topic.as_str().to_string();
    let selfwatch = config.gateway.selfwatch.clone();
    let (config_tx, config_rx) = watch::channel(Arc::new(config));
    let config_tx = Arc::new(config_tx);

    // MQTT source.
    let (client, event_loop) = mqtt::client(
        &endpoint,
        &format!("gridwatch-{}", site.id),
        !mqtt_cfg.embedded,
    );
    let (connected_tx, connected_rx) = watch::channel(false);
    let (handoff, handoff_rx) = mqtt::Handoff::new(metrics.clone());
    // The embedded broker's urgent copy, on a connection of its own.
    let urgent_rx = if embedded.is_some() {
        let handoff = handoff.clone().with_fastlane();
        let (urgent_client, urgent_loop) = mqtt::client(
            &endpoint,
            &format!(
                "gridwatch-{}-{}",
                site.id,
                crate::ingest::urgent::CLIENT_SUFFIX
            ),
            false,
        );
        let (tx, rx) = watch::channel(false);
        supervise(
            &health,
            &metrics,
            Stage::Ingest,
            "urgent copy",
            tokio::spawn(mqtt::run_urgent_copy(
                urgent_client,
                urgent_loop,
                handoff.clone(),
                Arc::new(tx),
            )),
        );
        Some((handoff, rx))
    } else {
        None
    };
    let (handoff, urgent_rx) = match urgent_rx {
        Some((h, rx)) => (h, Some(rx)),
        None => (handoff, None),
    };
    let stall_stream = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let event_loop = tokio::spawn(mqtt::run_event_loop(
        client.clone(),
        event_loop,
        handoff,
        Arc::new(connected_tx),
        config_rx.clone(),
        stall_stream.clone(),
    ));
    supervise(
        &health,
        &metrics,
        Stage::Ingest,
        "mqtt event loop",
        event_loop,
    );
    // Not ready until the device listeners are open (embedded broker).
    let (canary_tx, canary_rx) = watch::channel(
        embedded
            .is_some()
            .then(|| "starting: device listeners not open yet".to_string()),
    );
    supervise(
        &health,
        &metrics,
        Stage::Broker,
        "broker watch",
        tokio::spawn(mirror_broker(
            connected_rx.clone(),
            urgent_rx,
            canary_rx,
            health.clone(),
        )),
    );
    let (prio_tx, prio_rx) = mpsc::channel(PRIORITY_LANE);
    let telemetry = TelemetryQueue::new(MAX_PENDING_DEVICES, usize::MAX, metrics.clone());
    let lanes = Lanes {
        priority: prio_tx,
        telemetry: telemetry.clone(),
    };
    supervise(
        &health,
        &metrics,
        Stage::Ingest,
        "shed log",
        tokio::spawn(overload::run_shed_log(
            metrics.clone(),
            std::time::Duration::from_secs(60),
        )),
    );
    // Modbus source: same lanes as MQTT.
    crate::ingest::modbus::spawn(config_rx.clone(), lanes.clone(), metrics.clone());
    supervise(
        &health,
        &metrics,
        Stage::Ingest,
        "vendor format topics",
        tokio::spawn(mqtt::follow_format_topics(
            client.clone(),
            mqtt::subscription_qos(!mqtt_cfg.embedded),
            config_rx.clone(),
        )),
    );
    let tap = crate::ingest::canary::Tap::default();
    let handler =
        mqtt::Handler::new(lanes, config_rx.clone(), metrics.clone()).with_canary(tap.clone());
    let handler = tokio::spawn(handler.run(handoff_rx));
    supervise(&health, &metrics, Stage::Ingest, "uplink handler", handler);
    let refuse_new_mqtt = embedded.as_ref().map(|e| {
        let (refuse, mute) = (e.refuse_handle(), e.mute_handle());
        let stall = stall_stream.clone();
        Arc::new(move |fault: crate::api::BrokerFault| {
            use crate::api::BrokerFault;
            let (flag, on) = match fault {
                BrokerFault::RefuseNew => (&refuse, true),
                BrokerFault::MuteNew => (&mute, true),
                BrokerFault::StallStream => (&stall, true),
                BrokerFault::ResumeStream => (&stall, false),
            };
            flag.store(on, std::sync::atomic::Ordering::Relaxed)
        }) as Arc<dyn Fn(crate::api::BrokerFault) + Send + Sync>
    });
    let ingress = tokio::spawn(open_ingress(
        client.clone(),
        tap,
        embedded,
        canary_endpoint,
        (selfwatch.canary.std(), selfwatch.canary_timeout.std()),
        canary_tx,
        metrics.clone(),
    ));
    supervise(&health, &metrics, Stage::Broker, "ingress canary", ingress);

    // Rules.
    let devices = DeviceTable::default();
    for stage in [Stage::Rules, Stage::Alarms, Stage::Dispatch] {
        health.expect_beats(stage);
    }
    let (sig_tx, sig_rx) = mpsc::channel(SIGNALS);
    let system_signals = sig_tx.clone();
    let engine = {
        let cfg = config_rx.borrow();
        RuleEngine::new(&cfg.rules, &cfg.registry)
    };
    let rules = tokio::spawn(rules_stage::run(
        rules_stage::RulesInputs {
            priority: prio_rx,
            telemetry,
            config: config_rx.clone(),
        },
        engine,
        devices.clone(),
        sig_tx,
        health.clone(),
    ));
    supervise(&health, &metrics, Stage::Rules, "rules", rules);

    // Alarms and dispatch.
    let (send_tx, send_rx) = mpsc::channel(TO_SENDER);
    let changes = crate::alarms::Changes::new();
    let stage = AlarmsStage::new(
        config_rx.clone(),
        store.clone(),
        signer.clone(),
        channels.clone(),
        metrics.clone(),
        send_tx,
    )?
    .with_health(health.clone())
    .with_changes(changes.clone());
    let alarms = tokio::spawn(stage.run(sig_rx, cmd_rx));
    supervise(&health, &metrics, Stage::Alarms, "alarms", alarms);
    let sound_secs = config_rx.borrow().routing.linkage.secs;
    let publisher = EventPublisher::new(client.clone(), events_topic, site.id.clone(), sound_secs);
    let upstream_tx = match upstream {
        Some(target) => {
            let wake = Arc::new(tokio::sync::Notify::new());
            health.expect_beats(Stage::Upstream);
            let target_key = target.command_key.clone();
            let mut upstream = Upstream::new(target, store.clone(), metrics.clone())
                .with_health(health.clone())
                .with_heartbeat(upstream_beat(&site.id, &health, &metrics, &store));
            if let Some(key) = target_key {
                let (raw_tx, raw_rx) = mpsc::channel(COMMANDS);
                upstream = upstream.with_commands(raw_tx);
                let inbox = crate::district::inbox::Inbox {
                    site: site.id.clone(),
                    key,
                    store: store.clone(),
                    alarms: cmd_tx.clone(),
                    metrics: metrics.clone(),
                };
                supervise(
                    &health,
                    &metrics,
                    Stage::Upstream,
                    "district commands",
                    tokio::spawn(inbox.run(raw_rx)),
                );
            }
            let task = tokio::spawn(upstream.run(wake.clone()));
            supervise(&health, &metrics, Stage::Upstream, "upstream", task);
            Some(wake)
        }
        None => None,
    };
    let mut sender = Sender::new(
        channels,
        publisher,
        store.clone(),
        metrics.clone(),
        upstream_tx,
    )
    .with_health(health.clone())
    .with_changes(changes.clone());
    // The fire monitoring centre (GB/T 26875.3), read at start.
    let gb_cfg = config_rx.borrow().gateway.gb26875.clone();
    let gb26875 = match gb_cfg {
        Some(gb) => {
            let (state, answers) = crate::gb26875::LinkState::new(gb.centre.to_string());
            let wake = Arc::new(tokio::sync::Notify::new());
            health.expect_beats(Stage::Gb26875);
            let link = crate::gb26875::link::Link::new(
                gb,
                config_rx.clone(),
                store.clone(),
                metrics.clone(),
                state.clone(),
                answers,
                wake.clone(),
            )
            .with_health(health.clone());
            supervise(
                &health,
                &metrics,
                Stage::Gb26875,
                "gb26875 link",
                tokio::spawn(link.run()),
            );
            sender = sender.with_gb26875(wake);
            state
        }
        None => crate::gb26875::LinkState::disabled(),
    };
    let pending = store.pending()?;
    metrics.outbox_pending.set(pending.len() as i64);
    let sender = tokio::spawn(sender.run(pending, send_rx));
    supervise(&health, &metrics, Stage::Dispatch, "sender", sender);
    // Damage found at open becomes a system alarm once the pipe runs: after
    // the sender took the stored outbox, so its notification is sent once.
    store_damage::raise(
        &system_signals,
        store_damage::alarm_signal(&report.damage, report.recovery.as_ref()),
    )
    .await;

    // Self-watch and housekeeping.
    let beats = heartbeat::Publisher {
        client: client.clone(),
        topic: selfwatch.topic.clone(),
        site: site.id.clone(),
        every: selfwatch.heartbeat.std(),
        health: health.clone(),
        metrics: metrics.clone(),
        store: store.clone(),
    };
    supervise(
        &health,
        &metrics,
        Stage::Heartbeat,
        "mqtt heartbeat",
        tokio::spawn(beats.run()),
    );
    supervise(
        &health,
        &metrics,
        Stage::Store,
        "store scrub and backups",
        tokio::spawn(store_damage::watch(
            store.clone(),
            config_rx.clone(),
            metrics.clone(),
            health.clone(),
            system_signals,
        )),
    );
    let housekeeping = tokio::spawn(crate::housekeeping::run(
        store.clone(),
        config_rx.clone(),
        metrics.clone(),
    ));
    supervise(
        &health,
        &metrics,
        Stage::Housekeeping,
        "housekeeping",
        housekeeping,
    );

    // HTTP.
    let state = ApiState {
        config: config_rx.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        commands: cmd_tx,
        devices,
        signer,
        broker_connected: connected_rx,
        health: health.clone(),
        test_hooks: opts.test_hooks,
        refuse_new_mqtt,
        reload: {
            let tx = config_tx.clone();
            Arc::new(move || reload(&tx))
        },
        sessions: api::session::Sessions::default(),
        changes,
        gb26875,
        channels: api_channels,
        voice: call_book,
    };
    if opts.test_hooks {
        tracing::warn!("TEST HOOKS ENABLED (--test-hooks): POST /test/wedge/{{stage}} can stall a stage; never use in production");
    }
    let listener = tokio::net::TcpListener::bind(http_listen)
        .await
        .map_err(|source| StartError::Http {
            addr: http_listen,
            source,
        })?;
    tracing::info!(listen = %http_listen, site = %site.id, "gridwatch serving");
    let app = api::router(state);
    let server = tokio::spawn(async move {
        // Connect info: failed-login limits are kept per client IP.
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    let server_abort = server.abort_handle();
    supervise(&health, &metrics, Stage::Http, "http server", server);
    notifier.notify("READY=1\nSTATUS=serving");
    if let Some(period) = sd_notify::watchdog_period() {
        tracing::info!(
            period_ms = period.as_millis() as u64,
            "systemd watchdog on: keep-alives only while every stage is healthy"
        );
        let probe_store = store.clone();
        tokio::spawn(sd_notify::watchdog(
            notifier.clone(),
            period,
            health.clone(),
            move |h: &Health| h.set(Stage::Store, crate::health::probe_store(&probe_store)),
        ));
    }

    wait_for_shutdown(config_tx, store.clone()).await;
    stopping.store(true, std::sync::atomic::Ordering::Relaxed);
    health.stop();
    notifier.notify("STOPPING=1");
    server_abort.abort();
    if let Err(e) = store.flush().await {
        tracing::error!(error = %e, "final flush failed");
    }
    tracing::info!("gridwatch stopped");
    Ok(())
}

/// The box heartbeat as sent upstream: the same beat as on the local broker.
fn upstream_beat(
    site: &str,
    health: &Health,
    metrics: &Arc<Metrics>,
    store: &Store,
) -> crate::dispatch::upstream::BeatSource {
    let (site, health, metrics, store) = (
        site.to_string(),
        health.clone(),
        metrics.clone(),
        store.clone(),
    );
    Box::new(move || {
        let now = crate::model::now_ms();
        let b = heartbeat::beat(
            &site,
            now,
            health.started_at(),
            &health.report(now),
            &metrics,
            store.pending_len(),
        );
        serde_json::to_vec(&b).ok()
    })
}

/// Hands each call outcome to the alarms stage, which owns alarm state.
async fn forward_calls(
    mut rx: mpsc::Receiver<crate::channels::CallReport>,
    commands: mpsc::Sender<crate::alarms::Command>,
) {
    while let Some(r) = rx.recv().await {
        if commands
            .send(crate::alarms::Command::Call(r))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Mirrors the MQTT client's connection state and the ingress canary's
/// verdict into the health registry's `broker` stage.
async fn mirror_broker(
    mut connected: watch::Receiver<bool>,
    mut urgent: Option<watch::Receiver<bool>>,
    mut canary: watch::Receiver<Option<String>>,
    health: Health,
) {
    loop {
        let up = *connected.borrow_and_update();
        let urgent_up = urgent.as_mut().is_none_or(|u| *u.borrow_and_update());
        let deaf = canary.borrow_and_update().clone();
        health.set(
            Stage::Broker,
            match (up, urgent_up, deaf) {
                (false, _, _) => Err("not connected".into()),
                (true, false, _) => Err("urgent copy connection down".into()),
                (true, true, Some(reason)) => Err(reason),
                (true, true, None) => Ok(()),
            },
        );
        let urgent_changed = async {
            match urgent.as_mut() {
                Some(u) => u.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = connected.changed() => if r.is_err() { return },
            r = urgent_changed => if r.is_err() { return },
            r = canary.changed() => if r.is_err() { return },
        }
    }
}

/// Start order, then the canary: waits until gridwatch's own subscription
/// is proven (a message of ours came back through it), only then opens the
/// embedded broker's device listeners, then probes them (or the external
/// broker) every `[selfwatch] canary`. Runs for the life of the daemon.
async fn open_ingress(
    client: rumqttc::AsyncClient,
    tap: crate::ingest::canary::Tap,
    embedded: Option<broker::Embedded>,
    canary_at: mqtt::Endpoint,
    (every, timeout): (std::time::Duration, std::time::Duration),
    canary_state: watch::Sender<Option<String>>,
    metrics: Arc<Metrics>,
) {
    if let Some(e) = &embedded {
        crate::ingest::canary::wait_subscribed(&client, &tap).await;
        match e.open_device_listeners().await {
            Ok(()) => {
                canary_state.send_replace(None);
            }
            Err(err) => {
                tracing::error!(error = %err, "device listeners did not open");
                canary_state.send_replace(Some(format!("device listener: {err}")));
            }
        }
    }
    if every.is_zero() {
        tracing::warn!("ingress canary off ([selfwatch] canary = \"0s\")");
        // Keep the broker's gate (in `embedded`) alive: dropping it closes
        // the device listeners.
        std::future::pending::<()>().await;
    }
    crate::ingest::canary::run(canary_at, tap, every, timeout, canary_state, metrics).await;
    drop(embedded);
}

/// What happens when an embedded-broker thread ends while gridwatch runs:
/// rumqttd cannot be restarted in-process (no shutdown; the threads still
/// alive hold the ports), and running on with a dead router or listener is
/// running deaf. So gridwatch exits non-zero (70) at once and systemd
/// restarts it (`Restart=always`). Everything that must survive is in the
/// store already.
fn broker_thread_exit(stopping: Arc<std::sync::atomic::AtomicBool>) -> broker::OnThreadExit {
    Arc::new(move |thread: &str| {
        if stopping.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        tracing::error!(
            thread,
            "EMBEDDED MQTT BROKER THREAD ENDED: devices cannot reach gridwatch; exiting (code 70) so systemd restarts it"
        );
        std::process::exit(70);
    })
}

/// Waits for SIGTERM or SIGINT; reloads the config on SIGHUP (a bad config is
/// refused with its errors and the running one stays).
async fn wait_for_shutdown(config_tx: Arc<watch::Sender<Arc<Config>>>, store: Store) {
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
            _ = hup.recv() => {
                let outcome = match reload(&config_tx) {
                    Ok(_) => "ok",
                    Err(_) => "refused: invalid config",
                };
                api::record_audit(&store, "reload", None, "SIGHUP", None, outcome);
            }
        }
    }
}

/// Re-reads the config from the path it was loaded from and publishes it to
/// every stage; a config with errors is refused and the running one stays.
/// SIGHUP and `POST /api/v1/reload` both come here. The same [`load`] as
/// `check-config` and `run`, so a reload refuses what they refuse; the built
/// parts are dropped (channels, listeners and endpoints need a restart).
pub fn reload(config_tx: &watch::Sender<Arc<Config>>) -> Result<Arc<Config>, ConfigErrors> {
    let path: PathBuf = config_tx.borrow().path.clone();
    match load(&path) {
        Ok((cfg, _parts)) => {
            let cfg = Arc::new(cfg);
            config_tx.send_replace(cfg.clone());
            tracing::info!(path = %path.display(), "config reloaded");
            Ok(cfg)
        }
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(error = %e, "config reload refused; the running config stays");
            }
            Err(errors)
        }
    }
}

/// The embedded broker's logins and TLS listener from `[mqtt]`, and the
/// internal credential of the gateway's own client (when logins are on).
/// `[[mqtt.users]]` and `[mqtt.tls]` are read at start: changing them needs a restart.
fn broker_security(
    m: &crate::config::MqttConfig,
    tls: Option<(SocketAddr, String, String)>,
    v5: Option<SocketAddr>,
) -> (broker::Security, Option<InternalCredential>) {
    let mut sec = broker::Security::default();
    let mut internal = None;
    if !m.users.is_empty() {
        let cred = InternalCredential::generate();
        sec.auth = Some(Arc::new(DeviceAuth::new(&m.users, cred.clone())));
        internal = Some(cred);
    }
    sec.tls = tls;
    sec.v5 = v5;
    (sec, internal)
}
