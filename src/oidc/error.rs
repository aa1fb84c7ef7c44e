//! OAuth 2.0 errors (RFC 6749 §4.1.2.1, §5.2; OIDC Core §3.1.2.6): a registered code and a
//! human-readable description. The HTTP layer chooses the status and the delivery.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    pub code: &'static str,
    pub description: String,
    /// An event already says why (a rejected password, a replayed code): the refusal is not
    /// recorded again as a `rejected_request`.
    pub recorded: bool,
}

macro_rules! codes {
    ($($name:ident),* $(,)?) => {$(
        pub fn $name(description: impl Into<String>) -> Self {
            OAuthError { code: stringify!($name), description: description.into(), recorded: false }
        }
    )*};
}

impl OAuthError {
    /// Marks the refusal as already recorded by an aggregate's event.
    pub fn recorded(mut self) -> Self {
        self.recorded = true;
        self
    }

    codes!(
        invalid_request,
        invalid_client,
        invalid_grant,
        unauthorized_client,
        unsupported_grant_type,
        unsupported_response_type,
        invalid_scope,
        access_denied,
        login_required,
        consent_required,
        interaction_required,
        server_error,
        temporarily_unavailable,
        request_not_supported,
        request_uri_not_supported,
        invalid_token,
        // Keycloak's answer to offline tokens for a user or client not allowed them.
        not_allowed,
    );
}
