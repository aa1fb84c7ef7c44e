//! Evidence bundles: one user's records over a time window, each with a Merkle proof that it
//! is covered by a signed checkpoint, and a manifest signed by the audit key listing every
//! record by position and hash. `verify` checks a bundle offline with this crate alone and
//! names every altered, missing, added or reordered record.
//!
//! A bundle holds none of the other events of the log: the checkpoints' Merkle roots stand in
//! for them, so a bundle can be handed to a court or an auditor without disclosing other users.
use crate::audit_checkpoint::{AuditCheckpointSigned, JWS_TYPE as CHECKPOINT_TYPE};
use crate::chain::{event_hash, Hash};
use crate::domain::DomainEvent;
use crate::envelope::{RecordJson, RecordedEvent};
use crate::jws::{self, PublicJwk};
use crate::merkle;
use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The `format` member of every bundle this module writes.
pub const FORMAT: &str = "annals-evidence/1";
/// The JWS `typ` of a manifest.
pub const MANIFEST_TYPE: &str = "annals-evidence+jwt";

/// The file, as written: compact JSON in exactly this form (`verify` re-serializes it and
/// refuses any other bytes, so no byte of a bundle can change unnoticed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub format: String,
    /// Every key that signed the manifest or a checkpoint in the bundle.
    pub audit_keys: Vec<PublicJwk>,
    /// Compact JWS of a [`Manifest`].
    pub manifest: String,
    /// The checkpoint events that cover the records, as stored.
    pub checkpoints: Vec<RecordJson>,
    pub records: Vec<Entry>,
}

/// One record and its inclusion proof in the checkpoint that covers its position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub record: RecordJson,
    /// Sibling hashes (hex), bottom up, in the Merkle tree of the covering checkpoint.
    pub proof: Vec<String>,
}

/// Whom and what period the bundle is about; chosen by the exporter, signed with the rest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub realm: String,
    pub username: String,
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// A record named by position and chain hash (hex).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    pub position: u64,
    pub hash: String,
}

/// What the audit key signed at export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub subject: Subject,
    pub exported_at: DateTime<Utc>,
    pub checkpoints: Vec<Listed>,
    pub records: Vec<Listed>,
}

/// A checkpoint event and the chain hashes it covers, for proving records against it.
pub struct Covering {
    pub event: RecordedEvent,
    pub checkpoint: AuditCheckpointSigned,
    pub tree: merkle::Tree,
}

/// Why a bundle could not be assembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssembleError(pub String);

impl fmt::Display for AssembleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AssembleError {}

/// Builds and signs a bundle. Every record must be covered by one of `covering`, whose trees
/// must match their checkpoints' roots (so an export from a rewritten log fails here).
pub fn assemble(
    subject: Subject,
    records: &[RecordedEvent],
    covering: &[Covering],
    key: &SigningKey,
    exported_at: DateTime<Utc>,
) -> Result<Vec<u8>, AssembleError> {
    for c in covering {
        if hex::encode(c.tree.root()) != c.checkpoint.merkle_root {
            return Err(AssembleError(format!(
                "the log's hashes up to position {} do not match the checkpoint at position {}: the log was changed after it was signed",
                c.checkpoint.to_position, c.event.position
            )));
        }
    }
    let mut entries = Vec::with_capacity(records.len());
    let mut used = BTreeSet::new();
    for r in records {
        let (i, c) = covering
            .iter()
            .enumerate()
            .find(|(_, c)| c.checkpoint.after_position < r.position && r.position <= c.checkpoint.to_position)
            .ok_or_else(|| AssembleError(format!("no checkpoint covers position {}", r.position)))?;
        let proof = c
            .tree
            .proof(r.position - c.checkpoint.after_position - 1)
            .ok_or_else(|| AssembleError(format!("position {} is outside its checkpoint's tree", r.position)))?;
        used.insert(i);
        entries.push(Entry { record: r.to_json(), proof: proof.iter().map(hex::encode).collect() });
    }
    let covering: Vec<&Covering> = used.into_iter().map(|i| &covering[i]).collect();
    let listed = |e: &RecordedEvent| Listed { position: e.position, hash: hex::encode(e.hash) };
    let manifest = Manifest {
        subject,
        exported_at,
        checkpoints: covering.iter().map(|c| listed(&c.event)).collect(),
        records: records.iter().map(listed).collect(),
    };
    let claims = serde_json::to_value(&manifest).map_err(|e| AssembleError(e.to_string()))?;
    let signer = PublicJwk::of(&key.verifying_key());
    let mut audit_keys = vec![signer];
    for c in &covering {
        if !audit_keys.contains(&c.checkpoint.key) {
            audit_keys.push(c.checkpoint.key.clone());
        }
    }
    let bundle = Bundle {
        format: FORMAT.into(),
        audit_keys,
        manifest: jws::sign(key, MANIFEST_TYPE, &claims),
        checkpoints: covering.iter().map(|c| c.event.to_json()).collect(),
        records: entries,
    };
    serde_json::to_vec(&bundle).map_err(|e| AssembleError(e.to_string()))
}

/// What a bundle that verifies proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub subject: Subject,
    pub exported_at: DateTime<Utc>,
    pub records: usize,
    pub checkpoints: usize,
    /// The `kid` of the key that signed the manifest (and the checkpoints).
    pub key_id: String,
    /// Whether that key is one the verifier trusts. Without a trusted key a bundle is only
    /// shown *consistent*: anyone can make a consistent bundle with a key of their own.
    pub key_trusted: bool,
    /// The last position the newest checkpoint covers.
    pub covered_to: u64,
}

/// One reason a bundle fails, naming the place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Not a bundle at all (JSON error with line and column).
    Malformed(String),
    /// A key in `audit_keys` is unusable, not trusted, repeated, or signs nothing.
    Key {
        kid: String,
        reason: String,
    },
    /// The manifest's signature or contents are wrong; nothing else can be checked.
    Manifest(String),
    CheckpointMissing {
        position: u64,
    },
    CheckpointAltered {
        position: u64,
        reason: String,
    },
    /// A record the manifest lists is not in the bundle.
    RecordMissing {
        position: u64,
    },
    /// A record the manifest does not list.
    RecordUnlisted {
        position: u64,
    },
    /// Records not in position order (or repeated): `position` appears after `after`.
    RecordOutOfOrder {
        position: u64,
        after: u64,
    },
    RecordAltered {
        position: u64,
        reason: String,
    },
    /// The record's proof does not lead to its checkpoint's signed root.
    NotInCheckpoint {
        position: u64,
        checkpoint: u64,
    },
    /// Every value checks, but the file is not byte for byte what was exported.
    NotAsExported {
        offset: usize,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Malformed(r) => write!(f, "not an evidence bundle: {r}"),
            Problem::Key { kid, reason } => write!(f, "audit key {kid}: {reason}"),
            Problem::Manifest(r) => write!(f, "manifest: {r}"),
            Problem::CheckpointMissing { position } => {
                write!(f, "checkpoint at position {position}: listed in the manifest but missing")
            }
            Problem::CheckpointAltered { position, reason } => write!(f, "checkpoint at position {position}: {reason}"),
            Problem::RecordMissing { position } => {
                write!(f, "record at position {position}: listed in the manifest but missing (removed)")
            }
            Problem::RecordUnlisted { position } => {
                write!(f, "record at position {position}: not in the signed manifest (added)")
            }
            Problem::RecordOutOfOrder { position, after } => {
                write!(f, "record at position {position}: comes after position {after} (records reordered or repeated)")
            }
            Problem::RecordAltered { position, reason } => write!(f, "record at position {position}: {reason}"),
            Problem::NotInCheckpoint { position, checkpoint } => write!(
                f,
                "record at position {position}: its proof does not lead to the root signed by the checkpoint at position {checkpoint}"
            ),
            Problem::NotAsExported { offset } => {
                write!(f, "byte {offset}: the file differs from the exported bytes (every value checks, but the text was edited)")
            }
        }
    }
}

/// Checks a bundle. `trusted`, when given, are the audit keys the verifier accepts (the
/// server's published JWKS, or the key in the checkpoints a SIEM received); without it the
/// bundle can only be shown consistent, and [`Verified::key_trusted`] says so.
pub fn verify(bytes: &[u8], trusted: Option<&[PublicJwk]>) -> Result<Verified, Vec<Problem>> {
    let bundle: Bundle = serde_json::from_slice(bytes).map_err(|e| vec![Problem::Malformed(e.to_string())])?;
    if bundle.format != FORMAT {
        return Err(vec![Problem::Malformed(format!("format {:?}, expected {FORMAT:?}", bundle.format))]);
    }
    let mut problems = Vec::new();
    let keys = usable_keys(&bundle.audit_keys, trusted, &mut problems);
    let (signer, manifest) = match manifest(&bundle.manifest, &keys) {
        Ok(m) => m,
        Err(reason) => {
            problems.push(Problem::Manifest(reason));
            return Err(problems);
        }
    };
    let checkpoints = checkpoints(&bundle, &manifest, &keys, &mut problems);
    signers(&bundle.audit_keys, &signer, &checkpoints, &mut problems);
    records(&bundle, &manifest, &checkpoints, &mut problems);
    if problems.is_empty() {
        // Every value checks; the text must also be exactly what the exporter wrote.
        let canonical = serde_json::to_vec(&bundle).unwrap_or_default();
        if canonical != bytes {
            let offset =
                canonical.iter().zip(bytes).position(|(a, b)| a != b).unwrap_or(canonical.len().min(bytes.len()));
            problems.push(Problem::NotAsExported { offset });
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Verified {
        records: manifest.records.len(),
        checkpoints: checkpoints.len(),
        key_trusted: trusted.is_some(),
        key_id: signer,
        covered_to: checkpoints.keys().next_back().copied().unwrap_or(0),
        subject: manifest.subject,
        exported_at: manifest.exported_at,
    })
}

fn usable_keys(
    keys: &[PublicJwk],
    trusted: Option<&[PublicJwk]>,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, PublicJwk> {
    let mut usable = BTreeMap::new();
    for k in keys {
        let refuse = |reason: &str| Problem::Key { kid: k.kid.clone(), reason: reason.into() };
        if let Err(e) = k.key() {
            problems.push(refuse(&e.to_string()));
        } else if k.alg.as_deref().is_some_and(|a| a != "EdDSA") || k.use_.as_deref().is_some_and(|u| u != "sig") {
            problems.push(refuse("not an EdDSA signing key"));
        } else if trusted.is_some_and(|t| !t.iter().any(|t| t.kid == k.kid && t.x == k.x)) {
            problems.push(refuse("not one of the trusted audit keys"));
        } else if usable.insert(k.kid.clone(), k.clone()).is_some() {
            problems.push(refuse("listed twice"));
        }
    }
    usable
}

/// `audit_keys` must be exactly the manifest's signer, then each checkpoint's in order, once
/// each: a key that signs nothing would only lend a bundle an air of the server's key.
fn signers(
    listed: &[PublicJwk],
    manifest_signer: &str,
    checkpoints: &BTreeMap<u64, (u64, AuditCheckpointSigned)>,
    problems: &mut Vec<Problem>,
) {
    let mut expected = vec![manifest_signer.to_string()];
    for (_, c) in checkpoints.values() {
        if !expected.contains(&c.key.kid) {
            expected.push(c.key.kid.clone());
        }
    }
    if !checkpoints.is_empty() && !checkpoints.values().any(|(_, c)| c.key.kid == manifest_signer) {
        problems.push(Problem::Key {
            kid: manifest_signer.into(),
            reason: "signed the manifest but none of its checkpoints".into(),
        });
    }
    let actual: Vec<String> = listed.iter().map(|k| k.kid.clone()).collect();
    if actual != expected {
        for kid in actual.iter().filter(|k| !expected.contains(k)) {
            problems.push(Problem::Key { kid: kid.clone(), reason: "signs nothing in the bundle".into() });
        }
        if actual.iter().all(|k| expected.contains(k)) {
            problems.push(Problem::Key {
                kid: actual.join(", "),
                reason: "audit_keys are not the bundle's signers in signing order".into(),
            });
        }
    }
}

fn manifest(token: &str, keys: &BTreeMap<String, PublicJwk>) -> Result<(String, Manifest), String> {
    let kid = jws::key_id(token).ok_or("its JWS header names no key")?;
    let key =
        keys.get(&kid).ok_or_else(|| format!("signed by key {kid}, which is not a usable audit key of the bundle"))?;
    let claims = jws::verify(token, MANIFEST_TYPE, key).map_err(|e| e.to_string())?;
    let manifest = serde_json::from_value(claims).map_err(|e| format!("signed, but not a manifest: {e}"))?;
    Ok((kid, manifest))
}

/// Hex as this crate writes it: lower case only, so no hash has two spellings.
fn strict_hash(text: &str) -> Option<Hash> {
    let bytes: Hash = hex::decode(text).ok()?.try_into().ok()?;
    (hex::encode(bytes) == text).then_some(bytes)
}

/// The chain hash a stored record should have, recomputed from its fields.
fn recompute(r: &RecordJson) -> Result<(RecordedEvent, Hash), String> {
    let e = RecordedEvent::try_from(r.clone()).map_err(|e| e.to_string())?;
    if strict_hash(&r.prev_hash).is_none() {
        return Err("its previous hash is not lower-case hex".into());
    }
    // The chain covers the time to the microsecond, as the store keeps it: finer digits
    // would be text the hash does not cover.
    if DateTime::from_timestamp_micros(e.recorded_at.timestamp_micros()) != Some(e.recorded_at) {
        return Err("its time is finer than the microseconds the chain covers".into());
    }
    let h = event_hash(&e.prev_hash, &e.chain_input());
    Ok((e, h))
}

/// The verified checkpoints, by the last position each covers: (event position, checkpoint).
fn checkpoints(
    bundle: &Bundle,
    manifest: &Manifest,
    keys: &BTreeMap<String, PublicJwk>,
    problems: &mut Vec<Problem>,
) -> BTreeMap<u64, (u64, AuditCheckpointSigned)> {
    let mut good = BTreeMap::new();
    let listed: BTreeMap<u64, &str> = manifest.checkpoints.iter().map(|l| (l.position, l.hash.as_str())).collect();
    let mut present = BTreeMap::new();
    let before = problems.len();
    for r in &bundle.checkpoints {
        let position = r.position;
        if !listed.contains_key(&position) {
            problems.push(Problem::CheckpointAltered { position, reason: "not in the signed manifest (added)".into() });
        } else if present.insert(position, r).is_some() {
            problems.push(Problem::CheckpointAltered { position, reason: "appears twice".into() });
        }
    }
    let order: Vec<u64> = bundle.checkpoints.iter().map(|r| r.position).collect();
    let signed_order: Vec<u64> = manifest.checkpoints.iter().map(|l| l.position).collect();
    // Missing ones are reported below; this is for the same checkpoints in another order.
    if order != signed_order && problems.len() == before && order.len() == signed_order.len() {
        if let Some((&at, _)) = order.iter().zip(&signed_order).find(|(a, b)| a != b) {
            problems.push(Problem::CheckpointAltered { position: at, reason: "not in the manifest's order".into() });
        }
    }
    let mut covered_to = 0;
    for l in &manifest.checkpoints {
        let position = l.position;
        let Some(r) = present.get(&position) else {
            problems.push(Problem::CheckpointMissing { position });
            continue;
        };
        let altered = |reason: String| Problem::CheckpointAltered { position, reason };
        let checked = recompute(r).and_then(|(e, computed)| {
            if hex::encode(computed) != r.hash || r.hash != l.hash {
                return Err("its contents do not match its chain hash and the manifest".into());
            }
            match e.decode() {
                Ok(DomainEvent::AuditCheckpoint(crate::audit_checkpoint::AuditCheckpointEvent::Signed(c))) => Ok(c),
                Ok(other) => Err(format!("is a {} event, not a checkpoint", other.event_type())),
                Err(err) => Err(err.to_string()),
            }
        });
        let c = match checked {
            Ok(c) => c,
            Err(reason) => {
                problems.push(altered(reason));
                continue;
            }
        };
        if keys.get(&c.key.kid) != Some(&c.key) {
            problems.push(altered(format!("signed by key {}, not a usable audit key of the bundle", c.key.kid)));
        } else if let Err(e) = c.verify() {
            problems.push(altered(format!("{e} ({CHECKPOINT_TYPE})")));
        } else if !(c.after_position < c.to_position && c.to_position < position) {
            problems.push(altered(format!(
                "covers positions after {} up to {}, which is not before it",
                c.after_position, c.to_position
            )));
        } else if c.after_position < covered_to {
            problems.push(altered("overlaps the checkpoint before it".into()));
        } else {
            covered_to = c.to_position;
            good.insert(c.to_position, (position, c));
        }
    }
    good
}

fn records(
    bundle: &Bundle,
    manifest: &Manifest,
    checkpoints: &BTreeMap<u64, (u64, AuditCheckpointSigned)>,
    problems: &mut Vec<Problem>,
) {
    let listed: BTreeMap<u64, &str> = manifest.records.iter().map(|l| (l.position, l.hash.as_str())).collect();
    let present: BTreeSet<u64> = bundle.records.iter().map(|e| e.record.position).collect();
    for l in &manifest.records {
        if !present.contains(&l.position) {
            problems.push(Problem::RecordMissing { position: l.position });
        }
    }
    let window = manifest.subject.from..=manifest.subject.to;
    let mut last: Option<u64> = None;
    for entry in &bundle.records {
        let position = entry.record.position;
        if let Some(after) = last.filter(|&a| a >= position) {
            problems.push(Problem::RecordOutOfOrder { position, after });
        }
        last = Some(last.map_or(position, |a| a.max(position)));
        let Some(&hash) = listed.get(&position) else {
            problems.push(Problem::RecordUnlisted { position });
            continue;
        };
        let altered = |reason: &str| Problem::RecordAltered { position, reason: reason.into() };
        let computed = match recompute(&entry.record) {
            Ok((_, h)) => h,
            Err(reason) => {
                problems.push(altered(&reason));
                continue;
            }
        };
        if hex::encode(computed) != entry.record.hash {
            problems.push(altered("its contents do not match its chain hash (edited)"));
            continue;
        }
        if entry.record.hash != hash {
            problems.push(altered("its chain hash is not the one the manifest signed (replaced)"));
            continue;
        }
        if !window.contains(&entry.record.recorded_at) {
            problems.push(altered("recorded outside the bundle's signed time window"));
            continue;
        }
        // The first checkpoint ending at or after the position; it covers it if it starts before.
        let covering = checkpoints.range(position..).next().filter(|(_, (_, c))| c.after_position < position);
        let Some((_, (at, c))) = covering else {
            problems.push(altered("no verified checkpoint in the bundle covers it"));
            continue;
        };
        let proof: Option<Vec<Hash>> = entry.proof.iter().map(|h| strict_hash(h)).collect();
        let included = match (proof, strict_hash(&c.merkle_root)) {
            (Some(p), Some(root)) => merkle::verify_inclusion(
                &computed,
                position - c.after_position - 1,
                c.to_position - c.after_position,
                &p,
                &root,
            ),
            _ => false,
        };
        if !included {
            problems.push(Problem::NotInCheckpoint { position, checkpoint: *at });
        }
    }
}

#[cfg(test)]
mod tests;
