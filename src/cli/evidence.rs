//! `annals evidence export` and `annals evidence verify`: one user's records over a time
//! window as a bundle that proves them against signed checkpoints (format and checks in
//! `annals_events::evidence`, so a verifier needs nothing of the server).
use crate::audit_checkpoints::{self, CheckpointError};
use crate::audit_key::AuditKey;
use crate::store::{SharedStore, StoreError};
use annals_events::evidence::{self, Subject};
use annals_events::jws::PublicJwk;
use annals_events::RecordedEvent;
use chrono::{DateTime, Utc};

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// Printed to the operator; exit 1.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The records about the user cannot be gathered.
    #[error(transparent)]
    Find(#[from] super::timeline::TimelineError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The log no longer matches a checkpoint: it was rewritten after signing.
    #[error("{0}")]
    Assemble(#[from] evidence::AssembleError),
    #[error("{0}")]
    Keys(String),
    /// No checkpoint could be appended (nothing moved): the export cannot prove its records.
    #[error("no checkpoint could be written to cover position {position} (covered up to {covered})")]
    Uncovered { position: u64, covered: u64 },
}

/// What to export.
pub use super::UserWindow as ExportRequest;

pub struct Exported {
    pub bundle: Vec<u8>,
    pub records: usize,
    pub checkpoints: usize,
    pub key_id: String,
}

pub async fn export(
    store: &SharedStore,
    key: &AuditKey,
    req: &ExportRequest,
    now: DateTime<Utc>,
) -> Result<Exported, EvidenceError> {
    let found = super::timeline::about_user(store, req).await?;
    let (username, user_id) = (found.username, found.user_id);
    let records: Vec<RecordedEvent> = found.entries.into_iter().map(|(e, _)| e).collect();
    let last = records.last().map_or(0, |e| e.position);
    cover(store, key, last, now).await?;
    let positions: Vec<u64> = records.iter().map(|e| e.position).collect();
    let covering = audit_checkpoints::covering(&**store, &positions, key).await?;
    let subject =
        Subject { realm: req.realm.clone(), username, user_id, client: req.client.clone(), from: req.from, to: req.to };
    let bundle = evidence::assemble(subject, &records, &covering, key.signing(), now)?;
    // `covering` holds only the checkpoints some record needs.
    Ok(Exported { bundle, records: records.len(), checkpoints: covering.len(), key_id: key.public().kid.clone() })
}

/// Appends checkpoints until one covers `position`.
async fn cover(store: &SharedStore, key: &AuditKey, position: u64, now: DateTime<Utc>) -> Result<(), EvidenceError> {
    // Each round covers up to MAX_COVERED more events, or loses a race to a running node
    // that writes the same checkpoint; either way the newest checkpoint moves on.
    loop {
        let covered = audit_checkpoints::latest(&**store).await?.map_or(0, |l| l.checkpoint.to_position);
        if covered >= position {
            return Ok(());
        }
        if audit_checkpoints::append_next(&**store, key, now).await?.is_none() {
            let now_covered = audit_checkpoints::latest(&**store).await?.map_or(0, |l| l.checkpoint.to_position);
            if now_covered == covered {
                return Err(EvidenceError::Uncovered { position, covered });
            }
        }
    }
}

/// The keys in a JWK or JWKS file (the server's `/audit/certs`).
pub fn trusted_keys(text: &str) -> Result<Vec<PublicJwk>, EvidenceError> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let bad = |e: serde_json::Error| EvidenceError::Keys(format!("not a JWK or JWKS: {e}"));
    let values = match serde_json::from_str::<Set>(text) {
        Ok(set) => set.keys,
        Err(_) => vec![serde_json::from_str(text).map_err(bad)?],
    };
    // Keys of other types in a JWKS are not audit keys; skip them.
    let keys: Vec<PublicJwk> = values
        .into_iter()
        .filter_map(|v| serde_json::from_value::<PublicJwk>(v).ok())
        .filter(|k| k.key().is_ok())
        .collect();
    if keys.is_empty() {
        // A realm's RSA `certs` given by mistake: say so, rather than call every bundle tampered.
        return Err(EvidenceError::Keys(
            "no Ed25519 audit key in the --key file (the server publishes it at /audit/certs)".into(),
        ));
    }
    Ok(keys)
}

/// The report of `annals evidence verify` and its exit code: 0 verified under a trusted key,
/// 3 consistent but the key not checked (no `--key`), 2 tampered or not a bundle.
pub fn verify_report(bytes: &[u8], trusted: Option<&[PublicJwk]>) -> (String, u8) {
    match evidence::verify(bytes, trusted) {
        Ok(v) => {
            let client = v.subject.client.as_ref().map(|c| format!(" client {c}")).unwrap_or_default();
            let (verdict, pinned) = match v.key_trusted {
                true => ("OK", format!("trusted audit key {}", v.key_id)),
                false => (
                    "CONSISTENT, KEY NOT CHECKED",
                    format!(
                        "audit key {}, which was not compared with a trusted key: pass --key with the server's /audit/certs or the key in the checkpoints your SIEM holds",
                        v.key_id
                    ),
                ),
            };
            let text = format!(
                "{verdict}: {} records of user {} ({}) in realm {}{client} from {} to {}, exported {}; covered by {} signed checkpoints up to position {}; signed by {pinned}\n",
                v.records,
                v.subject.username,
                v.subject.user_id,
                v.subject.realm,
                v.subject.from.to_rfc3339(),
                v.subject.to.to_rfc3339(),
                v.exported_at.to_rfc3339(),
                v.checkpoints,
                v.covered_to,
            );
            (text, if v.key_trusted { 0 } else { 3 })
        }
        Err(problems) => {
            let mut text = format!("FAILED: {} problem(s)\n", problems.len());
            for p in problems {
                text.push_str(&format!("  {p}\n"));
            }
            (text, 2)
        }
    }
}
