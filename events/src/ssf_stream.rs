//! OpenID Shared Signals streams (Shared Signals Framework 1.0): one receiver's subscription
//! to a realm's security events (CAEP, RISC), delivered as signed Security Event Tokens
//! (RFC 8417) by push (RFC 8935) or poll (RFC 8936). Stream id = the stream's own UUID.
use crate::signing_key::SealedKey;
use serde::{Deserialize, Serialize};

/// Push delivery (RFC 8935): Annals POSTs each SET to the receiver's endpoint.
pub const PUSH: &str = "urn:ietf:rfc:8935";
/// Poll delivery (RFC 8936): the receiver POSTs to Annals' poll endpoint for SETs.
pub const POLL: &str = "urn:ietf:rfc:8936";

/// A receiver created a stream through the configuration endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SsfStreamCreated {
    pub realm_id: String,
    /// The receiver: the `clientId` its token was issued to; every SET's `aud`.
    pub audience: String,
    /// [`PUSH`] or [`POLL`].
    pub method: String,
    /// Where pushed SETs go (push only).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// The `Authorization` header value the receiver asked pushes to carry, sealed with the
    /// server keys (a credential: never in clear in the log).
    #[serde(default)]
    pub authorization: Option<SealedKey>,
    /// Event type URIs the receiver asked for.
    pub events_requested: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub at: i64,
}

/// The receiver changed (PATCH) or replaced (PUT) the stream's configuration: the whole new
/// configuration (its delivery method, realm and receiver never change).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SsfStreamUpdated {
    #[serde(default)]
    pub endpoint_url: Option<String>,
    #[serde(default)]
    pub authorization: Option<SealedKey>,
    pub events_requested: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub at: i64,
}

/// The receiver asked for a verification event (SSF 1.0 §8.1.4): the stream delivers one
/// SET carrying `state` back, so the receiver knows delivery works end to end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SsfStreamVerificationRequested {
    #[serde(default)]
    pub state: Option<String>,
    pub at: i64,
}

/// The receiver (or an administrator) deleted the stream; nothing more is delivered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SsfStreamDeleted {
    pub at: i64,
}

event_enum! {
    /// Events of a Shared Signals stream (stream type `ssf_stream`).
    SsfStreamEvent {
        Created(SsfStreamCreated) = "ssf_stream.created",
        Updated(SsfStreamUpdated) = "ssf_stream.updated",
        VerificationRequested(SsfStreamVerificationRequested) = "ssf_stream.verification_requested",
        Deleted(SsfStreamDeleted) = "ssf_stream.deleted",
    }
}
