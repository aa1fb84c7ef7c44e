//! The Annals server: event store, aggregates and their actors, projections, HTTP, CLI.
#![forbid(unsafe_code)]

pub mod actors;
pub mod clock;
pub mod config;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod readmodels;
pub mod store;
pub mod verify;
