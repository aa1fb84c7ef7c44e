//! Criterion benches of the in-process costs under the log: hashing, canonical encoding,
//! decoding and folding into the read models. Each group has a baseline in the same run.
use annals_events::chain::{event_hash, GENESIS};
use annals_events::user::{UserCreated, UserEvent, UserProfile};
use annals_events::{DomainEvent, Metadata, NewEvent, RecordedEvent, StreamId, StreamType};
use annals_projections::Directory;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

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
                recorded_at: chrono::Utc::now(),
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
    g.bench_function("verify_10k", |b| {
        b.iter(|| {
            let mut v = annals_events::chain::ChainVerifier::new();
            for e in &events {
                v.check(&e.chain_input(), &e.prev_hash, &e.hash).expect("chain");
            }
            black_box(v.head())
        })
    });
    g.finish();

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

criterion_group!(core, benches);
criterion_main!(core);
