//! The Group aggregate.
use super::{validate, Aggregate, Lifecycle};
use annals_events::group::*;
use annals_events::StreamType;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub lifecycle: Lifecycle,
    pub realm_id: String,
    pub name: String,
    pub parent_id: Option<String>,
    pub roles: BTreeSet<String>,
}

#[derive(Clone, Debug)]
pub enum GroupCommand {
    Create {
        realm_id: String,
        name: String,
        parent_id: Option<String>,
        attributes: BTreeMap<String, Vec<String>>,
        extra: Map<String, Value>,
    },
    GrantRole {
        role_id: String,
    },
    RevokeRole {
        role_id: String,
    },
    Delete,
}

/// Errors of group commands: 409 `AlreadyExists`, 404 `NotFound`, 400 the rest.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum GroupError {
    #[error("group already exists")]
    AlreadyExists,
    #[error("group not found")]
    NotFound,
    #[error("invalid group name: {0}")]
    InvalidName(String),
}

impl Aggregate for Group {
    const KIND: StreamType = StreamType::Group;
    type Command = GroupCommand;
    type Event = GroupEvent;
    type Error = GroupError;

    fn decide(&self, command: GroupCommand, _now: DateTime<Utc>) -> Result<Vec<GroupEvent>, GroupError> {
        match (self.lifecycle, command) {
            (Lifecycle::New, GroupCommand::Create { realm_id, name, parent_id, attributes, extra }) => {
                validate::name(&name).map_err(GroupError::InvalidName)?;
                if name.contains('/') {
                    // Keycloak addresses groups by path ("/staff/admins"): a slash would be ambiguous.
                    return Err(GroupError::InvalidName("must not contain '/'".into()));
                }
                Ok(vec![GroupCreated { realm_id, name, parent_id, attributes, extra }.into()])
            }
            (_, GroupCommand::Create { .. }) => Err(GroupError::AlreadyExists),
            (Lifecycle::Live, GroupCommand::GrantRole { role_id }) if self.roles.contains(&role_id) => Ok(vec![]),
            (Lifecycle::Live, GroupCommand::GrantRole { role_id }) => Ok(vec![GroupRoleGranted { role_id }.into()]),
            (Lifecycle::Live, GroupCommand::RevokeRole { role_id }) if !self.roles.contains(&role_id) => Ok(vec![]),
            (Lifecycle::Live, GroupCommand::RevokeRole { role_id }) => Ok(vec![GroupRoleRevoked { role_id }.into()]),
            (Lifecycle::Live, GroupCommand::Delete) => Ok(vec![GroupDeleted {}.into()]),
            (_, _) => Err(GroupError::NotFound),
        }
    }

    fn apply(mut self, event: &GroupEvent) -> Self {
        match event {
            GroupEvent::Created(c) => {
                self.lifecycle = Lifecycle::Live;
                self.realm_id = c.realm_id.clone();
                self.name = c.name.clone();
                self.parent_id = c.parent_id.clone();
            }
            GroupEvent::RoleGranted(c) => {
                self.roles.insert(c.role_id.clone());
            }
            GroupEvent::RoleRevoked(c) => {
                self.roles.remove(&c.role_id);
            }
            GroupEvent::Deleted(_) => self.lifecycle = Lifecycle::Deleted,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{given, now};

    fn create(name: &str) -> GroupCommand {
        GroupCommand::Create {
            realm_id: "r".into(),
            name: name.into(),
            parent_id: None,
            attributes: BTreeMap::new(),
            extra: Map::new(),
        }
    }

    #[test]
    fn given_nothing_when_named_with_a_slash_then_refused() {
        assert!(matches!(given::<Group>(vec![]).decide(create("a/b"), now()), Err(GroupError::InvalidName(_))));
    }

    #[test]
    fn given_a_group_when_role_granted_and_revoked_then_both_recorded() {
        let g = given::<Group>(vec![GroupCreated {
            realm_id: "r".into(),
            name: "staff".into(),
            parent_id: None,
            attributes: BTreeMap::new(),
            extra: Map::new(),
        }
        .into()]);
        let granted = g.clone().decide(GroupCommand::GrantRole { role_id: "x".into() }, now()).unwrap();
        let g = crate::domain::fold(g, &granted);
        assert_eq!(g.clone().decide(GroupCommand::GrantRole { role_id: "x".into() }, now()), Ok(vec![]));
        let revoked = g.decide(GroupCommand::RevokeRole { role_id: "x".into() }, now()).unwrap();
        assert_eq!(revoked, vec![GroupRoleRevoked { role_id: "x".into() }.into()]);
    }
}
