//! `GET|POST .../userinfo` (OIDC Core §5.3): the user's claims for an active access token
//! (RFC 6750: `Authorization: Bearer`, or `access_token` in a POST form).
use super::{bearer, realm};
use crate::http::AppState;
use crate::oidc::scope;
use actix_web::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

fn refuse(error: &str, description: &str) -> HttpResponse {
    // RFC 6750 §3.1: a request without any token gets a bare challenge.
    let challenge = match error {
        "" => "Bearer realm=\"annals\"".to_string(),
        _ => format!("Bearer realm=\"annals\", error=\"{error}\", error_description=\"{description}\""),
    };
    let res = match error {
        "invalid_request" => HttpResponse::BadRequest(),
        "insufficient_scope" => HttpResponse::Forbidden(),
        _ => HttpResponse::Unauthorized(),
    }
    .insert_header((WWW_AUTHENTICATE, challenge))
    .json(json!({ "error": error, "error_description": description }));
    res
}

pub async fn userinfo(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let Some(realm) = realm(&state, &name) else { return super::realm_not_found() };
    let header = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let from_header = header
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.to_string());
    let from_form = (req.method() == actix_web::http::Method::POST && !body.is_empty())
        .then(|| super::form(&req, &body).ok().and_then(|f| f.get("access_token").cloned()))
        .flatten();
    let token = match (from_header, from_form) {
        (Some(_), Some(_)) => return refuse("invalid_request", "Token given more than once"),
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => return refuse("", "Token not provided"),
    };
    let Some(bearer::Checked::Access(access)) = bearer::active(&state, &realm, token.trim()).await else {
        return refuse("invalid_token", "Token verification failed");
    };
    let claims = &access.claims;
    let Some(sub) = claims.get("sub").and_then(Value::as_str) else {
        return refuse("invalid_token", "Token has no user");
    };
    let subject = match super::issue::subject(&state, &realm.id, sub).await {
        Ok(s) => s,
        Err(_) => return refuse("invalid_token", "User not found or disabled"),
    };
    let client = claims.get("azp").and_then(Value::as_str).unwrap_or_default();
    let Some(client) = state.read_models.read().clients.shared_by_client_id(&realm.id, client) else {
        return refuse("invalid_token", "Client not found");
    };
    let granted = scope::regrant(claims.get("scope").and_then(Value::as_str).unwrap_or(""), &client);
    // OIDC Core §5.3: userinfo serves OpenID requests only.
    if !granted.contains("openid") {
        return refuse("insufficient_scope", "Token lacks the openid scope");
    }
    #[derive(serde::Serialize)]
    struct UserInfo<'a> {
        sub: &'a str,
        #[serde(flatten)]
        claims: crate::oidc::tokens::UserClaims<'a>,
    }
    let out = UserInfo { sub, claims: crate::oidc::tokens::UserClaims::new(&subject, &granted) };
    HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(out)
}
