//! The PostgreSQL side of group commit: one batch, one transaction, two round trips.
//!
//! The writer holds a `tokio-postgres` connection rather than an sqlx one for its pipelining:
//! statements sent together travel in one write and their answers come back in one read. A
//! batch needs five statements (BEGIN, the lock, the facts, the insert, COMMIT); one round
//! trip each was most of a batch's time. Here BEGIN, the lock and the facts go out together,
//! then the insert and COMMIT. The facts still read a snapshot taken after the lock is
//! granted: they are a statement of their own, which PostgreSQL starts only once the lock
//! statement has finished. Readers keep sqlx.
use super::plan::{self, FactRow, Facts};
use super::postgres::{APPEND_LOCK, FLUSHING_MESSAGE, NOTIFY_CHANNEL, SYNCHRONOUS};
use super::rows::EVENT_COLUMNS;
use super::writer::{Backend, Batch, Flush};
use super::{StoreError, StreamAppend};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnectOptions;
use sqlx::ConnectOptions;
use std::collections::HashSet;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

/// READ COMMITTED whatever the database default: the head must be read after the lock is
/// granted, not from a snapshot taken before it.
const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

/// A stuck lock holder fails the batch after 30 s instead of blocking every node forever.
/// Plans: generic (planned once per connection, not per batch) and never sequential scans, so
/// a plan made while the table was small stays right when it is large. The commit does not
/// wait for the WAL flush, so the lock is released sooner and the next batch starts while the
/// disk works: the writer acknowledges a batch only after [`PgFlush`] has made it durable.
const LOCK: &str = "SELECT set_config('lock_timeout', '30s', true), \
     set_config('plan_cache_mode', 'force_generic_plan', true), set_config('enable_seqscan', 'off', true), \
     set_config('synchronous_commit', 'off', true), pg_advisory_xact_lock($1)";

/// The head, the batch's event ids that already exist, and each stream's version. The version
/// is a MAX with equality on the whole index prefix, so it reads one index entry however long
/// the stream (a GROUP BY read every event of a session refreshed thousands of times).
const FACTS: &str = "SELECT 0 AS k, position, hash, NULL::uuid AS id, NULL::text AS st, NULL::text AS sid, \
       NULL::bigint AS v FROM (SELECT position, hash FROM events ORDER BY position DESC LIMIT 1) h \
     UNION ALL SELECT 1, e.position, NULL, e.event_id, e.stream_type, e.stream_id, e.version \
       FROM unnest($1::uuid[]) i(id) JOIN events e ON e.event_id = i.id \
     UNION ALL SELECT 2, NULL, NULL, NULL, s.st, s.sid, \
       (SELECT MAX(version) FROM events WHERE stream_id = s.sid AND stream_type = s.st) \
       FROM unnest($2::text[], $3::text[]) s(sid, st)";

/// The server's own message where there is one (tokio-postgres displays a server error as
/// just "db error", with the message in its source).
fn pg(e: tokio_postgres::Error) -> StoreError {
    StoreError::Engine(match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => e.to_string(),
    })
}

/// An open connection with the batch's statements prepared on it.
struct Conn {
    client: Client,
    lock: Statement,
    facts: Statement,
    insert: Statement,
}

pub(crate) struct PgWriter {
    config: tokio_postgres::Config,
    conn: Option<Conn>,
    /// For the flusher, which connects on its own thread with sqlx.
    flush_opts: PgConnectOptions,
}

impl PgWriter {
    pub async fn connect(config: tokio_postgres::Config, flush_opts: PgConnectOptions) -> Result<Self, StoreError> {
        let conn = Some(open(&config).await?);
        Ok(PgWriter { config, conn, flush_opts })
    }
}

async fn open(config: &tokio_postgres::Config) -> Result<Conn, StoreError> {
    let (client, connection) = config.connect(NoTls).await.map_err(pg)?;
    // Runs on the writer's runtime, driven whenever the writer waits.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "the writer's connection to PostgreSQL closed; reconnecting at the next batch");
        }
    });
    let insert = format!(
        "INSERT INTO events ({EVENT_COLUMNS}) SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], \
         $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::int[], $9::text[], $10::text[], $11::bytea[], $12::bytea[])"
    );
    let (lock, facts, insert) =
        tokio::try_join!(client.prepare(LOCK), client.prepare(FACTS), client.prepare(&insert)).map_err(pg)?;
    Ok(Conn { client, lock, facts, insert })
}

impl Conn {
    async fn commit_in_tx(&self, requests: &[&[StreamAppend]], now: DateTime<Utc>) -> Result<Batch, StoreError> {
        let ids: Vec<uuid::Uuid> =
            requests.iter().flat_map(|r| r.iter()).flat_map(|a| a.events.iter().map(|e| e.event_id)).collect();
        let streams: HashSet<(&str, &str)> =
            requests.iter().flat_map(|r| r.iter()).map(|a| (a.stream.id.as_str(), a.stream.kind.as_str())).collect();
        let (stream_ids, stream_types): (Vec<&str>, Vec<&str>) = streams.into_iter().unzip();
        let (lock_params, facts_params): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 3]) =
            ([&APPEND_LOCK], [&ids, &stream_ids, &stream_types]);
        // `biased`: polled (and so sent) in this order; PostgreSQL runs them in the same order.
        let (_, _, rows) = tokio::try_join!(
            biased;
            self.client.batch_execute(BEGIN),
            self.client.execute(&self.lock, &lock_params),
            self.client.query(&self.facts, &facts_params),
        )
        .map_err(pg)?;
        let mut facts = Facts::default();
        for row in rows {
            facts.add(FactRow {
                kind: row.try_get::<_, i32>(0).map_err(pg)? as i64,
                position: row.try_get(1).map_err(pg)?,
                hash: row.try_get(2).map_err(pg)?,
                event_id: row.try_get(3).map_err(pg)?,
                stream_type: row.try_get(4).map_err(pg)?,
                stream_id: row.try_get(5).map_err(pg)?,
                version: row.try_get(6).map_err(pg)?,
            })?;
        }
        // A batch that writes nothing (idempotent replays, conflicts) still reports the head it
        // saw: a replayed caller's position is then covered by the flush and the head watch.
        let seen = facts.head_position;
        let (rows, outcomes) = plan::plan(requests, facts, now);
        let new_head = rows.last().map_or(seen, |r| r.position);
        if rows.is_empty() {
            self.client.batch_execute("COMMIT").await.map_err(pg)?;
            return Ok(Batch { outcomes, head: new_head, rows });
        }
        // One statement for the whole batch (arrays unnest into rows, no bind-count limit), sent
        // with COMMIT. If the insert fails, PostgreSQL answers that COMMIT with a rollback.
        let positions: Vec<i64> = rows.iter().map(|r| r.position as i64).collect();
        let event_ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.event_id).collect();
        let kinds: Vec<&str> = rows.iter().map(|r| r.stream.kind.as_str()).collect();
        let stream_ids: Vec<&str> = rows.iter().map(|r| r.stream.id.as_str()).collect();
        let versions: Vec<i64> = rows.iter().map(|r| r.version as i64).collect();
        let times: Vec<i64> = rows.iter().map(|r| r.recorded_at.timestamp_micros()).collect();
        let types: Vec<&str> = rows.iter().map(|r| r.event_type.as_str()).collect();
        let schemas: Vec<i32> = rows.iter().map(|r| r.schema_version as i32).collect();
        let payloads: Vec<&str> = rows.iter().map(|r| r.payload.as_str()).collect();
        let metadata: Vec<&str> = rows.iter().map(|r| r.metadata.as_str()).collect();
        let prev: Vec<&[u8]> = rows.iter().map(|r| &r.prev_hash[..]).collect();
        let hashes: Vec<&[u8]> = rows.iter().map(|r| &r.hash[..]).collect();
        let params: [&(dyn ToSql + Sync); 12] = [
            &positions,
            &event_ids,
            &kinds,
            &stream_ids,
            &versions,
            &times,
            &types,
            &schemas,
            &payloads,
            &metadata,
            &prev,
            &hashes,
        ];
        tokio::try_join!(biased; self.client.execute(&self.insert, &params), self.client.batch_execute("COMMIT"))
            .map_err(pg)?;
        Ok(Batch { outcomes, head: new_head, rows })
    }
}

#[async_trait]
impl Backend for PgWriter {
    async fn commit(&mut self, requests: &[&[StreamAppend]], now: DateTime<Utc>) -> Result<Batch, StoreError> {
        if self.conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            self.conn = None;
            self.conn = Some(open(&self.config).await?);
        }
        let conn = self.conn.as_ref().expect("opened above");
        let result = conn.commit_in_tx(requests, now).await;
        // A failure can leave the transaction open (a statement refused before it was sent, a
        // row that does not decode); outside one, ROLLBACK only warns.
        if result.is_err() && conn.client.batch_execute("ROLLBACK").await.is_err() {
            self.conn = None;
        }
        result
    }

    fn flusher(&mut self) -> Result<Option<Box<dyn Flush>>, StoreError> {
        Ok(Some(Box::new(PgFlush { opts: self.flush_opts.clone(), conn: None })))
    }
}

/// A flush (or the flusher's connecting) that takes longer fails its batches rather than
/// holding every caller (and shutdown) behind a connection that no longer answers.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// The flusher's own connection (opened on the flusher's runtime, at its first flush).
struct PgFlush {
    opts: PgConnectOptions,
    conn: Option<sqlx::PgConnection>,
}

impl PgFlush {
    async fn flush_on_connection(&mut self, head: u64) -> Result<(), StoreError> {
        if self.conn.is_none() {
            self.conn = Some(self.opts.connect().await?);
        }
        let conn = self.conn.as_mut().expect("just connected");
        // A transaction that writes WAL commits with a flush up to its own commit record, which
        // PostgreSQL writes after every commit made before this statement: once it returns,
        // those batches are durable (see `FLUSHING_MESSAGE`). Its NOTIFY is delivered after
        // that commit, so no node is woken for a position a crash could still take back.
        let sql = format!("SELECT {FLUSHING_MESSAGE}, {SYNCHRONOUS}, pg_notify($1, $2)");
        sqlx::query(&sql).bind(NOTIFY_CHANNEL).bind(head.to_string()).execute(&mut *conn).await?;
        Ok(())
    }
}

#[async_trait]
impl Flush for PgFlush {
    async fn flush(&mut self, head: u64) -> Result<(), StoreError> {
        let r = match tokio::time::timeout(FLUSH_TIMEOUT, self.flush_on_connection(head)).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Engine(format!("no answer to the flush within {FLUSH_TIMEOUT:?}"))),
        };
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    fn failure_is_final(&self) -> bool {
        false
    }
}
