//! Logins guarded by brute-force protection: per user and per source address, with the
//! realm's Keycloak settings. Each failure and each lock is an event (`login_failures.*`); a
//! success clears the user's count. A locked account costs the same hashing time as any
//! other refusal (timing must not tell locked accounts from unknown names), and one user's
//! password checks run one at a time on a node, so parallel guesses cannot all slip past the
//! lock check before the first failure is counted.
//!
//! The source address is the TCP peer: behind a reverse proxy that is the proxy's, and the
//! per-address count then covers everyone (trusted forwarding headers are not read yet).
use super::metadata;
use crate::domain::login_failures::{address_key, user_key, LoginFailures, LoginFailuresCommand};
use crate::http::AppState;
use crate::oidc::login::{verify_user, LoggedIn, LoginError};
use actix_web::HttpRequest;
use annals_events::Actor;
use annals_projections::realms::RealmView;
use annals_projections::users::UserView;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One gate per user being logged in on this node: that user's password checks queue.
#[derive(Clone, Default)]
pub struct LoginGates {
    gates: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl LoginGates {
    fn gate(&self, key: &str) -> Gate {
        let gate = self.gates.lock().unwrap_or_else(|p| p.into_inner()).entry(key.to_string()).or_default().clone();
        Gate { gates: self.clone(), key: key.to_string(), gate: Some(gate) }
    }
}

/// A user's gate while a login uses it; dropping it (also when the client goes away
/// mid-check) forgets the gate once nobody else holds or awaits it.
struct Gate {
    gates: LoginGates,
    key: String,
    gate: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        let mut gates = self.gates.gates.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(gate) = self.gate.take() {
            // Ours and the map's are the only ones left.
            if Arc::strong_count(&gate) <= 2 {
                gates.remove(&self.key);
            }
        }
    }
}

/// Whether the stream refuses logins now (a failing store does not lock anyone out: the
/// password check still runs, and recording the failure will surface the problem).
async fn locked(state: &AppState, key: &str) -> bool {
    let meta = annals_events::Metadata::system("brute-force");
    match state.hosts.execute_full::<LoginFailures>(key, LoginFailuresCommand::Check, meta).await {
        Ok(o) => o.state.locked(state.clock.now().timestamp()),
        Err(e) => {
            tracing::warn!(error = %e, "brute-force state unavailable");
            false
        }
    }
}

async fn run(state: &AppState, key: &str, cmd: LoginFailuresCommand, meta: annals_events::Metadata) {
    if let Err(e) = state.hosts.execute::<LoginFailures>(key, cmd, meta).await {
        tracing::error!(error = %e, "login failure not recorded");
    }
}

/// Checks a username and password for `realm` from this request's address.
pub async fn login(
    state: &AppState,
    req: &HttpRequest,
    realm: &RealmView,
    username: &str,
    pw: &str,
) -> Result<LoggedIn, LoginError> {
    let user = super::issue::login_user(state, realm, username).await?;
    let key = match (&user, realm.settings.brute_force.enabled) {
        (Some(u), true) => user_key(&realm.id, &u.id),
        _ => return checked(state, req, realm, user, pw).await,
    };
    let gate = state.login_gates.gate(&key);
    let lock = gate.gate.clone().unwrap_or_default();
    let _turn = lock.lock().await;
    checked(state, req, realm, user, pw).await
}

async fn checked(
    state: &AppState,
    req: &HttpRequest,
    realm: &RealmView,
    user: Option<UserView>,
    pw: &str,
) -> Result<LoggedIn, LoginError> {
    let settings = &realm.settings.brute_force;
    if !settings.enabled {
        return verify_user(user, pw).await;
    }
    let by_address = req.peer_addr().map(|a| address_key(&realm.id, &a.ip().to_string()));
    let by_user = user.as_ref().map(|u| user_key(&realm.id, &u.id));
    let mut is_locked = false;
    for k in by_address.iter().chain(by_user.iter()) {
        is_locked = is_locked || locked(state, k).await;
    }
    if is_locked {
        // The same hashing time as a wrong password or an unknown name.
        let _ = verify_user(None, pw).await;
        return Err(LoginError::Rejected { reason: "user_temporarily_disabled", user_id: user.map(|u| u.id) });
    }
    let outcome = verify_user(user, pw).await;
    match &outcome {
        Ok(ok) => {
            let meta = metadata(req, &realm.id, Actor::User { id: ok.user.id.clone(), realm: realm.id.clone() });
            if let Some(k) = &by_user {
                run(state, k, LoginFailuresCommand::Clear, meta).await;
            }
        }
        Err(LoginError::Rejected { .. }) => {
            let meta = metadata(req, &realm.id, Actor::System { component: "brute-force".into() });
            for k in by_user.iter().chain(by_address.iter()) {
                run(state, k, LoginFailuresCommand::RecordFailure(settings.clone()), meta.clone()).await;
            }
        }
        Err(_) => {}
    }
    outcome
}
