//! Minting tokens once their issuance is recorded: who the subject is (from the users read
//! model and the role graph), signing with the realm's keys, and the token response.
use crate::actors::CommandError;
use crate::http::AppState;
use crate::oidc::login::{find_user, LoginError};
use crate::oidc::tokens::{self, IdExtras, Issuance, SessionRef, Subject};
use crate::oidc::OAuthError;
use crate::sqlmodels::users;
use annals_projections::clients::ClientView;
use annals_projections::realms::RealmView;
use annals_projections::users::UserView;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The realm's refresh-token key (HS512, never published; see `jwt::sign_hmac`).
pub fn refresh_key(state: &AppState, realm: &RealmView) -> ring::hmac::Key {
    state.signers.refresh_key(&realm.id)
}

/// A new token id (`jti`). Time-ordered (UUIDv7): a client-credentials grant's stream is
/// named by its token id, and ids that grow with time land at the end of the log's stream
/// index instead of on a random page each (a random id dirtied one index page per token,
/// written to the WAL and synced with every batch). The time it reveals is the token's `iat`.
pub fn token_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The user a token is about, with their effective roles; a user deleted or disabled since
/// the login gets no more tokens. From the subject cache when it holds the user.
pub async fn subject(state: &AppState, realm_id: &str, user_id: &str) -> Result<Arc<Subject>, OAuthError> {
    let key = (realm_id.to_string(), user_id.to_string());
    let changed_at = state.read_models.read().subjects_changed_at;
    if let Some(s) = state.subjects.get(&key, changed_at) {
        return Ok(s);
    }
    // The SQL model is read after the directory's stamp: an entry is cached only if that
    // model already holds every change up to the stamp.
    let sql_position = state.sql_models.position();
    let subject = Arc::new(subject_uncached(state, realm_id, user_id).await?);
    if sql_position >= changed_at && cacheable(state) {
        state.subjects.put(key, changed_at, subject.clone());
    }
    Ok(subject)
}

async fn subject_uncached(state: &AppState, realm_id: &str, user_id: &str) -> Result<Subject, OAuthError> {
    let pool = state.store.pool();
    let failed = |e: crate::sqlmodels::SqlModelError| {
        tracing::error!(error = %e, "users read model failed");
        OAuthError::temporarily_unavailable("user directory unavailable")
    };
    let user = users::get(&pool, user_id).await.map_err(failed)?;
    // A user of another realm never gets this realm's tokens, whatever led here.
    let user = user.filter(|u| u.realm_id == realm_id).ok_or_else(|| OAuthError::invalid_grant("User not found"))?;
    if !user.profile.enabled {
        return Err(OAuthError::invalid_grant("Account disabled"));
    }
    let direct = users::roles_of(&pool, user_id).await.map_err(failed)?;
    let groups = users::groups_of(&pool, user_id).await.map_err(failed)?;
    let dir = state.read_models.read();
    let roles = dir.memberships.effective_roles(direct.iter(), groups.iter());
    Ok(Subject::new(user, &roles, &dir.memberships, &dir.clients))
}

/// Whether what was just read may be cached: not while a read model is stopped (its stamp
/// would not move on the changes it misses).
fn cacheable(state: &AppState) -> bool {
    state.read_models.healthy() && state.sql_models.healthy()
}

/// Token subjects (and service accounts by client), valid while no user, role, group or client
/// event has been folded since they were read: logins and token issuance change none of
/// those, so in steady state every subject is read once; any such change empties the cache.
/// Entries also expire after a minute: an operator's `annals projections rebuild users`
/// rewrites the tables without an event, and a subject read half-way through must not last.
#[derive(Clone, Default)]
pub struct Subjects {
    inner: Arc<Mutex<SubjectsInner>>,
}

#[derive(Default)]
struct SubjectsInner {
    stamp: u64,
    users: HashMap<(String, String), (Instant, Arc<Subject>)>,
    service_accounts: HashMap<String, (Instant, Option<Arc<Subject>>)>,
    /// Users found by the name a login gave (realm, name), with their credentials: a password
    /// change, like any user event, empties the cache. Names that found nobody are not kept.
    logins: HashMap<(String, String), (Instant, UserView)>,
}

/// How long a cached subject is trusted without any event invalidating it.
const SUBJECT_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Entries kept at most; the cache is emptied when full (a miss costs three queries).
const MAX_SUBJECTS: usize = 100_000;

impl SubjectsInner {
    fn at(&mut self, stamp: u64) -> &mut Self {
        if self.stamp != stamp || self.users.len() + self.service_accounts.len() + self.logins.len() >= MAX_SUBJECTS {
            self.users.clear();
            self.service_accounts.clear();
            self.logins.clear();
            self.stamp = stamp;
        }
        self
    }
}

impl Subjects {
    fn lock(&self) -> std::sync::MutexGuard<'_, SubjectsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, key: &(String, String), stamp: u64) -> Option<Arc<Subject>> {
        let mut inner = self.lock();
        let (at, s) = inner.at(stamp).users.get(key)?;
        (at.elapsed() < SUBJECT_TTL).then(|| s.clone())
    }

    fn put(&self, key: (String, String), stamp: u64, subject: Arc<Subject>) {
        self.lock().at(stamp).users.insert(key, (Instant::now(), subject));
    }
}

/// An actor command's failure, as the token endpoint reports it.
pub fn command_failed<E: std::error::Error>(e: CommandError<E>) -> OAuthError {
    match e {
        CommandError::Domain(d) => OAuthError::invalid_grant(d.to_string()),
        CommandError::Busy | CommandError::Unavailable | CommandError::Conflict => {
            OAuthError::temporarily_unavailable("try again")
        }
        CommandError::Store(s) => {
            tracing::error!(error = %s, "store failed during token issuance");
            OAuthError::temporarily_unavailable("try again")
        }
        CommandError::Corrupt(c) => {
            tracing::error!(error = %c, "unreadable stream during token issuance");
            OAuthError::server_error("stream unreadable")
        }
    }
}

/// Which tokens to sign, with the ids already recorded for them.
#[derive(Clone, Default)]
pub struct Ids {
    pub access: Option<String>,
    pub id: Option<String>,
    pub refresh: Option<String>,
}

pub struct Plan<'a> {
    pub realm: &'a RealmView,
    pub client: &'a ClientView,
    pub scope: &'a BTreeSet<String>,
    pub session: Option<SessionRef>,
    pub subject: Option<&'a Subject>,
    pub ids: Ids,
    pub now: i64,
    pub access_exp: i64,
    pub refresh_exp: i64,
    /// The refresh token is an offline token of this offline session.
    pub offline: Option<String>,
    pub nonce: Option<&'a str>,
    /// A code returned beside an ID token (hybrid flow): its `c_hash`.
    pub code: Option<&'a str>,
    /// Whether the ID token carries `at_hash` (when issued with an access token from the
    /// authorization endpoint).
    pub at_hash: bool,
}

/// Signed tokens.
#[derive(Default)]
pub struct Signed {
    pub access: Option<String>,
    pub id: Option<String>,
    pub refresh: Option<String>,
}

pub fn sign_with<T: serde::Serialize>(
    state: &AppState,
    realm_id: &str,
    alg: &str,
    typ: &str,
    claims: &T,
) -> Result<String, OAuthError> {
    let signer = {
        let dir = state.read_models.read();
        state.signers.for_realm(&dir.signing_keys, realm_id, alg)
    };
    let signer = signer.map_err(|e| {
        tracing::error!(error = %e, realm_id, alg, "cannot sign");
        OAuthError::server_error(format!("cannot sign with {alg}"))
    })?;
    signer.sign(typ, claims).map_err(|e| {
        tracing::error!(error = %e, "signing failed");
        OAuthError::server_error("signing failed")
    })
}

pub fn sign(state: &AppState, plan: &Plan<'_>) -> Result<Signed, OAuthError> {
    let issuer = crate::oidc::issuer(&state.base_url, &plan.realm.name);
    let i = Issuance {
        issuer: &issuer,
        realm: plan.realm,
        client: plan.client,
        scope: plan.scope,
        now: plan.now,
        session: plan.session.as_ref(),
        subject: plan.subject,
    };
    let realm_id = &plan.realm.id;
    let mut out = Signed::default();
    if let Some(jti) = &plan.ids.access {
        let alg = tokens::algorithm(plan.realm, plan.client, tokens::ACCESS_ALG);
        let claims = tokens::access_claims(&i, jti, plan.access_exp);
        out.access = Some(sign_with(state, realm_id, &alg, tokens::access_typ(plan.client), &claims)?);
    }
    if let Some(jti) = &plan.ids.id {
        let alg = tokens::algorithm(plan.realm, plan.client, tokens::ID_ALG);
        let extras = IdExtras {
            nonce: plan.nonce,
            at_hash: out.access.as_deref().filter(|_| plan.at_hash).map(|a| tokens::half_hash(&alg, a)),
            c_hash: plan.code.map(|c| tokens::half_hash(&alg, c)),
        };
        let claims = tokens::id_claims(&i, jti, plan.access_exp, extras);
        out.id = Some(sign_with(state, realm_id, &alg, "JWT", &claims)?);
    }
    if let Some(jti) = &plan.ids.refresh {
        let claims = tokens::refresh_claims(&i, jti, plan.refresh_exp, plan.offline.as_deref());
        out.refresh = Some(crate::jwt::sign_hmac(&refresh_key(state, plan.realm), &claims).map_err(|e| {
            tracing::error!(error = %e, "signing failed");
            OAuthError::server_error("signing failed")
        })?);
    }
    Ok(out)
}

/// The token endpoint's success body (RFC 6749 §5.1, with Keycloak's extra members).
#[derive(Debug, serde::Serialize)]
pub struct TokenResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_in: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    /// 0 when no refresh token is issued, as Keycloak answers.
    refresh_expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    #[serde(rename = "not-before-policy")]
    not_before_policy: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_state: Option<String>,
    scope: String,
}

pub fn response(plan: &Plan<'_>, signed: Signed) -> TokenResponse {
    let issued_access = signed.access.is_some();
    TokenResponse {
        expires_in: Some(plan.access_exp - plan.now).filter(|_| issued_access),
        token_type: Some("Bearer").filter(|_| issued_access),
        access_token: signed.access,
        refresh_expires_in: if signed.refresh.is_some() { plan.refresh_exp - plan.now } else { 0 },
        refresh_token: signed.refresh,
        id_token: signed.id,
        not_before_policy: 0,
        session_state: plan.session.as_ref().map(|s| s.id.clone()),
        scope: crate::oidc::scope::to_string(plan.scope),
    }
}

/// The user a login names (by username, or by email where the realm allows it); cached like
/// every subject, so a steady stream of logins reads each user once.
pub async fn login_user(state: &AppState, realm: &RealmView, name: &str) -> Result<Option<UserView>, LoginError> {
    let key = (realm.id.clone(), name.to_string());
    let changed_at = state.read_models.read().subjects_changed_at;
    if let Some((at, user)) = state.subjects.lock().at(changed_at).logins.get(&key) {
        if at.elapsed() < SUBJECT_TTL {
            return Ok(Some(user.clone()));
        }
    }
    let sql_position = state.sql_models.position();
    let found = find_user(&state.store.pool(), realm, name).await?;
    if let Some(user) = &found {
        if sql_position >= changed_at && cacheable(state) {
            state.subjects.lock().at(changed_at).logins.insert(key, (Instant::now(), user.clone()));
        }
    }
    Ok(found)
}

/// The client's service-account user (Keycloak names it `service-account-{clientId}`), if it
/// has one; cached like every subject.
pub async fn service_account(
    state: &AppState,
    realm: &RealmView,
    client: &ClientView,
) -> Result<Option<Arc<Subject>>, OAuthError> {
    let changed_at = state.read_models.read().subjects_changed_at;
    if let Some((at, s)) = state.subjects.lock().at(changed_at).service_accounts.get(&client.id) {
        if at.elapsed() < SUBJECT_TTL {
            return Ok(s.clone());
        }
    }
    let sql_position = state.sql_models.position();
    let name = format!("service-account-{}", client.client_id);
    let found = users::by_username(&state.store.pool(), &realm.id, &name).await.map_err(|e| {
        tracing::error!(error = %e, "users read model failed");
        OAuthError::temporarily_unavailable("user directory unavailable")
    })?;
    let subject = match found {
        Some(u) => Some(
            subject(state, &realm.id, &u.id)
                .await
                .map_err(|_| OAuthError::unauthorized_client("Service account disabled"))?,
        ),
        None => None,
    };
    if sql_position >= changed_at && cacheable(state) {
        state
            .subjects
            .lock()
            .at(changed_at)
            .service_accounts
            .insert(client.id.clone(), (Instant::now(), subject.clone()));
    }
    Ok(subject)
}
