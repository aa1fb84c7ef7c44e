//! Group commit: one task per store takes every queued append, commits them in one
//! transaction, and answers each caller. One writer per process also means positions are
//! handed out by one party at a time (PostgreSQL adds an advisory lock across nodes).
use super::plan::Outcome;
use super::{Appended, StoreError, StreamAppend};
use crate::metrics;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, watch, Mutex, Notify};

/// Upper bound of events per transaction: keeps one batch's latency and memory bounded.
const MAX_BATCH_EVENTS: usize = 4096;
/// Appends waiting for the writer; a full queue makes callers wait (back-pressure).
const QUEUE: usize = 16 * 1024;

/// A database that can commit one planned batch atomically.
#[async_trait]
pub(crate) trait Backend: Send + 'static {
    /// Commits what it can of `requests` in one transaction. `Err` means nothing committed.
    /// Returns each request's outcome and the new head position.
    async fn commit(
        &mut self,
        requests: &[&[StreamAppend]],
        now: DateTime<Utc>,
    ) -> Result<(Vec<Outcome>, u64), StoreError>;
}

struct Pending {
    appends: Vec<StreamAppend>,
    reply: oneshot::Sender<Outcome>,
}

pub(crate) struct Writer {
    queue: mpsc::Sender<Pending>,
    stop: Arc<Notify>,
    done: Mutex<Option<oneshot::Receiver<()>>>,
}

impl Writer {
    /// Starts the writer on a thread of its own with its own runtime: the serialization point
    /// of every append must not wait in a run queue behind request handlers. `connect` builds
    /// the backend on that runtime, so its connections' I/O is driven there too.
    pub async fn spawn<B, F, Fut>(
        connect: F,
        head: Arc<watch::Sender<u64>>,
        store: &'static str,
    ) -> Result<Self, StoreError>
    where
        B: Backend,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<B, StoreError>>,
    {
        let (queue, rx) = mpsc::channel(QUEUE);
        let stop = Arc::new(Notify::new());
        let (ready_tx, ready_rx) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        let stop2 = stop.clone();
        std::thread::Builder::new()
            .name(format!("annals-{store}-writer"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(StoreError::Invalid(format!("writer runtime: {e}"))));
                        return;
                    }
                };
                rt.block_on(async move {
                    match connect().await {
                        Ok(backend) => {
                            let _ = ready_tx.send(Ok(()));
                            run(backend, rx, head, stop2, store).await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
                let _ = done_tx.send(());
            })
            .map_err(|e| StoreError::Invalid(format!("writer thread: {e}")))?;
        ready_rx.await.map_err(|_| StoreError::Closed)??;
        Ok(Writer { queue, stop, done: Mutex::new(Some(done)) })
    }

    pub async fn append(&self, appends: Vec<StreamAppend>) -> Result<Vec<Appended>, StoreError> {
        if appends.is_empty() {
            return Ok(Vec::new());
        }
        // Refuse malformed requests before they reach a batch: one bad request must never
        // fail the statements other callers share.
        super::plan::validate(&appends)?;
        let started = Instant::now();
        let (reply, rx) = oneshot::channel();
        self.queue.send(Pending { appends, reply }).await.map_err(|_| StoreError::Closed)?;
        let out = rx.await.map_err(|_| StoreError::Closed)?;
        metrics::APPEND_SECONDS.observe(started.elapsed().as_secs_f64());
        out
    }

    /// Commits everything already queued, then stops.
    pub async fn shutdown(&self) {
        self.stop.notify_one();
        if let Some(done) = self.done.lock().await.take() {
            let _ = done.await;
        }
    }
}

async fn run<B: Backend>(
    mut backend: B,
    mut rx: mpsc::Receiver<Pending>,
    head: Arc<watch::Sender<u64>>,
    stop: Arc<Notify>,
    store: &'static str,
) {
    loop {
        let first = tokio::select! {
            p = rx.recv() => p,
            _ = stop.notified() => { rx.close(); rx.recv().await }
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        let mut events: usize = batch[0].appends.iter().map(|a| a.events.len()).sum();
        drain(&mut rx, &mut batch, &mut events);
        let requests: Vec<&[StreamAppend]> = batch.iter().map(|p| p.appends.as_slice()).collect();
        match backend.commit(&requests, Utc::now()).await {
            Ok((outcomes, new_head)) => {
                publish(&head, store, batch.len(), &outcomes, new_head);
                for (p, o) in batch.into_iter().zip(outcomes) {
                    let _ = p.reply.send(o);
                }
            }
            Err(e) if batch.len() > 1 => {
                // One request may have made the shared statement fail: retry each alone so
                // only the culprit sees the error.
                tracing::warn!(error = %e, requests = batch.len(), "batch failed; retrying its requests one by one");
                for p in batch {
                    let out = match backend.commit(&[p.appends.as_slice()], Utc::now()).await {
                        Ok((mut outcomes, new_head)) => {
                            publish(&head, store, 1, &outcomes, new_head);
                            outcomes.pop().unwrap_or(Err(StoreError::Closed))
                        }
                        Err(e) => Err(e),
                    };
                    let _ = p.reply.send(out);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "append failed; nothing of it was committed");
                for p in batch {
                    let _ = p.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Takes queued requests into the batch up to the event limit.
fn drain(rx: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>, events: &mut usize) {
    while *events < MAX_BATCH_EVENTS {
        match rx.try_recv() {
            Ok(p) => {
                *events += p.appends.iter().map(|a| a.events.len()).sum::<usize>();
                batch.push(p);
            }
            Err(_) => break,
        }
    }
}

/// Counts what a commit wrote and moves the head watch.
fn publish(head: &watch::Sender<u64>, store: &'static str, requests: usize, outcomes: &[Outcome], new_head: u64) {
    let written: u64 = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .flat_map(|v| v.iter())
        .map(|a| a.last_position + 1 - a.first_position)
        .sum();
    metrics::EVENTS_APPENDED.with_label_values(&[store]).inc_by(written);
    metrics::BATCH_SIZE.observe(requests as f64);
    super::advance(head, new_head);
}
