//! The ClientAssertion aggregate: one `private_key_jwt` assertion, used once.
use super::{Aggregate, Lifecycle};
use annals_events::client_assertion::*;
use annals_events::StreamType;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientAssertion {
    pub lifecycle: Lifecycle,
}

#[derive(Clone, Debug)]
pub enum ClientAssertionCommand {
    Use(ClientAssertionUsed),
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ClientAssertionError {
    #[error("client assertion already used")]
    Replayed,
}

/// The stream of a client's assertion `jti` (hashed: a `jti` is the client's free text).
pub fn stream_id(client: &str, jti: &str) -> String {
    hex::encode(Sha256::digest(format!("{client}\n{jti}").as_bytes()))
}

impl Aggregate for ClientAssertion {
    const KIND: StreamType = StreamType::ClientAssertion;
    type Command = ClientAssertionCommand;
    type Event = ClientAssertionEvent;
    type Error = ClientAssertionError;

    fn decide(
        &self,
        command: ClientAssertionCommand,
        _now: DateTime<Utc>,
    ) -> Result<Vec<ClientAssertionEvent>, ClientAssertionError> {
        match (self.lifecycle, command) {
            (Lifecycle::New, ClientAssertionCommand::Use(u)) => Ok(vec![u.into()]),
            (_, ClientAssertionCommand::Use(_)) => Err(ClientAssertionError::Replayed),
        }
    }

    fn apply(mut self, _event: &ClientAssertionEvent) -> Self {
        self.lifecycle = Lifecycle::Live;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{given, now};

    fn used() -> ClientAssertionUsed {
        ClientAssertionUsed { realm_id: "r".into(), client: "c".into(), jti: "j".into(), expires_at: 2, at: 1 }
    }

    #[test]
    fn given_an_unused_assertion_when_used_then_recorded_and_a_second_use_is_a_replay() {
        let events = given::<ClientAssertion>(vec![]).decide(ClientAssertionCommand::Use(used()), now()).unwrap();
        assert_eq!(events.len(), 1);
        let state = given::<ClientAssertion>(events);
        assert_eq!(state.decide(ClientAssertionCommand::Use(used()), now()), Err(ClientAssertionError::Replayed));
        assert_ne!(stream_id("c", "j"), stream_id("c2", "j"), "per client");
    }
}
