//! `annals-load`: the load tool behind the figures in benches/README.md and the crash test.
//!
//! Every scenario prints one JSON object on stdout (medians over `--runs`, and the same-run
//! baseline the figure is compared with).
#![forbid(unsafe_code)]

mod oidc_load;
mod sink_load;
mod timeline_load;

use annals::actors::{Hosts, HostsConfig};
use annals::clock::{SharedClock, SystemClock};
use annals::domain::user::{User, UserCommand};
use annals::provision;
use annals::store::{self, ExpectedVersion, SharedStore, StreamAppend};
use annals_events::client::{ClientCreated, ClientEvent, ClientSettings};
use annals_events::group::{GroupCreated, GroupEvent, GroupRoleGranted};
use annals_events::realm::{RealmCreated, RealmEvent, RealmSettings};
use annals_events::role::{RoleCreated, RoleEvent};
use annals_events::user::{UserCreated, UserEvent, UserProfile, UserRoleGranted};
use annals_events::{DomainEvent, Metadata, NewEvent, StreamId, StreamType};
use clap::{Parser, Subcommand};
use serde_json::json;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Concurrent writers, one event per append, each a new user stream.
    Append {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 64)]
        writers: usize,
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        /// Print `ack EVENT_ID POSITION` for every acknowledged append (crash test).
        #[arg(long)]
        acks: bool,
    },
    /// Rebuild the in-memory read models from the whole log. An empty store is first seeded
    /// with `events` configuration events (clients, roles, groups: what those models fold;
    /// users live in SQL and are not part of this figure).
    Rebuild {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, default_value_t = 300_000)]
        events: usize,
    },
    /// Activation of actors whose streams hold `events` events each.
    Activation {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 200)]
        streams: usize,
        #[arg(long, default_value_t = 100)]
        events: usize,
    },
    /// Drive one OpenID flow against a running server over keep-alive HTTP/1.1.
    Oidc {
        #[arg(long, value_enum)]
        flow: oidc_load::Flow,
        /// `host:port` of the server.
        #[arg(long)]
        host: String,
        #[arg(long, default_value = "bench")]
        realm: String,
        #[arg(long)]
        client: String,
        #[arg(long)]
        secret: String,
        #[arg(long, default_value = "bench")]
        username: String,
        #[arg(long, default_value = "bench-password")]
        password: String,
        #[arg(long, default_value = "https://rp.example/cb")]
        redirect_uri: String,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value_t = 40_000)]
        cold_tokens: usize,
    },
    /// argon2id hashes per second on this many threads (the login ceiling).
    Argon2 {
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Tokens signed per second on one thread by the server's own signer (`jwt::Signer`, a
    /// realm key of `alg`): what a signature costs the server, which `openssl speed` does
    /// not tell for ES256 (the server signs those with ring).
    Sign {
        #[arg(long, default_value = "ES256")]
        alg: String,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Sessions as the log holds them after logins, for the memory figure.
    SeedSessions {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 100_000)]
        sessions: usize,
    },
    /// Audit delivery to a syslog receiver: catch-up from a backlog, then latency at a rate.
    Sink {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 200_000)]
        backlog: usize,
        /// Events per second appended during the latency phase.
        #[arg(long, default_value_t = 5_000)]
        rate: usize,
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
        /// Deliver to a real rsyslogd (this binary) instead of the in-process reader.
        #[arg(long)]
        rsyslog: Option<std::path::PathBuf>,
    },
    /// `annals timeline` for one user in a log of `events` events (seeded when empty).
    Timeline {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 10_000_000)]
        events: usize,
        /// The user's sessions, spread through the log.
        #[arg(long, default_value_t = 300)]
        sessions: usize,
        #[arg(long, default_value_t = 7)]
        runs: usize,
    },
    /// Seed a realm with users and clients (for the memory figure).
    Seed {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        #[arg(long, default_value_t = 1_000)]
        clients: usize,
    },
}

fn user_created(realm: &str, n: usize) -> DomainEvent {
    UserEvent::from(UserCreated {
        realm_id: realm.into(),
        username: format!("user{n:07}"),
        profile: UserProfile {
            email: Some(format!("user{n:07}@example.org")),
            email_verified: true,
            first_name: Some("Load".into()),
            last_name: Some(format!("User {n}")),
            enabled: true,
            ..Default::default()
        },
        created_timestamp: None,
        federation_link: None,
        extra: Default::default(),
    })
    .into()
}

fn new_user_append(realm: &str, n: usize, meta: &Metadata) -> StreamAppend {
    StreamAppend {
        stream: StreamId::new(StreamType::User, uuid::Uuid::now_v7().to_string()),
        expected: ExpectedVersion::Exact(0),
        events: vec![NewEvent::new(&user_created(realm, n), meta).expect("encodes")],
    }
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

async fn append(store: SharedStore, writers: usize, events: usize, acks: bool) -> serde_json::Value {
    let meta = Metadata::system("annals-load").with_realm("load");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (store, next, meta, out) = (store.clone(), next.clone(), meta.clone(), out.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= events {
                        return lat;
                    }
                    let a = new_user_append("load", n, &meta);
                    let id = a.events[0].event_id;
                    let t = Instant::now();
                    let done = store.append(a).await.expect("append");
                    lat.push(t.elapsed());
                    if acks {
                        let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
                        let _ = writeln!(o, "ack {id} {}", done.last_position);
                        let _ = o.flush();
                    }
                }
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("writer"));
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort();
    let batches = annals::metrics::BATCH_SIZE.get_sample_count().max(1) as f64;
    json!({
        "events_per_s": events as f64 / secs,
        "mean_batch_requests": annals::metrics::BATCH_SIZE.get_sample_sum() / batches,
        "seconds": secs,
        "writers": writers,
        "p50_ms": percentile_ms(&lat, 0.5),
        "p99_ms": percentile_ms(&lat, 0.99),
    })
}

/// Appends `events` configuration events in the proportions of a large deployment's realm:
/// per unit, a client, a client role and a group granted that role (4 events).
async fn seed_config(store: &SharedStore, events: usize) {
    let meta = Metadata::system("annals-load").with_realm("load");
    let enc = |e: DomainEvent| NewEvent::new(&e, &meta).expect("encodes");
    let units: Vec<usize> = (0..events.div_ceil(4)).collect();
    for chunk in units.chunks(500) {
        let mut batch = Vec::new();
        for &i in chunk {
            let (client, role, group) =
                (uuid::Uuid::now_v7().to_string(), uuid::Uuid::now_v7().to_string(), uuid::Uuid::now_v7().to_string());
            let c: DomainEvent = ClientEvent::from(ClientCreated {
                realm_id: "load".into(),
                client_id: format!("client-{i:07}"),
                settings: ClientSettings {
                    redirect_uris: vec![format!("https://app{i}.example.org/callback")],
                    web_origins: vec![format!("https://app{i}.example.org")],
                    ..Default::default()
                },
                secret: None,
                sealed_secret: None,
                extra: Default::default(),
            })
            .into();
            let r: DomainEvent = RoleEvent::from(RoleCreated {
                realm_id: "load".into(),
                client_id: Some(client.clone()),
                name: "reader".into(),
                description: Some(format!("Reads app {i}")),
                attributes: Default::default(),
                extra: Default::default(),
            })
            .into();
            let g: DomainEvent = GroupEvent::from(GroupCreated {
                realm_id: "load".into(),
                name: format!("team-{i:07}"),
                parent_id: None,
                attributes: Default::default(),
                extra: Default::default(),
            })
            .into();
            let granted: DomainEvent = GroupEvent::from(GroupRoleGranted { role_id: role.clone() }).into();
            let stream = |kind, id: &str, events| StreamAppend {
                stream: StreamId::new(kind, id.to_string()),
                expected: ExpectedVersion::Exact(0),
                events,
            };
            batch.push(stream(StreamType::Client, &client, vec![enc(c)]));
            batch.push(stream(StreamType::Role, &role, vec![enc(r)]));
            batch.push(stream(StreamType::Group, &group, vec![enc(g), enc(granted)]));
        }
        store.append_all(batch).await.expect("seed");
    }
}

async fn rebuild(database_url: &str, runs: usize, events: usize) -> serde_json::Value {
    let at_start = rss_mib();
    let store = store::open(database_url).await.expect("store");
    if store.head().await.expect("head") == 0 {
        seed_config(&store, events).await;
        // A rebuild happens at start, from a log at rest: fold the seeding's WAL into the
        // database first, so the background checkpointer does not copy it during the runs.
        if let annals::store::DbPool::Sqlite(pool) = store.pool() {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.expect("checkpoint");
        }
    }
    let head = store.head().await.expect("head");
    let (mut fold_rates, mut read_rates) = (Vec::new(), Vec::new());
    let (mut page_rates, mut apply_rates) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        // The two stages a rebuild overlaps, each alone: reading pages (no payload decoding),
        // and decoding + folding events already in memory.
        let t = Instant::now();
        let mut all: Vec<annals_events::RecordedEvent> = Vec::with_capacity(head as usize);
        loop {
            let page = store.read_all_payloads(all.last().map_or(0, |e| e.position), 2500).await.expect("read");
            let done = page.len() < 2500;
            all.extend(page);
            if done {
                break;
            }
        }
        page_rates.push(all.len() as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut dir = annals_projections::Directory::default();
        for e in &all {
            dir.fold(e).expect("fold");
        }
        apply_rates.push(all.len() as f64 / t.elapsed().as_secs_f64());
        drop((all, dir));
        // Baseline: the same pages read and their payloads decoded one after the other, as a
        // rebuild without overlap would (and without folding).
        let t = Instant::now();
        let (mut n, mut after) = (0u64, 0u64);
        loop {
            let page = store.read_all_payloads(after, 2500).await.expect("read");
            for e in &page {
                let _ = e.decode();
            }
            n += page.len() as u64;
            after = page.last().map_or(after, |e| e.position);
            if page.len() < 2500 {
                break;
            }
        }
        read_rates.push(n as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let dir = annals::readmodels::rebuild(&store, |_| {}).await.expect("rebuild");
        fold_rates.push(dir.position as f64 / t.elapsed().as_secs_f64());
    }
    // What the read models hold once built: resident memory with and without them.
    let before = rss_mib();
    let dir = annals::readmodels::rebuild(&store, |_| {}).await.expect("rebuild");
    let with_dir = rss_mib();
    let (clients, roles, groups) = (dir.clients.len(), dir.memberships.role_count(), dir.memberships.group_count());
    drop(dir);
    let after_drop = rss_mib();
    store.shutdown().await;
    let (fold, read) = (median(fold_rates), median(read_rates));
    json!({"scenario": "rebuild", "store": store.backend(), "events": head,
           "result": {"events_per_s": fold, "baseline_read_decode_per_s": read, "ratio_to_baseline": fold / read,
                      "stage_read_pages_per_s": median(page_rates), "stage_decode_fold_per_s": median(apply_rates),
                      "clients": clients, "roles": roles, "groups": groups, "rss_mib_at_start": at_start, "rss_mib_before": before, "rss_mib_with_directory": with_dir, "rss_mib_after_drop": after_drop}})
}

async fn activation(database_url: &str, streams: usize, events: usize) -> serde_json::Value {
    let store = store::open(database_url).await.expect("store");
    let meta = Metadata::system("annals-load");
    // The first activations after start also pay one-off costs (arbiter threads, prepared
    // statements per connection); they are run first and reported apart.
    const WARM_UP: usize = 20;
    let ids: Vec<String> = (0..streams + WARM_UP).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    for (i, id) in ids.iter().enumerate() {
        let mut evs = vec![NewEvent::new(&user_created("load", i), &meta).expect("encodes")];
        for r in 1..events {
            let e: DomainEvent = UserEvent::from(UserRoleGranted { role_id: format!("role-{r}") }).into();
            evs.push(NewEvent::new(&e, &meta).expect("encodes"));
        }
        let stream = StreamId::new(StreamType::User, id.clone());
        store.append(StreamAppend { stream, expected: ExpectedVersion::Exact(0), events: evs }).await.expect("seed");
    }
    let clock: SharedClock = Arc::new(SystemClock);
    let hosts = Hosts::new(store.clone(), clock, HostsConfig::default());
    // Baseline: the bare read of one stream, the I/O every activation needs.
    let mut reads = Vec::new();
    for id in ids.iter().skip(WARM_UP) {
        let t = Instant::now();
        let _ = store.read_stream_payloads(&StreamId::new(StreamType::User, id.clone()), 0).await;
        reads.push(t.elapsed());
    }
    // Activation: the first command to a cold actor (load + fold + a decision that appends
    // nothing because the role is already granted).
    let mut lat = Vec::new();
    let mut warm_up = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let t = Instant::now();
        let done = hosts
            .execute::<User>(id, UserCommand::GrantRole { role_id: "role-1".into() }, meta.clone())
            .await
            .expect("activation");
        if i < WARM_UP { &mut warm_up } else { &mut lat }.push(t.elapsed());
        assert_eq!(done.version, events as u64);
    }
    hosts.shutdown().await;
    store.shutdown().await;
    lat.sort();
    reads.sort();
    json!({"scenario": "activation", "store": store.backend(), "events_per_stream": events, "streams": streams,
           "result": {"p50_ms": percentile_ms(&lat, 0.5), "p99_ms": percentile_ms(&lat, 0.99),
                      "baseline_read_p50_ms": percentile_ms(&reads, 0.5), "baseline_read_p99_ms": percentile_ms(&reads, 0.99),
                      "warm_up_activations": WARM_UP, "warm_up_max_ms": warm_up.iter().max().map_or(0.0, |d| d.as_secs_f64() * 1e3)}})
}

async fn seed(database_url: &str, users: usize, clients: usize) -> serde_json::Value {
    let store = store::open(database_url).await.expect("store");
    let meta = Metadata::system("annals-load").with_realm("load");
    let realm: DomainEvent = RealmEvent::from(RealmCreated {
        name: "load".into(),
        settings: RealmSettings::default(),
        extra: Default::default(),
    })
    .into();
    let keys =
        annals::secrets::ServerKeys::from_master_key("bG9hZC10ZXN0LW1hc3Rlci1rZXktMzItYnl0ZXMhISE=").expect("key");
    let first = vec![
        StreamAppend {
            stream: StreamId::new(StreamType::Realm, "load"),
            expected: ExpectedVersion::Exact(0),
            events: vec![NewEvent::new(&realm, &meta).expect("encodes")],
        },
        provision::realm_key("load", "ES256", &keys, chrono::Utc::now(), &meta).expect("key"),
    ];
    store.append_all(first).await.expect("realm");
    let batch = (0..clients)
        .map(|c| {
            let e: DomainEvent = ClientEvent::from(ClientCreated {
                realm_id: "load".into(),
                client_id: format!("client-{c:05}"),
                settings: ClientSettings {
                    redirect_uris: vec![format!("https://app{c}.example.org/callback")],
                    ..Default::default()
                },
                secret: None,
                sealed_secret: None,
                extra: Default::default(),
            })
            .into();
            StreamAppend {
                stream: StreamId::new(StreamType::Client, uuid::Uuid::now_v7().to_string()),
                expected: ExpectedVersion::Exact(0),
                events: vec![NewEvent::new(&e, &meta).expect("encodes")],
            }
        })
        .collect();
    store.append_all(batch).await.expect("clients");
    let r = append(store.clone(), 64, users, false).await;
    store.shutdown().await;
    json!({"scenario": "seed", "users": users, "clients": clients, "result": r})
}

async fn run(args: Args) -> serde_json::Value {
    match args.scenario {
        Scenario::Append { database_url, writers, events, acks } => {
            let store = store::open(&database_url).await.expect("store");
            let r = append(store.clone(), writers, events, acks).await;
            store.shutdown().await;
            json!({"scenario": "append", "store": store.backend(), "result": r})
        }
        Scenario::Rebuild { database_url, runs, events } => rebuild(&database_url, runs, events).await,
        Scenario::Activation { database_url, streams, events } => activation(&database_url, streams, events).await,
        Scenario::Seed { database_url, users, clients } => seed(&database_url, users, clients).await,
        Scenario::Oidc {
            flow,
            host,
            realm,
            client,
            secret,
            username,
            password,
            redirect_uri,
            connections,
            seconds,
            cold_tokens,
        } => {
            let target = oidc_load::Target { host, realm, client, secret, username, password };
            let duration = Duration::from_secs_f64(seconds);
            let result = oidc_load::run(flow, target, connections, duration, redirect_uri, cold_tokens).await;
            json!({"scenario": format!("oidc_{flow:?}").to_lowercase(), "result": result})
        }
        Scenario::Argon2 { threads, seconds } => {
            let per_s = tokio::task::spawn_blocking(move || {
                oidc_load::argon2_ceiling(threads, Duration::from_secs_f64(seconds))
            })
            .await
            .expect("hashing");
            json!({"scenario": "argon2_ceiling", "result": {"hashes_per_s": per_s, "threads": threads}})
        }
        Scenario::Sign { alg, seconds } => {
            let per_s = oidc_load::signing_ceiling(&alg, Duration::from_secs_f64(seconds));
            json!({"scenario": "signing_ceiling", "result": {"alg": alg, "tokens_per_s": per_s}})
        }
        Scenario::SeedSessions { database_url, sessions } => seed_sessions(&database_url, sessions).await,
        Scenario::Timeline { database_url, events, sessions, runs } => {
            timeline_load::run(&database_url, events, sessions, runs).await
        }
        Scenario::Sink { database_url, backlog, rate, seconds, rsyslog } => {
            let result = sink_load::run(&database_url, backlog, rate, seconds, rsyslog.as_deref()).await;
            json!({"scenario": "sink", "result": result})
        }
    }
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// This process's resident memory in MiB (Linux).
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let args = Args::parse();
    // Actors need an actix system; run it on a multi-threaded tokio runtime as the server does.
    let system = actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
    });
    let out = system.block_on(run(args));
    println!("{out}");
}

/// Appends `sessions` live SSO sessions, each as a login leaves it: started, and tokens issued
/// to one client (so it holds a current refresh token).
async fn seed_sessions(database_url: &str, sessions: usize) -> serde_json::Value {
    use annals_events::session::{SessionEvent, SessionStarted, SessionTokensIssued};
    let store = store::open(database_url).await.expect("store");
    let meta = Metadata::system("annals-load").with_realm("bench");
    let now = chrono::Utc::now().timestamp();
    let started = Instant::now();
    let mut batch = Vec::new();
    for i in 0..sessions {
        let start: DomainEvent = SessionEvent::from(SessionStarted {
            realm_id: "bench".into(),
            user_id: uuid::Uuid::new_v4().to_string(),
            method: "pwd".into(),
            acr: "1".into(),
            auth_time: now,
            idle_timeout: 36_000,
            max_lifespan: 36_000,
            offline_from: None,
            started_at: None,
        })
        .into();
        let tokens: DomainEvent = SessionEvent::from(SessionTokensIssued {
            client: uuid::Uuid::new_v4().to_string(),
            grant: "authorization_code".into(),
            access_token_id: Some(uuid::Uuid::new_v4().to_string()),
            id_token_id: Some(uuid::Uuid::new_v4().to_string()),
            refresh_token_id: Some(uuid::Uuid::new_v4().to_string()),
            replaces: None,
            scope: "openid email profile".into(),
            expires_at: now + 300,
            at: now,
        })
        .into();
        batch.push(StreamAppend {
            stream: StreamId::new(StreamType::Session, uuid::Uuid::new_v4().to_string()),
            expected: ExpectedVersion::Exact(0),
            events: vec![
                NewEvent::new(&start, &meta).expect("encodes"),
                NewEvent::new(&tokens, &meta).expect("encodes"),
            ],
        });
        if batch.len() == 1000 || i + 1 == sessions {
            store.append_all(std::mem::take(&mut batch)).await.expect("seed");
        }
    }
    store.shutdown().await;
    json!({"scenario": "seed_sessions", "result": {"sessions": sessions, "seconds": started.elapsed().as_secs_f64()}})
}
