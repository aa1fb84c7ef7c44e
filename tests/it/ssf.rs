//! OpenID Shared Signals: a receiver client configures a push stream and a poll stream, a
//! session is revoked (a refresh token reused), and both deliver a CAEP session-revoked SET
//! that PyJWT verifies against the published audit key; acknowledged SETs are not polled
//! again; a deleted stream is gone; callers without the role are refused.
use crate::clients::{authlib_python, available};
use crate::oidc_flow::{alice_code, redeem, Demo, Jar};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const RX_SECRET: &str = "ssf-rx-secret-0123456789";

/// The demo realm with a receiver client whose service account may manage event streams.
fn with_receiver(realm: &mut Value) {
    realm["roles"]["client"]["realm-management"] = json!([{ "name": "manage-events" }, { "name": "view-events" }]);
    let clients = realm["clients"].as_array_mut().unwrap();
    clients.push(json!({ "clientId": "realm-management", "bearerOnly": true }));
    clients.push(json!({
        "clientId": "ssf-rx", "secret": RX_SECRET, "serviceAccountsEnabled": true, "standardFlowEnabled": false
    }));
    realm["users"].as_array_mut().unwrap().push(json!({
        "username": "service-account-ssf-rx",
        "enabled": true,
        "serviceAccountClientId": "ssf-rx",
        "clientRoles": { "realm-management": ["manage-events"] }
    }));
}

async fn receiver_token(demo: &Demo) -> String {
    let (status, body) = demo.token(("ssf-rx", RX_SECRET), &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

/// Checks each SET with PyJWT against `/audit/certs`; returns the payloads.
fn verify_with_pyjwt(demo: &Demo, sets: &[String]) -> Vec<Value> {
    let python = authlib_python();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/verify_jws.py");
    let mut child = Command::new(python)
        .arg(script)
        .args([&format!("{}/audit/certs", demo.app.base_url), "secevent+jwt"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(sets.join("\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "PyJWT refused a SET: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A code login, a refresh, and the first refresh token presented again: the session is
/// revoked as a stolen token's. Returns the session id.
async fn revoke_a_session(demo: &Demo) -> String {
    let mut jar = Jar::default();
    let code = alice_code(demo, &mut jar).await;
    let (status, tokens) = redeem(demo, &code).await;
    assert_eq!(status, 200);
    let first = tokens["refresh_token"].as_str().unwrap().to_string();
    let secret = ("web", "web-secret-0123456789");
    let pairs = [("grant_type", "refresh_token"), ("refresh_token", first.as_str())];
    assert_eq!(demo.token(secret, &pairs).await.0, 200);
    assert_eq!(demo.token(secret, &pairs).await.0, 400, "the reused refresh token revokes the session");
    let claims = tokens["access_token"].as_str().unwrap().split('.').nth(1).unwrap().to_string();
    use base64::Engine;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    claims["sid"].as_str().unwrap().to_string()
}

#[actix_rt::test]
async fn push_and_poll_streams_deliver_signed_caep_events_that_an_independent_library_verifies() {
    let python = authlib_python();
    let ready = Command::new(&python).args(["-c", "import jwt"]).output().is_ok_and(|o| o.status.success());
    if !available("PyJWT in tests/clients/.venv", ready) {
        return;
    }
    // given a receiver endpoint that takes pushed SETs
    let pushed: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let seen = pushed.clone();
    let (rx_base, rx_handle) = crate::support::loopback_peer(move |cfg| {
        let seen = seen.clone();
        cfg.route(
            "/ssf",
            web::post().to(move |req: HttpRequest, body: String| {
                let seen = seen.clone();
                async move {
                    let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    seen.lock().unwrap().push((h("content-type"), h("authorization"), body));
                    HttpResponse::Accepted().finish()
                }
            }),
        );
    });
    let demo = Demo::start_with(with_receiver).await;
    let base = &demo.app.base_url;
    let meta = demo.get_json(&format!("{base}/.well-known/ssf-configuration/realms/demo")).await;
    assert_eq!(meta["issuer"], demo.issuer());
    assert_eq!(meta["jwks_uri"], format!("{base}/audit/certs"));
    let streams = meta["configuration_endpoint"].as_str().unwrap().to_string();
    let token = receiver_token(&demo).await;

    // when the receiver creates a push stream and a poll stream
    let create = |body: Value| demo.http.post(&streams).bearer_auth(&token).json(&body).send();
    let push = create(json!({
        "delivery": { "method": "urn:ietf:rfc:8935", "endpoint_url": format!("{rx_base}/ssf"), "authorization_header": "Bearer rx-push-credential" },
        "events_requested": [SESSION_REVOKED],
        "description": "push to the test receiver"
    }))
    .await
    .unwrap();
    let status = push.status();
    let push: Value = push.json().await.unwrap();
    assert_eq!(status, 201, "{push}");
    assert_eq!((push["aud"].as_str(), push["events_delivered"][0].as_str()), (Some("ssf-rx"), Some(SESSION_REVOKED)));
    assert!(!push.to_string().contains("rx-push-credential"), "the credential is never shown back");
    let poll = create(json!({ "delivery": { "method": "urn:ietf:rfc:8936" }, "events_requested": [SESSION_REVOKED] }))
        .await
        .unwrap();
    let status = poll.status();
    let poll: Value = poll.json().await.unwrap();
    assert_eq!(status, 201, "{poll}");
    let poll_url = poll["delivery"]["endpoint_url"].as_str().unwrap().to_string();
    // and a session is revoked
    let sid = revoke_a_session(&demo).await;

    // then the push receiver gets the SET, with its credential, as application/secevent+jwt
    let deadline = Instant::now() + Duration::from_secs(20);
    while pushed.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no SET pushed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = pushed.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "one session revoked, one SET: {got:?}");
    let (content_type, authorization, set) = &got[0];
    assert_eq!(
        (content_type.as_str(), authorization.as_str()),
        ("application/secevent+jwt", "Bearer rx-push-credential")
    );
    let claims = verify_with_pyjwt(&demo, std::slice::from_ref(set));
    let c = &claims[0];
    assert_eq!((c["iss"].as_str(), c["aud"].as_str()), (Some(demo.issuer().as_str()), Some("ssf-rx")));
    let event = &c["events"][SESSION_REVOKED];
    assert_eq!(
        (event["initiating_entity"].as_str(), c["sub_id"]["session"]["id"].as_str()),
        (Some("policy"), Some(sid.as_str()))
    );
    assert_eq!(c["sub_id"]["user"]["format"], "iss_sub");

    // and the poll stream returns the same event, until it is acknowledged
    let poll_once = |body: Value| demo.http.post(&poll_url).bearer_auth(&token).json(&body).send();
    let first: Value = poll_once(json!({ "returnImmediately": true })).await.unwrap().json().await.unwrap();
    let sets = first["sets"].as_object().unwrap();
    let revoked: Vec<(&String, &Value)> = sets
        .iter()
        .filter(|(_, s)| {
            verify_with_pyjwt(&demo, &[s.as_str().unwrap().to_string()])[0]["events"].get(SESSION_REVOKED).is_some()
        })
        .collect();
    assert_eq!(revoked.len(), 1, "{first}");
    // jti: the event's id, then the stream's (unique per issuer, the same event beneath)
    let event_of = |jti: &str, stream: &Value| {
        jti.strip_suffix(&format!("-{}", stream["stream_id"].as_str().unwrap())).unwrap().to_string()
    };
    assert_eq!(event_of(revoked[0].0, &poll), event_of(c["jti"].as_str().unwrap(), &push), "the same event");
    let again: Value = poll_once(json!({ "returnImmediately": true })).await.unwrap().json().await.unwrap();
    let ids = |v: &Value| v["sets"].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    // The same SETs (by jti: each is signed anew, with the time it is issued as `iat`).
    assert_eq!(ids(&again), ids(&first), "not acknowledged: polled again");
    let acks: Vec<&String> = sets.keys().collect();
    let after: Value =
        poll_once(json!({ "ack": acks, "returnImmediately": true })).await.unwrap().json().await.unwrap();
    assert_eq!(
        (after["sets"].as_object().unwrap().len(), after["moreAvailable"].as_bool()),
        (0, Some(false)),
        "{after}"
    );

    // and with two more revocations, acknowledging the later first returns only the earlier
    let _ = revoke_a_session(&demo).await;
    let _ = revoke_a_session(&demo).await;
    let two: Value = poll_once(json!({ "returnImmediately": true })).await.unwrap().json().await.unwrap();
    let mut jtis: Vec<String> = two["sets"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(jtis.len(), 2, "{two}");
    // jti = event id (UUIDv7, in log order) and stream id
    jtis.sort();
    let (earlier, later) = (&jtis[0], &jtis[1]);
    let only: Value =
        poll_once(json!({ "ack": [later], "returnImmediately": true })).await.unwrap().json().await.unwrap();
    let left: Vec<&String> = only["sets"].as_object().unwrap().keys().collect();
    assert_eq!(left, vec![earlier], "the acknowledged one is not returned again");
    let none: Value =
        poll_once(json!({ "ack": [earlier], "returnImmediately": true })).await.unwrap().json().await.unwrap();
    assert!(none["sets"].as_object().unwrap().is_empty(), "{none}");
    // the push stream got those too, each once
    let deadline = Instant::now() + Duration::from_secs(20);
    while pushed.lock().unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "pushed: {}", pushed.lock().unwrap().len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(pushed.lock().unwrap().len(), 3, "each SET pushed once, none again");

    // and callers without the role, or without a token, are refused; a deleted stream is gone
    assert_eq!(demo.http.get(&streams).send().await.unwrap().status(), 401);
    let (_, alice) = demo
        .token(
            ("web", "web-secret-0123456789"),
            &[("grant_type", "password"), ("username", "alice"), ("password", "alice-password")],
        )
        .await;
    let alice = alice["access_token"].as_str().unwrap();
    assert_eq!(demo.http.get(&streams).bearer_auth(alice).send().await.unwrap().status(), 403);
    // another client sees none of ssf-rx's streams and cannot poll them
    let (_, svc) = demo.token(("svc", "svc-secret-0123456789"), &[("grant_type", "client_credentials")]).await;
    let svc = svc["access_token"].as_str().unwrap();
    assert_eq!(demo.http.post(&poll_url).bearer_auth(svc).json(&json!({})).send().await.unwrap().status(), 403);
    let mine: Value = demo.http.get(&streams).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(mine.as_array().unwrap().len(), 2, "ssf-rx's own two streams");
    // a verification asked for the poll stream comes back through it, with its state
    let verify_url = meta["verification_endpoint"].as_str().unwrap().to_string();
    let asked = demo
        .http
        .post(&verify_url)
        .bearer_auth(&token)
        .json(&json!({ "stream_id": poll["stream_id"], "state": "check-42" }))
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 204);
    let v: Value = poll_once(json!({ "returnImmediately": true })).await.unwrap().json().await.unwrap();
    let sets: Vec<String> = v["sets"].as_object().unwrap().values().map(|s| s.as_str().unwrap().to_string()).collect();
    assert_eq!(sets.len(), 1, "{v}");
    let claims = verify_with_pyjwt(&demo, &sets);
    let verification = &claims[0]["events"]["https://schemas.openid.net/secevent/ssf/event-type/verification"];
    assert_eq!(verification["state"], "check-42");
    assert_eq!(claims[0]["sub_id"], json!({ "format": "opaque", "id": poll["stream_id"] }));
    let acks: Vec<&String> = v["sets"].as_object().unwrap().keys().collect();
    let _ = poll_once(json!({ "ack": acks, "returnImmediately": true })).await.unwrap();
    // the receiver changes its push stream (PATCH) and cannot turn the poll stream into push
    let push_id = push["stream_id"].as_str().unwrap();
    let patched = demo
        .http
        .patch(&streams)
        .bearer_auth(&token)
        .json(&json!({ "stream_id": push_id, "description": "renamed" }))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(
        (patched["description"].as_str(), patched["events_requested"][0].as_str()),
        (Some("renamed"), Some(SESSION_REVOKED))
    );
    assert_eq!(patched["delivery"]["endpoint_url"], format!("{rx_base}/ssf"), "the rest kept");
    let switch = json!({ "stream_id": poll["stream_id"], "delivery": { "method": "urn:ietf:rfc:8935", "endpoint_url": format!("{rx_base}/ssf") } });
    let refused = demo.http.put(&streams).bearer_auth(&token).json(&switch).send().await.unwrap();
    assert_eq!(refused.status(), 400, "the delivery method cannot change");
    let id = poll["stream_id"].as_str().unwrap();
    let gone = demo.http.delete(format!("{streams}?stream_id={id}")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(gone.status(), 204);
    let read = demo.http.get(format!("{streams}?stream_id={id}")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(read.status(), 404);
    assert_eq!(poll_once(json!({})).await.unwrap().status(), 404);
    let bad = create(json!({ "delivery": { "method": "urn:ietf:rfc:8935" } })).await.unwrap();
    assert_eq!(bad.status(), 400, "push without an endpoint");
    rx_handle.stop(false).await;
    demo.app.stop().await;
}

/// POSTs `body` with the receiver's bearer `token`; the JSON answer.
async fn post_json(demo: &Demo, url: &str, token: &str, body: &Value) -> Value {
    demo.http.post(url).bearer_auth(token).json(body).send().await.unwrap().json().await.unwrap()
}

/// Relying parties know a session by the `sid` of their tokens. An offline token carries the
/// SSO session it came from (its own stream is `osid`): when the offline session is revoked,
/// the SET names that `sid`, as its back-channel logout token does.
#[actix_rt::test]
async fn an_offline_session_revoked_by_reuse_is_announced_under_the_sid_its_tokens_carry() {
    let demo = Demo::start_with(|realm| {
        with_receiver(realm);
        realm["users"].as_array_mut().unwrap().push(json!({
            "username": "olivia",
            "enabled": true,
            "credentials": [{ "type": "password", "value": "olivia-password" }],
            "realmRoles": ["user", "offline_access"]
        }));
    })
    .await;
    let meta = demo.get_json(&format!("{}/.well-known/ssf-configuration/realms/demo", demo.app.base_url)).await;
    let token = receiver_token(&demo).await;
    let poll_stream = json!({ "delivery": { "method": "urn:ietf:rfc:8936" }, "events_requested": [SESSION_REVOKED] });
    let poll = post_json(&demo, meta["configuration_endpoint"].as_str().unwrap(), &token, &poll_stream).await;
    let poll_url = poll["delivery"]["endpoint_url"].as_str().unwrap().to_string();

    // given an offline token, refreshed once
    let web = ("web", "web-secret-0123456789");
    let login = [
        ("grant_type", "password"),
        ("username", "olivia"),
        ("password", "olivia-password"),
        ("scope", "openid offline_access"),
    ];
    let (status, t) = demo.token(web, &login).await;
    assert_eq!(status, 200, "{t}");
    let first = t["refresh_token"].as_str().unwrap().to_string();
    let claims = crate::oidc_flow::claims(&first);
    let (sid, osid) = (claims["sid"].as_str().unwrap().to_string(), claims["osid"].as_str().unwrap().to_string());
    assert_ne!(sid, osid);
    let again = [("grant_type", "refresh_token"), ("refresh_token", first.as_str())];
    assert_eq!(demo.token(web, &again).await.0, 200);
    // when the first is presented again: the offline session is revoked, the SSO one lives on
    assert_eq!(demo.token(web, &again).await.0, 400);

    // then the SET names the session by the sid the tokens carried
    let deadline = Instant::now() + Duration::from_secs(20);
    let sets = loop {
        let v = post_json(&demo, &poll_url, &token, &json!({ "returnImmediately": true })).await;
        let sets: Vec<String> =
            v["sets"].as_object().unwrap().values().map(|s| s.as_str().unwrap().to_string()).collect();
        if !sets.is_empty() {
            break sets;
        }
        assert!(Instant::now() < deadline, "no SET");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(sets.len(), 1, "only the offline session ended");
    let set = crate::oidc_flow::claims(&sets[0]);
    assert_eq!(set["sub_id"]["session"]["id"].as_str(), Some(sid.as_str()), "{set}");
    assert_eq!(set["events"][SESSION_REVOKED]["initiating_entity"], "policy");
    demo.app.stop().await;
}
