//! The Client aggregate.
use super::{validate, Aggregate, Lifecycle};
use annals_events::client::*;
use annals_events::signing_key::SealedKey;
use annals_events::StreamType;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Client {
    pub lifecycle: Lifecycle,
    pub realm_id: String,
    pub client_id: String,
    pub settings: ClientSettings,
    pub has_secret: bool,
}

#[derive(Clone, Debug)]
pub enum ClientCommand {
    Create {
        realm_id: String,
        client_id: String,
        settings: ClientSettings,
        secret: Option<SecretDigest>,
        /// Boxed: a command is moved through the actor's mailbox.
        sealed_secret: Option<Box<SealedKey>>,
        extra: Map<String, Value>,
    },
    ChangeSettings {
        settings: ClientSettings,
        extra: Map<String, Value>,
    },
    RotateSecret {
        secret: SecretDigest,
        sealed_secret: Option<SealedKey>,
    },
    Delete,
}

/// Errors of client commands: 409 `AlreadyExists`, 404 `NotFound`, 400 the rest.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ClientError {
    #[error("client already exists")]
    AlreadyExists,
    #[error("client not found")]
    NotFound,
    #[error("invalid client_id: {0}")]
    InvalidClientId(String),
    #[error("invalid redirect URI: {0}")]
    InvalidRedirectUri(String),
    #[error("a public client has no secret")]
    PublicClientSecret,
    /// A sealed secret always comes with its digest: the digest is what secret
    /// authentication checks.
    #[error("a sealed secret needs its digest")]
    SealedWithoutDigest,
}

fn check(settings: &ClientSettings, secret: bool) -> Result<(), ClientError> {
    for uri in &settings.redirect_uris {
        validate::redirect_uri(uri).map_err(ClientError::InvalidRedirectUri)?;
    }
    if settings.public_client && secret {
        return Err(ClientError::PublicClientSecret);
    }
    Ok(())
}

impl Aggregate for Client {
    const KIND: StreamType = StreamType::Client;
    type Command = ClientCommand;
    type Event = ClientEvent;
    type Error = ClientError;

    fn decide(&self, command: ClientCommand, _now: DateTime<Utc>) -> Result<Vec<ClientEvent>, ClientError> {
        match (self.lifecycle, command) {
            (Lifecycle::New, ClientCommand::Create { realm_id, client_id, settings, secret, sealed_secret, extra }) => {
                validate::name(&client_id).map_err(ClientError::InvalidClientId)?;
                check(&settings, secret.is_some())?;
                if sealed_secret.is_some() && secret.is_none() {
                    return Err(ClientError::SealedWithoutDigest);
                }
                let sealed_secret = sealed_secret.map(|s| *s);
                Ok(vec![ClientCreated { realm_id, client_id, settings, secret, sealed_secret, extra }.into()])
            }
            (_, ClientCommand::Create { .. }) => Err(ClientError::AlreadyExists),
            (Lifecycle::Live, ClientCommand::ChangeSettings { settings, extra }) => {
                check(&settings, self.has_secret)?;
                if settings == self.settings && extra.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![ClientSettingsChanged { settings, extra }.into()])
            }
            (Lifecycle::Live, ClientCommand::RotateSecret { .. }) if self.settings.public_client => {
                Err(ClientError::PublicClientSecret)
            }
            (Lifecycle::Live, ClientCommand::RotateSecret { secret, sealed_secret }) => {
                Ok(vec![ClientSecretRotated { secret, sealed_secret }.into()])
            }
            (Lifecycle::Live, ClientCommand::Delete) => Ok(vec![ClientDeleted {}.into()]),
            (_, _) => Err(ClientError::NotFound),
        }
    }

    fn apply(mut self, event: &ClientEvent) -> Self {
        match event {
            ClientEvent::Created(c) => {
                self.lifecycle = Lifecycle::Live;
                self.realm_id = c.realm_id.clone();
                self.client_id = c.client_id.clone();
                self.settings = c.settings.clone();
                self.has_secret = c.secret.is_some();
            }
            ClientEvent::SettingsChanged(c) => self.settings = c.settings.clone(),
            ClientEvent::SecretRotated(_) => self.has_secret = true,
            ClientEvent::Deleted(_) => self.lifecycle = Lifecycle::Deleted,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{given, now};

    fn digest() -> SecretDigest {
        SecretDigest { alg: "hmac-sha256".into(), key_id: "k".into(), value: "00".into() }
    }
    fn create(settings: ClientSettings, secret: Option<SecretDigest>) -> ClientCommand {
        ClientCommand::Create {
            realm_id: "r".into(),
            client_id: "app".into(),
            settings,
            secret,
            sealed_secret: None,
            extra: Map::new(),
        }
    }
    fn created(public: bool) -> ClientEvent {
        let settings = ClientSettings { public_client: public, ..Default::default() };
        ClientCreated {
            realm_id: "r".into(),
            client_id: "app".into(),
            settings,
            secret: None,
            sealed_secret: None,
            extra: Map::new(),
        }
        .into()
    }

    #[test]
    fn given_nothing_when_created_with_valid_uris_then_created() {
        let s = ClientSettings { redirect_uris: vec!["https://app.example/cb".into()], ..Default::default() };
        let out = given::<Client>(vec![]).decide(create(s, Some(digest())), now()).unwrap();
        assert!(matches!(&out[..], [ClientEvent::Created(c)] if c.secret.is_some()));
    }

    #[test]
    fn given_nothing_when_redirect_uri_has_fragment_then_refused() {
        let s = ClientSettings { redirect_uris: vec!["https://app.example/cb#x".into()], ..Default::default() };
        assert!(matches!(
            given::<Client>(vec![]).decide(create(s, None), now()),
            Err(ClientError::InvalidRedirectUri(_))
        ));
    }

    #[test]
    fn given_nothing_when_public_client_with_secret_then_refused() {
        let s = ClientSettings { public_client: true, ..Default::default() };
        assert_eq!(
            given::<Client>(vec![]).decide(create(s, Some(digest())), now()),
            Err(ClientError::PublicClientSecret)
        );
    }

    #[test]
    fn given_a_public_client_when_secret_rotated_then_refused() {
        let cmd = ClientCommand::RotateSecret { secret: digest(), sealed_secret: None };
        assert_eq!(given::<Client>(vec![created(true)]).decide(cmd, now()), Err(ClientError::PublicClientSecret));
    }

    #[test]
    fn given_a_confidential_client_when_secret_rotated_then_rotated() {
        let cmd = ClientCommand::RotateSecret { secret: digest(), sealed_secret: None };
        let out = given::<Client>(vec![created(false)]).decide(cmd, now()).unwrap();
        assert_eq!(out, vec![ClientSecretRotated { secret: digest(), sealed_secret: None }.into()]);
    }

    #[test]
    fn given_a_deleted_client_when_changed_then_not_found() {
        let c = given::<Client>(vec![created(false), ClientDeleted {}.into()]);
        let cmd = ClientCommand::ChangeSettings { settings: ClientSettings::default(), extra: Map::new() };
        assert_eq!(c.decide(cmd, now()), Err(ClientError::NotFound));
    }
}
