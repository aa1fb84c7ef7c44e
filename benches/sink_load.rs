//! The audit sink figures: catch-up after an outage (records per second from a backlog,
//! against reading the same events from the log in the same run) and append-to-receiver
//! latency at a steady rate (against the append's own acknowledgement latency). The receiver
//! is an RFC 6587 octet-counting reader in this process, on loopback, or (`--rsyslog PATH`) a
//! real rsyslogd writing each message to a file that this process tails.
use super::{new_user_append, percentile_ms};
use annals::actors::{Hosts, HostsConfig};
use annals::clock::SystemClock;
use annals::readmodels::ReadModels;
use annals::sinks::{SinkSpec, Sinks};
use annals::store::{self, SharedStore};
use annals_events::Metadata;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// When each position first arrived at the receiver.
type Arrivals = Arc<Mutex<HashMap<u64, Instant>>>;

/// A syslog receiver: reads octet-counted frames, notes each position's first arrival.
async fn receiver() -> (u16, Arrivals) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let arrivals: Arrivals = Default::default();
    let seen = arrivals.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut r = BufReader::with_capacity(1 << 16, conn);
                let (mut len, mut msg) = (Vec::new(), Vec::new());
                loop {
                    len.clear();
                    if r.read_until(b' ', &mut len).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let Some(n) = std::str::from_utf8(&len[..len.len() - 1]).ok().and_then(|s| s.parse().ok()) else {
                        return;
                    };
                    msg.resize(n, 0);
                    if r.read_exact(&mut msg).await.is_err() {
                        return;
                    }
                    let now = Instant::now();
                    let text = String::from_utf8_lossy(&msg);
                    if let Some(p) = text.split(" position=\"").nth(1).and_then(|s| s.split('"').next()?.parse().ok()) {
                        seen.lock().expect("arrivals").entry(p).or_insert(now);
                    }
                }
            });
        }
    });
    (port, arrivals)
}

/// A running rsyslogd: stopped and its directory removed when dropped.
pub struct RsyslogGuard {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Drop for RsyslogGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A real rsyslog: imtcp on a random loopback port, each message's structured data written to
/// a file (omfile, flushed per batch) that a task here tails every millisecond, noting each
/// position's first appearance.
async fn rsyslog_receiver(rsyslogd: &std::path::Path) -> (u16, Arrivals, RsyslogGuard) {
    let dir = std::env::temp_dir().join(format!("annals-load-rsyslog-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let d = dir.display().to_string();
    let config = format!(
        "global(workDirectory=\"{d}\" maxMessageSize=\"64k\" net.enableDNS=\"off\")\n\
         module(load=\"imtcp\")\n\
         input(type=\"imtcp\" address=\"127.0.0.1\" port=\"0\" listenPortFileName=\"{d}/port\" ruleset=\"annals\")\n\
         template(name=\"sd\" type=\"string\" string=\"%structured-data%\\n\")\n\
         ruleset(name=\"annals\") {{ action(type=\"omfile\" file=\"{d}/received.log\" template=\"sd\") }}\n"
    );
    std::fs::write(dir.join("rsyslog.conf"), config).expect("config");
    let child = std::process::Command::new(rsyslogd)
        .args(["-n", "-f"])
        .arg(dir.join("rsyslog.conf"))
        .arg("-i")
        .arg(dir.join("rsyslog.pid"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("rsyslogd starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let port: u16 = loop {
        if let Some(p) = std::fs::read_to_string(dir.join("port")).ok().and_then(|p| p.trim().parse().ok()) {
            break p;
        }
        assert!(Instant::now() < deadline, "rsyslogd did not start listening");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let arrivals: Arrivals = Default::default();
    let (seen, file) = (arrivals.clone(), dir.join("received.log"));
    tokio::spawn(async move {
        use std::io::{Read, Seek, SeekFrom};
        let (mut offset, mut partial) = (0u64, String::new());
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let Ok(mut f) = std::fs::File::open(&file) else { continue };
            if f.seek(SeekFrom::Start(offset)).is_err() {
                continue;
            }
            let mut chunk = String::new();
            let Ok(n) = f.read_to_string(&mut chunk) else { continue };
            if n == 0 {
                continue;
            }
            offset += n as u64;
            let now = Instant::now();
            partial.push_str(&chunk);
            let complete = partial.rfind('\n').map_or(0, |i| i + 1);
            let mut seen = seen.lock().expect("arrivals");
            for line in partial[..complete].lines() {
                if let Some(p) = line.split(" position=\"").nth(1).and_then(|s| s.split('"').next()?.parse().ok()) {
                    seen.entry(p).or_insert(now);
                }
            }
            partial.drain(..complete);
        }
    });
    (port, arrivals, RsyslogGuard { child, dir })
}

async fn wait_for(arrivals: &Arrivals, position: u64, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(t) = arrivals.lock().expect("arrivals").get(&position) {
            return *t;
        }
        assert!(Instant::now() < deadline, "position {position} not delivered within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn seed(store: &SharedStore, events: usize) -> u64 {
    let meta = Metadata::system("annals-load").with_realm("load");
    let mut last = 0;
    for chunk in (0..events).collect::<Vec<_>>().chunks(1_000) {
        let batch = chunk.iter().map(|&n| new_user_append("load", n, &meta)).collect();
        last = store.append_all(batch).await.expect("seed").last().map_or(last, |a| a.last_position);
    }
    last
}

pub async fn run(
    database_url: &str,
    backlog: usize,
    rate: usize,
    seconds: f64,
    rsyslogd: Option<&std::path::Path>,
) -> serde_json::Value {
    let store = store::open(database_url).await.expect("store");
    // Catch-up: a backlog in the log, then a sink starting from nothing.
    let head = seed(&store, backlog).await;
    let t = Instant::now();
    let mut read = 0;
    let mut at = 0;
    while at < head {
        let page = store.read_all(at, 1_000).await.expect("read");
        read += page.len();
        at = page.last().map_or(head, |e| e.position);
    }
    let read_per_s = read as f64 / t.elapsed().as_secs_f64();
    let models = ReadModels::start(store.clone()).await.expect("read models");
    let (port, arrivals, _rsyslog) = match rsyslogd {
        Some(path) => {
            let (port, arrivals, guard) = rsyslog_receiver(path).await;
            (port, arrivals, Some(guard))
        }
        None => {
            let (port, arrivals) = receiver().await;
            (port, arrivals, None)
        }
    };
    let spec: SinkSpec = format!("bench=syslog+tcp://127.0.0.1:{port}").parse().expect("spec");
    let started = Instant::now();
    let hosts = Hosts::new(store.clone(), Arc::new(SystemClock), HostsConfig::default());
    let sinks = Sinks::start(&[spec], &store, &models, &hosts).expect("sink");
    let done = wait_for(&arrivals, head, Duration::from_secs(600)).await;
    let catch_up_per_s = head as f64 / (done - started).as_secs_f64();
    // Steady rate: appends of 10 events every 2 ms (one per stream), timed from each
    // durable acknowledgement to the record's arrival.
    let meta = Metadata::system("annals-load").with_realm("load");
    let per_tick = 10usize;
    let tick = Duration::from_secs_f64(per_tick as f64 / rate as f64);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (acked, append_lat) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    let mut n = backlog;
    let steady_started = Instant::now();
    while Instant::now() < end {
        interval.tick().await;
        let batch: Vec<_> = (0..per_tick).map(|i| new_user_append("load", n + i, &meta)).collect();
        n += per_tick;
        let (store, acked, append_lat) = (store.clone(), acked.clone(), append_lat.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let done = store.append_all(batch).await.expect("append");
            let now = Instant::now();
            append_lat.lock().expect("lat").push(now - t);
            acked.lock().expect("acked").extend(done.iter().map(|a| (a.last_position, now)));
        }));
    }
    for t in tasks {
        t.await.expect("appender");
    }
    let appended = n - backlog;
    let achieved = appended as f64 / steady_started.elapsed().as_secs_f64();
    let acked = std::mem::take(&mut *acked.lock().expect("acked"));
    let last = acked.iter().map(|(p, _)| *p).max().unwrap_or(head);
    wait_for(&arrivals, last, Duration::from_secs(60)).await;
    let mut delivery: Vec<Duration> = {
        let arrivals = arrivals.lock().expect("arrivals");
        acked.iter().map(|(p, at)| arrivals[p].saturating_duration_since(*at)).collect()
    };
    delivery.sort();
    let mut append_lat = std::mem::take(&mut *append_lat.lock().expect("lat"));
    append_lat.sort();
    sinks.stop();
    models.stop();
    store.shutdown().await;
    json!({
        "receiver": if rsyslogd.is_some() { "rsyslogd (imtcp, omfile, tailed)" } else { "in-process reader" },
        "backlog": head,
        "catch_up_records_per_s": catch_up_per_s,
        "baseline_read_all_events_per_s": read_per_s,
        "catch_up_vs_read": catch_up_per_s / read_per_s,
        "steady_events_per_s": achieved,
        "append_to_receiver_p50_ms": percentile_ms(&delivery, 0.5),
        "append_to_receiver_p99_ms": percentile_ms(&delivery, 0.99),
        "baseline_append_ack_p50_ms": percentile_ms(&append_lat, 0.5),
        "baseline_append_ack_p99_ms": percentile_ms(&append_lat, 0.99),
    })
}
