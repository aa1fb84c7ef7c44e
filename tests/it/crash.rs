//! Crash safety: a process appending under load is killed with SIGKILL; every append it had
//! acknowledged is present exactly once, the chain verifies, and a restarted `annals serve`
//! brings its read models up to the head.
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
    let mut lines = BufReader::new(serve.stdout.take().expect("stdout")).lines();
    let addr = loop {
        let line = lines.next().expect("server printed its address").expect("line");
        if let Some(a) = line.strip_prefix("Annals is listening on ") {
            break a.trim().to_string();
        }
    };
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
