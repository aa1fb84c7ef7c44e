//! Requests refused before any aggregate changes are facts too: an unknown client, a redirect
//! URI that is not registered, a wrong client secret, a made-up code or refresh token, an
//! audit pull without a valid token or without the role. A flood from one source is recorded
//! a few times, then counted in a summary, so it cannot grow the log without bound.
use crate::audit::{add_auditor, password_token, pull};
use crate::oidc_flow::Demo;
use serde_json::Value;

const WRONG_SECRET: &str = "not-the-secret-5b1e";

/// Every `rejected_request` record of the demo realm, as the audit pull gives them.
async fn refused_records(demo: &Demo, auditor: &str) -> Vec<Value> {
    let (status, records, _) = pull(demo, Some(auditor), "").await;
    assert_eq!(status, 200);
    records
        .into_iter()
        .filter(|r| r["annalsType"].as_str().is_some_and(|t| t.starts_with("rejected_request.")))
        .collect()
}

fn find<'a>(records: &'a [Value], error: &str, endpoint: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["error"] == error && r["details"]["endpoint"] == endpoint).collect()
}

#[actix_rt::test]
async fn refused_requests_are_recorded_with_keycloak_types_and_a_flood_is_summarized() {
    let demo = Demo::start_with(add_auditor).await;
    let auditor =
        password_token(&demo, "demo", ("web", Some("web-secret-0123456789")), ("auditor", "auditor-password")).await;
    let alice =
        password_token(&demo, "demo", ("web", Some("web-secret-0123456789")), ("alice", "alice-password")).await;
    // when requests are refused at each endpoint
    let auth = |q: &[(&str, &str)]| demo.http.get(demo.url("auth")).query(q).send();
    let unknown = auth(&[("client_id", "no-such-client"), ("redirect_uri", "https://app.example/cb")]).await.unwrap();
    assert_eq!(unknown.status(), 400);
    let evil = [("client_id", "web"), ("redirect_uri", "https://evil.example/cb"), ("response_type", "code")];
    assert_eq!(auth(&evil).await.unwrap().status(), 400);
    let (status, _) = demo.token(("svc", WRONG_SECRET), &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 401);
    let made_up = format!("{}.{}", uuid::Uuid::new_v4(), "a".repeat(43));
    let form = [("grant_type", "authorization_code"), ("code", made_up.as_str()), ("redirect_uri", "https://x/cb")];
    let (status, body) = demo.token(("web", "web-secret-0123456789"), &form).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let form = [("grant_type", "refresh_token"), ("refresh_token", "not.a.token")];
    assert_eq!(demo.token(("web", "web-secret-0123456789"), &form).await.0, 400);
    assert_eq!(pull(&demo, None, "").await.0, 401);
    assert_eq!(pull(&demo, Some(&alice), "").await.0, 403);
    // a wrong password is recorded by its authorization request already, not twice
    let form = [("grant_type", "password"), ("username", "alice"), ("password", "wrong")];
    assert_eq!(demo.token(("web", "web-secret-0123456789"), &form).await.0, 400);

    // then each is a record with Keycloak's type and error, the source and what was presented
    let records = refused_records(&demo, &auditor).await;
    let one = |error: &str, endpoint: &str| {
        let found = find(&records, error, endpoint);
        assert_eq!(found.len(), 1, "{error} at {endpoint}: {records:#?}");
        found[0].clone()
    };
    let r = one("client_not_found", "auth");
    assert_eq!((r["type"].as_str(), r["details"]["client_id"].as_str()), (Some("LOGIN_ERROR"), Some("no-such-client")));
    assert_eq!(r["ipAddress"], "127.0.0.1");
    assert_eq!(r["outcome"], "failure");
    let r = one("invalid_redirect_uri", "auth");
    assert_eq!(r["details"]["redirect_uri"], "https://evil.example/cb");
    let r = one("invalid_client_credentials", "token");
    assert_eq!((r["type"].as_str(), r["details"]["client_id"].as_str()), (Some("CLIENT_LOGIN_ERROR"), Some("svc")));
    assert_eq!(one("invalid_code", "token")["type"], "CODE_TO_TOKEN_ERROR");
    assert_eq!(one("invalid_token", "token")["type"], "REFRESH_TOKEN_ERROR");
    let r = one("invalid_token", "admin");
    assert!(r.get("type").is_none(), "no Keycloak type for a refused admin call: {r}");
    assert!(one("not_allowed", "admin")["details"]["description"].as_str().unwrap().contains("lacks view-events"));
    assert!(find(&records, "invalid_grant", "token").is_empty(), "the wrong password is its LOGIN_ERROR only");
    // and no secret the caller sent is in the log
    let log = demo.app.store.read_all(0, 100_000).await.unwrap();
    for secret in [WRONG_SECRET, made_up.as_str(), "not.a.token", alice.as_str()] {
        assert!(log.iter().all(|e| !e.payload.contains(secret) && !e.metadata.contains(secret)), "{secret} in the log");
    }

    // when one source floods the token endpoint with a wrong secret
    for _ in 0..40 {
        assert_eq!(demo.token(("svc", WRONG_SECRET), &[("grant_type", "client_credentials")]).await.0, 401);
    }
    // then a few are recorded one by one and the rest counted in one summary (written at
    // the latest when the node stops)
    let demo = demo.restart().await;
    let auditor =
        password_token(&demo, "demo", ("web", Some("web-secret-0123456789")), ("auditor", "auditor-password")).await;
    let records = refused_records(&demo, &auditor).await;
    let recorded = find(&records, "invalid_client_credentials", "token");
    let summaries: Vec<&Value> =
        recorded.iter().copied().filter(|r| r["annalsType"] == "rejected_request.summarized").collect();
    let one_by_one = recorded.len() - summaries.len();
    let counted: u64 = summaries.iter().map(|s| s["details"]["count"].as_str().unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(one_by_one as u64 + counted, 41, "every refusal is in the log, one way or the other");
    // at most five one by one and one summary per window (the last may have been cut short
    // by the stop, so it can share its start with a later one)
    let mut per_window = std::collections::BTreeMap::<i64, usize>::new();
    for r in recorded.iter().filter(|r| r["annalsType"] == "rejected_request.recorded") {
        *per_window.entry(r["time"].as_i64().unwrap() / 60_000).or_default() += 1;
    }
    assert!(per_window.values().all(|n| *n <= 5), "{per_window:?}");
    let mut starts: Vec<&str> = summaries.iter().map(|s| s["details"]["from_ms"].as_str().unwrap()).collect();
    let n = starts.len();
    starts.dedup();
    assert!(n - starts.len() <= 1, "one summary per window and key: {summaries:?}");
    assert!(summaries.iter().all(|s| s["details"]["source"] == "127.0.0.1" && s["type"].is_null()));
    demo.app.stop().await;
}
