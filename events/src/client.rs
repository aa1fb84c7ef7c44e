//! Client (relying party / service provider) events.
use crate::signing_key::SealedKey;
use crate::Extra;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A keyed hash of a secret (HMAC-SHA-256 under a server key). Never the secret itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SecretDigest {
    /// Always `hmac-sha256` today.
    pub alg: String,
    /// Which server key produced the digest, so keys can rotate.
    pub key_id: String,
    /// Lowercase hex of the MAC.
    pub value: String,
}

/// The client settings Annals acts on, named as in Keycloak's ClientRepresentation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default)]
pub struct ClientSettings {
    pub name: Option<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub protocol: String,
    pub public_client: bool,
    pub bearer_only: bool,
    pub consent_required: bool,
    pub standard_flow_enabled: bool,
    pub implicit_flow_enabled: bool,
    pub direct_access_grants_enabled: bool,
    pub service_accounts_enabled: bool,
    pub frontchannel_logout: bool,
    pub full_scope_allowed: bool,
    pub client_authenticator_type: String,
    pub root_url: Option<String>,
    pub base_url: Option<String>,
    pub admin_url: Option<String>,
    pub redirect_uris: Vec<String>,
    pub web_origins: Vec<String>,
    pub default_client_scopes: Vec<String>,
    pub optional_client_scopes: Vec<String>,
    pub attributes: BTreeMap<String, String>,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            name: None,
            description: None,
            enabled: true,
            protocol: "openid-connect".into(),
            public_client: false,
            bearer_only: false,
            consent_required: false,
            standard_flow_enabled: true,
            implicit_flow_enabled: false,
            direct_access_grants_enabled: false,
            service_accounts_enabled: false,
            frontchannel_logout: true,
            full_scope_allowed: true,
            client_authenticator_type: "client-secret".into(),
            root_url: None,
            base_url: None,
            admin_url: None,
            redirect_uris: Vec::new(),
            web_origins: Vec::new(),
            default_client_scopes: Vec::new(),
            optional_client_scopes: Vec::new(),
            attributes: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClientCreated {
    pub realm_id: String,
    /// The OAuth `client_id`, unique within the realm.
    pub client_id: String,
    pub settings: ClientSettings,
    #[serde(default)]
    pub secret: Option<SecretDigest>,
    /// The secret itself, sealed under the server's key-encryption key: `client_secret_jwt`
    /// needs it as an HMAC key, which a digest cannot give back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_secret: Option<SealedKey>,
    #[serde(default)]
    pub extra: Extra,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClientSettingsChanged {
    pub settings: ClientSettings,
    #[serde(default)]
    pub extra: Extra,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClientSecretRotated {
    pub secret: SecretDigest,
    /// As in [`ClientCreated::sealed_secret`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_secret: Option<SealedKey>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClientDeleted {}

event_enum! {
    /// Events of the Client aggregate (stream type `client`, stream id = client's internal id).
    ClientEvent {
        Created(ClientCreated) = "client.created",
        SettingsChanged(ClientSettingsChanged) = "client.settings_changed",
        SecretRotated(ClientSecretRotated) = "client.secret_rotated",
        Deleted(ClientDeleted) = "client.deleted",
    }
}
