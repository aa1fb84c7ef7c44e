//! Redirect URI matching: exact string comparison with the registered URIs (RFC 9700 §4.1.3),
//! the one exception being the port of a loopback IP literal (RFC 8252 §7.3), which native
//! apps pick at run time. Nothing is normalized first: `https://app/cb/../x`,
//! `https://app@evil/cb` or an added query are different strings and do not match.
use url::{Host, Url};

/// Longest redirect URI accepted (Keycloak's limit is also in this range).
pub const MAX_LEN: usize = 2048;

pub fn allowed(requested: &str, registered: &[String]) -> bool {
    if requested.is_empty() || requested.len() > MAX_LEN {
        return false;
    }
    let Ok(req) = Url::parse(requested) else { return false };
    if req.fragment().is_some() {
        // RFC 6749 §3.1.2: the endpoint URI must not include a fragment.
        return false;
    }
    if registered.iter().any(|r| r == requested) {
        return true;
    }
    // Only a canonical loopback URI may differ from a registered one, and only in its port.
    if req.as_str() != requested || !loopback(&req) {
        return false;
    }
    registered.iter().any(|r| match Url::parse(r) {
        Ok(mut reg) if loopback(&reg) && reg.as_str() == r => {
            let mut req = req.clone();
            let _ = req.set_port(None);
            let _ = reg.set_port(None);
            req.as_str() == reg.as_str()
        }
        _ => false,
    })
}

/// Whether a web page of `origin` may act for the client (the check-session iframe): one of
/// the client's `webOrigins`, where `+` (or no entry at all) stands for the origins of its
/// redirect URIs and `*` for any; a loopback redirect URI's origin may differ in its port.
pub fn origin_allowed(origin: &str, web_origins: &[String], redirect_uris: &[String]) -> bool {
    let Ok(asked) = Url::parse(origin) else { return false };
    if asked.origin().ascii_serialization() != origin {
        return false;
    }
    let from_redirects = web_origins.is_empty() || web_origins.iter().any(|w| w == "+");
    if web_origins.iter().any(|w| w == "*" || w.trim_end_matches('/') == origin) {
        return true;
    }
    from_redirects
        && redirect_uris.iter().filter_map(|r| Url::parse(r).ok()).any(|r| {
            r.origin().ascii_serialization() == origin
                || (loopback(&r) && r.scheme() == asked.scheme() && r.host() == asked.host())
        })
}

fn loopback(u: &Url) -> bool {
    let ip = match u.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    };
    ip && u.scheme() == "http" && u.username().is_empty() && u.password().is_none() && u.fragment().is_none()
}

#[cfg(test)]
mod tests {
    use super::{allowed, origin_allowed};

    fn reg() -> Vec<String> {
        vec!["https://app.example/cb".into(), "http://127.0.0.1:8000/native".into(), "http://[::1]/v6".into()]
    }

    #[test]
    fn origins_come_from_web_origins_or_redirect_uris_and_loopback_ports_may_vary() {
        let redirects = vec!["https://app.example/cb".to_string(), "http://127.0.0.1/cb".to_string()];
        assert!(origin_allowed("https://app.example", &[], &redirects));
        assert!(origin_allowed("http://127.0.0.1:8123", &["+".into()], &redirects));
        assert!(!origin_allowed("https://evil.example", &[], &redirects));
        assert!(!origin_allowed("https://app.example.evil", &[], &redirects));
        assert!(!origin_allowed("https://app.example/", &[], &redirects), "an origin has no path");
        assert!(!origin_allowed("http://app.example", &[], &redirects), "another scheme");
        let listed = vec!["https://spa.example".to_string()];
        assert!(origin_allowed("https://spa.example", &listed, &redirects));
        assert!(!origin_allowed("https://app.example", &listed, &redirects), "no + listed");
        assert!(origin_allowed("https://any.example", &["*".into()], &[]));
    }

    #[test]
    fn exact_uris_match_and_every_variant_an_attacker_tries_does_not() {
        assert!(allowed("https://app.example/cb", &reg()));
        for bad in [
            "https://app.example/cb/",
            "https://app.example/cb?x=1",
            "https://app.example/cb#frag",
            "https://app.example/cb/../evil",
            "https://app.example/CB",
            "https://app.example@evil.example/cb",
            "https://evil.example/https://app.example/cb",
            "https://app.example.evil.example/cb",
            "https://app.example:443/cb",
            "http://app.example/cb",
            "http://localhost:80@evil.example/cb",
            "https://app.example/cb%2f..%2fevil",
            "",
            "not a url",
        ] {
            assert!(!allowed(bad, &reg()), "{bad} must not match");
        }
        assert!(!allowed(
            &format!("https://app.example/cb{}", "a".repeat(3000)),
            &[format!("https://app.example/cb{}", "a".repeat(3000))]
        ));
    }

    #[test]
    fn only_the_port_of_a_loopback_literal_may_vary() {
        assert!(allowed("http://127.0.0.1:51234/native", &reg()));
        assert!(allowed("http://[::1]:4000/v6", &reg()));
        assert!(!allowed("http://127.0.0.1:51234/native/x", &reg()));
        assert!(!allowed("http://127.0.0.1:51234/native?x", &reg()));
        assert!(!allowed("http://localhost:51234/native", &reg()), "names are not loopback literals");
        assert!(!allowed("http://user@127.0.0.1:51234/native", &reg()));
        assert!(!allowed("https://127.0.0.1:51234/native", &reg()));
        assert!(!allowed("http://127.0.0.1:8000/native/../native", &reg()));
    }
}
