//! `annals timeline`: the records it gathers through the indexes are exactly those a scan of
//! the whole log finds about the user, and the command writes them as text and HTML.
use crate::audit::{add_auditor, password_token};
use crate::oidc_flow::{alice_code, redeem, Demo, Jar};
use crate::sinks::log_records;
use annals::cli::timeline::{gather, render_html, TimelineRequest};
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
