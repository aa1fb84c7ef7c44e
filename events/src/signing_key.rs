//! Realm signing keys. The private half is only ever stored encrypted.
use serde::{Deserialize, Serialize};

/// A private key sealed with AES-256-GCM under a server key-encryption key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SealedKey {
    /// `A256GCM`.
    pub alg: String,
    /// Which key-encryption key sealed it.
    pub kek_id: String,
    /// Base64 nonce.
    pub nonce: String,
    /// Base64 ciphertext followed by the 16-byte tag, of the PKCS#8 DER private key.
    pub ciphertext: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SigningKeyGenerated {
    pub realm_id: String,
    /// The JWK `kid`.
    pub kid: String,
    /// JOSE algorithm: `RS256`, `ES256` or `EdDSA`.
    pub algorithm: String,
    /// The public key as a JWK, as published in the realm's JWKS.
    pub public_jwk: serde_json::Value,
    pub private_key: SealedKey,
}

/// The key no longer signs; its public half stays published until `publish_until`
/// (epoch seconds) so tokens it signed keep verifying.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SigningKeyRetired {
    pub publish_until: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SigningKeyRemoved {}

event_enum! {
    /// Events of the SigningKey aggregate (stream type `signing_key`, stream id = kid).
    SigningKeyEvent {
        Generated(SigningKeyGenerated) = "signing_key.generated",
        Retired(SigningKeyRetired) = "signing_key.retired",
        Removed(SigningKeyRemoved) = "signing_key.removed",
    }
}
