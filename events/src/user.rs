//! User events: profile, credentials, role grants and group membership.
use crate::Extra;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A stored password hash. Never the password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum PasswordHash {
    /// Annals' own format: a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
    Phc { phc: String },
    /// A hash imported from Keycloak, kept exactly as Keycloak stored it and upgraded to
    /// argon2id at the next successful login. `algorithm` is Keycloak's provider id
    /// (`pbkdf2`, `pbkdf2-sha256`, `pbkdf2-sha512`, `argon2`).
    Keycloak {
        algorithm: String,
        iterations: u32,
        /// Base64 salt, as in Keycloak's `secretData`.
        salt: String,
        /// Base64 hash, as in Keycloak's `secretData`.
        value: String,
        #[serde(default)]
        additional_parameters: BTreeMap<String, Vec<String>>,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default)]
pub struct UserProfile {
    pub email: Option<String>,
    pub email_verified: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub enabled: bool,
    pub attributes: BTreeMap<String, Vec<String>>,
    pub required_actions: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserCreated {
    pub realm_id: String,
    pub username: String,
    pub profile: UserProfile,
    /// Keycloak's `createdTimestamp` (epoch millis) when imported; otherwise the event time.
    #[serde(default)]
    pub created_timestamp: Option<i64>,
    /// The user federation provider that owns this user, if any.
    #[serde(default)]
    pub federation_link: Option<String>,
    #[serde(default)]
    pub extra: Extra,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserProfileChanged {
    pub profile: UserProfile,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserPasswordSet {
    pub hash: PasswordHash,
    /// The user must change it at next login (Keycloak's `temporary`).
    #[serde(default)]
    pub temporary: bool,
}

/// A legacy hash was replaced by argon2id after the password was verified against it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserPasswordHashUpgraded {
    pub from_algorithm: String,
    pub hash: PasswordHash,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserRoleGranted {
    pub role_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserRoleRevoked {
    pub role_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserJoinedGroup {
    pub group_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserLeftGroup {
    pub group_id: String,
}

/// The user let a client (that requires consent) have these scopes, on the consent page.
/// `scopes` is everything consented to for the client so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserConsentGranted {
    /// The client's internal id.
    pub client: String,
    pub scopes: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserDeleted {}

event_enum! {
    /// Events of the User aggregate (stream type `user`, stream id = user id).
    UserEvent {
        Created(UserCreated) = "user.created",
        ProfileChanged(UserProfileChanged) = "user.profile_changed",
        PasswordSet(UserPasswordSet) = "user.password_set",
        PasswordHashUpgraded(UserPasswordHashUpgraded) = "user.password_hash_upgraded",
        RoleGranted(UserRoleGranted) = "user.role_granted",
        RoleRevoked(UserRoleRevoked) = "user.role_revoked",
        JoinedGroup(UserJoinedGroup) = "user.joined_group",
        LeftGroup(UserLeftGroup) = "user.left_group",
        ConsentGranted(UserConsentGranted) = "user.consent_granted",
        Deleted(UserDeleted) = "user.deleted",
    }
}
