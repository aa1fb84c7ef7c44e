//! All configuration read models together, advanced as one unit so a reader never sees a
//! client whose realm is missing.
use crate::clients::ClientDirectory;
use crate::consents::Consents;
use crate::logout_deliveries::{LogoutDeliveries, Owed, URL_ATTRIBUTE};
use crate::memberships::Memberships;
use crate::realms::RealmDirectory;
use crate::replay_revocations::{self, ReplayRevocations};
use crate::sessions::Sessions;
use crate::signing_keys::SigningKeyRing;
use crate::ssf_streams::SsfStreams;
use crate::Projection;
use annals_events::session::{SessionEvent, SessionLoggedOut, SessionRevoked};
use annals_events::{DecodeError, DomainEvent, RecordedEvent};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Directory {
    /// The last log position folded in.
    pub position: u64,
    pub realms: RealmDirectory,
    pub clients: ClientDirectory,
    pub memberships: Memberships,
    pub signing_keys: SigningKeyRing,
    pub sessions: Sessions,
    pub consents: Consents,
    pub logout_deliveries: LogoutDeliveries,
    pub replay_revocations: ReplayRevocations,
    pub ssf_streams: SsfStreams,
    /// The position of the last event that can change what a token says about a user (user,
    /// role, group or client events): caches of token subjects are valid while it stays.
    pub subjects_changed_at: u64,
}

/// An event the directory could not fold.
#[derive(Debug)]
pub struct FoldError {
    pub position: u64,
    pub error: DecodeError,
}

impl std::fmt::Display for FoldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "event at position {}: {}", self.position, self.error)
    }
}

impl std::error::Error for FoldError {}

impl Directory {
    pub const NAMES: [&'static str; 7] = [
        RealmDirectory::NAME,
        ClientDirectory::NAME,
        Memberships::NAME,
        SigningKeyRing::NAME,
        Sessions::NAME,
        Consents::NAME,
        SsfStreams::NAME,
    ];

    /// Folds one stored event. Events already folded (position <= current) are skipped, so
    /// feeding a page twice is harmless.
    pub fn fold(&mut self, event: &RecordedEvent) -> Result<(), FoldError> {
        if event.position <= self.position {
            return Ok(());
        }
        // Most of the log under load is read by no in-memory model (every step of every
        // authorization request, every client-credentials token): those are not decoded (an
        // unreadable one surfaces where it is read: its actor, `annals verify`).
        if Self::unread(&event.event_type) {
            self.position = event.position;
            return Ok(());
        }
        let decoded = event.decode().map_err(|error| FoldError { position: event.position, error })?;
        self.apply_decoded(event, &decoded);
        Ok(())
    }

    /// Back-channel logout deliveries for the clients of an ended session that registered a
    /// URL for it (as configured at this point of the log).
    fn owe_logout(&mut self, session_id: &str, clients: &[String], at: i64) {
        let session = self.sessions.get(session_id);
        let user_id = session.map(|s| s.user_id.clone());
        let sid = session.and_then(|s| s.offline_from.clone());
        let owed: Vec<Owed> = clients
            .iter()
            .filter_map(|c| self.clients.get(c))
            .filter(|c| c.settings.attributes.get(URL_ATTRIBUTE).is_some_and(|u| !u.trim().is_empty()))
            .map(|c| Owed {
                realm_id: c.realm_id.clone(),
                session_id: session_id.to_string(),
                client: c.id.clone(),
                user_id: user_id.clone(),
                sid: sid.clone(),
                attempts: 0,
                due_at_ms: at.saturating_mul(1000),
            })
            .collect();
        self.logout_deliveries.session_ended(owed);
    }

    /// Event types no model here reads.
    fn unread(event_type: &str) -> bool {
        (event_type.starts_with("auth_request.") && !replay_revocations::READS.contains(&event_type))
            || event_type.starts_with("login_failures.")
            || event_type == "client_grant.issued"
            || event_type.starts_with("client_assertion.")
            || event_type == "session.refresh_reused"
    }

    pub fn apply_decoded(&mut self, event: &RecordedEvent, decoded: &DomainEvent) {
        self.realms.apply(event, decoded);
        self.clients.apply(event, decoded);
        self.memberships.apply(event, decoded);
        self.signing_keys.apply(event, decoded);
        self.ssf_streams.apply(event, decoded);
        if let DomainEvent::Session(SessionEvent::LoggedOut(SessionLoggedOut { clients, at, .. }))
        | DomainEvent::Session(SessionEvent::Revoked(SessionRevoked { clients, at, .. })) = decoded
        {
            // Before the session leaves `sessions`: its user goes into the logout tokens.
            self.owe_logout(&event.stream.id, clients, *at);
        }
        self.logout_deliveries.apply(event, decoded);
        self.replay_revocations.apply(event, decoded);
        self.sessions.apply(event, decoded);
        self.consents.apply(event, decoded);
        if matches!(
            decoded,
            DomainEvent::User(_) | DomainEvent::Role(_) | DomainEvent::Group(_) | DomainEvent::Client(_)
        ) {
            self.subjects_changed_at = event.position;
        }
        self.position = event.position;
    }
}
