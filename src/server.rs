//! Starting and stopping a node: store, read models, bootstrap, aggregate hosts, HTTP.
use crate::actors::{Hosts, HostsConfig};
use crate::clock::SharedClock;
use crate::config::ServeConfig;
use crate::http::{self, AppState};
use crate::provision::{self, BootstrapAdmin, ProvisionError};
use crate::readmodels::{ReadModelError, ReadModels};
use crate::secrets::{SecretsError, ServerKeys};
use crate::sqlmodels::SqlModels;
use crate::store::{self, SharedStore, StoreError};
use actix_web::dev::ServerHandle;
use actix_web::{middleware, web, App, HttpServer};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Every variant aborts start-up with its message; `main` exits non-zero.
    #[error("data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
    #[error(transparent)]
    SqlModel(#[from] crate::sqlmodels::SqlModelError),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
    #[error(transparent)]
    Pages(#[from] crate::http::pages::PageError),
    #[error(transparent)]
    Sink(#[from] crate::sinks::SinkError),
    #[error(transparent)]
    AuditKey(#[from] crate::audit_key::AuditKeyError),
    #[error("realm import from {0}: {1}")]
    Import(String, String),
}

/// The server keys: from `ANNALS_MASTER_KEY` when set, else the data directory's key file.
pub fn server_keys(data_dir: &std::path::Path) -> Result<ServerKeys, SecretsError> {
    match std::env::var("ANNALS_MASTER_KEY") {
        Ok(k) if !k.is_empty() => ServerKeys::from_master_key(&k),
        _ => ServerKeys::load_or_create(data_dir),
    }
}

/// The server keys for an operator tool: as [`server_keys`], but a missing key file is an
/// error rather than a reason to create new keys.
pub fn existing_server_keys(data_dir: &std::path::Path) -> Result<ServerKeys, SecretsError> {
    match std::env::var("ANNALS_MASTER_KEY") {
        Ok(k) if !k.is_empty() => ServerKeys::from_master_key(&k),
        _ => ServerKeys::load(data_dir),
    }
}

/// A running node.
pub struct Running {
    pub addr: SocketAddr,
    pub base_url: String,
    pub store: SharedStore,
    pub read_models: ReadModels,
    pub sql_models: SqlModels,
    pub hosts: Hosts,
    pub keys: Arc<ServerKeys>,
    pub bootstrap: Option<BootstrapAdmin>,
    pub imported: Vec<String>,
    handle: ServerHandle,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    sweeper: tokio::task::JoinHandle<()>,
    backchannel: tokio::task::JoinHandle<()>,
    /// Revokes again what code replays left owed (see `http::oidc::replay`).
    replays: tokio::task::JoinHandle<()>,
    checkpoints: tokio::task::JoinHandle<()>,
    rejections: (tokio::task::JoinHandle<()>, Arc<crate::rejections::Rejections>),
    ssf_push: tokio::task::JoinHandle<()>,
    sinks: crate::sinks::Sinks,
    requests: Arc<crate::http::drain::RequestGate>,
}

/// Starts a node. Must run inside an actix `System`.
pub async fn start(cfg: ServeConfig, clock: SharedClock) -> Result<Running, ServerError> {
    start_wrapped(cfg, clock, |store| store).await
}

/// As [`start`], with every part of the node using the store that `wrap` makes of the one the
/// configuration opens: a layer that observes or delays appends (tests hold one open to act
/// inside it).
pub async fn start_wrapped(
    cfg: ServeConfig,
    clock: SharedClock,
    wrap: impl FnOnce(SharedStore) -> SharedStore,
) -> Result<Running, ServerError> {
    let dir = &cfg.store.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| ServerError::DataDir(dir.display().to_string(), e))?;
    let store = wrap(store::open(&cfg.store.database_url).await?);
    let keys = Arc::new(server_keys(dir)?);
    let audit_key = Arc::new(crate::audit_key::AuditKey::load(cfg.audit_key.as_deref(), &keys)?);
    let read_models = ReadModels::start(store.clone()).await?;
    // Bootstrap and import decide from the read models what exists. Read models stopped at an
    // event they cannot fold would show a log without its realms, and a second `master` would
    // be created: with them unhealthy the node starts, unready, and changes nothing.
    let healthy = read_models.healthy();
    if !healthy {
        tracing::error!("read models stopped at an event they cannot fold: bootstrap and realm import skipped");
    }
    let bootstrap = match healthy {
        true => {
            provision::ensure_master(
                &store,
                &read_models,
                &keys,
                clock.now(),
                &cfg.bootstrap_admin_username,
                cfg.bootstrap_admin_password.as_deref(),
            )
            .await?
        }
        false => None,
    };
    let mut imported = Vec::new();
    if let (true, Some(import_dir)) = (healthy, &cfg.import_realm) {
        imported = crate::cli::import::import_dir(&store, &read_models, &keys, clock.now(), import_dir)
            .await
            .map_err(|e| ServerError::Import(import_dir.display().to_string(), e.to_string()))?;
    }
    let pages = crate::http::pages::Pages::new(cfg.theme_dir.as_deref())?;
    let sql_models = SqlModels::start(store.clone()).await?;
    let hosts = Hosts::new(store.clone(), clock.clone(), HostsConfig::default());
    let sinks = crate::sinks::Sinks::start(&cfg.sinks, &store, &read_models, &hosts)?;
    let listener = std::net::TcpListener::bind(&cfg.listen).map_err(|e| ServerError::Bind(cfg.listen.clone(), e))?;
    let addr = listener.local_addr().map_err(|e| ServerError::Bind(cfg.listen.clone(), e))?;
    let base_url = cfg.base_url.clone().unwrap_or_else(|| format!("http://{addr}")).trim_end_matches('/').to_string();
    let state = AppState {
        store: store.clone(),
        read_models: read_models.clone(),
        sql_models: sql_models.clone(),
        hosts: hosts.clone(),
        base_url: base_url.clone(),
        clock: clock.clone(),
        keys: keys.clone(),
        audit_key: audit_key.clone(),
        signers: crate::oidc::tokens::Signers::new(keys.clone()),
        pages: Arc::new(pages),
        subjects: Default::default(),
        login_gates: Default::default(),
        verified_tokens: Default::default(),
        client_jwks: Default::default(),
        rejections: crate::rejections::Rejections::new(store.clone(), clock.clone(), cfg.rejection_window),
        ssf_private_endpoints: cfg.ssf_private_endpoints,
        ssf_acks: Default::default(),
        requests: Default::default(),
    };
    let rejections = (state.rejections.spawn(), state.rejections.clone());
    let ssf_push = crate::ssf::spawn_push(crate::ssf::Transmitter {
        store: store.clone(),
        models: read_models.clone(),
        key: state.audit_key.clone(),
        server_keys: keys.clone(),
        base_url: base_url.clone(),
        hosts: hosts.clone(),
        private_endpoints: cfg.ssf_private_endpoints,
    });
    let state_for_workers = state.clone();
    let requests = state.requests.clone();
    let server = HttpServer::new(move || {
        crate::actors::host_on_this_thread();
        App::new()
            .app_data(web::Data::new(state.clone()))
            .wrap(middleware::from_fn(http::observe))
            .configure(http::configure)
    })
    .workers(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2))
    .disable_signals()
    .shutdown_timeout(10)
    .listen(listener)
    .map_err(|e| ServerError::Bind(cfg.listen.clone(), e))?
    .run();
    let handle = server.handle();
    let server = tokio::spawn(server);
    crate::metrics::init();
    let replays = crate::http::spawn_replay_revocation(state_for_workers.clone());
    let backchannel = crate::http::spawn_backchannel_logout(state_for_workers);
    let checkpoints = crate::audit_checkpoints::spawn(store.clone(), audit_key, clock.clone(), cfg.checkpoint_interval);
    let (models, sweep_clock) = (read_models.clone(), clock.clone());
    let sweeper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            models.sweep_sessions(sweep_clock.now().timestamp());
        }
    });
    Ok(Running {
        addr,
        base_url,
        store,
        read_models,
        sql_models,
        hosts,
        keys,
        bootstrap,
        imported,
        handle,
        server,
        sweeper,
        backchannel,
        replays,
        checkpoints,
        rejections,
        ssf_push,
        sinks,
        requests,
    })
}

impl Running {
    /// Graceful stop: stop accepting, refuse new requests and finish the ones under way,
    /// drain actor mailboxes, stop the HTTP workers, commit queued appends.
    pub async fn stop(self) {
        // Requests and hosts are drained while the HTTP workers still run: actors activated by
        // a request live on its worker's thread, and a worker stops once its own connections
        // are done, maybe while another worker's request waits on one of its actors. A command
        // cut off there after its append (a refresh rotated, never answered) would leave the
        // client holding a rotated-away token, which its retry would present as a reuse. The
        // requests before the hosts: one under way may need a second command (a redemption's
        // tokens), which a closed host would refuse after the first had spent the code.
        // Connections are still accepted meanwhile: a new one gets the gate's 503 (Retry-After,
        // Connection: close), which tells its client the request was not run, where a
        // connection left in the accept queue would be reset with the request unanswered.
        let left = self.requests.close(std::time::Duration::from_secs(10)).await;
        if left > 0 {
            tracing::warn!(requests = left, "stopping with requests still under way");
        }
        self.hosts.shutdown().await;
        self.handle.stop(true).await;
        let _ = self.server.await;
        self.sweeper.abort();
        self.backchannel.abort();
        self.replays.abort();
        self.checkpoints.abort();
        self.rejections.0.abort();
        self.ssf_push.abort();
        // Nothing more is refused: what the window counted so far is summarized now.
        self.rejections.1.close().await;
        self.sinks.stop();
        self.read_models.stop();
        self.sql_models.stop();
        self.store.shutdown().await;
    }
}
