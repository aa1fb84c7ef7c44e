//! The Annals event vocabulary.
//!
//! This crate is deliberately small (serde, uuid, chrono, sha2, ed25519-dalek) so that a SIEM consumer or a
//! forensic tool can decode Annals events and check the hash chain without the server.
#![forbid(unsafe_code)]

#[macro_use]
mod macros;

pub mod audit_checkpoint;
pub mod auth_request;
pub mod canonical;
pub mod chain;
pub mod client;
pub mod client_assertion;
pub mod client_grant;
pub mod domain;
pub mod envelope;
pub mod evidence;
pub mod group;
pub mod jws;
pub mod login_failures;
pub mod logout_delivery;
pub mod merkle;
pub mod metadata;
pub mod realm;
pub mod rejected_request;
pub mod role;
pub mod session;
pub mod signing_key;
pub mod sink_delivery;
pub mod ssf_stream;
pub mod stream;
pub mod upcast;
pub mod user;

pub use domain::{DecodeError, DomainEvent};
pub use envelope::{NewEvent, RecordedEvent};
pub use metadata::{Actor, Metadata};
pub use stream::{StreamId, StreamType};

/// Attributes shared by payload structs: serde, and JSON Schema when the `schema` feature is on.
pub(crate) type Extra = serde_json::Map<String, serde_json::Value>;
