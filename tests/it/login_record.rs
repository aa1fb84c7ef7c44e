//! Where a login's record is deferred (an SQLite node, the log its own) and where it is not,
//! and what a record that never commits leaves: a code that gives nothing.
use crate::oidc_flow::{alice_code, authorize, query_of, redeem, Demo, Jar, RP};
use crate::support::holding::HoldingStore;
use annals::store::ReadUntil;
use annals_events::{StreamId, StreamType};
use reqwest::header::LOCATION;
use std::sync::Arc;

async fn demo_holding(shared: bool) -> (Demo, Arc<HoldingStore>) {
    let mut held = None;
    let demo = Demo::start_wrapped(
        |_| {},
        |inner| {
            let h = HoldingStore::new(inner);
            if shared {
                h.share();
            }
            held = Some(h.clone());
            h
        },
    )
    .await;
    (demo, held.unwrap())
}

fn count(types: &[String], t: &str) -> usize {
    types.iter().filter(|x| x.as_str() == t).count()
}

#[actix_rt::test]
async fn a_code_logins_record_is_deferred_only_where_the_log_is_the_nodes_alone() {
    // Given a node whose log is its own, a code login's record is deferred with its session,
    let (demo, holding) = demo_holding(false).await;
    let code = alice_code(&demo, &mut Jar::default()).await;
    let deferred = holding.deferred_types();
    for t in ["auth_request.started", "auth_request.authenticated", "auth_request.code_issued", "session.started"] {
        assert_eq!(count(&deferred, t), 1, "{t} in {deferred:?}");
    }
    // and the redemption gives tokens all the same.
    let (status, tokens) = redeem(&demo, &code).await;
    assert_eq!(status, 200, "{tokens}");
    // An answer that carries tokens itself (hybrid) commits its record first.
    let hybrid = [
        ("client_id", "web"),
        ("redirect_uri", RP),
        ("response_type", "code id_token"),
        ("scope", "openid"),
        ("nonce", "n"),
    ];
    let res = authorize(&demo, &mut Jar::default(), &hybrid, Some(("alice", "alice-password"))).await;
    assert_eq!(res.status(), 302);
    let deferred = holding.deferred_types();
    assert_eq!(count(&deferred, "auth_request.started"), 2, "{deferred:?}");
    assert_eq!(count(&deferred, "auth_request.code_issued"), 1, "{deferred:?}");
    demo.app.stop().await;

    // Given a log other nodes share, the code login's record commits before its answer.
    let (demo, holding) = demo_holding(true).await;
    alice_code(&demo, &mut Jar::default()).await;
    let deferred = holding.deferred_types();
    assert_eq!(count(&deferred, "auth_request.code_issued") + count(&deferred, "session.started"), 0, "{deferred:?}");
    demo.app.stop().await;
}

#[actix_rt::test]
async fn a_code_whose_login_record_never_committed_gives_nothing() {
    let (demo, holding) = demo_holding(false).await;
    // Given a login whose deferred record is lost (its batch failed),
    holding.lose_next_deferred_carrying("auth_request.code_issued");
    let res = authorize(
        &demo,
        &mut Jar::default(),
        &crate::oidc_flow::code_request("web", RP),
        Some(("alice", "alice-password")),
    )
    .await;
    assert_eq!(res.status(), 302, "the browser had its code before the record was durable");
    let code = query_of(res.headers()[LOCATION].to_str().unwrap())["code"].clone();
    // when its code is redeemed, it is refused,
    let (status, err) = redeem(&demo, &code).await;
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")), "{err}");
    // and the log holds no session and no tokens for it: only the request's start.
    let request = code.split_once('.').unwrap().0.to_string();
    let log = demo.app.store.read_stream(&StreamId::new(StreamType::AuthRequest, request), 0, ReadUntil::End).await;
    let types: Vec<String> = log.unwrap().into_iter().map(|e| e.event_type).collect();
    assert!(!types.iter().any(|t| t == "auth_request.code_issued" || t == "auth_request.code_redeemed"), "{types:?}");
    let all = demo.app.store.read_all(0, 100_000).await.unwrap();
    assert!(all.iter().all(|e| e.event_type != "session.tokens_issued" && e.event_type != "session.started"));
    demo.app.stop().await;
}
