//! Live Shared Signals streams, by id: what the configuration endpoint answers and what the
//! delivery worker delivers to.
use crate::Projection;
use annals_events::signing_key::SealedKey;
use annals_events::ssf_stream::SsfStreamEvent;
use annals_events::{DomainEvent, RecordedEvent};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub struct SsfStreamView {
    pub id: String,
    pub realm_id: String,
    pub audience: String,
    pub method: String,
    pub endpoint_url: Option<String>,
    pub authorization: Option<SealedKey>,
    pub events_requested: Vec<String>,
    pub description: Option<String>,
    /// Where the stream was created: delivery starts after it.
    pub created_position: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SsfStreams {
    by_id: BTreeMap<String, SsfStreamView>,
}

impl SsfStreams {
    pub fn get(&self, id: &str) -> Option<&SsfStreamView> {
        self.by_id.get(id)
    }

    pub fn all(&self) -> impl Iterator<Item = &SsfStreamView> {
        self.by_id.values()
    }

    /// A realm's streams of one receiver.
    pub fn of(&self, realm_id: &str, audience: &str) -> Vec<&SsfStreamView> {
        self.by_id.values().filter(|s| s.realm_id == realm_id && s.audience == audience).collect()
    }
}

impl Projection for SsfStreams {
    const NAME: &'static str = "ssf_streams";

    fn apply(&mut self, event: &RecordedEvent, decoded: &DomainEvent) {
        let id = &event.stream.id;
        match decoded {
            DomainEvent::SsfStream(SsfStreamEvent::Created(c)) => {
                self.by_id.insert(
                    id.clone(),
                    SsfStreamView {
                        id: id.clone(),
                        realm_id: c.realm_id.clone(),
                        audience: c.audience.clone(),
                        method: c.method.clone(),
                        endpoint_url: c.endpoint_url.clone(),
                        authorization: c.authorization.clone(),
                        events_requested: c.events_requested.clone(),
                        description: c.description.clone(),
                        created_position: event.position,
                    },
                );
            }
            DomainEvent::SsfStream(SsfStreamEvent::Updated(u)) => {
                if let Some(s) = self.by_id.get_mut(id) {
                    s.endpoint_url.clone_from(&u.endpoint_url);
                    s.authorization.clone_from(&u.authorization);
                    s.events_requested.clone_from(&u.events_requested);
                    s.description.clone_from(&u.description);
                }
            }
            DomainEvent::SsfStream(SsfStreamEvent::Deleted(_)) => {
                self.by_id.remove(id);
            }
            _ => {}
        }
    }
}
