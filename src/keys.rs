//! Realm signing key generation (openssl). The private key leaves here only sealed.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The algorithm is not one Annals signs with; the caller's input is wrong (400).
    #[error("unsupported signing algorithm {0} (supported: RS256, ES256, EdDSA)")]
    Unsupported(String),
    /// openssl failed to generate or encode a key; fatal for the operation (500).
    #[error("key generation failed: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// A freshly generated key pair.
pub struct GeneratedKey {
    pub kid: String,
    pub algorithm: String,
    pub public_jwk: Value,
    /// PKCS#8 DER; seal it before it goes anywhere.
    pub private_pkcs8: Vec<u8>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7638 thumbprint over the required members, in lexicographic order, as the `kid`.
fn thumbprint(required: &Value) -> String {
    b64(&Sha256::digest(annals_events::canonical::to_canonical_string(required).as_bytes()))
}

pub fn generate(algorithm: &str) -> Result<GeneratedKey, KeyError> {
    let (pkey, required): (PKey<Private>, Value) = match algorithm {
        "RS256" => {
            let rsa = Rsa::generate(2048)?;
            let required = json!({"e": b64(&rsa.e().to_vec()), "kty": "RSA", "n": b64(&rsa.n().to_vec())});
            (PKey::from_rsa(rsa)?, required)
        }
        "ES256" => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
            let ec = EcKey::generate(&group)?;
            let mut ctx = BigNumContext::new()?;
            let (mut x, mut y) = (openssl::bn::BigNum::new()?, openssl::bn::BigNum::new()?);
            ec.public_key().affine_coordinates(&group, &mut x, &mut y, &mut ctx)?;
            let required =
                json!({"crv": "P-256", "kty": "EC", "x": b64(&x.to_vec_padded(32)?), "y": b64(&y.to_vec_padded(32)?)});
            (PKey::from_ec_key(ec)?, required)
        }
        "EdDSA" => {
            let pkey = PKey::generate_ed25519()?;
            let required = json!({"crv": "Ed25519", "kty": "OKP", "x": b64(&pkey.raw_public_key()?)});
            (pkey, required)
        }
        other => return Err(KeyError::Unsupported(other.to_string())),
    };
    let kid = thumbprint(&required);
    let mut jwk = required;
    jwk["kid"] = json!(kid);
    jwk["alg"] = json!(algorithm);
    jwk["use"] = json!("sig");
    Ok(GeneratedKey {
        kid,
        algorithm: algorithm.to_string(),
        public_jwk: jwk,
        private_pkcs8: pkey.private_key_to_pkcs8()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_algorithm_generates_a_published_jwk_with_a_thumbprint_kid() {
        for alg in ["RS256", "ES256", "EdDSA"] {
            let k = generate(alg).unwrap();
            assert_eq!(k.public_jwk["kid"], json!(k.kid));
            assert_eq!(k.public_jwk["alg"], json!(alg));
            assert!(k.public_jwk.get("d").is_none(), "no private member in the public JWK");
            let back = PKey::private_key_from_pkcs8(&k.private_pkcs8).unwrap();
            assert!(back.bits() >= 253);
        }
        assert_ne!(generate("ES256").unwrap().kid, generate("ES256").unwrap().kid);
    }

    #[test]
    fn an_unknown_algorithm_is_refused() {
        assert!(matches!(generate("HS256"), Err(KeyError::Unsupported(_))));
    }
}
