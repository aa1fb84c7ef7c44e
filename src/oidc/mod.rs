//! OpenID Connect and OAuth 2.0 as rules, independent of actix: what a request may ask for,
//! which redirect URIs match, how clients authenticate, what tokens contain. `http::oidc`
//! turns requests into calls here and the results into responses.
pub mod acr;
pub mod assertion;
pub mod authorize;
pub mod client_auth;
pub mod client_jwks;
pub mod error;
pub mod form;
pub mod login;
pub mod redirect;
pub mod scope;
pub mod tokens;

pub use error::OAuthError;

/// The issuer of a realm (`iss`, discovery), as Keycloak forms it.
pub fn issuer(base_url: &str, realm_name: &str) -> String {
    format!("{base_url}/realms/{realm_name}")
}

/// A random URL-safe string of `bytes` bytes of entropy (codes, token ids, CSRF cookies).
pub fn random_token(bytes: usize) -> String {
    use base64::Engine;
    let mut buf = vec![0u8; bytes];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}
