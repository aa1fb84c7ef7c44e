//! What tokens contain, as Keycloak issues them, and the signers that sign them.
//!
//! Access tokens: `typ` header `JWT`, or `at+jwt` (RFC 9068) where the client sets
//! `access.token.header.type.rfc9068`; claim `typ: Bearer`. ID tokens: claim `typ: ID`.
//! Refresh tokens: claim `typ: Refresh` (`Offline` for offline tokens), audience the issuer, signed by the realm key too (a
//! relying party treats them as opaque). Every use checks the claim `typ`, so no kind of token
//! passes for another.
use crate::jwt::{JwtError, Signer};
use crate::secrets::ServerKeys;
use annals_projections::clients::{ClientDirectory, ClientView};
use annals_projections::memberships::Memberships;
use annals_projections::realms::RealmView;
use annals_projections::signing_keys::{KeyView, SigningKeyRing};
use annals_projections::users::UserView;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256, Sha512};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("realm has no active {0} key")]
    NoKey(String),
    #[error(transparent)]
    Jwt(#[from] JwtError),
}

/// Opened signing keys by `kid`: opening one decrypts and parses it, so it is done once.
/// Also each realm's refresh-token key, derived once.
#[derive(Clone)]
pub struct Signers {
    keys: Arc<ServerKeys>,
    open: Arc<RwLock<HashMap<String, Arc<Signer>>>>,
    refresh: Arc<RwLock<HashMap<String, ring::hmac::Key>>>,
}

impl Signers {
    pub fn new(keys: Arc<ServerKeys>) -> Self {
        Signers { keys, open: Arc::default(), refresh: Arc::default() }
    }

    /// The realm's refresh-token key (HS512, never published; see `jwt::sign_hmac`). Kept per
    /// realm id: deriving it and setting up its HMAC state took about 1.5% of a refresh, which
    /// needs it twice. The server keys it comes from never change while the node runs, and a
    /// realm created again gets a new id.
    pub fn refresh_key(&self, realm_id: &str) -> ring::hmac::Key {
        if let Some(k) = self.refresh.read().unwrap_or_else(|p| p.into_inner()).get(realm_id) {
            return k.clone();
        }
        let secret = self.keys.derive(&format!("refresh-token\n{realm_id}"));
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA512, &secret);
        self.refresh.write().unwrap_or_else(|p| p.into_inner()).insert(realm_id.to_string(), key.clone());
        key
    }

    /// The signer of the realm's active key for `alg`.
    pub fn for_realm(&self, ring: &SigningKeyRing, realm_id: &str, alg: &str) -> Result<Arc<Signer>, TokenError> {
        let view = ring.active(realm_id, alg).ok_or_else(|| TokenError::NoKey(alg.to_string()))?;
        self.get(view)
    }

    fn get(&self, view: &KeyView) -> Result<Arc<Signer>, TokenError> {
        if let Some(s) = self.open.read().unwrap_or_else(|p| p.into_inner()).get(&view.kid) {
            return Ok(s.clone());
        }
        let signer = Arc::new(Signer::open(view, &self.keys)?);
        self.open.write().unwrap_or_else(|p| p.into_inner()).insert(view.kid.clone(), signer.clone());
        Ok(signer)
    }
}

/// Who a token is about: the user and the roles they hold, by name.
#[derive(Clone, Debug, PartialEq)]
pub struct Subject {
    pub user: UserView,
    pub realm_roles: Vec<String>,
    /// By the client's `client_id`.
    pub client_roles: BTreeMap<String, Vec<String>>,
}

impl Subject {
    /// Splits effective role ids into realm roles and client roles by name.
    pub fn new(user: UserView, roles: &BTreeSet<String>, memberships: &Memberships, clients: &ClientDirectory) -> Self {
        let mut realm_roles = Vec::new();
        let mut client_roles: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for role in roles.iter().filter_map(|id| memberships.role(id)) {
            match &role.client_id {
                None => realm_roles.push(role.name.clone()),
                Some(c) => {
                    if let Some(client) = clients.get(c) {
                        client_roles.entry(client.client_id.clone()).or_default().push(role.name.clone());
                    }
                }
            }
        }
        realm_roles.sort();
        Subject { user, realm_roles, client_roles }
    }
}

/// The session a token belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionRef {
    pub id: String,
    pub auth_time: i64,
    pub acr: String,
    /// The session stream's version at this issuance (claim `sv`): revocation cutoffs are
    /// versions, so "issued before" never depends on a clock.
    pub version: u64,
    /// The offline session that recorded these tokens (claim [`OFFLINE_SESSION`]); `id` is
    /// then the SSO session it came from, the `sid` Keycloak's offline tokens carry.
    pub offline: Option<String>,
}

/// Everything tokens of one issuance share.
pub struct Issuance<'a> {
    pub issuer: &'a str,
    pub realm: &'a RealmView,
    pub client: &'a ClientView,
    pub scope: &'a BTreeSet<String>,
    pub now: i64,
    pub session: Option<&'a SessionRef>,
    pub subject: Option<&'a Subject>,
}

/// The JOSE algorithm for a kind of token: the client's setting, else the realm's default.
pub fn algorithm(realm: &RealmView, client: &ClientView, attribute: &str) -> String {
    client
        .settings
        .attributes
        .get(attribute)
        .filter(|a| matches!(a.as_str(), "RS256" | "ES256" | "EdDSA"))
        .cloned()
        .unwrap_or_else(|| realm.settings.default_signature_algorithm.clone())
}

pub const ACCESS_ALG: &str = "access.token.signed.response.alg";
pub const ID_ALG: &str = "id.token.signed.response.alg";

/// The access token's header `typ`.
pub fn access_typ(client: &ClientView) -> &'static str {
    match client.settings.attributes.get("access.token.header.type.rfc9068").map(String::as_str) {
        Some("true") => "at+jwt",
        _ => "JWT",
    }
}

/// Seconds an access token lives: the client's override, else the realm's.
pub fn access_lifespan(realm: &RealmView, client: &ClientView) -> i64 {
    client
        .settings
        .attributes
        .get("access.token.lifespan")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v > 0)
        .unwrap_or(realm.settings.access_token_lifespan as i64)
}

/// The profile claims a scope grants: names and username under `profile`, the address and
/// whether it is verified under `email`. Tokens and userinfo carry the same.
#[derive(serde::Serialize)]
pub struct UserClaims<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preferred_username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    given_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    family_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
}

impl<'a> UserClaims<'a> {
    pub fn new(s: &'a Subject, scope: &BTreeSet<String>) -> Self {
        let p = &s.user.profile;
        let (profile, email) = (scope.contains("profile"), scope.contains("email"));
        // Joined only where the scope grants it (tokens of other scopes skip the allocation).
        let name = profile
            .then(|| [p.first_name.as_deref(), p.last_name.as_deref()].into_iter().flatten().collect::<Vec<_>>())
            .map(|parts| parts.join(" "))
            .filter(|n| !n.is_empty());
        UserClaims {
            name,
            preferred_username: Some(s.user.username.as_str()).filter(|_| profile),
            given_name: p.first_name.as_deref().filter(|_| profile),
            family_name: p.last_name.as_deref().filter(|_| profile),
            email: p.email.as_deref().filter(|_| email),
            email_verified: Some(p.email_verified).filter(|_| email),
        }
    }
}

// Claims are typed structs serialized straight into the token, not maps built first: a map
// allocated every key and value again (refreshes/s rose 4.8% without them, benches/README.md).

/// The claims every token of an issuance carries.
#[derive(serde::Serialize)]
struct Base<'a> {
    exp: i64,
    iat: i64,
    jti: &'a str,
    iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    typ: &'a str,
    azp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
    /// [`OFFLINE_SESSION`].
    #[serde(skip_serializing_if = "Option::is_none")]
    osid: Option<&'a str>,
}

impl<'a> Base<'a> {
    fn new(i: &Issuance<'a>, typ: &'a str, jti: &'a str, exp: i64) -> Self {
        Base {
            exp,
            iat: i.now,
            jti,
            iss: i.issuer,
            sub: i.subject.map(|s| s.user.id.as_str()),
            typ,
            azp: &i.client.client_id,
            sid: i.session.map(|s| s.id.as_str()),
            osid: i.session.and_then(|s| s.offline.as_deref()),
        }
    }
}

/// The private claim naming the offline session a token was recorded in. Such a token's
/// `sid` names the SSO session, as Keycloak's do (one offline session per SSO session, so
/// an application sees the same `sid` before and after refreshing offline), and it lives
/// and dies with the offline session, which outlives a logout.
pub const OFFLINE_SESSION: &str = "osid";

/// The session stream whose liveness decides a token's: its offline session, else `sid`.
/// Offline tokens issued before the claim existed name their offline session as `sid`.
pub fn session_stream(claims: &Value) -> Option<&str> {
    claims.get(OFFLINE_SESSION).or_else(|| claims.get("sid")).and_then(Value::as_str)
}

/// The private claim naming the client a token was issued to by its internal id. `azp`
/// names it by `client_id`, which a client deleted and created again shares with its
/// predecessor; this one does not, so the predecessor's tokens never pass as the successor's.
pub const CLIENT_UUID: &str = "client_uuid";

/// `{"roles": [...]}`, as `realm_access` and each client in `resource_access` hold them.
#[derive(serde::Serialize)]
struct Roles<'a> {
    roles: &'a [String],
}

/// `resource_access`: each client's roles, by `client_id`.
struct ResourceAccess<'a>(&'a BTreeMap<String, Vec<String>>);

impl serde::Serialize for ResourceAccess<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(client, roles)| (client, Roles { roles })))
    }
}

/// `aud`: one audience as a string, several as an array.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Audience<'a> {
    One(&'a str),
    Many(Vec<&'a str>),
}

/// The claims of an access token.
#[derive(serde::Serialize)]
pub struct AccessClaims<'a> {
    #[serde(flatten)]
    base: Base<'a>,
    /// [`CLIENT_UUID`].
    client_uuid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    acr: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sv: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    realm_access: Option<Roles<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_access: Option<ResourceAccess<'a>>,
    #[serde(flatten)]
    user: Option<UserClaims<'a>>,
    aud: Audience<'a>,
    scope: String,
}

pub fn access_claims<'a>(i: &Issuance<'a>, jti: &'a str, exp: i64) -> AccessClaims<'a> {
    let roles = i.subject.filter(|_| i.scope.contains("roles"));
    // The audience: the clients whose roles the token carries (Keycloak's audience resolve),
    // else (RFC 9068 requires one) the client itself.
    let mut aud: Vec<&str> = roles
        .map(|s| s.client_roles.keys().map(String::as_str).filter(|k| *k != i.client.client_id).collect())
        .unwrap_or_default();
    AccessClaims {
        base: Base::new(i, "Bearer", jti, exp),
        client_uuid: &i.client.id,
        auth_time: i.session.map(|s| s.auth_time),
        acr: i.session.map(|s| s.acr.as_str()),
        sv: i.session.map(|s| s.version),
        realm_access: roles.filter(|s| !s.realm_roles.is_empty()).map(|s| Roles { roles: &s.realm_roles }),
        resource_access: roles.filter(|s| !s.client_roles.is_empty()).map(|s| ResourceAccess(&s.client_roles)),
        user: i.subject.map(|s| UserClaims::new(s, i.scope)),
        aud: match aud.len() {
            0 => Audience::One(&i.client.client_id),
            1 => Audience::One(aud.remove(0)),
            _ => Audience::Many(aud),
        },
        scope: super::scope::to_string(i.scope),
    }
}

/// Optional ID token members bound to the front channel.
#[derive(Default)]
pub struct IdExtras<'a> {
    pub nonce: Option<&'a str>,
    pub at_hash: Option<String>,
    pub c_hash: Option<String>,
}

/// The claims of an ID token.
#[derive(serde::Serialize)]
pub struct IdClaims<'a> {
    #[serde(flatten)]
    base: Base<'a>,
    aud: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    acr: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    at_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    c_hash: Option<String>,
    #[serde(flatten)]
    user: Option<UserClaims<'a>>,
}

pub fn id_claims<'a>(i: &Issuance<'a>, jti: &'a str, exp: i64, extras: IdExtras<'a>) -> IdClaims<'a> {
    IdClaims {
        base: Base::new(i, "ID", jti, exp),
        aud: &i.client.client_id,
        auth_time: i.session.map(|s| s.auth_time),
        acr: i.session.map(|s| s.acr.as_str()),
        nonce: extras.nonce,
        at_hash: extras.at_hash,
        c_hash: extras.c_hash,
        user: i.subject.map(|s| UserClaims::new(s, i.scope)),
    }
}

/// The claims of a new refresh token ([`RefreshClaims`] is what the token endpoint reads back).
#[derive(serde::Serialize)]
pub struct NewRefreshClaims<'a> {
    #[serde(flatten)]
    base: Base<'a>,
    /// [`CLIENT_UUID`].
    client_uuid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    acr: Option<&'a str>,
    aud: &'a str,
    scope: String,
}

/// A refresh token's claims; `offline` names the offline session an offline token
/// (Keycloak's `typ: Offline`) belongs to ([`OFFLINE_SESSION`]). It carries the `acr` the login
/// reported, so tokens refreshed from it report the same (Keycloak keeps it with the client
/// session; the token is this server's own, so nobody else reads it).
pub fn refresh_claims<'a>(i: &Issuance<'a>, jti: &'a str, exp: i64, offline: Option<&'a str>) -> NewRefreshClaims<'a> {
    let mut base = Base::new(i, if offline.is_some() { "Offline" } else { "Refresh" }, jti, exp);
    base.osid = offline.or(base.osid);
    NewRefreshClaims {
        base,
        client_uuid: &i.client.id,
        acr: i.session.map(|s| s.acr.as_str()),
        aud: i.issuer,
        scope: super::scope::to_string(i.scope),
    }
}

/// The event a logout token carries (OpenID Connect Back-Channel Logout 1.0 §2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The header `typ` of a logout token (§2.4, RFC 8725 §3.11: it can pass for no other token).
pub const LOGOUT_TYP: &str = "logout+jwt";
/// Seconds a logout token is valid: it is sent at once, and retried with a fresh one.
pub const LOGOUT_LIFESPAN: i64 = 120;

/// A logout token's claims: `iss`, `aud` the client, `iat`, `exp`, `jti`, `sid`, `sub` when
/// known, the back-channel logout event, and never a `nonce` (§2.4).
pub fn logout_claims(
    issuer: &str,
    client_id: &str,
    session_id: &str,
    user_id: Option<&str>,
    jti: &str,
    now: i64,
) -> Value {
    let mut c = Map::new();
    c.insert("iss".into(), json!(issuer));
    c.insert("aud".into(), json!(client_id));
    c.insert("iat".into(), json!(now));
    c.insert("exp".into(), json!(now + LOGOUT_LIFESPAN));
    c.insert("jti".into(), json!(jti));
    c.insert("sid".into(), json!(session_id));
    if let Some(sub) = user_id {
        c.insert("sub".into(), json!(sub));
    }
    c.insert("typ".into(), json!("Logout"));
    c.insert("events".into(), json!({ BACKCHANNEL_LOGOUT_EVENT: {} }));
    Value::Object(c)
}

/// The claims a token endpoint reads back from a refresh token.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct RefreshClaims {
    pub jti: String,
    pub typ: String,
    pub azp: String,
    pub sid: String,
    pub sub: String,
    pub scope: String,
    /// The client's internal id ([`CLIENT_UUID`]); absent from tokens issued before it was.
    #[serde(default)]
    pub client_uuid: Option<String>,
    /// Absent from tokens issued before refresh tokens carried it.
    #[serde(default)]
    pub acr: Option<String>,
    /// An offline token's offline session ([`OFFLINE_SESSION`]); absent from older ones.
    #[serde(default)]
    pub osid: Option<String>,
}

impl RefreshClaims {
    /// The session the token rotates in: see [`session_stream`].
    pub fn session_stream(&self) -> &str {
        self.osid.as_deref().unwrap_or(&self.sid)
    }
}

/// `at_hash` / `c_hash` (OIDC Core §3.3.2.11): the left half of the hash the signing
/// algorithm uses (SHA-512 for Ed25519).
pub fn half_hash(alg: &str, value: &str) -> String {
    let digest: Vec<u8> = match alg {
        "EdDSA" => Sha512::digest(value.as_bytes()).to_vec(),
        _ => Sha256::digest(value.as_bytes()).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_realm_when_its_refresh_key_is_asked_twice_then_it_is_the_key_derived_for_that_realm() {
        use base64::Engine;
        let master = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let keys = Arc::new(ServerKeys::from_master_key(&master).unwrap());
        let signers = Signers::new(keys.clone());
        // The derivation is the one refresh tokens were always signed with: tokens handed out
        // before a restart or an upgrade still verify.
        let derived = ring::hmac::Key::new(ring::hmac::HMAC_SHA512, &keys.derive("refresh-token\nrealm-a"));
        let tag = ring::hmac::sign(&derived, b"token");
        for _ in 0..2 {
            assert!(ring::hmac::verify(&signers.refresh_key("realm-a"), b"token", tag.as_ref()).is_ok());
        }
        assert!(ring::hmac::verify(&signers.refresh_key("realm-b"), b"token", tag.as_ref()).is_err(), "another realm");
    }

    #[test]
    fn a_logout_token_names_the_session_and_event_and_has_no_nonce() {
        let c = logout_claims("https://idp/realms/r", "app", "s1", Some("u1"), "j1", 100);
        assert_eq!(c["aud"], "app");
        assert_eq!(c["sid"], "s1");
        assert_eq!(c["sub"], "u1");
        assert_eq!(c["exp"], 100 + LOGOUT_LIFESPAN);
        assert_eq!(c["events"], json!({ BACKCHANNEL_LOGOUT_EVENT: {} }));
        assert!(c.get("nonce").is_none());
        assert!(logout_claims("i", "app", "s1", None, "j1", 0).get("sub").is_none());
    }

    #[test]
    fn given_a_token_of_an_offline_session_when_judged_then_its_offline_session_decides() {
        let offline = json!({ "sid": "sso-1", OFFLINE_SESSION: "off-1" });
        assert_eq!(session_stream(&offline), Some("off-1"));
        assert_eq!(session_stream(&json!({ "sid": "sso-1" })), Some("sso-1"), "an SSO session's token");
        assert_eq!(session_stream(&json!({ "sid": "off-0" })), Some("off-0"), "an offline token from before the claim");
        assert_eq!(session_stream(&json!({ "jti": "cc" })), None, "client credentials have no session");
        let refresh = |c: Value| serde_json::from_value::<RefreshClaims>(c).unwrap();
        let base = json!({ "jti": "j", "typ": "Offline", "azp": "web", "sid": "sso-1", "sub": "u", "scope": "" });
        let mut with = base.clone();
        with[OFFLINE_SESSION] = json!("off-1");
        assert_eq!(refresh(with).session_stream(), "off-1");
        assert_eq!(refresh(base).session_stream(), "sso-1");
    }

    #[test]
    fn at_hash_matches_the_oidc_example() {
        // OIDC Core A.3: access token "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y" hashes to
        // "77QmUPtjPfzWtF2AnpK9RQ".
        assert_eq!(half_hash("RS256", "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"), "77QmUPtjPfzWtF2AnpK9RQ");
    }

    fn issuance_parts() -> (RealmView, ClientView, Subject, SessionRef) {
        let realm =
            RealmView { id: "r".into(), name: "demo".into(), settings: Default::default(), extra: Default::default() };
        let client = ClientView {
            id: "c-uuid".into(),
            realm_id: "r".into(),
            client_id: "web".into(),
            settings: Default::default(),
            secret: None,
            sealed_secret: None,
            extra: Default::default(),
        };
        let user = UserView {
            id: "u1".into(),
            realm_id: "r".into(),
            username: "alice".into(),
            profile: annals_events::user::UserProfile {
                email: Some("alice@example.com".into()),
                email_verified: true,
                first_name: Some("Alice".into()),
                last_name: Some("Liddell".into()),
                enabled: true,
                ..Default::default()
            },
            password: None,
            password_temporary: false,
            created_timestamp: 0,
            federation_link: None,
            extra: Default::default(),
        };
        let client_roles = BTreeMap::from([
            ("api".to_string(), vec!["read".to_string()]),
            ("web".to_string(), vec!["own".to_string()]),
        ]);
        let subject = Subject { user, realm_roles: vec!["admin".into(), "user".into()], client_roles };
        let session =
            SessionRef { id: "s1".into(), auth_time: 90, acr: "1".into(), version: 7, offline: Some("off-1".into()) };
        (realm, client, subject, session)
    }

    #[test]
    fn given_a_login_with_every_scope_when_its_tokens_are_made_then_they_carry_keycloaks_claims() {
        let (realm, client, subject, session) = issuance_parts();
        let scope: BTreeSet<String> = ["openid", "profile", "email", "roles"].map(String::from).into();
        let i = Issuance {
            issuer: "https://idp/realms/demo",
            realm: &realm,
            client: &client,
            scope: &scope,
            now: 100,
            session: Some(&session),
            subject: Some(&subject),
        };
        let user = json!({
            "name": "Alice Liddell", "preferred_username": "alice", "given_name": "Alice",
            "family_name": "Liddell", "email": "alice@example.com", "email_verified": true,
        });
        let with = |base: Value, more: &Value| {
            let mut m = base.as_object().unwrap().clone();
            m.extend(more.as_object().unwrap().clone());
            Value::Object(m)
        };
        let access = serde_json::to_value(access_claims(&i, "a1", 400)).unwrap();
        let want = json!({
            "exp": 400, "iat": 100, "jti": "a1", "iss": "https://idp/realms/demo", "sub": "u1", "typ": "Bearer",
            "azp": "web", "sid": "s1", "osid": "off-1", "client_uuid": "c-uuid", "auth_time": 90, "acr": "1", "sv": 7,
            "realm_access": { "roles": ["admin", "user"] },
            "resource_access": { "api": { "roles": ["read"] }, "web": { "roles": ["own"] } },
            "aud": "api", "scope": "openid email profile",
        });
        assert_eq!(access, with(want, &user));
        let extras = IdExtras { nonce: Some("n"), at_hash: Some("ah".into()), c_hash: None };
        let id = serde_json::to_value(id_claims(&i, "i1", 400, extras)).unwrap();
        let want = json!({
            "exp": 400, "iat": 100, "jti": "i1", "iss": "https://idp/realms/demo", "sub": "u1", "typ": "ID",
            "azp": "web", "sid": "s1", "osid": "off-1", "aud": "web", "auth_time": 90, "acr": "1", "nonce": "n",
            "at_hash": "ah",
        });
        assert_eq!(id, with(want, &user));
        let refresh = serde_json::to_value(refresh_claims(&i, "r1", 900, Some("off-2"))).unwrap();
        assert_eq!(
            refresh,
            json!({
                "exp": 900, "iat": 100, "jti": "r1", "iss": "https://idp/realms/demo", "sub": "u1", "typ": "Offline",
                "azp": "web", "sid": "s1", "osid": "off-2", "client_uuid": "c-uuid", "acr": "1",
                "aud": "https://idp/realms/demo", "scope": "openid email profile",
            }),
            "the offline session named wins over the session's own"
        );
        let read: RefreshClaims = serde_json::from_value(refresh).unwrap();
        assert_eq!((read.session_stream(), read.acr.as_deref()), ("off-2", Some("1")));
    }

    #[test]
    fn given_roles_of_several_other_clients_or_none_when_an_access_token_is_made_then_its_audience_follows() {
        let (realm, client, mut subject, _) = issuance_parts();
        subject.client_roles.insert("billing".into(), vec!["pay".into()]);
        subject.user.profile.first_name = None;
        subject.user.profile.last_name = None;
        let roles: BTreeSet<String> = ["roles", "profile"].map(String::from).into();
        let i = Issuance {
            issuer: "iss",
            realm: &realm,
            client: &client,
            scope: &roles,
            now: 1,
            session: None,
            subject: Some(&subject),
        };
        let access = serde_json::to_value(access_claims(&i, "a", 2)).unwrap();
        assert_eq!(access["aud"], json!(["api", "billing"]));
        assert_eq!(access["preferred_username"], "alice");
        for absent in ["name", "given_name", "email", "email_verified", "sid", "auth_time", "sv", "osid"] {
            assert!(access.get(absent).is_none(), "{absent} in {access}");
        }
        // Client credentials: no user, no session, and the client itself as the audience.
        let none = BTreeSet::new();
        let cc = Issuance { subject: None, scope: &none, ..i };
        let access = serde_json::to_value(access_claims(&cc, "a", 2)).unwrap();
        assert_eq!(
            access,
            json!({
                "exp": 2, "iat": 1, "jti": "a", "iss": "iss", "typ": "Bearer", "azp": "web",
                "client_uuid": "c-uuid", "aud": "web", "scope": "",
            })
        );
        let refresh = serde_json::to_value(refresh_claims(&cc, "r", 3, None)).unwrap();
        assert_eq!(refresh["typ"], "Refresh");
        assert!(refresh.get("osid").is_none() && refresh.get("acr").is_none());
    }
}
