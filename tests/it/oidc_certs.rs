//! The realm's JSON Web Key Set, as relying parties fetch it.
use crate::support;
use annals::domain::realm::{Realm, RealmCommand};
use annals::domain::signing_key::{SigningKey, SigningKeyCommand};
use annals::provision::{create, realm_key};
use annals_events::Metadata;
use serde_json::Value;
use std::time::Duration;

fn kids(body: &Value) -> Vec<String> {
    body["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect()
}

#[actix_rt::test]
async fn certs_publish_signing_keys_across_a_rotation_and_never_a_private_part() {
    let dir = tempfile::tempdir().unwrap();
    let app = support::spawn_app(support::serve_config(dir.path(), None)).await;
    let (c, base) = (support::http(), app.base_url.clone());
    let url = format!("{base}/realms/master/protocol/openid-connect/certs");
    let master = app.read_models.read().realms.by_name("master").unwrap().id.clone();
    let rs256 = app.read_models.read().signing_keys.active(&master, "RS256").unwrap().kid.clone();

    let res = c.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-cache");
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(kids(&body), vec![rs256.clone()]);

    // Rotation: an ES256 key joins; the RS256 key retires but stays published while its
    // tokens may live; a key retired in the past disappears.
    let meta = Metadata::system("test").with_realm("master");
    let es256 = realm_key(&master, "ES256", &app.keys, chrono::Utc::now(), &meta).unwrap();
    let es256_kid = es256.stream.id.clone();
    let appended = app.store.append(es256).await.unwrap();
    let retire = |until: i64| SigningKeyCommand::Retire { publish_until: until };
    let later = chrono::Utc::now().timestamp() + 300;
    let done = app.hosts.execute::<SigningKey>(&rs256, retire(later), meta.clone()).await.unwrap();
    app.read_models.wait_for(done.position.max(appended.last_position), Duration::from_secs(5)).await.unwrap();
    let body: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(kids(&body), vec![rs256.clone(), es256_kid.clone()], "oldest first: {body}");
    for key in body["keys"].as_array().unwrap() {
        assert_eq!(key["use"], "sig");
        assert!(key["alg"].is_string() && key["kty"].is_string());
        // Public members only: anything else (d, p, q, k, oth, ...) would be a leak.
        let public = ["kty", "kid", "use", "alg", "n", "e", "crv", "x", "y"];
        for member in key.as_object().unwrap().keys() {
            assert!(public.contains(&member.as_str()), "member {member} published: {key}");
        }
    }
    let es = body["keys"].as_array().unwrap().iter().find(|k| k["kid"] == es256_kid.as_str()).unwrap();
    assert_eq!(
        (es["kty"].as_str(), es["crv"].as_str(), es["alg"].as_str()),
        (Some("EC"), Some("P-256"), Some("ES256"))
    );

    // Another realm's keys stay in that realm's set.
    let other = create::<Realm>(
        "other",
        RealmCommand::Create { name: "other".into(), settings: Default::default(), extra: Default::default() },
        chrono::Utc::now(),
        &meta,
    )
    .unwrap();
    app.store.append(other).await.unwrap();
    let other_key = realm_key("other", "EdDSA", &app.keys, chrono::Utc::now(), &meta).unwrap();
    let other_kid = other_key.stream.id.clone();
    let at = app.store.append(other_key).await.unwrap().last_position;
    app.read_models.wait_for(at, Duration::from_secs(5)).await.unwrap();
    let theirs: Value =
        c.get(format!("{base}/realms/other/protocol/openid-connect/certs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(kids(&theirs), vec![other_kid.clone()]);
    assert_eq!((theirs["keys"][0]["kty"].as_str(), theirs["keys"][0]["crv"].as_str()), (Some("OKP"), Some("Ed25519")));
    let ours: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert!(!kids(&ours).contains(&other_kid));

    // A key retired with no tokens left to verify is not published.
    let eddsa = realm_key(&master, "EdDSA", &app.keys, chrono::Utc::now(), &meta).unwrap();
    let eddsa_kid = eddsa.stream.id.clone();
    app.store.append(eddsa).await.unwrap();
    let ended = chrono::Utc::now().timestamp() - 1;
    let done = app.hosts.execute::<SigningKey>(&eddsa_kid, retire(ended), meta).await.unwrap();
    app.read_models.wait_for(done.position, Duration::from_secs(5)).await.unwrap();
    let body: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(kids(&body), vec![rs256, es256_kid]);
    app.stop().await;
}

#[actix_rt::test]
async fn certs_of_an_unknown_realm_or_with_a_wrong_method_are_refused_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let app = support::spawn_app(support::serve_config(dir.path(), None)).await;
    let (c, base) = (support::http(), app.base_url.clone());
    for realm in ["nope", "MASTER", "master%00", "master%2F..", &"x".repeat(5000)] {
        let res = c.get(format!("{base}/realms/{realm}/protocol/openid-connect/certs")).send().await.unwrap();
        assert_eq!(res.status(), 404, "{realm}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "Realm does not exist", "{realm}");
    }
    // A path that dot-segments move off the route is no realm's either.
    let res = c.get(format!("{base}/realms/%2e%2e/protocol/openid-connect/certs")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let res = c.post(format!("{base}/realms/master/protocol/openid-connect/certs")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    app.stop().await;
}
