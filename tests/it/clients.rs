//! Real third-party relying parties against a real node: npm `openid-client` (a certified
//! OpenID relying party), Python `authlib`, and headless Chromium through Playwright. The test
//! script installs them (`tests/clients/`); without them a test fails under `CI=true` and says
//! loudly that it was skipped elsewhere.
use crate::oidc_flow::Demo;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Whether a peer is installed; under CI its absence is a failure.
pub(crate) fn available(what: &str, present: bool) -> bool {
    if !present {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{what} is not installed (scripts/test.sh installs it)");
        eprintln!("SKIPPED: {what} is not installed; scripts/test.sh installs it");
    }
    present
}

/// The demo realm's settings every client script reads.
fn env_for(demo: &Demo) -> Vec<(&'static str, String)> {
    vec![
        ("ISSUER", demo.issuer()),
        ("CLIENT_ID", "web".into()),
        ("CLIENT_SECRET", "web-secret-0123456789".into()),
        ("REDIRECT_URI", "https://rp.example/cb".into()),
        ("POST_LOGOUT_URI", "https://rp.example/bye".into()),
        ("SERVICE_ID", "svc".into()),
        ("SERVICE_SECRET", "svc-secret-0123456789".into()),
        ("USERNAME", "alice".into()),
        ("PASSWORD", "alice-password".into()),
        ("OTHER_ID", "other".into()),
        ("OTHER_SECRET", "other-secret-0123456789".into()),
        ("OTHER_REDIRECT_URI", "https://other.example/cb".into()),
    ]
}

/// Runs a client script to completion off the test's runtime and asserts it succeeded.
async fn run(program: &str, args: &[&str], env: Vec<(&'static str, String)>) {
    let (program, args) = (program.to_string(), args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&program).args(&args).current_dir(clients_dir()).envs(env).output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("cannot run client: {e}"));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "client failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    eprintln!("{stdout}");
}

fn node_ready() -> bool {
    Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success())
        && clients_dir().join("node_modules/openid-client").is_dir()
}

#[actix_rt::test]
async fn npm_openid_client_runs_every_flow() {
    if !available("node with tests/clients/node_modules", node_ready()) {
        return;
    }
    let demo = Demo::start().await;
    run("node", &["openid_client.mjs"], env_for(&demo)).await;
    demo.app.stop().await;
}

pub(crate) fn authlib_python() -> PathBuf {
    clients_dir().join(".venv/bin/python")
}

#[actix_rt::test]
async fn python_authlib_runs_the_code_flow_and_the_password_grant() {
    let python = authlib_python();
    let ready =
        Command::new(&python).args(["-c", "import authlib, requests"]).output().is_ok_and(|o| o.status.success());
    if !available("authlib in tests/clients/.venv", ready) {
        return;
    }
    let demo = Demo::start().await;
    run(&python.to_string_lossy(), &["authlib_client.py"], env_for(&demo)).await;
    demo.app.stop().await;
}

#[actix_rt::test]
async fn chromium_logs_in_gets_sso_at_a_second_client_and_logs_out() {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().find(|p| Path::new(p).exists());
    let ready = node_ready() && clients_dir().join("node_modules/playwright-core").is_dir() && chromium.is_some();
    if !available("chromium and playwright-core", ready) {
        return;
    }
    let demo = Demo::start().await;
    let mut env = env_for(&demo);
    env.push(("CHROMIUM", chromium.unwrap_or_default().to_string()));
    run("node", &["browser.mjs"], env).await;
    demo.app.stop().await;
}
