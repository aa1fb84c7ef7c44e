//! Who caused an event, on whose behalf, and from where.
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The party that caused an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Actor {
    /// An end user acting for themselves (a login, a password change).
    User { id: String, realm: String },
    /// A client acting with its own credentials (client_credentials, introspection).
    Client { client_id: String, realm: String },
    /// An administrator using the admin surface or the CLI.
    Admin { user_id: String, realm: String },
    /// The server itself (bootstrap, key rotation, expiry) or a named operator tool.
    System { component: String },
}

impl Default for Actor {
    fn default() -> Self {
        Actor::System { component: "annals".into() }
    }
}

/// Event metadata. Every field but the actor is optional: a system event has no source address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    #[serde(default)]
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl Metadata {
    /// Metadata for an action of the server or an operator tool.
    pub fn system(component: &str) -> Self {
        Metadata { actor: Actor::System { component: component.to_string() }, ..Default::default() }
    }

    pub fn with_realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    pub fn with_correlation(mut self, id: Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }
}
