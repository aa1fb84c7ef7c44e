//! What a stream's earlier events said about who and where: an audit record names the realm,
//! client, user and session even when its own payload does not (an authorization request's
//! `authenticated` event names no client; a session's `logged_out` names no user).
use annals_events::auth_request::AuthRequestEvent;
use annals_events::client_grant::ClientGrantEvent;
use annals_events::logout_delivery::LogoutDeliveryEvent;
use annals_events::session::SessionEvent;
use annals_events::{DomainEvent, StreamId, StreamType};

/// The parties a stream is about, as known after some of its events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamContext {
    pub realm_id: Option<String>,
    /// The client's internal id.
    pub client: Option<String>,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    /// An offline session: the SSO session it came from, which its tokens name as `sid`.
    pub offline_from: Option<String>,
    /// For streams about a source address (brute-force counting per address).
    pub address: Option<String>,
}

impl StreamContext {
    /// What the stream's id alone tells (before any event).
    pub fn of(stream: &StreamId) -> Self {
        let id = Some(stream.id.clone());
        match stream.kind {
            StreamType::Realm => StreamContext { realm_id: id, ..Default::default() },
            StreamType::Client => StreamContext { client: id, ..Default::default() },
            StreamType::User => StreamContext { user_id: id, ..Default::default() },
            StreamType::Session => StreamContext { session_id: id, ..Default::default() },
            // `{realm}:user:{id}` or `{realm}:ip:{address}` (the address may hold colons).
            StreamType::LoginFailures => match stream.id.split_once(':') {
                Some((realm, rest)) => {
                    let realm_id = Some(realm.to_string());
                    if let Some(user) = rest.strip_prefix("user:") {
                        StreamContext { realm_id, user_id: Some(user.to_string()), ..Default::default() }
                    } else if let Some(address) = rest.strip_prefix("ip:") {
                        StreamContext { realm_id, address: Some(address.to_string()), ..Default::default() }
                    } else {
                        StreamContext { realm_id, ..Default::default() }
                    }
                }
                None => StreamContext::default(),
            },
            _ => StreamContext::default(),
        }
    }

    /// Folds one event of the stream: fields once known stay known.
    pub fn apply(&mut self, event: &DomainEvent) {
        use annals_events::client::ClientEvent;
        use annals_events::group::GroupEvent;
        use annals_events::role::RoleEvent;
        use annals_events::signing_key::SigningKeyEvent;
        use annals_events::user::UserEvent;
        match event {
            DomainEvent::AuthRequest(AuthRequestEvent::Started(e)) => {
                self.realm_id = Some(e.realm_id.clone());
                self.client = Some(e.client.clone());
            }
            // Each attempt names its own user (or none, for an unknown name): a failure for
            // "nobody" after one for alice must not be reported as alice's.
            DomainEvent::AuthRequest(AuthRequestEvent::CredentialsRejected(e)) => {
                self.user_id.clone_from(&e.user_id);
            }
            DomainEvent::AuthRequest(AuthRequestEvent::Authenticated(e)) => {
                self.user_id = Some(e.user_id.clone());
                self.session_id = Some(e.session_id.clone());
            }
            DomainEvent::AuthRequest(AuthRequestEvent::CodeRedeemed(e)) => {
                self.session_id = Some(e.session_id.clone());
            }
            DomainEvent::Session(SessionEvent::Started(e)) => {
                self.realm_id = Some(e.realm_id.clone());
                self.user_id = Some(e.user_id.clone());
                self.offline_from.clone_from(&e.offline_from);
            }
            DomainEvent::ClientGrant(ClientGrantEvent::Issued(e)) => {
                self.realm_id = Some(e.realm_id.clone());
                self.client = Some(e.client.clone());
                self.user_id.clone_from(&e.user_id);
            }
            DomainEvent::ClientAssertion(annals_events::client_assertion::ClientAssertionEvent::Used(e)) => {
                self.realm_id = Some(e.realm_id.clone());
                self.client = Some(e.client.clone());
            }
            DomainEvent::LogoutDelivery(LogoutDeliveryEvent::Delivered(e)) => {
                (self.realm_id, self.session_id, self.client) =
                    (Some(e.realm_id.clone()), Some(e.session_id.clone()), Some(e.client.clone()));
            }
            DomainEvent::LogoutDelivery(LogoutDeliveryEvent::Failed(e)) => {
                (self.realm_id, self.session_id, self.client) =
                    (Some(e.realm_id.clone()), Some(e.session_id.clone()), Some(e.client.clone()));
            }
            DomainEvent::Client(ClientEvent::Created(e)) => self.realm_id = Some(e.realm_id.clone()),
            DomainEvent::User(UserEvent::Created(e)) => self.realm_id = Some(e.realm_id.clone()),
            DomainEvent::Role(RoleEvent::Created(e)) => {
                self.realm_id = Some(e.realm_id.clone());
                // A client role: its client is what the role's events are about.
                self.client.clone_from(&e.client_id);
            }
            DomainEvent::Group(GroupEvent::Created(e)) => self.realm_id = Some(e.realm_id.clone()),
            DomainEvent::SigningKey(SigningKeyEvent::Generated(e)) => self.realm_id = Some(e.realm_id.clone()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::tests::started;
    use annals_events::auth_request::AuthRequestAuthenticated;

    #[test]
    fn an_authorization_request_learns_its_user_and_session_when_authenticated() {
        // given a started request
        let mut ctx = StreamContext::of(&StreamId::new(StreamType::AuthRequest, "a1"));
        ctx.apply(&started());
        assert_eq!(ctx.client.as_deref(), Some("c-internal"));
        assert_eq!(ctx.user_id, None);
        // when the user authenticates
        ctx.apply(&DomainEvent::AuthRequest(AuthRequestEvent::Authenticated(AuthRequestAuthenticated {
            user_id: "u1".into(),
            session_id: "s1".into(),
            method: "pwd".into(),
            auth_time: 0,
            at: 0,
        })));
        // then realm and client stay and user and session are known
        assert_eq!(ctx.realm_id.as_deref(), Some("r1"));
        assert_eq!(ctx.client.as_deref(), Some("c-internal"));
        assert_eq!(ctx.user_id.as_deref(), Some("u1"));
        assert_eq!(ctx.session_id.as_deref(), Some("s1"));
    }

    #[test]
    fn an_offline_session_remembers_the_sso_session_its_tokens_name() {
        use annals_events::session::{SessionRevoked, SessionStarted};
        // given an offline session started from SSO session s1
        let mut ctx = StreamContext::of(&StreamId::new(StreamType::Session, "off1"));
        ctx.apply(&DomainEvent::Session(SessionEvent::Started(SessionStarted {
            realm_id: "r1".into(),
            user_id: "u1".into(),
            method: "pwd".into(),
            acr: "1".into(),
            auth_time: 0,
            idle_timeout: 60,
            max_lifespan: 60,
            offline_from: Some("s1".into()),
            started_at: None,
        })));
        // when it is revoked
        ctx.apply(&DomainEvent::Session(SessionEvent::Revoked(SessionRevoked {
            reason: "refresh_token_reused".into(),
            clients: vec![],
            at: 1,
        })));
        // then it is still the session off1, started from s1
        assert_eq!(ctx.session_id.as_deref(), Some("off1"));
        assert_eq!(ctx.offline_from.as_deref(), Some("s1"));
    }

    #[test]
    fn each_rejected_attempt_names_its_own_user_or_none() {
        use annals_events::auth_request::AuthRequestCredentialsRejected;
        let rejected = |user: Option<&str>| {
            DomainEvent::AuthRequest(AuthRequestEvent::CredentialsRejected(AuthRequestCredentialsRejected {
                username: "x".into(),
                user_id: user.map(str::to_string),
                reason: "invalid_user_credentials".into(),
                at: 0,
            }))
        };
        // given a failure as alice
        let mut ctx = StreamContext::of(&StreamId::new(StreamType::AuthRequest, "a1"));
        ctx.apply(&started());
        ctx.apply(&rejected(Some("alice")));
        assert_eq!(ctx.user_id.as_deref(), Some("alice"));
        // when the next attempt names nobody known
        ctx.apply(&rejected(None));
        // then the record of that attempt names no user
        assert_eq!(ctx.user_id, None);
    }

    #[test]
    fn brute_force_streams_name_realm_and_user_or_address_by_their_id() {
        let user = StreamContext::of(&StreamId::new(StreamType::LoginFailures, "r1:user:u1"));
        assert_eq!((user.realm_id.as_deref(), user.user_id.as_deref()), (Some("r1"), Some("u1")));
        let ip = StreamContext::of(&StreamId::new(StreamType::LoginFailures, "r1:ip:::1"));
        assert_eq!((ip.realm_id.as_deref(), ip.address.as_deref()), (Some("r1"), Some("::1")));
    }
}
