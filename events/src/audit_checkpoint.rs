//! Signed checkpoints: at an interval the server appends one event that commits to the log
//! so far (the chain head and the Merkle root of every chain hash since the previous
//! checkpoint), signed with the audit key. Sinks deliver it like any record, so a SIEM holds
//! anchors the server cannot rewrite later.
use crate::chain::Hash;
use crate::jws::{self, JwsError, PublicJwk};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// All checkpoints are one stream (`audit_checkpoint/log`): its version orders them, and two
/// nodes racing to write the same checkpoint conflict instead of both writing it.
pub const STREAM_ID: &str = "log";
/// The JWS `typ` of a checkpoint.
pub const JWS_TYPE: &str = "annals-checkpoint+jwt";

/// The log up to `to_position` was as this says when the server signed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuditCheckpointSigned {
    /// The previous checkpoint's `to_position` (0 for the first): this one covers the
    /// positions after it.
    pub after_position: u64,
    /// The last position covered.
    pub to_position: u64,
    /// The chain hash at `to_position` (hex).
    pub head_hash: String,
    /// The Merkle root (RFC 9162) over the chain hashes of positions `after_position + 1`
    /// to `to_position`, in order (hex).
    pub merkle_root: String,
    /// The audit key that signed, as a public JWK.
    pub key: PublicJwk,
    /// Seconds since the epoch.
    pub signed_at: i64,
    /// Compact JWS (EdDSA) over the same facts, for any JOSE library to check.
    pub jws: String,
}

impl AuditCheckpointSigned {
    /// The claims the JWS carries.
    fn claims(
        after_position: u64,
        to_position: u64,
        head_hash: &str,
        merkle_root: &str,
        signed_at: i64,
    ) -> serde_json::Value {
        json!({
            "iat": signed_at,
            "after_position": after_position,
            "to_position": to_position,
            "head_hash": head_hash,
            "merkle_root": merkle_root,
        })
    }

    /// A checkpoint of positions `after + 1 ..= to`, whose chain hash at `to` is `head` and
    /// whose Merkle root is `root`, signed with `key`: the one way checkpoints are made.
    pub fn sign(key: &SigningKey, after: u64, to: u64, head: &Hash, root: &Hash, signed_at: i64) -> Self {
        let (head_hash, merkle_root) = (hex::encode(head), hex::encode(root));
        let claims = Self::claims(after, to, &head_hash, &merkle_root, signed_at);
        AuditCheckpointSigned {
            after_position: after,
            to_position: to,
            jws: jws::sign(key, JWS_TYPE, &claims),
            head_hash,
            merkle_root,
            key: PublicJwk::of(&key.verifying_key()),
            signed_at,
        }
    }

    /// Whether the JWS verifies under the event's key and says what the event's fields say.
    /// The key itself must still be compared with the one the server publishes.
    pub fn verify(&self) -> Result<(), JwsError> {
        let claims = jws::verify(&self.jws, JWS_TYPE, &self.key)?;
        let expected =
            Self::claims(self.after_position, self.to_position, &self.head_hash, &self.merkle_root, self.signed_at);
        if claims != expected {
            return Err(JwsError::Header("the signed claims differ from the checkpoint's fields".into()));
        }
        Ok(())
    }
}

event_enum! {
    /// Events of the audit checkpoint stream (stream type `audit_checkpoint`).
    AuditCheckpointEvent {
        Signed(AuditCheckpointSigned) = "audit_checkpoint.signed",
    }
}
