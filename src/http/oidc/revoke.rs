//! `POST .../revoke` (RFC 7009). A client revokes its own tokens: a refresh token takes the
//! access tokens issued with it along; an access token goes alone. The answer waits until
//! introspection and userinfo on this node refuse the token. A token that is already invalid
//! (or not ours at all) is answered 200, as the RFC asks.
use super::{bearer, client_actor, metadata, oauth_error};
use crate::domain::client_grant::{ClientGrant, ClientGrantCommand};
use crate::domain::session::{Session, SessionCommand};
use crate::http::AppState;
use crate::oidc::OAuthError;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;
use std::time::Duration;

pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (realm, params, client) = match super::client_request(&state, &req, &name, &body, "revoke").await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let Some(token) = params.get("token") else {
        return oauth_error(&OAuthError::invalid_request("Missing parameter: token"));
    };
    let Some(checked) = bearer::verified(&state, &realm, token) else { return HttpResponse::Ok().finish() };
    let claims = checked.claims();
    let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_string);
    if text("azp").as_deref() != Some(client.client_id.as_str()) {
        let e = OAuthError::unauthorized_client("Token was issued to another client");
        super::note_refused(&state, &req, &realm, "revoke", &params, &e).await;
        return oauth_error(&e);
    }
    let Some(jti) = text("jti") else { return HttpResponse::Ok().finish() };
    let meta = metadata(&req, &realm.id, client_actor(&realm.id, &client.client_id));
    let done = match (crate::oidc::tokens::session_stream(claims).map(str::to_string), &checked) {
        (Some(sid), bearer::Checked::Refresh(_)) => {
            let cmd = SessionCommand::RevokeRefresh { client: client.id.clone(), refresh_token_id: jti };
            state.hosts.execute::<Session>(&sid, cmd, meta).await.map(|d| d.position).map_err(|e| e.to_string())
        }
        (Some(sid), bearer::Checked::Access(_)) => {
            let cmd = SessionCommand::RevokeTokens {
                client: client.id.clone(),
                token_ids: vec![jti],
                reason: "revocation_endpoint".into(),
            };
            state.hosts.execute::<Session>(&sid, cmd, meta).await.map(|d| d.position).map_err(|e| e.to_string())
        }
        (None, bearer::Checked::Access(_)) => {
            let cmd = ClientGrantCommand::Revoke { reason: "revocation_endpoint".into() };
            state.hosts.execute::<ClientGrant>(&jti, cmd, meta).await.map(|d| d.position).map_err(|e| e.to_string())
        }
        (None, bearer::Checked::Refresh(_)) => Ok(0),
    };
    match done {
        Ok(position) => {
            if position > 0 && state.read_models.wait_for(position, Duration::from_secs(5)).await.is_err() {
                return oauth_error(&OAuthError::temporarily_unavailable("revocation recorded; not yet visible"));
            }
            HttpResponse::Ok().finish()
        }
        // A session or grant that ended already has nothing left to revoke.
        Err(e) if e.contains("not found") => HttpResponse::Ok().finish(),
        Err(e) => {
            tracing::error!(error = %e, "revocation failed");
            // RFC 7009 §2.2.1: the client may retry.
            oauth_error(&OAuthError::temporarily_unavailable("try again"))
        }
    }
}
