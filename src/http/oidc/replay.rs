//! A code presented twice (RFC 6749 §4.1.2): what its first redemption gave is revoked, and
//! the revocation is recorded (`auth_request.replay_revoked`) once every part of it committed.
//!
//! The request that presents the code again revokes at once. What it could not finish (the
//! store failed, the node stopped) stays owed in the log: the `replay_revocations` read model
//! lists every replay without its revocation recorded, and a worker on each node revokes
//! those again, with backoff, until one records it. Revoking twice is harmless (a revoked
//! token stays revoked; the revocation is recorded once, a second record changing nothing),
//! but a revocation takes what the client holds in the session when it runs: one retried
//! long after the replay could take the tokens of the client's later logins in that session.
//! So the worker takes up a replay only for an hour; past that it reports it (once per
//! start) and leaves it.
use super::issue::command_failed;
use super::token::{offline_session_id, shared_offline_session_id};
use crate::domain::auth_request::{AuthRequest, AuthRequestCommand};
use crate::domain::session::{Session, SessionCommand, SessionError};
use crate::http::AppState;
use crate::oidc::{scope, OAuthError};
use annals_events::{Actor, Metadata};
use annals_projections::clients::ClientView;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// How often the worker looks for revocations still owed.
const TICK: Duration = Duration::from_secs(1);
/// The worker leaves a replay to its own request this long. That request revokes in up to
/// three sessions, waiting up to 5 s for each to show in introspection, then records: 20 s
/// at most, and nodes' clocks may differ by a few seconds.
const GRACE_SECS: i64 = 30;
/// How long after a replay the worker still revokes for it (see the module's comment).
const HORIZON_SECS: i64 = 3600;
/// The first retry after a failed attempt; each failure doubles it, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// After an attempt that found the revocation done, how long the worker waits for this
/// node's read model to show it before looking again.
const SETTLE: Duration = Duration::from_secs(5);

/// What one code redemption gave: tokens in an SSO session, and maybe an offline token.
pub(super) struct CodeGrant<'a> {
    pub session_id: &'a str,
    /// The authorization request (names an offline session of its own).
    pub request: &'a str,
    /// The client's internal id.
    pub client: &'a str,
    /// The login asked for an offline token.
    pub offline: bool,
}

impl<'a> CodeGrant<'a> {
    /// What the redemption recorded on `ar` gave. A redemption recorded before its offline
    /// grant was is judged by the client's scopes now, and as offline when the client is gone.
    pub(super) fn of(request: &'a str, ar: &'a AuthRequest, client: Option<&ClientView>) -> Option<Self> {
        let started = ar.request.as_deref()?;
        let offline = ar.redeemed_offline.unwrap_or_else(|| {
            client.is_none_or(|c| scope::grant(&started.scope, c).is_ok_and(|g| g.contains("offline_access")))
        });
        let session_id = ar.session_id.as_deref().unwrap_or_default();
        Some(CodeGrant { session_id, request, client: &started.client, offline })
    }
}

/// Revokes what a replayed code's first redemption gave (see [`revoke_code_grant`]) and
/// records that it did. A record that fails leaves the revocation owed: done again later.
pub(super) async fn revoke(
    state: &AppState,
    gave: &CodeGrant<'_>,
    first: Vec<String>,
    meta: &Metadata,
) -> Result<(), OAuthError> {
    revoke_code_grant(state, gave, first, meta).await?;
    record(state, gave.request, meta).await;
    Ok(())
}

/// Records that a replay's revocation is done; whether it is (now or before).
async fn record(state: &AppState, request: &str, meta: &Metadata) -> bool {
    let command = AuthRequestCommand::RecordReplayRevoked;
    // Fresh: the replay may have been recorded by another node's actor.
    match state.hosts.execute_fresh::<AuthRequest>(request, command, meta.clone()).await {
        Ok(done) => {
            // So this node's worker, reading the model, does not revoke it again.
            let _ = state.read_models.wait_for(done.executed.position, SETTLE).await;
            true
        }
        Err(e) => {
            tracing::warn!(request, error = %e, "a replay's revocation is done but not recorded");
            false
        }
    }
}

/// Revokes what a replayed code's first redemption gave: all the client holds in the SSO
/// session (its tokens may already have been refreshed) and the ids chosen at redemption
/// (`first`, should they be recorded later), and so the offline token: what the client holds
/// in the SSO session's offline session (shared with other clients, which keep theirs) or
/// the offline session of this login's own. Only a login that asked for one: the client's
/// offline tokens of other logins are not in question. A revocation retried later takes
/// what the client holds in the session then, more than the replay found, never less.
/// Waits until introspection sees each revocation. A session that does not exist holds
/// nothing to revoke; any other failure is an error (after trying every session).
async fn revoke_code_grant(
    state: &AppState,
    gave: &CodeGrant<'_>,
    first: Vec<String>,
    meta: &Metadata,
) -> Result<(), OAuthError> {
    let revoke_client = |also: Vec<String>| SessionCommand::RevokeClient {
        client: gave.client.to_string(),
        also,
        reason: "code_replayed".into(),
    };
    let mut revocations = vec![(gave.session_id.to_string(), revoke_client(first.clone()))];
    if gave.offline {
        revocations.push((shared_offline_session_id(gave.session_id), revoke_client(first)));
        revocations.push((offline_session_id(gave.request), SessionCommand::Revoke { reason: "code_replayed".into() }));
    }
    let mut failed = None;
    for (id, cmd) in revocations {
        match state.hosts.execute::<Session>(&id, cmd, meta.clone()).await {
            Ok(done) => {
                let _ = state.read_models.wait_for(done.position, Duration::from_secs(5)).await;
            }
            Err(crate::actors::CommandError::Domain(SessionError::NotFound)) => {}
            Err(e) => {
                tracing::error!(session = %id, error = %e, "the tokens of a replayed code could not be revoked");
                failed = Some(command_failed(e));
            }
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Starts the worker that revokes what replays left owed, on the current runtime.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Request id -> when to look again, and the wait a failure then doubles.
        let mut next: HashMap<String, (Instant, Duration)> = HashMap::new();
        // Replays past the horizon already reported.
        let mut reported: HashSet<String> = HashSet::new();
        let mut tick = tokio::time::interval(TICK);
        // One pass can take seconds (each revocation waits for introspection to see it).
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now_s = state.clock.now().timestamp();
            let owed: Vec<(String, i64)> =
                state.read_models.read().replay_revocations.owed().map(|(id, at)| (id.clone(), at)).collect();
            let ids: HashSet<&String> = owed.iter().map(|(id, _)| id).collect();
            next.retain(|id, _| ids.contains(id));
            reported.retain(|id| ids.contains(id));
            let now = Instant::now();
            for (id, at) in owed {
                if at > now_s - GRACE_SECS || next.get(&id).is_some_and(|(when, _)| *when > now) {
                    continue;
                }
                if at < now_s - HORIZON_SECS {
                    if reported.insert(id.clone()) {
                        tracing::warn!(request = %id, replayed_at = at, "a replayed code's revocation is not on record an hour after the replay; the worker leaves it");
                    }
                    continue;
                }
                let (wait, base) = match revoke_owed(&state, &id).await {
                    // A failure after this starts its backoff from the first step.
                    Turn::Done => (SETTLE, FIRST_BACKOFF / 2),
                    Turn::Failed => {
                        let wait = next.get(&id).map_or(FIRST_BACKOFF, |(_, w)| (*w * 2).min(MAX_BACKOFF));
                        (wait, wait)
                    }
                };
                next.insert(id, (Instant::now() + wait, base));
            }
        }
    })
}

/// What came of one attempt.
enum Turn {
    /// The revocation is recorded (by this attempt or before it).
    Done,
    Failed,
}

/// One attempt at a revocation the log shows owed.
async fn revoke_owed(state: &AppState, request: &str) -> Turn {
    let meta = |realm: Option<String>| Metadata {
        realm,
        actor: Actor::System { component: "replay-revocation".into() },
        ..Default::default()
    };
    // Fresh: the replay, or its revocation, may have been recorded on another node.
    let ar = match state.hosts.execute_fresh::<AuthRequest>(request, AuthRequestCommand::Check, meta(None)).await {
        Ok(o) => o.state,
        Err(e) => {
            tracing::warn!(request, error = %e, "a replayed code's request cannot be read; its revocation waits");
            return Turn::Failed;
        }
    };
    if ar.replay_revoked {
        return Turn::Done;
    }
    let client = ar.request.as_deref().and_then(|r| state.read_models.read().clients.shared(&r.client));
    let gave = match CodeGrant::of(request, &ar, client.as_deref()) {
        Some(gave) if ar.replayed => gave,
        // The log says replayed; a request that does not is not read right: try again later.
        _ => {
            tracing::warn!(request, "a replayed code's request does not show the replay; its revocation waits");
            return Turn::Failed;
        }
    };
    let meta = meta(ar.request.as_deref().map(|r| r.realm_id.clone()));
    let first = ar.redeemed.clone().unwrap_or_default();
    if revoke_code_grant(state, &gave, first, &meta).await.is_err() {
        return Turn::Failed;
    }
    tracing::info!(request, "the tokens of a replayed code are revoked, on a later attempt");
    match record(state, request, &meta).await {
        true => Turn::Done,
        false => Turn::Failed,
    }
}
