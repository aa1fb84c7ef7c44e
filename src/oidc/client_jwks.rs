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
/// A key set larger than this is refused (a JWKS of a few keys is a few kilobytes).
const MAX_BYTES: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("the client's key set cannot be fetched from {url}: {reason}")]
    Fetch { url: String, reason: String },
}

struct Kept {
    /// The last set fetched, if any fetch succeeded.
    keys: Option<Value>,
    /// When the URL was last asked, successfully or not: failed fetches are rate-limited too.
    asked: Instant,
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

/// The URL a client's keys come from, when it registered one.
pub fn url(attributes: &BTreeMap<String, String>) -> Option<&str> {
    let on = attributes.get("use.jwks.url").is_some_and(|v| v == "true");
    attributes.get("jwks.url").map(String::as_str).filter(|u| on && !u.trim().is_empty())
}

/// The `kid` an assertion's header names, if it is a JWS whose header says.
pub fn assertion_kid(jwt: &str) -> Option<String> {
    use base64::Engine;
    let header = jwt.split('.').next().filter(|h| h.len() <= 4096)?;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).ok()?;
    let header: Value = serde_json::from_slice(&header).ok()?;
    header.get("kid").and_then(Value::as_str).map(str::to_string)
}

fn has_kid(keys: &Value, kid: &str) -> bool {
    keys.get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
}

impl ClientJwks {
    /// The key set at `url`, as a JWKS document (`{"keys": [...]}`), fetched again when the
    /// kept one is stale or lacks `kid`. A fetch that fails falls back to the kept set.
    pub async fn keys(&self, url: &str, kid: Option<&str>) -> Result<Value, JwksError> {
        let now = Instant::now();
        let unavailable = || JwksError::Fetch { url: url.to_string(), reason: "the last fetch failed".into() };
        let (keys, age) = {
            let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            match kept.get(url) {
                Some(k) => (k.keys.clone(), Some(now.duration_since(k.asked))),
                None => (None, None),
            }
        };
        if let Some(age) = age {
            let covers = keys.as_ref().is_some_and(|k| kid.is_none_or(|kid| has_kid(k, kid)));
            if (age < FRESH && covers) || age < REFETCH_GAP {
                return keys.ok_or_else(unavailable);
            }
        }
        let fetched = self.fetch(url).await;
        let mut all = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        match fetched {
            Ok(fresh) => {
                all.insert(url.to_string(), Kept { keys: Some(fresh.clone()), asked: now });
                Ok(fresh)
            }
            Err(e) => {
                all.insert(url.to_string(), Kept { keys: keys.clone(), asked: now });
                match keys {
                    Some(keys) => {
                        tracing::warn!(error = %e, "using the client's key set fetched before");
                        Ok(keys)
                    }
                    None => Err(e),
                }
            }
        }
    }

    async fn fetch(&self, url: &str) -> Result<Value, JwksError> {
        let fail = |reason: String| JwksError::Fetch { url: url.to_string(), reason };
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
        assert_eq!(url(&attrs(&[("use.jwks.url", "true"), ("jwks.url", " ")])), None);
    }

    #[test]
    fn given_assertions_when_their_kid_is_read_then_only_a_well_formed_header_gives_one() {
        use base64::Engine;
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        assert_eq!(assertion_kid(&format!("{}.e30.sig", enc(r#"{"alg":"ES256","kid":"k1"}"#))), Some("k1".into()));
        assert_eq!(assertion_kid(&format!("{}.e30.sig", enc(r#"{"alg":"ES256"}"#))), None);
        assert_eq!(assertion_kid("not a jwt"), None);
        assert_eq!(assertion_kid(&format!("{}.e30.sig", enc(r#"{"kid":7}"#))), None);
    }

    #[test]
    fn given_a_key_set_when_asked_for_a_kid_then_only_a_listed_kid_is_found() {
        let keys = serde_json::json!({"keys": [{"kid": "a"}, {"kty": "EC"}]});
        assert!(has_kid(&keys, "a"));
        assert!(!has_kid(&keys, "b"));
        assert!(!has_kid(&serde_json::json!({}), "a"));
    }
}
