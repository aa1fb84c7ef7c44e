//! Public keys of `private_key_jwt` clients registered by URL: Keycloak's `use.jwks.url` =
//! `true` with `jwks.url`. The set is fetched when first needed and kept for
//! [`FRESH`]; an assertion naming a `kid` the kept set lacks (the client rotated its keys)
//! fetches it again, at most once per [`REFETCH_GAP`] per URL, so assertions with made-up
//! `kid`s cannot turn the server into a request amplifier against the client's host.
//!
//! The URL is set by a realm administrator, never by the party presenting the assertion.
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a fetched set is used without asking again.
const FRESH: Duration = Duration::from_secs(300);
/// The shortest time between two fetches of one URL.
const REFETCH_GAP: Duration = Duration::from_secs(10);
/// The oldest set used when fetching fails: a key the client withdrew must not stay valid
/// for as long as someone can keep its endpoint from answering.
const MAX_STALE: Duration = Duration::from_secs(24 * 3600);
/// A key set larger than this is refused (a JWKS of a few keys is a few kilobytes).
const MAX_BYTES: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("the client's key set cannot be fetched from {url}: {reason}")]
    Fetch { url: String, reason: String },
}

struct Kept {
    /// The last set fetched, if any fetch succeeded, and when.
    keys: Option<(Value, Instant)>,
    /// When the URL was last asked, successfully or not, set before the request goes out:
    /// concurrent and failed fetches are rate-limited too.
    asked: Option<Instant>,
}

/// The key sets fetched so far, by URL.
pub struct ClientJwks {
    http: reqwest::Client,
    kept: Mutex<HashMap<String, Kept>>,
}

impl Default for ClientJwks {
    fn default() -> Self {
        // No redirects: the administrator registered this URL, not wherever it points to.
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        ClientJwks { http, kept: Mutex::default() }
    }
}

/// The URL a client's keys come from, when it registered `use.jwks.url` (empty if it named
/// none: then, as in Keycloak, it has no key at all, not its inline set or certificate).
pub fn url(attributes: &BTreeMap<String, String>) -> Option<&str> {
    let on = attributes.get("use.jwks.url").is_some_and(|v| v == "true");
    on.then(|| attributes.get("jwks.url").map_or("", |u| u.trim()))
}

/// An assertion's JOSE header, if it is a three-part JWS whose header is a JSON object:
/// nothing else is worth fetching keys for.
pub fn assertion_header(jwt: &str) -> Option<Value> {
    use base64::Engine;
    let mut parts = jwt.split('.');
    let (Some(h), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    if h.len() > 4096 {
        return None;
    }
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).ok()?;
    serde_json::from_slice::<Value>(&header).ok().filter(Value::is_object)
}

/// Whether a set can verify an assertion naming `kid`: it lists that kid, or holds a key
/// without one (which any assertion may use).
fn has_kid(keys: &Value, kid: &str) -> bool {
    let all = keys.get("keys").and_then(Value::as_array).into_iter().flatten();
    all.into_iter().any(|k| k.get("kid").is_none_or(|k| k.as_str() == Some(kid)))
}

impl ClientJwks {
    /// The key set at `url`, as a JWKS document (`{"keys": [...]}`), fetched again when the
    /// kept one is stale or lacks `kid`. A fetch that fails falls back to the kept set (for
    /// at most a day after it was fetched).
    pub async fn keys(&self, url: &str, kid: Option<&str>) -> Result<Value, JwksError> {
        let now = Instant::now();
        let unavailable = || JwksError::Fetch { url: url.to_string(), reason: "no key set could be fetched".into() };
        // Decided under the lock, and the attempt recorded before the request goes out: of
        // many concurrent requests naming an unknown kid, one fetches.
        let usable = {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            let entry = kept.entry(url.to_string()).or_insert(Kept { keys: None, asked: None });
            let age = |at: Instant| now.saturating_duration_since(at);
            let usable = entry.keys.as_ref().filter(|(_, at)| age(*at) < MAX_STALE).map(|(k, _)| k.clone());
            let fresh =
                entry.keys.as_ref().is_some_and(|(k, at)| age(*at) < FRESH && kid.is_none_or(|kid| has_kid(k, kid)));
            if fresh || entry.asked.is_some_and(|at| age(at) < REFETCH_GAP) {
                return usable.ok_or_else(unavailable);
            }
            entry.asked = Some(now);
            usable
        };
        match self.fetch(url).await {
            Ok(fresh) => {
                let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
                kept.insert(url.to_string(), Kept { keys: Some((fresh.clone(), now)), asked: Some(now) });
                Ok(fresh)
            }
            Err(e) => match usable {
                Some(keys) => {
                    tracing::warn!(error = %e, "using the client's key set fetched before");
                    Ok(keys)
                }
                None => Err(e),
            },
        }
    }

    async fn fetch(&self, url: &str) -> Result<Value, JwksError> {
        let fail = |reason: String| JwksError::Fetch { url: url.to_string(), reason };
        if url.is_empty() {
            return Err(fail("the client registered no URL".into()));
        }
        let mut res = self.http.get(url).send().await.map_err(|e| fail(e.to_string()))?;
        if !res.status().is_success() {
            return Err(fail(format!("HTTP {}", res.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| fail(e.to_string()))? {
            if body.len() + chunk.len() > MAX_BYTES {
                return Err(fail(format!("larger than {MAX_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let keys: Value = serde_json::from_slice(&body).map_err(|e| fail(format!("not JSON: {e}")))?;
        if !keys.get("keys").is_some_and(Value::is_array) {
            return Err(fail("not a JWK set (no \"keys\" array)".into()));
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_attributes_when_read_then_the_url_counts_only_where_keycloak_uses_it() {
        let attrs = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(url(&attrs(&[("use.jwks.url", "true"), ("jwks.url", "https://rp/jwks")])), Some("https://rp/jwks"));
        assert_eq!(url(&attrs(&[("use.jwks.url", "false"), ("jwks.url", "https://rp/jwks")])), None);
        assert_eq!(url(&attrs(&[("jwks.url", "https://rp/jwks")])), None);
        assert_eq!(url(&attrs(&[("use.jwks.url", "true"), ("jwks.url", " ")])), Some(""), "no key, not another");
        assert_eq!(url(&attrs(&[("use.jwks.url", "true")])), Some(""));
    }

    #[test]
    fn given_assertions_when_their_header_is_read_then_only_a_three_part_jws_with_an_object_has_one() {
        use base64::Engine;
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let h = assertion_header(&format!("{}.e30.sig", enc(r#"{"alg":"ES256","kid":"k1"}"#))).unwrap();
        assert_eq!(h["kid"], "k1");
        assert!(assertion_header("not a jwt").is_none());
        assert!(assertion_header(&format!("{}.e30", enc(r#"{"alg":"ES256"}"#))).is_none());
        assert!(assertion_header(&format!("{}.e30.sig", enc("7"))).is_none());
    }

    #[test]
    fn given_a_key_set_when_asked_for_a_kid_then_only_a_listed_kid_is_found() {
        let keys = serde_json::json!({"keys": [{"kid": "a"}, {"kid": "b"}]});
        assert!(has_kid(&keys, "a"));
        assert!(!has_kid(&keys, "c"));
        assert!(!has_kid(&serde_json::json!({}), "a"));
        // A key without a kid may verify any assertion: no refetch for it.
        assert!(has_kid(&serde_json::json!({"keys": [{"kty": "EC"}]}), "c"));
    }
}
