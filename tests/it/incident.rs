//! Incident analysis. `annals timeline`: the records it gathers through the indexes are
//! exactly those a scan of the whole log finds about the user, written as text and HTML.
//! `annals trace-token`: a token's login, session, refreshes and revocation. `annals at`: the
//! sessions and tokens active at a moment, and only those.
use crate::audit::{add_auditor, password_token};
use crate::oidc_flow::{alice_code, redeem, Demo, Jar};
use crate::sinks::log_records;
use annals::cli::at::{report, AtRequest, What};
use annals::cli::timeline::{gather, render_html, TimelineRequest};
use annals::cli::trace_token::trace;
use serde_json::Value;
use std::process::Command;

const ANNALS: &str = env!("CARGO_BIN_EXE_annals");

#[actix_rt::test]
async fn a_timeline_holds_every_record_about_the_user_and_nothing_else() {
    let from = chrono::Utc::now() - chrono::Duration::minutes(1);
    let demo = Demo::start_with(add_auditor).await;
    // given alice's logins, a refresh, a wrong password, and another user's login between
    let mut jar = Jar::default();
    let code = alice_code(&demo, &mut jar).await;
    let (status, tokens) = redeem(&demo, &code).await;
    assert_eq!(status, 200);
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
    assert_eq!(demo.token(("web", "web-secret-0123456789"), &form).await.0, 200);
    let _ =
        password_token(&demo, "demo", ("web", Some("web-secret-0123456789")), ("auditor", "auditor-password")).await;
    let form = [("grant_type", "password"), ("username", "alice"), ("password", "wrong")];
    assert_eq!(demo.token(("web", "web-secret-0123456789"), &form).await.0, 400);
    let to = chrono::Utc::now() + chrono::Duration::minutes(1);

    // when alice's timeline is gathered through the indexes
    let req = TimelineRequest { realm: "demo".into(), user: "alice".into(), client: None, from, to };
    let t = gather(&demo.app.store, &req).await.unwrap();
    // then it is exactly what a scan of the whole log says about her, in log order
    let (_, log) = log_records(&demo.app).await;
    let mut expected: Vec<(u64, Value)> = log.into_iter().filter(|(_, r)| r["userId"] == t.user_id.as_str()).collect();
    expected.sort_by_key(|(p, _)| *p);
    let got: Vec<(u64, Value)> = t.records.iter().map(|r| (r.position, serde_json::to_value(r).unwrap())).collect();
    assert_eq!(got, expected);
    let kinds: std::collections::BTreeSet<&str> = t.records.iter().map(|r| r.annals_type).collect();
    for kind in [
        "user.created",
        "auth_request.authenticated",
        "auth_request.code_redeemed",
        "session.started",
        "session.tokens_issued",
        "auth_request.credentials_rejected",
    ] {
        assert!(kinds.contains(kind), "{kind} in {kinds:?}");
    }
    assert!(t.records.iter().any(|r| r.r#type == Some("REFRESH_TOKEN")));
    // a client filter and a window keep only what they name
    let only_api = TimelineRequest { client: Some("api".into()), ..req };
    assert!(gather(&demo.app.store, &only_api).await.unwrap().records.is_empty());
    let before = TimelineRequest {
        realm: "demo".into(),
        user: "alice".into(),
        client: None,
        from: from - chrono::Duration::hours(2),
        to: from,
    };
    assert!(gather(&demo.app.store, &before).await.unwrap().records.is_empty());
    assert!(render_html(&t).contains(&format!(r#"id="p{}""#, t.records[0].position)));

    // and the command prints the same records and writes the report
    let dir = demo.data_dir().to_path_buf();
    let html = dir.join("alice.html");
    let (from_s, to_s) = (from.to_rfc3339(), to.to_rfc3339());
    let out = Command::new(ANNALS)
        .args(["timeline", "--realm", "demo", "--user", "alice", "--from", &from_s, "--to", &to_s, "--html"])
        .arg(&html)
        .env("ANNALS_DATA_DIR", &dir)
        .env_remove("ANNALS_DATABASE_URL")
        .env_remove("ANNALS_MASTER_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().count(), t.records.len() + 1, "{stdout}");
    assert!(stdout.lines().nth(1).unwrap().contains(&format!("#{}", t.records[0].position)));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.matches("<circle").count() == t.records.len());
    demo.app.stop().await;
}

#[actix_rt::test]
async fn a_token_is_traced_to_its_login_refreshes_and_revocation_and_at_shows_what_lived_when() {
    let demo = Demo::start().await;
    let secret = ("web", "web-secret-0123456789");
    // given a code login, two refreshes, then the last refresh token revoked
    let mut jar = Jar::default();
    let code = alice_code(&demo, &mut jar).await;
    let (status, first) = redeem(&demo, &code).await;
    assert_eq!(status, 200);
    let mut refresh = first["refresh_token"].as_str().unwrap().to_string();
    let before_refresh = chrono::Utc::now();
    for _ in 0..2 {
        let (status, next) = demo.token(secret, &[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await;
        assert_eq!(status, 200, "{next}");
        refresh = next["refresh_token"].as_str().unwrap().to_string();
    }
    let while_live = chrono::Utc::now();
    let res =
        demo.http.post(demo.url("revoke")).basic_auth(secret.0, Some(secret.1)).form(&[("token", refresh.as_str())]);
    assert_eq!(res.send().await.unwrap().status(), 200);
    let (status, grant) = demo.token(("svc", "svc-secret-0123456789"), &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200);

    // when the first access token is traced
    let access = first["access_token"].as_str().unwrap();
    let text = trace(&demo.app.store, access).await.unwrap();
    // then its issuance, session, login and both refreshes are named
    assert!(text.starts_with("access token "), "{text}");
    assert!(text.contains("to client web by grant authorization_code"), "{text}");
    assert!(text.contains("for user alice ("), "{text}");
    assert!(text.contains("authorization request ") && text.contains("from 127.0.0.1"), "{text}");
    assert!(text.contains("refreshes after it: 2"), "{text}");
    assert!(text.contains("status   revoked "), "revoking the chain revoked earlier access tokens: {text}");
    // the same through its bare id (found by reading the issuances)
    let jti = jwt_claim(access, "jti");
    assert_eq!(trace(&demo.app.store, &jti).await.unwrap(), text);
    // the revoked refresh token says why
    let last = trace(&demo.app.store, &refresh).await.unwrap();
    assert!(last.starts_with("refresh token ") && last.contains("(revocation_endpoint)"), "{last}");
    // a client-credentials token comes from its grant
    let cc = trace(&demo.app.store, grant["access_token"].as_str().unwrap()).await.unwrap();
    assert!(cc.contains("to client svc by grant client_credentials") && cc.contains("not revoked"), "{cc}");
    assert!(trace(&demo.app.store, "no-such-token").await.is_err());

    // and `at` shows alice's session and tokens only while they lived
    let at = |when: chrono::DateTime<chrono::Utc>, what: What| {
        let store = demo.app.store.clone();
        async move {
            let req = AtRequest { at: when, what, realm: Some("demo".into()), user: Some("alice".into()) };
            report(&store, &req).await.unwrap()
        }
    };
    let sessions = at(while_live, What::Sessions).await;
    assert!(sessions.contains("1 active sessions"), "{sessions}");
    let tokens = at(while_live, What::Tokens).await;
    assert!(tokens.contains(&format!("access {jti} ")), "the first access token had not expired: {tokens}");
    assert!(tokens.contains(&format!("refresh {} ", jwt_claim(&refresh, "jti"))), "{tokens}");
    assert!(
        !tokens.contains(&format!("refresh {} ", jwt_claim(first["refresh_token"].as_str().unwrap(), "jti"))),
        "rotated away: {tokens}"
    );
    let early = at(before_refresh - chrono::Duration::minutes(5), What::Sessions).await;
    assert!(early.contains("0 active sessions"), "{early}");
    let now = at(chrono::Utc::now(), What::Tokens).await;
    assert!(!now.contains(&jti) && !now.contains(&jwt_claim(&refresh, "jti")), "revoked: {now}");
    demo.app.stop().await;
}

fn jwt_claim(token: &str, claim: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims[claim].as_str().unwrap().to_string()
}
