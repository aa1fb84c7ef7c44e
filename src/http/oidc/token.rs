//! `POST /realms/{realm}/protocol/openid-connect/token`: the token endpoint (RFC 6749 §3.2).
//!
//! Every issuance is an event before the response: a code redemption on its AuthRequest with
//! the tokens on the Session, in one commit (`code_redemption`); a refresh on the Session (rotation, reuse detection); the
//! password grant as an AuthRequest of its own plus a new Session; client credentials as a
//! new ClientGrant stream per token (appended without an actor, so one client's tokens never
//! queue behind each other).
use super::code_redemption::{self, Joint};
use super::issue::{self, command_failed, Ids, Plan};
use super::{client_actor, form, json_no_store, metadata, oauth_error, realm};
use crate::domain::auth_request::{AuthRequest, AuthRequestCommand};
use crate::domain::client_assertion::{self, ClientAssertion, ClientAssertionCommand};
use crate::domain::client_grant::{ClientGrant, ClientGrantCommand};
use crate::domain::session::{Issue, Session, SessionCommand, SessionError};
use crate::http::AppState;
use crate::jwt::{self, Expect};
use crate::oidc::client_auth;
use crate::oidc::login::LoginError;
use crate::oidc::tokens::{self, RefreshClaims, SessionRef};
use crate::oidc::{issuer, scope, OAuthError};
use actix_web::{web, HttpRequest, HttpResponse};
use annals_events::auth_request::AuthRequestStarted;
use annals_events::client_assertion::ClientAssertionUsed;
use annals_events::client_grant::ClientGrantIssued;
use annals_events::session::SessionEvent;
use annals_events::{Actor, Metadata};
use annals_projections::clients::ClientView;
use annals_projections::realms::RealmView;
use std::collections::BTreeMap;
use std::sync::Arc;

pub async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let Some(realm) = realm(&state, &name) else { return super::realm_not_found() };
    match grant(&state, &req, &realm, &body).await {
        Ok(body) => json_no_store(body),
        Err(e) => {
            let params = form(&req, &body).unwrap_or_default();
            super::note_refused(&state, &req, &realm, "token", &params, &e).await;
            oauth_error(&e)
        }
    }
}

/// Authenticates the client of a request (shared with introspection and revocation).
pub async fn authenticated_client(
    state: &AppState,
    req: &HttpRequest,
    realm: &RealmView,
    params: &BTreeMap<String, String>,
) -> Result<Arc<ClientView>, OAuthError> {
    let header = req.headers().get(actix_web::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let presented = client_auth::presented(header, params)?;
    // An assertion may name the token endpoint (RFC 7523) or the issuer (Keycloak accepts
    // both); introspection and revocation take the same assertions.
    let iss = issuer(&state.base_url, &realm.name);
    let audiences = [format!("{iss}/protocol/openid-connect/token"), iss];
    // Copied out first: checking an assertion's signature must not hold the read models.
    let client = state.read_models.read().clients.shared_by_client_id(&realm.id, &presented.client_id);
    let fetched = match (&presented.method, client.as_ref()) {
        // Only for an enabled confidential client registered for signed assertions, and an
        // assertion shaped like one: nobody else makes the server fetch anything.
        (client_auth::Method::Assertion(jwt), Some(c))
            if c.settings.client_authenticator_type == "client-jwt"
                && c.settings.enabled
                && !c.settings.bearer_only
                && !c.settings.public_client =>
        {
            use crate::oidc::client_jwks;
            match (client_jwks::url(&c.settings.attributes), client_jwks::assertion_header(jwt)) {
                (Some(url), Some(header)) => {
                    let kid = header.get("kid").and_then(serde_json::Value::as_str);
                    match state.client_jwks.keys(url, kid).await {
                        Ok(keys) => Some(keys),
                        Err(e) => {
                            tracing::warn!(client = %c.client_id, error = %e, "client assertion cannot be checked");
                            return Err(OAuthError::invalid_client("Client keys cannot be retrieved"));
                        }
                    }
                }
                // Keys by URL only: never the inline set or certificate instead.
                (Some(_), None) => return Err(OAuthError::invalid_client("malformed client assertion")),
                (None, _) => None,
            }
        }
        _ => None,
    };
    let ctx = client_auth::AssertionContext {
        audiences: &audiences,
        now: state.clock.now().timestamp(),
        fetched_keys: fetched.as_ref(),
    };
    let (_, assertion) = client_auth::authenticate(&presented, client.as_deref(), &state.keys, &ctx)?;
    let Some(client) = client else { return Err(OAuthError::invalid_client("Invalid client credentials")) };
    if let Some(a) = assertion {
        // Used once: the assertion's stream exists after its first use, on every node.
        let used = ClientAssertionUsed {
            realm_id: realm.id.clone(),
            client: client.id.clone(),
            jti: a.jti.clone(),
            expires_at: a.exp,
            at: ctx.now,
        };
        let meta = metadata(req, &realm.id, client_actor(&realm.id, &client.client_id));
        let id = client_assertion::stream_id(&client.id, &a.jti);
        let append = crate::provision::create::<ClientAssertion>(
            &id,
            ClientAssertionCommand::Use(used),
            state.clock.now(),
            &meta,
        )
        .map_err(|e| OAuthError::server_error(e.to_string()))?;
        match state.store.append(append).await {
            Ok(_) => {}
            Err(crate::store::StoreError::Conflict { .. }) => {
                return Err(OAuthError::invalid_client("client assertion already used"));
            }
            Err(e) => {
                tracing::error!(error = %e, "client assertion cannot be recorded");
                return Err(OAuthError::temporarily_unavailable("try again"));
            }
        }
    }
    Ok(client)
}

async fn grant(
    state: &AppState,
    req: &HttpRequest,
    realm: &RealmView,
    body: &[u8],
) -> Result<issue::TokenResponse, OAuthError> {
    let params = form(req, body)?;
    let grant_type = params
        .get("grant_type")
        .cloned()
        .ok_or_else(|| OAuthError::invalid_request("Missing form parameter: grant_type"))?;
    let client = authenticated_client(state, req, realm, &params).await?;
    match grant_type.as_str() {
        "authorization_code" => code_redemption::authorization_code(state, req, realm, &client, &params).await,
        "refresh_token" => refresh(state, req, realm, &client, &params).await,
        "password" => password(state, req, realm, &client, &params).await,
        "client_credentials" => client_credentials(state, req, realm, &client, &params).await,
        _ => Err(OAuthError::unsupported_grant_type("Unsupported grant_type")),
    }
}

pub(super) fn required<'a>(params: &'a BTreeMap<String, String>, name: &str) -> Result<&'a str, OAuthError> {
    params
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| OAuthError::invalid_request(format!("Missing parameter: {name}")))
}

/// Tokens to record in a live session and then sign.
pub(super) struct SessionIssue<'a> {
    pub(super) session_id: &'a str,
    pub(super) subject: &'a tokens::Subject,
    pub(super) grant: &'a str,
    pub(super) granted: &'a std::collections::BTreeSet<String>,
    /// A refresh: the presented token's id (rotation, reuse detection).
    pub(super) presented_refresh: Option<String>,
    pub(super) nonce: Option<&'a str>,
    /// Ids chosen beforehand (a code redemption records them first); else new ones.
    pub(super) ids: Option<Ids>,
    /// The request was answered from an existing session: `acr` 0, as Keycloak reports it.
    pub(super) sso: bool,
    /// The authorization request's `acr_values`.
    pub(super) acr_values: Option<&'a str>,
    /// A refresh: the `acr` its token carried from the login.
    pub(super) carried_acr: Option<&'a str>,
    /// The authorization request this login completes (names an offline session it starts).
    pub(super) request: Option<&'a str>,
}

/// Records tokens in a live session and signs them.
///
/// With `joint`, the tokens commit together with the code redemption its authorization
/// request's actor holds, and the redemption is settled as soon as the session's command has
/// ended (see `code_redemption`).
pub(super) async fn issue_in_session(
    state: &AppState,
    req: &HttpRequest,
    realm: &RealmView,
    client: &ClientView,
    it: SessionIssue<'_>,
    joint: Option<&mut Joint>,
) -> Result<issue::TokenResponse, OAuthError> {
    let now = state.clock.now().timestamp();
    let access_exp = now + tokens::access_lifespan(realm, client);
    let ids = it.ids.clone().unwrap_or_else(|| Ids {
        access: Some(issue::token_id()),
        id: it.granted.contains("openid").then(issue::token_id),
        refresh: Some(issue::token_id()),
    });
    // A login asking `offline_access` gets an offline token: its refresh token is recorded in
    // the SSO session's offline session (started by the first such login), not in the SSO
    // session, whose logout it outlives. A refresh stays in the session its token names.
    let start_offline = it.presented_refresh.is_none() && it.granted.contains("offline_access");
    if start_offline {
        offline_allowed(it.subject)?;
    }
    let record = Issue {
        client: client.id.clone(),
        grant: it.grant.to_string(),
        access_token_id: ids.access.clone(),
        id_token_id: ids.id.clone(),
        refresh_token_id: if start_offline { None } else { ids.refresh.clone() },
        scope: scope::to_string(it.granted),
        expires_at: access_exp,
    };
    let command = match &it.presented_refresh {
        Some(presented) => SessionCommand::Refresh { presented: presented.clone(), issue: record },
        None => SessionCommand::Issue(record),
    };
    let meta = metadata(req, &realm.id, client_actor(&realm.id, &client.client_id));
    let minted = Minting { state, realm, client, it: &it, now, access_exp };
    // The tokens are signed while the session's event commits (when nothing else has to be
    // recorded first), and handed out only once it has: see ARCHITECTURE.md, "Signed while
    // the grant commits".
    let prepare = |d: &crate::actors::Decided<Session>| -> Option<Result<(Plan<'_>, issue::Signed), OAuthError>> {
        let offline = match (&d.state.offline_from, start_offline) {
            (Some(_), _) => Some(it.session_id.to_string()),
            (None, false) => None,
            (None, true) => return None,
        };
        minted.valid(&d.events, &d.state).ok()?;
        Some(minted.sign(&d.state, d.version, ids.clone(), (offline, d.state.expires_at())))
    };
    let along = joint.as_deref().map(Joint::along).unwrap_or_default();
    let executed =
        state.hosts.execute_prepared_with::<Session, _>(it.session_id, command, meta.clone(), along, prepare).await;
    if let Some(joint) = joint {
        joint.settle(Joint::settled_by(&executed)).await;
    }
    let (outcome, prepared) = executed.map_err(|e| match e {
        crate::actors::CommandError::Domain(SessionError::Revoked) => {
            OAuthError::invalid_grant("Refresh token was revoked")
        }
        crate::actors::CommandError::Domain(_) => OAuthError::invalid_grant("Session not active"),
        other => command_failed(other),
    })?;
    minted.valid(&outcome.events, &outcome.state)?;
    let s = &outcome.state;
    let (plan, signed) = match prepared.flatten() {
        Some(done) => done?,
        None => {
            let offline = match (&s.offline_from, start_offline) {
                (Some(_), _) => (Some(it.session_id.to_string()), s.expires_at()),
                (None, true) => {
                    let first = Issue {
                        client: client.id.clone(),
                        grant: it.grant.to_string(),
                        access_token_id: None,
                        id_token_id: None,
                        refresh_token_id: ids.refresh.clone(),
                        scope: scope::to_string(it.granted),
                        expires_at: access_exp,
                    };
                    match join_offline_session(state, realm, s, (it.session_id, it.request), first, &meta).await {
                        Ok(joined) => (Some(joined.0), joined.1),
                        Err(e) => {
                            // What the SSO session just recorded is never handed out: revoke it.
                            let token_ids = [&ids.access, &ids.id].into_iter().flatten().cloned().collect();
                            let reason = "offline_session_failed".into();
                            let cmd = SessionCommand::RevokeTokens { client: client.id.clone(), token_ids, reason };
                            let _ = state.hosts.execute::<Session>(it.session_id, cmd, meta).await;
                            return Err(e);
                        }
                    }
                }
                (None, false) => (None, s.expires_at()),
            };
            minted.sign(s, outcome.executed.version, ids, offline)?
        }
    };
    Ok(issue::response(&plan, signed))
}

/// What the tokens of one session issuance are made from, besides the session itself.
struct Minting<'a> {
    state: &'a AppState,
    realm: &'a RealmView,
    client: &'a ClientView,
    it: &'a SessionIssue<'a>,
    now: i64,
    access_exp: i64,
}

impl<'a> Minting<'a> {
    /// Whether the session, as the command left it, may have these tokens.
    fn valid(&self, events: &[SessionEvent], s: &Session) -> Result<(), OAuthError> {
        if events.iter().any(|e| matches!(e, SessionEvent::RefreshReused(_))) {
            return Err(OAuthError::invalid_grant("Refresh token was already used: the session is revoked").recorded());
        }
        if s.realm_id != self.realm.id || s.user_id != self.it.subject.user.id {
            return Err(OAuthError::invalid_grant("Session not active"));
        }
        Ok(())
    }

    /// Signs the tokens recorded in session `s` (at stream version `version`); `offline` names
    /// the offline session their refresh token belongs to, with when that token expires.
    fn sign(
        &self,
        s: &Session,
        version: u64,
        ids: Ids,
        (offline, refresh_exp): (Option<String>, i64),
    ) -> Result<(Plan<'a>, issue::Signed), OAuthError> {
        let (it, now) = (self.it, self.now);
        let acr = match it.carried_acr {
            Some(carried) => carried.to_string(),
            None => {
                let default = if it.sso { "0" } else { s.acr.as_str() };
                let map = crate::oidc::acr::map_for(self.realm, self.client);
                crate::oidc::acr::reported(default, &s.acr, it.acr_values, &map)
            }
        };
        let plan = Plan {
            realm: self.realm,
            client: self.client,
            scope: it.granted,
            // Tokens recorded in an offline session name the SSO session it came from as `sid`.
            session: Some(SessionRef {
                id: s.offline_from.clone().unwrap_or_else(|| it.session_id.to_string()),
                auth_time: s.auth_time,
                acr,
                version,
                offline: s.offline_from.is_some().then(|| it.session_id.to_string()),
            }),
            subject: Some(it.subject),
            ids,
            now,
            // The refresh token lives as long as its session may without activity.
            refresh_exp,
            offline,
            access_exp: self.access_exp.min(s.expires_at().max(now + 1)),
            nonce: it.nonce,
            code: None,
            at_hash: false,
        };
        let signed = issue::sign(self.state, &plan)?;
        Ok((plan, signed))
    }
}

/// Records `first` (the offline token) in the offline session of SSO session `from` (state
/// `online`), starting it if this is the first offline login there. Keycloak keeps one offline
/// session per SSO session, shared by its clients; once that one has ended (revoked, idle),
/// the login starts one of its own, named after its authorization request `request`. Returns
/// the offline session and when the token expires.
async fn join_offline_session(
    state: &AppState,
    realm: &RealmView,
    online: &Session,
    (from, request): (&str, Option<&str>),
    first: Issue,
    meta: &Metadata,
) -> Result<(String, i64), OAuthError> {
    let settings = &realm.settings;
    // Keycloak refuses lifetimes of zero; a realm carrying one gets a minute, not a dead token.
    let idle = (settings.offline_session_idle_timeout as i64).max(60);
    let max =
        settings.offline_session_max_lifespan_enabled.then_some((settings.offline_session_max_lifespan as i64).max(60));
    let started = online.offline_start(from, state.clock.now().timestamp(), idle, max);
    let own = request.map_or_else(issue::token_id, offline_session_id);
    for id in [shared_offline_session_id(from), own] {
        let cmd = SessionCommand::JoinOffline { started: started.clone(), issue: first.clone() };
        match state.hosts.execute_full::<Session>(&id, cmd, meta.clone()).await {
            Ok(joined) => return Ok((id, joined.state.expires_at())),
            // Ended or idle: try the next.
            Err(crate::actors::CommandError::Domain(_)) => continue,
            Err(e) => {
                tracing::error!(error = %e, "offline session cannot be recorded");
                return Err(OAuthError::server_error("offline session cannot be recorded"));
            }
        }
    }
    Err(OAuthError::server_error("offline session cannot be started"))
}

/// The offline session the clients of SSO session `sid` share.
pub fn shared_offline_session_id(sid: &str) -> String {
    derived_id("annals shared offline session", sid)
}

/// The offline session of the login by authorization request `request` (when the shared
/// one had ended), so a replayed code's handler can find it.
pub fn offline_session_id(request: &str) -> String {
    derived_id("annals offline session", request)
}

fn derived_id(purpose: &str, of: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{purpose}\n{of}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

/// Keycloak's rule: offline tokens only for users holding the `offline_access` role.
fn offline_allowed(subject: &tokens::Subject) -> Result<(), OAuthError> {
    match subject.realm_roles.iter().any(|r| r == "offline_access") {
        true => Ok(()),
        false => Err(OAuthError::not_allowed("Offline tokens not allowed for the user or client")),
    }
}

async fn refresh(
    state: &AppState,
    req: &HttpRequest,
    realm: &RealmView,
    client: &ClientView,
    params: &BTreeMap<String, String>,
) -> Result<issue::TokenResponse, OAuthError> {
    let token = required(params, "refresh_token")?;
    let iss = issuer(&state.base_url, &realm.name);
    let now = state.clock.now();
    let expect =
        Expect { realm_id: &realm.id, issuer: &iss, typ: "JWT", audience: Some(&iss), now, allow_expired: false };
    let key = issue::refresh_key(state, realm);
    let claims: RefreshClaims = jwt::verify_hmac(token, &key, &expect).map_err(|e| {
        tracing::debug!(error = %e, "refresh token refused");
        OAuthError::invalid_grant("Invalid refresh token")
    })?;
    if claims.typ != "Refresh" && claims.typ != "Offline" {
        return Err(OAuthError::invalid_grant("Invalid refresh token: not a refresh token"));
    }
    // By `client_id`, and by internal id where the token names it: a client deleted and
    // created again under the same `client_id` does not inherit its predecessor's tokens.
    if claims.azp != client.client_id || claims.client_uuid.as_deref().is_some_and(|u| u != client.id) {
        return Err(OAuthError::invalid_grant("Invalid refresh token: issued to another client"));
    }
    let narrowed = scope::narrow(params.get("scope").map(String::as_str), &claims.scope)?;
    let granted = scope::regrant(&narrowed, client);
    let subject = issue::subject(state, &realm.id, &claims.sub).await?;
    if claims.typ == "Offline" {
        // A user who lost the role since keeps no offline access (Keycloak checks it too).
        offline_allowed(&subject).map_err(|_| OAuthError::invalid_grant("Offline tokens not allowed for the user"))?;
    }
    let it = SessionIssue {
        session_id: claims.session_stream(),
        subject: &subject,
        grant: "refresh_token",
        granted: &granted,
        presented_refresh: Some(claims.jti.clone()),
        nonce: None,
        ids: None,
        sso: false,
        acr_values: None,
        carried_acr: claims.acr.as_deref(),
        request: None,
    };
    issue_in_session(state, req, realm, client, it, None).await
}

async fn password(
    state: &AppState,
    req: &HttpRequest,
    realm: &RealmView,
    client: &ClientView,
    params: &BTreeMap<String, String>,
) -> Result<issue::TokenResponse, OAuthError> {
    if !client.settings.direct_access_grants_enabled {
        return Err(OAuthError::unauthorized_client("Client not allowed for direct access grants"));
    }
    if client.settings.consent_required {
        // No page to ask on: Keycloak refuses direct grants to such clients alike.
        return Err(OAuthError::unauthorized_client("Client requires user consent"));
    }
    let username = required(params, "username")?;
    let pw = required(params, "password")?;
    let granted = scope::grant(params.get("scope").map(String::as_str).unwrap_or(""), client)?;
    let now = state.clock.now();
    // A direct grant is an authorization request too: its outcome is recorded on a stream of
    // its own, failures included.
    let ar_id = uuid::Uuid::now_v7().to_string();
    let started = AuthRequestStarted {
        realm_id: realm.id.clone(),
        client: client.id.clone(),
        client_id: client.client_id.clone(),
        redirect_uri: String::new(),
        response_type: "password".into(),
        response_mode: String::new(),
        scope: scope::to_string(&granted),
        state: None,
        nonce: None,
        code_challenge: None,
        code_challenge_method: None,
        prompt: Vec::new(),
        max_age: None,
        login_hint: None,
        acr_values: None,
        expires_at: now.timestamp() + 60,
        at: now.timestamp(),
    };
    let start = AuthRequestCommand::Start(Box::new(started));
    let checked = super::brute_force::login(state, req, realm, username, pw).await;
    // Offline tokens asked of a user without the role: refused before the login is recorded
    // as a success (the request's outcome is that refusal).
    let refused_offline = match &checked {
        Ok(ok) if granted.contains("offline_access") => {
            offline_allowed(&*issue::subject(state, &realm.id, &ok.user.id).await?).err()
        }
        _ => None,
    };
    let (actor, second, user_id) = match &checked {
        Ok(ok) if refused_offline.is_some() => {
            let error = "not_allowed: Offline tokens not allowed for the user or client".into();
            (Actor::User { id: ok.user.id.clone(), realm: realm.id.clone() }, AuthRequestCommand::Fail { error }, None)
        }
        Ok(ok) => {
            let sid = uuid::Uuid::new_v4().to_string();
            let cmd = AuthRequestCommand::Authenticate {
                realm_id: realm.id.clone(),
                user_id: ok.user.id.clone(),
                session_id: sid,
                method: "pwd".into(),
                auth_time: now.timestamp(),
                code: None,
                consent: None,
            };
            (Actor::User { id: ok.user.id.clone(), realm: realm.id.clone() }, cmd, Some(ok.user.id.clone()))
        }
        Err(LoginError::Rejected { reason, user_id }) => {
            let cmd = AuthRequestCommand::RejectCredentials {
                realm_id: realm.id.clone(),
                username: username.to_string(),
                user_id: user_id.clone(),
                reason: reason.to_string(),
            };
            (client_actor(&realm.id, &client.client_id), cmd, None)
        }
        Err(e) => {
            tracing::error!(error = %e, "password check failed");
            return Err(OAuthError::temporarily_unavailable("sign-in unavailable"));
        }
    };
    let meta = metadata(req, &realm.id, actor);
    let append = crate::provision::create_with::<AuthRequest>(&ar_id, vec![start, second.clone()], now, &meta)
        .map_err(|e| OAuthError::server_error(e.to_string()))?;
    // The subject is resolved before anything is recorded: a user disabled meanwhile (or a
    // directory that fails) still leaves the login's outcome in the log, but no session.
    let subject = match (&second, &user_id) {
        (AuthRequestCommand::Authenticate { .. }, Some(user_id)) => {
            Some(issue::subject(state, &realm.id, user_id).await)
        }
        _ => None,
    };
    // A successful login's session starts in the same transaction as the request's outcome.
    let session_id = match (&second, &user_id, &subject) {
        (AuthRequestCommand::Authenticate { session_id, .. }, Some(user_id), Some(Ok(_))) => {
            let session = super::password_session(realm, user_id, now.timestamp());
            Some((session_id.clone(), session))
        }
        _ => None,
    };
    let mut appends = vec![append];
    let mut seed = None;
    if let Some((sid, started)) = &session_id {
        let start = vec![SessionCommand::Start(started.clone())];
        let (start, session) = crate::provision::create_seeded::<Session>(sid, start, now, &meta)
            .map_err(|e| OAuthError::server_error(e.to_string()))?;
        seed = Some((start.events.len() as u64, session));
        appends.push(start);
    }
    state.store.append_all(appends).await.map_err(|_| OAuthError::temporarily_unavailable("try again"))?;
    if let (Some((sid, _)), Some((version, session))) = (&session_id, seed) {
        // The tokens below are recorded by the session's actor: it starts from this state.
        state.hosts.remember::<Session>(sid, session, version);
    }
    if let Some(e) = refused_offline {
        return Err(e.recorded());
    }
    let subject = match subject {
        Some(found) => found?,
        None => return Err(OAuthError::invalid_grant("Invalid user credentials").recorded()),
    };
    let Some((session_id, _)) = session_id else {
        return Err(OAuthError::server_error("login outcome lost"));
    };
    let it = SessionIssue {
        session_id: &session_id,
        subject: &subject,
        grant: "password",
        granted: &granted,
        presented_refresh: None,
        nonce: None,
        ids: None,
        sso: false,
        acr_values: None,
        carried_acr: None,
        request: Some(&ar_id),
    };
    issue_in_session(state, req, realm, client, it, None).await
}

async fn client_credentials(
    state: &AppState,
    req: &HttpRequest,
    realm: &RealmView,
    client: &ClientView,
    params: &BTreeMap<String, String>,
) -> Result<issue::TokenResponse, OAuthError> {
    if client.settings.public_client {
        return Err(OAuthError::unauthorized_client("Public client not allowed to retrieve service account"));
    }
    if !client.settings.service_accounts_enabled {
        return Err(OAuthError::unauthorized_client("Client not enabled to retrieve service account"));
    }
    let mut granted = scope::grant(params.get("scope").map(String::as_str).unwrap_or(""), client)?;
    // No user is present: no ID token (Keycloak issues none here by default).
    granted.remove("openid");
    let service_account = issue::service_account(state, realm, client).await?;
    let now = state.clock.now();
    let access_exp = now.timestamp() + tokens::access_lifespan(realm, client);
    let jti = issue::token_id();
    let issued = ClientGrantIssued {
        realm_id: realm.id.clone(),
        client: client.id.clone(),
        user_id: service_account.as_ref().map(|s| s.user.id.clone()),
        scope: scope::to_string(&granted),
        expires_at: access_exp,
        at: now.timestamp(),
    };
    let meta = metadata(req, &realm.id, client_actor(&realm.id, &client.client_id));
    let append = crate::provision::create::<ClientGrant>(&jti, ClientGrantCommand::Issue(issued), now, &meta)
        .map_err(|e| OAuthError::server_error(e.to_string()))?;
    let plan = Plan {
        realm,
        client,
        scope: &granted,
        session: None,
        subject: service_account.as_deref(),
        ids: Ids { access: Some(jti), id: None, refresh: None },
        now: now.timestamp(),
        access_exp,
        refresh_exp: 0,
        offline: None,
        nonce: None,
        code: None,
        at_hash: false,
    };
    // Signed before the grant is recorded, handed out only after: the responses of one
    // committed batch then leave back to back (ARCHITECTURE.md, "Signed while the grant
    // commits").
    let signed = issue::sign(state, &plan)?;
    state.store.append(append).await.map_err(|e| {
        tracing::error!(error = %e, "client grant cannot be recorded");
        OAuthError::temporarily_unavailable("try again")
    })?;
    Ok(issue::response(&plan, signed))
}
