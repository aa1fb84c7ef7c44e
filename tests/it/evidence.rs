//! Tamper evidence: signed checkpoints anchor the log (checked here with PyJWT against the
//! published audit key), every sink and the audit pull carry them, and an evidence bundle of
//! one user's records verifies offline while any edit, removal or reordering is named.
use crate::audit::{add_auditor, password_token, pull};
use crate::clients::{authlib_python, available, clients_dir};
use crate::oidc_flow::{alice_code, redeem, Demo, Jar};
use annals::audit_checkpoints;
use annals_events::merkle::RootBuilder;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const ANNALS: &str = env!("CARGO_BIN_EXE_annals");

async fn demo_with_checkpoints(every: Duration) -> Demo {
    Demo::start_configured(add_auditor, vec![], |cfg| cfg.checkpoint_interval = every).await
}

/// Waits until a signed checkpoint covers `position`.
async fn covered(demo: &Demo, position: u64) -> audit_checkpoints::Latest {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let latest = audit_checkpoints::latest(&*demo.app.store).await.unwrap();
        if let Some(l) = latest.filter(|l| l.checkpoint.to_position >= position) {
            return l;
        }
        assert!(Instant::now() < deadline, "no checkpoint covers position {position}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn login_alice(demo: &Demo) {
    let mut jar = Jar::default();
    let code = alice_code(demo, &mut jar).await;
    assert_eq!(redeem(demo, &code).await.0, 200);
}

#[actix_rt::test]
async fn signed_checkpoints_commit_to_the_log_and_verify_with_an_independent_jose_library() {
    let demo = demo_with_checkpoints(Duration::from_secs(1)).await;
    login_alice(&demo).await;
    let head = demo.app.store.head().await.unwrap();
    let first = covered(&demo, head).await;
    let c = &first.checkpoint;
    c.verify().unwrap();

    // The checkpoint says what the log holds: the head hash and the Merkle root of every chain
    // hash it covers, recomputed here from the rows.
    let events = demo.app.store.read_all(c.after_position, (c.to_position - c.after_position) as usize).await.unwrap();
    let mut root = RootBuilder::new();
    events.iter().for_each(|e| root.push(&e.hash));
    assert_eq!(c.merkle_root, hex::encode(root.root()));
    assert_eq!(c.head_hash, hex::encode(events.last().unwrap().hash));

    // Nothing new but the checkpoint itself: no checkpoint of the checkpoint every second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let idle = audit_checkpoints::latest(&*demo.app.store).await.unwrap().unwrap();
    assert_eq!(idle.version, first.version, "an idle log got another checkpoint");
    // New events get the next ones (a tick may fall inside the login), each chained to the
    // one before: together they cover every position exactly once.
    login_alice(&demo).await;
    let next = covered(&demo, demo.app.store.head().await.unwrap()).await;
    let all = audit_checkpoints::all(&*demo.app.store).await.unwrap();
    assert!(all.len() as u64 == next.version && next.version > first.version);
    for pair in all.windows(2) {
        assert_eq!(pair[1].1.after_position, pair[0].1.to_position, "checkpoints not chained");
        pair[1].1.verify().unwrap();
    }
    assert_eq!(all[0].1.after_position, 0);

    // The audit pull (and so every sink) carries the anchors, JWS included.
    let token =
        password_token(&demo, "demo", ("web", Some("web-secret-0123456789")), ("auditor", "auditor-password")).await;
    let (status, records, _) = pull(&demo, Some(&token), "?after=0&max=10000").await;
    assert_eq!(status, 200);
    let anchors: Vec<&Value> = records.iter().filter(|r| r["annalsType"] == "audit_checkpoint.signed").collect();
    assert_eq!(anchors.len(), all.len(), "one record per checkpoint");
    // In log order; the first login may itself have straddled a tick (then `c` is the second).
    for (anchor, (_, checkpoint)) in anchors.iter().zip(&all) {
        assert_eq!(anchor["details"]["jws"], checkpoint.jws.as_str());
        assert_eq!(anchor["details"]["merkle_root"], checkpoint.merkle_root.as_str());
    }
    assert!(anchors.iter().any(|a| a["details"]["jws"] == c.jws.as_str()));

    // PyJWT checks both JWS against the published /audit/certs.
    let python = authlib_python();
    let ready = Command::new(&python).args(["-c", "import jwt"]).output().is_ok_and(|o| o.status.success());
    if available("PyJWT in tests/clients/.venv", ready) {
        let jwks_url = format!("{}/audit/certs", demo.app.base_url);
        let tokens = format!("{}\n{}\n", c.jws, next.checkpoint.jws);
        let out = tokio::task::spawn_blocking(move || {
            let mut child = Command::new(python)
                .args(["verify_jws.py", &jwks_url, "annals-checkpoint+jwt"])
                .current_dir(clients_dir())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(tokens.as_bytes()).unwrap();
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "PyJWT refused: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        let claims: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(claims[0]["merkle_root"], c.merkle_root.as_str());
        assert_eq!(claims[1]["to_position"], next.checkpoint.to_position);
    }
    demo.app.stop().await;
}

fn annals(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(ANNALS)
        .args(args)
        .env("ANNALS_DATA_DIR", data_dir)
        .env_remove("ANNALS_MASTER_KEY")
        .env_remove("ANNALS_DATABASE_URL")
        .env_remove("ANNALS_AUDIT_KEY")
        .output()
        .expect("annals runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Verifies a bundle with the command line; (exit code, output).
fn verify(data_dir: &Path, bundle: &[u8], key: Option<&Path>) -> (i32, String) {
    let file = data_dir.join(format!("check-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&file, bundle).unwrap();
    let mut args = vec!["evidence", "verify", file.to_str().unwrap()];
    if let Some(k) = key {
        args.extend(["--key", k.to_str().unwrap()]);
    }
    let out = annals(data_dir, &args);
    (out.status.code().unwrap_or(-1), text(&out))
}

fn edit(bundle: &[u8], f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(bundle).unwrap();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[actix_rt::test]
async fn an_evidence_bundle_of_one_user_verifies_offline_and_names_every_tampered_record() {
    // Checkpoints only from the export itself: it must cover what it exports on its own.
    let demo = demo_with_checkpoints(Duration::from_secs(3600)).await;
    let from = chrono::Utc::now() - chrono::Duration::minutes(5);
    login_alice(&demo).await;
    // Another user's activity in between: none of it may enter alice's bundle.
    let _ =
        password_token(&demo, "demo", ("web", Some("web-secret-0123456789")), ("auditor", "auditor-password")).await;
    login_alice(&demo).await;
    let to = chrono::Utc::now() + chrono::Duration::minutes(1);
    let dir = demo.data_dir().to_path_buf();
    let file = dir.join("alice.json");
    let (from_s, to_s) = (from.to_rfc3339(), to.to_rfc3339());
    let args = ["evidence", "export", "--realm", "demo", "--user", "alice", "--from", &from_s, "--to", &to_s];
    let out = annals(&dir, &[&args[..], &[file.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", text(&out));
    let bundle = std::fs::read(&file).unwrap();

    // Without a key to trust, a bundle is only consistent: anyone could sign one.
    let (code, report) = verify(&dir, &bundle, None);
    assert_eq!(code, 3, "{report}");
    assert!(report.starts_with("CONSISTENT, KEY NOT CHECKED: ") && report.contains("of user alice"), "{report}");
    let parsed: Value = serde_json::from_slice(&bundle).unwrap();
    let records = parsed["records"].as_array().unwrap();
    assert!(records.len() >= 6, "two logins and their sessions: {}", records.len());
    assert!(!String::from_utf8_lossy(&bundle).contains("auditor"), "another user's events in alice's bundle");

    // Trusting only the published key: accepted; another key: refused.
    let jwks = demo.http.get(format!("{}/audit/certs", demo.app.base_url)).send().await.unwrap().text().await.unwrap();
    let published = dir.join("audit-certs.json");
    std::fs::write(&published, &jwks).unwrap();
    let (code, report) = verify(&dir, &bundle, Some(&published));
    assert_eq!(code, 0, "{report}");
    assert!(report.starts_with("OK: "), "{report}");
    let other = dir.join("other-certs.json");
    let stranger = annals_events::jws::PublicJwk::of(&ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key());
    std::fs::write(&other, serde_json::json!({ "keys": [stranger] }).to_string()).unwrap();
    let (code, report) = verify(&dir, &bundle, Some(&other));
    assert_eq!(code, 2, "{report}");
    assert!(report.contains("not one of the trusted audit keys"), "{report}");

    // One byte changed: a hex digit of one record's event id.
    let position = records[2]["record"]["position"].as_u64().unwrap();
    let event_id = records[2]["record"]["event_id"].as_str().unwrap();
    let text_bundle = String::from_utf8(bundle.clone()).unwrap();
    let at = text_bundle.find(event_id).unwrap() + event_id.len() - 1;
    let mut one_byte = bundle.clone();
    one_byte[at] = if one_byte[at] == b'0' { b'1' } else { b'0' };
    let (code, report) = verify(&dir, &one_byte, None);
    assert_eq!(code, 2, "{report}");
    assert!(report.contains(&format!("record at position {position}: its contents do not match")), "{report}");

    // One record removed.
    let removed = edit(&bundle, |v| {
        v["records"].as_array_mut().unwrap().remove(3);
    });
    let gone = records[3]["record"]["position"].as_u64().unwrap();
    let (code, report) = verify(&dir, &removed, None);
    assert_eq!(code, 2, "{report}");
    assert!(report.contains(&format!("record at position {gone}: listed in the manifest but missing")), "{report}");

    // Two records swapped.
    let swapped = edit(&bundle, |v| v["records"].as_array_mut().unwrap().swap(1, 2));
    let (p1, p2) = (records[1]["record"]["position"].as_u64().unwrap(), position);
    let (code, report) = verify(&dir, &swapped, None);
    assert_eq!(code, 2, "{report}");
    assert!(report.contains(&format!("record at position {p1}: comes after position {p2}")), "{report}");

    // An export signed with another audit key than the checkpoints' could never verify: refused.
    let pem = dir.join("stranger.pem");
    let ed = openssl::pkey::PKey::generate_ed25519().unwrap();
    std::fs::write(&pem, ed.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let other_file = dir.join("other.json");
    let out =
        annals(&dir, &[&args[..], &["--audit-key", pem.to_str().unwrap(), other_file.to_str().unwrap()]].concat());
    assert!(!out.status.success() && text(&out).contains("not this node's"), "{}", text(&out));
    assert!(!other_file.exists());

    // The log itself still verifies with its checkpoints in it.
    let out = annals(&dir, &["verify"]);
    assert!(out.status.success(), "{}", text(&out));
    demo.app.stop().await;
}

#[actix_rt::test]
async fn a_backlog_gets_consecutive_checkpoints_and_a_checkpoint_signed_by_another_key_stops_the_writer() {
    let demo = demo_with_checkpoints(Duration::from_secs(3600)).await;
    login_alice(&demo).await;
    let store = &*demo.app.store;
    let key = annals::audit_key::AuditKey::derived(&demo.app.keys);
    let head = store.head().await.unwrap();
    // Ten events a checkpoint: the backlog is covered in consecutive checkpoints, although
    // after each the newest event is that checkpoint.
    let mut rounds = 0;
    while let Some(c) = audit_checkpoints::append_next_at_most(store, &key, chrono::Utc::now(), 10).await.unwrap() {
        rounds += 1;
        assert!(rounds < 100, "the backlog never ends");
        if c.to_position >= head {
            break;
        }
    }
    assert!(rounds as u64 >= head / 10, "{rounds} checkpoints for {head} events");
    let all = audit_checkpoints::all(store).await.unwrap();
    for pair in all.windows(2) {
        assert_eq!(pair[1].1.after_position, pair[0].1.to_position);
    }
    // Caught up: nothing more to sign.
    let last = audit_checkpoints::append_next(store, &key, chrono::Utc::now()).await.unwrap();
    assert!(last.is_none() || audit_checkpoints::append_next(store, &key, chrono::Utc::now()).await.unwrap().is_none());

    // Someone with the database appends a checkpoint of their own, signed and chained: the
    // writer refuses to build on it, loudly.
    let stranger = annals::audit_key::AuditKey::derived(
        &annals::secrets::ServerKeys::from_master_key("c3RyYW5nZXItbWFzdGVyLWtleS0zMi1ieXRlcy1sb25nZXI=").unwrap(),
    );
    login_alice(&demo).await;
    let forged = forge_checkpoint(&demo, &stranger).await;
    login_alice(&demo).await;
    let err = audit_checkpoints::append_next(store, &key, chrono::Utc::now()).await.unwrap_err();
    assert!(
        matches!(&err, audit_checkpoints::CheckpointError::ForeignKey { position, .. } if *position == forged),
        "{err}"
    );
    demo.app.stop().await;
}

/// Appends a well-formed checkpoint signed by `key`, as someone with write access to the
/// database could; returns its position.
async fn forge_checkpoint(demo: &Demo, key: &annals::audit_key::AuditKey) -> u64 {
    use annals_events::audit_checkpoint::{AuditCheckpointEvent, AuditCheckpointSigned};
    let store = &*demo.app.store;
    let last = audit_checkpoints::latest(store).await.unwrap().unwrap();
    let (after, head) = (last.checkpoint.to_position, store.head().await.unwrap());
    let events = store.read_all(after, (head - after) as usize).await.unwrap();
    let mut root = RootBuilder::new();
    events.iter().for_each(|e| root.push(&e.hash));
    let c = AuditCheckpointSigned::sign(key.signing(), after, head, &events.last().unwrap().hash, &root.root(), 0);
    let event = annals_events::DomainEvent::from(AuditCheckpointEvent::Signed(c));
    let new = annals_events::NewEvent::new(&event, &annals_events::Metadata::default()).unwrap();
    let append = annals::store::StreamAppend {
        stream: audit_checkpoints::stream(),
        expected: annals::store::ExpectedVersion::Exact(last.version),
        events: vec![new],
    };
    store.append(append).await.unwrap().last_position
}
