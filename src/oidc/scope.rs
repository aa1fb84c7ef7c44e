//! Scopes: which the realm knows, which a client gets (Keycloak's default and optional client
//! scopes), and which claims each one releases.
use super::OAuthError;
use annals_projections::clients::ClientView;
use std::collections::BTreeSet;

/// The scopes every realm knows (Keycloak's built-in client scopes).
pub const KNOWN: [&str; 11] = [
    "openid",
    "profile",
    "email",
    "roles",
    "web-origins",
    "acr",
    "basic",
    "offline_access",
    "address",
    "phone",
    "microprofile-jwt",
];
const DEFAULT: [&str; 6] = ["profile", "email", "roles", "web-origins", "acr", "basic"];
const OPTIONAL: [&str; 4] = ["offline_access", "address", "phone", "microprofile-jwt"];

/// The longest `scope` parameter accepted.
pub const MAX_LEN: usize = 1024;

/// The scopes granted for a request: `openid` when asked, the client's default scopes always,
/// its optional scopes when asked. An unknown or not-allowed scope is `invalid_scope`.
pub fn grant(requested: &str, client: &ClientView) -> Result<BTreeSet<String>, OAuthError> {
    if requested.len() > MAX_LEN {
        return Err(OAuthError::invalid_scope("scope parameter too long"));
    }
    let list = |configured: &[String], builtin: &[&str]| -> Vec<String> {
        match configured.is_empty() {
            true => builtin.iter().map(|s| s.to_string()).collect(),
            false => configured.to_vec(),
        }
    };
    let defaults = list(&client.settings.default_client_scopes, &DEFAULT);
    let optional = list(&client.settings.optional_client_scopes, &OPTIONAL);
    let mut granted: BTreeSet<String> = defaults.into_iter().collect();
    for s in requested.split(' ').filter(|s| !s.is_empty()) {
        if s == "openid" || granted.contains(s) || optional.iter().any(|o| o == s) {
            granted.insert(s.to_string());
        } else {
            let shown: String = s.chars().take(64).collect();
            return Err(OAuthError::invalid_scope(format!("Invalid scopes: {shown}")));
        }
    }
    Ok(granted)
}

/// The scope string of a token: `openid` first, the rest sorted (as Keycloak prints it).
pub fn to_string(granted: &BTreeSet<String>) -> String {
    // Keycloak's `roles`, `web-origins`, `acr` and `basic` scopes add claims but are not
    // listed in the token's `scope` (their `include.in.token.scope` is off).
    let listed = |s: &&str| *s != "openid" && !HIDDEN.contains(s);
    let mut out: Vec<&str> = granted.iter().map(String::as_str).filter(listed).collect();
    if granted.contains("openid") {
        out.insert(0, "openid");
    }
    out.join(" ")
}

/// Consent texts of the built-in scopes (Keycloak's); any other scope shows its name.
const CONSENT_TEXT: [(&str, &str); 6] = [
    ("profile", "User profile"),
    ("email", "Email address"),
    ("address", "Address"),
    ("phone", "Phone number"),
    ("roles", "User roles"),
    ("offline_access", "Offline Access"),
];

/// Scopes never shown on a consent page (Keycloak's `display.on.consent.screen` is off for
/// them): they release nothing about the user or are implied by the protocol.
const SILENT: [&str; 5] = ["openid", "web-origins", "acr", "basic", "microprofile-jwt"];

/// The granted scopes a user must consent to: every one but the silent ones, custom scopes
/// included (as Keycloak, whose client scopes show on the consent screen by default); the
/// built-in ones first in Keycloak's order, then the others by name.
pub fn needing_consent(granted: &BTreeSet<String>) -> Vec<String> {
    let builtin = CONSENT_TEXT.iter().map(|(s, _)| s.to_string()).filter(|s| granted.contains(s));
    let custom = granted.iter().filter(|s| !SILENT.contains(&s.as_str()) && !CONSENT_TEXT.iter().any(|(b, _)| b == s));
    builtin.chain(custom.cloned()).collect()
}

/// The text a consent page shows for a scope.
pub fn consent_text(scope: &str) -> &str {
    CONSENT_TEXT.iter().find(|(s, _)| *s == scope).map(|(_, t)| *t).unwrap_or(scope)
}

/// Scopes that add claims but never appear in a token's `scope` string.
const HIDDEN: [&str; 4] = ["roles", "web-origins", "acr", "basic"];

/// The granted set behind a token's `scope` string: the listed scopes, and the client's
/// default scopes that are never listed (so `roles` survives a refresh, and a refresh that
/// narrowed to `openid` does not get `email` back).
pub fn regrant(listed: &str, client: &ClientView) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = listed.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect();
    let defaults: Vec<String> = match client.settings.default_client_scopes.is_empty() {
        true => DEFAULT.iter().map(|s| s.to_string()).collect(),
        false => client.settings.default_client_scopes.clone(),
    };
    out.extend(defaults.into_iter().filter(|d| HIDDEN.contains(&d.as_str())));
    out
}

/// A later request's scope must be within what was granted (refresh, RFC 6749 §6).
pub fn narrow(requested: Option<&str>, granted: &str) -> Result<String, OAuthError> {
    let Some(requested) = requested.filter(|r| !r.trim().is_empty()) else { return Ok(granted.to_string()) };
    let have: BTreeSet<&str> = granted.split(' ').collect();
    let want: BTreeSet<&str> = requested.split(' ').filter(|s| !s.is_empty()).collect();
    match want.is_subset(&have) {
        true => Ok(granted.split(' ').filter(|s| want.contains(s)).collect::<Vec<_>>().join(" ")),
        false => Err(OAuthError::invalid_scope("scope exceeds the scope originally granted")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_asks_for_every_scope_but_the_silent_ones_custom_scopes_included() {
        let granted: BTreeSet<String> = ["openid", "acr", "web-origins", "basic", "email", "profile", "payments:write"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(needing_consent(&granted), vec!["profile", "email", "payments:write"]);
        assert_eq!(consent_text("email"), "Email address");
        assert_eq!(consent_text("payments:write"), "payments:write");
    }
    use annals_events::client::ClientSettings;

    fn client(optional: &[&str]) -> ClientView {
        ClientView {
            id: "c".into(),
            realm_id: "r".into(),
            client_id: "app".into(),
            settings: ClientSettings {
                optional_client_scopes: optional.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            secret: None,
            sealed_secret: None,
            extra: Default::default(),
        }
    }

    #[test]
    fn defaults_always_optionals_on_request_unknown_refused() {
        let g = grant("openid", &client(&[])).unwrap();
        assert_eq!(to_string(&g), "openid email profile");
        let g = grant("openid offline_access", &client(&[])).unwrap();
        assert!(g.contains("offline_access"));
        assert_eq!(grant("openid admin", &client(&[])).unwrap_err().code, "invalid_scope");
        assert_eq!(grant("phone", &client(&["address"])).unwrap_err().code, "invalid_scope");
    }

    #[test]
    fn a_refresh_may_narrow_but_not_widen() {
        assert_eq!(narrow(Some("openid email"), "openid email profile").unwrap(), "openid email");
        assert_eq!(narrow(None, "openid email").unwrap(), "openid email");
        assert_eq!(narrow(Some("openid phone"), "openid email").unwrap_err().code, "invalid_scope");
        let back = regrant(&narrow(Some("openid"), "openid email profile").unwrap(), &client(&[]));
        assert!(back.contains("roles") && back.contains("openid") && !back.contains("email"), "{back:?}");
    }
}
