//! Users by id, and by username and email within a realm, case-insensitively.
use crate::Projection;
use annals_events::user::{PasswordHash, UserEvent, UserProfile};
use annals_events::{DomainEvent, RecordedEvent};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct UserView {
    pub id: Arc<str>,
    pub realm_id: Arc<str>,
    pub username: String,
    pub profile: UserProfile,
    /// Boxed: most of a directory's users are read far more often than this field, and the
    /// enum is ~128 bytes inline.
    pub password: Option<Box<PasswordHash>>,
    pub password_temporary: bool,
    pub created_timestamp: Option<i64>,
    pub federation_link: Option<String>,
    pub extra: Map<String, Value>,
}

/// Keys are (realm id, lowercased name). Ids and realm ids are shared `Arc<str>` so 100,000
/// users cost one copy of each string.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserDirectory {
    by_id: HashMap<Arc<str>, UserView>,
    by_username: HashMap<(Arc<str>, String), Arc<str>>,
    /// A list, not a set: almost always one id, and a set's node would cost ~200 bytes each.
    by_email: HashMap<(Arc<str>, String), Vec<Arc<str>>>,
    realms: HashMap<String, Arc<str>>,
}

fn fold(s: &str) -> String {
    s.to_lowercase()
}

impl UserDirectory {
    pub fn get(&self, id: &str) -> Option<&UserView> {
        self.by_id.get(id)
    }

    pub fn by_username(&self, realm_id: &str, username: &str) -> Option<&UserView> {
        let realm = self.realms.get(realm_id)?;
        self.by_username.get(&(realm.clone(), fold(username))).and_then(|id| self.by_id.get(id))
    }

    /// Users with this email (several only where the realm allows duplicate emails).
    pub fn by_email(&self, realm_id: &str, email: &str) -> Vec<&UserView> {
        let Some(realm) = self.realms.get(realm_id) else {
            return Vec::new();
        };
        self.by_email
            .get(&(realm.clone(), fold(email)))
            .map(|ids| ids.iter().filter_map(|id| self.by_id.get(id)).collect())
            .unwrap_or_default()
    }

    pub fn in_realm<'a>(&'a self, realm_id: &'a str) -> impl Iterator<Item = &'a UserView> + 'a {
        self.by_id.values().filter(move |u| &*u.realm_id == realm_id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    fn intern_realm(&mut self, realm_id: &str) -> Arc<str> {
        self.realms.entry(realm_id.to_string()).or_insert_with(|| Arc::from(realm_id)).clone()
    }

    fn index_email(&mut self, realm: &Arc<str>, id: &Arc<str>, email: Option<&str>, add: bool) {
        let Some(email) = email else { return };
        let key = (realm.clone(), fold(email));
        if add {
            let ids = self.by_email.entry(key).or_default();
            if !ids.contains(id) {
                ids.push(id.clone());
                ids.sort();
            }
        } else if let Some(ids) = self.by_email.get_mut(&key) {
            ids.retain(|x| x != id);
            if ids.is_empty() {
                self.by_email.remove(&key);
            }
        }
    }
}

impl Projection for UserDirectory {
    const NAME: &'static str = "users";

    fn apply(&mut self, event: &RecordedEvent, decoded: &DomainEvent) {
        let DomainEvent::User(e) = decoded else {
            return;
        };
        let sid = event.stream.id.as_str();
        match e {
            UserEvent::Created(c) => {
                let realm = self.intern_realm(&c.realm_id);
                let id: Arc<str> = Arc::from(sid);
                self.by_username.insert((realm.clone(), fold(&c.username)), id.clone());
                self.index_email(&realm, &id, c.profile.email.as_deref(), true);
                self.by_id.insert(
                    id.clone(),
                    UserView {
                        id,
                        realm_id: realm,
                        username: c.username.clone(),
                        profile: c.profile.clone(),
                        password: None,
                        password_temporary: false,
                        created_timestamp: c.created_timestamp.or(Some(event.recorded_at.timestamp_millis())),
                        federation_link: c.federation_link.clone(),
                        extra: c.extra.clone(),
                    },
                );
            }
            UserEvent::ProfileChanged(c) => {
                let Some((id, realm, old)) =
                    self.by_id.get(sid).map(|u| (u.id.clone(), u.realm_id.clone(), u.profile.email.clone()))
                else {
                    return;
                };
                self.index_email(&realm, &id, old.as_deref(), false);
                self.index_email(&realm, &id, c.profile.email.as_deref(), true);
                if let Some(u) = self.by_id.get_mut(sid) {
                    u.profile = c.profile.clone();
                }
            }
            UserEvent::PasswordSet(c) => {
                if let Some(u) = self.by_id.get_mut(sid) {
                    u.password = Some(Box::new(c.hash.clone()));
                    u.password_temporary = c.temporary;
                }
            }
            UserEvent::PasswordHashUpgraded(c) => {
                if let Some(u) = self.by_id.get_mut(sid) {
                    u.password = Some(Box::new(c.hash.clone()));
                }
            }
            UserEvent::Deleted(_) => {
                if let Some(u) = self.by_id.remove(sid) {
                    self.by_username.remove(&(u.realm_id.clone(), fold(&u.username)));
                    self.index_email(&u.realm_id, &u.id, u.profile.email.as_deref(), false);
                }
            }
            UserEvent::RoleGranted(_)
            | UserEvent::RoleRevoked(_)
            | UserEvent::JoinedGroup(_)
            | UserEvent::LeftGroup(_) => {}
        }
    }
}
