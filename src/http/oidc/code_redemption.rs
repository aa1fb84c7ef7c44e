//! The token endpoint's `authorization_code` grant: a code redeemed for tokens (RFC 6749
//! §4.1.3), and a code presented again (§4.1.2: what the first redemption gave is revoked).
//!
//! The redemption (on the code's AuthRequest) and the tokens it gives (on the Session) are
//! one commit: the AuthRequest's actor decides the redemption and holds it, the Session's
//! command carries it along, and the actor learns afterwards what became of it (see
//! `Hosts::hold`). So a replay, which its actor can only decide once the redemption has
//! committed, always finds the tokens in the session and revokes them; and a crash keeps
//! both or neither.
use super::issue::{self, command_failed, Ids};
use super::replay::{self, CodeGrant};
use super::token::{issue_in_session, required, SessionIssue};
use super::{client_actor, metadata};
use crate::actors::{CommandError, HeldDecision, Hold, Outcome, Settle};
use crate::domain::auth_request::{code_hash, AuthRequest, AuthRequestCommand, AuthRequestError, Redemption};
use crate::domain::session::{Session, SessionError};
use crate::http::AppState;
use crate::oidc::tokens;
use crate::oidc::{scope, OAuthError};
use crate::store::StreamAppend;
use actix_web::HttpRequest;
use annals_events::auth_request::{AuthRequestEvent, AuthRequestStarted};
use annals_events::Metadata;
use annals_projections::clients::ClientView;
use annals_projections::realms::RealmView;
use std::collections::{BTreeMap, BTreeSet};

type Settled = Result<Outcome<AuthRequest>, CommandError<AuthRequestError>>;

/// A code's redemption, held by its authorization request's actor until the session's
/// command that carries it along has ended.
pub(super) struct Joint {
    held: Option<HeldDecision<AuthRequest>>,
    settled: Option<Settled>,
}

impl Joint {
    /// The redemption, to append with the session's events (nothing once settled).
    pub(super) fn along(&self) -> Vec<StreamAppend> {
        self.held.iter().map(HeldDecision::append).collect()
    }

    /// What the session's command tells of the redemption it carried: committed with it;
    /// never run (the session's actor was busy: the redemption is dropped and the code stays
    /// redeemable for the client's retry); refused before anything was written (the code is
    /// spent all the same: the actor records the redemption on its own, or a replay if
    /// another node redeemed the code meanwhile); or unknown, when the store failed or the
    /// session's actor stopped mid-command.
    pub(super) fn settled_by<T>(executed: &Result<(Outcome<Session>, T), CommandError<SessionError>>) -> Settle {
        match executed {
            Ok((outcome, _)) => Settle::Committed { position: outcome.executed.position },
            Err(CommandError::Busy) => Settle::Discard,
            Err(CommandError::Domain(_) | CommandError::Conflict | CommandError::Corrupt(_)) => Settle::Alone,
            Err(CommandError::Unavailable | CommandError::Store(_)) => Settle::Unknown,
        }
    }

    pub(super) async fn settle(&mut self, how: Settle) {
        if let Some(held) = self.held.take() {
            self.settled = Some(held.settle(how).await);
        }
    }

    /// The redemption's outcome; recorded on its own if nothing carried it.
    async fn outcome(mut self) -> Settled {
        self.settle(Settle::Alone).await;
        self.settled.unwrap_or(Err(CommandError::Unavailable))
    }
}

pub(super) async fn authorization_code(
    state: &AppState,
    req: &HttpRequest,
    realm: &RealmView,
    client: &ClientView,
    params: &BTreeMap<String, String>,
) -> Result<issue::TokenResponse, OAuthError> {
    let code = required(params, "code")?;
    let invalid = || OAuthError::invalid_grant("Code not valid");
    let (ar_id, secret) = code.split_once('.').ok_or_else(invalid)?;
    if uuid::Uuid::parse_str(ar_id).is_err() || secret.len() != 43 {
        return Err(invalid());
    }
    if !client.settings.standard_flow_enabled {
        return Err(OAuthError::unauthorized_client("Client not allowed to exchange code"));
    }
    let refused = |e: CommandError<AuthRequestError>| match e {
        CommandError::Domain(_) => invalid(),
        other => command_failed(other),
    };
    // Who the code is for, resolved before the code is spent: a failure here (the user
    // directory unavailable) must leave the code redeemable by a retry.
    let meta = metadata(req, &realm.id, client_actor(&realm.id, &client.client_id));
    let peek = state.hosts.execute_full::<AuthRequest>(ar_id, AuthRequestCommand::Check, meta.clone()).await;
    let peek = peek.map_err(refused)?;
    if peek.state.request.as_ref().is_none_or(|r| r.realm_id != realm.id) {
        return Err(invalid());
    }
    let subject = match &peek.state.user_id {
        Some(u) => Some(issue::subject(state, &realm.id, u).await?),
        None => None,
    };
    // The request's scopes never change; what the client may be granted is fixed now and
    // recorded with the redemption (whether it gives an offline token), so a replay revokes
    // what was given even if the client's scopes change meanwhile. A refusal is answered only
    // after the code is spent: a replay must still be recorded (and revoke) when the client's
    // scopes no longer allow the request's.
    let requested = peek.state.request.as_ref().map(|r| r.scope.as_str()).unwrap_or_default();
    let granted = scope::grant(requested, client);
    let offline = granted.as_ref().is_ok_and(|g| g.contains("offline_access"));
    let token_ids = vec![issue::token_id(), issue::token_id(), issue::token_id()];
    let redeem = Redemption {
        code_hash: code_hash(secret),
        client: client.id.clone(),
        redirect_uri: params.get("redirect_uri").cloned(),
        code_verifier: params.get("code_verifier").cloned(),
        token_ids: token_ids.clone(),
        offline,
    };
    let held = state.hosts.hold::<AuthRequest>(ar_id, AuthRequestCommand::Redeem(redeem), meta.clone()).await;
    let (outcome, issued) = match held.map_err(refused)? {
        Hold::Done(outcome) => (outcome, None),
        Hold::Held(held) if matches!(held.decided().events.first(), Some(AuthRequestEvent::CodeRedeemed(_))) => {
            let mut joint = Joint { held: Some(held), settled: None };
            let redeeming = Redeeming { ar_id, subject: subject.as_deref(), granted, token_ids: &token_ids };
            let issued = issue_redeemed(state, req, (realm, client), redeeming, &mut joint).await;
            (joint.outcome().await.map_err(refused)?, Some(issued))
        }
        // A replay or a failure: recorded on its own.
        Hold::Held(held) => (held.settle(Settle::Alone).await.map_err(refused)?, None),
    };
    let started: AuthRequestStarted = outcome.state.request.as_deref().cloned().ok_or_else(invalid)?;
    let session_id = outcome.state.session_id.clone().unwrap_or_default();
    match (outcome.events.first(), issued) {
        (Some(AuthRequestEvent::CodeRedeemed(_)), Some(issued)) => {
            let body = issued?;
            if offline {
                let gave = CodeGrant { session_id: &session_id, request: ar_id, client: &started.client, offline };
                revoke_if_replayed_since(state, &gave, (token_ids, outcome.executed.version), &meta).await?;
            }
            Ok(body)
        }
        (Some(AuthRequestEvent::CodeReplayed(_)), _) => {
            let first = outcome.state.redeemed.clone().unwrap_or_default();
            // The replay is refused either way. A revocation that failed has been logged and
            // stays owed in the log: the replay worker takes it up again.
            if let Some(gave) = CodeGrant::of(ar_id, &outcome.state, Some(client)) {
                let _ = replay::revoke(state, &gave, first, &meta).await;
            }
            Err(OAuthError::invalid_grant("Code already used; the tokens it gave are revoked").recorded())
        }
        (Some(AuthRequestEvent::Failed(f)), _) => {
            let reason = f.error.strip_prefix("invalid_grant: ").unwrap_or(&f.error).to_string();
            Err(OAuthError::invalid_grant(reason).recorded())
        }
        _ => Err(invalid()),
    }
}

/// A redemption about to be recorded, with what the tokens it gives are made of.
struct Redeeming<'a> {
    ar_id: &'a str,
    subject: Option<&'a tokens::Subject>,
    granted: Result<BTreeSet<String>, OAuthError>,
    /// Chosen for the redemption's record, so a replay revokes exactly these.
    token_ids: &'a [String],
}

/// Issues the tokens of a redemption `joint` holds, in its session and in one commit with it.
/// A refusal before the session's command leaves `joint` unsettled: the code is spent all
/// the same.
async fn issue_redeemed(
    state: &AppState,
    req: &HttpRequest,
    (realm, client): (&RealmView, &ClientView),
    r: Redeeming<'_>,
    joint: &mut Joint,
) -> Result<issue::TokenResponse, OAuthError> {
    let invalid = || OAuthError::invalid_grant("Code not valid");
    let Some(held) = &joint.held else { return Err(invalid()) };
    let ar = &held.decided().state;
    let subject = r.subject.ok_or_else(invalid)?;
    if ar.user_id.as_deref() != Some(subject.user.id.as_str()) {
        return Err(invalid());
    }
    let started = ar.request.as_deref().ok_or_else(invalid)?;
    let (session_id, method) = (ar.session_id.clone().unwrap_or_default(), ar.method.clone());
    let (nonce, acr_values) = (started.nonce.clone(), started.acr_values.clone());
    let granted = &r.granted?;
    // The ids recorded at redemption are the ones issued, so a replay revokes exactly them.
    let ids = Ids {
        access: Some(r.token_ids[0].clone()),
        id: granted.contains("openid").then(|| r.token_ids[1].clone()),
        refresh: Some(r.token_ids[2].clone()),
    };
    let it = SessionIssue {
        session_id: &session_id,
        subject,
        grant: "authorization_code",
        granted,
        presented_refresh: None,
        nonce: nonce.as_deref(),
        ids: Some(ids),
        sso: method.as_deref() == Some("sso"),
        acr_values: acr_values.as_deref(),
        carried_acr: None,
        request: Some(r.ar_id),
    };
    issue_in_session(state, req, realm, client, it, Some(joint)).await
}

/// A login that asked for an offline token records it in an offline session in a commit of
/// its own, after the redemption's: a replay that raced in between may have found no offline
/// session to revoke it in. The request's log is read again now (from the store: the replay
/// may have been recorded by another node's actor): a replay not in it yet comes after what
/// was just recorded and revokes it; one that is, this redemption answers by revoking the
/// tokens itself. The answer stays a success, as when the replay comes later (two
/// redemptions, exactly one success, and nothing it gave outlives the replay), unless the
/// revocation fails: tokens never handed out are harmless.
async fn revoke_if_replayed_since(
    state: &AppState,
    gave: &CodeGrant<'_>,
    (token_ids, version): (Vec<String>, u64),
    meta: &Metadata,
) -> Result<(), OAuthError> {
    let stream = annals_events::StreamId::new(annals_events::StreamType::AuthRequest, gave.request);
    let later = state.store.read_stream(&stream, version, crate::store::ReadUntil::End).await.map_err(|e| {
        tracing::error!(error = %e, "the authorization request cannot be read again");
        OAuthError::temporarily_unavailable("try again")
    })?;
    let replayed = later
        .iter()
        .any(|e| matches!(e.decode(), Ok(annals_events::DomainEvent::AuthRequest(AuthRequestEvent::CodeReplayed(_)))));
    match replayed {
        true => replay::revoke(state, gave, token_ids, meta).await,
        false => Ok(()),
    }
}
