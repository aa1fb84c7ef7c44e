//! Requests refused before any aggregate is involved: an unknown client, a redirect URI that
//! is not registered, client authentication that fails, a code or refresh token that is not
//! valid, an administrator's token that does not authorize. Nothing changes, yet a SIEM must
//! see them (misconfigured clients and attackers both show up here). Each fact is a stream of
//! its own (stream id a new UUID), appended without an actor; a flood is counted, not copied:
//! past a few per source, reason and time window, one summary records how many more came.
use serde::{Deserialize, Serialize};

/// One refused request. Every string is as the caller sent it, cut short: a caller chooses
/// them, and must not grow the log by sending long ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RejectedRequestRecorded {
    /// The realm the request named, when it exists.
    #[serde(default)]
    pub realm_id: Option<String>,
    /// `auth`, `token`, `introspect`, `revoke` or `admin`.
    pub endpoint: String,
    /// Why, as Keycloak names it where it does (`client_not_found`, `invalid_redirect_uri`,
    /// `invalid_client_credentials`, `invalid_code`, `invalid_token`, `not_allowed`...).
    pub reason: String,
    /// What the server answered, without anything the caller could not already see.
    pub description: String,
    /// The `client_id` the caller presented (it may name no client).
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub redirect_uri: Option<String>,
    #[serde(default)]
    pub grant_type: Option<String>,
    pub at_ms: i64,
}

/// More requests of one source, endpoint and reason in one window than were recorded one by
/// one: how many more, and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RejectedRequestSummarized {
    #[serde(default)]
    pub realm_id: Option<String>,
    pub endpoint: String,
    pub reason: String,
    /// The source address, or `*` for sources past the number a window tracks one by one.
    pub source: String,
    /// Requests refused in the window and not recorded one by one.
    pub count: u64,
    /// The window, epoch milliseconds (start inclusive, end exclusive).
    pub from_ms: i64,
    pub to_ms: i64,
}

event_enum! {
    /// Refused requests (stream type `rejected_request`, one stream per fact).
    RejectedRequestEvent {
        Recorded(RejectedRequestRecorded) = "rejected_request.recorded",
        Summarized(RejectedRequestSummarized) = "rejected_request.summarized",
    }
}
