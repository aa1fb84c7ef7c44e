//! Live SSO sessions and revoked tokens: what introspection, userinfo and SSO at the
//! authorization endpoint must know at once when a session ends or a token is revoked.
//!
//! Kept small on purpose (the budget is 2 KB per session; a view is a few hundred bytes):
//! ended sessions are dropped (remembered only as ended, for [`ENDED_KEPT`] seconds), and so
//! are sessions past their idle or max lifetime when [`Sessions::sweep`] runs; a token of a
//! dropped session is refused through its `sid`.
use crate::Projection;
use annals_events::client_grant::ClientGrantEvent;
use annals_events::session::SessionEvent;
use annals_events::{DomainEvent, RecordedEvent};
use foldhash::HashMap;

#[derive(Clone, Debug, PartialEq)]
pub struct SessionView {
    pub realm_id: String,
    pub user_id: String,
    pub auth_time: i64,
    /// When the session began (lifetimes count from here; later than `auth_time` for an
    /// offline session).
    pub started_at: i64,
    pub last_active: i64,
    pub idle_timeout: i64,
    pub max_lifespan: i64,
    /// Tokens of this session revoked before they expire.
    pub revoked: Vec<String>,
    /// Live refresh-chain heads by client (older tokens of a chain were rotated away).
    pub refresh: Vec<(String, String)>,
    /// By client: access tokens issued at a session version below this are revoked.
    pub cutoffs: Vec<(String, u64)>,
    /// An offline session: the SSO session it was issued from.
    pub offline_from: Option<String>,
}

impl SessionView {
    pub fn alive(&self, now: i64) -> bool {
        now < self.started_at.saturating_add(self.max_lifespan)
            && now < self.last_active.saturating_add(self.idle_timeout)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sessions {
    live: HashMap<String, SessionView>,
    /// Revoked client-credentials tokens, by id, until their expiry.
    revoked_grants: HashMap<String, i64>,
    /// Sessions logged out or revoked in the last [`ENDED_KEPT`] seconds, with the time they
    /// ended: an ended session is then told apart from one not folded yet, which a reader
    /// would look up in the log.
    ended: HashMap<String, i64>,
    /// The size of `ended` at which folding purges it next.
    purge_at: usize,
}

/// `ended` is never purged while folding below this size.
const MIN_PURGE: usize = 1024;

/// How long an ended session is remembered as ended: longer than a token stays fresh enough
/// for its unknown session to be looked up in the log (seconds, plus clock skew).
pub const ENDED_KEPT: i64 = 60;

impl Sessions {
    /// The session if it is alive at `now` (epoch seconds).
    pub fn alive(&self, id: &str, now: i64) -> Option<&SessionView> {
        self.live.get(id).filter(|s| s.alive(now))
    }

    /// The session whether or not it is still alive (until it is swept or ends).
    pub fn get(&self, id: &str) -> Option<&SessionView> {
        self.live.get(id)
    }

    /// Whether a token of a live session was revoked: by its id, or (access tokens) by a
    /// cutoff for its client (`client` the internal id, `version` the session version it was
    /// issued at, its `sv` claim).
    pub fn token_revoked(&self, session: &SessionView, token_id: &str, client: &str, version: u64) -> bool {
        session.revoked.iter().any(|t| t == token_id)
            || session.cutoffs.iter().any(|(c, cutoff)| c == client && version < *cutoff)
    }

    /// Whether this is the client's current refresh token in a live session.
    pub fn refresh_current(&self, session: &SessionView, client: &str, token_id: &str) -> bool {
        session.refresh.iter().any(|(c, t)| c == client && t == token_id)
    }

    pub fn grant_revoked(&self, token_id: &str) -> bool {
        self.revoked_grants.contains_key(token_id)
    }

    /// Whether the session was logged out or revoked lately (see [`ENDED_KEPT`]).
    pub fn ended(&self, id: &str) -> bool {
        self.ended.contains_key(id)
    }

    /// Forgets sessions past their lifetime and revocations of tokens past their expiry.
    pub fn sweep(&mut self, now: i64) {
        self.live.retain(|_, s| s.alive(now));
        self.revoked_grants.retain(|_, exp| *exp > now);
        self.ended.retain(|_, at| *at + ENDED_KEPT > now);
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

impl Projection for Sessions {
    const NAME: &'static str = "sessions";

    fn apply(&mut self, event: &RecordedEvent, decoded: &DomainEvent) {
        let id = &event.stream.id;
        match decoded {
            DomainEvent::Session(SessionEvent::Started(s)) => {
                self.live.insert(
                    id.clone(),
                    SessionView {
                        realm_id: s.realm_id.clone(),
                        user_id: s.user_id.clone(),
                        auth_time: s.auth_time,
                        started_at: s.started_at.unwrap_or(s.auth_time),
                        last_active: s.started_at.unwrap_or(s.auth_time),
                        idle_timeout: s.idle_timeout,
                        max_lifespan: s.max_lifespan,
                        revoked: Vec::new(),
                        refresh: Vec::new(),
                        cutoffs: Vec::new(),
                        offline_from: s.offline_from.clone(),
                    },
                );
            }
            DomainEvent::Session(SessionEvent::TokensIssued(t)) => {
                if let Some(s) = self.live.get_mut(id) {
                    s.last_active = s.last_active.max(t.at);
                    if let Some(old) = &t.replaces {
                        s.refresh.retain(|(c, r)| !(*c == t.client && r == old));
                    }
                    if let Some(r) = &t.refresh_token_id {
                        s.refresh.push((t.client.clone(), r.clone()));
                        // As the aggregate: at most 16 chains per client, the oldest dropped.
                        if s.refresh.iter().filter(|(c, _)| *c == t.client).count() > 16 {
                            if let Some(i) = s.refresh.iter().position(|(c, _)| *c == t.client) {
                                s.refresh.remove(i);
                            }
                        }
                    }
                }
            }
            DomainEvent::Session(SessionEvent::TokensRevoked(r)) => {
                if let Some(s) = self.live.get_mut(id) {
                    s.revoked.extend(r.token_ids.iter().cloned());
                    s.refresh.retain(|(_, t)| !r.token_ids.contains(t));
                    if r.earlier_access_tokens {
                        // Never lowered: a cutoff only moves forward in the stream.
                        match s.cutoffs.iter_mut().find(|(c, _)| *c == r.client) {
                            Some((_, v)) => *v = (*v).max(event.version),
                            None => s.cutoffs.push((r.client.clone(), event.version)),
                        }
                    }
                }
            }
            DomainEvent::Session(SessionEvent::LoggedOut(_) | SessionEvent::Revoked(_)) => {
                // Whether or not the session was still held (a swept one may be logged out
                // later): a model rebuilt without sweeps and one swept along agree.
                self.live.remove(id);
                let at = event.recorded_at.timestamp();
                self.ended.insert(id.clone(), at);
                // Folding a long log (a start, a rebuild) would keep every session that ever
                // ended until the next sweep: once the map doubles, the ones that ended more
                // than ENDED_KEPT before this event go (amortised: the threshold follows what
                // stays).
                if self.ended.len() >= self.purge_at.max(MIN_PURGE) {
                    self.ended.retain(|_, t| *t + ENDED_KEPT > at);
                    self.purge_at = 2 * self.ended.len();
                }
            }
            DomainEvent::ClientGrant(ClientGrantEvent::Revoked(r)) => {
                self.revoked_grants.insert(id.clone(), r.expires_at);
            }
            _ => {}
        }
    }
}
