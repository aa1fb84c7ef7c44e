//! Back-channel logout deliveries still owed: a session ended (logout or revocation) and a
//! client that held its tokens registered a back-channel logout URL. An entry leaves when a
//! delivery succeeds or Annals gives up; a failure moves its due time. Rebuilt from the log
//! at start like every model here, so a restart resumes exactly the deliveries still owed.
use annals_events::logout_delivery::{stream_id, LogoutDeliveryEvent};
use annals_events::{DomainEvent, RecordedEvent};
use std::collections::BTreeMap;

/// The Keycloak client attribute holding the back-channel logout URL.
pub const URL_ATTRIBUTE: &str = "backchannel.logout.url";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owed {
    pub realm_id: String,
    pub session_id: String,
    /// The client's internal id.
    pub client: String,
    /// The session's user, when the session was still known when it ended.
    pub user_id: Option<String>,
    /// The `sid` the clients know the session by: an offline session's tokens name the SSO
    /// session it came from (as Keycloak's do), so its logout token names that one too.
    pub sid: Option<String>,
    /// Attempts made so far.
    pub attempts: u32,
    /// Epoch milliseconds when the next attempt is due.
    pub due_at_ms: i64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogoutDeliveries {
    /// By delivery stream id.
    owed: BTreeMap<String, Owed>,
}

impl LogoutDeliveries {
    /// Deliveries due at `now_ms` (epoch milliseconds), by stream id.
    pub fn due(&self, now_ms: i64) -> impl Iterator<Item = (&String, &Owed)> {
        self.owed.iter().filter(move |(_, o)| o.due_at_ms <= now_ms)
    }

    pub fn get(&self, stream: &str) -> Option<&Owed> {
        self.owed.get(stream)
    }

    pub fn len(&self) -> usize {
        self.owed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owed.is_empty()
    }

    /// A session ended: every listed client gets a delivery (the caller keeps only clients
    /// with a back-channel URL).
    pub fn session_ended(&mut self, owed: impl IntoIterator<Item = Owed>) {
        for o in owed {
            self.owed.entry(stream_id(&o.session_id, &o.client)).or_insert(o);
        }
    }

    pub fn apply(&mut self, event: &RecordedEvent, decoded: &DomainEvent) {
        let id = &event.stream.id;
        match decoded {
            DomainEvent::LogoutDelivery(LogoutDeliveryEvent::Delivered(_)) => {
                self.owed.remove(id);
            }
            DomainEvent::LogoutDelivery(LogoutDeliveryEvent::Failed(f)) => match f.retry_at_ms {
                Some(due) => {
                    if let Some(o) = self.owed.get_mut(id) {
                        o.attempts = f.attempt;
                        o.due_at_ms = due;
                    }
                }
                None => {
                    self.owed.remove(id);
                }
            },
            _ => {}
        }
    }
}
