//! Round-trip every event type through its stored form.
use super::*;
use crate::auth_request::*;
use crate::client::*;
use crate::client_assertion::*;
use crate::client_grant::*;
use crate::envelope::{NewEvent, RecordJson, RecordedEvent};
use crate::group::*;
use crate::login_failures::*;
use crate::logout_delivery::*;
use crate::metadata::{Actor, Metadata};
use crate::realm::*;
use crate::role::*;
use crate::session::*;
use crate::signing_key::*;
use crate::stream::StreamId;
use crate::user::*;
use serde_json::json;
use std::collections::BTreeSet;

fn extra() -> crate::Extra {
    let mut m = serde_json::Map::new();
    m.insert("unknownKeycloakField".into(), json!({"nested": [1, 2]}));
    m
}

fn profile() -> UserProfile {
    UserProfile {
        email: Some("Ada@Example.org".into()),
        email_verified: true,
        first_name: Some("Ada".into()),
        last_name: Some("Lovelace".into()),
        enabled: true,
        attributes: [("dept".to_string(), vec!["R&D".to_string()])].into(),
        required_actions: vec!["UPDATE_PASSWORD".into()],
    }
}

fn digest() -> SecretDigest {
    SecretDigest { alg: "hmac-sha256".into(), key_id: "k1".into(), value: "ab".repeat(32) }
}

/// One sample of every event type.
pub(crate) fn samples() -> Vec<DomainEvent> {
    let keycloak_hash = PasswordHash::Keycloak {
        algorithm: "pbkdf2-sha256".into(),
        iterations: 27500,
        salt: "c2FsdA==".into(),
        value: "aGFzaA==".into(),
        additional_parameters: Default::default(),
    };
    let phc = PasswordHash::Phc { phc: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into() };
    vec![
        RealmEvent::from(RealmCreated { name: "acme".into(), settings: RealmSettings::default(), extra: extra() })
            .into(),
        RealmEvent::from(RealmSettingsChanged {
            settings: RealmSettings { enabled: false, ..Default::default() },
            extra: extra(),
        })
        .into(),
        RealmEvent::from(RealmDeleted {}).into(),
        ClientEvent::from(ClientCreated {
            realm_id: "r".into(),
            client_id: "app".into(),
            settings: ClientSettings { redirect_uris: vec!["https://app/cb".into()], ..Default::default() },
            secret: Some(digest()),
            sealed_secret: None,
            extra: extra(),
        })
        .into(),
        ClientEvent::from(ClientSettingsChanged { settings: ClientSettings::default(), extra: extra() }).into(),
        ClientEvent::from(ClientSecretRotated { secret: digest(), sealed_secret: None }).into(),
        ClientEvent::from(ClientDeleted {}).into(),
        UserEvent::from(UserCreated {
            realm_id: "r".into(),
            username: "ada".into(),
            profile: profile(),
            created_timestamp: Some(1_700_000_000_000),
            federation_link: None,
            extra: extra(),
        })
        .into(),
        UserEvent::from(UserProfileChanged { profile: profile() }).into(),
        UserEvent::from(UserPasswordSet { hash: keycloak_hash, temporary: true }).into(),
        UserEvent::from(UserPasswordHashUpgraded { from_algorithm: "pbkdf2-sha256".into(), hash: phc }).into(),
        UserEvent::from(UserRoleGranted { role_id: "role1".into() }).into(),
        UserEvent::from(UserRoleRevoked { role_id: "role1".into() }).into(),
        UserEvent::from(UserJoinedGroup { group_id: "g1".into() }).into(),
        UserEvent::from(UserLeftGroup { group_id: "g1".into() }).into(),
        UserEvent::from(UserConsentGranted { client: "c1".into(), scopes: vec!["email".into()] }).into(),
        UserEvent::from(UserDeleted {}).into(),
        RoleEvent::from(RoleCreated {
            realm_id: "r".into(),
            client_id: Some("c".into()),
            name: "admin".into(),
            description: Some("d".into()),
            attributes: Default::default(),
            extra: extra(),
        })
        .into(),
        RoleEvent::from(RoleCompositesSet { composites: vec!["a".into(), "b".into()] }).into(),
        RoleEvent::from(RoleDeleted {}).into(),
        GroupEvent::from(GroupCreated {
            realm_id: "r".into(),
            name: "staff".into(),
            parent_id: Some("p".into()),
            attributes: Default::default(),
            extra: extra(),
        })
        .into(),
        GroupEvent::from(GroupRoleGranted { role_id: "x".into() }).into(),
        GroupEvent::from(GroupRoleRevoked { role_id: "x".into() }).into(),
        GroupEvent::from(GroupDeleted {}).into(),
        SigningKeyEvent::from(SigningKeyGenerated {
            realm_id: "r".into(),
            kid: "kid1".into(),
            algorithm: "ES256".into(),
            public_jwk: json!({"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}),
            private_key: SealedKey {
                alg: "A256GCM".into(),
                kek_id: "k".into(),
                nonce: "bm9uY2U=".into(),
                ciphertext: "Y3Q=".into(),
            },
        })
        .into(),
        SigningKeyEvent::from(SigningKeyRetired { publish_until: 1_800_000_000 }).into(),
        SigningKeyEvent::from(SigningKeyRemoved {}).into(),
        AuthRequestEvent::from(AuthRequestStarted {
            realm_id: "r".into(),
            client: "c".into(),
            client_id: "app".into(),
            redirect_uri: "https://app/cb".into(),
            response_type: "code".into(),
            response_mode: "query".into(),
            scope: "openid".into(),
            state: Some("s".into()),
            nonce: Some("n".into()),
            code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
            code_challenge_method: Some("S256".into()),
            prompt: vec!["login".into()],
            max_age: Some(60),
            login_hint: Some("ada".into()),
            acr_values: Some("1".into()),
            expires_at: 1_800_000_600,
            at: 1_800_000_000,
        })
        .into(),
        AuthRequestEvent::from(AuthRequestCredentialsRejected {
            username: "ada".into(),
            user_id: Some("u".into()),
            reason: "invalid_user_credentials".into(),
            at: 1,
        })
        .into(),
        AuthRequestEvent::from(AuthRequestAuthenticated {
            user_id: "u".into(),
            session_id: "s".into(),
            method: "pwd".into(),
            auth_time: 1,
            at: 1,
        })
        .into(),
        AuthRequestEvent::from(AuthRequestConsentRequested { scopes: vec!["email".into()], at: 1 }).into(),
        AuthRequestEvent::from(AuthRequestConsentGranted { scopes: vec!["email".into()], at: 1 }).into(),
        AuthRequestEvent::from(AuthRequestConsentDenied { at: 1 }).into(),
        AuthRequestEvent::from(AuthRequestCodeIssued { code_hash: "ab".repeat(32), expires_at: 2, at: 1 }).into(),
        AuthRequestEvent::from(AuthRequestCodeRedeemed {
            session_id: "s".into(),
            token_ids: vec!["t".into()],
            at: 1,
            offline: Some(true),
        })
        .into(),
        AuthRequestEvent::from(AuthRequestCodeReplayed { at: 1 }).into(),
        AuthRequestEvent::from(AuthRequestReplayRevoked { at: 1 }).into(),
        AuthRequestEvent::from(AuthRequestFailed { error: "login_required".into(), at: 1 }).into(),
        SessionEvent::from(SessionStarted {
            realm_id: "r".into(),
            user_id: "u".into(),
            method: "pwd".into(),
            acr: "1".into(),
            auth_time: 1,
            idle_timeout: 1800,
            max_lifespan: 36000,
            offline_from: None,
            started_at: None,
        })
        .into(),
        SessionEvent::from(SessionTokensIssued {
            client: "c".into(),
            grant: "refresh_token".into(),
            access_token_id: Some("a".into()),
            id_token_id: Some("i".into()),
            refresh_token_id: Some("r2".into()),
            replaces: Some("r1".into()),
            scope: "openid".into(),
            expires_at: 2,
            at: 1,
        })
        .into(),
        SessionEvent::from(SessionRefreshReused { client: "c".into(), refresh_token_id: "r1".into(), at: 1 }).into(),
        SessionEvent::from(SessionTokensRevoked {
            client: "c".into(),
            token_ids: vec!["a".into()],
            earlier_access_tokens: true,
            reason: "revocation_endpoint".into(),
            at: 1,
        })
        .into(),
        SessionEvent::from(SessionLoggedOut { client: Some("c".into()), clients: vec!["c".into()], at: 1 }).into(),
        SessionEvent::from(SessionRevoked { reason: "admin".into(), clients: vec![], at: 1 }).into(),
        ClientGrantEvent::from(ClientGrantIssued {
            realm_id: "r".into(),
            client: "c".into(),
            user_id: Some("u".into()),
            scope: "profile".into(),
            expires_at: 2,
            at: 1,
        })
        .into(),
        ClientGrantEvent::from(ClientGrantRevoked { reason: "revocation_endpoint".into(), expires_at: 2, at: 1 })
            .into(),
        LoginFailuresEvent::from(LoginFailureRecorded { failures: 3, at_ms: 1 }).into(),
        LoginFailuresEvent::from(LoginLockedOut { until: Some(60), permanent: false, failures: 3 }).into(),
        LoginFailuresEvent::from(LoginFailuresCleared { at_ms: 2 }).into(),
        ClientAssertionEvent::from(ClientAssertionUsed {
            realm_id: "r".into(),
            client: "c".into(),
            jti: "j".into(),
            expires_at: 2,
            at: 1,
        })
        .into(),
        LogoutDeliveryEvent::from(LogoutDeliveryDelivered {
            realm_id: "r".into(),
            session_id: "s".into(),
            client: "c".into(),
            url: "https://rp/bc".into(),
            attempt: 2,
            status: 204,
            jti: "j".into(),
            at: 1,
        })
        .into(),
        LogoutDeliveryEvent::from(LogoutDeliveryFailed {
            realm_id: "r".into(),
            session_id: "s".into(),
            client: "c".into(),
            url: "https://rp/bc".into(),
            attempt: 1,
            status: Some(503),
            error: "HTTP 503".into(),
            jti: Some("j".into()),
            retry_at_ms: Some(2000),
            at: 1,
        })
        .into(),
        crate::audit_checkpoint::AuditCheckpointEvent::from(crate::audit_checkpoint::AuditCheckpointSigned {
            after_position: 10,
            to_position: 20,
            head_hash: "ab".repeat(32),
            merkle_root: "cd".repeat(32),
            key: crate::jws::PublicJwk::of(&ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key()),
            signed_at: 1_700_000_000,
            jws: "h.c.s".into(),
        })
        .into(),
        crate::sink_delivery::SinkDeliveryEvent::from(crate::sink_delivery::SinkDeliveryRejected {
            sink: "siem".into(),
            position: 42,
            event_id: "0190aaaa-0000-7000-8000-000000000001".into(),
            event_type: "session.started".into(),
            realm_id: Some("r".into()),
            status: Some(400),
            reason: "HTTP 400: bad record".into(),
            attempts: 5,
            at: 1,
        })
        .into(),
        crate::rejected_request::RejectedRequestEvent::from(crate::rejected_request::RejectedRequestRecorded {
            realm_id: Some("r".into()),
            endpoint: "token".into(),
            reason: "invalid_client_credentials".into(),
            description: "Invalid client credentials".into(),
            client_id: Some("web".into()),
            redirect_uri: None,
            grant_type: Some("client_credentials".into()),
            at_ms: 1,
        })
        .into(),
        crate::rejected_request::RejectedRequestEvent::from(crate::rejected_request::RejectedRequestSummarized {
            realm_id: Some("r".into()),
            endpoint: "token".into(),
            reason: "invalid_client_credentials".into(),
            source: "192.0.2.7".into(),
            count: 95,
            from_ms: 0,
            to_ms: 60_000,
        })
        .into(),
        crate::ssf_stream::SsfStreamEvent::from(crate::ssf_stream::SsfStreamCreated {
            realm_id: "r".into(),
            audience: "rx".into(),
            method: crate::ssf_stream::PUSH.into(),
            endpoint_url: Some("https://rx.example/ssf".into()),
            authorization: None,
            events_requested: vec![],
            description: None,
            at: 1,
        })
        .into(),
        crate::ssf_stream::SsfStreamEvent::from(crate::ssf_stream::SsfStreamUpdated {
            endpoint_url: Some("https://rx.example/ssf2".into()),
            authorization: None,
            events_requested: vec!["urn:example".into()],
            description: Some("d".into()),
            at: 2,
        })
        .into(),
        crate::ssf_stream::SsfStreamEvent::from(crate::ssf_stream::SsfStreamVerificationRequested {
            state: Some("s".into()),
            at: 2,
        })
        .into(),
        crate::ssf_stream::SsfStreamEvent::from(crate::ssf_stream::SsfStreamDeleted { at: 2 }).into(),
    ]
}

#[test]
fn samples_cover_every_event_type_once() {
    let sampled: Vec<_> = samples().iter().map(|e| e.event_type()).collect();
    let unique: BTreeSet<_> = sampled.iter().copied().collect();
    assert_eq!(unique.len(), sampled.len(), "a type is sampled twice");
    let all: BTreeSet<_> = DomainEvent::all_types().into_iter().collect();
    assert_eq!(unique, all);
}

#[test]
fn every_event_type_round_trips_through_its_stored_form() {
    for event in samples() {
        let meta = Metadata {
            realm: Some("acme".into()),
            actor: Actor::Admin { user_id: "u".into(), realm: "master".into() },
            source_ip: Some("192.0.2.1".into()),
            ..Default::default()
        };
        let new = NewEvent::new(&event, &meta).unwrap();
        assert_eq!(new.event_type, event.event_type());
        assert!(new.event_type.starts_with(event.stream_type().as_str()));
        let stored = RecordedEvent {
            event_id: new.event_id,
            stream: StreamId::new(event.stream_type(), "s"),
            version: 1,
            position: 1,
            recorded_at: chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            event_type: new.event_type.clone(),
            schema_version: new.schema_version,
            payload: new.payload.clone(),
            metadata: new.metadata.clone(),
            prev_hash: [0; 32],
            hash: [1; 32],
        };
        assert_eq!(stored.decode().unwrap(), event, "{}", event.event_type());
        // The direct text path and the Value path (used after upcasting) agree.
        let via_value =
            DomainEvent::decode(&new.event_type, new.schema_version, serde_json::from_str(&new.payload).unwrap());
        assert_eq!(via_value.unwrap(), event);
        assert_eq!(stored.metadata().unwrap(), meta);
        // The JSON form re-canonicalizes to the exact hashed bytes.
        let json = serde_json::to_string(&stored.to_json()).unwrap();
        let back: RecordJson = serde_json::from_str(&json).unwrap();
        assert_eq!(RecordedEvent::try_from(back).unwrap(), stored);
    }
}

#[test]
fn unknown_types_and_bad_payloads_are_refused_with_the_type_named() {
    assert!(matches!(DomainEvent::decode("device_grant.started", 1, json!({})), Err(DecodeError::UnknownType(_))));
    assert!(matches!(DomainEvent::decode_str("user.nonsense", 1, "{}"), Err(DecodeError::UnknownType(_))));
    assert!(matches!(DomainEvent::decode_str("user.created", 1, "{not json"), Err(DecodeError::Payload { .. })));
    assert!(matches!(DomainEvent::decode_str("user.created", 9, "{}"), Err(DecodeError::Upcast(_))));
    let err = DomainEvent::decode("user.created", 1, json!({"username": 5})).unwrap_err();
    assert!(err.to_string().contains("user.created"), "{err}");
}
