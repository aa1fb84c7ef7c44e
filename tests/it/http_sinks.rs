//! Audit delivery over HTTP: a webhook receiver that checks every request's signature with the
//! Standard Webhooks reference library, and a Splunk HTTP Event Collector endpoint. Every
//! record of the log arrives in order; a record the receiver refuses for its content is
//! retried, then recorded as a `sink_delivery.rejected` event that the receiver gets instead;
//! an outage or a wrong token makes the lag grow and loses nothing.
use crate::clients::{authlib_python, available};
use crate::oidc_flow::Demo;
use crate::sinks::{log_records_to, sink_lag_of, sink_metric, some_logins};
use annals::server::Running;
use base64::Engine;
use serde_json::Value;
use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A marker no record holds unless a test puts it there: the receivers refuse what holds it.
const MARKER: &str = "refuse-me-7f3a";

/// `tests/clients/audit_receiver.py`, killed when dropped.
struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
    down: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start(mode: &str, secret: &str) -> Option<Receiver> {
        let python = authlib_python();
        let ready =
            Command::new(&python).args(["-c", "import standardwebhooks"]).output().is_ok_and(|o| o.status.success());
        if !available("standardwebhooks in tests/clients/.venv", ready) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let (secret_file, out, down) = (dir.path().join("secret"), dir.path().join("out"), dir.path().join("down"));
        std::fs::write(&secret_file, secret).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/audit_receiver.py");
        let mut child = Command::new(python)
            .arg(script)
            .args([mode, secret_file.to_str().unwrap(), out.to_str().unwrap(), "--refuse", MARKER, "--down"])
            .arg(&down)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("receiver port: {line:?}"));
        Some(Receiver { child, port, out, down, _dir: dir })
    }

    /// What the receiver took, request by request: `(webhook-id, record)`.
    fn taken(&self) -> Vec<(Option<String>, Value)> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (v["id"].as_str().map(String::from), v["record"].clone())
            })
            .collect()
    }

    /// Requests it turned away because the signature or token did not verify.
    fn unverified(&self) -> usize {
        std::fs::read_to_string(self.out.with_extension("rejected")).unwrap_or_default().lines().count()
    }
}

/// A fresh Standard Webhooks secret.
fn new_secret() -> String {
    let key: [u8; 32] = rand::random();
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key))
}

fn secret_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A failed password grant whose username holds the marker: its `LOGIN_ERROR` record is the
/// one the receiver refuses.
async fn a_refused_login(demo: &Demo) {
    let (status, _) = demo
        .token(
            ("web", "web-secret-0123456789"),
            &[("grant_type", "password"), ("username", MARKER), ("password", "whatever")],
        )
        .await;
    assert_eq!(status, 400);
}

/// The `sink_delivery.rejected` records of `sink` in the log: refused position -> record.
fn refusals(log: &std::collections::HashMap<u64, Value>, sink: &str) -> Vec<(u64, Value)> {
    let mut r: Vec<(u64, Value)> = log
        .values()
        .filter(|r| r["annalsType"] == "sink_delivery.rejected" && r["details"]["sink"] == sink)
        .map(|r| (r["details"]["rejected_position"].as_str().unwrap().parse().unwrap(), r.clone()))
        .collect();
    r.sort_by_key(|(p, _)| *p);
    r
}

/// Waits until the receiver holds every record of the log but the refused ones, each refusal
/// recorded; checks first arrivals are in log order, equal to the log's records, with no
/// gap but the refused positions. Returns the refused positions and the log.
async fn assert_all_but_refused(
    rx: &Receiver,
    app: &Running,
    sink: &str,
    record_of: impl Fn(&Value) -> Value,
    within: Duration,
) -> (Vec<u64>, std::collections::HashMap<u64, Value>) {
    let deadline = Instant::now() + within;
    loop {
        let head = app.store.head().await.unwrap();
        let (head, log) = log_records_to(app, head).await;
        let refused: Vec<u64> = refusals(&log, sink).into_iter().map(|(p, _)| p).collect();
        let mut seen = HashSet::new();
        let first: Vec<Value> = rx
            .taken()
            .into_iter()
            .map(|(_, r)| record_of(&r))
            .filter(|r| seen.insert(r["id"].as_str().unwrap().to_string()))
            .collect();
        let expected: Vec<u64> = (1..=head).filter(|p| !refused.contains(p)).collect();
        if first.len() >= expected.len() {
            let positions: Vec<u64> = first.iter().map(|r| r["position"].as_u64().unwrap()).collect();
            assert_eq!(&positions[..expected.len()], &expected[..], "first arrivals in log order, no other gap");
            for r in &first[..expected.len()] {
                let p = r["position"].as_u64().unwrap();
                assert_eq!(r, &log[&p], "record at {p}");
            }
            assert!(positions.iter().all(|p| !refused.contains(p)), "a refused record was never taken");
            return (refused, log);
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} records arrived ({} refused)",
            first.len(),
            expected.len(),
            refused.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_rt::test]
async fn a_webhook_gets_every_record_signed_and_a_refused_record_is_retried_then_recorded() {
    let secret = new_secret();
    let Some(rx) = Receiver::start("webhook", &secret) else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = secret_file(dir.path(), "whsec", &secret);
    // given a node delivering to the webhook in batches of 7
    let url = format!("hook=webhook+http://127.0.0.1:{}/audit?batch=7&secret_file={}", rx.port, file.display());
    let spec = url.parse().unwrap();
    let demo = Demo::start_configured(|_| {}, vec![], |cfg| cfg.sinks = vec![spec]).await;
    // when logins happen, one of them a record the receiver refuses
    some_logins(&demo).await;
    a_refused_login(&demo).await;
    some_logins(&demo).await;
    // then every other record arrives in order, and the refused one is recorded instead
    let (refused, log) = assert_all_but_refused(&rx, &demo.app, "hook", Value::clone, Duration::from_secs(60)).await;
    assert!(!refused.is_empty(), "the marked login was refused");
    eprintln!("webhook: {} records in the log, {} taken, refused {refused:?}", log.len(), rx.taken().len());
    for (position, report) in refusals(&log, "hook") {
        let bad = &log[&position];
        assert!(bad.to_string().contains(MARKER), "{bad}");
        assert_eq!(report["details"]["rejected_event_id"], bad["id"]);
        assert_eq!(report["details"]["rejected_type"], bad["annalsType"]);
        assert_eq!(
            (report["details"]["status"].as_str(), report["details"]["attempts"].as_str()),
            (Some("400"), Some("5"))
        );
        assert!(report["error"].as_str().unwrap().contains("does not accept"), "{report}");
        assert_eq!((report["outcome"].as_str(), report["realmId"].clone()), (Some("failure"), bad["realmId"].clone()));
        assert!(!report.to_string().contains(MARKER), "the report does not repeat the refused content");
    }
    let marked: Vec<u64> = log.iter().filter(|(_, r)| r.to_string().contains(MARKER)).map(|(p, _)| *p).collect();
    let mut marked =
        marked.into_iter().filter(|p| log[p]["annalsType"] != "sink_delivery.rejected").collect::<Vec<_>>();
    marked.sort();
    assert_eq!(refused, marked, "exactly the marked records were refused");
    assert_eq!(sink_metric(&demo, "annals_sink_rejected_total", "hook").await, refused.len() as i64);
    // every request was signed as Standard Webhooks says, with a stable id per batch
    assert_eq!(rx.unverified(), 0, "every request verified");
    // (the id names the batch's first record and its size; a batch sent again keeps it)
    let taken = rx.taken();
    let mut i = 0;
    while i < taken.len() {
        let id = taken[i].0.clone().unwrap();
        let (first, n) = id.rsplit_once('.').unwrap();
        let n: usize = n.parse().unwrap();
        assert_eq!(first, taken[i].1["id"].as_str().unwrap(), "{id}");
        assert!(n <= 7 && taken[i..i + n].iter().all(|(other, _)| other.as_deref() == Some(id.as_str())), "{id}");
        i += n;
    }
    // and the receiver does check: a request signed with another key is turned away
    let forged = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/audit", rx.port))
        .header("content-type", "application/x-ndjson")
        .header("webhook-id", "forged.1")
        .header("webhook-timestamp", chrono::Utc::now().timestamp().to_string())
        .header("webhook-signature", "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        .body("{}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    assert_eq!(rx.unverified(), 1);

    // when the receiver is down (503) while logins go on
    let failures = sink_metric(&demo, "annals_sink_failures_total", "hook").await;
    std::fs::write(&rx.down, "").unwrap();
    some_logins(&demo).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink_lag_of(&demo, "hook").await == 0 {
        assert!(Instant::now() < deadline, "the lag grows while the receiver is down");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sink_metric(&demo, "annals_sink_failures_total", "hook").await > failures, "503s count as failures");
    // then nothing is recorded as refused (being down is no refusal), and everything arrives
    // once it is back
    std::fs::remove_file(&rx.down).unwrap();
    let (after, _) = assert_all_but_refused(&rx, &demo.app, "hook", Value::clone, Duration::from_secs(60)).await;
    assert_eq!(after, refused, "an outage refuses nothing");
    demo.app.stop().await;
}

#[actix_rt::test]
async fn splunk_hec_gets_every_record_as_an_event_and_a_wrong_token_only_makes_the_lag_grow() {
    let token = uuid::Uuid::new_v4().to_string();
    let Some(rx) = Receiver::start("splunk", &token) else { return };
    let dir = tempfile::tempdir().unwrap();
    let good = secret_file(dir.path(), "token", &token);
    let wrong = secret_file(dir.path(), "wrong", "00000000-0000-0000-0000-000000000000");
    let hec = |name: &str, file: &Path| {
        format!(
            "{name}=splunk+http://127.0.0.1:{}/services/collector/event?index=security&token_file={}",
            rx.port,
            file.display()
        )
        .parse()
        .unwrap()
    };
    // given a node with two HEC sinks, one with the right token and one with a wrong one
    let sinks = vec![hec("hec", &good), hec("badtoken", &wrong)];
    let demo = Demo::start_configured(|_| {}, vec![], |cfg| cfg.sinks = sinks).await;
    // when logins happen, one a record the collector refuses as invalid data
    some_logins(&demo).await;
    a_refused_login(&demo).await;
    // then every other record arrives as an event in order; the refusal is recorded
    let event = |e: &Value| e["event"].clone();
    let (refused, log) = assert_all_but_refused(&rx, &demo.app, "hec", event, Duration::from_secs(60)).await;
    assert!(!refused.is_empty());
    for (_, report) in refusals(&log, "hec") {
        let error = report["error"].as_str().unwrap();
        assert!(error.contains("Splunk code 6: Invalid data format"), "{error}");
    }
    for (_, e) in rx.taken() {
        let r = &e["event"];
        assert_eq!(e["time"].as_f64().unwrap(), r["time"].as_i64().unwrap() as f64 / 1000.0);
        assert_eq!((e["index"].as_str(), e["sourcetype"].as_str()), (Some("security"), Some("annals:audit")));
        assert_eq!(e["fields"]["position"].as_str().unwrap(), r["position"].as_u64().unwrap().to_string());
        assert_eq!(e["fields"]["event_id"], r["id"]);
    }
    // and the sink with the wrong token delivers nothing, records no refusal, and lags
    assert!(rx.unverified() > 0, "the wrong token was tried");
    assert!(refusals(&log, "badtoken").is_empty(), "a 401 is no refusal of a record");
    assert!(sink_lag_of(&demo, "badtoken").await > 0);
    assert_eq!(sink_metric(&demo, "annals_sink_position", "badtoken").await, 0);
    demo.app.stop().await;
}
