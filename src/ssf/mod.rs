//! OpenID Shared Signals transmitter: CAEP and RISC events as Security Event Tokens (RFC
//! 8417) signed with the audit key (published at `/audit/certs`), to streams receivers
//! configure (`http::ssf`), by push (RFC 8935) or poll (RFC 8936).
//!
//! A stream is a projection of the log like an audit sink: its SETs are made from the events
//! after its checkpoint (`ssf:ID` in `checkpoints`), each SET's `jti` the event's id, so a SET
//! sent again is the same SET. Push moves the checkpoint past a SET once the receiver answers
//! 202; poll moves it past what the receiver acknowledges. Nothing is lost while a receiver is
//! away: its SETs wait in the log.
pub mod set;

use crate::audit::{Auditor, DirectoryNames};
use crate::audit_key::AuditKey;
use crate::readmodels::ReadModels;
use crate::store::{SharedStore, StoreError};
use annals_projections::ssf_streams::SsfStreamView;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Events read from the log per page while looking for SETs.
const PAGE: usize = 1_000;
/// SETs a poll answers at most.
pub const POLL_MAX: usize = 1_000;
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SsfError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the checkpoint table: {0}")]
    Checkpoint(#[from] sqlx::Error),
    #[error("audit records cannot be built: {0}")]
    Audit(String),
}

/// One SET waiting for its receiver.
#[derive(Clone, Debug)]
pub struct Pending {
    pub position: u64,
    pub jti: String,
    pub set: String,
}

/// What makes SETs: the log, the names, the key and the base URL (the issuer of each realm).
#[derive(Clone)]
pub struct Transmitter {
    pub store: SharedStore,
    pub models: ReadModels,
    pub key: Arc<AuditKey>,
    /// Unseal the authorization headers receivers gave for pushes.
    pub server_keys: Arc<crate::secrets::ServerKeys>,
    pub base_url: String,
}

/// The row of a stream's checkpoint.
pub fn checkpoint_key(stream_id: &str) -> String {
    format!("ssf:{stream_id}")
}

impl Transmitter {
    /// Where the stream's receiver has everything up to.
    pub async fn checkpoint(&self, stream: &SsfStreamView) -> Result<u64, SsfError> {
        let at = crate::sinks::checkpoint::load_key(&self.store.pool(), &checkpoint_key(&stream.id)).await?;
        Ok(at.max(stream.created_position))
    }

    pub async fn advance(&self, stream: &SsfStreamView, to: u64) -> Result<(), SsfError> {
        crate::sinks::checkpoint::save_key(&self.store.pool(), &checkpoint_key(&stream.id), to).await?;
        Ok(())
    }

    /// The stream's SETs after `after`, at most `max`, read up to the durable head; and the
    /// position examined up to (past it, no SET of this stream is waiting).
    pub async fn pending(
        &self,
        stream: &SsfStreamView,
        after: u64,
        max: usize,
    ) -> Result<(Vec<Pending>, u64), SsfError> {
        let head = *self.store.watch_head().borrow();
        let mut auditor = Auditor::default();
        let mut out = Vec::new();
        let mut at = after.max(stream.created_position);
        let wanted = |uri: &str| stream.events_requested.is_empty() || stream.events_requested.iter().any(|e| e == uri);
        while at < head && out.len() < max {
            let mut page = self.store.read_all(at, PAGE.min((head - at) as usize)).await?;
            page.retain(|e| e.position <= head);
            let Some(last) = page.last().map(|e| e.position) else { break };
            let prepared = auditor
                .prepare(&*self.store, page, |m| m.realm.as_ref().is_none_or(|r| *r == stream.realm_id))
                .await
                .map_err(|e| SsfError::Audit(e.to_string()))?;
            let dir = self.models.read();
            let names = DirectoryNames(&dir);
            let Some(realm) = dir.realms.get(&stream.realm_id) else { return Ok((out, last)) };
            let issuer = crate::oidc::issuer(&self.base_url, &realm.name);
            at = last;
            for p in prepared.iter().filter(|p| p.realm_id() == Some(stream.realm_id.as_str())) {
                let r = p.record(&names);
                let ctx = set::Context {
                    issuer: &issuer,
                    user_id: r.user_id.as_deref(),
                    session_id: r.session_id.as_deref(),
                    by_user: r.auth_details.user_id.is_some() && r.auth_details.user_id == r.user_id,
                    time: r.time / 1000,
                };
                let Some(ev) = set::of(p.decoded(), &ctx).filter(|ev| wanted(ev.uri)) else { continue };
                let claims =
                    set::claims(&ev, &issuer, &stream.audience, &r.id, r.time / 1000, r.correlation_id.as_deref());
                let jws = annals_events::jws::sign(self.key.signing(), set::TYP, &claims);
                out.push(Pending { position: r.position, jti: r.id.clone(), set: jws });
                if out.len() == max {
                    at = r.position;
                    break;
                }
            }
        }
        Ok((out, at))
    }
}

/// The push tasks of the live streams; dropped (the supervisor stopped), they stop too.
struct Tasks(HashMap<String, tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in self.0.values() {
            t.abort();
        }
    }
}

/// Starts and stops one push task per live push stream, as streams come and go.
pub fn spawn_push(tx: Transmitter) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = match reqwest::Client::builder()
            .timeout(PUSH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "Shared Signals push disabled: no HTTP client");
                return;
            }
        };
        let mut tasks = Tasks(HashMap::new());
        let running = &mut tasks.0;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let live: Vec<SsfStreamView> = tx
                .models
                .read()
                .ssf_streams
                .all()
                .filter(|s| s.method == annals_events::ssf_stream::PUSH)
                .cloned()
                .collect();
            running.retain(|id, task| {
                let keep = live.iter().any(|s| &s.id == id) && !task.is_finished();
                if !keep {
                    task.abort();
                }
                keep
            });
            for s in live {
                if !running.contains_key(&s.id) {
                    let (tx, http, id) = (tx.clone(), http.clone(), s.id.clone());
                    running.insert(id, tokio::spawn(push(tx, http, s)));
                }
            }
        }
    })
}

/// One push stream's delivery, until aborted.
async fn push(tx: Transmitter, http: reqwest::Client, stream: SsfStreamView) {
    let auth = match &stream.authorization {
        None => None,
        Some(sealed) => match tx.server_keys.open(sealed).map(String::from_utf8) {
            Ok(Ok(h)) => Some(h),
            _ => {
                tracing::error!(stream = %stream.id, "the stream's authorization header cannot be unsealed; not pushing");
                return;
            }
        },
    };
    let Some(url) = stream.endpoint_url.clone() else { return };
    let mut head = tx.store.watch_head();
    let mut backoff = Duration::from_millis(250);
    loop {
        let step = async {
            let after = tx.checkpoint(&stream).await?;
            let (sets, read_to) = tx.pending(&stream, after, 100).await?;
            if sets.is_empty() {
                if read_to > after {
                    tx.advance(&stream, read_to).await?;
                }
                return Ok::<bool, SsfError>(true);
            }
            for p in sets {
                let mut req = http
                    .post(&url)
                    .header("content-type", "application/secevent+jwt")
                    .header("accept", "application/json")
                    .body(p.set);
                if let Some(a) = &auth {
                    let mut v = reqwest::header::HeaderValue::from_str(a)
                        .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static(""));
                    v.set_sensitive(true);
                    req = req.header("authorization", v);
                }
                match req.send().await {
                    Ok(res) if res.status().is_success() => tx.advance(&stream, p.position).await?,
                    Ok(res) => {
                        tracing::warn!(stream = %stream.id, jti = %p.jti, status = res.status().as_u16(), "SET push refused; retrying");
                        return Ok(false);
                    }
                    Err(e) => {
                        tracing::warn!(stream = %stream.id, error = %e, "SET push failed; retrying");
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        };
        match step.await {
            Ok(true) => {
                backoff = Duration::from_millis(250);
                tokio::select! {
                    _ = head.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Ok(false) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(e) => {
                tracing::error!(stream = %stream.id, error = %e, "SET delivery cannot go on; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}
