//! Offline tokens (scope `offline_access`) and authentication context classes (`acr_values`)
//! over HTTP: an offline session outlives the user's logout, rotates, dies by revocation or
//! reuse, needs the `offline_access` role; a requested class is reported when the session's
//! authentication satisfies it, in the requester's vocabulary.
use crate::oidc_flow::{authorize, claims, query_of, Demo, Jar, CHALLENGE, RP, VERIFIER};
use reqwest::header::{COOKIE, LOCATION};
use serde_json::{json, Value};

const WEB: (&str, &str) = ("web", "web-secret-0123456789");

async fn offline_demo() -> Demo {
    Demo::start_with(|realm| {
        realm["users"].as_array_mut().unwrap().push(json!({
            "username": "olivia",
            "enabled": true,
            "email": "olivia@example.org",
            "credentials": [{ "type": "password", "value": "olivia-password" }],
            "realmRoles": ["user", "offline_access"]
        }));
        realm["attributes"] = json!({ "acr.loa.map": "{\"silver\": 1, \"gold\": 2}" });
    })
    .await
}

/// Logs olivia in at `web` with `scope` and `acr_values`, returns the code.
async fn olivia_code(demo: &Demo, jar: &mut Jar, scope: &str, acr: Option<&str>) -> String {
    let mut params = vec![
        ("client_id", "web"),
        ("redirect_uri", RP),
        ("response_type", "code"),
        ("scope", scope),
        ("state", "st"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    if let Some(a) = acr {
        params.push(("acr_values", a));
    }
    let res = authorize(demo, jar, &params, Some(("olivia", "olivia-password"))).await;
    assert_eq!(res.status(), 302);
    query_of(res.headers()[LOCATION].to_str().unwrap())["code"].clone()
}

async fn redeem(demo: &Demo, code: &str) -> Value {
    let form = code_grant(code);
    let (status, t) = demo.token(WEB, &form).await;
    assert_eq!(status, 200, "{t}");
    t
}

async fn refresh(demo: &Demo, token: &str) -> (u16, Value) {
    demo.token(WEB, &[("grant_type", "refresh_token"), ("refresh_token", token)]).await
}

/// RP-initiated logout from this browser, hinted with `id_token`.
async fn logout(demo: &Demo, jar: &Jar, id_token: &str) -> reqwest::Response {
    let req = demo.http.get(demo.url("logout")).query(&[("id_token_hint", id_token)]);
    req.header(COOKIE, jar.header()).send().await.unwrap()
}

/// The redemption of `code` (PKCE with [`VERIFIER`]) at [`RP`].
fn code_grant(code: &str) -> [(&str, &str); 4] {
    [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", RP), ("code_verifier", VERIFIER)]
}

/// A password grant asking for an offline token.
fn offline_password_grant<'a>(user: &'a str, password: &'a str) -> [(&'a str, &'a str); 4] {
    [("grant_type", "password"), ("username", user), ("password", password), ("scope", "offline_access")]
}

fn text<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k} missing in {v}"))
}

#[actix_rt::test]
async fn an_offline_token_outlives_logout_rotates_and_dies_by_reuse_or_revocation() {
    let demo = offline_demo().await;
    let mut jar = Jar::default();
    let code = olivia_code(&demo, &mut jar, "openid offline_access", None).await;
    let t = redeem(&demo, &code).await;
    let (at, id, offline) = (text(&t, "access_token"), text(&t, "id_token"), text(&t, "refresh_token"));
    let oc = claims(offline);
    assert_eq!(oc["typ"], "Offline", "{oc}");
    assert!(text(&t, "scope").split(' ').any(|s| s == "offline_access"));
    let online_sid = claims(at)["sid"].as_str().unwrap().to_string();
    assert_eq!(oc["sid"].as_str(), Some(online_sid.as_str()), "named after the SSO session, as Keycloak's");
    assert!(oc["osid"].as_str().is_some_and(|o| o != online_sid), "recorded in an offline session: {oc}");
    assert!(t["refresh_expires_in"].as_i64().unwrap() > 36_000, "the realm's offline idle time, not the SSO one");
    let seen = demo.introspect(offline).await;
    assert_eq!((seen["active"].as_bool(), seen["token_type"].as_str()), (Some(true), Some("Offline")));

    // The user logs out: the SSO session and its tokens end, the offline token lives on.
    let res = logout(&demo, &jar, id).await;
    assert_eq!(res.status(), 200, "logged out without a redirect target");
    assert_eq!(demo.introspect(at).await["active"], false);
    assert_eq!(demo.introspect(offline).await["active"], true);

    let (status, r1) = refresh(&demo, offline).await;
    assert_eq!(status, 200, "{r1}");
    let (at1, off1) = (text(&r1, "access_token"), text(&r1, "refresh_token"));
    assert_eq!(claims(off1)["typ"], "Offline", "rotation keeps it offline");
    assert_eq!(claims(at1)["sid"], oc["sid"], "the login's sid, kept through refreshes");
    assert_eq!(claims(at1)["osid"], oc["osid"], "and recorded in the offline session");
    assert_eq!(demo.introspect(at1).await["active"], true);
    assert_eq!(demo.introspect(offline).await["active"], false, "rotated away");

    // A logout hinted with an ID token refreshed offline ends the browser's SSO session (the
    // one the offline session came from), never the offline session.
    let code = olivia_code(&demo, &mut jar, "openid offline_access", None).await;
    let t2 = redeem(&demo, &code).await;
    let (sso_at, off2) = (text(&t2, "access_token").to_string(), text(&t2, "refresh_token").to_string());
    let (status, r2) = refresh(&demo, &off2).await;
    assert_eq!(status, 200, "{r2}");
    let (id2, off2) = (text(&r2, "id_token"), text(&r2, "refresh_token"));
    assert_eq!(claims(id2)["sid"], claims(&sso_at)["sid"], "a refreshed ID token keeps the login's sid");
    assert!(claims(id2)["osid"].is_string(), "an ID token of the offline session");
    assert_ne!(claims(id2)["osid"], oc["osid"], "a new SSO session, a new offline session");
    let res = logout(&demo, &jar, id2).await;
    assert_eq!(res.status(), 200);
    jar.take(&res);
    assert!(!jar.header().contains("ANNALS_SESSION"), "the browser's SSO cookie is cleared");
    assert_eq!(demo.introspect(&sso_at).await["active"], false, "the SSO session ended");
    assert_eq!(demo.introspect(off2).await["active"], true, "the offline session did not");
    let mut silent = crate::oidc_flow::code_request("web", RP);
    silent.push(("prompt", "none"));
    let res = demo.http.get(demo.url("auth")).query(&silent).header(COOKIE, jar.header()).send().await.unwrap();
    let reply = query_of(res.headers()[LOCATION].to_str().unwrap());
    assert_eq!(reply["error"], "login_required", "no SSO left in this browser");
    assert_eq!(demo.introspect(off1).await["active"], true);

    // The rotated-away token presented again: a copy exists, the offline session is revoked.
    let (status, e) = refresh(&demo, offline).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")), "{e}");
    assert_eq!(demo.introspect(off1).await["active"], false);
    assert_eq!(demo.introspect(at1).await["active"], false);
    let (status, _) = refresh(&demo, off1).await;
    assert_eq!(status, 400);

    // A password grant gets one too; revoking it ends it.
    let form = offline_password_grant("olivia", "olivia-password");
    let (status, p) = demo.token(WEB, &form).await;
    assert_eq!(status, 200, "{p}");
    let off = text(&p, "refresh_token");
    assert_eq!(claims(off)["typ"], "Offline");
    let (status, _) = demo.post_as(WEB, "revoke", &[("token", off)]).await;
    assert_eq!(status, 200);
    assert_eq!(demo.introspect(off).await["active"], false);
    let (status, e) = refresh(&demo, off).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
    // Another client cannot use or revoke it.
    let (status, e) = demo.token(WEB, &form).await;
    assert_eq!(status, 200, "{e}");
    let off = text(&e, "refresh_token").to_string();
    let other = ("other", "other-secret-0123456789");
    let (status, e) = demo.token(other, &[("grant_type", "refresh_token"), ("refresh_token", &off)]).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
    let (status, e) = demo.post_as(other, "revoke", &[("token", &off)]).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("unauthorized_client")), "{e}");
    assert_eq!(demo.introspect(&off).await["active"], true);

    // Without the offline_access role: refused as Keycloak refuses it, before any session.
    let form = offline_password_grant("alice", "alice-password");
    let (status, e) = demo.token(WEB, &form).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("not_allowed")), "{e}");
    let mut alice_jar = Jar::default();
    let mut params = crate::oidc_flow::code_request("web", RP);
    params[3] = ("scope", "openid offline_access");
    let res = authorize(&demo, &mut alice_jar, &params, Some(("alice", "alice-password"))).await;
    let code = query_of(res.headers()[LOCATION].to_str().unwrap())["code"].clone();
    let form = code_grant(&code);
    let (status, e) = demo.token(WEB, &form).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("not_allowed")), "{e}");

    // The log says which session each offline session came from, and never holds a token.
    let events = demo.app.store.read_all(0, 100_000).await.unwrap();
    let from: Vec<Value> = events
        .iter()
        .filter(|e| e.event_type == "session.started")
        .map(|e| serde_json::from_str::<Value>(&e.payload).unwrap())
        .filter(|p| p.get("offline_from").is_some())
        .collect();
    assert_eq!(from.len(), 4, "{from:?}");
    assert_eq!(from[0]["offline_from"], online_sid.as_str());
    assert_eq!(from[0]["idle_timeout"], 2_592_000);
    let refused = events.iter().any(|e| e.event_type == "auth_request.failed" && e.payload.contains("not_allowed"));
    assert!(refused, "the refused password grant is on record");
    let all: String = events.iter().map(|e| e.payload.as_str()).collect();
    for token in [offline, off1, off2, &off] {
        assert!(!all.contains(token), "a token in the log");
    }
    demo.app.stop().await;
}

#[actix_rt::test]
async fn requested_classes_are_reported_when_the_session_satisfies_them() {
    let demo = offline_demo().await;
    let res = demo.http.get(format!("{}/.well-known/openid-configuration", demo.issuer())).send().await.unwrap();
    let discovery: Value = res.json().await.unwrap();
    assert_eq!(discovery["acr_values_supported"], json!(["0", "1", "silver"]), "gold is out of reach");

    let mut jar = Jar::default();
    let code = olivia_code(&demo, &mut jar, "openid", Some("gold silver")).await;
    let t = redeem(&demo, &code).await;
    assert_eq!(claims(text(&t, "id_token"))["acr"], "silver", "the first class the password satisfies");
    assert_eq!(claims(text(&t, "access_token"))["acr"], "silver");
    // A refresh reports what the login reported (Keycloak keeps it with the client session).
    let (status, r) = refresh(&demo, text(&t, "refresh_token")).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (claims(text(&r, "id_token"))["acr"].clone(), claims(text(&r, "access_token"))["acr"].clone()),
        ("silver".into(), "silver".into())
    );
    let (status, r) = refresh(&demo, text(&r, "refresh_token")).await;
    assert_eq!(
        (status, claims(text(&r, "id_token"))["acr"].clone()),
        (200, "silver".into()),
        "carried through rotation"
    );

    // Single sign-on: Keycloak's 0, unless the request asks a class the session reached.
    let code = olivia_code(&demo, &mut jar, "openid", None).await;
    let t = redeem(&demo, &code).await;
    assert_eq!(claims(text(&t, "id_token"))["acr"], "0");
    let (status, r) = refresh(&demo, text(&t, "refresh_token")).await;
    assert_eq!(
        (status, claims(text(&r, "access_token"))["acr"].clone()),
        (200, "0".into()),
        "still no active authentication"
    );
    let code = olivia_code(&demo, &mut jar, "openid", Some("1")).await;
    assert_eq!(claims(text(&redeem(&demo, &code).await, "id_token"))["acr"], "1");
    let code = olivia_code(&demo, &mut jar, "openid", Some("gold")).await;
    assert_eq!(claims(text(&redeem(&demo, &code).await, "id_token"))["acr"], "0", "not reached: what happened");

    // The implicit flow reports the same way.
    let params = [
        ("client_id", "web"),
        ("redirect_uri", RP),
        ("response_type", "id_token"),
        ("scope", "openid"),
        ("nonce", "n"),
        ("acr_values", "silver"),
    ];
    let res = authorize(&demo, &mut jar, &params, Some(("olivia", "olivia-password"))).await;
    assert_eq!(res.status(), 302);
    let reply = query_of(res.headers()[LOCATION].to_str().unwrap());
    assert_eq!(claims(&reply["id_token"])["acr"], "silver");
    demo.app.stop().await;
}

const OTHER: (&str, &str) = ("other", "other-secret-0123456789");
const OTHER_RP: &str = "http://127.0.0.1/other";

/// `other` signs olivia in from this browser's SSO session asking offline access; returns
/// its tokens.
async fn other_by_sso(demo: &Demo, jar: &mut Jar) -> Value {
    let mut params = crate::oidc_flow::code_request("other", OTHER_RP);
    params[3] = ("scope", "openid offline_access");
    let res = authorize(demo, jar, &params, None).await;
    assert_eq!(res.status(), 302, "answered from the SSO session");
    let code = query_of(res.headers()[LOCATION].to_str().unwrap())["code"].clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", OTHER_RP),
        ("code_verifier", VERIFIER),
    ];
    let (status, t) = demo.token(OTHER, &form).await;
    assert_eq!(status, 200, "{t}");
    t
}

#[actix_rt::test]
async fn a_replayed_code_revokes_the_offline_token_its_first_redemption_gave() {
    let demo = offline_demo().await;
    let mut jar = Jar::default();
    let code = olivia_code(&demo, &mut jar, "openid offline_access", None).await;
    let t = redeem(&demo, &code).await;
    let offline = text(&t, "refresh_token");
    let (status, r) = refresh(&demo, offline).await;
    assert_eq!(status, 200, "{r}");
    // Another client holds an offline token of the same (shared) offline session.
    let o = other_by_sso(&demo, &mut jar).await;
    let other_off = text(&o, "refresh_token");
    assert_eq!(claims(other_off)["osid"], claims(offline)["osid"]);
    let form = code_grant(&code);
    let (status, e) = demo.token(WEB, &form).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
    for token in [text(&r, "refresh_token"), text(&r, "access_token")] {
        assert_eq!(demo.introspect(token).await["active"], false, "{token}");
    }
    assert_eq!(demo.introspect(other_off).await["active"], true, "the other client's offline token is not touched");
    let (status, _) = refresh(&demo, text(&r, "refresh_token")).await;
    assert_eq!(status, 400);

    // Two concurrent redemptions of a new login's code (its SSO session's first offline
    // token): the winner's offline token dies too, whichever revocation ran first.
    for _ in 0..4 {
        let mut jar = Jar::default();
        let code = olivia_code(&demo, &mut jar, "openid offline_access", None).await;
        let form = code_grant(&code);
        let (a, b) = tokio::join!(demo.token(WEB, &form), demo.token(WEB, &form));
        assert_eq!([a.0, b.0].iter().filter(|s| **s == 200).count(), 1, "{a:?} {b:?}");
        let won = if a.0 == 200 { a.1 } else { b.1 };
        let (status, _) = refresh(&demo, text(&won, "refresh_token")).await;
        assert_eq!(status, 400, "an offline token of a replayed code");
    }
    demo.app.stop().await;
}

/// The redemption records that it gave an offline token: a replay revokes it even after the
/// client may no longer be granted `offline_access` (its scopes changed in between).
#[actix_rt::test]
async fn a_replayed_code_revokes_its_offline_token_after_the_clients_scopes_changed() {
    use annals::domain::client::{Client, ClientCommand};
    let demo = offline_demo().await;
    let mut jar = Jar::default();
    let code = olivia_code(&demo, &mut jar, "openid offline_access", None).await;
    let t = redeem(&demo, &code).await;
    let offline = text(&t, "refresh_token");
    assert_eq!(claims(offline)["typ"], "Offline");

    let (realm_id, web) = {
        let models = demo.app.read_models.read();
        let realm = models.realms.by_name("demo").unwrap().id.clone();
        (realm.clone(), models.clients.by_client_id(&realm, "web").unwrap().clone())
    };
    let mut settings = web.settings.clone();
    settings.optional_client_scopes = vec!["address".into(), "phone".into()];
    let change = ClientCommand::ChangeSettings { settings, extra: web.extra.clone() };
    let meta = annals_events::Metadata::system("test");
    demo.app.hosts.execute::<Client>(&web.id, change, meta).await.unwrap();
    let narrowed = || {
        let models = demo.app.read_models.read();
        models.clients.by_client_id(&realm_id, "web").is_some_and(|c| !c.settings.optional_client_scopes.is_empty())
    };
    crate::support::wait_until(narrowed).await;
    assert!(narrowed(), "the read model never showed the client's new scopes");

    let (status, e) = demo.token(WEB, &code_grant(&code)).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")), "{e}");
    assert_eq!(demo.introspect(offline).await["active"], false, "the offline token of the replayed code");
    let (status, _) = refresh(&demo, offline).await;
    assert_eq!(status, 400);
    demo.app.stop().await;
}

#[actix_rt::test]
async fn the_clients_of_one_sso_session_share_one_offline_session_named_by_its_sid() {
    let demo = offline_demo().await;
    let mut jar = Jar::default();
    let code = olivia_code(&demo, &mut jar, "openid offline_access", None).await;
    let t = redeem(&demo, &code).await;
    let (web_id, web_off) = (text(&t, "id_token"), text(&t, "refresh_token"));
    let sid = claims(web_id)["sid"].as_str().unwrap().to_string();
    let osid = claims(web_off)["osid"].as_str().unwrap().to_string();
    assert_eq!(claims(web_off)["sid"], sid.as_str());

    // `other` joins by SSO: the same offline session, the same sid.
    let o = other_by_sso(&demo, &mut jar).await;
    let other_off = text(&o, "refresh_token");
    assert_eq!(claims(other_off)["typ"], "Offline");
    assert_eq!((claims(other_off)["sid"].as_str(), claims(other_off)["osid"].as_str()), (Some(&*sid), Some(&*osid)));

    // web refreshes and then revokes its offline token: other's is not affected.
    let (status, r) = refresh(&demo, web_off).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(claims(text(&r, "id_token"))["sid"], sid.as_str(), "a refreshed ID token keeps the login's sid");
    let (web_at, web_off) = (text(&r, "access_token"), text(&r, "refresh_token"));
    let (status, _) = demo.post_as(WEB, "revoke", &[("token", web_off)]).await;
    assert_eq!(status, 200);
    assert_eq!(demo.introspect(web_off).await["active"], false);
    assert_eq!(demo.introspect(web_at).await["active"], false, "its access tokens go with it");
    assert_eq!(demo.introspect(other_off).await["active"], true);
    // Presented again (a refresh already in flight): refused, not taken for a stolen copy,
    // which would end the offline session for `other` too.
    let (status, e) = refresh(&demo, web_off).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")), "{e}");
    assert_eq!(demo.introspect(other_off).await["active"], true);
    let (status, o2) = demo.token(OTHER, &[("grant_type", "refresh_token"), ("refresh_token", other_off)]).await;
    assert_eq!(status, 200, "{o2}");
    let other_off2 = text(&o2, "refresh_token");

    // other's rotated-away token presented again: the shared offline session is revoked.
    let (status, e) = demo.token(OTHER, &[("grant_type", "refresh_token"), ("refresh_token", other_off)]).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")), "{e}");
    assert_eq!(demo.introspect(other_off2).await["active"], false);

    // The next offline login in this SSO session gets an offline session of its own.
    let code = olivia_code(&demo, &mut jar, "openid offline_access", None).await;
    let t = redeem(&demo, &code).await;
    let again = text(&t, "refresh_token");
    assert_eq!(claims(again)["sid"], sid.as_str());
    assert_ne!(claims(again)["osid"], osid.as_str(), "not the revoked one");
    assert_eq!(demo.introspect(again).await["active"], true);
    let (status, r) = refresh(&demo, again).await;
    assert_eq!(status, 200, "{r}");

    // The log: two offline sessions started from this SSO session, not three.
    let events = demo.app.store.read_all(0, 100_000).await.unwrap();
    let started = events
        .iter()
        .filter(|e| e.event_type == "session.started" && e.payload.contains(&format!("\"offline_from\":\"{sid}\"")))
        .count();
    assert_eq!(started, 2);
    demo.app.stop().await;
}

#[actix_rt::test]
async fn offline_lifetimes_count_from_the_offline_sessions_start_and_the_maximum_ends_it() {
    let clock = annals::clock::ManualClock::at(chrono::Utc::now());
    let shared: annals::clock::SharedClock = std::sync::Arc::new(clock.clone());
    let demo = Demo::start_clocked(
        |realm| {
            realm["users"].as_array_mut().unwrap().push(json!({
                "username": "olivia",
                "enabled": true,
                "credentials": [{ "type": "password", "value": "olivia-password" }],
                "realmRoles": ["offline_access"]
            }));
            realm["ssoSessionIdleTimeout"] = json!(36_000);
            realm["offlineSessionIdleTimeout"] = json!(3_600);
            realm["offlineSessionMaxLifespanEnabled"] = json!(true);
            realm["offlineSessionMaxLifespan"] = json!(7_200);
        },
        vec![],
        |_| {},
        shared,
    )
    .await;
    let mut jar = Jar::default();
    olivia_code(&demo, &mut jar, "openid", None).await;
    // Three hours into the SSO session, longer than the offline maximum, an offline token.
    clock.advance(chrono::Duration::seconds(10_800));
    let code = olivia_code(&demo, &mut jar, "openid offline_access", None).await;
    let t = redeem(&demo, &code).await;
    assert_eq!(t["refresh_expires_in"], 3_600, "the idle time, counted from now");
    let mut token = text(&t, "refresh_token").to_string();
    for (wait, left) in [(3_000, 3_600), (3_000, 1_200)] {
        clock.advance(chrono::Duration::seconds(wait));
        let (status, r) = refresh(&demo, &token).await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["refresh_expires_in"], left, "the earlier of idle and maximum");
        token = text(&r, "refresh_token").to_string();
    }
    clock.advance(chrono::Duration::seconds(1_300));
    let (status, e) = refresh(&demo, &token).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")), "past the maximum: {e}");
    demo.app.stop().await;
}
