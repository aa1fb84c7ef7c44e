//! Group commit: one task per store takes every queued append, commits them in one
//! transaction, and answers each caller. One writer per process also means positions are
//! handed out by one party at a time (PostgreSQL adds an advisory lock across nodes).
use super::plan::Outcome;
use super::recent::Recent;
use super::{Appended, StoreError, StreamAppend};
use crate::metrics;
use annals_events::RecordedEvent;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, watch, Mutex, Notify};

/// Upper bound of events per transaction: keeps one batch's latency and memory bounded.
const MAX_BATCH_EVENTS: usize = 4096;
/// Appends waiting for the writer; a full queue makes callers wait (back-pressure).
const QUEUE: usize = 16 * 1024;

/// What one committed transaction did.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Each request's outcome, in request order.
    pub outcomes: Vec<Outcome>,
    /// The head position after the commit (the one seen, if nothing was written).
    pub head: u64,
    /// The rows written, in position order (for the window of recent events).
    pub rows: Vec<RecordedEvent>,
}

/// A database that can commit one planned batch atomically.
#[async_trait]
pub(crate) trait Backend: Send + 'static {
    /// Commits what it can of `requests` in one transaction. `Err` means nothing committed.
    async fn commit(&mut self, requests: &[&[StreamAppend]], now: DateTime<Utc>) -> Result<Batch, StoreError>;

    /// For a backend whose COMMIT returns before the disk has the batch: the flush that makes
    /// every commit so far durable. The writer then acknowledges a batch only after a flush
    /// that began after its COMMIT returned, and runs flushes on a thread of their own while
    /// the next batch's statements run: the disk's sync no longer holds up the next batch,
    /// and one sync covers every batch committed while the previous one was in flight.
    fn flusher(&mut self) -> Result<Option<Box<dyn Flush>>, StoreError> {
        Ok(None)
    }
}

/// Makes durable everything its backend has committed so far.
#[async_trait]
pub(crate) trait Flush: Send + 'static {
    /// Returns once every commit made before the call is durable; `head` is the last
    /// position among them (PostgreSQL announces it to other nodes from here).
    async fn flush(&mut self, head: u64) -> Result<(), StoreError>;

    /// Whether a failed flush leaves the log in doubt for good. A failed fsync may have
    /// dropped the pages it could not write, so a later successful one proves nothing (the
    /// writer then refuses appends until restart); a flush that PostgreSQL performs and the
    /// connection loses is settled by the next one, which covers everything before it.
    fn failure_is_final(&self) -> bool;
}

/// How long a deferred append (see [`Writer::append_deferred`]) waits at most for a batch to
/// come along with before it is committed on its own.
pub const DEFER_AT_MOST: std::time::Duration = std::time::Duration::from_millis(50);

/// Deferred appends waiting for a batch; a full queue makes callers wait, as the main one does.
const DEFERRED_QUEUE: usize = 4 * 1024;

/// Committed batches queued for the flusher, at most this many (besides the group being
/// flushed and the batch the writer holds): past it the writer waits.
const UNFLUSHED: usize = 8;

struct Pending {
    appends: Vec<StreamAppend>,
    reply: oneshot::Sender<Outcome>,
}

/// A committed batch: its callers' outcomes, sent once the batch is durable.
struct Committed {
    replies: Vec<(oneshot::Sender<Outcome>, Outcome)>,
    new_head: u64,
}

/// Where committed batches go: answered at once (COMMIT was durable), or through the flusher.
/// The flusher holds one too (without a channel) for the head, the metrics label and the flag.
struct Acks {
    flushed: Option<mpsc::Sender<Committed>>,
    /// The window of recent events: told what became durable, emptied when a flush fails.
    recent: Arc<Recent>,
    head: Arc<watch::Sender<u64>>,
    store: &'static str,
    /// Set when the log's durability is in doubt for good (a failed fsync, a flusher gone):
    /// the writer then refuses every later batch until the node restarts, as PostgreSQL stops
    /// itself after a failed fsync of its own WAL.
    failed: Arc<AtomicBool>,
}

impl Acks {
    async fn deliver(&self, c: Committed) {
        match &self.flushed {
            None => acknowledge(&self.head, self.store, &self.recent, c),
            Some(tx) => {
                if let Err(mpsc::error::SendError(c)) = tx.send(c).await {
                    // The flusher is gone (it panicked): this batch is committed but never
                    // flushed, and so would be every later one.
                    tracing::error!("the flusher stopped; refusing appends until restart");
                    self.failed.store(true, Ordering::Release);
                    for (reply, _) in c.replies {
                        let _ = reply.send(Err(sync_failed()));
                    }
                }
            }
        }
    }
}

fn acknowledge(head: &watch::Sender<u64>, store: &'static str, recent: &Recent, c: Committed) {
    // Before the head moves: a read model woken by it may take these rows from the window.
    recent.durable(c.new_head);
    let outcomes: Vec<&Outcome> = c.replies.iter().map(|(_, o)| o).collect();
    publish(head, store, &outcomes, c.new_head);
    for (reply, o) in c.replies {
        let _ = reply.send(o);
    }
}

fn sync_failed() -> StoreError {
    StoreError::Engine(
        "the disk did not confirm a write of the event log; this node refuses appends until it restarts".into(),
    )
}

/// Flushes committed batches, as many per flush as arrived meanwhile, and answers them in
/// commit order.
async fn flush_loop(mut flusher: Box<dyn Flush>, mut rx: mpsc::Receiver<Committed>, acks: Acks) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while let Ok(c) = rx.try_recv() {
            group.push(c);
        }
        let head = group.iter().map(|c| c.new_head).max().unwrap_or(0);
        let flushed = if acks.failed.load(Ordering::Acquire) { Err(sync_failed()) } else { flusher.flush(head).await };
        if let Err(e) = &flushed {
            // What these batches committed may be lost (a database that crashed before the
            // flush), and its positions reused by another node: never serve it from memory.
            acks.recent.clear();
            if flusher.failure_is_final() {
                tracing::error!(error = %e, "flushing the event log failed; refusing appends until restart");
                acks.failed.store(true, Ordering::Release);
            } else {
                tracing::error!(error = %e, "flushing the event log failed; the batches waiting on it are reported as failed");
            }
        }
        for c in group {
            match &flushed {
                Ok(()) => acknowledge(&acks.head, acks.store, &acks.recent, c),
                Err(e) => {
                    // Committed but not known to be durable: the caller sees an error and may
                    // retry with the same event ids, which answers the committed result.
                    let e = if acks.failed.load(Ordering::Acquire) {
                        sync_failed()
                    } else {
                        StoreError::Engine(format!("the append may not be durable: {e}"))
                    };
                    for (reply, _) in c.replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

/// What becomes of a deferred append: its outcome once durable (or its failure).
pub type DeferredOutcome = oneshot::Receiver<Result<Vec<Appended>, StoreError>>;

pub(crate) struct Writer {
    queue: mpsc::Sender<Pending>,
    /// Appends that wait for the next batch instead of waking the writer (see `append_deferred`).
    deferred: mpsc::Sender<Pending>,
    /// The events committed last, for read models following the log.
    recent: Arc<Recent>,
    stop: Arc<Notify>,
    /// Set once the log's durability is in doubt (a failed fsync, a flusher gone).
    failed: Arc<AtomicBool>,
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
        let (deferred, deferred_rx) = mpsc::channel(DEFERRED_QUEUE);
        let stop = Arc::new(Notify::new());
        let (ready_tx, ready_rx) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        let stop2 = stop.clone();
        let failed = Arc::new(AtomicBool::new(false));
        let failed2 = failed.clone();
        let recent = Arc::new(Recent::default());
        let recent2 = recent.clone();
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
                    // The flusher is set up before the store reports ready: a node whose log
                    // cannot be flushed must fail to start, not refuse every append later.
                    let started = async {
                        let mut backend = connect().await?;
                        let flusher = backend.flusher()?;
                        let mut acks =
                            Acks { flushed: None, recent: recent2.clone(), head: head.clone(), store, failed: failed2 };
                        let mut thread = None;
                        if let Some(flusher) = flusher {
                            let (tx, frx) = mpsc::channel(UNFLUSHED);
                            acks.flushed = Some(tx);
                            let flush_acks = Acks {
                                flushed: None,
                                recent: recent2.clone(),
                                head,
                                store,
                                failed: acks.failed.clone(),
                            };
                            thread = Some(
                                spawn_flusher(store, flusher, frx, flush_acks)
                                    .map_err(|e| StoreError::Invalid(format!("flusher thread: {e}")))?,
                            );
                        }
                        Ok::<_, StoreError>((backend, acks, thread))
                    };
                    match started.await {
                        Ok((backend, acks, thread)) => {
                            let _ = ready_tx.send(Ok(()));
                            // After the flusher thread is spawned: threads inherit the
                            // nice value, and the flusher must not wait behind handlers.
                            yield_to_handlers();
                            run(backend, (rx, deferred_rx), acks, stop2).await;
                            // Every committed batch is answered before the writer reports it
                            // has stopped.
                            if let Some(t) = thread {
                                let _ = t.join();
                            }
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
        Ok(Writer { queue, deferred, recent, stop, failed, done: Mutex::new(Some(done)) })
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

    /// Queues appends without waking the writer: they commit, in order and ahead of it, with
    /// the next batch another append starts, or on their own once they have waited
    /// [`DEFER_AT_MOST`] (or at shutdown). For records nothing outside this node waits for
    /// (an authorization request shown as a login page): the transaction and the disk flush
    /// of their own that they would cost are shared. Coming ahead of appends queued earlier
    /// must change nothing: each append expects an exact version and comes from its stream's
    /// only writer after every earlier append to the stream was answered (see
    /// `EventStore::append_deferred`); one that cannot hold anyway conflicts, never lands
    /// out of order. Returns once queued, with the outcome to come.
    pub async fn append_deferred(&self, appends: Vec<StreamAppend>) -> Result<DeferredOutcome, StoreError> {
        if appends.iter().any(|a| !matches!(a.expected, super::ExpectedVersion::Exact(_))) {
            return Err(StoreError::Invalid("a deferred append must expect an exact version".into()));
        }
        super::plan::validate(&appends)?;
        let (reply, rx) = oneshot::channel();
        self.deferred.send(Pending { appends, reply }).await.map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    /// Events from `after + 1` on that this writer committed last, if it still holds
    /// `after + 1` (see `recent.rs`); `None` sends the reader to the database.
    pub fn recent_after(&self, after: u64, limit: usize) -> Option<Vec<RecordedEvent>> {
        self.recent.after(after, limit)
    }

    /// Whether the writer has stopped accepting appends because the log's durability is in
    /// doubt; whatever else announces positions must stop too.
    pub fn failed(&self) -> Arc<AtomicBool> {
        self.failed.clone()
    }

    /// Commits everything already queued, then stops.
    pub async fn shutdown(&self) {
        self.stop.notify_one();
        if let Some(done) = self.done.lock().await.take() {
            let _ = done.await;
        }
    }
}

/// What woke the writer.
enum Woken {
    /// An append (`None`: the queue is closed and empty).
    Append(Option<Pending>),
    Stop,
    /// Time to commit what was deferred, if anything.
    Tick,
}

async fn run<B: Backend>(
    mut backend: B,
    (mut rx, mut deferred): (mpsc::Receiver<Pending>, mpsc::Receiver<Pending>),
    acks: Acks,
    stop: Arc<Notify>,
) {
    let recent = acks.recent.clone();
    // Deferred appends are looked for at every batch and on this tick: a writer woken for
    // each of them would pay the wake-up they are deferred to save.
    let mut tick = tokio::time::interval(DEFER_AT_MOST);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let woken = tokio::select! {
            biased;
            p = rx.recv() => Woken::Append(p),
            _ = stop.notified() => Woken::Stop,
            _ = tick.tick() => Woken::Tick,
        };
        let first = match woken {
            Woken::Append(p) => p,
            Woken::Stop => {
                rx.close();
                deferred.close();
                rx.recv().await
            }
            Woken::Tick => None,
        };
        let (mut regular, mut events) = (Vec::new(), 0);
        if let Some(p) = first {
            events += p.appends.iter().map(|a| a.events.len()).sum::<usize>();
            regular.push(p);
            drain(&mut rx, &mut regular, &mut events);
        }
        // Then every deferred append queued so far, ahead of them: none depends on an append
        // still queued (its writer had every earlier append to its stream answered), while any
        // append just taken may build on one (deferred before it was sent, so visible here).
        // They may take a batch past `MAX_BATCH_EVENTS`, by at most their own queue.
        let mut batch = Vec::new();
        while let Ok(p) = deferred.try_recv() {
            batch.push(p);
        }
        batch.append(&mut regular);
        if batch.is_empty() {
            // The queue is closed and empty (shutdown): done once nothing deferred is left.
            match rx.is_closed() {
                true => break,
                false => continue,
            }
        }
        if acks.failed.load(Ordering::Acquire) {
            for p in batch {
                let _ = p.reply.send(Err(sync_failed()));
            }
            continue;
        }
        let requests: Vec<&[StreamAppend]> = batch.iter().map(|p| p.appends.as_slice()).collect();
        match backend.commit(&requests, Utc::now()).await {
            Ok(done) => {
                recent.push(done.rows);
                let replies = batch.into_iter().map(|p| p.reply).zip(done.outcomes).collect();
                acks.deliver(Committed { replies, new_head: done.head }).await;
            }
            Err(e) if batch.len() > 1 => {
                // A connection lost at COMMIT leaves it unknown what committed: the window
                // starts over rather than hold rows next to an unknown gap.
                recent.clear();
                // One request may have made the shared statement fail: retry each alone so
                // only the culprit sees the error.
                tracing::warn!(error = %e, requests = batch.len(), "batch failed; retrying its requests one by one");
                for p in batch {
                    match backend.commit(&[p.appends.as_slice()], Utc::now()).await {
                        Ok(mut done) => {
                            recent.push(done.rows);
                            let o = done.outcomes.pop().unwrap_or(Err(StoreError::Closed));
                            acks.deliver(Committed { replies: vec![(p.reply, o)], new_head: done.head }).await;
                        }
                        Err(e) => {
                            recent.clear();
                            let _ = p.reply.send(Err(e));
                        }
                    }
                }
            }
            Err(e) => {
                recent.clear();
                tracing::error!(error = %e, "append failed; nothing of it was committed");
                for p in batch {
                    let _ = p.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// The nice value of the writer thread. When the server's cores are busy, a writer at the
/// handlers' priority is woken by the first append and preempts the handler that sent it, so
/// it commits batches of a few requests and pays a commit (WAL write, locks, a flush) for
/// each. A little below them, it runs when the handlers have queued what their ready
/// connections asked for: measured with the server on one core (alternating binaries),
/// batches went from ~5.5 to ~13 requests under client credentials and from ~2.5 to ~9 under
/// refresh, tokens/s rose ~8% and ~4% (medians of 6 and 8 runs), and logins (a password hash
/// holding the core) did not slow. An idle or lightly loaded writer still
/// runs at once: niceness only matters when something else wants the core.
const WRITER_NICE: i32 = 10;

/// Lowers the calling thread's priority to [`WRITER_NICE`] (on Linux the nice value belongs
/// to the thread). Lowering one's own priority needs no privilege; if it fails anyway the
/// writer runs at normal priority, which is correct, only slower under load.
fn yield_to_handlers() {
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), WRITER_NICE) {
        tracing::debug!(error = %e, "writer keeps normal priority");
    }
}

fn spawn_flusher(
    store: &'static str,
    flusher: Box<dyn Flush>,
    rx: mpsc::Receiver<Committed>,
    acks: Acks,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new()
        .name(format!("annals-{store}-flusher"))
        .spawn(move || rt.block_on(flush_loop(flusher, rx, acks)))
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
fn publish(head: &watch::Sender<u64>, store: &'static str, outcomes: &[&Outcome], new_head: u64) {
    let written: u64 = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .flat_map(|v| v.iter())
        .map(|a| a.last_position + 1 - a.first_position)
        .sum();
    metrics::EVENTS_APPENDED.with_label_values(&[store]).inc_by(written);
    metrics::BATCH_SIZE.observe(outcomes.len() as f64);
    super::advance(head, new_head);
}
