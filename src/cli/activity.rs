//! Sessions and tokens as the log says they lived: when each started or was issued, what
//! replaced it, when and why it ended. `annals at` folds the log up to a moment and lists
//! what was active then; `annals trace-token` folds one session (or grant) and follows one
//! token. Pure: events in, lives out.
use annals_events::client_grant::ClientGrantEvent;
use annals_events::session::SessionEvent;
use annals_events::{DomainEvent, RecordedEvent, StreamType};
use std::collections::BTreeMap;

/// How something ended: when (epoch seconds), at which log position, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Ended {
    pub at: i64,
    pub position: u64,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SessionLife {
    pub id: String,
    pub realm_id: String,
    pub user_id: String,
    pub method: String,
    pub auth_time: i64,
    /// When the session began (an offline session: when it was issued).
    pub started_at: i64,
    pub last_active: i64,
    pub idle_timeout: i64,
    pub max_lifespan: i64,
    /// An offline session: the SSO session it came from.
    pub offline_from: Option<String>,
    pub started_position: u64,
    pub ended: Option<Ended>,
}

impl SessionLife {
    /// Alive at `t` (epoch seconds), as far as the events folded say.
    pub fn alive_at(&self, t: i64) -> bool {
        self.started_at <= t
            && self.ended.as_ref().is_none_or(|e| e.at > t)
            && t < self.started_at.saturating_add(self.max_lifespan)
            && t < self.last_active.saturating_add(self.idle_timeout)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TokenLife {
    pub id: String,
    /// `access`, `refresh` or `id`.
    pub kind: &'static str,
    /// The client's internal id.
    pub client: String,
    pub realm_id: Option<String>,
    pub session: Option<String>,
    pub grant: String,
    pub scope: String,
    pub issued_at: i64,
    pub issued_position: u64,
    /// Access and ID tokens; a refresh token lives as long as its session unless rotated.
    pub expires_at: Option<i64>,
    /// The refresh token this issuance rotated.
    pub replaces: Option<String>,
    /// The refresh token that rotated this one away.
    pub replaced_by: Option<String>,
    pub revoked: Option<Ended>,
}

#[derive(Default)]
pub struct Activity {
    pub sessions: BTreeMap<String, SessionLife>,
    pub tokens: BTreeMap<String, TokenLife>,
}

impl Activity {
    /// Whether an event type changes anything here (others need not be decoded).
    pub fn concerns(event_type: &str) -> bool {
        event_type.starts_with("session.") || event_type.starts_with("client_grant.")
    }

    pub fn apply(&mut self, e: &RecordedEvent, decoded: &DomainEvent) {
        let (id, position) = (e.stream.id.as_str(), e.position);
        match decoded {
            DomainEvent::Session(s) if e.stream.kind == StreamType::Session => self.session(id, position, s),
            DomainEvent::ClientGrant(ClientGrantEvent::Issued(g)) => {
                self.tokens.insert(
                    id.to_string(),
                    TokenLife {
                        id: id.to_string(),
                        kind: "access",
                        client: g.client.clone(),
                        realm_id: Some(g.realm_id.clone()),
                        session: None,
                        grant: "client_credentials".into(),
                        scope: g.scope.clone(),
                        issued_at: g.at,
                        issued_position: position,
                        expires_at: Some(g.expires_at),
                        replaces: None,
                        replaced_by: None,
                        revoked: None,
                    },
                );
            }
            DomainEvent::ClientGrant(ClientGrantEvent::Revoked(r)) => {
                if let Some(t) = self.tokens.get_mut(id) {
                    t.revoked.get_or_insert(Ended { at: r.at, position, reason: r.reason.clone() });
                }
            }
            _ => {}
        }
    }

    fn end_tokens(&mut self, session: &str, ended: &Ended, which: impl Fn(&TokenLife) -> bool) {
        for t in self.tokens.values_mut().filter(|t| t.session.as_deref() == Some(session) && which(t)) {
            t.revoked.get_or_insert_with(|| ended.clone());
        }
    }

    fn session(&mut self, id: &str, position: u64, e: &SessionEvent) {
        match e {
            SessionEvent::Started(s) => {
                self.sessions.insert(
                    id.to_string(),
                    SessionLife {
                        id: id.to_string(),
                        realm_id: s.realm_id.clone(),
                        user_id: s.user_id.clone(),
                        method: s.method.clone(),
                        auth_time: s.auth_time,
                        started_at: s.started_at.unwrap_or(s.auth_time),
                        last_active: s.started_at.unwrap_or(s.auth_time),
                        idle_timeout: s.idle_timeout,
                        max_lifespan: s.max_lifespan,
                        offline_from: s.offline_from.clone(),
                        started_position: position,
                        ended: None,
                    },
                );
            }
            SessionEvent::TokensIssued(t) => {
                let realm_id = self.sessions.get(id).map(|s| s.realm_id.clone());
                if let Some(s) = self.sessions.get_mut(id) {
                    s.last_active = s.last_active.max(t.at);
                }
                let mut add = |token: &Option<String>, kind: &'static str, expires_at: Option<i64>| {
                    if let Some(tid) = token {
                        self.tokens.insert(
                            tid.clone(),
                            TokenLife {
                                id: tid.clone(),
                                kind,
                                client: t.client.clone(),
                                realm_id: realm_id.clone(),
                                session: Some(id.to_string()),
                                grant: t.grant.clone(),
                                scope: t.scope.clone(),
                                issued_at: t.at,
                                issued_position: position,
                                expires_at,
                                replaces: if kind == "refresh" { t.replaces.clone() } else { None },
                                replaced_by: None,
                                revoked: None,
                            },
                        );
                    }
                };
                add(&t.access_token_id, "access", Some(t.expires_at));
                add(&t.id_token_id, "id", Some(t.expires_at));
                add(&t.refresh_token_id, "refresh", None);
                if let (Some(old), Some(new)) = (&t.replaces, &t.refresh_token_id) {
                    if let Some(o) = self.tokens.get_mut(old) {
                        o.replaced_by = Some(new.clone());
                    }
                }
            }
            SessionEvent::TokensRevoked(r) => {
                let ended = Ended { at: r.at, position, reason: r.reason.clone() };
                let (ids, client, earlier) = (&r.token_ids, &r.client, r.earlier_access_tokens);
                self.end_tokens(id, &ended, |t| {
                    ids.contains(&t.id) || (earlier && t.kind == "access" && &t.client == client)
                });
            }
            SessionEvent::RefreshReused(_) => {}
            SessionEvent::LoggedOut(l) => self.end_session(id, Ended { at: l.at, position, reason: "logout".into() }),
            SessionEvent::Revoked(r) => self.end_session(id, Ended { at: r.at, position, reason: r.reason.clone() }),
        }
    }

    fn end_session(&mut self, id: &str, ended: Ended) {
        if let Some(s) = self.sessions.get_mut(id) {
            s.ended.get_or_insert_with(|| ended.clone());
        }
        self.end_tokens(id, &ended, |_| true);
    }

    /// Sessions alive at `t`.
    pub fn sessions_at(&self, t: i64) -> Vec<&SessionLife> {
        self.sessions.values().filter(|s| s.alive_at(t)).collect()
    }

    /// Tokens usable at `t`: issued, not expired, not revoked, not rotated away, and (for a
    /// session's tokens) their session alive.
    pub fn tokens_at(&self, t: i64) -> Vec<&TokenLife> {
        self.tokens
            .values()
            .filter(|k| k.issued_at <= t)
            .filter(|k| k.expires_at.is_none_or(|e| t < e))
            .filter(|k| k.revoked.as_ref().is_none_or(|r| r.at > t))
            .filter(|k| k.replaced_by.as_ref().is_none_or(|n| self.tokens.get(n).is_some_and(|n| n.issued_at > t)))
            .filter(|k| k.session.as_ref().is_none_or(|s| self.sessions.get(s).is_some_and(|s| s.alive_at(t))))
            .collect()
    }

    /// The refresh tokens that followed `refresh` by rotation, in order.
    pub fn rotations_after(&self, refresh: &str) -> Vec<&TokenLife> {
        let mut out = Vec::new();
        let mut at = self.tokens.get(refresh).and_then(|t| t.replaced_by.clone());
        while let Some(next) = at {
            match self.tokens.get(&next) {
                Some(t) if out.len() < 100_000 => {
                    at = t.replaced_by.clone();
                    out.push(t);
                }
                _ => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals_events::session::*;
    use annals_events::{NewEvent, StreamId};

    fn recorded(position: u64, stream: StreamId, event: DomainEvent) -> (RecordedEvent, DomainEvent) {
        let new = NewEvent::new(&event, &Default::default()).unwrap();
        let e = RecordedEvent {
            event_id: new.event_id,
            stream,
            version: position,
            position,
            recorded_at: chrono::Utc::now(),
            event_type: new.event_type,
            schema_version: 1,
            payload: new.payload,
            metadata: new.metadata,
            prev_hash: [0; 32],
            hash: [0; 32],
        };
        (e, event)
    }

    fn issued(at: i64, access: &str, refresh: &str, replaces: Option<&str>) -> DomainEvent {
        SessionEvent::from(SessionTokensIssued {
            client: "c".into(),
            grant: if replaces.is_some() { "refresh_token" } else { "authorization_code" }.into(),
            access_token_id: Some(access.into()),
            id_token_id: None,
            refresh_token_id: Some(refresh.into()),
            replaces: replaces.map(String::from),
            scope: "openid".into(),
            expires_at: at + 300,
            at,
        })
        .into()
    }

    fn given(events: Vec<DomainEvent>) -> Activity {
        let mut a = Activity::default();
        for (i, d) in events.into_iter().enumerate() {
            let (e, d) = recorded(i as u64 + 1, StreamId::new(StreamType::Session, "s"), d);
            a.apply(&e, &d);
        }
        a
    }

    fn started() -> DomainEvent {
        SessionEvent::from(SessionStarted {
            realm_id: "r".into(),
            user_id: "u".into(),
            method: "pwd".into(),
            acr: "1".into(),
            auth_time: 1_000,
            idle_timeout: 1_800,
            max_lifespan: 36_000,
            offline_from: None,
            started_at: None,
        })
        .into()
    }

    #[test]
    fn given_a_session_with_rotations_when_asked_at_a_moment_then_only_what_lived_then_is_active() {
        let a = given(vec![
            started(),
            issued(1_000, "a1", "r1", None),
            issued(1_200, "a2", "r2", Some("r1")),
            SessionEvent::from(SessionLoggedOut { client: None, clients: vec![], at: 1_400 }).into(),
        ]);
        let ids = |t: i64| a.tokens_at(t).iter().map(|k| k.id.as_str()).collect::<Vec<_>>();
        assert_eq!(ids(999), Vec::<&str>::new(), "nothing before the login");
        assert_eq!(ids(1_100), vec!["a1", "r1"]);
        assert_eq!(ids(1_250), vec!["a1", "a2", "r2"], "r1 was rotated away; a1 lives until it expires");
        assert_eq!(ids(1_400), Vec::<&str>::new(), "logged out: all of it ended");
        assert_eq!(a.sessions_at(1_399).len(), 1);
        assert!(a.sessions_at(1_400).is_empty());
        assert_eq!(a.rotations_after("r1").iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), vec!["r2"]);
        let ended = a.tokens["a2"].revoked.as_ref().unwrap();
        assert_eq!((ended.at, ended.position, ended.reason.as_str()), (1_400, 4, "logout"));
    }

    #[test]
    fn given_an_idle_session_when_asked_after_its_idle_timeout_then_it_is_not_active() {
        let a = given(vec![started(), issued(1_000, "a1", "r1", None)]);
        assert_eq!(a.sessions_at(2_799).len(), 1);
        assert!(a.sessions_at(2_800).is_empty(), "idle past 1,800 s");
        assert!(a.tokens_at(2_800).is_empty());
    }

    #[test]
    fn given_revoked_tokens_when_asked_then_they_ended_when_revoked() {
        let a = given(vec![
            started(),
            issued(1_000, "a1", "r1", None),
            SessionEvent::from(SessionTokensRevoked {
                client: "c".into(),
                token_ids: vec!["r1".into()],
                reason: "revocation_endpoint".into(),
                earlier_access_tokens: true,
                at: 1_100,
            })
            .into(),
        ]);
        assert!(a.tokens_at(1_100).is_empty(), "the refresh token and the client's earlier access tokens");
        assert_eq!(a.tokens["r1"].revoked.as_ref().unwrap().reason, "revocation_endpoint");
        assert_eq!(a.sessions_at(1_100).len(), 1, "the session lives on");
    }
}
