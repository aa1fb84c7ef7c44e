//! Audit delivery to a real rsyslog: every record of the log arrives, in log order, over TCP
//! and TLS, as JSON and CEF; a receiver that stops for a while, or a node restarted in the
//! middle of delivery, loses nothing (duplicates allowed, each marked by its event id).
use crate::oidc_flow::{alice_code, redeem, Demo, Jar};
use crate::support::rsyslog::Rsyslog;
use annals::audit::{Auditor, DirectoryNames};
use annals::server::Running;
use annals::sinks::SinkSpec;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn syslog_sink(rs: &Rsyslog, query: &str) -> SinkSpec {
    let url = if query.contains("ca=") {
        format!("siem=syslog+tls://127.0.0.1:{}?{query}", rs.port)
    } else {
        format!("siem=syslog+tcp://127.0.0.1:{}?{query}", rs.port)
    };
    url.parse().unwrap()
}

async fn start_with_sink(spec: SinkSpec) -> Demo {
    Demo::start_configured(|_| {}, vec![], |cfg| cfg.sinks = vec![spec]).await
}

/// Every event of the log up to the durable head as the audit projection makes it, by position.
pub(crate) async fn log_records(app: &Running) -> (u64, HashMap<u64, Value>) {
    log_records_to(app, app.store.head().await.unwrap()).await
}

/// As [`log_records`], up to `head`.
pub(crate) async fn log_records_to(app: &Running, head: u64) -> (u64, HashMap<u64, Value>) {
    app.read_models.wait_for(head, Duration::from_secs(10)).await.unwrap();
    let events = app.store.read_all(0, head as usize).await.unwrap();
    let prepared = Auditor::default().prepare(&*app.store, events, |_| true).await.unwrap();
    let dir = app.read_models.read();
    let names = DirectoryNames(&dir);
    let records = prepared.iter().map(|p| (p.position(), serde_json::to_value(p.record(&names)).unwrap())).collect();
    (head, records)
}

fn sd_param<'a>(sd: &'a str, name: &str) -> &'a str {
    let start = sd.find(&format!(" {name}=\"")).unwrap_or_else(|| panic!("{name} in {sd}")) + name.len() + 3;
    &sd[start..start + sd[start..].find('"').unwrap()]
}

/// What the receiver holds: each event's first arrival `(position, event id, body)` in
/// arrival order, and how many arrived more than once.
struct Received {
    first: Vec<(u64, String, String)>,
    duplicates: usize,
}

fn received(rs: &Rsyslog) -> Received {
    let mut seen = HashSet::new();
    let (mut first, mut duplicates) = (Vec::new(), 0);
    for (sd, body) in rs.received() {
        assert!(sd.starts_with("[annals@32473 "), "{sd}");
        let position: u64 = sd_param(&sd, "position").parse().unwrap();
        let id = sd_param(&sd, "eventId").to_string();
        if seen.insert(id.clone()) {
            first.push((position, id, body));
        } else {
            duplicates += 1;
        }
    }
    Received { first, duplicates }
}

/// Waits until the receiver holds every event up to the log's head, then checks it holds
/// each exactly as the log says, first arrivals in log order with no gap.
async fn assert_all_delivered(rs: &Rsyslog, app: &Running, within: Duration) -> Received {
    let deadline = Instant::now() + within;
    loop {
        let head = app.store.head().await.unwrap();
        let got = received(rs);
        if got.first.len() as u64 >= head {
            let (head, log) = log_records_to(app, head).await;
            let positions: Vec<u64> = got.first.iter().map(|(p, _, _)| *p).collect();
            let expected: Vec<u64> = (1..=head).collect();
            assert_eq!(&positions[..head as usize], &expected[..], "first arrivals in log order, no gap");
            for (position, id, body) in &got.first[..head as usize] {
                let record = &log[position];
                assert_eq!(record["id"], id.as_str(), "event id at {position}");
                if body.starts_with('{') {
                    let body: Value = serde_json::from_str(body).unwrap();
                    assert_eq!(&body, record, "record at {position}");
                } else {
                    assert!(body.starts_with("CEF:0|Annals|Annals|"), "{body}");
                    assert!(body.contains(&format!(" externalId={id} ")), "{body}");
                    assert!(body.contains(&format!(" cn1={position} ")), "{body}");
                    assert!(body.contains(&format!("|{}|", record["annalsType"].as_str().unwrap())), "{body}");
                }
            }
            return got;
        }
        assert!(Instant::now() < deadline, "{} of {head} records arrived", got.first.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A login flow in the demo realm: a code login, its redemption, a failed password grant.
pub(crate) async fn some_logins(demo: &Demo) {
    let mut jar = Jar::default();
    let code = alice_code(demo, &mut jar).await;
    assert_eq!(redeem(demo, &code).await.0, 200);
    let (status, _) = demo
        .token(
            ("web", "web-secret-0123456789"),
            &[("grant_type", "password"), ("username", "alice"), ("password", "wrong")],
        )
        .await;
    assert_eq!(status, 400, "invalid_grant");
}

/// Logins and client grants, one after another, until `stop`; returns how many.
fn steady_load(demo: &Arc<Demo>, stop: &Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    let (demo, stop) = (demo.clone(), stop.clone());
    tokio::spawn(async move {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let (status, _) = demo
                .token(
                    ("web", "web-secret-0123456789"),
                    &[("grant_type", "password"), ("username", "alice"), ("password", "alice-password")],
                )
                .await;
            assert_eq!(status, 200);
            let (status, _) =
                demo.token(("svc", "svc-secret-0123456789"), &[("grant_type", "client_credentials")]).await;
            assert_eq!(status, 200);
            n += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        n
    })
}

async fn sink_lag(demo: &Demo) -> i64 {
    sink_lag_of(demo, "siem").await
}

pub(crate) async fn sink_lag_of(demo: &Demo, sink: &str) -> i64 {
    sink_metric(demo, "annals_sink_lag_events", sink).await
}

pub(crate) async fn sink_metric(demo: &Demo, metric: &str, sink: &str) -> i64 {
    let text = demo.http.get(format!("{}/metrics", demo.app.base_url)).send().await.unwrap().text().await.unwrap();
    let prefix = format!("{metric}{{sink=\"{sink}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("sink lag metric in {text}"))
}

#[actix_rt::test]
async fn rsyslog_over_tcp_receives_every_record_of_the_log_in_order() {
    // given rsyslog on TCP and a node delivering JSON to it
    let rs = Rsyslog::start(false);
    let demo = start_with_sink(syslog_sink(&rs, "format=json")).await;
    // when logins happen
    some_logins(&demo).await;
    // then every event of the log arrives once, in order, equal to its audit record
    let got = assert_all_delivered(&rs, &demo.app, Duration::from_secs(30)).await;
    assert_eq!(got.duplicates, 0, "nothing is sent twice while the receiver stays up");
    demo.app.stop().await;
}

#[actix_rt::test]
async fn rsyslog_over_tls_receives_every_record_as_cef() {
    // given rsyslog behind TLS with a certificate from a private CA
    let rs = Rsyslog::start(true);
    let ca = rs.ca();
    let demo = start_with_sink(syslog_sink(&rs, &format!("format=cef&ca={}", ca.display()))).await;
    // when logins happen
    some_logins(&demo).await;
    // then each event arrives as one CEF record naming its id and position
    assert_all_delivered(&rs, &demo.app, Duration::from_secs(30)).await;
    demo.app.stop().await;
}

#[actix_rt::test]
async fn a_receiver_that_does_not_trust_the_server_gets_nothing_and_the_lag_grows() {
    // given a TLS receiver whose certificate is not from the CA the sink trusts
    let rs = Rsyslog::start(true);
    let other = Rsyslog::start(true);
    let demo = start_with_sink(syslog_sink(&rs, &format!("format=json&ca={}", other.ca().display()))).await;
    some_logins(&demo).await;
    // then nothing is delivered, and the lag says so
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(rs.received().is_empty());
    assert!(sink_lag(&demo).await > 0);
    demo.app.stop().await;
}

#[actix_rt::test]
async fn a_receiver_down_for_thirty_seconds_under_load_misses_nothing() {
    // given rsyslog receiving from a node under a steady load of logins
    let mut rs = Rsyslog::start(false);
    let demo = Arc::new(start_with_sink(syslog_sink(&rs, "format=json")).await);
    let stop = Arc::new(AtomicBool::new(false));
    let load = steady_load(&demo, &stop);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!rs.received().is_empty(), "delivery runs before the outage");
    // when the receiver stops for 30 seconds while logins go on
    rs.stop();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let lag = sink_lag(&demo).await;
    assert!(lag > 0, "the lag grows while the receiver is down: {lag}");
    rs.restart();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let logins = load.await.unwrap();
    assert!(logins > 10, "the load ran: {logins}");
    // then every record arrives, in order, with no gap; redeliveries are marked by event id
    assert_all_delivered(&rs, &demo.app, Duration::from_secs(60)).await;
    let demo = Arc::into_inner(demo).expect("load finished");
    demo.app.stop().await;
}

#[actix_rt::test]
async fn a_node_restarted_mid_delivery_resumes_from_its_checkpoint() {
    // given records delivered and checkpointed
    let mut rs = Rsyslog::start(false);
    let spec = syslog_sink(&rs, "format=json");
    let demo = start_with_sink(spec.clone()).await;
    some_logins(&demo).await;
    assert_all_delivered(&rs, &demo.app, Duration::from_secs(30)).await;
    // records count as received once they survived the settle time on the connection
    let head = demo.app.store.head().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink_metric(&demo, "annals_sink_position", "siem").await < head as i64 {
        assert!(Instant::now() < deadline, "the checkpoint reaches the head");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // when the receiver stops, more happens, and the node restarts before it is back
    rs.stop();
    some_logins(&demo).await;
    let demo = demo.restart_with(|cfg| cfg.sinks = vec![spec]).await;
    rs.restart();
    some_logins(&demo).await;
    // then everything arrives, and what was checkpointed before the restart arrived once
    let got = assert_all_delivered(&rs, &demo.app, Duration::from_secs(60)).await;
    let once = rs.received().iter().filter(|(sd, _)| sd.contains(" position=\"1\" ")).count();
    assert_eq!(once, 1, "the first record is not sent again after the restart");
    assert!(got.first.len() > 10);
    demo.app.stop().await;
}

/// One octet-counted frame from `r`, or `None` at the end of the stream.
fn read_frame(r: &mut impl std::io::BufRead) -> Option<String> {
    let mut len = Vec::new();
    r.read_until(b' ', &mut len).ok()?;
    let len: usize = std::str::from_utf8(len.strip_suffix(b" ")?).ok()?.parse().ok()?;
    let mut msg = vec![0; len];
    r.read_exact(&mut msg).ok()?;
    String::from_utf8(msg).ok()
}

#[actix_rt::test]
async fn records_a_receiver_took_but_never_processed_are_sent_again() {
    // given a receiver whose first connection takes three records, then closes with the
    // rest unread (as a receiver that crashes or stops does), and whose next one keeps all
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let kept = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let sink = kept.clone();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let mut r = std::io::BufReader::new(conn.unwrap());
            let mut taken = 0;
            while let Some(msg) = read_frame(&mut r) {
                sink.lock().unwrap().push(sd_param(&msg, "position").parse().unwrap());
                taken += 1;
                if n == 0 && taken == 3 {
                    break;
                }
            }
        }
    });
    // when a node delivers its log to it
    let spec: SinkSpec = format!("siem=syslog+tcp://127.0.0.1:{port}").parse().unwrap();
    let demo = start_with_sink(spec).await;
    // then every record reaches the second connection, first arrivals in order
    let deadline = Instant::now() + Duration::from_secs(30);
    let head = demo.app.store.head().await.unwrap();
    loop {
        let got = kept.lock().unwrap().clone();
        let mut seen = HashSet::new();
        let first: Vec<u64> = got.iter().copied().filter(|p| seen.insert(*p)).collect();
        if first.len() as u64 >= head {
            assert_eq!(first[..head as usize], (1..=head).collect::<Vec<_>>()[..]);
            assert!(got.len() as u64 > head, "the unprocessed records came again");
            break;
        }
        assert!(Instant::now() < deadline, "{} of {head} arrived", first.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    demo.app.stop().await;
}

/// A JetStream consumer on `AUDIT` (only `filter` subjects when given), reading until it has
/// `count` messages: `(subject, Nats-Msg-Id, record)` each, acknowledged.
async fn consume(url: &str, filter: Option<&str>, count: usize) -> Vec<(String, String, Value)> {
    use async_nats::jetstream::{self, consumer::pull};
    use futures::StreamExt;
    let js = jetstream::new(async_nats::connect(url).await.unwrap());
    let stream = js.get_stream("AUDIT").await.unwrap();
    let consumer = stream
        .create_consumer(pull::Config { filter_subject: filter.unwrap_or_default().to_string(), ..Default::default() })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::new();
    while out.len() < count {
        let msg = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {count} messages within 30 s", out.len()))
            .unwrap()
            .unwrap();
        let id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.to_string())
            .unwrap_or_default();
        out.push((msg.subject.to_string(), id, serde_json::from_slice(&msg.payload).unwrap()));
        msg.ack().await.unwrap();
    }
    out
}

#[actix_rt::test]
async fn a_jetstream_consumer_receives_every_record_in_order_through_an_outage() {
    use crate::support::nats::NatsServer;
    // given a NATS server with JetStream and a node publishing to it
    let mut nats = NatsServer::start();
    let spec: SinkSpec = format!("bus={}?stream=AUDIT", nats.url()).parse().unwrap();
    let demo = start_with_sink(spec).await;
    some_logins(&demo).await;
    // when the server stops while logins go on, then comes back
    let before = demo.app.store.head().await.unwrap();
    consume(&nats.url(), None, before as usize).await;
    nats.stop();
    some_logins(&demo).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(sink_lag_of(&demo, "bus").await > 0, "the lag grows while NATS is down");
    nats.restart();
    some_logins(&demo).await;
    // then a consumer reads every record of the log once, in log order, on its subject
    let (head, log) = log_records(&demo.app).await;
    let all = consume(&nats.url(), None, head as usize).await;
    let positions: Vec<u64> = all.iter().map(|(_, _, r)| r["position"].as_u64().unwrap()).collect();
    assert_eq!(positions, (1..=head).collect::<Vec<_>>(), "every record once, in order");
    for (subject, id, record) in &all {
        let expected = &log[&record["position"].as_u64().unwrap()];
        assert_eq!(record, expected);
        assert_eq!(id, expected["id"].as_str().unwrap(), "Nats-Msg-Id is the event id");
        let realm = expected["realmName"].as_str().unwrap();
        assert_eq!(subject, &format!("annals.audit.{realm}.{}", expected["annalsType"].as_str().unwrap()));
    }
    // and a consumer of one realm's logins picks them by subject
    let logins = all.iter().filter(|(s, _, _)| s == "annals.audit.demo.auth_request.authenticated").count();
    assert!(logins >= 3);
    let demo_logins = consume(&nats.url(), Some("annals.audit.demo.auth_request.authenticated"), logins).await;
    assert!(demo_logins.iter().all(|(_, _, r)| r["type"] == "LOGIN"));
    demo.app.stop().await;
}
