//! The in-memory read models' runner.
use crate::support;
use annals::domain::realm::{Realm, RealmCommand};
use annals::provision::create;
use annals_events::Metadata;
use annals_projections::Directory;
use std::sync::RwLock;

fn new_realm(name: &str) -> annals::store::StreamAppend {
    let command = RealmCommand::Create { name: name.into(), settings: Default::default(), extra: Default::default() };
    create::<Realm>(name, command, chrono::Utc::now(), &Metadata::system("test")).unwrap()
}

/// A PostgreSQL batch is visible a moment before it is durable; the runner must fold only up
/// to the durable head it was told of, or a crash of the database could take back what a node
/// already shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_folds_nothing_past_the_position_it_is_given() {
    let (store, _dir) = support::sqlite_store().await;
    let first = store.append(new_realm("first")).await.unwrap();
    store.append(new_realm("second")).await.unwrap();
    let dir = RwLock::new(Directory::default());

    let at = annals::readmodels::catch_up(&store, &dir, first.last_position, |_| {}).await.unwrap();
    assert_eq!(at, first.last_position);
    assert!(dir.read().unwrap().realms.by_name("first").is_some());
    assert!(dir.read().unwrap().realms.by_name("second").is_none(), "folded past the bound");

    let head = store.head().await.unwrap();
    let at = annals::readmodels::catch_up(&store, &dir, head, |_| {}).await.unwrap();
    assert_eq!(at, head);
    assert!(dir.read().unwrap().realms.by_name("second").is_some());
    store.shutdown().await;
}
