//! OpenID Connect endpoints, on Keycloak's URLs (`/realms/{realm}/protocol/openid-connect/...`).
pub(crate) mod admin_token;
mod authorize;
mod backchannel;
mod bearer;
mod brute_force;
mod certs;
mod check_session;
mod code_redemption;
mod cookies;
mod discovery;
mod introspect;
mod issue;
mod login;
mod logout;
mod replay;
mod revoke;
mod token;
mod userinfo;

pub use backchannel::spawn as spawn_backchannel_logout;
pub use bearer::VerifiedTokens;
pub use brute_force::LoginGates;
pub use issue::Subjects;
pub use replay::spawn as spawn_replay_revocation;

use crate::http::{AppState, Correlation};
use crate::oidc::OAuthError;
use actix_web::http::header::{CacheControl, CacheDirective, HeaderValue, PRAGMA, WWW_AUTHENTICATE};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use annals_events::{Actor, Metadata};
use annals_projections::realms::RealmView;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest form body accepted by the OAuth endpoints.
const FORM_LIMIT: usize = 64 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    let oidc = "/protocol/openid-connect";
    let form = || web::PayloadConfig::new(FORM_LIMIT);
    // One scope for the realm segment, registered before any other pattern (only the static
    // health and metrics paths come first): it is the only pattern a realm request is matched
    // against (actix tries routes in order, each pattern a
    // regular expression run by a backtracking-free but slow engine: five tried before it
    // cost 9% of an introspection), and the endpoints inside are plain strings.
    let realm = crate::http::ssf::configure_in_realm(
        web::scope("/realms/{realm}")
            .service(web::resource(format!("{oidc}/certs")).route(web::get().to(certs::certs)))
            .service(
                web::resource("/.well-known/openid-configuration")
                    .route(web::get().to(discovery::openid_configuration)),
            )
            .service(
                web::resource(format!("{oidc}/auth"))
                    .app_data(form())
                    .route(web::get().to(authorize::get))
                    .route(web::post().to(authorize::post)),
            )
            .service(
                web::resource("/login-actions/authenticate")
                    .app_data(form())
                    .route(web::post().to(login::authenticate)),
            )
            .service(web::resource("/login-actions/consent").app_data(form()).route(web::post().to(login::consent)))
            .service(
                web::resource(format!("{oidc}/login-status-iframe.html")).route(web::get().to(check_session::iframe)),
            )
            .service(
                web::resource(format!("{oidc}/login-status-iframe.html/init"))
                    .route(web::get().to(check_session::init)),
            )
            .service(web::resource(format!("{oidc}/token")).app_data(form()).route(web::post().to(token::token)))
            .service(
                web::resource(format!("{oidc}/logout"))
                    .app_data(form())
                    .route(web::get().to(logout::get))
                    .route(web::post().to(logout::post)),
            )
            .service(
                web::resource(format!("{oidc}/userinfo"))
                    .app_data(form())
                    .route(web::get().to(userinfo::userinfo))
                    .route(web::post().to(userinfo::userinfo)),
            )
            .service(
                web::resource(format!("{oidc}/token/introspect"))
                    .app_data(form())
                    .route(web::post().to(introspect::introspect)),
            )
            .service(web::resource(format!("{oidc}/revoke")).app_data(form()).route(web::post().to(revoke::revoke))),
    );
    cfg.service(realm);
}

/// Keycloak's answer for a realm name it does not know (the same for every realm endpoint).
pub(crate) fn realm_not_found() -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({ "error": "Realm does not exist" }))
}

/// The session a password login starts: method `pwd`, level 1, the realm's SSO lifetimes.
fn password_session(realm: &RealmView, user_id: &str, auth_time: i64) -> annals_events::session::SessionStarted {
    annals_events::session::SessionStarted {
        realm_id: realm.id.clone(),
        user_id: user_id.to_string(),
        method: "pwd".into(),
        acr: "1".into(),
        auth_time,
        idle_timeout: realm.settings.sso_session_idle_timeout as i64,
        max_lifespan: realm.settings.sso_session_max_lifespan as i64,
        offline_from: None,
        started_at: None,
    }
}

/// The realm named in the path, if it exists and is enabled.
fn realm(state: &AppState, name: &str) -> Option<Arc<RealmView>> {
    state.read_models.read().realms.shared_by_name(name).filter(|r| r.settings.enabled).cloned()
}

fn no_store(mut res: HttpResponse) -> HttpResponse {
    res.headers_mut().insert(actix_web::http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut().insert(PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// An OAuth error as the token, introspection and revocation endpoints answer it (RFC 6749
/// §5.2): 400, or 401 with `WWW-Authenticate` for a client that failed to authenticate.
pub(crate) fn oauth_error(e: &OAuthError) -> HttpResponse {
    let body = serde_json::json!({ "error": e.code, "error_description": e.description });
    let res = match e.code {
        "invalid_client" => HttpResponse::Unauthorized()
            .insert_header((WWW_AUTHENTICATE, "Basic realm=\"annals\", charset=\"UTF-8\""))
            .json(body),
        "server_error" => HttpResponse::InternalServerError().json(body),
        "temporarily_unavailable" => HttpResponse::ServiceUnavailable().insert_header(("Retry-After", "1")).json(body),
        _ => HttpResponse::BadRequest().json(body),
    };
    no_store(res)
}

/// A successful JSON answer that must not be cached (tokens, introspection).
pub(crate) fn json_no_store(body: impl serde::Serialize) -> HttpResponse {
    no_store(HttpResponse::Ok().insert_header(CacheControl(vec![CacheDirective::NoStore])).json(body))
}

/// A successful JSON answer, already written, that must not be cached.
pub(crate) fn json_bytes_no_store(body: impl Into<web::Bytes>) -> HttpResponse {
    no_store(
        HttpResponse::Ok()
            .insert_header(CacheControl(vec![CacheDirective::NoStore]))
            .content_type(actix_web::http::header::ContentType::json())
            .body(body.into()),
    )
}

/// The form parameters of a POST body; a repeated parameter is refused (RFC 6749 §3.2).
pub(crate) fn form(req: &HttpRequest, body: &[u8]) -> Result<BTreeMap<String, String>, OAuthError> {
    let ct = req.headers().get(actix_web::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request("Content-Type must be application/x-www-form-urlencoded"));
    }
    crate::oidc::authorize::params(crate::oidc::form::parse(body)).map_err(OAuthError::invalid_request)
}

/// Event metadata for a request: who (when known), from where, correlated with the request.
pub(crate) fn metadata(req: &HttpRequest, realm_id: &str, actor: Actor) -> Metadata {
    let correlation_id = req.extensions().get::<Correlation>().and_then(|c| uuid::Uuid::parse_str(&c.0).ok());
    let user_agent = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(256).collect());
    Metadata {
        realm: Some(realm_id.to_string()),
        correlation_id,
        causation_id: None,
        actor,
        source_ip: req.peer_addr().map(|a| a.ip().to_string()),
        user_agent,
    }
}

/// The realm, form and authenticated client of a POST that a client makes for itself
/// (introspection, revocation); the error response otherwise.
pub(crate) async fn client_request(
    state: &AppState,
    req: &HttpRequest,
    name: &str,
    body: &[u8],
    endpoint: &'static str,
) -> Result<(Arc<RealmView>, BTreeMap<String, String>, Arc<annals_projections::clients::ClientView>), HttpResponse> {
    let realm = realm(state, name).ok_or_else(realm_not_found)?;
    let params = form(req, body).map_err(|e| oauth_error(&e))?;
    match token::authenticated_client(state, req, &realm, &params).await {
        Ok(client) => Ok((realm, params, client)),
        Err(e) => {
            note_refused(state, req, &realm, endpoint, &params, &e).await;
            Err(oauth_error(&e))
        }
    }
}

/// Records a client's refused request as a `rejected_request` fact (see `crate::rejections`),
/// unless an aggregate's event already says why, or the refusal is not about who the client
/// is or what it presented (a missing parameter, an unsupported grant, a server error).
pub(crate) async fn note_refused(
    state: &AppState,
    req: &HttpRequest,
    realm: &RealmView,
    endpoint: &'static str,
    params: &BTreeMap<String, String>,
    e: &OAuthError,
) {
    if e.recorded {
        return;
    }
    let grant_type = params.get("grant_type").filter(|_| endpoint == "token").cloned();
    // Keycloak's names for these errors.
    let reason = match (e.code, grant_type.as_deref()) {
        ("invalid_client", _) => "invalid_client_credentials",
        ("invalid_grant", Some("authorization_code")) => "invalid_code",
        ("invalid_grant", Some("refresh_token")) => "invalid_token",
        ("invalid_grant", _) => "invalid_grant",
        ("unauthorized_client", _) => "not_allowed",
        _ => return,
    };
    let header = req.headers().get(actix_web::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let client_id = crate::oidc::client_auth::presented(header, params)
        .ok()
        .map(|p| p.client_id)
        .or_else(|| params.get("client_id").cloned());
    let refused = crate::rejections::Refused {
        endpoint,
        reason,
        description: e.description.clone(),
        client_id,
        grant_type,
        redirect_uri: None,
    };
    let meta = metadata(req, &realm.id, Actor::System { component: "rejections".into() });
    state.rejections.note(refused, meta).await;
}

/// The `Actor` of a client acting for itself.
pub(crate) fn client_actor(realm_id: &str, client_id: &str) -> Actor {
    Actor::Client { client_id: client_id.to_string(), realm: realm_id.to_string() }
}
