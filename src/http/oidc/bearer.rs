//! Checking tokens presented back to the server (introspection, userinfo, revocation):
//! signature, kind, expiry, and whether the session or grant behind the token is still alive.
//! Access tokens are verified with the realm's published keys; refresh tokens only with the
//! realm's private HMAC key (so neither kind can pass for the other). Revocation and logout
//! show at once: they wait for the read model before answering.
use super::issue::refresh_key;
use crate::http::AppState;
use crate::jwt::{self, Expect};
use crate::oidc::{issuer, tokens};
use crate::store::ReadUntil;
use actix_web::web::Bytes;
use annals_events::{StreamId, StreamType};
use annals_projections::clients::ClientDirectory;
use annals_projections::realms::RealmView;
use annals_projections::sessions::Sessions;
use annals_projections::signing_keys::KeyStatus;
use annals_projections::Projection;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

/// What a token turned out to be.
pub enum Checked {
    /// Shared with the cache of verified tokens (a copy per use was 2% of an introspection).
    Access(Arc<AccessToken>),
    Refresh(Value),
}

impl Checked {
    pub fn claims(&self) -> &Value {
        match self {
            Checked::Access(c) => &c.claims,
            Checked::Refresh(c) => c,
        }
    }
}

/// A verified access token's claims, and what is derived from them alone once.
pub struct AccessToken {
    pub claims: Value,
    /// The active introspection answer: a function of the claims, so written once per token
    /// rather than per introspection (serializing it was 4% of one).
    introspection: OnceLock<Bytes>,
}

impl AccessToken {
    fn new(claims: Value) -> Arc<Self> {
        Arc::new(AccessToken { claims, introspection: OnceLock::new() })
    }

    /// The introspection body, written by `write` the first time it is asked for.
    pub fn introspection(&self, write: impl FnOnce(&Value) -> Vec<u8>) -> Bytes {
        self.introspection.get_or_init(|| Bytes::from(write(&self.claims))).clone()
    }
}

/// Verifies a token of this realm and returns its claims when it is active now; `None` for
/// anything else (forged, expired, revoked, another kind, a dead session).
pub async fn active(state: &AppState, realm: &RealmView, token: &str) -> Option<Checked> {
    let checked = verified(state, realm, token)?;
    if let Some(alive) = liveness(state, realm, &checked) {
        return alive.then_some(checked);
    }
    // A session this node's read model does not know: it may have started a moment ago (a
    // token is answered once its session is durable, not once every read model folded it),
    // so a resource server introspecting a fresh token must not be told it is dead. For a
    // token issued in the last few seconds, wait (briefly) for the model to reach this node's
    // durable head, then decide. An older token's unknown session has ended: nothing waits.
    let issued = checked.claims().get("iat").and_then(Value::as_i64).unwrap_or(0);
    if state.clock.now().timestamp() - issued > FRESH_SECONDS {
        return None;
    }
    let head = *state.store.watch_head().borrow();
    if state.read_models.healthy() && state.read_models.position() < head {
        let _ = state.read_models.wait_for(head, FRESH_WAIT).await;
    }
    if let Some(alive) = liveness(state, realm, &checked) {
        return alive.then_some(checked);
    }
    // Still unknown: a session another node started, whose commit has not reached this
    // node's head yet (its NOTIFY is on the way), or a read model that is stopped. The token
    // exists, so the node that issued it had made the session durable before answering: its
    // stream is read from the database and judged on its own.
    let sid = tokens::session_stream(checked.claims())?;
    let stream = StreamId::new(StreamType::Session, sid);
    let events = match state.store.read_stream(&stream, 0, ReadUntil::Version(MAX_LOOKED_UP + 1)).await {
        Ok(events) => events,
        Err(e) => {
            tracing::warn!(error = %e, "session stream cannot be read; the token reads as inactive");
            return None;
        }
    };
    // A session just started elsewhere has a few events; a long one is one this node's model
    // should hold (it is stopped or far behind): not worth reading whole on every request.
    if events.len() as u64 > MAX_LOOKED_UP {
        return None;
    }
    let mut sessions = Sessions::default();
    for e in &events {
        sessions.apply(e, &e.decode().ok()?);
    }
    let now = state.clock.now().timestamp();
    let alive = judge(&sessions, &state.read_models.read().clients, realm, &checked, now);
    alive.unwrap_or(false).then_some(checked)
}

/// How old a token may be for its unknown session to be worth waiting for.
const FRESH_SECONDS: i64 = 5;
/// The longest a request waits for the read model to fold a fresh token's session.
const FRESH_WAIT: std::time::Duration = std::time::Duration::from_millis(500);
/// The most events of an unknown session read from the log to judge a fresh token.
const MAX_LOOKED_UP: u64 = 1_000;

/// Whether a verified token's session or grant is alive and the token not revoked; `None`
/// when the token names a session or client the read model does not hold (not folded yet,
/// or a session that ended over a minute ago).
fn liveness(state: &AppState, realm: &RealmView, checked: &Checked) -> Option<bool> {
    let now = state.clock.now().timestamp();
    let dir = state.read_models.read();
    judge(&dir.sessions, &dir.clients, realm, checked, now)
}

/// [`liveness`] as these sessions and clients say.
fn judge(
    sessions: &Sessions,
    clients: &ClientDirectory,
    realm: &RealmView,
    checked: &Checked,
    now: i64,
) -> Option<bool> {
    let c = checked.claims();
    let Some(jti) = c.get("jti").and_then(Value::as_str) else { return Some(false) };
    // The client must be enabled (as Keycloak checks): a disabled client's tokens stop
    // working. One the model does not hold is unknown like a session (created elsewhere a
    // moment ago, or deleted: a fresh token is then looked up, an older one is refused).
    let azp = c.get("azp").and_then(Value::as_str).unwrap_or_default();
    let client = clients.by_client_id(&realm.id, azp)?;
    if !client.settings.enabled {
        return Some(false);
    }
    // Issued to another client of this `client_id`, deleted since: not this one's token.
    // (Tokens from before the claim existed carry none and are judged by `azp` alone.)
    if c.get(tokens::CLIENT_UUID).and_then(Value::as_str).is_some_and(|u| u != client.id) {
        return Some(false);
    }
    let client = client.id.as_str();
    let alive = match tokens::session_stream(c) {
        Some(sid) => match sessions.alive(sid, now).filter(|s| s.realm_id == realm.id) {
            None if sessions.get(sid).is_none() && !sessions.ended(sid) => return None,
            None => false,
            Some(s) => match checked {
                Checked::Access(_) => {
                    // A token without `sv` predates every cutoff.
                    let version = c.get("sv").and_then(Value::as_u64).unwrap_or(0);
                    !sessions.token_revoked(s, jti, client, version)
                }
                Checked::Refresh(_) => sessions.refresh_current(s, client, jti),
            },
        },
        // Client-credentials tokens have no session: only revocation ends them early.
        None => matches!(checked, Checked::Access(_)) && !sessions.grant_revoked(jti),
    };
    Some(alive)
}

/// Verifies signature, issuer, expiry and kind, without asking whether it was revoked.
pub fn verified(state: &AppState, realm: &RealmView, token: &str) -> Option<Checked> {
    if token.len() > jwt::MAX_TOKEN {
        return None;
    }
    let iss = issuer(&state.base_url, &realm.name);
    let now = state.clock.now();
    // Only verified access tokens are cached, so a hit needs no header decoded.
    if let Some(claims) = state.verified_tokens.get(state, realm, &iss, token) {
        return Some(Checked::Access(claims));
    }
    let alg = jsonwebtoken::decode_header(token).ok()?.alg;
    if alg == jsonwebtoken::Algorithm::HS512 {
        let expect =
            Expect { realm_id: &realm.id, issuer: &iss, typ: "JWT", audience: Some(&iss), now, allow_expired: false };
        let c: Value = jwt::verify_hmac(token, &refresh_key(state, realm), &expect).ok()?;
        let refresh = matches!(c.get("typ").and_then(Value::as_str), Some("Refresh" | "Offline"));
        return refresh.then_some(Checked::Refresh(c));
    }
    // The header `typ` is `at+jwt` for RFC 9068 access tokens, `JWT` otherwise.
    for typ in ["JWT", "at+jwt"] {
        let expect = Expect { realm_id: &realm.id, issuer: &iss, typ, audience: None, now, allow_expired: false };
        let claims: Result<Value, _> = {
            let dir = state.read_models.read();
            jwt::verify(token, |kid| dir.signing_keys.get(kid), &expect)
        };
        match claims {
            Ok(c) if c.get("typ").and_then(Value::as_str) == Some("Bearer") => {
                let c = AccessToken::new(c);
                state.verified_tokens.put(realm, token, &c);
                return Some(Checked::Access(c));
            }
            Ok(_) => return None,
            Err(crate::jwt::JwtError::Refused(r)) if r == "wrong token type" => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Access tokens whose signature was verified, by SHA-256 of the token, until they expire: a
/// resource server introspects the same token many times, and the signature check is most of
/// the cost. Everything else (expiry, the key still published, the session alive, the token not
/// revoked) is checked on every use.
#[derive(Clone, Default)]
pub struct VerifiedTokens {
    cache: Arc<RwLock<HashMap<[u8; 32], Verified>>>,
}

struct Verified {
    realm_id: String,
    issuer: String,
    kid: String,
    exp: i64,
    claims: Arc<AccessToken>,
}

/// Entries kept at most; the cache is emptied when full (a miss only costs a verification).
/// An entry holds the claims and, once introspected, its answer (about twice the claims).
const MAX_VERIFIED: usize = 100_000;

impl VerifiedTokens {
    fn get(&self, state: &AppState, realm: &RealmView, issuer: &str, token: &str) -> Option<Arc<AccessToken>> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        let v = cache.get(&key)?;
        let now = state.clock.now().timestamp();
        if v.realm_id != realm.id || v.exp <= now || v.issuer != issuer {
            return None;
        }
        let dir = state.read_models.read();
        let published = dir.signing_keys.get(&v.kid).is_some_and(|k| match k.status {
            KeyStatus::Active => true,
            KeyStatus::Retired { publish_until } => publish_until > now,
        });
        published.then(|| v.claims.clone())
    }

    fn put(&self, realm: &RealmView, token: &str, claims: &Arc<AccessToken>) {
        let (Some(exp), Ok(header)) =
            (claims.claims.get("exp").and_then(Value::as_i64), jsonwebtoken::decode_header(token))
        else {
            return;
        };
        let Some(kid) = header.kid else { return };
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_VERIFIED {
            cache.clear();
        }
        let issuer = claims.claims.get("iss").and_then(Value::as_str).unwrap_or_default().to_string();
        cache.insert(key, Verified { realm_id: realm.id.clone(), issuer, kid, exp, claims: claims.clone() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals_events::client::{ClientCreated, ClientEvent, ClientSettings, ClientSettingsChanged};
    use annals_events::session::{SessionEvent, SessionLoggedOut, SessionStarted};
    use annals_events::{DomainEvent, RecordedEvent};
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn recorded(kind: StreamType, id: &str, at: i64, e: DomainEvent) -> (RecordedEvent, DomainEvent) {
        let r = RecordedEvent {
            event_id: uuid::Uuid::now_v7(),
            stream: StreamId::new(kind, id),
            version: 1,
            position: 1,
            recorded_at: chrono::DateTime::from_timestamp(at, 0).unwrap_or_default(),
            event_type: e.event_type().into(),
            schema_version: 1,
            payload: String::new(),
            metadata: String::new(),
            prev_hash: [0; 32],
            hash: [0; 32],
        };
        (r, e)
    }

    fn started() -> DomainEvent {
        DomainEvent::Session(SessionEvent::from(SessionStarted {
            realm_id: "r".into(),
            user_id: "u".into(),
            method: "pwd".into(),
            acr: "1".into(),
            auth_time: NOW - 10,
            idle_timeout: 1_800,
            max_lifespan: 36_000,
            offline_from: None,
            started_at: None,
        }))
    }

    fn client(enabled: bool) -> DomainEvent {
        let settings = ClientSettings { enabled, ..Default::default() };
        DomainEvent::Client(ClientEvent::from(ClientCreated {
            realm_id: "r".into(),
            client_id: "web".into(),
            settings,
            secret: None,
            sealed_secret: None,
            extra: Default::default(),
        }))
    }

    fn realm() -> RealmView {
        RealmView { id: "r".into(), name: "demo".into(), settings: Default::default(), extra: Default::default() }
    }

    fn access(sid: &str) -> Checked {
        Checked::Access(AccessToken::new(json!({ "jti": "at-1", "azp": "web", "sid": sid, "sv": 1 })))
    }

    /// Sessions and clients folded from these events.
    fn given(events: Vec<(StreamType, &str, i64, DomainEvent)>) -> (Sessions, ClientDirectory) {
        let (mut sessions, mut clients) = (Sessions::default(), ClientDirectory::default());
        for (kind, id, at, e) in events {
            let (r, e) = recorded(kind, id, at, e);
            sessions.apply(&r, &e);
            clients.apply(&r, &e);
        }
        (sessions, clients)
    }

    #[test]
    fn given_a_session_never_seen_when_its_token_is_judged_then_it_is_unknown() {
        let (sessions, clients) = given(vec![(StreamType::Client, "c1", NOW, client(true))]);
        assert_eq!(judge(&sessions, &clients, &realm(), &access("s1"), NOW), None, "looked up in the log");
    }

    #[test]
    fn given_a_session_logged_out_when_its_token_is_judged_then_it_is_dead_not_unknown() {
        let logged_out =
            DomainEvent::Session(SessionEvent::from(SessionLoggedOut { client: None, clients: vec![], at: NOW - 1 }));
        let (mut sessions, clients) = given(vec![
            (StreamType::Client, "c1", NOW - 20, client(true)),
            (StreamType::Session, "s1", NOW - 10, started()),
        ]);
        assert_eq!(judge(&sessions, &clients, &realm(), &access("s1"), NOW), Some(true));
        let (r, e) = recorded(StreamType::Session, "s1", NOW - 1, logged_out);
        sessions.apply(&r, &e);
        assert_eq!(judge(&sessions, &clients, &realm(), &access("s1"), NOW), Some(false), "no log lookup");
        // Remembered a minute: by then no token of it is fresh.
        sessions.sweep(NOW - 1 + annals_projections::sessions::ENDED_KEPT);
        assert_eq!(judge(&sessions, &clients, &realm(), &access("s1"), NOW), None);
    }

    #[test]
    fn given_the_client_disabled_or_unknown_when_its_token_is_judged_then_it_is_dead_or_unknown() {
        let disabled = DomainEvent::Client(ClientEvent::from(ClientSettingsChanged {
            settings: ClientSettings { enabled: false, ..Default::default() },
            extra: Default::default(),
        }));
        let (sessions, clients) = given(vec![
            (StreamType::Client, "c1", NOW - 20, client(true)),
            (StreamType::Session, "s1", NOW - 10, started()),
            (StreamType::Client, "c1", NOW - 5, disabled),
        ]);
        assert_eq!(judge(&sessions, &clients, &realm(), &access("s1"), NOW), Some(false));
        let (sessions, clients) = given(vec![(StreamType::Session, "s1", NOW - 10, started())]);
        assert_eq!(judge(&sessions, &clients, &realm(), &access("s1"), NOW), None, "no such client here: unknown");
        let grant = Checked::Access(AccessToken::new(json!({ "jti": "cc-1", "azp": "web" })));
        assert_eq!(judge(&sessions, &clients, &realm(), &grant, NOW), None, "nor its grants");
    }

    #[test]
    fn given_a_client_id_reused_after_deletion_when_a_token_of_the_old_client_is_judged_then_it_is_dead() {
        let deleted = DomainEvent::Client(ClientEvent::from(annals_events::client::ClientDeleted {}));
        let (sessions, clients) = given(vec![
            (StreamType::Client, "c1", NOW - 100, client(true)),
            (StreamType::Session, "s1", NOW - 90, started()),
            (StreamType::Client, "c1", NOW - 50, deleted),
            (StreamType::Client, "c2", NOW - 50, client(true)),
        ]);
        let session_token = |uuid: &str| {
            Checked::Access(AccessToken::new(
                json!({ "jti": "at-1", "azp": "web", "sid": "s1", "sv": 1, tokens::CLIENT_UUID: uuid }),
            ))
        };
        let grant = |uuid: &str| {
            Checked::Access(AccessToken::new(json!({ "jti": "cc-1", "azp": "web", tokens::CLIENT_UUID: uuid })))
        };
        assert_eq!(judge(&sessions, &clients, &realm(), &session_token("c1"), NOW), Some(false));
        assert_eq!(judge(&sessions, &clients, &realm(), &grant("c1"), NOW), Some(false), "nor its grants");
        assert_eq!(judge(&sessions, &clients, &realm(), &session_token("c2"), NOW), Some(true), "the new one's");
        assert_eq!(judge(&sessions, &clients, &realm(), &grant("c2"), NOW), Some(true));
        assert_eq!(judge(&sessions, &clients, &realm(), &access("s1"), NOW), Some(true), "older tokens name none");
    }
}
