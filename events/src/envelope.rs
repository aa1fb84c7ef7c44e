//! Events as they are appended and as they are stored.
use crate::canonical::{canonical, to_canonical_string};
use crate::chain::{ChainInput, Hash};
use crate::domain::{DecodeError, DomainEvent};
use crate::metadata::Metadata;
use crate::stream::{StreamId, StreamType};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// An event ready to append: payload and metadata already in canonical text.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// UUIDv7; a retried append carries the same id, which makes it idempotent.
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub payload: String,
    pub metadata: String,
}

impl NewEvent {
    pub fn new(event: &DomainEvent, metadata: &Metadata) -> Result<Self, serde_json::Error> {
        Ok(NewEvent {
            event_id: Uuid::now_v7(),
            event_type: event.event_type().to_string(),
            schema_version: event.schema_version(),
            payload: to_canonical_string(&event.payload()?),
            metadata: canonical(metadata)?,
        })
    }
}

/// An event as stored: placed in its stream and in the global log, and chained.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    pub event_id: Uuid,
    pub stream: StreamId,
    pub version: u64,
    pub position: u64,
    pub recorded_at: DateTime<Utc>,
    pub event_type: String,
    pub schema_version: u32,
    pub payload: String,
    pub metadata: String,
    pub prev_hash: Hash,
    pub hash: Hash,
}

impl RecordedEvent {
    pub fn chain_input(&self) -> ChainInput<'_> {
        ChainInput {
            position: self.position,
            event_id: &self.event_id,
            stream_type: self.stream.kind.as_str(),
            stream_id: &self.stream.id,
            version: self.version,
            recorded_at_micros: self.recorded_at.timestamp_micros(),
            event_type: &self.event_type,
            schema_version: self.schema_version,
            payload: &self.payload,
            metadata: &self.metadata,
        }
    }

    /// The typed event, upcast to the current schema. A payload already at the current
    /// schema is decoded straight from its text into its struct (no `serde_json::Value` in
    /// between: every fold and activation goes through here).
    pub fn decode(&self) -> Result<DomainEvent, DecodeError> {
        DomainEvent::decode_str(&self.event_type, self.schema_version, &self.payload)
    }

    pub fn metadata(&self) -> Result<Metadata, serde_json::Error> {
        serde_json::from_str(&self.metadata)
    }

    /// The record as one JSON object (NDJSON tails, evidence bundles).
    pub fn to_json(&self) -> RecordJson {
        RecordJson {
            position: self.position,
            event_id: self.event_id,
            stream_type: self.stream.kind,
            stream_id: self.stream.id.clone(),
            version: self.version,
            recorded_at: self.recorded_at,
            event_type: self.event_type.clone(),
            schema_version: self.schema_version,
            payload: serde_json::from_str(&self.payload).unwrap_or(Value::String(self.payload.clone())),
            metadata: serde_json::from_str(&self.metadata).unwrap_or(Value::String(self.metadata.clone())),
            prev_hash: hex::encode(self.prev_hash),
            hash: hex::encode(self.hash),
        }
    }
}

/// The JSON form of a stored event. `payload` and `metadata` re-canonicalize to the exact
/// bytes the hash covers, so a record in this form can be verified offline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordJson {
    pub position: u64,
    pub event_id: Uuid,
    pub stream_type: StreamType,
    pub stream_id: String,
    pub version: u64,
    pub recorded_at: DateTime<Utc>,
    pub event_type: String,
    pub schema_version: u32,
    pub payload: Value,
    pub metadata: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// A JSON record whose fields cannot be read back into a stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedRecord(pub String);

impl std::fmt::Display for MalformedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed record: {}", self.0)
    }
}

impl std::error::Error for MalformedRecord {}

impl TryFrom<RecordJson> for RecordedEvent {
    type Error = MalformedRecord;
    fn try_from(r: RecordJson) -> Result<Self, MalformedRecord> {
        let hash = |s: &str| -> Result<Hash, MalformedRecord> {
            let bytes = hex::decode(s).map_err(|e| MalformedRecord(format!("hash {s:?}: {e}")))?;
            bytes.try_into().map_err(|_| MalformedRecord(format!("hash {s:?} is not 32 bytes")))
        };
        Ok(RecordedEvent {
            event_id: r.event_id,
            stream: StreamId::new(r.stream_type, r.stream_id),
            version: r.version,
            position: r.position,
            recorded_at: r.recorded_at,
            event_type: r.event_type,
            schema_version: r.schema_version,
            payload: to_canonical_string(&r.payload),
            metadata: to_canonical_string(&r.metadata),
            prev_hash: hash(&r.prev_hash)?,
            hash: hash(&r.hash)?,
        })
    }
}
