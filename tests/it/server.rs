//! A real node: bootstrap, health, metrics, restart, read models.
use crate::support::{self, pg::TestDb, ADMIN_PASSWORD};
use annals::actors::CommandError;
use annals::credentials::password::verify_password;
use annals::domain::user::{User, UserCommand};
use annals::readmodels;
use annals::sqlmodels::{self, users};
use annals_events::user::UserProfile;
use annals_events::Metadata;
use std::time::Duration;

#[actix_rt::test]
async fn a_fresh_node_bootstraps_master_and_reports_health() {
    let dir = tempfile::tempdir().unwrap();
    let app = support::spawn_app(support::serve_config(dir.path(), None)).await;
    let admin = app.bootstrap.clone().expect("bootstrap ran on an empty store");
    assert_eq!(admin.username, "admin");
    assert!(admin.generated_password.is_none(), "password came from configuration");
    {
        let d = app.read_models.read().clone();
        let master = d.realms.by_name("master").expect("master realm");
        let pool = app.store.pool();
        assert!(app.sql_models.wait_for(app.store.head().await.unwrap(), Duration::from_secs(5)).await);
        let user = users::by_username(&pool, &master.id, "ADMIN").await.unwrap().expect("admin, case-insensitive");
        let verified = verify_password(ADMIN_PASSWORD, user.password.as_ref().unwrap()).unwrap();
        assert!(verified.ok && !verified.needs_upgrade, "argon2id hash of the configured password");
        assert!(!verify_password("wrong", user.password.as_ref().unwrap()).unwrap().ok);
        let (direct, groups) =
            (users::roles_of(&pool, &user.id).await.unwrap(), users::groups_of(&pool, &user.id).await.unwrap());
        let roles = d.memberships.effective_roles(&direct, &groups);
        assert!(roles.iter().any(|r| d.memberships.role(r).unwrap().name == "admin"));
        assert!(d.signing_keys.active(&master.id, "RS256").is_some(), "master has an RS256 key");
    }
    let c = support::http();
    let base = &app.base_url;
    let live = c.get(format!("{base}/health/live")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    let ready = c.get(format!("{base}/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "UP");
    let head = app.store.head().await.unwrap();
    assert_eq!(body["checks"]["sql_models"]["position"], head, "ready waits for the users model too: {body}");
    let metrics = c.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    for name in [
        "annals_http_request_duration_seconds_bucket",
        "annals_events_appended_total",
        "annals_append_duration_seconds",
        "annals_projection_lag_events",
        "annals_actors_live",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(metrics.contains("route=\"/health/ready\""), "latency is labelled by route");
    let missing = c.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    app.stop().await;
}

#[actix_rt::test]
async fn a_restarted_node_keeps_its_state_and_does_not_bootstrap_twice() {
    let dir = tempfile::tempdir().unwrap();
    let app = support::spawn_app(support::serve_config(dir.path(), None)).await;
    let head = app.store.head().await.unwrap();
    app.stop().await;
    let mut cfg = support::serve_config(dir.path(), None);
    cfg.bootstrap_admin_password = None;
    let again = support::spawn_app(cfg).await;
    assert!(again.bootstrap.is_none());
    assert_eq!(again.store.head().await.unwrap(), head);
    assert!(again.read_models.read().realms.by_name("master").is_some());
    again.stop().await;
}

#[actix_rt::test]
async fn without_a_configured_password_one_is_generated() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = support::serve_config(dir.path(), None);
    cfg.bootstrap_admin_password = None;
    let app = support::spawn_app(cfg).await;
    let pw = app.bootstrap.clone().unwrap().generated_password.expect("generated");
    assert!(pw.len() >= 20);
    let master = app.read_models.read().realms.by_name("master").unwrap().id.clone();
    assert!(app.sql_models.wait_for(app.store.head().await.unwrap(), Duration::from_secs(5)).await);
    let user = users::by_username(&app.store.pool(), &master, "admin").await.unwrap().unwrap();
    assert!(verify_password(&pw, user.password.as_ref().unwrap()).unwrap().ok);
    app.stop().await;
}

/// Read models built incrementally while commands run equal a rebuild from position 0.
#[actix_rt::test]
async fn rebuilt_read_models_equal_the_incrementally_built_ones() {
    let dir = tempfile::tempdir().unwrap();
    let app = support::spawn_app(support::serve_config(dir.path(), None)).await;
    let master = app.read_models.read().realms.by_name("master").unwrap().id.clone();
    let meta = || Metadata::system("test").with_realm("master");
    for i in 0..40 {
        let id = format!("user-{i}");
        let create = UserCommand::Create {
            realm_id: master.clone(),
            username: format!("User{i}"),
            profile: UserProfile { email: Some(format!("u{i}@Example.org")), enabled: true, ..Default::default() },
            created_timestamp: None,
            federation_link: None,
            extra: Default::default(),
        };
        app.hosts.execute::<User>(&id, create, meta()).await.unwrap();
        if i % 3 == 0 {
            app.hosts.execute::<User>(&id, UserCommand::Delete, meta()).await.unwrap();
        }
        if i % 5 == 0 {
            let profile =
                UserProfile { email: Some(format!("changed{i}@example.org")), enabled: true, ..Default::default() };
            match app.hosts.execute::<User>(&id, UserCommand::ChangeProfile { profile }, meta()).await {
                Ok(_) | Err(CommandError::Domain(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }
    let head = app.store.head().await.unwrap();
    app.read_models.wait_for(head, Duration::from_secs(5)).await.unwrap();
    let incremental = app.read_models.read().clone();
    let rebuilt = readmodels::rebuild(&app.store, |_| {}).await.unwrap();
    assert_eq!(incremental, rebuilt);

    // The SQL read model: the incrementally maintained rows equal a drop-and-rebuild.
    assert!(app.sql_models.wait_for(head, Duration::from_secs(5)).await);
    let pool = app.store.pool();
    let before = users::realm_users(&pool, &master).await.unwrap();
    assert_eq!(sqlmodels::rebuild(&app.store, |_| {}).await.unwrap(), head);
    let after = users::realm_users(&pool, &master).await.unwrap();
    assert_eq!(before, after);
    // 40 created, 14 deleted (i % 3 == 0), plus the bootstrap admin.
    assert_eq!(after.len(), 40 - 14 + 1);
    assert_eq!(users::count(&pool, Some(&master)).await.unwrap(), after.len() as u64);
    // Search: case-insensitive substring over username and email, paged, wildcards literal.
    let hits = users::search(&pool, &master, "CHANGED1", 0, 10).await.unwrap();
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| h.profile.email.as_deref().unwrap_or("").contains("changed1")));
    assert_eq!(users::search(&pool, &master, "user1", 0, 2).await.unwrap().len(), 2);
    assert_eq!(users::search(&pool, &master, "", 0, 1000).await.unwrap().len(), after.len());
    assert!(users::search(&pool, &master, "%", 0, 10).await.unwrap().is_empty());
    assert_eq!(users::by_email(&pool, &master, "U4@example.ORG").await.unwrap().len(), 1);
    assert!(users::by_username(&pool, &master, "user3").await.unwrap().is_none(), "deleted users are gone");
    assert!(users::search(&pool, &master, "user3", 0, 10).await.unwrap().iter().all(|u| u.username != "User3"));
    app.stop().await;
}

/// Two full application instances on one PostgreSQL database: each sees the other's changes
/// in its read models within a second.
#[actix_rt::test]
async fn two_nodes_see_each_others_changes_within_a_second() {
    let Some(db) = TestDb::create().await else { return };
    let (da, db_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = support::spawn_app(support::serve_config(da.path(), Some(&db.url))).await;
    // Same server keys on both nodes (as an operator shares ANNALS_MASTER_KEY).
    std::fs::copy(da.path().join("server-keys.json"), db_dir.path().join("server-keys.json")).unwrap();
    let b = support::spawn_app(support::serve_config(db_dir.path(), Some(&db.url))).await;
    assert!(b.bootstrap.is_none(), "the second node finds master already bootstrapped");
    let master = a.read_models.read().realms.by_name("master").unwrap().id.clone();
    for (i, (writer, reader)) in [(&a, &b), (&b, &a)].into_iter().enumerate() {
        let create = UserCommand::Create {
            realm_id: master.clone(),
            username: format!("from-node-{i}"),
            profile: UserProfile { enabled: true, ..Default::default() },
            created_timestamp: None,
            federation_link: None,
            extra: Default::default(),
        };
        let done = writer.hosts.execute::<User>(&format!("n{i}"), create, Metadata::system("test")).await.unwrap();
        reader
            .read_models
            .wait_for(done.position, Duration::from_secs(1))
            .await
            .expect("other node's in-memory read models caught up within 1 s");
        assert!(reader.sql_models.wait_for(done.position, Duration::from_secs(1)).await, "SQL model within 1 s");
        let name = format!("from-node-{i}");
        assert!(users::by_username(&reader.store.pool(), &master, &name).await.unwrap().is_some());
    }
    a.stop().await;
    b.stop().await;
}

#[actix_rt::test]
async fn realms_in_the_import_directory_are_imported_once() {
    let dir = tempfile::tempdir().unwrap();
    let realms = tempfile::tempdir().unwrap();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keycloak-realm.json"),
        realms.path().join("acme.json"),
    )
    .unwrap();
    let mut cfg = support::serve_config(dir.path(), None);
    cfg.import_realm = Some(realms.path().to_path_buf());
    let app = support::spawn_app(cfg.clone()).await;
    assert_eq!(app.imported, vec!["acme".to_string()]);
    let head = app.store.head().await.unwrap();
    {
        let d = app.read_models.read();
        let acme = d.realms.by_name("acme").expect("imported");
        assert!(d.signing_keys.active(&acme.id, "RS256").is_some(), "an imported realm gets a signing key");
    }
    app.stop().await;
    let again = support::spawn_app(cfg).await;
    assert!(again.imported.is_empty(), "an existing realm is skipped");
    assert_eq!(again.store.head().await.unwrap(), head);
    again.stop().await;
}

/// On SQLite another process (here `annals import`) may append to the node's file; the node's
/// read models still pick it up.
#[actix_rt::test]
async fn a_node_sees_what_another_process_appended_to_its_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let app = support::spawn_app(support::serve_config(dir.path(), None)).await;
    let keys = std::fs::read_to_string(dir.path().join("server-keys.json")).unwrap();
    assert!(!keys.is_empty());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(["import"])
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keycloak-realm.json"))
        .env("ANNALS_DATA_DIR", dir.path())
        .env_remove("ANNALS_MASTER_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let head = app.store.head().await.unwrap();
    app.read_models.wait_for(head, Duration::from_secs(3)).await.expect("node caught up with the other process");
    assert!(app.read_models.read().realms.by_name("acme").is_some());
    let ready = support::http().get(format!("{}/health/ready", app.base_url)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    app.stop().await;
}

/// A log holding an event the read models cannot fold (written by a newer build, or damaged):
/// the node still starts, stays live, and says it is not ready instead of serving a read
/// model that silently skipped the event.
#[actix_rt::test]
async fn an_event_the_read_models_cannot_fold_leaves_the_node_live_but_not_ready() {
    use annals::store::{ExpectedVersion, StreamAppend};
    use annals_events::{NewEvent, StreamId, StreamType};
    let dir = tempfile::tempdir().unwrap();
    {
        let store = annals::store::open(dir.path().join("annals.db").to_str().unwrap()).await.unwrap();
        let broken = NewEvent {
            event_id: uuid::Uuid::now_v7(),
            event_type: "user.created".into(),
            schema_version: 1,
            payload: r#"{"unexpected":true}"#.into(),
            metadata: "{}".into(),
        };
        let stream = StreamId::new(StreamType::User, "broken");
        store.append(StreamAppend { stream, expected: ExpectedVersion::Exact(0), events: vec![broken] }).await.unwrap();
        store.shutdown().await;
    }
    let app = support::spawn_app(support::serve_config(dir.path(), None)).await;
    assert!(!app.read_models.healthy() && !app.sql_models.healthy(), "both stopped at position 1");
    assert!(app.bootstrap.is_none(), "no second master realm from a directory that saw nothing");
    assert_eq!(app.store.head().await.unwrap(), 1, "nothing was written");
    let c = support::http();
    let base = &app.base_url;
    assert_eq!(c.get(format!("{base}/health/live")).send().await.unwrap().status(), 200);
    let ready = c.get(format!("{base}/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "DOWN", "{body}");
    app.stop().await;
}
