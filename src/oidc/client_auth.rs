//! Client authentication at the token, introspection and revocation endpoints (RFC 6749
//! §2.3): `client_secret_basic`, `client_secret_post`, `private_key_jwt` (clients whose
//! authenticator is Keycloak's `client-jwt`), `client_secret_jwt` (`client-secret-jwt`), and
//! `none` for public clients. Exactly one
//! method per request; a confidential client must authenticate, by the method it registered.
use super::OAuthError;
use crate::secrets::ServerKeys;
use annals_projections::clients::ClientView;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::collections::BTreeMap;

/// How a client presented itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    /// Only a `client_id` (public clients).
    None,
    Basic(String),
    Post(String),
    /// A signed assertion (`private_key_jwt`).
    Assertion(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presented {
    pub client_id: String,
    pub method: Method,
}

fn bad(description: &str) -> OAuthError {
    OAuthError::invalid_client(description)
}

/// Reads the credentials of a request from its `Authorization` header and form.
pub fn presented(authorization: Option<&str>, form: &BTreeMap<String, String>) -> Result<Presented, OAuthError> {
    let form_id = form.get("client_id");
    let form_secret = form.get("client_secret");
    if form.contains_key("client_assertion") || form.contains_key("client_assertion_type") {
        if authorization.is_some() || form_secret.is_some() {
            return Err(OAuthError::invalid_request("more than one client authentication method"));
        }
        if form.get("client_assertion_type").map(String::as_str) != Some(super::assertion::JWT_BEARER) {
            return Err(bad("unsupported client_assertion_type"));
        }
        let assertion = form.get("client_assertion").ok_or_else(|| bad("Missing parameter: client_assertion"))?;
        // The client is named by `client_id` or, failing that, by the assertion's `sub`
        // (read unverified here only to find the keys that must verify it).
        let sub = || -> Option<String> {
            let payload = assertion.split('.').nth(1)?;
            let claims: serde_json::Value =
                serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
            Some(claims.get("sub")?.as_str()?.to_string())
        };
        let client_id = form_id.cloned().or_else(sub).ok_or_else(|| bad("client assertion names no client"))?;
        return Ok(Presented { client_id, method: Method::Assertion(assertion.clone()) });
    }
    if let Some(header) = authorization {
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let b64 = match header.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => rest,
            _ => return Err(bad("unsupported authorization scheme")),
        };
        if form_secret.is_some() {
            return Err(OAuthError::invalid_request("more than one client authentication method"));
        }
        let decoded = STANDARD.decode(b64.trim()).map_err(|_| bad("malformed basic credentials"))?;
        let text = String::from_utf8(decoded).map_err(|_| bad("malformed basic credentials"))?;
        let (id, secret) = text.split_once(':').ok_or_else(|| bad("malformed basic credentials"))?;
        // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
        let unescape = |s: &str| -> Result<String, OAuthError> {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| bad("malformed basic credentials"))
        };
        let (id, secret) = (unescape(id)?, unescape(secret)?);
        if form_id.is_some_and(|f| *f != id) {
            return Err(OAuthError::invalid_request("client_id differs from the authenticated client"));
        }
        return Ok(Presented { client_id: id, method: Method::Basic(secret) });
    }
    let id = form_id.ok_or_else(|| bad("Missing parameter: client_id"))?.clone();
    Ok(match form_secret {
        Some(secret) => Presented { client_id: id, method: Method::Post(secret.clone()) },
        None => Presented { client_id: id, method: Method::None },
    })
}

/// Where and when an assertion is checked: the audiences it may name (the token endpoint,
/// the issuer) and the time.
pub struct AssertionContext<'a> {
    pub audiences: &'a [String],
    pub now: i64,
    /// The key set fetched from the client's `jwks.url`, where it registered one.
    pub fetched_keys: Option<&'a serde_json::Value>,
}

/// Checks the presented credentials against the client (looked up by the caller). An
/// assertion's `jti` comes back: the caller records it, so the assertion works once.
pub fn authenticate<'c>(
    p: &Presented,
    client: Option<&'c ClientView>,
    keys: &ServerKeys,
    ctx: &AssertionContext<'_>,
) -> Result<(&'c ClientView, Option<super::assertion::Verified>), OAuthError> {
    let invalid = || bad("Invalid client or Invalid client credentials");
    let client = client.ok_or_else(invalid)?;
    if !client.settings.enabled || client.settings.bearer_only {
        return Err(invalid());
    }
    match (&p.method, client.settings.public_client) {
        (Method::None, true) => Ok((client, None)),
        (Method::None, false) => Err(invalid()),
        // A public client has no secret; sending one is a misconfiguration, refused alike.
        (_, true) => Err(invalid()),
        (Method::Basic(secret) | Method::Post(secret), false) => {
            if !matches!(client.settings.client_authenticator_type.as_str(), "client-secret" | "") {
                return Err(invalid());
            }
            match &client.secret {
                Some(digest) if secret.len() <= 512 && keys.verify_digest(secret, digest) => Ok((client, None)),
                _ => Err(invalid()),
            }
        }
        (Method::Assertion(jwt), false) => {
            use super::assertion::{verify, Key};
            let verified = match client.settings.client_authenticator_type.as_str() {
                "client-jwt" => verify(jwt, client, Key::Public(ctx.fetched_keys), ctx.audiences, ctx.now)?,
                "client-secret-jwt" => {
                    // Only a secret stored sealed can key the HMAC; one imported as a digest
                    // alone must be rotated first.
                    let sealed = client.sealed_secret.as_ref().ok_or_else(invalid)?;
                    let secret = keys.open(sealed).map_err(|e| {
                        tracing::error!(client = %client.client_id, error = %e, "client secret cannot be opened");
                        invalid()
                    })?;
                    verify(jwt, client, Key::Secret(&secret), ctx.audiences, ctx.now)?
                }
                _ => return Err(invalid()),
            };
            Ok((client, Some(verified)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals_events::client::ClientSettings;

    fn keys() -> ServerKeys {
        ServerKeys::from_master_key(&STANDARD.encode([9u8; 32])).unwrap()
    }

    fn client(keys: &ServerKeys, public: bool) -> ClientView {
        ClientView {
            id: "c1".into(),
            realm_id: "r".into(),
            client_id: "app".into(),
            settings: ClientSettings { public_client: public, ..Default::default() },
            secret: (!public).then(|| keys.digest("s3cret")),
            sealed_secret: (!public).then(|| keys.seal(b"s3cret").unwrap()),
            extra: Default::default(),
        }
    }

    fn ctx() -> AssertionContext<'static> {
        AssertionContext { audiences: &[], now: 0, fetched_keys: None }
    }

    fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn basic_and_post_secrets_authenticate_a_confidential_client() {
        let k = keys();
        let c = client(&k, false);
        let basic = format!("Basic {}", STANDARD.encode("app:s3cret"));
        let p = presented(Some(&basic), &form(&[])).unwrap();
        assert!(authenticate(&p, Some(&c), &k, &ctx()).map(|(c, _)| c).is_ok());
        let p = presented(None, &form(&[("client_id", "app"), ("client_secret", "s3cret")])).unwrap();
        assert!(authenticate(&p, Some(&c), &k, &ctx()).map(|(c, _)| c).is_ok());
    }

    #[test]
    fn wrong_missing_or_doubled_credentials_are_refused() {
        let k = keys();
        let c = client(&k, false);
        let wrong = presented(None, &form(&[("client_id", "app"), ("client_secret", "nope")])).unwrap();
        assert_eq!(authenticate(&wrong, Some(&c), &k, &ctx()).unwrap_err().code, "invalid_client");
        let none = presented(None, &form(&[("client_id", "app")])).unwrap();
        assert_eq!(authenticate(&none, Some(&c), &k, &ctx()).unwrap_err().code, "invalid_client");
        assert_eq!(authenticate(&none, None, &k, &ctx()).unwrap_err().code, "invalid_client");
        let basic = format!("Basic {}", STANDARD.encode("app:s3cret"));
        let both = presented(Some(&basic), &form(&[("client_secret", "s3cret")]));
        assert_eq!(both.unwrap_err().code, "invalid_request");
        let mismatch = presented(Some(&basic), &form(&[("client_id", "other")]));
        assert_eq!(mismatch.unwrap_err().code, "invalid_request");
        assert_eq!(presented(Some("Basic !!!"), &form(&[])).unwrap_err().code, "invalid_client");
        assert_eq!(presented(Some("Bearer x"), &form(&[])).unwrap_err().code, "invalid_client");
    }

    #[test]
    fn a_public_client_authenticates_by_id_alone_and_never_with_a_secret() {
        let k = keys();
        let c = client(&k, true);
        let p = presented(None, &form(&[("client_id", "app")])).unwrap();
        assert!(authenticate(&p, Some(&c), &k, &ctx()).map(|(c, _)| c).is_ok());
        let p = presented(None, &form(&[("client_id", "app"), ("client_secret", "x")])).unwrap();
        assert!(authenticate(&p, Some(&c), &k, &ctx()).map(|(c, _)| c).is_err());
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let basic = format!("Basic {}", STANDARD.encode("my%3Aapp:p%40ss+word"));
        let p = presented(Some(&basic), &form(&[])).unwrap();
        assert_eq!(p, Presented { client_id: "my:app".into(), method: Method::Basic("p@ss word".into()) });
    }
}
