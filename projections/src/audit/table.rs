//! The audit mapping: for every Annals event type, the Keycloak event it corresponds to (a
//! user event type such as `LOGIN`, or an admin event's operation and resource type), its
//! outcome and its severity. A test checks that every event type is here and nothing else is;
//! content-dependent refinements (who changed a password, which grant issued tokens) are in
//! `classify` beside the record builder.
use serde::Serialize;

/// Success or failure of what the event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
}

/// How much a SIEM should care; mapped to syslog and CEF levels by the sinks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Notice,
    Warning,
    Critical,
}

impl Severity {
    /// RFC 5424 severity (6 informational … 2 critical).
    pub fn syslog(self) -> u8 {
        match self {
            Severity::Info => 6,
            Severity::Notice => 5,
            Severity::Warning => 4,
            Severity::Critical => 2,
        }
    }

    /// CEF severity (0–10).
    pub fn cef(self) -> u8 {
        match self {
            Severity::Info => 3,
            Severity::Notice => 5,
            Severity::Warning => 7,
            Severity::Critical => 9,
        }
    }
}

/// Keycloak's admin-event operation types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Action,
}

impl Operation {
    /// The name as serialized (`CREATE`, …), for formats other than JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Action => "ACTION",
        }
    }
}

/// What an event type is, for auditors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    /// Keycloak's user-event type (`LOGIN`, `CODE_TO_TOKEN_ERROR`, …), where one exists.
    pub keycloak: Option<&'static str>,
    /// Keycloak's admin-event operation and resource type, for configuration changes.
    pub admin: Option<(Operation, &'static str)>,
    pub outcome: Outcome,
    pub severity: Severity,
}

const fn user(keycloak: &'static str, outcome: Outcome, severity: Severity) -> Class {
    Class { keycloak: Some(keycloak), admin: None, outcome, severity }
}

const fn annals(outcome: Outcome, severity: Severity) -> Class {
    Class { keycloak: None, admin: None, outcome, severity }
}

const fn admin(op: Operation, resource: &'static str, severity: Severity) -> Class {
    Class { keycloak: None, admin: Some((op, resource)), outcome: Outcome::Success, severity }
}

use Operation::*;
use Outcome::*;
use Severity::*;

/// Every event type, by its wire name.
pub const TABLE: &[(&str, Class)] = &[
    // An authorization request: Keycloak reports nothing until the login succeeds or fails.
    // The signed anchor of the log so far: SIEMs keep it to prove the log was not rewritten.
    ("audit_checkpoint.signed", annals(Success, Notice)),
    ("auth_request.started", annals(Success, Info)),
    ("auth_request.credentials_rejected", user("LOGIN_ERROR", Failure, Warning)),
    ("auth_request.authenticated", user("LOGIN", Success, Info)),
    ("auth_request.consent_requested", annals(Success, Info)),
    ("auth_request.consent_granted", user("GRANT_CONSENT", Success, Info)),
    ("auth_request.consent_denied", user("LOGIN_ERROR", Failure, Notice)),
    ("auth_request.code_issued", annals(Success, Info)),
    ("auth_request.code_redeemed", user("CODE_TO_TOKEN", Success, Info)),
    // A code presented twice is a stolen code or a broken client: the tokens were revoked.
    ("auth_request.code_replayed", user("CODE_TO_TOKEN_ERROR", Failure, Critical)),
    // The revocation the replay called for is done (recorded once every part of it committed).
    ("auth_request.replay_revoked", user("REVOKE_GRANT", Success, Notice)),
    ("auth_request.failed", user("LOGIN_ERROR", Failure, Warning)),
    ("client.created", admin(Create, "CLIENT", Notice)),
    ("client.settings_changed", admin(Update, "CLIENT", Notice)),
    // A credential change.
    ("client.secret_rotated", admin(Action, "CLIENT", Warning)),
    ("client.deleted", admin(Delete, "CLIENT", Warning)),
    // Part of the client's authentication; the grant it authenticated is reported itself.
    ("client_assertion.used", annals(Success, Info)),
    ("client_grant.issued", user("CLIENT_LOGIN", Success, Info)),
    ("client_grant.revoked", user("REVOKE_GRANT", Success, Info)),
    ("group.created", admin(Create, "GROUP", Notice)),
    ("group.role_granted", admin(Create, "REALM_ROLE_MAPPING", Warning)),
    ("group.role_revoked", admin(Delete, "REALM_ROLE_MAPPING", Notice)),
    ("group.deleted", admin(Delete, "GROUP", Notice)),
    // The failed login itself is the LOGIN_ERROR; this is the brute-force counter moving.
    ("login_failures.recorded", annals(Failure, Warning)),
    ("login_failures.locked_out", user("USER_DISABLED_BY_TEMPORARY_LOCKOUT", Failure, Warning)),
    ("login_failures.cleared", annals(Success, Info)),
    ("logout_delivery.delivered", annals(Success, Info)),
    ("logout_delivery.failed", annals(Failure, Warning)),
    ("realm.created", admin(Create, "REALM", Notice)),
    // A request refused before any aggregate: its Keycloak type depends on the endpoint and
    // grant (see `classify`). Past a few per source and reason, floods are summarized.
    ("rejected_request.recorded", user("LOGIN_ERROR", Failure, Warning)),
    ("rejected_request.summarized", annals(Failure, Warning)),
    ("realm.settings_changed", admin(Update, "REALM", Notice)),
    ("realm.deleted", admin(Delete, "REALM", Critical)),
    ("role.created", admin(Create, "REALM_ROLE", Notice)),
    ("role.composites_set", admin(Update, "REALM_ROLE", Warning)),
    ("role.deleted", admin(Delete, "REALM_ROLE", Notice)),
    ("session.started", annals(Success, Info)),
    // Which Keycloak event depends on the grant (see `classify`): a code redemption is
    // already CODE_TO_TOKEN on the authorization request.
    ("session.tokens_issued", annals(Success, Info)),
    // Reuse of a rotated refresh token: a stolen token; the session was revoked.
    ("session.refresh_reused", user("REFRESH_TOKEN_ERROR", Failure, Critical)),
    ("session.tokens_revoked", user("REVOKE_GRANT", Success, Info)),
    ("session.logged_out", user("LOGOUT", Success, Info)),
    ("session.revoked", user("LOGOUT", Success, Notice)),
    // Keys are components in Keycloak's admin API.
    ("signing_key.generated", admin(Create, "COMPONENT", Notice)),
    ("signing_key.retired", admin(Update, "COMPONENT", Notice)),
    ("signing_key.removed", admin(Delete, "COMPONENT", Notice)),
    // A receiver refused a record for good: the SIEM lacks it, and must learn which.
    ("sink_delivery.rejected", annals(Failure, Warning)),
    // A receiver subscribing to, or leaving, the realm's Shared Signals.
    ("ssf_stream.created", annals(Success, Notice)),
    ("ssf_stream.updated", annals(Success, Notice)),
    ("ssf_stream.verification_requested", annals(Success, Info)),
    ("ssf_stream.deleted", annals(Success, Notice)),
    ("user.created", admin(Create, "USER", Notice)),
    ("user.profile_changed", admin(Update, "USER", Notice)),
    // An administrator setting a password (Keycloak's reset-password); the user's own
    // change is UPDATE_PASSWORD.
    ("user.password_set", admin(Action, "USER", Warning)),
    ("user.password_hash_upgraded", annals(Success, Info)),
    // A privilege change: what SIEM rules watch for.
    ("user.role_granted", admin(Create, "REALM_ROLE_MAPPING", Warning)),
    ("user.role_revoked", admin(Delete, "REALM_ROLE_MAPPING", Notice)),
    ("user.joined_group", admin(Create, "GROUP_MEMBERSHIP", Warning)),
    ("user.left_group", admin(Delete, "GROUP_MEMBERSHIP", Notice)),
    // The consent remembered for the user; the request's GRANT_CONSENT reports the grant.
    ("user.consent_granted", annals(Success, Info)),
    ("user.deleted", admin(Delete, "USER", Warning)),
];

/// The class of an event type; `None` for a name that is no event type.
pub fn class(event_type: &str) -> Option<Class> {
    TABLE.iter().find(|(name, _)| *name == event_type).map(|(_, c)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals_events::DomainEvent;
    use std::collections::BTreeSet;

    #[test]
    fn every_event_type_is_mapped_exactly_once_and_nothing_else_is() {
        let types: BTreeSet<&str> = DomainEvent::all_types().into_iter().collect();
        let mapped: Vec<&str> = TABLE.iter().map(|(n, _)| *n).collect();
        let unique: BTreeSet<&str> = mapped.iter().copied().collect();
        assert_eq!(unique.len(), mapped.len(), "a type is mapped twice");
        let missing: Vec<_> = types.difference(&unique).collect();
        let stale: Vec<_> = unique.difference(&types).collect();
        assert!(missing.is_empty(), "event types without an audit mapping: {missing:?}");
        assert!(stale.is_empty(), "mappings for types that do not exist: {stale:?}");
    }

    #[test]
    fn keycloak_error_types_are_failures_and_failures_are_not_info() {
        for (name, c) in TABLE {
            if c.keycloak.is_some_and(|k| k.ends_with("_ERROR")) {
                assert_eq!(c.outcome, Failure, "{name}");
            }
            if c.outcome == Failure {
                assert!(c.severity > Info, "{name}");
            }
            assert!(c.keycloak.is_none() || c.admin.is_none(), "{name} is both a user and an admin event");
        }
    }
}
