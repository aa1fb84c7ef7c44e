//! The audit key: the Ed25519 key that signs checkpoints, evidence manifests and Shared
//! Signals SETs, and nothing else (a realm signing key leaking must not let anyone forge the
//! log's anchors, nor the other way round).
//!
//! By default it is derived from the server keys, so every node sharing them signs with the
//! same key and nothing more is stored; `--audit-key FILE` (a PKCS#8 PEM Ed25519 key, e.g.
//! `openssl genpkey -algorithm ed25519`) gives one kept apart from them instead.
use crate::secrets::ServerKeys;
use annals_events::jws::PublicJwk;
use ed25519_dalek::SigningKey;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum AuditKeyError {
    /// The file could not be read. Handled: start-up (or the command) fails with the path.
    #[error("audit key {path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// The file is not a PEM Ed25519 private key. Handled: start-up fails with the reason,
    /// which never contains key material.
    #[error("audit key {path}: not a PKCS#8 PEM Ed25519 private key ({reason})")]
    Invalid { path: String, reason: String },
}

/// Not `Debug`: it holds the private key.
pub struct AuditKey {
    signing: SigningKey,
    public: PublicJwk,
}

impl AuditKey {
    /// The key derived from the server keys (the same on every node that shares them).
    pub fn derived(keys: &ServerKeys) -> AuditKey {
        let seed = keys.derive("audit-key\nEd25519");
        let mut first = [0u8; 32];
        first.copy_from_slice(&seed[..32]);
        Self::from_signing(SigningKey::from_bytes(&first))
    }

    /// The key in a PKCS#8 PEM file.
    pub fn from_pem_file(path: &Path) -> Result<AuditKey, AuditKeyError> {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| AuditKeyError::Io { path: shown.clone(), source })?;
        let invalid = |reason: String| AuditKeyError::Invalid { path: shown.clone(), reason };
        let key = openssl::pkey::PKey::private_key_from_pem(&pem).map_err(|_| invalid("unreadable PEM".into()))?;
        if key.id() != openssl::pkey::Id::ED25519 {
            return Err(invalid(format!("a {:?} key", key.id())));
        }
        let raw = key.raw_private_key().map_err(|_| invalid("no raw private key".into()))?;
        let seed: [u8; 32] = raw.try_into().map_err(|_| invalid("not 32 bytes".into()))?;
        Ok(Self::from_signing(SigningKey::from_bytes(&seed)))
    }

    /// `--audit-key` when given, else the derived key.
    pub fn load(file: Option<&Path>, keys: &ServerKeys) -> Result<AuditKey, AuditKeyError> {
        match file {
            Some(path) => Self::from_pem_file(path),
            None => Ok(Self::derived(keys)),
        }
    }

    fn from_signing(signing: SigningKey) -> AuditKey {
        let public = PublicJwk::of(&signing.verifying_key());
        AuditKey { signing, public }
    }

    pub fn signing(&self) -> &SigningKey {
        &self.signing
    }

    pub fn public(&self) -> &PublicJwk {
        &self.public
    }

    /// The JWKS served at `/audit/certs`.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.public] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_the_same_server_keys_when_derived_then_every_node_has_the_same_key() {
        let keys = ServerKeys::from_master_key(&"QUJD".repeat(11)).unwrap();
        assert_eq!(AuditKey::derived(&keys).public(), AuditKey::derived(&keys).public());
        let other = ServerKeys::from_master_key(&"WFla".repeat(11)).unwrap();
        assert_ne!(AuditKey::derived(&keys).public(), AuditKey::derived(&other).public());
    }

    #[test]
    fn given_a_pem_file_when_loaded_then_it_is_that_key_and_other_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ed = openssl::pkey::PKey::generate_ed25519().unwrap();
        let path = dir.path().join("audit.pem");
        std::fs::write(&path, ed.private_key_to_pem_pkcs8().unwrap()).unwrap();
        let key = AuditKey::from_pem_file(&path).unwrap();
        assert_eq!(key.signing().verifying_key().as_bytes().as_slice(), ed.raw_public_key().unwrap().as_slice());
        let rsa = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        std::fs::write(&path, rsa.private_key_to_pem_pkcs8().unwrap()).unwrap();
        assert!(matches!(AuditKey::from_pem_file(&path), Err(AuditKeyError::Invalid { .. })));
        std::fs::write(&path, "not a key").unwrap();
        let err = AuditKey::from_pem_file(&path).err().unwrap().to_string();
        assert!(err.contains("audit.pem") && !err.contains("not a key"), "{err}");
    }
}
