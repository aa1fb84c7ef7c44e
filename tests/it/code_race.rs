//! Code redemptions where timing matters: a code redeemed twice at once, with the replay on
//! another node (the interleaving that a concurrent-redemption test hits only by chance, forced
//! by holding the first redemption's answer back), and a code whose session ended before it
//! was redeemed.
use crate::oidc_flow::{alice_code, claims, redeem, Demo, Jar, RP, VERIFIER};
use crate::support::{self, holding::HoldingStore};
use annals::domain::auth_request::{AuthRequest, AuthRequestCommand};
use annals::domain::session::{Session, SessionCommand};
use annals::store::ReadUntil;
use annals_events::{StreamId, StreamType};
use serde_json::Value;
use std::time::Duration;

async fn within<T>(what: impl std::future::Future<Output = T>) -> T {
    within_secs(10, what).await
}

async fn within_secs<T>(secs: u64, what: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), what).await.expect("in time")
}

async fn redeem_at(http: reqwest::Client, token_url: String, code: String) -> (u16, Value) {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", RP),
        ("code_verifier", VERIFIER),
    ];
    let res = http.post(token_url).basic_auth("web", Some("web-secret-0123456789")).form(&form).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// Node A has recorded a code's redemption, with the tokens it gives in their session (one
/// commit), but not yet answered it when the same code reaches node B. B records the replay
/// and revokes what the first redemption gave: the tokens are in the session already, since
/// the redemption could not commit without them. Exactly one redemption succeeds, and
/// nothing it gave can be used.
#[actix_rt::test]
async fn a_replay_on_another_node_while_the_first_redemption_is_unanswered_revokes_its_tokens() {
    let mut held = None;
    let demo = Demo::start_wrapped(
        |_| {},
        |inner| {
            let h = HoldingStore::new(inner);
            held = Some(h.clone());
            h
        },
    )
    .await;
    let holding = held.unwrap();
    let b = support::spawn_app(support::serve_config(demo.data_dir(), None)).await;
    let code = alice_code(&demo, &mut Jar::default()).await;

    // Given node A's redemption committed and its caller kept waiting.
    holding.hold_next_carrying("auth_request.code_redeemed");
    let first = actix_rt::spawn(redeem_at(demo.http.clone(), demo.url("token"), code.clone()));
    within(holding.appended.notified()).await;

    // When the same code is redeemed at node B meanwhile, it is refused as a replay.
    let b_token = format!("{}/realms/demo/protocol/openid-connect/token", b.base_url);
    let (status, err) = within(redeem_at(demo.http.clone(), b_token, code.clone())).await;
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")), "{err}");
    holding.release.notify_one();

    // Then the first redemption is the one success.
    let (status, won) = within(first).await.unwrap();
    assert_eq!(status, 200, "{won}");
    // The tokens were recorded in the commit of the redemption, and B's revocation came after
    // both, while A's answer was held: the interleaving this test is about did happen.
    let sid = claims(won["access_token"].as_str().unwrap())["sid"].as_str().unwrap().to_string();
    let log = demo.app.store.read_stream(&StreamId::new(StreamType::Session, sid), 0, ReadUntil::End).await.unwrap();
    let types: Vec<&str> = log.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["session.started", "session.tokens_issued", "session.tokens_revoked"],
        "the first redemption's tokens, the replay's revocation of them"
    );
    let request = code.split_once('.').unwrap().0.to_string();
    let requested =
        demo.app.store.read_stream(&StreamId::new(StreamType::AuthRequest, request), 0, ReadUntil::End).await.unwrap();
    let redeemed = requested.iter().find(|e| e.event_type == "auth_request.code_redeemed").expect("redeemed");
    let replayed = requested.iter().find(|e| e.event_type == "auth_request.code_replayed").expect("replayed");
    assert_eq!(redeemed.position, log[1].position + 1, "the redemption commits right after its tokens");
    assert!(replayed.position > redeemed.position && log[2].position > replayed.position);
    // Nothing it gave can be used, once node A has read B's revocation from the log.
    demo.app.read_models.wait_for(log[2].position, Duration::from_secs(5)).await.unwrap();
    for token in ["access_token", "refresh_token"] {
        assert_eq!(demo.introspect(won[token].as_str().unwrap()).await["active"], false, "{token}");
    }
    let (status, _) = demo
        .token(
            ("web", "web-secret-0123456789"),
            &[("grant_type", "refresh_token"), ("refresh_token", won["refresh_token"].as_str().unwrap())],
        )
        .await;
    assert_eq!(status, 400, "the refresh token of a replayed code");
    b.stop().await;
    demo.app.stop().await;
}

/// The session a code's login started ends (revoked by an administrator) before the code is
/// redeemed. The redemption is refused and no tokens are recorded, yet the code is spent on
/// record: presented again it is a replay, as if it had given tokens.
#[actix_rt::test]
async fn a_code_whose_session_ended_is_refused_and_spent_without_tokens() {
    let demo = Demo::start().await;
    let code = alice_code(&demo, &mut Jar::default()).await;
    let request = code.split_once('.').unwrap().0.to_string();
    let meta = annals_events::Metadata::system("test");
    let peek = demo.app.hosts.execute_full::<AuthRequest>(&request, AuthRequestCommand::Check, meta.clone()).await;
    let sid = peek.unwrap().state.session_id.expect("the login started a session");
    // Given the login's session revoked,
    let revoke = SessionCommand::Revoke { reason: "admin".into() };
    demo.app.hosts.execute::<Session>(&sid, revoke, meta).await.unwrap();
    // when its code is redeemed, it is refused,
    let (status, err) = redeem(&demo, &code).await;
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")), "{err}");
    // and the session records no tokens, while the request records the code spent;
    let session = StreamId::new(StreamType::Session, sid);
    let log = demo.app.store.read_stream(&session, 0, ReadUntil::End).await.unwrap();
    assert!(log.iter().all(|e| e.event_type != "session.tokens_issued"), "no tokens in an ended session");
    let stream = StreamId::new(StreamType::AuthRequest, request);
    let types = |log: Vec<annals_events::RecordedEvent>| log.into_iter().map(|e| e.event_type).collect::<Vec<_>>();
    let requested = types(demo.app.store.read_stream(&stream, 0, ReadUntil::End).await.unwrap());
    assert_eq!(requested.last().map(String::as_str), Some("auth_request.code_redeemed"), "{requested:?}");
    // then the code presented again is a replay.
    let (status, err) = redeem(&demo, &code).await;
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")), "{err}");
    let requested = types(demo.app.store.read_stream(&stream, 0, ReadUntil::End).await.unwrap());
    assert_eq!(
        requested[requested.len() - 2..],
        ["auth_request.code_replayed", "auth_request.replay_revoked"],
        "the replay, and its revocation (of nothing) done"
    );
    demo.app.stop().await;
}

/// A replay whose revocation fails (the store refuses the session's append) is refused all
/// the same, and its revocation stays owed in the log: the node's replay worker leaves it to
/// the replay's own request for a while, then revokes the tokens and records it, once.
#[actix_rt::test]
async fn a_replay_whose_revocation_failed_is_revoked_later_from_the_log() {
    let clock = annals::clock::ManualClock::at(chrono::Utc::now());
    let mut held = None;
    let wrap = |inner| {
        let h = HoldingStore::new(inner);
        held = Some(h.clone());
        h as annals::store::SharedStore
    };
    let demo = Demo::start_full(|_| {}, vec![], |_| {}, std::sync::Arc::new(clock.clone()), wrap).await;
    let holding = held.unwrap();
    let code = alice_code(&demo, &mut Jar::default()).await;
    let (status, first) = redeem(&demo, &code).await;
    assert_eq!(status, 200, "{first}");
    let access = first["access_token"].as_str().unwrap();
    let request = code.split_once('.').unwrap().0.to_string();
    let stream = StreamId::new(StreamType::AuthRequest, request.clone());
    let types = |log: Vec<annals_events::RecordedEvent>| log.into_iter().map(|e| e.event_type).collect::<Vec<_>>();

    // Given a replay whose revocation the store refuses,
    holding.fail_next_carrying("session.tokens_revoked");
    let (status, err) = redeem(&demo, &code).await;
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")), "{err}");
    // the first redemption's tokens still work, and the log shows the revocation owed;
    assert_eq!(demo.introspect(access).await["active"], true, "the revocation did fail");
    let requested = types(demo.app.store.read_stream(&stream, 0, ReadUntil::End).await.unwrap());
    assert_eq!(requested.last().map(String::as_str), Some("auth_request.code_replayed"), "{requested:?}");
    within(async {
        while !demo.app.read_models.read().replay_revocations.is_owed(&request) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // the worker leaves it to the replay's own request for its grace period (30 s).
    clock.advance(chrono::Duration::seconds(29));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(demo.introspect(access).await["active"], true, "left alone within the grace period");

    // When the grace period has passed,
    clock.advance(chrono::Duration::seconds(2));
    within_secs(20, async {
        while demo.app.read_models.read().replay_revocations.is_owed(&request) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    // then the tokens are revoked and the revocation recorded, once.
    assert_eq!(demo.introspect(access).await["active"], false);
    let (status, _) = demo
        .token(
            ("web", "web-secret-0123456789"),
            &[("grant_type", "refresh_token"), ("refresh_token", first["refresh_token"].as_str().unwrap())],
        )
        .await;
    assert_eq!(status, 400, "the refresh token of a replayed code");
    let requested = types(demo.app.store.read_stream(&stream, 0, ReadUntil::End).await.unwrap());
    assert_eq!(
        requested[requested.len() - 2..],
        ["auth_request.code_replayed", "auth_request.replay_revoked"],
        "{requested:?}"
    );
    let sid = claims(access)["sid"].as_str().unwrap().to_string();
    let session = StreamId::new(StreamType::Session, sid);
    let session = types(demo.app.store.read_stream(&session, 0, ReadUntil::End).await.unwrap());
    assert_eq!(session.iter().filter(|t| *t == "session.tokens_revoked").count(), 1, "{session:?}");
    demo.app.stop().await;
}
