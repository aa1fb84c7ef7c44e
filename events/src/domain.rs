//! The union of all aggregates' events, and decoding from stored form.
use crate::audit_checkpoint::AuditCheckpointEvent;
use crate::auth_request::AuthRequestEvent;
use crate::client::ClientEvent;
use crate::client_assertion::ClientAssertionEvent;
use crate::client_grant::ClientGrantEvent;
use crate::group::GroupEvent;
use crate::login_failures::LoginFailuresEvent;
use crate::logout_delivery::LogoutDeliveryEvent;
use crate::realm::RealmEvent;
use crate::rejected_request::RejectedRequestEvent;
use crate::role::RoleEvent;
use crate::session::SessionEvent;
use crate::signing_key::SigningKeyEvent;
use crate::sink_delivery::SinkDeliveryEvent;
use crate::ssf_stream::SsfStreamEvent;
use crate::stream::StreamType;
use crate::upcast::{self, UpcastError};
use crate::user::UserEvent;
use serde_json::{Map, Value};
use std::fmt;

/// Any Annals domain event.
// Events are short-lived values decoded one at a time; boxing variants would only complicate
// every match in every projection.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum DomainEvent {
    Realm(RealmEvent),
    Client(ClientEvent),
    User(UserEvent),
    Role(RoleEvent),
    Group(GroupEvent),
    SigningKey(SigningKeyEvent),
    AuthRequest(AuthRequestEvent),
    Session(SessionEvent),
    ClientGrant(ClientGrantEvent),
    LoginFailures(LoginFailuresEvent),
    ClientAssertion(ClientAssertionEvent),
    LogoutDelivery(LogoutDeliveryEvent),
    AuditCheckpoint(AuditCheckpointEvent),
    SinkDelivery(SinkDeliveryEvent),
    RejectedRequest(RejectedRequestEvent),
    SsfStream(SsfStreamEvent),
}

/// Why a stored event could not be turned back into a [`DomainEvent`].
#[derive(Debug)]
pub enum DecodeError {
    UnknownType(String),
    Upcast(UpcastError),
    Payload { event_type: String, source: serde_json::Error },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnknownType(t) => write!(f, "unknown event type {t:?}"),
            DecodeError::Upcast(e) => e.fmt(f),
            DecodeError::Payload { event_type, source } => {
                write!(f, "payload of {event_type} does not match its schema: {source}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

macro_rules! each_aggregate {
    ($self:expr, $e:ident => $body:expr) => {
        match $self {
            DomainEvent::Realm($e) => $body,
            DomainEvent::Client($e) => $body,
            DomainEvent::User($e) => $body,
            DomainEvent::Role($e) => $body,
            DomainEvent::Group($e) => $body,
            DomainEvent::SigningKey($e) => $body,
            DomainEvent::AuthRequest($e) => $body,
            DomainEvent::Session($e) => $body,
            DomainEvent::ClientGrant($e) => $body,
            DomainEvent::LoginFailures($e) => $body,
            DomainEvent::ClientAssertion($e) => $body,
            DomainEvent::LogoutDelivery($e) => $body,
            DomainEvent::AuditCheckpoint($e) => $body,
            DomainEvent::SinkDelivery($e) => $body,
            DomainEvent::RejectedRequest($e) => $body,
            DomainEvent::SsfStream($e) => $body,
        }
    };
}

impl DomainEvent {
    pub fn event_type(&self) -> &'static str {
        each_aggregate!(self, e => e.event_type())
    }

    pub fn stream_type(&self) -> StreamType {
        match self {
            DomainEvent::Realm(_) => StreamType::Realm,
            DomainEvent::Client(_) => StreamType::Client,
            DomainEvent::User(_) => StreamType::User,
            DomainEvent::Role(_) => StreamType::Role,
            DomainEvent::Group(_) => StreamType::Group,
            DomainEvent::SigningKey(_) => StreamType::SigningKey,
            DomainEvent::AuthRequest(_) => StreamType::AuthRequest,
            DomainEvent::Session(_) => StreamType::Session,
            DomainEvent::ClientGrant(_) => StreamType::ClientGrant,
            DomainEvent::LoginFailures(_) => StreamType::LoginFailures,
            DomainEvent::ClientAssertion(_) => StreamType::ClientAssertion,
            DomainEvent::LogoutDelivery(_) => StreamType::LogoutDelivery,
            DomainEvent::AuditCheckpoint(_) => StreamType::AuditCheckpoint,
            DomainEvent::SinkDelivery(_) => StreamType::SinkDelivery,
            DomainEvent::RejectedRequest(_) => StreamType::RejectedRequest,
            DomainEvent::SsfStream(_) => StreamType::SsfStream,
        }
    }

    pub fn schema_version(&self) -> u32 {
        upcast::current_version(self.event_type())
    }

    /// The payload alone (without the type tag), as stored.
    pub fn payload(&self) -> Result<Value, serde_json::Error> {
        let tagged = each_aggregate!(self, e => serde_json::to_value(e))?;
        Ok(match tagged {
            Value::Object(mut m) => m.remove("data").unwrap_or(Value::Object(Map::new())),
            other => other,
        })
    }

    /// Decodes a stored payload, upcasting it from its schema version first.
    pub fn decode(event_type: &str, schema_version: u32, payload: Value) -> Result<Self, DecodeError> {
        let payload = upcast::upcast(event_type, schema_version, payload).map_err(DecodeError::Upcast)?;
        let decoded =
            match event_type.split_once('.').map(|(p, _)| p).unwrap_or("") {
                "realm" => RealmEvent::from_payload_value(event_type, payload).map(|r| r.map(DomainEvent::Realm)),
                "client" => ClientEvent::from_payload_value(event_type, payload).map(|r| r.map(DomainEvent::Client)),
                "user" => UserEvent::from_payload_value(event_type, payload).map(|r| r.map(DomainEvent::User)),
                "role" => RoleEvent::from_payload_value(event_type, payload).map(|r| r.map(DomainEvent::Role)),
                "group" => GroupEvent::from_payload_value(event_type, payload).map(|r| r.map(DomainEvent::Group)),
                "signing_key" => {
                    SigningKeyEvent::from_payload_value(event_type, payload).map(|r| r.map(DomainEvent::SigningKey))
                }
                "auth_request" => {
                    AuthRequestEvent::from_payload_value(event_type, payload).map(|r| r.map(DomainEvent::AuthRequest))
                }
                "session" => SessionEvent::from_payload_value(event_type, payload).map(|r| r.map(DomainEvent::Session)),
                "client_grant" => {
                    ClientGrantEvent::from_payload_value(event_type, payload).map(|r| r.map(DomainEvent::ClientGrant))
                }
                "login_failures" => LoginFailuresEvent::from_payload_value(event_type, payload)
                    .map(|r| r.map(DomainEvent::LoginFailures)),
                "client_assertion" => ClientAssertionEvent::from_payload_value(event_type, payload)
                    .map(|r| r.map(DomainEvent::ClientAssertion)),
                "logout_delivery" => LogoutDeliveryEvent::from_payload_value(event_type, payload)
                    .map(|r| r.map(DomainEvent::LogoutDelivery)),
                "audit_checkpoint" => AuditCheckpointEvent::from_payload_value(event_type, payload)
                    .map(|r| r.map(DomainEvent::AuditCheckpoint)),
                "sink_delivery" => {
                    SinkDeliveryEvent::from_payload_value(event_type, payload).map(|r| r.map(DomainEvent::SinkDelivery))
                }
                "rejected_request" => RejectedRequestEvent::from_payload_value(event_type, payload)
                    .map(|r| r.map(DomainEvent::RejectedRequest)),
                "ssf_stream" => {
                    SsfStreamEvent::from_payload_value(event_type, payload).map(|r| r.map(DomainEvent::SsfStream))
                }
                _ => None,
            };
        Self::finish(event_type, decoded)
    }

    /// Decodes a stored payload from its text. At the current schema version this goes
    /// straight into the payload struct (the hot path of every rebuild); older versions are
    /// parsed, upcast, then decoded.
    pub fn decode_str(event_type: &str, schema_version: u32, payload: &str) -> Result<Self, DecodeError> {
        let payload_err = |source| DecodeError::Payload { event_type: event_type.to_string(), source };
        if schema_version != upcast::current_version(event_type) {
            let value: Value = serde_json::from_str(payload).map_err(payload_err)?;
            return Self::decode(event_type, schema_version, value);
        }
        let decoded =
            match event_type.split_once('.').map(|(p, _)| p).unwrap_or("") {
                "realm" => RealmEvent::from_payload_str(event_type, payload).map(|r| r.map(DomainEvent::Realm)),
                "client" => ClientEvent::from_payload_str(event_type, payload).map(|r| r.map(DomainEvent::Client)),
                "user" => UserEvent::from_payload_str(event_type, payload).map(|r| r.map(DomainEvent::User)),
                "role" => RoleEvent::from_payload_str(event_type, payload).map(|r| r.map(DomainEvent::Role)),
                "group" => GroupEvent::from_payload_str(event_type, payload).map(|r| r.map(DomainEvent::Group)),
                "signing_key" => {
                    SigningKeyEvent::from_payload_str(event_type, payload).map(|r| r.map(DomainEvent::SigningKey))
                }
                "auth_request" => {
                    AuthRequestEvent::from_payload_str(event_type, payload).map(|r| r.map(DomainEvent::AuthRequest))
                }
                "session" => SessionEvent::from_payload_str(event_type, payload).map(|r| r.map(DomainEvent::Session)),
                "client_grant" => {
                    ClientGrantEvent::from_payload_str(event_type, payload).map(|r| r.map(DomainEvent::ClientGrant))
                }
                "login_failures" => {
                    LoginFailuresEvent::from_payload_str(event_type, payload).map(|r| r.map(DomainEvent::LoginFailures))
                }
                "client_assertion" => ClientAssertionEvent::from_payload_str(event_type, payload)
                    .map(|r| r.map(DomainEvent::ClientAssertion)),
                "logout_delivery" => LogoutDeliveryEvent::from_payload_str(event_type, payload)
                    .map(|r| r.map(DomainEvent::LogoutDelivery)),
                "audit_checkpoint" => AuditCheckpointEvent::from_payload_str(event_type, payload)
                    .map(|r| r.map(DomainEvent::AuditCheckpoint)),
                "sink_delivery" => {
                    SinkDeliveryEvent::from_payload_str(event_type, payload).map(|r| r.map(DomainEvent::SinkDelivery))
                }
                "rejected_request" => RejectedRequestEvent::from_payload_str(event_type, payload)
                    .map(|r| r.map(DomainEvent::RejectedRequest)),
                "ssf_stream" => {
                    SsfStreamEvent::from_payload_str(event_type, payload).map(|r| r.map(DomainEvent::SsfStream))
                }
                _ => None,
            };
        Self::finish(event_type, decoded)
    }

    fn finish(event_type: &str, decoded: Option<Result<Self, serde_json::Error>>) -> Result<Self, DecodeError> {
        match decoded {
            Some(Ok(e)) => Ok(e),
            Some(Err(source)) => Err(DecodeError::Payload { event_type: event_type.to_string(), source }),
            None => Err(DecodeError::UnknownType(event_type.to_string())),
        }
    }

    /// Every wire name of every aggregate.
    pub fn all_types() -> Vec<&'static str> {
        [
            RealmEvent::TYPES,
            ClientEvent::TYPES,
            UserEvent::TYPES,
            RoleEvent::TYPES,
            GroupEvent::TYPES,
            SigningKeyEvent::TYPES,
            AuthRequestEvent::TYPES,
            SessionEvent::TYPES,
            ClientGrantEvent::TYPES,
            LoginFailuresEvent::TYPES,
            ClientAssertionEvent::TYPES,
            LogoutDeliveryEvent::TYPES,
            AuditCheckpointEvent::TYPES,
            SinkDeliveryEvent::TYPES,
            RejectedRequestEvent::TYPES,
            SsfStreamEvent::TYPES,
        ]
        .concat()
    }

    /// JSON Schema of every payload, by wire name.
    #[cfg(feature = "schema")]
    pub fn schemas() -> Vec<(&'static str, schemars::schema::RootSchema)> {
        let mut all = RealmEvent::schemas();
        all.extend(ClientEvent::schemas());
        all.extend(UserEvent::schemas());
        all.extend(RoleEvent::schemas());
        all.extend(GroupEvent::schemas());
        all.extend(SigningKeyEvent::schemas());
        all.extend(AuthRequestEvent::schemas());
        all.extend(SessionEvent::schemas());
        all.extend(ClientGrantEvent::schemas());
        all.extend(LoginFailuresEvent::schemas());
        all.extend(ClientAssertionEvent::schemas());
        all.extend(LogoutDeliveryEvent::schemas());
        all.extend(AuditCheckpointEvent::schemas());
        all.extend(SinkDeliveryEvent::schemas());
        all.extend(RejectedRequestEvent::schemas());
        all.extend(SsfStreamEvent::schemas());
        all
    }
}

macro_rules! into_domain {
    ($($t:ident => $v:ident),*) => {$(
        impl From<$t> for DomainEvent {
            fn from(e: $t) -> Self { DomainEvent::$v(e) }
        }
        impl TryFrom<DomainEvent> for $t {
            type Error = DomainEvent;
            fn try_from(e: DomainEvent) -> Result<Self, DomainEvent> {
                match e { DomainEvent::$v(x) => Ok(x), other => Err(other) }
            }
        }
    )*};
}

into_domain!(RealmEvent => Realm, ClientEvent => Client, UserEvent => User, RoleEvent => Role,
    GroupEvent => Group, SigningKeyEvent => SigningKey, AuthRequestEvent => AuthRequest,
    SessionEvent => Session, ClientGrantEvent => ClientGrant, LoginFailuresEvent => LoginFailures,
    ClientAssertionEvent => ClientAssertion, LogoutDeliveryEvent => LogoutDelivery,
    AuditCheckpointEvent => AuditCheckpoint, SinkDeliveryEvent => SinkDelivery,
    RejectedRequestEvent => RejectedRequest, SsfStreamEvent => SsfStream);

#[cfg(test)]
mod tests;
