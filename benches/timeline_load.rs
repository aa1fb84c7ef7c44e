//! `annals-load timeline`: `annals timeline` for one user in a large log.
//!
//! The log is seeded with `events` events: SSO sessions (one `session.started` and four
//! `session.tokens_issued` each) of many users, with the target user's sessions spread
//! evenly through it. The timeline's window covers the whole log (the seeding takes minutes,
//! not 30 days, so a 30-day window is the whole log: the worst case for the time filter).
//! The figure is the median time of the whole gathering (directory, user lookup, index,
//! reads, audit records); the baseline is the bare read of the same streams' events.
use super::{median, user_created};
use annals::cli::timeline::{gather, TimelineRequest};
use annals::store::{self, ExpectedVersion, SharedStore, StreamAppend};
use annals_events::realm::{RealmCreated, RealmEvent, RealmSettings};
use annals_events::session::{SessionEvent, SessionStarted, SessionTokensIssued};
use annals_events::{DomainEvent, Metadata, NewEvent, StreamId, StreamType};
use serde_json::json;
use std::time::Instant;

const REALM: &str = "load";
/// The target user's id, and the username `user_created(REALM, 0)` gives it.
const TARGET: &str = "target-user";
const TARGET_NAME: &str = "user0000000";
/// Events per session stream.
const PER_SESSION: usize = 5;

fn session(user: &str, n: usize, meta: &Metadata) -> StreamAppend {
    let started: DomainEvent = SessionEvent::from(SessionStarted {
        realm_id: REALM.into(),
        user_id: user.into(),
        method: "pwd".into(),
        acr: "1".into(),
        auth_time: 1_800_000_000,
        idle_timeout: 1_800,
        max_lifespan: 36_000,
        offline_from: None,
        started_at: None,
    })
    .into();
    let mut events = vec![NewEvent::new(&started, meta).expect("encodes")];
    for i in 1..PER_SESSION {
        let issued: DomainEvent = SessionEvent::from(SessionTokensIssued {
            client: "web".into(),
            grant: if i == 1 { "authorization_code" } else { "refresh_token" }.into(),
            access_token_id: Some(format!("at-{n}-{i}")),
            id_token_id: None,
            refresh_token_id: Some(format!("rt-{n}-{i}")),
            replaces: (i > 1).then(|| format!("rt-{n}-{}", i - 1)),
            scope: "openid profile".into(),
            expires_at: 1_800_000_300,
            at: 1_800_000_000,
        })
        .into();
        events.push(NewEvent::new(&issued, meta).expect("encodes"));
    }
    StreamAppend {
        stream: StreamId::new(StreamType::Session, uuid::Uuid::now_v7().to_string()),
        expected: ExpectedVersion::Exact(0),
        events,
    }
}

async fn seed(store: &SharedStore, events: usize, target_sessions: usize) -> (u64, f64) {
    let meta = Metadata::system("annals-load").with_realm(REALM);
    let realm: DomainEvent = RealmEvent::from(RealmCreated {
        name: REALM.into(),
        settings: RealmSettings::default(),
        extra: Default::default(),
    })
    .into();
    let target = NewEvent::new(&user_created(REALM, 0), &meta).expect("encodes");
    store
        .append_all(vec![
            StreamAppend {
                stream: StreamId::new(StreamType::Realm, REALM),
                expected: ExpectedVersion::Exact(0),
                events: vec![NewEvent::new(&realm, &meta).expect("encodes")],
            },
            StreamAppend {
                stream: StreamId::new(StreamType::User, TARGET),
                expected: ExpectedVersion::Exact(0),
                events: vec![target],
            },
        ])
        .await
        .expect("realm and user");
    let sessions = events / PER_SESSION;
    let every = (sessions / target_sessions.max(1)).max(1);
    let started = Instant::now();
    let mut n = 0;
    while n < sessions {
        let batch: Vec<StreamAppend> = (n..(n + 1_000).min(sessions))
            .map(|k| {
                let user = if k % every == 0 { TARGET.to_string() } else { format!("user-{}", k % 200_000) };
                session(&user, k, &meta)
            })
            .collect();
        n += batch.len();
        store.append_all(batch).await.expect("sessions");
    }
    (store.head().await.expect("head"), started.elapsed().as_secs_f64())
}

pub async fn run(database_url: &str, events: usize, target_sessions: usize, runs: usize) -> serde_json::Value {
    let store = store::open(database_url).await.expect("store");
    let (head, seed_s) = if store.head().await.expect("head") == 0 {
        seed(&store, events, target_sessions).await
    } else {
        (store.head().await.expect("head"), 0.0)
    };
    let req = TimelineRequest {
        realm: REALM.into(),
        user: TARGET_NAME.into(),
        client: None,
        from: chrono::Utc::now() - chrono::Duration::days(30),
        to: chrono::Utc::now() + chrono::Duration::minutes(1),
    };
    // The first run brings the users read model up to the head, as a running server keeps it.
    let t = Instant::now();
    let first = gather(&store, &req).await.expect("timeline");
    let first_s = t.elapsed().as_secs_f64();
    let (mut totals, mut bases, mut index) = (Vec::new(), Vec::new(), Vec::new());
    let mut records = first.records.len();
    for _ in 0..runs {
        let t = Instant::now();
        let streams = store.streams_naming_user(TARGET).await.expect("index");
        index.push(t.elapsed().as_secs_f64() * 1e3);
        let _ = store.read_streams_between(&streams, req.from, req.to).await.expect("read");
        bases.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        records = gather(&store, &req).await.expect("timeline").records.len();
        totals.push(t.elapsed().as_secs_f64() * 1e3);
    }
    store.shutdown().await;
    let (total, base) = (median(totals), median(bases));
    json!({"scenario": "timeline", "store": store.backend(), "events": head, "records": records,
           "result": {"timeline_median_ms": total, "baseline_index_and_read_median_ms": base,
                      "ratio_to_baseline": total / base, "index_lookup_median_ms": median(index),
                      "first_run_with_users_model_catch_up_s": first_s, "seed_s": seed_s, "runs": runs}})
}
