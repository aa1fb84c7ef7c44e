//! Signed JWTs with a realm's keys (RS256, ES256, EdDSA), and their verification.
//!
//! Signing opens the sealed private key once per [`Signer`]; callers keep signers for as long
//! as the key is active. Verification trusts nothing in the token's header but the `kid`: the
//! algorithm must be the one the named key was made for, so `alg: none`, an HMAC keyed with a
//! public key, or a key of one algorithm presented as another are all refused before any
//! signature is checked.
use crate::secrets::{SecretsError, ServerKeys};
use annals_projections::signing_keys::KeyView;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("signing algorithm {0} is not supported")]
    Unsupported(String),
    #[error("the private key cannot be opened: {0}")]
    Sealed(#[from] SecretsError),
    #[error("the private key is malformed: {0}")]
    Key(#[from] openssl::error::ErrorStack),
    #[error("signing failed: {0}")]
    Sign(jsonwebtoken::errors::Error),
    /// The token is not a well-formed JWS, names no known key, or uses another algorithm
    /// than its key's; no signature was checked.
    #[error("token refused: {0}")]
    Refused(String),
    /// Signature, expiry or another registered claim failed verification.
    #[error("token invalid: {0}")]
    Invalid(jsonwebtoken::errors::Error),
}

fn algorithm(name: &str) -> Result<Algorithm, JwtError> {
    match name {
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => Err(JwtError::Unsupported(other.to_string())),
    }
}

/// One realm key, opened, ready to sign.
pub struct Signer {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
}

impl Signer {
    pub fn open(view: &KeyView, keys: &ServerKeys) -> Result<Self, JwtError> {
        let alg = algorithm(&view.algorithm)?;
        let pkcs8 = keys.open(&view.private_key)?;
        let key = match alg {
            // ring reads RSA keys as PKCS#1; keys are stored as PKCS#8.
            Algorithm::RS256 => EncodingKey::from_rsa_der(
                &openssl::pkey::PKey::private_key_from_pkcs8(&pkcs8)?.rsa()?.private_key_to_der()?,
            ),
            Algorithm::ES256 => EncodingKey::from_ec_der(&pkcs8),
            _ => EncodingKey::from_ed_der(&pkcs8),
        };
        Ok(Signer { kid: view.kid.clone(), alg, key })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` with header `typ` (`JWT`, or `at+jwt` for RFC 9068 access tokens).
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, JwtError> {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.to_string());
        jsonwebtoken::encode(&header, claims, &self.key).map_err(JwtError::Sign)
    }
}

/// What a verification requires besides the signature; expiry is always checked.
#[derive(Clone, Debug, Default)]
pub struct Expect<'a> {
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a [&'a str]>,
    /// Accepts an expired token (an `id_token_hint` at logout may have expired).
    pub allow_expired: bool,
}

/// Verifies `token` against the key its `kid` names (looked up by `key`) and decodes its
/// claims.
pub fn verify<'k, T: DeserializeOwned>(
    token: &str,
    key: impl FnOnce(&str) -> Option<&'k KeyView>,
    expect: &Expect<'_>,
) -> Result<T, JwtError> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| JwtError::Refused(e.to_string()))?;
    let kid = header.kid.ok_or_else(|| JwtError::Refused("no kid".into()))?;
    let view = key(&kid).ok_or_else(|| JwtError::Refused(format!("unknown key {kid}")))?;
    let alg = algorithm(&view.algorithm)?;
    if header.alg != alg {
        return Err(JwtError::Refused(format!("key {kid} signs {}, not {:?}", view.algorithm, header.alg)));
    }
    let jwk: Jwk = serde_json::from_value(view.public_jwk.clone()).map_err(|e| JwtError::Refused(e.to_string()))?;
    let decoding = DecodingKey::from_jwk(&jwk).map_err(JwtError::Invalid)?;
    let mut validation = Validation::new(alg);
    validation.leeway = 0;
    validation.validate_exp = !expect.allow_expired;
    if expect.allow_expired {
        validation.required_spec_claims.remove("exp");
    }
    match expect.issuer {
        Some(iss) => validation.set_issuer(&[iss]),
        None => validation.iss = None,
    }
    match expect.audience {
        Some(aud) => validation.set_audience(aud),
        None => validation.validate_aud = false,
    }
    jsonwebtoken::decode::<T>(token, &decoding, &validation).map(|d| d.claims).map_err(JwtError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals_projections::signing_keys::KeyStatus;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde_json::{json, Value};

    fn server_keys() -> ServerKeys {
        ServerKeys::from_master_key(&base64::engine::general_purpose::STANDARD.encode([7u8; 32])).unwrap()
    }

    fn given_a_key(alg: &str, keys: &ServerKeys) -> KeyView {
        let g = crate::keys::generate(alg).unwrap();
        KeyView {
            kid: g.kid,
            realm_id: "r".into(),
            algorithm: g.algorithm,
            public_jwk: g.public_jwk,
            private_key: keys.seal(&g.private_pkcs8).unwrap(),
            created_at: chrono::Utc::now(),
            position: 1,
            status: KeyStatus::Active,
        }
    }

    fn claims(exp_in: i64) -> Value {
        json!({"iss": "https://idp/realms/r", "aud": "app", "sub": "u1", "exp": chrono::Utc::now().timestamp() + exp_in})
    }

    const EXPECT: Expect<'static> =
        Expect { issuer: Some("https://idp/realms/r"), audience: Some(&["app"]), allow_expired: false };

    #[test]
    fn given_each_algorithm_when_signed_then_it_verifies_with_the_published_key() {
        let keys = server_keys();
        for alg in ["RS256", "ES256", "EdDSA"] {
            let view = given_a_key(alg, &keys);
            let token = Signer::open(&view, &keys).unwrap().sign("at+jwt", &claims(60)).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!((header.kid.as_deref(), header.typ.as_deref()), (Some(view.kid.as_str()), Some("at+jwt")));
            let got: Value = verify(&token, |kid| (kid == view.kid).then_some(&view), &EXPECT).unwrap();
            assert_eq!(got["sub"], "u1", "{alg}");
        }
    }

    #[test]
    fn given_a_forged_or_altered_token_when_verified_then_it_is_refused() {
        let keys = server_keys();
        let view = given_a_key("RS256", &keys);
        let lookup = |kid: &str| (kid == view.kid).then_some(&view);
        let token = Signer::open(&view, &keys).unwrap().sign("JWT", &claims(60)).unwrap();
        let parts: Vec<&str> = token.split('.').collect();

        // alg none, with and without a signature.
        let none = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","kid":"{}"}}"#, view.kid));
        for forged in [format!("{none}.{}.", parts[1]), format!("{none}.{}.{}", parts[1], parts[2])] {
            assert!(verify::<Value>(&forged, lookup, &EXPECT).is_err());
        }
        // HS256 keyed with the public key (the classic confusion attack).
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(view.kid.clone());
        let public_jwk_bytes = serde_json::to_vec(&view.public_jwk).unwrap();
        let hs = jsonwebtoken::encode(&header, &claims(60), &EncodingKey::from_secret(&public_jwk_bytes)).unwrap();
        assert!(matches!(verify::<Value>(&hs, lookup, &EXPECT), Err(JwtError::Refused(_))));
        // A payload changed after signing.
        let mut altered: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        altered["sub"] = json!("admin");
        let altered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(altered.to_string()), parts[2]);
        assert!(matches!(verify::<Value>(&altered, lookup, &EXPECT), Err(JwtError::Invalid(_))));
        // Signed by another key that claims this kid.
        let other = KeyView { kid: view.kid.clone(), ..given_a_key("RS256", &keys) };
        let impostor = Signer::open(&other, &keys).unwrap().sign("JWT", &claims(60)).unwrap();
        assert!(matches!(verify::<Value>(&impostor, lookup, &EXPECT), Err(JwtError::Invalid(_))));
        // Unknown kid, garbage.
        assert!(matches!(verify::<Value>(&token, |_| None, &EXPECT), Err(JwtError::Refused(_))));
        for junk in ["", "a.b", "a.b.c", "....", &"A".repeat(100_000)] {
            assert!(verify::<Value>(junk, lookup, &EXPECT).is_err(), "{junk:.20}");
        }
    }

    #[test]
    fn given_expiry_issuer_and_audience_when_verified_then_each_is_enforced() {
        let keys = server_keys();
        let view = given_a_key("ES256", &keys);
        let lookup = |kid: &str| (kid == view.kid).then_some(&view);
        let signer = Signer::open(&view, &keys).unwrap();
        let expired = signer.sign("JWT", &claims(-5)).unwrap();
        assert!(matches!(verify::<Value>(&expired, lookup, &EXPECT), Err(JwtError::Invalid(_))));
        let hint = Expect { allow_expired: true, ..EXPECT };
        assert!(verify::<Value>(&expired, lookup, &hint).is_ok(), "an expired id_token_hint is still ours");
        let fresh = signer.sign("JWT", &claims(60)).unwrap();
        let other_issuer = Expect { issuer: Some("https://idp/realms/other"), ..EXPECT };
        assert!(verify::<Value>(&fresh, lookup, &other_issuer).is_err());
        let other_audience = Expect { audience: Some(&["someone-else"]), ..EXPECT };
        assert!(verify::<Value>(&fresh, lookup, &other_audience).is_err());
    }
}
