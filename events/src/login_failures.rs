//! Brute-force protection: failed logins counted per user and per source address (one stream
//! each, `{realm}:user:{id}` or `{realm}:ip:{address}`), with Keycloak's settings.
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LoginFailureRecorded {
    /// Failures counted so far in this run (reset after `maxDeltaTimeSeconds` without one).
    pub failures: u32,
    /// Epoch milliseconds.
    pub at_ms: i64,
}

/// Logins are refused until `until` (epoch seconds), or for good when `permanent`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LoginLockedOut {
    #[serde(default)]
    pub until: Option<i64>,
    pub permanent: bool,
    pub failures: u32,
}

/// A successful login (or an administrator) reset the count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LoginFailuresCleared {
    pub at_ms: i64,
}

event_enum! {
    /// Events of the LoginFailures aggregate (stream type `login_failures`).
    LoginFailuresEvent {
        Recorded(LoginFailureRecorded) = "login_failures.recorded",
        LockedOut(LoginLockedOut) = "login_failures.locked_out",
        Cleared(LoginFailuresCleared) = "login_failures.cleared",
    }
}
