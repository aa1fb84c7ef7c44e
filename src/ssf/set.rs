//! Security Event Tokens (RFC 8417) for the CAEP and RISC events Annals' log holds. Pure:
//! an event and its stream's context in, the security event (type, subject, payload) out;
//! the claims set then names issuer, audience and id.
use annals_events::session::SessionEvent;
use annals_events::user::UserEvent;
use annals_events::DomainEvent;
use serde_json::{json, Value};

pub const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
pub const CREDENTIAL_CHANGE: &str = "https://schemas.openid.net/secevent/caep/event-type/credential-change";
pub const ACCOUNT_DISABLED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
pub const ACCOUNT_PURGED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-purged";

/// The stream verification event (SSF 1.0 §8.1.4): always delivered, to its own stream only.
pub const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";

/// The verification SET of a stream: its subject is the stream.
pub fn verification(stream_id: &str, state: Option<&str>) -> SecurityEvent {
    let mut payload = json!({});
    if let Some(s) = state {
        payload["state"] = s.into();
    }
    SecurityEvent { uri: VERIFICATION, subject: json!({ "format": "opaque", "id": stream_id }), payload }
}

/// Every event type a stream can ask for (and is delivered only if it asks).
pub const SUPPORTED: [&str; 4] = [SESSION_REVOKED, CREDENTIAL_CHANGE, ACCOUNT_DISABLED, ACCOUNT_PURGED];

/// The JOSE `typ` of a SET (RFC 8417 §2.3).
pub const TYP: &str = "secevent+jwt";

/// One security event about one subject.
#[derive(Clone, Debug, PartialEq)]
pub struct SecurityEvent {
    pub uri: &'static str,
    pub subject: Value,
    pub payload: Value,
}

/// What the audit projection knows of an event's stream.
pub struct Context<'a> {
    pub issuer: &'a str,
    pub user_id: Option<&'a str>,
    pub session_id: Option<&'a str>,
    /// The user acted for themselves (a password they changed), not an administrator.
    pub by_user: bool,
    /// Epoch seconds.
    pub time: i64,
}

fn iss_sub(issuer: &str, user: &str) -> Value {
    json!({ "format": "iss_sub", "iss": issuer, "sub": user })
}

/// The security event `decoded` is, if it is one.
pub fn of(decoded: &DomainEvent, ctx: &Context) -> Option<SecurityEvent> {
    let user = ctx.user_id?;
    let subject = iss_sub(ctx.issuer, user);
    let entity = if ctx.by_user { "user" } else { "admin" };
    let (uri, subject, payload) = match decoded {
        DomainEvent::Session(e @ (SessionEvent::LoggedOut(_) | SessionEvent::Revoked(_))) => {
            let session = ctx.session_id?;
            let (initiating_entity, reason) = match e {
                SessionEvent::Revoked(r) if r.reason == "refresh_token_reused" => ("policy", r.reason.as_str()),
                SessionEvent::Revoked(r) => ("admin", r.reason.as_str()),
                _ => ("user", "logout"),
            };
            let subject =
                json!({ "format": "complex", "user": subject, "session": { "format": "opaque", "id": session } });
            let payload = json!({ "initiating_entity": initiating_entity, "reason_admin": { "en": reason } });
            (SESSION_REVOKED, subject, payload)
        }
        DomainEvent::User(UserEvent::PasswordSet(_)) => (
            CREDENTIAL_CHANGE,
            subject,
            json!({ "credential_type": "password", "change_type": "update", "initiating_entity": entity }),
        ),
        DomainEvent::User(UserEvent::ProfileChanged(p)) if !p.profile.enabled => {
            (ACCOUNT_DISABLED, subject, json!({ "initiating_entity": entity }))
        }
        DomainEvent::User(UserEvent::ProfileChanged(_)) => return None,
        DomainEvent::User(UserEvent::Deleted(_)) => (ACCOUNT_PURGED, subject, json!({})),
        _ => return None,
    };
    let mut payload = payload;
    payload["event_timestamp"] = ctx.time.into();
    Some(SecurityEvent { uri, subject, payload })
}

/// The SET claims (RFC 8417 §2.2, SSF 1.0 §4): `jti` is the event's id, so a SET delivered
/// twice is the same SET.
pub fn claims(ev: &SecurityEvent, iss: &str, aud: &str, jti: &str, iat: i64, txn: Option<&str>) -> Value {
    let mut c = json!({
        "iss": iss,
        "aud": aud,
        "jti": jti,
        "iat": iat,
        "sub_id": ev.subject,
        "events": { ev.uri: ev.payload },
    });
    if let Some(t) = txn {
        c["txn"] = t.into();
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals_events::session::{SessionLoggedOut, SessionRevoked};
    use annals_events::user::{UserDeleted, UserProfile, UserProfileChanged};

    fn ctx<'a>(session: Option<&'a str>) -> Context<'a> {
        Context {
            issuer: "https://idp/realms/demo",
            user_id: Some("u-1"),
            session_id: session,
            by_user: false,
            time: 1_800,
        }
    }

    #[test]
    fn a_revoked_session_is_a_caep_session_revoked_about_the_user_and_the_session() {
        let revoked: DomainEvent =
            SessionEvent::from(SessionRevoked { reason: "refresh_token_reused".into(), clients: vec![], at: 1 }).into();
        let ev = of(&revoked, &ctx(Some("s-1"))).unwrap();
        assert_eq!(ev.uri, SESSION_REVOKED);
        assert_eq!(ev.subject["format"], "complex");
        assert_eq!(ev.subject["user"], json!({"format": "iss_sub", "iss": "https://idp/realms/demo", "sub": "u-1"}));
        assert_eq!(ev.subject["session"]["id"], "s-1");
        assert_eq!(
            (ev.payload["initiating_entity"].as_str(), ev.payload["event_timestamp"].as_i64()),
            (Some("policy"), Some(1_800))
        );
        let logout: DomainEvent = SessionEvent::from(SessionLoggedOut { client: None, clients: vec![], at: 1 }).into();
        assert_eq!(of(&logout, &ctx(Some("s-1"))).unwrap().payload["initiating_entity"], "user");
        assert!(of(&logout, &ctx(None)).is_none(), "no session, no event");
    }

    #[test]
    fn account_changes_are_risc_events_and_other_events_are_none() {
        let disabled: DomainEvent =
            UserEvent::from(UserProfileChanged { profile: UserProfile { enabled: false, ..Default::default() } })
                .into();
        assert_eq!(of(&disabled, &ctx(None)).unwrap().uri, ACCOUNT_DISABLED);
        let enabled: DomainEvent =
            UserEvent::from(UserProfileChanged { profile: UserProfile { enabled: true, ..Default::default() } }).into();
        assert!(of(&enabled, &ctx(None)).is_none(), "a profile edit of an enabled user is no security event");
        let purged: DomainEvent = UserEvent::from(UserDeleted {}).into();
        let ev = of(&purged, &ctx(None)).unwrap();
        assert_eq!(ev.uri, ACCOUNT_PURGED);
        let c = claims(&ev, "https://idp/realms/demo", "receiver", "jti-1", 1_800, Some("corr"));
        assert_eq!(c["events"][ACCOUNT_PURGED]["event_timestamp"], 1_800);
        assert_eq!(
            (c["aud"].as_str(), c["jti"].as_str(), c["txn"].as_str()),
            (Some("receiver"), Some("jti-1"), Some("corr"))
        );
        let no_user = Context { user_id: None, ..ctx(None) };
        assert!(of(&purged, &no_user).is_none());
    }
}
