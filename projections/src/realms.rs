//! Realms by id and by name.
use crate::Projection;
use annals_events::realm::{RealmEvent, RealmSettings};
use annals_events::{DomainEvent, RecordedEvent};
use foldhash::HashMap;
use serde_json::{Map, Value};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct RealmView {
    pub id: String,
    pub name: String,
    pub settings: RealmSettings,
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RealmDirectory {
    /// Shared: a request takes its realm (whose `extra` may hold a whole Keycloak export's
    /// flows and components) without copying it.
    by_id: HashMap<String, Arc<RealmView>>,
    by_name: HashMap<String, String>,
}

impl RealmDirectory {
    pub fn get(&self, id: &str) -> Option<&RealmView> {
        self.by_id.get(id).map(|r| &**r)
    }

    /// Realm names are case-sensitive in URLs, as in Keycloak.
    pub fn by_name(&self, name: &str) -> Option<&RealmView> {
        self.shared_by_name(name).map(|r| &**r)
    }

    /// The realm, shared (a request holds it past the read model's lock).
    pub fn shared_by_name(&self, name: &str) -> Option<&Arc<RealmView>> {
        self.by_name.get(name).and_then(|id| self.by_id.get(id))
    }

    /// As [`RealmDirectory::get`], shared.
    pub fn shared(&self, id: &str) -> Option<Arc<RealmView>> {
        self.by_id.get(id).cloned()
    }

    pub fn all(&self) -> impl Iterator<Item = &RealmView> {
        self.by_id.values().map(|r| &**r)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// A realm's settings, with what older events kept unmapped: Keycloak's offline session
/// maximum was kept in `extra` (as Keycloak spelled it) before Annals acted on it, and an
/// imported maximum must not be dropped because of when it was imported. Newer events carry it
/// in the settings, and their `extra` never holds these keys.
fn settings_of(settings: &RealmSettings, extra: &Map<String, Value>) -> RealmSettings {
    let mut s = settings.clone();
    if let Some(enabled) = extra.get("offlineSessionMaxLifespanEnabled").and_then(Value::as_bool) {
        s.offline_session_max_lifespan_enabled = enabled;
    }
    if let Some(max) = extra.get("offlineSessionMaxLifespan").and_then(Value::as_u64) {
        s.offline_session_max_lifespan = u32::try_from(max).unwrap_or(u32::MAX);
    }
    s
}

impl Projection for RealmDirectory {
    const NAME: &'static str = "realms";

    fn apply(&mut self, event: &RecordedEvent, decoded: &DomainEvent) {
        let DomainEvent::Realm(e) = decoded else {
            return;
        };
        let id = &event.stream.id;
        match e {
            RealmEvent::Created(c) => {
                self.by_name.insert(c.name.clone(), id.clone());
                self.by_id.insert(
                    id.clone(),
                    Arc::new(RealmView {
                        id: id.clone(),
                        name: c.name.clone(),
                        settings: settings_of(&c.settings, &c.extra),
                        extra: c.extra.clone(),
                    }),
                );
            }
            RealmEvent::SettingsChanged(c) => {
                // A new view rather than `make_mut`: a request holding the old one would make
                // it copy the whole `extra` only to replace it.
                if let Some(r) = self.by_id.get_mut(id) {
                    *r = Arc::new(RealmView {
                        id: r.id.clone(),
                        name: r.name.clone(),
                        settings: settings_of(&c.settings, &c.extra),
                        extra: c.extra.clone(),
                    });
                }
            }
            RealmEvent::Deleted(_) => {
                if let Some(r) = self.by_id.remove(id) {
                    self.by_name.remove(&r.name);
                }
            }
        }
    }
}
