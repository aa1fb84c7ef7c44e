//! Bundles made from a small chain with two checkpoints, then tampered with.
use super::*;
use crate::audit_checkpoint::{AuditCheckpointEvent, AuditCheckpointSigned, STREAM_ID};
use crate::chain::GENESIS;
use crate::stream::{StreamId, StreamType};
use chrono::TimeZone;
use serde_json::json;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

struct Log {
    events: Vec<RecordedEvent>,
    covering: Vec<Covering>,
}

impl Log {
    fn push(&mut self, stream: StreamId, event_type: &str, payload: String) -> RecordedEvent {
        let position = self.events.len() as u64 + 1;
        let prev_hash = self.events.last().map_or(GENESIS, |e| e.hash);
        let mut e = RecordedEvent {
            event_id: uuid::Uuid::from_u128(position as u128),
            stream,
            version: position,
            position,
            recorded_at: Utc.timestamp_micros(1_790_000_000_000_000 + position as i64 * 1_000_123).unwrap(),
            event_type: event_type.into(),
            schema_version: 1,
            payload,
            metadata: r#"{"source_ip":"10.0.0.9"}"#.into(),
            prev_hash,
            hash: GENESIS,
        };
        e.hash = event_hash(&prev_hash, &e.chain_input());
        self.events.push(e.clone());
        e
    }

    fn user_event(&mut self, user: &str, n: u64) {
        let payload = format!(r#"{{"ip":"192.0.2.{n}","user":"{user}"}}"#);
        self.push(StreamId::new(StreamType::User, user), "user.profile_changed", payload);
    }

    fn checkpoint(&mut self) {
        let after = self.covering.last().map_or(0, |c| c.checkpoint.to_position);
        let to = self.events.len() as u64;
        let hashes: Vec<Hash> = self.events[after as usize..].iter().map(|e| e.hash).collect();
        let tree = merkle::Tree::new(&hashes);
        let head = hashes[hashes.len() - 1];
        let checkpoint = AuditCheckpointSigned::sign(&key(), after, to, &head, &tree.root(), 1_790_000_100);
        let payload = DomainEvent::from(AuditCheckpointEvent::Signed(checkpoint.clone())).payload().unwrap();
        let event = self.push(
            StreamId::new(StreamType::AuditCheckpoint, STREAM_ID),
            "audit_checkpoint.signed",
            crate::canonical::to_canonical_string(&payload),
        );
        self.covering.push(Covering { event, checkpoint, tree });
    }
}

/// Twelve events of two users, a checkpoint, five more, another checkpoint.
fn log() -> Log {
    let mut log = Log { events: vec![], covering: vec![] };
    for n in 1..=12 {
        log.user_event(if n % 3 == 0 { "bob" } else { "alice" }, n);
    }
    log.checkpoint();
    for n in 14..=18 {
        log.user_event(if n % 2 == 0 { "alice" } else { "bob" }, n);
    }
    log.checkpoint();
    log
}

fn subject() -> Subject {
    Subject {
        realm: "acme".into(),
        username: "alice".into(),
        user_id: "alice".into(),
        client: None,
        from: Utc.timestamp_opt(1_789_000_000, 0).unwrap(),
        to: Utc.timestamp_opt(1_791_000_000, 0).unwrap(),
    }
}

fn bundle_of(log: &Log, user: &str) -> Vec<u8> {
    let records: Vec<RecordedEvent> = log.events.iter().filter(|e| e.stream.id == user).cloned().collect();
    assemble(subject(), &records, &log.covering, &key(), Utc.timestamp_opt(1_790_000_200, 0).unwrap()).unwrap()
}

fn alice() -> (Log, Vec<u8>) {
    let log = log();
    let bundle = bundle_of(&log, "alice");
    (log, bundle)
}

fn edit(bytes: &[u8], f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn given_an_exported_bundle_when_verified_then_it_names_its_subject_records_and_keys() {
    let (_, bundle) = alice();
    let v = verify(&bundle, None).unwrap();
    assert_eq!(v.subject, subject());
    assert_eq!(v.records, 11, "8 of alice's events before the first checkpoint, 3 after");
    assert_eq!(v.checkpoints, 2);
    assert_eq!(v.covered_to, 18);
    assert_eq!(v.key_id, PublicJwk::of(&key().verifying_key()).kid);
    assert!(!v.key_trusted, "no key was given to trust");
}

#[test]
fn given_the_servers_published_key_when_verified_then_only_that_key_is_accepted() {
    let (_, bundle) = alice();
    let published = PublicJwk::of(&key().verifying_key());
    assert!(verify(&bundle, Some(std::slice::from_ref(&published))).unwrap().key_trusted);
    let other = PublicJwk::of(&SigningKey::from_bytes(&[1; 32]).verifying_key());
    let problems = verify(&bundle, Some(&[other])).unwrap_err();
    assert!(matches!(&problems[0], Problem::Key { reason, .. } if reason.contains("trusted")), "{problems:?}");
}

#[test]
fn given_one_byte_of_a_record_changed_when_verified_then_that_record_is_named() {
    let (_, bundle) = alice();
    let text = String::from_utf8(bundle).unwrap();
    assert_eq!(text.matches("192.0.2.7\"").count(), 1);
    let tampered = text.replace("192.0.2.7\"", "192.0.2.8\"");
    let problems = verify(tampered.as_bytes(), None).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(matches!(&problems[0], Problem::RecordAltered { position: 7, .. }), "{problems:?}");
    assert!(problems[0].to_string().starts_with("record at position 7:"));
}

#[test]
fn given_an_edit_with_the_hash_recomputed_when_verified_then_the_manifest_catches_it() {
    let (log, bundle) = alice();
    let tampered = edit(&bundle, |v| {
        let r = &mut v["records"][1]["record"];
        r["payload"]["ip"] = json!("203.0.113.1");
        let mut e: RecordedEvent = serde_json::from_value::<RecordJson>(r.clone()).unwrap().try_into().unwrap();
        e.hash = event_hash(&e.prev_hash, &e.chain_input());
        r["hash"] = json!(hex::encode(e.hash));
    });
    let position = log.events.iter().filter(|e| e.stream.id == "alice").nth(1).unwrap().position;
    let problems = verify(&tampered, None).unwrap_err();
    assert!(
        matches!(&problems[..], [Problem::RecordAltered { position: p, reason }] if *p == position && reason.contains("manifest")),
        "{problems:?}"
    );
}

#[test]
fn given_a_record_removed_when_verified_then_its_position_is_named_missing() {
    let (_, bundle) = alice();
    let tampered = edit(&bundle, |v| {
        v["records"].as_array_mut().unwrap().remove(3);
    });
    let problems = verify(&tampered, None).unwrap_err();
    assert_eq!(problems, vec![Problem::RecordMissing { position: 5 }]);
}

#[test]
fn given_two_records_swapped_when_verified_then_the_reordering_is_named() {
    let (_, bundle) = alice();
    let tampered = edit(&bundle, |v| {
        v["records"].as_array_mut().unwrap().swap(2, 3);
    });
    let problems = verify(&tampered, None).unwrap_err();
    assert_eq!(problems, vec![Problem::RecordOutOfOrder { position: 4, after: 5 }]);
}

#[test]
fn given_another_users_record_added_when_verified_then_it_is_named_unlisted() {
    let (log, bundle) = alice();
    let bob = log.events.iter().find(|e| e.stream.id == "bob").unwrap();
    let tampered = edit(&bundle, |v| {
        let entry = serde_json::to_value(Entry { record: bob.to_json(), proof: vec![] }).unwrap();
        v["records"].as_array_mut().unwrap().insert(2, entry);
    });
    let problems = verify(&tampered, None).unwrap_err();
    assert!(problems.contains(&Problem::RecordUnlisted { position: bob.position }), "{problems:?}");
}

#[test]
fn given_a_bundle_from_a_rewritten_log_when_assembled_then_it_is_refused() {
    let mut log = log();
    // Rewrite an early event and re-chain everything after it, as an attacker with the
    // database would: the signed root no longer matches.
    log.events[1].payload = r#"{"ip":"203.0.113.1","user":"alice"}"#.into();
    let mut prev = log.events[0].hash;
    for e in &mut log.events[1..] {
        e.prev_hash = prev;
        e.hash = event_hash(&prev, &e.chain_input());
        prev = e.hash;
    }
    let hashes: Vec<Hash> = log.events[..12].iter().map(|e| e.hash).collect();
    log.covering[0].tree = merkle::Tree::new(&hashes);
    let records: Vec<RecordedEvent> = log.events.iter().filter(|e| e.stream.id == "alice").cloned().collect();
    let err = assemble(subject(), &records, &log.covering, &key(), Utc::now()).unwrap_err();
    assert!(err.0.contains("changed after it was signed"), "{err}");
}

#[test]
fn given_a_forged_checkpoint_when_verified_then_the_checkpoint_is_named() {
    let (log, bundle) = alice();
    let at = log.covering[0].event.position;
    let tampered = edit(&bundle, |v| {
        v["checkpoints"][0]["payload"]["merkle_root"] = json!("00".repeat(32));
    });
    let problems = verify(&tampered, None).unwrap_err();
    assert!(
        problems.iter().any(|p| matches!(p, Problem::CheckpointAltered { position, .. } if *position == at)),
        "{problems:?}"
    );
}

#[test]
fn given_any_single_byte_changed_when_verified_then_the_bundle_fails() {
    let (_, bundle) = alice();
    for i in 0..bundle.len() {
        // Another value, and the same letter in the other case (hex and ids parse either).
        let flips = if bundle[i].is_ascii_alphabetic() { vec![1, 0x20] } else { vec![1] };
        for flip in flips {
            let mut tampered = bundle.clone();
            tampered[i] ^= flip;
            assert!(verify(&tampered, None).is_err(), "byte {i} ({:?}) ^ {flip:#x} still verified", bundle[i] as char);
        }
    }
}

#[test]
fn given_a_second_copy_of_a_checkpoint_when_verified_then_it_is_named() {
    let (log, bundle) = alice();
    let at = log.covering[0].event.position;
    let tampered = edit(&bundle, |v| {
        let mut forged = v["checkpoints"][0].clone();
        forged["payload"]["merkle_root"] = json!("00".repeat(32));
        v["checkpoints"].as_array_mut().unwrap().push(forged);
    });
    let problems = verify(&tampered, None).unwrap_err();
    assert!(
        problems.contains(&Problem::CheckpointAltered { position: at, reason: "appears twice".into() }),
        "{problems:?}"
    );
}

#[test]
fn given_a_manifest_re_signed_with_another_key_when_verified_then_the_key_is_refused() {
    // Remove a record, re-sign the manifest with a key of one's own and list that key too:
    // the checkpoints are still the server's, the manifest is not.
    let (_, bundle) = alice();
    let own = SigningKey::from_bytes(&[5; 32]);
    let tampered = edit(&bundle, |v| {
        v["records"].as_array_mut().unwrap().remove(0);
        let claims =
            jws::verify(v["manifest"].as_str().unwrap(), MANIFEST_TYPE, &PublicJwk::of(&key().verifying_key()));
        let mut claims = claims.unwrap();
        claims["records"].as_array_mut().unwrap().remove(0);
        v["manifest"] = json!(jws::sign(&own, MANIFEST_TYPE, &claims));
        v["audit_keys"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::to_value(PublicJwk::of(&own.verifying_key())).unwrap());
    });
    let problems = verify(&tampered, None).unwrap_err();
    assert!(
        problems.iter().any(|p| matches!(p, Problem::Key { reason, .. } if reason.contains("none of its checkpoints"))),
        "{problems:?}"
    );
    // And with the server's key trusted, the stranger's key is refused outright.
    let published = PublicJwk::of(&key().verifying_key());
    let problems = verify(&tampered, Some(&[published])).unwrap_err();
    assert!(
        problems.iter().any(|p| matches!(p, Problem::Key { reason, .. } if reason.contains("trusted"))),
        "{problems:?}"
    );
}

#[test]
fn given_digits_below_the_microsecond_added_to_a_time_when_verified_then_the_record_is_named() {
    // The chain covers microseconds; nanoseconds would be text no hash covers.
    let (_, bundle) = alice();
    let tampered = edit(&bundle, |v| {
        let t = v["records"][0]["record"]["recorded_at"].as_str().unwrap().trim_end_matches('Z').to_string();
        let t = if t.contains('.') { format!("{t}999Z") } else { format!("{t}.000000999Z") };
        v["records"][0]["record"]["recorded_at"] = json!(t);
    });
    let problems = verify(&tampered, None).unwrap_err();
    assert!(
        problems.iter().any(|p| matches!(p, Problem::RecordAltered { reason, .. } if reason.contains("microseconds"))),
        "{problems:?}"
    );
}
