//! Aggregates: pure `decide(&State, Command, now) -> events` and `apply(State, &Event) -> State`.
//! No I/O here; `crate::actors` hosts them.
pub mod auth_request;
pub mod client;
pub mod client_assertion;
pub mod client_grant;
pub mod group;
pub mod login_failures;
pub mod logout_delivery;
pub mod realm;
pub mod role;
pub mod session;
pub mod signing_key;
pub mod sink_delivery;
pub mod ssf_stream;
pub mod user;
mod validate;

use annals_events::{DomainEvent, StreamType};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// One aggregate type: its state is `Self`.
pub trait Aggregate: Default + Clone + Serialize + DeserializeOwned + Send + Sync + Unpin + 'static {
    const KIND: StreamType;
    type Command: Clone + Send + 'static;
    type Event: Clone + Into<DomainEvent> + TryFrom<DomainEvent, Error = DomainEvent> + Send + 'static;
    type Error: std::error::Error + Clone + Send + Sync + 'static;

    /// The events a command produces in this state; empty when it changes nothing.
    fn decide(&self, command: Self::Command, now: DateTime<Utc>) -> Result<Vec<Self::Event>, Self::Error>;

    /// The state after one event. Total: never fails, ignores events that cannot apply.
    fn apply(self, event: &Self::Event) -> Self;
}

/// Where an aggregate instance is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lifecycle {
    #[default]
    New,
    Live,
    Deleted,
}

/// Folds events into a state: what activation and replay do.
pub fn fold<A: Aggregate>(state: A, events: &[A::Event]) -> A {
    events.iter().fold(state, |s, e| s.apply(e))
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("valid")
    }

    /// Given these past events, when this command is decided, then this is the result.
    pub fn given<A: Aggregate>(events: Vec<A::Event>) -> A {
        fold(A::default(), &events)
    }
}
