//! `GET .../protocol/openid-connect/login-status-iframe.html`: OpenID Connect Session
//! Management's `check_session_iframe` (Keycloak's URL). Relying parties frame it from their
//! own origins, so unlike every other page it may be framed anywhere; it holds no secret and
//! acts on nothing, it only compares a relying party's `session_state` with the browser-state
//! cookie.
use actix_web::http::header::{CacheControl, CacheDirective, ContentType};
use actix_web::HttpResponse;

const PAGE: &str = include_str!("check_session.html");

pub async fn iframe() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::html())
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        .insert_header(("Content-Security-Policy", "frame-ancestors *; default-src 'none'; script-src 'unsafe-inline'"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(PAGE)
}
