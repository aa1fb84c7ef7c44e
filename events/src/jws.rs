//! Compact JWS with Ed25519 (`alg: EdDSA`, RFC 8037): what signed checkpoints and evidence
//! manifests are, so a SIEM can check a checkpoint with any JOSE library and this crate can
//! check one with nothing but ed25519-dalek.
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;

/// An Ed25519 public key as a JWK (RFC 8037), with its RFC 7638 thumbprint as `kid`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PublicJwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

impl PublicJwk {
    pub fn of(key: &VerifyingKey) -> PublicJwk {
        let x = B64.encode(key.as_bytes());
        PublicJwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            kid: thumbprint(&x),
            x,
            alg: Some("EdDSA".into()),
            use_: Some("sig".into()),
        }
    }

    /// The key, if this is an Ed25519 JWK whose `kid` is its own thumbprint (a `kid` that
    /// names another key would let a bundle claim to be signed by a published key).
    pub fn key(&self) -> Result<VerifyingKey, JwsError> {
        if self.kty != "OKP" || self.crv != "Ed25519" {
            return Err(JwsError::Key(format!("{}/{} is not an Ed25519 key", self.kty, self.crv)));
        }
        if self.kid != thumbprint(&self.x) {
            return Err(JwsError::Key(format!("kid {:?} is not the key's thumbprint", self.kid)));
        }
        let bytes = B64.decode(&self.x).map_err(|e| JwsError::Key(format!("x: {e}")))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| JwsError::Key("x is not 32 bytes".into()))?;
        VerifyingKey::from_bytes(&bytes).map_err(|e| JwsError::Key(e.to_string()))
    }
}

/// RFC 7638 thumbprint of an OKP key: SHA-256 over its required members in lexical order.
fn thumbprint(x: &str) -> String {
    let members = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    B64.encode(Sha256::digest(members.as_bytes()))
}

/// Why a JWS is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwsError {
    Malformed(String),
    /// The header names another algorithm, type or key than expected.
    Header(String),
    Key(String),
    /// The signature does not verify: the token was altered or signed by another key.
    Signature,
}

impl fmt::Display for JwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwsError::Malformed(r) => write!(f, "malformed JWS: {r}"),
            JwsError::Header(r) => write!(f, "unexpected JWS header: {r}"),
            JwsError::Key(r) => write!(f, "unusable key: {r}"),
            JwsError::Signature => f.write_str("signature does not verify (altered, or signed by another key)"),
        }
    }
}

impl std::error::Error for JwsError {}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
    kid: String,
}

/// The `kid` a compact JWS's header names (unverified), to pick the key to verify it with.
pub fn key_id(token: &str) -> Option<String> {
    let header = B64.decode(token.split('.').next()?).ok()?;
    serde_json::from_slice::<Header>(&header).ok().map(|h| h.kid)
}

/// Signs `claims` as a compact JWS of type `typ`.
pub fn sign(key: &SigningKey, typ: &str, claims: &Value) -> String {
    let kid = PublicJwk::of(&key.verifying_key()).kid;
    let header = Header { alg: "EdDSA".into(), typ: typ.into(), kid };
    // Both parts serialize from owned JSON values: cannot fail.
    let header = serde_json::to_vec(&header).unwrap_or_default();
    let claims = serde_json::to_vec(claims).unwrap_or_default();
    let input = format!("{}.{}", B64.encode(header), B64.encode(claims));
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", B64.encode(signature.to_bytes()))
}

/// Verifies a compact JWS of type `typ` under `key` and returns its claims.
pub fn verify(jws: &str, typ: &str, key: &PublicJwk) -> Result<Value, JwsError> {
    let mut parts = jws.split('.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwsError::Malformed("not three dot-separated parts".into()));
    };
    let decode = |part: &str, what: &str| B64.decode(part).map_err(|e| JwsError::Malformed(format!("{what}: {e}")));
    let header: Header =
        serde_json::from_slice(&decode(h, "header")?).map_err(|e| JwsError::Malformed(format!("header: {e}")))?;
    if header.alg != "EdDSA" || header.typ != typ || header.kid != key.kid {
        return Err(JwsError::Header(format!(
            "alg {:?}, typ {:?}, kid {:?} (expected EdDSA, {typ:?}, {:?})",
            header.alg, header.typ, header.kid, key.kid
        )));
    }
    let signature: [u8; 64] =
        decode(s, "signature")?.try_into().map_err(|_| JwsError::Malformed("signature is not 64 bytes".into()))?;
    let input_len = h.len() + 1 + c.len();
    key.key()?
        .verify_strict(&jws.as_bytes()[..input_len], &Signature::from_bytes(&signature))
        .map_err(|_| JwsError::Signature)?;
    serde_json::from_slice(&decode(c, "claims")?).map_err(|e| JwsError::Malformed(format!("claims: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn given_a_signed_token_when_verified_with_its_key_then_the_claims_come_back() {
        let jws = sign(&key(1), "t+jwt", &json!({"a": 1}));
        let jwk = PublicJwk::of(&key(1).verifying_key());
        assert_eq!(verify(&jws, "t+jwt", &jwk), Ok(json!({"a": 1})));
    }

    #[test]
    fn given_tampering_when_verified_then_it_is_refused() {
        let jws = sign(&key(1), "t+jwt", &json!({"a": 1}));
        let jwk = PublicJwk::of(&key(1).verifying_key());
        let other = PublicJwk::of(&key(2).verifying_key());
        assert!(matches!(verify(&jws, "t+jwt", &other), Err(JwsError::Header(_))), "another kid");
        assert!(matches!(verify(&jws, "other", &jwk), Err(JwsError::Header(_))), "another type");
        let parts: Vec<&str> = jws.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], B64.encode(br#"{"a":2}"#), parts[2]);
        assert_eq!(verify(&forged, "t+jwt", &jwk), Err(JwsError::Signature));
        let none = format!("{}.{}.", B64.encode(br#"{"alg":"none","typ":"t+jwt","kid":"x"}"#), parts[1]);
        assert!(verify(&none, "t+jwt", &jwk).is_err());
        // A JWK whose kid claims another key's thumbprint.
        let mut lying = other.clone();
        lying.kid = jwk.kid.clone();
        assert!(matches!(verify(&jws, "t+jwt", &lying), Err(JwsError::Key(_))));
    }

    #[test]
    fn thumbprint_matches_rfc_8037_appendix_a3() {
        // RFC 8037 A.3: the thumbprint of the example Ed25519 key.
        assert_eq!(
            thumbprint("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }
}
