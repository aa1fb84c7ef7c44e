//! The browser's cookies: the SSO session, the binding of a login form to its browser, and
//! the browser state that OpenID Connect Session Management's iframe reads.
//!
//! Neither cookie is a bare identifier. The SSO cookie is `{session id}.{MAC}`: the session id
//! also travels in ID tokens (`sid`), and knowing it must not be enough to ride the session.
//! The login binding is a random value; the form's CSRF token is a MAC over it and the
//! authorization request, so a login form only works in the browser it was shown to.
use crate::secrets::ServerKeys;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::HttpRequest;

pub const SSO: &str = "ANNALS_SESSION";
pub const BINDING: &str = "ANNALS_AUTH";
/// The OP browser state (Session Management 1.0 §3): readable by the check-session iframe's
/// script, so not HttpOnly; a hash of the session id, so it rides nothing.
pub const BROWSER_STATE: &str = "ANNALS_SESSION_STATE";

fn mac(keys: &ServerKeys, purpose: &str, parts: &[&str]) -> String {
    keys.digest(&format!("{purpose}\n{}", parts.join("\n"))).value
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a.as_bytes(), b.as_bytes())
}

/// Cookies live under the realm's path, so realms never see each other's.
fn build(name: &'static str, value: String, realm: &str, secure: bool) -> Cookie<'static> {
    Cookie::build(name, value)
        .path(format!("/realms/{realm}/"))
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .finish()
}

pub fn sso(keys: &ServerKeys, realm: &str, session_id: &str, secure: bool) -> Cookie<'static> {
    let value = format!("{session_id}.{}", mac(keys, "sso", &[realm, session_id]));
    build(SSO, value, realm, secure)
}

/// The session id the SSO cookie names, if the cookie is authentic.
pub fn sso_session(keys: &ServerKeys, req: &HttpRequest, realm: &str) -> Option<String> {
    let cookie = req.cookie(SSO)?;
    let (sid, tag) = cookie.value().split_once('.')?;
    same(tag, &mac(keys, "sso", &[realm, sid])).then(|| sid.to_string())
}

/// The login binding of this browser, and a new cookie when it had none.
pub fn binding(req: &HttpRequest, realm: &str, secure: bool) -> (String, Option<Cookie<'static>>) {
    match req.cookie(BINDING).map(|c| c.value().to_string()).filter(|v| v.len() == 43) {
        Some(v) => (v, None),
        None => {
            let v = crate::oidc::random_token(32);
            (v.clone(), Some(build(BINDING, v, realm, secure)))
        }
    }
}

/// The CSRF token of a form: bound to the browser, the realm and what the form acts on.
pub fn csrf(keys: &ServerKeys, binding: &str, realm: &str, subject: &str) -> String {
    mac(keys, "csrf", &[binding, realm, subject])
}

/// Whether the form's CSRF token belongs to this browser and this authorization request.
pub fn csrf_ok(keys: &ServerKeys, req: &HttpRequest, realm: &str, subject: &str, token: &str) -> bool {
    let Some(binding) = req.cookie(BINDING) else { return false };
    same(token, &csrf(keys, binding.value(), realm, subject))
}

/// The browser state of a session: changes with every login and is gone after logout. It is
/// the SHA-256 of the session id, so keycloak-js, which posts the ID token's `sid` to the
/// iframe, can be answered too; the session id is no credential (the SSO cookie is MAC'd).
pub fn browser_state(session_id: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(session_id.as_bytes()))
}

/// The browser-state cookie. Relying parties frame the iframe from their own site, so over
/// HTTPS it is `SameSite=None`; the script reads it, so it is not HttpOnly.
pub fn browser_state_cookie(value: String, realm: &str, secure: bool) -> Cookie<'static> {
    Cookie::build(BROWSER_STATE, value)
        .path(format!("/realms/{realm}/"))
        .http_only(false)
        .secure(secure)
        .same_site(if secure { SameSite::None } else { SameSite::Lax })
        .finish()
}

/// Removes the browser-state cookie (after logout), so every relying party's iframe check
/// answers `changed`.
pub fn clear_browser_state(realm: &str, secure: bool) -> Cookie<'static> {
    let mut c = browser_state_cookie(String::new(), realm, secure);
    c.make_removal();
    c
}

/// Removes the SSO cookie (after logout).
pub fn clear_sso(realm: &str, secure: bool) -> Cookie<'static> {
    let mut c = build(SSO, String::new(), realm, secure);
    c.make_removal();
    c
}
