//! `POST .../token/introspect` (RFC 7662): for confidential clients. Reflects revocation and
//! logout at once; anything not active is `{"active": false}` and nothing more.
use super::{bearer, json_bytes_no_store, json_no_store, oauth_error};
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
    match &checked {
        bearer::Checked::Access(a) => json_bytes_no_store(a.introspection(|c| answer(c, "Bearer"))),
        // Keycloak's kinds: `Refresh`, or `Offline` for an offline token.
        bearer::Checked::Refresh(c) => {
            json_bytes_no_store(answer(c, c.get("typ").and_then(Value::as_str).unwrap_or("Refresh")))
        }
    }
}

/// The active answer: the claims with RFC 7662's members.
fn answer(claims: &Value, token_type: &str) -> Vec<u8> {
    let mut members = serde_json::Map::new();
    members.insert("active".into(), json!(true));
    if let Some(azp) = claims.get("azp") {
        members.insert("client_id".into(), azp.clone());
    }
    if let Some(u) = claims.get("preferred_username") {
        members.insert("username".into(), u.clone());
    }
    members.insert("token_type".into(), json!(token_type));
    with_members(claims, &members)
}

/// The claims as a JSON object with RFC 7662's members added: written once, rather than the
/// claims copied, extended and written (the copy was 4% of an introspection). Should the
/// claims already hold a member's name, they are copied and the member wins (one key, once).
fn with_members(claims: &Value, members: &serde_json::Map<String, Value>) -> Vec<u8> {
    if let Value::Object(c) = claims {
        if members.keys().any(|k| c.contains_key(k)) {
            let mut merged = c.clone();
            merged.extend(members.iter().map(|(k, v)| (k.clone(), v.clone())));
            return serde_json::to_vec(&merged).unwrap_or_default();
        }
    }
    let mut out = serde_json::to_vec(claims).unwrap_or_default();
    let extra = serde_json::to_vec(members).unwrap_or_default();
    match (out.last(), out.len() > 2, extra.len() > 2) {
        (Some(b'}'), true, true) => {
            out.pop();
            out.push(b',');
            out.extend_from_slice(&extra[1..]);
            out
        }
        _ => extra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_claims_when_members_are_added_then_one_object_holds_both() {
        let mut members = serde_json::Map::new();
        members.insert("active".into(), json!(true));
        members.insert("client_id".into(), json!("web"));
        let out: Value = serde_json::from_slice(&with_members(&json!({"azp": "web", "exp": 5}), &members)).unwrap();
        assert_eq!(out, json!({"azp": "web", "exp": 5, "active": true, "client_id": "web"}));
        let out: Value = serde_json::from_slice(&with_members(&json!({}), &members)).unwrap();
        assert_eq!(out, json!({"active": true, "client_id": "web"}));
        let bytes = with_members(&json!({"client_id": "mapped", "exp": 5}), &members);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(text.matches("client_id").count(), 1, "{text}");
        let out: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(out, json!({"client_id": "web", "exp": 5, "active": true}));
    }
}
