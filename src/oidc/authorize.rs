//! The authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1): parsing and validation.
//!
//! Until the client and its redirect URI are known good, an error is shown to the user and
//! never redirected (RFC 6749 §4.1.2.1: an open redirector otherwise). After that, errors go
//! back to the client by the response mode, with `state` and `iss`.
use super::{redirect, scope, OAuthError};
use annals_events::auth_request::AuthRequestStarted;
use annals_projections::clients::ClientView;
use std::collections::BTreeMap;

/// The largest value of any one parameter, and of the whole request.
pub const MAX_PARAM: usize = 4096;
pub const MAX_QUERY: usize = 16 * 1024;

/// How the response reaches the client (OAuth 2.0 Multiple Response Types, Form Post).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseMode {
    Query,
    Fragment,
    FormPost,
}

impl ResponseMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "query" => Some(ResponseMode::Query),
            "fragment" => Some(ResponseMode::Fragment),
            "form_post" => Some(ResponseMode::FormPost),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ResponseMode::Query => "query",
            ResponseMode::Fragment => "fragment",
            ResponseMode::FormPost => "form_post",
        }
    }
}

/// Where and how to answer the client.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub redirect_uri: String,
    pub mode: ResponseMode,
    pub state: Option<String>,
}

/// Why a request is refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// Shown to the user: the client or redirect URI cannot be trusted with a redirect.
    /// `reason` is Keycloak's error name for it (`client_not_found`, `invalid_redirect_uri`...).
    #[error("{message}")]
    Page { reason: &'static str, message: String },
    /// Sent back to the client.
    #[error("{error}")]
    Redirect { reply: Reply, error: OAuthError },
}

/// The request's parameters; a parameter given twice is refused (RFC 6749 §3.1).
pub fn params(pairs: Vec<(String, String)>) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut total = 0;
    for (k, v) in pairs {
        total += k.len() + v.len();
        if v.len() > MAX_PARAM || total > MAX_QUERY {
            return Err(format!("parameter {} is too long", k.chars().take(32).collect::<String>()));
        }
        if v.is_empty() {
            // An empty parameter is treated as omitted (RFC 6749 §3.1).
            continue;
        }
        if out.insert(k.clone(), v).is_some() {
            return Err(format!("parameter {} is repeated", k.chars().take(32).collect::<String>()));
        }
    }
    Ok(out)
}

/// A response type, its parts sorted: `code`, `token`, `id_token` and their combinations.
fn response_type(raw: &str) -> Option<(bool, bool, bool)> {
    let mut parts: Vec<&str> = raw.split(' ').filter(|p| !p.is_empty()).collect();
    parts.sort_unstable();
    let before = parts.len();
    parts.dedup();
    if before != parts.len() || parts.is_empty() {
        return None;
    }
    let (mut code, mut token, mut id_token) = (false, false, false);
    for p in parts {
        match p {
            "code" => code = true,
            "token" => token = true,
            "id_token" => id_token = true,
            _ => return None,
        }
    }
    Some((code, token, id_token))
}

/// The PKCE method a client requires (Keycloak's `pkce.code.challenge.method` attribute); public
/// clients must use S256 at least.
fn pkce_policy(client: &ClientView) -> (bool, bool) {
    let attr = client.settings.attributes.get("pkce.code.challenge.method").map(String::as_str);
    let required = client.settings.public_client || matches!(attr, Some("S256" | "plain"));
    let plain_allowed = attr == Some("plain");
    (required, plain_allowed)
}

fn pkce_value_ok(v: &str) -> bool {
    (43..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Validates a request for `client` (looked up by the caller from `client_id`). `now` and
/// `lifespan` (seconds a login may take) set the request's expiry.
pub fn validate(
    p: &BTreeMap<String, String>,
    client: Option<&ClientView>,
    now: i64,
    lifespan: i64,
) -> Result<AuthRequestStarted, Refusal> {
    let page = |reason: &'static str, m: &str| Refusal::Page { reason, message: m.to_string() };
    let client = client.ok_or_else(|| page("client_not_found", "Client not found."))?;
    if !client.settings.enabled {
        return Err(page("client_disabled", "Client disabled."));
    }
    if client.settings.bearer_only {
        return Err(page("not_allowed", "Bearer-only clients cannot log users in."));
    }
    let redirect_uri =
        p.get("redirect_uri").ok_or_else(|| page("invalid_redirect_uri", "Missing parameter: redirect_uri"))?;
    if !redirect::allowed(redirect_uri, &client.settings.redirect_uris) {
        return Err(page("invalid_redirect_uri", "Invalid parameter: redirect_uri"));
    }
    let get = |k: &str| p.get(k).cloned();
    let state = get("state");
    let raw_type = get("response_type").unwrap_or_default();
    let parsed_type = response_type(&raw_type);
    let default_mode = match parsed_type {
        Some((true, false, false)) | None => ResponseMode::Query,
        _ => ResponseMode::Fragment,
    };
    let requested_mode = get("response_mode");
    let mode = requested_mode.as_deref().and_then(ResponseMode::parse).unwrap_or(default_mode);
    let reply = Reply { redirect_uri: redirect_uri.clone(), mode, state: state.clone() };
    let fail = |e: OAuthError| Refusal::Redirect { reply: reply.clone(), error: e };
    if p.contains_key("request") {
        return Err(fail(OAuthError::request_not_supported("request objects are not supported")));
    }
    if p.contains_key("request_uri") {
        return Err(fail(OAuthError::request_uri_not_supported("request_uri is not supported")));
    }
    let Some((code, token, id_token)) = parsed_type else {
        return Err(fail(OAuthError::unsupported_response_type("Unsupported response_type")));
    };
    if requested_mode.is_some() && ResponseMode::parse(requested_mode.as_deref().unwrap_or_default()).is_none() {
        return Err(fail(OAuthError::invalid_request("Invalid parameter: response_mode")));
    }
    if (token || id_token) && mode == ResponseMode::Query {
        // Tokens in a query string end up in logs and Referer headers (OAuth 2.0 Multiple
        // Response Types §3.0).
        return Err(fail(OAuthError::invalid_request("response_mode query is not allowed with tokens")));
    }
    if code && !token && !id_token && !client.settings.standard_flow_enabled {
        return Err(fail(OAuthError::unauthorized_client("Client is not allowed to initiate browser login with given response_type. Standard flow is disabled for the client.")));
    }
    if (token || id_token) && !client.settings.implicit_flow_enabled {
        return Err(fail(OAuthError::unauthorized_client("Client is not allowed to initiate browser login with given response_type. Implicit flow is disabled for the client.")));
    }
    let requested_scope = get("scope").unwrap_or_default();
    let granted = scope::grant(&requested_scope, client).map_err(&fail)?;
    if id_token && !granted.contains("openid") {
        return Err(fail(OAuthError::invalid_request("id_token requires the openid scope")));
    }
    let nonce = get("nonce");
    if id_token && nonce.is_none() {
        // OIDC Core §3.2.2.1: required when an ID token leaves through the front channel.
        return Err(fail(OAuthError::invalid_request("Missing parameter: nonce")));
    }
    let (pkce_required, plain_allowed) = pkce_policy(client);
    let challenge = get("code_challenge");
    let method = get("code_challenge_method");
    match (&challenge, method.as_deref()) {
        (None, Some(_)) => {
            return Err(fail(OAuthError::invalid_request("code_challenge_method without code_challenge")))
        }
        (None, None) if pkce_required && code => {
            return Err(fail(OAuthError::invalid_request("Missing parameter: code_challenge")))
        }
        (None, None) => {}
        (Some(c), m) => {
            let m = m.unwrap_or("plain");
            if !pkce_value_ok(c) {
                return Err(fail(OAuthError::invalid_request("Invalid parameter: code_challenge")));
            }
            match m {
                "S256" => {}
                "plain" if plain_allowed => {}
                _ => return Err(fail(OAuthError::invalid_request("Invalid parameter: code_challenge_method"))),
            }
        }
    }
    let prompt: Vec<String> =
        get("prompt").unwrap_or_default().split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect();
    if prompt.iter().any(|v| !matches!(v.as_str(), "none" | "login" | "consent" | "select_account"))
        || (prompt.iter().any(|v| v == "none") && prompt.len() > 1)
    {
        return Err(fail(OAuthError::invalid_request("Invalid parameter: prompt")));
    }
    let max_age = match get("max_age") {
        None => None,
        Some(v) => Some(
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| fail(OAuthError::invalid_request("Invalid parameter: max_age")))?,
        ),
    };
    let code_challenge_method = challenge.as_ref().map(|_| method.unwrap_or_else(|| "plain".into()));
    Ok(AuthRequestStarted {
        realm_id: client.realm_id.clone(),
        client: client.id.clone(),
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.clone(),
        response_type: raw_type,
        response_mode: mode.as_str().to_string(),
        scope: scope::to_string(&granted),
        state,
        nonce,
        code_challenge: challenge,
        code_challenge_method,
        prompt,
        max_age,
        login_hint: get("login_hint").map(|h| h.chars().take(255).collect()),
        acr_values: get("acr_values"),
        expires_at: now + lifespan,
        at: now,
    })
}

/// Which parts a (validated) response type holds: (code, token, id_token).
pub fn parts(raw: &str) -> (bool, bool, bool) {
    response_type(raw).unwrap_or((true, false, false))
}

/// The reply of a stored request.
pub fn reply_of(r: &AuthRequestStarted) -> Reply {
    Reply {
        redirect_uri: r.redirect_uri.clone(),
        mode: ResponseMode::parse(&r.response_mode).unwrap_or(ResponseMode::Query),
        state: r.state.clone(),
    }
}

/// The URL a query or fragment reply redirects to, with `params` added (the redirect URI's own
/// query is kept, RFC 6749 §3.1.2).
pub fn redirect_url(reply: &Reply, params: &[(&str, String)]) -> String {
    let encoded: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let (sep, base) = match reply.mode {
        ResponseMode::Fragment => ('#', reply.redirect_uri.as_str()),
        _ if reply.redirect_uri.contains('?') => ('&', reply.redirect_uri.as_str()),
        _ => ('?', reply.redirect_uri.as_str()),
    };
    format!("{base}{sep}{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals_events::client::ClientSettings;

    fn client(public: bool, implicit: bool) -> ClientView {
        ClientView {
            id: "c1".into(),
            realm_id: "r".into(),
            client_id: "app".into(),
            settings: ClientSettings {
                public_client: public,
                implicit_flow_enabled: implicit,
                redirect_uris: vec!["https://app/cb".into()],
                ..Default::default()
            },
            secret: None,
            sealed_secret: None,
            extra: Default::default(),
        }
    }

    fn req(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut p: Vec<(String, String)> = vec![
            ("client_id".into(), "app".into()),
            ("redirect_uri".into(), "https://app/cb".into()),
            ("response_type".into(), "code".into()),
            ("scope".into(), "openid".into()),
            ("state".into(), "xyz".into()),
        ];
        for (k, v) in extra {
            p.retain(|(pk, _)| pk != k);
            p.push((k.to_string(), v.to_string()));
        }
        params(p).unwrap()
    }

    fn error_of(r: Result<AuthRequestStarted, Refusal>) -> String {
        match r {
            Err(Refusal::Redirect { error, reply }) => {
                assert_eq!(reply.state.as_deref(), Some("xyz"));
                error.code.to_string()
            }
            Err(Refusal::Page { message, .. }) => format!("page: {message}"),
            Ok(_) => "ok".into(),
        }
    }

    #[test]
    fn a_good_request_is_recorded_with_defaults() {
        let s = validate(&req(&[]), Some(&client(false, false)), 100, 1800).unwrap();
        assert_eq!((s.response_mode.as_str(), s.expires_at, s.scope.as_str()), ("query", 1900, "openid email profile"));
    }

    #[test]
    fn an_unknown_client_or_bad_redirect_gets_a_page_never_a_redirect() {
        assert!(matches!(validate(&req(&[]), None, 0, 1), Err(Refusal::Page { reason: "client_not_found", .. })));
        for uri in ["https://evil/cb", "https://app/cb?x", "https://app@evil/cb"] {
            assert!(matches!(
                validate(&req(&[("redirect_uri", uri)]), Some(&client(false, false)), 0, 1),
                Err(Refusal::Page { reason: "invalid_redirect_uri", .. })
            ));
        }
    }

    #[test]
    fn repeated_or_oversized_parameters_are_refused() {
        let twice = vec![("state".to_string(), "a".to_string()), ("state".to_string(), "b".to_string())];
        assert!(params(twice).is_err());
        assert!(params(vec![("state".into(), "x".repeat(MAX_PARAM + 1))]).is_err());
    }

    #[test]
    fn protocol_errors_go_back_to_the_client() {
        let c = client(false, false);
        assert_eq!(
            error_of(validate(&req(&[("response_type", "magic")]), Some(&c), 0, 1)),
            "unsupported_response_type"
        );
        assert_eq!(error_of(validate(&req(&[("response_type", "token")]), Some(&c), 0, 1)), "unauthorized_client");
        assert_eq!(error_of(validate(&req(&[("scope", "openid root")]), Some(&c), 0, 1)), "invalid_scope");
        assert_eq!(error_of(validate(&req(&[("prompt", "none login")]), Some(&c), 0, 1)), "invalid_request");
        assert_eq!(error_of(validate(&req(&[("max_age", "-1")]), Some(&c), 0, 1)), "invalid_request");
        assert_eq!(error_of(validate(&req(&[("request", "eyJ")]), Some(&c), 0, 1)), "request_not_supported");
        let implicit = client(false, true);
        assert_eq!(
            error_of(validate(&req(&[("response_type", "id_token")]), Some(&implicit), 0, 1)),
            "invalid_request",
            "nonce"
        );
        assert_eq!(
            error_of(validate(&req(&[("response_type", "token"), ("response_mode", "query")]), Some(&implicit), 0, 1)),
            "invalid_request"
        );
        assert_eq!(
            error_of(validate(&req(&[("response_type", "code id_token"), ("nonce", "n")]), Some(&implicit), 0, 1)),
            "ok"
        );
    }

    #[test]
    fn pkce_is_required_for_public_clients_and_plain_only_where_allowed() {
        let public = client(true, false);
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(error_of(validate(&req(&[]), Some(&public), 0, 1)), "invalid_request");
        assert_eq!(
            error_of(validate(&req(&[("code_challenge", challenge)]), Some(&public), 0, 1)),
            "invalid_request",
            "plain by default"
        );
        assert_eq!(
            error_of(validate(
                &req(&[("code_challenge", challenge), ("code_challenge_method", "S256")]),
                Some(&public),
                0,
                1
            )),
            "ok"
        );
        assert_eq!(
            error_of(validate(
                &req(&[("code_challenge", "short"), ("code_challenge_method", "S256")]),
                Some(&public),
                0,
                1
            )),
            "invalid_request"
        );
        let mut plain = client(false, false);
        plain.settings.attributes.insert("pkce.code.challenge.method".into(), "plain".into());
        assert_eq!(error_of(validate(&req(&[("code_challenge", challenge)]), Some(&plain), 0, 1)), "ok");
    }

    #[test]
    fn replies_keep_the_redirect_uris_query_and_use_the_fragment_when_asked() {
        let r = Reply { redirect_uri: "https://app/cb?tenant=1".into(), mode: ResponseMode::Query, state: None };
        assert_eq!(redirect_url(&r, &[("code", "a b".into())]), "https://app/cb?tenant=1&code=a+b");
        let r = Reply { redirect_uri: "https://app/cb".into(), mode: ResponseMode::Fragment, state: None };
        assert_eq!(redirect_url(&r, &[("state", "s".into())]), "https://app/cb#state=s");
    }
}
