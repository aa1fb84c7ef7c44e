//! The event store: one trait, two sqlx implementations (SQLite embedded, PostgreSQL shared).
//!
//! Appends go through a group-commit writer (`writer.rs`): concurrent appends are planned
//! together (`plan.rs`, pure) and written in one transaction, so one fsync serves many
//! requests and positions are assigned by one party at a time.
mod error;
mod pg_config;
mod pg_writer;
mod plan;
pub mod postgres;
mod recent;
mod rows;
pub mod sqlite;
mod sqlite_writer;
mod writer;

pub use error::StoreError;
pub use writer::{DeferredOutcome, DEFER_AT_MOST};

use annals_events::{NewEvent, RecordedEvent, StreamId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::fmt;
use std::sync::Arc;
use tokio::sync::watch;

/// What the caller believes the stream's version is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the version (only for streams with a single writer by construction).
    Any,
    /// The stream is at exactly this version; 0 means it must not exist yet.
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

/// Events to append to one stream.
#[derive(Clone, Debug)]
pub struct StreamAppend {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// The event types whose payload's `user_id` ties their stream to a user; the same list as
/// the `events_naming_user` index's predicate (a query must repeat it to use the index).
pub(crate) const NAMING_USER: &str =
    "'session.started', 'auth_request.authenticated', 'auth_request.credentials_rejected', 'client_grant.issued'";

/// Where an append landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub stream: StreamId,
    pub first_version: u64,
    pub last_version: u64,
    pub first_position: u64,
    pub last_position: u64,
}

/// How far to read a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadUntil {
    End,
    Version(u64),
    Time(DateTime<Utc>),
}

/// A cached aggregate state at a stream version.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub stream: StreamId,
    pub version: u64,
    pub state: String,
}

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends to several streams atomically: all appends commit or none does.
    async fn append_all(&self, appends: Vec<StreamAppend>) -> Result<Vec<Appended>, StoreError>;

    /// Appends to one stream.
    async fn append(&self, append: StreamAppend) -> Result<Appended, StoreError> {
        let mut out = self.append_all(vec![append]).await?;
        out.pop().ok_or(StoreError::Closed)
    }

    /// Appends committed with the next batch of other appends or within [`DEFER_AT_MOST`],
    /// rather than in a transaction and a disk flush of their own: returns once queued, with
    /// the outcome to come. Only for records no answer depends on being durable (a login
    /// page's authorization request, a login's code on a node that is the log's only user).
    /// They commit ahead of appends queued before them, so each must expect an exact version
    /// and come from its stream's only writer once every earlier append to that stream was
    /// answered (an actor, or a new stream's creation). A store without a writer of its own
    /// appends at once.
    async fn append_deferred(&self, appends: Vec<StreamAppend>) -> Result<DeferredOutcome, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = tx.send(self.append_all(appends).await);
        Ok(rx)
    }

    /// Events of one stream with `version > after_version`, up to `until`, in version order.
    async fn read_stream(
        &self,
        stream: &StreamId,
        after_version: u64,
        until: ReadUntil,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// A stream's events after `after_version` to its end, for folding into an aggregate: like
    /// [`EventStore::read_stream`], but the event id may be nil, the metadata empty and the
    /// hashes zero.
    async fn read_stream_payloads(
        &self,
        stream: &StreamId,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_stream(stream, after_version, ReadUntil::End).await
    }

    /// The global log from `after_position` (exclusive), at most `limit` events.
    async fn read_all(&self, after_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The global log like [`EventStore::read_all`], for folds that need only what the events
    /// say: the event id may be nil, the metadata empty and the hashes zero (read models use
    /// this; verification, `events tail` and audit never do).
    async fn read_all_payloads(&self, after_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_all(after_position, limit).await
    }

    /// Whether this node is the only one that appends to and reads from this log (an embedded
    /// database), so that what it defers is seen by nobody before it commits. `false` for a
    /// log other nodes may share (PostgreSQL), where another node may be asked next.
    fn exclusive(&self) -> bool {
        false
    }

    /// The last committed position, asked of the database.
    async fn head(&self) -> Result<u64, StoreError>;

    /// Every stream whose first events name this user (sessions, authorization requests,
    /// client grants), found by index (`events_naming_user`), not by reading the log.
    async fn streams_naming_user(&self, user_id: &str) -> Result<Vec<StreamId>, StoreError>;

    /// The events of these streams recorded between `from` and `to` (inclusive), in log order.
    async fn read_streams_between(
        &self,
        streams: &[StreamId],
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Every event of the realm and client streams, in log order (by index): enough to fold
    /// the names audit records carry without reading the whole log.
    async fn read_directory(&self) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Wake-ups when the head moves (this node's commits and, on PostgreSQL, other nodes').
    fn watch_head(&self) -> watch::Receiver<u64>;

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError>;
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError>;

    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// The database, for SQL read models that keep their rows and checkpoint beside the log.
    fn pool(&self) -> DbPool;

    /// Stops the writer after the appends already queued have been committed.
    async fn shutdown(&self);
}

pub type SharedStore = Arc<dyn EventStore>;

/// A connection pool of either backend.
#[derive(Clone, Debug)]
pub enum DbPool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Opens the store a database URL names: `postgres://...` or `sqlite://FILE` / a bare path.
pub async fn open(database_url: &str) -> Result<SharedStore, StoreError> {
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::connect(database_url).await?))
    } else {
        Ok(Arc::new(sqlite::SqliteStore::open(database_url).await?))
    }
}

/// Moves a position watch forward (never back) and wakes its receivers only when it moved.
/// Heads and checkpoints are reported by several parties (this node's writer, pollers,
/// NOTIFY); a late, smaller report must not rewind them.
pub fn advance(position: &watch::Sender<u64>, to: u64) {
    position.send_if_modified(|p| {
        let moved = to > *p;
        if moved {
            *p = to;
        }
        moved
    });
}

/// Reads the whole global log in pages, handing each page to `f`.
pub async fn for_each_page<F>(store: &dyn EventStore, after: u64, page: usize, mut f: F) -> Result<u64, StoreError>
where
    F: FnMut(&[RecordedEvent]) -> Result<(), StoreError>,
{
    let mut pos = after;
    loop {
        let events = store.read_all(pos, page).await?;
        let Some(last) = events.last() else {
            return Ok(pos);
        };
        pos = last.position;
        f(&events)?;
        if events.len() < page {
            return Ok(pos);
        }
    }
}
