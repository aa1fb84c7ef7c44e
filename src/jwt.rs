//! Signed JWTs with a realm's keys (RS256, ES256, EdDSA), and their verification.
//!
//! Signing opens the sealed private key once per [`Signer`]; callers keep signers for as long
//! as the key is active. Verification trusts nothing in the token's header but the `kid`: the
//! algorithm must be the one the named key was made for, so `alg: none`, an HMAC keyed with a
//! public key, or a key of one algorithm presented as another are all refused before any
//! signature is checked.
use crate::secrets::{SecretsError, ServerKeys};
use annals_projections::signing_keys::KeyView;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use jsonwebtoken::Algorithm;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::Rsa;
use openssl::sign::{Signer as OsslSigner, Verifier};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("signing algorithm {0} is not supported")]
    Unsupported(String),
    #[error("the private key cannot be opened: {0}")]
    Sealed(#[from] SecretsError),
    #[error("the private key is malformed: {0}")]
    Key(#[from] openssl::error::ErrorStack),
    /// The token is not a well-formed JWS, names no known key, or uses another algorithm
    /// than its key's; no signature was checked.
    #[error("token refused: {0}")]
    Refused(String),
    /// The signature (or HS512 MAC) does not verify.
    #[error("token invalid: bad signature")]
    BadSignature,
    /// Signed by the right key, but the claims are not what this use requires (issuer,
    /// audience, expiry, not-before, shape).
    #[error("token claims refused: {0}")]
    Claims(String),
    /// A stored key cannot be used (a bug or damaged data, not the caller's fault).
    #[error("stored key unusable: {0}")]
    Stored(String),
}

fn algorithm(name: &str) -> Result<Algorithm, JwtError> {
    match name {
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => Err(JwtError::Unsupported(other.to_string())),
    }
}

/// One realm key, opened, ready to sign, with the key parsed once (jsonwebtoken's ring
/// backend re-parses the DER, and for EC recomputes the public point, on every signature:
/// half the cost of an ES256 token). RSA and EdDSA sign through OpenSSL.
pub struct Signer {
    kid: String,
    alg: Algorithm,
    key: PKey<Private>,
    /// The same key as ring's P-256 key pair for ES256. ring signs straight into `r || s`
    /// and skips what OpenSSL 3 does around `ECDSA_do_sign` for each signature (its DRBG
    /// behind a lock, the generic bignum layer): a P-256 signature costs 22 µs there against
    /// 24.5 µs through `ECDSA_do_sign` on the benchmark machine, and more under load.
    ec: Option<ring::signature::EcdsaKeyPair>,
    /// `{"alg":..,"kid":..,"typ":` already encoded once per signer.
    header_prefix: String,
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        _ => "EdDSA",
    }
}

fn ecdsa_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() != 64 {
        return None;
    }
    let r = BigNum::from_slice(&raw[..32]).ok()?;
    let s = BigNum::from_slice(&raw[32..]).ok()?;
    EcdsaSig::from_private_components(r, s).ok()?.to_der().ok()
}

/// An OpenSSL P-256 private key as ring's key pair (the scalar and the uncompressed point;
/// ring checks that they belong together).
fn ring_p256(ec: &EcKey<Private>) -> Result<ring::signature::EcdsaKeyPair, JwtError> {
    let mut ctx = openssl::bn::BigNumContext::new()?;
    let point = ec.public_key().to_bytes(ec.group(), openssl::ec::PointConversionForm::UNCOMPRESSED, &mut ctx)?;
    let scalar = ec.private_key().to_vec_padded(32)?;
    ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &scalar,
        &point,
        &ring::rand::SystemRandom::new(),
    )
    .map_err(|e| JwtError::Stored(format!("P-256 key refused: {e}")))
}

impl Signer {
    pub fn open(view: &KeyView, keys: &ServerKeys) -> Result<Self, JwtError> {
        let alg = algorithm(&view.algorithm)?;
        let pkcs8 = keys.open(&view.private_key)?;
        let key = PKey::private_key_from_pkcs8(&pkcs8)?;
        let ec = if alg == Algorithm::ES256 { Some(ring_p256(&key.ec_key()?)?) } else { None };
        let header_prefix = format!(
            "{{\"alg\":\"{}\",\"kid\":{},\"typ\":",
            alg_name(alg),
            serde_json::to_string(&view.kid).map_err(|e| JwtError::Stored(e.to_string()))?
        );
        let signer = Signer { kid: view.kid.clone(), alg, key, ec, header_prefix };
        // A key that cannot sign, or does not match what the realm publishes, fails here
        // rather than in the first token request.
        let probe = signer.sign("JWT", &serde_json::json!({}))?;
        let (input, sig) = probe.rsplit_once('.').ok_or_else(|| JwtError::Stored("probe".into()))?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|e| JwtError::Stored(e.to_string()))?;
        if !signature_ok(view, input.as_bytes(), &sig)? {
            return Err(JwtError::Stored(format!("key {} does not match its published half", view.kid)));
        }
        Ok(signer)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` with header `typ` (`JWT`, or `at+jwt` for RFC 9068 access tokens).
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, JwtError> {
        let typ = serde_json::to_string(typ).map_err(|e| JwtError::Stored(e.to_string()))?;
        let header = format!("{}{typ}}}", self.header_prefix);
        let payload = serde_json::to_vec(claims).map_err(|e| JwtError::Stored(e.to_string()))?;
        let mut out = URL_SAFE_NO_PAD.encode(header.as_bytes());
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
        let sig = match self.alg {
            Algorithm::RS256 => {
                OsslSigner::new(MessageDigest::sha256(), &self.key)?.sign_oneshot_to_vec(out.as_bytes())?
            }
            Algorithm::ES256 => {
                let ec = self.ec.as_ref().ok_or_else(|| JwtError::Stored("ES256 key without its EC half".into()))?;
                ec.sign(&ring::rand::SystemRandom::new(), out.as_bytes())
                    .map_err(|_| JwtError::Stored("ES256 signing failed".into()))?
                    .as_ref()
                    .to_vec()
            }
            _ => OsslSigner::new_without_digest(&self.key)?.sign_oneshot_to_vec(out.as_bytes())?,
        };
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&sig, &mut out);
        Ok(out)
    }
}

/// Tokens longer than this are refused unread (ours are well under 4 KiB).
pub const MAX_TOKEN: usize = 16 * 1024;

/// What a token must be, besides correctly signed. Every field is required on purpose: a
/// check a caller forgot is a hole.
#[derive(Clone, Debug)]
pub struct Expect<'a> {
    /// The realm whose keys may have signed it (a key of another realm is refused).
    pub realm_id: &'a str,
    /// `iss`, exactly (a string; an array is refused).
    pub issuer: &'a str,
    /// The header `typ`: `JWT` for ID tokens, `at+jwt` for access tokens (case-insensitive,
    /// `application/` prefix allowed), so one kind of token never passes for another.
    pub typ: &'a str,
    /// An audience that `aud` (a string or an array of strings) must contain; `None` only
    /// where the protocol names no audience.
    pub audience: Option<&'a str>,
    /// The injected clock's time (not the system clock).
    pub now: DateTime<Utc>,
    /// Accepts an expired token (an `id_token_hint` at logout may have expired).
    pub allow_expired: bool,
}

fn refused(reason: &str) -> JwtError {
    JwtError::Refused(reason.to_string())
}

/// Verifies `token` against the key its `kid` names (looked up by `key`), checks the
/// registered claims against `expect` and decodes the claims.
pub fn verify<'k, T: DeserializeOwned>(
    token: &str,
    key: impl FnOnce(&str) -> Option<&'k KeyView>,
    expect: &Expect<'_>,
) -> Result<T, JwtError> {
    if token.len() > MAX_TOKEN {
        return Err(refused("token too long"));
    }
    // Header members jsonwebtoken does not model: `crit` must be understood (RFC 7515), and
    // we understand none; keys named by URL or embedded in the token are never used.
    let raw_header = token.split('.').next().unwrap_or_default();
    let raw_header: serde_json::Map<String, Value> =
        json_segment(raw_header).ok_or_else(|| refused("malformed header"))?;
    if ["crit", "jku", "jwk", "x5u", "x5c"].iter().any(|m| raw_header.contains_key(*m)) {
        return Err(refused("unsupported header member"));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| refused("malformed header"))?;
    let kid = header.kid.ok_or_else(|| refused("no kid"))?;
    let view = key(&kid).ok_or_else(|| refused("unknown key"))?;
    if view.realm_id != expect.realm_id {
        return Err(refused("key of another realm"));
    }
    // A retired key vouches for nothing once it is no longer published.
    if let annals_projections::signing_keys::KeyStatus::Retired { publish_until } = view.status {
        if publish_until <= expect.now.timestamp() {
            return Err(refused("key retired"));
        }
    }
    let alg = algorithm(&view.algorithm)?;
    if header.alg != alg {
        return Err(refused("algorithm is not the key's own"));
    }
    let typ = header.typ.unwrap_or_default().to_ascii_lowercase();
    if typ.strip_prefix("application/").unwrap_or(&typ) != expect.typ.to_ascii_lowercase() {
        return Err(refused("wrong token type"));
    }
    let (input, sig) = token.rsplit_once('.').ok_or_else(|| refused("malformed token"))?;
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| refused("malformed signature"))?;
    if !signature_ok(view, input.as_bytes(), &sig)? {
        return Err(JwtError::BadSignature);
    }
    let payload = input.split_once('.').map(|(_, p)| p).ok_or_else(|| refused("malformed token"))?;
    checked_claims(payload, expect)
}

/// The JSON in one base64url segment of a compact JWS (its header or its claims); `None` if
/// the segment is not that.
pub fn json_segment<T: DeserializeOwned>(segment: &str) -> Option<T> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).ok()?).ok()
}

/// A compact JWS's header, payload and signature segments; `None` unless there are exactly
/// three.
pub fn compact_parts(token: &str) -> Option<(&str, &str, &str)> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => Some((h, p, s)),
        _ => None,
    }
}

/// The claims segment of a token whose signature verified: a JSON object that meets `expect`.
/// Read twice, once for the registered claims alone and once as `T`: both typed passes cost
/// less than building a `Value` of every claim first (about 1% of a refresh).
fn checked_claims<T: DeserializeOwned>(payload: &str, expect: &Expect<'_>) -> Result<T, JwtError> {
    let not_object = || JwtError::Claims("claims are not a JSON object".into());
    let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| not_object())?;
    // A derived struct would also read an array; a `T` of `Value` would read anything.
    if json.trim_ascii_start().first() != Some(&b'{') {
        return Err(not_object());
    }
    let registered: Registered = serde_json::from_slice(&json).map_err(|_| not_object())?;
    check_claims(&registered, expect)?;
    serde_json::from_slice(&json).map_err(|e| JwtError::Claims(e.to_string()))
}

/// The registered claims [`check_claims`] judges, each as written (a `null` stays a value, so
/// it is refused as a time rather than taken for an absent one). A name given twice is
/// refused: a token must not mean one thing here and another to a reader keeping the first.
#[derive(serde::Deserialize)]
struct Registered {
    #[serde(default, deserialize_with = "present")]
    iss: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    aud: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    exp: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    nbf: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    iat: Option<Value>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    <Value as serde::Deserialize>::deserialize(d).map(Some)
}

/// The header of every token [`sign_hmac`] makes, encoded once (the members in the order
/// jsonwebtoken wrote them, so tokens look the same as before).
fn hs512_header() -> &'static str {
    static HEADER: OnceLock<String> = OnceLock::new();
    HEADER.get_or_init(|| URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"HS512"}"#))
}

/// Signs with HS512 under a key only this server holds. Refresh tokens use it (as Keycloak's
/// do): a resource server that trusts the realm's published keys can never mistake one for an
/// access token, and nobody else can mint one. ring's HMAC directly: jsonwebtoken's own
/// encoding and decoding of the same took about 7% of a refresh.
pub fn sign_hmac<T: Serialize>(key: &ring::hmac::Key, claims: &T) -> Result<String, JwtError> {
    let payload = serde_json::to_vec(claims).map_err(|e| JwtError::Stored(e.to_string()))?;
    let mut out = String::with_capacity(hs512_header().len() + payload.len() * 4 / 3 + 90);
    out.push_str(hs512_header());
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
    let tag = ring::hmac::sign(key, out.as_bytes());
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut out);
    Ok(out)
}

/// Verifies a token made by [`sign_hmac`] with `key`; `expect.realm_id` is not consulted (the
/// key is the realm's own). The header is checked before the MAC, the MAC (in constant time)
/// before anything of the payload is read.
pub fn verify_hmac<T: DeserializeOwned>(
    token: &str,
    key: &ring::hmac::Key,
    expect: &Expect<'_>,
) -> Result<T, JwtError> {
    #[derive(serde::Deserialize)]
    struct Hs512Header {
        alg: String,
        #[serde(default)]
        typ: Option<String>,
    }
    if token.len() > MAX_TOKEN {
        return Err(refused("token too long"));
    }
    let (raw_header, payload, sig) = compact_parts(token).ok_or_else(|| refused("malformed token"))?;
    let header: Hs512Header = json_segment(raw_header).ok_or_else(|| refused("malformed header"))?;
    if header.alg != "HS512" {
        return Err(refused("algorithm is not HS512"));
    }
    let typ = header.typ.unwrap_or_default().to_ascii_lowercase();
    if typ != expect.typ.to_ascii_lowercase() {
        return Err(refused("wrong token type"));
    }
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| refused("malformed signature"))?;
    let input = &token[..raw_header.len() + 1 + payload.len()];
    ring::hmac::verify(key, input.as_bytes(), &sig).map_err(|_| JwtError::BadSignature)?;
    checked_claims(payload, expect)
}

/// Published halves as OpenSSL keys, by `kid`, each kept with the JWK it came from (a `kid`
/// is the key's thumbprint, and the JWK is compared anyway, so an entry never vouches for
/// another key). Verification then costs the signature check alone.
type Published = HashMap<String, (Value, Arc<PKey<Public>>)>;

fn published_cache() -> &'static RwLock<Published> {
    static CACHE: OnceLock<RwLock<Published>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The key's published half, as a verification key.
fn published(view: &KeyView) -> Result<Arc<PKey<Public>>, JwtError> {
    if let Some((jwk, key)) = published_cache().read().unwrap_or_else(|p| p.into_inner()).get(&view.kid) {
        if *jwk == view.public_jwk {
            return Ok(key.clone());
        }
    }
    let stored = |what: &str| JwtError::Stored(format!("published key {}: {what}", view.kid));
    let member = |name: &str| -> Result<Vec<u8>, JwtError> {
        let v = view.public_jwk.get(name).and_then(Value::as_str).ok_or_else(|| stored(name))?;
        URL_SAFE_NO_PAD.decode(v).map_err(|_| stored(name))
    };
    let key = match algorithm(&view.algorithm)? {
        Algorithm::RS256 => {
            let rsa =
                Rsa::from_public_components(BigNum::from_slice(&member("n")?)?, BigNum::from_slice(&member("e")?)?)?;
            PKey::from_rsa(rsa)?
        }
        Algorithm::ES256 => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
            let (x, y) = (BigNum::from_slice(&member("x")?)?, BigNum::from_slice(&member("y")?)?);
            PKey::from_ec_key(EcKey::from_public_key_affine_coordinates(&group, &x, &y)?)?
        }
        _ => PKey::public_key_from_raw_bytes(&member("x")?, openssl::pkey::Id::ED25519)?,
    };
    let key = Arc::new(key);
    let mut cache = published_cache().write().unwrap_or_else(|p| p.into_inner());
    if cache.len() > 10_000 {
        cache.clear();
    }
    cache.insert(view.kid.clone(), (view.public_jwk.clone(), key.clone()));
    Ok(key)
}

/// Whether `sig` is `key`'s signature over `input` by `alg` (`RS256`, `PS256`, `ES256`,
/// `EdDSA`): client assertions, signed with keys the client registered.
pub fn signature_valid(alg: &str, key: &PKey<Public>, input: &[u8], sig: &[u8]) -> bool {
    let check = || -> Result<bool, openssl::error::ErrorStack> {
        Ok(match alg {
            "RS256" => Verifier::new(MessageDigest::sha256(), key)?.verify_oneshot(sig, input).unwrap_or(false),
            "PS256" => {
                let mut v = Verifier::new(MessageDigest::sha256(), key)?;
                v.set_rsa_padding(openssl::rsa::Padding::PKCS1_PSS)?;
                v.set_rsa_pss_saltlen(openssl::sign::RsaPssSaltlen::DIGEST_LENGTH)?;
                v.verify_oneshot(sig, input).unwrap_or(false)
            }
            "ES256" => match ecdsa_raw_to_der(sig) {
                Some(der) => Verifier::new(MessageDigest::sha256(), key)?.verify_oneshot(&der, input).unwrap_or(false),
                None => false,
            },
            "EdDSA" => Verifier::new_without_digest(key)?.verify_oneshot(sig, input).unwrap_or(false),
            _ => false,
        })
    };
    check().unwrap_or(false)
}

/// Whether `sig` is the HMAC of `input` under `key` by `alg` (`HS256`, `HS384`, `HS512`),
/// compared in constant time: `client_secret_jwt` assertions.
pub fn hmac_valid(alg: &str, key: &[u8], input: &[u8], sig: &[u8]) -> bool {
    let digest = match alg {
        "HS256" => MessageDigest::sha256(),
        "HS384" => MessageDigest::sha384(),
        "HS512" => MessageDigest::sha512(),
        _ => return false,
    };
    let mac = || -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let pkey = PKey::hmac(key)?;
        let mut signer = openssl::sign::Signer::new(digest, &pkey)?;
        signer.sign_oneshot_to_vec(input)
    };
    match mac() {
        // The MAC's length is public; memcmp::eq needs equal lengths.
        Ok(mac) => mac.len() == sig.len() && openssl::memcmp::eq(&mac, sig),
        Err(_) => false,
    }
}

/// Whether `sig` is the key's signature over `input`, by the key's own algorithm.
fn signature_ok(view: &KeyView, input: &[u8], sig: &[u8]) -> Result<bool, JwtError> {
    let key = published(view)?;
    let ok = match algorithm(&view.algorithm)? {
        Algorithm::RS256 => Verifier::new(MessageDigest::sha256(), &key)?.verify_oneshot(sig, input).unwrap_or(false),
        Algorithm::ES256 => match ecdsa_raw_to_der(sig) {
            Some(der) => Verifier::new(MessageDigest::sha256(), &key)?.verify_oneshot(&der, input).unwrap_or(false),
            None => false,
        },
        _ => Verifier::new_without_digest(&key)?.verify_oneshot(sig, input).unwrap_or(false),
    };
    Ok(ok)
}

fn check_claims(claims: &Registered, expect: &Expect<'_>) -> Result<(), JwtError> {
    let bad = |reason: &str| JwtError::Claims(reason.to_string());
    if claims.iss.as_ref().and_then(Value::as_str) != Some(expect.issuer) {
        return Err(bad("wrong or missing issuer"));
    }
    if let Some(want) = expect.audience {
        let ok = match &claims.aud {
            Some(Value::String(a)) => a == want,
            Some(Value::Array(all)) => all.iter().any(|a| a.as_str() == Some(want)),
            _ => false,
        };
        if !ok {
            return Err(bad("wrong or missing audience"));
        }
    }
    let now = expect.now.timestamp();
    let time = |claim: &Option<Value>| -> Result<Option<i64>, JwtError> {
        match claim {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| bad("a time claim is not a number")),
        }
    };
    match (time(&claims.exp)?, expect.allow_expired) {
        (None, false) => return Err(bad("no expiry")),
        (Some(exp), false) if exp <= now => return Err(bad("expired")),
        _ => {}
    }
    if time(&claims.nbf)?.is_some_and(|nbf| nbf > now) {
        return Err(bad("not valid yet"));
    }
    time(&claims.iat)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals_projections::signing_keys::KeyStatus;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{EncodingKey, Header};
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
        json!({"iss": ISS, "aud": "app", "sub": "u1", "exp": chrono::Utc::now().timestamp() + exp_in})
    }

    const ISS: &str = "https://idp/realms/r";

    fn expect() -> Expect<'static> {
        Expect {
            realm_id: "r",
            issuer: ISS,
            typ: "JWT",
            audience: Some("app"),
            now: chrono::Utc::now(),
            allow_expired: false,
        }
    }

    #[test]
    fn given_each_algorithm_when_signed_then_it_verifies_with_the_published_key() {
        let keys = server_keys();
        for alg in ["RS256", "ES256", "EdDSA"] {
            let view = given_a_key(alg, &keys);
            let token = Signer::open(&view, &keys).unwrap().sign("at+jwt", &claims(60)).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!((header.kid.as_deref(), header.typ.as_deref()), (Some(view.kid.as_str()), Some("at+jwt")));
            let at = Expect { typ: "at+jwt", ..expect() };
            let got: Value = verify(&token, |kid| (kid == view.kid).then_some(&view), &at).unwrap();
            assert_eq!(got["sub"], "u1", "{alg}");
            let as_id_token = verify::<Value>(&token, |kid| (kid == view.kid).then_some(&view), &expect());
            assert!(matches!(as_id_token, Err(JwtError::Refused(_))), "an access token is no ID token");
        }
    }

    #[test]
    fn given_a_key_that_does_not_match_its_published_half_when_opened_then_it_is_refused() {
        let keys = server_keys();
        let (a, b) = (given_a_key("ES256", &keys), given_a_key("ES256", &keys));
        let mixed = KeyView { public_jwk: b.public_jwk, ..a };
        assert!(matches!(Signer::open(&mixed, &keys), Err(JwtError::Stored(_))));
    }

    #[test]
    fn given_a_forged_or_altered_token_when_verified_then_it_is_refused() {
        let keys = server_keys();
        let view = given_a_key("RS256", &keys);
        let lookup = |kid: &str| (kid == view.kid).then_some(&view);
        let token = Signer::open(&view, &keys).unwrap().sign("JWT", &claims(60)).unwrap();
        let parts: Vec<&str> = token.split('.').collect();

        // alg none, with and without a signature.
        let none = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","kid":"{}","typ":"JWT"}}"#, view.kid));
        for forged in [format!("{none}.{}.", parts[1]), format!("{none}.{}.{}", parts[1], parts[2])] {
            assert!(matches!(verify::<Value>(&forged, lookup, &expect()), Err(JwtError::Refused(_))));
        }
        // HS256 keyed with the public key (the classic confusion attack).
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(view.kid.clone());
        let public_jwk_bytes = serde_json::to_vec(&view.public_jwk).unwrap();
        let hs = jsonwebtoken::encode(&header, &claims(60), &EncodingKey::from_secret(&public_jwk_bytes)).unwrap();
        assert!(matches!(verify::<Value>(&hs, lookup, &expect()), Err(JwtError::Refused(_))));
        // ES256 signature under an RS256 key's kid.
        let es = given_a_key("ES256", &keys);
        let es_token = Signer::open(&es, &keys).unwrap().sign("JWT", &claims(60)).unwrap();
        let es_parts: Vec<&str> = es_token.split('.').collect();
        let relabelled = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"ES256","kid":"{}","typ":"JWT"}}"#, view.kid));
        let cross = format!("{relabelled}.{}.{}", es_parts[1], es_parts[2]);
        assert!(matches!(verify::<Value>(&cross, lookup, &expect()), Err(JwtError::Refused(_))));
        // Header members naming keys elsewhere, or extensions we must understand.
        for member in [r#""crit":["exp"]"#, r#""jku":"https://evil/jwks""#, r#""jwk":{}"#] {
            let h = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"RS256","kid":"{}","typ":"JWT",{member}}}"#, view.kid));
            let t = format!("{h}.{}.{}", parts[1], parts[2]);
            assert!(matches!(verify::<Value>(&t, lookup, &expect()), Err(JwtError::Refused(_))), "{member}");
        }
        // A payload changed after signing.
        let mut altered: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        altered["sub"] = json!("admin");
        let altered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(altered.to_string()), parts[2]);
        assert!(matches!(verify::<Value>(&altered, lookup, &expect()), Err(JwtError::BadSignature)));
        let lenient = Expect { allow_expired: true, ..expect() };
        assert!(matches!(verify::<Value>(&altered, lookup, &lenient), Err(JwtError::BadSignature)));
        // Signed by another key that claims this kid.
        let other = KeyView { kid: view.kid.clone(), ..given_a_key("RS256", &keys) };
        let impostor = Signer::open(&other, &keys).unwrap().sign("JWT", &claims(60)).unwrap();
        assert!(matches!(verify::<Value>(&impostor, lookup, &expect()), Err(JwtError::BadSignature)));
        // A key of another realm.
        let elsewhere = KeyView { realm_id: "other".into(), ..view.clone() };
        let t = verify::<Value>(&token, |_| Some(&elsewhere), &expect());
        assert!(matches!(t, Err(JwtError::Refused(_))));
        // Unknown kid, garbage, oversized.
        assert!(matches!(verify::<Value>(&token, |_| None, &expect()), Err(JwtError::Refused(_))));
        let huge = format!("{}.{}.{}", parts[0], "A".repeat(100_000), parts[2]);
        for junk in ["", "a.b", "a.b.c", "....", &huge] {
            assert!(verify::<Value>(junk, lookup, &expect()).is_err(), "{junk:.20}");
        }
    }

    fn hmac(secret: &[u8]) -> ring::hmac::Key {
        ring::hmac::Key::new(ring::hmac::HMAC_SHA512, secret)
    }

    #[test]
    fn given_a_refresh_token_signed_by_jsonwebtoken_as_before_when_verified_then_it_still_verifies() {
        // Refresh tokens handed out by earlier releases (jsonwebtoken's HS512) outlive an
        // upgrade; and a token made now is one jsonwebtoken accepts too.
        let secret = [3u8; 64];
        let key = hmac(&secret);
        let mut header = Header::new(Algorithm::HS512);
        header.typ = Some("JWT".into());
        let before = jsonwebtoken::encode(&header, &claims(60), &EncodingKey::from_secret(&secret)).unwrap();
        assert_eq!(verify_hmac::<Value>(&before, &key, &expect()).unwrap()["sub"], "u1");
        let now = sign_hmac(&key, &claims(60)).unwrap();
        assert_eq!(now.split('.').next(), before.split('.').next(), "the same header");
        let mut v = jsonwebtoken::Validation::new(Algorithm::HS512);
        v.validate_aud = false;
        let decoded =
            jsonwebtoken::decode::<Value>(&now, &jsonwebtoken::DecodingKey::from_secret(&secret), &v).unwrap();
        assert_eq!(decoded.claims["sub"], "u1");
    }

    #[test]
    fn given_a_forged_or_altered_refresh_token_when_verified_then_it_is_refused() {
        let secret = [1u8; 64];
        let (key, other_key) = (hmac(&secret), hmac(&[2u8; 64]));
        let token = sign_hmac(&key, &claims(60)).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let got: Value = verify_hmac(&token, &key, &expect()).unwrap();
        assert_eq!(got["sub"], "u1");

        // Another realm's key (each realm has its own), or any other key.
        assert!(matches!(verify_hmac::<Value>(&token, &other_key, &expect()), Err(JwtError::BadSignature)));
        // A payload changed after signing, kept with the original signature.
        let mut altered: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        altered["sub"] = json!("admin");
        let altered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(altered.to_string()), parts[2]);
        assert!(matches!(verify_hmac::<Value>(&altered, &key, &expect()), Err(JwtError::BadSignature)));
        // alg none; HS256 under the same key (a weaker MAC is still not this one); a realm's
        // ES256 token, which anyone holding the published key could check but never mint.
        let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        for forged in [format!("{none}.{}.", parts[1]), format!("{none}.{}.{}", parts[1], parts[2])] {
            assert!(matches!(verify_hmac::<Value>(&forged, &key, &expect()), Err(JwtError::Refused(_))));
        }
        let mut hs256 = Header::new(Algorithm::HS256);
        hs256.typ = Some("JWT".into());
        let weaker = jsonwebtoken::encode(&hs256, &claims(60), &EncodingKey::from_secret(&secret)).unwrap();
        assert!(matches!(verify_hmac::<Value>(&weaker, &key, &expect()), Err(JwtError::Refused(_))));
        let keys = server_keys();
        let es = Signer::open(&given_a_key("ES256", &keys), &keys).unwrap().sign("JWT", &claims(60)).unwrap();
        assert!(matches!(verify_hmac::<Value>(&es, &key, &expect()), Err(JwtError::Refused(_))));
        // The right key, but a token of another type, expired, or for another issuer.
        assert!(matches!(
            verify_hmac::<Value>(&token, &key, &Expect { typ: "at+jwt", ..expect() }),
            Err(JwtError::Refused(_))
        ));
        let expired = sign_hmac(&key, &claims(-10)).unwrap();
        assert!(matches!(verify_hmac::<Value>(&expired, &key, &expect()), Err(JwtError::Claims(_))));
        let elsewhere = sign_hmac(&key, &json!({"iss": "https://evil", "aud": "app", "exp": 4102444800i64})).unwrap();
        assert!(matches!(verify_hmac::<Value>(&elsewhere, &key, &expect()), Err(JwtError::Claims(_))));
        // Garbage and oversized input.
        let huge = format!("{}.{}.{}", parts[0], "A".repeat(MAX_TOKEN), parts[2]);
        for junk in ["", "a.b", "a.b.c", "....", &huge] {
            assert!(verify_hmac::<Value>(junk, &key, &expect()).is_err(), "{junk:.20}");
        }
    }

    #[test]
    fn given_registered_claims_when_verified_then_each_is_enforced_exactly() {
        let keys = server_keys();
        let view = given_a_key("ES256", &keys);
        let lookup = |kid: &str| (kid == view.kid).then_some(&view);
        let signer = Signer::open(&view, &keys).unwrap();
        let check = |c: Value, e: &Expect<'_>| verify::<Value>(&signer.sign("JWT", &c).unwrap(), lookup, e);
        let now = chrono::Utc::now().timestamp();
        assert!(check(claims(60), &expect()).is_ok());
        let refused = |c: Value, why: &str| assert!(matches!(check(c, &expect()), Err(JwtError::Claims(_))), "{why}");
        refused(claims(-5), "expired");
        refused(json!({"iss": ISS, "aud": "app"}), "no exp");
        refused(json!({"aud": "app", "exp": now + 60}), "no iss");
        refused(json!({"iss": [ISS, "x"], "aud": "app", "exp": now + 60}), "iss as an array");
        refused(json!({"iss": "https://idp/realms/other", "aud": "app", "exp": now + 60}), "other issuer");
        refused(json!({"iss": ISS, "exp": now + 60}), "no aud");
        refused(json!({"iss": ISS, "aud": 5, "exp": now + 60}), "aud not a string");
        refused(json!({"iss": ISS, "aud": ["x", "y"], "exp": now + 60}), "aud without us");
        refused(json!({"iss": ISS, "aud": "app", "exp": "later"}), "exp not a number");
        refused(json!({"iss": ISS, "aud": "app", "exp": now + 60, "nbf": now + 30}), "not valid yet");
        assert!(check(json!({"iss": ISS, "aud": ["x", "app"], "exp": now + 60}), &expect()).is_ok());
        // Time is the caller's clock: the same token, judged an hour later, has expired.
        let later = Expect { now: chrono::Utc::now() + chrono::Duration::hours(1), ..expect() };
        assert!(matches!(check(claims(60), &later), Err(JwtError::Claims(_))));
        // An expired id_token_hint is still ours, but only ours.
        let hint = Expect { allow_expired: true, ..expect() };
        assert!(check(claims(-5), &hint).is_ok());
        let other_issuer = Expect { issuer: "https://idp/realms/other", ..hint };
        assert!(check(claims(-5), &other_issuer).is_err());
        refused(json!({"iss": ISS, "aud": "app", "exp": now + 60, "nbf": null}), "nbf null");
        refused(json!({"iss": ISS, "aud": "app", "exp": now + 60, "iat": null}), "iat null");
        refused(json!({"iss": ISS, "aud": "app", "exp": now + 60, "iat": 1.5}), "iat not an integer");
        // Claims as written by hand: what a map cannot hold.
        let raw = |json: String| {
            let c = serde_json::value::RawValue::from_string(json).unwrap();
            verify::<Value>(&signer.sign("JWT", &c).unwrap(), lookup, &expect())
        };
        assert!(raw(format!(r#"{{"iss":"{ISS}","aud":"app","exp":{}}}"#, now + 60)).is_ok());
        for (json, why) in [
            (format!(r#"["{ISS}","app",{}]"#, now + 60), "claims as an array"),
            (format!(r#"{{"iss":"{ISS}","iss":"x","aud":"app","exp":{}}}"#, now + 60), "iss given twice"),
            (format!(r#"{{"iss":"{ISS}","aud":"app","exp":{},"exp":{}}}"#, now - 5, now + 60), "exp given twice"),
            ("null".to_string(), "claims null"),
        ] {
            assert!(matches!(raw(json), Err(JwtError::Claims(_))), "{why}");
        }
    }
}
