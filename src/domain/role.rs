//! The Role aggregate: realm and client roles, composites.
use super::{validate, Aggregate, Lifecycle};
use annals_events::role::*;
use annals_events::StreamType;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub lifecycle: Lifecycle,
    pub realm_id: String,
    pub client_id: Option<String>,
    pub name: String,
    pub composites: BTreeSet<String>,
}

#[derive(Clone, Debug)]
pub enum RoleCommand {
    Create {
        realm_id: String,
        client_id: Option<String>,
        name: String,
        description: Option<String>,
        attributes: BTreeMap<String, Vec<String>>,
        extra: Map<String, Value>,
    },
    SetComposites {
        composites: BTreeSet<String>,
    },
    Delete,
}

/// Errors of role commands: 409 `AlreadyExists`, 404 `NotFound`, 400 the rest.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RoleError {
    #[error("role already exists")]
    AlreadyExists,
    #[error("role not found")]
    NotFound,
    #[error("invalid role name: {0}")]
    InvalidName(String),
}

impl Aggregate for Role {
    const KIND: StreamType = StreamType::Role;
    type Command = RoleCommand;
    type Event = RoleEvent;
    type Error = RoleError;

    fn decide(&self, command: RoleCommand, _now: DateTime<Utc>) -> Result<Vec<RoleEvent>, RoleError> {
        match (self.lifecycle, command) {
            (Lifecycle::New, RoleCommand::Create { realm_id, client_id, name, description, attributes, extra }) => {
                validate::name(&name).map_err(RoleError::InvalidName)?;
                Ok(vec![RoleCreated { realm_id, client_id, name, description, attributes, extra }.into()])
            }
            (_, RoleCommand::Create { .. }) => Err(RoleError::AlreadyExists),
            (Lifecycle::Live, RoleCommand::SetComposites { composites }) => {
                // Cycles are tolerated: readers expanding composites stop at repeats.
                if composites == self.composites {
                    return Ok(vec![]);
                }
                Ok(vec![RoleCompositesSet { composites: composites.into_iter().collect() }.into()])
            }
            (Lifecycle::Live, RoleCommand::Delete) => Ok(vec![RoleDeleted {}.into()]),
            (_, _) => Err(RoleError::NotFound),
        }
    }

    fn apply(mut self, event: &RoleEvent) -> Self {
        match event {
            RoleEvent::Created(c) => {
                self.lifecycle = Lifecycle::Live;
                self.realm_id = c.realm_id.clone();
                self.client_id = c.client_id.clone();
                self.name = c.name.clone();
            }
            RoleEvent::CompositesSet(c) => self.composites = c.composites.iter().cloned().collect(),
            RoleEvent::Deleted(_) => self.lifecycle = Lifecycle::Deleted,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{given, now};

    fn created() -> RoleEvent {
        RoleCreated {
            realm_id: "r".into(),
            client_id: None,
            name: "admin".into(),
            description: None,
            attributes: BTreeMap::new(),
            extra: Map::new(),
        }
        .into()
    }

    #[test]
    fn given_a_role_when_composites_set_then_recorded_once() {
        let set: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
        let r = given::<Role>(vec![created()]);
        let out = r.clone().decide(RoleCommand::SetComposites { composites: set.clone() }, now()).unwrap();
        assert_eq!(out, vec![RoleCompositesSet { composites: vec!["a".into(), "b".into()] }.into()]);
        let r = crate::domain::fold(r, &out);
        assert_eq!(r.decide(RoleCommand::SetComposites { composites: set }, now()), Ok(vec![]));
    }

    #[test]
    fn given_nothing_when_named_with_control_chars_then_refused() {
        let cmd = RoleCommand::Create {
            realm_id: "r".into(),
            client_id: None,
            name: "a\u{0}b".into(),
            description: None,
            attributes: BTreeMap::new(),
            extra: Map::new(),
        };
        assert!(matches!(given::<Role>(vec![]).decide(cmd, now()), Err(RoleError::InvalidName(_))));
    }

    #[test]
    fn given_nothing_when_deleted_then_not_found() {
        assert_eq!(given::<Role>(vec![]).decide(RoleCommand::Delete, now()), Err(RoleError::NotFound));
    }
}
