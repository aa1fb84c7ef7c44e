//! The audit projection: every event of the log as one audit record, in log order, named the
//! way Keycloak's event listeners name it (user events such as `LOGIN`, admin events with
//! operation, resource type and path) plus what only Annals knows (position, hash, stream).
//!
//! Records are built from chosen fields, never by copying a payload: payloads hold password
//! hashes, sealed secrets and keys, which must never reach a SIEM.
pub mod context;
pub mod table;

pub use context::StreamContext;
pub use table::{Class, Operation, Outcome, Severity};

use annals_events::audit_checkpoint::AuditCheckpointEvent;
use annals_events::auth_request::AuthRequestEvent;
use annals_events::client::ClientEvent;
use annals_events::client_grant::ClientGrantEvent;
use annals_events::group::GroupEvent;
use annals_events::login_failures::LoginFailuresEvent;
use annals_events::logout_delivery::LogoutDeliveryEvent;
use annals_events::realm::RealmEvent;
use annals_events::rejected_request::RejectedRequestEvent;
use annals_events::role::RoleEvent;
use annals_events::session::SessionEvent;
use annals_events::signing_key::SigningKeyEvent;
use annals_events::sink_delivery::SinkDeliveryEvent;
use annals_events::ssf_stream::SsfStreamEvent;
use annals_events::user::UserEvent;
use annals_events::{Actor, DomainEvent, Metadata, RecordedEvent, StreamType};
use serde::Serialize;
use std::collections::BTreeMap;

/// Names the host knows and the log does not repeat: realm names and clients' `clientId`.
pub trait Names {
    fn realm_name(&self, realm_id: &str) -> Option<String>;
    /// The `clientId` of a client by its internal id.
    fn client_id(&self, client: &str) -> Option<String>;
}

/// Who did it, as Keycloak's admin events put it (`authDetails`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthDetails {
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realm_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
}

/// One audit record. Field names follow Keycloak's event representation where it has one.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Position in the global log: the resume point of every sink.
    pub position: u64,
    /// Stable across redeliveries: receivers de-duplicate by it.
    pub id: String,
    /// Milliseconds since the epoch, as Keycloak's `time`.
    pub time: i64,
    /// `user` or `admin`, Keycloak's two kinds of event.
    pub kind: &'static str,
    /// Keycloak's user-event type, where one corresponds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_type: Option<Operation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_path: Option<String>,
    /// The Annals event type (`session.logged_out`).
    pub annals_type: &'static str,
    pub stream: String,
    pub version: u64,
    pub outcome: Outcome,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realm_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realm_name: Option<String>,
    /// The client's `clientId` when known, else its internal id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// Keycloak's `error` for failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<&'static str, String>,
    pub auth_details: AuthDetails,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The event's hash in the chain (hex): anchors the record to signed checkpoints.
    pub hash: String,
}

/// Keycloak's error event for a request refused at `endpoint`: what Keycloak reports for the
/// same refusal; none for the admin API (Keycloak records no admin event for a refused call).
fn rejected_type(endpoint: &str, grant_type: Option<&str>) -> Option<&'static str> {
    Some(match (endpoint, grant_type) {
        ("token", Some("authorization_code")) => "CODE_TO_TOKEN_ERROR",
        ("token", Some("refresh_token")) => "REFRESH_TOKEN_ERROR",
        ("token", Some("password")) => "LOGIN_ERROR",
        ("token", _) => "CLIENT_LOGIN_ERROR",
        ("introspect", _) => "INTROSPECT_TOKEN_ERROR",
        ("revoke", _) => "REVOKE_GRANT_ERROR",
        ("admin", _) => return None,
        _ => "LOGIN_ERROR",
    })
}

/// The class of one event, the table's entry refined by what the event says and who caused it.
pub fn classify(event: &DomainEvent, actor: &Actor, ctx: &StreamContext) -> Class {
    // Every type is in the table (tested); were one missing, its record would still go out.
    let mut c = table::class(event.event_type()).unwrap_or(Class {
        keycloak: None,
        admin: None,
        outcome: Outcome::Success,
        severity: Severity::Notice,
    });
    let by_user = matches!(actor, Actor::User { .. });
    match event {
        // Code redemptions and password grants are reported on their authorization request
        // (CODE_TO_TOKEN, LOGIN); a refresh only here.
        DomainEvent::Session(SessionEvent::TokensIssued(e)) if e.grant == "refresh_token" => {
            c.keycloak = Some("REFRESH_TOKEN");
        }
        // A refused redemption (wrong verifier, redirect URI or client): Keycloak's
        // CODE_TO_TOKEN_ERROR, and a sign of an intercepted code.
        DomainEvent::AuthRequest(AuthRequestEvent::Failed(e)) if e.error.starts_with("invalid_grant") => {
            c.keycloak = Some("CODE_TO_TOKEN_ERROR");
        }
        // Revocations that answer an attack are not ordinary logouts or revocations.
        DomainEvent::Session(SessionEvent::Revoked(e)) if e.reason == "refresh_token_reused" => {
            c.severity = Severity::Critical;
        }
        DomainEvent::Session(SessionEvent::TokensRevoked(e)) if e.reason == "code_replayed" => {
            c.severity = Severity::Critical;
        }
        DomainEvent::User(UserEvent::PasswordSet(_)) if by_user => {
            c = Class { keycloak: Some("UPDATE_PASSWORD"), admin: None, ..c };
        }
        DomainEvent::User(UserEvent::ProfileChanged(_)) if by_user => {
            c = Class { keycloak: Some("UPDATE_PROFILE"), admin: None, ..c };
        }
        DomainEvent::User(UserEvent::Created(_)) if by_user => {
            c = Class { keycloak: Some("REGISTER"), admin: None, ..c };
        }
        DomainEvent::RejectedRequest(RejectedRequestEvent::Recorded(e)) => {
            c.keycloak = rejected_type(&e.endpoint, e.grant_type.as_deref());
        }
        DomainEvent::LoginFailures(LoginFailuresEvent::LockedOut(e)) if e.permanent => {
            c.keycloak = Some("USER_DISABLED_BY_PERMANENT_LOCKOUT");
            c.severity = Severity::Critical;
        }
        DomainEvent::Role(_) if ctx.client.is_some() => {
            if let Some((op, _)) = c.admin {
                c.admin = Some((op, "CLIENT_ROLE"));
            }
        }
        _ => {}
    }
    c
}

/// The audit record of `event`, given its stream's context after folding it.
pub fn record(
    event: &RecordedEvent,
    decoded: &DomainEvent,
    meta: &Metadata,
    ctx: &StreamContext,
    names: &dyn Names,
) -> AuditRecord {
    let class = classify(decoded, &meta.actor, ctx);
    let said = Said::of(decoded);
    let realm_id = ctx.realm_id.clone().or_else(|| meta.realm.clone());
    let client = said.client.or_else(|| ctx.client.clone()).or_else(|| match &meta.actor {
        Actor::Client { client_id, .. } => Some(client_id.clone()),
        _ => None,
    });
    // Internal ids become Keycloak's clientId where the client is known; an actor's
    // `client_id` already is one.
    let client_id = client.map(|c| names.client_id(&c).unwrap_or(c));
    let user_id = ctx.user_id.clone().or_else(|| match &meta.actor {
        Actor::User { id, .. } => Some(id.clone()),
        _ => None,
    });
    let (operation_type, resource_type, resource_path) = match class.admin {
        Some((op, resource)) => (Some(op), Some(resource), Some(resource_path(event, decoded, ctx))),
        None => (None, None, None),
    };
    let auth_details = auth_details(meta);
    AuditRecord {
        position: event.position,
        id: event.event_id.to_string(),
        time: event.recorded_at.timestamp_millis(),
        kind: if class.admin.is_some() { "admin" } else { "user" },
        r#type: class.keycloak,
        operation_type,
        resource_type,
        resource_path,
        annals_type: decoded.event_type(),
        stream: format!("{}/{}", event.stream.kind.as_str(), event.stream.id),
        version: event.version,
        outcome: class.outcome,
        severity: class.severity,
        realm_name: realm_id.as_deref().and_then(|r| names.realm_name(r)),
        realm_id,
        client_id,
        user_id,
        session_id: ctx.session_id.clone(),
        ip_address: meta.source_ip.clone().or_else(|| ctx.address.clone()),
        error: said.error,
        details: said.details,
        auth_details,
        correlation_id: meta.correlation_id.map(|c| c.to_string()),
        hash: hex::encode(event.hash),
    }
}

fn auth_details(meta: &Metadata) -> AuthDetails {
    let mut d = AuthDetails {
        kind: "system",
        realm_id: None,
        client_id: None,
        user_id: None,
        component: None,
        ip_address: meta.source_ip.clone(),
    };
    match &meta.actor {
        Actor::User { id, realm } => (d.kind, d.user_id, d.realm_id) = ("user", Some(id.clone()), Some(realm.clone())),
        Actor::Admin { user_id, realm } => {
            (d.kind, d.user_id, d.realm_id) = ("admin", Some(user_id.clone()), Some(realm.clone()))
        }
        Actor::Client { client_id, realm } => {
            (d.kind, d.client_id, d.realm_id) = ("client", Some(client_id.clone()), Some(realm.clone()))
        }
        Actor::System { component } => d.component = Some(component.clone()),
    }
    d
}

/// Keycloak's admin resource path of a configuration change.
fn resource_path(event: &RecordedEvent, decoded: &DomainEvent, ctx: &StreamContext) -> String {
    let id = &event.stream.id;
    match decoded {
        DomainEvent::User(UserEvent::RoleGranted(e)) => format!("users/{id}/role-mappings/realm/{}", e.role_id),
        DomainEvent::User(UserEvent::RoleRevoked(e)) => format!("users/{id}/role-mappings/realm/{}", e.role_id),
        DomainEvent::User(UserEvent::JoinedGroup(e)) => format!("users/{id}/groups/{}", e.group_id),
        DomainEvent::User(UserEvent::LeftGroup(e)) => format!("users/{id}/groups/{}", e.group_id),
        DomainEvent::User(UserEvent::PasswordSet(_)) => format!("users/{id}/reset-password"),
        DomainEvent::Group(GroupEvent::RoleGranted(e)) => format!("groups/{id}/role-mappings/realm/{}", e.role_id),
        DomainEvent::Group(GroupEvent::RoleRevoked(e)) => format!("groups/{id}/role-mappings/realm/{}", e.role_id),
        DomainEvent::Client(ClientEvent::SecretRotated(_)) => format!("clients/{id}/client-secret"),
        DomainEvent::Realm(_) => String::new(),
        _ => match event.stream.kind {
            StreamType::User => format!("users/{id}"),
            StreamType::Client => format!("clients/{id}"),
            StreamType::Group => format!("groups/{id}"),
            StreamType::Role => match &ctx.client {
                Some(c) => format!("clients/{c}/roles-by-id/{id}"),
                None => format!("roles-by-id/{id}"),
            },
            StreamType::SigningKey => format!("components/{id}"),
            _ => format!("{}/{id}", event.stream.kind.as_str()),
        },
    }
}

/// What an event's own payload says for the record: its client (when it names one), the
/// failure's error, and the details an auditor needs. Only fields chosen here leave the log.
#[derive(Default)]
struct Said {
    client: Option<String>,
    error: Option<String>,
    details: BTreeMap<&'static str, String>,
}

impl Said {
    fn of(event: &DomainEvent) -> Said {
        let mut s = Said::default();
        let mut d = |k: &'static str, v: String| {
            s.details.insert(k, v);
        };
        let mut error = None;
        let mut client = None;
        match event {
            DomainEvent::AuthRequest(e) => match e {
                AuthRequestEvent::Started(e) => {
                    d("redirect_uri", e.redirect_uri.clone());
                    d("response_type", e.response_type.clone());
                    d("response_mode", e.response_mode.clone());
                    d("scope", e.scope.clone());
                    if !e.prompt.is_empty() {
                        d("prompt", e.prompt.join(" "));
                    }
                    if let Some(m) = &e.code_challenge_method {
                        d("code_challenge_method", m.clone());
                    }
                }
                AuthRequestEvent::CredentialsRejected(e) => {
                    d("username", e.username.clone());
                    error = Some(e.reason.clone());
                }
                AuthRequestEvent::Authenticated(e) => {
                    d("auth_method", e.method.clone());
                    d("auth_time", e.auth_time.to_string());
                }
                AuthRequestEvent::ConsentRequested(e) => d("scope", e.scopes.join(" ")),
                AuthRequestEvent::ConsentGranted(e) => d("scope", e.scopes.join(" ")),
                AuthRequestEvent::ConsentDenied(_) => error = Some("rejected_by_user".into()),
                AuthRequestEvent::CodeIssued(e) => d("code_expires_at", e.expires_at.to_string()),
                AuthRequestEvent::CodeRedeemed(e) => {
                    d("grant_type", "authorization_code".into());
                    d("token_ids", e.token_ids.join(" "));
                }
                AuthRequestEvent::CodeReplayed(_) => error = Some("invalid_code".into()),
                AuthRequestEvent::ReplayRevoked(_) => d("reason", "code_replayed".into()),
                AuthRequestEvent::Failed(e) => error = Some(e.error.clone()),
            },
            DomainEvent::Session(e) => match e {
                SessionEvent::Started(e) => {
                    d("auth_method", e.method.clone());
                    d("acr", e.acr.clone());
                    if let Some(from) = &e.offline_from {
                        // An offline session: the SSO session it was issued from.
                        d("offline_from", from.clone());
                    }
                }
                SessionEvent::TokensIssued(e) => {
                    client = Some(e.client.clone());
                    d("grant_type", e.grant.clone());
                    d("scope", e.scope.clone());
                    if let Some(t) = &e.access_token_id {
                        d("token_id", t.clone());
                    }
                    if let Some(t) = &e.refresh_token_id {
                        d("refresh_token_id", t.clone());
                    }
                    if let Some(t) = &e.id_token_id {
                        d("id_token_id", t.clone());
                    }
                    if let Some(t) = &e.replaces {
                        d("updated_refresh_token_id", t.clone());
                    }
                }
                SessionEvent::RefreshReused(e) => {
                    client = Some(e.client.clone());
                    d("refresh_token_id", e.refresh_token_id.clone());
                    error = Some("invalid_token".into());
                }
                SessionEvent::TokensRevoked(e) => {
                    client = Some(e.client.clone());
                    d("reason", e.reason.clone());
                    d("token_ids", e.token_ids.join(" "));
                }
                SessionEvent::LoggedOut(e) => {
                    client.clone_from(&e.client);
                    d("clients", e.clients.len().to_string());
                }
                SessionEvent::Revoked(e) => d("reason", e.reason.clone()),
            },
            DomainEvent::ClientGrant(e) => match e {
                ClientGrantEvent::Issued(e) => {
                    d("grant_type", "client_credentials".into());
                    d("scope", e.scope.clone());
                    d("expires_at", e.expires_at.to_string());
                }
                ClientGrantEvent::Revoked(e) => d("reason", e.reason.clone()),
            },
            DomainEvent::LoginFailures(e) => match e {
                LoginFailuresEvent::Recorded(e) => d("failures", e.failures.to_string()),
                LoginFailuresEvent::LockedOut(e) => {
                    d("failures", e.failures.to_string());
                    if let Some(u) = e.until {
                        d("until", u.to_string());
                    }
                    error = Some("user_temporarily_disabled".into());
                }
                LoginFailuresEvent::Cleared(_) => {}
            },
            DomainEvent::LogoutDelivery(e) => match e {
                LogoutDeliveryEvent::Delivered(e) => {
                    client = Some(e.client.clone());
                    d("url", e.url.clone());
                    d("attempt", e.attempt.to_string());
                    d("status", e.status.to_string());
                }
                LogoutDeliveryEvent::Failed(e) => {
                    client = Some(e.client.clone());
                    d("url", e.url.clone());
                    d("attempt", e.attempt.to_string());
                    if let Some(st) = e.status {
                        d("status", st.to_string());
                    }
                    if let Some(r) = e.retry_at_ms {
                        d("retry_at_ms", r.to_string());
                    }
                    error = Some(e.error.clone());
                }
            },
            // Everything a SIEM needs to check the anchor later with any JOSE library.
            DomainEvent::AuditCheckpoint(AuditCheckpointEvent::Signed(e)) => {
                d("after_position", e.after_position.to_string());
                d("to_position", e.to_position.to_string());
                d("head_hash", e.head_hash.clone());
                d("merkle_root", e.merkle_root.clone());
                d("kid", e.key.kid.clone());
                d("jws", e.jws.clone());
            }
            // Which record the receiver lacks: the SIEM fetches it by position from the pull.
            DomainEvent::SinkDelivery(SinkDeliveryEvent::Rejected(e)) => {
                d("sink", e.sink.clone());
                d("rejected_position", e.position.to_string());
                d("rejected_event_id", e.event_id.clone());
                d("rejected_type", e.event_type.clone());
                d("attempts", e.attempts.to_string());
                if let Some(st) = e.status {
                    d("status", st.to_string());
                }
                error = Some(e.reason.clone());
            }
            // What the caller sent (cut short when recorded), never a secret it sent.
            DomainEvent::RejectedRequest(RejectedRequestEvent::Recorded(e)) => {
                d("endpoint", e.endpoint.clone());
                d("description", e.description.clone());
                for (k, v) in
                    [("client_id", &e.client_id), ("redirect_uri", &e.redirect_uri), ("grant_type", &e.grant_type)]
                {
                    if let Some(v) = v {
                        d(k, v.clone());
                    }
                }
                error = Some(e.reason.clone());
            }
            DomainEvent::RejectedRequest(RejectedRequestEvent::Summarized(e)) => {
                d("endpoint", e.endpoint.clone());
                d("source", e.source.clone());
                d("count", e.count.to_string());
                d("from_ms", e.from_ms.to_string());
                d("to_ms", e.to_ms.to_string());
                error = Some(e.reason.clone());
            }
            // Never the authorization header the receiver gave (sealed in the event anyway).
            DomainEvent::SsfStream(SsfStreamEvent::Created(e)) => {
                d("audience", e.audience.clone());
                d("method", e.method.clone());
                if let Some(u) = &e.endpoint_url {
                    d("endpoint_url", u.clone());
                }
                d("events_requested", e.events_requested.join(" "));
            }
            DomainEvent::SsfStream(SsfStreamEvent::Updated(e)) => {
                if let Some(u) = &e.endpoint_url {
                    d("endpoint_url", u.clone());
                }
                d("events_requested", e.events_requested.join(" "));
            }
            DomainEvent::Client(ClientEvent::Created(e)) => d("client_id", e.client_id.clone()),
            DomainEvent::Realm(RealmEvent::Created(e)) => d("name", e.name.clone()),
            DomainEvent::Role(RoleEvent::Created(e)) => d("name", e.name.clone()),
            DomainEvent::Role(RoleEvent::CompositesSet(e)) => d("composites", e.composites.join(" ")),
            DomainEvent::Group(GroupEvent::Created(e)) => d("name", e.name.clone()),
            DomainEvent::SigningKey(SigningKeyEvent::Generated(e)) => {
                d("kid", e.kid.clone());
                d("algorithm", e.algorithm.clone());
            }
            DomainEvent::SigningKey(SigningKeyEvent::Retired(e)) => d("publish_until", e.publish_until.to_string()),
            DomainEvent::User(e) => match e {
                UserEvent::Created(e) => d("username", e.username.clone()),
                UserEvent::PasswordSet(e) => d("temporary", e.temporary.to_string()),
                UserEvent::PasswordHashUpgraded(e) => d("from_algorithm", e.from_algorithm.clone()),
                UserEvent::ConsentGranted(e) => {
                    client = Some(e.client.clone());
                    d("scope", e.scopes.join(" "));
                }
                _ => {}
            },
            _ => {}
        }
        s.error = error;
        s.client = client;
        s
    }
}

#[cfg(test)]
mod tests;
