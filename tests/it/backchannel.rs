//! Back-channel logout against a real HTTP receiver: signed logout tokens, retries with
//! backoff after failures, every attempt in the log.
use crate::oidc_flow::{alice_code, authorize, claims, header, query_of, redeem, verify_with_jwks, Demo, Jar};
use crate::support::wait_until;
use actix_web::{web, HttpResponse};
use reqwest::header::{COOKIE, LOCATION};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a receiver saw: when, and the `logout_token` of each POST.
type Seen = Arc<Mutex<Vec<(Instant, String)>>>;

/// A relying party's back-channel endpoint that answers 503 while it has seen no more than
/// `failures` POSTs (which the test may change).
async fn receiver(failures: Arc<AtomicUsize>) -> (String, Seen, actix_web::dev::ServerHandle) {
    let seen: Seen = Arc::default();
    let data = seen.clone();
    let (base, handle) = crate::support::loopback_peer(move |cfg| {
        let (seen, failures) = (data.clone(), failures.clone());
        cfg.route(
            "/bc",
            web::post().to(move |form: web::Form<std::collections::HashMap<String, String>>| {
                let (seen, failures) = (seen.clone(), failures.clone());
                async move {
                    let mut all = seen.lock().unwrap();
                    all.push((Instant::now(), form.get("logout_token").cloned().unwrap_or_default()));
                    match all.len() <= failures.load(Ordering::SeqCst) {
                        true => HttpResponse::ServiceUnavailable().finish(),
                        false => HttpResponse::Ok().finish(),
                    }
                }
            }),
        );
    });
    (format!("{base}/bc"), seen, handle)
}

/// The demo realm plus a client `bc` whose back-channel logout URL is `url`.
async fn with_receiver(url: &str) -> Demo {
    Demo::start_with(|r| {
        r["clients"].as_array_mut().unwrap().push(serde_json::json!({
            "clientId": "bc",
            "secret": "bc-secret-0123456789",
            "redirectUris": ["https://bc.example/cb"],
            "attributes": { "backchannel.logout.url": url },
        }));
    })
    .await
}

/// SSO at `bc` in the browser's session, so `bc` holds tokens of it.
async fn bc_tokens(demo: &Demo, jar: &mut Jar) {
    let bc = [
        ("client_id", "bc"),
        ("redirect_uri", "https://bc.example/cb"),
        ("response_type", "code"),
        ("scope", "openid"),
    ];
    let res = authorize(demo, jar, &bc, None).await;
    let code = query_of(res.headers()[LOCATION].to_str().unwrap())["code"].clone();
    let (status, _) = demo
        .token(
            ("bc", "bc-secret-0123456789"),
            &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", "https://bc.example/cb")],
        )
        .await;
    assert_eq!(status, 200);
}

#[actix_rt::test]
async fn a_logout_posts_each_registered_client_a_signed_logout_token_retrying_with_backoff() {
    let (url, seen, rp) = receiver(Arc::new(AtomicUsize::new(2))).await;
    let demo = with_receiver(&url).await;
    let mut jar = Jar::default();
    let (_, web) = redeem(&demo, &alice_code(&demo, &mut jar).await).await;
    bc_tokens(&demo, &mut jar).await;
    let id = web["id_token"].as_str().unwrap();
    let (sid, sub) = (claims(id)["sid"].clone(), claims(id)["sub"].clone());
    assert!(seen.lock().unwrap().is_empty(), "nothing before the logout");

    let res = demo.http.get(demo.url("logout")).query(&[("id_token_hint", id)]).header(COOKIE, jar.header()).send();
    assert!(res.await.unwrap().status().is_success());
    wait_until(|| seen.lock().unwrap().len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "two refusals, then one success, then nothing more");
    // Backoff: one second after the first failure, two after the second (ticks are 250 ms).
    let gap = |i: usize| seen[i].0.duration_since(seen[i - 1].0);
    assert!(gap(1) >= Duration::from_millis(900) && gap(2) >= Duration::from_millis(1900), "{:?}", (gap(1), gap(2)));

    let token = &seen[2].1;
    verify_with_jwks(&demo, token).await;
    assert_eq!(header(token)["typ"], "logout+jwt");
    let c = claims(token);
    assert_eq!((c["iss"].as_str().unwrap(), c["aud"].as_str()), (demo.issuer().as_str(), Some("bc")));
    assert_eq!((&c["sid"], &c["sub"]), (&sid, &sub));
    assert_eq!(c["events"], serde_json::json!({"http://schemas.openid.net/event/backchannel-logout": {}}));
    assert!(c.get("nonce").is_none());
    let jtis: std::collections::BTreeSet<_> = seen.iter().map(|(_, t)| claims(t)["jti"].to_string()).collect();
    assert_eq!(jtis.len(), 3, "a fresh token each attempt");

    let events = demo.app.store.read_all(0, 100_000).await.unwrap();
    let of = |t: &str| -> Vec<Value> {
        events.iter().filter(|e| e.event_type == t).map(|e| serde_json::from_str(&e.payload).unwrap()).collect()
    };
    let failed = of("logout_delivery.failed");
    let delivered = of("logout_delivery.delivered");
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed.iter().all(|f| f["status"] == 503 && f["retry_at_ms"].is_i64()));
    assert_eq!(delivered.len(), 1, "web has no back-channel URL: only bc is told");
    assert_eq!((delivered[0]["attempt"].as_u64(), delivered[0]["status"].as_u64()), (Some(3), Some(200)));
    assert_eq!(delivered[0]["jti"], claims(token)["jti"]);
    assert!(events.iter().all(|e| !e.payload.contains(token.as_str())), "the token itself is never recorded");
    let logged_out = of("session.logged_out");
    assert_eq!(logged_out[0]["clients"].as_array().map(Vec::len), Some(2), "both clients held tokens");
    demo.app.stop().await;
    rp.stop(true).await;
}

#[actix_rt::test]
async fn a_delivery_owed_when_the_node_stops_is_made_by_the_next_node() {
    let failures = Arc::new(AtomicUsize::new(usize::MAX));
    let (url, seen, rp) = receiver(failures.clone()).await;
    let demo = with_receiver(&url).await;
    let mut jar = Jar::default();
    let (_, web) = redeem(&demo, &alice_code(&demo, &mut jar).await).await;
    bc_tokens(&demo, &mut jar).await;
    let id = web["id_token"].as_str().unwrap();
    let res = demo.http.get(demo.url("logout")).query(&[("id_token_hint", id)]).header(COOKIE, jar.header()).send();
    assert!(res.await.unwrap().status().is_success());
    wait_until(|| !seen.lock().unwrap().is_empty()).await;
    assert!(!seen.lock().unwrap().is_empty(), "a first, refused attempt");

    let demo = demo.restart().await;
    failures.store(0, Ordering::SeqCst);
    let events = || async { demo.app.store.read_all(0, 100_000).await.unwrap() };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !events().await.iter().any(|e| e.event_type == "logout_delivery.delivered") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = events().await;
    let delivered: Vec<Value> = all
        .iter()
        .filter(|e| e.event_type == "logout_delivery.delivered")
        .map(|e| serde_json::from_str(&e.payload).unwrap())
        .collect();
    assert_eq!(delivered.len(), 1, "delivered once, by the new node");
    assert!(delivered[0]["attempt"].as_u64().unwrap() >= 2, "{delivered:?}");
    let token = seen.lock().unwrap().last().unwrap().1.clone();
    assert_eq!(claims(&token)["iss"], demo.issuer(), "signed by the node that delivered");
    demo.app.stop().await;
    rp.stop(true).await;
}

#[actix_rt::test]
async fn an_offline_session_ended_by_reuse_is_announced_under_the_sid_its_tokens_carry() {
    let (url, seen, rp) = receiver(Arc::new(AtomicUsize::new(0))).await;
    let demo = Demo::start_with(|r| {
        r["users"][0]["realmRoles"].as_array_mut().unwrap().push("offline_access".into());
        r["clients"].as_array_mut().unwrap().push(serde_json::json!({
            "clientId": "bc",
            "secret": "bc-secret-0123456789",
            "redirectUris": ["https://bc.example/cb"],
            "attributes": { "backchannel.logout.url": url },
        }));
    })
    .await;
    let bc = ("bc", "bc-secret-0123456789");
    let params = [
        ("client_id", "bc"),
        ("redirect_uri", "https://bc.example/cb"),
        ("response_type", "code"),
        ("scope", "openid offline_access"),
    ];
    let res = authorize(&demo, &mut Jar::default(), &params, Some(("alice", "alice-password"))).await;
    let code = query_of(res.headers()[LOCATION].to_str().unwrap())["code"].clone();
    let redeem = [("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", "https://bc.example/cb")];
    let (status, t) = demo.token(bc, &redeem).await;
    assert_eq!(status, 200, "{t}");
    let sid = claims(t["id_token"].as_str().unwrap())["sid"].clone();
    let offline = t["refresh_token"].as_str().unwrap();
    let refresh = [("grant_type", "refresh_token"), ("refresh_token", offline)];
    let (status, _) = demo.token(bc, &refresh).await;
    assert_eq!(status, 200);
    // The rotated-away offline token presented again: the offline session is revoked.
    let (status, _) = demo.token(bc, &refresh).await;
    assert_eq!(status, 400);
    wait_until(|| !seen.lock().unwrap().is_empty()).await;
    let token = seen.lock().unwrap()[0].1.clone();
    let c = claims(&token);
    assert_eq!(c["sid"], sid, "the SSO session's id, which bc's tokens carry, not the offline session's own");
    assert_eq!(c["aud"], "bc");
    demo.app.stop().await;
    rp.stop(true).await;
}
