//! Stream identity: which aggregate instance an event belongs to.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The kind of aggregate a stream holds. The string form is part of the wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum StreamType {
    Realm,
    Client,
    User,
    Role,
    Group,
    SigningKey,
    AuthRequest,
    Session,
    ClientGrant,
    LoginFailures,
    ClientAssertion,
    LogoutDelivery,
    AuditCheckpoint,
    SinkDelivery,
    RejectedRequest,
    SsfStream,
}

impl StreamType {
    pub const ALL: [StreamType; 16] = [
        StreamType::Realm,
        StreamType::Client,
        StreamType::User,
        StreamType::Role,
        StreamType::Group,
        StreamType::SigningKey,
        StreamType::AuthRequest,
        StreamType::Session,
        StreamType::ClientGrant,
        StreamType::LoginFailures,
        StreamType::ClientAssertion,
        StreamType::LogoutDelivery,
        StreamType::AuditCheckpoint,
        StreamType::SinkDelivery,
        StreamType::RejectedRequest,
        StreamType::SsfStream,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StreamType::Realm => "realm",
            StreamType::Client => "client",
            StreamType::User => "user",
            StreamType::Role => "role",
            StreamType::Group => "group",
            StreamType::SigningKey => "signing_key",
            StreamType::AuthRequest => "auth_request",
            StreamType::Session => "session",
            StreamType::ClientGrant => "client_grant",
            StreamType::LoginFailures => "login_failures",
            StreamType::ClientAssertion => "client_assertion",
            StreamType::LogoutDelivery => "logout_delivery",
            StreamType::AuditCheckpoint => "audit_checkpoint",
            StreamType::SinkDelivery => "sink_delivery",
            StreamType::RejectedRequest => "rejected_request",
            StreamType::SsfStream => "ssf_stream",
        }
    }
}

impl fmt::Display for StreamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no stream type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStreamType(pub String);

impl fmt::Display for UnknownStreamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown stream type {:?} (expected one of: ", self.0)?;
        let names: Vec<_> = StreamType::ALL.iter().map(|t| t.as_str()).collect();
        write!(f, "{})", names.join(", "))
    }
}

impl std::error::Error for UnknownStreamType {}

impl FromStr for StreamType {
    type Err = UnknownStreamType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StreamType::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| UnknownStreamType(s.to_string()))
    }
}

/// One aggregate instance: `user/3f0c...`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamId {
    pub kind: StreamType,
    pub id: String,
}

impl StreamId {
    pub fn new(kind: StreamType, id: impl Into<String>) -> Self {
        StreamId { kind, id: id.into() }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.id)
    }
}

impl FromStr for StreamId {
    type Err = UnknownStreamType;
    /// Parses `TYPE/ID`; the id may itself contain slashes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, id) = s.split_once('/').ok_or_else(|| UnknownStreamType(s.to_string()))?;
        if id.is_empty() {
            return Err(UnknownStreamType(s.to_string()));
        }
        Ok(StreamId::new(kind.parse()?, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_round_trip_through_text() {
        for kind in StreamType::ALL {
            let s = StreamId::new(kind, "a/b");
            assert_eq!(s.to_string().parse::<StreamId>().unwrap(), s);
        }
        assert!("device_grant/x".parse::<StreamId>().is_err());
        assert!("user/".parse::<StreamId>().is_err());
        assert!("user".parse::<StreamId>().is_err());
    }
}
