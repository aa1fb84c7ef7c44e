//! The event store contract, run against SQLite and PostgreSQL alike.
use crate::support::{self, pg::TestDb};
use annals::store::{self, EventStore, ExpectedVersion, ReadUntil, SharedStore, Snapshot, StoreError, StreamAppend};
use annals::verify::{verify_chain, VerifyError};
use annals_events::chain::ChainBreak;
use annals_events::{NewEvent, StreamId, StreamType};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a contract test gets: the store under test and how to reach its database directly.
pub struct Ctx {
    pub store: SharedStore,
    pub raw: Raw,
}

pub enum Raw {
    Sqlite(String),
    Postgres(String),
}

impl Ctx {
    /// A second, independent store on the same database (another node).
    async fn another_node(&self) -> SharedStore {
        match &self.raw {
            Raw::Sqlite(p) | Raw::Postgres(p) => store::open(p).await.expect("second store"),
        }
    }

    /// Runs SQL outside the store, as an operator (or attacker) with direct access would.
    async fn raw_exec(&self, sql: &str) -> Result<(), sqlx::Error> {
        use sqlx::Connection;
        match &self.raw {
            Raw::Sqlite(p) => {
                let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{p}")).await?;
                sqlx::raw_sql(sql).execute(&mut c).await?;
            }
            Raw::Postgres(u) => {
                let mut c = sqlx::PgConnection::connect(u).await?;
                sqlx::raw_sql(sql).execute(&mut c).await?;
            }
        }
        Ok(())
    }
}

fn event(n: u64) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: "user.role_granted".into(),
        schema_version: 1,
        payload: format!("{{\"role_id\":\"r{n}\"}}"),
        metadata: "{}".into(),
    }
}

fn user(id: &str) -> StreamId {
    StreamId::new(StreamType::User, id)
}

fn append(id: &str, expected: u64, n: usize) -> StreamAppend {
    StreamAppend {
        stream: user(id),
        expected: ExpectedVersion::Exact(expected),
        events: (0..n as u64).map(event).collect(),
    }
}

async fn conflict_is_reported_and_nothing_written(ctx: Ctx) {
    let s = &ctx.store;
    let first = s.append(append("a", 0, 2)).await.unwrap();
    assert_eq!((first.first_version, first.last_version, first.first_position, first.last_position), (1, 2, 1, 2));
    let err = s.append(append("a", 0, 1)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { actual: 2, .. }), "{err:?}");
    let err = s.append(append("a", 5, 1)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { actual: 2, .. }), "{err:?}");
    assert_eq!(s.head().await.unwrap(), 2);
    let ok = s.append(append("a", 2, 1)).await.unwrap();
    assert_eq!((ok.last_version, ok.last_position), (3, 3));
}

async fn retried_append_is_idempotent(ctx: Ctx) {
    let s = &ctx.store;
    let req = append("a", 0, 3);
    let first = s.append(req.clone()).await.unwrap();
    let again = s.append(req.clone()).await.unwrap();
    assert_eq!(first, again);
    // Even a retry racing the original in one batch gives one copy.
    let req2 = append("b", 0, 1);
    let (x, y) = tokio::join!(s.append(req2.clone()), s.append(req2.clone()));
    assert_eq!(x.unwrap(), y.unwrap());
    assert_eq!(s.read_all(0, 100).await.unwrap().len(), 4);
    // Ids already stored, but sent to another stream: refused, not duplicated.
    let mut moved = req.clone();
    moved.stream = user("elsewhere");
    assert!(matches!(s.append(moved).await, Err(StoreError::IdempotencyMismatch { .. })));
}

async fn atomic_multi_stream_append_is_all_or_nothing(ctx: Ctx) {
    let s = &ctx.store;
    s.append(append("b", 0, 1)).await.unwrap();
    let err = s.append_all(vec![append("a", 0, 1), append("b", 0, 1)]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }));
    assert!(s.read_stream(&user("a"), 0, ReadUntil::End).await.unwrap().is_empty());
    let done = s.append_all(vec![append("a", 0, 1), append("b", 1, 2)]).await.unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!(s.head().await.unwrap(), 4);
}

/// A malformed request in a batch fails alone; the requests committed beside it succeed.
async fn a_bad_request_fails_alone(ctx: Ctx) {
    let s = &ctx.store;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut a = append(&format!("ok{i}"), 0, 1);
            if i % 5 == 0 {
                a.stream = user(&format!("bad\0{i}"));
            }
            (i, s.append(a).await)
        }));
    }
    for t in tasks {
        let (i, r) = t.await.unwrap();
        if i % 5 == 0 {
            assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
        } else {
            assert!(r.is_ok(), "{r:?}");
        }
    }
    assert_eq!(s.head().await.unwrap(), 16);
    verify_chain(&**s, |_| {}).await.unwrap();
}

async fn streams_read_by_version_and_time(ctx: Ctx) {
    let s = &ctx.store;
    s.append(append("a", 0, 3)).await.unwrap();
    s.append(append("other", 0, 2)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cut = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.append(append("a", 3, 2)).await.unwrap();
    let all = s.read_stream(&user("a"), 0, ReadUntil::End).await.unwrap();
    assert_eq!(all.iter().map(|e| e.version).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert!(all.iter().all(|e| e.stream == user("a")));
    assert_eq!(s.read_stream(&user("a"), 0, ReadUntil::Version(2)).await.unwrap().len(), 2);
    assert_eq!(s.read_stream(&user("a"), 3, ReadUntil::End).await.unwrap().len(), 2);
    assert_eq!(s.read_stream(&user("a"), 0, ReadUntil::Time(cut)).await.unwrap().len(), 3);
    let page = s.read_all(2, 3).await.unwrap();
    assert_eq!(page.iter().map(|e| e.position).collect::<Vec<_>>(), vec![3, 4, 5]);
    // Same stream id under another type is another stream.
    let role = StreamId::new(StreamType::Role, "a");
    assert!(s.read_stream(&role, 0, ReadUntil::End).await.unwrap().is_empty());
    s.append(StreamAppend { stream: role.clone(), expected: ExpectedVersion::Exact(0), events: vec![event(1)] })
        .await
        .unwrap();
    assert_eq!(s.read_stream(&role, 0, ReadUntil::End).await.unwrap().len(), 1);
}

/// The reads for folding carry everything a fold uses, exactly as the full reads do.
async fn payload_reads_match_full_reads(ctx: Ctx) {
    let s = &ctx.store;
    s.append(append("a", 0, 3)).await.unwrap();
    s.append(append("b", 0, 2)).await.unwrap();
    s.append(append("a", 3, 1)).await.unwrap();
    let same = |x: &[annals_events::RecordedEvent], y: &[annals_events::RecordedEvent]| {
        assert_eq!(x.len(), y.len());
        for (x, y) in x.iter().zip(y) {
            assert_eq!(
                (x.position, &x.stream, x.version, x.recorded_at, &x.event_type, x.schema_version, &x.payload),
                (y.position, &y.stream, y.version, y.recorded_at, &y.event_type, y.schema_version, &y.payload)
            );
        }
    };
    same(&s.read_all_payloads(1, 10).await.unwrap(), &s.read_all(1, 10).await.unwrap());
    same(&s.read_all_payloads(0, 2).await.unwrap(), &s.read_all(0, 2).await.unwrap());
    same(
        &s.read_stream_payloads(&user("a"), 1).await.unwrap(),
        &s.read_stream(&user("a"), 1, ReadUntil::End).await.unwrap(),
    );
    assert_eq!(s.read_stream_payloads(&user("a"), 0).await.unwrap().len(), 4);
    assert!(s.read_stream_payloads(&user("nobody"), 0).await.unwrap().is_empty());
    assert!(s.read_all_payloads(6, 10).await.unwrap().is_empty());
}

/// Folds read what this node committed last from memory, where a page may end early (at
/// another writer's commit); commits of another node (another process on SQLite) in between
/// must still reach the read models, in order and without a gap, without waiting for a later
/// commit.
async fn read_models_see_other_writers_commits(ctx: Ctx) {
    let (a, b) = (&ctx.store, ctx.another_node().await);
    a.append(append("a", 0, 2)).await.unwrap();
    b.append(append("b", 0, 2)).await.unwrap();
    a.append(append("a", 2, 2)).await.unwrap();
    let stored: Vec<(u64, String)> =
        a.read_all(0, 100).await.unwrap().into_iter().map(|e| (e.position, e.stream.id)).collect();
    assert_eq!(stored.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6]);
    for after in [0, 1, 2, 3, 4, 5] {
        // Paged as a fold pages: every page is a prefix of what the database holds.
        let (mut at, mut folded) = (after, Vec::new());
        while let Some(last) = {
            let page = a.read_all_payloads(at, 100).await.unwrap();
            folded.extend(page.iter().map(|e| (e.position, e.stream.id.clone())));
            page.last().map(|e| e.position)
        } {
            at = last;
        }
        assert_eq!(folded, stored[after as usize..].to_vec(), "after {after}");
    }
    let dir = std::sync::RwLock::new(annals_projections::Directory::default());
    assert_eq!(annals::readmodels::catch_up(a, &dir, 6, |_| {}).await.unwrap(), 6);
    let (at, _) = annals::sqlmodels::catch_up_from(a, 0, 0, Some(6), |_| {}).await.unwrap();
    assert_eq!(at, 6);
    b.shutdown().await;
}

async fn snapshots_keep_the_latest(ctx: Ctx) {
    let s = &ctx.store;
    let st = user("a");
    assert_eq!(s.load_snapshot(&st).await.unwrap(), None);
    for v in [10, 30, 20] {
        s.save_snapshot(Snapshot { stream: st.clone(), version: v, state: format!("{{\"v\":{v}}}") }).await.unwrap();
    }
    assert_eq!(s.load_snapshot(&st).await.unwrap().unwrap().version, 30);
}

/// 32 concurrent writers (spread over two store instances where the backend allows two nodes)
/// contend for 8 streams while a rogue transaction repeatedly takes the append lock, inserts a
/// row, sleeps and rolls back. A reader tailing the log must see every committed event exactly
/// once, positions strictly in order, and no rolled-back row.
async fn concurrent_writers_commit_in_position_order(ctx: Ctx) {
    let nodes: Vec<SharedStore> = match ctx.raw {
        Raw::Postgres(_) => vec![ctx.store.clone(), ctx.another_node().await],
        Raw::Sqlite(_) => vec![ctx.store.clone()],
    };
    let committed = Arc::new(AtomicU64::new(0));
    let conflicts = Arc::new(AtomicU64::new(0));
    let done = Arc::new(tokio::sync::Notify::new());

    let reader = {
        let s = ctx.store.clone();
        let committed = committed.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut last = 0u64;
            let mut seen = 0u64;
            let mut finished = false;
            loop {
                let page = s.read_all(last, 500).await.unwrap();
                for e in &page {
                    assert_eq!(e.position, last + 1, "position seen out of order");
                    assert!(!e.payload.contains("rogue"), "a rolled-back row became visible");
                    last = e.position;
                    seen += 1;
                }
                if page.is_empty() {
                    if finished && seen == committed.load(Ordering::SeqCst) {
                        return seen;
                    }
                    tokio::select! {
                        _ = done.notified() => finished = true,
                        _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                    }
                }
            }
        })
    };

    let rogue = {
        let raw = match &ctx.raw {
            Raw::Sqlite(p) => Raw::Sqlite(p.clone()),
            Raw::Postgres(u) => Raw::Postgres(u.clone()),
        };
        // Not spawned: sqlx's executor futures are not `Send` for every lifetime; join instead.
        async move {
            use sqlx::Connection;
            for i in 0..5 {
                tokio::time::sleep(Duration::from_millis(30)).await;
                let row = format!(
                    "INSERT INTO events (position, event_id, stream_type, stream_id, version, recorded_at_us, event_type, schema_version, payload, metadata, prev_hash, hash) \
                     SELECT COALESCE(MAX(position), 0) + 1, {id}, 'user', 'rogue{i}', 1, 0, 'user.deleted', 1, '{{\"rogue\":1}}', '{{}}', {b}, {b} FROM events",
                    id = match raw { Raw::Sqlite(_) => "randomblob(16)".to_string(), Raw::Postgres(_) => "gen_random_uuid()".into() },
                    b = match raw { Raw::Sqlite(_) => "zeroblob(32)".to_string(), Raw::Postgres(_) => "'\\x00'::bytea".into() },
                );
                match &raw {
                    Raw::Sqlite(p) => {
                        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{p}")).await.unwrap();
                        sqlx::raw_sql("PRAGMA busy_timeout = 10000; BEGIN IMMEDIATE").execute(&mut c).await.unwrap();
                        sqlx::raw_sql(&row).execute(&mut c).await.unwrap();
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        sqlx::raw_sql("ROLLBACK").execute(&mut c).await.unwrap();
                    }
                    Raw::Postgres(u) => {
                        let mut c = sqlx::PgConnection::connect(u).await.unwrap();
                        let mut tx = c.begin().await.unwrap();
                        sqlx::query("SELECT pg_advisory_xact_lock($1)")
                            .bind(0x616e_6e61_6c73_i64)
                            .execute(&mut *tx)
                            .await
                            .unwrap();
                        sqlx::raw_sql(&row).execute(&mut *tx).await.unwrap();
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        tx.rollback().await.unwrap();
                    }
                }
            }
        }
    };

    let mut writers = Vec::new();
    for w in 0..32u64 {
        let s = nodes[w as usize % nodes.len()].clone();
        let committed = committed.clone();
        let conflicts = conflicts.clone();
        writers.push(tokio::spawn(async move {
            let stream = user(&format!("shared{}", w % 8));
            let mut known = 0;
            let mut ok = 0;
            while ok < 25 {
                let n = 1 + (w % 3) as usize;
                match s
                    .append(StreamAppend {
                        stream: stream.clone(),
                        expected: ExpectedVersion::Exact(known),
                        events: (0..n as u64).map(event).collect(),
                    })
                    .await
                {
                    Ok(a) => {
                        known = a.last_version;
                        committed.fetch_add(n as u64, Ordering::SeqCst);
                        ok += 1;
                    }
                    Err(StoreError::Conflict { actual, .. }) => {
                        known = actual;
                        conflicts.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => panic!("append failed: {e}"),
                }
            }
        }));
    }
    let all_writers = async {
        for w in writers {
            w.await.unwrap();
        }
    };
    tokio::join!(all_writers, rogue);
    done.notify_one();
    let seen = tokio::time::timeout(Duration::from_secs(30), reader).await.expect("reader caught up").unwrap();
    assert_eq!(seen, committed.load(Ordering::SeqCst));
    assert!(conflicts.load(Ordering::SeqCst) > 0, "the test must exercise conflicts");
    assert_eq!(ctx.store.head().await.unwrap(), seen);
    verify_chain(&*ctx.store, |_| {}).await.expect("chain verifies after contention");
}

async fn tampering_is_refused_or_detected(ctx: Ctx) {
    let s = &ctx.store;
    for i in 0..6 {
        s.append(append(&format!("t{i}"), 0, 1)).await.unwrap();
    }
    let report = verify_chain(&**s, |_| {}).await.unwrap();
    assert_eq!((report.events, report.head_position), (6, 6));

    // The append-only guard refuses a plain UPDATE and DELETE.
    let err = ctx.raw_exec("UPDATE events SET payload = '{}' WHERE position = 3").await.unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let err = ctx.raw_exec("DELETE FROM events WHERE position = 3").await.unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");

    // A superuser who bypasses the guard edits one payload byte: verify names the position.
    let edit = "UPDATE events SET payload = replace(payload, 'r0', 'r9') WHERE position = 3";
    match ctx.raw {
        Raw::Sqlite(_) => ctx.raw_exec(&format!("DROP TRIGGER events_no_update; {edit}")).await.unwrap(),
        Raw::Postgres(_) => ctx.raw_exec(&format!("SET session_replication_role = replica; {edit}")).await.unwrap(),
    }
    match verify_chain(&**s, |_| {}).await {
        Err(VerifyError::Broken(ChainBreak::HashMismatch { position: 3 })) => {}
        other => panic!("expected a hash mismatch at 3, got {other:?}"),
    }
}

async fn deleted_row_is_detected(ctx: Ctx) {
    let s = &ctx.store;
    for i in 0..6 {
        s.append(append(&format!("t{i}"), 0, 1)).await.unwrap();
    }
    let delete = "DELETE FROM events WHERE position = 4";
    match ctx.raw {
        Raw::Sqlite(_) => ctx.raw_exec(&format!("DROP TRIGGER events_no_delete; {delete}")).await.unwrap(),
        Raw::Postgres(_) => ctx.raw_exec(&format!("SET session_replication_role = replica; {delete}")).await.unwrap(),
    }
    match verify_chain(&**s, |_| {}).await {
        Err(VerifyError::Broken(ChainBreak::Gap { expected: 4, found: 5 })) => {}
        other => panic!("expected a gap at 4, got {other:?}"),
    }
}

async fn head_moves_for_every_subscriber(ctx: Ctx) {
    let mut local = ctx.store.watch_head();
    let other = match ctx.raw {
        Raw::Postgres(_) => Some(ctx.another_node().await),
        Raw::Sqlite(_) => None,
    };
    let mut remote = other.as_ref().map(|o| o.watch_head());
    ctx.store.append(append("a", 0, 2)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(1), local.wait_for(|h| *h >= 2)).await.unwrap().unwrap();
    if let Some(r) = remote.as_mut() {
        // The other node learns of this node's commit through NOTIFY within a second.
        tokio::time::timeout(Duration::from_secs(1), r.wait_for(|h| *h >= 2))
            .await
            .expect("remote head moved")
            .unwrap();
    }
}

async fn a_deferred_append_commits_ahead_of_the_next_append_in_its_transaction(ctx: Ctx) {
    let s = &ctx.store;
    let mut shared = 0;
    // Three times, since the writer's tick may commit a deferred append on its own just before
    // the next append arrives (a window of microseconds in 50 ms).
    for id in ["d1", "d2", "d3"] {
        // Given a new stream's creation deferred,
        let deferred = s.append_deferred(vec![append(id, 0, 1)]).await.unwrap();
        // when an append builds on it (as the next step of a login does) before it committed,
        let next = s.append(append(id, 1, 1)).await.unwrap();
        // then both commit, the deferred one first, and (but for that tick) in one transaction.
        let first = tokio::time::timeout(Duration::from_secs(5), deferred).await.unwrap().unwrap().unwrap();
        assert_eq!((first[0].last_version, first[0].last_position + 1), (1, next.first_position));
        let log = s.read_stream(&user(id), 0, ReadUntil::End).await.unwrap();
        assert_eq!(log.len(), 2);
        shared += usize::from(log[0].recorded_at == log[1].recorded_at);
    }
    assert!(shared > 0, "a deferred append never shared the next append's transaction");
}

async fn a_deferred_append_alone_commits_within_its_bound_and_expects_an_exact_version(ctx: Ctx) {
    let s = &ctx.store;
    s.append(append("a", 0, 1)).await.unwrap();
    // An append that expects no particular version is not deferred: going ahead of appends
    // queued before it, it could land out of order instead of conflicting.
    let any = StreamAppend { expected: ExpectedVersion::Any, ..append("a", 1, 1) };
    let err = s.append_deferred(vec![any]).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    // With nothing else appended, deferred appends commit on their own (on the writer's
    // tick), not only at shutdown: a creation, and one to a stream that exists.
    let deferred = s.append_deferred(vec![append("d", 0, 2), append("a", 1, 1)]).await.unwrap();
    let done = tokio::time::timeout(Duration::from_secs(5), deferred).await.unwrap().unwrap().unwrap();
    assert_eq!((done[0].last_version, done[0].last_position), (2, 3));
    assert_eq!((done[1].last_version, done[1].last_position), (2, 4));
    assert_eq!(s.read_stream(&user("d"), 0, ReadUntil::End).await.unwrap().len(), 2);
    // One that expects a version the stream is not at conflicts, as any append does.
    let stale = s.append_deferred(vec![append("a", 1, 1)]).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), stale).await.unwrap().unwrap().unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_eq!(s.read_stream(&user("a"), 0, ReadUntil::End).await.unwrap().len(), 2);
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, dir) = support::sqlite_store().await;
                    let path = dir.path().join("annals.db").to_string_lossy().to_string();
                    super::$name(super::Ctx { store: store.clone(), raw: super::Raw::Sqlite(path) }).await;
                    store.shutdown().await;
                }
            )*
            use super::support;
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = TestDb::create().await else { return };
                    let store = annals::store::open(&db.url).await.expect("open postgres store");
                    super::$name(super::Ctx { store: store.clone(), raw: super::Raw::Postgres(db.url.clone()) }).await;
                    store.shutdown().await;
                }
            )*
            use super::TestDb;
        }
    };
}

/// One raw event of a stream type with this payload.
fn raw(event_type: &str, payload: &str) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: event_type.into(),
        schema_version: 1,
        payload: payload.into(),
        metadata: "{}".into(),
    }
}

async fn the_incident_indexes_find_a_users_streams_and_the_directory(ctx: Ctx) {
    let s = &ctx.store;
    let started = |user: &str| raw("session.started", &format!(r#"{{"realm_id":"r","user_id":"{user}"}}"#));
    let one = |kind: StreamType, id: &str, e: NewEvent| StreamAppend {
        stream: StreamId::new(kind, id),
        expected: ExpectedVersion::Exact(0),
        events: vec![e],
    };
    s.append_all(vec![
        one(StreamType::Realm, "r", raw("realm.created", r#"{"name":"demo"}"#)),
        one(StreamType::Client, "c", raw("client.created", r#"{"client_id":"web"}"#)),
        one(StreamType::Session, "s1", started("alice")),
        one(StreamType::Session, "s2", started("bob")),
        one(StreamType::AuthRequest, "a1", raw("auth_request.authenticated", r#"{"user_id":"alice"}"#)),
        // The same payload field in an event type outside the index's list: not found.
        one(StreamType::User, "x", raw("user.profile_changed", r#"{"user_id":"alice"}"#)),
    ])
    .await
    .unwrap();
    let t0 = chrono::Utc::now() - chrono::Duration::minutes(1);
    s.append(StreamAppend {
        stream: StreamId::new(StreamType::Session, "s1"),
        expected: ExpectedVersion::Exact(1),
        events: vec![raw("session.tokens_issued", r#"{"client":"c"}"#)],
    })
    .await
    .unwrap();
    let mut found = s.streams_naming_user("alice").await.unwrap();
    found.sort();
    assert_eq!(found, vec![StreamId::new(StreamType::AuthRequest, "a1"), StreamId::new(StreamType::Session, "s1")]);
    assert!(s.streams_naming_user("nobody").await.unwrap().is_empty());
    let t1 = chrono::Utc::now() + chrono::Duration::minutes(1);
    let events = s.read_streams_between(&found, t0, t1).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, vec!["session.started", "auth_request.authenticated", "session.tokens_issued"], "log order");
    assert!(events.windows(2).all(|w| w[0].position < w[1].position));
    let past = s.read_streams_between(&found, t0 - chrono::Duration::hours(1), t0 - chrono::Duration::minutes(30));
    assert!(past.await.unwrap().is_empty(), "outside the window");
    assert!(s.read_streams_between(&[], t0, t1).await.unwrap().is_empty());
    let dir: Vec<String> = s.read_directory().await.unwrap().into_iter().map(|e| e.event_type).collect();
    assert_eq!(dir, vec!["realm.created", "client.created"]);
}

contract!(
    the_incident_indexes_find_a_users_streams_and_the_directory,
    conflict_is_reported_and_nothing_written,
    retried_append_is_idempotent,
    atomic_multi_stream_append_is_all_or_nothing,
    a_bad_request_fails_alone,
    streams_read_by_version_and_time,
    payload_reads_match_full_reads,
    read_models_see_other_writers_commits,
    snapshots_keep_the_latest,
    concurrent_writers_commit_in_position_order,
    tampering_is_refused_or_detected,
    deleted_row_is_detected,
    head_moves_for_every_subscriber,
    a_deferred_append_commits_ahead_of_the_next_append_in_its_transaction,
    a_deferred_append_alone_commits_within_its_bound_and_expects_an_exact_version,
);

/// A node stopping commits what it deferred before it reports stopped. Tried until once the
/// append was still queued when the stop began (the writer's tick may commit it first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_shutdown_commits_deferred_appends() {
    let mut queued_at_stop = false;
    for _ in 0..5 {
        let (s, dir) = support::sqlite_store().await;
        let deferred = s.append_deferred(vec![append("d", 0, 1)]).await.unwrap();
        let before = s.read_stream(&user("d"), 0, ReadUntil::End).await.unwrap().is_empty();
        s.shutdown().await;
        assert_eq!(deferred.await.unwrap().unwrap()[0].last_version, 1);
        let again = store::open(dir.path().join("annals.db").to_str().unwrap()).await.unwrap();
        assert_eq!(again.read_stream(&user("d"), 0, ReadUntil::End).await.unwrap().len(), 1);
        again.shutdown().await;
        if before {
            queued_at_stop = true;
            break;
        }
    }
    assert!(queued_at_stop, "the tick committed the append before the stop every time");
}

#[allow(dead_code)]
fn _assert_object_safe(_: &dyn EventStore) {}

/// The writer's connection and the flusher's are cut from under a running store (a failover,
/// an operator's `pg_terminate_backend`): appends fail for a moment, never half-commit, and
/// the store reconnects on its own; the head watch keeps moving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_writer_reconnects_after_its_connections_are_cut() {
    let Some(db) = TestDb::create().await else { return };
    let store = annals::store::open(&db.url).await.expect("open postgres store");
    let ctx = Ctx { store: store.clone(), raw: Raw::Postgres(db.url.clone()) };
    store.append(append("before", 0, 1)).await.unwrap();
    ctx.raw_exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await
    .unwrap();
    // The first append after the cut may fail (its connection is dead); one retried with the
    // same event ids succeeds once the writer has reconnected, and is stored once.
    let retried = append("after", 0, 1);
    let mut outcome = None;
    for _ in 0..5 {
        match store.append(retried.clone()).await {
            Ok(a) => {
                outcome = Some(a);
                break;
            }
            Err(StoreError::Engine(_)) | Err(StoreError::Database(_)) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("unexpected error after the cut: {e}"),
        }
    }
    let appended = outcome.expect("the writer reconnected");
    assert_eq!(appended.last_position, 2, "nothing was half-committed or duplicated");
    let mut head = store.watch_head();
    // At once, not at the 5 s poll: a replay that writes nothing still reports the head.
    tokio::time::timeout(Duration::from_secs(1), head.wait_for(|h| *h >= 2)).await.expect("head moved").unwrap();
    let next = store.append(append("later", 0, 1)).await.expect("appends work again");
    assert_eq!(next.last_position, 3);
    let events = store.read_all(0, 10).await.unwrap();
    assert_eq!(events.iter().map(|e| e.position).collect::<Vec<_>>(), vec![1, 2, 3]);
    store.shutdown().await;
}

/// Commits a row asynchronously (WAL that only the WAL writer would flush, in its own time);
/// returns the WAL insert position after it.
async fn unflushed(raw: &mut sqlx::PgConnection) -> String {
    sqlx::query("INSERT INTO flush_probe VALUES (1)").execute(&mut *raw).await.unwrap();
    sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text").fetch_one(&mut *raw).await.unwrap()
}

async fn flushed_past(raw: &mut sqlx::PgConnection, lsn: String) -> bool {
    sqlx::query_scalar("SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn").bind(lsn).fetch_one(&mut *raw).await.unwrap()
}

/// Batches commit asynchronously; an acknowledgement must still mean "on disk". Each round
/// leaves WAL that only PostgreSQL's WAL writer would flush, in its own time, then appends:
/// once the append is acknowledged (or `head()` answers), the WAL must be flushed past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_acknowledges_an_append_only_once_the_wal_is_flushed_past_it() {
    use sqlx::Connection;
    let Some(db) = TestDb::create().await else { return };
    let store = annals::store::open(&db.url).await.expect("open postgres store");
    let mut raw = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE flush_probe (n int); SET synchronous_commit = off").execute(&mut raw).await.unwrap();
    for round in 0..20 {
        let lsn = unflushed(&mut raw).await;
        store.append(append(&format!("s{round}"), 0, 1)).await.unwrap();
        assert!(flushed_past(&mut raw, lsn.clone()).await, "round {round}: acknowledged before the flush ({lsn})");
        let lsn = unflushed(&mut raw).await;
        store.head().await.unwrap();
        assert!(flushed_past(&mut raw, lsn.clone()).await, "round {round}: head() read before the flush ({lsn})");
    }
    store.shutdown().await;
}

/// The insert and COMMIT travel together: when the insert fails, PostgreSQL answers that
/// COMMIT with a rollback, the culprit alone fails (its batch is retried request by request),
/// and the same connection serves the next batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_insert_failing_mid_pipeline_rolls_back_and_the_writer_goes_on() {
    let Some(db) = TestDb::create().await else { return };
    let store = annals::store::open(&db.url).await.expect("open postgres store");
    let ctx = Ctx { store: store.clone(), raw: Raw::Postgres(db.url.clone()) };
    ctx.raw_exec(
        "CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN \
           IF NEW.payload LIKE '%boom%' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER boom BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION boom();",
    )
    .await
    .unwrap();
    let bad = |id: &str| {
        let mut a = append(id, 0, 1);
        a.events[0].payload = r#"{"role_id":"boom"}"#.into();
        a
    };
    let err = store.append(bad("bad")).await.unwrap_err();
    assert!(err.to_string().contains("boom"), "{err}");
    // Good and bad requests racing into shared batches.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        let req = if i % 4 == 0 { bad(&format!("bad{i}")) } else { append(&format!("good{i}"), 0, 1) };
        tasks.push(tokio::spawn(async move { (i % 4 == 0, store.append(req).await) }));
    }
    for t in tasks {
        let (is_bad, r) = t.await.unwrap();
        assert_eq!(r.is_err(), is_bad, "{r:?}");
    }
    let events = store.read_all(0, 100).await.unwrap();
    assert_eq!(events.iter().map(|e| e.position).collect::<Vec<_>>(), (1..=30).collect::<Vec<_>>());
    assert!(events.iter().all(|e| !e.payload.contains("boom")));
    let next = store.append(append("after", 0, 1)).await.unwrap();
    assert_eq!(next.last_position, 31);
    store.shutdown().await;
}

/// SQLite names the WAL after the file's real path: a database reached through a symbolic
/// link must still be flushed through the WAL SQLite writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_through_a_symbolic_link_flushes_the_wal_sqlite_writes() {
    let (real, link) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let target = real.path().join("annals.db");
    std::fs::File::create(&target).unwrap();
    std::os::unix::fs::symlink(&target, link.path().join("annals.db")).unwrap();
    let store = store::open(link.path().join("annals.db").to_str().unwrap()).await.expect("open through the link");
    let a = store.append(append("a", 0, 1)).await.unwrap();
    assert_eq!(a.last_position, 1);
    assert!(real.path().join("annals.db-wal").exists(), "SQLite writes the WAL beside the real file");
    let mut head = store.watch_head();
    tokio::time::timeout(Duration::from_secs(1), head.wait_for(|h| *h >= 1)).await.unwrap().unwrap();
    store.shutdown().await;
}

/// Under a steady write load a PASSIVE checkpoint never finds the WAL caught up, and SQLite
/// never starts it over: the checkpointer must start it over past its bound, without
/// shrinking the file (so syncs do not have to write its size again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_stays_bounded_under_a_steady_write_load() {
    let (store, dir) = support::sqlite_store().await;
    let wal = dir.path().join("annals.db-wal");
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..3_000 {
                    store.append(append(&format!("w{w}-{i}"), 0, 1)).await.unwrap();
                }
            })
        })
        .collect();
    let (mut largest, mut shrank) = (0, None);
    for w in writers {
        while !w.is_finished() {
            let len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
            // Only `journal_size_limit` may cut the file, and only back to 128 MiB.
            if len < largest.min(128 * 1024 * 1024) {
                shrank.get_or_insert((largest, len));
            }
            largest = largest.max(len);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        w.await.unwrap();
    }
    // 24,000 single-event commits write far more than the bound's 64 MiB of frames when the
    // WAL is never started over; started over, it stays near the bound.
    assert!(largest < 160 * 1024 * 1024, "WAL grew to {largest} bytes");
    assert_eq!(shrank, None, "the WAL file was cut (from, to) instead of being started over");
    // Once the checkpointer has caught up, the next commit writes from the start of the
    // file again: the WAL then holds a handful of frames.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    store.append(append("after-the-load", 0, 1)).await.unwrap();
    let annals::store::DbPool::Sqlite(pool) = store.pool() else { unreachable!("a SQLite store") };
    // The background checkpointer may hold the checkpoint lock for a moment: ask again then.
    let mut answer = (1, -1, -1);
    for _ in 0..50 {
        answer = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&pool).await.unwrap();
        if answer.0 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (busy, frames, _): (i64, i64, i64) = answer;
    assert_eq!(busy, 0, "the checkpoint could not run");
    assert!((0..100).contains(&frames), "the WAL was not started over: {frames} frames");
    store.shutdown().await;
}
