//! `GET|POST /realms/{realm}/protocol/openid-connect/auth`: the authorization endpoint.
//!
//! Every request is an AuthRequest stream from its first event. A browser with a live SSO
//! session (and no `prompt=login`, `max_age` satisfied) is answered at once; otherwise the
//! login page is shown, bound to this browser by a CSRF token.
use super::{client_actor, cookies, issue, metadata, realm};
use crate::actors::CommandError;
use crate::domain::auth_request::{code_hash, AuthRequest, AuthRequestCommand, AuthRequestError};
use crate::domain::session::{Issue, Session, SessionCommand};
use crate::domain::user::{User, UserCommand};
use crate::http::AppState;
use crate::oidc::authorize::{self as rules, Refusal, Reply, ResponseMode};
use crate::oidc::tokens::SessionRef;
use crate::oidc::{issuer, random_token, scope, OAuthError};
use actix_web::cookie::Cookie;
use actix_web::http::header::{CacheControl, CacheDirective, LOCATION};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use annals_events::auth_request::AuthRequestStarted;
use annals_events::session::SessionStarted;
use annals_projections::realms::RealmView;
use sha2::Digest;

/// Seconds a login may take from the authorization request (Keycloak's login timeout).
const LOGIN_LIFESPAN: i64 = 1800;

pub async fn get(state: web::Data<AppState>, req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    if req.query_string().len() > rules::MAX_QUERY {
        return too_long(&state);
    }
    let pairs = url::form_urlencoded::parse(req.query_string().as_bytes()).into_owned().collect();
    handle(&state, &req, &name, pairs).await
}

pub async fn post(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if body.len() > rules::MAX_QUERY {
        return too_long(&state);
    }
    let pairs = url::form_urlencoded::parse(&body).into_owned().collect();
    handle(&state, &req, &name, pairs).await
}

fn too_long(state: &AppState) -> HttpResponse {
    state.pages.error(StatusCode::URI_TOO_LONG, "Annals", "The request is too long.")
}

pub fn display(realm: &RealmView) -> String {
    realm.settings.display_name.clone().filter(|d| !d.is_empty()).unwrap_or_else(|| realm.name.clone())
}

async fn handle(state: &AppState, req: &HttpRequest, name: &str, pairs: Vec<(String, String)>) -> HttpResponse {
    let Some(realm) = realm(state, name) else {
        return state.pages.error(StatusCode::NOT_FOUND, "Annals", "Realm does not exist.");
    };
    let shown = display(&realm);
    let params = match rules::params(pairs) {
        Ok(p) => p,
        Err(m) => return state.pages.error(StatusCode::BAD_REQUEST, &shown, &format!("Invalid request: {m}.")),
    };
    let client =
        params.get("client_id").and_then(|id| state.read_models.read().clients.shared_by_client_id(&realm.id, id));
    let now = state.clock.now();
    let started = match rules::validate(&params, client.as_deref(), now.timestamp(), LOGIN_LIFESPAN) {
        Ok(s) => s,
        Err(Refusal::Page { reason, message }) => {
            // No client can be told (the redirect is not trusted): the log is where it shows.
            let refused = crate::rejections::Refused {
                endpoint: "auth",
                reason,
                description: message.clone(),
                client_id: params.get("client_id").cloned(),
                redirect_uri: params.get("redirect_uri").cloned(),
                grant_type: None,
            };
            let meta = metadata(req, &realm.id, annals_events::Actor::System { component: "rejections".into() });
            state.rejections.note(refused, meta).await;
            return state.pages.error(StatusCode::BAD_REQUEST, &shown, &message);
        }
        Err(Refusal::Redirect { reply, error }) => return reply_error(state, &realm, &reply, &error),
    };
    let ar_id = uuid::Uuid::now_v7().to_string();
    let meta = metadata(req, &realm.id, client_actor(&realm.id, &started.client_id));
    let start = crate::provision::create_seeded::<AuthRequest>(
        &ar_id,
        vec![AuthRequestCommand::Start(Box::new(started.clone()))],
        now,
        &meta,
    );
    let (append, seed) = match start {
        Ok(created) => created,
        Err(e) => {
            tracing::error!(error = %e, "authorization request cannot be recorded");
            return state.pages.error(StatusCode::INTERNAL_SERVER_ERROR, &shown, "The request cannot be recorded.");
        }
    };
    // The request is recorded with the next commit, not in one of its own: nothing this
    // answer gives depends on it (a login page, or a reply whose code, recorded right after,
    // commits with it). The request's next step finds its actor without reading it back, and
    // appends after it (see ARCHITECTURE.md, "An authorization request's start may wait").
    let version = append.events.len() as u64;
    match state.store.append_deferred(vec![append]).await {
        // Not awaited: a new stream cannot conflict, and a batch that fails is logged by the
        // writer; the request's next step then finds no request and says so.
        Ok(_) => state.hosts.remember::<AuthRequest>(&ar_id, seed, version),
        Err(e) => {
            tracing::error!(error = %e, "authorization request cannot be recorded");
            return state.pages.error(StatusCode::SERVICE_UNAVAILABLE, &shown, "Please try again in a moment.");
        }
    }
    let reply = rules::reply_of(&started);
    let prompt = |p: &str| started.prompt.iter().any(|x| x == p);
    if !prompt("login") {
        if let Some(session) = sso_session(state, req, &realm, &started, now.timestamp()) {
            return complete(state, req, &realm, &ar_id, session, None, "sso", None).await;
        }
    }
    if prompt("none") {
        let _ = state
            .hosts
            .execute::<AuthRequest>(&ar_id, AuthRequestCommand::Fail { error: "login_required".into() }, meta)
            .await;
        return reply_error(state, &realm, &reply, &OAuthError::login_required("Login required"));
    }
    login_page(state, req, &realm, &ar_id, started.login_hint.as_deref().unwrap_or(""), None)
}

/// The browser's SSO session, if it may answer this request without a login.
fn sso_session(
    state: &AppState,
    req: &HttpRequest,
    realm: &RealmView,
    r: &AuthRequestStarted,
    now: i64,
) -> Option<SessionRef> {
    let sid = cookies::sso_session(&state.keys, req, &realm.name)?;
    let dir = state.read_models.read();
    let s = dir.sessions.alive(&sid, now).filter(|s| s.realm_id == realm.id)?;
    if r.max_age.is_some_and(|max| now - s.auth_time > max) {
        return None;
    }
    // acr 0: no active authentication in this request (Keycloak's value for SSO).
    Some(SessionRef { id: sid, auth_time: s.auth_time, acr: "0".into(), version: 0, offline: None })
}

/// The login form for an authorization request, with this browser's CSRF token.
pub fn login_page(
    state: &AppState,
    req: &HttpRequest,
    realm: &RealmView,
    ar_id: &str,
    username: &str,
    error: Option<&str>,
) -> HttpResponse {
    let secure = state.base_url.starts_with("https://");
    let (binding, cookie) = cookies::binding(req, &realm.name, secure);
    let action = format!("{}/realms/{}/login-actions/authenticate?ar={ar_id}", state.base_url, realm.name);
    let ctx = minijinja::context! {
        realm_display => display(realm),
        action,
        csrf => cookies::csrf(&state.keys, &binding, &realm.name, ar_id),
        username,
        error,
        email_allowed => realm.settings.login_with_email_allowed,
    };
    let mut res = state.pages.respond(StatusCode::OK, "login.html", ctx);
    if let Some(c) = cookie {
        let _ = res.add_cookie(&c);
    }
    res
}

/// An error sent back to the client (RFC 6749 §4.1.2.1, with `iss` per RFC 9207).
pub fn reply_error(state: &AppState, realm: &RealmView, reply: &Reply, e: &OAuthError) -> HttpResponse {
    let mut params = vec![("error", e.code.to_string()), ("error_description", e.description.clone())];
    if let Some(s) = &reply.state {
        params.push(("state", s.clone()));
    }
    params.push(("iss", issuer(&state.base_url, &realm.name)));
    deliver(state, reply, &params, Vec::new())
}

/// A response to the client by its response mode: a 302 for query and fragment, an
/// auto-submitting form for form_post.
fn deliver(state: &AppState, reply: &Reply, params: &[(&str, String)], set: Vec<Cookie<'static>>) -> HttpResponse {
    let mut res = match reply.mode {
        ResponseMode::FormPost => {
            let fields: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let ctx = minijinja::context! { action => reply.redirect_uri.clone(), fields };
            state.pages.respond(StatusCode::OK, "form_post.html", ctx)
        }
        _ => HttpResponse::Found()
            .insert_header((LOCATION, rules::redirect_url(reply, params)))
            .insert_header(CacheControl(vec![CacheDirective::NoStore]))
            .finish(),
    };
    for c in &set {
        let _ = res.add_cookie(c);
    }
    res
}

fn timed_out(state: &AppState, realm: &RealmView) -> HttpResponse {
    state.pages.error(
        StatusCode::BAD_REQUEST,
        &display(realm),
        "Your login attempt timed out or was already completed. Go back to the application and sign in again.",
    )
}

/// Ends an authorization request with the user identified: asks for consent where the client
/// requires it, else records the authentication (and the code) and finishes.
#[allow(clippy::too_many_arguments)]
pub async fn complete(
    state: &AppState,
    req: &HttpRequest,
    realm: &RealmView,
    ar_id: &str,
    session: SessionRef,
    new_session: Option<(SessionStarted, String)>,
    method: &str,
    cookie: Option<Cookie<'static>>,
) -> HttpResponse {
    let now = state.clock.now().timestamp();
    // The response type is only known from the request; the code is made before the command
    // so the event can hold its hash. A request without `code` simply drops it.
    let secret = random_token(32);
    let user_id = new_session.as_ref().map(|(s, _)| s.user_id.clone());
    let user_id = match user_id {
        Some(u) => u,
        None => match state.read_models.read().sessions.alive(&session.id, now) {
            Some(s) => s.user_id.clone(),
            None => return timed_out(state, realm),
        },
    };
    let meta = metadata(req, &realm.id, annals_events::Actor::User { id: user_id.clone(), realm: realm.id.clone() });
    let (consent, tokens_at_once) = match consent_needed(state, realm, ar_id, &user_id, &meta).await {
        Ok(c) => c,
        Err(res) => return res,
    };
    let cmd = AuthRequestCommand::Authenticate {
        realm_id: realm.id.clone(),
        user_id: user_id.clone(),
        session_id: session.id.clone(),
        method: method.to_string(),
        auth_time: session.auth_time,
        code: consent.is_none().then(|| (code_hash(&secret), now + code_lifespan(realm))),
        consent: consent.clone(),
    };
    // The session (when new) starts only once the user agrees: a refusal leaves none.
    let (along, seed) = match consent {
        None => match session_start(state, realm, new_session, &meta) {
            Ok(a) => a,
            Err(res) => return *res,
        },
        Some(_) => Default::default(),
    };
    // The code is offered whatever the response type; the aggregate records it only when the
    // request asked for one. The login's record (the user identified, the code, the session)
    // is deferred on a node that is its log's only user when the answer carries no tokens:
    // what it hands out (a code, the SSO cookie) grants nothing until a token is issued, and
    // the code's redemption appends after the record, so its commit includes the record or
    // follows it (see ARCHITECTURE.md, "A login's record may wait"). Tokens in the answer
    // itself may go to a session that exists already, with nothing tying their commit to
    // the record's but the writer's order: the record commits first. So it does where other
    // nodes share the log, since the code's redemption may reach one of them at once.
    let recorded = match tokens_at_once {
        false => state.hosts.execute_deferred_with::<AuthRequest>(ar_id, cmd, meta.clone(), along).await,
        true => state.hosts.execute_with::<AuthRequest>(ar_id, cmd, meta.clone(), along).await,
    };
    let outcome = match recorded {
        Ok(o) => o,
        Err(e) => return step_failed(state, realm, e),
    };
    remember_session(state, seed);
    let Some(started) = outcome.state.request.as_deref().cloned() else { return timed_out(state, realm) };
    if let Some(scopes) = consent {
        return consent_page(state, req, realm, ar_id, &started, &scopes);
    }
    let done = Identified { session, user_id, secret };
    finish(state, realm, ar_id, &started, done, cookie).await
}

/// A new session: its id, and its state and version once its start commits.
type SessionSeed = Option<(String, Session, u64)>;

/// The start of a password login's session, as an append that commits with the request's
/// code: a code never names a session the log lacks, and the login costs one durable commit
/// less. Nothing for an SSO login (its session exists).
fn session_start(
    state: &AppState,
    realm: &RealmView,
    new_session: Option<(SessionStarted, String)>,
    meta: &annals_events::Metadata,
) -> Result<(Vec<crate::store::StreamAppend>, SessionSeed), Box<HttpResponse>> {
    let Some((new, sid)) = new_session else { return Ok(Default::default()) };
    let start = vec![SessionCommand::Start(new)];
    match crate::provision::create_seeded::<Session>(&sid, start, state.clock.now(), meta) {
        Ok((a, session)) => {
            let version = a.events.len() as u64;
            Ok((vec![a], Some((sid, session, version))))
        }
        Err(e) => {
            tracing::error!(error = %e, "session cannot be recorded");
            Err(Box::new(state.pages.error(
                StatusCode::SERVICE_UNAVAILABLE,
                &display(realm),
                "Please try again in a moment.",
            )))
        }
    }
}

/// Once a new session's start has committed (or is queued to, deferred): the code's
/// redemption then finds its actor without reading it back.
fn remember_session(state: &AppState, seed: SessionSeed) {
    if let Some((sid, session, version)) = seed {
        state.hosts.remember::<Session>(&sid, session, version);
    }
}

fn code_lifespan(realm: &RealmView) -> i64 {
    realm.settings.access_code_lifespan.max(1) as i64
}

/// The answer to a login step the request refused: it ended, expired, or is elsewhere.
pub fn step_failed(state: &AppState, realm: &RealmView, e: CommandError<AuthRequestError>) -> HttpResponse {
    match e {
        CommandError::Domain(
            AuthRequestError::Expired
            | AuthRequestError::Completed
            | AuthRequestError::NotFound
            | AuthRequestError::WrongRealm
            | AuthRequestError::AwaitingConsent
            | AuthRequestError::NoConsentPending,
        ) => timed_out(state, realm),
        e => {
            tracing::error!(error = %e, "authorization request failed");
            state.pages.error(StatusCode::SERVICE_UNAVAILABLE, &display(realm), "Please try again in a moment.")
        }
    }
}

/// What the request asks of its answer: the scopes the user must approve before the client
/// gets a code, if any, and whether the answer carries tokens itself (an implicit or hybrid
/// response type). Consent is asked only for a client that requires it (as Keycloak), for the
/// scopes the user has not yet approved, or all of them with `prompt=consent`. With
/// `prompt=none` a needed consent ends the request with `consent_required`.
async fn consent_needed(
    state: &AppState,
    realm: &RealmView,
    ar_id: &str,
    user_id: &str,
    meta: &annals_events::Metadata,
) -> Result<(Option<Vec<String>>, bool), HttpResponse> {
    let outcome = state
        .hosts
        .execute_full::<AuthRequest>(ar_id, AuthRequestCommand::Check, meta.clone())
        .await
        .map_err(|e| step_failed(state, realm, e))?;
    let Some(started) = outcome.state.request.as_deref() else { return Err(timed_out(state, realm)) };
    let (_, token, id_token) = rules::parts(&started.response_type);
    let tokens_at_once = token || id_token;
    let asked = {
        let dir = state.read_models.read();
        let Some(client) = dir.clients.get(&started.client).filter(|c| c.settings.consent_required) else {
            return Ok((None, tokens_at_once));
        };
        let granted = scope::grant(&started.scope, client).unwrap_or_default();
        let asked = scope::needing_consent(&granted);
        let forced = started.prompt.iter().any(|p| p == "consent");
        let given = dir.consents.granted(user_id, &client.id);
        if asked.is_empty() || (!forced && given.is_some_and(|g| asked.iter().all(|s| g.contains(s)))) {
            return Ok((None, tokens_at_once));
        }
        asked
    };
    if started.prompt.iter().any(|p| p == "none") {
        let fail = AuthRequestCommand::Fail { error: "consent_required".into() };
        let _ = state.hosts.execute::<AuthRequest>(ar_id, fail, meta.clone()).await;
        let e = OAuthError::consent_required("Consent required");
        return Err(reply_error(state, realm, &rules::reply_of(started), &e));
    }
    Ok((Some(asked), tokens_at_once))
}

/// The consent page: what the client asks for, and Yes / No, bound to this browser.
fn consent_page(
    state: &AppState,
    req: &HttpRequest,
    realm: &RealmView,
    ar_id: &str,
    started: &AuthRequestStarted,
    scopes: &[String],
) -> HttpResponse {
    let client_name = state
        .read_models
        .read()
        .clients
        .get(&started.client)
        .and_then(|c| c.settings.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| started.client_id.clone());
    let secure = state.base_url.starts_with("https://");
    let (binding, cookie) = cookies::binding(req, &realm.name, secure);
    let action = format!("{}/realms/{}/login-actions/consent?ar={ar_id}", state.base_url, realm.name);
    let texts: Vec<&str> = scopes.iter().map(|s| scope::consent_text(s)).collect();
    let ctx = minijinja::context! {
        realm_display => display(realm),
        client_name,
        scopes => texts,
        action,
        csrf => cookies::csrf(&state.keys, &binding, &realm.name, ar_id),
    };
    let mut res = state.pages.respond(StatusCode::OK, "consent.html", ctx);
    if let Some(c) = cookie {
        let _ = res.add_cookie(&c);
    }
    res
}

/// Who the finished request identified, and the code's secret (its hash is recorded).
pub struct Identified {
    pub session: SessionRef,
    pub user_id: String,
    pub secret: String,
}

/// The request has its code recorded (and a new session with it): issues the front-channel
/// tokens the response type asks for, and answers the client.
async fn finish(
    state: &AppState,
    realm: &RealmView,
    ar_id: &str,
    started: &AuthRequestStarted,
    done: Identified,
    cookie: Option<Cookie<'static>>,
) -> HttpResponse {
    let Identified { session, user_id, secret } = done;
    let reply = rules::reply_of(started);
    let (want_code, want_token, want_id) = rules::parts(&started.response_type);
    let mut params: Vec<(&str, String)> = Vec::new();
    let code = want_code.then(|| format!("{ar_id}.{secret}"));
    if want_token || want_id {
        match front_channel_tokens(state, realm, started, &session, &user_id, code.as_deref(), want_token, want_id)
            .await
        {
            Ok(mut p) => params.append(&mut p),
            Err(e) => return reply_error(state, realm, &reply, &e),
        }
    }
    if let Some(c) = code {
        params.push(("code", c));
    }
    if let Some(s) = &started.state {
        params.push(("state", s.clone()));
    }
    let secure = state.base_url.starts_with("https://");
    let opbs = cookies::browser_state(&session.id);
    params.push(("session_state", session_state(&started.client_id, &started.redirect_uri, &opbs)));
    params.push(("iss", issuer(&state.base_url, &realm.name)));
    let sso = cookie.unwrap_or_else(|| cookies::sso(&state.keys, &realm.name, &session.id, secure));
    deliver(state, &reply, &params, vec![sso, cookies::browser_state_cookie(opbs, &realm.name, secure)])
}

/// The consent page's answer (`POST /realms/{realm}/login-actions/consent?ar=...`): the
/// user's consent is recorded on the user, then the request gets its code; a refusal ends it
/// with `access_denied`.
pub async fn answer_consent(
    state: &AppState,
    req: &HttpRequest,
    realm: &RealmView,
    ar_id: &str,
    accept: bool,
) -> HttpResponse {
    let now = state.clock.now().timestamp();
    let system = metadata(req, &realm.id, annals_events::Actor::System { component: "consent".into() });
    let pending = match state.hosts.execute_full::<AuthRequest>(ar_id, AuthRequestCommand::Check, system).await {
        Ok(o) => o.state,
        Err(e) => return step_failed(state, realm, e),
    };
    let (Some(started), Some(scopes), Some(user_id), Some(sid), Some(auth_time), Some(method)) = (
        pending.request.as_deref().cloned(),
        pending.consent.clone(),
        pending.user_id.clone(),
        pending.session_id.clone(),
        pending.auth_time,
        pending.method.clone(),
    ) else {
        return timed_out(state, realm);
    };
    // The answer must still be able to end this request (the aggregate checks again): so a
    // consent kept on the user below never outlives a request that was already over.
    if started.realm_id != realm.id || now >= started.expires_at {
        return timed_out(state, realm);
    }
    let fresh = method == "pwd";
    if accept {
        // The session the code would join: an SSO session must still be alive (a logout in
        // another tab must not come back), a password login must not have idled out, and
        // the user must still be enabled.
        let alive = match fresh {
            true => now - auth_time < realm.settings.sso_session_idle_timeout as i64,
            false => state.read_models.read().sessions.alive(&sid, now).is_some_and(|s| s.user_id == user_id),
        };
        let enabled = match crate::sqlmodels::users::get(&state.store.pool(), &user_id).await {
            Ok(u) => u.is_some_and(|u| u.realm_id == realm.id && u.profile.enabled),
            Err(e) => {
                tracing::error!(error = %e, "users read model failed");
                return state.pages.error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &display(realm),
                    "Please try again in a moment.",
                );
            }
        };
        if !alive || !enabled {
            return timed_out(state, realm);
        }
    }
    let meta = metadata(req, &realm.id, annals_events::Actor::User { id: user_id.clone(), realm: realm.id.clone() });
    if accept {
        // Kept on the user first: a failure here leaves the request waiting, nothing issued.
        let grant = UserCommand::GrantConsent { client: started.client.clone(), scopes };
        if let Err(e) = state.hosts.execute::<User>(&user_id, grant, meta.clone()).await {
            tracing::error!(error = %e, "consent cannot be recorded");
            return state.pages.error(
                StatusCode::SERVICE_UNAVAILABLE,
                &display(realm),
                "Please try again in a moment.",
            );
        }
    }
    // A password login's session starts with the code; an SSO session exists already.
    let acr = if fresh { "1" } else { "0" };
    let new_session = (accept && fresh).then(|| (super::password_session(realm, &user_id, auth_time), sid.clone()));
    let (along, seed) = match session_start(state, realm, new_session, &meta) {
        Ok(a) => a,
        Err(res) => return *res,
    };
    let secret = random_token(32);
    let code = accept.then(|| (code_hash(&secret), now + code_lifespan(realm)));
    let cmd = AuthRequestCommand::Consent { realm_id: realm.id.clone(), granted: accept, code };
    if let Err(e) = state.hosts.execute_with::<AuthRequest>(ar_id, cmd, meta.clone(), along).await {
        return step_failed(state, realm, e);
    }
    remember_session(state, seed);
    if !accept {
        let e = OAuthError::access_denied("User denied consent");
        return reply_error(state, realm, &rules::reply_of(&started), &e);
    }
    let session = SessionRef { id: sid, auth_time, acr: acr.into(), version: 0, offline: None };
    let done = Identified { session, user_id, secret };
    finish(state, realm, ar_id, &started, done, None).await
}

/// The `session_state` of an authentication response (Session Management 1.0 §3): a salted
/// hash of the client, the relying party's origin and the browser state, so the
/// check-session iframe can tell, for that origin only, whether the browser's session changed.
pub fn session_state(client_id: &str, redirect_uri: &str, opbs: &str) -> String {
    let origin = url::Url::parse(redirect_uri).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
    let salt = crate::oidc::random_token(12);
    let digest = sha2::Sha256::digest(format!("{client_id} {origin} {opbs} {salt}").as_bytes());
    format!("{}.{salt}", hex::encode(digest))
}

/// Tokens the authorization endpoint returns itself (implicit and hybrid flows), recorded in
/// the session first.
#[allow(clippy::too_many_arguments)]
async fn front_channel_tokens(
    state: &AppState,
    realm: &RealmView,
    started: &AuthRequestStarted,
    session: &SessionRef,
    user_id: &str,
    code: Option<&str>,
    want_token: bool,
    want_id: bool,
) -> Result<Vec<(&'static str, String)>, OAuthError> {
    let client = state.read_models.read().clients.shared(&started.client);
    let client = client.ok_or_else(|| OAuthError::unauthorized_client("Client not found"))?;
    let granted = scope::grant(&started.scope, &client)?;
    let now = state.clock.now().timestamp();
    let access_exp = now + crate::oidc::tokens::access_lifespan(realm, &client);
    let ids = issue::Ids { access: want_token.then(issue::token_id), id: want_id.then(issue::token_id), refresh: None };
    let record = Issue {
        client: client.id.clone(),
        grant: "implicit".into(),
        access_token_id: ids.access.clone(),
        id_token_id: ids.id.clone(),
        refresh_token_id: None,
        scope: scope::to_string(&granted),
        expires_at: access_exp,
    };
    let meta = annals_events::Metadata {
        realm: Some(realm.id.clone()),
        actor: annals_events::Actor::User { id: user_id.to_string(), realm: realm.id.clone() },
        ..Default::default()
    };
    let done = state
        .hosts
        .execute_full::<Session>(&session.id, SessionCommand::Issue(record), meta)
        .await
        .map_err(|_| OAuthError::login_required("session is no longer active"))?;
    let acr = crate::oidc::acr::reported(
        &session.acr,
        &done.state.acr,
        started.acr_values.as_deref(),
        &crate::oidc::acr::map_for(realm, &client),
    );
    let session = SessionRef { version: done.executed.version, acr, ..session.clone() };
    let subject = issue::subject(state, &realm.id, user_id).await?;
    let plan = issue::Plan {
        realm,
        client: &client,
        scope: &granted,
        session: Some(session),
        subject: Some(&subject),
        ids,
        now,
        access_exp,
        refresh_exp: 0,
        offline: None,
        nonce: started.nonce.as_deref(),
        code,
        at_hash: true,
    };
    let signed = issue::sign(state, &plan)?;
    let mut out = Vec::new();
    if let Some(a) = signed.access {
        out.push(("access_token", a));
        out.push(("token_type", "Bearer".to_string()));
        out.push(("expires_in", (access_exp - now).to_string()));
    }
    if let Some(i) = signed.id {
        out.push(("id_token", i));
    }
    Ok(out)
}
