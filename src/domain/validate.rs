//! Shape checks shared by several aggregates.

/// Names used in URLs and lookups: 1..=255 chars, no control characters, no surrounding space.
pub fn name(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > 255 {
        return Err("must be at most 255 bytes".into());
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    if value.trim() != value {
        return Err("must not start or end with whitespace".into());
    }
    Ok(())
}

/// A realm name becomes a URL path segment (`/realms/{name}`).
pub fn url_segment(value: &str) -> Result<(), String> {
    name(value)?;
    if !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || value == "."
        || value == ".."
    {
        return Err("may contain only letters, digits, '-', '_' and '.'".into());
    }
    Ok(())
}

/// A registered redirect URI: absolute, no fragment (RFC 6749 §3.1.2); a trailing `*` is
/// Keycloak's wildcard. Relative paths starting with `/` are resolved against the root URL.
pub fn redirect_uri(value: &str) -> Result<(), String> {
    if value.contains('#') {
        return Err(format!("{value:?} must not contain a fragment"));
    }
    if value.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!("{value:?} must not contain spaces or control characters"));
    }
    if value == "*" || value.starts_with('/') {
        return Ok(());
    }
    let Some((scheme, rest)) = value.split_once(':') else {
        return Err(format!("{value:?} is not an absolute URI"));
    };
    let scheme_ok = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok || rest.is_empty() {
        return Err(format!("{value:?} is not an absolute URI"));
    }
    if matches!(scheme, "http" | "https") && !rest.starts_with("//") {
        return Err(format!("{value:?} has no authority"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_must_be_absolute_without_fragment() {
        for ok in ["https://app.example/cb", "http://127.0.0.1:8080/*", "com.example.app:/cb", "/relative/*", "*"] {
            assert!(redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in ["https://app/cb#frag", "app/cb", "https:app", "https://a b", ""] {
            assert!(redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn realm_names_are_url_safe() {
        assert!(url_segment("acme-prod_1.eu").is_ok());
        for bad in ["", "a/b", "..", "a b", "ümlaut", " a"] {
            assert!(url_segment(bad).is_err(), "{bad}");
        }
    }
}
