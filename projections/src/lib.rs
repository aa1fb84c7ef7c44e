//! Pure folds from Annals events to read models. No I/O, no async, no database: the server's
//! runner feeds events in log order; rebuilding from position 0 gives the same model.
#![forbid(unsafe_code)]

pub mod audit;
pub mod clients;
pub mod consents;
pub mod directory;
pub mod logout_deliveries;
pub mod memberships;
pub mod realms;
pub mod replay_revocations;
pub mod sessions;
pub mod signing_keys;
pub mod ssf_streams;
pub mod users;

pub use directory::Directory;

use annals_events::{DomainEvent, RecordedEvent};

/// A read model fed the global log in order.
pub trait Projection {
    /// Stable name, used by `annals projections rebuild NAME` and in metrics.
    const NAME: &'static str;

    /// Folds one event. `event` is the stored record (stream id, time), `decoded` its payload.
    fn apply(&mut self, event: &RecordedEvent, decoded: &DomainEvent);
}

#[cfg(test)]
mod tests;
