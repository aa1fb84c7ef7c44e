//! Crash safety: a process appending under load is killed with SIGKILL; every append it had
//! acknowledged is present exactly once, the chain verifies, and a restarted `annals serve`
//! brings its read models up to the head. `annals serve` itself is killed while it imports
//! realm files (its only write path before the admin API).
use crate::support::pg::TestDb;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LOAD: &str = env!("CARGO_BIN_EXE_annals-load");
const ANNALS: &str = env!("CARGO_BIN_EXE_annals");

/// Runs the load tool until it has acknowledged `min_acks` appends, then kills it (SIGKILL).
fn load_then_kill(database_url: &str, min_acks: usize) -> HashMap<uuid::Uuid, u64> {
    let mut child = Command::new(LOAD)
        .args(["append", "--database-url", database_url, "--writers", "32", "--events", "10000000", "--acks"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("load tool starts");
    let mut acks = HashMap::new();
    let lines = BufReader::new(child.stdout.take().expect("stdout"));
    let deadline = Instant::now() + Duration::from_secs(120);
    for line in lines.lines() {
        let line = line.expect("line");
        let mut parts = line.split_whitespace();
        if parts.next() == Some("ack") {
            let id = parts.next().and_then(|s| s.parse().ok()).expect("event id");
            let pos = parts.next().and_then(|s| s.parse().ok()).expect("position");
            acks.insert(id, pos);
        }
        if acks.len() >= min_acks || Instant::now() > deadline {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("reaped");
    assert!(!status.success(), "the load tool was killed mid-load, not finished");
    assert!(acks.len() >= min_acks, "load produced only {} acks", acks.len());
    acks
}

/// The address a started `annals serve` prints once it listens (after start-up work). The
/// rest of its output is drained on a thread, so its later lines never meet a closed pipe.
fn printed_address(serve: &mut std::process::Child) -> String {
    let mut lines = BufReader::new(serve.stdout.take().expect("stdout")).lines();
    for line in lines.by_ref() {
        let line = line.expect("line");
        if let Some(a) = line.strip_prefix("Annals is listening on ") {
            std::thread::spawn(move || lines.for_each(drop));
            return a.trim().to_string();
        }
    }
    panic!("annals serve exited without printing its address");
}

async fn check_after_crash(database_url: &str, data_dir: &std::path::Path, acks: HashMap<uuid::Uuid, u64>) {
    // Every acknowledged append is present exactly once, at the position it was acknowledged.
    let store = annals::store::open(database_url).await.expect("reopen");
    let head = store.head().await.unwrap();
    let mut seen: HashMap<uuid::Uuid, u64> = HashMap::new();
    annals::store::for_each_page(&*store, 0, 5000, |page| {
        for e in page {
            assert!(seen.insert(e.event_id, e.position).is_none(), "event {} stored twice", e.event_id);
        }
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(seen.len() as u64, head, "positions 1..=head with no gap");
    for (id, pos) in &acks {
        assert_eq!(seen.get(id), Some(pos), "acknowledged append {id} lost or moved");
    }
    store.shutdown().await;

    // The chain verifies, through the real CLI.
    let verify = Command::new(ANNALS)
        .args(["verify", "--database-url", database_url, "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("annals verify");
    let out = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "verify failed: {out}");
    assert!(out.contains(&format!("{head} events verified")), "{out}");

    // A restarted server converges: ready means its read models reached the head.
    let mut serve = Command::new(ANNALS)
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", database_url, "--data-dir"])
        .arg(data_dir)
        .env("ANNALS_BOOTSTRAP_ADMIN_PASSWORD", "crash-test-admin")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("annals serve");
    let addr = printed_address(&mut serve);
    let ready = crate::support::http().get(format!("{addr}/health/ready")).send().await.expect("ready answers");
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert!(body["checks"]["projections"]["position"].as_u64().unwrap() > head, "bootstrap appended after the head");
    let _ = serve.kill();
    let _ = serve.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_sigkill_mid_load() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("annals.db").to_string_lossy().into_owned();
    let acks = load_then_kill(&url, 3000);
    check_after_crash(&url, dir.path(), acks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_sigkill_mid_load() {
    let Some(db) = TestDb::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let acks = load_then_kill(&db.url, 3000);
    check_after_crash(&db.url, dir.path(), acks).await;
}

/// `annals serve` itself killed with SIGKILL while it imports realm files: every import it
/// reported is there, none is there twice, the restarted node imports the rest, and the
/// chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_killed_mid_import_imports_every_realm_exactly_once() {
    // Each import generates the realm's RSA key (slow in a debug build): a few dozen realms
    // keep the window for the kill wide without a long test.
    const REALMS: usize = 30;
    let data = tempfile::tempdir().unwrap();
    let realms = tempfile::tempdir().unwrap();
    for i in 0..REALMS {
        let realm = serde_json::json!({
            "realm": format!("crash-{i:03}"),
            "enabled": true,
            "clients": [{"clientId": "app", "publicClient": true, "redirectUris": ["https://app.example/cb"]}],
            "users": [{"username": "user", "enabled": true, "email": format!("user@crash-{i:03}.example")}]
        });
        std::fs::write(realms.path().join(format!("crash-{i:03}.json")), realm.to_string()).unwrap();
    }
    let serve = || {
        Command::new(ANNALS)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .arg("--import-realm")
            .arg(realms.path())
            .env("ANNALS_BOOTSTRAP_ADMIN_PASSWORD", "crash-test-admin")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("annals serve")
    };
    // First run: kill it once it has reported a few imports.
    let mut first = serve();
    let mut reported = Vec::new();
    for line in BufReader::new(first.stderr.take().expect("stderr")).lines() {
        let line = line.expect("line");
        if line.contains("realm imported") {
            let realm = line.split("realm=").nth(1).and_then(|r| r.split_whitespace().next()).expect("realm=");
            reported.push(realm.to_string());
        }
        if reported.len() >= 5 {
            break;
        }
    }
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    assert!(reported.len() >= 5, "the first run reported {} imports", reported.len());

    // Realm names in the log (a realm imported twice would appear twice), and the head.
    let names = || async {
        let url = data.path().join("annals.db").to_string_lossy().into_owned();
        let store = annals::store::open(&url).await.unwrap();
        let dir = annals::readmodels::rebuild(&store, |_| {}).await.unwrap();
        let head = store.head().await.unwrap();
        store.shutdown().await;
        (dir.realms.all().map(|r| r.name.clone()).collect::<Vec<String>>(), head)
    };
    let (after_kill, _) = names().await;
    for r in &reported {
        assert!(after_kill.contains(r), "reported import {r} lost");
    }
    let crash_realms = after_kill.iter().filter(|n| n.starts_with("crash-")).count();
    assert!(crash_realms < REALMS, "the kill came after the last import: nothing was interrupted");

    // Second run: imports the rest, once each, and gets ready.
    let mut second = serve();
    let addr = printed_address(&mut second);
    let ready = crate::support::http().get(format!("{addr}/health/ready")).send().await.expect("ready answers");
    assert_eq!(ready.status(), 200);
    let _ = second.kill();
    let _ = second.wait();

    let (all, head) = names().await;
    let mut crash: Vec<&String> = all.iter().filter(|n| n.starts_with("crash-")).collect();
    crash.sort();
    let before = crash.len();
    crash.dedup();
    assert_eq!(before, crash.len(), "a realm was imported twice");
    assert_eq!(crash.len(), REALMS, "every realm imported");
    assert_eq!(all.iter().filter(|n| *n == "master").count(), 1, "one master realm");
    let verify = Command::new(ANNALS).args(["verify", "--data-dir"]).arg(data.path()).output().expect("verify");
    let out = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success() && out.contains(&format!("{head} events verified")), "{out}");
}
