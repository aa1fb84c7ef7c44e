//! Roles and groups (with the roles granted to groups), and the effective role set of a user
//! (direct grants + groups and their ancestors, expanded through composite roles). Which
//! user holds which role or group lives in the SQL read model `users`.
use crate::Projection;
use annals_events::group::GroupEvent;
use annals_events::role::RoleEvent;
use annals_events::{DomainEvent, RecordedEvent};
use foldhash::HashMap;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, PartialEq)]
pub struct RoleView {
    pub id: String,
    pub realm_id: String,
    /// Internal id of the owning client; `None` for a realm role.
    pub client_id: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub composites: BTreeSet<String>,
    pub attributes: BTreeMap<String, Vec<String>>,
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GroupView {
    pub id: String,
    pub realm_id: String,
    pub name: String,
    pub parent_id: Option<String>,
    pub roles: BTreeSet<String>,
    pub attributes: BTreeMap<String, Vec<String>>,
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Memberships {
    roles: HashMap<String, RoleView>,
    role_by_name: HashMap<(String, Option<String>, String), String>,
    groups: HashMap<String, GroupView>,
}

impl Memberships {
    pub fn role_count(&self) -> usize {
        self.roles.len()
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    pub fn role(&self, id: &str) -> Option<&RoleView> {
        self.roles.get(id)
    }

    /// A realm role (`client_id` None) or a client role by name.
    pub fn role_by_name(&self, realm_id: &str, client_id: Option<&str>, name: &str) -> Option<&RoleView> {
        self.role_by_name
            .get(&(realm_id.to_string(), client_id.map(str::to_string), name.to_string()))
            .and_then(|id| self.roles.get(id))
    }

    pub fn roles_in_realm<'a>(&'a self, realm_id: &'a str) -> impl Iterator<Item = &'a RoleView> + 'a {
        self.roles.values().filter(move |r| r.realm_id == realm_id)
    }

    pub fn group(&self, id: &str) -> Option<&GroupView> {
        self.groups.get(id)
    }

    pub fn groups_in_realm<'a>(&'a self, realm_id: &'a str) -> impl Iterator<Item = &'a GroupView> + 'a {
        self.groups.values().filter(move |g| g.realm_id == realm_id)
    }

    /// Every role the user holds: direct grants, grants of their groups and those groups'
    /// ancestors, expanded through composite roles. Cycles are tolerated. `direct` and
    /// `groups` are the user's rows in the `users` read model.
    pub fn effective_roles<'a>(
        &self,
        direct: impl IntoIterator<Item = &'a String>,
        groups: impl IntoIterator<Item = &'a String>,
    ) -> BTreeSet<String> {
        let mut pending: Vec<String> = direct.into_iter().cloned().collect();
        for g in groups.into_iter().cloned() {
            let mut cur = Some(g);
            let mut hops = 0;
            while let (Some(gid), true) = (cur, hops < 64) {
                let Some(group) = self.groups.get(&gid) else {
                    break;
                };
                pending.extend(group.roles.iter().cloned());
                cur = group.parent_id.clone();
                hops += 1;
            }
        }
        let mut out = BTreeSet::new();
        while let Some(r) = pending.pop() {
            if let Some(role) = self.roles.get(&r) {
                if out.insert(r) {
                    pending.extend(role.composites.iter().cloned());
                }
            }
        }
        out
    }
}

impl Projection for Memberships {
    const NAME: &'static str = "memberships";

    fn apply(&mut self, event: &RecordedEvent, decoded: &DomainEvent) {
        let id = &event.stream.id;
        match decoded {
            DomainEvent::Role(RoleEvent::Created(c)) => {
                self.role_by_name.insert((c.realm_id.clone(), c.client_id.clone(), c.name.clone()), id.clone());
                self.roles.insert(
                    id.clone(),
                    RoleView {
                        id: id.clone(),
                        realm_id: c.realm_id.clone(),
                        client_id: c.client_id.clone(),
                        name: c.name.clone(),
                        description: c.description.clone(),
                        composites: BTreeSet::new(),
                        attributes: c.attributes.clone(),
                        extra: c.extra.clone(),
                    },
                );
            }
            DomainEvent::Role(RoleEvent::CompositesSet(c)) => {
                if let Some(r) = self.roles.get_mut(id) {
                    r.composites = c.composites.iter().cloned().collect();
                }
            }
            DomainEvent::Role(RoleEvent::Deleted(_)) => {
                if let Some(r) = self.roles.remove(id) {
                    self.role_by_name.remove(&(r.realm_id, r.client_id, r.name));
                }
                for g in self.groups.values_mut() {
                    g.roles.remove(id);
                }
                for r in self.roles.values_mut() {
                    r.composites.remove(id);
                }
            }
            DomainEvent::Group(GroupEvent::Created(c)) => {
                self.groups.insert(
                    id.clone(),
                    GroupView {
                        id: id.clone(),
                        realm_id: c.realm_id.clone(),
                        name: c.name.clone(),
                        parent_id: c.parent_id.clone(),
                        roles: BTreeSet::new(),
                        attributes: c.attributes.clone(),
                        extra: c.extra.clone(),
                    },
                );
            }
            DomainEvent::Group(GroupEvent::RoleGranted(c)) => {
                if let Some(g) = self.groups.get_mut(id) {
                    g.roles.insert(c.role_id.clone());
                }
            }
            DomainEvent::Group(GroupEvent::RoleRevoked(c)) => {
                if let Some(g) = self.groups.get_mut(id) {
                    g.roles.remove(&c.role_id);
                }
            }
            DomainEvent::Group(GroupEvent::Deleted(_)) => {
                self.groups.remove(id);
            }
            _ => {}
        }
    }
}
