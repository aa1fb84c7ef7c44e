//! Replayed codes whose revocation is still owed: a code was presented a second time
//! (`auth_request.code_replayed`) and what its first redemption gave is not yet recorded as
//! revoked (`auth_request.replay_revoked`). The replay's own request revokes at once; this
//! model is what a node retries from when that failed, or when the node stopped before it
//! finished. Replays are rare, so the model is small; it is rebuilt from the log at start.
use annals_events::auth_request::AuthRequestEvent;
use annals_events::{DomainEvent, RecordedEvent};
use std::collections::BTreeMap;

/// The event types this model reads: every other `auth_request.*` event is left undecoded.
pub const READS: [&str; 2] = ["auth_request.code_replayed", "auth_request.replay_revoked"];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplayRevocations {
    /// By authorization request id: when the replay was recorded (epoch seconds).
    owed: BTreeMap<String, i64>,
}

impl ReplayRevocations {
    /// Every request whose revocation is owed, with when its replay was recorded (epoch
    /// seconds).
    pub fn owed(&self) -> impl Iterator<Item = (&String, i64)> {
        self.owed.iter().map(|(id, at)| (id, *at))
    }

    pub fn is_owed(&self, request: &str) -> bool {
        self.owed.contains_key(request)
    }

    pub fn len(&self) -> usize {
        self.owed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owed.is_empty()
    }

    pub fn apply(&mut self, event: &RecordedEvent, decoded: &DomainEvent) {
        match decoded {
            DomainEvent::AuthRequest(AuthRequestEvent::CodeReplayed(r)) => {
                self.owed.insert(event.stream.id.clone(), r.at);
            }
            DomainEvent::AuthRequest(AuthRequestEvent::ReplayRevoked(_)) => {
                self.owed.remove(&event.stream.id);
            }
            _ => {}
        }
    }
}
