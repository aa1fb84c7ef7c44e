//! The projection runner for the in-memory read models: rebuilds them from position 0 at
//! start, then follows the log (this node's commits and, on PostgreSQL, other nodes').
use crate::metrics;
use crate::store::{SharedStore, StoreError};
use annals_events::RecordedEvent;
use annals_projections::Directory;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const PAGE: usize = 2500;

#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    /// The store failed while rebuilding; start-up aborts.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An event cannot be folded; the runner stops at it and readiness fails until an
    /// operator intervenes (a skipped event would make the read model silently wrong).
    #[error(transparent)]
    Fold(#[from] annals_projections::directory::FoldError),
    /// The task reading the next page panicked (a bug); the catch-up is retried.
    #[error("page reader failed: {0}")]
    Reader(String),
    /// The read model did not reach a position in time (read-your-writes wait).
    #[error("read model did not reach position {0} in time")]
    Timeout(u64),
}

/// The configuration read models of this node.
#[derive(Clone)]
pub struct ReadModels {
    dir: Arc<RwLock<Directory>>,
    position: watch::Receiver<u64>,
    healthy: watch::Receiver<bool>,
    task: Arc<JoinHandle<()>>,
}

/// Folds the log after the directory's position into `dir`. Events of one commit share their
/// `recorded_at`, so a page that ends inside a commit keeps its trailing run back until the
/// next page completes it: readers see whole commits (an imported realm appears at once).
///
/// Folds nothing after `until`, the last durable position the caller knows of: a PostgreSQL
/// batch is visible a moment before it is durable, and a node that folded one that a crash of
/// PostgreSQL then took back would hold it (and skip whatever reuses its positions) for as
/// long as it runs.
pub async fn catch_up(
    store: &SharedStore,
    dir: &RwLock<Directory>,
    until: u64,
    mut progress: impl FnMut(u64),
) -> Result<u64, ReadModelError> {
    let after = dir.read().unwrap_or_else(|p| p.into_inner()).position;
    // The next page is read (by SQLite's connection thread or PostgreSQL) while this one is
    // folded, so a rebuild costs max(read, fold) per page rather than their sum.
    let read = |after: u64| {
        let store = store.clone();
        tokio::spawn(async move { store.read_all_payloads(after, PAGE).await })
    };
    let mut next = Some(read(after));
    let mut carry: Vec<RecordedEvent> = Vec::new();
    while let Some(pending) = next.take() {
        let mut page = pending.await.map_err(|e| ReadModelError::Reader(e.to_string()))??;
        let beyond = page.iter().position(|e| e.position > until);
        if let Some(i) = beyond {
            page.truncate(i);
        }
        // `until` ends a commit, so a page cut there ends whole. A short page that stops
        // before `until` came from the writer's memory and ends where another writer's commit
        // begins: whole too, and the rest is read next.
        let full = beyond.is_none() && page.len() == PAGE;
        let short = beyond.is_none() && page.last().is_some_and(|l| l.position < until);
        if let (true, Some(last)) = (full || short, page.last()) {
            next = Some(read(last.position));
        }
        carry.extend(page);
        let ready = if full {
            let last_at = carry.last().map(|e| e.recorded_at);
            let cut = carry.iter().rposition(|e| Some(e.recorded_at) != last_at).map_or(0, |i| i + 1);
            let rest = carry.split_off(cut);
            std::mem::replace(&mut carry, rest)
        } else {
            std::mem::take(&mut carry)
        };
        if !ready.is_empty() {
            let mut d = dir.write().unwrap_or_else(|p| p.into_inner());
            for e in &ready {
                d.fold(e)?;
            }
            progress(d.position);
        }
    }
    Ok(dir.read().unwrap_or_else(|p| p.into_inner()).position)
}

/// Rebuilds a directory from the whole log, without following it.
pub async fn rebuild(store: &SharedStore, progress: impl FnMut(u64)) -> Result<Directory, ReadModelError> {
    let dir = RwLock::new(Directory::default());
    catch_up(store, &dir, store.head().await?, progress).await?;
    Ok(dir.into_inner().unwrap_or_else(|p| p.into_inner()))
}

impl ReadModels {
    /// Rebuilds from the log, then follows it in the background. An event that cannot be
    /// folded does not stop the node: it starts unready and says why.
    pub async fn start(store: SharedStore) -> Result<Self, ReadModelError> {
        let dir = Arc::new(RwLock::new(Directory::default()));
        let healthy_now = match catch_up(&store, &dir, store.head().await?, |_| {}).await {
            Ok(_) => true,
            Err(ReadModelError::Fold(e)) => {
                tracing::error!(error = %e, "read models stopped at an event they cannot fold; the node is not ready");
                false
            }
            Err(e) => return Err(e),
        };
        let at = dir.read().unwrap_or_else(|p| p.into_inner()).position;
        let (pos_tx, position) = watch::channel(at);
        let (ok_tx, healthy) = watch::channel(healthy_now);
        let follower = dir.clone();
        let task = tokio::spawn(async move {
            let catch = |until| {
                let (store, dir) = (store.clone(), follower.clone());
                async move { catch_up(&store, &dir, until, |_| {}).await }
            };
            let health = |ok: bool| {
                let _ = ok_tx.send(ok);
            };
            follow_head(store.clone(), &Directory::NAMES, pos_tx, catch, health, Duration::from_secs(5)).await
        });
        Ok(ReadModels { dir, position, healthy, task: Arc::new(task) })
    }

    /// A consistent view of every read model.
    pub fn read(&self) -> RwLockReadGuard<'_, Directory> {
        self.dir.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn position(&self) -> u64 {
        *self.position.borrow()
    }

    pub fn healthy(&self) -> bool {
        *self.healthy.borrow()
    }

    /// Waits until the read models include `position` (read-your-writes after a command).
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> Result<(), ReadModelError> {
        let mut rx = self.position.clone();
        tokio::time::timeout(timeout, rx.wait_for(|p| *p >= position))
            .await
            .map_err(|_| ReadModelError::Timeout(position))?
            .map_err(|_| ReadModelError::Timeout(position))?;
        Ok(())
    }

    /// Forgets sessions past their lifetime (nothing is appended when a session merely
    /// times out, so the fold alone would keep them).
    pub fn sweep_sessions(&self, now: i64) {
        self.dir.write().unwrap_or_else(|p| p.into_inner()).sessions.sweep(now);
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

/// Keeps a read model current: runs `catch_up` whenever the log head moves, publishes the
/// position reached, reports position and lag per model name, and retries after `retry`
/// when catching up fails (the model stays where it was: nothing is skipped). Shared by the
/// in-memory and the SQL read models.
pub(crate) async fn follow_head<E, Fut>(
    store: SharedStore,
    names: &[&str],
    position: watch::Sender<u64>,
    mut catch_up: impl FnMut(u64) -> Fut,
    mut healthy: impl FnMut(bool),
    retry: Duration,
) where
    E: std::fmt::Display,
    Fut: std::future::Future<Output = Result<u64, E>>,
{
    let mut head = store.watch_head();
    loop {
        // The head watch moves only to durable positions; a move during the catch-up makes
        // `changed` return at once below.
        let h = *head.borrow_and_update();
        match catch_up(h).await {
            Ok(at) => {
                healthy(true);
                crate::store::advance(&position, at);
                for name in names {
                    metrics::PROJECTION_POSITION.with_label_values(&[name]).set(at as i64);
                    metrics::PROJECTION_LAG.with_label_values(&[name]).set(h.saturating_sub(at) as i64);
                }
                if head.changed().await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, models = ?names, "read model cannot catch up; retrying");
                healthy(false);
                tokio::time::sleep(retry).await;
            }
        }
    }
}
