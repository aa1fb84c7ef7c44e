//! A code redeemed twice at once, with the replay on another node: the interleaving that a
//! concurrent-redemption test hits only by chance, forced by holding the first redemption open.
use crate::oidc_flow::{alice_code, claims, Demo, Jar, RP, VERIFIER};
use crate::support::{self, holding::HoldingStore};
use annals::store::ReadUntil;
use annals_events::{StreamId, StreamType};
use serde_json::Value;
use std::time::Duration;

async fn within<T>(what: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), what).await.expect("in time")
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

/// Node A has recorded a code's redemption but not yet answered it (nor recorded its tokens in
/// the session) when the same code reaches node B. B records the replay and revokes what the
/// first redemption gives, before A has recorded it; A must then find the replay and revoke
/// what it records. Exactly one redemption succeeds, and nothing it gave can be used.
#[actix_rt::test]
async fn a_replay_on_another_node_revokes_what_the_first_redemption_records_after_it() {
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
    let (status, err) = within(redeem_at(demo.http.clone(), b_token, code)).await;
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")), "{err}");
    holding.release.notify_one();

    // Then the first redemption is the one success.
    let (status, won) = within(first).await.unwrap();
    assert_eq!(status, 200, "{won}");
    // Nothing it gave can be used.
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
    // B's revocation came before A recorded the tokens, and A revoked them after: the
    // interleaving this test is about did happen.
    let sid = claims(won["access_token"].as_str().unwrap())["sid"].as_str().unwrap().to_string();
    let log = demo.app.store.read_stream(&StreamId::new(StreamType::Session, sid), 0, ReadUntil::End).await.unwrap();
    let types: Vec<&str> = log.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["session.started", "session.tokens_revoked", "session.tokens_issued", "session.tokens_revoked"],
        "replay's revocation, the first redemption's tokens, their revocation"
    );
    b.stop().await;
    demo.app.stop().await;
}
