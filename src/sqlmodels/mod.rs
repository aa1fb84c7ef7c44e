//! SQL read models (so far `users`): rows in the store's database, advanced page by page in transactions that
//! also move the model's checkpoint. The checkpoint row is locked first and events at or
//! below it are skipped, so each event takes effect exactly once, across restarts and across
//! nodes sharing one PostgreSQL database.
use crate::store::{DbPool, SharedStore, StoreError};
use annals_events::RecordedEvent;
use annals_projections::users::{self as fold, UserChange};
use sqlx::Row;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Events per transaction: each page holds SQLite's write lock while it applies, so appends
/// wait at most one short page.
const PAGE: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum SqlModelError {
    /// The database failed; the runner retries after a pause, readiness reports the lag.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// An event cannot be decoded; the runner stops there (skipping would corrupt the model).
    #[error("event at position {0}: {1}")]
    Decode(u64, String),
    /// A stored row cannot be read back (written by a build with another row format).
    #[error("read model row: {0}")]
    Row(String),
}

pub mod users;

/// The SQL read models of this version (one so far).
pub const NAMES: [&str; 1] = [fold::NAME];

/// Turns `?` placeholders into PostgreSQL's `$n`.
fn pg(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

const ENSURE_CHECKPOINT: &str = "INSERT INTO checkpoints (name, position) VALUES (?, 0) ON CONFLICT (name) DO NOTHING";
const SET_CHECKPOINT: &str = "UPDATE checkpoints SET position = ? WHERE name = ?";

/// Whether any event of the page changes a row of the model.
fn changes_rows(events: &[RecordedEvent]) -> Result<bool, SqlModelError> {
    for e in events.iter().filter(|e| fold::concerns(&e.event_type)) {
        let d = e.decode().map_err(|err| SqlModelError::Decode(e.position, err.to_string()))?;
        if fold::changes(e, &d).is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

fn decode_changes(events: &[RecordedEvent], after: u64) -> Result<Vec<UserChange>, SqlModelError> {
    let mut out = Vec::new();
    for e in events.iter().filter(|e| e.position > after && fold::concerns(&e.event_type)) {
        let d = e.decode().map_err(|err| SqlModelError::Decode(e.position, err.to_string()))?;
        out.extend(fold::changes(e, &d));
    }
    Ok(out)
}

/// Applies the same statements through either backend's transaction.
macro_rules! apply_in_tx {
    ($tx:expr, $q:expr, $after:expr, $events:expr, $last:expr, $lock:expr) => {{
        sqlx::query(&$q(ENSURE_CHECKPOINT)).bind(fold::NAME).execute(&mut *$tx).await?;
        let at: i64 = sqlx::query($lock).bind(fold::NAME).fetch_one(&mut *$tx).await?.try_get(0)?;
        let at = at as u64;
        // The page holds every event after `$after`. A checkpoint behind that (a rebuild
        // reset it meanwhile) would leave a gap: nothing is applied, the caller reads again
        // from the checkpoint. One at or past it skips what was applied already.
        if at >= $after && $last > at {
            for change in decode_changes($events, at)? {
                for (sql, args) in users::statements(change)? {
                    let sql = $q(sql);
                    let mut q = sqlx::query(&sql);
                    for arg in args {
                        q = match arg {
                            users::Arg::Text(v) => q.bind(v),
                            users::Arg::MaybeText(v) => q.bind(v),
                            users::Arg::Int(v) => q.bind(v),
                            users::Arg::Bool(v) => q.bind(v),
                            users::Arg::MaybeBool(v) => q.bind(v),
                        };
                    }
                    q.execute(&mut *$tx).await?;
                }
            }
            sqlx::query(&$q(SET_CHECKPOINT)).bind($last as i64).bind(fold::NAME).execute(&mut *$tx).await?;
        }
    }};
}

/// Applies one page, `events` being every event after position `after` up to the page's
/// last, and moves the checkpoint, in one transaction (events at or below the stored
/// checkpoint are skipped). Returns the checkpoint afterwards: the caller reads on from it.
pub async fn apply_page(pool: &DbPool, after: u64, events: &[RecordedEvent]) -> Result<u64, SqlModelError> {
    let Some(last) = events.last().map(|e| e.position) else { return checkpoint(pool).await };
    let same = |s: &str| s.to_string();
    match pool {
        DbPool::Sqlite(p) => {
            let mut tx = p.begin().await?;
            apply_in_tx!(tx, same, after, events, last, "SELECT position FROM checkpoints WHERE name = ?");
            tx.commit().await?;
        }
        DbPool::Postgres(p) => {
            let mut tx = p.begin().await?;
            apply_in_tx!(tx, pg, after, events, last, "SELECT position FROM checkpoints WHERE name = $1 FOR UPDATE");
            tx.commit().await?;
        }
    }
    checkpoint(pool).await
}

pub async fn checkpoint(pool: &DbPool) -> Result<u64, SqlModelError> {
    let row = match pool {
        DbPool::Sqlite(p) => sqlx::query("SELECT position FROM checkpoints WHERE name = ?")
            .bind(fold::NAME)
            .fetch_optional(p)
            .await?
            .map(|r| r.try_get::<i64, _>(0)),
        DbPool::Postgres(p) => sqlx::query("SELECT position FROM checkpoints WHERE name = $1")
            .bind(fold::NAME)
            .fetch_optional(p)
            .await?
            .map(|r| r.try_get::<i64, _>(0)),
    };
    Ok(row.transpose()?.unwrap_or(0) as u64)
}

/// Brings the model up to the head; returns the checkpoint reached.
pub async fn catch_up(store: &SharedStore) -> Result<u64, SqlModelError> {
    catch_up_with(store, |_| {}).await
}

/// [`catch_up`], reporting the checkpoint after each page.
pub async fn catch_up_with(store: &SharedStore, progress: impl FnMut(u64)) -> Result<u64, SqlModelError> {
    let at = checkpoint(&store.pool()).await?;
    Ok(catch_up_from(store, at, at, None, progress).await?.0)
}

/// Events the stored checkpoint may trail the model by when none of them changes a row: pages
/// without changes move the position in memory only (no write transaction competing with the
/// log's writer for every token issued), and the checkpoint catches up at the next change or
/// after this many events, bounding what a restart reads again.
const CHECKPOINT_LAG: u64 = 50_000;

/// Catches up from `at`, the position this node reached (`persisted` being the stored
/// checkpoint it last saw); returns the position reached and the checkpoint stored.
///
/// `head`, where known, is a position the log has reached: a short page (what this node's
/// writer still holds in memory ends where another writer's commit begins) is then followed
/// by another read until the model reaches it. Unknown, reading goes on until a page is empty.
pub async fn catch_up_from(
    store: &SharedStore,
    mut at: u64,
    mut persisted: u64,
    head: Option<u64>,
    mut progress: impl FnMut(u64),
) -> Result<(u64, u64), SqlModelError> {
    let pool = store.pool();
    loop {
        let page = store.read_all_payloads(at, PAGE).await?;
        let Some(last) = page.last() else { return Ok((at, persisted)) };
        let (last, full) = (last.position, page.len() == PAGE);
        // Whole commits only: a full page that ends inside a commit leaves that commit's
        // events for the next page (they share `recorded_at`), so a reader never sees half an
        // import. A commit longer than a page is applied page by page.
        let upto = match (full, page.last().map(|e| e.recorded_at)) {
            (true, Some(t)) => page.iter().rposition(|e| e.recorded_at != t).map_or(page.len(), |i| i + 1),
            _ => page.len(),
        };
        let page = &page[..upto];
        let page_last = page.last().map_or(at, |e| e.position);
        if !changes_rows(page)? && page_last.saturating_sub(persisted) < CHECKPOINT_LAG {
            at = page_last;
        } else {
            // Applied as if the page began at the stored checkpoint: the events between it and
            // this page were read and change no row, so the page is all there is to apply.
            at = apply_page(&pool, persisted.min(at), page).await?;
            persisted = at;
        }
        progress(at);
        if !full && at >= last && head.is_some_and(|h| at >= h) {
            return Ok((at, persisted));
        }
    }
}

/// Drops the model's rows and checkpoint and rebuilds it from position 0.
pub async fn rebuild(store: &SharedStore, progress: impl FnMut(u64)) -> Result<u64, SqlModelError> {
    reset(&store.pool()).await?;
    catch_up_with(store, progress).await
}

/// Drops the model's rows and checkpoint, in one transaction.
pub async fn reset(pool: &DbPool) -> Result<(), SqlModelError> {
    match pool {
        DbPool::Sqlite(p) => {
            let mut tx = p.begin().await?;
            for table in users::TABLES {
                sqlx::query(&format!("DELETE FROM {table}")).execute(&mut *tx).await?;
            }
            sqlx::query("DELETE FROM checkpoints WHERE name = ?").bind(fold::NAME).execute(&mut *tx).await?;
            tx.commit().await?;
        }
        DbPool::Postgres(p) => {
            let mut tx = p.begin().await?;
            for table in users::TABLES {
                sqlx::query(&format!("DELETE FROM {table}")).execute(&mut *tx).await?;
            }
            sqlx::query("DELETE FROM checkpoints WHERE name = $1").bind(fold::NAME).execute(&mut *tx).await?;
            tx.commit().await?;
        }
    }
    Ok(())
}

/// Follows the log in the background, keeping the SQL read models current.
#[derive(Clone)]
pub struct SqlModels {
    position: watch::Receiver<u64>,
    healthy: watch::Receiver<bool>,
    task: Arc<JoinHandle<()>>,
}

impl SqlModels {
    /// Catches up, then follows the log. An event that cannot be folded does not stop the
    /// node: it starts unready and says why (as the in-memory read models do); a database
    /// that fails does stop the start.
    pub async fn start(store: SharedStore) -> Result<Self, SqlModelError> {
        let (healthy_now, at) = match catch_up(&store).await {
            Ok(at) => (true, at),
            Err(e @ SqlModelError::Decode(..)) => {
                tracing::error!(error = %e, "SQL read models stopped at an event they cannot fold; the node is not ready");
                (false, checkpoint(&store.pool()).await?)
            }
            Err(e) => return Err(e),
        };
        let (tx, position) = watch::channel(at);
        let (ok_tx, healthy) = watch::channel(healthy_now);
        let task = tokio::spawn(async move {
            // Unbounded: this model's rows commit after the events they come from, in the same
            // write-ahead log, and recovery keeps a prefix of it: no row outlives its event.
            // Where this node is, and the checkpoint it last stored (see `CHECKPOINT_LAG`).
            let reached = Arc::new(std::sync::Mutex::new((at, at)));
            let catch = |head| {
                let (store, reached) = (store.clone(), reached.clone());
                async move {
                    let (from, persisted) = *reached.lock().unwrap_or_else(|p| p.into_inner());
                    let (at, stored) = catch_up_from(&store, from, persisted, Some(head), |_| {}).await?;
                    *reached.lock().unwrap_or_else(|p| p.into_inner()) = (at, stored);
                    Ok::<u64, SqlModelError>(at)
                }
            };
            let health = |ok: bool| {
                let _ = ok_tx.send(ok);
            };
            crate::readmodels::follow_head(store.clone(), &NAMES, tx, catch, health, Duration::from_secs(2)).await
        });
        Ok(SqlModels { position, healthy, task: Arc::new(task) })
    }

    /// False while the models cannot catch up (an event they cannot fold, a failing database).
    pub fn healthy(&self) -> bool {
        *self.healthy.borrow()
    }

    pub fn position(&self) -> u64 {
        *self.position.borrow()
    }

    pub async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let mut rx = self.position.clone();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|p| *p >= position)).await;
        matches!(reached, Ok(Ok(_)))
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(pg("a = ? AND b = ?"), "a = $1 AND b = $2");
    }
}
