//! Wiring: database, media plane, hubs, HTTP server, and the orderly way down.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use parley_licensing::BusinessCalendar;
use parley_licensing::service::{Service as Licensing, SystemClock};
use parley_licensing::store::Store as LicensingStore;
use parley_sfu::{SfuConfig, SfuEvent, SfuHandle};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Tokens;
use crate::configuration::Config;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::ws::{HubContext, Hubs};

/// Shared by every handler and connection.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

pub struct AppInner {
    pub config: Config,
    pub store: Store,
    /// Accounts, tariffs, lots, orders and documents (the `parley_licensing` service).
    pub licensing: Licensing,
    pub tokens: Tokens,
    pub sfu: SfuHandle,
    pub hubs: Hubs,
    pub metrics: Arc<Metrics>,
    /// Cancelled when shutdown begins; every socket closes with 1001.
    pub shutdown: CancellationToken,
    /// Every WebSocket task, so shutdown can wait for their close frames.
    pub ws_tasks: TaskTracker,
    /// Cleared when the media plane's event stream ends (its thread is gone).
    pub media_running: AtomicBool,
    /// Users of accounts: sign-in, sessions, invitations, password resets.
    pub users: crate::users::Users,
    /// Where the deal card reads deals (the account's CRM connector, when there is one).
    pub card_deals: Arc<dyn crate::card::DealSource>,
    /// Outbound deliveries (CRM notes and tasks, customer webhooks, emails): enqueue here, one
    /// worker task delivers.
    pub outbox: crate::outbox::Outbox,
    /// CRM connections, customer webhook endpoints and event emission.
    pub integrations: crate::integrations::Integrations,
    /// Recordings of meetings: the running ones, their settings and their files.
    pub recordings: crate::recordings::Recordings,
    /// Card payments through the acquirer (YooKassa), when one is configured.
    pub card_payments: crate::card_payments::CardPayments,
    /// The node registry and meeting placement, when several nodes share Redis.
    pub cluster: Option<crate::cluster::Cluster>,
}

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

/// A server started by [`spawn`].
pub struct RunningServer {
    http_addr: SocketAddr,
    udp_addr: SocketAddr,
    app: AppState,
    server: JoinHandle<std::io::Result<()>>,
    events: JoinHandle<()>,
    /// The cluster heartbeat, stopped (and the node's entry removed) at shutdown.
    heartbeat: Option<(CancellationToken, JoinHandle<()>)>,
}

impl RunningServer {
    /// Where HTTP and WebSocket requests go.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The media plane's UDP address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The application state, for in-process callers (tests, embedders) that enqueue outbox
    /// messages or emit events directly.
    pub fn state(&self) -> &AppState {
        &self.app
    }

    /// `http://<addr>` of the server.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Graceful shutdown: stop accepting, close every socket with 1001, record open sessions as
    /// ended by shutdown, stop the media plane, close the database.
    pub async fn shutdown(self) {
        let app = self.app;
        tracing::info!("shutting down");
        if let Some(cluster) = &app.cluster {
            drain_before_exit(cluster, &app).await;
        }
        app.shutdown.cancel();
        app.ws_tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), app.ws_tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some WebSocket connections did not close in time");
        }
        match tokio::time::timeout(Duration::from_secs(5), self.server).await {
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "HTTP server failed"),
            Err(_) => tracing::warn!("HTTP server did not drain in time"),
            _ => {}
        }
        app.hubs.shutdown().await;
        app.sfu.shutdown().await;
        app.recordings.drain(Duration::from_secs(10)).await;
        self.events.abort();
        if let Some((stop, task)) = self.heartbeat {
            stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        }
        app.store.close().await;
        app.licensing.store().close().await;
        tracing::info!("shut down");
    }
}

/// Starts the whole server on the configured addresses (port 0 picks free ports).
///
/// Fails if the database cannot be opened or the media plane cannot start: a meeting server
/// without media is not something to run silently.
pub async fn spawn(config: Config) -> anyhow::Result<RunningServer> {
    let store = Store::connect_in_schema(&config.database_url, config.database_schema.as_deref())
        .await
        .with_context(|| {
            format!(
                "cannot open database {}",
                crate::configuration::mask_url(&config.database_url)
            )
        })?;
    let store = store.for_node(config.node_id());
    let closed = store.close_dangling_sessions().await?;
    if closed > 0 {
        tracing::info!(closed, "closed sessions left open by a previous run");
    }
    // Before anything else starts: a key that cannot open the stored secrets stops here.
    let secrets_cipher = crate::secrets::open(
        config.secrets_key.as_ref().map(|k| k.expose()),
        &config.database_url,
        store.pool(),
    )
    .await
    .context("cannot use the stored CRM secrets")?;
    let secret = match &config.jwt_secret {
        Some(s) => s.expose().to_owned(),
        None => crate::secrets::server_secret(store.pool(), &secrets_cipher, "jwt_secret")
            .await
            .context("cannot load JWT secret")?,
    };
    let tokens = Tokens::new(secret.as_bytes(), config.token_ttl);
    let licensing = open_licensing(&config).await?;

    let (sfu, events) = parley_sfu::start(SfuConfig {
        udp_bind: config.udp_addr,
        announced_ips: config.announced_ips.clone(),
    })
    .with_context(|| format!("cannot start the media plane on UDP {}", config.udp_addr))?;
    let udp_addr = sfu.local_addr();
    // The one consumer of the media plane's recording events (see `recordings::events`).
    let recording_events = sfu
        .take_recording_events()
        .context("the media plane's recording events are already taken")?;
    let link_key =
        crate::secrets::server_secret(store.pool(), &secrets_cipher, "recording_link_secret")
            .await
            .context("cannot load the recording link secret")?;

    let outbox = crate::outbox::Outbox::new(
        Arc::new(crate::outbox::DbOutboxStore::new(store.pool().clone())),
        crate::outbox::RetryPolicy {
            max_attempts: config.outbox_max_attempts,
            base_delay: config.outbox_base_delay,
            max_delay: config.outbox_max_delay,
            ..crate::outbox::RetryPolicy::default()
        },
        Arc::new(crate::outbox::TokioClock::new()),
    );
    let crm_http = crate::integrations::http_client(config.crm_timeout)
        .context("cannot build the CRM HTTP client")?;
    let integrations = crate::integrations::Integrations::new(
        store.pool().clone(),
        outbox.clone(),
        crm_http.clone(),
        config.crm_timeout,
        secrets_cipher,
    );

    let metrics = Arc::new(Metrics::default());
    // Hubs report meetings they end; the summaries task turns each into a summary.
    let (ended_tx, ended_rx) = tokio::sync::mpsc::unbounded_channel();
    let hubs = Hubs::new(HubContext {
        ended: Some(ended_tx),
        events: integrations.events.clone(),
        store: store.clone(),
        sfu: sfu.clone(),
        metrics: metrics.clone(),
        resume_grace: config.resume_grace,
        meeting_minute: config.meeting_minute,
        map: Hubs::new_map(),
        turn: config.turn.clone(),
    });
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot bind HTTP {}", config.http_addr))?;
    let http_addr = listener.local_addr()?;

    let users = crate::users::Users::new(&config, store.pool().clone())
        .context("cannot set up users (SMTP settings?)")?;
    let recordings = crate::recordings::Recordings::new(
        &config,
        store.pool().clone(),
        hubs.clone(),
        link_key.into_bytes(),
    );
    let card_payments =
        crate::card_payments::CardPayments::new(&config, store.pool().clone(), crm_http.clone());
    let cluster = match &config.cluster {
        Some(c) => {
            let live = hubs.clone();
            let mut c = c.clone();
            if c.node_url.is_empty() {
                // Test hook (configuration refuses an empty URL): a node on port 0 is reached
                // where it bound.
                c.node_url = format!("http://{http_addr}");
            }
            Some(
                crate::cluster::Cluster::connect(
                    c,
                    Box::new(crate::cluster::ProcessProbe::new(
                        metrics.clone(),
                        sfu.metrics().clone(),
                    )),
                    Arc::new(move || live.live_meetings()),
                )
                .await?,
            )
        }
        None => None,
    };
    let app = AppState(Arc::new(AppInner {
        config,
        store,
        licensing,
        tokens,
        sfu,
        hubs: hubs.clone(),
        metrics,
        shutdown: CancellationToken::new(),
        ws_tasks: TaskTracker::new(),
        media_running: AtomicBool::new(true),
        users,
        card_deals: Arc::new(crate::integrations::connections::AccountConnectors(
            integrations.connections.clone(),
        )),
        outbox: outbox.clone(),
        integrations: integrations.clone(),
        recordings,
        card_payments,
        cluster,
    }));
    let heartbeat = app.cluster.as_ref().map(|c| {
        let stop = CancellationToken::new();
        (stop.clone(), c.spawn_heartbeat(stop))
    });
    // One outbox worker; several processes on one database would each run one (claims keep
    // them apart).
    let deliveries = integrations
        .deliveries(crm_http, app.config.crm_timeout)
        .with(
            crate::outbox::email::EMAIL,
            Arc::new(crate::outbox::email::EmailDelivery::new(
                app.users.mailer.clone(),
            )),
        );
    tokio::spawn(crate::outbox::OutboxWorker::new(outbox, deliveries).run(app.shutdown.clone()));
    // Jobs that act on the shared database run on one node per period; watching the quota of
    // this node's own recordings stays local.
    let schedule = crate::schedule::Schedule::new(
        app.store.pool().clone(),
        app.config.node_id(),
        app.metrics.clone(),
    );
    {
        let (licensing, events) = (app.licensing.clone(), integrations.events.clone());
        tokio::spawn(schedule.clone().every(
            "license_events",
            app.config.license_events_interval,
            app.shutdown.clone(),
            move || {
                crate::integrations::license_events::run_once(licensing.clone(), events.clone())
            },
        ));
    }
    crate::recordings::events::recover(&app).await;
    app.recordings.tasks.spawn(crate::recordings::events::run(
        recording_events,
        app.clone(),
    ));
    tokio::spawn(crate::recordings::jobs::watch_quota(
        app.clone(),
        app.config.recording_quota_check,
        app.shutdown.clone(),
    ));
    {
        let a = app.clone();
        tokio::spawn(schedule.clone().every(
            "recording_retention",
            app.config.recording_retention_check,
            app.shutdown.clone(),
            move || crate::recordings::jobs::retention_once(a.clone()),
        ));
        let a = app.clone();
        tokio::spawn(schedule.every(
            "seat_review",
            app.config.license_events_interval,
            app.shutdown.clone(),
            move || crate::integrations::seat_review::run_logged(a.clone()),
        ));
    }
    let events = tokio::spawn(route_events(events, hubs, app.clone()));
    tokio::spawn(crate::summaries::on_ended(ended_rx, app.clone()));
    let router = crate::routes::router(app.clone());
    let stop = app.shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            // The peer address feeds the audit log's "from".
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    });
    tracing::info!(%http_addr, %udp_addr, "listening");
    Ok(RunningServer {
        http_addr,
        udp_addr,
        app,
        server,
        events,
        heartbeat,
    })
}

/// SIGTERM on a cluster node: drain (no new meetings here, claims released, participants told
/// to move), then wait, bounded, for them to go before the sockets are closed for good.
async fn drain_before_exit(cluster: &crate::cluster::Cluster, app: &AppState) {
    if let Err(e) = cluster.drain().await {
        tracing::error!(error = %e, "cannot drain through Redis; closing sockets anyway");
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.metrics.participants.load(Ordering::Relaxed) > 0
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The licensing service on its database, migrations applied. Opened after the meeting store so
/// that a shared SQLite file already exists (the Any driver does not create it).
async fn open_licensing(config: &Config) -> anyhow::Result<Licensing> {
    let url = config.licensing_database_url();
    // Sharing the server's database means sharing its schema too, unless told otherwise.
    let schema = config.licensing_schema.as_deref().or(config
        .licensing_database_url
        .is_none()
        .then_some(config.database_schema.as_deref())
        .flatten());
    let store = LicensingStore::connect_in_schema(url, schema)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| "cannot open the licensing database".to_string())?;
    let clock = match &config.licensing_clock {
        Some(c) => c.clock(),
        None => Arc::new(SystemClock),
    };
    Ok(Licensing::new(
        store,
        BusinessCalendar::default(),
        clock,
        config.card_limit,
    ))
}

/// Forwards media-plane events to the hubs of their rooms.
async fn route_events(mut events: UnboundedReceiver<SfuEvent>, hubs: Hubs, app: AppState) {
    while let Some(event) = events.recv().await {
        hubs.route(event);
    }
    app.media_running.store(false, Ordering::Relaxed);
    if !app.shutdown.is_cancelled() {
        tracing::error!("media plane stopped unexpectedly");
    }
}
