//! Turns the log into audit records (`annals_projections::audit`): reads events in log order
//! and keeps, per stream, the context its earlier events gave (realm, client, user, session),
//! reading a stream's earlier events when a read starts in its middle.
use crate::store::{EventStore, StoreError};
use annals_events::{DomainEvent, Metadata, RecordedEvent, StreamId};
use annals_projections::audit::{self, AuditRecord, Names, StreamContext};
use annals_projections::Directory;
use std::collections::HashMap;

/// Contexts kept per reader; past this the map starts over (a stream whose context was
/// dropped is read again when it shows up).
const CONTEXTS: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("event at position {position} cannot be decoded: {reason}")]
    Corrupt { position: u64, reason: String },
}

/// Names from the in-memory directory (realms and clients that exist now).
pub struct DirectoryNames<'a>(pub &'a Directory);

impl Names for DirectoryNames<'_> {
    fn realm_name(&self, realm_id: &str) -> Option<String> {
        self.0.realms.get(realm_id).map(|r| r.name.clone())
    }
    fn client_id(&self, client: &str) -> Option<String> {
        self.0.clients.get(client).map(|c| c.client_id.clone())
    }
}

/// One reader of the audit stream (an HTTP pull, a sink): its own stream contexts.
#[derive(Default)]
pub struct Auditor {
    contexts: HashMap<StreamId, (u64, StreamContext)>,
}

/// An event decoded and its stream's context after it, ready to become a record.
pub struct Prepared {
    event: RecordedEvent,
    decoded: DomainEvent,
    meta: Metadata,
    context: StreamContext,
}

impl Prepared {
    pub fn position(&self) -> u64 {
        self.event.position
    }

    /// A record about the whole log rather than one realm (a signed checkpoint): every
    /// reader gets it, whatever realm it follows, so each SIEM holds the anchors.
    pub fn log_wide(&self) -> bool {
        self.event.stream.kind == annals_events::StreamType::AuditCheckpoint
    }

    pub fn realm_id(&self) -> Option<&str> {
        self.context.realm_id.as_deref().or(self.meta.realm.as_deref())
    }

    /// The session as relying parties know it, from the `sid` of their tokens: an offline
    /// session's tokens carry the SSO session it came from, never the offline stream's id.
    pub fn token_sid(&self) -> Option<&str> {
        self.context.offline_from.as_deref().or(self.context.session_id.as_deref())
    }

    /// The event as decoded.
    pub fn decoded(&self) -> &DomainEvent {
        &self.decoded
    }

    pub fn into_event(self) -> RecordedEvent {
        self.event
    }

    pub fn record(&self, names: &dyn Names) -> AuditRecord {
        audit::record(&self.event, &self.decoded, &self.meta, &self.context, names)
    }
}

impl Auditor {
    /// Decodes `events` (in log order) whose metadata is `wanted` and folds each into its
    /// stream's context (a stream passed over is read again when next wanted). Records are
    /// built afterwards with [`Prepared::record`], so names are looked up without awaiting.
    pub async fn prepare(
        &mut self,
        store: &dyn EventStore,
        events: Vec<RecordedEvent>,
        wanted: impl Fn(&Metadata) -> bool,
    ) -> Result<Vec<Prepared>, AuditError> {
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            // Metadata is written by the server; an unreadable one still yields a record.
            let meta = event.metadata().unwrap_or_default();
            if !wanted(&meta) {
                continue;
            }
            let corrupt = |reason: String| AuditError::Corrupt { position: event.position, reason };
            let decoded = event.decode().map_err(|e| corrupt(e.to_string()))?;
            let mut context = self.context_before(store, &event).await?;
            context.apply(&decoded);
            if self.contexts.len() >= CONTEXTS {
                self.contexts.clear();
            }
            self.contexts.insert(event.stream.clone(), (event.version, context.clone()));
            out.push(Prepared { event, decoded, meta, context });
        }
        Ok(out)
    }

    /// The stream's context after its events before `event`.
    async fn context_before(&self, store: &dyn EventStore, event: &RecordedEvent) -> Result<StreamContext, AuditError> {
        match self.contexts.get(&event.stream) {
            Some((version, ctx)) if *version + 1 == event.version => return Ok(ctx.clone()),
            _ => {}
        }
        let mut ctx = StreamContext::of(&event.stream);
        if event.version > 1 {
            let earlier =
                store.read_stream(&event.stream, 0, crate::store::ReadUntil::Version(event.version - 1)).await?;
            for e in &earlier {
                let d =
                    e.decode().map_err(|err| AuditError::Corrupt { position: e.position, reason: err.to_string() })?;
                ctx.apply(&d);
            }
        }
        Ok(ctx)
    }
}
