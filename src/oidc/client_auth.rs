//! Client authentication at the token, introspection and revocation endpoints (RFC 6749
//! §2.3): `client_secret_basic`, `client_secret_post`, and `none` for public clients. Exactly
//! one method per request; a confidential client must authenticate.
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
        return Err(bad("client assertions are not supported yet"));
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

/// Checks the presented credentials against the client (looked up by the caller).
pub fn authenticate<'c>(
    p: &Presented,
    client: Option<&'c ClientView>,
    keys: &ServerKeys,
) -> Result<&'c ClientView, OAuthError> {
    let invalid = || bad("Invalid client or Invalid client credentials");
    let client = client.ok_or_else(invalid)?;
    if !client.settings.enabled || client.settings.bearer_only {
        return Err(invalid());
    }
    match (&p.method, client.settings.public_client) {
        (Method::None, true) => Ok(client),
        (Method::None, false) => Err(invalid()),
        // A public client has no secret; sending one is a misconfiguration, refused alike.
        (_, true) => Err(invalid()),
        (Method::Basic(secret) | Method::Post(secret), false) => {
            if !matches!(client.settings.client_authenticator_type.as_str(), "client-secret" | "") {
                return Err(invalid());
            }
            match &client.secret {
                Some(digest) if secret.len() <= 512 && keys.verify_digest(secret, digest) => Ok(client),
                _ => Err(invalid()),
            }
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
            extra: Default::default(),
        }
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
        assert!(authenticate(&p, Some(&c), &k).is_ok());
        let p = presented(None, &form(&[("client_id", "app"), ("client_secret", "s3cret")])).unwrap();
        assert!(authenticate(&p, Some(&c), &k).is_ok());
    }

    #[test]
    fn wrong_missing_or_doubled_credentials_are_refused() {
        let k = keys();
        let c = client(&k, false);
        let wrong = presented(None, &form(&[("client_id", "app"), ("client_secret", "nope")])).unwrap();
        assert_eq!(authenticate(&wrong, Some(&c), &k).unwrap_err().code, "invalid_client");
        let none = presented(None, &form(&[("client_id", "app")])).unwrap();
        assert_eq!(authenticate(&none, Some(&c), &k).unwrap_err().code, "invalid_client");
        assert_eq!(authenticate(&none, None, &k).unwrap_err().code, "invalid_client");
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
        assert!(authenticate(&p, Some(&c), &k).is_ok());
        let p = presented(None, &form(&[("client_id", "app"), ("client_secret", "x")])).unwrap();
        assert!(authenticate(&p, Some(&c), &k).is_err());
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let basic = format!("Basic {}", STANDARD.encode("my%3Aapp:p%40ss+word"));
        let p = presented(Some(&basic), &form(&[])).unwrap();
        assert_eq!(p, Presented { client_id: "my:app".into(), method: Method::Basic("p@ss word".into()) });
    }
}
