//! SQL read models: rows in the store's database, advanced page by page in transactions that
//! also move the model's checkpoint. The checkpoint row is locked first and events at or
//! below it are skipped, so each event takes effect exactly once, across restarts and across
//! nodes sharing one PostgreSQL database.
use crate::store::{DbPool, SharedStore, StoreError};
use annals_events::RecordedEvent;
use annals_projections::user_search::{self, UserSearchChange, UserSearchRow};
use sqlx::Row;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const PAGE: usize = 2000;

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
}

/// The SQL read models of this version (one so far).
pub const NAMES: [&str; 1] = [user_search::NAME];

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

const INSERT: &str =
    "INSERT INTO rm_user_search (user_id, realm_id, username, email, first_name, last_name, enabled, created_ms) \
                      VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO NOTHING";
const PROFILE: &str =
    "UPDATE rm_user_search SET email = ?, first_name = ?, last_name = ?, enabled = ? WHERE user_id = ?";
const DELETE: &str = "DELETE FROM rm_user_search WHERE user_id = ?";
const ENSURE_CHECKPOINT: &str = "INSERT INTO checkpoints (name, position) VALUES (?, 0) ON CONFLICT (name) DO NOTHING";
const SET_CHECKPOINT: &str = "UPDATE checkpoints SET position = ? WHERE name = ?";

fn decode_changes(events: &[RecordedEvent], after: u64) -> Result<Vec<UserSearchChange>, SqlModelError> {
    let mut out = Vec::new();
    for e in events.iter().filter(|e| e.position > after) {
        let d = e.decode().map_err(|err| SqlModelError::Decode(e.position, err.to_string()))?;
        out.extend(user_search::changes(e, &d));
    }
    Ok(out)
}

/// Applies the same statements through either backend's transaction.
macro_rules! apply_in_tx {
    ($tx:expr, $q:expr, $events:expr, $last:expr, $lock:expr) => {{
        sqlx::query(&$q(ENSURE_CHECKPOINT)).bind(user_search::NAME).execute(&mut *$tx).await?;
        let at: i64 = sqlx::query($lock).bind(user_search::NAME).fetch_one(&mut *$tx).await?.try_get(0)?;
        let at = at as u64;
        if $last > at {
            for change in decode_changes($events, at)? {
                match change {
                    UserSearchChange::Insert(r) => {
                        sqlx::query(&$q(INSERT))
                            .bind(r.user_id)
                            .bind(r.realm_id)
                            .bind(r.username)
                            .bind(r.email)
                            .bind(r.first_name)
                            .bind(r.last_name)
                            .bind(r.enabled)
                            .bind(r.created_ms)
                            .execute(&mut *$tx)
                            .await?;
                    }
                    UserSearchChange::Profile { user_id, email, first_name, last_name, enabled } => {
                        sqlx::query(&$q(PROFILE))
                            .bind(email)
                            .bind(first_name)
                            .bind(last_name)
                            .bind(enabled)
                            .bind(user_id)
                            .execute(&mut *$tx)
                            .await?;
                    }
                    UserSearchChange::Delete { user_id } => {
                        sqlx::query(&$q(DELETE)).bind(user_id).execute(&mut *$tx).await?;
                    }
                }
            }
            sqlx::query(&$q(SET_CHECKPOINT)).bind($last as i64).bind(user_search::NAME).execute(&mut *$tx).await?;
        }
    }};
}

/// Applies one page (events at or below the stored checkpoint are skipped) and moves the
/// checkpoint, in one transaction. Returns the checkpoint after the page.
pub async fn apply_page(pool: &DbPool, events: &[RecordedEvent]) -> Result<u64, SqlModelError> {
    let Some(last) = events.last().map(|e| e.position) else { return checkpoint(pool).await };
    let same = |s: &str| s.to_string();
    match pool {
        DbPool::Sqlite(p) => {
            let mut tx = p.begin().await?;
            apply_in_tx!(tx, same, events, last, "SELECT position FROM checkpoints WHERE name = ?");
            tx.commit().await?;
        }
        DbPool::Postgres(p) => {
            let mut tx = p.begin().await?;
            apply_in_tx!(tx, pg, events, last, "SELECT position FROM checkpoints WHERE name = $1 FOR UPDATE");
            tx.commit().await?;
        }
    }
    checkpoint(pool).await
}

pub async fn checkpoint(pool: &DbPool) -> Result<u64, SqlModelError> {
    let row = match pool {
        DbPool::Sqlite(p) => sqlx::query("SELECT position FROM checkpoints WHERE name = ?")
            .bind(user_search::NAME)
            .fetch_optional(p)
            .await?
            .map(|r| r.try_get::<i64, _>(0)),
        DbPool::Postgres(p) => sqlx::query("SELECT position FROM checkpoints WHERE name = $1")
            .bind(user_search::NAME)
            .fetch_optional(p)
            .await?
            .map(|r| r.try_get::<i64, _>(0)),
    };
    Ok(row.transpose()?.unwrap_or(0) as u64)
}

/// Brings the model up to the head; returns the checkpoint reached.
pub async fn catch_up(store: &SharedStore) -> Result<u64, SqlModelError> {
    let pool = store.pool();
    let mut at = checkpoint(&pool).await?;
    loop {
        let page = store.read_all(at, PAGE).await?;
        if page.is_empty() {
            return Ok(at);
        }
        let full = page.len() == PAGE;
        at = apply_page(&pool, &page).await?.max(page[page.len() - 1].position);
        if !full {
            return Ok(at);
        }
    }
}

/// Drops the model's rows and checkpoint and rebuilds it from position 0.
pub async fn rebuild(store: &SharedStore) -> Result<u64, SqlModelError> {
    match store.pool() {
        DbPool::Sqlite(p) => {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM rm_user_search").execute(&mut *tx).await?;
            sqlx::query("DELETE FROM checkpoints WHERE name = ?").bind(user_search::NAME).execute(&mut *tx).await?;
            tx.commit().await?;
        }
        DbPool::Postgres(p) => {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM rm_user_search").execute(&mut *tx).await?;
            sqlx::query("DELETE FROM checkpoints WHERE name = $1").bind(user_search::NAME).execute(&mut *tx).await?;
            tx.commit().await?;
        }
    }
    catch_up(store).await
}

/// Escapes LIKE wildcards so a search term matches literally.
fn like_pattern(needle: &str) -> String {
    let mut p = String::from("%");
    for c in needle.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

const SEARCH: &str =
    "SELECT user_id, realm_id, username, email, first_name, last_name, enabled, created_ms FROM rm_user_search \
     WHERE realm_id = ? AND (lower(username) LIKE ? ESCAPE '\\' OR lower(COALESCE(email, '')) LIKE ? ESCAPE '\\' \
     OR lower(COALESCE(first_name, '')) LIKE ? ESCAPE '\\' OR lower(COALESCE(last_name, '')) LIKE ? ESCAPE '\\') \
     ORDER BY lower(username), user_id LIMIT ? OFFSET ?";

/// Users of a realm whose username, email, first or last name contains `needle`
/// (case-insensitive), ordered by username, paged like Keycloak's `first`/`max`.
pub async fn search(
    pool: &DbPool,
    realm_id: &str,
    needle: &str,
    first: u32,
    max: u32,
) -> Result<Vec<UserSearchRow>, SqlModelError> {
    let pat = like_pattern(needle);
    macro_rules! run {
        ($p:expr, $sql:expr) => {
            sqlx::query($sql)
                .bind(realm_id)
                .bind(&pat)
                .bind(&pat)
                .bind(&pat)
                .bind(&pat)
                .bind(max.min(1000) as i64)
                .bind(first as i64)
                .fetch_all($p)
                .await?
        };
    }
    macro_rules! row {
        ($r:expr) => {
            UserSearchRow {
                user_id: $r.try_get(0)?,
                realm_id: $r.try_get(1)?,
                username: $r.try_get(2)?,
                email: $r.try_get(3)?,
                first_name: $r.try_get(4)?,
                last_name: $r.try_get(5)?,
                enabled: $r.try_get(6)?,
                created_ms: $r.try_get(7)?,
            }
        };
    }
    match pool {
        DbPool::Sqlite(p) => run!(p, SEARCH).iter().map(|r| Ok(row!(r))).collect(),
        DbPool::Postgres(p) => run!(p, &pg(SEARCH)).iter().map(|r| Ok(row!(r))).collect(),
    }
}

/// Follows the log in the background, keeping `user_search` current.
#[derive(Clone)]
pub struct SqlModels {
    position: watch::Receiver<u64>,
    task: Arc<JoinHandle<()>>,
}

impl SqlModels {
    pub async fn start(store: SharedStore) -> Result<Self, SqlModelError> {
        let at = catch_up(&store).await?;
        let (tx, position) = watch::channel(at);
        let task = tokio::spawn(async move {
            let catch = || {
                let store = store.clone();
                async move { catch_up(&store).await }
            };
            let names = [user_search::NAME];
            crate::readmodels::follow_head(store.clone(), &names, tx, catch, |_| {}, Duration::from_secs(2)).await
        });
        Ok(SqlModels { position, task: Arc::new(task) })
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

    #[test]
    fn search_terms_match_literally() {
        assert_eq!(like_pattern("A_b%c\\"), "%a\\_b\\%c\\\\%");
    }
}
