//! The command line as scripts use it: the real `annals` binary.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ANNALS: &str = env!("CARGO_BIN_EXE_annals");
/// Fixed so two data directories share server keys (client secret digests stay comparable).
const MASTER_KEY: &str = "Y2xpLXRlc3QtbWFzdGVyLWtleS0zMi1ieXRlcy1sb25n";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> PathBuf {
    repo().join("tests/fixtures/keycloak-realm.json")
}

fn annals(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(ANNALS)
        .args(args)
        .env("ANNALS_DATA_DIR", data_dir)
        .env("ANNALS_MASTER_KEY", MASTER_KEY)
        .env_remove("ANNALS_DATABASE_URL")
        .output()
        .expect("annals runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn committed_event_schemas_are_current() {
    let out = Command::new(ANNALS)
        .args(["events", "schema", "--check", "--out"])
        .arg(repo().join("events/schema"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}\nrun: cargo run -- events schema", stdout(&out), stderr(&out));
    // And --check really compares: a tampered copy is reported stale.
    let tmp = tempfile::tempdir().unwrap();
    let w = Command::new(ANNALS).args(["events", "schema", "--out"]).arg(tmp.path()).output().unwrap();
    assert!(w.status.success());
    std::fs::write(tmp.path().join("user.created.json"), "{}").unwrap();
    let c = Command::new(ANNALS).args(["events", "schema", "--check", "--out"]).arg(tmp.path()).output().unwrap();
    assert!(!c.status.success());
    assert!(stderr(&c).contains("user.created.json"), "{}", stderr(&c));
}

#[test]
fn compose_file_runs_annals_against_postgres() {
    if Command::new("docker").args(["compose", "version"]).output().is_ok_and(|o| o.status.success()) {
        let o = Command::new("docker")
            .args(["compose", "-f"])
            .arg(repo().join("docker-compose.yml"))
            .args(["config", "-q"])
            .env("ANNALS_BOOTSTRAP_ADMIN_PASSWORD", "x")
            .env("ANNALS_MASTER_KEY", MASTER_KEY)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let services = &doc["services"];
    assert!(services["postgres"]["image"].as_str().unwrap().starts_with("postgres:"));
    let annals = &services["annals"];
    assert_eq!(annals["build"].as_str(), Some("."));
    assert!(repo().join("Dockerfile").exists());
    assert!(annals["depends_on"]["postgres"]["condition"].as_str() == Some("service_healthy"));
    let env = annals["environment"].as_mapping().unwrap();
    let db = env[&serde_yaml::Value::from("ANNALS_DATABASE_URL")].as_str().unwrap();
    assert!(db.starts_with("postgres://") && db.contains("@postgres:5432/"), "{db}");
    // Every ANNALS_* variable the file sets is one the binary reads.
    let help = stdout(&Command::new(ANNALS).args(["serve", "--help"]).output().unwrap());
    for key in env.keys().filter_map(|k| k.as_str()) {
        let known = help.contains(key) || ["ANNALS_BOOTSTRAP_ADMIN_PASSWORD", "ANNALS_MASTER_KEY"].contains(&key);
        assert!(known, "{key} is not a variable annals reads");
    }
}

#[test]
fn replay_tail_verify_and_rebuild_work_on_an_imported_realm() {
    let dir = tempfile::tempdir().unwrap();
    let imp = annals(dir.path(), &["import", fixture().to_str().unwrap()]);
    assert!(imp.status.success(), "{}", stderr(&imp));
    assert!(stdout(&imp).contains("imported realm acme"), "{}", stdout(&imp));

    let tail = annals(dir.path(), &["events", "tail"]);
    assert!(tail.status.success());
    let records: Vec<serde_json::Value> = stdout(&tail).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(records.len() > 20);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["position"].as_u64(), Some(i as u64 + 1));
        assert!(r["event_type"].as_str().unwrap().contains('.'));
    }
    let from = annals(dir.path(), &["events", "tail", "--from", "5"]);
    assert_eq!(stdout(&from).lines().count(), records.len() - 5);

    // Replay a user stream, whole and up to version 1.
    let user = records.iter().find(|r| r["event_type"] == "user.created").unwrap();
    let stream = format!("user/{}", user["stream_id"].as_str().unwrap());
    let whole = annals(dir.path(), &["replay", "--stream", &stream]);
    assert!(whole.status.success(), "{}", stderr(&whole));
    let text = stdout(&whole);
    assert!(text.contains("user.created") && text.contains("state at version"), "{text}");
    let v1 = annals(dir.path(), &["replay", "--stream", &stream, "--version", "1", "--json"]);
    let v1: serde_json::Value = serde_json::from_str(&stdout(&v1)).unwrap();
    assert_eq!(v1["events"].as_array().unwrap().len(), 1);
    assert_eq!(v1["state"]["lifecycle"], "Live");
    let bad = annals(dir.path(), &["replay", "--stream", "session/x"]);
    assert!(!bad.status.success());

    let verify = annals(dir.path(), &["verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    assert!(stdout(&verify).contains(&format!("{} events verified", records.len())));

    let rebuild = annals(dir.path(), &["projections", "rebuild"]);
    assert!(rebuild.status.success(), "{}", stderr(&rebuild));
    assert!(stdout(&rebuild).contains("users:"), "{}", stdout(&rebuild));
    let one = annals(dir.path(), &["projections", "rebuild", "clients"]);
    assert!(stdout(&one).contains("clients:") && !stdout(&one).contains("users:"));
    let unknown = annals(dir.path(), &["projections", "rebuild", "nope"]);
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("realms"), "names the known projections");
}

#[test]
fn export_then_reimport_gives_the_same_read_models() {
    let a = tempfile::tempdir().unwrap();
    assert!(annals(a.path(), &["import", fixture().to_str().unwrap()]).status.success());
    let exported = a.path().join("acme.json");
    let exp = annals(a.path(), &["export", "acme", "--out", exported.to_str().unwrap()]);
    assert!(exp.status.success(), "{}", stderr(&exp));
    let b = tempfile::tempdir().unwrap();
    let imp = annals(b.path(), &["import", exported.to_str().unwrap()]);
    assert!(imp.status.success(), "{}", stderr(&imp));
    let exported_again = annals(b.path(), &["export", "acme"]);
    let first: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&exported).unwrap()).unwrap();
    let second: serde_json::Value = serde_json::from_str(&stdout(&exported_again)).unwrap();
    assert_eq!(first, second, "export is stable through a re-import");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (sa, sb) = (
            annals::store::open(a.path().join("annals.db").to_str().unwrap()).await.unwrap(),
            annals::store::open(b.path().join("annals.db").to_str().unwrap()).await.unwrap(),
        );
        let (da, db) = (
            annals::readmodels::rebuild(&sa, |_| {}).await.unwrap(),
            annals::readmodels::rebuild(&sb, |_| {}).await.unwrap(),
        );
        // Signing keys are generated afresh per import; everything else is the same.
        assert_eq!(da.realms, db.realms);
        assert_eq!(da.clients, db.clients);
        assert_eq!(da.memberships, db.memberships);
        let acme = da.realms.by_name("acme").unwrap().id.clone();
        let users = |s: annals::store::SharedStore| {
            let acme = acme.clone();
            async move {
                annals::sqlmodels::catch_up(&s).await.unwrap();
                annals::sqlmodels::users::realm_users(&s.pool(), &acme).await.unwrap()
            }
        };
        let (ua, ub) = (users(sa).await, users(sb).await);
        assert_eq!(ua.len(), 6);
        assert_eq!(ua, ub, "users, their grants and groups survive export and re-import");
    });
}
