//! SQLite event store: the embedded default. WAL mode; one writer connection owned by the
//! group-commit task (BEGIN IMMEDIATE), a small pool for readers.
use super::rows::EVENT_COLUMNS;
use super::sqlite_writer::{SqliteWriter, WriterConfig};
use super::writer::Writer;
use super::{Appended, EventStore, ReadUntil, Snapshot, StoreError, StreamAppend};
use annals_events::{RecordedEvent, StreamId, StreamType};
use async_trait::async_trait;
use chrono::DateTime;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Row, SqlitePool};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub struct SqliteStore {
    pool: SqlitePool,
    /// One connection for snapshot writes, `synchronous=NORMAL` (a snapshot lost at power
    /// loss is only a cache miss): snapshot writes queue here instead of holding reading
    /// connections while they wait for SQLite's write lock.
    snapshots: SqlitePool,
    /// The runtime the store was opened on: snapshot writes run there, so an actor's arbiter
    /// stopping mid-write cannot drop a pooled connection outside a runtime.
    runtime: tokio::runtime::Handle,
    writer: Writer,
    head: Arc<watch::Sender<u64>>,
    poller: tokio::task::JoinHandle<()>,
    checkpointer: tokio::task::JoinHandle<()>,
}

/// Builds connect options from `sqlite://path`, `sqlite:path` or a bare file path. One option
/// of Annals' own may follow as a query: `?synchronous=normal` trades power-loss durability
/// of the last commits for throughput (a process crash still loses nothing acknowledged);
/// the default, `full`, makes every acknowledged append survive power loss.
pub fn connect_options(url: &str) -> Result<SqliteConnectOptions, StoreError> {
    let (path, sync) = split_url(url)?;
    let opts = if path.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(path)?
    } else {
        SqliteConnectOptions::new().filename(path)
    };
    Ok(opts
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(sync)
        .busy_timeout(Duration::from_secs(10))
        // Whichever connection makes the first commit after the WAL was started over (the
        // writer, a SQL read model, a snapshot) cuts a file that grew past 128 MiB back to it.
        .pragma("journal_size_limit", WAL_SIZE_LIMIT)
        // The store's checkpointer copies the WAL (and has the writer start it over): a read
        // model's or snapshot's commit checkpointing on its own would do that work on its
        // caller's time, and hold the checkpoint lock a restart then finds busy.
        .pragma("wal_autocheckpoint", "0")
        // 2 MiB page cache per reading connection: reads are mostly sequential scans whose
        // pages are folded into memory once; the writer raises its own (index pages).
        .pragma("cache_size", "-2048")
        .disable_statement_logging())
}

/// The database path part of a store URL and the durability it asks for.
fn split_url(url: &str) -> Result<(&str, SqliteSynchronous), StoreError> {
    Ok(match url.split_once("?synchronous=") {
        Some((p, "normal")) => (p, SqliteSynchronous::Normal),
        Some((p, "full")) => (p, SqliteSynchronous::Full),
        Some((_, other)) => return Err(StoreError::Invalid(format!("synchronous={other}: expected full or normal"))),
        None => (url, SqliteSynchronous::Full),
    })
}

impl SqliteStore {
    async fn stream_page(
        &self,
        stream: &StreamId,
        after_version: u64,
        until: ReadUntil,
        fields: &[Field],
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let (cond, bound) = match until {
            ReadUntil::End => ("", i64::MAX),
            ReadUntil::Version(v) => (" AND version <= ?", v.min(i64::MAX as u64) as i64),
            ReadUntil::Time(t) => (" AND recorded_at_us <= ?", t.timestamp_micros()),
        };
        let sql = paged(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ? AND stream_type = ? AND version > ?{cond} ORDER BY version"
            ),
            fields,
        );
        let mut q = sqlx::query_scalar::<_, Option<String>>(&sql)
            .bind(&stream.id)
            .bind(stream.kind.as_str())
            .bind(after_version.min(i64::MAX as u64) as i64);
        if !cond.is_empty() {
            q = q.bind(bound);
        }
        let mut events = decode_page(q.fetch_one(&self.pool).await?, fields)?;
        events.sort_by_key(|e| e.version);
        Ok(events)
    }

    async fn read_page(&self, after: u64, limit: usize, fields: &[Field]) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql =
            paged(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"), fields);
        let text: Option<String> = sqlx::query_scalar(&sql)
            .bind(after.min(i64::MAX as u64) as i64)
            .bind(limit.min(i64::MAX as usize) as i64)
            .fetch_one(&self.pool)
            .await?;
        let mut events = decode_page(text, fields)?;
        events.sort_by_key(|e| e.position);
        Ok(events)
    }

    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let opts = connect_options(url)?;
        let file = opts.get_filename();
        if file.as_os_str().is_empty() || file.to_string_lossy().contains(":memory:") {
            // The writer opens the file a second time; an in-memory database would be another.
            return Err(StoreError::Invalid("the event log needs a SQLite file, not an in-memory database".into()));
        }
        // Every reading connection is opened up front: opening one (file, WAL index, pragmas) takes
        // milliseconds that the first requests after start would otherwise pay.
        // No test before each acquire: a connection to a local file does not go stale, and
        // sqlx's test is a round trip to the connection's thread (two context switches) that
        // doubled the cost of every read.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(4)
            .test_before_acquire(false)
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await.map_err(|e| StoreError::Migration(e.to_string()))?;
        let snapshots = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(opts.clone().synchronous(SqliteSynchronous::Normal))
            .await?;
        let head_now = head_position(&pool).await?;
        let head = Arc::new(watch::channel(head_now).0);
        let restart_wal = Arc::new(AtomicBool::new(false));
        let config = WriterConfig {
            path: opts.get_filename().to_path_buf(),
            synchronous: match split_url(url)?.1 {
                SqliteSynchronous::Normal => "NORMAL",
                _ => "FULL",
            },
            busy_timeout: Duration::from_secs(10),
            restart_wal: restart_wal.clone(),
        };
        let connect = move || async move { SqliteWriter::open(config) };
        let writer = Writer::spawn(connect, head.clone(), "sqlite").await?;
        // SQLite names the WAL after the file's full path, symbolic links resolved.
        let db = std::fs::canonicalize(opts.get_filename()).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut wal = db.into_os_string();
        wal.push("-wal");
        let poller = tokio::spawn(follow_other_processes(pool.clone(), head.clone(), wal.into(), writer.failed()));
        let checkpointer = tokio::spawn(checkpoint_wal(pool.clone(), restart_wal));
        let runtime = tokio::runtime::Handle::current();
        Ok(SqliteStore { pool, snapshots, runtime, writer, head, poller, checkpointer })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

async fn head_position(pool: &SqlitePool) -> Result<u64, StoreError> {
    let p: Option<i64> = sqlx::query_scalar("SELECT MAX(position) FROM events").fetch_one(pool).await?;
    Ok(p.unwrap_or(0) as u64)
}

/// How each column of a page is written: integers as `<digits>,`, blobs as fixed-width hex,
/// text as `<byte length>:<bytes>` (so quotes, separators and newlines pass unescaped and the
/// payload reaches Rust byte for byte, as the chain needs).
enum Field {
    Int(&'static str),
    Hex(&'static str, usize),
    Text(&'static str),
}

/// The columns of a full page, in [`decode_page`]'s order.
const PAGE_FIELDS: [Field; 12] = [
    Field::Int("position"),
    Field::Hex("event_id", 16),
    Field::Text("stream_type"),
    Field::Text("stream_id"),
    Field::Int("version"),
    Field::Int("recorded_at_us"),
    Field::Text("event_type"),
    Field::Int("schema_version"),
    Field::Text("payload"),
    Field::Text("metadata"),
    Field::Hex("prev_hash", 32),
    Field::Hex("hash", 32),
];

/// The columns a fold needs (see `EventStore::read_all_payloads`): no id, metadata or hashes,
/// a third fewer bytes to format, copy and parse.
const FOLD_FIELDS: [Field; 8] = [
    Field::Int("position"),
    Field::Text("stream_type"),
    Field::Text("stream_id"),
    Field::Int("version"),
    Field::Int("recorded_at_us"),
    Field::Text("event_type"),
    Field::Int("schema_version"),
    Field::Text("payload"),
];

/// Wraps a query of [`EVENT_COLUMNS`] so the whole page crosses from SQLite as one string:
/// sqlx's driver would otherwise copy and hand over every row and column separately. One
/// format() per row writes it in a single pass.
fn paged(inner: &str, fields: &[Field]) -> String {
    let (mut spec, mut args) = (String::new(), Vec::new());
    for f in fields {
        match f {
            Field::Int(c) => {
                // `%s`, not `%d`: text where an integer belongs must fail to parse, not read
                // as 0.
                spec.push_str("%s,");
                args.push(c.to_string());
            }
            Field::Hex(c, _) => {
                spec.push_str("%s");
                args.push(format!("hex({c})"));
            }
            Field::Text(c) => {
                spec.push_str("%d:%s");
                args.push(format!("octet_length({c}), {c}"));
            }
        }
    }
    // Each row ends with `;`: a field of the wrong length (a blob of 33 bytes) cannot shift
    // the rest of the page unnoticed.
    format!("SELECT group_concat(format('{spec};', {}), '') FROM ({inner})", args.join(", "))
}

/// Reads one field of kind `f` at `at`, moving past it.
fn field<'a>(page: &'a str, at: &mut usize, f: &Field) -> Option<&'a str> {
    let rest = page.get(*at..)?;
    let (value, used) = match f {
        Field::Int(_) => {
            let end = rest.bytes().take(21).position(|b| b == b',')?;
            (&rest[..end], end + 1)
        }
        Field::Hex(_, bytes) => (rest.get(..bytes * 2)?, bytes * 2),
        Field::Text(_) => {
            let colon = rest.bytes().take(21).position(|b| b == b':')?;
            let len: usize = rest[..colon].parse().ok()?;
            let end = (colon + 1).checked_add(len)?;
            (rest.get(colon + 1..end)?, end)
        }
    };
    *at += used;
    Some(value)
}

/// Decodes a page written with `fields` ([`PAGE_FIELDS`] or [`FOLD_FIELDS`]; a fold page
/// leaves the event id nil, the metadata empty and the hashes zero).
fn decode_page(page: Option<String>, fields: &[Field]) -> Result<Vec<RecordedEvent>, StoreError> {
    let Some(page) = page else { return Ok(Vec::new()) };
    let full = fields.len() == PAGE_FIELDS.len();
    let mut events = Vec::new();
    let mut at = 0;
    while at < page.len() {
        let mut f = [""; 12];
        let malformed = |at: usize, events: &[RecordedEvent]| StoreError::Corrupt {
            position: events.last().map_or(0, |e| e.position + 1),
            reason: format!("page is malformed at byte {at}"),
        };
        for (slot, kind) in f.iter_mut().zip(fields) {
            *slot = field(&page, &mut at, kind).ok_or_else(|| malformed(at, &events))?;
        }
        if page.as_bytes().get(at) != Some(&b';') {
            return Err(malformed(at, &events));
        }
        at += 1;
        let [position, id, st, sid, version, at_us, event_type, schema_version, payload, metadata, prev, hash] = if full
        {
            f
        } else {
            let [position, st, sid, version, at_us, event_type, schema_version, payload, ..] = f;
            [position, "", st, sid, version, at_us, event_type, schema_version, payload, "", "", ""]
        };
        let p: u64 =
            position.parse().map_err(|_| StoreError::Corrupt { position: 0, reason: "bad position".into() })?;
        let corrupt = |reason: String| StoreError::Corrupt { position: p, reason };
        let int = |s: &str| s.parse::<i64>().map_err(|e| corrupt(format!("{s:?}: {e}")));
        let hash32 = |h: &str, what: &str| -> Result<[u8; 32], StoreError> {
            let mut out = [0u8; 32];
            if full {
                hex::decode_to_slice(h, &mut out).map_err(|e| corrupt(format!("{what}: {e}")))?;
            }
            Ok(out)
        };
        let kind = StreamType::from_str(st).map_err(|e| corrupt(e.to_string()))?;
        let at_us = int(at_us)?;
        let mut event_id = [0u8; 16];
        if full {
            hex::decode_to_slice(id, &mut event_id).map_err(|e| corrupt(format!("event id: {e}")))?;
        }
        events.push(RecordedEvent {
            event_id: uuid::Uuid::from_bytes(event_id),
            stream: StreamId::new(kind, sid),
            version: int(version)? as u64,
            position: p,
            recorded_at: DateTime::from_timestamp_micros(at_us)
                .ok_or_else(|| corrupt(format!("timestamp {at_us} out of range")))?,
            event_type: event_type.to_string(),
            schema_version: int(schema_version)? as u32,
            payload: payload.to_string(),
            metadata: metadata.to_string(),
            prev_hash: hash32(prev, "prev_hash")?,
            hash: hash32(hash, "hash")?,
        });
    }
    Ok(events)
}

/// Another process (an `annals import` beside a running node) may commit to the same file; its
/// commits do not pass through this process's writer, so poll the head as well. What the poll
/// sees may not be flushed yet (that process's, or this writer's own batch between COMMIT and
/// its sync): the WAL, which holds it, is synced before the head watch moves there.
/// Once the writer has found the log's durability in doubt, nothing is announced any more:
/// a sync through this descriptor would not report the error the writer's did.
async fn follow_other_processes(
    pool: SqlitePool,
    head: Arc<watch::Sender<u64>>,
    wal: PathBuf,
    failed: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let Ok(p) = head_position(&pool).await else { continue };
        if p <= *head.borrow() || failed.load(std::sync::atomic::Ordering::Acquire) {
            continue;
        }
        let wal = wal.clone();
        match tokio::task::spawn_blocking(move || std::fs::File::open(&wal).and_then(|f| f.sync_data())).await {
            Ok(Ok(())) => super::advance(&head, p),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "syncing the WAL before announcing another process's commit failed")
            }
            Err(e) => tracing::warn!(error = %e, "WAL sync task failed"),
        }
    }
}

/// WAL frames (pages) past which the checkpointer starts the WAL over: 16,384 pages of 4 KiB.
const WAL_RESTART_FRAMES: i64 = 16_384;

/// Bytes a WAL file started over keeps at most (`journal_size_limit`, 128 MiB), set on every
/// connection of the store, the writer's included.
pub(crate) const WAL_SIZE_LIMIT: &str = "134217728";

/// Copies the WAL into the database file off the commit path. PASSIVE never blocks the writer
/// or readers; a WAL that readers pin is caught up on a later round. But under a steady write
/// load the WAL is never caught up at the moment the writer could start it over, and it grows
/// without bound (1.8 GB after 300,000 token events, seen here): past `WAL_RESTART_FRAMES`
/// the writer, asked through `restart`, runs a RESTART checkpoint before its next batch: it
/// copies what is left, waits for readers still on the WAL, and that batch writes from the
/// start of the file again, stalling appends for that moment (tens of milliseconds for
/// 64 MiB). RESTART, not TRUNCATE: the file keeps its size, so once it has reached it later
/// commits overwrite blocks it already has and the flusher's `fdatasync` writes only those
/// pages. In a file that grows, every sync also writes the inode (its size) and allocates
/// blocks: a few percent of a client-credentials grant's CPU. The file stays at the size of
/// its largest generation (64 MiB and what half a second adds; `journal_size_limit` cuts it
/// back to 128 MiB when a generation grew past that); shutdown truncates it.
async fn checkpoint_wal(pool: SqlitePool, restart: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        // Columns: busy, frames in the WAL, frames checkpointed.
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&pool).await {
            // Idle after a restart, the WAL still reports its old length until the next
            // commit; asking again then costs that commit a checkpoint with nothing to copy.
            Ok((_, frames, _)) if frames > WAL_RESTART_FRAMES => restart.store(true, Ordering::Release),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; will retry"),
        }
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append_all(&self, appends: Vec<StreamAppend>) -> Result<Vec<Appended>, StoreError> {
        self.writer.append(appends).await
    }

    async fn append_deferred(&self, appends: Vec<StreamAppend>) -> Result<super::DeferredOutcome, StoreError> {
        self.writer.append_deferred(appends).await
    }

    fn exclusive(&self) -> bool {
        // SQLite serves one node (several nodes share PostgreSQL). Other processes on the file
        // (the CLI's readers) read what is committed, and act on nothing.
        true
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        after_version: u64,
        until: ReadUntil,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.stream_page(stream, after_version, until, &PAGE_FIELDS).await
    }

    async fn read_stream_payloads(
        &self,
        stream: &StreamId,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.stream_page(stream, after_version, ReadUntil::End, &FOLD_FIELDS).await
    }

    async fn read_all(&self, after_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_page(after_position, limit, &PAGE_FIELDS).await
    }

    async fn streams_naming_user(&self, user_id: &str) -> Result<Vec<StreamId>, StoreError> {
        let sql = format!(
            "SELECT DISTINCT stream_type, stream_id FROM events \
             WHERE event_type IN ({}) AND json_extract(payload, '$.user_id') = ?",
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
        let sql = paged(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE (stream_id, stream_type) IN \
                 (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?)) \
                 AND recorded_at_us BETWEEN ? AND ? ORDER BY position"
            ),
            &PAGE_FIELDS,
        );
        let list: Vec<[&str; 2]> = streams.iter().map(|s| [s.id.as_str(), s.kind.as_str()]).collect();
        let list = serde_json::to_string(&list).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let text: Option<String> = sqlx::query_scalar(&sql)
            .bind(list)
            .bind(from.timestamp_micros())
            .bind(to.timestamp_micros())
            .fetch_one(&self.pool)
            .await?;
        let mut events = decode_page(text, &PAGE_FIELDS)?;
        events.sort_by_key(|e| e.position);
        Ok(events)
    }

    async fn read_directory(&self) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = paged(
            &format!("SELECT {EVENT_COLUMNS} FROM events WHERE stream_type IN ('realm', 'client') ORDER BY position"),
            &PAGE_FIELDS,
        );
        let text: Option<String> = sqlx::query_scalar(&sql).fetch_one(&self.pool).await?;
        let mut events = decode_page(text, &PAGE_FIELDS)?;
        events.sort_by_key(|e| e.position);
        Ok(events)
    }

    async fn read_all_payloads(&self, after_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        // Folds take what this node just committed from memory; verification, tails and sinks
        // (`read_all`) always read the database.
        if let Some(events) = self.writer.recent_after(after_position, limit) {
            return Ok(events);
        }
        self.read_page(after_position, limit, &FOLD_FIELDS).await
    }

    async fn head(&self) -> Result<u64, StoreError> {
        head_position(&self.pool).await
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        let row = sqlx::query("SELECT version, state FROM snapshots WHERE stream_type = ? AND stream_id = ? ORDER BY version DESC LIMIT 1")
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
        let pool = self.snapshots.clone();
        let write = self.runtime.spawn(async move {
            sqlx::query("INSERT OR IGNORE INTO snapshots (stream_type, stream_id, version, state) VALUES (?, ?, ?, ?)")
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
        super::DbPool::Sqlite(self.pool.clone())
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn shutdown(&self) {
        self.writer.shutdown().await;
        self.poller.abort();
        self.checkpointer.abort();
        // Leave a compact database behind: fold the WAL in before the process ends.
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page as SQLite's `format()` in [`paged`] writes it.
    fn page_row(position: u64, stream_id: &str, payload: &str) -> String {
        let text = |s: &str| format!("{}:{s}", s.len());
        format!(
            "{position},{}{}{}1,1700000000000000,{}1,{}{}{}{};",
            "00".repeat(16),
            text("user"),
            text(stream_id),
            text("user.created"),
            text(payload),
            text("{}"),
            "11".repeat(32),
            "22".repeat(32)
        )
    }

    #[test]
    fn given_text_with_separators_and_multibyte_characters_when_decoded_then_it_is_exact() {
        let payload = r#"{"name":"Ä:1,2:\"x\"\n","n":3}"#;
        let page = page_row(7, "id:with,colons", payload) + &page_row(8, "ü", "{}");
        let events = decode_page(Some(page), &PAGE_FIELDS).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!((events[0].position, events[0].stream.id.as_str()), (7, "id:with,colons"));
        assert_eq!(events[0].payload, payload, "byte for byte");
        assert_eq!(events[0].hash, [0x22; 32]);
        assert_eq!((events[1].position, events[1].stream.id.as_str()), (8, "ü"));
        assert!(decode_page(None, &PAGE_FIELDS).unwrap().is_empty(), "an empty page is NULL");
    }

    #[test]
    fn given_a_truncated_or_lying_page_when_decoded_then_corrupt_not_panic() {
        let page = page_row(7, "u", "{}");
        for cut in [1, 10, page.len() / 2, page.len() - 1] {
            let err = decode_page(Some(page[..cut].to_string()), &PAGE_FIELDS).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        }
        // A length that points into the middle of a multibyte character.
        let lying = page.replace("1:u", "1:ü");
        assert!(matches!(decode_page(Some(lying), &PAGE_FIELDS), Err(StoreError::Corrupt { .. })));
        let huge = page.replace("1:u", "99999999999999999999999:u");
        assert!(matches!(decode_page(Some(huge), &PAGE_FIELDS), Err(StoreError::Corrupt { .. })));
        let usize_max = page.replace("1:u", &format!("{}:u", usize::MAX));
        assert!(matches!(decode_page(Some(usize_max), &PAGE_FIELDS), Err(StoreError::Corrupt { .. })));
        // A hash one byte too long (tampering) must not shift into the next row.
        let long_hash = page.replace(&"22".repeat(32), &"22".repeat(33)) + &page_row(8, "v", "{}");
        assert!(matches!(decode_page(Some(long_hash), &PAGE_FIELDS), Err(StoreError::Corrupt { .. })));
        let not_a_number = page.replacen("7,", "x,", 1);
        assert!(matches!(decode_page(Some(not_a_number), &PAGE_FIELDS), Err(StoreError::Corrupt { .. })));
    }
}
