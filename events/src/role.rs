//! Role events: realm roles and client roles.
use crate::Extra;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RoleCreated {
    pub realm_id: String,
    /// The owning client's internal id for a client role; `None` for a realm role.
    #[serde(default)]
    pub client_id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub extra: Extra,
}

/// The full set of roles this composite role contains, by role id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RoleCompositesSet {
    pub composites: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RoleDeleted {}

event_enum! {
    /// Events of the Role aggregate (stream type `role`, stream id = role id).
    RoleEvent {
        Created(RoleCreated) = "role.created",
        CompositesSet(RoleCompositesSet) = "role.composites_set",
        Deleted(RoleDeleted) = "role.deleted",
    }
}
