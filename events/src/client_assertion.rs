//! Client assertions (RFC 7523, `private_key_jwt`): each one is used once. Its stream id is
//! derived from the client and the assertion's `jti`, so a second use finds the stream taken
//! (on every node sharing the log) and is refused.
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClientAssertionUsed {
    pub realm_id: String,
    /// The client's internal id.
    pub client: String,
    /// The assertion's `jti`, as the client chose it (bounded in length).
    pub jti: String,
    /// The assertion's `exp`: after it, the record only documents the use.
    pub expires_at: i64,
    pub at: i64,
}

event_enum! {
    /// Events of a client assertion (stream type `client_assertion`).
    ClientAssertionEvent {
        Used(ClientAssertionUsed) = "client_assertion.used",
    }
}
