//! The ClientGrant aggregate: one client-credentials token. Issuance is appended directly as
//! a new stream (no actor: a client's issuances never queue behind each other); the actor is
//! only needed to revoke it.
use super::{Aggregate, Lifecycle};
use annals_events::client_grant::*;
use annals_events::StreamType;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientGrant {
    pub lifecycle: Lifecycle,
    pub realm_id: String,
    pub client: String,
    pub expires_at: i64,
    pub revoked: bool,
}

#[derive(Clone, Debug)]
pub enum ClientGrantCommand {
    Issue(ClientGrantIssued),
    Revoke { reason: String },
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ClientGrantError {
    #[error("grant already exists")]
    AlreadyExists,
    #[error("grant not found")]
    NotFound,
}

impl Aggregate for ClientGrant {
    const KIND: StreamType = StreamType::ClientGrant;
    type Command = ClientGrantCommand;
    type Event = ClientGrantEvent;
    type Error = ClientGrantError;

    fn decide(
        &self,
        command: ClientGrantCommand,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClientGrantEvent>, ClientGrantError> {
        match (self.lifecycle, command) {
            (Lifecycle::New, ClientGrantCommand::Issue(i)) => Ok(vec![i.into()]),
            (_, ClientGrantCommand::Issue(_)) => Err(ClientGrantError::AlreadyExists),
            (Lifecycle::New, ClientGrantCommand::Revoke { .. }) => Err(ClientGrantError::NotFound),
            // An expired or already revoked token needs no revocation (RFC 7009 §2.2).
            (_, ClientGrantCommand::Revoke { .. }) if self.revoked || self.expires_at <= now.timestamp() => Ok(vec![]),
            (_, ClientGrantCommand::Revoke { reason }) => {
                Ok(vec![ClientGrantRevoked { reason, expires_at: self.expires_at, at: now.timestamp() }.into()])
            }
        }
    }

    fn apply(mut self, event: &ClientGrantEvent) -> Self {
        match event {
            ClientGrantEvent::Issued(i) => {
                self.lifecycle = Lifecycle::Live;
                self.realm_id = i.realm_id.clone();
                self.client = i.client.clone();
                self.expires_at = i.expires_at;
            }
            ClientGrantEvent::Revoked(_) => self.revoked = true,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{given, now};

    fn issued(expires_in: i64) -> ClientGrantEvent {
        ClientGrantIssued {
            realm_id: "r".into(),
            client: "c".into(),
            user_id: None,
            scope: "profile".into(),
            expires_at: now().timestamp() + expires_in,
            at: now().timestamp(),
        }
        .into()
    }

    #[test]
    fn given_a_live_grant_when_revoked_then_once_and_with_its_expiry() {
        let revoke = || ClientGrantCommand::Revoke { reason: "revocation_endpoint".into() };
        let events = given::<ClientGrant>(vec![issued(300)]).decide(revoke(), now()).unwrap();
        assert!(matches!(&events[..], [ClientGrantEvent::Revoked(r)] if r.expires_at == now().timestamp() + 300));
        let state = given::<ClientGrant>(vec![issued(300), events[0].clone()]);
        assert_eq!(state.decide(revoke(), now()), Ok(vec![]));
        assert_eq!(given::<ClientGrant>(vec![issued(-1)]).decide(revoke(), now()), Ok(vec![]));
        assert_eq!(given::<ClientGrant>(vec![]).decide(revoke(), now()), Err(ClientGrantError::NotFound));
    }
}
