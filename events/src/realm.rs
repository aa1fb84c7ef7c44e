//! Realm events: a realm's lifecycle and settings.
use crate::Extra;
use serde::{Deserialize, Serialize};

/// Keycloak's brute-force detection settings, with Keycloak's defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default)]
pub struct BruteForceSettings {
    pub enabled: bool,
    pub permanent_lockout: bool,
    pub failure_factor: u32,
    pub wait_increment_seconds: u32,
    pub max_failure_wait_seconds: u32,
    pub minimum_quick_login_wait_seconds: u32,
    pub quick_login_check_milli_seconds: u64,
    pub max_delta_time_seconds: u32,
}

impl Default for BruteForceSettings {
    fn default() -> Self {
        BruteForceSettings {
            enabled: false,
            permanent_lockout: false,
            failure_factor: 30,
            wait_increment_seconds: 60,
            max_failure_wait_seconds: 900,
            minimum_quick_login_wait_seconds: 60,
            quick_login_check_milli_seconds: 1000,
            max_delta_time_seconds: 43200,
        }
    }
}

/// The realm settings Annals acts on. Keycloak fields Annals does not interpret travel in
/// the event's `extra` map so an export gives them back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default)]
pub struct RealmSettings {
    pub display_name: Option<String>,
    pub enabled: bool,
    pub access_token_lifespan: u32,
    pub sso_session_idle_timeout: u32,
    pub sso_session_max_lifespan: u32,
    pub offline_session_idle_timeout: u32,
    /// Whether offline sessions also end `offline_session_max_lifespan` seconds after they
    /// began (Keycloak's `offlineSessionMaxLifespanEnabled`, off by default).
    pub offline_session_max_lifespan_enabled: bool,
    pub offline_session_max_lifespan: u32,
    pub access_code_lifespan: u32,
    pub default_signature_algorithm: String,
    pub registration_allowed: bool,
    pub login_with_email_allowed: bool,
    pub duplicate_emails_allowed: bool,
    pub reset_password_allowed: bool,
    pub remember_me: bool,
    pub verify_email: bool,
    pub ssl_required: String,
    pub brute_force: BruteForceSettings,
}

impl Default for RealmSettings {
    fn default() -> Self {
        RealmSettings {
            display_name: None,
            enabled: true,
            access_token_lifespan: 300,
            sso_session_idle_timeout: 1800,
            sso_session_max_lifespan: 36000,
            offline_session_idle_timeout: 2_592_000,
            offline_session_max_lifespan_enabled: false,
            offline_session_max_lifespan: 5_184_000,
            access_code_lifespan: 60,
            default_signature_algorithm: "RS256".into(),
            registration_allowed: false,
            login_with_email_allowed: true,
            duplicate_emails_allowed: false,
            reset_password_allowed: false,
            remember_me: false,
            verify_email: false,
            ssl_required: "external".into(),
            brute_force: BruteForceSettings::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RealmCreated {
    /// The realm's name as it appears in URLs (`/realms/{name}`).
    pub name: String,
    pub settings: RealmSettings,
    /// Keycloak representation fields Annals keeps but does not interpret.
    #[serde(default)]
    pub extra: Extra,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RealmSettingsChanged {
    pub settings: RealmSettings,
    #[serde(default)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RealmDeleted {}

event_enum! {
    /// Events of the Realm aggregate (stream type `realm`, stream id = realm id).
    RealmEvent {
        Created(RealmCreated) = "realm.created",
        SettingsChanged(RealmSettingsChanged) = "realm.settings_changed",
        Deleted(RealmDeleted) = "realm.deleted",
    }
}
