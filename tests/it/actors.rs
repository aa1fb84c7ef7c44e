//! Aggregates hosted as actors, against real stores.
use crate::support::{self, holding::HoldingStore, pg::TestDb};
use annals::actors::{CommandError, HeldDecision, Hold, Hosts, HostsConfig, Settle};
use annals::clock::{SharedClock, SystemClock};
use annals::domain::login_failures::{LoginFailures, LoginFailuresCommand};
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

/// A stream this node has just created (outside any actor) is remembered: the actor its
/// next command activates starts from that state instead of reading the stream back, once.
#[actix_rt::test]
async fn a_remembered_stream_starts_its_actor_from_the_remembered_state_once() {
    let (store, _dir) = support::sqlite_store().await;
    let h = hosts(&store, Duration::from_millis(100), 64);
    let named = RealmSettings { display_name: Some("Acme".into()), ..RealmSettings::default() };
    let rename = || RealmCommand::ChangeSettings { settings: named.clone(), extra: Default::default() };
    let create =
        RealmCommand::Create { name: "acme".into(), settings: RealmSettings::default(), extra: Default::default() };
    let (append, created) =
        annals::provision::create_seeded::<Realm>("acme", vec![create], chrono::Utc::now(), &meta()).unwrap();
    let done = store.append(append).await.unwrap();
    // Given the store holds the realm unnamed, and the node remembers it named (a state only
    // the seed has, to tell where the actor's state came from).
    h.remember::<Realm>("acme", Realm { settings: named.clone(), ..created.clone() }, done.last_version);
    // When it is named, the actor decides against the remembered state: nothing to change.
    let first = h.execute::<Realm>("acme", rename(), meta()).await.unwrap();
    assert_eq!((first.events, first.version), (0, 1));
    // A state remembered while the actor is live is ignored, and no seed outlives the actor:
    // activated again, it reads the stream, unnamed, and names it.
    h.remember::<Realm>("acme", Realm { settings: named.clone(), ..created }, done.last_version);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(h.live(), 0, "idle actor passivated");
    let again = h.execute::<Realm>("acme", rename(), meta()).await.unwrap();
    assert_eq!((again.events, again.version), (1, 2));
    h.shutdown().await;
}

/// A remembered state that another node has moved on from loses no update: the seeded
/// actor's append expects the remembered version, conflicts, catches up and decides again.
#[actix_rt::test]
async fn a_stale_remembered_state_loses_no_update() {
    let (store, _dir) = support::sqlite_store().await;
    let (a, b) = (hosts(&store, Duration::from_secs(60), 64), hosts(&store, Duration::from_secs(60), 64));
    let (append, created) =
        annals::provision::create_seeded::<User>("u1", vec![create_user("ada")], chrono::Utc::now(), &meta()).unwrap();
    let done = store.append(append).await.unwrap();
    a.remember::<User>("u1", created, done.last_version);
    // Given another node granted a role after the state was remembered,
    b.execute::<User>("u1", UserCommand::GrantRole { role_id: "r1".into() }, meta()).await.unwrap();
    // when this node grants another and grants the first again,
    let granted = a.execute_full::<User>("u1", UserCommand::GrantRole { role_id: "r2".into() }, meta()).await.unwrap();
    let again = a.execute::<User>("u1", UserCommand::GrantRole { role_id: "r1".into() }, meta()).await.unwrap();
    // then both grants stand, each once, in order.
    assert_eq!(granted.executed.version, 3);
    assert!(granted.state.roles.contains("r1") && granted.state.roles.contains("r2"));
    assert_eq!((again.events, again.version), (0, 3));
    assert_eq!(store.read_stream(&StreamId::new(StreamType::User, "u1"), 0, ReadUntil::End).await.unwrap().len(), 3);
    a.shutdown().await;
    b.shutdown().await;
}

/// Prepares from a role grant on `u1` through `h`, whose store holds the grant's append
/// (committed, or refused as a conflict) until the preparation has run: so it always runs while
/// the command is under way, however the threads are scheduled. Returns what the command did
/// and what was kept of the preparation (the version and roles it saw).
async fn prepare_during_a_held_append(
    h: &Hosts,
    holding: &HoldingStore,
    role: &str,
) -> (annals::actors::Outcome<User>, Option<(u64, std::collections::BTreeSet<String>)>) {
    holding.hold_next();
    let prepared = Arc::new(tokio::sync::Notify::new());
    let (h2, seen, role) = (h.clone(), prepared.clone(), role.to_string());
    let command = actix_rt::spawn(async move {
        let prepare = |d: &annals::actors::Decided<User>| {
            seen.notify_one();
            (d.version, d.state.roles.clone())
        };
        h2.execute_prepared::<User, _>("u1", UserCommand::GrantRole { role_id: role }, meta(), prepare).await
    });
    let within = |what| async move { tokio::time::timeout(Duration::from_secs(10), what).await };
    within(holding.appended.notified()).await.expect("the grant reached the store");
    within(prepared.notified()).await.expect("the preparation ran while the grant's append was held");
    holding.release.notify_one();
    command.await.unwrap().unwrap()
}

#[actix_rt::test]
async fn what_a_command_decided_is_prepared_while_it_commits_and_kept_once_it_has() {
    let (inner, _dir) = support::sqlite_store().await;
    let holding = HoldingStore::new(inner);
    let store: SharedStore = holding.clone();
    let h = hosts(&store, Duration::from_secs(60), 64);
    h.execute::<User>("u1", create_user("ada"), meta()).await.unwrap();
    // Given a live user, when a role grant is prepared from its decision while it commits,
    let (outcome, prepared) = prepare_during_a_held_append(&h, &holding, "r1").await;
    // then what was prepared is kept: the committed decision's version and state.
    assert!(!outcome.redecided);
    let (version, roles) = prepared.expect("prepared from the committed decision");
    assert_eq!((version, &roles), (outcome.executed.version, &outcome.state.roles));
    assert_eq!((version, roles.len()), (2, 1));
    h.shutdown().await;
}

#[actix_rt::test]
async fn nothing_prepared_is_kept_for_a_refused_command_or_one_that_changed_nothing() {
    let (store, _dir) = support::sqlite_store().await;
    let h = hosts(&store, Duration::from_secs(60), 64);
    h.execute::<User>("u1", create_user("ada"), meta()).await.unwrap();
    h.execute::<User>("u1", UserCommand::GrantRole { role_id: "r1".into() }, meta()).await.unwrap();
    let called = std::sync::atomic::AtomicUsize::new(0);
    let prepare = |_: &annals::actors::Decided<User>| called.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    // Given a user, when creating it again is prepared, then it is refused and nothing was prepared;
    let refused = h.execute_prepared::<User, _>("u1", create_user("ada"), meta(), prepare).await;
    assert!(matches!(refused, Err(CommandError::Domain(_))), "{refused:?}");
    // when a role it holds is granted again, nothing is recorded and nothing prepared.
    let prepare = |_: &annals::actors::Decided<User>| called.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let again = h.execute_prepared::<User, _>("u1", UserCommand::GrantRole { role_id: "r1".into() }, meta(), prepare);
    let (outcome, prepared) = again.await.unwrap();
    assert_eq!((outcome.executed.events, prepared), (0, None));
    assert_eq!(called.load(std::sync::atomic::Ordering::SeqCst), 0);
    h.shutdown().await;
}

#[actix_rt::test]
async fn what_was_prepared_from_a_decision_that_lost_a_conflict_is_not_kept() {
    let (inner, _dir) = support::sqlite_store().await;
    let holding = HoldingStore::new(inner.clone());
    let store: SharedStore = holding.clone();
    let (a, b) = (hosts(&store, Duration::from_secs(60), 64), hosts(&inner, Duration::from_secs(60), 64));
    a.execute::<User>("u1", create_user("ada"), meta()).await.unwrap();
    // Given another node granted a role after this node's actor last saw the user,
    b.execute::<User>("u1", UserCommand::GrantRole { role_id: "r1".into() }, meta()).await.unwrap();
    // when this node prepares from its grant of another (its append refused as a conflict,
    // held until the preparation ran),
    let (outcome, prepared) = prepare_during_a_held_append(&a, &holding, "r2").await;
    // then the stale decision's preparation (version 2, without r1) is dropped: the command was
    // decided again on the caught-up state, which holds both grants.
    assert!(outcome.redecided);
    assert_eq!(prepared, None);
    assert_eq!(outcome.executed.version, 3);
    assert!(outcome.state.roles.contains("r1") && outcome.state.roles.contains("r2"));
    a.shutdown().await;
    b.shutdown().await;
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

/// A caller that stops waiting mid-command (its client went away and the request was dropped)
/// leaves nothing counted as in flight: shutdown does not wait out its deadline for it.
#[actix_rt::test]
async fn a_caller_dropped_mid_command_does_not_hold_up_shutdown() {
    let (inner, _dir) = support::sqlite_store().await;
    let holding = HoldingStore::new(inner);
    let store: SharedStore = holding.clone();
    let h = hosts(&store, Duration::from_secs(60), 64);
    h.execute::<User>("u1", create_user("ada"), meta()).await.unwrap();
    // Given a command whose append is held, and its caller dropped meanwhile.
    holding.hold_next();
    let command = h.execute::<User>("u1", UserCommand::GrantRole { role_id: "r1".into() }, meta());
    tokio::select! {
        _ = command => panic!("answered while its append was held"),
        _ = holding.appended.notified() => {}
    }
    holding.release.notify_one();
    // When the node shuts down, then it does not wait for the dropped caller (the deadline is 30 s).
    tokio::time::timeout(Duration::from_secs(10), h.shutdown()).await.expect("shutdown waits for no dropped caller");
    // And the command itself ran to the end: its event is in the log.
    let events = store.read_stream(&StreamId::new(StreamType::User, "u1"), 0, ReadUntil::End).await.unwrap();
    assert_eq!(events.len(), 2, "created, then the role granted");
}

/// Actors activated on an HTTP worker live on that worker's thread. When that thread stops
/// while a command is between its append and its reply, the caller learns the outcome is
/// unknown; it must not run the command a second time on a new actor.
#[actix_rt::test]
async fn a_command_cut_off_after_its_append_is_not_run_again() {
    let (inner, _dir) = support::sqlite_store().await;
    let holding = HoldingStore::new(inner);
    let store: SharedStore = holding.clone();
    let h = hosts(&store, Duration::from_secs(60), 64);
    // Given the user's actor activated on a thread of its own (as on an HTTP worker).
    let worker = actix_rt::Arbiter::new();
    let (activated, started) = tokio::sync::oneshot::channel();
    let on_worker = h.clone();
    worker.spawn(async move {
        annals::actors::host_on_this_thread();
        let created = on_worker.execute::<User>("u1", create_user("ada"), meta()).await;
        let _ = activated.send(created.map(|e| e.version));
    });
    assert_eq!(started.await.unwrap().unwrap(), 1);
    // When a command has appended and that thread stops before the reply.
    holding.hold_next();
    let password = UserCommand::SetPassword {
        hash: annals_events::user::PasswordHash::Phc { phc: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into() },
        temporary: false,
    };
    let caller = h.clone();
    let pending = tokio::spawn(async move { caller.execute::<User>("u1", password, meta()).await });
    holding.appended.notified().await;
    worker.stop();
    let outcome = tokio::time::timeout(Duration::from_secs(10), pending).await.expect("answered").unwrap();
    holding.release.notify_waiters();
    // Then the caller hears the host is unavailable, and the password was set once.
    assert!(matches!(outcome, Err(CommandError::Unavailable)), "{outcome:?}");
    let events = store.read_stream(&StreamId::new(StreamType::User, "u1"), 0, ReadUntil::End).await.unwrap();
    assert_eq!(events.len(), 2, "created, then the password set once");
    h.shutdown().await;
}

/// Appends that come along with a command commit in its transaction, or not at all.
#[actix_rt::test]
async fn appends_along_with_a_command_commit_with_it_or_not_at_all() {
    let (store, _dir) = support::sqlite_store().await;
    let h = hosts(&store, Duration::from_secs(60), 64);
    let realm = |name: &str| {
        annals::provision::create::<Realm>(
            name,
            RealmCommand::Create { name: name.into(), settings: RealmSettings::default(), extra: Default::default() },
            chrono::Utc::now(),
            &meta(),
        )
        .unwrap()
    };
    let events = |kind: StreamType, id: &'static str| {
        let store = store.clone();
        async move { store.read_stream(&StreamId::new(kind, id), 0, ReadUntil::End).await.unwrap() }
    };

    // Given a command that succeeds, when a new stream comes along, then both commit at once.
    let done = h.execute_with::<User>("u1", create_user("alice"), meta(), vec![realm("acme")]).await.unwrap();
    let (user, acme) = (events(StreamType::User, "u1").await, events(StreamType::Realm, "acme").await);
    assert_eq!((user.len(), acme.len()), (1, 1));
    assert_eq!(acme[0].position, user[0].position + 1, "one transaction: consecutive positions");
    assert_eq!(done.executed.position, acme[0].position, "the transaction's last position");

    // Given a command the aggregate refuses, then what came along is not appended either.
    let refused = h.execute_with::<User>("u1", create_user("alice"), meta(), vec![realm("beta")]).await;
    assert!(matches!(refused, Err(CommandError::Domain(_))), "{refused:?}");
    assert!(events(StreamType::Realm, "beta").await.is_empty());

    // Given a stream that comes along but exists already, then the command's events are not
    // appended either, and the command reports a conflict.
    let clash = h.execute_with::<User>("u2", create_user("bob"), meta(), vec![realm("acme")]).await;
    assert!(matches!(clash, Err(CommandError::Conflict)), "{clash:?}");
    assert!(events(StreamType::User, "u2").await.is_empty());
    assert_eq!(events(StreamType::Realm, "acme").await.len(), 1);
    assert_eq!(store.head().await.unwrap(), 2);

    // The actor is not left behind by the refused transaction: its next command succeeds.
    h.execute::<User>("u2", create_user("bob"), meta()).await.unwrap();

    // Given an actor whose stream another node moved, when its command conflicts, then it
    // catches up and commits once, with what came along exactly once.
    let other = hosts(&store, Duration::from_secs(60), 64);
    other.execute::<User>("u1", UserCommand::GrantRole { role_id: "r1".into() }, meta()).await.unwrap();
    let grant = UserCommand::GrantRole { role_id: "r2".into() };
    h.execute_with::<User>("u1", grant, meta(), vec![realm("gamma")]).await.unwrap();
    assert_eq!(events(StreamType::User, "u1").await.len(), 3);
    assert_eq!(events(StreamType::Realm, "gamma").await.len(), 1);
    other.shutdown().await;
}

/// Holds a role grant on `u1` at `h` (see `Hosts::hold`).
async fn hold_grant(h: &Hosts, role: &str) -> HeldDecision<User> {
    match h.hold::<User>("u1", UserCommand::GrantRole { role_id: role.into() }, meta()).await {
        Ok(Hold::Held(held)) => held,
        Ok(Hold::Done(done)) => panic!("nothing held: {:?}", done.executed),
        Err(e) => panic!("not held: {e:?}"),
    }
}

fn grant(role: &str) -> UserCommand {
    UserCommand::GrantRole { role_id: role.into() }
}

#[actix_rt::test]
async fn a_held_decision_commits_with_another_actors_command_and_holds_its_stream_until_then() {
    let (store, _dir) = support::sqlite_store().await;
    let h = hosts(&store, Duration::from_secs(60), 64);
    h.execute::<User>("u1", create_user("ada"), meta()).await.unwrap();
    h.execute::<User>("u2", create_user("bob"), meta()).await.unwrap();
    // Given a grant on u1 decided and held,
    let held = hold_grant(&h, "r1").await;
    assert_eq!((held.decided().version, held.append().expected), (2, store::ExpectedVersion::Exact(1)));
    // while a second command on u1 waits for it,
    let h2 = h.clone();
    let next = actix_rt::spawn(async move { h2.execute_full::<User>("u1", grant("r2"), meta()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!next.is_finished(), "u1 decides nothing else while its decision is held");
    // when it commits along with a grant on u2,
    let done = h.execute_with::<User>("u2", grant("r9"), meta(), vec![held.append()]).await.unwrap();
    let outcome = held.settle(Settle::Committed { position: done.executed.position }).await.unwrap();
    // then both are recorded in one transaction, u2's first,
    let u1 = store.read_stream(&StreamId::new(StreamType::User, "u1"), 0, ReadUntil::End).await.unwrap();
    let u2 = store.read_stream(&StreamId::new(StreamType::User, "u2"), 0, ReadUntil::End).await.unwrap();
    assert_eq!((u2[1].position + 1, u1[1].position), (done.executed.position, done.executed.position));
    assert_eq!((outcome.executed.version, outcome.executed.position), (2, done.executed.position));
    // and u1 goes on from it: the waiting grant follows without a conflict.
    let next = next.await.unwrap().unwrap();
    assert!(!next.redecided);
    assert_eq!((next.executed.version, next.state.roles.len()), (3, 2));
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_held_decision_its_caller_could_not_commit_is_appended_by_its_actor() {
    let (inner, _dir) = support::sqlite_store().await;
    let (a, b) = (hosts(&inner, Duration::from_secs(60), 64), hosts(&inner, Duration::from_secs(60), 64));
    a.execute::<User>("u1", create_user("ada"), meta()).await.unwrap();
    a.execute::<User>("u2", create_user("bob"), meta()).await.unwrap();
    // Given another node granted r1 on u1 after this node's actor last saw it,
    b.execute::<User>("u1", grant("r1"), meta()).await.unwrap();
    // when this node holds a grant of r2 and commits it along with a grant on u2,
    let held = hold_grant(&a, "r2").await;
    let refused = a.execute_with::<User>("u2", grant("r9"), meta(), vec![held.append()]).await;
    // then the stale decision conflicts, and neither is recorded;
    assert!(matches!(refused, Err(CommandError::Conflict)), "{refused:?}");
    let u2 = inner.read_stream(&StreamId::new(StreamType::User, "u2"), 0, ReadUntil::End).await.unwrap();
    assert_eq!(u2.len(), 1);
    // told so, u1's actor records its grant on its own, decided again on what the store holds.
    let outcome = held.settle(Settle::Alone).await.unwrap();
    assert!(outcome.redecided);
    assert_eq!((outcome.executed.version, outcome.state.roles.len()), (3, 2));
    a.shutdown().await;
    b.shutdown().await;
}

#[actix_rt::test]
async fn a_held_decision_dropped_unsettled_leaves_its_actor_reading_the_stream_again() {
    let (store, _dir) = support::sqlite_store().await;
    let h = hosts(&store, Duration::from_secs(60), 64);
    h.execute::<User>("u1", create_user("ada"), meta()).await.unwrap();
    // Given a held grant committed by its caller, who then went away without a word,
    let held = hold_grant(&h, "r1").await;
    store.append(held.append()).await.unwrap();
    drop(held);
    // when the same role is granted again, u1's actor knows it already: nothing to record, and
    // no conflict (it read its stream again instead of deciding on what it had before).
    let again = h.execute_full::<User>("u1", grant("r1"), meta()).await.unwrap();
    assert_eq!((again.executed.events, again.executed.version, again.redecided), (0, 2, false));
    h.shutdown().await;
}

/// A state remembered from a creation that never committed (a deferred append lost with its
/// batch): the actor's append conflicts with a stream the store lacks, and it reads the
/// stream again from the start instead of insisting on what it remembered.
#[actix_rt::test]
async fn a_remembered_creation_that_never_committed_is_read_again_from_the_store() {
    let (store, _dir) = support::sqlite_store().await;
    let h = hosts(&store, Duration::from_secs(60), 64);
    let (_, created) =
        annals::provision::create_seeded::<User>("u1", vec![create_user("ada")], chrono::Utc::now(), &meta()).unwrap();
    // Given a remembered creation that is not in the store,
    h.remember::<User>("u1", created, 1);
    // when a role is granted, the user is not found (not a conflict that would never clear),
    let refused = h.execute::<User>("u1", grant("r1"), meta()).await;
    assert!(matches!(refused, Err(CommandError::Domain(annals::domain::user::UserError::NotFound))), "{refused:?}");
    // and once it is created, the same actor goes on from the store.
    h.execute::<User>("u1", create_user("ada"), meta()).await.unwrap();
    let granted = h.execute_full::<User>("u1", grant("r1"), meta()).await.unwrap();
    assert_eq!((granted.executed.version, granted.redecided), (2, false));
    h.shutdown().await;
}

/// An actor that found its stream empty does not keep refusing once another node (or a
/// deferred append) has created it.
#[actix_rt::test]
async fn a_stream_created_after_its_actor_found_it_empty_is_found() {
    let (store, _dir) = support::sqlite_store().await;
    let (a, b) = (hosts(&store, Duration::from_secs(60), 64), hosts(&store, Duration::from_secs(60), 64));
    // Given this node's actor for u1 activated on an empty stream,
    let refused = a.execute::<User>("u1", grant("r1"), meta()).await;
    assert!(matches!(refused, Err(CommandError::Domain(_))), "{refused:?}");
    // when another node creates u1,
    b.execute::<User>("u1", create_user("ada"), meta()).await.unwrap();
    // then this node's actor finds it at the next command.
    let granted = a.execute_full::<User>("u1", grant("r1"), meta()).await.unwrap();
    assert_eq!((granted.executed.version, granted.state.roles.len()), (2, 1));
    a.shutdown().await;
    b.shutdown().await;
}

#[actix_rt::test]
async fn a_held_decision_discarded_leaves_nothing_and_the_command_can_come_again() {
    let (store, _dir) = support::sqlite_store().await;
    let h = hosts(&store, Duration::from_secs(60), 64);
    h.execute::<User>("u1", create_user("ada"), meta()).await.unwrap();
    // Given a held grant whose carrying command never ran (its actor was busy),
    let held = hold_grant(&h, "r1").await;
    // when it is discarded, its caller is told to come back,
    let discarded = held.settle(Settle::Discard).await;
    assert!(matches!(discarded, Err(CommandError::Busy)), "{discarded:?}");
    // and nothing was recorded: the same grant, sent again, is decided anew and recorded.
    assert_eq!(store.read_stream(&StreamId::new(StreamType::User, "u1"), 0, ReadUntil::End).await.unwrap().len(), 1);
    let again = h.execute_full::<User>("u1", grant("r1"), meta()).await.unwrap();
    assert_eq!((again.executed.events, again.executed.version, again.redecided), (1, 2, false));
    h.shutdown().await;
}

fn user_log(
    store: &SharedStore,
    id: &'static str,
) -> impl std::future::Future<Output = Vec<annals_events::RecordedEvent>> {
    let store = store.clone();
    async move { store.read_stream(&StreamId::new(StreamType::User, id), 0, ReadUntil::End).await.unwrap() }
}

#[actix_rt::test]
async fn a_deferred_command_is_the_actors_state_at_once_and_commits_ahead_of_its_next_append() {
    let (store, _dir) = support::sqlite_store().await;
    assert!(store.exclusive(), "an SQLite log is this node's alone");
    let h = hosts(&store, Duration::from_secs(60), 64);
    h.execute::<User>("u1", create_user("ada"), meta()).await.unwrap();
    let (bob, _) =
        annals::provision::create_seeded::<User>("u2", vec![create_user("bob")], chrono::Utc::now(), &meta()).unwrap();
    // Given a grant on u1 deferred, with u2's creation along,
    let deferred = h.execute_deferred_with::<User>("u1", grant("r1"), meta(), vec![bob]).await;
    let deferred = deferred.unwrap();
    // then it answers before any position is known, with the state after it,
    assert_eq!((deferred.executed.version, deferred.executed.position), (2, 0));
    assert_eq!(deferred.state.roles.len(), 1);
    // and u1's next command builds on it without a conflict,
    let next = h.execute_full::<User>("u1", grant("r2"), meta()).await.unwrap();
    assert!(!next.redecided);
    assert_eq!((next.executed.version, next.state.roles.len()), (3, 2));
    // committed after it: once that command is answered, the deferred grant and what came
    // along are in the log ahead of it.
    let (u1, u2) = (user_log(&store, "u1").await, user_log(&store, "u2").await);
    assert_eq!((u1.len(), u2.len()), (3, 1));
    assert!(u1[1].position < u1[2].position && u2[0].position < u1[2].position);
    assert_eq!(u1[2].position, next.executed.position);
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_deferred_command_that_never_commits_leaves_nothing_of_it_in_the_actor() {
    let (inner, _dir) = support::sqlite_store().await;
    let holding = HoldingStore::new(inner.clone());
    let store: SharedStore = holding.clone();
    let h = hosts(&store, Duration::from_secs(60), 64);
    h.execute::<User>("u1", create_user("ada"), meta()).await.unwrap();
    // Given a deferred grant whose batch fails,
    holding.lose_next_deferred();
    let lost = h.execute_deferred_with::<User>("u1", grant("r1"), meta(), Vec::new()).await.unwrap();
    assert_eq!(lost.state.roles.len(), 1, "answered before it was known to fail");
    // when u1 is given its next command at once (before or after the actor heard of the
    // failure), then it is decided on what the store holds: the lost grant is not there.
    let next = h.execute_full::<User>("u1", grant("r2"), meta()).await.unwrap();
    assert_eq!((next.executed.version, next.state.roles.len()), (2, 1));
    assert!(next.state.roles.contains("r2"), "{:?}", next.state.roles);
    assert_eq!(user_log(&store, "u1").await.len(), 2);
    // And once the actor has heard, the same holds for a command that appends nothing.
    tokio::time::sleep(Duration::from_millis(100)).await;
    holding.lose_next_deferred();
    h.execute_deferred_with::<User>("u1", grant("r3"), meta(), Vec::new()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let again = h.execute_full::<User>("u1", grant("r2"), meta()).await.unwrap();
    assert_eq!((again.executed.events, again.executed.version, again.state.roles.len()), (0, 2, 1));
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_deferred_command_on_a_log_other_nodes_share_commits_before_it_answers() {
    let (inner, _dir) = support::sqlite_store().await;
    let holding = HoldingStore::new(inner.clone());
    holding.share();
    let store: SharedStore = holding.clone();
    let h = hosts(&store, Duration::from_secs(60), 64);
    h.execute::<User>("u1", create_user("ada"), meta()).await.unwrap();
    // Given a log another node may read, when a command is asked deferred, then it is in the
    // log when it answers, with its position.
    let done = h.execute_deferred_with::<User>("u1", grant("r1"), meta(), Vec::new()).await.unwrap();
    let u1 = user_log(&store, "u1").await;
    assert_eq!((u1.len(), done.executed.position), (2, u1[1].position));
    h.shutdown().await;
}

#[actix_rt::test]
async fn no_snapshot_holds_a_deferred_append_before_it_is_known_to_have_committed() {
    let (inner, _dir) = support::sqlite_store().await;
    let holding = HoldingStore::new(inner.clone());
    let store: SharedStore = holding.clone();
    let h = hosts(&store, Duration::from_secs(60), 64);
    h.execute::<User>("u1", create_user("ada"), meta()).await.unwrap();
    for i in 0..98 {
        h.execute::<User>("u1", grant(&format!("r{i}")), meta()).await.unwrap();
    }
    // Given a deferred grant taking u1 to a snapshot's version, still on its way,
    holding.pend_next_deferred();
    let pending = h.execute_deferred_with::<User>("u1", grant("lost"), meta(), Vec::new()).await.unwrap();
    assert_eq!(pending.executed.version, 100);
    // when a command that appends nothing runs meanwhile, and the deferred grant then fails,
    h.execute::<User>("u1", grant("r0"), meta()).await.unwrap();
    holding.fail_pending();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // then no snapshot kept it: the actor, reading its stream again, finds 99 events without it.
    assert!(store.load_snapshot(&StreamId::new(StreamType::User, "u1")).await.unwrap().is_none());
    let next = h.execute_full::<User>("u1", grant("new"), meta()).await.unwrap();
    assert_eq!((next.executed.version, next.state.roles.len()), (100, 99));
    assert!(!next.state.roles.contains("lost"));
    h.shutdown().await;
}

/// An actor left behind by another node's append learns of it only through a conflict, which
/// a command that appends nothing never meets: run fresh, the command is decided on the
/// stream as the store has it.
#[actix_rt::test]
async fn a_fresh_command_is_decided_on_what_another_node_appended_since() {
    let (inner, _dir) = support::sqlite_store().await;
    let holding = HoldingStore::new(inner.clone());
    holding.share();
    let store: SharedStore = holding.clone();
    let (a, b) = (hosts(&store, Duration::from_secs(60), 64), hosts(&store, Duration::from_secs(60), 64));
    a.execute::<User>("u1", create_user("ada"), meta()).await.unwrap();
    // Given node B granted a role after node A's actor loaded the user,
    b.execute::<User>("u1", grant("r1"), meta()).await.unwrap();
    let revoke = || UserCommand::RevokeRole { role_id: "r1".into() };
    // node A's actor, as it stands, sees nothing to revoke;
    let stale = a.execute_full::<User>("u1", revoke(), meta()).await.unwrap();
    assert!(stale.events.is_empty() && !stale.state.roles.contains("r1"), "left behind");
    // when the command runs fresh, it is decided on B's grant too.
    let fresh = a.execute_fresh::<User>("u1", revoke(), meta()).await.unwrap();
    assert_eq!(fresh.events.len(), 1, "the grant B made is revoked");
    assert_eq!(user_log(&store, "u1").await.len(), 3);
    a.shutdown().await;
    b.shutdown().await;
}

/// A command refused on a stream that does not exist leaves no actor behind: made-up ids cost
/// a read each, never memory until the idle timeout.
#[actix_rt::test]
async fn a_command_on_a_stream_that_does_not_exist_leaves_no_actor() {
    let (store, _dir) = support::sqlite_store().await;
    let h = hosts(&store, Duration::from_secs(300), 64);
    h.execute::<User>("u1", create_user("ada"), meta()).await.unwrap();
    for i in 0..50 {
        let refused = h.execute::<User>(&format!("ghost{i}"), grant("r1"), meta()).await;
        assert!(matches!(refused, Err(CommandError::Domain(_))), "{refused:?}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while h.live() > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(h.live(), 1, "only the user that exists is hosted");
    // A command that finds nothing and refuses nothing (no failed logins on record) keeps its
    // actor: the next login asks again.
    let key = annals::domain::login_failures::user_key("r", "nobody");
    h.execute::<LoginFailures>(&key, LoginFailuresCommand::Check, meta()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.live(), 2, "kept");
    // A stream created after an actor found it empty is still found.
    h.execute::<User>("ghost0", create_user("bob"), meta()).await.unwrap();
    h.execute::<User>("ghost0", grant("r1"), meta()).await.unwrap();
    assert_eq!(user_log(&store, "ghost0").await.len(), 2);
    h.shutdown().await;
}
