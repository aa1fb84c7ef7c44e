//! Criterion benches of the in-process costs under the log: hashing, canonical encoding,
//! decoding and folding into the read models. Each group has a baseline in the same run.
use annals_events::chain::{event_hash, GENESIS};
use annals_events::user::{UserCreated, UserEvent, UserProfile};
use annals_events::{DomainEvent, Metadata, NewEvent, RecordedEvent, StreamId, StreamType};
use annals_projections::Directory;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sha2::Digest;

/// Now, to the microsecond: what the store keeps and the chain covers.
fn now_micros() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros(chrono::Utc::now().timestamp_micros()).expect("in range")
}

fn recorded(n: usize) -> Vec<RecordedEvent> {
    let meta = Metadata::system("bench").with_realm("load");
    let mut prev = GENESIS;
    (0..n)
        .map(|i| {
            let e: DomainEvent = UserEvent::from(UserCreated {
                realm_id: "load".into(),
                username: format!("user{i:07}"),
                profile: UserProfile {
                    email: Some(format!("user{i:07}@example.org")),
                    enabled: true,
                    ..Default::default()
                },
                created_timestamp: None,
                federation_link: None,
                extra: Default::default(),
            })
            .into();
            let new = NewEvent::new(&e, &meta).expect("encodes");
            let mut r = RecordedEvent {
                event_id: new.event_id,
                stream: StreamId::new(StreamType::User, format!("u{i}")),
                version: 1,
                position: i as u64 + 1,
                recorded_at: now_micros(),
                event_type: new.event_type,
                schema_version: new.schema_version,
                payload: new.payload,
                metadata: new.metadata,
                prev_hash: prev,
                hash: GENESIS,
            };
            r.hash = event_hash(&prev, &r.chain_input());
            prev = r.hash;
            r
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let events = recorded(10_000);
    let mut g = c.benchmark_group("read_models");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("baseline_decode_only", |b| {
        b.iter(|| {
            for e in &events {
                black_box(e.decode().expect("decodes"));
            }
        })
    });
    g.bench_function("decode_and_fold_directory", |b| {
        b.iter(|| {
            let mut d = Directory::default();
            for e in &events {
                d.fold(e).expect("folds");
            }
            black_box(d.position)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("chain");
    g.throughput(Throughput::Elements(events.len() as u64));
    // The ceiling: one SHA-256 over the same bytes per event, without the chain's framing
    // or its checks.
    g.bench_function("baseline_sha256_same_bytes", |b| {
        b.iter(|| {
            for e in &events {
                let mut h = sha2::Sha256::new();
                h.update(e.payload.as_bytes());
                h.update(e.metadata.as_bytes());
                h.update(e.event_type.as_bytes());
                h.update(e.stream.id.as_bytes());
                black_box(h.finalize());
            }
        })
    });
    g.bench_function("verify_10k", |b| {
        b.iter(|| {
            let mut v = annals_events::chain::ChainVerifier::new();
            for e in &events {
                v.check(&e.chain_input(), &e.prev_hash, &e.hash).expect("chain");
            }
            black_box(v.head())
        })
    });
    // What a checkpoint adds per covered event: one Merkle leaf (and its share of the nodes).
    g.bench_function("merkle_root_10k", |b| {
        b.iter(|| {
            let mut root = annals_events::merkle::RootBuilder::new();
            events.iter().for_each(|e| root.push(&e.hash));
            black_box(root.root())
        })
    });
    g.finish();

    evidence(c, &events);

    let sample = DomainEvent::decode(&events[0].event_type, 1, serde_json::from_str(&events[0].payload).expect("json"))
        .expect("decodes");
    let meta = Metadata::system("bench");
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline_serde_json_to_string", |b| {
        b.iter(|| black_box(serde_json::to_string(&sample.payload().expect("payload"))))
    });
    g.bench_function("new_event_canonical", |b| b.iter(|| black_box(NewEvent::new(&sample, &meta).expect("encodes"))));
    g.finish();
}

/// Offline verification of an evidence bundle of 1,000 records (every tenth event) covered
/// by one checkpoint over all 10,000: recompute each record's hash, check its Merkle proof,
/// the manifest's and the checkpoint's signatures, and the exact bytes.
fn evidence(c: &mut Criterion, events: &[RecordedEvent]) {
    use annals_events::audit_checkpoint::{AuditCheckpointEvent, AuditCheckpointSigned};
    use annals_events::evidence::{assemble, verify, Covering, Subject};
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let hashes: Vec<_> = events.iter().map(|e| e.hash).collect();
    let tree = annals_events::merkle::Tree::new(&hashes);
    let last = events.last().expect("events");
    let checkpoint = AuditCheckpointSigned::sign(&key, 0, last.position, &last.hash, &tree.root(), 0);
    let new = NewEvent::new(&AuditCheckpointEvent::Signed(checkpoint.clone()).into(), &Metadata::system("bench"))
        .expect("encodes");
    let mut event = RecordedEvent {
        event_id: new.event_id,
        stream: StreamId::new(StreamType::AuditCheckpoint, "log"),
        version: 1,
        position: last.position + 1,
        recorded_at: now_micros(),
        event_type: new.event_type,
        schema_version: new.schema_version,
        payload: new.payload,
        metadata: new.metadata,
        prev_hash: last.hash,
        hash: GENESIS,
    };
    event.hash = event_hash(&last.hash, &event.chain_input());
    let covering = [Covering { event, checkpoint, tree }];
    let records: Vec<RecordedEvent> = events.iter().step_by(10).cloned().collect();
    let now = chrono::Utc::now();
    let hour = chrono::Duration::hours(1);
    let subject = Subject {
        realm: "load".into(),
        username: "u".into(),
        user_id: "u".into(),
        client: None,
        from: now - hour,
        to: now + hour,
    };
    let bundle = assemble(subject, &records, &covering, &key, now).expect("assembles");
    let mut g = c.benchmark_group("evidence");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("baseline_parse_bundle_json", |b| {
        b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(&bundle).expect("json")))
    });
    g.bench_function("verify_bundle_1k_records", |b| b.iter(|| black_box(verify(&bundle, None).expect("verifies"))));
    g.finish();
}

criterion_group!(core, benches);
criterion_main!(core);
