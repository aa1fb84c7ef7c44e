//! The OpenID provider end to end over HTTP: login page, code flow with PKCE, tokens and their
//! claims, refresh rotation, SSO, the password and client-credentials grants, introspection,
//! userinfo and revocation, and the attacks each of them must survive.
use crate::support;
use annals::server::Running;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::header::{AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::Value;
use sha2::Digest;
use std::collections::BTreeMap;
use std::sync::Arc;

pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
pub const RP: &str = "https://rp.example/cb";

pub struct Demo {
    pub app: Running,
    pub http: reqwest::Client,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Demo {
    /// A client-credentials request authenticated by a client assertion (RFC 7523 §2.2).
    pub fn assertion_grant(&self, jwt: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url("token")).form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", jwt),
        ])
    }

    pub async fn start() -> Demo {
        Demo::start_with(|_| {}).await
    }

    /// A node with the demo realm, changed by `edit` before import.
    pub async fn start_with(edit: impl FnOnce(&mut Value)) -> Demo {
        Demo::start_with_realms(edit, vec![]).await
    }

    /// The demo realm (changed by `edit`) and other realms besides.
    pub async fn start_with_realms(edit: impl FnOnce(&mut Value), others: Vec<Value>) -> Demo {
        Demo::start_configured(edit, others, |_| {}).await
    }

    /// The demo realm (changed by `edit`), other realms, and the node's configuration changed
    /// by `configure`.
    pub async fn start_configured(
        edit: impl FnOnce(&mut Value),
        others: Vec<Value>,
        configure: impl FnOnce(&mut annals::config::ServeConfig),
    ) -> Demo {
        Demo::start_clocked(edit, others, configure, Arc::new(annals::clock::SystemClock)).await
    }

    /// As [`Demo::start_configured`], on a clock the test controls.
    pub async fn start_clocked(
        edit: impl FnOnce(&mut Value),
        others: Vec<Value>,
        configure: impl FnOnce(&mut annals::config::ServeConfig),
        clock: annals::clock::SharedClock,
    ) -> Demo {
        Demo::start_full(edit, others, configure, clock, |store| store).await
    }

    /// The demo realm (changed by `edit`) on a node whose store is the one `wrap` makes of its
    /// own.
    pub async fn start_wrapped(
        edit: impl FnOnce(&mut Value),
        wrap: impl FnOnce(annals::store::SharedStore) -> annals::store::SharedStore,
    ) -> Demo {
        Demo::start_full(edit, vec![], |_| {}, Arc::new(annals::clock::SystemClock), wrap).await
    }

    /// A node on a clock the test controls whose store is the one `wrap` makes of its own.
    pub async fn start_full(
        edit: impl FnOnce(&mut Value),
        others: Vec<Value>,
        configure: impl FnOnce(&mut annals::config::ServeConfig),
        clock: annals::clock::SharedClock,
        wrap: impl FnOnce(annals::store::SharedStore) -> annals::store::SharedStore,
    ) -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let realms = tempfile::tempdir().unwrap();
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oidc-realm.json");
        let mut realm: Value = serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
        edit(&mut realm);
        std::fs::write(realms.path().join("demo.json"), realm.to_string()).unwrap();
        for (i, other) in others.iter().enumerate() {
            std::fs::write(realms.path().join(format!("other{i}.json")), other.to_string()).unwrap();
        }
        let mut cfg = support::serve_config(dir.path(), None);
        cfg.import_realm = Some(realms.path().to_path_buf());
        configure(&mut cfg);
        let app = support::spawn_app_wrapped(cfg, clock, wrap).await;
        let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
        Demo { app, http, _dirs: (dir, realms) }
    }

    /// Stops the node and starts another on the same data directory (no import: the realms
    /// are in its log). The new node listens on another port.
    pub async fn restart(self) -> Demo {
        self.restart_with(|_| {}).await
    }

    /// As [`Demo::restart`], with the new node's configuration changed by `configure`.
    pub async fn restart_with(self, configure: impl FnOnce(&mut annals::config::ServeConfig)) -> Demo {
        let Demo { app, http, _dirs } = self;
        app.stop().await;
        let mut cfg = support::serve_config(_dirs.0.path(), None);
        configure(&mut cfg);
        let app = support::spawn_app(cfg).await;
        Demo { app, http, _dirs }
    }

    /// The node's data directory (SQLite file, server keys), for the command line.
    pub fn data_dir(&self) -> &std::path::Path {
        self._dirs.0.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/realms/demo/protocol/openid-connect/{path}", self.app.base_url)
    }

    pub fn issuer(&self) -> String {
        format!("{}/realms/demo", self.app.base_url)
    }

    pub async fn token(&self, client: (&str, &str), form: &[(&str, &str)]) -> (u16, Value) {
        let basic =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", client.0, client.1)));
        let res = self.http.post(self.url("token")).header(AUTHORIZATION, basic).form(form).send().await.unwrap();
        let status = res.status().as_u16();
        if status == 200 {
            assert_eq!(res.headers()["cache-control"], "no-store");
        }
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn introspect(&self, token: &str) -> Value {
        let (_, body) = self.post_as(("web", "web-secret-0123456789"), "token/introspect", &[("token", token)]).await;
        body
    }

    /// A JSON document the server serves at `url` without authentication (metadata).
    pub async fn get_json(&self, url: &str) -> Value {
        self.http.get(url).send().await.unwrap().json().await.unwrap()
    }

    pub async fn post_as(&self, client: (&str, &str), path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let res = self.http.post(self.url(path)).basic_auth(client.0, Some(client.1)).form(form).send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}

/// A browser's cookies, by name (the test's own jar: what a browser would send back).
#[derive(Default, Clone)]
pub struct Jar(BTreeMap<String, String>);

impl Jar {
    pub fn take(&mut self, res: &reqwest::Response) {
        for v in res.headers().get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (pair, _) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=').unwrap();
            if val.is_empty() {
                self.0.remove(k);
            } else {
                self.0.insert(k.to_string(), val.to_string());
            }
        }
    }

    pub fn header(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }
}

/// The login form of a page: (action, csrf).
pub fn form_of(html: &str) -> (String, String) {
    let attr = |after: &str, name: &str| -> String {
        let start = html[html.find(after).unwrap()..].find(&format!("{name}=\"")).unwrap()
            + html.find(after).unwrap()
            + name.len()
            + 2;
        html[start..start + html[start..].find('"').unwrap()].replace("&amp;", "&").replace("&#x2f;", "/")
    };
    (attr("<form", "action"), attr("name=\"csrf\"", "value"))
}

pub fn query_of(location: &str) -> BTreeMap<String, String> {
    let q = location.split_once(['?', '#']).map(|(_, q)| q).unwrap_or("");
    url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

pub fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

pub fn header(jwt: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').next().unwrap()).unwrap()).unwrap()
}

/// Verifies a token's signature against the realm's published JWKS, as a relying party does.
pub async fn verify_with_jwks(demo: &Demo, jwt: &str) {
    let jwks: jsonwebtoken::jwk::JwkSet = demo.http.get(demo.url("certs")).send().await.unwrap().json().await.unwrap();
    let h = jsonwebtoken::decode_header(jwt).unwrap();
    let jwk = jwks.find(h.kid.as_deref().unwrap()).expect("kid published");
    let mut v = jsonwebtoken::Validation::new(h.alg);
    v.validate_aud = false;
    jsonwebtoken::decode::<Value>(jwt, &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(), &v)
        .expect("signature verifies");
}

/// Opens the authorization endpoint and, if a login page comes back, signs in.
pub async fn authorize(
    demo: &Demo,
    jar: &mut Jar,
    params: &[(&str, &str)],
    login: Option<(&str, &str)>,
) -> reqwest::Response {
    let res = demo.http.get(demo.url("auth")).query(params).header(COOKIE, jar.header()).send().await.unwrap();
    jar.take(&res);
    let Some((user, pw)) = login else { return res };
    if res.status() == 302 {
        return res; // answered from the browser's SSO session
    }
    assert_eq!(res.status(), 200, "login page expected");
    let html = res.text().await.unwrap();
    let (action, csrf) = form_of(&html);
    let res = demo
        .http
        .post(action)
        .header(COOKIE, jar.header())
        .form(&[("csrf", csrf.as_str()), ("username", user), ("password", pw)])
        .send()
        .await
        .unwrap();
    jar.take(&res);
    res
}

pub fn code_request<'a>(client: &'a str, redirect: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("client_id", client),
        ("redirect_uri", redirect),
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", "st-1"),
        ("nonce", "n-1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
}

/// Logs alice in at `web` and returns the code.
pub async fn alice_code(demo: &Demo, jar: &mut Jar) -> String {
    let res = authorize(demo, jar, &code_request("web", RP), Some(("alice", "alice-password"))).await;
    assert_eq!(res.status(), 302);
    let q = query_of(res.headers()[LOCATION].to_str().unwrap());
    q["code"].clone()
}

pub async fn redeem(demo: &Demo, code: &str) -> (u16, Value) {
    demo.token(
        ("web", "web-secret-0123456789"),
        &[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", RP), ("code_verifier", VERIFIER)],
    )
    .await
}

#[actix_rt::test]
async fn code_flow_with_pkce_issues_keycloak_shaped_tokens_and_refresh_rotates() {
    let demo = Demo::start().await;
    let mut jar = Jar::default();
    // Discovery points at the endpoints this server serves.
    let disc = demo.get_json(&format!("{}/.well-known/openid-configuration", demo.issuer())).await;
    assert_eq!(disc["issuer"], demo.issuer());
    assert_eq!(disc["token_endpoint"], demo.url("token"));
    assert_eq!(disc["authorization_response_iss_parameter_supported"], true);
    for supported in ["backchannel_logout_supported", "backchannel_logout_session_supported"] {
        assert_eq!(disc[supported], true, "{supported}");
    }
    assert_eq!(disc["check_session_iframe"], demo.url("login-status-iframe.html"));
    let methods = disc["token_endpoint_auth_methods_supported"].as_array().unwrap();
    assert!(methods.iter().any(|m| m == "client_secret_jwt"), "{methods:?}");

    // A wrong password shows the form again with an error, and is recorded.
    let res = authorize(&demo, &mut jar, &code_request("web", RP), Some(("alice", "wrong"))).await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("Invalid username or password."), "{html}");
    assert!(html.contains("Demo &lt;Realm&gt;"), "display name is escaped");

    let res = authorize(&demo, &mut jar, &code_request("web", RP), Some(("alice", "alice-password"))).await;
    assert_eq!(res.status(), 302);
    let location = res.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(location.starts_with("https://rp.example/cb?"), "{location}");
    let q = query_of(&location);
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], demo.issuer(), "RFC 9207");
    assert!(jar.header().contains("ANNALS_SESSION="));

    let (status, tokens) = redeem(&demo, &q["code"]).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 300);
    let (at, id, rt) = (
        tokens["access_token"].as_str().unwrap(),
        tokens["id_token"].as_str().unwrap(),
        tokens["refresh_token"].as_str().unwrap(),
    );
    for t in [at, id] {
        verify_with_jwks(&demo, t).await;
        assert_eq!(header(t)["alg"], "RS256");
    }
    // Refresh tokens are HS512 under a key nobody else holds: no resource server that trusts
    // the published keys can take one for an access token.
    assert_eq!((header(rt)["alg"].as_str(), header(rt).get("kid")), (Some("HS512"), None));
    let res = demo.http.get(demo.url("userinfo")).bearer_auth(rt).send().await.unwrap();
    assert_eq!(res.status(), 401, "a refresh token is no access token");
    let res = demo.http.get(demo.url("userinfo")).bearer_auth(id).send().await.unwrap();
    assert_eq!(res.status(), 401, "nor is an ID token");
    let a = claims(at);
    assert_eq!(
        (a["iss"].as_str(), a["typ"].as_str(), a["azp"].as_str()),
        (Some(demo.issuer().as_str()), Some("Bearer"), Some("web"))
    );
    assert_eq!(a["preferred_username"], "alice");
    assert_eq!(a["email"], "alice@example.org");
    assert_eq!(a["name"], "Alice Liddell");
    assert_eq!(a["realm_access"]["roles"], serde_json::json!(["user"]));
    assert_eq!(a["resource_access"]["api"]["roles"], serde_json::json!(["orders:read"]));
    assert_eq!(a["aud"], "api");
    // session_state (Session Management §3): SHA-256 of client, origin, browser state, salt.
    let (hash, salt) = q["session_state"].split_once('.').unwrap();
    let opbs = &jar.0["ANNALS_SESSION_STATE"];
    let expected = sha2::Sha256::digest(format!("web https://rp.example {opbs} {salt}").as_bytes());
    assert_eq!(hash, hex::encode(expected));
    assert!(!q["session_state"].contains(a["sid"].as_str().unwrap()), "the session id is not exposed");
    assert_eq!(a["scope"], "openid email profile");
    let i = claims(id);
    assert_eq!((i["aud"].as_str(), i["nonce"].as_str(), i["typ"].as_str()), (Some("web"), Some("n-1"), Some("ID")));
    assert_eq!(i["sub"], a["sub"]);

    // userinfo and introspection see the live token.
    let info: Value = demo.http.get(demo.url("userinfo")).bearer_auth(at).send().await.unwrap().json().await.unwrap();
    assert_eq!((info["sub"].clone(), info["email"].as_str()), (a["sub"].clone(), Some("alice@example.org")));
    let intro = demo.introspect(at).await;
    assert_eq!(
        (intro["active"].as_bool(), intro["client_id"].as_str(), intro["username"].as_str()),
        (Some(true), Some("web"), Some("alice"))
    );
    assert_eq!(intro["token_type"].as_str(), Some("Bearer"));
    assert_eq!(demo.introspect(at).await, intro, "the answer kept with the verified token is the first one");

    // Refresh rotates: the new refresh token works, the old one is dead...
    let (status, second) =
        demo.token(("web", "web-secret-0123456789"), &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await;
    assert_eq!(status, 200, "{second}");
    let rt2 = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt2, rt);
    assert_eq!(demo.introspect(rt).await["active"], false);
    assert_eq!(demo.introspect(&rt2).await["active"], true);
    // ...and presenting it again is reuse: the whole session is revoked.
    let (status, err) =
        demo.token(("web", "web-secret-0123456789"), &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await;
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")));
    let (status, _) =
        demo.token(("web", "web-secret-0123456789"), &[("grant_type", "refresh_token"), ("refresh_token", &rt2)]).await;
    assert_eq!(status, 400, "the legitimate holder's token dies with the session");
    for t in [at, second["access_token"].as_str().unwrap()] {
        assert_eq!(demo.introspect(t).await["active"], false);
    }
    let res = demo.http.get(demo.url("userinfo")).bearer_auth(at).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));

    // Another client may not use this client's refresh token.
    let code = alice_code(&demo, &mut Jar::default()).await;
    let (_, fresh) = redeem(&demo, &code).await;
    let (status, err) = demo
        .token(
            ("other", "other-secret-0123456789"),
            &[("grant_type", "refresh_token"), ("refresh_token", fresh["refresh_token"].as_str().unwrap())],
        )
        .await;
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")));
    demo.app.stop().await;
}

#[actix_rt::test]
async fn codes_resist_replay_pkce_downgrade_and_theft_by_another_client() {
    let demo = Demo::start().await;
    let mut jar = Jar::default();
    // Replay: the second redemption fails and what the first gave is revoked.
    let code = alice_code(&demo, &mut jar).await;
    let (status, first) = redeem(&demo, &code).await;
    assert_eq!(status, 200);
    let (status, err) = redeem(&demo, &code).await;
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(demo.introspect(first["access_token"].as_str().unwrap()).await["active"], false);
    assert_eq!(demo.introspect(first["refresh_token"].as_str().unwrap()).await["active"], false);
    // The replay's own request revoked them and recorded it: nothing is left owed for later.
    let request = code.split_once('.').unwrap().0;
    let stream = annals_events::StreamId::new(annals_events::StreamType::AuthRequest, request);
    let log = demo.app.store.read_stream(&stream, 0, annals::store::ReadUntil::End).await.unwrap();
    assert_eq!(log.last().map(|e| e.event_type.as_str()), Some("auth_request.replay_revoked"));
    assert!(!demo.app.read_models.read().replay_revocations.is_owed(request));

    // Two concurrent redemptions: exactly one succeeds, and what it gave is revoked even when
    // the replay's revocation ran before those tokens were recorded (a race each round may hit).
    for _ in 0..6 {
        let code = alice_code(&demo, &mut jar).await;
        let (a, b) = tokio::join!(redeem(&demo, &code), redeem(&demo, &code));
        assert_eq!([a.0, b.0].iter().filter(|s| **s == 200).count(), 1, "{a:?} {b:?}");
        let won = if a.0 == 200 { a.1 } else { b.1 };
        assert_eq!(demo.introspect(won["access_token"].as_str().unwrap()).await["active"], false);
        let rt = won["refresh_token"].as_str().unwrap();
        let (status, _) = demo
            .token(("web", "web-secret-0123456789"), &[("grant_type", "refresh_token"), ("refresh_token", rt)])
            .await;
        assert_eq!(status, 400, "the refresh token of a replayed code");
    }

    // A wrong verifier, no verifier, a verifier where no challenge was sent, another client,
    // another redirect URI: each fails, and burns the code for everyone.
    let web = ("web", "web-secret-0123456789");
    let wrong = VERIFIER.replace('d', "e");
    for form in [
        vec![("redirect_uri", RP), ("code_verifier", wrong.as_str())],
        vec![("redirect_uri", RP)],
        vec![("redirect_uri", "https://rp.example/cb/../evil"), ("code_verifier", VERIFIER)],
    ] {
        let code = alice_code(&demo, &mut jar).await;
        let mut f = vec![("grant_type", "authorization_code"), ("code", code.as_str())];
        f.extend(form);
        let (status, err) = demo.token(web, &f).await;
        assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")), "{f:?}");
        assert_eq!(redeem(&demo, &code).await.0, 400, "burnt");
    }
    let code = alice_code(&demo, &mut jar).await;
    let f = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", RP),
        ("code_verifier", VERIFIER),
    ];
    assert_eq!(demo.token(("other", "other-secret-0123456789"), &f).await.0, 400);
    assert_eq!(redeem(&demo, &code).await.0, 400, "a code stolen by another client is burnt");

    let mut no_pkce: Vec<(&str, &str)> =
        code_request("web", RP).into_iter().filter(|(k, _)| !k.starts_with("code_challenge")).collect();
    no_pkce.push(("prompt", "none"));
    let res = authorize(&demo, &mut jar, &no_pkce, None).await;
    let code = query_of(res.headers()[LOCATION].to_str().unwrap())["code"].clone();
    let (status, err) = redeem(&demo, &code).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant")),
        "a verifier without a challenge is a downgrade"
    );

    // Forged codes fail without touching anything.
    for forged in ["x", "not-a-uuid.AAAA", &format!("{}.{}", uuid::Uuid::now_v7(), "A".repeat(43)), &"A".repeat(5000)] {
        assert_eq!(redeem(&demo, forged).await.0, 400);
    }
    demo.app.stop().await;
}

#[actix_rt::test]
async fn sso_answers_a_second_client_and_prompt_none_never_shows_a_page() {
    let demo = Demo::start().await;
    let mut fresh = Jar::default();
    let mut none = code_request("web", RP);
    none.push(("prompt", "none"));
    let res = authorize(&demo, &mut fresh, &none, None).await;
    assert_eq!(res.status(), 302);
    let q = query_of(res.headers()[LOCATION].to_str().unwrap());
    assert_eq!((q["error"].as_str(), q["state"].as_str()), ("login_required", "st-1"));

    let mut jar = Jar::default();
    let code = alice_code(&demo, &mut jar).await;
    let (_, tokens) = redeem(&demo, &code).await;
    let sid = claims(tokens["access_token"].as_str().unwrap())["sid"].clone();
    let other = [
        ("client_id", "other"),
        ("redirect_uri", "https://other.example/cb"),
        ("response_type", "code"),
        ("scope", "openid"),
        ("prompt", "none"),
    ];
    let res = authorize(&demo, &mut jar, &other, None).await;
    assert_eq!(res.status(), 302, "SSO: no login page");
    let q = query_of(res.headers()[LOCATION].to_str().unwrap());
    let (status, theirs) = demo
        .token(
            ("other", "other-secret-0123456789"),
            &[("grant_type", "authorization_code"), ("code", &q["code"]), ("redirect_uri", "https://other.example/cb")],
        )
        .await;
    assert_eq!(status, 200, "{theirs}");
    assert_eq!(claims(theirs["id_token"].as_str().unwrap())["sid"], sid, "same session");
    assert_eq!(claims(theirs["id_token"].as_str().unwrap())["acr"], "0", "no active authentication this time");

    // A cookie whose MAC does not match is ignored; prompt=login forces the page.
    let forged =
        Jar(BTreeMap::from([("ANNALS_SESSION".to_string(), format!("{}.{}", sid.as_str().unwrap(), "0".repeat(64)))]));
    let res = authorize(&demo, &mut forged.clone(), &none, None).await;
    assert_eq!(query_of(res.headers()[LOCATION].to_str().unwrap())["error"], "login_required");
    let mut login = code_request("web", RP);
    login.push(("prompt", "login"));
    assert_eq!(authorize(&demo, &mut jar, &login, None).await.status(), 200);
    demo.app.stop().await;
}

#[actix_rt::test]
async fn the_authorization_endpoint_never_redirects_to_an_unregistered_uri_and_forms_need_their_browser() {
    let demo = Demo::start().await;
    let mut jar = Jar::default();
    for (client, uri) in [
        ("nobody", RP),
        ("web", "https://rp.example@evil.example/cb"),
        ("web", "http://localhost:80@evil.example/cb"),
        ("web", "https://rp.example/cb/../../evil"),
        ("web", "https://rp.example/cb?extra=1"),
        ("web", "https://rp.example/cb#frag"),
        ("web", "https://evil.example/cb"),
    ] {
        let res = authorize(&demo, &mut jar, &code_request(client, uri), None).await;
        assert_eq!(res.status(), 400, "{client} {uri}");
        assert!(res.headers().get(LOCATION).is_none());
    }
    // Only a loopback literal's port may vary.
    let res = authorize(&demo, &mut jar, &code_request("web", "http://127.0.0.1:49152/cb"), None).await;
    assert_eq!(res.status(), 200);
    // Repeated and oversized parameters.
    let mut twice = code_request("web", RP);
    twice.push(("state", "again"));
    assert_eq!(authorize(&demo, &mut jar, &twice, None).await.status(), 400);
    let big = "x".repeat(20_000);
    let mut huge = code_request("web", RP);
    huge.push(("login_hint", big.as_str()));
    assert!(authorize(&demo, &mut jar, &huge, None).await.status().is_client_error());

    // A login form posted from another browser (no binding cookie, or another one) is refused.
    let res = authorize(&demo, &mut jar, &code_request("web", RP), None).await;
    let (action, csrf) = form_of(&res.text().await.unwrap());
    let attempt = |cookie: String| {
        demo.http
            .post(&action)
            .header(COOKIE, cookie)
            .form(&[("csrf", csrf.as_str()), ("username", "alice"), ("password", "alice-password")])
            .send()
    };
    assert_eq!(attempt(String::new()).await.unwrap().status(), 400);
    assert_eq!(attempt(format!("ANNALS_AUTH={}", "A".repeat(43))).await.unwrap().status(), 400);
    assert_eq!(attempt(jar.header()).await.unwrap().status(), 302, "the right browser gets in");
    demo.app.stop().await;
}

#[actix_rt::test]
async fn direct_grants_client_credentials_and_revocation() {
    let demo = Demo::start().await;
    let web = ("web", "web-secret-0123456789");
    let (status, t) = demo
        .token(
            web,
            &[("grant_type", "password"), ("username", "alice"), ("password", "alice-password"), ("scope", "openid")],
        )
        .await;
    assert_eq!(status, 200, "{t}");
    assert!(t["id_token"].is_string() && t["refresh_token"].is_string());
    // The grant's session starts in the transaction that records the login.
    let events = demo.app.store.read_all(0, 10_000).await.unwrap();
    let at = |t: &str| events.iter().rev().find(|e| e.event_type == t).map(|e| (e.position, e.recorded_at)).unwrap();
    let (login, session) = (at("auth_request.authenticated"), at("session.started"));
    assert_eq!(session, (login.0 + 1, login.1));
    for (user, pw) in [("alice", "nope"), ("nobody", "x"), ("mallory", "mallory-password")] {
        let (status, err) = demo.token(web, &[("grant_type", "password"), ("username", user), ("password", pw)]).await;
        assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")), "{user}");
    }
    let (status, err) = demo
        .token(
            ("other", "other-secret-0123456789"),
            &[("grant_type", "password"), ("username", "alice"), ("password", "alice-password")],
        )
        .await;
    assert_eq!((status, err["error"].as_str()), (400, Some("unauthorized_client")));

    // Client authentication failures are 401 with a challenge.
    let res = demo
        .http
        .post(demo.url("token"))
        .basic_auth("web", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key("www-authenticate"));
    let (status, err) = demo.post_as(("svc", "svc-secret-0123456789"), "token", &[("grant_type", "magic")]).await;
    assert_eq!((status, err["error"].as_str()), (400, Some("unsupported_grant_type")));

    let (status, cc) =
        demo.post_as(("svc", "svc-secret-0123456789"), "token", &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200, "{cc}");
    let at = cc["access_token"].as_str().unwrap();
    assert!(cc.get("refresh_token").is_none() && cc.get("id_token").is_none());
    let c = claims(at);
    assert_eq!((c["azp"].as_str(), c["realm_access"]["roles"][0].as_str()), (Some("svc"), Some("user")));
    assert_eq!(c["preferred_username"], "service-account-svc");
    assert_eq!(demo.introspect(at).await["active"], true);
    // Only the client it was issued to may revoke it; then it is inactive at once.
    let (status, _) = demo.post_as(web, "revoke", &[("token", at)]).await;
    assert_eq!(status, 400);
    assert_eq!(demo.introspect(at).await["active"], true);
    let res = demo
        .http
        .post(demo.url("revoke"))
        .basic_auth("svc", Some("svc-secret-0123456789"))
        .form(&[("token", at)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(demo.introspect(at).await["active"], false);
    // Revoking garbage is fine (RFC 7009 §2.2).
    let res = demo
        .http
        .post(demo.url("revoke"))
        .basic_auth("svc", Some("svc-secret-0123456789"))
        .form(&[("token", "garbage")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Revoking a refresh token takes its access token along.
    let rt = t["refresh_token"].as_str().unwrap();
    let res = demo
        .http
        .post(demo.url("revoke"))
        .basic_auth(web.0, Some(web.1))
        .form(&[("token", rt), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(demo.introspect(rt).await["active"], false);
    assert_eq!(demo.introspect(t["access_token"].as_str().unwrap()).await["active"], false);

    // Per-client algorithms and RFC 9068 typing.
    let (status, es) = demo
        .token(
            ("es", "es-secret-0123456789"),
            &[("grant_type", "password"), ("username", "alice"), ("password", "alice-password"), ("scope", "openid")],
        )
        .await;
    assert_eq!(status, 200, "{es}");
    let (at, id) = (es["access_token"].as_str().unwrap(), es["id_token"].as_str().unwrap());
    assert_eq!((header(at)["alg"].as_str(), header(at)["typ"].as_str()), (Some("ES256"), Some("at+jwt")));
    assert_eq!(header(id)["alg"], "EdDSA");
    verify_with_jwks(&demo, at).await;
    verify_with_jwks(&demo, id).await;
    assert_eq!(demo.introspect(at).await["active"], true);
    demo.app.stop().await;
}

#[actix_rt::test]
async fn implicit_and_hybrid_responses_carry_hashes_and_every_step_is_in_the_log() {
    let demo = Demo::start().await;
    let mut jar = Jar::default();
    let params = [
        ("client_id", "web"),
        ("redirect_uri", RP),
        ("response_type", "code id_token token"),
        ("scope", "openid"),
        ("state", "s"),
        ("nonce", "nn"),
    ];
    let res = authorize(&demo, &mut jar, &params, Some(("alice", "alice-password"))).await;
    assert_eq!(res.status(), 302);
    let location = res.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(location.starts_with("https://rp.example/cb#"), "fragment by default: {location}");
    let f = query_of(&location);
    let id = claims(&f["id_token"]);
    let half = |v: &str| URL_SAFE_NO_PAD.encode(&sha2::Sha256::digest(v.as_bytes())[..16]);
    assert_eq!(id["at_hash"], half(&f["access_token"]));
    assert_eq!(id["c_hash"], half(&f["code"]));
    assert_eq!(id["nonce"], "nn");

    // form_post delivers the same through an auto-submitting form.
    let mut post = params.to_vec();
    post.push(("response_mode", "form_post"));
    post.push(("prompt", "none"));
    let res = authorize(&demo, &mut jar, &post, None).await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap().replace("&#x2f;", "/");
    assert!(html.contains("action=\"https://rp.example/cb\"") && html.contains("name=\"code\""), "{html}");

    // The log holds the request, the failures, the login and the issuance.
    let events = demo.app.store.read_all(0, 10_000).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    for t in [
        "auth_request.started",
        "auth_request.authenticated",
        "auth_request.code_issued",
        "session.started",
        "session.tokens_issued",
    ] {
        assert!(types.contains(&t), "{t} missing");
    }
    // The password login's session starts in the transaction that records its code (one
    // batch, one timestamp): a code never names a session the log lacks.
    let first = |t: &str| events.iter().find(|e| e.event_type == t).map(|e| (e.position, e.recorded_at)).unwrap();
    let (code_at, session_at) = (first("auth_request.code_issued"), first("session.started"));
    assert_eq!(session_at, (code_at.0 + 1, code_at.1));
    let all: String = events.iter().map(|e| format!("{}{}", e.payload, e.metadata)).collect();
    let code_secret = f["code"].split_once('.').unwrap().1;
    for secret in ["alice-password", f["access_token"].as_str(), code_secret, f["id_token"].as_str()] {
        assert!(!all.contains(secret), "a secret reached the log");
    }
    demo.app.stop().await;
}

#[actix_rt::test]
async fn rp_initiated_logout_ends_the_session_at_once_and_only_redirects_where_registered() {
    let demo = Demo::start().await;
    let mut jar = Jar::default();
    let code = alice_code(&demo, &mut jar).await;
    let (_, tokens) = redeem(&demo, &code).await;
    let (at, id) = (tokens["access_token"].as_str().unwrap(), tokens["id_token"].as_str().unwrap());
    let logout = |params: Vec<(&'static str, String)>, cookie: String| {
        demo.http.get(demo.url("logout")).query(&params).header(COOKIE, cookie).send()
    };
    // Refused: an unregistered target, a hint that is not an ID token, an unsigned hint.
    let (h, p) = (header(id), claims(id));
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(serde_json::json!({"alg": "none", "kid": h["kid"], "typ": "JWT"}).to_string()),
        URL_SAFE_NO_PAD.encode(p.to_string())
    );
    for params in [
        vec![("id_token_hint", id.to_string()), ("post_logout_redirect_uri", "https://evil.example/".to_string())],
        vec![("id_token_hint", at.to_string())],
        vec![("id_token_hint", unsigned)],
    ] {
        let res = logout(params.clone(), jar.header()).await.unwrap();
        assert_eq!(res.status(), 400, "{params:?}");
    }
    assert_eq!(demo.introspect(at).await["active"], true, "nothing ended yet");

    let res = logout(
        vec![
            ("id_token_hint", id.to_string()),
            ("post_logout_redirect_uri", "https://rp.example/bye".into()),
            ("state", "s9".into()),
        ],
        jar.header(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(res.headers()[LOCATION], "https://rp.example/bye?state=s9");
    jar.take(&res);
    assert!(!jar.header().contains("ANNALS_SESSION"), "the SSO cookie is cleared");
    assert_eq!(demo.introspect(at).await["active"], false, "at once");
    assert_eq!(demo.introspect(tokens["refresh_token"].as_str().unwrap()).await["active"], false);

    // Without a hint the user confirms first, in their own browser.
    let code = alice_code(&demo, &mut jar).await;
    let (_, tokens) = redeem(&demo, &code).await;
    let res = logout(vec![], jar.header()).await.unwrap();
    assert_eq!(res.status(), 200);
    jar.take(&res);
    let html = res.text().await.unwrap();
    let start = html.find("name=\"confirm\" value=\"").unwrap() + 22;
    let confirm = &html[start..start + html[start..].find('"').unwrap()];
    assert_eq!(demo.introspect(tokens["access_token"].as_str().unwrap()).await["active"], true);
    let res = demo.http.post(demo.url("logout")).form(&[("confirm", confirm)]).send().await.unwrap();
    assert_eq!(res.status(), 400, "another browser cannot confirm");
    let res = demo
        .http
        .post(demo.url("logout"))
        .header(COOKIE, jar.header())
        .form(&[("confirm", confirm)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(demo.introspect(tokens["access_token"].as_str().unwrap()).await["active"], false);
    demo.app.stop().await;
}

#[actix_rt::test]
async fn brute_force_protection_locks_the_user_and_the_address_before_any_hashing() {
    let demo = Demo::start_with(|r| {
        r["bruteForceProtected"] = true.into();
        r["failureFactor"] = 3.into();
        r["waitIncrementSeconds"] = 60.into();
        r["quickLoginCheckMilliSeconds"] = 0.into();
    })
    .await;
    let web = ("web", "web-secret-0123456789");
    let d = &demo;
    let grant = |pw: &'static str| async move {
        d.token(web, &[("grant_type", "password"), ("username", "alice"), ("password", pw)]).await
    };
    assert_eq!(grant("alice-password").await.0, 200, "no failures yet");
    for _ in 0..3 {
        assert_eq!(grant("wrong").await.0, 400);
    }
    let (status, err) = grant("alice-password").await;
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")), "locked: even the right password fails");
    // The login page refuses too, with the same message as a wrong password.
    let mut jar = Jar::default();
    let res = authorize(&demo, &mut jar, &code_request("web", RP), Some(("alice", "alice-password"))).await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Invalid username or password."));

    let events = demo.app.store.read_all(0, 10_000).await.unwrap();
    let locks: Vec<&str> =
        events.iter().filter(|e| e.event_type == "login_failures.locked_out").map(|e| e.stream.id.as_str()).collect();
    assert!(locks.iter().any(|s| s.contains(":user:")), "{locks:?}");
    assert!(locks.iter().any(|s| s.contains(":ip:127.0.0.1")), "{locks:?}");
    let rejected = events.iter().filter(|e| e.event_type == "auth_request.credentials_rejected").count();
    assert_eq!(rejected, 5, "every refused attempt is on record");
    assert!(events.iter().any(|e| e.payload.contains("user_temporarily_disabled")));
    demo.app.stop().await;
}

#[actix_rt::test]
async fn a_user_of_another_realm_cannot_complete_this_realms_login() {
    let other = serde_json::json!({
        "realm": "other",
        "enabled": true,
        "users": [{ "username": "eve", "enabled": true, "credentials": [{ "type": "password", "value": "eve-password" }] }]
    });
    let demo = Demo::start_with_realms(|_| {}, vec![other]).await;
    let mut jar = Jar::default();
    let res = authorize(&demo, &mut jar, &code_request("web", RP), None).await;
    let (action, csrf) = form_of(&res.text().await.unwrap());
    // The same request, posted with eve's credentials to her realm's login action, with this
    // browser's binding cookie copied onto that realm's path.
    let hijack = action.replace("/realms/demo/", "/realms/other/");
    let res = demo
        .http
        .post(&hijack)
        .header(COOKIE, jar.header())
        .form(&[("csrf", csrf.as_str()), ("username", "eve"), ("password", "eve-password")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers().get(LOCATION).is_none());
    let events = demo.app.store.read_all(0, 10_000).await.unwrap();
    assert!(!events.iter().any(|e| e.event_type == "auth_request.code_issued"), "no code for eve");
    // And eve cannot log in through the demo realm's own form either.
    let res = demo
        .http
        .post(&action)
        .header(COOKIE, jar.header())
        .form(&[("csrf", csrf.as_str()), ("username", "eve"), ("password", "eve-password")])
        .send()
        .await
        .unwrap();
    assert!(res.text().await.unwrap().contains("Invalid username or password."));
    demo.app.stop().await;
}

#[actix_rt::test]
async fn a_role_change_or_a_disabled_account_shows_in_the_next_token() {
    use annals::domain::user::{User, UserCommand};
    let demo = Demo::start().await;
    let web = ("web", "web-secret-0123456789");
    let grant =
        [("grant_type", "password"), ("username", "alice"), ("password", "alice-password"), ("scope", "openid")];
    let (_, first) = demo.token(web, &grant).await;
    assert_eq!(claims(first["access_token"].as_str().unwrap())["realm_access"]["roles"], serde_json::json!(["user"]));
    let (alice, role) = {
        let d = demo.app.read_models.read();
        let realm = d.realms.by_name("demo").unwrap().id.clone();
        let role = d.memberships.role_by_name(&realm, None, "user").unwrap().id.clone();
        (claims(first["access_token"].as_str().unwrap())["sub"].as_str().unwrap().to_string(), role)
    };
    let meta = annals_events::Metadata::system("test");
    let (models, sql) = (demo.app.read_models.clone(), demo.app.sql_models.clone());
    let wait = |p: u64| {
        let (models, sql) = (models.clone(), sql.clone());
        async move {
            models.wait_for(p, std::time::Duration::from_secs(5)).await.unwrap();
            assert!(sql.wait_for(p, std::time::Duration::from_secs(5)).await);
        }
    };
    let done =
        demo.app.hosts.execute::<User>(&alice, UserCommand::RevokeRole { role_id: role }, meta.clone()).await.unwrap();
    wait(done.position).await;
    let (_, refreshed) = demo
        .token(web, &[("grant_type", "refresh_token"), ("refresh_token", first["refresh_token"].as_str().unwrap())])
        .await;
    assert!(claims(refreshed["access_token"].as_str().unwrap()).get("realm_access").is_none(), "{refreshed}");

    let user = annals::sqlmodels::users::get(&demo.app.store.pool(), &alice).await.unwrap().unwrap();
    let disabled = annals_events::user::UserProfile { enabled: false, ..user.profile };
    let done =
        demo.app.hosts.execute::<User>(&alice, UserCommand::ChangeProfile { profile: disabled }, meta).await.unwrap();
    wait(done.position).await;
    let (status, err) = demo
        .token(web, &[("grant_type", "refresh_token"), ("refresh_token", refreshed["refresh_token"].as_str().unwrap())])
        .await;
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")), "a disabled account gets no more tokens");
    demo.app.stop().await;
}

/// Logins read the user from the subject cache once it holds them: a new password, a disabled
/// or a disabled account must still count from the next login on, not after a while.
#[actix_rt::test]
async fn a_changed_password_or_a_disabled_account_counts_at_the_next_login() {
    use annals::domain::user::{User, UserCommand};
    let demo = Demo::start().await;
    let web = ("web", "web-secret-0123456789");
    let login = |user: &'static str, pw: &'static str| {
        let demo = &demo;
        async move { demo.token(web, &[("grant_type", "password"), ("username", user), ("password", pw)]).await }
    };
    // Twice: the second login is answered from the cache.
    for _ in 0..2 {
        assert_eq!(login("alice", "alice-password").await.0, 200);
    }
    let realm = demo.app.read_models.read().realms.by_name("demo").unwrap().id.clone();
    let alice = annals::sqlmodels::users::by_username(&demo.app.store.pool(), &realm, "alice").await.unwrap().unwrap();
    let meta = annals_events::Metadata::system("test");
    let settle = |p: u64| {
        let (models, sql) = (demo.app.read_models.clone(), demo.app.sql_models.clone());
        async move {
            models.wait_for(p, std::time::Duration::from_secs(5)).await.unwrap();
            assert!(sql.wait_for(p, std::time::Duration::from_secs(5)).await);
        }
    };
    let hash = annals::credentials::password::hash_password("alice-new-password").unwrap();
    let cmd = UserCommand::SetPassword { hash, temporary: false };
    settle(demo.app.hosts.execute::<User>(&alice.id, cmd, meta.clone()).await.unwrap().position).await;
    let (status, err) = login("alice", "alice-password").await;
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")), "the old password no longer works");
    assert_eq!(login("alice", "alice-new-password").await.0, 200);

    let disabled = annals_events::user::UserProfile { enabled: false, ..alice.profile };
    let cmd = UserCommand::ChangeProfile { profile: disabled };
    settle(demo.app.hosts.execute::<User>(&alice.id, cmd, meta).await.unwrap().position).await;
    let (status, err) = login("alice", "alice-new-password").await;
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")), "a disabled account cannot log in");
    demo.app.stop().await;
}

#[actix_rt::test]
async fn private_key_jwt_authenticates_once_per_assertion_and_refuses_the_attacks() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    // The client's key pair: its public half registered as Keycloak's `jwks.string`.
    let (jwk, key) = ec_jwk("k1");
    let demo = Demo::start_with(|r| {
        r["clients"].as_array_mut().unwrap().push(serde_json::json!({
            "clientId": "signed",
            "clientAuthenticatorType": "client-jwt",
            "serviceAccountsEnabled": true,
            "standardFlowEnabled": false,
            "attributes": { "use.jwks.string": "true", "jwks.string": serde_json::json!({"keys": [jwk]}).to_string() }
        }));
    })
    .await;
    let token_url = demo.url("token");
    let now = chrono::Utc::now().timestamp();
    let assertion = |claims: Value, alg: Algorithm, key: &EncodingKey| {
        let mut h = Header::new(alg);
        h.kid = Some("k1".into());
        encode(&h, &claims, key).unwrap()
    };
    let good = |jti: &str| serde_json::json!({"iss": "signed", "sub": "signed", "aud": token_url, "exp": now + 60, "iat": now, "jti": jti});
    let post = |jwt: String| demo.assertion_grant(&jwt).send();
    let res = post(assertion(good("a1"), Algorithm::ES256, &key)).await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let res = post(assertion(good("a1"), Algorithm::ES256, &key)).await.unwrap();
    assert_eq!(res.status(), 401, "the same jti twice is a replay");

    // Refused: expired, too long-lived, another audience, another subject, no jti, an HMAC
    // keyed with the public JWK, unsigned, and a key the client never registered.
    let mut cases = vec![];
    let mut c = good("b1");
    c["exp"] = (now - 1).into();
    cases.push(("expired", assertion(c, Algorithm::ES256, &key)));
    let mut c = good("b2");
    c["exp"] = (now + 3600).into();
    cases.push(("long-lived", assertion(c, Algorithm::ES256, &key)));
    let mut c = good("b3");
    c["aud"] = "https://elsewhere.example/token".into();
    cases.push(("audience", assertion(c, Algorithm::ES256, &key)));
    let mut c = good("b4");
    c["sub"] = "web".into();
    cases.push(("subject", assertion(c, Algorithm::ES256, &key)));
    let mut c = good("b5");
    c.as_object_mut().unwrap().remove("jti");
    cases.push(("no jti", assertion(c, Algorithm::ES256, &key)));
    let hmac = EncodingKey::from_secret(jwk.to_string().as_bytes());
    cases.push(("hmac", assertion(good("b6"), Algorithm::HS256, &hmac)));
    let unsigned =
        format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), URL_SAFE_NO_PAD.encode(good("b7").to_string()));
    cases.push(("none", unsigned));
    let (_, other) = ec_jwk("k1");
    cases.push(("impostor", assertion(good("b8"), Algorithm::ES256, &other)));
    for (what, jwt) in cases {
        let res = post(jwt).await.unwrap();
        assert_eq!(res.status(), 401, "{what}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client", "{what}");
    }
    // A secret is not accepted from a client registered for assertions.
    let (status, _) = demo.post_as(("signed", "anything"), "token", &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 401);
    demo.app.stop().await;
}

/// A P-256 key pair: its public half as a JWK named `kid`, its private half to sign with.
fn ec_jwk(kid: &str) -> (Value, jsonwebtoken::EncodingKey) {
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    let ec = EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap();
    let mut ctx = openssl::bn::BigNumContext::new().unwrap();
    let (mut x, mut y) = (openssl::bn::BigNum::new().unwrap(), openssl::bn::BigNum::new().unwrap());
    ec.public_key().affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx).unwrap();
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(x.to_vec_padded(32).unwrap()),
        "y": URL_SAFE_NO_PAD.encode(y.to_vec_padded(32).unwrap()),
    });
    let pem = openssl::pkey::PKey::from_ec_key(ec).unwrap().private_key_to_pem_pkcs8().unwrap();
    (jwk, jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap())
}

/// A client's key-set endpoint: serves whatever `set` holds (500 while it is empty) and
/// counts the requests.
async fn jwks_endpoint(
    set: Arc<std::sync::Mutex<String>>,
    hits: Arc<std::sync::atomic::AtomicUsize>,
) -> (String, actix_web::dev::ServerHandle) {
    use actix_web::{web, HttpResponse};
    let (base, handle) = crate::support::loopback_peer(move |cfg| {
        let (set, hits) = (set.clone(), hits.clone());
        cfg.route(
            "/jwks",
            web::get().to(move || {
                let (set, hits) = (set.clone(), hits.clone());
                async move {
                    hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let body = set.lock().unwrap().clone();
                    match body.is_empty() {
                        true => HttpResponse::InternalServerError().finish(),
                        false => HttpResponse::Ok().content_type("application/json").body(body),
                    }
                }
            }),
        );
    });
    (format!("{base}/jwks"), handle)
}

#[actix_rt::test]
async fn private_key_jwt_keys_come_from_the_clients_jwks_url_and_follow_its_rotation() {
    use jsonwebtoken::{encode, Algorithm, Header};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (set, hits) = (Arc::new(std::sync::Mutex::new(String::new())), Arc::new(AtomicUsize::new(0)));
    let (url, endpoint) = jwks_endpoint(set.clone(), hits.clone()).await;
    let demo = Demo::start_with(|r| {
        r["clients"].as_array_mut().unwrap().push(serde_json::json!({
            "clientId": "by-url",
            "clientAuthenticatorType": "client-jwt",
            "serviceAccountsEnabled": true,
            "standardFlowEnabled": false,
            "attributes": { "use.jwks.url": "true", "jwks.url": url }
        }));
    })
    .await;
    let token_url = demo.url("token");
    let now = chrono::Utc::now().timestamp();
    let assertion = |kid: &str, key: &jsonwebtoken::EncodingKey, jti: &str| {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.into());
        let claims = serde_json::json!({"iss": "by-url", "sub": "by-url", "aud": token_url, "exp": now + 60, "iat": now, "jti": jti});
        encode(&h, &claims, key).unwrap()
    };
    let post = |jwt: String| {
        let res = demo.assertion_grant(&jwt).send();
        async move { res.await.unwrap().status().as_u16() }
    };
    let (k1, key1) = ec_jwk("k1");
    let (k2, key2) = ec_jwk("k2");
    let (_, impostor) = ec_jwk("k1");

    // The endpoint fails: nobody can authenticate, and the error is the client's.
    assert_eq!(post(assertion("k1", &key1, "a0")).await, 401);
    *set.lock().unwrap() = serde_json::json!({"keys": [k1]}).to_string();
    // Within the refetch gap the failed fetch is not repeated for every assertion.
    tokio::time::sleep(std::time::Duration::from_millis(10_500)).await;
    assert_eq!(post(assertion("k1", &key1, "a1")).await, 200);
    assert_eq!(post(assertion("k1", &key1, "a2")).await, 200);
    assert_eq!(post(assertion("k1", &impostor, "a3")).await, 401, "a key the set does not hold");
    let fetched = hits.load(Ordering::SeqCst);
    assert_eq!(fetched, 2, "one failed fetch, then one kept for every assertion");

    // The client rotates to k2: an assertion naming the new kid fetches the set again (once
    // the refetch gap has passed), and k1 no longer verifies.
    *set.lock().unwrap() = serde_json::json!({"keys": [k2]}).to_string();
    tokio::time::sleep(std::time::Duration::from_millis(10_500)).await;
    assert_eq!(post(assertion("k2", &key2, "b1")).await, 200);
    assert_eq!(post(assertion("k1", &key1, "b2")).await, 401);
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // A made-up kid right after does not make the server fetch again.
    assert_eq!(post(assertion("nope", &key2, "b3")).await, 401);
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    endpoint.stop(true).await;
    demo.app.stop().await;
}

#[actix_rt::test]
async fn client_secret_jwt_authenticates_with_the_secret_as_hmac_key_and_refuses_the_attacks() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    // 64 bytes: long enough for HS512 (RFC 7518 §3.2).
    let secret = "hmac-client-secret-0123456789abcdef-0123456789abcdef-0123456789a";
    let demo = Demo::start_with(|r| {
        r["clients"].as_array_mut().unwrap().push(serde_json::json!({
            "clientId": "hmac",
            "clientAuthenticatorType": "client-secret-jwt",
            "secret": secret,
            "serviceAccountsEnabled": true,
            "standardFlowEnabled": false,
        }));
        r["clients"].as_array_mut().unwrap().push(serde_json::json!({
            "clientId": "short",
            "clientAuthenticatorType": "client-secret-jwt",
            "secret": "short-secret-0123456789abcdef-0123",
            "serviceAccountsEnabled": true,
            "standardFlowEnabled": false,
            "attributes": { "token.endpoint.auth.signing.alg": "HS256" },
        }));
    })
    .await;
    let token_url = demo.url("token");
    let now = chrono::Utc::now().timestamp();
    let sign = |claims: Value, alg: Algorithm, key: &[u8]| {
        encode(&Header::new(alg), &claims, &EncodingKey::from_secret(key)).unwrap()
    };
    let good = |jti: &str| serde_json::json!({"iss": "hmac", "sub": "hmac", "aud": token_url, "exp": now + 60, "iat": now, "jti": jti});
    let post = |jwt: String| demo.assertion_grant(&jwt).send();
    for (jti, alg) in [("h1", Algorithm::HS256), ("h2", Algorithm::HS384), ("h3", Algorithm::HS512)] {
        let res = post(sign(good(jti), alg, secret.as_bytes())).await.unwrap();
        assert_eq!(res.status(), 200, "{alg:?}: {}", res.text().await.unwrap());
    }
    let res = post(sign(good("h1"), Algorithm::HS256, secret.as_bytes())).await.unwrap();
    assert_eq!(res.status(), 401, "the same jti twice is a replay");

    let mut cases = vec![("wrong secret", sign(good("x1"), Algorithm::HS256, b"not-the-secret-0123456789abcdef"))];
    let mut c = good("x2");
    c["exp"] = (now - 1).into();
    cases.push(("expired", sign(c, Algorithm::HS256, secret.as_bytes())));
    let mut c = good("x3");
    c["iss"] = "svc".into();
    cases.push(("issuer", sign(c, Algorithm::HS256, secret.as_bytes())));
    let unsigned =
        format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), URL_SAFE_NO_PAD.encode(good("x4").to_string()));
    cases.push(("none", unsigned));
    let mut truncated = sign(good("x5"), Algorithm::HS256, secret.as_bytes());
    truncated.truncate(truncated.len() - 4);
    cases.push(("truncated signature", truncated));
    for (what, jwt) in cases {
        let res = post(jwt).await.unwrap();
        assert_eq!(res.status(), 401, "{what}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client", "{what}");
    }
    // The secret itself is not accepted from a client registered for assertions, and a
    // secret-keyed assertion is not accepted from a client that registered for secrets.
    let (status, _) = demo.post_as(("hmac", secret), "token", &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 401);
    let mut c = good("x6");
    c["iss"] = "svc".into();
    c["sub"] = "svc".into();
    let res = demo.assertion_grant(&sign(c, Algorithm::HS256, b"svc-secret-0123456789")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    // A 34-byte secret keys HS256 but not HS384 (too short), and this client registered
    // HS256 alone anyway.
    let short = "short-secret-0123456789abcdef-0123";
    let claims_of =
        |jti: &str| serde_json::json!({"iss": "short", "sub": "short", "aud": token_url, "exp": now + 60, "jti": jti});
    for (jti, alg, want) in
        [("s1", Algorithm::HS256, 200), ("s2", Algorithm::HS384, 401), ("s3", Algorithm::HS512, 401)]
    {
        let res = post(sign(claims_of(jti), alg, short.as_bytes())).await.unwrap();
        assert_eq!(res.status(), want, "{alg:?}");
    }
    // The secret is sealed in the log, never in clear.
    let events = demo.app.store.read_all(0, 10_000).await.unwrap();
    assert!(events.iter().all(|e| !e.payload.contains(secret)), "a clear secret in the log");
    demo.app.stop().await;
}

#[actix_rt::test]
async fn tokens_issued_after_a_revocation_in_the_same_second_stay_valid() {
    let demo = Demo::start().await;
    let mut jar = Jar::default();
    let (_, first) = redeem(&demo, &alice_code(&demo, &mut jar).await).await;
    let web = ("web", "web-secret-0123456789");
    let (status, _) = demo.post_as(web, "revoke", &[("token", first["refresh_token"].as_str().unwrap())]).await;
    assert_eq!(status, 200);
    assert_eq!(demo.introspect(first["access_token"].as_str().unwrap()).await["active"], false);
    // At once, by SSO in the same session, for the same client: the new tokens come after
    // the revocation in the session's own order, whatever the clock says.
    let (_, second) = redeem(&demo, &alice_code(&demo, &mut jar).await).await;
    let at = second["access_token"].as_str().unwrap();
    assert_eq!(claims(at)["sid"], claims(first["access_token"].as_str().unwrap())["sid"], "same session");
    assert_eq!(demo.introspect(at).await["active"], true);
    assert_eq!(demo.introspect(first["access_token"].as_str().unwrap()).await["active"], false);
    demo.app.stop().await;
}

#[actix_rt::test]
async fn front_channel_logout_loads_each_clients_logout_page_then_moves_on() {
    let demo = Demo::start().await;
    let mut jar = Jar::default();
    let (_, web) = redeem(&demo, &alice_code(&demo, &mut jar).await).await;
    let other = [
        ("client_id", "other"),
        ("redirect_uri", "https://other.example/cb"),
        ("response_type", "code"),
        ("scope", "openid"),
    ];
    let res = authorize(&demo, &mut jar, &other, None).await;
    let code = query_of(res.headers()[LOCATION].to_str().unwrap())["code"].clone();
    let (status, _) = demo
        .token(
            ("other", "other-secret-0123456789"),
            &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", "https://other.example/cb")],
        )
        .await;
    assert_eq!(status, 200);
    let id = web["id_token"].as_str().unwrap();
    let sid = claims(id)["sid"].as_str().unwrap().to_string();
    let res = demo
        .http
        .get(demo.url("logout"))
        .query(&[("id_token_hint", id), ("post_logout_redirect_uri", "https://rp.example/bye"), ("state", "s")])
        .header(COOKIE, jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "a page, so the frames can load");
    let html = res.text().await.unwrap().replace("&#x2f;", "/").replace("&amp;", "&");
    let iss = demo.issuer();
    let frame = format!(
        "https://other.example/fc?from=annals&iss={}&sid={sid}",
        url::form_urlencoded::byte_serialize(iss.as_bytes()).collect::<String>()
    );
    assert!(html.contains(&format!("<iframe src=\"{frame}\"")), "{html}");
    assert!(html.contains("content=\"2;url=https://rp.example/bye?state=s\""), "then on to the relying party: {html}");
    assert!(!html.contains("rp.example/fc"), "web registered no front-channel URI");
    assert_eq!(demo.introspect(web["access_token"].as_str().unwrap()).await["active"], false);
    demo.app.stop().await;
}

#[actix_rt::test]
async fn a_client_requiring_consent_gets_a_code_only_after_the_user_agrees_and_consent_is_remembered() {
    const CB: &str = "https://consent.example/cb";
    let demo = Demo::start_with(|r| {
        r["clients"].as_array_mut().unwrap().push(serde_json::json!({
            "clientId": "asks",
            "name": "Consent <App>",
            "secret": "asks-secret-0123456789",
            "consentRequired": true,
            "directAccessGrantsEnabled": true,
            "redirectUris": [CB],
            "optionalClientScopes": ["phone", "payments:write"],
        }));
    })
    .await;
    let request = |extra: &[(&'static str, &'static str)]| {
        let mut r = code_request("asks", CB);
        r.extend_from_slice(extra);
        r
    };
    let answer = |jar: &Jar, html: &str, decision: &str| {
        let (action, csrf) = form_of(html);
        demo.http
            .post(action)
            .header(COOKIE, jar.header())
            .form(&[("csrf", csrf.as_str()), ("decision", decision)])
            .send()
    };
    let location = |res: &reqwest::Response| query_of(res.headers()[LOCATION].to_str().unwrap());

    // First login: the consent page, and no session yet; the user says no.
    let mut jar = Jar::default();
    let res = authorize(&demo, &mut jar, &request(&[]), Some(("alice", "alice-password"))).await;
    assert_eq!(res.status(), 200, "the consent page");
    assert!(!jar.header().contains("ANNALS_SESSION="), "no session before consent");
    let html = res.text().await.unwrap();
    assert!(html.contains("Consent &lt;App&gt;"), "the client's name, escaped: {html}");
    assert!(html.contains("<li>User profile</li>") && html.contains("<li>Email address</li>"), "{html}");
    let res = answer(&jar, &html, "deny").await.unwrap();
    jar.take(&res);
    assert_eq!(res.status(), 302);
    let q = location(&res);
    assert_eq!((q["error"].as_str(), q["state"].as_str()), ("access_denied", "st-1"), "{q:?}");
    assert!(!q.contains_key("code"));
    assert!(!jar.header().contains("ANNALS_SESSION="), "a refusal leaves no session");
    let res = answer(&jar, &html, "accept").await.unwrap();
    assert_eq!(res.status(), 400, "the refused request cannot be accepted afterwards");

    // Second login: yes. A code, tokens, and a session.
    let res = authorize(&demo, &mut jar, &request(&[]), Some(("alice", "alice-password"))).await;
    let html = res.text().await.unwrap();
    // Not from another browser, not without the token, not with a made-up answer.
    let stranger = Jar::default();
    assert_eq!(answer(&stranger, &html, "accept").await.unwrap().status(), 400);
    let (action, _) = form_of(&html);
    let res = demo.http.post(&action).header(COOKIE, jar.header()).form(&[("decision", "accept")]).send().await;
    assert_eq!(res.unwrap().status(), 400);
    assert_eq!(answer(&jar, &html, "maybe").await.unwrap().status(), 400);
    let res = answer(&jar, &html, "accept").await.unwrap();
    jar.take(&res);
    assert_eq!(res.status(), 302);
    let code = location(&res)["code"].clone();
    let (status, tokens) = demo
        .token(
            ("asks", "asks-secret-0123456789"),
            &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CB), ("code_verifier", VERIFIER)],
        )
        .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(claims(tokens["id_token"].as_str().unwrap())["acr"], "1");
    assert_eq!(answer(&jar, &html, "accept").await.unwrap().status(), 400, "answered once");

    // Remembered: SSO goes straight through; prompt=consent asks again; a new scope asks for
    // itself and prompt=none then ends with consent_required.
    let res = authorize(&demo, &mut jar, &request(&[("prompt", "none")]), None).await;
    assert_eq!(res.status(), 302);
    assert!(location(&res).contains_key("code"), "{:?}", location(&res));
    let res = authorize(&demo, &mut jar, &request(&[("prompt", "consent")]), None).await;
    assert_eq!(res.status(), 200, "prompt=consent shows the page again");
    let mut phone = request(&[("prompt", "none")]);
    phone.retain(|(k, _)| *k != "scope");
    phone.push(("scope", "openid phone"));
    let res = authorize(&demo, &mut jar, &phone, None).await;
    assert_eq!(location(&res)["error"], "consent_required");
    // A custom scope asks too (it shows its name).
    let mut custom = request(&[("prompt", "none")]);
    custom.retain(|(k, _)| *k != "scope");
    custom.push(("scope", "openid payments:write"));
    let res = authorize(&demo, &mut jar, &custom, None).await;
    assert_eq!(location(&res)["error"], "consent_required", "a custom scope is never granted silently");
    phone.retain(|(k, _)| *k != "prompt");
    let res = authorize(&demo, &mut jar, &phone, None).await;
    let html = res.text().await.unwrap();
    assert!(html.contains("<li>Phone number</li>"), "{html}");

    // No page to ask on: the password grant is refused for such a client.
    let (status, body) = demo
        .token(
            ("asks", "asks-secret-0123456789"),
            &[("grant_type", "password"), ("username", "alice"), ("password", "alice-password")],
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("unauthorized_client")), "{body}");

    let events = demo.app.store.read_all(0, 10_000).await.unwrap();
    let count = |t: &str| events.iter().filter(|e| e.event_type == t).count();
    assert_eq!(count("auth_request.consent_requested"), 4);
    assert_eq!(count("auth_request.consent_denied"), 1);
    assert_eq!(count("auth_request.consent_granted"), 1);
    assert_eq!(count("user.consent_granted"), 1);
    // Each login's session starts with its code, in one transaction; a refusal starts none.
    for (i, e) in events.iter().enumerate().filter(|(_, e)| e.event_type == "session.started") {
        let before = &events[i - 1];
        assert!(matches!(before.event_type.as_str(), "auth_request.code_issued" | "auth_request.consent_granted"));
        assert_eq!(before.recorded_at, e.recorded_at, "{} and {} in one batch", before.event_type, e.event_type);
    }
    demo.app.stop().await;
}

/// A fresh token whose session this node's read model has not folded (another node's,
/// before its NOTIFY arrives; here a stopped model) is judged from the session's stream in
/// the log: active while the session lives, inactive once it ended, and only while fresh.
#[actix_rt::test]
async fn a_fresh_token_whose_session_the_read_model_lacks_is_judged_from_the_log() {
    let clock = annals::clock::ManualClock::at(chrono::Utc::now());
    let shared: annals::clock::SharedClock = Arc::new(clock.clone());
    let demo = Demo::start_clocked(|_| {}, vec![], |_| {}, shared).await;
    demo.app.read_models.stop();
    let form = [("grant_type", "password"), ("username", "alice"), ("password", "alice-password"), ("scope", "openid")];
    let (status, t) = demo.token(("web", "web-secret-0123456789"), &form).await;
    assert_eq!(status, 200, "{t}");
    let (at, rt) = (t["access_token"].as_str().unwrap(), t["refresh_token"].as_str().unwrap());
    let sid = claims(at)["sid"].as_str().unwrap().to_string();
    assert!(demo.app.read_models.read().sessions.get(&sid).is_none(), "the stopped model never saw it");
    assert_eq!(demo.introspect(at).await["active"], true);
    assert_eq!(demo.introspect(rt).await["active"], true);

    let revoke = annals::domain::session::SessionCommand::Revoke { reason: "test".into() };
    let meta = annals_events::Metadata::system("test");
    demo.app.hosts.execute::<annals::domain::session::Session>(&sid, revoke, meta).await.unwrap();
    assert_eq!(demo.introspect(at).await["active"], false, "the log says the session ended");
    assert_eq!(demo.introspect(rt).await["active"], false);

    // A token no longer fresh whose session the model does not hold is not looked up.
    let (status, t) = demo.token(("web", "web-secret-0123456789"), &form).await;
    assert_eq!(status, 200, "{t}");
    clock.advance(chrono::Duration::seconds(6));
    assert_eq!(demo.introspect(t["access_token"].as_str().unwrap()).await["active"], false);
    demo.app.stop().await;
}

/// An admin deletes a client and creates another under the same `client_id` (re-imported
/// with the same secret, say): the old client's tokens do not pass as the new one's.
#[actix_rt::test]
async fn tokens_of_a_deleted_client_do_not_pass_to_one_reusing_its_client_id() {
    use annals::domain::client::{Client, ClientCommand};
    let demo = Demo::start().await;
    let web = ("web", "web-secret-0123456789");
    let form = [("grant_type", "password"), ("username", "alice"), ("password", "alice-password"), ("scope", "openid")];
    let (status, old) = demo.token(web, &form).await;
    assert_eq!(status, 200, "{old}");
    let (at, rt) = (old["access_token"].as_str().unwrap(), old["refresh_token"].as_str().unwrap());
    assert_eq!(demo.introspect(at).await["active"], true);

    let sid = claims(at)["sid"].as_str().unwrap().to_string();
    let meta = annals_events::Metadata::system("test");
    let (realm_id, gone) = {
        let models = demo.app.read_models.read();
        let realm = models.realms.by_name("demo").unwrap().id.clone();
        let client = models.clients.by_client_id(&realm, "web").unwrap().clone();
        (realm, client)
    };
    demo.app.hosts.execute::<Client>(&gone.id, ClientCommand::Delete, meta.clone()).await.unwrap();
    let successor = uuid::Uuid::now_v7().to_string();
    let create = ClientCommand::Create {
        realm_id: realm_id.clone(),
        client_id: "web".into(),
        settings: gone.settings.clone(),
        secret: gone.secret.clone(),
        sealed_secret: gone.sealed_secret.clone().map(Box::new),
        extra: gone.extra.clone(),
    };
    demo.app.hosts.execute::<Client>(&successor, create, meta).await.unwrap();
    let successor_seen =
        || demo.app.read_models.read().clients.by_client_id(&realm_id, "web").is_some_and(|c| c.id == successor);
    support::wait_until(successor_seen).await;
    assert!(successor_seen(), "the read model never showed the new client");

    assert_eq!(demo.introspect(at).await["active"], false, "the old client's access token");
    assert_eq!(demo.introspect(rt).await["active"], false, "the old client's refresh token");
    let (status, body) = demo.token(web, &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    // Refused as another client's, not taken for a reused token of the new one (which would
    // revoke the user's session).
    let now = chrono::Utc::now().timestamp();
    assert!(demo.app.read_models.read().sessions.alive(&sid, now).is_some(), "the session was revoked");
    let (status, fresh) = demo.token(web, &form).await;
    assert_eq!(status, 200, "{fresh}");
    assert_eq!(demo.introspect(fresh["access_token"].as_str().unwrap()).await["active"], true, "the new client's");
    demo.app.stop().await;
}

/// A login under way when the node stops finishes, with every command it needs after the
/// password check (its session and tokens): the node stops taking requests first, lets those
/// under way finish, and only then drains its actors.
#[actix_rt::test]
async fn a_login_under_way_when_the_node_stops_gets_its_tokens() {
    let Demo { app, http, _dirs } = Demo::start().await;
    let url = format!("{}/realms/demo/protocol/openid-connect/token", app.base_url);
    let form = [("grant_type", "password"), ("username", "alice"), ("password", "alice-password"), ("scope", "openid")];
    // Connected already (kept alive), as a client of a running node is.
    let ready = http.get(format!("{}/health/ready", app.base_url)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let login = http.post(&url).basic_auth("web", Some("web-secret-0123456789")).form(&form).send();
    let stop = async {
        // The password check (argon2id) is under way by then.
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        app.stop().await;
    };
    let (answer, ()) = tokio::join!(login, stop);
    let answer = answer.unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert!(body["access_token"].is_string() && body["refresh_token"].is_string(), "{body}");
}

/// While a node stops, a client that connects anew is told to retry (503, Retry-After) rather
/// than left with a connection reset and no way to know whether its request ran.
#[actix_rt::test]
async fn a_new_connection_while_the_node_stops_is_answered_retry_later() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Demo { app, http, _dirs } = Demo::start().await;
    let base = app.base_url.clone();
    let addr = base.trim_start_matches("http://").to_string();
    let ready = format!("{base}/health/ready");
    assert_eq!(http.get(&ready).send().await.unwrap().status(), 200, "a connection kept alive");
    // A request under way (its body still arriving) holds the drain open.
    let mut held = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = "grant_type=client_credentials";
    let head = format!(
        "POST /realms/demo/protocol/openid-connect/token HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\ngrant_type=",
        body.len()
    );
    held.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let stopping = tokio::spawn(app.stop());
    // The stop has begun once the kept-alive connection is refused.
    let mut refused = false;
    for _ in 0..100 {
        if http.get(&ready).send().await.unwrap().status() == 503 {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(refused, "the gate closes");
    // Then a client connecting anew.
    let fresh = reqwest::Client::builder().timeout(std::time::Duration::from_secs(2)).build().unwrap();
    let answer = fresh.get(&ready).send().await.expect("a stopping node answers new connections");
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.headers()["retry-after"], "1");
    assert_eq!(answer.headers()["connection"], "close");
    // The request under way still gets its own answer (no client authentication: 401), then
    // the node stops.
    held.write_all(&body.as_bytes()["grant_type=".len()..]).await.unwrap();
    let mut reply = vec![0u8; 12];
    held.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"HTTP/1.1 401");
    tokio::time::timeout(std::time::Duration::from_secs(15), stopping).await.unwrap().unwrap();
}

/// Made-up codes, which a public client may present without any secret, are refused and
/// leave nothing hosted: each costs a read, not an actor kept for the idle timeout.
#[actix_rt::test]
async fn forged_codes_from_a_public_client_are_refused_and_leave_no_actor() {
    let demo = Demo::start().await;
    let before = demo.app.hosts.live();
    for _ in 0..60 {
        let code = format!("{}.{}", uuid::Uuid::new_v4(), "A".repeat(43));
        let form = [
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", code.as_str()),
            ("redirect_uri", "https://spa.example/cb"),
            ("code_verifier", VERIFIER),
        ];
        let res = demo.http.post(demo.url("token")).form(&form).send().await.unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap();
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while demo.app.hosts.live() > before + 5 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(demo.app.hosts.live() <= before + 5, "{} actors live, {before} before", demo.app.hosts.live());
    demo.app.stop().await;
}
