//! Logins guarded by brute-force protection: per user and per source address, with the
//! realm's Keycloak settings. A lock refuses before any password is hashed; each failure and
//! each lock is an event (`login_failures.*`); a success clears the user's count.
use super::metadata;
use crate::domain::login_failures::{address_key, user_key, LoginFailures, LoginFailuresCommand};
use crate::http::AppState;
use crate::oidc::login::{find_user, verify_user, LoggedIn, LoginError};
use actix_web::HttpRequest;
use annals_events::Actor;
use annals_projections::realms::RealmView;

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
    let settings = &realm.settings.brute_force;
    let address = req.peer_addr().map(|a| a.ip().to_string());
    let by_address = address.as_deref().map(|a| address_key(&realm.id, a));
    let temporarily = |user_id| LoginError::Rejected { reason: "user_temporarily_disabled", user_id };
    if settings.enabled {
        if let Some(k) = &by_address {
            if locked(state, k).await {
                return Err(temporarily(None));
            }
        }
    }
    let user = find_user(&state.store.pool(), realm, username).await?;
    let by_user = user.as_ref().map(|u| user_key(&realm.id, &u.id));
    if settings.enabled {
        if let Some(k) = &by_user {
            if locked(state, k).await {
                return Err(temporarily(user.map(|u| u.id)));
            }
        }
    }
    let outcome = verify_user(user, pw).await;
    if !settings.enabled {
        return outcome;
    }
    match &outcome {
        Ok(ok) => {
            let meta = metadata(req, &realm.id, Actor::User { id: ok.user.id.clone(), realm: realm.id.clone() });
            if let Some(k) = &by_user {
                run(state, k, LoginFailuresCommand::Clear, meta).await;
            }
        }
        Err(LoginError::Rejected { .. }) => {
            let meta = metadata(req, &realm.id, Actor::System { component: "brute-force".into() });
            if let Some(k) = &by_user {
                run(state, k, LoginFailuresCommand::RecordFailure(settings.clone()), meta.clone()).await;
            }
            if let Some(k) = &by_address {
                run(state, k, LoginFailuresCommand::RecordFailure(settings.clone()), meta).await;
            }
        }
        Err(_) => {}
    }
    outcome
}
