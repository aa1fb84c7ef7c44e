use annals_events::StreamId;
use std::sync::Arc;

use super::ExpectedVersion;

/// Errors of the event store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The stream moved on since the caller read it. Handled by the aggregate host: reload and
    /// decide again once; surfaced to HTTP as 409.
    #[error("version conflict on {stream}: expected {expected}, stream is at version {actual}")]
    Conflict { stream: StreamId, expected: ExpectedVersion, actual: u64 },
    /// A retried append whose event ids are only partly stored or stored on another stream: a
    /// caller bug, never retried; surfaced as 500.
    #[error("event {event_id} was already appended with different contents")]
    IdempotencyMismatch { event_id: uuid::Uuid },
    /// The database failed or is unreachable. Nothing of the batch was committed; surfaced as 503.
    #[error("database error: {0}")]
    Database(#[source] Arc<sqlx::Error>),
    /// A writer's direct connection failed (rusqlite for SQLite, tokio-postgres for
    /// PostgreSQL), or a committed batch could not be made durable; surfaced as 503. A caller
    /// may retry with the same event ids: the store answers the committed result, if any.
    #[error("database error: {0}")]
    Engine(String),
    /// Migrating the schema failed at start-up; fatal.
    #[error("schema migration failed: {0}")]
    Migration(String),
    /// A stored row cannot be read back; `annals verify` locates the damage.
    #[error("stored event at position {position} is unreadable: {reason}")]
    Corrupt { position: u64, reason: String },
    /// The writer has shut down; the server is stopping. Surfaced as 503.
    #[error("event store is shut down")]
    Closed,
    /// An append without events or with an invalid shape; a caller bug.
    #[error("invalid append: {0}")]
    Invalid(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(Arc::new(e))
    }
}
