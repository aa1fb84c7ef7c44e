//! `POST .../token/introspect` (RFC 7662): for confidential clients. Reflects revocation and
//! logout at once; anything not active is `{"active": false}` and nothing more.
use super::{bearer, json_no_store, oauth_error};
use crate::http::AppState;
use crate::oidc::OAuthError;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

pub async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (realm, params, client) = match super::client_request(&state, &req, &name, &body, "introspect").await {
        Ok(r) => r,
        Err(res) => return res,
    };
    if client.settings.public_client {
        let e = OAuthError::invalid_client("Public clients may not introspect");
        super::note_refused(&state, &req, &realm, "introspect", &params, &e).await;
        return oauth_error(&e);
    }
    let Some(token) = params.get("token") else {
        return oauth_error(&OAuthError::invalid_request("Missing parameter: token"));
    };
    let Some(checked) = bearer::active(&state, &realm, token).await else {
        return json_no_store(json!({ "active": false }));
    };
    let mut out = checked.claims().clone();
    if let Value::Object(m) = &mut out {
        m.insert("active".into(), json!(true));
        if let Some(azp) = m.get("azp").cloned() {
            m.insert("client_id".into(), azp);
        }
        if let Some(u) = m.get("preferred_username").cloned() {
            m.insert("username".into(), u);
        }
        let kind = match &checked {
            bearer::Checked::Access(_) => "Bearer",
            // Keycloak's kinds: `Refresh`, or `Offline` for an offline token.
            bearer::Checked::Refresh(c) => c.get("typ").and_then(Value::as_str).unwrap_or("Refresh"),
        };
        m.insert("token_type".into(), json!(kind));
    }
    json_no_store(out)
}
