//! The server's symmetric keys: a MAC key for keyed hashes of secrets (client secrets, codes,
//! refresh tokens) and a key-encryption key that seals private signing keys and other secrets
//! kept in events.
//!
//! Keys come either from `server-keys.json` in the data directory (created on first start) or,
//! for deployments that keep no key file on disk, from one master secret in
//! `ANNALS_MASTER_KEY`. Nodes sharing a database must share these keys, or digests written by
//! one node will not verify on another.
use annals_events::client::SecretDigest;
use annals_events::signing_key::SealedKey;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file that holds the keys, inside the data directory.
pub const KEY_FILE: &str = "server-keys.json";
/// The only digest algorithm [`ServerKeys::digest`] writes.
pub const DIGEST_ALG: &str = "hmac-sha256";
/// The only sealing algorithm [`ServerKeys::seal`] writes (JOSE's name for AES-256-GCM).
pub const SEAL_ALG: &str = "A256GCM";
/// Prefix of the one-line text form of a sealed value (see [`sealed_to_text`]).
pub const SEALED_TEXT_PREFIX: &str = "annals-sealed:v1:";

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Fewer bytes than this in a master key would make the derived keys guessable.
const MIN_MASTER_KEY_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The key file could not be read or written. Handled: startup fails with the path; the
    /// operator fixes the data directory.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The key file is not the JSON this module writes. Handled: startup fails; never
    /// overwritten, because replacing keys would orphan every digest and sealed key.
    #[error("{path}: not a server key file: {source}")]
    MalformedFile { path: PathBuf, source: serde_json::Error },
    /// Key material is not base64 of the expected length. Handled: startup fails with the
    /// reason (which never contains the key).
    #[error("invalid key material: {0}")]
    InvalidKey(String),
    /// The key file can be read by other users. Handled: startup fails; the operator runs
    /// `chmod 600` (the keys may already have leaked and should be considered for rotation).
    #[error("{path}: permissions {mode:o} let other users read the server keys; chmod 600 it")]
    InsecurePermissions { path: PathBuf, mode: u32 },
    /// The value was sealed under another key-encryption key. Handled: the caller reports
    /// which `kek_id` is missing (keys were rotated or nodes do not share keys).
    #[error("sealed under key {kek_id:?}, this server has {have:?}")]
    UnknownKey { kek_id: String, have: String },
    /// The sealed value names an algorithm this server does not implement. Handled: reported
    /// like [`SecretsError::UnknownKey`].
    #[error("unsupported sealing algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// Authentication of the ciphertext failed: it was altered or the key is wrong. Handled:
    /// treated as tampering; the value is not used.
    #[error("sealed value failed authentication (tampered or wrong key)")]
    Tampered,
    /// OpenSSL failed to encrypt. Handled: the operation that needed sealing fails.
    #[error("encryption failed: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// The server's symmetric keys. `Debug` never prints key material.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerKeys {
    key_id: String,
    mac_key: [u8; 32],
    kek: [u8; 32],
}

impl fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerKeys").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// The on-disk form of the keys.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    key_id: String,
    /// Base64 of 32 bytes.
    mac_key: String,
    /// Base64 of 32 bytes.
    key_encryption_key: String,
}

impl ServerKeys {
    /// Reads `server-keys.json` from `data_dir`; never creates it (an operator tool that signs
    /// must sign with the server's keys, not with fresh ones of its own).
    pub fn load(data_dir: &Path) -> Result<Self, SecretsError> {
        let path = data_dir.join(KEY_FILE);
        let bytes = std::fs::read(&path).map_err(|source| SecretsError::Io { path: path.clone(), source })?;
        check_permissions(&path)?;
        Self::from_file_bytes(&path, &bytes)
    }

    /// Reads `server-keys.json` from `data_dir`, or creates it (mode 0600) with fresh random
    /// keys when it does not exist yet.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, SecretsError> {
        let path = data_dir.join(KEY_FILE);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SecretsError::Io { path, source }
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                check_permissions(&path)?;
                return Self::from_file_bytes(&path, &bytes);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
        let keys = Self::generate();
        let text = serde_json::to_vec_pretty(&keys.to_file())
            .map_err(|source| SecretsError::MalformedFile { path: path.clone(), source })?;
        // Written to a private temporary name, then hard-linked into place: linking fails if
        // the target exists, so two processes starting at once cannot both believe their own
        // keys won (a rename would silently replace the first one's keys).
        let tmp = data_dir.join(format!(".{KEY_FILE}.{}.tmp", hex::encode(random::<8>())));
        write_private(&tmp, &text).map_err(io(&tmp))?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(keys),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let bytes = std::fs::read(&path).map_err(io(&path))?;
                Self::from_file_bytes(&path, &bytes)
            }
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Derives both keys from one base64 master secret (at least 32 bytes), so a deployment
    /// can keep its keys in a secret store instead of a file. HKDF-SHA-256: extract with a
    /// fixed salt, expand once per key with a distinct label.
    pub fn from_master_key(b64: &str) -> Result<Self, SecretsError> {
        let master =
            decode_b64(b64.trim()).map_err(|e| SecretsError::InvalidKey(format!("master key is not base64: {e}")))?;
        if master.len() < MIN_MASTER_KEY_LEN {
            return Err(SecretsError::InvalidKey(format!(
                "master key has {} bytes, at least {MIN_MASTER_KEY_LEN} are needed",
                master.len()
            )));
        }
        let salt: [u8; 32] = Sha256::digest(b"annals server keys v1").into();
        let prk = hmac_sha256(&salt, &[&master]);
        let expand = |label: &[u8]| hmac_sha256(&prk, &[label, &[1u8]]);
        Ok(ServerKeys {
            key_id: derive_key_id(&expand(b"annals key id")),
            mac_key: expand(b"annals mac key"),
            kek: expand(b"annals key-encryption key"),
        })
    }

    /// Which keys these are; recorded next to every digest and sealed value.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The keyed hash of a secret, as stored in events instead of the secret.
    pub fn digest(&self, secret: &str) -> SecretDigest {
        SecretDigest {
            alg: DIGEST_ALG.to_string(),
            key_id: self.key_id.clone(),
            value: hex::encode(hmac_sha256(&self.mac_key, &[secret.as_bytes()])),
        }
    }

    /// A 64-byte key for one purpose (e.g. one realm's refresh tokens), derived from the MAC
    /// key: the same on every node, never stored, gone when the server keys rotate.
    pub fn derive(&self, purpose: &str) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&hmac_sha256(&self.mac_key, &[b"derive\n1\n", purpose.as_bytes()]));
        out[32..].copy_from_slice(&hmac_sha256(&self.mac_key, &[b"derive\n2\n", purpose.as_bytes()]));
        out
    }

    /// Whether `secret` is the secret `digest` was made from. False for digests made under
    /// another key or algorithm: the caller cannot tell those apart from a wrong secret.
    pub fn verify_digest(&self, secret: &str, digest: &SecretDigest) -> bool {
        if digest.alg != DIGEST_ALG || digest.key_id != self.key_id {
            return false;
        }
        let Ok(stored) = hex::decode(&digest.value) else {
            return false;
        };
        let computed = hmac_sha256(&self.mac_key, &[secret.as_bytes()]);
        // memcmp::eq panics on different lengths, and the length is not secret.
        stored.len() == computed.len() && openssl::memcmp::eq(&stored, &computed)
    }

    /// Encrypts `plaintext` with AES-256-GCM under the key-encryption key and a fresh random
    /// nonce. The algorithm and key id are authenticated too, so they cannot be swapped.
    pub fn seal(&self, plaintext: &[u8]) -> Result<SealedKey, SecretsError> {
        let nonce = random::<NONCE_LEN>();
        let mut tag = [0u8; TAG_LEN];
        let aad = seal_aad(SEAL_ALG, &self.key_id);
        let mut ciphertext = encrypt_aead(Cipher::aes_256_gcm(), &self.kek, Some(&nonce), &aad, plaintext, &mut tag)?;
        ciphertext.extend_from_slice(&tag);
        Ok(SealedKey {
            alg: SEAL_ALG.to_string(),
            kek_id: self.key_id.clone(),
            nonce: STANDARD.encode(nonce),
            ciphertext: STANDARD.encode(ciphertext),
        })
    }

    /// Decrypts a value [`ServerKeys::seal`] produced, checking that it was not altered.
    pub fn open(&self, sealed: &SealedKey) -> Result<Vec<u8>, SecretsError> {
        if sealed.alg != SEAL_ALG {
            return Err(SecretsError::UnsupportedAlgorithm(sealed.alg.clone()));
        }
        if sealed.kek_id != self.key_id {
            return Err(SecretsError::UnknownKey { kek_id: sealed.kek_id.clone(), have: self.key_id.clone() });
        }
        let nonce = decode_b64(&sealed.nonce).map_err(|_| SecretsError::Tampered)?;
        let data = decode_b64(&sealed.ciphertext).map_err(|_| SecretsError::Tampered)?;
        if nonce.len() != NONCE_LEN || data.len() < TAG_LEN {
            return Err(SecretsError::Tampered);
        }
        let (ciphertext, tag) = data.split_at(data.len() - TAG_LEN);
        let aad = seal_aad(&sealed.alg, &sealed.kek_id);
        decrypt_aead(Cipher::aes_256_gcm(), &self.kek, Some(&nonce), &aad, ciphertext, tag)
            .map_err(|_| SecretsError::Tampered)
    }

    fn generate() -> Self {
        let mac_key = random::<32>();
        ServerKeys { key_id: derive_key_id(&hmac_sha256(&mac_key, &[b"annals key id"])), mac_key, kek: random::<32>() }
    }

    fn to_file(&self) -> KeyFile {
        KeyFile {
            key_id: self.key_id.clone(),
            mac_key: STANDARD.encode(self.mac_key),
            key_encryption_key: STANDARD.encode(self.kek),
        }
    }

    fn from_file_bytes(path: &Path, bytes: &[u8]) -> Result<Self, SecretsError> {
        let file: KeyFile = serde_json::from_slice(bytes)
            .map_err(|source| SecretsError::MalformedFile { path: path.to_path_buf(), source })?;
        if file.key_id.is_empty() {
            return Err(SecretsError::InvalidKey(format!("{}: key_id is empty", path.display())));
        }
        Ok(ServerKeys {
            key_id: file.key_id,
            mac_key: key32(&file.mac_key, "mac_key")?,
            kek: key32(&file.key_encryption_key, "key_encryption_key")?,
        })
    }
}

/// The one-line text form of a sealed value, for places that only hold strings (a Keycloak
/// `smtpServer.password` kept in an event's `extra`): `annals-sealed:v1:KEK:NONCE:CIPHERTEXT`.
pub fn sealed_to_text(sealed: &SealedKey) -> String {
    format!("{SEALED_TEXT_PREFIX}{}:{}:{}", sealed.kek_id, sealed.nonce, sealed.ciphertext)
}

/// Reads [`sealed_to_text`]'s form back; `None` for any other string.
pub fn sealed_from_text(text: &str) -> Option<SealedKey> {
    let rest = text.strip_prefix(SEALED_TEXT_PREFIX)?;
    let mut parts = rest.splitn(3, ':');
    let (kek_id, nonce, ciphertext) = (parts.next()?, parts.next()?, parts.next()?);
    Some(SealedKey {
        alg: SEAL_ALG.to_string(),
        kek_id: kek_id.to_string(),
        nonce: nonce.to_string(),
        ciphertext: ciphertext.to_string(),
    })
}

fn seal_aad(alg: &str, kek_id: &str) -> Vec<u8> {
    format!("annals sealed v1|{alg}|{kek_id}").into_bytes()
}

/// A short public name for a key, derived with a PRF so it reveals nothing about the key.
fn derive_key_id(prf_output: &[u8; 32]) -> String {
    hex::encode(&prf_output[..8])
}

/// HMAC-SHA-256 with a 32-byte key. The key is zero-padded to the 64-byte block, which is
/// exactly what HMAC does with a short key (RFC 2104), and makes construction infallible.
fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mut mac = <HmacSha256 as Mac>::new(&block.into());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}

fn decode_b64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD.decode(s)
}

fn key32(b64: &str, field: &str) -> Result<[u8; 32], SecretsError> {
    let bytes = decode_b64(b64).map_err(|e| SecretsError::InvalidKey(format!("{field}: {e}")))?;
    bytes.try_into().map_err(|b: Vec<u8>| SecretsError::InvalidKey(format!("{field}: {} bytes, expected 32", b.len())))
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<(), SecretsError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|source| SecretsError::Io { path: path.to_path_buf(), source })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(SecretsError::InsecurePermissions { path: path.to_path_buf(), mode: mode & 0o777 });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path) -> Result<(), SecretsError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const OTHER_MASTER: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

    fn keys() -> ServerKeys {
        ServerKeys::from_master_key(MASTER).unwrap()
    }

    #[test]
    fn given_a_master_key_when_derived_twice_then_keys_are_identical() {
        assert_eq!(keys(), keys());
        assert_eq!(keys().key_id().len(), 16);
    }

    #[test]
    fn given_a_short_master_key_when_derived_then_it_is_refused() {
        let err = ServerKeys::from_master_key("c2hvcnQ=").unwrap_err();
        assert!(matches!(err, SecretsError::InvalidKey(_)), "{err}");
    }

    #[test]
    fn given_a_secret_when_digested_then_it_verifies_and_others_do_not() {
        let k = keys();
        let d = k.digest("s3cr3t");
        assert_eq!(d.alg, "hmac-sha256");
        assert_eq!(d.key_id, k.key_id());
        assert_eq!(d.value.len(), 64);
        assert!(d.value.chars().all(|c| c.is_ascii_hexdigit() && !c.is_uppercase()));
        assert!(k.verify_digest("s3cr3t", &d));
        assert!(!k.verify_digest("s3cr3T", &d));
    }

    #[test]
    fn given_two_keys_when_digesting_the_same_secret_then_digests_differ() {
        let other = ServerKeys::from_master_key(OTHER_MASTER).unwrap();
        let a = keys().digest("same");
        let b = other.digest("same");
        assert_ne!(a.value, b.value);
        assert_ne!(a.key_id, b.key_id);
        assert!(!other.verify_digest("same", &a));
    }

    #[test]
    fn given_a_digest_with_a_truncated_value_when_verified_then_false_without_panic() {
        let k = keys();
        let mut d = k.digest("x");
        d.value.truncate(10);
        assert!(!k.verify_digest("x", &d));
    }

    #[test]
    fn given_plaintext_when_sealed_and_opened_then_it_round_trips() {
        let k = keys();
        let sealed = k.seal(b"private key der").unwrap();
        assert_eq!(sealed.alg, "A256GCM");
        assert_eq!(decode_b64(&sealed.nonce).unwrap().len(), 12);
        assert_eq!(k.open(&sealed).unwrap(), b"private key der");
        // A fresh nonce each time, so equal plaintexts do not look equal.
        assert_ne!(k.seal(b"private key der").unwrap().nonce, sealed.nonce);
    }

    #[test]
    fn given_a_sealed_value_when_opened_with_another_key_then_it_fails() {
        let sealed = keys().seal(b"x").unwrap();
        let other = ServerKeys::from_master_key(OTHER_MASTER).unwrap();
        assert!(matches!(other.open(&sealed), Err(SecretsError::UnknownKey { .. })));
        // Same key id but different key material: authentication fails.
        let mut impostor = other.clone();
        impostor.key_id = keys().key_id;
        assert!(matches!(impostor.open(&sealed), Err(SecretsError::Tampered)));
    }

    #[test]
    fn given_tampered_ciphertext_when_opened_then_it_fails() {
        let k = keys();
        let mut sealed = k.seal(b"hello world").unwrap();
        let mut bytes = decode_b64(&sealed.ciphertext).unwrap();
        bytes[0] ^= 1;
        sealed.ciphertext = STANDARD.encode(&bytes);
        assert!(matches!(k.open(&sealed), Err(SecretsError::Tampered)));
    }

    #[test]
    fn given_a_sealed_value_when_written_as_text_then_it_reads_back() {
        let k = keys();
        let sealed = k.seal(b"smtp password").unwrap();
        let text = sealed_to_text(&sealed);
        assert!(text.starts_with(SEALED_TEXT_PREFIX));
        let back = sealed_from_text(&text).unwrap();
        assert_eq!(back, sealed);
        assert_eq!(k.open(&back).unwrap(), b"smtp password");
        assert_eq!(sealed_from_text("plain"), None);
    }

    #[test]
    fn given_an_empty_dir_when_loading_keys_then_a_private_file_is_created_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = ServerKeys::load_or_create(&data).unwrap();
        let second = ServerKeys::load_or_create(&data).unwrap();
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(data.join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(&data).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary file left behind");
    }

    #[cfg(unix)]
    #[test]
    fn given_a_world_readable_key_file_when_loading_then_it_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        ServerKeys::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            ServerKeys::load_or_create(dir.path()),
            Err(SecretsError::InsecurePermissions { mode: 0o644, .. })
        ));
    }

    #[test]
    fn given_keys_when_debug_printed_then_no_key_material_shows() {
        let k = keys();
        let shown = format!("{k:?}");
        assert!(shown.contains(k.key_id()));
        assert!(!shown.contains("mac_key"));
    }
}
