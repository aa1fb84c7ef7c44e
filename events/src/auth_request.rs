//! Authorization request events: one stream per request at the authorization endpoint, from
//! the request through identification, credential checks and consent to code issuance and
//! redemption.
use serde::{Deserialize, Serialize};

/// What the relying party asked for, after validation. `state` and `nonce` are the client's
/// opaque values, relayed back; the code challenge is a hash (S256) or, where the client
/// allows `plain`, the verifier itself, which is single-use and bound to this request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuthRequestStarted {
    pub realm_id: String,
    /// The client's internal id.
    pub client: String,
    /// The OAuth `client_id`.
    pub client_id: String,
    pub redirect_uri: String,
    pub response_type: String,
    pub response_mode: String,
    pub scope: String,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub code_challenge: Option<String>,
    #[serde(default)]
    pub code_challenge_method: Option<String>,
    #[serde(default)]
    pub prompt: Vec<String>,
    #[serde(default)]
    pub max_age: Option<i64>,
    #[serde(default)]
    pub login_hint: Option<String>,
    #[serde(default)]
    pub acr_values: Option<String>,
    /// Epoch seconds after which the login must start over.
    pub expires_at: i64,
    pub at: i64,
}

/// A credential check failed. `username` is what was typed (trimmed, bounded), so an auditor
/// sees guessing against names that do not exist too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuthRequestCredentialsRejected {
    pub username: String,
    #[serde(default)]
    pub user_id: Option<String>,
    /// `user_not_found`, `invalid_user_credentials`, `user_disabled`, `user_temporarily_disabled`
    /// (Keycloak's error names).
    pub reason: String,
    pub at: i64,
}

/// The user is identified: by credentials (a new session) or by an existing SSO session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuthRequestAuthenticated {
    pub user_id: String,
    pub session_id: String,
    /// `pwd` (password) or `sso` (an existing session).
    pub method: String,
    /// When the user last actively authenticated (the session's start for `sso`).
    pub auth_time: i64,
    pub at: i64,
}

/// A code was handed to the browser. Only the SHA-256 of its secret part is kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuthRequestCodeIssued {
    pub code_hash: String,
    pub expires_at: i64,
    pub at: i64,
}

/// The client requires consent and the user has not given it for these scopes (or the
/// request said `prompt=consent`): the consent page is shown, no code yet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuthRequestConsentRequested {
    pub scopes: Vec<String>,
    pub at: i64,
}

/// The user agreed to let the client have these scopes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuthRequestConsentGranted {
    pub scopes: Vec<String>,
    pub at: i64,
}

/// The user refused: the request ends, the client gets `access_denied`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuthRequestConsentDenied {
    pub at: i64,
}

/// The code was exchanged for tokens (by id, never the tokens).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuthRequestCodeRedeemed {
    pub session_id: String,
    pub token_ids: Vec<String>,
    pub at: i64,
    /// Whether the redemption was granted `offline_access` (its tokens include an offline
    /// token unless issuing them failed), so a replay revokes the offline token whatever the
    /// client's scopes are by then. Absent in logs written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline: Option<bool>,
}

/// A redeemed code was presented again: the tokens of the first redemption are revoked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuthRequestCodeReplayed {
    pub at: i64,
}

/// What the first redemption of a replayed code gave is revoked: every session command the
/// revocation takes committed. Until this is recorded, a node revokes it again (on the
/// replay's own request, or later from the log), so a revocation that failed is retried.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuthRequestReplayRevoked {
    pub at: i64,
}

/// The request ended without a code: `login_required`, `access_denied`, ... (the error sent
/// back to the client).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuthRequestFailed {
    pub error: String,
    pub at: i64,
}

event_enum! {
    /// Events of the AuthRequest aggregate (stream type `auth_request`).
    AuthRequestEvent {
        Started(AuthRequestStarted) = "auth_request.started",
        CredentialsRejected(AuthRequestCredentialsRejected) = "auth_request.credentials_rejected",
        Authenticated(AuthRequestAuthenticated) = "auth_request.authenticated",
        ConsentRequested(AuthRequestConsentRequested) = "auth_request.consent_requested",
        ConsentGranted(AuthRequestConsentGranted) = "auth_request.consent_granted",
        ConsentDenied(AuthRequestConsentDenied) = "auth_request.consent_denied",
        CodeIssued(AuthRequestCodeIssued) = "auth_request.code_issued",
        CodeRedeemed(AuthRequestCodeRedeemed) = "auth_request.code_redeemed",
        CodeReplayed(AuthRequestCodeReplayed) = "auth_request.code_replayed",
        ReplayRevoked(AuthRequestReplayRevoked) = "auth_request.replay_revoked",
        Failed(AuthRequestFailed) = "auth_request.failed",
    }
}
