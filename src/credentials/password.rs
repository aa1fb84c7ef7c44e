//! Password hashing (argon2id) and verification of Annals' and Keycloak's stored hashes.
use annals_events::user::{PasswordHash, UserPasswordHashUpgraded};
use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::alphabet;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use openssl::hash::MessageDigest;
use rand::rngs::OsRng;
use rand::RngCore;
use std::collections::BTreeMap;

/// OWASP's argon2id recommendation: 19 MiB, 2 passes, 1 lane.
pub const M_COST_KIB: u32 = 19_456;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;
pub const OUTPUT_LEN: usize = 32;
const SALT_LEN: usize = 16;

/// Keycloak's provider id of its argon2 hashes, and the keys of their parameters.
pub const KEYCLOAK_ARGON2: &str = "argon2";
/// Every Keycloak provider id [`verify_password`] understands.
pub const KEYCLOAK_ALGORITHMS: [&str; 4] = ["pbkdf2", "pbkdf2-sha256", "pbkdf2-sha512", KEYCLOAK_ARGON2];
const KC_TYPE: &str = "type";
const KC_VERSION: &str = "version";
const KC_MEMORY: &str = "memory";
const KC_PARALLELISM: &str = "parallelism";
const KC_HASH_LENGTH: &str = "hashLength";

/// Keycloak writes `java.util.Base64` (padded); be lenient about padding on the way in.
const KEYCLOAK_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The stored hash uses an algorithm Annals cannot check. Handled: the login fails as a
    /// server-side problem (not a wrong password) and the user must reset the password.
    #[error("unsupported password hash algorithm {0:?}")]
    UnknownAlgorithm(String),
    /// The stored hash is not well formed. Handled: like [`PasswordError::UnknownAlgorithm`];
    /// at import it refuses the file with the credential's path.
    #[error("malformed {algorithm} hash: {reason}")]
    Malformed { algorithm: String, reason: String },
    /// argon2 refused to hash (only with out-of-range parameters). Handled: the operation
    /// that needed the hash fails.
    #[error("hashing failed: {0}")]
    Hashing(String),
}

/// The outcome of checking a password against a stored hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The password matches.
    pub ok: bool,
    /// The password matches but the hash is not argon2id at the current parameters: the
    /// caller should record [`upgrade_event`] while it still knows the password.
    pub needs_upgrade: bool,
}

impl Verified {
    const WRONG: Verified = Verified { ok: false, needs_upgrade: false };
}

/// Hashes a password with argon2id at OWASP parameters and a random 16-byte salt.
pub fn hash_password(password: &str) -> Result<PasswordHash, PasswordError> {
    let mut salt = [0u8; SALT_LEN];
    OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hashing(e.to_string()))?;
    let phc = annals_argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Ok(PasswordHash::Phc { phc: phc.to_string() })
}

/// Checks a password against a stored hash: Annals' PHC strings and the hashes Keycloak's
/// `pbkdf2`, `pbkdf2-sha256`, `pbkdf2-sha512` and `argon2` providers write.
pub fn verify_password(password: &str, hash: &PasswordHash) -> Result<Verified, PasswordError> {
    match hash {
        PasswordHash::Phc { phc } => verify_phc(password, phc),
        PasswordHash::Keycloak { algorithm, iterations, salt, value, additional_parameters } => {
            let salt = decode(algorithm, "salt", salt)?;
            let expected = decode(algorithm, "value", value)?;
            if expected.is_empty() {
                return Err(malformed(algorithm, "empty hash value"));
            }
            let computed = match algorithm.as_str() {
                "pbkdf2" => pbkdf2(password, &salt, *iterations, MessageDigest::sha1(), &expected)?,
                "pbkdf2-sha256" => pbkdf2(password, &salt, *iterations, MessageDigest::sha256(), &expected)?,
                "pbkdf2-sha512" => pbkdf2(password, &salt, *iterations, MessageDigest::sha512(), &expected)?,
                KEYCLOAK_ARGON2 => {
                    keycloak_argon2(password, &salt, *iterations, additional_parameters, expected.len())?
                }
                other => return Err(PasswordError::UnknownAlgorithm(other.to_string())),
            };
            // Equal lengths by construction (the output length is the stored length), which
            // memcmp::eq requires.
            let ok = computed.len() == expected.len() && openssl::memcmp::eq(&computed, &expected);
            // Every Keycloak hash is replaced once the password is known, whatever its
            // strength, so no Keycloak format lingers.
            Ok(Verified { ok, needs_upgrade: ok })
        }
    }
}

/// Checks that a stored hash is one [`verify_password`] can evaluate (known algorithm,
/// decodable salt and value, valid parameters) without the cost of hashing. Used at import,
/// so a file whose hashes could never verify is refused up front.
pub fn check_hash(hash: &PasswordHash) -> Result<(), PasswordError> {
    match hash {
        PasswordHash::Phc { phc } => {
            let named = phc.strip_prefix('$').and_then(|s| s.split('$').next()).unwrap_or_default();
            if !matches!(named, "argon2id" | "argon2i" | "argon2d") {
                return Err(PasswordError::UnknownAlgorithm(named.to_string()));
            }
            let parsed = argon2::PasswordHash::new(phc).map_err(|e| malformed(named, e))?;
            Params::try_from(&parsed).map_err(|e| malformed(named, e))?;
            Ok(())
        }
        PasswordHash::Keycloak { algorithm, iterations, salt, value, additional_parameters } => {
            if !KEYCLOAK_ALGORITHMS.contains(&algorithm.as_str()) {
                return Err(PasswordError::UnknownAlgorithm(algorithm.clone()));
            }
            decode(algorithm, "salt", salt)?;
            let value = decode(algorithm, "value", value)?;
            if value.is_empty() {
                return Err(malformed(algorithm, "empty hash value"));
            }
            if *iterations == 0 {
                return Err(malformed(algorithm, "zero iterations"));
            }
            if algorithm == KEYCLOAK_ARGON2 {
                keycloak_argon2_context(*iterations, additional_parameters, value.len())?;
            }
            Ok(())
        }
    }
}

/// The event that replaces `old` with a fresh argon2id hash of `password`. Call it only after
/// [`verify_password`] said `ok` and `needs_upgrade`.
pub fn upgrade_event(password: &str, old: &PasswordHash) -> Result<UserPasswordHashUpgraded, PasswordError> {
    Ok(UserPasswordHashUpgraded { from_algorithm: algorithm_name(old), hash: hash_password(password)? })
}

/// The algorithm a hash uses: Keycloak's provider id, or the PHC algorithm identifier.
pub fn algorithm_name(hash: &PasswordHash) -> String {
    match hash {
        PasswordHash::Keycloak { algorithm, .. } => algorithm.clone(),
        PasswordHash::Phc { phc } => {
            phc.strip_prefix('$').and_then(|s| s.split('$').next()).unwrap_or("unknown").to_string()
        }
    }
}

/// An argon2 PHC string in the form Keycloak's `argon2` provider stores, so Keycloak itself
/// can verify (and import) it.
pub fn phc_to_keycloak(phc: &str) -> Result<PasswordHash, PasswordError> {
    let parsed = argon2::PasswordHash::new(phc).map_err(|e| malformed("phc", e))?;
    let kind = match parsed.algorithm.as_str() {
        "argon2id" => "id",
        "argon2i" => "i",
        "argon2d" => "d",
        other => return Err(PasswordError::UnknownAlgorithm(other.to_string())),
    };
    let version = match parsed.version {
        None | Some(0x13) => "1.3",
        Some(0x10) => "1.0",
        Some(v) => return Err(malformed("phc", format!("argon2 version {v}"))),
    };
    let params = Params::try_from(&parsed).map_err(|e| malformed("phc", e))?;
    let salt = parsed
        .salt
        .ok_or_else(|| malformed("phc", "no salt"))
        .and_then(|s| STANDARD_NO_PAD.decode(s.as_str()).map_err(|e| malformed("phc", e)))?;
    let hash = parsed.hash.ok_or_else(|| malformed("phc", "no hash"))?;
    let one = |v: String| vec![v];
    let additional_parameters = BTreeMap::from([
        (KC_TYPE.to_string(), one(kind.to_string())),
        (KC_VERSION.to_string(), one(version.to_string())),
        (KC_MEMORY.to_string(), one(params.m_cost().to_string())),
        (KC_PARALLELISM.to_string(), one(params.p_cost().to_string())),
        (KC_HASH_LENGTH.to_string(), one(hash.len().to_string())),
    ]);
    Ok(PasswordHash::Keycloak {
        algorithm: KEYCLOAK_ARGON2.to_string(),
        iterations: params.t_cost(),
        salt: STANDARD.encode(salt),
        value: STANDARD.encode(hash.as_bytes()),
        additional_parameters,
    })
}

/// The PHC string of a Keycloak `argon2` hash that is argon2id v1.3 at exactly Annals'
/// parameters; `None` for anything else. Such a hash is what [`phc_to_keycloak`] writes (an
/// Annals export read back), and holds nothing a PHC string would not, so it is stored as
/// Annals' own hash instead of as a legacy hash awaiting upgrade.
pub fn keycloak_to_phc(hash: &PasswordHash) -> Option<PasswordHash> {
    let PasswordHash::Keycloak { algorithm, iterations, salt, value, additional_parameters: params } = hash else {
        return None;
    };
    let known = [KC_TYPE, KC_VERSION, KC_MEMORY, KC_PARALLELISM, KC_HASH_LENGTH];
    let at_target = algorithm == KEYCLOAK_ARGON2
        && *iterations == T_COST
        && params.keys().all(|k| known.contains(&k.as_str()))
        && param(params, KC_TYPE).unwrap_or("id") == "id"
        && param(params, KC_VERSION).unwrap_or("1.3") == "1.3"
        && param(params, KC_MEMORY) == Some(&M_COST_KIB.to_string())
        && param(params, KC_PARALLELISM).unwrap_or("1") == P_COST.to_string()
        && param(params, KC_HASH_LENGTH).unwrap_or("32") == OUTPUT_LEN.to_string();
    if !at_target {
        return None;
    }
    let salt = KEYCLOAK_B64.decode(salt).ok()?;
    let value = KEYCLOAK_B64.decode(value).ok()?;
    if value.len() != OUTPUT_LEN {
        return None;
    }
    let phc = format!(
        "$argon2id$v=19$m={M_COST_KIB},t={T_COST},p={P_COST}${}${}",
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(value)
    );
    // Only a string argon2 itself accepts (salt length limits) may become a PHC hash.
    argon2::PasswordHash::new(&phc).ok()?;
    Some(PasswordHash::Phc { phc })
}

fn annals_argon2() -> Result<Argon2<'static>, PasswordError> {
    let params =
        Params::new(M_COST_KIB, T_COST, P_COST, Some(OUTPUT_LEN)).map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn verify_phc(password: &str, phc: &str) -> Result<Verified, PasswordError> {
    // Name the algorithm before parsing, so a PHC string of another scheme reads as
    // unsupported rather than as malformed argon2.
    let named = phc.strip_prefix('$').and_then(|s| s.split('$').next()).unwrap_or_default();
    if !matches!(named, "argon2id" | "argon2i" | "argon2d") {
        return Err(PasswordError::UnknownAlgorithm(named.to_string()));
    }
    let parsed = argon2::PasswordHash::new(phc).map_err(|e| malformed(named, e))?;
    let algorithm = parsed.algorithm.as_str();
    // The verifier takes algorithm, version and parameters from the hash itself.
    match Argon2::default().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => {
            let params = Params::try_from(&parsed).map_err(|e| malformed(algorithm, e))?;
            let current = algorithm == "argon2id"
                && parsed.version == Some(0x13)
                && params.m_cost() == M_COST_KIB
                && params.t_cost() == T_COST
                && params.p_cost() == P_COST
                && parsed.hash.map(|h| h.len()) == Some(OUTPUT_LEN);
            Ok(Verified { ok: true, needs_upgrade: !current })
        }
        Err(argon2::password_hash::Error::Password) => Ok(Verified::WRONG),
        Err(e) => Err(malformed(algorithm, e)),
    }
}

fn pbkdf2(
    password: &str,
    salt: &[u8],
    iterations: u32,
    digest: MessageDigest,
    expected: &[u8],
) -> Result<Vec<u8>, PasswordError> {
    if iterations == 0 {
        return Err(malformed("pbkdf2", "zero iterations"));
    }
    // Keycloak derives as many bytes as it stored, so the stored length is the key length.
    let mut out = vec![0u8; expected.len()];
    // OpenSSL rather than the pure-Rust crate: 27,500+ rounds stay fast in debug builds too.
    openssl::pkcs5::pbkdf2_hmac(password.as_bytes(), salt, iterations as usize, digest, &mut out)
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Ok(out)
}

fn keycloak_argon2(
    password: &str,
    salt: &[u8],
    iterations: u32,
    params: &BTreeMap<String, Vec<String>>,
    stored_len: usize,
) -> Result<Vec<u8>, PasswordError> {
    let argon2 = keycloak_argon2_context(iterations, params, stored_len)?;
    let mut out = vec![0u8; stored_len];
    argon2.hash_password_into(password.as_bytes(), salt, &mut out).map_err(|e| malformed(KEYCLOAK_ARGON2, e))?;
    Ok(out)
}

/// The argon2 instance a Keycloak `argon2` hash was made with.
fn keycloak_argon2_context(
    iterations: u32,
    params: &BTreeMap<String, Vec<String>>,
    stored_len: usize,
) -> Result<Argon2<'static>, PasswordError> {
    // Keycloak's defaults (Argon2Parameters) apply to parameters it did not record.
    let algorithm = match param(params, KC_TYPE).unwrap_or("id") {
        "id" => Algorithm::Argon2id,
        "i" => Algorithm::Argon2i,
        "d" => Algorithm::Argon2d,
        other => return Err(malformed(KEYCLOAK_ARGON2, format!("type {other:?}"))),
    };
    let version = match param(params, KC_VERSION).unwrap_or("1.3") {
        "1.3" => Version::V0x13,
        "1.0" => Version::V0x10,
        other => return Err(malformed(KEYCLOAK_ARGON2, format!("version {other:?}"))),
    };
    let number = |key: &str, default: u32| -> Result<u32, PasswordError> {
        match param(params, key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| malformed(KEYCLOAK_ARGON2, format!("{key} {v:?}"))),
        }
    };
    let memory = number(KC_MEMORY, 7168)?;
    let parallelism = number(KC_PARALLELISM, 1)?;
    let hash_length = number(KC_HASH_LENGTH, stored_len as u32)?;
    if hash_length as usize != stored_len {
        return Err(malformed(
            KEYCLOAK_ARGON2,
            format!("hashLength {hash_length} but the value has {stored_len} bytes"),
        ));
    }
    let params =
        Params::new(memory, iterations, parallelism, Some(stored_len)).map_err(|e| malformed(KEYCLOAK_ARGON2, e))?;
    Ok(Argon2::new(algorithm, version, params))
}

/// Keycloak's parameters are multi-valued maps; each of these has one value.
fn param<'a>(params: &'a BTreeMap<String, Vec<String>>, key: &str) -> Option<&'a str> {
    params.get(key).and_then(|v| v.first()).map(String::as_str)
}

fn decode(algorithm: &str, field: &str, b64: &str) -> Result<Vec<u8>, PasswordError> {
    KEYCLOAK_B64.decode(b64).map_err(|e| malformed(algorithm, format!("{field} is not base64: {e}")))
}

fn malformed(algorithm: &str, reason: impl std::fmt::Display) -> PasswordError {
    PasswordError::Malformed { algorithm: algorithm.to_string(), reason: reason.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors computed with Python's hashlib.pbkdf2_hmac and argon2-cffi's
    // low_level.hash_secret_raw / hash_secret, salt = 00112233445566778899aabbccddeeff.
    const SALT: &str = "ABEiM0RVZneImaq7zN3u/w==";
    const PW: &str = "correct horse";

    fn kc(algorithm: &str, iterations: u32, value: &str, params: &[(&str, &str)]) -> PasswordHash {
        PasswordHash::Keycloak {
            algorithm: algorithm.into(),
            iterations,
            salt: SALT.into(),
            value: value.into(),
            additional_parameters: params.iter().map(|(k, v)| (k.to_string(), vec![v.to_string()])).collect(),
        }
    }

    fn upgraded_ok() -> Verified {
        Verified { ok: true, needs_upgrade: true }
    }

    #[test]
    fn given_a_keycloak_pbkdf2_sha1_hash_when_verified_then_it_matches_and_needs_upgrade() {
        let h = kc(
            "pbkdf2",
            1000,
            "aZhEn4RXT7qRdjWV+vyPHw4kHkMn+6FD6OBK6DCcJGdcmoayyE/h5C8pNlGFkbH8NmRhTwfUUNwek6uDDSnE5A==",
            &[],
        );
        assert_eq!(verify_password(PW, &h).unwrap(), upgraded_ok());
        assert_eq!(verify_password("wrong", &h).unwrap(), Verified::WRONG);
    }

    #[test]
    fn given_a_keycloak_pbkdf2_sha256_hash_when_verified_then_it_matches() {
        let h = kc("pbkdf2-sha256", 27500, "fE5ivIW8sA1WX/IiJDSiBQBm8gNtDibhVEZ8vMrIGVs=", &[]);
        assert_eq!(verify_password(PW, &h).unwrap(), upgraded_ok());
        assert_eq!(verify_password("correct horse ", &h).unwrap(), Verified::WRONG);
    }

    #[test]
    fn given_a_keycloak_pbkdf2_sha512_hash_of_a_non_ascii_password_when_verified_then_utf8_is_used() {
        let h = kc(
            "pbkdf2-sha512",
            1000,
            "genfBWZG2PENP6dF646WAywiNeeOVe2+98WoTq1/p992NEbeOEvI2wLqMyNvBOmK+KcTsN6GiAmQPu3AU1jDBA==",
            &[],
        );
        assert_eq!(verify_password("pässwörd", &h).unwrap(), upgraded_ok());
        assert_eq!(verify_password("passwords", &h).unwrap(), Verified::WRONG);
    }

    #[test]
    fn given_a_keycloak_argon2id_hash_when_verified_then_its_parameters_are_honoured() {
        let h = kc(
            "argon2",
            3,
            "AUmv8ZFYqSl/A329ILq6qEeQoFIoChcrPxuzrimcT44=",
            &[("type", "id"), ("version", "1.3"), ("memory", "1024"), ("parallelism", "1"), ("hashLength", "32")],
        );
        assert_eq!(verify_password(PW, &h).unwrap(), upgraded_ok());
        assert_eq!(verify_password("Correct horse", &h).unwrap(), Verified::WRONG);
    }

    #[test]
    fn given_keycloak_argon2i_v10_and_argon2d_hashes_when_verified_then_type_and_version_apply() {
        let i10 = kc(
            "argon2",
            2,
            "YAui2IkDEumLeMJ07G1vGTWL9eW0gQUP",
            &[("type", "i"), ("version", "1.0"), ("memory", "256"), ("parallelism", "2"), ("hashLength", "24")],
        );
        assert_eq!(verify_password(PW, &i10).unwrap(), upgraded_ok());
        let d13 = kc("argon2", 2, "FHSKNu0BLux/xx7hAnRMMO/4Az5ERtNgv9EGivgzguE=", &[("type", "d"), ("memory", "256")]);
        assert_eq!(verify_password(PW, &d13).unwrap(), upgraded_ok());
    }

    #[test]
    fn given_a_keycloak_argon2_hash_whose_hash_length_disagrees_when_verified_then_malformed() {
        let h = kc(
            "argon2",
            3,
            "AUmv8ZFYqSl/A329ILq6qEeQoFIoChcrPxuzrimcT44=",
            &[("memory", "1024"), ("hashLength", "16")],
        );
        assert!(matches!(verify_password(PW, &h), Err(PasswordError::Malformed { .. })));
    }

    #[test]
    fn given_an_unknown_keycloak_algorithm_when_verified_then_it_is_an_error() {
        let h = kc("bcrypt", 10, "AAAA", &[]);
        assert!(matches!(
            verify_password(PW, &h),
            Err(PasswordError::UnknownAlgorithm(a)) if a == "bcrypt"
        ));
        let phc = PasswordHash::Phc { phc: "$scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaA".into() };
        assert!(matches!(
            verify_password(PW, &phc),
            Err(PasswordError::UnknownAlgorithm(a)) if a == "scrypt"
        ));
    }

    #[test]
    fn given_an_argon2_cffi_phc_string_below_current_parameters_when_verified_then_upgrade() {
        let h = PasswordHash::Phc {
            phc: "$argon2id$v=19$m=1024,t=2,p=1$ABEiM0RVZneImaq7zN3u/w$4k5A24W3A27JUVwJfOv9ZG9te/pfjISEvU7K9zQxjXo"
                .into(),
        };
        assert_eq!(verify_password(PW, &h).unwrap(), upgraded_ok());
        assert_eq!(verify_password("nope", &h).unwrap(), Verified::WRONG);
    }

    #[test]
    fn given_an_argon2_cffi_phc_string_at_owasp_parameters_when_verified_then_no_upgrade() {
        let h = PasswordHash::Phc {
            phc: "$argon2id$v=19$m=19456,t=2,p=1$ABEiM0RVZneImaq7zN3u/w$ggG5eVD9rnr29qDBC//4Z1M4+XuHGop9XJ98GH2w0as"
                .into(),
        };
        let v = verify_password(PW, &h).unwrap();
        assert_eq!(v, Verified { ok: true, needs_upgrade: false });
    }

    #[test]
    fn given_a_password_when_hashed_then_it_is_argon2id_at_owasp_parameters_and_verifies() {
        let h = hash_password("hunter2").unwrap();
        let PasswordHash::Phc { phc } = &h else { panic!("not phc: {h:?}") };
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_eq!(verify_password("hunter2", &h).unwrap(), Verified { ok: true, needs_upgrade: false });
        assert_eq!(verify_password("hunter3", &h).unwrap(), Verified::WRONG);
        assert_ne!(hash_password("hunter2").unwrap(), h, "salts must differ");
    }

    #[test]
    fn given_a_verified_keycloak_hash_when_upgrading_then_the_event_holds_argon2id() {
        let old = kc("pbkdf2-sha256", 27500, "fE5ivIW8sA1WX/IiJDSiBQBm8gNtDibhVEZ8vMrIGVs=", &[]);
        let e = upgrade_event(PW, &old).unwrap();
        assert_eq!(e.from_algorithm, "pbkdf2-sha256");
        assert!(!verify_password(PW, &e.hash).unwrap().needs_upgrade);
    }

    #[test]
    fn given_a_phc_hash_when_converted_to_keycloak_form_then_it_verifies_and_converts_back() {
        let phc = "$argon2id$v=19$m=19456,t=2,p=1$ABEiM0RVZneImaq7zN3u/w$ggG5eVD9rnr29qDBC//4Z1M4+XuHGop9XJ98GH2w0as";
        let kc_form = phc_to_keycloak(phc).unwrap();
        let PasswordHash::Keycloak { algorithm, iterations, salt, additional_parameters, .. } = &kc_form else {
            panic!("{kc_form:?}")
        };
        assert_eq!((algorithm.as_str(), *iterations), ("argon2", 2));
        assert_eq!(salt, SALT);
        assert_eq!(additional_parameters["memory"], vec!["19456"]);
        assert_eq!(additional_parameters["type"], vec!["id"]);
        assert_eq!(additional_parameters["version"], vec!["1.3"]);
        // Keycloak's own verification of that form accepts the password.
        assert!(verify_password(PW, &kc_form).unwrap().ok);
        assert_eq!(keycloak_to_phc(&kc_form), Some(PasswordHash::Phc { phc: phc.into() }));
    }

    #[test]
    fn given_a_keycloak_argon2_hash_at_keycloak_defaults_when_normalized_then_it_stays_legacy() {
        let h = kc("argon2", 3, "AUmv8ZFYqSl/A329ILq6qEeQoFIoChcrPxuzrimcT44=", &[("memory", "1024")]);
        assert_eq!(keycloak_to_phc(&h), None);
    }

    #[test]
    fn given_stored_hashes_when_checked_then_only_verifiable_ones_pass() {
        assert!(check_hash(&kc("pbkdf2-sha256", 27500, "fE5ivIW8sA1WX/IiJDSiBQBm8gNtDibhVEZ8vMrIGVs=", &[])).is_ok());
        assert!(matches!(check_hash(&kc("md5", 1, "AAAA", &[])), Err(PasswordError::UnknownAlgorithm(_))));
        assert!(matches!(check_hash(&kc("pbkdf2", 0, "AAAA", &[])), Err(PasswordError::Malformed { .. })));
        assert!(matches!(check_hash(&kc("pbkdf2", 1, "not base64!", &[])), Err(PasswordError::Malformed { .. })));
        assert!(matches!(check_hash(&kc("argon2", 1, "AAAA", &[("type", "x")])), Err(PasswordError::Malformed { .. })));
        assert!(check_hash(&hash_password("x").unwrap()).is_ok());
    }

    #[test]
    fn given_hashes_when_naming_their_algorithm_then_keycloak_ids_and_phc_idents_are_used() {
        assert_eq!(algorithm_name(&kc("pbkdf2", 1, "", &[])), "pbkdf2");
        let phc = PasswordHash::Phc { phc: "$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".into() };
        assert_eq!(algorithm_name(&phc), "argon2i");
    }
}
