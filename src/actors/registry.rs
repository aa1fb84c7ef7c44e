//! Finds or starts the actor for a stream, on the arbiter its id hashes to.
use super::host::{AggregateActor, Drain, Execute, Handoff};
use super::{CommandError, Decided, Executed, Held, Outcome, Settle};
use crate::clock::SharedClock;
use crate::domain::Aggregate;
use crate::metrics;
use crate::store::{SharedStore, StreamAppend};
use actix::dev::SendError;
use actix::prelude::*;
use annals_events::{Metadata, StreamId, StreamType};
use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

thread_local! {
    static HOST_HERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Actors this thread activates from now on run on this thread's event loop (an actix-web
/// worker's: the requests on it then reach their actors without a thread hop, which was a
/// tenth of a refresh's cost). The thread must run an actix event loop for as long as
/// such actors are used.
pub fn host_on_this_thread() {
    HOST_HERE.set(true);
}

#[derive(Clone, Debug)]
pub struct HostsConfig {
    /// One arbiter (thread with its own event loop) per core by default.
    pub arbiters: usize,
    /// An actor with no command for this long stops; the next command reactivates it.
    pub idle: Duration,
    /// Commands queued per actor before it answers `Busy`.
    pub mailbox: usize,
}

impl Default for HostsConfig {
    fn default() -> Self {
        HostsConfig {
            arbiters: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            idle: Duration::from_secs(300),
            mailbox: 64,
        }
    }
}

struct Entry {
    token: u64,
    /// Commands sent but not yet picked up. actix bounds mailboxes per sender (every cloned
    /// `Addr` gets a slot of its own), so the bound is enforced here instead.
    queued: Arc<AtomicUsize>,
    addr: Box<dyn Any + Send>,
    drain: Recipient<Drain>,
}

/// States of streams this node has just created, for their first activation here (see
/// [`Hosts::remember`]).
#[derive(Default)]
struct Seeds {
    states: HashMap<StreamId, Seed>,
    /// Oldest first, with the number each was put under: the first to go when full. A seed
    /// taken leaves its entry here (removing it would scan the queue); evicting that entry
    /// later removes nothing, nor a newer seed of the same stream (another number).
    order: VecDeque<(StreamId, u64)>,
    next: u64,
}

/// Seeds kept apart by aggregate kind, each kind with its own bound: authorization requests,
/// which anyone can start by the thousand, never push out the sessions that logins started
/// (a session's record may still be on its way to the log when its code is redeemed, and
/// only the seed has it then; see `Hosts::execute_deferred_with`).
#[derive(Default)]
struct SeedsByKind(HashMap<StreamType, Seeds>);

impl SeedsByKind {
    fn put(&mut self, stream: StreamId, state: Box<dyn Any + Send>, version: u64) {
        self.0.entry(stream.kind).or_default().put(stream, state, version);
    }

    fn take<A: Aggregate>(&mut self, stream: &StreamId) -> Option<(A, u64)> {
        self.0.get_mut(&stream.kind)?.take::<A>(stream)
    }
}

struct Seed {
    state: Box<dyn Any + Send>,
    version: u64,
    at: Instant,
    number: u64,
}

impl Seeds {
    /// Enough for every authorization request and session a busy node starts between a
    /// browser's two requests; a few hundred bytes each.
    const CAPACITY: usize = 4096;
    /// A seed is a shortcut for the next request of a flow, not a cache: older ones are
    /// dropped unused, and their stream loads from the store as any other.
    const MAX_AGE: Duration = Duration::from_secs(600);

    fn put(&mut self, stream: StreamId, state: Box<dyn Any + Send>, version: u64) {
        while self.order.len() >= Self::CAPACITY {
            if let Some((old, number)) = self.order.pop_front() {
                if self.states.get(&old).is_some_and(|s| s.number == number) {
                    self.states.remove(&old);
                }
            }
        }
        let number = self.next;
        self.next += 1;
        self.states.insert(stream.clone(), Seed { state, version, at: Instant::now(), number });
        self.order.push_back((stream, number));
    }

    /// Removes the stream's seed; returns it if it is of this aggregate and young enough.
    fn take<A: Aggregate>(&mut self, stream: &StreamId) -> Option<(A, u64)> {
        let seed = self.states.remove(stream)?;
        if seed.at.elapsed() > Self::MAX_AGE {
            return None;
        }
        let state = seed.state.downcast::<A>().ok()?;
        Some((*state, seed.version))
    }
}

struct Inner {
    store: SharedStore,
    clock: SharedClock,
    config: HostsConfig,
    arbiters: Vec<Arbiter>,
    actors: Mutex<HashMap<StreamId, Entry>>,
    /// Taken only while `actors` is held, so a seed and a live actor of one stream never
    /// both count.
    seeds: Mutex<SeedsByKind>,
    closing: AtomicBool,
    /// Commands between the closing check and their reply, while their caller waits (see
    /// `InFlight`); shutdown waits for zero so no command that may have appended is cut off.
    /// With `closing`, SeqCst: each side writes one and reads the other, and weaker orderings
    /// would let both read the old value.
    inflight: AtomicUsize,
    idle: tokio::sync::Notify,
    tokens: AtomicU64,
    hasher: std::collections::hash_map::RandomState,
}

/// One command counted in `Inner::inflight` for as long as its caller waits, however the wait
/// ends: a caller dropped mid-command (its client went away and actix dropped the request)
/// would otherwise stay counted, and shutdown would wait out its deadline for it. The command
/// itself still runs to its end in its actor, ahead of the `Drain` shutdown sends.
struct InFlight<'a>(&'a Inner);

impl<'a> InFlight<'a> {
    fn enter(inner: &'a Inner) -> Self {
        inner.inflight.fetch_add(1, Ordering::SeqCst);
        InFlight(inner)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The rest of a held command: it completes once its decision is settled.
type Pending<A> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Outcome<A>, CommandError<<A as Aggregate>::Error>>> + Send>,
>;

/// What [`Hosts::hold`] got back.
pub enum Hold<A: Aggregate> {
    /// A decision to commit with another command, then settle.
    Held(HeldDecision<A>),
    /// The command decided nothing to append, or failed: nothing is held.
    Done(Outcome<A>),
}

/// A held decision (see [`Hosts::hold`]). Dropping it unsettled tells the actor it is
/// unknown whether the events committed: it reads its stream again.
pub struct HeldDecision<A: Aggregate> {
    held: Held<A>,
    outcome: Pending<A>,
}

impl<A: Aggregate> HeldDecision<A> {
    /// What the command decided, and the state after it.
    pub fn decided(&self) -> &Decided<A> {
        &self.held.decided
    }

    /// The decided events as an append (expecting the stream where the actor decided them),
    /// to come along with the command that commits them.
    pub fn append(&self) -> StreamAppend {
        self.held.append.clone()
    }

    /// Tells the actor what became of the decision, and returns the command's outcome: the
    /// decided events at the committed position, or (`Alone`) what the actor then appended on
    /// its own, or (`Discard`) `Busy`, or (`Unknown`) `Unavailable`.
    pub async fn settle(self, how: Settle) -> Result<Outcome<A>, CommandError<A::Error>> {
        let HeldDecision { held, outcome } = self;
        held.settle(how);
        outcome.await
    }
}

/// The aggregate hosts of this node. Cheap to clone.
#[derive(Clone)]
pub struct Hosts {
    inner: Arc<Inner>,
}

impl Inner {
    fn actors(&self) -> MutexGuard<'_, HashMap<StreamId, Entry>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.actors.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Hosts {
    /// Starts the arbiters. Must run inside an actix `System`.
    pub fn new(store: SharedStore, clock: SharedClock, config: HostsConfig) -> Self {
        let arbiters = (0..config.arbiters.max(1)).map(|_| Arbiter::new()).collect();
        Hosts {
            inner: Arc::new(Inner {
                store,
                clock,
                config,
                arbiters,
                actors: Mutex::new(HashMap::new()),
                seeds: Mutex::new(SeedsByKind::default()),
                closing: AtomicBool::new(false),
                inflight: AtomicUsize::new(0),
                idle: tokio::sync::Notify::new(),
                tokens: AtomicU64::new(0),
                hasher: Default::default(),
            }),
        }
    }

    /// Runs a command on aggregate `A` with this id, activating it if needed.
    pub async fn execute<A: Aggregate>(
        &self,
        id: &str,
        command: A::Command,
        metadata: Metadata,
    ) -> Result<Executed, CommandError<A::Error>> {
        self.execute_full::<A>(id, command, metadata).await.map(|o| o.executed)
    }

    /// As [`Hosts::execute`], returning the decided events and the state after them too.
    pub async fn execute_full<A: Aggregate>(
        &self,
        id: &str,
        command: A::Command,
        metadata: Metadata,
    ) -> Result<Outcome<A>, CommandError<A::Error>> {
        self.execute_with::<A>(id, command, metadata, Vec::new()).await
    }

    /// As [`Hosts::execute_full`], with appends to other streams that commit in the same
    /// transaction as the command's events or not at all: a refused command leaves none of
    /// them, and a crash cannot keep one without the other. Each is either another
    /// aggregate's creation, decided by that aggregate and expecting its stream not to exist
    /// (no actor of it is involved), or a decision its actor holds for this (see
    /// [`Hosts::hold`]), which the caller then settles.
    pub async fn execute_with<A: Aggregate>(
        &self,
        id: &str,
        command: A::Command,
        metadata: Metadata,
        along: Vec<StreamAppend>,
    ) -> Result<Outcome<A>, CommandError<A::Error>> {
        self.execute_tracked::<A>(id, command, metadata, along, Handoff::default()).await
    }

    /// As [`Hosts::execute_full`], deciding on the stream as the store has it now: where other
    /// nodes share the log, the actor first reads what they appended since it last read. For
    /// a command that acts on what the log says happened elsewhere (a worker following a read
    /// model), which on a state left behind would be refused, or change nothing, and so never
    /// meet the conflict that would catch it up.
    pub async fn execute_fresh<A: Aggregate>(
        &self,
        id: &str,
        command: A::Command,
        metadata: Metadata,
    ) -> Result<Outcome<A>, CommandError<A::Error>> {
        let handoff = Handoff { fresh: true, ..Handoff::default() };
        self.execute_tracked::<A>(id, command, metadata, Vec::new(), handoff).await
    }

    /// As [`Hosts::execute_with`], but on a store that is this node's alone
    /// ([`crate::store::EventStore::exclusive`]) the events (and those that come along) are
    /// queued as a deferred append ([`crate::store::EventStore::append_deferred`]) and the
    /// outcome comes once they are queued, with position 0: they commit ahead of the next
    /// batch, or within 50 ms. The actor holds them as its state at once, so its next command
    /// appends after them; should they not commit, that append conflicts (the store lacks
    /// them), and once the actor is told its next command reads the stream first. On a
    /// store other nodes share, the command appends as `execute_with` does. Only for a
    /// decision nothing handed out needs durable: whatever does (a token) is appended after
    /// it, and that append's commit includes it or follows it.
    pub async fn execute_deferred_with<A: Aggregate>(
        &self,
        id: &str,
        command: A::Command,
        metadata: Metadata,
        along: Vec<StreamAppend>,
    ) -> Result<Outcome<A>, CommandError<A::Error>> {
        let handoff = Handoff { defer: true, ..Handoff::default() };
        self.execute_tracked::<A>(id, command, metadata, along, handoff).await
    }

    /// As [`Hosts::execute_full`], running `prepare` on what the command decided while its
    /// events commit, and returning what it made only if that decision is the one that
    /// committed (`None` if the command decided nothing, failed, or was decided again after a
    /// conflict: the caller then prepares from the outcome). For work that the answer needs
    /// and that may be thrown away, such as signing tokens: done before the commit, the
    /// answers of one committed batch leave together instead of one signature apart.
    pub async fn execute_prepared<A: Aggregate, T>(
        &self,
        id: &str,
        command: A::Command,
        metadata: Metadata,
        prepare: impl FnOnce(&Decided<A>) -> T,
    ) -> Result<(Outcome<A>, Option<T>), CommandError<A::Error>> {
        self.execute_prepared_with(id, command, metadata, Vec::new(), prepare).await
    }

    /// As [`Hosts::execute_prepared`], with appends that come `along` as in
    /// [`Hosts::execute_with`].
    pub async fn execute_prepared_with<A: Aggregate, T>(
        &self,
        id: &str,
        command: A::Command,
        metadata: Metadata,
        along: Vec<StreamAppend>,
        prepare: impl FnOnce(&Decided<A>) -> T,
    ) -> Result<(Outcome<A>, Option<T>), CommandError<A::Error>> {
        let (tx, mut rx) = mpsc::channel(1);
        let execution = self.execute_tracked::<A>(
            id,
            command,
            metadata,
            along,
            Handoff { preview: Some(tx), ..Handoff::default() },
        );
        tokio::pin!(execution);
        let prepared = tokio::select! {
            biased;
            out = &mut execution => return out.map(|o| (o, None)),
            decided = rx.recv() => decided.map(|d| prepare(&d)),
        };
        let outcome = execution.await?;
        let prepared = if outcome.redecided { None } else { prepared };
        Ok((outcome, prepared))
    }

    /// Decides a command on aggregate `A` without appending its events: they come back held
    /// (see [`Held`]), for the caller to commit in the same transaction as another actor's
    /// command (pass [`HeldDecision::append`] along to [`Hosts::execute_with`] or
    /// [`Hosts::execute_prepared_with`]), and the actor takes no other command until told how
    /// that went ([`HeldDecision::settle`]). So two actors' decisions commit together or not
    /// at all, and neither actor decides anything else in between: a code's redemption and
    /// the tokens it gives, in their session. A command that decides nothing, or fails, comes
    /// back done.
    pub async fn hold<A: Aggregate>(
        &self,
        id: &str,
        command: A::Command,
        metadata: Metadata,
    ) -> Result<Hold<A>, CommandError<A::Error>> {
        let (tx, mut rx) = mpsc::channel(1);
        let id = id.to_string();
        let hosts = self.clone();
        let mut outcome: Pending<A> = Box::pin(async move {
            hosts
                .execute_tracked::<A>(
                    &id,
                    command,
                    metadata,
                    Vec::new(),
                    Handoff { hold: Some(tx), ..Handoff::default() },
                )
                .await
        });
        tokio::select! {
            biased;
            out = &mut outcome => out.map(Hold::Done),
            held = rx.recv() => match held {
                Some(held) => Ok(Hold::Held(HeldDecision { held, outcome })),
                None => outcome.await.map(Hold::Done),
            },
        }
    }

    async fn execute_tracked<A: Aggregate>(
        &self,
        id: &str,
        command: A::Command,
        metadata: Metadata,
        along: Vec<StreamAppend>,
        handoff: Handoff<A>,
    ) -> Result<Outcome<A>, CommandError<A::Error>> {
        let _counted = InFlight::enter(&self.inner);
        self.execute_once::<A>(id, command, metadata, along, handoff).await
    }

    async fn execute_once<A: Aggregate>(
        &self,
        id: &str,
        command: A::Command,
        metadata: Metadata,
        along: Vec<StreamAppend>,
        handoff: Handoff<A>,
    ) -> Result<Outcome<A>, CommandError<A::Error>> {
        let stream = StreamId::new(A::KIND, id);
        // Two tries: an actor may passivate between lookup and send, or drop a queued message
        // while stopping. Neither executed the command (`taken` tells a dropped reply of one
        // that ran).
        for _ in 0..2 {
            if self.inner.closing.load(Ordering::SeqCst) {
                return Err(CommandError::Unavailable);
            }
            let (addr, queued, token) = self.addr::<A>(&stream);
            if queued.fetch_add(1, Ordering::AcqRel) >= self.inner.config.mailbox {
                queued.fetch_sub(1, Ordering::AcqRel);
                metrics::ACTOR_BUSY.with_label_values(&[A::KIND.as_str()]).inc();
                return Err(CommandError::Busy);
            }
            let (reply, rx) = oneshot::channel();
            let taken = Arc::new(AtomicBool::new(false));
            let execute = Execute::<A> {
                command: command.clone(),
                metadata: metadata.clone(),
                along: along.clone(),
                handoff: handoff.clone(),
                reply,
                taken: taken.clone(),
            };
            match addr.try_send(execute) {
                Ok(()) => match rx.await {
                    Ok(result) => return result,
                    // Dropped unread: nothing ran, another actor may take it.
                    Err(_) if !taken.load(Ordering::Acquire) => continue,
                    // Dropped mid-command (its thread stopped): it may have appended.
                    Err(_) => return Err(CommandError::Unavailable),
                },
                Err(SendError::Full(_)) => {
                    queued.fetch_sub(1, Ordering::AcqRel);
                    metrics::ACTOR_BUSY.with_label_values(&[A::KIND.as_str()]).inc();
                    return Err(CommandError::Busy);
                }
                Err(SendError::Closed(_)) => {
                    queued.fetch_sub(1, Ordering::AcqRel);
                    // Remove only the dead actor's entry, never a replacement another caller
                    // started meanwhile.
                    let mut actors = self.inner.actors();
                    if actors.get(&stream).is_some_and(|e| e.token == token) {
                        actors.remove(&stream);
                    }
                    continue;
                }
            }
        }
        Err(CommandError::Unavailable)
    }

    /// Remembers the state of a stream this node has just created (appended at `version`,
    /// outside any actor: an authorization request, a session started with a login), so that
    /// the actor the flow's next request activates starts from it instead of reading the
    /// snapshot and the stream back (two queries a login saved for each). A wrong seed costs
    /// no correctness: the actor's first append expects `version`, and a stream that moved on
    /// meanwhile makes it conflict, catch up from the store and decide again. Ignored when the
    /// stream's actor is live here already (it knows better).
    pub fn remember<A: Aggregate>(&self, id: &str, state: A, version: u64) {
        let stream = StreamId::new(A::KIND, id);
        let actors = self.inner.actors();
        if actors.contains_key(&stream) {
            return;
        }
        self.inner.seeds.lock().unwrap_or_else(|p| p.into_inner()).put(stream, Box::new(state), version);
    }

    /// Actors currently activated.
    pub fn live(&self) -> usize {
        self.inner.actors().len()
    }

    /// Refuses new commands, waits until every queued command has been handled, stops arbiters.
    pub async fn shutdown(&self) {
        self.inner.closing.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.inner.inflight.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(50), self.inner.idle.notified()).await;
        }
        let drains: Vec<Recipient<Drain>> = self.inner.actors().values().map(|e| e.drain.clone()).collect();
        for d in drains {
            let _ = d.send(Drain).await;
        }
        for a in &self.inner.arbiters {
            a.stop();
        }
    }

    fn addr<A: Aggregate>(&self, stream: &StreamId) -> (Addr<AggregateActor<A>>, Arc<AtomicUsize>, u64) {
        let mut actors = self.inner.actors();
        if let Some(e) = actors.get(stream) {
            if let Some(addr) = e.addr.downcast_ref::<Addr<AggregateActor<A>>>() {
                if addr.connected() {
                    return (addr.clone(), e.queued.clone(), e.token);
                }
            }
        }
        // Taken whether or not it is used: a seed outlives no actor of its stream.
        let seed = self.inner.seeds.lock().unwrap_or_else(|p| p.into_inner()).take::<A>(stream);
        let queued = Arc::new(AtomicUsize::new(0));
        let token = self.inner.tokens.fetch_add(1, Ordering::Relaxed);
        let weak = Arc::downgrade(&self.inner);
        let key = stream.clone();
        let on_stop: Box<dyn FnOnce() + Send> = Box::new(move || {
            if let Some(inner) = weak.upgrade() {
                let mut actors = inner.actors();
                if actors.get(&key).is_some_and(|e| e.token == token) {
                    actors.remove(&key);
                }
            }
        });
        let (store, clock, idle, s, q) = (
            self.inner.store.clone(),
            self.inner.clock.clone(),
            self.inner.config.idle,
            stream.clone(),
            queued.clone(),
        );
        let actor =
            move |_: &mut Context<AggregateActor<A>>| AggregateActor::new(s, store, clock, idle, q, on_stop, seed);
        let addr = if HOST_HERE.get() {
            AggregateActor::<A>::create(actor)
        } else {
            let slot = self.inner.hasher.hash_one(stream) as usize % self.inner.arbiters.len();
            AggregateActor::<A>::start_in_arbiter(&self.inner.arbiters[slot].handle(), actor)
        };
        actors.insert(
            stream.clone(),
            Entry { token, queued: queued.clone(), addr: Box::new(addr.clone()), drain: addr.clone().recipient() },
        );
        (addr, queued, token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::realm::Realm;
    use crate::domain::user::User;

    fn stream(id: &str) -> StreamId {
        StreamId::new(StreamType::User, id)
    }

    fn user(name: &str) -> Box<dyn Any + Send> {
        Box::new(User { username: name.into(), ..User::default() })
    }

    #[test]
    fn given_a_seed_when_taken_twice_then_only_the_first_has_it() {
        let mut seeds = Seeds::default();
        seeds.put(stream("u1"), user("ada"), 1);
        let (state, version) = seeds.take::<User>(&stream("u1")).unwrap();
        assert_eq!((state.username.as_str(), version), ("ada", 1));
        assert!(seeds.take::<User>(&stream("u1")).is_none());
    }

    #[test]
    fn given_a_seed_of_another_aggregate_when_taken_then_nothing_and_it_is_gone() {
        let mut seeds = Seeds::default();
        seeds.put(stream("u1"), user("ada"), 1);
        assert!(seeds.take::<Realm>(&stream("u1")).is_none());
        assert!(seeds.take::<User>(&stream("u1")).is_none());
    }

    #[test]
    fn given_a_full_map_when_one_more_is_put_then_the_oldest_goes_but_not_a_newer_seed_of_its_stream() {
        let mut seeds = Seeds::default();
        seeds.put(stream("first"), user("old"), 1);
        // Taken and put again: its first entry in the queue is stale.
        seeds.take::<User>(&stream("first")).unwrap();
        seeds.put(stream("first"), user("new"), 2);
        for i in 0..Seeds::CAPACITY - 2 {
            seeds.put(stream(&format!("s{i}")), user("x"), 1);
        }
        // The queue is full: the stale entry goes first, and takes nothing with it.
        seeds.put(stream("last"), user("x"), 1);
        assert_eq!(seeds.take::<User>(&stream("first")).map(|(u, v)| (u.username, v)), Some(("new".into(), 2)));
        // Then the entry of the new seed (taken just now: nothing), then the oldest other.
        seeds.put(stream("later"), user("x"), 1);
        assert!(seeds.states.contains_key(&stream("s0")));
        seeds.put(stream("later still"), user("x"), 1);
        assert!(seeds.take::<User>(&stream("s0")).is_none());
        assert!(seeds.take::<User>(&stream("s1")).is_some());
        assert!(seeds.states.len() <= Seeds::CAPACITY);
    }

    #[test]
    fn given_seeds_of_one_kind_filling_their_map_then_another_kinds_seed_stays() {
        let mut seeds = SeedsByKind::default();
        let session = StreamId::new(StreamType::Session, "s1");
        seeds.put(session.clone(), user("ada"), 1);
        for i in 0..Seeds::CAPACITY + 10 {
            seeds.put(stream(&format!("u{i}")), user("x"), 1);
        }
        assert!(seeds.take::<User>(&session).is_some());
        assert!(seeds.take::<User>(&stream("u0")).is_none(), "the oldest of the full kind went");
    }
}
