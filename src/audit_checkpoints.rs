//! The signed checkpoint writer: at an interval, appends an `audit_checkpoint.signed` event
//! covering the log since the previous checkpoint (the chain head and the Merkle root of the
//! chain hashes), signed with the audit key. It verifies every event it covers against the
//! previous checkpoint's head first: a checkpoint never blesses a chain that does not verify.
//!
//! Every node may run it: checkpoints are one stream appended at an expected version, so two
//! nodes racing for the same interval conflict and one of them writes it.
use crate::audit_key::AuditKey;
use crate::store::{EventStore, ExpectedVersion, ReadUntil, StoreError, StreamAppend};
use annals_events::audit_checkpoint::{AuditCheckpointEvent, AuditCheckpointSigned, STREAM_ID};
use annals_events::chain::{ChainBreak, ChainVerifier, Hash, GENESIS};
use annals_events::evidence::Covering;
use annals_events::merkle::{RootBuilder, Tree};
use annals_events::{Actor, DomainEvent, Metadata, NewEvent, RecordedEvent, StreamId, StreamType};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;

/// Most events one checkpoint covers. Bounds the leaves an evidence export must rehash to
/// prove a record (and a proof's length, 17 hashes); a backlog gets several checkpoints.
pub const MAX_COVERED: u64 = 100_000;
const PAGE: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The log does not verify from the previous checkpoint: it was altered, and no
    /// checkpoint is written. Handled: logged as an error on every attempt, counted in
    /// `annals_audit_checkpoint_failures_total`.
    #[error("not signing: hash chain broken at {0}")]
    Broken(ChainBreak),
    /// A checkpoint event in the log cannot be read back, or does not hold (bad signature,
    /// a range not chained to the previous one). Handled like `Broken`.
    #[error("checkpoint at position {position} is unreadable: {reason}")]
    Unreadable { position: u64, reason: String },
    /// The newest checkpoint was signed by another key than this node's: the audit key was
    /// changed, nodes do not share it, or someone wrote the checkpoint who should not have.
    /// Handled like `Broken`: no checkpoint is chained to one this node cannot vouch for.
    #[error("checkpoint at position {position} is signed by audit key {kid}, not this node's {ours}; nodes must share one audit key (changing it is not supported yet)")]
    ForeignKey { position: u64, kid: String, ours: String },
}

/// The newest checkpoint.
#[derive(Clone, Debug)]
pub struct Latest {
    pub version: u64,
    pub event: RecordedEvent,
    pub checkpoint: AuditCheckpointSigned,
}

pub fn stream() -> StreamId {
    StreamId::new(StreamType::AuditCheckpoint, STREAM_ID)
}

fn decode(e: &RecordedEvent) -> Result<AuditCheckpointSigned, CheckpointError> {
    match e.decode() {
        Ok(DomainEvent::AuditCheckpoint(AuditCheckpointEvent::Signed(c))) => Ok(c),
        Ok(other) => Err(CheckpointError::Unreadable {
            position: e.position,
            reason: format!("a {} event in the checkpoint stream", other.event_type()),
        }),
        Err(err) => Err(CheckpointError::Unreadable { position: e.position, reason: err.to_string() }),
    }
}

/// The checkpoint at `version`, if the stream has one.
async fn at_version(store: &dyn EventStore, version: u64) -> Result<Option<Latest>, CheckpointError> {
    let found = store.read_stream(&stream(), version - 1, ReadUntil::Version(version)).await?;
    match found.into_iter().next() {
        Some(event) => Ok(Some(Latest { version, checkpoint: decode(&event)?, event })),
        None => Ok(None),
    }
}

/// The newest checkpoint, found by doubling then bisecting on the stream version: a log
/// signed every minute for years holds hundreds of thousands of them.
pub async fn latest(store: &dyn EventStore) -> Result<Option<Latest>, CheckpointError> {
    let Some(mut found) = at_version(store, 1).await? else { return Ok(None) };
    let mut missing = 2;
    while let Some(c) = at_version(store, missing).await? {
        found = c;
        missing *= 2;
    }
    while missing - found.version > 1 {
        let mid = found.version + (missing - found.version) / 2;
        match at_version(store, mid).await? {
            Some(c) => found = c,
            None => missing = mid,
        }
    }
    Ok(Some(found))
}

/// Every checkpoint, in order (evidence export).
pub async fn all(store: &dyn EventStore) -> Result<Vec<(RecordedEvent, AuditCheckpointSigned)>, CheckpointError> {
    let events = store.read_stream(&stream(), 0, ReadUntil::End).await?;
    events.into_iter().map(|e| decode(&e).map(|c| (e, c))).collect()
}

/// Checks that a checkpoint from the log is one this node can chain to: signed by its key,
/// covering a range before itself that starts where `previous` ended.
fn vouch(
    event: &RecordedEvent,
    c: &AuditCheckpointSigned,
    previous_to: u64,
    key: Option<&AuditKey>,
) -> Result<(), CheckpointError> {
    let position = event.position;
    if let Some(key) = key.filter(|k| *k.public() != c.key) {
        return Err(CheckpointError::ForeignKey { position, kid: c.key.kid.clone(), ours: key.public().kid.clone() });
    }
    c.verify().map_err(|e| CheckpointError::Unreadable { position, reason: e.to_string() })?;
    chained(event, c, previous_to)
}

/// Checks that a checkpoint covers a range before itself that starts where the previous ended.
fn chained(event: &RecordedEvent, c: &AuditCheckpointSigned, previous_to: u64) -> Result<(), CheckpointError> {
    if !(c.after_position < c.to_position && c.to_position < event.position) || c.after_position != previous_to {
        return Err(CheckpointError::Unreadable {
            position: event.position,
            reason: format!(
                "covers positions after {} up to {}, after a checkpoint that ended at {previous_to}",
                c.after_position, c.to_position
            ),
        });
    }
    Ok(())
}

/// Reads positions `after + 1 ..= to`, verifying the chain from `anchor` (the hash at
/// `after`), and hands each event's hash to `leaf`. Returns the hash at `to`.
async fn covered(
    store: &dyn EventStore,
    after: u64,
    to: u64,
    anchor: Hash,
    mut leaf: impl FnMut(&Hash),
) -> Result<Hash, CheckpointError> {
    let mut v = ChainVerifier::resume(after, anchor);
    let mut at = after;
    while at < to {
        let want = PAGE.min((to - at) as usize);
        let page = store.read_all(at, want).await?;
        let first = page.first().map(|e| e.position);
        if first != Some(at + 1) {
            // The head said `to` exists: rows missing below it are a gap, never a skip.
            return Err(CheckpointError::Broken(ChainBreak::Gap { expected: at + 1, found: first.unwrap_or(0) }));
        }
        for e in page.iter().take_while(|e| e.position <= to) {
            v.check(&e.chain_input(), &e.prev_hash, &e.hash).map_err(CheckpointError::Broken)?;
            leaf(&e.hash);
            at = e.position;
        }
    }
    Ok(v.head())
}

/// Appends the next checkpoint if events were appended since the last one (other than the
/// last checkpoint itself). Returns what it signed, or `None` when there was nothing to cover or another
/// node wrote it first.
pub async fn append_next(
    store: &dyn EventStore,
    key: &AuditKey,
    now: DateTime<Utc>,
) -> Result<Option<AuditCheckpointSigned>, CheckpointError> {
    append_next_at_most(store, key, now, MAX_COVERED).await
}

/// As [`append_next`], covering at most `max` events (tests use a small one).
pub async fn append_next_at_most(
    store: &dyn EventStore,
    key: &AuditKey,
    now: DateTime<Utc>,
    max: u64,
) -> Result<Option<AuditCheckpointSigned>, CheckpointError> {
    let last = latest(store).await?;
    if let Some(l) = &last {
        let previous_to = match l.version {
            1 => 0,
            v => at_version(store, v - 1).await?.map_or(0, |p| p.checkpoint.to_position),
        };
        vouch(&l.event, &l.checkpoint, previous_to, Some(key))?;
    }
    let (after, anchor, version) = match &last {
        Some(l) => (l.checkpoint.to_position, hex_hash(&l.checkpoint.head_hash, l.event.position)?, l.version),
        None => (0, GENESIS, 0),
    };
    let head = store.head().await?;
    // Nothing since the last checkpoint but the checkpoint itself: no checkpoint of it.
    let only_itself = last.as_ref().is_some_and(|l| l.event.position == head && after + 1 == head);
    if head <= after || only_itself {
        return Ok(None);
    }
    let to = head.min(after + max.max(1));
    let mut root = RootBuilder::new();
    let head_hash = covered(store, after, to, anchor, |h| root.push(h)).await?;
    let checkpoint = AuditCheckpointSigned::sign(key.signing(), after, to, &head_hash, &root.root(), now.timestamp());
    let meta = Metadata { actor: Actor::System { component: "audit-checkpoints".into() }, ..Default::default() };
    let event = DomainEvent::from(AuditCheckpointEvent::Signed(checkpoint.clone()));
    let new = NewEvent::new(&event, &meta).map_err(|e| StoreError::Corrupt { position: 0, reason: e.to_string() })?;
    let append = StreamAppend { stream: stream(), expected: ExpectedVersion::Exact(version), events: vec![new] };
    match store.append(append).await {
        Ok(_) => {
            crate::metrics::AUDIT_CHECKPOINT_POSITION.set(to as i64);
            Ok(Some(checkpoint))
        }
        Err(StoreError::Conflict { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn hex_hash(text: &str, position: u64) -> Result<Hash, CheckpointError> {
    let unreadable = || CheckpointError::Unreadable { position, reason: "head_hash is not 32 bytes of hex".into() };
    hex::decode(text).ok().and_then(|b| b.try_into().ok()).ok_or_else(unreadable)
}

/// Appends checkpoints until the log is covered, then every `interval`, until aborted.
pub fn spawn(
    store: crate::store::SharedStore,
    key: Arc<AuditKey>,
    clock: crate::clock::SharedClock,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // The first checkpoint one interval after start, not at every start.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            loop {
                match append_next(&*store, &key, clock.now()).await {
                    // A backlog longer than one checkpoint: write the next at once.
                    Ok(Some(c)) if c.to_position - c.after_position == MAX_COVERED => continue,
                    Ok(_) => break,
                    Err(e) => {
                        crate::metrics::AUDIT_CHECKPOINT_FAILURES.inc();
                        tracing::error!(error = %e, "audit checkpoint not written");
                        break;
                    }
                }
            }
        }
    })
}

/// The checkpoints that cover `positions` (sorted), each with the Merkle tree of what it
/// covers rebuilt from the log (evidence export). Positions past the newest checkpoint are
/// not covered: the caller appends a checkpoint first. Every checkpoint must be chained to
/// the one before; those a record needs must also be signed by `key`, the key the export's
/// manifest is signed with (a verifier refuses a manifest whose key signed no checkpoint).
pub async fn covering(
    store: &dyn EventStore,
    positions: &[u64],
    key: &AuditKey,
) -> Result<Vec<Covering>, CheckpointError> {
    let mut out = Vec::new();
    let (mut previous_to, mut anchor) = (0, GENESIS);
    for (event, checkpoint) in all(store).await? {
        let (after, to) = (checkpoint.after_position, checkpoint.to_position);
        // The first position past `after`, if any, decides whether a record needs it.
        let next = positions.get(positions.partition_point(|&p| p <= after));
        if next.is_some_and(|&p| p <= to) {
            vouch(&event, &checkpoint, previous_to, Some(key))?;
            // The chain is verified from the previous checkpoint's signed head on; the tree's
            // root is then compared with the signed one, so a rewrite anywhere is caught.
            // A range is bounded by the log (vouched: `to` lies before the checkpoint), but only
            // an honest writer keeps it to MAX_COVERED: reserve no more than that up front.
            let mut leaves = Vec::with_capacity((to - after).min(MAX_COVERED) as usize);
            covered(store, after, to, anchor, |h| leaves.push(*h)).await?;
            out.push(Covering { event: event.clone(), tree: Tree::new(&leaves), checkpoint: checkpoint.clone() });
        } else {
            chained(&event, &checkpoint, previous_to)?;
        }
        previous_to = to;
        anchor = hex_hash(&checkpoint.head_hash, event.position)?;
    }
    Ok(out)
}
