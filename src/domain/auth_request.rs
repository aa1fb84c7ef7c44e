//! The AuthRequest aggregate: one authorization request, from the authorization endpoint to
//! the code's redemption (or failure, or expiry).
//!
//! The code handed to the browser is `{request id}.{secret}`; only the SHA-256 of the secret
//! is recorded. Redemption is decided here, one command at a time, so two concurrent
//! redemptions of one code give exactly one success.
use super::{Aggregate, Lifecycle};
use annals_events::auth_request::*;
use annals_events::StreamType;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuthRequest {
    pub lifecycle: Lifecycle,
    pub request: Option<Box<AuthRequestStarted>>,
    pub failures: u32,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub auth_time: Option<i64>,
    /// `pwd` or `sso`: how the user was identified for this request.
    pub method: Option<String>,
    pub code: Option<(String, i64)>,
    /// Scopes awaiting the user's consent (the consent page is showing).
    #[serde(default)]
    pub consent: Option<Vec<String>>,
    /// Tokens of the redemption, kept so a replay can revoke them.
    pub redeemed: Option<Vec<String>>,
    /// Whether the redemption was granted `offline_access` (unknown for one recorded before
    /// this was).
    #[serde(default)]
    pub redeemed_offline: Option<bool>,
    pub replayed: bool,
    /// What the replay called for is revoked (recorded once all of it committed).
    #[serde(default)]
    pub replay_revoked: bool,
    /// The error that ended the request without a code.
    pub failed: Option<String>,
}

#[derive(Clone, Debug)]
pub enum AuthRequestCommand {
    Start(Box<AuthRequestStarted>),
    /// Changes nothing: asks for the state.
    Check,
    /// `realm_id` is the realm whose login form was used: it must be the request's.
    RejectCredentials {
        realm_id: String,
        username: String,
        user_id: Option<String>,
        reason: String,
    },
    /// The user is identified; `code` (SHA-256 hex of its secret, expiry) when the response
    /// type includes one. With `consent` (the scopes to approve) no code is issued yet: the
    /// request waits for [`AuthRequestCommand::Consent`].
    Authenticate {
        realm_id: String,
        user_id: String,
        session_id: String,
        method: String,
        auth_time: i64,
        code: Option<(String, i64)>,
        consent: Option<Vec<String>>,
    },
    /// The user's answer on the consent page; `code` as for `Authenticate`.
    Consent {
        realm_id: String,
        granted: bool,
        code: Option<(String, i64)>,
    },
    Fail {
        error: String,
    },
    Redeem(Redemption),
    /// What the first redemption of a replayed code gave is revoked: recorded once, so no
    /// node revokes it again.
    RecordReplayRevoked,
}

/// What the token endpoint presents with a code.
#[derive(Clone, Debug)]
pub struct Redemption {
    pub code_hash: String,
    /// The authenticated client's internal id.
    pub client: String,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    /// Ids of the tokens the redemption will issue.
    pub token_ids: Vec<String>,
    /// The redemption is granted `offline_access` (its tokens include an offline token).
    pub offline: bool,
}

/// Errors of auth request commands. All of them mean "this request cannot go on": the
/// authorization endpoint restarts the login, the token endpoint answers `invalid_grant`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AuthRequestError {
    #[error("authorization request not found")]
    NotFound,
    #[error("authorization request already exists")]
    AlreadyExists,
    #[error("authorization request expired")]
    Expired,
    #[error("authorization request already completed")]
    Completed,
    #[error("code is not valid")]
    InvalidCode,
    #[error("code has expired")]
    CodeExpired,
    #[error("code was already used")]
    CodeUsed,
    /// A login for another realm than the request's (a user of realm Y must never complete
    /// a request of realm X).
    #[error("authorization request belongs to another realm")]
    WrongRealm,
    /// A login step came while the consent page is showing (a second login in another tab).
    #[error("authorization request is waiting for consent")]
    AwaitingConsent,
    /// A consent answer for a request that asked for none.
    #[error("authorization request is not waiting for consent")]
    NoConsentPending,
    /// A revocation recorded for a code that no one presented twice.
    #[error("the code was not replayed")]
    NotReplayed,
}

/// The SHA-256 of a code's secret part, as recorded.
pub fn code_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `verifier` answers `challenge` (RFC 7636 §4.6). A verifier outside the RFC's
/// alphabet or length never matches.
pub fn pkce_matches(method: &str, challenge: &str, verifier: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !well_formed {
        return false;
    }
    let computed = match method {
        "S256" => URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
        "plain" => verifier.to_string(),
        _ => return false,
    };
    same(&computed, challenge)
}

/// Constant-time equality (`openssl::memcmp::eq` requires equal lengths; lengths are public).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a.as_bytes(), b.as_bytes())
}

impl AuthRequest {
    /// The code event, where the request's response type asks for a code (the caller offers
    /// one before it knows), so the log never shows a code that no one was given.
    fn code_event(req: &AuthRequestStarted, code: Option<(String, i64)>, at: i64) -> Option<AuthRequestEvent> {
        let wants_code = req.response_type.split(' ').any(|p| p == "code");
        match (code, wants_code) {
            (Some((code_hash, expires_at)), true) => Some(AuthRequestCodeIssued { code_hash, expires_at, at }.into()),
            _ => None,
        }
    }

    fn completed(&self) -> bool {
        self.code.is_some() || self.failed.is_some() || self.redeemed.is_some()
    }

    /// Why a code cannot be redeemed by this client, if it cannot (the code is consumed).
    fn redemption_refused(&self, req: &AuthRequestStarted, r: &Redemption) -> Option<&'static str> {
        if r.client != req.client {
            return Some("code issued to another client");
        }
        if r.redirect_uri.as_deref() != Some(req.redirect_uri.as_str()) {
            return Some("redirect_uri does not match the authorization request");
        }
        match (&req.code_challenge, &r.code_verifier) {
            (None, None) => None,
            // RFC 9700 §2.1.1: a verifier for a request that had no challenge is a downgrade.
            (None, Some(_)) => Some("code_verifier sent but the request had no code_challenge"),
            (Some(_), None) => Some("code_verifier required"),
            (Some(c), Some(v)) => {
                let method = req.code_challenge_method.as_deref().unwrap_or("plain");
                (!pkce_matches(method, c, v)).then_some("code_verifier does not match the code_challenge")
            }
        }
    }
}

impl Aggregate for AuthRequest {
    const KIND: StreamType = StreamType::AuthRequest;
    type Command = AuthRequestCommand;
    type Event = AuthRequestEvent;
    type Error = AuthRequestError;

    fn decide(
        &self,
        command: AuthRequestCommand,
        now: DateTime<Utc>,
    ) -> Result<Vec<AuthRequestEvent>, AuthRequestError> {
        use AuthRequestCommand as C;
        use AuthRequestError as E;
        let at = now.timestamp();
        let req = match (&self.request, command) {
            (None, C::Start(started)) => return Ok(vec![AuthRequestEvent::Started(*started)]),
            (Some(_), C::Start(_)) => return Err(E::AlreadyExists),
            (None, _) => return Err(E::NotFound),
            (Some(req), command) => (req, command),
        };
        let (req, command) = req;
        match command {
            C::Start(_) => unreachable!("handled above"),
            C::Check => Ok(vec![]),
            C::RejectCredentials { realm_id, .. } | C::Authenticate { realm_id, .. } | C::Consent { realm_id, .. }
                if realm_id != req.realm_id =>
            {
                Err(E::WrongRealm)
            }
            C::Redeem(r) => {
                let Some((hash, expires_at)) = &self.code else { return Err(E::InvalidCode) };
                if !same(hash, &r.code_hash) {
                    return Err(E::InvalidCode);
                }
                if self.redeemed.is_some() {
                    // Someone holds a copy of a code that was already exchanged: record it once
                    // (the caller revokes what the first redemption issued); later replays
                    // only fail.
                    return match self.replayed {
                        false => Ok(vec![AuthRequestCodeReplayed { at }.into()]),
                        true => Err(E::CodeUsed),
                    };
                }
                if self.failed.is_some() {
                    return Err(E::CodeUsed);
                }
                if at >= *expires_at {
                    return Err(E::CodeExpired);
                }
                if let Some(reason) = self.redemption_refused(req, &r) {
                    // The code is burnt: whoever presented it wrongly may have stolen it.
                    return Ok(vec![AuthRequestFailed { error: format!("invalid_grant: {reason}"), at }.into()]);
                }
                let session_id = self.session_id.clone().unwrap_or_default();
                let offline = Some(r.offline);
                Ok(vec![AuthRequestCodeRedeemed { session_id, token_ids: r.token_ids, at, offline }.into()])
            }
            C::RecordReplayRevoked => match (self.replayed, self.replay_revoked) {
                (false, _) => Err(E::NotReplayed),
                (true, false) => Ok(vec![AuthRequestReplayRevoked { at }.into()]),
                // Another node (or the worker and the replay's own request) got there first.
                (true, true) => Ok(vec![]),
            },
            _ if self.completed() => Err(E::Completed),
            _ if at >= req.expires_at => Err(E::Expired),
            C::Consent { granted, code, .. } => {
                let Some(scopes) = self.consent.clone() else { return Err(E::NoConsentPending) };
                if !granted {
                    return Ok(vec![AuthRequestConsentDenied { at }.into()]);
                }
                let mut events: Vec<AuthRequestEvent> = vec![AuthRequestConsentGranted { scopes, at }.into()];
                events.extend(Self::code_event(req, code, at));
                Ok(events)
            }
            C::RejectCredentials { .. } | C::Authenticate { .. } if self.consent.is_some() => Err(E::AwaitingConsent),
            C::RejectCredentials { username, user_id, reason, .. } => {
                let username: String = username.trim().chars().take(255).collect();
                Ok(vec![AuthRequestCredentialsRejected { username, user_id, reason, at }.into()])
            }
            C::Authenticate { user_id, session_id, method, auth_time, code, consent, .. } => {
                let mut events: Vec<AuthRequestEvent> =
                    vec![AuthRequestAuthenticated { user_id, session_id, method, auth_time, at }.into()];
                match consent {
                    Some(scopes) => events.push(AuthRequestConsentRequested { scopes, at }.into()),
                    None => events.extend(Self::code_event(req, code, at)),
                }
                Ok(events)
            }
            C::Fail { error } => Ok(vec![AuthRequestFailed { error, at }.into()]),
        }
    }

    fn apply(mut self, event: &AuthRequestEvent) -> Self {
        match event {
            AuthRequestEvent::Started(s) => {
                self.lifecycle = Lifecycle::Live;
                self.request = Some(Box::new(s.clone()));
            }
            AuthRequestEvent::CredentialsRejected(_) => self.failures += 1,
            AuthRequestEvent::Authenticated(a) => {
                self.user_id = Some(a.user_id.clone());
                self.session_id = Some(a.session_id.clone());
                self.auth_time = Some(a.auth_time);
                self.method = Some(a.method.clone());
            }
            AuthRequestEvent::ConsentRequested(c) => self.consent = Some(c.scopes.clone()),
            AuthRequestEvent::ConsentGranted(_) => self.consent = None,
            AuthRequestEvent::ConsentDenied(_) => {
                self.consent = None;
                self.failed = Some("access_denied".into());
            }
            AuthRequestEvent::CodeIssued(c) => self.code = Some((c.code_hash.clone(), c.expires_at)),
            AuthRequestEvent::CodeRedeemed(r) => {
                self.redeemed = Some(r.token_ids.clone());
                self.redeemed_offline = r.offline;
            }
            AuthRequestEvent::CodeReplayed(_) => self.replayed = true,
            AuthRequestEvent::ReplayRevoked(_) => self.replay_revoked = true,
            AuthRequestEvent::Failed(f) => self.failed = Some(f.error.clone()),
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{given, now};

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn started() -> AuthRequestEvent {
        AuthRequestStarted {
            realm_id: "r".into(),
            client: "c1".into(),
            client_id: "app".into(),
            redirect_uri: "https://app/cb".into(),
            response_type: "code".into(),
            response_mode: "query".into(),
            scope: "openid".into(),
            state: Some("st".into()),
            nonce: None,
            code_challenge: Some(CHALLENGE.into()),
            code_challenge_method: Some("S256".into()),
            prompt: vec![],
            max_age: None,
            login_hint: None,
            acr_values: None,
            expires_at: now().timestamp() + 1800,
            at: now().timestamp(),
        }
        .into()
    }

    fn code_issued() -> Vec<AuthRequestEvent> {
        vec![
            started(),
            AuthRequestAuthenticated {
                user_id: "u".into(),
                session_id: "s".into(),
                method: "pwd".into(),
                auth_time: 1,
                at: 1,
            }
            .into(),
            AuthRequestCodeIssued { code_hash: code_hash("secret"), expires_at: now().timestamp() + 60, at: 1 }.into(),
        ]
    }

    fn redeem(verifier: Option<&str>) -> AuthRequestCommand {
        AuthRequestCommand::Redeem(Redemption {
            code_hash: code_hash("secret"),
            client: "c1".into(),
            redirect_uri: Some("https://app/cb".into()),
            code_verifier: verifier.map(str::to_string),
            token_ids: vec!["at1".into(), "rt1".into()],
            offline: true,
        })
    }

    fn failed(events: &[AuthRequestEvent]) -> Option<&str> {
        match events {
            [AuthRequestEvent::Failed(f)] => Some(f.error.as_str()),
            _ => None,
        }
    }

    #[test]
    fn pkce_s256_matches_the_rfc_example_and_nothing_else() {
        assert!(pkce_matches("S256", CHALLENGE, VERIFIER));
        assert!(!pkce_matches("S256", CHALLENGE, &VERIFIER.replace('d', "e")));
        assert!(!pkce_matches("plain", CHALLENGE, VERIFIER));
        assert!(pkce_matches("plain", VERIFIER, VERIFIER));
        assert!(!pkce_matches("S256", CHALLENGE, "short"));
        assert!(!pkce_matches("none", CHALLENGE, VERIFIER));
    }

    #[test]
    fn given_an_issued_code_when_redeemed_with_the_verifier_then_tokens_are_recorded() {
        let events = given::<AuthRequest>(code_issued()).decide(redeem(Some(VERIFIER)), now()).unwrap();
        assert!(
            matches!(&events[..], [AuthRequestEvent::CodeRedeemed(r)] if r.session_id == "s" && r.token_ids.len() == 2)
        );
    }

    #[test]
    fn given_a_redeemed_code_when_presented_again_then_the_replay_is_recorded_once() {
        let mut history = code_issued();
        history.extend(given::<AuthRequest>(code_issued()).decide(redeem(Some(VERIFIER)), now()).unwrap());
        let state = given::<AuthRequest>(history.clone());
        let replay = state.decide(redeem(Some(VERIFIER)), now()).unwrap();
        assert!(matches!(&replay[..], [AuthRequestEvent::CodeReplayed(_)]));
        assert_eq!(state.redeemed.as_deref(), Some(&["at1".to_string(), "rt1".to_string()][..]));
        assert_eq!(state.redeemed_offline, Some(true), "the replay revokes the offline token too");
        history.extend(replay);
        assert_eq!(
            given::<AuthRequest>(history).decide(redeem(Some(VERIFIER)), now()),
            Err(AuthRequestError::CodeUsed)
        );
    }

    #[test]
    fn given_a_replayed_code_when_its_revocation_is_recorded_then_once_and_only_after_a_replay() {
        let mut history = code_issued();
        history.extend(given::<AuthRequest>(code_issued()).decide(redeem(Some(VERIFIER)), now()).unwrap());
        assert_eq!(
            given::<AuthRequest>(history.clone()).decide(AuthRequestCommand::RecordReplayRevoked, now()),
            Err(AuthRequestError::NotReplayed),
            "a redemption that no one repeated calls for no revocation"
        );
        history.extend(given::<AuthRequest>(history.clone()).decide(redeem(Some(VERIFIER)), now()).unwrap());
        let replayed = given::<AuthRequest>(history.clone());
        assert!(!replayed.replay_revoked, "owed until recorded");
        let revoked = replayed.decide(AuthRequestCommand::RecordReplayRevoked, now()).unwrap();
        assert!(matches!(&revoked[..], [AuthRequestEvent::ReplayRevoked(_)]));
        history.extend(revoked);
        let state = given::<AuthRequest>(history);
        assert!(state.replay_revoked);
        assert_eq!(state.decide(AuthRequestCommand::RecordReplayRevoked, now()), Ok(vec![]), "recorded once");
    }

    #[test]
    fn given_an_issued_code_when_the_pkce_or_binding_is_wrong_then_the_code_is_burnt() {
        let wrong_verifier = redeem(Some(&VERIFIER.replace('d', "e")));
        let no_verifier = redeem(None);
        let mut other_client = redeem(Some(VERIFIER));
        if let AuthRequestCommand::Redeem(r) = &mut other_client {
            r.client = "c2".into();
        }
        let mut other_redirect = redeem(Some(VERIFIER));
        if let AuthRequestCommand::Redeem(r) = &mut other_redirect {
            r.redirect_uri = Some("https://app/cb/../evil".into());
        }
        for cmd in [wrong_verifier, no_verifier, other_client, other_redirect] {
            let events = given::<AuthRequest>(code_issued()).decide(cmd, now()).unwrap();
            assert!(failed(&events).is_some_and(|e| e.starts_with("invalid_grant")), "{events:?}");
            let mut history = code_issued();
            history.extend(events);
            assert_eq!(
                given::<AuthRequest>(history).decide(redeem(Some(VERIFIER)), now()),
                Err(AuthRequestError::CodeUsed),
                "a burnt code stays burnt"
            );
        }
    }

    #[test]
    fn given_a_request_without_challenge_when_a_verifier_is_sent_then_it_is_a_downgrade() {
        let mut history = code_issued();
        if let AuthRequestEvent::Started(s) = &mut history[0] {
            s.code_challenge = None;
            s.code_challenge_method = None;
        }
        let events = given::<AuthRequest>(history.clone()).decide(redeem(Some(VERIFIER)), now()).unwrap();
        assert!(failed(&events).is_some_and(|e| e.contains("no code_challenge")));
        let ok = given::<AuthRequest>(history).decide(redeem(None), now()).unwrap();
        assert!(matches!(&ok[..], [AuthRequestEvent::CodeRedeemed(_)]));
    }

    #[test]
    fn given_an_issued_code_when_the_secret_is_wrong_or_it_expired_then_it_fails_without_burning() {
        let state = given::<AuthRequest>(code_issued());
        let mut guess = redeem(Some(VERIFIER));
        if let AuthRequestCommand::Redeem(r) = &mut guess {
            r.code_hash = code_hash("guess");
        }
        assert_eq!(state.decide(guess, now()), Err(AuthRequestError::InvalidCode));
        let later = now() + chrono::Duration::seconds(61);
        assert_eq!(state.decide(redeem(Some(VERIFIER)), later), Err(AuthRequestError::CodeExpired));
        assert!(state.decide(redeem(Some(VERIFIER)), now()).is_ok());
    }

    #[test]
    fn given_a_started_request_when_credentials_fail_then_each_failure_is_an_event() {
        let state = given::<AuthRequest>(vec![started()]);
        let events = state
            .decide(
                AuthRequestCommand::RejectCredentials {
                    realm_id: "r".into(),
                    username: format!("  {}  ", "x".repeat(300)),
                    user_id: None,
                    reason: "user_not_found".into(),
                },
                now(),
            )
            .unwrap();
        let AuthRequestEvent::CredentialsRejected(r) = &events[0] else { panic!("{events:?}") };
        assert_eq!(r.username.len(), 255, "typed names are trimmed and bounded");
        assert_eq!(crate::domain::fold(state, &events).failures, 1);
    }

    #[test]
    fn given_a_completed_or_expired_request_when_more_login_steps_come_then_they_are_refused() {
        let auth = || AuthRequestCommand::Authenticate {
            realm_id: "r".into(),
            user_id: "u".into(),
            session_id: "s".into(),
            method: "pwd".into(),
            auth_time: 1,
            code: Some((code_hash("x"), 1)),
            consent: None,
        };
        assert_eq!(given::<AuthRequest>(code_issued()).decide(auth(), now()), Err(AuthRequestError::Completed));
        let late = now() + chrono::Duration::seconds(1801);
        assert_eq!(given::<AuthRequest>(vec![started()]).decide(auth(), late), Err(AuthRequestError::Expired));
        assert_eq!(given::<AuthRequest>(vec![]).decide(auth(), now()), Err(AuthRequestError::NotFound));
        let fresh = given::<AuthRequest>(vec![started()]).decide(auth(), now()).unwrap();
        assert!(matches!(&fresh[..], [AuthRequestEvent::Authenticated(_), AuthRequestEvent::CodeIssued(_)]));
    }

    #[test]
    fn given_a_request_of_one_realm_when_a_login_of_another_realm_completes_it_then_it_is_refused() {
        let state = given::<AuthRequest>(vec![started()]);
        let auth = AuthRequestCommand::Authenticate {
            realm_id: "other".into(),
            user_id: "u".into(),
            session_id: "s".into(),
            method: "pwd".into(),
            auth_time: 1,
            code: Some((code_hash("x"), now().timestamp() + 60)),
            consent: None,
        };
        assert_eq!(state.decide(auth, now()), Err(AuthRequestError::WrongRealm));
        let reject = AuthRequestCommand::RejectCredentials {
            realm_id: "other".into(),
            username: "u".into(),
            user_id: None,
            reason: "user_not_found".into(),
        };
        assert_eq!(state.decide(reject, now()), Err(AuthRequestError::WrongRealm));
    }

    #[test]
    fn given_an_implicit_request_when_authenticated_then_no_code_is_recorded() {
        let mut history = vec![started()];
        if let AuthRequestEvent::Started(s) = &mut history[0] {
            s.response_type = "id_token token".into();
        }
        let auth = AuthRequestCommand::Authenticate {
            realm_id: "r".into(),
            user_id: "u".into(),
            session_id: "s".into(),
            method: "pwd".into(),
            auth_time: 1,
            code: Some((code_hash("x"), now().timestamp() + 60)),
            consent: None,
        };
        let events = given::<AuthRequest>(history).decide(auth, now()).unwrap();
        assert!(matches!(&events[..], [AuthRequestEvent::Authenticated(_)]), "{events:?}");
    }

    fn authenticate(consent: Option<Vec<String>>) -> AuthRequestCommand {
        AuthRequestCommand::Authenticate {
            realm_id: "r".into(),
            user_id: "u".into(),
            session_id: "s".into(),
            method: "pwd".into(),
            auth_time: 1,
            code: Some((code_hash("x"), now().timestamp() + 60)),
            consent,
        }
    }

    fn consent(granted: bool) -> AuthRequestCommand {
        AuthRequestCommand::Consent {
            realm_id: "r".into(),
            granted,
            code: Some((code_hash("y"), now().timestamp() + 60)),
        }
    }

    fn awaiting_consent() -> Vec<AuthRequestEvent> {
        let mut history = vec![started()];
        history.extend(
            given::<AuthRequest>(history.clone()).decide(authenticate(Some(vec!["email".into()])), now()).unwrap(),
        );
        history
    }

    #[test]
    fn given_a_client_requiring_consent_when_authenticated_then_consent_is_requested_and_no_code_issued() {
        let events = awaiting_consent();
        assert!(
            matches!(&events[1..], [AuthRequestEvent::Authenticated(_), AuthRequestEvent::ConsentRequested(c)] if c.scopes == ["email"]),
            "{events:?}"
        );
        let state = given::<AuthRequest>(events);
        assert_eq!(state.code, None);
        assert_eq!(state.decide(authenticate(None), now()), Err(AuthRequestError::AwaitingConsent));
        let code = redeem(Some(VERIFIER));
        assert_eq!(state.decide(code, now()), Err(AuthRequestError::InvalidCode), "no code to redeem yet");
    }

    #[test]
    fn given_a_consent_page_when_the_user_agrees_then_consent_and_code_are_recorded() {
        let state = given::<AuthRequest>(awaiting_consent());
        let events = state.decide(consent(true), now()).unwrap();
        assert!(
            matches!(&events[..], [AuthRequestEvent::ConsentGranted(g), AuthRequestEvent::CodeIssued(c)] if g.scopes == ["email"] && c.code_hash == code_hash("y")),
            "{events:?}"
        );
        let done = crate::domain::fold(state, &events);
        assert_eq!(done.decide(consent(true), now()), Err(AuthRequestError::Completed), "answered once");
    }

    #[test]
    fn given_a_consent_page_when_the_user_refuses_then_the_request_fails_without_a_code() {
        let state = given::<AuthRequest>(awaiting_consent());
        let events = state.decide(consent(false), now()).unwrap();
        assert!(matches!(&events[..], [AuthRequestEvent::ConsentDenied(_)]), "{events:?}");
        let done = crate::domain::fold(state, &events);
        assert_eq!(done.failed.as_deref(), Some("access_denied"));
        assert_eq!(done.decide(consent(true), now()), Err(AuthRequestError::Completed));
    }

    #[test]
    fn given_no_consent_pending_or_another_realm_or_too_late_when_answered_then_refused() {
        let plain = given::<AuthRequest>(vec![started()]);
        assert_eq!(plain.decide(consent(true), now()), Err(AuthRequestError::NoConsentPending));
        let waiting = given::<AuthRequest>(awaiting_consent());
        let foreign = AuthRequestCommand::Consent { realm_id: "other".into(), granted: true, code: None };
        assert_eq!(waiting.decide(foreign, now()), Err(AuthRequestError::WrongRealm));
        let late = now() + chrono::Duration::seconds(1801);
        assert_eq!(waiting.decide(consent(true), late), Err(AuthRequestError::Expired));
    }
}
