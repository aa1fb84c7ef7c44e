//! The Annals server: event store, aggregates and their actors, projections, HTTP, CLI.
#![forbid(unsafe_code)]

pub mod actors;
pub mod audit;
pub mod audit_checkpoints;
pub mod audit_key;
pub mod cli;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod domain;
pub mod http;
pub mod jwt;
pub mod keycloak;
pub mod keys;
pub mod metrics;
pub mod oidc;
pub mod provision;
pub mod readmodels;
pub mod rejections;
pub mod secrets;
pub mod server;
pub mod sinks;
pub mod sqlmodels;
pub mod ssf;
pub mod store;
pub mod verify;
