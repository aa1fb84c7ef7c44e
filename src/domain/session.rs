//! The Session aggregate: one SSO session, from login to logout, revocation or expiry.
//!
//! Refresh tokens rotate: each refresh hands out a new one and the old one dies. A client may
//! hold several chains in one session (a second tab, a silent renewal): each code or password
//! issuance starts one, and each chain has one live head. Every refresh token is signed and
//! names its session and client, so one that verifies but is no live head was rotated away
//! already: presenting it again means a copy exists, and the whole session is revoked (RFC
//! 9700 §4.14.2). A head the client revoked itself is only refused.
use super::{Aggregate, Lifecycle};
use annals_events::session::*;
use annals_events::StreamType;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub lifecycle: Lifecycle,
    pub realm_id: String,
    pub user_id: String,
    pub method: String,
    pub acr: String,
    pub auth_time: i64,
    /// When the session began; its lifetimes count from here (`auth_time` unless it is an
    /// offline session).
    #[serde(default)]
    pub started_at: i64,
    pub last_active: i64,
    pub idle_timeout: i64,
    pub max_lifespan: i64,
    /// Why the session ended, once it has.
    pub ended: Option<String>,
    /// An offline session: the SSO session it was issued from.
    #[serde(default)]
    pub offline_from: Option<String>,
    /// Per client (internal id): what it holds now.
    pub clients: BTreeMap<String, ClientTokens>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientTokens {
    /// The live head of each refresh chain, oldest first (at most [`MAX_CHAINS`]).
    pub refresh: Vec<String>,
    /// Heads revoked since (the last [`MAX_CHAINS`]): presented again, they are refused, not
    /// taken for a stolen copy. A client that revoked its token (RFC 7009) and then used it
    /// (a refresh already in flight) must not end the session for every other client in it.
    #[serde(default)]
    pub revoked: Vec<String>,
}

/// Refresh chains one client may hold in one session; starting another drops the oldest.
pub const MAX_CHAINS: usize = 16;

impl ClientTokens {
    /// Remembers `heads` as revoked, keeping the last [`MAX_CHAINS`].
    fn revoke(&mut self, heads: Vec<String>) {
        self.revoked.extend(heads);
        let over = self.revoked.len().saturating_sub(MAX_CHAINS);
        self.revoked.drain(..over);
    }
}

/// Tokens about to be handed to a client.
#[derive(Clone, Debug, PartialEq)]
pub struct Issue {
    pub client: String,
    pub grant: String,
    pub access_token_id: Option<String>,
    pub id_token_id: Option<String>,
    pub refresh_token_id: Option<String>,
    pub scope: String,
    pub expires_at: i64,
}

#[derive(Clone, Debug)]
pub enum SessionCommand {
    Start(SessionStarted),
    Issue(Issue),
    /// An offline token for a client: starts the offline session with `started` if it is new,
    /// else adds the token to it (Keycloak keeps one offline session per SSO session, shared
    /// by every client that asked `offline_access` in it).
    JoinOffline {
        started: SessionStarted,
        issue: Issue,
    },
    /// Rotation: `presented` is the refresh token's id.
    Refresh {
        presented: String,
        issue: Issue,
    },
    RevokeTokens {
        client: String,
        token_ids: Vec<String>,
        reason: String,
    },
    /// Everything a client holds in this session (a replayed code: its tokens may be in the
    /// wrong hands), plus `also` (ids recorded elsewhere, not issued yet).
    RevokeClient {
        client: String,
        also: Vec<String>,
        reason: String,
    },
    /// RFC 7009 for a refresh token: it and the client's access tokens stop working.
    RevokeRefresh {
        client: String,
        refresh_token_id: String,
    },
    Logout {
        client: Option<String>,
    },
    Revoke {
        reason: String,
    },
}

/// Errors of session commands; the token endpoint answers each with `invalid_grant`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SessionError {
    #[error("session not found")]
    NotFound,
    #[error("session already exists")]
    AlreadyExists,
    #[error("session has ended")]
    Ended,
    #[error("session has expired")]
    Expired,
    #[error("refresh token is not this client's")]
    WrongClient,
    #[error("refresh token was revoked")]
    Revoked,
}

impl Session {
    /// Whether tokens may still be issued at `now` (not ended, within idle and max lifetime).
    pub fn alive(&self, now: i64) -> bool {
        self.lifecycle == Lifecycle::Live
            && self.ended.is_none()
            && now < self.started_at.saturating_add(self.max_lifespan)
            && now < self.last_active.saturating_add(self.idle_timeout)
    }

    /// When the session ends at the latest if nothing happens: the earlier of idle and max.
    pub fn expires_at(&self) -> i64 {
        self.started_at.saturating_add(self.max_lifespan).min(self.last_active.saturating_add(self.idle_timeout))
    }

    /// The start, at `now`, of an offline session issued from this one (scope
    /// `offline_access`): same user, authentication and `auth_time`, the realm's offline
    /// lifetimes counted from `now` (`max_lifespan` `None`: only idleness ends it, Keycloak's
    /// default).
    pub fn offline_start(&self, from: &str, now: i64, idle_timeout: i64, max_lifespan: Option<i64>) -> SessionStarted {
        SessionStarted {
            realm_id: self.realm_id.clone(),
            user_id: self.user_id.clone(),
            method: self.method.clone(),
            acr: self.acr.clone(),
            auth_time: self.auth_time,
            idle_timeout,
            max_lifespan: max_lifespan.unwrap_or(i64::MAX),
            offline_from: Some(from.to_string()),
            started_at: Some(now),
        }
    }

    /// The clients that held tokens of this session.
    fn client_ids(&self) -> Vec<String> {
        self.clients.keys().cloned().collect()
    }

    fn check_alive(&self, now: i64) -> Result<(), SessionError> {
        match (self.lifecycle, &self.ended) {
            (Lifecycle::New, _) => Err(SessionError::NotFound),
            (_, Some(_)) => Err(SessionError::Ended),
            _ if !self.alive(now) => Err(SessionError::Expired),
            _ => Ok(()),
        }
    }
}

fn issued(issue: Issue, replaces: Option<String>, at: i64) -> SessionEvent {
    SessionTokensIssued {
        client: issue.client,
        grant: issue.grant,
        access_token_id: issue.access_token_id,
        id_token_id: issue.id_token_id,
        refresh_token_id: issue.refresh_token_id,
        replaces,
        scope: issue.scope,
        expires_at: issue.expires_at,
        at,
    }
    .into()
}

impl Aggregate for Session {
    const KIND: StreamType = StreamType::Session;
    type Command = SessionCommand;
    type Event = SessionEvent;
    type Error = SessionError;

    fn decide(&self, command: SessionCommand, now: DateTime<Utc>) -> Result<Vec<SessionEvent>, SessionError> {
        use SessionCommand as C;
        let at = now.timestamp();
        match command {
            C::Start(started) => match self.lifecycle {
                Lifecycle::New => Ok(vec![started.into()]),
                _ => Err(SessionError::AlreadyExists),
            },
            C::Issue(issue) => {
                self.check_alive(at)?;
                Ok(vec![issued(issue, None, at)])
            }
            C::JoinOffline { started, issue } => match self.lifecycle {
                Lifecycle::New => Ok(vec![started.into(), issued(issue, None, at)]),
                _ => {
                    self.check_alive(at)?;
                    // Only the offline session of that same user's same SSO session.
                    let same = (&self.realm_id, &self.user_id, &self.offline_from)
                        == (&started.realm_id, &started.user_id, &started.offline_from);
                    if !same {
                        return Err(SessionError::AlreadyExists);
                    }
                    Ok(vec![issued(issue, None, at)])
                }
            },
            C::Refresh { presented, issue } => {
                self.check_alive(at)?;
                let held = self.clients.get(&issue.client);
                if held.is_some_and(|c| c.refresh.contains(&presented)) {
                    return Ok(vec![issued(issue, Some(presented), at)]);
                }
                if held.is_some_and(|c| c.revoked.contains(&presented)) {
                    return Err(SessionError::Revoked);
                }
                Ok(vec![
                    SessionRefreshReused { client: issue.client, refresh_token_id: presented, at }.into(),
                    SessionRevoked { reason: "refresh_token_reused".into(), clients: self.client_ids(), at }.into(),
                ])
            }
            C::RevokeTokens { client, token_ids, reason } => {
                match (self.lifecycle, &self.ended) {
                    (Lifecycle::New, _) => Err(SessionError::NotFound),
                    (_, Some(_)) => Ok(vec![]),
                    _ => Ok(vec![
                        SessionTokensRevoked { client, token_ids, earlier_access_tokens: false, reason, at }.into()
                    ]),
                }
            }
            C::RevokeClient { client, also, reason } => {
                if self.lifecycle == Lifecycle::New {
                    return Err(SessionError::NotFound);
                }
                if self.ended.is_some() {
                    return Ok(vec![]);
                }
                let mut token_ids = also;
                if let Some(held) = self.clients.get(&client) {
                    token_ids.extend(held.refresh.iter().cloned());
                }
                Ok(vec![SessionTokensRevoked { client, token_ids, earlier_access_tokens: true, reason, at }.into()])
            }
            C::RevokeRefresh { client, refresh_token_id } => {
                let Some(held) = self.clients.get(&client) else { return Ok(vec![]) };
                if self.ended.is_some() || !held.refresh.contains(&refresh_token_id) {
                    // RFC 7009 §2.2: revoking a token that is already invalid succeeds.
                    return Ok(vec![]);
                }
                let reason = "revocation_endpoint".into();
                let token_ids = vec![refresh_token_id];
                Ok(vec![SessionTokensRevoked { client, token_ids, earlier_access_tokens: true, reason, at }.into()])
            }
            C::Logout { client } => match (self.lifecycle, &self.ended) {
                (Lifecycle::New, _) => Err(SessionError::NotFound),
                (_, Some(_)) => Ok(vec![]),
                // Offline tokens exist to outlive the user's logout: only revocation (or reuse,
                // or idleness) ends an offline session.
                _ if self.offline_from.is_some() => Ok(vec![]),
                _ => Ok(vec![SessionLoggedOut { client, clients: self.client_ids(), at }.into()]),
            },
            C::Revoke { reason } => match (self.lifecycle, &self.ended) {
                (Lifecycle::New, _) => Err(SessionError::NotFound),
                (_, Some(_)) => Ok(vec![]),
                _ => Ok(vec![SessionRevoked { reason, clients: self.client_ids(), at }.into()]),
            },
        }
    }

    fn apply(mut self, event: &SessionEvent) -> Self {
        match event {
            SessionEvent::Started(s) => {
                self.lifecycle = Lifecycle::Live;
                self.realm_id = s.realm_id.clone();
                self.user_id = s.user_id.clone();
                self.method = s.method.clone();
                self.acr = s.acr.clone();
                self.auth_time = s.auth_time;
                self.started_at = s.started_at.unwrap_or(s.auth_time);
                self.last_active = self.started_at;
                self.idle_timeout = s.idle_timeout;
                self.max_lifespan = s.max_lifespan;
                self.offline_from = s.offline_from.clone();
            }
            SessionEvent::TokensIssued(t) => {
                self.last_active = self.last_active.max(t.at);
                let held = self.clients.entry(t.client.clone()).or_default();
                if let Some(old) = &t.replaces {
                    held.refresh.retain(|r| r != old);
                }
                if let Some(new) = &t.refresh_token_id {
                    held.refresh.push(new.clone());
                    if held.refresh.len() > MAX_CHAINS {
                        // Dropped, not stolen: presented again it is refused like a revoked one.
                        let oldest = held.refresh.remove(0);
                        held.revoke(vec![oldest]);
                    }
                }
            }
            SessionEvent::TokensRevoked(r) => {
                if let Some(held) = self.clients.get_mut(&r.client) {
                    let (gone, live) = held.refresh.drain(..).partition(|id| r.token_ids.contains(id));
                    held.refresh = live;
                    held.revoke(gone);
                }
            }
            SessionEvent::RefreshReused(_) => {}
            SessionEvent::LoggedOut(_) => self.ended = Some("logged_out".into()),
            SessionEvent::Revoked(r) => self.ended = Some(r.reason.clone()),
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{given, now};

    fn t0() -> i64 {
        now().timestamp()
    }

    fn started() -> SessionEvent {
        SessionStarted {
            realm_id: "r".into(),
            user_id: "u".into(),
            method: "pwd".into(),
            acr: "1".into(),
            auth_time: t0(),
            idle_timeout: 1800,
            max_lifespan: 36000,
            offline_from: None,
            started_at: None,
        }
        .into()
    }

    fn issue(refresh: &str) -> Issue {
        Issue {
            client: "c".into(),
            grant: "authorization_code".into(),
            access_token_id: Some(format!("at-{refresh}")),
            id_token_id: None,
            refresh_token_id: Some(refresh.into()),
            scope: "openid".into(),
            expires_at: t0() + 300,
        }
    }

    fn with_tokens() -> Vec<SessionEvent> {
        let s = given::<Session>(vec![started()]);
        let mut history = vec![started()];
        history.extend(s.decide(SessionCommand::Issue(issue("rt1")), now()).unwrap());
        history
    }

    #[test]
    fn given_a_session_when_the_current_refresh_token_is_used_then_it_rotates() {
        let state = given::<Session>(with_tokens());
        let events =
            state.decide(SessionCommand::Refresh { presented: "rt1".into(), issue: issue("rt2") }, now()).unwrap();
        assert!(matches!(&events[..], [SessionEvent::TokensIssued(t)] if t.replaces.as_deref() == Some("rt1")));
        let state = crate::domain::fold(state, &events);
        assert_eq!(state.clients["c"].refresh, vec!["rt2".to_string()]);
    }

    #[test]
    fn given_a_rotated_refresh_token_when_it_is_used_again_then_the_session_is_revoked() {
        let mut history = with_tokens();
        let state = given::<Session>(history.clone());
        history.extend(
            state.decide(SessionCommand::Refresh { presented: "rt1".into(), issue: issue("rt2") }, now()).unwrap(),
        );
        let state = given::<Session>(history.clone());
        let events =
            state.decide(SessionCommand::Refresh { presented: "rt1".into(), issue: issue("rt3") }, now()).unwrap();
        assert!(
            matches!(&events[..], [SessionEvent::RefreshReused(_), SessionEvent::Revoked(r)] if r.reason == "refresh_token_reused")
        );
        let state = crate::domain::fold(state, &events);
        assert!(!state.alive(t0()));
        assert_eq!(
            state.decide(SessionCommand::Refresh { presented: "rt2".into(), issue: issue("rt4") }, now()),
            Err(SessionError::Ended),
            "the legitimate holder's token dies with the session"
        );
    }

    #[test]
    fn given_a_session_when_idle_or_max_lifetime_passes_then_nothing_is_issued() {
        let state = given::<Session>(with_tokens());
        let idle = now() + chrono::Duration::seconds(1800);
        assert_eq!(state.decide(SessionCommand::Issue(issue("x")), idle), Err(SessionError::Expired));
        // Activity keeps it alive through idle periods, but never past the max lifespan.
        let mut s = state.clone();
        s.last_active = t0() + 36000 - 10;
        assert!(s.alive(t0() + 36000 - 1));
        assert!(!s.alive(t0() + 36000));
    }

    #[test]
    fn given_a_session_when_its_refresh_token_is_revoked_then_its_access_tokens_go_too() {
        let state = given::<Session>(with_tokens());
        let events = state
            .decide(SessionCommand::RevokeRefresh { client: "c".into(), refresh_token_id: "rt1".into() }, now())
            .unwrap();
        let [SessionEvent::TokensRevoked(r)] = &events[..] else { panic!("{events:?}") };
        assert_eq!((r.token_ids.clone(), r.earlier_access_tokens), (vec!["rt1".to_string()], true));
        let state = crate::domain::fold(state, &events);
        assert!(state.clients["c"].refresh.is_empty());
        // Revoking an unknown or already revoked token changes nothing (RFC 7009 §2.2).
        let again = SessionCommand::RevokeRefresh { client: "c".into(), refresh_token_id: "rt1".into() };
        assert_eq!(state.decide(again, now()), Ok(vec![]));
    }

    #[test]
    fn given_a_logged_out_session_when_anything_is_asked_then_it_stays_ended() {
        let state = given::<Session>(with_tokens());
        let events = state.decide(SessionCommand::Logout { client: None }, now()).unwrap();
        let state = crate::domain::fold(state, &events);
        assert_eq!(state.decide(SessionCommand::Issue(issue("x")), now()), Err(SessionError::Ended));
        assert_eq!(state.decide(SessionCommand::Logout { client: None }, now()), Ok(vec![]));
        assert_eq!(state.decide(SessionCommand::Revoke { reason: "admin".into() }, now()), Ok(vec![]));
        assert_eq!(
            given::<Session>(vec![]).decide(SessionCommand::Logout { client: None }, now()),
            Err(SessionError::NotFound)
        );
    }

    #[test]
    fn given_two_chains_of_one_client_when_each_rotates_then_neither_looks_like_reuse() {
        let mut history = with_tokens();
        let state = given::<Session>(history.clone());
        history.extend(state.decide(SessionCommand::Issue(issue("tab2")), now()).unwrap());
        for (presented, next) in [("rt1", "rt1b"), ("tab2", "tab2b"), ("rt1b", "rt1c")] {
            let state = given::<Session>(history.clone());
            let events = state
                .decide(SessionCommand::Refresh { presented: presented.into(), issue: issue(next) }, now())
                .unwrap();
            assert!(matches!(&events[..], [SessionEvent::TokensIssued(_)]), "{presented}: {events:?}");
            history.extend(events);
        }
        assert_eq!(given::<Session>(history).clients["c"].refresh, vec!["tab2b".to_string(), "rt1c".to_string()]);
    }

    #[test]
    fn given_a_replayed_code_when_the_client_is_revoked_then_every_chain_and_access_token_goes() {
        let mut history = with_tokens();
        history.extend(given::<Session>(history.clone()).decide(SessionCommand::Issue(issue("tab2")), now()).unwrap());
        let state = given::<Session>(history);
        let cmd = SessionCommand::RevokeClient {
            client: "c".into(),
            also: vec!["pending".into()],
            reason: "code_replayed".into(),
        };
        let events = state.decide(cmd, now()).unwrap();
        let [SessionEvent::TokensRevoked(r)] = &events[..] else { panic!("{events:?}") };
        for id in ["pending", "rt1", "tab2"] {
            assert!(r.token_ids.iter().any(|t| t == id), "{id} not revoked");
        }
        assert!(r.earlier_access_tokens, "and every access token issued so far");
        assert!(crate::domain::fold(state, &events).clients["c"].refresh.is_empty());
    }

    fn offline(max: Option<i64>) -> Vec<SessionEvent> {
        let online = given::<Session>(with_tokens());
        let start = online.offline_start("online-1", t0(), 1000, max);
        let mut history = vec![SessionEvent::from(start)];
        let state = given::<Session>(history.clone());
        history.extend(state.decide(SessionCommand::Issue(issue("off1")), now()).unwrap());
        history
    }

    #[test]
    fn given_an_offline_session_when_the_user_logs_out_then_it_lives_on() {
        let state = given::<Session>(offline(None));
        assert_eq!(state.offline_from.as_deref(), Some("online-1"));
        assert_eq!(state.auth_time, t0(), "the authentication it carries is the SSO session's");
        assert_eq!(state.decide(SessionCommand::Logout { client: None }, now()), Ok(vec![]));
        let events =
            state.decide(SessionCommand::Refresh { presented: "off1".into(), issue: issue("off2") }, now()).unwrap();
        assert!(matches!(&events[..], [SessionEvent::TokensIssued(_)]));
    }

    #[test]
    fn given_an_offline_session_when_only_idleness_limits_it_then_it_outlasts_the_sso_maximum() {
        // Refreshed within each idle window, it outlives the SSO session's maximum (36,000 s).
        let mut state = given::<Session>(offline(None));
        let mut presented = "off1".to_string();
        for step in 1..=60 {
            let at = now() + chrono::Duration::seconds(step * 900);
            let next = format!("off-{step}");
            let events = state
                .decide(SessionCommand::Refresh { presented: presented.clone(), issue: issue(&next) }, at)
                .unwrap();
            state = crate::domain::fold(state, &events);
            presented = next;
        }
        assert!(state.alive(t0() + 60 * 900 + 500));
        let idle = now() + chrono::Duration::seconds(60 * 900 + 1000);
        assert_eq!(
            state.decide(SessionCommand::Refresh { presented, issue: issue("late") }, idle),
            Err(SessionError::Expired),
            "idle past its window, it ends"
        );
    }

    #[test]
    fn given_an_offline_session_with_a_maximum_when_it_passes_then_refresh_fails() {
        let state = given::<Session>(offline(Some(2000)));
        let at = now() + chrono::Duration::seconds(900);
        let events =
            state.decide(SessionCommand::Refresh { presented: "off1".into(), issue: issue("off2") }, at).unwrap();
        let state = crate::domain::fold(state, &events);
        let at = now() + chrono::Duration::seconds(2000);
        assert_eq!(
            state.decide(SessionCommand::Refresh { presented: "off2".into(), issue: issue("off3") }, at),
            Err(SessionError::Expired)
        );
    }

    #[test]
    fn given_an_offline_session_when_its_token_is_revoked_or_reused_then_it_ends() {
        let state = given::<Session>(offline(None));
        let revoke = SessionCommand::RevokeRefresh { client: "c".into(), refresh_token_id: "off1".into() };
        let events = state.decide(revoke, now()).unwrap();
        let state_after = crate::domain::fold(state.clone(), &events);
        assert!(state_after.clients["c"].refresh.is_empty());
        let events =
            state.decide(SessionCommand::Refresh { presented: "stolen".into(), issue: issue("x") }, now()).unwrap();
        assert!(matches!(&events[..], [SessionEvent::RefreshReused(_), SessionEvent::Revoked(_)]));
    }

    #[test]
    fn given_a_revoked_refresh_token_when_presented_again_then_it_is_refused_and_the_session_lives() {
        let state = given::<Session>(with_tokens());
        let revoke = SessionCommand::RevokeRefresh { client: "c".into(), refresh_token_id: "rt1".into() };
        let state = crate::domain::fold(state.clone(), &state.decide(revoke, now()).unwrap());
        let again = SessionCommand::Refresh { presented: "rt1".into(), issue: issue("rt2") };
        assert_eq!(state.decide(again, now()), Err(SessionError::Revoked));
        let stolen = SessionCommand::Refresh { presented: "rt0".into(), issue: issue("rt3") };
        let events = state.decide(stolen, now()).unwrap();
        assert!(
            matches!(&events[..], [SessionEvent::RefreshReused(_), SessionEvent::Revoked(_)]),
            "a rotated-away one is still reuse"
        );
    }

    #[test]
    fn given_a_client_past_its_chain_limit_when_its_dropped_token_is_presented_then_it_is_refused_not_reuse() {
        let mut state = given::<Session>(with_tokens());
        for n in 0..MAX_CHAINS {
            let events = state.decide(SessionCommand::Issue(issue(&format!("more-{n}"))), now()).unwrap();
            state = crate::domain::fold(state, &events);
        }
        assert!(!state.clients["c"].refresh.contains(&"rt1".to_string()), "the oldest chain was dropped");
        let again = SessionCommand::Refresh { presented: "rt1".into(), issue: issue("x") };
        assert_eq!(state.decide(again, now()), Err(SessionError::Revoked));
    }

    #[test]
    fn given_an_offline_session_when_another_users_session_tries_to_join_then_it_is_refused() {
        let state = given::<Session>(offline(None));
        let mut started = given::<Session>(with_tokens()).offline_start("online-1", t0(), 1000, None);
        started.user_id = "mallory".into();
        let join = SessionCommand::JoinOffline { started, issue: issue("off-m") };
        assert_eq!(state.decide(join, now()), Err(SessionError::AlreadyExists));
    }

    #[test]
    fn given_no_offline_session_when_a_client_joins_then_it_starts_holding_that_clients_token() {
        let online = given::<Session>(with_tokens());
        let join = SessionCommand::JoinOffline {
            started: online.offline_start("online-1", t0(), 1000, None),
            issue: issue("off1"),
        };
        let events = Session::default().decide(join, now()).unwrap();
        assert!(
            matches!(&events[..], [SessionEvent::Started(s), SessionEvent::TokensIssued(_)] if s.offline_from.as_deref() == Some("online-1"))
        );
        let state = given::<Session>(events);
        assert_eq!(state.clients["c"].refresh, vec!["off1".to_string()]);
    }

    #[test]
    fn given_a_live_offline_session_when_another_client_joins_then_both_hold_tokens_in_it() {
        let state = given::<Session>(offline(None));
        let online = given::<Session>(with_tokens());
        let later = now() + chrono::Duration::seconds(600);
        let mut other = issue("off-d");
        other.client = "d".into();
        let join = SessionCommand::JoinOffline {
            started: online.offline_start("online-1", later.timestamp(), 1000, None),
            issue: other,
        };
        let events = state.decide(join, later).unwrap();
        assert!(matches!(&events[..], [SessionEvent::TokensIssued(_)]), "no second start: {events:?}");
        let state = crate::domain::fold(state, &events);
        assert_eq!(state.started_at, t0(), "its lifetimes still count from the first offline login");
        assert_eq!(state.last_active, later.timestamp());
        assert_eq!((state.clients["c"].refresh.len(), state.clients["d"].refresh.len()), (1, 1));
    }

    #[test]
    fn given_an_ended_or_idle_offline_session_when_a_client_joins_then_it_is_refused() {
        let online = given::<Session>(with_tokens());
        let join = |at: i64| SessionCommand::JoinOffline {
            started: online.offline_start("online-1", at, 1000, None),
            issue: issue("off2"),
        };
        let state = given::<Session>(offline(None));
        let idle = now() + chrono::Duration::seconds(1000);
        assert_eq!(state.decide(join(idle.timestamp()), idle), Err(SessionError::Expired));
        let events = state.decide(SessionCommand::Revoke { reason: "admin".into() }, now()).unwrap();
        let revoked = crate::domain::fold(state, &events);
        assert_eq!(revoked.decide(join(t0()), now()), Err(SessionError::Ended));
    }

    #[test]
    fn given_an_sso_session_older_than_the_offline_limits_when_an_offline_session_starts_then_they_count_from_its_start(
    ) {
        let online = given::<Session>(with_tokens());
        let later = now() + chrono::Duration::seconds(5000);
        let state =
            given::<Session>(vec![online.offline_start("online-1", later.timestamp(), 1000, Some(2000)).into()]);
        assert_eq!(state.auth_time, t0(), "the authentication's own time is kept for claims");
        let events = state.decide(SessionCommand::Issue(issue("off1")), later).unwrap();
        let state = crate::domain::fold(state, &events);
        assert!(state.alive(later.timestamp() + 900));
        assert_eq!(state.expires_at(), later.timestamp() + 1000);
    }
}
