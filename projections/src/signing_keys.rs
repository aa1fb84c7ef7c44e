//! Each realm's signing keys: which one signs, and which are still published.
use crate::Projection;
use annals_events::signing_key::{SealedKey, SigningKeyEvent};
use annals_events::{DomainEvent, RecordedEvent};
use chrono::{DateTime, Utc};
use foldhash::HashMap;
use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub enum KeyStatus {
    /// Signs new tokens (the newest active key of an algorithm wins).
    Active,
    /// No longer signs; published until this time so its tokens keep verifying.
    Retired { publish_until: i64 },
}

#[derive(Clone, Debug, PartialEq)]
pub struct KeyView {
    pub kid: String,
    pub realm_id: String,
    pub algorithm: String,
    pub public_jwk: Value,
    pub private_key: SealedKey,
    pub created_at: DateTime<Utc>,
    /// Log position of the generation: the order of keys, independent of node clocks.
    pub position: u64,
    pub status: KeyStatus,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SigningKeyRing {
    keys: HashMap<String, KeyView>,
}

impl SigningKeyRing {
    pub fn get(&self, kid: &str) -> Option<&KeyView> {
        self.keys.get(kid)
    }

    /// The key that signs for this realm and algorithm: the newest active one.
    pub fn active(&self, realm_id: &str, algorithm: &str) -> Option<&KeyView> {
        self.keys
            .values()
            .filter(|k| k.realm_id == realm_id && k.algorithm == algorithm && k.status == KeyStatus::Active)
            .max_by_key(|k| k.position)
    }

    /// Keys whose public half belongs in the realm's JWKS at `now`, oldest first.
    pub fn published(&self, realm_id: &str, now: DateTime<Utc>) -> Vec<&KeyView> {
        let mut out: Vec<&KeyView> = self
            .keys
            .values()
            .filter(|k| {
                k.realm_id == realm_id
                    && match k.status {
                        KeyStatus::Active => true,
                        KeyStatus::Retired { publish_until } => publish_until > now.timestamp(),
                    }
            })
            .collect();
        out.sort_by_key(|k| k.position);
        out
    }

    pub fn in_realm<'a>(&'a self, realm_id: &'a str) -> impl Iterator<Item = &'a KeyView> + 'a {
        self.keys.values().filter(move |k| k.realm_id == realm_id)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl Projection for SigningKeyRing {
    const NAME: &'static str = "signing_keys";

    fn apply(&mut self, event: &RecordedEvent, decoded: &DomainEvent) {
        let DomainEvent::SigningKey(e) = decoded else {
            return;
        };
        let kid = &event.stream.id;
        match e {
            SigningKeyEvent::Generated(g) => {
                self.keys.insert(
                    kid.clone(),
                    KeyView {
                        kid: g.kid.clone(),
                        realm_id: g.realm_id.clone(),
                        algorithm: g.algorithm.clone(),
                        public_jwk: g.public_jwk.clone(),
                        private_key: g.private_key.clone(),
                        created_at: event.recorded_at,
                        position: event.position,
                        status: KeyStatus::Active,
                    },
                );
            }
            SigningKeyEvent::Retired(r) => {
                if let Some(k) = self.keys.get_mut(kid) {
                    k.status = KeyStatus::Retired { publish_until: r.publish_until };
                }
            }
            SigningKeyEvent::Removed(_) => {
                self.keys.remove(kid);
            }
        }
    }
}
