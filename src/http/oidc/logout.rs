//! `GET|POST .../logout`: RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
//!
//! With a valid `id_token_hint` (expired ones too: the user may log out long after login) the
//! hinted session ends at once and the browser goes to the registered
//! `post_logout_redirect_uri`, with `state`. Without one, the user confirms on a page whose
//! form only works in the browser it was shown to; then the browser's own session ends.
use super::authorize::display;
use super::{cookies, metadata, realm};
use crate::domain::session::{Session, SessionCommand};
use crate::http::AppState;
use crate::jwt::{self, Expect};
use crate::oidc::{issuer, redirect};
use actix_web::http::header::LOCATION;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use annals_events::Actor;
use annals_projections::clients::ClientView;
use annals_projections::realms::RealmView;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

pub async fn get(state: web::Data<AppState>, req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    let pairs = url::form_urlencoded::parse(req.query_string().as_bytes()).into_owned().collect();
    handle(&state, &req, &name, pairs).await
}

pub async fn post(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let pairs = url::form_urlencoded::parse(&body).into_owned().collect();
    handle(&state, &req, &name, pairs).await
}

/// The post-logout redirect URIs a client registered (Keycloak's `post.logout.redirect.uris`
/// attribute, `##`-separated; `+` means "the redirect URIs").
fn post_logout_uris(client: &ClientView) -> Vec<String> {
    let attr = client.settings.attributes.get("post.logout.redirect.uris").map(String::as_str).unwrap_or("");
    attr.split("##")
        .filter(|s| !s.is_empty())
        .flat_map(|s| match s {
            "+" => client.settings.redirect_uris.clone(),
            other => vec![other.to_string()],
        })
        .collect()
}

/// The claims of a hint this realm issued as an ID token (signature checked; expiry not).
fn hint_claims(state: &AppState, realm: &RealmView, hint: &str) -> Option<Value> {
    let iss = issuer(&state.base_url, &realm.name);
    let expect = Expect {
        realm_id: &realm.id,
        issuer: &iss,
        typ: "JWT",
        audience: None,
        now: state.clock.now(),
        allow_expired: true,
    };
    let claims: Value = {
        let dir = state.read_models.read();
        jwt::verify(hint, |kid| dir.signing_keys.get(kid), &expect).ok()?
    };
    (claims.get("typ").and_then(Value::as_str) == Some("ID")).then_some(claims)
}

async fn handle(state: &AppState, req: &HttpRequest, name: &str, pairs: Vec<(String, String)>) -> HttpResponse {
    let Some(realm) = realm(state, name) else {
        return state.pages.error(StatusCode::NOT_FOUND, "Annals", "Realm does not exist.");
    };
    let shown = display(&realm);
    let bad = |m: &str| state.pages.error(StatusCode::BAD_REQUEST, &shown, m);
    let Ok(p) = crate::oidc::authorize::params(pairs) else { return bad("Invalid request.") };
    let hint = match p.get("id_token_hint") {
        Some(h) => match hint_claims(state, &realm, h) {
            Some(c) => Some(c),
            None => return bad("Invalid parameter: id_token_hint"),
        },
        None => None,
    };
    // The client: from the hint's audience, or `client_id`; they must agree.
    let hinted_client = hint.as_ref().and_then(|c| c.get("aud")).and_then(Value::as_str).map(str::to_string);
    let client_id = match (hinted_client, p.get("client_id")) {
        (Some(a), Some(b)) if a != *b => return bad("Parameter client_id does not match the id_token_hint"),
        (Some(a), _) => Some(a),
        (None, b) => b.cloned(),
    };
    let client = client_id.and_then(|id| state.read_models.read().clients.shared_by_client_id(&realm.id, &id));
    let target = match p.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => match &client {
            Some(c) if redirect::allowed(uri, &post_logout_uris(c)) => Some(uri.clone()),
            _ => return bad("Invalid redirect uri"),
        },
    };
    let secure = state.base_url.starts_with("https://");
    let browser_session = cookies::sso_session(&state.keys, req, &realm.name);
    let session = match (&hint, p.get("confirm")) {
        (Some(c), _) => c.get("sid").and_then(Value::as_str).map(str::to_string),
        (None, Some(token)) => {
            if !cookies::csrf_ok(&state.keys, req, &realm.name, "logout", token) {
                return bad("This logout form expired or was opened in another browser.");
            }
            browser_session.clone()
        }
        (None, None) => return confirmation(state, req, &realm, &p),
    };
    let mut frames = Vec::new();
    let mut session = session;
    // An ID token refreshed through an offline token names the SSO session it came from as
    // `sid`; one issued before that named the offline session, which logout leaves alone:
    // the user means the SSO session that offline session came from.
    if let Some(from) = session.as_deref().and_then(|sid| offline_origin(state, sid)) {
        session = Some(from);
    }
    if let Some(sid) = &session {
        let actor = match &hint {
            Some(c) => Actor::User {
                id: c.get("sub").and_then(Value::as_str).unwrap_or_default().to_string(),
                realm: realm.id.clone(),
            },
            None => Actor::System { component: "logout".into() },
        };
        let meta = metadata(req, &realm.id, actor);
        let cmd = SessionCommand::Logout { client: client.as_ref().map(|c| c.id.clone()) };
        match state.hosts.execute_full::<Session>(sid, cmd, meta).await {
            Ok(done) => {
                // Tokens of the session must be refused by the time the browser moves on.
                let _ = state.read_models.wait_for(done.executed.position, Duration::from_secs(5)).await;
                if done.executed.events > 0 {
                    frames = front_channel_frames(state, &realm, sid, &done.state);
                }
            }
            Err(crate::actors::CommandError::Domain(_)) => {} // already gone
            Err(e) => {
                tracing::error!(error = %e, "logout cannot be recorded");
                return state.pages.error(StatusCode::SERVICE_UNAVAILABLE, &shown, "Please try again in a moment.");
            }
        }
    }
    let target = target.map(|uri| {
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(s) = p.get("state") {
            params.push(("state", s.clone()));
        }
        let reply = crate::oidc::authorize::Reply {
            redirect_uri: uri,
            mode: crate::oidc::authorize::ResponseMode::Query,
            state: None,
        };
        match params.is_empty() {
            true => reply.redirect_uri.clone(),
            false => crate::oidc::authorize::redirect_url(&reply, &params),
        }
    });
    let mut res = match (target, frames.is_empty()) {
        (Some(url), true) => {
            HttpResponse::Found().insert_header((LOCATION, url)).insert_header(("Cache-Control", "no-store")).finish()
        }
        // Front-channel logout: the clients' logout pages load in frames, then the browser
        // moves on (by itself after two seconds, or by the link; no JavaScript needed).
        (next, _) => state.pages.respond(
            StatusCode::OK,
            "logged_out.html",
            minijinja::context! { realm_display => shown.clone(), frames, next },
        ),
    };
    // The browser forgets its session only if it is the one that ended.
    if browser_session.is_some() && browser_session == session {
        let _ = res.add_cookie(&cookies::clear_sso(&realm.name, secure));
        let _ = res.add_cookie(&cookies::clear_browser_state(&realm.name, secure));
    }
    res
}

/// The SSO session an offline session was issued from, when `sid` is one that is live.
fn offline_origin(state: &AppState, sid: &str) -> Option<String> {
    let dir = state.read_models.read();
    dir.sessions.get(sid).and_then(|s| s.offline_from.clone())
}

/// "Do you want to log out?": a form bound to this browser, carrying the request on.
fn confirmation(state: &AppState, req: &HttpRequest, realm: &RealmView, p: &BTreeMap<String, String>) -> HttpResponse {
    let secure = state.base_url.starts_with("https://");
    let (binding, cookie) = cookies::binding(req, &realm.name, secure);
    let action = format!("{}/realms/{}/protocol/openid-connect/logout", state.base_url, realm.name);
    let keep: Vec<(String, String)> = ["client_id", "post_logout_redirect_uri", "state"]
        .iter()
        .filter_map(|k| p.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    let ctx = minijinja::context! {
        realm_display => display(realm),
        action,
        confirm => cookies::csrf(&state.keys, &binding, &realm.name, "logout"),
        fields => keep,
    };
    let mut res = state.pages.respond(StatusCode::OK, "logout.html", ctx);
    if let Some(c) = cookie {
        let _ = res.add_cookie(&c);
    }
    res
}

/// The front-channel logout URIs of the clients the ended session gave tokens to (Keycloak's
/// `frontchannel.logout.url`, for clients with front-channel logout on), each with `iss` and
/// `sid` (OpenID Connect Front-Channel Logout 1.0 §2).
fn front_channel_frames(
    state: &AppState,
    realm: &RealmView,
    sid: &str,
    session: &crate::domain::session::Session,
) -> Vec<String> {
    let iss = issuer(&state.base_url, &realm.name);
    let dir = state.read_models.read();
    session
        .clients
        .keys()
        .filter_map(|id| dir.clients.get(id))
        .filter(|c| c.settings.frontchannel_logout)
        .filter_map(|c| c.settings.attributes.get("frontchannel.logout.url").filter(|u| url::Url::parse(u).is_ok()))
        .map(|u| {
            let reply = crate::oidc::authorize::Reply {
                redirect_uri: u.clone(),
                mode: crate::oidc::authorize::ResponseMode::Query,
                state: None,
            };
            crate::oidc::authorize::redirect_url(&reply, &[("iss", iss.clone()), ("sid", sid.to_string())])
        })
        .collect()
}
