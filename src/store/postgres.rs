//! PostgreSQL event store: the production store, shared by any number of nodes.
//!
//! Every batch takes a transaction-scoped advisory lock before reading the head. Positions
//! are therefore assigned and committed in order across nodes: a reader can never see N+1
//! before N. NOTIFY (delivered at commit) wakes the other nodes' projection runners.
use super::plan::{self, FactRow, Facts, Outcome};
use super::rows::{decode_event_row, EVENT_COLUMNS};
use super::writer::{Backend, Writer};
use super::{Appended, EventStore, ReadUntil, Snapshot, StoreError, StreamAppend};
use annals_events::{RecordedEvent, StreamId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool, Row};
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The advisory lock key that serializes appends (an arbitrary constant: "annals").
const APPEND_LOCK: i64 = 0x616e_6e61_6c73;
pub(crate) const NOTIFY_CHANNEL: &str = "annals_events";

pub struct PgStore {
    pool: PgPool,
    /// The runtime the store was opened on: snapshot writes run there, so an actor's arbiter
    /// stopping mid-write cannot drop a pooled connection outside a runtime.
    runtime: tokio::runtime::Handle,
    writer: Writer,
    head: Arc<watch::Sender<u64>>,
    listener: JoinHandle<()>,
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let opts = PgConnectOptions::from_str(url)?.disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await.map_err(|e| StoreError::Migration(e.to_string()))?;
        let head_now = head_position(&pool).await?;
        let head = Arc::new(watch::channel(head_now).0);
        // The writer's own pool lives on the writer's runtime (one connection is all it uses;
        // a second lets a broken one be replaced without waiting).
        let connect = move || async move {
            let pool = PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            Ok(PgWriter { pool })
        };
        let writer = Writer::spawn(connect, head.clone(), "postgres").await?;
        let listener = tokio::spawn(follow_other_nodes(pool.clone(), head.clone()));
        Ok(PgStore { pool, runtime: tokio::runtime::Handle::current(), writer, head, listener })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

async fn head_position(pool: &PgPool) -> Result<u64, StoreError> {
    let p: Option<i64> = sqlx::query_scalar("SELECT MAX(position) FROM events").fetch_one(pool).await?;
    Ok(p.unwrap_or(0) as u64)
}

/// Moves the head watch when another node commits. NOTIFY is the fast path; a slow poll (5 s)
/// covers notifications lost while the listener reconnects.
async fn follow_other_nodes(pool: PgPool, head: Arc<watch::Sender<u64>>) {
    let mut poll = tokio::time::interval(Duration::from_secs(5));
    let mut listener = None;
    loop {
        if listener.is_none() {
            match PgListener::connect_with(&pool).await {
                Ok(mut l) => {
                    if l.listen(NOTIFY_CHANNEL).await.is_ok() {
                        listener = Some(l);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "LISTEN connection failed; polling"),
            }
        }
        tokio::select! {
            n = async { listener.as_mut().expect("checked").recv().await }, if listener.is_some() => match n {
                Ok(n) => if let Ok(p) = n.payload().parse() { super::advance(&head, p) },
                Err(_) => listener = None,
            },
            _ = poll.tick() => if let Ok(p) = head_position(&pool).await { super::advance(&head, p) },
        }
    }
}

struct PgWriter {
    pool: PgPool,
}

#[async_trait]
impl Backend for PgWriter {
    async fn commit(
        &mut self,
        requests: &[&[StreamAppend]],
        now: DateTime<Utc>,
    ) -> Result<(Vec<Outcome>, u64), StoreError> {
        // READ COMMITTED whatever the database default: the head must be read after the lock
        // is granted, not from a snapshot taken before it. A stuck lock holder fails the batch
        // after 30 s instead of blocking every node forever. Plans: generic (planned once per
        // connection, not per batch) and never sequential scans, so a plan made while the
        // table was small stays right when it is large.
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL READ COMMITTED").await?;
        sqlx::query(
            "SELECT set_config('lock_timeout', '30s', true), set_config('plan_cache_mode', 'force_generic_plan', true), \
             set_config('enable_seqscan', 'off', true), pg_advisory_xact_lock($1)",
        )
        .bind(APPEND_LOCK)
        .execute(&mut *tx)
        .await?;
        // After the lock, in a new statement (so a new READ COMMITTED snapshot): the head, the
        // batch's event ids that already exist, and each stream's version, in one round trip.
        let ids: Vec<uuid::Uuid> =
            requests.iter().flat_map(|r| r.iter()).flat_map(|a| a.events.iter().map(|e| e.event_id)).collect();
        let stream_ids: HashSet<&str> = requests.iter().flat_map(|r| r.iter()).map(|a| a.stream.id.as_str()).collect();
        let stream_ids: Vec<&str> = stream_ids.into_iter().collect();
        let rows = sqlx::query(
            "SELECT 0 AS k, position, hash, NULL::uuid AS id, NULL AS st, NULL AS sid, NULL::bigint AS v \
               FROM (SELECT position, hash FROM events ORDER BY position DESC LIMIT 1) h \
             UNION ALL SELECT 1, e.position, NULL, e.event_id, e.stream_type, e.stream_id, e.version \
               FROM unnest($1::uuid[]) i(id) JOIN events e ON e.event_id = i.id \
             UNION ALL SELECT 2, NULL, NULL, NULL, v.stream_type, s.sid, v.version FROM unnest($2::text[]) s(sid) \
               CROSS JOIN LATERAL (SELECT stream_type, MAX(version) AS version FROM events WHERE stream_id = s.sid \
               GROUP BY stream_type) v",
        )
        .bind(&ids)
        .bind(&stream_ids)
        .fetch_all(&mut *tx)
        .await?;
        let mut facts = Facts::default();
        for row in rows {
            facts.add(FactRow {
                kind: row.try_get::<i32, _>(0)? as i64,
                position: row.try_get(1)?,
                hash: row.try_get(2)?,
                event_id: row.try_get(3)?,
                stream_type: row.try_get(4)?,
                stream_id: row.try_get(5)?,
                version: row.try_get(6)?,
            })?;
        }
        let (rows, outcomes) = plan::plan(requests, facts, now);
        let new_head = rows.last().map(|r| r.position).unwrap_or(0);
        if !rows.is_empty() {
            // One statement for the whole batch (arrays unnest into rows, no bind-count limit),
            // and the NOTIFY in the same round trip; it is delivered at commit.
            sqlx::query(&format!(
                "WITH ins AS (INSERT INTO events ({EVENT_COLUMNS}) SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], \
                 $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::int[], $9::text[], $10::text[], $11::bytea[], $12::bytea[]) \
                 RETURNING 1) SELECT pg_notify($13, $14), (SELECT count(*) FROM ins)"
            ))
            .bind(rows.iter().map(|r| r.position as i64).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.event_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.stream.kind.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.stream.id.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.version as i64).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.recorded_at.timestamp_micros()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.event_type.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.schema_version as i32).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.payload.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.metadata.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.prev_hash.to_vec()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.hash.to_vec()).collect::<Vec<_>>())
            .bind(NOTIFY_CHANNEL)
            .bind(new_head.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok((outcomes, new_head))
    }
}

#[async_trait]
impl EventStore for PgStore {
    async fn append_all(&self, appends: Vec<StreamAppend>) -> Result<Vec<Appended>, StoreError> {
        self.writer.append(appends).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        after_version: u64,
        until: ReadUntil,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let (cond, bound) = match until {
            ReadUntil::End => ("", i64::MAX),
            ReadUntil::Version(v) => (" AND version <= $4", v as i64),
            ReadUntil::Time(t) => (" AND recorded_at_us <= $4", t.timestamp_micros()),
        };
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND stream_type = $2 AND version > $3{cond} ORDER BY version"
        );
        let mut q = sqlx::query(&sql)
            .bind(&stream.id)
            .bind(stream.kind.as_str())
            .bind(after_version.min(i64::MAX as u64) as i64);
        if !cond.is_empty() {
            q = q.bind(bound);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok(decode_event_row!(r))).collect()
    }

    async fn read_all(&self, after_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2");
        let rows = sqlx::query(&sql)
            .bind(after_position.min(i64::MAX as u64) as i64)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(decode_event_row!(r))).collect()
    }

    async fn head(&self) -> Result<u64, StoreError> {
        head_position(&self.pool).await
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        let row = sqlx::query("SELECT version, state FROM snapshots WHERE stream_type = $1 AND stream_id = $2 ORDER BY version DESC LIMIT 1")
            .bind(stream.kind.as_str())
            .bind(&stream.id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => {
                Some(Snapshot { stream: stream.clone(), version: r.try_get::<i64, _>(0)? as u64, state: r.try_get(1)? })
            }
            None => None,
        })
    }

    async fn save_snapshot(&self, s: Snapshot) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        let write = self.runtime.spawn(async move {
            sqlx::query("INSERT INTO snapshots (stream_type, stream_id, version, state) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
                .bind(s.stream.kind.as_str())
                .bind(&s.stream.id)
                .bind(s.version as i64)
                .bind(&s.state)
                .execute(&pool)
                .await
        });
        write.await.map_err(|_| StoreError::Closed)??;
        Ok(())
    }

    fn pool(&self) -> super::DbPool {
        super::DbPool::Postgres(self.pool.clone())
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn shutdown(&self) {
        self.writer.shutdown().await;
        self.listener.abort();
    }
}
