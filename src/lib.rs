//! The Annals server: event store, aggregates and their actors, projections, HTTP, CLI.
#![forbid(unsafe_code)]

pub mod clock;
pub mod metrics;
pub mod store;
pub mod verify;
