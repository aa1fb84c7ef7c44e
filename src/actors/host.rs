//! The actor that hosts one aggregate instance.
use super::{CommandError, Decided, Executed, Held, Outcome, Settle};
use crate::clock::SharedClock;
use crate::domain::{fold, Aggregate};
use crate::metrics;
use crate::store::{Appended, DeferredOutcome, ExpectedVersion, SharedStore, Snapshot, StoreError, StreamAppend};
use actix::prelude::*;
use annals_events::{Metadata, NewEvent, RecordedEvent, StreamId};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Take a snapshot when this many events were appended since the last one.
pub(crate) const SNAPSHOT_EVERY: u64 = 100;

/// Run one command. The reply travels on the oneshot so a full mailbox can be refused at
/// `try_send` time without waiting.
pub struct Execute<A: Aggregate> {
    pub command: A::Command,
    pub metadata: Metadata,
    /// Appends to other, new streams that commit in the same transaction as the command's
    /// events, or not at all (the session a login starts, with the request's code).
    pub along: Vec<StreamAppend>,
    pub reply: oneshot::Sender<Result<Outcome<A>, CommandError<A::Error>>>,
    /// Who is told of the decision before it is durable, or takes it to commit elsewhere.
    pub handoff: Handoff<A>,
    /// Set once the actor has taken the command up. A reply dropped after that may follow an
    /// append (the actor's thread stopped mid-command): the caller must not run it again.
    pub taken: Arc<AtomicBool>,
}

/// Where a command's decision goes besides the store.
pub struct Handoff<A: Aggregate> {
    /// Told what the command decided as soon as its events go to the store, before they are
    /// durable (the first decision only; see `Hosts::execute_prepared`).
    pub preview: Option<mpsc::Sender<Decided<A>>>,
    /// Handed what the command decided instead of appending it, for the caller to commit with
    /// another actor's command; the actor holds its mailbox until told how that went (see
    /// `Hosts::hold`).
    pub hold: Option<mpsc::Sender<Held<A>>>,
    /// Queue the events as a deferred append (see `EventStore::append_deferred`) and answer
    /// once queued, not once durable, where the store is this node's alone (see
    /// `Hosts::execute_deferred_with`).
    pub defer: bool,
    /// Read what the stream gained since the actor's state before deciding, where other
    /// nodes share the log (see `Hosts::execute_fresh`).
    pub fresh: bool,
}

impl<A: Aggregate> Default for Handoff<A> {
    fn default() -> Self {
        Handoff { preview: None, hold: None, defer: false, fresh: false }
    }
}

impl<A: Aggregate> Clone for Handoff<A> {
    fn clone(&self) -> Self {
        Handoff { preview: self.preview.clone(), hold: self.hold.clone(), defer: self.defer, fresh: self.fresh }
    }
}

impl<A: Aggregate> Message for Execute<A> {
    type Result = ();
}

/// Answered once every message queued before it has been handled (graceful shutdown).
pub struct Drain;

impl Message for Drain {
    type Result = ();
}

pub struct AggregateActor<A: Aggregate> {
    stream: StreamId,
    state: A,
    version: u64,
    snapshot_version: u64,
    store: SharedStore,
    clock: SharedClock,
    idle: Duration,
    last_used: Instant,
    queued: Arc<AtomicUsize>,
    on_stop: Option<Box<dyn FnOnce() + Send>>,
    broken: Option<String>,
    /// Loading failed for a transient reason; queued commands are answered `Unavailable`.
    unavailable: bool,
    /// Started from a state this node recorded itself (see `Hosts::remember`): no load.
    seeded: bool,
    /// The state holds events of a deferred append that did not commit: the next command
    /// reads the stream again first.
    stale: bool,
    /// Deferred appends of this actor not yet known to have committed: no snapshot until
    /// there are none (a snapshot holding them would outlive their failure).
    deferred: usize,
}

impl<A: Aggregate> AggregateActor<A> {
    pub(crate) fn new(
        stream: StreamId,
        store: SharedStore,
        clock: SharedClock,
        idle: Duration,
        queued: Arc<AtomicUsize>,
        on_stop: Box<dyn FnOnce() + Send>,
        seed: Option<(A, u64)>,
    ) -> Self {
        let seeded = seed.is_some();
        let (state, version) = seed.unwrap_or_default();
        AggregateActor {
            stream,
            state,
            version,
            // A seeded stream's last snapshot is unknown: the next one comes after
            // `SNAPSHOT_EVERY` more events, as if one had just been taken.
            snapshot_version: version,
            store,
            clock,
            idle,
            last_used: Instant::now(),
            queued,
            on_stop: Some(on_stop),
            broken: None,
            unavailable: false,
            seeded,
            stale: false,
            deferred: 0,
        }
    }

    /// Stops the actor once it has had no command for `idle` (the next one reactivates it).
    fn schedule_idle_check(&self, ctx: &mut Context<Self>) {
        let tick = (self.idle / 2).max(Duration::from_millis(10));
        ctx.run_interval(tick, |act, ctx| {
            if act.last_used.elapsed() >= act.idle {
                ctx.stop();
            }
        });
    }
}

/// Decodes a stream's events into the aggregate's event type.
fn typed<A: Aggregate>(events: &[RecordedEvent]) -> Result<Vec<A::Event>, String> {
    events
        .iter()
        .map(|e| {
            let d = e.decode().map_err(|err| format!("position {}: {err}", e.position))?;
            A::Event::try_from(d)
                .map_err(|other| format!("position {}: {} is not a {} event", e.position, other.event_type(), A::KIND))
        })
        .collect()
}

/// Why an actor could not load its state.
pub(crate) enum LoadError {
    /// The store is unreachable: transient; the actor stops and the next command retries.
    Store(StoreError),
    /// An event of the stream cannot be decoded: needs an operator.
    Corrupt(String),
}

/// Snapshots are only trusted by the exact build and state type that wrote them: a changed
/// `apply` or state shape in a new release must not resurrect an old, wrong state.
fn snapshot_shape<A: Aggregate>() -> String {
    format!("{}@{}", std::any::type_name::<A>(), env!("CARGO_PKG_VERSION"))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotDoc<A> {
    shape: String,
    state: A,
}

pub(crate) fn snapshot_text<A: Aggregate>(state: &A) -> Result<String, serde_json::Error> {
    #[derive(serde::Serialize)]
    struct Doc<'a, A> {
        shape: String,
        state: &'a A,
    }
    serde_json::to_string(&Doc { shape: snapshot_shape::<A>(), state })
}

/// Loads state: the newest snapshot (if this build wrote it) plus the events after it.
pub(crate) async fn load<A: Aggregate>(store: &SharedStore, stream: &StreamId) -> Result<(A, u64, u64), LoadError> {
    let (mut state, mut version) = (A::default(), 0);
    if let Ok(Some(s)) = store.load_snapshot(stream).await {
        // A snapshot of another build or shape is ignored, not fatal: snapshots are a cache.
        if let Ok(doc) = serde_json::from_str::<SnapshotDoc<A>>(&s.state) {
            if doc.shape == snapshot_shape::<A>() {
                state = doc.state;
                version = s.version;
            }
        }
    }
    let snapshot_version = version;
    let tail = store.read_stream_payloads(stream, version).await.map_err(LoadError::Store)?;
    if let Some(last) = tail.last() {
        version = last.version;
    }
    state = fold(state, &typed::<A>(&tail).map_err(LoadError::Corrupt)?);
    Ok((state, version, snapshot_version))
}

impl<A: Aggregate> Actor for AggregateActor<A> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The registry bounds the queue (see `Entry::queued`); actix's own per-sender bound
        // must not park senders in between.
        ctx.set_mailbox_capacity(usize::MAX >> 2);
        metrics::ACTORS_LIVE.with_label_values(&[A::KIND.as_str()]).inc();
        self.schedule_idle_check(ctx);
        if self.seeded {
            return;
        }
        let store = self.store.clone();
        let stream = self.stream.clone();
        ctx.wait(async move { load::<A>(&store, &stream).await }.into_actor(self).map(|res, act, ctx| match res {
            Ok((state, version, snap)) => {
                act.state = state;
                act.version = version;
                act.snapshot_version = snap;
            }
            Err(LoadError::Corrupt(e)) => {
                tracing::error!(stream = %act.stream, error = %e, "aggregate stream is undecodable");
                act.broken = Some(e);
            }
            Err(LoadError::Store(e)) => {
                tracing::warn!(stream = %act.stream, error = %e, "aggregate could not load; stopping");
                act.unavailable = true;
                ctx.stop();
            }
        }));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        metrics::ACTORS_LIVE.with_label_values(&[A::KIND.as_str()]).dec();
        if let Some(f) = self.on_stop.take() {
            f();
        }
    }
}

impl<A: Aggregate> Handler<Drain> for AggregateActor<A> {
    type Result = ();
    fn handle(&mut self, _: Drain, _: &mut Context<Self>) {}
}

/// The outcome of one decide-and-append attempt, carried back into the actor.
struct Attempt<A: Aggregate> {
    state: A,
    version: u64,
    result: Result<Outcome<A>, CommandError<A::Error>>,
    /// The commit still to come of events the state already holds (a deferred append).
    deferred: Option<DeferredOutcome>,
    /// The state is still one the actor was told is stale (reading the stream failed).
    stale: bool,
}

impl<A: Aggregate> Attempt<A> {
    fn done(state: A, version: u64, result: Result<Outcome<A>, CommandError<A::Error>>) -> Self {
        Attempt { state, version, result, deferred: None, stale: false }
    }
}

async fn decide_and_append<A: Aggregate>(
    store: SharedStore,
    clock: SharedClock,
    stream: StreamId,
    (mut state, mut version, stale): (A, u64, bool),
    (command, metadata, along): (A::Command, Metadata, Vec<StreamAppend>),
    mut handoff: Handoff<A>,
) -> Attempt<A> {
    if stale {
        let failed = match load::<A>(&store, &stream).await {
            Ok((fresh, v, _)) => {
                (state, version) = (fresh, v);
                None
            }
            Err(LoadError::Store(e)) => Some(CommandError::Store(e)),
            Err(LoadError::Corrupt(e)) => Some(CommandError::Corrupt(e)),
        };
        if let Some(e) = failed {
            return Attempt { state, version, result: Err(e), deferred: None, stale: true };
        }
    }
    // Another node may have appended since this actor last read (a command that appends
    // nothing, or is refused, never learns of it by a conflict). Only where nodes share the
    // log: on a log that is this node's alone every append to the stream goes through this
    // actor (a creation that comes along with another command is caught at version 0), so
    // the read would find nothing.
    if handoff.fresh && !stale && !store.exclusive() {
        match read_ahead(&store, &stream, state, version).await {
            Ok((caught, v)) => (state, version) = (caught, v),
            Err((state, err)) => return Attempt::done(state, version, Err(err)),
        }
    }
    for attempt in 0..2 {
        let events = match state.decide(command.clone(), clock.now()) {
            Ok(events) => events,
            // A stream this actor found empty may have been created since, by another node or
            // by a deferred append that committed after the actor loaded: look once more
            // before refusing, or the refusal would stand until the actor passivates.
            Err(e) if version == 0 && attempt == 0 => match catch_up(&store, &stream, state, version).await {
                Ok((caught, v)) if v > 0 => {
                    (state, version) = (caught, v);
                    continue;
                }
                Ok((caught, v)) => return Attempt::done(caught, v, Err(CommandError::Domain(e))),
                Err((stale, err)) => return Attempt::done(stale, version, Err(err)),
            },
            Err(e) => return Attempt::done(state, version, Err(CommandError::Domain(e))),
        };
        if events.is_empty() {
            // Nothing of this stream changes; what comes along still commits, on its own (no
            // caller relies on this: every command given appends to carry decides events).
            let position = match along_alone(&store, &along).await {
                Ok(p) => p,
                Err(e) => return Attempt::done(state, version, Err(e)),
            };
            let executed = Executed { events: 0, version, position };
            let outcome = Outcome { executed, events, state: state.clone(), redecided: attempt > 0 };
            return Attempt::done(state, version, Ok(outcome));
        }
        let new: Result<Vec<NewEvent>, _> =
            events.iter().map(|e| NewEvent::new(&e.clone().into(), &metadata)).collect();
        let new = match new {
            Ok(n) => n,
            Err(e) => return Attempt::done(state, version, Err(CommandError::Corrupt(e.to_string()))),
        };
        let append = StreamAppend { stream: stream.clone(), expected: ExpectedVersion::Exact(version), events: new };
        // The caller prepares its answer while the events commit; `redecided` tells it
        // whether that answer still holds.
        let previewed = handoff.preview.take().map(|tx| {
            let after = fold(state.clone(), &events);
            let version = version + events.len() as u64;
            let _ = tx.try_send(Decided { events: events.clone(), state: after.clone(), version });
            after
        });
        if let Some(tx) = handoff.hold.take() {
            let after = version + events.len() as u64;
            let decided = Decided { events: events.clone(), state: fold(state.clone(), &events), version: after };
            match held_elsewhere(&store, &stream, tx, decided, append.clone()).await {
                Settled::Committed { decided, position } => {
                    let executed = Executed { events: events.len(), version: decided.version, position };
                    let outcome = Outcome { executed, events, state: decided.state.clone(), redecided: false };
                    return Attempt::done(decided.state, decided.version, Ok(outcome));
                }
                Settled::Alone => {}
                Settled::Discard => return Attempt::done(state, version, Err(CommandError::Busy)),
                Settled::Unknown(reloaded) => {
                    let (state, version) = reloaded.unwrap_or((state, version));
                    return Attempt::done(state, version, Err(CommandError::Unavailable));
                }
            }
        }
        // Deferred only where this node is the log's only user: nobody else appends to the
        // stream meanwhile, or reads it before it commits.
        if handoff.defer && store.exclusive() {
            // Answered once queued: the events commit ahead of the next batch (see
            // `EventStore::append_deferred`), and the actor watches for that commit.
            let all = std::iter::once(append).chain(along.iter().cloned()).collect();
            return match store.append_deferred(all).await {
                Ok(pending) => {
                    let version = version + events.len() as u64;
                    let after = previewed.unwrap_or_else(|| fold(state, &events));
                    let executed = Executed { events: events.len(), version, position: 0 };
                    let outcome = Outcome { executed, events, state: after.clone(), redecided: attempt > 0 };
                    Attempt { state: after, version, result: Ok(outcome), deferred: Some(pending), stale: false }
                }
                Err(e) => Attempt::done(state, version, Err(CommandError::Store(e))),
            };
        }
        let appended = if along.is_empty() {
            store.append(append).await
        } else {
            let all = std::iter::once(append).chain(along.iter().cloned()).collect();
            store.append_all(all).await.and_then(|mut done| {
                // The transaction's last position: the events that came along follow the
                // command's, and a caller waiting for read models must see them too.
                let last = done.iter().map(|d| d.last_position).max().unwrap_or(0);
                match done.is_empty() {
                    true => Err(StoreError::Closed),
                    false => Ok(Appended { last_position: last, ..done.swap_remove(0) }),
                }
            })
        };
        match appended {
            Ok(done) => {
                let executed =
                    Executed { events: events.len(), version: done.last_version, position: done.last_position };
                let after = previewed.unwrap_or_else(|| fold(state, &events));
                let outcome = Outcome { executed, events, state: after.clone(), redecided: attempt > 0 };
                return Attempt::done(after, done.last_version, Ok(outcome));
            }
            // A stream that comes along exists already: catching up on this one cannot help.
            Err(StoreError::Conflict { stream: other, .. }) if other != stream => {
                return Attempt::done(state, version, Err(CommandError::Conflict))
            }
            Err(StoreError::Conflict { .. }) if attempt == 0 => {
                // Another node (or a pre-actor writer) moved the stream: catch up, decide again.
                match catch_up(&store, &stream, state, version).await {
                    Ok(caught) => (state, version) = caught,
                    Err((stale, err)) => return Attempt::done(stale, version, Err(err)),
                }
            }
            Err(StoreError::Conflict { .. }) => return Attempt::done(state, version, Err(CommandError::Conflict)),
            Err(e) => return Attempt::done(state, version, Err(CommandError::Store(e))),
        }
    }
    Attempt::done(state, version, Err(CommandError::Conflict))
}

/// The stream's events after `version`, folded into `state`. A stream with none is not ahead
/// of the actor but behind it: the state was remembered from a creation that never committed
/// (a deferred append lost in a failed batch), and it is read again from the start.
async fn catch_up<A: Aggregate>(
    store: &SharedStore,
    stream: &StreamId,
    state: A,
    version: u64,
) -> Result<(A, u64), (A, CommandError<A::Error>)> {
    let (state, caught) = read_ahead(store, stream, state, version).await?;
    if caught > version || version == 0 {
        return Ok((state, caught));
    }
    match load::<A>(store, stream).await {
        Ok((fresh, v, _)) => Ok((fresh, v)),
        Err(LoadError::Store(e)) => Err((state, CommandError::Store(e))),
        Err(LoadError::Corrupt(e)) => Err((state, CommandError::Corrupt(e))),
    }
}

/// The stream's events after `version`, folded into `state`, with the version they reach
/// (`version` itself if there are none).
async fn read_ahead<A: Aggregate>(
    store: &SharedStore,
    stream: &StreamId,
    state: A,
    version: u64,
) -> Result<(A, u64), (A, CommandError<A::Error>)> {
    let tail = match store.read_stream_payloads(stream, version).await {
        Ok(tail) => tail,
        Err(e) => return Err((state, CommandError::Store(e))),
    };
    let Some(last) = tail.last() else { return Ok((state, version)) };
    let last = last.version;
    match typed::<A>(&tail) {
        Ok(evs) => Ok((fold(state, &evs), last)),
        Err(e) => Err((state, CommandError::Corrupt(e))),
    }
}

/// How long an actor holds a decision for its caller (see `Hosts::hold`) before it gives up
/// on being told what became of it: longer than any commit takes, short enough that a caller
/// that never answers does not block the stream for good.
const HOLD_AT_MOST: Duration = Duration::from_secs(60);

/// What became of a decision held for a caller.
enum Settled<A: Aggregate> {
    /// It committed with the caller's command; `decided` says the state and version after it.
    Committed { decided: Decided<A>, position: u64 },
    /// The caller's command refused it: the actor appends it itself.
    Alone,
    /// Nothing ran: the decision is dropped.
    Discard,
    /// Unknown (the caller went away or could not tell, or a minute passed): the state as
    /// the store now has it, if it could be read. Either way the next append's expected
    /// version catches a stream that moved.
    Unknown(Option<(A, u64)>),
}

/// Hands a decision to the caller that commits it (see `Hosts::hold`) and waits to be told
/// how that went.
async fn held_elsewhere<A: Aggregate>(
    store: &SharedStore,
    stream: &StreamId,
    tx: mpsc::Sender<Held<A>>,
    decided: Decided<A>,
    append: StreamAppend,
) -> Settled<A> {
    let (settle, told) = oneshot::channel();
    let held = Held { decided, append, settle: Some(settle) };
    let kept = held.decided.clone();
    let answer = match tx.try_send(held) {
        Ok(()) => tokio::time::timeout(HOLD_AT_MOST, told).await.ok().and_then(Result::ok),
        Err(_) => return Settled::Alone,
    };
    match answer {
        Some(Settle::Committed { position }) => Settled::Committed { decided: kept, position },
        Some(Settle::Alone) => Settled::Alone,
        Some(Settle::Discard) => Settled::Discard,
        Some(Settle::Unknown) | None => {
            Settled::Unknown(load::<A>(store, stream).await.ok().map(|(state, version, _)| (state, version)))
        }
    }
}

/// Commits the appends that come along with a command that changed nothing of its own
/// stream: the position of the last event, 0 when there are none.
async fn along_alone<E: std::error::Error + 'static>(
    store: &SharedStore,
    along: &[StreamAppend],
) -> Result<u64, CommandError<E>> {
    if along.is_empty() {
        return Ok(0);
    }
    match store.append_all(along.to_vec()).await {
        Ok(done) => Ok(done.last().map_or(0, |d| d.last_position)),
        Err(StoreError::Conflict { .. }) => Err(CommandError::Conflict),
        Err(e) => Err(CommandError::Store(e)),
    }
}

impl<A: Aggregate> Handler<Execute<A>> for AggregateActor<A> {
    type Result = ();

    fn handle(&mut self, msg: Execute<A>, ctx: &mut Context<Self>) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        msg.taken.store(true, Ordering::Release);
        self.last_used = Instant::now();
        if let Some(e) = &self.broken {
            let _ = msg.reply.send(Err(CommandError::Corrupt(e.clone())));
            return;
        }
        if self.unavailable {
            let _ = msg.reply.send(Err(CommandError::Unavailable));
            return;
        }
        let fut = decide_and_append::<A>(
            self.store.clone(),
            self.clock.clone(),
            self.stream.clone(),
            (self.state.clone(), self.version, std::mem::take(&mut self.stale)),
            (msg.command, msg.metadata, msg.along),
            msg.handoff,
        );
        let reply = msg.reply;
        // `wait` holds the mailbox: the next command sees this one's result.
        ctx.wait(fut.into_actor(self).map(move |attempt, act, ctx| {
            act.state = attempt.state;
            act.version = attempt.version;
            act.stale |= attempt.stale;
            act.last_used = Instant::now();
            if let Some(pending) = attempt.deferred {
                // The state holds events not yet committed: no snapshot of it (nor of a state
                // after it, until they are known to have committed). Should they not
                // commit (a failed batch; a crash makes this moot), the next command reads the
                // stream as the store has it. Until the actor hears of it, an append of its
                // expects their version, and conflicts without them (then it reads the stream
                // again too); only a command that appends nothing answers from them meanwhile.
                act.deferred += 1;
                ctx.spawn(pending.into_actor(act).map(|committed, act, _| {
                    act.deferred -= 1;
                    if !matches!(committed, Ok(Ok(_))) {
                        tracing::warn!(stream = %act.stream, "a deferred append did not commit; reading the stream again");
                        act.stale = true;
                    }
                }));
            } else if act.deferred == 0 && act.version >= act.snapshot_version + SNAPSHOT_EVERY {
                if let Ok(state) = snapshot_text(&act.state) {
                    let store = act.store.clone();
                    let snap = Snapshot { stream: act.stream.clone(), version: act.version, state };
                    act.snapshot_version = act.version;
                    actix::spawn(async move {
                        if let Err(e) = store.save_snapshot(snap).await {
                            tracing::warn!(error = %e, "snapshot not saved (harmless: snapshots are a cache)");
                        }
                    });
                }
            }
            let refused = matches!(attempt.result, Err(CommandError::Domain(_)));
            let _ = reply.send(attempt.result);
            // A command refused on a stream that does not exist leaves nothing worth keeping:
            // without this, each made-up id (a forged code at the token endpoint, which a
            // public client may present without any secret) would keep an actor live until
            // it passivates. Only a refusal: a check that finds nothing (no failed logins for
            // this user or address) is asked again at the next login, and stays cheap. Not
            // while commands wait for it: dropped, each would be sent again to a new actor,
            // and a burst of them could run out of tries.
            if refused && act.version == 0 && act.deferred == 0 && act.queued.load(Ordering::Acquire) == 0 {
                ctx.stop();
            }
        }));
    }
}
