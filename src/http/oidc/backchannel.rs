//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0): when a session ends, each
//! client that held its tokens and registered `backchannel.logout.url` receives a signed
//! logout token by POST, server to server.
//!
//! What is owed comes from the log (the `logout_deliveries` read model), so a restart
//! resumes every delivery still owed. Each attempt is a LogoutDelivery event; a failure is
//! retried with exponential backoff until the aggregate gives up. Several nodes may each
//! deliver once (at least once overall): receivers de-duplicate by `sid` or `jti`.
use super::issue;
use crate::domain::logout_delivery::{LogoutDelivery, LogoutDeliveryCommand, Target};
use crate::http::AppState;
use crate::oidc::{issuer, tokens};
use annals_events::{Actor, Metadata};
use annals_projections::logout_deliveries::{Owed, URL_ATTRIBUTE};
use std::collections::HashMap;
use std::time::Duration;

/// How often the worker looks for due deliveries.
const TICK: Duration = Duration::from_millis(250);
/// A receiver gets this long to answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Deliveries in flight at once.
const CONCURRENCY: usize = 32;

/// Starts the delivery worker on the current runtime.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = match reqwest::Client::builder().timeout(TIMEOUT).redirect(reqwest::redirect::Policy::none()).build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "back-channel logout disabled: no HTTP client");
                return;
            }
        };
        // Stream id -> the attempt count the delivery in flight started from: a delivery is
        // not started twice until the model shows its outcome.
        let mut in_flight: HashMap<String, u32> = HashMap::new();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let mut tick = tokio::time::interval(TICK);
        loop {
            tick.tick().await;
            while let Ok(id) = done_rx.try_recv() {
                in_flight.remove(&id);
            }
            let now = state.clock.now().timestamp_millis();
            let due: Vec<(String, Owed)> = {
                let dir = state.read_models.read();
                dir.logout_deliveries
                    .due(now)
                    .filter(|(id, _)| !in_flight.contains_key(*id))
                    .take(CONCURRENCY.saturating_sub(in_flight.len()))
                    .map(|(id, o)| (id.clone(), o.clone()))
                    .collect()
            };
            for (id, owed) in due {
                in_flight.insert(id.clone(), owed.attempts);
                let (state, http, done) = (state.clone(), http.clone(), done_tx.clone());
                tokio::spawn(async move {
                    // Released once the read model has folded the outcome, so the next tick
                    // sees the new due time rather than the old one.
                    match deliver(&state, &http, &id, owed).await {
                        Attempt::Recorded(p) => {
                            let _ = state.read_models.wait_for(p, Duration::from_secs(5)).await;
                        }
                        // The log is ahead of this node's model: give it time to catch up.
                        Attempt::Stale => tokio::time::sleep(Duration::from_secs(1)).await,
                        // The outcome was not recorded: wait before trying again.
                        Attempt::NotRecorded => tokio::time::sleep(Duration::from_secs(5)).await,
                    }
                    let _ = done.send(id);
                });
            }
        }
    })
}

/// What became of one turn of a delivery.
enum Attempt {
    /// An outcome was recorded at this log position.
    Recorded(u64),
    /// The delivery's stream is past what the read model showed (finished or attempted
    /// elsewhere): nothing was sent.
    Stale,
    NotRecorded,
}

/// One attempt: sign a fresh logout token, POST it, record the outcome.
async fn deliver(state: &AppState, http: &reqwest::Client, id: &str, owed: Owed) -> Attempt {
    let (realm, client) = {
        let dir = state.read_models.read();
        (dir.realms.shared(&owed.realm_id), dir.clients.shared(&owed.client))
    };
    let url = client.as_ref().and_then(|c| c.settings.attributes.get(URL_ATTRIBUTE)).map(|u| u.trim().to_string());
    let target = Target {
        realm_id: owed.realm_id.clone(),
        session_id: owed.session_id.clone(),
        client: owed.client.clone(),
        url: url.clone().unwrap_or_default(),
    };
    let meta = Metadata {
        realm: Some(owed.realm_id.clone()),
        actor: Actor::System { component: "backchannel-logout".into() },
        ..Default::default()
    };
    match state.hosts.execute_full::<LogoutDelivery>(id, LogoutDeliveryCommand::Check, meta.clone()).await {
        Ok(o) if o.state.finished || o.state.attempts != owed.attempts => return Attempt::Stale,
        Ok(_) => {}
        // The node is stopping: the delivery stays owed, for this node's next start or another.
        Err(crate::actors::CommandError::Unavailable) => {
            tracing::debug!(delivery = id, "back-channel logout left for later: the node is stopping");
            return Attempt::NotRecorded;
        }
        Err(e) => {
            tracing::error!(error = %e, delivery = id, "back-channel logout state cannot be read");
            return Attempt::NotRecorded;
        }
    }
    let (Some(realm), Some(client), Some(url)) = (realm, client, url.filter(|u| usable(u))) else {
        let error = "the client, its realm or its back-channel logout URL is gone".to_string();
        return record(state, id, LogoutDeliveryCommand::Abandon { target, error }, meta).await;
    };
    let now = state.clock.now().timestamp();
    let jti = issue::token_id();
    let claims = tokens::logout_claims(
        &issuer(&state.base_url, &realm.name),
        &client.client_id,
        owed.sid.as_deref().unwrap_or(&owed.session_id),
        owed.user_id.as_deref(),
        &jti,
        now,
    );
    let alg = tokens::algorithm(&realm, &client, tokens::ID_ALG);
    let token = match issue::sign_with(state, &realm.id, &alg, tokens::LOGOUT_TYP, &claims) {
        Ok(t) => t,
        Err(e) => {
            let cmd = LogoutDeliveryCommand::Failed { target, status: None, error: e.description, jti: None };
            return record(state, id, cmd, meta).await;
        }
    };
    let sent = http.post(&url).form(&[("logout_token", token.as_str())]).send().await;
    let cmd = match sent {
        Ok(res) if res.status().is_success() => {
            LogoutDeliveryCommand::Delivered { target, status: res.status().as_u16(), jti }
        }
        Ok(res) => {
            let status = res.status().as_u16();
            LogoutDeliveryCommand::Failed {
                target,
                status: Some(status),
                error: format!("HTTP {status}"),
                jti: Some(jti),
            }
        }
        // reqwest's error names the URL and the cause, never the body sent.
        Err(e) => LogoutDeliveryCommand::Failed { target, status: None, error: e.to_string(), jti: Some(jti) },
    };
    record(state, id, cmd, meta).await
}

/// Only absolute http(s) URLs are called.
fn usable(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

async fn record(state: &AppState, id: &str, cmd: LogoutDeliveryCommand, meta: Metadata) -> Attempt {
    match state.hosts.execute::<LogoutDelivery>(id, cmd, meta).await {
        Ok(done) if done.events == 0 => Attempt::Stale,
        Ok(done) => Attempt::Recorded(done.position),
        Err(crate::actors::CommandError::Unavailable) => {
            // Stopping: sent maybe, owed still; the next attempt repeats it, which only ends
            // again a session the receiver has already ended.
            tracing::warn!(delivery = id, "back-channel logout outcome not recorded: the node is stopping");
            Attempt::NotRecorded
        }
        Err(e) => {
            // Not recorded: the delivery stays owed and is tried again on a later tick.
            tracing::error!(error = %e, delivery = id, "back-channel logout outcome cannot be recorded");
            Attempt::NotRecorded
        }
    }
}
