//! Recomputes the hash chain over the whole log (`annals verify`).
use crate::store::{EventStore, StoreError};
use annals_events::chain::{ChainBreak, ChainVerifier};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The chain is broken: reported to the operator with the first bad position; exit code 2.
    #[error("hash chain broken at {0}")]
    Broken(ChainBreak),
    /// A row is so damaged it cannot be read back (hash of the wrong length, unknown stream
    /// type): tampering as well; exit code 2.
    #[error("position {position}: record unreadable ({reason}); the row was altered")]
    Unreadable { position: u64, reason: String },
    /// The store could not be read; exit code 1.
    #[error(transparent)]
    Store(StoreError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub events: u64,
    pub head_position: u64,
    pub head_hash: String,
}

/// Walks the log from position 1. `progress` is called with the position reached.
pub async fn verify_chain(store: &dyn EventStore, mut progress: impl FnMut(u64)) -> Result<VerifyReport, VerifyError> {
    const PAGE: usize = 10_000;
    let mut v = ChainVerifier::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, PAGE).await.map_err(|e| match e {
            StoreError::Corrupt { position, reason } => VerifyError::Unreadable { position, reason },
            other => VerifyError::Store(other),
        })?;
        for e in &page {
            v.check(&e.chain_input(), &e.prev_hash, &e.hash).map_err(VerifyError::Broken)?;
        }
        let Some(last) = page.last() else { break };
        after = last.position;
        progress(after);
        if page.len() < PAGE {
            break;
        }
    }
    Ok(VerifyReport { events: v.checked(), head_position: v.next_position() - 1, head_hash: hex::encode(v.head()) })
}
