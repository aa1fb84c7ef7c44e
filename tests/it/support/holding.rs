//! A real store whose chosen append commits and then keeps its caller waiting until released:
//! the moment between an append and its reply, held open so a test can act inside it.
use annals::store::{self, ReadUntil, SharedStore};
use annals_events::StreamId;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Which append to hold.
enum Hold {
    Off,
    /// The next one, whatever it writes.
    Next,
    /// The next one that writes an event of this type.
    Carrying(&'static str),
}

/// How a deferred append's outcome is told.
type DeferredReply = tokio::sync::oneshot::Sender<Result<Vec<store::Appended>, store::StoreError>>;

pub struct HoldingStore {
    inner: SharedStore,
    hold: Mutex<Hold>,
    /// Report the log as shared with other nodes (not `exclusive`), as PostgreSQL does.
    shared: AtomicBool,
    /// Lose the next deferred append (that writes an event of this type, if one is named):
    /// nothing of it is written, and its outcome is a failure (as for a batch that failed).
    lose_deferred: Mutex<Option<Option<&'static str>>>,
    /// The event types of every deferred append, in order.
    deferred: Mutex<Vec<String>>,
    /// Keep the next deferred append pending (nothing written) until told it failed.
    pend_deferred: AtomicBool,
    pending: Mutex<Option<DeferredReply>>,
    /// Fail the next append that writes an event of this type: nothing of it is written.
    fail: Mutex<Option<&'static str>>,
    /// Notified once the held append has committed.
    pub appended: tokio::sync::Notify,
    /// Notify to let the held append's caller go on.
    pub release: tokio::sync::Notify,
}

impl HoldingStore {
    pub fn new(inner: SharedStore) -> Arc<HoldingStore> {
        Arc::new(HoldingStore {
            inner,
            hold: Mutex::new(Hold::Off),
            shared: AtomicBool::new(false),
            lose_deferred: Mutex::new(None),
            deferred: Mutex::new(Vec::new()),
            pend_deferred: AtomicBool::new(false),
            pending: Mutex::new(None),
            fail: Mutex::new(None),
            appended: Default::default(),
            release: Default::default(),
        })
    }

    /// Reports the log as shared with other nodes from now on.
    pub fn share(&self) {
        self.shared.store(true, Ordering::SeqCst);
    }

    /// Loses the next deferred append.
    pub fn lose_next_deferred(&self) {
        *self.lose_deferred.lock().unwrap() = Some(None);
    }

    /// Loses the next deferred append that writes an event of type `event_type`.
    pub fn lose_next_deferred_carrying(&self, event_type: &'static str) {
        *self.lose_deferred.lock().unwrap() = Some(Some(event_type));
    }

    /// Keeps the next deferred append pending, written nowhere, until [`Self::fail_pending`].
    pub fn pend_next_deferred(&self) {
        self.pend_deferred.store(true, Ordering::SeqCst);
    }

    /// Tells the pending deferred append's caller it failed.
    pub fn fail_pending(&self) {
        if let Some(tx) = self.pending.lock().unwrap().take() {
            let _ = tx.send(Err(store::StoreError::Engine("lost with its batch".into())));
        }
    }

    /// The event types every deferred append so far wrote (or was to write, if lost).
    pub fn deferred_types(&self) -> Vec<String> {
        self.deferred.lock().unwrap().clone()
    }

    /// Fails the next append that writes an event of type `event_type`, writing nothing.
    pub fn fail_next_carrying(&self, event_type: &'static str) {
        *self.fail.lock().unwrap() = Some(event_type);
    }

    /// Holds the next append.
    pub fn hold_next(&self) {
        *self.hold.lock().unwrap() = Hold::Next;
    }

    /// Holds the next append that writes an event of type `event_type`.
    pub fn hold_next_carrying(&self, event_type: &'static str) {
        *self.hold.lock().unwrap() = Hold::Carrying(event_type);
    }

    /// Whether `appends` is the one to hold; disarms the hold when it is.
    fn take(&self, appends: &[store::StreamAppend]) -> bool {
        let mut hold = self.hold.lock().unwrap();
        let hit = match &*hold {
            Hold::Off => false,
            Hold::Next => true,
            Hold::Carrying(t) => appends.iter().flat_map(|a| &a.events).any(|e| e.event_type == *t),
        };
        if hit {
            *hold = Hold::Off;
        }
        hit
    }
}

#[async_trait::async_trait]
impl store::EventStore for HoldingStore {
    async fn append_all(&self, appends: Vec<store::StreamAppend>) -> Result<Vec<store::Appended>, store::StoreError> {
        {
            let mut fail = self.fail.lock().unwrap();
            if fail.is_some_and(|t| appends.iter().flat_map(|a| &a.events).any(|e| e.event_type == t)) {
                *fail = None;
                return Err(store::StoreError::Engine("the disk said no".into()));
            }
        }
        let held = self.take(&appends);
        let out = self.inner.append_all(appends).await;
        if held {
            self.appended.notify_one();
            self.release.notified().await;
        }
        out
    }
    async fn append_deferred(
        &self,
        appends: Vec<store::StreamAppend>,
    ) -> Result<store::DeferredOutcome, store::StoreError> {
        let types: Vec<String> = appends.iter().flat_map(|a| &a.events).map(|e| e.event_type.clone()).collect();
        self.deferred.lock().unwrap().extend(types.iter().cloned());
        let lose = {
            let mut armed = self.lose_deferred.lock().unwrap();
            let hit = match *armed {
                Some(None) => true,
                Some(Some(t)) => types.iter().any(|x| x == t),
                None => false,
            };
            if hit {
                *armed = None;
            }
            hit
        };
        if self.pend_deferred.swap(false, Ordering::SeqCst) {
            let (tx, rx) = tokio::sync::oneshot::channel();
            *self.pending.lock().unwrap() = Some(tx);
            return Ok(rx);
        }
        if lose {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = tx.send(Err(store::StoreError::Engine("lost with its batch".into())));
            return Ok(rx);
        }
        self.inner.append_deferred(appends).await
    }
    fn exclusive(&self) -> bool {
        !self.shared.load(Ordering::SeqCst) && self.inner.exclusive()
    }
    async fn read_stream(
        &self,
        stream: &StreamId,
        after: u64,
        until: ReadUntil,
    ) -> Result<Vec<annals_events::RecordedEvent>, store::StoreError> {
        self.inner.read_stream(stream, after, until).await
    }
    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<annals_events::RecordedEvent>, store::StoreError> {
        self.inner.read_all(after, limit).await
    }
    async fn head(&self) -> Result<u64, store::StoreError> {
        self.inner.head().await
    }
    async fn streams_naming_user(&self, user_id: &str) -> Result<Vec<StreamId>, store::StoreError> {
        self.inner.streams_naming_user(user_id).await
    }
    async fn read_streams_between(
        &self,
        streams: &[StreamId],
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<annals_events::RecordedEvent>, store::StoreError> {
        self.inner.read_streams_between(streams, from, to).await
    }
    async fn read_directory(&self) -> Result<Vec<annals_events::RecordedEvent>, store::StoreError> {
        self.inner.read_directory().await
    }
    fn watch_head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.watch_head()
    }
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<store::Snapshot>, store::StoreError> {
        self.inner.load_snapshot(stream).await
    }
    async fn save_snapshot(&self, snapshot: store::Snapshot) -> Result<(), store::StoreError> {
        self.inner.save_snapshot(snapshot).await
    }
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn pool(&self) -> store::DbPool {
        self.inner.pool()
    }
    async fn shutdown(&self) {
        self.inner.shutdown().await
    }
}
