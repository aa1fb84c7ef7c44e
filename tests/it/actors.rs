//! Aggregates hosted as actors, against real stores.
use crate::support::{self, pg::TestDb};
use annals::actors::{CommandError, Hosts, HostsConfig};
use annals::clock::{SharedClock, SystemClock};
use annals::domain::realm::{RealmCommand, RealmError};
use annals::domain::user::{User, UserCommand};
use annals::domain::{realm::Realm, Aggregate};
use annals::store::{self, ReadUntil, SharedStore};
use annals_events::realm::RealmSettings;
use annals_events::user::UserProfile;
use annals_events::{Metadata, StreamId, StreamType};
use std::sync::Arc;
use std::time::Duration;

fn clock() -> SharedClock {
    Arc::new(SystemClock)
}

fn hosts(store: &SharedStore, idle: Duration, mailbox: usize) -> Hosts {
    Hosts::new(store.clone(), clock(), HostsConfig { arbiters: 2, idle, mailbox })
}

fn create_user(username: &str) -> UserCommand {
    UserCommand::Create {
        realm_id: "r".into(),
        username: username.into(),
        profile: UserProfile { enabled: true, ..Default::default() },
        created_timestamp: None,
        federation_link: None,
        extra: Default::default(),
    }
}

fn meta() -> Metadata {
    Metadata::system("test")
}

#[actix_rt::test]
async fn commands_are_decided_against_the_current_state() {
    let (store, _dir) = support::sqlite_store().await;
    let h = hosts(&store, Duration::from_secs(60), 64);
    let create =
        || RealmCommand::Create { name: "acme".into(), settings: RealmSettings::default(), extra: Default::default() };
    let done = h.execute::<Realm>("acme", create(), meta()).await.unwrap();
    assert_eq!((done.events, done.version, done.position), (1, 1, 1));
    match h.execute::<Realm>("acme", create(), meta()).await {
        Err(CommandError::Domain(RealmError::AlreadyExists)) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // An unchanged setting records nothing.
    let same = h
        .execute::<Realm>(
            "acme",
            RealmCommand::ChangeSettings { settings: RealmSettings::default(), extra: Default::default() },
            meta(),
        )
        .await
        .unwrap();
    assert_eq!(same.events, 0);
    assert_eq!(store.head().await.unwrap(), 1);
    h.shutdown().await;
}

#[actix_rt::test]
async fn concurrent_commands_on_one_aggregate_are_serialized() {
    let (store, _dir) = support::sqlite_store().await;
    let h = hosts(&store, Duration::from_secs(60), 256);
    h.execute::<User>("u1", create_user("ada"), meta()).await.unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move {
                h.execute::<User>("u1", UserCommand::GrantRole { role_id: format!("r{i}") }, meta()).await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let events = store.read_stream(&StreamId::new(StreamType::User, "u1"), 0, ReadUntil::End).await.unwrap();
    assert_eq!(events.len(), 101);
    h.shutdown().await;
}

#[actix_rt::test]
async fn idle_actors_passivate_and_reactivate_with_their_state() {
    let (store, _dir) = support::sqlite_store().await;
    let h = hosts(&store, Duration::from_millis(100), 64);
    h.execute::<User>("u1", create_user("ada"), meta()).await.unwrap();
    h.execute::<User>("u1", UserCommand::GrantRole { role_id: "x".into() }, meta()).await.unwrap();
    assert_eq!(h.live(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(h.live(), 0, "idle actor passivated");
    // Reactivated from the log: the grant is known (no duplicate event), the version continues.
    let again = h.execute::<User>("u1", UserCommand::GrantRole { role_id: "x".into() }, meta()).await.unwrap();
    assert_eq!((again.events, again.version), (0, 2));
    let next = h.execute::<User>("u1", UserCommand::GrantRole { role_id: "y".into() }, meta()).await.unwrap();
    assert_eq!(next.version, 3);
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_full_mailbox_answers_busy_instead_of_growing() {
    let (store, _dir) = support::sqlite_store().await;
    let h = hosts(&store, Duration::from_secs(60), 1);
    h.execute::<User>("u1", create_user("ada"), meta()).await.unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move {
                h.execute::<User>("u1", UserCommand::GrantRole { role_id: format!("r{i}") }, meta()).await
            })
        })
        .collect();
    let mut busy = 0;
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(CommandError::Busy) => busy += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(busy > 0, "some commands must be refused as busy");
    let events = store.read_stream(&StreamId::new(StreamType::User, "u1"), 0, ReadUntil::End).await.unwrap();
    assert_eq!(events.len(), 1 + ok, "every accepted command was applied once, no refused one");
    h.shutdown().await;
}

#[actix_rt::test]
async fn long_streams_are_snapshotted_and_load_the_same_state() {
    let (store, _dir) = support::sqlite_store().await;
    let h = hosts(&store, Duration::from_secs(60), 64);
    h.execute::<User>("u1", create_user("ada"), meta()).await.unwrap();
    for i in 0..150 {
        h.execute::<User>("u1", UserCommand::GrantRole { role_id: format!("r{i}") }, meta()).await.unwrap();
    }
    h.shutdown().await;
    let stream = StreamId::new(StreamType::User, "u1");
    let mut snap = None;
    for _ in 0..50 {
        snap = store.load_snapshot(&stream).await.unwrap();
        if snap.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let snap = snap.expect("a snapshot was taken");
    assert!(snap.version >= 100);
    let doc: serde_json::Value = serde_json::from_str(&snap.state).unwrap();
    assert!(doc["shape"].as_str().unwrap().contains("User@"), "snapshots name the state type and build");
    let from_snapshot: User = serde_json::from_value(doc["state"].clone()).unwrap();
    let tail = store.read_stream(&stream, snap.version, ReadUntil::End).await.unwrap();
    let all = store.read_stream(&stream, 0, ReadUntil::End).await.unwrap();
    let typed = |evs: &[annals_events::RecordedEvent]| -> Vec<<User as Aggregate>::Event> {
        evs.iter().map(|e| e.decode().unwrap().try_into().unwrap()).collect()
    };
    let resumed = annals::domain::fold(from_snapshot, &typed(&tail));
    let full = annals::domain::fold(User::default(), &typed(&all));
    assert_eq!(resumed, full);
    assert_eq!(full.roles.len(), 150);
}

/// Two nodes on one PostgreSQL database send commands to the same aggregate. Each node's
/// actor holds a stale version whenever the other node wrote; the conflict is retried and no
/// update is lost.
#[actix_rt::test]
async fn two_nodes_on_one_database_lose_no_update() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let a = store::open(&db.url).await.unwrap();
    let b = store::open(&db.url).await.unwrap();
    let (ha, hb) = (hosts(&a, Duration::from_secs(60), 256), hosts(&b, Duration::from_secs(60), 256));
    ha.execute::<User>("u1", create_user("ada"), meta()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let h = if i % 2 == 0 { ha.clone() } else { hb.clone() };
        tasks.push(tokio::spawn(async move {
            // A conflict retried twice in a row is reported; the caller retries, as an HTTP client would.
            loop {
                match h.execute::<User>("u1", UserCommand::GrantRole { role_id: format!("r{i}") }, meta()).await {
                    Ok(_) => return,
                    Err(CommandError::Conflict) => tokio::time::sleep(Duration::from_millis(5)).await,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let events = a.read_stream(&StreamId::new(StreamType::User, "u1"), 0, ReadUntil::End).await.unwrap();
    let state = annals::domain::fold(
        User::default(),
        &events.iter().map(|e| e.decode().unwrap().try_into().unwrap()).collect::<Vec<_>>(),
    );
    assert_eq!(state.roles.len(), 60, "every grant from both nodes is present");
    assert_eq!(events.len(), 61, "and each exactly once");
    ha.shutdown().await;
    hb.shutdown().await;
}
