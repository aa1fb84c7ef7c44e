//! Client-credentials grants: one stream per issuance (its id is the access token's `jti`),
//! appended without an actor, so issuance for one client is never serialized yet every token
//! ever issued is in the log.
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClientGrantIssued {
    pub realm_id: String,
    /// The client's internal id.
    pub client: String,
    /// The client's service-account user, when it has one.
    #[serde(default)]
    pub user_id: Option<String>,
    pub scope: String,
    pub expires_at: i64,
    pub at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClientGrantRevoked {
    pub reason: String,
    /// The token's own expiry: until then the revocation must be remembered.
    pub expires_at: i64,
    pub at: i64,
}

event_enum! {
    /// Events of a client-credentials grant (stream type `client_grant`).
    ClientGrantEvent {
        Issued(ClientGrantIssued) = "client_grant.issued",
        Revoked(ClientGrantRevoked) = "client_grant.revoked",
    }
}
