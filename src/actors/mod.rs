//! Aggregate hosting: one actix actor per live aggregate instance.
//!
//! Activation loads the latest snapshot and the tail (or starts from the state the node
//! remembered when it created the stream itself, see [`Hosts::remember`]); commands are handled one at a time
//! (`ctx.wait` holds the mailbox while a decision is appended); the append carries the
//! expected version and, on conflict, the actor reloads and decides once more. Idle actors
//! passivate. Mailboxes are bounded and a full one answers `Busy` instead of queueing
//! without limit.
//!
//! Where an actor runs: one activated by an HTTP worker runs on that worker's thread (see
//! [`host_on_this_thread`]), so the request that uses it most (a session's refresh, an
//! authorization request's login) reaches it without waking another thread; commands from
//! other threads still reach it by address. One activated elsewhere (deliveries, the CLI)
//! runs on one of the hosts' arbiters, one per core. An actor whose thread stops mid-command
//! leaves its caller `Unavailable`, never a second run of a command that may have appended.
mod host;
mod registry;

pub use host::{AggregateActor, Drain, Execute, Handoff};
pub use registry::{host_on_this_thread, HeldDecision, Hold, Hosts, HostsConfig};

use crate::store::{StoreError, StreamAppend};

/// What a successful command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executed {
    /// Events appended (0 when the command changed nothing).
    pub events: usize,
    /// The stream's version after the command.
    pub version: u64,
    /// The global position of the last appended event (0 when nothing was appended, or when
    /// the append was deferred and has no position yet: see [`Hosts::execute_deferred_with`]).
    pub position: u64,
}

/// What a command did, with the events it decided and the aggregate's state after them (for
/// protocol handlers that answer from the outcome, e.g. a code redemption's tokens).
#[derive(Clone, Debug)]
pub struct Outcome<A: crate::domain::Aggregate> {
    pub executed: Executed,
    pub events: Vec<A::Event>,
    pub state: A,
    /// The first decision conflicted with another writer and the command was decided again
    /// after catching up: what was previewed of the first (see [`Decided`]) does not hold.
    pub redecided: bool,
}

/// What a command decided, sent before its events are durable (see
/// [`Hosts::execute_prepared`]): the events, the state after them and the stream's version
/// once they commit. Nothing of it may leave the node until the command's outcome says the
/// events committed as decided here (not decided again after a conflict).
#[derive(Clone, Debug)]
pub struct Decided<A: crate::domain::Aggregate> {
    pub events: Vec<A::Event>,
    pub state: A,
    pub version: u64,
}

/// A decision an actor has not appended but handed to its caller, to commit in the same
/// transaction as another actor's command (see [`Hosts::hold`]). The actor waits, its mailbox
/// held, until told how that went; a `Held` dropped untold counts as [`Settle::Unknown`].
pub struct Held<A: crate::domain::Aggregate> {
    pub decided: Decided<A>,
    /// The events to append, expecting the stream at the version the actor decided on.
    pub append: StreamAppend,
    settle: Option<tokio::sync::oneshot::Sender<Settle>>,
}

impl<A: crate::domain::Aggregate> Held<A> {
    /// Tells the actor what became of its decision.
    fn settle(mut self, how: Settle) {
        if let Some(tx) = self.settle.take() {
            let _ = tx.send(how);
        }
    }
}

/// What became of a held decision, as its caller tells the actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    /// Committed with the caller's command; the transaction's last event is at `position`.
    Committed { position: u64 },
    /// Not committed, and the caller's command will not commit it: the actor appends it on its
    /// own (deciding again if the stream moved meanwhile).
    Alone,
    /// Not committed, and not to be: the caller's command never ran (its actor was busy). The
    /// actor drops the decision, as if the command had not come, and its caller gets `Busy`.
    Discard,
    /// The caller cannot tell whether it committed (the store failed mid-commit, or the
    /// other actor's thread stopped mid-command): the actor reads its stream again.
    Unknown,
}

/// Errors of hosted commands. The HTTP layer answers `Domain` by the variant's meaning,
/// `Busy` and `Unavailable` with 503 and Retry-After, `Conflict` with 409, `Store` with 503.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommandError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Domain(E),
    /// The aggregate's mailbox is full: back off and retry.
    #[error("aggregate is busy")]
    Busy,
    /// The host is shutting down or the actor died.
    #[error("aggregate host unavailable")]
    Unavailable,
    /// Another writer won twice in a row; the caller may retry.
    #[error("concurrent modification, retry")]
    Conflict,
    #[error(transparent)]
    Store(StoreError),
    /// A stored event of this stream cannot be decoded; the stream needs an operator.
    #[error("stream is unreadable: {0}")]
    Corrupt(String),
}
