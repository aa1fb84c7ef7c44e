//! `GET .../protocol/openid-connect/login-status-iframe.html`: OpenID Connect Session
//! Management's `check_session_iframe` (Keycloak's URL). Relying parties frame it from their
//! own origins, so unlike every other page it may be framed anywhere; it holds no secret and
//! acts on nothing, it only compares a relying party's `session_state` with the browser-state
//! cookie. It answers only pages of an origin the client registered, which it asks
//! `.../login-status-iframe.html/init` about first (as Keycloak's iframe does); otherwise any
//! site could learn whether its visitor is signed in here.
use super::realm;
use crate::http::AppState;
use actix_web::http::header::{CacheControl, CacheDirective, ContentType};
use actix_web::{web, HttpResponse};
use serde::Deserialize;

const PAGE: &str = include_str!("check_session.html");

pub async fn iframe() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::html())
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        .insert_header((
            "Content-Security-Policy",
            "frame-ancestors *; default-src 'none'; script-src 'unsafe-inline'; connect-src 'self'",
        ))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(PAGE)
}

#[derive(Deserialize)]
pub struct Init {
    client_id: String,
    origin: String,
}

/// `GET .../login-status-iframe.html/init?client_id=&origin=`: 204 when pages of `origin`
/// may ask about the client's sessions, 403 otherwise (unknown realm or client included).
pub async fn init(state: web::Data<AppState>, name: web::Path<String>, q: web::Query<Init>) -> HttpResponse {
    let allowed = realm(&state, &name).is_some_and(|realm| {
        let dir = state.read_models.read();
        dir.clients.by_client_id(&realm.id, &q.client_id).is_some_and(|c| {
            c.settings.enabled
                && crate::oidc::redirect::origin_allowed(&q.origin, &c.settings.web_origins, &c.settings.redirect_uris)
        })
    });
    match allowed {
        true => HttpResponse::NoContent().insert_header(CacheControl(vec![CacheDirective::NoStore])).finish(),
        false => HttpResponse::Forbidden().insert_header(CacheControl(vec![CacheDirective::NoStore])).finish(),
    }
}
