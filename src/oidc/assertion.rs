//! Client authentication by a signed assertion (RFC 7523 §2.2, OIDC Core §9):
//! `private_key_jwt` for clients whose authenticator is Keycloak's `client-jwt`, and
//! `client_secret_jwt` for `client-secret-jwt`.
//!
//! For `private_key_jwt` the client's public keys come from its Keycloak attributes: an
//! inline JWKS (`jwks.string`) or a certificate (`jwt.credential.certificate`, base64 DER),
//! or, where it registered `use.jwks.url`, only from the set the caller fetched from its
//! `jwks.url` (`client_jwks.rs`). For `client_secret_jwt` the
//! key is the client secret itself (HS256, HS384 or HS512), opened from its sealed copy.
//! Which family an assertion may use follows from the client's registration alone, never
//! from the assertion: an HMAC keyed with a public key would verify whatever its author signed.
use super::OAuthError;
use annals_projections::clients::ClientView;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Public};
use openssl::rsa::Rsa;
use serde_json::Value;

/// The assertion type RFC 7523 registers.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The client attribute (Keycloak's) naming the one algorithm its assertions may use.
const SIGNING_ALG: &str = "token.endpoint.auth.signing.alg";

/// The longest life an assertion may claim (from now to `exp`): they are meant for one use.
pub const MAX_LIFETIME: i64 = 600;
/// Clock skew tolerated on `iat` and `nbf`.
const SKEW: i64 = 60;

/// What the token endpoint needs of a verified assertion: its `jti`, to refuse a replay.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    pub jti: String,
    pub exp: i64,
}

struct ClientKey {
    kid: Option<String>,
    key: PKey<Public>,
}

fn bad(description: &str) -> OAuthError {
    OAuthError::invalid_client(description)
}

fn b64(v: &Value, name: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(v.get(name)?.as_str()?).ok()
}

fn jwk_key(jwk: &Value) -> Option<PKey<Public>> {
    // A key published for encryption never verifies a signature.
    if jwk.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig") {
        return None;
    }
    match jwk.get("kty")?.as_str()? {
        "RSA" => {
            let rsa = Rsa::from_public_components(
                BigNum::from_slice(&b64(jwk, "n")?).ok()?,
                BigNum::from_slice(&b64(jwk, "e")?).ok()?,
            )
            .ok()?;
            PKey::from_rsa(rsa).ok()
        }
        "EC" if jwk.get("crv")?.as_str()? == "P-256" => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).ok()?;
            let x = BigNum::from_slice(&b64(jwk, "x")?).ok()?;
            let y = BigNum::from_slice(&b64(jwk, "y")?).ok()?;
            PKey::from_ec_key(EcKey::from_public_key_affine_coordinates(&group, &x, &y).ok()?).ok()
        }
        "OKP" if jwk.get("crv")?.as_str()? == "Ed25519" => {
            PKey::public_key_from_raw_bytes(&b64(jwk, "x")?, Id::ED25519).ok()
        }
        _ => None,
    }
}

/// The keys of a JWK set that can be used at all.
fn set_keys(jwks: &Value) -> Vec<ClientKey> {
    let keys = jwks.get("keys").and_then(Value::as_array).into_iter().flatten();
    keys.filter_map(|jwk| {
        // Keys published for encryption only are not signing keys.
        if jwk.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig") {
            return None;
        }
        Some(ClientKey { kid: jwk.get("kid").and_then(Value::as_str).map(str::to_string), key: jwk_key(jwk)? })
    })
    .collect()
}

/// The client's registered public keys: the set fetched from its `jwks.url` where it
/// registered one (`fetched`), else its inline set and certificate.
fn client_keys(client: &ClientView, fetched: Option<&Value>) -> Vec<ClientKey> {
    if let Some(jwks) = fetched {
        return set_keys(jwks);
    }
    let attrs = &client.settings.attributes;
    let mut out = Vec::new();
    if let Some(jwks) = attrs.get("jwks.string").and_then(|s| serde_json::from_str::<Value>(s).ok()) {
        out.extend(set_keys(&jwks));
    }
    if let Some(cert) = attrs.get("jwt.credential.certificate") {
        let der = STANDARD.decode(cert.split_whitespace().collect::<String>()).ok();
        if let Some(key) = der.and_then(|d| openssl::x509::X509::from_der(&d).ok()).and_then(|c| c.public_key().ok()) {
            out.push(ClientKey { kid: None, key });
        }
    }
    out
}

/// Whether `key` can verify `alg` at all: an RSA key of at least 2048 bits for RS256 and
/// PS256, a P-256 key for ES256, Ed25519 for EdDSA (never one kind for another).
fn fits(alg: &str, key: &PKey<Public>) -> bool {
    match (alg, key.id()) {
        ("RS256" | "PS256", Id::RSA) => key.bits() >= 2048,
        ("ES256", Id::EC) => {
            key.ec_key().ok().and_then(|k| k.group().curve_name()).is_some_and(|n| n == Nid::X9_62_PRIME256V1)
        }
        ("EdDSA", Id::ED25519) => true,
        _ => false,
    }
}

/// The key an assertion must be signed with, by how the client registered.
pub enum Key<'a> {
    /// `private_key_jwt`: one of the client's registered public keys, from the set fetched
    /// from its `jwks.url` where it registered one.
    Public(Option<&'a Value>),
    /// `client_secret_jwt`: the client secret.
    Secret(&'a [u8]),
}

/// Verifies `assertion` as `client`'s: signed with `key` (an asymmetric algorithm for
/// public keys, HMAC for the secret), `iss` and `sub` the client, `aud` one of `audiences`,
/// unexpired and short-lived, with a `jti`. The caller records the `jti` so the assertion
/// cannot be used again.
pub fn verify(
    assertion: &str,
    client: &ClientView,
    key: Key<'_>,
    audiences: &[String],
    now: i64,
) -> Result<Verified, OAuthError> {
    if assertion.len() > 16 * 1024 {
        return Err(bad("client assertion too long"));
    }
    let (h, p, s) = crate::jwt::compact_parts(assertion).ok_or_else(|| bad("malformed client assertion"))?;
    let header: Value = crate::jwt::json_segment(h).ok_or_else(|| bad("malformed client assertion"))?;
    if ["crit", "jku", "jwk", "x5u", "x5c"].iter().any(|m| header.get(*m).is_some()) {
        return Err(bad("unsupported client assertion header"));
    }
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    // Keycloak's per-client setting, where one is made: only that algorithm.
    if client.settings.attributes.get(SIGNING_ALG).is_some_and(|want| !want.is_empty() && want != alg) {
        return Err(bad("client assertion algorithm not the one registered"));
    }
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad("malformed client assertion"))?;
    let input = &assertion[..h.len() + 1 + p.len()];
    let signed = match key {
        Key::Public(fetched) => {
            if !matches!(alg, "RS256" | "PS256" | "ES256" | "EdDSA") {
                // `none` and the HMAC family are never accepted for public keys.
                return Err(bad("client assertion algorithm not accepted"));
            }
            let kid = header.get("kid").and_then(Value::as_str);
            let keys = client_keys(client, fetched);
            if keys.is_empty() {
                return Err(bad("client has no registered public key"));
            }
            keys.iter()
                .filter(|k| kid.is_none() || k.kid.is_none() || k.kid.as_deref() == kid)
                .filter(|k| fits(alg, &k.key))
                .any(|k| crate::jwt::signature_valid(alg, &k.key, input.as_bytes(), &sig))
        }
        Key::Secret(secret) => {
            let min = match alg {
                "HS256" => 32,
                "HS384" => 48,
                "HS512" => 64,
                _ => return Err(bad("client assertion algorithm not accepted")),
            };
            // RFC 7518 §3.2: a key shorter than the hash could be found offline from one
            // captured assertion.
            if secret.len() < min {
                return Err(bad("client secret too short for this algorithm"));
            }
            crate::jwt::hmac_valid(alg, secret, input.as_bytes(), &sig)
        }
    };
    if !signed {
        return Err(bad("client assertion signature invalid"));
    }
    let claims: Value = crate::jwt::json_segment(p).ok_or_else(|| bad("malformed client assertion claims"))?;
    let text = |k: &str| claims.get(k).and_then(Value::as_str);
    if text("iss") != Some(client.client_id.as_str()) || text("sub") != Some(client.client_id.as_str()) {
        return Err(bad("client assertion iss and sub must be the client_id"));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => audiences.iter().any(|x| x == a),
        Some(Value::Array(all)) => all.iter().filter_map(Value::as_str).any(|a| audiences.iter().any(|x| x == a)),
        _ => false,
    };
    if !aud_ok {
        return Err(bad("client assertion audience is not this server"));
    }
    let exp = claims.get("exp").and_then(Value::as_i64).ok_or_else(|| bad("client assertion has no exp"))?;
    if exp <= now {
        return Err(bad("client assertion expired"));
    }
    if exp > now + MAX_LIFETIME {
        return Err(bad("client assertion lives too long"));
    }
    for name in ["iat", "nbf"] {
        if claims.get(name).and_then(Value::as_i64).is_some_and(|t| t > now + SKEW) {
            return Err(bad("client assertion not valid yet"));
        }
    }
    let jti =
        text("jti").filter(|j| !j.is_empty() && j.len() <= 256).ok_or_else(|| bad("client assertion has no jti"))?;
    Ok(Verified { jti: jti.to_string(), exp })
}
