//! Back-channel logout deliveries (OpenID Connect Back-Channel Logout 1.0): one stream per
//! ended session and client, holding every attempt to POST that client a logout token. The
//! token itself is never recorded, only its `jti`.
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The stream of the deliveries to one client for one ended session.
pub fn stream_id(session_id: &str, client: &str) -> String {
    hex::encode(Sha256::digest(format!("{session_id}\n{client}").as_bytes()))
}

/// The client's back-channel endpoint answered 2xx.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogoutDeliveryDelivered {
    pub realm_id: String,
    /// The session that ended.
    pub session_id: String,
    /// The client's internal id.
    pub client: String,
    pub url: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub status: u16,
    /// The logout token's `jti`.
    pub jti: String,
    pub at: i64,
}

/// An attempt failed (connection refused, timeout, non-2xx). `retry_at_ms` is when the next
/// attempt is due (epoch milliseconds: the first waits are a second or two); none when Annals
/// gave up (too many attempts, or the client no longer has a back-channel URL).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogoutDeliveryFailed {
    pub realm_id: String,
    pub session_id: String,
    pub client: String,
    pub url: String,
    pub attempt: u32,
    /// The status the client answered, if it answered.
    #[serde(default)]
    pub status: Option<u16>,
    /// What went wrong, without the token.
    pub error: String,
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub retry_at_ms: Option<i64>,
    pub at: i64,
}

event_enum! {
    /// Events of a back-channel logout delivery (stream type `logout_delivery`, stream id
    /// derived from the session and client).
    LogoutDeliveryEvent {
        Delivered(LogoutDeliveryDelivered) = "logout_delivery.delivered",
        Failed(LogoutDeliveryFailed) = "logout_delivery.failed",
    }
}
