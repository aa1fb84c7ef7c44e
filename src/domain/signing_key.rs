//! The SigningKey aggregate: a realm key's life from generation to removal.
use super::{Aggregate, Lifecycle};
use annals_events::signing_key::*;
use annals_events::StreamType;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SigningKey {
    pub lifecycle: Lifecycle,
    pub realm_id: String,
    pub algorithm: String,
    /// Set once retired: the key stays published until then.
    pub publish_until: Option<i64>,
}

#[derive(Clone, Debug)]
pub enum SigningKeyCommand {
    /// Key material is made outside (it needs randomness); the aggregate records it.
    Record(Box<SigningKeyGenerated>),
    /// Stop signing; keep publishing the public key until `publish_until` (epoch seconds).
    Retire {
        publish_until: i64,
    },
    Remove,
}

/// Errors of signing key commands: 409 `AlreadyExists`, 404 `NotFound`, 400 the rest.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SigningKeyError {
    #[error("key already exists")]
    AlreadyExists,
    #[error("key not found")]
    NotFound,
    #[error("unsupported algorithm {0}")]
    UnsupportedAlgorithm(String),
    #[error("an active key must be retired before it is removed")]
    StillActive,
    #[error("tokens signed by this key may still be valid until {0}")]
    StillPublished(i64),
}

impl Aggregate for SigningKey {
    const KIND: StreamType = StreamType::SigningKey;
    type Command = SigningKeyCommand;
    type Event = SigningKeyEvent;
    type Error = SigningKeyError;

    fn decide(&self, command: SigningKeyCommand, now: DateTime<Utc>) -> Result<Vec<SigningKeyEvent>, SigningKeyError> {
        match (self.lifecycle, command) {
            (Lifecycle::New, SigningKeyCommand::Record(g)) => {
                if !matches!(g.algorithm.as_str(), "RS256" | "ES256" | "EdDSA") {
                    return Err(SigningKeyError::UnsupportedAlgorithm(g.algorithm.clone()));
                }
                Ok(vec![SigningKeyEvent::Generated(*g)])
            }
            (_, SigningKeyCommand::Record(_)) => Err(SigningKeyError::AlreadyExists),
            (Lifecycle::Live, SigningKeyCommand::Retire { publish_until }) => {
                // Retiring again may only shorten nothing: keep the later horizon.
                let until = self.publish_until.map_or(publish_until, |u| u.max(publish_until));
                if Some(until) == self.publish_until {
                    return Ok(vec![]);
                }
                Ok(vec![SigningKeyRetired { publish_until: until }.into()])
            }
            (Lifecycle::Live, SigningKeyCommand::Remove) => match self.publish_until {
                None => Err(SigningKeyError::StillActive),
                Some(t) if t > now.timestamp() => Err(SigningKeyError::StillPublished(t)),
                Some(_) => Ok(vec![SigningKeyRemoved {}.into()]),
            },
            (_, _) => Err(SigningKeyError::NotFound),
        }
    }

    fn apply(mut self, event: &SigningKeyEvent) -> Self {
        match event {
            SigningKeyEvent::Generated(g) => {
                self.lifecycle = Lifecycle::Live;
                self.realm_id = g.realm_id.clone();
                self.algorithm = g.algorithm.clone();
            }
            SigningKeyEvent::Retired(r) => self.publish_until = Some(r.publish_until),
            SigningKeyEvent::Removed(_) => self.lifecycle = Lifecycle::Deleted,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{given, now};

    fn generated() -> SigningKeyEvent {
        SigningKeyEvent::Generated(SigningKeyGenerated {
            realm_id: "r".into(),
            kid: "k1".into(),
            algorithm: "ES256".into(),
            public_jwk: serde_json::json!({"kty": "EC"}),
            private_key: SealedKey {
                alg: "A256GCM".into(),
                kek_id: "k".into(),
                nonce: "n".into(),
                ciphertext: "c".into(),
            },
        })
    }

    #[test]
    fn given_an_active_key_when_removed_then_it_must_be_retired_first() {
        assert_eq!(
            given::<SigningKey>(vec![generated()]).decide(SigningKeyCommand::Remove, now()),
            Err(SigningKeyError::StillActive)
        );
    }

    #[test]
    fn given_a_retired_key_still_published_when_removed_then_refused_until_its_horizon() {
        let horizon = now().timestamp() + 600;
        let k = given::<SigningKey>(vec![generated(), SigningKeyRetired { publish_until: horizon }.into()]);
        assert_eq!(k.clone().decide(SigningKeyCommand::Remove, now()), Err(SigningKeyError::StillPublished(horizon)));
        let later = now() + chrono::Duration::seconds(601);
        assert_eq!(k.decide(SigningKeyCommand::Remove, later), Ok(vec![SigningKeyRemoved {}.into()]));
    }

    #[test]
    fn given_a_retired_key_when_retired_earlier_then_the_later_horizon_stays() {
        let k = given::<SigningKey>(vec![generated(), SigningKeyRetired { publish_until: 2000 }.into()]);
        assert_eq!(k.decide(SigningKeyCommand::Retire { publish_until: 1000 }, now()), Ok(vec![]));
    }

    #[test]
    fn given_nothing_when_recording_an_unknown_algorithm_then_refused() {
        let SigningKeyEvent::Generated(mut g) = generated() else { unreachable!() };
        g.algorithm = "HS256".into();
        let out = given::<SigningKey>(vec![]).decide(SigningKeyCommand::Record(Box::new(g)), now());
        assert_eq!(out, Err(SigningKeyError::UnsupportedAlgorithm("HS256".into())));
    }
}
