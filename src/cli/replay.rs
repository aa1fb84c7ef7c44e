//! `annals replay`: a stream's events up to a moment, and the state they fold to.
use crate::domain::auth_request::AuthRequest;
use crate::domain::client_assertion::ClientAssertion;
use crate::domain::client_grant::ClientGrant;
use crate::domain::login_failures::LoginFailures;
use crate::domain::logout_delivery::LogoutDelivery;
use crate::domain::session::Session;
use crate::domain::sink_delivery::SinkDelivery;
use crate::domain::ssf_stream::SsfStream;
use crate::domain::{client::Client, group::Group, realm::Realm, role::Role, signing_key::SigningKey, user::User};
use crate::domain::{fold, Aggregate};
use crate::store::{EventStore, ReadUntil, StoreError};
use annals_events::{RecordedEvent, StreamId, StreamType};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Printed to the operator; exit 1.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stream {0} has no events up to that point")]
    Empty(String),
    #[error("{0}")]
    Undecodable(String),
}

pub struct Replay {
    pub events: Vec<RecordedEvent>,
    pub state: Value,
}

fn state_of<A: Aggregate>(events: &[RecordedEvent]) -> Result<Value, ReplayError> {
    let typed = events
        .iter()
        .map(|e| {
            let d = e.decode().map_err(|err| ReplayError::Undecodable(format!("position {}: {err}", e.position)))?;
            A::Event::try_from(d)
                .map_err(|_| ReplayError::Undecodable(format!("position {}: wrong aggregate", e.position)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    serde_json::to_value(fold(A::default(), &typed)).map_err(|e| ReplayError::Undecodable(e.to_string()))
}

/// A refused request is one fact with no aggregate: its state is what it says.
fn fact_state(events: &[RecordedEvent]) -> Result<Value, ReplayError> {
    let last = events.last().ok_or_else(|| ReplayError::Undecodable("no events".into()))?;
    serde_json::from_str(&last.payload)
        .map_err(|e| ReplayError::Undecodable(format!("position {}: {e}", last.position)))
}

/// The checkpoint stream has no aggregate (nothing is decided on it): its state is the
/// newest checkpoint and whether its signature holds.
fn checkpoint_state(events: &[RecordedEvent]) -> Result<Value, ReplayError> {
    use annals_events::audit_checkpoint::AuditCheckpointEvent;
    let last = events.last().ok_or_else(|| ReplayError::Undecodable("no events".into()))?;
    let undecodable = |why: String| ReplayError::Undecodable(format!("position {}: {why}", last.position));
    let annals_events::DomainEvent::AuditCheckpoint(AuditCheckpointEvent::Signed(c)) =
        last.decode().map_err(|e| undecodable(e.to_string()))?
    else {
        return Err(undecodable("not a checkpoint".into()));
    };
    let signature = match c.verify() {
        Ok(()) => "valid".to_string(),
        Err(e) => format!("INVALID: {e}"),
    };
    let mut state = serde_json::to_value(&c).map_err(|e| undecodable(e.to_string()))?;
    state["signature"] = Value::String(signature);
    state["checkpoints"] = Value::from(events.len());
    Ok(state)
}

pub async fn replay(store: &dyn EventStore, stream: &StreamId, until: ReadUntil) -> Result<Replay, ReplayError> {
    let events = store.read_stream(stream, 0, until).await?;
    if events.is_empty() {
        return Err(ReplayError::Empty(stream.to_string()));
    }
    let state = match stream.kind {
        StreamType::Realm => state_of::<Realm>(&events)?,
        StreamType::Client => state_of::<Client>(&events)?,
        StreamType::User => state_of::<User>(&events)?,
        StreamType::Role => state_of::<Role>(&events)?,
        StreamType::Group => state_of::<Group>(&events)?,
        StreamType::SigningKey => state_of::<SigningKey>(&events)?,
        StreamType::AuthRequest => state_of::<AuthRequest>(&events)?,
        StreamType::Session => state_of::<Session>(&events)?,
        StreamType::ClientGrant => state_of::<ClientGrant>(&events)?,
        StreamType::LoginFailures => state_of::<LoginFailures>(&events)?,
        StreamType::ClientAssertion => state_of::<ClientAssertion>(&events)?,
        StreamType::LogoutDelivery => state_of::<LogoutDelivery>(&events)?,
        StreamType::AuditCheckpoint => checkpoint_state(&events)?,
        StreamType::SinkDelivery => state_of::<SinkDelivery>(&events)?,
        StreamType::RejectedRequest => fact_state(&events)?,
        StreamType::SsfStream => state_of::<SsfStream>(&events)?,
    };
    Ok(Replay { events, state })
}

/// Human-readable form: one line per event, then the state.
pub fn render_text(r: &Replay) -> String {
    let mut out = String::new();
    for e in &r.events {
        out.push_str(&format!(
            "v{:<4} #{:<8} {} {:<30} {}\n",
            e.version,
            e.position,
            e.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            e.event_type,
            e.payload
        ));
    }
    let last = r.events.last().map(|e| e.version).unwrap_or(0);
    out.push_str(&format!(
        "\nstate at version {last}:\n{}\n",
        serde_json::to_string_pretty(&r.state).unwrap_or_default()
    ));
    out
}
