//! The browser's cookies: the SSO session, and the binding of a login form to its browser.
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

/// Removes the SSO cookie (after logout).
pub fn clear_sso(realm: &str, secure: bool) -> Cookie<'static> {
    let mut c = build(SSO, String::new(), realm, secure);
    c.make_removal();
    c
}
