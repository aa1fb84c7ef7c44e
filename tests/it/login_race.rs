//! A password grant's account changed between its password check and its tokens: the window
//! a concurrent test hits only by chance, forced by holding the grant right after its check.
use crate::oidc_flow::Demo;
use crate::support::holding::HoldingStore;
use annals::domain::user::{User, UserCommand};
use serde_json::Value;
use std::time::Duration;

async fn within<T>(what: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), what).await.expect("in time")
}

/// Types of the events appended after `after`, in log order.
async fn types_after(demo: &Demo, after: u64) -> Vec<(String, String)> {
    let events = demo.app.store.read_all(after, 10_000).await.unwrap();
    events.into_iter().map(|e| (e.stream.id, e.event_type)).collect()
}

/// The grant has checked alice's password (its clearing of her earlier failure is committed,
/// the grant kept waiting) when her account is disabled. It must issue no tokens and start no
/// session, yet the log must say what happened: the request, her successful authentication.
#[actix_rt::test]
async fn an_account_disabled_between_the_password_check_and_the_tokens_gets_none() {
    let mut held = None;
    let demo = Demo::start_wrapped(
        |r| r["bruteForceProtected"] = true.into(),
        |inner| {
            let h = HoldingStore::new(inner);
            held = Some(h.clone());
            h
        },
    )
    .await;
    let holding = held.unwrap();
    let web = ("web", "web-secret-0123456789");
    let grant = |pw: &'static str| {
        let demo = &demo;
        async move { demo.token(web, &[("grant_type", "password"), ("username", "alice"), ("password", pw)]).await }
    };
    // Given one failure on record, so a successful check clears it (an append to hold).
    assert_eq!(grant("wrong-password").await.0, 400);
    let realm = demo.app.read_models.read().realms.by_name("demo").unwrap().id.clone();
    let pool = demo.app.store.pool();
    let alice = annals::sqlmodels::users::by_username(&pool, &realm, "alice").await.unwrap().unwrap();
    let before = demo.app.store.read_all(0, 100_000).await.unwrap().last().unwrap().position;

    // When her password has been checked and, before the grant goes on, she is disabled.
    holding.hold_next_carrying("login_failures.cleared");
    let pending = {
        let (http, url) = (demo.http.clone(), demo.url("token"));
        actix_rt::spawn(async move {
            let form = [("grant_type", "password"), ("username", "alice"), ("password", "alice-password")];
            let res = http.post(url).basic_auth(web.0, Some(web.1)).form(&form).send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    within(holding.appended.notified()).await;
    let disabled = annals_events::user::UserProfile { enabled: false, ..alice.profile.clone() };
    let meta = annals_events::Metadata::system("test");
    let done = demo.app.hosts.execute::<User>(&alice.id, UserCommand::ChangeProfile { profile: disabled }, meta);
    let position = within(done).await.unwrap().position;
    demo.app.read_models.wait_for(position, Duration::from_secs(5)).await.unwrap();
    assert!(demo.app.sql_models.wait_for(position, Duration::from_secs(5)).await);
    holding.release.notify_one();

    // Then no tokens, no session; the request and the authentication are on record.
    let (status, err) = within(pending).await.unwrap();
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")), "{err}");
    let log = types_after(&demo, before).await;
    let kinds: Vec<&str> = log.iter().map(|(_, t)| t.as_str()).collect();
    assert!(!kinds.iter().any(|t| t.starts_with("session.")), "no session: {kinds:?}");
    let request = log.iter().find(|(_, t)| t == "auth_request.authenticated").map(|(id, _)| id.clone());
    let request = request.unwrap_or_else(|| panic!("the authentication is recorded: {kinds:?}"));
    let of_request: Vec<&str> = log.iter().filter(|(id, _)| *id == request).map(|(_, t)| t.as_str()).collect();
    assert_eq!(of_request, ["auth_request.started", "auth_request.authenticated"]);
    // And a later grant is refused outright.
    let (status, _) = grant("alice-password").await;
    assert_eq!(status, 400);
    demo.app.stop().await;
}
