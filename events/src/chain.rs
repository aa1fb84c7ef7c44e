//! The tamper-evident hash chain over the global event log.
//!
//! `hash(N) = SHA-256("annals.chain.v1" || hash(N-1) || fields of N)`, each variable-length field
//! length-prefixed so no two different records share an encoding. Position 1 chains to
//! [`GENESIS`]. Anyone holding the rows (or an evidence bundle) can recompute it with this
//! module alone.
use sha2::{Digest, Sha256};
use std::fmt;
use uuid::Uuid;

pub type Hash = [u8; 32];

/// The "previous hash" of the first event.
pub const GENESIS: Hash = [0u8; 32];

const DOMAIN: &[u8] = b"annals.chain.v1";

/// The parts of a stored event that the chain covers.
#[derive(Debug, Clone, Copy)]
pub struct ChainInput<'a> {
    pub position: u64,
    pub event_id: &'a Uuid,
    pub stream_type: &'a str,
    pub stream_id: &'a str,
    pub version: u64,
    pub recorded_at_micros: i64,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub payload: &'a str,
    pub metadata: &'a str,
}

/// Computes one event's hash from its predecessor's.
pub fn event_hash(prev: &Hash, input: &ChainInput<'_>) -> Hash {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(prev);
    h.update(input.position.to_be_bytes());
    h.update(input.event_id.as_bytes());
    field(&mut h, input.stream_type.as_bytes());
    field(&mut h, input.stream_id.as_bytes());
    h.update(input.version.to_be_bytes());
    h.update(input.recorded_at_micros.to_be_bytes());
    field(&mut h, input.event_type.as_bytes());
    h.update(input.schema_version.to_be_bytes());
    field(&mut h, input.payload.as_bytes());
    field(&mut h, input.metadata.as_bytes());
    h.finalize().into()
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// Where and how the chain stops matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// A position is missing or out of order: rows were deleted or inserted.
    Gap { expected: u64, found: u64 },
    /// The stored predecessor hash is not the hash of the previous record.
    PrevHashMismatch { position: u64 },
    /// The stored hash does not match the record's contents: the record was edited.
    HashMismatch { position: u64 },
}

impl ChainBreak {
    /// The first position at which the log cannot be trusted.
    pub fn position(&self) -> u64 {
        match *self {
            ChainBreak::Gap { expected, .. } => expected,
            ChainBreak::PrevHashMismatch { position } | ChainBreak::HashMismatch { position } => position,
        }
    }
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainBreak::Gap { expected, found } => write!(
                f,
                "position {expected}: missing (next record found is position {found}); records were removed or reordered"
            ),
            ChainBreak::PrevHashMismatch { position } => write!(
                f,
                "position {position}: previous-hash link does not match the record before it"
            ),
            ChainBreak::HashMismatch { position } => write!(
                f,
                "position {position}: contents do not match the stored hash; the record was altered"
            ),
        }
    }
}

impl std::error::Error for ChainBreak {}

/// Walks records in position order and reports the first break.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    expected_position: u64,
    prev: Hash,
    checked: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    /// Verifies a log from position 1.
    pub fn new() -> Self {
        ChainVerifier { expected_position: 1, prev: GENESIS, checked: 0 }
    }

    /// Verifies a segment that starts right after a trusted `(position, hash)` anchor.
    pub fn resume(after_position: u64, anchor: Hash) -> Self {
        ChainVerifier { expected_position: after_position + 1, prev: anchor, checked: 0 }
    }

    /// Checks the next record against the chain so far.
    pub fn check(&mut self, input: &ChainInput<'_>, stored_prev: &Hash, stored_hash: &Hash) -> Result<(), ChainBreak> {
        if input.position != self.expected_position {
            return Err(ChainBreak::Gap { expected: self.expected_position, found: input.position });
        }
        if stored_prev != &self.prev {
            return Err(ChainBreak::PrevHashMismatch { position: input.position });
        }
        let computed = event_hash(&self.prev, input);
        if &computed != stored_hash {
            return Err(ChainBreak::HashMismatch { position: input.position });
        }
        self.prev = computed;
        self.expected_position += 1;
        self.checked += 1;
        Ok(())
    }

    /// Hash of the last verified record (the chain head so far).
    pub fn head(&self) -> Hash {
        self.prev
    }

    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// The position the next record must have.
    pub fn next_position(&self) -> u64 {
        self.expected_position
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Row {
        id: Uuid,
        payload: String,
        position: u64,
        prev: Hash,
        hash: Hash,
    }

    fn input(r: &Row) -> ChainInput<'_> {
        ChainInput {
            position: r.position,
            event_id: &r.id,
            stream_type: "user",
            stream_id: "u1",
            version: r.position,
            recorded_at_micros: 1_700_000_000_000_000,
            event_type: "user.created",
            schema_version: 1,
            payload: &r.payload,
            metadata: "{}",
        }
    }

    fn chain(n: u64) -> Vec<Row> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|position| {
                let mut r = Row {
                    id: Uuid::from_u128(position as u128),
                    payload: format!("{{\"n\":{position}}}"),
                    position,
                    prev,
                    hash: GENESIS,
                };
                r.hash = event_hash(&prev, &input(&r));
                prev = r.hash;
                r
            })
            .collect()
    }

    fn verify(rows: &[Row]) -> Result<u64, ChainBreak> {
        let mut v = ChainVerifier::new();
        for r in rows {
            v.check(&input(r), &r.prev, &r.hash)?;
        }
        Ok(v.checked())
    }

    #[test]
    fn given_an_untouched_chain_when_verified_then_every_record_checks() {
        assert_eq!(verify(&chain(5)), Ok(5));
    }

    #[test]
    fn given_an_edited_payload_when_verified_then_its_position_is_named() {
        let mut rows = chain(5);
        rows[2].payload = "{\"n\":4}".into();
        assert_eq!(verify(&rows), Err(ChainBreak::HashMismatch { position: 3 }));
    }

    #[test]
    fn given_a_deleted_record_when_verified_then_the_gap_is_named() {
        let mut rows = chain(5);
        rows.remove(1);
        assert_eq!(verify(&rows), Err(ChainBreak::Gap { expected: 2, found: 3 }));
    }

    #[test]
    fn given_a_rehashed_edit_when_verified_then_the_next_link_breaks() {
        // An attacker who edits a record and recomputes its hash still breaks the next link.
        let mut rows = chain(4);
        rows[1].payload = "{\"n\":99}".into();
        rows[1].hash = event_hash(&rows[1].prev, &input(&rows[1]));
        assert_eq!(verify(&rows), Err(ChainBreak::PrevHashMismatch { position: 3 }));
    }

    #[test]
    fn given_swapped_records_when_verified_then_the_first_is_named() {
        let mut rows = chain(4);
        rows.swap(1, 2);
        assert_eq!(verify(&rows).unwrap_err().position(), 2);
    }
}
