//! `POST /realms/{realm}/login-actions/authenticate?ar=...`: the login form's submission, and
//! `POST /realms/{realm}/login-actions/consent?ar=...`: the consent page's.
//!
//! The CSRF token must belong to this browser and this authorization request. Each failed
//! check is an event of the request; success starts a session and completes the request.
use super::authorize::{answer_consent, complete, display, login_page};
use super::{cookies, form, metadata, realm};
use crate::actors::CommandError;
use crate::credentials::password;
use crate::domain::auth_request::{AuthRequest, AuthRequestCommand, AuthRequestError};
use crate::domain::user::{User, UserCommand};
use crate::http::AppState;
use crate::oidc::login::LoginError;
use crate::oidc::tokens::SessionRef;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use annals_events::Actor;
use annals_projections::realms::RealmView;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
pub struct Query {
    ar: String,
}

/// A login form's realm, authorization request id and fields.
type Posted = (std::sync::Arc<RealmView>, String, BTreeMap<String, String>);

/// A login-actions form as posted: its realm, its authorization request and its fields, once
/// the CSRF token shows it comes from the browser the form was shown to.
fn posted(
    state: &AppState,
    req: &HttpRequest,
    name: &str,
    query: Option<web::Query<Query>>,
    body: &[u8],
) -> Result<Posted, Box<HttpResponse>> {
    let Some(realm) = realm(state, name) else {
        return Err(Box::new(state.pages.error(StatusCode::NOT_FOUND, "Annals", "Realm does not exist.")));
    };
    let bad = |m: &str| Box::new(state.pages.error(StatusCode::BAD_REQUEST, &display(&realm), m));
    let Some(ar_id) = query.map(|q| q.into_inner().ar).filter(|a| uuid::Uuid::parse_str(a).is_ok()) else {
        return Err(bad("Invalid request."));
    };
    let Ok(fields) = form(req, body) else { return Err(bad("Invalid request.")) };
    let csrf = fields.get("csrf").map(String::as_str).unwrap_or("");
    if !cookies::csrf_ok(&state.keys, req, &realm.name, &ar_id, csrf) {
        return Err(bad(
            "This page expired or was opened in another browser. Go back to the application and sign in again.",
        ));
    }
    Ok((realm, ar_id, fields))
}

pub async fn authenticate(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    query: Option<web::Query<Query>>,
    body: web::Bytes,
) -> HttpResponse {
    let (realm, ar_id, fields) = match posted(&state, &req, &name, query, &body) {
        Ok(p) => p,
        Err(res) => return *res,
    };
    let shown = display(&realm);
    let bad = |m: &str| state.pages.error(StatusCode::BAD_REQUEST, &shown, m);
    let username = fields.get("username").map(String::as_str).unwrap_or("");
    let pw = fields.get("password").map(String::as_str).unwrap_or("");
    match super::brute_force::login(&state, &req, &realm, username, pw).await {
        Ok(logged_in) => {
            let user = logged_in.user;
            let meta = metadata(&req, &realm.id, Actor::User { id: user.id.clone(), realm: realm.id.clone() });
            if logged_in.needs_upgrade {
                upgrade_hash(&state, &user.id, pw, meta.clone());
            }
            let now = state.clock.now().timestamp();
            let sid = uuid::Uuid::new_v4().to_string();
            let started = super::password_session(&realm, &user.id, now);
            let session = SessionRef { id: sid.clone(), auth_time: now, acr: "1".into(), version: 0, offline: None };
            complete(&state, &req, &realm, &ar_id, session, Some((started, sid)), "pwd", None).await
        }
        Err(LoginError::Rejected { reason, user_id }) => {
            let actor = match &user_id {
                Some(id) => Actor::User { id: id.clone(), realm: realm.id.clone() },
                None => Actor::System { component: "login".into() },
            };
            let meta = metadata(&req, &realm.id, actor);
            let cmd = AuthRequestCommand::RejectCredentials {
                realm_id: realm.id.clone(),
                username: username.to_string(),
                user_id,
                reason: reason.to_string(),
            };
            match state.hosts.execute::<AuthRequest>(&ar_id, cmd, meta).await {
                Ok(_) => {}
                Err(CommandError::Domain(
                    AuthRequestError::Expired
                    | AuthRequestError::Completed
                    | AuthRequestError::NotFound
                    | AuthRequestError::WrongRealm,
                )) => {
                    return bad("Your login attempt timed out or was already completed. Go back to the application and sign in again.");
                }
                Err(e) => {
                    tracing::error!(error = %e, "failed login cannot be recorded");
                    return state.pages.error(StatusCode::SERVICE_UNAVAILABLE, &shown, "Please try again in a moment.");
                }
            }
            let message = match reason {
                "user_disabled" => "Account is disabled, contact your administrator.",
                _ => "Invalid username or password.",
            };
            login_page(&state, &req, &realm, &ar_id, username, Some(message))
        }
        Err(e) => {
            tracing::error!(error = %e, realm = %realm.name, "password check failed");
            state.pages.error(StatusCode::SERVICE_UNAVAILABLE, &shown, "Sign-in is unavailable at the moment.")
        }
    }
}

pub async fn consent(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    query: Option<web::Query<Query>>,
    body: web::Bytes,
) -> HttpResponse {
    let (realm, ar_id, fields) = match posted(&state, &req, &name, query, &body) {
        Ok(p) => p,
        Err(res) => return *res,
    };
    let bad = |m: &str| state.pages.error(StatusCode::BAD_REQUEST, &display(&realm), m);
    let accept = match fields.get("decision").map(String::as_str) {
        Some("accept") => true,
        Some("deny") => false,
        _ => return bad("Invalid request."),
    };
    answer_consent(&state, &req, &realm, &ar_id, accept).await
}

/// Replaces a legacy (Keycloak) hash with argon2id while the password is known. Best effort:
/// the login does not wait, and a failure only leaves the old hash in place.
fn upgrade_hash(state: &AppState, user_id: &str, pw: &str, meta: annals_events::Metadata) {
    let (hosts, user_id, pw) = (state.hosts.clone(), user_id.to_string(), pw.to_string());
    actix_web::rt::spawn(async move {
        let hash = match tokio::task::spawn_blocking(move || password::hash_password(&pw)).await {
            Ok(Ok(h)) => h,
            _ => return,
        };
        if let Err(e) = hosts.execute::<User>(&user_id, UserCommand::UpgradePasswordHash { hash }, meta).await {
            tracing::warn!(error = %e, "password hash not upgraded");
        }
    });
}
