//! The SQLite side of group commit: one batch, one transaction, on the writer's own thread.
//!
//! The writer holds a plain `rusqlite` connection rather than an sqlx one: sqlx runs every
//! SQLite statement on a worker thread of its own and hands the result back, and the four
//! statements of a batch (BEGIN, facts, insert, COMMIT) then cost four thread round trips,
//! ~45 µs each, a quarter of a batch. The writer thread exists to block on exactly this work,
//! so it talks to SQLite directly. Readers keep sqlx.
use super::plan::{self, FactRow, Facts};
use super::rows::EVENT_COLUMNS;
use super::writer::{Backend, Batch, Flush};
use super::StoreError;
use super::StreamAppend;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OpenFlags};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How the writer's connection is opened (mirrors the pool's options).
#[derive(Clone, Debug)]
pub(crate) struct WriterConfig {
    pub path: PathBuf,
    /// `FULL` or `NORMAL`, as the store URL asked.
    pub synchronous: &'static str,
    /// How long BEGIN waits for another process's write lock before the batch fails.
    pub busy_timeout: Duration,
    /// Set by the checkpointer when the WAL has outgrown its bound: the writer starts it over
    /// before its next batch (see `restart_wal`).
    pub restart_wal: Arc<AtomicBool>,
}

/// How long a WAL restart waits for readers still on the WAL (and for another process's
/// write lock) before it gives up until the checkpointer asks again; appends wait meanwhile.
const RESTART_WAIT: Duration = Duration::from_millis(100);

pub(crate) struct SqliteWriter {
    conn: Connection,
    config: WriterConfig,
    backoff: RestartBackoff,
}

/// When a WAL restart may be tried again after one was postponed. A reader that stays on the
/// WAL (a long scan) postpones every restart while it lasts, and each try holds appends for
/// up to `RESTART_WAIT`: after a postponed one the writer waits 1 s, then twice as long after
/// each further one, up to 30 s, before it tries again; a restart that goes through resets it.
#[derive(Debug, Default)]
struct RestartBackoff {
    next: Option<(std::time::Instant, Duration)>,
}

impl RestartBackoff {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(30);

    fn due(&self, now: std::time::Instant) -> bool {
        self.next.is_none_or(|(at, _)| now >= at)
    }

    fn postponed(&mut self, now: std::time::Instant) {
        let wait = self.next.map_or(Self::FIRST, |(_, last)| (last * 2).min(Self::MAX));
        self.next = Some((now + wait, wait));
    }

    fn succeeded(&mut self) {
        self.next = None;
    }
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Engine(e.to_string())
}

impl SqliteWriter {
    pub fn open(config: WriterConfig) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            &config.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db)?;
        conn.busy_timeout(config.busy_timeout).map_err(db)?;
        // The writer never checkpoints on its own (that would stall commits; a background task
        // copies the WAL, and asks the writer only to start it over), and keeps a larger page cache than readers for the indexes it updates.
        // With `FULL` asked, COMMIT itself still runs at `NORMAL` (frames written to the WAL,
        // no sync) and the writer syncs the WAL through `WalFlush` before it acknowledges:
        // acknowledged batches are on disk exactly as with `FULL`, but the sync of one batch
        // overlaps the statements of the next.
        // The checkpointer starts the WAL over without truncating it (see `checkpoint_wal`);
        // the first commit after a restart cuts a WAL that grew past 128 MiB (readers pinned
        // it for long) back to that size. The pools' connections set the same limit.
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0; \
             PRAGMA cache_size = -8192; PRAGMA journal_size_limit = {};",
            super::sqlite::WAL_SIZE_LIMIT
        ))
        .map_err(db)?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(SqliteWriter { conn, config, backoff: RestartBackoff::default() })
    }

    /// Replaces an unusable connection (file replaced, I/O error) so the next batch can
    /// succeed; the batch that failed has already been refused.
    fn reopen(&mut self) {
        match SqliteWriter::open(self.config.clone()) {
            Ok(fresh) => {
                tracing::warn!("sqlite writer connection replaced after an error");
                *self = fresh;
            }
            Err(err) => tracing::error!(error = %err, "sqlite writer connection lost; will retry"),
        }
    }

    /// Runs a statement without parameters or rows from the statement cache.
    fn run_cached(&self, sql: &str) -> Result<usize, rusqlite::Error> {
        self.conn.prepare_cached(sql)?.execute([])
    }

    fn commit_in_tx(&mut self, requests: &[&[StreamAppend]], now: DateTime<Utc>) -> Result<Batch, StoreError> {
        // One statement for every fact the plan needs: the head, the batch's event ids that
        // already exist (idempotent retries), and the current version of each stream (a MAX with
        // equality on the whole index prefix: one index entry read, however long the stream). The
        // lists travel as JSON so the statement text never changes and stays prepared.
        let ids: Vec<String> = requests
            .iter()
            .flat_map(|r| r.iter())
            .flat_map(|a| a.events.iter().map(|e| hex::encode(e.event_id.as_bytes())))
            .collect();
        let streams: HashSet<(&str, &str)> =
            requests.iter().flat_map(|r| r.iter()).map(|a| (a.stream.kind.as_str(), a.stream.id.as_str())).collect();
        let ids = serde_json::to_string(&ids).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let streams = serde_json::to_string(&streams).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut facts = Facts::default();
        {
            let mut q = self
                .conn
                .prepare_cached(
                    "SELECT 0, position, hash, NULL, NULL, NULL, NULL FROM \
                     (SELECT position, hash FROM events ORDER BY position DESC LIMIT 1) \
                     UNION ALL SELECT 1, position, NULL, event_id, stream_type, stream_id, version FROM events \
                     WHERE event_id IN (SELECT unhex(value) FROM json_each(?1)) \
                     UNION ALL SELECT 2, NULL, NULL, NULL, s.value ->> 0, s.value ->> 1, \
                     (SELECT MAX(version) FROM events WHERE stream_id = s.value ->> 1 AND stream_type = s.value ->> 0) \
                     FROM json_each(?2) s",
                )
                .map_err(db)?;
            let mut rows = q.query(params![ids, streams]).map_err(db)?;
            while let Some(row) = rows.next().map_err(db)? {
                let id: Option<Vec<u8>> = row.get(3).map_err(db)?;
                facts.add(FactRow {
                    kind: row.get(0).map_err(db)?,
                    position: row.get(1).map_err(db)?,
                    hash: row.get(2).map_err(db)?,
                    event_id: id.and_then(|b| uuid::Uuid::from_slice(&b).ok()),
                    stream_type: row.get(4).map_err(db)?,
                    stream_id: row.get(5).map_err(db)?,
                    version: row.get(6).map_err(db)?,
                })?;
            }
        }
        // A batch that writes nothing (idempotent replays, conflicts) still reports the head it
        // saw: a replayed caller's position is then covered by the flush and the head watch.
        let seen = facts.head_position;
        let (rows, outcomes) = plan::plan(requests, facts, now);
        let new_head = rows.last().map_or(seen, |r| r.position);
        // One prepared single-row insert run per event: without a thread hop per statement,
        // re-running a prepared statement is as cheap as one long multi-row statement.
        let mut insert = self
            .conn
            .prepare_cached(&format!(
                "INSERT INTO events ({EVENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ))
            .map_err(db)?;
        for r in &rows {
            insert
                .execute(params![
                    r.position as i64,
                    &r.event_id.as_bytes()[..],
                    r.stream.kind.as_str(),
                    r.stream.id.as_str(),
                    r.version as i64,
                    r.recorded_at.timestamp_micros(),
                    r.event_type.as_str(),
                    r.schema_version as i64,
                    r.payload.as_str(),
                    r.metadata.as_str(),
                    &r.prev_hash[..],
                    &r.hash[..],
                ])
                .map_err(db)?;
        }
        Ok(Batch { outcomes, head: new_head, rows })
    }

    /// Copies what is left of the WAL into the database and has the next commit write from
    /// the start of the file. Run here, between two batches, because the writer is the one
    /// connection that never has to wait for the write lock: a RESTART from any other
    /// connection polls for it through the busy handler, and under a steady load this writer
    /// takes it back microseconds after each COMMIT, so such a RESTART could miss every
    /// window for as long as the load lasted (seen: a WAL of 216 MB against a 64 MiB bound).
    fn restart_wal(&mut self) {
        let now = std::time::Instant::now();
        if !self.backoff.due(now) {
            return;
        }
        let run = |conn: &Connection| -> rusqlite::Result<(i64, i64)> {
            conn.busy_timeout(RESTART_WAIT)?;
            let answer = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| Ok((r.get(0)?, r.get(1)?)));
            conn.busy_timeout(self.config.busy_timeout)?;
            answer
        };
        match run(&self.conn) {
            Ok((0, frames)) => {
                self.backoff.succeeded();
                tracing::debug!(frames, "WAL caught up; this batch starts it over")
            }
            Ok((_, frames)) => {
                self.backoff.postponed(now);
                tracing::debug!(frames, "WAL restart postponed: readers were still on it")
            }
            Err(e) => {
                self.backoff.postponed(now);
                tracing::warn!(error = %e, "WAL restart failed; the checkpointer will ask again")
            }
        }
    }
}

/// Syncs the WAL file, where every commit of the writer's `NORMAL` connection has written its
/// frames. fsync covers the file's pages whichever descriptor wrote them. The file is the
/// same for the connection's whole life: SQLite deletes a WAL only when its last connection
/// closes, and truncation keeps the file. A power cut between COMMIT and the sync can lose
/// only unacknowledged batches, and only a suffix of the log: WAL frames carry a running
/// checksum, so recovery keeps a prefix of commits and anything written later in the same
/// file (read-model rows, snapshots) cannot survive an event it was derived from.
///
/// The descriptor stays open (an fsync error is reported to descriptors open when it
/// happened), and each flush checks that the path still names the same file: if the database
/// was replaced under the node, syncing the old file would acknowledge nothing.
struct WalFlush {
    path: PathBuf,
    wal: std::fs::File,
    identity: (u64, u64),
}

fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

/// The WAL of the file SQLite actually opened (its full path, symbolic links resolved).
fn wal_path(conn: &Connection) -> Result<PathBuf, StoreError> {
    let db = conn.path().ok_or_else(|| StoreError::Invalid("the writer has no database file".into()))?;
    Ok(PathBuf::from(format!("{db}-wal")))
}

#[async_trait]
impl Flush for WalFlush {
    async fn flush(&mut self, _head: u64) -> Result<(), StoreError> {
        // Blocking on purpose: this runs on the flusher's own thread.
        let fail = |what: &str, e: std::io::Error| StoreError::Engine(format!("{what} {}: {e}", self.path.display()));
        self.wal.sync_data().map_err(|e| fail("syncing", e))?;
        let now = std::fs::metadata(&self.path).map_err(|e| fail("checking", e))?;
        if identity(&now) != self.identity {
            return Err(StoreError::Engine(format!("{} was replaced while the node ran", self.path.display())));
        }
        Ok(())
    }

    fn failure_is_final(&self) -> bool {
        true
    }
}

#[async_trait]
impl Backend for SqliteWriter {
    fn flusher(&mut self) -> Result<Option<Box<dyn Flush>>, StoreError> {
        if self.config.synchronous != "FULL" {
            return Ok(None);
        }
        // A read makes SQLite open (and create, if need be) the WAL before we open it too.
        self.conn.query_row("SELECT COUNT(*) FROM sqlite_schema", [], |_| Ok(())).map_err(db)?;
        let path = wal_path(&self.conn)?;
        let wal =
            std::fs::File::open(&path).map_err(|e| StoreError::Engine(format!("opening {}: {e}", path.display())))?;
        let identity = identity(&wal.metadata().map_err(|e| StoreError::Engine(e.to_string()))?);
        Ok(Some(Box::new(WalFlush { path, wal, identity })))
    }

    async fn commit(&mut self, requests: &[&[StreamAppend]], now: DateTime<Utc>) -> Result<Batch, StoreError> {
        // Blocking calls, on purpose: this runs on the writer's dedicated thread.
        if self.config.restart_wal.swap(false, Ordering::AcqRel) {
            self.restart_wal();
        }
        // BEGIN and COMMIT as cached statements: `execute_batch` parses its text every time,
        // a few percent of a small batch's cost.
        if let Err(e) = self.run_cached("BEGIN IMMEDIATE") {
            // Busy past the timeout, or a connection that no longer works: a fresh one costs
            // about a millisecond and covers both.
            self.reopen();
            return Err(db(e));
        }
        let result = self.commit_in_tx(requests, now).and_then(|out| {
            self.run_cached("COMMIT").map_err(db)?;
            Ok(out)
        });
        if result.is_err() && !self.conn.is_autocommit() && self.conn.execute_batch("ROLLBACK").is_err() {
            self.reopen();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ExpectedVersion;
    use annals_events::{NewEvent, StreamId, StreamType};

    fn append(stream: &str, payload: &str) -> StreamAppend {
        StreamAppend {
            stream: StreamId::new(StreamType::User, stream),
            expected: ExpectedVersion::Exact(0),
            events: vec![NewEvent {
                event_id: uuid::Uuid::now_v7(),
                event_type: "user.role_granted".into(),
                schema_version: 1,
                payload: payload.into(),
                metadata: "{}".into(),
            }],
        }
    }

    /// A migrated database (through the store, as the server does), and a writer on it.
    async fn given_a_writer() -> (tempfile::TempDir, PathBuf, SqliteWriter) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("annals.db");
        let store = crate::store::open(path.to_str().unwrap()).await.unwrap();
        store.shutdown().await;
        let config = WriterConfig {
            path: path.clone(),
            synchronous: "FULL",
            busy_timeout: Duration::from_millis(50),
            restart_wal: Default::default(),
        };
        (dir, path, SqliteWriter::open(config).unwrap())
    }

    fn count(path: &PathBuf) -> i64 {
        Connection::open(path).unwrap().query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).unwrap()
    }

    #[tokio::test]
    async fn given_an_insert_failing_mid_batch_when_committed_then_nothing_is_written_and_the_next_batch_works() {
        let (_dir, path, mut w) = given_a_writer().await;
        let rogue = Connection::open(&path).unwrap();
        rogue
            .execute_batch(
                "CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.payload LIKE '%boom%' \
                 BEGIN SELECT RAISE(ABORT, 'boom'); END",
            )
            .unwrap();
        let (good, bad) = (append("a", r#"{"role_id":"x"}"#), append("b", r#"{"role_id":"boom"}"#));
        let err = w.commit(&[std::slice::from_ref(&good), std::slice::from_ref(&bad)], Utc::now()).await.unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
        assert_eq!(count(&path), 0, "the batch's first event was rolled back with the failing one");
        let done = w.commit(&[std::slice::from_ref(&good)], Utc::now()).await.unwrap();
        assert_eq!((done.outcomes.len(), done.head, done.rows.len()), (1, 1, 1));
        assert_eq!(count(&path), 1);
    }

    #[tokio::test]
    async fn given_another_process_holding_the_write_lock_when_committed_then_busy_and_the_writer_recovers() {
        let (_dir, path, mut w) = given_a_writer().await;
        let rogue = Connection::open(&path).unwrap();
        rogue.execute_batch("BEGIN IMMEDIATE").unwrap();
        let a = append("a", r#"{"role_id":"x"}"#);
        let err = w.commit(&[std::slice::from_ref(&a)], Utc::now()).await.unwrap_err();
        assert!(matches!(err, StoreError::Engine(_)), "{err}");
        rogue.execute_batch("ROLLBACK").unwrap();
        let done = w.commit(&[std::slice::from_ref(&a)], Utc::now()).await.unwrap();
        assert!(done.outcomes[0].is_ok());
        assert_eq!(done.head, 1);
    }

    /// The real SQLite writer, with its flush replaced by one the test opens or fails.
    struct Gated {
        inner: SqliteWriter,
        flush: Option<Box<dyn Flush>>,
    }

    struct Gate(tokio::sync::mpsc::UnboundedReceiver<bool>);

    #[async_trait]
    impl Flush for Gate {
        async fn flush(&mut self, _head: u64) -> Result<(), StoreError> {
            match self.0.recv().await {
                Some(true) => Ok(()),
                _ => Err(StoreError::Engine("disk gone".into())),
            }
        }
        fn failure_is_final(&self) -> bool {
            true
        }
    }

    #[async_trait]
    impl Backend for Gated {
        async fn commit(&mut self, requests: &[&[StreamAppend]], now: DateTime<Utc>) -> Result<Batch, StoreError> {
            self.inner.commit(requests, now).await
        }
        fn flusher(&mut self) -> Result<Option<Box<dyn Flush>>, StoreError> {
            Ok(self.flush.take())
        }
    }

    async fn given_a_gated_writer() -> (
        tempfile::TempDir,
        PathBuf,
        super::super::writer::Writer,
        tokio::sync::mpsc::UnboundedSender<bool>,
        tokio::sync::watch::Receiver<u64>,
    ) {
        let (dir, path, inner) = given_a_writer().await;
        let (open, gate) = tokio::sync::mpsc::unbounded_channel();
        let head = std::sync::Arc::new(tokio::sync::watch::channel(0).0);
        let watch = head.subscribe();
        let gated = Gated { inner, flush: Some(Box::new(Gate(gate))) };
        let writer = super::super::writer::Writer::spawn(move || async move { Ok(gated) }, head, "test").await.unwrap();
        (dir, path, writer, open, watch)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn given_a_flush_in_progress_when_a_batch_commits_then_its_caller_and_the_head_wait_for_the_flush() {
        let (_dir, path, writer, open, head) = given_a_gated_writer().await;
        let writer = std::sync::Arc::new(writer);
        let w = writer.clone();
        let pending = tokio::spawn(async move { w.append(vec![append("a", r#"{"role_id":"x"}"#)]).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(count(&path), 1, "committed (visible to this file's readers)...");
        assert!(!pending.is_finished(), "...but not acknowledged before it is durable");
        assert_eq!(*head.borrow(), 0, "nor announced to the read models");
        open.send(true).unwrap();
        let appended = pending.await.unwrap().unwrap();
        assert_eq!(appended[0].last_position, 1);
        assert_eq!(*head.borrow(), 1);
        writer.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn given_a_failed_flush_when_appending_then_the_caller_fails_and_the_writer_refuses_until_restart() {
        let (_dir, path, writer, open, head) = given_a_gated_writer().await;
        open.send(false).unwrap();
        let err = writer.append(vec![append("a", r#"{"role_id":"x"}"#)]).await.unwrap_err();
        assert!(err.to_string().contains("did not confirm"), "{err}");
        assert_eq!(*head.borrow(), 0);
        // A later fsync succeeding would prove nothing about the pages the failed one dropped.
        open.send(true).unwrap();
        let err = writer.append(vec![append("b", r#"{"role_id":"x"}"#)]).await.unwrap_err();
        assert!(err.to_string().contains("refuses appends"), "{err}");
        assert_eq!(count(&path), 1, "the refused batch never reached the database");
        writer.shutdown().await;
    }

    #[test]
    fn given_restarts_postponed_when_asked_again_then_the_writer_waits_longer_each_time_and_resets_on_success() {
        let t0 = std::time::Instant::now();
        let mut b = RestartBackoff::default();
        assert!(b.due(t0), "nothing postponed yet");
        b.postponed(t0);
        assert!(!b.due(t0 + Duration::from_millis(999)));
        assert!(b.due(t0 + Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        b.postponed(t1);
        assert!(!b.due(t1 + Duration::from_millis(1999)), "twice as long after the second");
        assert!(b.due(t1 + Duration::from_secs(2)));
        let mut t = t1;
        for _ in 0..10 {
            b.postponed(t);
            t += Duration::from_secs(60);
        }
        assert_eq!(b.next.map(|(_, wait)| wait), Some(RestartBackoff::MAX), "capped");
        b.succeeded();
        assert!(b.due(t0), "a restart that went through resets it");
    }

    /// The WAL file's length: it grows while commits append, and keeps its length when a
    /// restart has them write from its start again.
    fn wal_len(db: &std::path::Path) -> u64 {
        std::fs::metadata(format!("{}-wal", db.display())).unwrap().len()
    }

    /// Frames in the WAL, as a PASSIVE checkpoint from another connection reports them.
    fn wal_frames(reader: &Connection) -> i64 {
        reader.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1)).unwrap()
    }

    async fn commit_one(w: &mut SqliteWriter, stream: &str) {
        let a = append(stream, r#"{"role_id":"x"}"#);
        assert!(w.commit(&[std::slice::from_ref(&a)], Utc::now()).await.unwrap().outcomes[0].is_ok());
    }

    #[tokio::test]
    async fn given_a_restart_asked_when_the_next_batch_commits_then_it_writes_from_the_start_of_the_wal() {
        let (_dir, path, mut w) = given_a_writer().await;
        for i in 0..40 {
            commit_one(&mut w, &format!("s{i}")).await;
        }
        let grown = wal_len(&path);
        commit_one(&mut w, "unasked").await;
        assert!(wal_len(&path) > grown, "without being asked, commits append to the WAL");
        w.config.restart_wal.store(true, Ordering::Release);
        commit_one(&mut w, "asked").await;
        let reader = Connection::open(&path).unwrap();
        assert!(wal_frames(&reader) < 10, "the batch after the restart starts the WAL over");
        assert!(!w.config.restart_wal.load(Ordering::Acquire), "one restart per request");
        assert_eq!(count(&path), 42);
    }

    #[tokio::test]
    async fn given_a_reader_on_the_wal_when_a_restart_is_asked_then_the_batch_waits_briefly_and_commits() {
        let (_dir, path, mut w) = given_a_writer().await;
        for i in 0..40 {
            commit_one(&mut w, &format!("s{i}")).await;
        }
        // A read transaction on the WAL as it is now: the WAL cannot start over under it.
        let reader = Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).unwrap();
        let grown = wal_len(&path);
        w.config.restart_wal.store(true, Ordering::Release);
        let started = std::time::Instant::now();
        commit_one(&mut w, "asked").await;
        assert!(started.elapsed() < Duration::from_secs(2), "appends waited {:?}", started.elapsed());
        assert!(wal_len(&path) > grown, "the WAL went on growing under the reader");
        reader.execute_batch("COMMIT").unwrap();
        // Asked again at once, the writer does not try (it would hold appends again)...
        let grown = wal_len(&path);
        w.config.restart_wal.store(true, Ordering::Release);
        commit_one(&mut w, "too-soon").await;
        assert!(wal_len(&path) > grown, "backed off: the WAL still grows");
        // ...but once the back-off has passed, with the reader gone, the restart goes through.
        tokio::time::sleep(RestartBackoff::FIRST).await;
        w.config.restart_wal.store(true, Ordering::Release);
        commit_one(&mut w, "asked-again").await;
        let other = Connection::open(&path).unwrap();
        assert!(wal_frames(&other) < 10);
        assert_eq!(count(&path), 43);
    }

    #[tokio::test]
    async fn given_full_or_normal_when_the_writer_starts_then_it_flushes_the_wal_only_for_full() {
        let (_dir, path, mut full) = given_a_writer().await;
        assert!(full.flusher().unwrap().is_some());
        let config = WriterConfig {
            path,
            synchronous: "NORMAL",
            busy_timeout: Duration::from_millis(50),
            restart_wal: Default::default(),
        };
        assert!(SqliteWriter::open(config).unwrap().flusher().unwrap().is_none());
    }
}
