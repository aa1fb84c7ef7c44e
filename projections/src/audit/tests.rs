//! Given a stream's events, when each becomes an audit record, then it reads as Keycloak's
//! event listener would report it and carries nothing secret.
use super::*;
use annals_events::auth_request::*;
use annals_events::client::*;
use annals_events::session::*;
use annals_events::signing_key::*;
use annals_events::user::*;
use annals_events::{StreamId, StreamType};

struct Known;
impl Names for Known {
    fn realm_name(&self, realm_id: &str) -> Option<String> {
        (realm_id == "r1").then(|| "acme".to_string())
    }
    fn client_id(&self, client: &str) -> Option<String> {
        (client == "c-internal").then(|| "web".to_string())
    }
}

fn user_meta(ip: &str) -> Metadata {
    Metadata {
        realm: Some("r1".into()),
        actor: Actor::User { id: "u1".into(), realm: "r1".into() },
        source_ip: Some(ip.into()),
        ..Default::default()
    }
}

fn admin_meta() -> Metadata {
    Metadata {
        realm: Some("r1".into()),
        actor: Actor::Admin { user_id: "a1".into(), realm: "master".into() },
        ..Default::default()
    }
}

/// Records a stream's events in order, folding its context as the audit runner does.
fn records(kind: StreamType, id: &str, events: Vec<(DomainEvent, Metadata)>) -> Vec<AuditRecord> {
    let stream = StreamId::new(kind, id);
    let mut ctx = StreamContext::of(&stream);
    events
        .into_iter()
        .enumerate()
        .map(|(i, (e, meta))| {
            let r = RecordedEvent {
                event_id: uuid::Uuid::now_v7(),
                stream: stream.clone(),
                version: i as u64 + 1,
                position: 100 + i as u64,
                recorded_at: chrono::DateTime::from_timestamp(1_800_000_000 + i as i64, 0).unwrap_or_default(),
                event_type: e.event_type().into(),
                schema_version: e.schema_version(),
                payload: e.payload().map(|p| p.to_string()).unwrap_or_default(),
                metadata: serde_json::to_string(&meta).unwrap_or_default(),
                prev_hash: [0; 32],
                hash: [0xab; 32],
            };
            ctx.apply(&e);
            record(&r, &e, &meta, &ctx, &Known)
        })
        .collect()
}

/// An authorization request of client `web` (internal id `c-internal`) in realm `r1`.
pub(super) fn started() -> DomainEvent {
    AuthRequestEvent::from(AuthRequestStarted {
        realm_id: "r1".into(),
        client: "c-internal".into(),
        client_id: "web".into(),
        redirect_uri: "https://app.example/cb".into(),
        response_type: "code".into(),
        response_mode: "query".into(),
        scope: "openid".into(),
        state: Some("state-value".into()),
        nonce: Some("nonce-value".into()),
        code_challenge: Some("challenge-value".into()),
        code_challenge_method: Some("S256".into()),
        prompt: vec![],
        max_age: None,
        login_hint: None,
        acr_values: None,
        expires_at: 0,
        at: 0,
    })
    .into()
}

#[test]
fn a_failed_then_successful_login_reads_as_keycloak_reports_it() {
    // given an authorization request, a wrong password, then the right one and a code
    let out = records(
        StreamType::AuthRequest,
        "a1",
        vec![
            (started(), user_meta("203.0.113.9")),
            (
                AuthRequestEvent::from(AuthRequestCredentialsRejected {
                    username: "alice".into(),
                    user_id: Some("u1".into()),
                    reason: "invalid_user_credentials".into(),
                    at: 0,
                })
                .into(),
                user_meta("203.0.113.9"),
            ),
            (
                AuthRequestEvent::from(AuthRequestAuthenticated {
                    user_id: "u1".into(),
                    session_id: "s1".into(),
                    method: "pwd".into(),
                    auth_time: 5,
                    at: 5,
                })
                .into(),
                user_meta("203.0.113.9"),
            ),
            (
                AuthRequestEvent::from(AuthRequestCodeIssued {
                    code_hash: "code-hash-value".into(),
                    expires_at: 60,
                    at: 5,
                })
                .into(),
                user_meta("203.0.113.9"),
            ),
        ],
    );
    // then: no Keycloak event for the start, LOGIN_ERROR with its error, LOGIN with session
    assert_eq!(out[0].r#type, None);
    assert_eq!(out[0].annals_type, "auth_request.started");
    assert_eq!(out[0].client_id.as_deref(), Some("web"), "internal client id resolved to clientId");
    assert_eq!(out[0].realm_name.as_deref(), Some("acme"));
    assert_eq!(out[1].r#type, Some("LOGIN_ERROR"));
    assert_eq!(out[1].outcome, Outcome::Failure);
    assert_eq!(out[1].error.as_deref(), Some("invalid_user_credentials"));
    assert_eq!(out[1].details.get("username").map(String::as_str), Some("alice"));
    assert_eq!(out[2].r#type, Some("LOGIN"));
    assert_eq!(out[2].kind, "user");
    assert_eq!(out[2].user_id.as_deref(), Some("u1"));
    assert_eq!(out[2].session_id.as_deref(), Some("s1"));
    assert_eq!(out[2].client_id.as_deref(), Some("web"));
    assert_eq!(out[2].ip_address.as_deref(), Some("203.0.113.9"));
    assert_eq!(out[2].position, 102);
    assert_eq!(out[2].hash, "ab".repeat(32));
    // and the code's hash, state, nonce and PKCE challenge reach no record
    let text = serde_json::to_string(&out).unwrap_or_default();
    for secret in ["code-hash-value", "state-value", "nonce-value", "challenge-value"] {
        assert!(!text.contains(secret), "{secret} leaked into {text}");
    }
}

#[test]
fn a_refresh_is_refresh_token_and_a_reused_refresh_token_is_a_critical_error() {
    // given a session, a code redemption's tokens, a refresh, then reuse of a rotated token
    let issued = |grant: &str, replaces: Option<&str>| -> DomainEvent {
        SessionEvent::from(SessionTokensIssued {
            client: "c-internal".into(),
            grant: grant.into(),
            access_token_id: Some("at1".into()),
            id_token_id: None,
            refresh_token_id: Some("rt2".into()),
            replaces: replaces.map(str::to_string),
            scope: "openid".into(),
            expires_at: 0,
            at: 0,
        })
        .into()
    };
    let out = records(
        StreamType::Session,
        "s1",
        vec![
            (
                SessionEvent::from(SessionStarted {
                    realm_id: "r1".into(),
                    user_id: "u1".into(),
                    method: "pwd".into(),
                    acr: "1".into(),
                    auth_time: 0,
                    idle_timeout: 1800,
                    max_lifespan: 36000,
                    offline_from: None,
                    started_at: None,
                })
                .into(),
                user_meta("198.51.100.1"),
            ),
            (issued("authorization_code", None), user_meta("198.51.100.1")),
            (issued("refresh_token", Some("rt1")), user_meta("198.51.100.1")),
            (
                SessionEvent::from(SessionRefreshReused {
                    client: "c-internal".into(),
                    refresh_token_id: "rt1".into(),
                    at: 0,
                })
                .into(),
                user_meta("198.51.100.66"),
            ),
        ],
    );
    // then the redemption's tokens are no second CODE_TO_TOKEN, the refresh is REFRESH_TOKEN
    assert_eq!(out[1].r#type, None);
    assert_eq!(out[2].r#type, Some("REFRESH_TOKEN"));
    assert_eq!(out[2].details.get("updated_refresh_token_id").map(String::as_str), Some("rt1"));
    assert_eq!(out[2].user_id.as_deref(), Some("u1"), "the user comes from the session's start");
    assert_eq!(out[3].r#type, Some("REFRESH_TOKEN_ERROR"));
    assert_eq!(out[3].severity, Severity::Critical);
    assert_eq!(out[3].session_id.as_deref(), Some("s1"));
    assert_eq!(out[3].ip_address.as_deref(), Some("198.51.100.66"));
}

#[test]
fn an_offline_session_names_the_sso_session_it_came_from() {
    // given an offline session started from SSO session s1
    let started = SessionEvent::from(SessionStarted {
        realm_id: "r1".into(),
        user_id: "u1".into(),
        method: "pwd".into(),
        acr: "1".into(),
        auth_time: 0,
        idle_timeout: 2_592_000,
        max_lifespan: i64::MAX,
        offline_from: Some("s1".into()),
        started_at: None,
    });
    let out = records(StreamType::Session, "off1", vec![(started.into(), user_meta("198.51.100.1"))]);
    // then its record says so, under its own session id
    assert_eq!(out[0].details.get("offline_from").map(String::as_str), Some("s1"));
    assert_eq!(out[0].session_id.as_deref(), Some("off1"));
    assert_eq!(out[0].user_id.as_deref(), Some("u1"));
}

#[test]
fn a_password_set_by_an_administrator_is_an_admin_action_and_by_the_user_update_password() {
    let set = || -> DomainEvent {
        UserEvent::from(UserPasswordSet {
            hash: PasswordHash::Phc { phc: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$secret-hash-bytes".into() },
            temporary: false,
        })
        .into()
    };
    // given a user created by an administrator, whose password the administrator and then the
    // user set
    let created: DomainEvent = UserEvent::from(UserCreated {
        realm_id: "r1".into(),
        username: "alice".into(),
        profile: Default::default(),
        created_timestamp: None,
        federation_link: None,
        extra: Default::default(),
    })
    .into();
    let out = records(
        StreamType::User,
        "u1",
        vec![(created, admin_meta()), (set(), admin_meta()), (set(), user_meta("192.0.2.1"))],
    );
    // then
    assert_eq!(out[0].kind, "admin");
    assert_eq!((out[0].operation_type, out[0].resource_type), (Some(Operation::Create), Some("USER")));
    assert_eq!(out[0].resource_path.as_deref(), Some("users/u1"));
    assert_eq!(out[0].auth_details.user_id.as_deref(), Some("a1"));
    assert_eq!(out[0].realm_id.as_deref(), Some("r1"));
    assert_eq!(out[1].operation_type, Some(Operation::Action));
    assert_eq!(out[1].resource_path.as_deref(), Some("users/u1/reset-password"));
    assert_eq!(out[2].kind, "user");
    assert_eq!(out[2].r#type, Some("UPDATE_PASSWORD"));
    assert_eq!(out[2].operation_type, None);
    let text = serde_json::to_string(&out).unwrap_or_default();
    assert!(!text.contains("secret-hash-bytes") && !text.contains("argon2id"), "{text}");
}

#[test]
fn client_secrets_and_private_keys_never_reach_a_record() {
    let sealed = SealedKey {
        alg: "A256GCM".into(),
        kek_id: "kek".into(),
        nonce: "nonce-b64".into(),
        ciphertext: "sealed-ciphertext".into(),
    };
    let client: DomainEvent = ClientEvent::from(ClientCreated {
        realm_id: "r1".into(),
        client_id: "web".into(),
        settings: Default::default(),
        secret: Some(SecretDigest { alg: "hmac-sha256".into(), key_id: "k".into(), value: "digest-of-secret".into() }),
        sealed_secret: Some(sealed.clone()),
        extra: Default::default(),
    })
    .into();
    let rotated: DomainEvent = ClientEvent::from(ClientSecretRotated {
        secret: SecretDigest { alg: "hmac-sha256".into(), key_id: "k".into(), value: "second-digest".into() },
        sealed_secret: Some(sealed.clone()),
    })
    .into();
    let out = records(StreamType::Client, "c-internal", vec![(client, admin_meta()), (rotated, admin_meta())]);
    assert_eq!(out[1].resource_path.as_deref(), Some("clients/c-internal/client-secret"));
    assert_eq!(out[1].severity, Severity::Warning);
    let key: DomainEvent = SigningKeyEvent::from(SigningKeyGenerated {
        realm_id: "r1".into(),
        kid: "kid-1".into(),
        algorithm: "ES256".into(),
        public_jwk: serde_json::json!({"kid": "kid-1"}),
        private_key: sealed,
    })
    .into();
    let keys = records(StreamType::SigningKey, "kid-1", vec![(key, Metadata::system("bootstrap"))]);
    assert_eq!(keys[0].realm_id.as_deref(), Some("r1"));
    assert_eq!(keys[0].auth_details.component.as_deref(), Some("bootstrap"));
    let text = serde_json::to_string(&(out, keys)).unwrap_or_default();
    for secret in ["digest-of-secret", "second-digest", "sealed-ciphertext", "nonce-b64"] {
        assert!(!text.contains(secret), "{secret} leaked into {text}");
    }
}
