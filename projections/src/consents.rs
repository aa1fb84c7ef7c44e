//! Consent users gave to clients that require it: which scopes each user let each client
//! have. Read by the authorization endpoint to decide whether to show the consent page.
//!
//! Only clients with `consentRequired` ever get entries, so this stays small next to the
//! users themselves (which are not held in memory).
use crate::Projection;
use annals_events::client::ClientEvent;
use annals_events::user::UserEvent;
use annals_events::{DomainEvent, RecordedEvent};
use foldhash::HashMap;
use std::collections::BTreeSet;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Consents {
    /// By user id, then client (internal id).
    by_user: HashMap<String, HashMap<String, BTreeSet<String>>>,
}

impl Consents {
    /// The scopes `user` consented to for `client` (internal id), if any.
    pub fn granted(&self, user: &str, client: &str) -> Option<&BTreeSet<String>> {
        self.by_user.get(user)?.get(client)
    }
}

impl Projection for Consents {
    const NAME: &'static str = "consents";

    fn apply(&mut self, event: &RecordedEvent, decoded: &DomainEvent) {
        let id = &event.stream.id;
        match decoded {
            DomainEvent::User(UserEvent::ConsentGranted(c)) => {
                self.by_user
                    .entry(id.clone())
                    .or_default()
                    .insert(c.client.clone(), c.scopes.iter().cloned().collect());
            }
            DomainEvent::User(UserEvent::Deleted(_)) => {
                self.by_user.remove(id);
            }
            // A client deleted and created again under the same id must ask again.
            DomainEvent::Client(ClientEvent::Deleted(_)) => {
                self.by_user.retain(|_, clients| {
                    clients.remove(id);
                    !clients.is_empty()
                });
            }
            _ => {}
        }
    }
}
