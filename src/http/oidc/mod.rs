//! OpenID Connect endpoints, on Keycloak's URLs (`/realms/{realm}/protocol/openid-connect/...`).
mod certs;

use actix_web::{web, HttpResponse};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/realms/{realm}/protocol/openid-connect/certs").route(web::get().to(certs::certs)));
}

/// Keycloak's answer for a realm name it does not know (the same for every realm endpoint).
pub(crate) fn realm_not_found() -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({ "error": "Realm does not exist" }))
}
