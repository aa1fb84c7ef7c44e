//! PostgreSQL event store: the production store, shared by any number of nodes.
//!
//! Every batch takes a transaction-scoped advisory lock before reading the head. Positions
//! are therefore assigned and committed in order across nodes: a reader can never see N+1
//! before N. Batches commit without waiting for the disk and are acknowledged once a flush
//! (`PgFlush`) has made them durable; that flush's NOTIFY wakes the projection runners of
//! every node, which read no further than the position it announces.
use super::pg_writer::PgWriter;
use super::rows::{decode_event_row, EVENT_COLUMNS};
use super::writer::Writer;
use super::{Appended, EventStore, ReadUntil, Snapshot, StoreError, StreamAppend};
use annals_events::{RecordedEvent, StreamId};
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool, Row};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The advisory lock key that serializes appends (an arbitrary constant: "annals").
pub(crate) const APPEND_LOCK: i64 = 0x616e_6e61_6c73;
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
        // The writer's connection lives on the writer's runtime, the flusher's on its own.
        let flush_opts = opts.clone();
        let config = super::pg_config::writer_config(url, &opts)?;
        let connect = move || async move { PgWriter::connect(config, flush_opts).await };
        let writer = Writer::spawn(connect, head.clone(), "postgres").await?;
        let listener = tokio::spawn(follow_other_nodes(pool.clone(), head.clone()));
        Ok(PgStore { pool, runtime: tokio::runtime::Handle::current(), writer, head, listener })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// The last durable position. Batches commit before they are flushed, so the highest visible
/// position may still be in PostgreSQL's memory; this statement commits with a flush of its
/// own (as `PgFlush` does), which covers every commit its snapshot saw.
///
/// A transaction that writes no WAL before its commit record commits asynchronously whatever
/// `synchronous_commit` says (PostgreSQL's `RecordTransactionCommit`), so assigning an id is
/// not enough: a transactional logical message is a WAL record any user may write, at any
/// `wal_level`, without a table.
pub(crate) const FLUSHING_MESSAGE: &str = "pg_logical_emit_message(true, 'annals', 'flush')";
/// Commits synchronously even where the session default is `off`, without lowering a stricter
/// default (`remote_apply` on a primary with synchronous standbys).
pub(crate) const SYNCHRONOUS: &str =
    "CASE WHEN current_setting('synchronous_commit') = 'off' THEN set_config('synchronous_commit', 'on', true) END";

async fn head_position(pool: &PgPool) -> Result<u64, StoreError> {
    let p: Option<i64> =
        sqlx::query_scalar(&format!("SELECT (SELECT MAX(position) FROM events), {FLUSHING_MESSAGE}, {SYNCHRONOUS}"))
            .fetch_one(pool)
            .await?;
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

#[async_trait]
impl EventStore for PgStore {
    async fn append_all(&self, appends: Vec<StreamAppend>) -> Result<Vec<Appended>, StoreError> {
        self.writer.append(appends).await
    }

    async fn append_deferred(&self, appends: Vec<StreamAppend>) -> Result<super::DeferredOutcome, StoreError> {
        self.writer.append_deferred(appends).await
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

    async fn streams_naming_user(&self, user_id: &str) -> Result<Vec<StreamId>, StoreError> {
        let sql = format!(
            "SELECT DISTINCT stream_type, stream_id FROM events \
             WHERE event_type IN ({}) AND ((payload::jsonb) ->> 'user_id') = $1",
            super::NAMING_USER
        );
        let rows = sqlx::query(&sql).bind(user_id).fetch_all(&self.pool).await?;
        rows.iter().map(|r| super::rows::stream_id(&r.try_get::<String, _>(0)?, r.try_get(1)?)).collect()
    }

    async fn read_streams_between(
        &self,
        streams: &[StreamId],
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE (stream_id, stream_type) IN (SELECT * FROM UNNEST($1::text[], $2::text[])) \
             AND recorded_at_us BETWEEN $3 AND $4 ORDER BY position"
        );
        let ids: Vec<&str> = streams.iter().map(|s| s.id.as_str()).collect();
        let kinds: Vec<&str> = streams.iter().map(|s| s.kind.as_str()).collect();
        let rows = sqlx::query(&sql)
            .bind(ids)
            .bind(kinds)
            .bind(from.timestamp_micros())
            .bind(to.timestamp_micros())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(decode_event_row!(r))).collect()
    }

    async fn read_directory(&self) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql =
            format!("SELECT {EVENT_COLUMNS} FROM events WHERE stream_type IN ('realm', 'client') ORDER BY position");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok(decode_event_row!(r))).collect()
    }

    async fn read_all_payloads(&self, after_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        // Folds take what this node just committed from memory; verification, tails and sinks
        // (`read_all`) always read the database.
        if let Some(events) = self.writer.recent_after(after_position, limit) {
            return Ok(events);
        }
        self.read_all(after_position, limit).await
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
