//! Group events: the group tree and the roles a group grants.
use crate::Extra;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GroupCreated {
    pub realm_id: String,
    pub name: String,
    #[serde(default)]
    pub parent_id: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub extra: Extra,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GroupRoleGranted {
    pub role_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GroupRoleRevoked {
    pub role_id: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GroupDeleted {}

event_enum! {
    /// Events of the Group aggregate (stream type `group`, stream id = group id).
    GroupEvent {
        Created(GroupCreated) = "group.created",
        RoleGranted(GroupRoleGranted) = "group.role_granted",
        RoleRevoked(GroupRoleRevoked) = "group.role_revoked",
        Deleted(GroupDeleted) = "group.deleted",
    }
}
