//! Import and export against a realistic Keycloak 24 export (`tests/fixtures/keycloak-realm.json`).
use super::*;
use crate::credentials::verify_password;
use crate::secrets::{sealed_from_text, ServerKeys, SEALED_TEXT_PREFIX};
use crate::sqlmodels::users::{self, UserWithGrants};
use crate::store::{ExpectedVersion, SharedStore, StoreError};
use annals_events::user::PasswordHash;
use annals_events::{Actor, Metadata};
use annals_projections::users::UserView;
use annals_projections::Directory;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::OnceLock;

const FIXTURE: &str = include_str!("../../tests/fixtures/keycloak-realm.json");
const PASSWORDS: &str = include_str!("../../tests/fixtures/keycloak-realm.passwords.json");
const REALM_ID: &str = "8f3c2a1e-6b4d-4f7a-9c2e-1d5b7a9e3f60";

fn keys() -> ServerKeys {
    ServerKeys::from_master_key("a2V5Y2xvYWsgaW1wb3J0IHRlc3RzIG1hc3RlciBrZXkgMzJi").unwrap()
}

fn passwords() -> BTreeMap<String, String> {
    serde_json::from_str(PASSWORDS).unwrap()
}

/// A realm imported into a real SQLite store: the in-memory directory beside the SQL
/// `users` read model, both caught up with the log.
struct Imported {
    _tmp: tempfile::TempDir,
    store: SharedStore,
    dir: Directory,
}

impl Imported {
    async fn user(&self, realm_id: &str, username: &str) -> UserView {
        users::by_username(&self.store.pool(), realm_id, username)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no user {username}"))
    }

    async fn realm_users(&self, realm_id: &str) -> Vec<UserWithGrants> {
        users::realm_users(&self.store.pool(), realm_id).await.unwrap()
    }

    async fn direct_roles(&self, user_id: &str) -> BTreeSet<String> {
        users::roles_of(&self.store.pool(), user_id).await.unwrap()
    }

    async fn effective_roles(&self, user_id: &str) -> BTreeSet<String> {
        let pool = self.store.pool();
        let (direct, groups) =
            (users::roles_of(&pool, user_id).await.unwrap(), users::groups_of(&pool, user_id).await.unwrap());
        self.dir.memberships.effective_roles(&direct, &groups)
    }

    async fn export(&self, realm: &str) -> Value {
        let id = self.dir.realms.by_name(realm).map(|r| r.id.clone()).unwrap_or_default();
        export_realm(&self.dir, &self.realm_users(&id).await, realm).unwrap()
    }
}

/// Appends a plan to a fresh SQLite store and catches both kinds of read model up.
async fn load(plan: &ImportPlan) -> Imported {
    let tmp = tempfile::tempdir().unwrap();
    let store = crate::store::open(tmp.path().join("annals.db").to_str().unwrap()).await.unwrap();
    store.append_all(plan.appends.clone()).await.unwrap();
    crate::sqlmodels::catch_up(&store).await.unwrap();
    let dir = crate::readmodels::rebuild(&store, |_| {}).await.unwrap();
    Imported { _tmp: tmp, store, dir }
}

async fn import(json: &str) -> Imported {
    load(&plan_import(json, &keys(), &Directory::default(), &HashSet::new()).unwrap()).await
}

/// The fixture's plan, made once: hashing the plain password is the slow part.
fn fixture_plan() -> &'static ImportPlan {
    static PLAN: OnceLock<ImportPlan> = OnceLock::new();
    PLAN.get_or_init(|| plan_import(FIXTURE, &keys(), &Directory::default(), &HashSet::new()).unwrap())
}

async fn imported() -> Imported {
    load(fixture_plan()).await
}

/// The fixture with one value set (replaced, or added to an object), as text.
fn fixture_with(pointer: &str, value: Value) -> String {
    let mut doc: Value = serde_json::from_str(FIXTURE).unwrap();
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    match doc.pointer_mut(parent).unwrap_or_else(|| panic!("{pointer}")) {
        Value::Object(map) => {
            map.insert(last.to_string(), value);
        }
        Value::Array(items) => items[last.parse::<usize>().unwrap()] = value,
        other => panic!("{pointer}: {other}"),
    }
    doc.to_string()
}

/// `value` with every sealed string replaced by its plaintext, to compare two imports whose
/// sealed values differ only by nonce.
fn opened(value: &Value) -> Value {
    match value {
        Value::String(s) => match sealed_from_text(s) {
            Some(sealed) => Value::String(String::from_utf8(keys().open(&sealed).unwrap()).unwrap()),
            None => value.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(opened).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), opened(v))).collect()),
        other => other.clone(),
    }
}

fn refused(json: &str) -> ImportError {
    plan_import(json, &keys(), &Directory::default(), &HashSet::new()).expect_err("the import should be refused")
}

/// Role ids as readable names: `employee`, `acme-api/orders:read`.
fn role_names(dir: &Directory, ids: &BTreeSet<String>) -> BTreeSet<String> {
    ids.iter()
        .map(|id| {
            let role = dir.memberships.role(id).unwrap();
            match &role.client_id {
                None => role.name.clone(),
                Some(c) => format!("{}/{}", dir.clients.get(c).unwrap().client_id, role.name),
            }
        })
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn given_the_fixture_when_planned_then_counts_streams_and_metadata_match() {
    let plan = fixture_plan();
    assert_eq!(plan.realm_name, "acme");
    assert_eq!(plan.realm_id, REALM_ID);
    let c = plan.counts;
    assert_eq!((c.clients, c.realm_roles, c.client_roles, c.groups, c.users, c.passwords), (4, 6, 5, 4, 6, 5));
    assert_eq!(c.events, plan.appends.iter().map(|a| a.events.len()).sum::<usize>());
    // One stream each: realm, 4 clients, 11 roles, 4 groups, 6 users.
    assert_eq!(plan.appends.len(), 1 + 4 + 11 + 4 + 6);
    let streams: BTreeSet<_> = plan.appends.iter().map(|a| a.stream.to_string()).collect();
    assert_eq!(streams.len(), plan.appends.len());
    assert!(streams.contains(&format!("realm/{REALM_ID}")));
    assert!(streams.contains("user/0c1e3a5b-7d9f-4b2d-8e4a-6c8e0b2d4f61"));
    for append in &plan.appends {
        assert_eq!(append.expected, ExpectedVersion::Exact(0));
        for e in &append.events {
            let m: Metadata = serde_json::from_str(&e.metadata).unwrap();
            assert_eq!(m.realm.as_deref(), Some("acme"));
            assert_eq!(m.actor, Actor::System { component: "import".into() });
        }
    }
}

#[tokio::test]
async fn given_the_fixture_when_imported_then_settings_and_clients_are_mapped() {
    let imported = imported().await;
    let dir = &imported.dir;
    let realm = dir.realms.by_name("acme").unwrap();
    assert_eq!(realm.id, REALM_ID);
    let s = &realm.settings;
    assert_eq!(s.display_name.as_deref(), Some("ACME Corporation"));
    assert_eq!((s.access_token_lifespan, s.sso_session_idle_timeout, s.sso_session_max_lifespan), (600, 3600, 43200));
    assert!(s.remember_me && s.verify_email && s.reset_password_allowed);
    assert!(s.brute_force.enabled && !s.brute_force.permanent_lockout);
    assert_eq!(s.brute_force.failure_factor, 5);

    let portal = dir.clients.by_client_id(REALM_ID, "acme-portal").unwrap();
    assert!(portal.settings.service_accounts_enabled && !portal.settings.public_client);
    assert!(!portal.settings.full_scope_allowed);
    assert_eq!(portal.settings.redirect_uris.len(), 3);
    let digest = portal.secret.as_ref().unwrap();
    assert!(keys().verify_digest("p0rtal-Cl13nt-S3cret-7Qx9", digest));
    assert!(!keys().verify_digest("wrong", digest));

    let spa = dir.clients.by_client_id(REALM_ID, "acme-spa").unwrap();
    assert!(spa.settings.public_client && spa.secret.is_none());
    assert_eq!(spa.settings.attributes["pkce.code.challenge.method"], "S256");
    assert!(dir.clients.by_client_id(REALM_ID, "acme-api").unwrap().settings.bearer_only);
    assert!(dir.clients.by_client_id(REALM_ID, "acme-cli").unwrap().settings.direct_access_grants_enabled);
}

#[tokio::test]
async fn given_the_fixture_when_imported_then_users_are_found_case_insensitively() {
    let imported = imported().await;
    let pool = imported.store.pool();
    let bob = users::by_email(&pool, REALM_ID, "bob.brown@acme.EXAMPLE").await.unwrap();
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0].username, "bob");
    assert_eq!(bob[0].profile.required_actions, vec!["VERIFY_EMAIL"]);
    let alice = imported.user(REALM_ID, "ALICE").await;
    assert_eq!(alice.profile.first_name.as_deref(), Some("Alice"));
    assert_eq!(alice.profile.attributes["department"], vec!["engineering"]);
    assert_eq!(alice.created_timestamp, 1_700_000_000_000);
    assert!(!imported.user(REALM_ID, "erin").await.profile.enabled);
    assert_eq!(users::count(&pool, Some(REALM_ID)).await.unwrap(), 6);
    assert_eq!(users::get(&pool, &alice.id).await.unwrap(), Some(alice));
}

#[tokio::test]
async fn given_the_fixture_when_imported_then_effective_roles_follow_groups_and_composites() {
    let imported = imported().await;
    let dir = &imported.dir;
    let alice = imported.user(REALM_ID, "alice").await;
    assert_eq!(
        role_names(dir, &imported.direct_roles(&alice.id).await),
        set(&["default-roles-acme", "acme-api/orders:admin"])
    );
    assert_eq!(
        role_names(dir, &imported.effective_roles(&alice.id).await),
        set(&[
            "default-roles-acme",
            "offline_access",
            "uma_authorization",
            "manager",
            "employee",
            "acme-api/orders:admin",
            "acme-api/orders:read",
            "acme-api/orders:write",
            "acme-portal/portal-admin",
            "acme-portal/portal-user",
        ])
    );
    let carol = imported.user(REALM_ID, "carol").await;
    assert_eq!(
        role_names(dir, &imported.effective_roles(&carol.id).await),
        set(&["default-roles-acme", "offline_access", "uma_authorization", "auditor", "acme-api/orders:read"])
    );
    let admins: Vec<_> = dir.memberships.groups_in_realm(REALM_ID).filter(|g| g.name == "admins").collect();
    assert_eq!(admins.len(), 1);
    let staff = dir.memberships.group(admins[0].parent_id.as_deref().unwrap()).unwrap();
    assert_eq!(staff.name, "staff");
    let members = users::members_of(&imported.store.pool(), &admins[0].id).await.unwrap();
    assert!(members.contains(&alice.id));
}

#[tokio::test]
async fn given_the_fixture_when_imported_then_every_known_password_verifies() {
    let imported = imported().await;
    for (username, password) in passwords() {
        let user = imported.user(REALM_ID, &username).await;
        let hash = user.password.as_ref().unwrap_or_else(|| panic!("{username} has no password"));
        let verified = verify_password(&password, hash).unwrap();
        assert!(verified.ok, "{username}");
        // Keycloak hashes are upgraded at the next login; the plain one was hashed by Annals.
        let is_keycloak = matches!(hash, PasswordHash::Keycloak { .. });
        assert_eq!(verified.needs_upgrade, is_keycloak, "{username}");
        assert_eq!(is_keycloak, username != "dave", "{username}");
        assert!(!verify_password(&format!("{password}x"), hash).unwrap().ok, "{username}");
    }
    let dave = imported.user(REALM_ID, "dave").await;
    assert!(dave.password_temporary);
    let algorithms: BTreeSet<_> = imported
        .realm_users(REALM_ID)
        .await
        .into_iter()
        .filter_map(|u| match u.user.password {
            Some(PasswordHash::Keycloak { algorithm, .. }) => Some(algorithm),
            _ => None,
        })
        .collect();
    assert_eq!(algorithms, set(&["argon2", "pbkdf2", "pbkdf2-sha256", "pbkdf2-sha512"]));
}

#[tokio::test]
async fn given_the_fixture_when_imported_then_unknown_fields_survive_in_extra_with_secrets_sealed() {
    let imported = imported().await;
    let dir = &imported.dir;
    let realm = dir.realms.by_name("acme").unwrap();
    for key in
        ["smtpServer", "requiredActions", "clientScopes", "authenticationFlows", "keycloakVersion", "defaultRole"]
    {
        assert!(realm.extra.contains_key(key), "realm extra lacks {key}");
    }
    for mapped in ["realm", "accessTokenLifespan", "bruteForceProtected", "clients", "users", "roles", "groups"] {
        assert!(!realm.extra.contains_key(mapped), "realm extra holds mapped {mapped}");
    }
    assert_eq!(realm.extra["smtpServer"]["host"], "smtp.acme.example");
    let smtp_password = realm.extra["smtpServer"]["password"].as_str().unwrap();
    assert!(smtp_password.starts_with(SEALED_TEXT_PREFIX), "{smtp_password}");
    let opened = keys().open(&sealed_from_text(smtp_password).unwrap()).unwrap();
    assert_eq!(opened, b"smtp-Pa55w0rd!");

    let portal = dir.clients.by_client_id(REALM_ID, "acme-portal").unwrap();
    assert_eq!(portal.extra["protocolMappers"][0]["name"], "Client ID");
    assert_eq!(portal.extra["nodeReRegistrationTimeout"], -1);
    assert!(!portal.extra.contains_key("secret"));

    let employee = dir.memberships.role_by_name(REALM_ID, None, "employee").unwrap();
    assert_eq!(employee.extra["scopeParamRequired"], false);
    let staff = dir.memberships.groups_in_realm(REALM_ID).find(|g| g.name == "staff").unwrap();
    assert_eq!(staff.extra["access"]["view"], true);
    assert!(!staff.extra.contains_key("subGroupCount"));

    let erin = imported.user(REALM_ID, "erin").await;
    assert_eq!(erin.extra["totp"], true);
    let credentials = erin.extra["credentials"].as_array().unwrap();
    let otp = credentials.iter().find(|c| c["type"] == "otp").unwrap();
    assert_eq!(otp["userLabel"], "Erin's phone");
    assert!(otp["secretData"].as_str().unwrap().starts_with(SEALED_TEXT_PREFIX));
    let password_entry = credentials.iter().find(|c| c["type"] == "password").unwrap();
    assert_eq!(password_entry["id"], "5b6d8f0a-2c4e-4a7c-9d9f-1b3d5a7c9ee9");
    assert!(password_entry.get("secretData").is_none(), "hash must live in the password event only");
    let service = imported.user(REALM_ID, "service-account-acme-portal").await;
    assert_eq!(service.extra["serviceAccountClientId"], "acme-portal");
}

#[tokio::test]
async fn given_an_imported_realm_when_exported_then_keycloak_forms_are_written() {
    let export = imported().await.export("acme").await;
    assert_eq!(export["realm"], "acme");
    assert_eq!(export["id"], REALM_ID);
    assert_eq!(export["bruteForceProtected"], true);
    assert_eq!(export["smtpServer"]["from"], "no-reply@acme.example");
    let clients = export["clients"].as_array().unwrap();
    let portal = clients.iter().find(|c| c["clientId"] == "acme-portal").unwrap();
    assert_eq!(portal["secret"], "**********");
    assert_eq!(portal["annalsSecretDigest"]["alg"], "hmac-sha256");
    assert_eq!(portal["annalsSecretDigest"]["key_id"], keys().key_id());
    assert_eq!(portal["protocolMappers"][0]["protocolMapper"], "oidc-usersessionmodel-note-mapper");
    let spa = clients.iter().find(|c| c["clientId"] == "acme-spa").unwrap();
    assert!(spa.get("secret").is_none());

    let users = export["users"].as_array().unwrap();
    let user = |name: &str| users.iter().find(|u| u["username"] == name).unwrap().clone();
    let alice = user("alice");
    assert_eq!(alice["groups"], json!(["/staff/admins"]));
    assert_eq!(alice["clientRoles"], json!({"acme-api": ["orders:admin"]}));
    let cred = &alice["credentials"][0];
    assert_eq!(cred["userLabel"], "My password");
    let data: Value = serde_json::from_str(cred["credentialData"].as_str().unwrap()).unwrap();
    assert_eq!(data["algorithm"], "pbkdf2-sha256");
    assert_eq!(data["hashIterations"], 27500);
    let dave = user("dave");
    let data: Value = serde_json::from_str(dave["credentials"][0]["credentialData"].as_str().unwrap()).unwrap();
    assert_eq!(data["algorithm"], "argon2");
    assert_eq!(data["additionalParameters"]["type"], json!(["id"]));
    assert_eq!(dave["credentials"][0]["temporary"], true);

    let staff = export["groups"].as_array().unwrap().iter().find(|g| g["name"] == "staff").unwrap().clone();
    assert_eq!(staff["subGroupCount"], 2);
    assert_eq!(staff["subGroups"][0]["path"], "/staff/admins");
    let manager = export["roles"]["realm"].as_array().unwrap().iter().find(|r| r["name"] == "manager").unwrap().clone();
    assert_eq!(manager["composites"]["client"]["acme-api"], json!(["orders:read", "orders:write"]));
    assert_eq!(export["roles"]["client"]["acme-spa"], json!([]));
}

#[tokio::test]
async fn given_an_exported_realm_when_imported_into_a_fresh_store_then_read_models_are_equal() {
    let first = imported().await;
    let exported = first.export("acme").await;
    let second = import(&exported.to_string()).await;
    assert_eq!(second.dir.realms, first.dir.realms);
    assert_eq!(second.dir.clients, first.dir.clients);
    assert_eq!(second.dir.memberships, first.dir.memberships);
    assert_eq!(second.realm_users(REALM_ID).await, first.realm_users(REALM_ID).await);
    assert_eq!(second.dir.position, first.dir.position, "same number of events");
    // And the round trip is a fixed point of the export.
    assert_eq!(second.export("acme").await, exported);
}

#[test]
fn given_a_wrong_type_at_a_nested_path_when_imported_then_the_error_names_the_path() {
    let err = refused(&fixture_with("/clients/1/redirectUris/0", json!(42)));
    assert!(matches!(err, ImportError::Malformed { .. }), "{err}");
    assert_eq!(err.path(), "clients[1].redirectUris[0]");
    assert!(err.to_string().starts_with("clients[1].redirectUris[0]: invalid type"), "{err}");

    let err = refused(&fixture_with("/users/0/credentials/0/secretData", json!("{\"value\":1,\"salt\":\"AA==\"}")));
    assert_eq!(err.path(), "users[0].credentials[0].secretData.value", "{err}");

    let err = refused("{\"realm\": \"x\", ");
    assert!(matches!(err, ImportError::Malformed { .. }), "{err}");
}

#[test]
fn given_a_duplicate_username_differing_in_case_when_imported_then_refused() {
    let err = refused(&fixture_with("/users/1/username", json!("ALICE")));
    assert_eq!(err.path(), "users[1].username", "{err}");
    assert!(err.to_string().contains("duplicate username"), "{err}");
}

#[test]
fn given_unknown_role_references_when_imported_then_refused_with_the_path() {
    let err = refused(&fixture_with("/users/0/realmRoles/0", json!("no-such-role")));
    assert_eq!(err.path(), "users[0].realmRoles[0]", "{err}");
    let err = refused(&fixture_with("/groups/1/subGroups/1/clientRoles", json!({"acme-api": ["orders:delete"]})));
    assert_eq!(err.path(), "groups[1].subGroups[1].clientRoles.acme-api[0]", "{err}");
    let err = refused(&fixture_with("/roles/realm/4/composites/realm/0", json!("ghost")));
    assert_eq!(err.path(), "roles.realm[4].composites.realm[0]", "{err}");
    let err = refused(&fixture_with("/users/2/groups/0", json!("/partners/none")));
    assert_eq!(err.path(), "users[2].groups[0]", "{err}");
}

#[tokio::test]
async fn given_a_realm_that_already_exists_when_imported_then_refused() {
    let err = plan_import(FIXTURE, &keys(), &imported().await.dir, &HashSet::new()).unwrap_err();
    assert!(matches!(err, ImportError::RealmExists { ref name } if name == "acme"), "{err}");
    assert_eq!(err.path(), "realm");
}

#[test]
fn given_a_user_id_that_is_taken_when_imported_then_refused_with_the_path() {
    let taken: HashSet<String> = ["0c1e3a5b-7d9f-4b2d-8e4a-6c8e0b2d4f61".to_string()].into();
    let renamed = fixture_with("/realm", json!("acme2"));
    let other = fixture_with("/id", json!("acme2-id"));
    let doc = {
        let mut d: Value = serde_json::from_str(&renamed).unwrap();
        d["id"] = serde_json::from_str::<Value>(&other).unwrap()["id"].clone();
        d.to_string()
    };
    let err = plan_import(&doc, &keys(), &Directory::default(), &taken).unwrap_err();
    assert!(err.path().starts_with("users[") && err.path().ends_with("].id"), "{err}");
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[test]
fn given_invalid_clients_when_imported_then_refused_with_the_path() {
    let err = refused(&fixture_with("/clients/1/secret", json!("spa-secret")));
    assert_eq!(err.path(), "clients[1].secret", "{err}");
    let err = refused(&fixture_with("/clients/0/redirectUris/1", json!("portal.acme.example/cb")));
    assert_eq!(err.path(), "clients[0].redirectUris[1]", "{err}");
    let err = refused(&fixture_with("/clients/0/secret", json!("**********")));
    assert_eq!(err.path(), "clients[0].secret", "{err}");
    let err = refused(&fixture_with("/clients/3/clientId", json!("acme-api")));
    assert_eq!(err.path(), "clients[3].clientId", "{err}");
}

#[test]
fn given_a_digest_from_another_server_when_imported_then_refused() {
    let mut doc: Value = serde_json::from_str(FIXTURE).unwrap();
    let portal = doc.pointer_mut("/clients/0").unwrap();
    portal["secret"] = json!("**********");
    portal["annalsSecretDigest"] = json!({"alg": "hmac-sha256", "key_id": "0000000000000000", "value": "00"});
    let err = refused(&doc.to_string());
    assert_eq!(err.path(), "clients[0].annalsSecretDigest", "{err}");
}

#[test]
fn given_a_sealed_secret_this_server_cannot_open_when_imported_then_refused() {
    use base64::Engine;
    let other = ServerKeys::from_master_key(&base64::engine::general_purpose::STANDARD.encode([7u8; 32])).unwrap();
    let mut doc: Value = serde_json::from_str(FIXTURE).unwrap();
    let portal = doc.pointer_mut("/clients/0").unwrap();
    portal["secret"] = json!("**********");
    portal["annalsSecretDigest"] = serde_json::to_value(keys().digest("x")).unwrap();
    for sealed in [
        crate::secrets::sealed_to_text(&other.seal(b"x").unwrap()),
        "annals-sealed:v1:garbage".into(),
        crate::secrets::sealed_to_text(&keys().seal(b"not-x").unwrap()),
    ] {
        doc.pointer_mut("/clients/0").unwrap()["annalsSealedSecret"] = json!(sealed);
        let err = refused(&doc.to_string());
        assert_eq!(err.path(), "clients[0].annalsSealedSecret", "{err}");
    }
}

#[test]
fn given_an_unsupported_hash_algorithm_when_imported_then_refused() {
    let data = "{\"hashIterations\":10,\"algorithm\":\"bcrypt\",\"additionalParameters\":{}}";
    let err = refused(&fixture_with("/users/0/credentials/0/credentialData", json!(data)));
    assert_eq!(err.path(), "users[0].credentials[0].credentialData", "{err}");
    assert!(err.to_string().contains("bcrypt"), "{err}");
}

#[test]
fn given_an_invalid_realm_name_when_imported_then_refused() {
    let err = refused(&fixture_with("/realm", json!("acme corp")));
    assert_eq!(err.path(), "realm", "{err}");
    let mut doc: Value = serde_json::from_str(FIXTURE).unwrap();
    doc.as_object_mut().unwrap().remove("realm");
    assert_eq!(refused(&doc.to_string()).path(), "realm");
}

#[tokio::test]
async fn given_a_minimal_realm_without_ids_when_imported_then_ids_are_generated_consistently() {
    let json = json!({
        "realm": "mini",
        "roles": {"realm": [{"name": "r1"}, {"name": "r2", "composites": {"realm": ["r1"]}}]},
        "groups": [{"name": "g", "realmRoles": ["r2"], "subGroups": [{"name": "h"}]}],
        "users": [{"username": "u", "enabled": true, "groups": ["g/h"], "realmRoles": ["r1"],
                   "credentials": [{"type": "password", "value": "pw"}]}]
    });
    let imported = import(&json.to_string()).await;
    let realm = imported.dir.realms.by_name("mini").unwrap();
    assert_eq!(realm.id, "mini");
    let u = imported.user("mini", "u").await;
    assert!(uuid::Uuid::parse_str(&u.id).is_ok());
    assert!(!u.password_temporary);
    assert_eq!(role_names(&imported.dir, &imported.effective_roles(&u.id).await), set(&["r1", "r2"]));
}

#[tokio::test]
async fn given_two_plans_of_one_file_when_imported_then_they_differ_only_in_salts_and_nonces_and_a_clash_writes_nothing(
) {
    let first = imported().await;
    let plan = plan_import(FIXTURE, &keys(), &Directory::default(), &HashSet::new()).unwrap();
    let second = load(&plan).await;
    assert_eq!(second.dir.position, plan.counts.events as u64);
    // Dave's plain password is hashed with a fresh salt and sealed values get fresh nonces.
    let secrets = |d: &Directory| {
        let mut all: Vec<_> = d
            .clients
            .in_realm(REALM_ID)
            .map(|c| {
                let opened = c.sealed_secret.as_ref().map(|s| keys().open(s).unwrap());
                let mut c = c.clone();
                c.sealed_secret = None;
                (c.id.clone(), c, opened)
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    };
    assert_eq!(secrets(&second.dir), secrets(&first.dir));
    assert!(secrets(&first.dir).iter().any(|(_, _, s)| s.is_some()), "confidential clients keep a sealed secret");
    assert_eq!(second.dir.memberships, first.dir.memberships);
    let (a, b) = (second.dir.realms.by_name("acme").unwrap(), first.dir.realms.by_name("acme").unwrap());
    assert_eq!(a.settings, b.settings);
    assert_eq!(opened(&Value::Object(a.extra.clone())), opened(&Value::Object(b.extra.clone())));
    for (u, _) in passwords() {
        let (a, b) = (second.user(REALM_ID, &u).await, first.user(REALM_ID, &u).await);
        assert_eq!((&a.profile, a.created_timestamp), (&b.profile, b.created_timestamp));
        assert_eq!(opened(&Value::Object(a.extra.clone())), opened(&Value::Object(b.extra.clone())));
    }

    // A plan made against a stale (empty) view for another realm name reuses every id: the
    // store refuses it as a whole.
    let renamed = fixture_with("/realm", json!("acme2"));
    let clash = plan_import(&renamed, &keys(), &Directory::default(), &HashSet::new()).unwrap();
    let err = second.store.append_all(clash.appends).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(
        second.store.head().await.unwrap(),
        plan.counts.events as u64,
        "nothing of the refused plan was written"
    );
}
