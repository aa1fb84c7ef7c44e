//! The parts of Keycloak's realm representation (its JSON export format) that Annals maps,
//! as serde structs. Field names are Keycloak's (camelCase). Every struct Annals keeps as an
//! aggregate carries the fields it does not map in `extra`, so they survive a round trip.
//!
//! Everything is optional, as in Keycloak: absent fields take Keycloak's defaults when mapped.
use annals_events::client::SecretDigest;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Keycloak's multi-valued attribute map (`{"department": ["finance"]}`).
pub type Attributes = BTreeMap<String, Vec<String>>;
/// Client role references: OAuth `clientId` to role names.
pub type ClientRoleNames = BTreeMap<String, Vec<String>>;

/// What Keycloak writes instead of a client secret it will not reveal.
pub const MASKED_SECRET: &str = "**********";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RealmRep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_lifespan: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso_session_idle_timeout: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso_session_max_lifespan: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_session_idle_timeout: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_session_max_lifespan_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_session_max_lifespan: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_code_lifespan: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_signature_algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_allowed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_with_email_allowed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_emails_allowed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_password_allowed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remember_me: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_email: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_required: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brute_force_protected: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permanent_lockout: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_factor: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_increment_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failure_wait_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_quick_login_wait_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quick_login_check_milli_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delta_time_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<RolesRep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<GroupRep>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<UserRep>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<Vec<ClientRep>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientRep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_client: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_required: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standard_flow_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implicit_flow_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_access_grants_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontchannel_logout: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_scope_allowed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_authenticator_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uris: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_origins: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_client_scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional_client_scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, String>>,
    /// The clear secret (Keycloak's `kc.sh export`), or [`MASKED_SECRET`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Annals' extension: the keyed digest of the secret, written by Annals' export next to
    /// a masked `secret` and accepted by its import in place of the clear secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annals_secret_digest: Option<SecretDigest>,
    /// Annals' extension: the secret sealed under the server key (`annals-sealed:v1:...`),
    /// written beside the digest so `client_secret_jwt` survives an export and import
    /// between nodes sharing keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annals_sealed_secret: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolesRep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<Vec<RoleRep>>,
    /// Client roles by the owning client's OAuth `clientId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<BTreeMap<String, Vec<RoleRep>>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleRep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Derived from `composites`; read and ignored, written on export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composite: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composites: Option<CompositesRep>,
    /// Derived from where the role is listed; read and ignored, written on export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_role: Option<bool>,
    /// Derived (realm id or client id); read and ignored, written on export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Attributes>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The roles a composite role contains, by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompositesRep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientRoleNames>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    /// Derived from the tree; read and ignored, written on export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Derived from the tree (Keycloak 23+); read and ignored, written on export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Derived from the tree (Keycloak 23+); read and ignored, written on export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_group_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_groups: Option<Vec<GroupRep>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Attributes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm_roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_roles: Option<ClientRoleNames>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_timestamp: Option<i64>,
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Attributes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_actions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federation_link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm_roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_roles: Option<ClientRoleNames>,
    /// Group paths, `/staff/admins`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Vec<CredentialRep>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A user credential. A password comes either in clear (`value`, hashed on import) or as
/// Keycloak stored it (`secretData` and `credentialData`, each a JSON document in a string).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialRep {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporary: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_data: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The document inside a password credential's `secretData`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordSecretData {
    pub value: String,
    pub salt: String,
    #[serde(default)]
    pub additional_parameters: Attributes,
}

/// The document inside a password credential's `credentialData`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordCredentialData {
    pub hash_iterations: u32,
    pub algorithm: String,
    #[serde(default)]
    pub additional_parameters: Attributes,
}
