//! Shared test support: real databases with random names, and a running server.
pub mod holding;
pub mod nats;
pub mod pg;
pub mod rsyslog;

use annals::store::{self, SharedStore};

/// A fresh SQLite store in its own temp dir (kept alive by the returned guard).
pub async fn sqlite_store() -> (SharedStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("annals.db");
    let store = store::open(path.to_str().expect("utf8 path")).await.expect("open sqlite store");
    (store, dir)
}

use annals::clock::{SharedClock, SystemClock};
use annals::config::{ServeConfig, StoreConfig};
use annals::server::{self, Running};
use std::path::Path;
use std::sync::Arc;

pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// The configuration of a test node on a random loopback port.
pub fn serve_config(data_dir: &Path, database_url: Option<&str>) -> ServeConfig {
    ServeConfig {
        store: StoreConfig {
            data_dir: data_dir.to_path_buf(),
            database_url: database_url
                .map(str::to_string)
                .unwrap_or_else(|| data_dir.join("annals.db").to_string_lossy().into_owned()),
        },
        listen: "127.0.0.1:0".into(),
        base_url: None,
        import_realm: None,
        theme_dir: None,
        bootstrap_admin_username: "admin".into(),
        sinks: vec![],
        bootstrap_admin_password: Some(ADMIN_PASSWORD.into()),
        audit_key: None,
        // Tests that count events get no checkpoint in between; checkpoint tests set their own.
        checkpoint_interval: std::time::Duration::from_secs(3600),
        rejection_window: annals::rejections::WINDOW,
        // The tests' receivers listen on loopback.
        ssf_private_endpoints: true,
    }
}

/// Starts a real server (port 0) inside the current actix system.
pub async fn spawn_app(cfg: ServeConfig) -> Running {
    spawn_app_with_clock(cfg, Arc::new(SystemClock)).await
}

/// As [`spawn_app`], on a clock the test controls.
pub async fn spawn_app_with_clock(cfg: ServeConfig, clock: SharedClock) -> Running {
    server::start(cfg, clock).await.expect("server starts")
}

/// As [`spawn_app_with_clock`], the node using the store `wrap` makes of its own.
pub async fn spawn_app_wrapped(
    cfg: ServeConfig,
    clock: SharedClock,
    wrap: impl FnOnce(SharedStore) -> SharedStore,
) -> Running {
    server::start_wrapped(cfg, clock, wrap).await.expect("server starts")
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().expect("client")
}

/// A one-worker HTTP server on a random loopback port playing a peer of the server under test
/// (a relying party's endpoint, a client's key set); `routes` registers what it answers.
/// Returns its base URL and the handle that stops it.
pub fn loopback_peer(
    routes: impl Fn(&mut actix_web::web::ServiceConfig) + Clone + Send + 'static,
) -> (String, actix_web::dev::ServerHandle) {
    let server = actix_web::HttpServer::new(move || actix_web::App::new().configure(routes.clone()))
        .workers(1)
        .bind("127.0.0.1:0")
        .expect("bind a loopback port");
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (format!("http://{addr}"), handle)
}

/// The first of `paths` that exists: a peer program the suite needs. Missing is a failure,
/// never a skip (scripts/test.sh installs them).
pub fn program(paths: &[&str]) -> std::path::PathBuf {
    paths
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("none of {paths:?} exists: scripts/test.sh installs the suite's peers"))
}

/// Whether a started peer process is still running.
pub fn running(child: &mut Option<std::process::Child>) -> bool {
    child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
}

/// Stops a peer process as an operator would (SIGTERM) and waits for it to exit.
pub fn terminate(child: Option<std::process::Child>) {
    if let Some(mut child) = child {
        if let Ok(id) = i32::try_from(child.id()) {
            if let Some(pid) = rustix::process::Pid::from_raw(id) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        let _ = child.wait();
    }
}

/// Polls `what` until it holds or 15 s have passed (the caller asserts what it needed).
pub async fn wait_until(what: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !what() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
