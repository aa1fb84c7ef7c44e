//! `GET /realms/{realm}/.well-known/openid-configuration` (OpenID Connect Discovery 1.0, RFC
//! 8414 members): what this server implements, and nothing it does not.
use super::{realm, realm_not_found};
use crate::http::AppState;
use crate::oidc::{issuer, scope};
use actix_web::http::header::{CacheControl, CacheDirective, ACCESS_CONTROL_ALLOW_ORIGIN};
use actix_web::{web, HttpResponse};
use serde_json::json;

pub async fn openid_configuration(state: web::Data<AppState>, name: web::Path<String>) -> HttpResponse {
    let Some(realm) = realm(&state, &name) else { return realm_not_found() };
    let realm_loa = crate::oidc::acr::loa_map(crate::oidc::acr::realm_attribute(&realm));
    let iss = issuer(&state.base_url, &name);
    let oidc = format!("{iss}/protocol/openid-connect");
    let algs = ["RS256", "ES256", "EdDSA"];
    let body = json!({
        "issuer": iss,
        "authorization_endpoint": format!("{oidc}/auth"),
        "token_endpoint": format!("{oidc}/token"),
        "introspection_endpoint": format!("{oidc}/token/introspect"),
        "userinfo_endpoint": format!("{oidc}/userinfo"),
        "revocation_endpoint": format!("{oidc}/revoke"),
        "jwks_uri": format!("{oidc}/certs"),
        "end_session_endpoint": format!("{oidc}/logout"),
        "check_session_iframe": format!("{oidc}/login-status-iframe.html"),
        "grant_types_supported": ["authorization_code", "implicit", "refresh_token", "password", "client_credentials"],
        "response_types_supported": ["code", "id_token", "token", "id_token token", "code id_token", "code token", "code id_token token"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "userinfo_signing_alg_values_supported": ["none"],
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "code_challenge_methods_supported": ["S256", "plain"],
        "scopes_supported": scope::KNOWN,
        "claims_supported": ["aud", "sub", "iss", "auth_time", "name", "given_name", "family_name", "preferred_username", "email", "email_verified", "acr", "azp", "sid", "nonce"],
        "claims_parameter_supported": false,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA", "HS256", "HS384", "HS512"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"],
        "authorization_response_iss_parameter_supported": true,
        "prompt_values_supported": ["none", "login", "consent"],
        "acr_values_supported": crate::oidc::acr::supported(&realm_loa),
        "frontchannel_logout_supported": true,
        "frontchannel_logout_session_supported": true,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
    });
    // Readable from any origin (browser relying parties discover too); a short cache is safe
    // because nothing here changes without a deployment.
    HttpResponse::Ok()
        .insert_header(CacheControl(vec![CacheDirective::Public, CacheDirective::MaxAge(300)]))
        .insert_header((ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .json(body)
}
