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
use annals_events::ssf_stream::SsfStreamEvent;
use annals_events::DomainEvent;
use annals_projections::ssf_streams::SsfStreamView;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Events read from the log per page while looking for SETs.
const PAGE: usize = 1_000;
/// Events one call examines at most: a stream whose next SET is far away costs bounded work
/// per poll or push, and its checkpoint moves on by that much each time.
pub const EXAMINE_MAX: u64 = 20_000;
/// Sends of a SET the receiver refuses (4xx) before the refusal is recorded and push goes on.
const REFUSAL_ATTEMPTS: u32 = 5;
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
    /// The event the SET is made of.
    pub event_id: String,
    pub set: String,
}

/// Acknowledged SETs past each stream's checkpoint (a receiver may acknowledge out of
/// order): by stream, jti -> position. Node-local: after a restart, such SETs are polled once
/// more (at least once).
#[derive(Default)]
pub struct Acks(std::sync::Mutex<HashMap<String, HashMap<String, u64>>>);

impl Acks {
    /// Notes acknowledgements of `outstanding` SETs; returns the position the checkpoint may
    /// move to (the end of the leading run of acknowledged SETs), and forgets what it covers.
    pub fn note(&self, stream: &str, acked: &[&str], outstanding: &[Pending]) -> Option<u64> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mine = all.entry(stream.to_string()).or_default();
        for p in outstanding.iter().filter(|p| acked.contains(&p.jti.as_str())) {
            mine.insert(p.jti.clone(), p.position);
        }
        // Bounded: a receiver acknowledging far ahead cannot grow this past the poll window.
        if mine.len() > 10 * POLL_MAX {
            mine.clear();
        }
        let to = outstanding.iter().take_while(|p| mine.contains_key(&p.jti)).last().map(|p| p.position);
        if let Some(to) = to {
            mine.retain(|_, pos| *pos > to);
        }
        to
    }

    /// Whether a SET was acknowledged (and so is not returned again).
    pub fn acked(&self, stream: &str, jti: &str) -> bool {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.get(stream).is_some_and(|m| m.contains_key(jti))
    }

    pub fn forget(&self, stream: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(stream);
    }
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
    /// Record SETs receivers refuse.
    pub hosts: crate::actors::Hosts,
    /// Push endpoints may be loopback or private addresses (development, tests).
    pub private_endpoints: bool,
}

/// Whether pushing to `url` is allowed: https (http only with private endpoints allowed), no
/// user information, and a host that resolves only to public addresses unless private ones are
/// allowed (a receiver must not make the server call into its own network).
pub async fn endpoint_allowed(url: &str, private_ok: bool) -> bool {
    let Ok(u) = url::Url::parse(url) else { return false };
    let scheme_ok = u.scheme() == "https" || (u.scheme() == "http" && private_ok);
    if !scheme_ok || !u.username().is_empty() || u.password().is_some() {
        return false;
    }
    let (Some(host), Some(port)) = (u.host_str(), u.port_or_known_default()) else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let lookup = tokio::net::lookup_host((host, port)).await;
    match lookup {
        Ok(addrs) => {
            let addrs: Vec<std::net::IpAddr> = addrs.map(|a| a.ip()).collect();
            !addrs.is_empty() && (private_ok || addrs.iter().all(|a| public(*a)))
        }
        Err(_) => false,
    }
}

/// Neither loopback, private, link-local, unspecified, multicast, nor documentation or
/// shared address space.
pub fn public(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || o[0] == 0)
        }
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public(v4.into()),
            None => {
                let s = v6.segments();
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (s[0] & 0xfe00) == 0xfc00
                    || (s[0] & 0xffc0) == 0xfe80
                    || s[0] == 0x2001 && s[1] == 0x0db8)
            }
        },
    }
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

    /// The stream's SETs after `after` (at most `max`, and no further than [`EXAMINE_MAX`]
    /// events into the log per call), signed when `sign`; and the position examined up to (no
    /// SET of this stream waits between the last SET returned, or `after`, and it).
    pub async fn pending(
        &self,
        stream: &SsfStreamView,
        after: u64,
        max: usize,
        sign: bool,
    ) -> Result<(Vec<Pending>, u64), SsfError> {
        let head = *self.store.watch_head().borrow();
        let mut auditor = Auditor::default();
        let mut found: Vec<(u64, String, String, serde_json::Value)> = Vec::new();
        let start = after.max(stream.created_position);
        let mut at = start;
        let wanted = |uri: &str| stream.events_requested.iter().any(|e| e == uri);
        let iat = chrono::Utc::now().timestamp();
        'pages: while at < head && found.len() < max && at - start < EXAMINE_MAX {
            let mut page = self.store.read_all(at, PAGE.min((head - at) as usize)).await?;
            page.retain(|e| e.position <= head);
            let Some(last) = page.last().map(|e| e.position) else { break };
            let prepared = auditor
                .prepare(&*self.store, page, |m| m.realm.as_ref().is_none_or(|r| *r == stream.realm_id))
                .await
                .map_err(|e| SsfError::Audit(e.to_string()))?;
            // The read models are held only to name things, never while signing.
            let dir = self.models.read();
            let names = DirectoryNames(&dir);
            let Some(realm) = dir.realms.get(&stream.realm_id) else { break };
            let issuer = crate::oidc::issuer(&self.base_url, &realm.name);
            at = last;
            for p in prepared.iter().filter(|p| p.realm_id() == Some(stream.realm_id.as_str())) {
                let r = p.record(&names);
                let ctx = set::Context {
                    issuer: &issuer,
                    user_id: r.user_id.as_deref(),
                    // Receivers know sessions by the `sid` of their tokens: an offline
                    // session is named as its tokens name it, as back-channel logout does.
                    session_id: p.token_sid(),
                    by_user: r.auth_details.user_id.is_some() && r.auth_details.user_id == r.user_id,
                    time: r.time / 1000,
                };
                let ev = match p.decoded() {
                    // A verification goes to the stream it was asked for, whatever it requested.
                    DomainEvent::SsfStream(SsfStreamEvent::VerificationRequested(v)) => {
                        if r.stream != format!("ssf_stream/{}", stream.id) {
                            continue;
                        }
                        set::verification(&stream.id, v.state.as_deref())
                    }
                    decoded => match set::of(decoded, &ctx).filter(|ev| wanted(ev.uri)) {
                        Some(ev) => ev,
                        None => continue,
                    },
                };
                // Unique per issuer (RFC 8417 §2.2): the event, for this stream.
                let jti = format!("{}-{}", r.id, stream.id);
                let claims = set::claims(&ev, &issuer, &stream.audience, &jti, iat, r.correlation_id.as_deref());
                found.push((r.position, jti, r.id.clone(), claims));
                if found.len() == max {
                    at = r.position;
                    break 'pages;
                }
            }
        }
        let out = found
            .into_iter()
            .map(|(position, jti, event_id, claims)| Pending {
                position,
                jti,
                event_id,
                set: if sign { annals_events::jws::sign(self.key.signing(), set::TYP, &claims) } else { String::new() },
            })
            .collect();
        Ok((out, at))
    }

    /// Records a SET the receiver refused for good (as the audit sinks do, sink `ssf-ID`) so
    /// that push may go past it.
    async fn record_refusal(
        &self,
        stream: &SsfStreamView,
        p: &Pending,
        attempts: u32,
        reason: &str,
    ) -> Result<(), SsfError> {
        use crate::domain::sink_delivery::{Rejection, SinkDelivery, SinkDeliveryCommand};
        let rejection = Rejection {
            sink: format!("ssf-{}", stream.id),
            position: p.position,
            event_id: p.event_id.clone(),
            event_type: "security event token".into(),
            realm_id: Some(stream.realm_id.clone()),
            status: Some(400),
            reason: reason.to_string(),
            attempts,
        };
        let meta = annals_events::Metadata {
            realm: Some(stream.realm_id.clone()),
            actor: annals_events::Actor::System { component: "ssf".into() },
            ..Default::default()
        };
        let id = format!("ssf-{}", stream.id);
        self.hosts
            .execute::<SinkDelivery>(&id, SinkDeliveryCommand::Reject(rejection), meta)
            .await
            .map_err(|e| SsfError::Audit(e.to_string()))?;
        Ok(())
    }

    /// Moves the checkpoint up to just before the first waiting SET (or to `read_to` when none
    /// waits): what lies between holds nothing for the stream, and is not read again.
    pub async fn skip_to(
        &self,
        stream: &SsfStreamView,
        after: u64,
        sets: &[Pending],
        read_to: u64,
    ) -> Result<(), SsfError> {
        let to = sets.first().map_or(read_to, |p| p.position - 1);
        if to > after {
            self.advance(stream, to).await?;
        }
        Ok(())
    }

    /// Whether the stream may be served now: its realm enabled, its receiver client there
    /// and enabled.
    pub fn receiver_live(&self, stream: &SsfStreamView) -> bool {
        let dir = self.models.read();
        dir.realms.get(&stream.realm_id).is_some_and(|r| r.settings.enabled)
            && dir.clients.by_client_id(&stream.realm_id, &stream.audience).is_some_and(|c| c.settings.enabled)
    }
}

/// The push tasks of the live streams; dropped (the supervisor stopped), they stop too.
struct Tasks(HashMap<String, (SsfStreamView, tokio::task::JoinHandle<()>)>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for (_, t) in self.0.values() {
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
            // A task that ended (its credential cannot be unsealed) stays ended until its
            // stream goes: restarting it would only log the same error again.
            // A stream whose configuration changed is pushed by a new task.
            running.retain(|id, (view, task)| {
                let keep = live.iter().any(|s| &s.id == id && s == view);
                if !keep {
                    task.abort();
                }
                keep
            });
            for s in live {
                if !running.contains_key(&s.id) {
                    let (tx, http, id) = (tx.clone(), http.clone(), s.id.clone());
                    running.insert(id, (s.clone(), tokio::spawn(push(tx, http, s))));
                }
            }
        }
    })
}

/// What one round of a push stream left.
enum Step {
    /// Everything up to the head is delivered: wait for the log to move.
    Idle,
    /// Delivered a batch; more may wait.
    More,
    /// The receiver failed: wait, then try again.
    Retry,
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
    // The SET the receiver refuses, and how many times.
    let mut refused: Option<(u64, u32)> = None;
    loop {
        let step = async {
            if !tx.receiver_live(&stream) {
                return Ok::<Step, SsfError>(Step::Idle);
            }
            let after = tx.checkpoint(&stream).await?;
            let (sets, read_to) = tx.pending(&stream, after, 100, true).await?;
            tx.skip_to(&stream, after, &sets, read_to).await?;
            if sets.is_empty() {
                let head = *tx.store.watch_head().borrow();
                return Ok(if read_to >= head { Step::Idle } else { Step::More });
            }
            // Resolved again before each push round (the name may point elsewhere by now), but
            // not on idle rounds.
            if !endpoint_allowed(&url, tx.private_endpoints).await {
                tracing::error!(stream = %stream.id, "the push endpoint resolves to an address not allowed; not pushing");
                return Ok(Step::Retry);
            }
            for p in sets {
                let mut req = http
                    .post(&url)
                    .header("content-type", "application/secevent+jwt")
                    .header("accept", "application/json")
                    .body(p.set.clone());
                if let Some(a) = &auth {
                    let mut v = reqwest::header::HeaderValue::from_str(a)
                        .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static(""));
                    v.set_sensitive(true);
                    req = req.header("authorization", v);
                }
                match req.send().await {
                    Ok(res) if res.status().is_success() => tx.advance(&stream, p.position).await?,
                    // RFC 8935 §2.3: a 400 names what is wrong with this SET; sending it again
                    // gets the same answer. Recorded, then passed over.
                    Ok(res) if res.status().as_u16() == 400 => {
                        let attempts = match &mut refused {
                            Some((pos, n)) if *pos == p.position => {
                                *n += 1;
                                *n
                            }
                            other => {
                                *other = Some((p.position, 1));
                                1
                            }
                        };
                        let reason = res.text().await.unwrap_or_default().chars().take(300).collect::<String>();
                        tracing::warn!(stream = %stream.id, jti = %p.jti, attempts, "SET refused by the receiver");
                        if attempts < REFUSAL_ATTEMPTS {
                            return Ok(Step::Retry);
                        }
                        tx.record_refusal(&stream, &p, attempts, &reason).await?;
                        tx.advance(&stream, p.position).await?;
                        refused = None;
                    }
                    Ok(res) => {
                        tracing::warn!(stream = %stream.id, jti = %p.jti, status = res.status().as_u16(), "SET push failed; retrying");
                        return Ok(Step::Retry);
                    }
                    Err(e) => {
                        tracing::warn!(stream = %stream.id, error = %e, "SET push failed; retrying");
                        return Ok(Step::Retry);
                    }
                }
            }
            Ok(Step::More)
        };
        match step.await {
            Ok(Step::More) => backoff = Duration::from_millis(250),
            Ok(Step::Idle) => {
                backoff = Duration::from_millis(250);
                tokio::select! {
                    _ = head.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Ok(Step::Retry) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(position: u64) -> Pending {
        Pending { position, jti: format!("j{position}"), event_id: String::new(), set: String::new() }
    }

    #[test]
    fn given_acknowledgements_out_of_order_when_noted_then_the_checkpoint_moves_past_the_leading_run_only() {
        let acks = Acks::default();
        let outstanding = vec![pending(3), pending(5), pending(9)];
        assert_eq!(acks.note("s", &["j5"], &outstanding), None, "the first is not acknowledged yet");
        assert!(acks.acked("s", "j5") && !acks.acked("s", "j3"));
        assert_eq!(acks.note("s", &["j3", "unknown"], &outstanding), Some(5), "3 and then 5");
        assert!(!acks.acked("s", "j5"), "covered by the checkpoint: forgotten");
        assert_eq!(acks.note("other", &["j9"], &outstanding), None, "per stream");
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!public(private.parse().unwrap()), "{private}");
        }
        for open in ["93.184.216.34", "2606:4700::1111", "::ffff:93.184.216.34"] {
            assert!(public(open.parse().unwrap()), "{open}");
        }
    }

    #[tokio::test]
    async fn push_endpoints_must_be_https_without_credentials_on_public_hosts() {
        assert!(!endpoint_allowed("http://127.0.0.1:9/ssf", false).await);
        assert!(!endpoint_allowed("https://127.0.0.1:9/ssf", false).await, "loopback");
        assert!(!endpoint_allowed("https://169.254.169.254/latest", false).await, "cloud metadata");
        assert!(!endpoint_allowed("https://user:pw@127.0.0.1/ssf", true).await, "credentials in the URL");
        assert!(endpoint_allowed("http://127.0.0.1:9/ssf", true).await, "allowed for development");
        assert!(!endpoint_allowed("not a url", true).await);
    }
}
