//! Given events, when folded, then the read models answer as a reader expects.
use crate::Directory;
use annals_events::group::*;
use annals_events::realm::*;
use annals_events::role::*;
use annals_events::signing_key::*;
use annals_events::{DomainEvent, RecordedEvent, StreamId, StreamType};
use chrono::{DateTime, Utc};
use serde_json::json;

/// Folds (stream, event) pairs at consecutive positions, one second apart.
fn given(events: Vec<(StreamType, &str, DomainEvent)>) -> Directory {
    let mut d = Directory::default();
    for (i, (kind, id, e)) in events.into_iter().enumerate() {
        d.fold(&recorded(StreamId::new(kind, id), 1, i as u64 + 1, i as i64, &e)).unwrap_or_else(|e| panic!("{e}"));
    }
    d
}

/// `e` as stored at `version` of `stream`, at `position`, `second` seconds into the log.
fn recorded(stream: StreamId, version: u64, position: u64, second: i64, e: &DomainEvent) -> RecordedEvent {
    RecordedEvent {
        event_id: uuid::Uuid::now_v7(),
        stream,
        version,
        position,
        recorded_at: DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap_or_default(),
        event_type: e.event_type().into(),
        schema_version: 1,
        payload: annals_events::canonical::to_canonical_string(&e.payload().unwrap_or_default()),
        metadata: "{}".into(),
        prev_hash: [0; 32],
        hash: [0; 32],
    }
}

fn realm(name: &str) -> DomainEvent {
    RealmEvent::from(RealmCreated { name: name.into(), settings: RealmSettings::default(), extra: Default::default() })
        .into()
}

fn role(realm: &str, name: &str) -> DomainEvent {
    RoleEvent::from(RoleCreated {
        realm_id: realm.into(),
        client_id: None,
        name: name.into(),
        description: None,
        attributes: Default::default(),
        extra: Default::default(),
    })
    .into()
}

fn group(realm: &str, name: &str, parent: Option<&str>) -> DomainEvent {
    GroupEvent::from(GroupCreated {
        realm_id: realm.into(),
        name: name.into(),
        parent_id: parent.map(str::to_string),
        attributes: Default::default(),
        extra: Default::default(),
    })
    .into()
}

fn ev<E: Into<DomainEvent>>(e: E) -> DomainEvent {
    e.into()
}

#[test]
fn given_groups_and_composites_when_effective_roles_then_inherited_through_parents_and_composites() {
    let d = given(vec![
        (StreamType::Role, "base", role("r", "base")),
        (StreamType::Role, "composite", role("r", "composite")),
        (StreamType::Role, "parent-role", role("r", "parent-role")),
        (
            StreamType::Role,
            "composite",
            ev(RoleEvent::from(RoleCompositesSet { composites: vec!["base".into(), "composite".into()] })),
        ),
        (StreamType::Group, "parent", group("r", "staff", None)),
        (StreamType::Group, "child", group("r", "admins", Some("parent"))),
        (StreamType::Group, "parent", ev(GroupEvent::from(GroupRoleGranted { role_id: "parent-role".into() }))),
        (StreamType::Group, "child", ev(GroupEvent::from(GroupRoleGranted { role_id: "composite".into() }))),
    ]);
    let roles = d.memberships.effective_roles(&[], &["child".to_string()]);
    assert_eq!(roles.into_iter().collect::<Vec<_>>(), vec!["base", "composite", "parent-role"]);
    let direct = d.memberships.effective_roles(&["parent-role".to_string()], &[]);
    assert_eq!(direct.into_iter().collect::<Vec<_>>(), vec!["parent-role"], "no group, no inheritance");
}

#[test]
fn given_a_deleted_role_when_effective_roles_then_it_is_gone_everywhere() {
    let d = given(vec![
        (StreamType::Role, "x", role("r", "x")),
        (StreamType::Group, "g", group("r", "g", None)),
        (StreamType::Group, "g", ev(GroupEvent::from(GroupRoleGranted { role_id: "x".into() }))),
        (StreamType::Role, "x", ev(RoleEvent::from(RoleDeleted {}))),
    ]);
    assert!(d.memberships.effective_roles(&["x".to_string()], &["g".to_string()]).is_empty());
    assert!(d.memberships.group("g").unwrap().roles.is_empty());
    assert!(d.memberships.role_by_name("r", None, "x").is_none());
}

fn key(realm: &str, kid: &str, alg: &str) -> DomainEvent {
    SigningKeyEvent::from(SigningKeyGenerated {
        realm_id: realm.into(),
        kid: kid.into(),
        algorithm: alg.into(),
        public_jwk: json!({"kid": kid}),
        private_key: SealedKey { alg: "A256GCM".into(), kek_id: "k".into(), nonce: "n".into(), ciphertext: "c".into() },
    })
    .into()
}

#[test]
fn given_a_rotation_when_keys_are_listed_then_the_new_key_signs_and_the_old_stays_published_until_its_horizon() {
    let horizon = 1_800_000_600;
    let d = given(vec![
        (StreamType::SigningKey, "old", key("r", "old", "ES256")),
        (StreamType::SigningKey, "new", key("r", "new", "ES256")),
        (StreamType::SigningKey, "old", ev(SigningKeyEvent::from(SigningKeyRetired { publish_until: horizon }))),
        (StreamType::SigningKey, "other", key("r2", "other", "ES256")),
    ]);
    assert_eq!(d.signing_keys.active("r", "ES256").unwrap().kid, "new");
    assert!(d.signing_keys.active("r", "RS256").is_none());
    let at = |t: i64| -> Vec<String> {
        d.signing_keys
            .published("r", DateTime::<Utc>::from_timestamp(t, 0).unwrap_or_default())
            .iter()
            .map(|k| k.kid.clone())
            .collect()
    };
    assert_eq!(at(horizon - 1), vec!["old", "new"]);
    assert_eq!(at(horizon), vec!["new"]);
}

#[test]
fn given_an_event_already_folded_when_fed_again_then_nothing_changes() {
    let mut d = given(vec![(StreamType::Role, "x", role("r", "admin"))]);
    let before = d.clone();
    let again = RecordedEvent {
        event_id: uuid::Uuid::now_v7(),
        stream: StreamId::new(StreamType::Role, "x"),
        version: 2,
        position: 1,
        recorded_at: Utc::now(),
        event_type: "role.deleted".into(),
        schema_version: 1,
        payload: "{}".into(),
        metadata: "{}".into(),
        prev_hash: [0; 32],
        hash: [0; 32],
    };
    d.fold(&again).unwrap();
    assert_eq!(d, before);
}

#[test]
fn given_realms_when_looked_up_by_name_then_names_are_case_sensitive() {
    let d = given(vec![(StreamType::Realm, "r1", realm("one")), (StreamType::Realm, "r2", realm("two"))]);
    assert_eq!(d.realms.by_name("one").unwrap().id, "r1");
    assert_eq!(d.realms.by_name("two").unwrap().id, "r2");
    assert!(d.realms.by_name("ONE").is_none(), "realm names are case-sensitive, as in URLs");
}

#[test]
fn given_sessions_when_they_end_or_tokens_are_revoked_then_lookups_reflect_it_and_sweep_forgets() {
    use annals_events::client_grant::*;
    use annals_events::session::*;
    let t0 = 1_800_000_000;
    let start = |id: &str| -> (StreamType, String, DomainEvent) {
        let e = SessionEvent::from(SessionStarted {
            realm_id: "r".into(),
            user_id: format!("u-{id}"),
            method: "pwd".into(),
            acr: "1".into(),
            auth_time: t0,
            idle_timeout: 100,
            max_lifespan: 1000,
            offline_from: None,
            started_at: None,
        });
        (StreamType::Session, id.to_string(), e.into())
    };
    let events = [
        start("s1"),
        start("s2"),
        start("s3"),
        (
            StreamType::Session,
            "s1".into(),
            SessionEvent::from(SessionTokensRevoked {
                client: "c".into(),
                token_ids: vec!["at1".into()],
                earlier_access_tokens: true,
                reason: "revocation_endpoint".into(),
                at: t0,
            })
            .into(),
        ),
        (
            StreamType::Session,
            "s2".into(),
            SessionEvent::from(SessionLoggedOut { client: None, clients: vec![], at: t0 }).into(),
        ),
        (
            StreamType::Session,
            "s3".into(),
            SessionEvent::from(SessionTokensIssued {
                client: "c".into(),
                grant: "refresh_token".into(),
                access_token_id: Some("a".into()),
                id_token_id: None,
                refresh_token_id: None,
                replaces: None,
                scope: "openid".into(),
                expires_at: t0 + 350,
                at: t0 + 50,
            })
            .into(),
        ),
        (
            StreamType::ClientGrant,
            "g1".into(),
            ClientGrantEvent::from(ClientGrantRevoked { reason: "x".into(), expires_at: t0 + 300, at: t0 }).into(),
        ),
    ];
    let mut d = given(events.iter().map(|(k, id, e)| (*k, id.as_str(), e.clone())).collect());
    let s1 = d.sessions.alive("s1", t0).unwrap();
    // The revocation is version 1 of its stream in this fixture: tokens issued at a lower
    // session version are cut off, later ones are not.
    assert!(d.sessions.token_revoked(s1, "at1", "other", 5) && !d.sessions.token_revoked(s1, "at2", "other", 0));
    assert!(d.sessions.token_revoked(s1, "at2", "c", 0), "issued before the client's cutoff");
    assert!(!d.sessions.token_revoked(s1, "at2", "c", 1), "issued after it");
    assert!(d.sessions.alive("s2", t0).is_none(), "logged out");
    assert!(d.sessions.alive("s1", t0 + 100).is_none(), "idle");
    assert!(d.sessions.alive("s3", t0 + 120).is_some(), "activity extends idle");
    assert!(d.sessions.grant_revoked("g1") && !d.sessions.grant_revoked("g2"));
    d.sessions.sweep(t0 + 120);
    assert_eq!(d.sessions.len(), 1);
    d.sessions.sweep(t0 + 300);
    assert!(!d.sessions.grant_revoked("g1"), "forgotten once the token expired anyway");
}

#[test]
fn given_consents_when_the_user_or_the_client_is_deleted_then_they_are_forgotten() {
    use annals_events::client::{ClientDeleted, ClientEvent};
    use annals_events::user::{UserConsentGranted, UserDeleted, UserEvent};
    let grant = |client: &str, scopes: &[&str]| {
        ev(UserEvent::from(UserConsentGranted {
            client: client.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }))
    };
    let d = given(vec![
        (StreamType::User, "u1", grant("c1", &["email"])),
        (StreamType::User, "u1", grant("c2", &["profile"])),
        (StreamType::User, "u2", grant("c1", &["email", "profile"])),
    ]);
    assert_eq!(d.consents.granted("u2", "c1").map(|s| s.len()), Some(2));
    assert!(d.consents.granted("u1", "c1").is_some_and(|s| s.contains("email")));
    let d = given(vec![
        (StreamType::User, "u1", grant("c1", &["email"])),
        (StreamType::User, "u1", grant("c2", &["profile"])),
        (StreamType::User, "u2", grant("c1", &["email"])),
        (StreamType::Client, "c1", ev(ClientEvent::from(ClientDeleted {}))),
        (StreamType::User, "u1", ev(UserEvent::from(UserDeleted {}))),
    ]);
    assert_eq!(d.consents.granted("u2", "c1"), None, "the client was deleted");
    assert_eq!(d.consents.granted("u1", "c2"), None, "the user was deleted");
}

#[test]
fn given_a_session_ending_when_a_client_registered_a_back_channel_url_then_a_delivery_is_owed_until_done() {
    use annals_events::client::{ClientCreated, ClientEvent, ClientSettings};
    use annals_events::logout_delivery::*;
    use annals_events::session::*;
    let client = |id: &str, url: Option<&str>| {
        let mut settings = ClientSettings::default();
        if let Some(u) = url {
            settings.attributes.insert("backchannel.logout.url".into(), u.into());
        }
        ev(ClientEvent::from(ClientCreated {
            realm_id: "r".into(),
            client_id: id.into(),
            settings,
            secret: None,
            sealed_secret: None,
            extra: Default::default(),
        }))
    };
    let start = ev(SessionEvent::from(SessionStarted {
        realm_id: "r".into(),
        user_id: "u1".into(),
        method: "pwd".into(),
        acr: "1".into(),
        auth_time: 100,
        idle_timeout: 1000,
        max_lifespan: 10_000,
        offline_from: None,
        started_at: None,
    }));
    let ended = ev(SessionEvent::from(SessionRevoked {
        reason: "refresh_token_reused".into(),
        clients: vec!["told".into(), "silent".into()],
        at: 200,
    }));
    let history = vec![
        (StreamType::Client, "told", client("told", Some("https://rp/bc"))),
        (StreamType::Client, "silent", client("silent", None)),
        (StreamType::Session, "s1", start),
        (StreamType::Session, "s1", ended),
    ];
    let d = given(history.clone());
    let stream = stream_id("s1", "told");
    let owed = d.logout_deliveries.get(&stream).cloned().expect("owed to the client with a URL");
    assert_eq!((owed.user_id.as_deref(), owed.attempts, owed.due_at_ms), (Some("u1"), 0, 200_000));
    assert_eq!(d.logout_deliveries.len(), 1, "the client without a URL is not told");
    assert_eq!(d.logout_deliveries.due(199_999).count(), 0);

    let failed = |attempt: u32, retry_at_ms: Option<i64>| {
        ev(LogoutDeliveryEvent::from(LogoutDeliveryFailed {
            realm_id: "r".into(),
            session_id: "s1".into(),
            client: "told".into(),
            url: "https://rp/bc".into(),
            attempt,
            status: Some(503),
            error: "HTTP 503".into(),
            jti: None,
            retry_at_ms,
            at: 201,
        }))
    };
    let mut retried = history.clone();
    retried.push((StreamType::LogoutDelivery, stream.as_str(), failed(1, Some(202_000))));
    let d = given(retried.clone());
    let owed = d.logout_deliveries.get(&stream).unwrap();
    assert_eq!((owed.attempts, owed.due_at_ms), (1, 202_000));
    let delivered = ev(LogoutDeliveryEvent::from(LogoutDeliveryDelivered {
        realm_id: "r".into(),
        session_id: "s1".into(),
        client: "told".into(),
        url: "https://rp/bc".into(),
        attempt: 2,
        status: 200,
        jti: "j".into(),
        at: 202,
    }));
    let mut done = retried.clone();
    done.push((StreamType::LogoutDelivery, stream.as_str(), delivered));
    assert!(given(done).logout_deliveries.is_empty(), "delivered");
    let mut gave_up = retried;
    gave_up.push((StreamType::LogoutDelivery, stream.as_str(), failed(2, None)));
    assert!(given(gave_up).logout_deliveries.is_empty(), "given up");
}

#[test]
fn given_a_realm_imported_before_the_offline_maximum_was_mapped_when_folded_then_it_still_holds() {
    // given a realm.created whose Keycloak offline maximum sits in `extra`, as older imports left it
    let mut extra = serde_json::Map::new();
    extra.insert("offlineSessionMaxLifespanEnabled".into(), serde_json::json!(true));
    extra.insert("offlineSessionMaxLifespan".into(), serde_json::json!(86_400));
    let created = RealmEvent::from(RealmCreated { name: "old".into(), settings: RealmSettings::default(), extra });
    let d = given(vec![(StreamType::Realm, "r1", created.into()), (StreamType::Realm, "r2", realm("new"))]);
    // then the settings act on it; a realm without it keeps Keycloak's defaults
    let old = &d.realms.by_name("old").unwrap().settings;
    assert!(old.offline_session_max_lifespan_enabled);
    assert_eq!(old.offline_session_max_lifespan, 86_400);
    let new = &d.realms.by_name("new").unwrap().settings;
    assert!(!new.offline_session_max_lifespan_enabled);
    assert_eq!(new.offline_session_max_lifespan, 5_184_000);
}

#[test]
fn given_a_client_id_reused_by_a_new_client_when_the_old_one_is_deleted_then_the_new_one_is_still_found() {
    use annals_events::client::{ClientCreated, ClientDeleted, ClientEvent, ClientSettings};
    let created = |realm: &str| {
        ev(ClientEvent::from(ClientCreated {
            realm_id: realm.into(),
            client_id: "app".into(),
            settings: ClientSettings::default(),
            secret: None,
            sealed_secret: None,
            extra: Default::default(),
        }))
    };
    let d = given(vec![
        (StreamType::Realm, "r", realm("r")),
        (StreamType::Realm, "r2", realm("r2")),
        (StreamType::Client, "old", created("r")),
        (StreamType::Client, "new", created("r")),
        (StreamType::Client, "other-realm", created("r2")),
        (StreamType::Client, "old", ev(ClientEvent::from(ClientDeleted {}))),
    ]);
    assert_eq!(d.clients.by_client_id("r", "app").map(|c| c.id.as_str()), Some("new"));
    assert_eq!(d.clients.by_client_id("r2", "app").map(|c| c.id.as_str()), Some("other-realm"));
    assert!(d.clients.by_client_id("r", "missing").is_none() && d.clients.by_client_id("r3", "app").is_none());
    let d = given(vec![
        (StreamType::Realm, "r", realm("r")),
        (StreamType::Client, "only", created("r")),
        (StreamType::Client, "only", ev(ClientEvent::from(ClientDeleted {}))),
    ]);
    assert!(d.clients.by_client_id("r", "app").is_none(), "the deleted client is gone");
}

#[test]
fn given_a_long_log_of_ended_sessions_when_folded_then_only_the_recent_ones_are_remembered_as_ended() {
    use annals_events::session::*;
    let mut d = Directory::default();
    for i in 0..5_000i64 {
        for (v, e) in [
            (
                1,
                SessionEvent::from(SessionStarted {
                    realm_id: "r".into(),
                    user_id: "u".into(),
                    method: "pwd".into(),
                    acr: "1".into(),
                    auth_time: 0,
                    idle_timeout: 1_000_000_000,
                    max_lifespan: 1_000_000_000,
                    offline_from: None,
                    started_at: None,
                }),
            ),
            (2, SessionEvent::from(SessionLoggedOut { client: None, clients: vec![], at: i })),
        ] {
            let e: DomainEvent = e.into();
            let stream = StreamId::new(StreamType::Session, format!("s{i}"));
            d.fold(&recorded(stream, v, 2 * i as u64 + v, i, &e)).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    assert!(d.sessions.ended("s4999") && d.sessions.ended("s4950"), "the last minute's");
    assert!(!d.sessions.ended("s10"), "an hour before the end of the log");
    assert!(d.sessions.get("s4999").is_none());
}

#[test]
fn given_a_replayed_code_when_folded_then_its_revocation_is_owed_until_recorded() {
    use annals_events::auth_request::*;
    let redeemed = ev(AuthRequestEvent::from(AuthRequestCodeRedeemed {
        session_id: "s1".into(),
        token_ids: vec!["at1".into()],
        at: 100,
        offline: Some(false),
    }));
    let replayed = ev(AuthRequestEvent::from(AuthRequestCodeReplayed { at: 150 }));
    let mut history = vec![
        (StreamType::AuthRequest, "ar1", redeemed.clone()),
        (StreamType::AuthRequest, "ar2", redeemed),
        (StreamType::AuthRequest, "ar1", replayed),
    ];
    let d = given(history.clone());
    assert!(d.replay_revocations.is_owed("ar1") && !d.replay_revocations.is_owed("ar2"), "only the replayed one");
    assert_eq!(d.replay_revocations.owed().collect::<Vec<_>>(), [(&"ar1".to_string(), 150)], "since the replay");
    assert_eq!(d.position, 3, "every event folded, read or not");

    history.push((StreamType::AuthRequest, "ar1", ev(AuthRequestEvent::from(AuthRequestReplayRevoked { at: 151 }))));
    assert!(given(history).replay_revocations.is_empty(), "revoked");
}
