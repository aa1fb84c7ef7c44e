//! SSO session events: one stream per session, from login to logout or revocation. Tokens
//! appear by id (`jti`) only.
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SessionStarted {
    pub realm_id: String,
    pub user_id: String,
    /// `pwd` for the login page and the password grant.
    pub method: String,
    /// Authentication context class: `1` for a single factor (Keycloak's default).
    pub acr: String,
    pub auth_time: i64,
    /// Limits taken from the realm when the session started (seconds).
    pub idle_timeout: i64,
    pub max_lifespan: i64,
    /// Set for an offline session (scope `offline_access`): the SSO session it was issued
    /// from. An offline session outlives that session's logout and ends only by its own idle
    /// (and, where the realm enables one, max) lifetime, by revocation or by reuse of its
    /// refresh token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_from: Option<String>,
    /// When the session began, where that is not `auth_time`: an offline session begins when
    /// it is issued, and its lifetimes count from then, while `auth_time` stays the time of
    /// the authentication it carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
}

/// Tokens handed to a client in this session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SessionTokensIssued {
    /// The client's internal id.
    pub client: String,
    /// `authorization_code`, `refresh_token`, `password`, `implicit`.
    pub grant: String,
    pub access_token_id: Option<String>,
    #[serde(default)]
    pub id_token_id: Option<String>,
    #[serde(default)]
    pub refresh_token_id: Option<String>,
    /// The refresh token this issuance replaced (rotation).
    #[serde(default)]
    pub replaces: Option<String>,
    pub scope: String,
    /// When the access token expires.
    pub expires_at: i64,
    pub at: i64,
}

/// A refresh token that had already been rotated away was presented again: someone holds a
/// copy. The session is revoked with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SessionRefreshReused {
    pub client: String,
    pub refresh_token_id: String,
    pub at: i64,
}

/// Some tokens stop being valid before they expire (revocation endpoint, code replay).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SessionTokensRevoked {
    pub client: String,
    pub token_ids: Vec<String>,
    /// Every access token of this client issued earlier in this session is revoked too (a
    /// revoked refresh chain, a replayed code). "Earlier" is the session stream's own order:
    /// access tokens carry the stream version they were issued at (claim `sv`), so no clock
    /// decides, and a cutoff rather than a list keeps a session refreshed thousands of times
    /// small.
    #[serde(default)]
    pub earlier_access_tokens: bool,
    /// `revocation_endpoint`, `code_replayed`.
    pub reason: String,
    pub at: i64,
}

/// The user logged out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SessionLoggedOut {
    /// The client that asked, when one did.
    #[serde(default)]
    pub client: Option<String>,
    /// Every client that held tokens of this session (internal ids): the ones back-channel
    /// logout tells.
    #[serde(default)]
    pub clients: Vec<String>,
    pub at: i64,
}

/// The session was ended by someone other than the user (`refresh_token_reused`, `admin`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SessionRevoked {
    pub reason: String,
    /// As in [`SessionLoggedOut::clients`].
    #[serde(default)]
    pub clients: Vec<String>,
    pub at: i64,
}

event_enum! {
    /// Events of the Session aggregate (stream type `session`).
    SessionEvent {
        Started(SessionStarted) = "session.started",
        TokensIssued(SessionTokensIssued) = "session.tokens_issued",
        RefreshReused(SessionRefreshReused) = "session.refresh_reused",
        TokensRevoked(SessionTokensRevoked) = "session.tokens_revoked",
        LoggedOut(SessionLoggedOut) = "session.logged_out",
        Revoked(SessionRevoked) = "session.revoked",
    }
}
