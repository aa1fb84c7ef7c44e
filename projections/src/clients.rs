//! Clients by internal id and by (realm, client_id).
use crate::Projection;
use annals_events::client::{ClientEvent, ClientSettings, SecretDigest};
use annals_events::signing_key::SealedKey;
use annals_events::{DomainEvent, RecordedEvent};
use foldhash::HashMap;
use serde_json::{Map, Value};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct ClientView {
    pub id: String,
    pub realm_id: String,
    pub client_id: String,
    pub settings: ClientSettings,
    pub secret: Option<SecretDigest>,
    /// The secret sealed under the server key, for `client_secret_jwt`.
    pub sealed_secret: Option<SealedKey>,
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientDirectory {
    /// Shared: a request takes the client it serves without copying its settings.
    by_id: HashMap<String, Arc<ClientView>>,
    /// Realm id, then OAuth `client_id`, to the client's id: nested so a lookup borrows its
    /// keys (a tuple key cost two `String`s per request).
    by_client_id: HashMap<String, HashMap<String, String>>,
}

impl ClientDirectory {
    pub fn get(&self, id: &str) -> Option<&ClientView> {
        self.by_id.get(id).map(|c| &**c)
    }

    /// The client, shared (a request holds it past the read model's lock).
    pub fn shared(&self, id: &str) -> Option<Arc<ClientView>> {
        self.by_id.get(id).cloned()
    }

    /// As [`ClientDirectory::by_client_id`], shared.
    pub fn shared_by_client_id(&self, realm_id: &str, client_id: &str) -> Option<Arc<ClientView>> {
        self.id_of(realm_id, client_id).and_then(|id| self.by_id.get(id)).cloned()
    }

    fn id_of(&self, realm_id: &str, client_id: &str) -> Option<&String> {
        self.by_client_id.get(realm_id).and_then(|m| m.get(client_id))
    }

    /// The client a realm knows by this OAuth `client_id`.
    pub fn by_client_id(&self, realm_id: &str, client_id: &str) -> Option<&ClientView> {
        self.id_of(realm_id, client_id).and_then(|id| self.by_id.get(id)).map(|c| &**c)
    }

    pub fn in_realm<'a>(&'a self, realm_id: &'a str) -> impl Iterator<Item = &'a ClientView> + 'a {
        self.by_id.values().map(|c| &**c).filter(move |c| c.realm_id == realm_id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

impl Projection for ClientDirectory {
    const NAME: &'static str = "clients";

    fn apply(&mut self, event: &RecordedEvent, decoded: &DomainEvent) {
        let DomainEvent::Client(e) = decoded else {
            return;
        };
        let id = &event.stream.id;
        match e {
            ClientEvent::Created(c) => {
                self.by_client_id.entry(c.realm_id.clone()).or_default().insert(c.client_id.clone(), id.clone());
                self.by_id.insert(
                    id.clone(),
                    Arc::new(ClientView {
                        id: id.clone(),
                        realm_id: c.realm_id.clone(),
                        client_id: c.client_id.clone(),
                        settings: c.settings.clone(),
                        secret: c.secret.clone(),
                        sealed_secret: c.sealed_secret.clone(),
                        extra: c.extra.clone(),
                    }),
                );
            }
            ClientEvent::SettingsChanged(c) => {
                // A new view rather than `make_mut`: a request holding the old one would make
                // it copy the whole `extra` only to replace it.
                if let Some(v) = self.by_id.get_mut(id) {
                    *v = Arc::new(ClientView {
                        id: v.id.clone(),
                        realm_id: v.realm_id.clone(),
                        client_id: v.client_id.clone(),
                        settings: c.settings.clone(),
                        secret: v.secret.clone(),
                        sealed_secret: v.sealed_secret.clone(),
                        extra: c.extra.clone(),
                    });
                }
            }
            ClientEvent::SecretRotated(c) => {
                if let Some(v) = self.by_id.get_mut(id).map(Arc::make_mut) {
                    v.secret = Some(c.secret.clone());
                    v.sealed_secret = c.sealed_secret.clone();
                }
            }
            ClientEvent::Deleted(_) => {
                if let Some(v) = self.by_id.remove(id) {
                    if let Some(m) = self.by_client_id.get_mut(&v.realm_id) {
                        // Only this client's mapping: a client re-created under the same
                        // `client_id` keeps its own.
                        if m.get(&v.client_id) == Some(id) {
                            m.remove(&v.client_id);
                        }
                        if m.is_empty() {
                            self.by_client_id.remove(&v.realm_id);
                        }
                    }
                }
            }
        }
    }
}
