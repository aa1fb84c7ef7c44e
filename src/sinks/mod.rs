//! Delivery of the audit stream to SIEM receivers. Each sink is a projection of the log with
//! its own checkpoint: it reads events in log order from its checkpoint, turns them into audit
//! records and sends them; the checkpoint moves only past what the receiver surely holds, so a
//! receiver that is down makes the lag grow (a metric) and never loses a record. Delivery is
//! at least once: after a lost connection or a restart, records since the checkpoint are sent
//! again, each with its event id for de-duplication.
mod cef;
pub(crate) mod checkpoint;
mod connection;
mod http;
mod nats;
mod refusals;
mod spec;
mod syslog;

pub use spec::{SinkSpec, Target};

use crate::actors::Hosts;
use crate::audit::{Auditor, DirectoryNames};
use crate::metrics;
use crate::readmodels::ReadModels;
use crate::store::SharedStore;
use annals_projections::audit::AuditRecord;
use refusals::{Refusals, Refused};
use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Events read from the log per send.
const PAGE: usize = 1_000;
/// The checkpoint is written at most this often while delivery runs.
const SAVE_EVERY: Duration = Duration::from_secs(1);
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A sink's configuration is unusable; start-up aborts with the reason.
    #[error("sink configuration: {0}")]
    Config(String),
    /// The receiver cannot be reached or dropped the connection; delivery retries.
    #[error("receiver unreachable: {0}")]
    Unreachable(String),
    #[error("a record cannot be encoded: {0}")]
    Encode(String),
    /// The log or the read models cannot be read now; delivery retries from where it was.
    #[error("audit records cannot be built: {0}")]
    Records(String),
    /// The receiver took the first `delivered` records, then became unreachable.
    #[error("receiver unreachable after {delivered} records: {cause}")]
    Partial { delivered: usize, cause: String },
    /// The receiver took the first `delivered` records and refused the next one for its
    /// content: sending it again gets the same answer.
    #[error("receiver refused a record (after {delivered} taken): {reason}")]
    Rejected { delivered: usize, status: Option<u16>, reason: String },
}

/// A receiver of audit records.
#[async_trait::async_trait]
pub trait Sink: Send {
    /// How long sent records must stay unchallenged before they count as received: zero for
    /// receivers that acknowledge, the time a stream receiver may hold unread bytes otherwise.
    fn settle(&self) -> Duration;
    /// Sends records, in order; connects first when not connected.
    async fn send(&mut self, records: &[AuditRecord]) -> Result<(), SinkError>;
    /// False once what was sent may not have arrived (the connection was lost).
    fn intact(&self) -> bool;
    /// Forgets the connection; the next send opens another.
    fn reset(&mut self);
}

/// The running sinks of a node.
pub struct Sinks {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Sinks {
    /// Builds every sink (files are read now, so a bad path stops start-up) and starts each
    /// one's delivery.
    pub fn start(
        specs: &[SinkSpec],
        store: &SharedStore,
        read_models: &ReadModels,
        hosts: &Hosts,
    ) -> Result<Sinks, SinkError> {
        let mut built = Vec::new();
        for spec in specs {
            built.push((spec.clone(), spec.build()?));
        }
        let tasks = built
            .into_iter()
            .map(|(spec, sink)| tokio::spawn(deliver(spec, sink, store.clone(), read_models.clone(), hosts.clone())))
            .collect();
        Ok(Sinks { tasks })
    }

    /// Stops delivery; what was not yet checkpointed is sent again by the next start.
    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Doubling waits between failed attempts, reset by a success.
struct Backoff(Duration);

impl Backoff {
    fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        d
    }
}

/// Forgets the connection and what was sent on it; delivery goes on after `confirmed`, which
/// it returns as the new last position sent.
fn rewind(sink: &mut dyn Sink, sent_at: &mut VecDeque<(Instant, u64)>, confirmed: u64, name: &str) -> u64 {
    metrics::SINK_FAILURES.with_label_values(&[name]).inc();
    sink.reset();
    sent_at.clear();
    confirmed
}

/// One sink's delivery loop; runs until aborted.
async fn deliver(spec: SinkSpec, mut sink: Box<dyn Sink>, store: SharedStore, models: ReadModels, hosts: Hosts) {
    let name = spec.name.as_str();
    let pool = store.pool();
    let mut backoff = Backoff(BACKOFF_FIRST);
    let mut checkpoint = loop {
        match checkpoint::load(&pool, name).await {
            Ok(p) => break p,
            Err(e) => {
                tracing::error!(sink = name, error = %e, "sink checkpoint unreadable; retrying");
                tokio::time::sleep(backoff.next()).await;
            }
        }
    };
    backoff = Backoff(BACKOFF_FIRST);
    tracing::info!(sink = name, checkpoint, "audit delivery starting");
    let settle = sink.settle();
    let mut head_rx = store.watch_head();
    let mut auditor = Auditor::default();
    let mut realm_ids = HashSet::new();
    // What was sent on the current connection and when, oldest first.
    let mut sent_at: VecDeque<(Instant, u64)> = VecDeque::new();
    let mut sent = checkpoint;
    let mut saved = Instant::now();
    let mut confirmed = checkpoint;
    let mut refusals = Refusals::default();
    loop {
        // The head watch moves only to durable positions: nothing sent can be taken back.
        let head = *head_rx.borrow_and_update();
        if !sink.intact() {
            // With nothing unsettled, everything sent is confirmed: only the connection goes.
            if sent_at.is_empty() {
                sink.reset();
            } else {
                tracing::warn!(sink = name, from = confirmed, "receiver connection lost; sending again");
                sent = rewind(&mut *sink, &mut sent_at, confirmed, name);
                // A receiver that takes writes and then closes must not be hammered.
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
        }
        let now = Instant::now();
        while sent_at.front().is_some_and(|(t, _)| *t + settle <= now) {
            confirmed = sent_at.pop_front().map_or(confirmed, |(_, p)| p);
            // Only records the receiver surely holds show that it works again.
            backoff = Backoff(BACKOFF_FIRST);
        }
        if confirmed > checkpoint && (saved.elapsed() >= SAVE_EVERY || sent >= head) {
            match checkpoint::save(&pool, name, confirmed).await {
                Ok(()) => checkpoint = confirmed,
                Err(e) => tracing::error!(sink = name, error = %e, "sink checkpoint cannot be saved"),
            }
            saved = Instant::now();
        }
        metrics::SINK_POSITION.with_label_values(&[name]).set(confirmed as i64);
        metrics::SINK_LAG.with_label_values(&[name]).set(head.saturating_sub(confirmed) as i64);
        if sent < head {
            match next_page(&spec, &store, &models, &mut auditor, &mut realm_ids, sent, head).await {
                Ok((records, last)) => match sink.send(&records).await {
                    Ok(()) => {
                        metrics::SINK_RECORDS.with_label_values(&[name]).inc_by(records.len() as u64);
                        sent = last;
                        sent_at.push_back((Instant::now(), last));
                        refusals.took();
                    }
                    // What was taken stays taken: only the rest is sent again.
                    Err(SinkError::Partial { delivered, cause }) => {
                        tracing::warn!(sink = name, error = %cause, "audit delivery interrupted; retrying");
                        metrics::SINK_FAILURES.with_label_values(&[name]).inc();
                        took(&records[..delivered.min(records.len())], &mut sent, &mut sent_at, &mut refusals, name);
                        tokio::time::sleep(backoff.next()).await;
                    }
                    Err(SinkError::Rejected { delivered, status, reason }) => {
                        took(&records[..delivered.min(records.len())], &mut sent, &mut sent_at, &mut refusals, name);
                        let Some(record) = records.get(delivered) else {
                            tracing::error!(sink = name, delivered, "a refusal names no record of the page");
                            tokio::time::sleep(backoff.next()).await;
                            continue;
                        };
                        match refusals.refused(&hosts, name, record, status, &reason).await {
                            Refused::Retry => tokio::time::sleep(backoff.next()).await,
                            Refused::Passed => {
                                sent = record.position;
                                sent_at.push_back((Instant::now(), sent));
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(sink = name, error = %e, from = confirmed, "audit delivery failed; retrying");
                        sent = rewind(&mut *sink, &mut sent_at, confirmed, name);
                        tokio::time::sleep(backoff.next()).await;
                    }
                },
                Err(e) => {
                    tracing::error!(sink = name, error = %e, at = sent, "audit records cannot be built; retrying");
                    tokio::time::sleep(backoff.next()).await;
                }
            }
            continue;
        }
        // Caught up: wait for the head to move or for sent records to settle.
        let wait =
            sent_at.front().map_or(Duration::from_secs(1), |(t, _)| (*t + settle).saturating_duration_since(now));
        tokio::select! {
            changed = head_rx.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {}
        }
    }
}

/// Marks records the receiver took as sent.
fn took(
    records: &[AuditRecord],
    sent: &mut u64,
    sent_at: &mut VecDeque<(Instant, u64)>,
    refusals: &mut Refusals,
    name: &str,
) {
    if let Some(last) = records.last() {
        metrics::SINK_RECORDS.with_label_values(&[name]).inc_by(records.len() as u64);
        *sent = last.position;
        sent_at.push_back((Instant::now(), last.position));
        refusals.took();
    }
}

/// The records of the events after `after` (one page, up to `head`) and the last position read.
async fn next_page(
    spec: &SinkSpec,
    store: &SharedStore,
    models: &ReadModels,
    auditor: &mut Auditor,
    realm_ids: &mut HashSet<String>,
    after: u64,
    head: u64,
) -> Result<(Vec<AuditRecord>, u64), SinkError> {
    let failed = |e: &dyn std::fmt::Display| SinkError::Records(e.to_string());
    let mut page = store.read_all(after, PAGE.min((head - after) as usize)).await.map_err(|e| failed(&e))?;
    page.retain(|e| e.position <= head);
    // Durable positions are readable and without gaps: a short read is an error, never a skip.
    let Some(last) = page.last().map(|e| e.position) else {
        return Err(SinkError::Records(format!("no events after {after} below the head {head}")));
    };
    // Realm and client names come from the read models: they must have seen these events
    // (a realm created in this page is otherwise unknown, and its records passed over).
    models.wait_for(last, Duration::from_secs(30)).await.map_err(|e| failed(&e))?;
    // Every realm that has carried the name while this sink ran: a realm deleted (its name
    // gone from the directory) still has its last records, its deletion included, delivered.
    if let Some(name) = &spec.realm {
        if let Some(r) = models.read().realms.by_name(name) {
            realm_ids.insert(r.id.clone());
        }
    }
    let wanted = |id: Option<&str>| spec.realm.is_none() || id.is_some_and(|id| realm_ids.contains(id));
    let prepared = auditor
        .prepare(&**store, page, |m| m.realm.is_none() || wanted(m.realm.as_deref()))
        .await
        .map_err(|e| failed(&e))?;
    let dir = models.read();
    let names = DirectoryNames(&dir);
    let records = prepared.iter().filter(|p| p.log_wide() || wanted(p.realm_id())).map(|p| p.record(&names)).collect();
    Ok((records, last))
}

#[cfg(test)]
pub(crate) mod tests {
    use annals_projections::audit::{AuditRecord, AuthDetails, Outcome, Severity};

    /// A failed login as the audit projection reports it.
    pub fn record() -> AuditRecord {
        AuditRecord {
            position: 42,
            id: "0190aaaa-0000-7000-8000-000000000001".into(),
            time: 1_795_000_000_123,
            kind: "user",
            r#type: Some("LOGIN_ERROR"),
            operation_type: None,
            resource_type: None,
            resource_path: None,
            annals_type: "auth_request.credentials_rejected",
            stream: "auth_request/a1".into(),
            version: 2,
            outcome: Outcome::Failure,
            severity: Severity::Warning,
            realm_id: Some("r1".into()),
            realm_name: Some("demo".into()),
            client_id: Some("web".into()),
            user_id: Some("u-1".into()),
            session_id: None,
            ip_address: Some("192.0.2.7".into()),
            error: Some("invalid_user_credentials".into()),
            details: Default::default(),
            auth_details: AuthDetails {
                kind: "user",
                realm_id: None,
                client_id: None,
                user_id: None,
                component: None,
                ip_address: None,
            },
            correlation_id: None,
            hash: "ab".repeat(32),
        }
    }
}
