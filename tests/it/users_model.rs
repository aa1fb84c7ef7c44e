//! The SQL read model `users`, run against SQLite and PostgreSQL alike: events appended to a
//! real store, the model caught up, then asked what a login or an admin screen would ask.
use crate::support::pg::TestDb;
use annals::sqlmodels::{self, users};
use annals::store::{ExpectedVersion, SharedStore, StreamAppend};
use annals_events::group::{GroupCreated, GroupDeleted, GroupEvent};
use annals_events::role::{RoleCreated, RoleDeleted, RoleEvent};
use annals_events::user::*;
use annals_events::{DomainEvent, Metadata, NewEvent, StreamId, StreamType};

async fn append(store: &SharedStore, kind: StreamType, id: &str, events: Vec<DomainEvent>) {
    let meta = Metadata::system("test");
    let events = events.iter().map(|e| NewEvent::new(e, &meta).unwrap()).collect();
    let stream = StreamId::new(kind, id);
    store.append(StreamAppend { stream, expected: ExpectedVersion::Any, events }).await.unwrap();
}

fn created(realm: &str, username: &str, email: Option<&str>) -> DomainEvent {
    UserEvent::from(UserCreated {
        realm_id: realm.into(),
        username: username.into(),
        profile: UserProfile { email: email.map(str::to_string), enabled: true, ..Default::default() },
        created_timestamp: None,
        federation_link: None,
        extra: Default::default(),
    })
    .into()
}

fn role(realm: &str, name: &str) -> DomainEvent {
    RoleEvent::from(RoleCreated {
        realm_id: realm.into(),
        client_id: None,
        name: name.into(),
        description: None,
        attributes: Default::default(),
        extra: Default::default(),
    })
    .into()
}

fn phc(tag: &str) -> PasswordHash {
    PasswordHash::Phc { phc: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ${tag}") }
}

async fn lookups_ignore_case_within_their_realm(store: SharedStore) {
    append(&store, StreamType::User, "u1", vec![created("r1", "Ädäm", Some("Adam@Example.ORG"))]).await;
    append(&store, StreamType::User, "u2", vec![created("r2", "ädäm", None)]).await;
    sqlmodels::catch_up(&store).await.unwrap();
    let pool = store.pool();
    let u1 = users::by_username(&pool, "r1", "ÄDÄM").await.unwrap().expect("Unicode case folding");
    assert_eq!((u1.id.as_str(), u1.username.as_str()), ("u1", "Ädäm"), "the username is kept as given");
    assert_eq!(users::by_username(&pool, "r2", "Ädäm").await.unwrap().unwrap().id, "u2");
    assert_eq!(users::by_email(&pool, "r1", "adam@example.org").await.unwrap().len(), 1);
    assert!(users::by_email(&pool, "r2", "adam@example.org").await.unwrap().is_empty(), "realms are separate");
    assert!(users::by_username(&pool, "r3", "ädäm").await.unwrap().is_none());
    assert_eq!(users::count(&pool, None).await.unwrap(), 2);
}

async fn profile_password_and_deletion_update_the_rows(store: SharedStore) {
    append(&store, StreamType::User, "u1", vec![created("r", "ada", Some("old@example.org"))]).await;
    let profile = UserProfile {
        email: Some("New@Example.org".into()),
        first_name: Some("Ada".into()),
        last_name: Some("Lovelace".into()),
        enabled: true,
        ..Default::default()
    };
    let set = UserEvent::from(UserPasswordSet { hash: phc("first"), temporary: true }).into();
    let upgraded =
        UserEvent::from(UserPasswordHashUpgraded { from_algorithm: "pbkdf2".into(), hash: phc("second") }).into();
    let changed = UserEvent::from(UserProfileChanged { profile: profile.clone() }).into();
    append(&store, StreamType::User, "u1", vec![set, changed, upgraded]).await;
    sqlmodels::catch_up(&store).await.unwrap();
    let pool = store.pool();
    assert!(users::by_email(&pool, "r", "old@example.org").await.unwrap().is_empty());
    let ada = users::by_email(&pool, "r", "new@EXAMPLE.org").await.unwrap().pop().expect("found by the new email");
    assert_eq!(ada.profile, profile);
    assert_eq!(ada.password, Some(phc("second")));
    assert!(ada.password_temporary, "an upgraded hash keeps the temporary flag");
    let hits = users::search(&pool, "r", "LOVE", 0, 10).await.unwrap();
    assert_eq!(hits.len(), 1, "search sees the changed profile");

    append(&store, StreamType::User, "u1", vec![UserEvent::from(UserDeleted {}).into()]).await;
    append(&store, StreamType::User, "u2", vec![created("r", "ADA", None)]).await;
    sqlmodels::catch_up(&store).await.unwrap();
    assert_eq!(users::by_username(&pool, "r", "ada").await.unwrap().unwrap().id, "u2", "the name is free again");
    assert!(users::get(&pool, "u1").await.unwrap().is_none());
    assert!(users::search(&pool, "r", "love", 0, 10).await.unwrap().is_empty());
}

async fn grants_follow_roles_groups_and_deletions(store: SharedStore) {
    append(&store, StreamType::Role, "admin", vec![role("r", "admin")]).await;
    append(&store, StreamType::Role, "viewer", vec![role("r", "viewer")]).await;
    let group: DomainEvent = GroupEvent::from(GroupCreated {
        realm_id: "r".into(),
        name: "staff".into(),
        parent_id: None,
        attributes: Default::default(),
        extra: Default::default(),
    })
    .into();
    append(&store, StreamType::Group, "staff", vec![group]).await;
    for u in ["u1", "u2"] {
        let grants: Vec<DomainEvent> = vec![
            created("r", u, None),
            UserEvent::from(UserRoleGranted { role_id: "admin".into() }).into(),
            UserEvent::from(UserRoleGranted { role_id: "viewer".into() }).into(),
            UserEvent::from(UserJoinedGroup { group_id: "staff".into() }).into(),
        ];
        append(&store, StreamType::User, u, grants).await;
    }
    append(&store, StreamType::User, "u2", vec![UserEvent::from(UserRoleRevoked { role_id: "viewer".into() }).into()])
        .await;
    sqlmodels::catch_up(&store).await.unwrap();
    let pool = store.pool();
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(users::roles_of(&pool, "u1").await.unwrap(), set(&["admin", "viewer"]));
    assert_eq!(users::roles_of(&pool, "u2").await.unwrap(), set(&["admin"]));
    assert_eq!(users::members_of(&pool, "staff").await.unwrap(), set(&["u1", "u2"]));
    assert_eq!(users::grant_count(&pool).await.unwrap(), 3 + 2);

    append(&store, StreamType::Role, "admin", vec![RoleEvent::from(RoleDeleted {}).into()]).await;
    append(&store, StreamType::Group, "staff", vec![GroupEvent::from(GroupDeleted {}).into()]).await;
    append(&store, StreamType::User, "u1", vec![UserEvent::from(UserDeleted {}).into()]).await;
    sqlmodels::catch_up(&store).await.unwrap();
    assert!(users::roles_of(&pool, "u1").await.unwrap().is_empty(), "a deleted user's grants go");
    assert!(users::roles_of(&pool, "u2").await.unwrap().is_empty(), "a deleted role is revoked from everyone");
    assert!(users::groups_of(&pool, "u2").await.unwrap().is_empty(), "a deleted group loses its members");
    assert_eq!(users::grant_count(&pool).await.unwrap(), 0);
}

async fn rebuild_equals_the_incremental_model_and_search_is_literal(store: SharedStore) {
    for i in 0..30 {
        let id = format!("u{i:02}");
        append(
            &store,
            StreamType::User,
            &id,
            vec![created("r", &format!("user_{i:02}"), Some(&format!("{id}@x.org")))],
        )
        .await;
        if i % 4 == 0 {
            append(
                &store,
                StreamType::User,
                &id,
                vec![UserEvent::from(UserRoleGranted { role_id: "x".into() }).into()],
            )
            .await;
        }
    }
    append(&store, StreamType::User, "pct", vec![created("r", "100%", None)]).await;
    let head = sqlmodels::catch_up(&store).await.unwrap();
    let pool = store.pool();
    let before = users::realm_users(&pool, "r").await.unwrap();
    assert_eq!(sqlmodels::rebuild(&store, |_| {}).await.unwrap(), head);
    assert_eq!(users::realm_users(&pool, "r").await.unwrap(), before);
    assert_eq!(before.iter().filter(|u| !u.roles.is_empty()).count(), 8);

    let page = |first, max| {
        let pool = pool.clone();
        async move { users::search(&pool, "r", "USER_", first, max).await.unwrap() }
    };
    let (p1, p2) = (page(0, 20).await, page(20, 20).await);
    assert_eq!((p1.len(), p2.len()), (20, 10), "paged, and `_` is not a wildcard (\"100%\" has no underscore)");
    assert!(p1.last().unwrap().username < p2[0].username, "ordered by username");
    assert_eq!(users::search(&pool, "r", "%", 0, 100).await.unwrap().len(), 1, "`%` matches only itself");
    assert_eq!(users::search(&pool, "r", "", 0, 5000).await.unwrap().len(), 31, "empty needle lists all");
}

/// A runner that read a page before a rebuild reset the model must not apply it: the events
/// before the page would be skipped for good.
async fn a_page_read_before_a_reset_is_not_applied(store: SharedStore) {
    for i in 0..6 {
        append(&store, StreamType::User, &format!("u{i}"), vec![created("r", &format!("user{i}"), None)]).await;
    }
    assert_eq!(sqlmodels::catch_up(&store).await.unwrap(), 6);
    let stale_page = store.read_all_payloads(3, 10).await.unwrap();
    let pool = store.pool();
    sqlmodels::reset(&pool).await.unwrap();
    assert_eq!(sqlmodels::apply_page(&pool, 3, &stale_page).await.unwrap(), 0, "refused: the checkpoint is behind");
    assert_eq!(users::count(&pool, None).await.unwrap(), 0, "nothing of the stale page was written");
    assert_eq!(sqlmodels::apply_page(&pool, 0, &store.read_all_payloads(0, 2).await.unwrap()).await.unwrap(), 2);
    assert_eq!(sqlmodels::apply_page(&pool, 0, &store.read_all_payloads(0, 4).await.unwrap()).await.unwrap(), 4);
    assert_eq!(users::count(&pool, None).await.unwrap(), 4, "an overlapping page skips what was applied");
    assert_eq!(sqlmodels::catch_up(&store).await.unwrap(), 6);
    assert_eq!(users::count(&pool, None).await.unwrap(), 6);
}

async fn events_that_change_no_row_move_the_position_but_not_the_checkpoint(store: SharedStore) {
    use annals_events::client_grant::{ClientGrantEvent, ClientGrantIssued};
    append(&store, StreamType::User, "u1", vec![created("r", "first", None)]).await;
    assert_eq!(sqlmodels::catch_up(&store).await.unwrap(), 1);
    for i in 0..5 {
        let grant = ClientGrantEvent::from(ClientGrantIssued {
            realm_id: "r".into(),
            client: "c".into(),
            user_id: None,
            scope: String::new(),
            expires_at: 0,
            at: 0,
        });
        append(&store, StreamType::ClientGrant, &format!("g{i}"), vec![grant.into()]).await;
    }
    let pool = store.pool();
    let (at, stored) = sqlmodels::catch_up_from(&store, 1, 1, None, |_| {}).await.unwrap();
    assert_eq!((at, stored), (6, 1), "no write transaction for events that change nothing");
    assert_eq!(sqlmodels::checkpoint(&pool).await.unwrap(), 1);
    // A restart from the stored checkpoint reads them again, harmlessly.
    assert_eq!(sqlmodels::catch_up(&store).await.unwrap(), 6);
    append(&store, StreamType::User, "u2", vec![created("r", "second", None)]).await;
    let (at, stored) = sqlmodels::catch_up_from(&store, 6, 1, None, |_| {}).await.unwrap();
    assert_eq!((at, stored), (7, 7), "a change stores the checkpoint past everything read");
    assert_eq!(users::count(&pool, None).await.unwrap(), 2);
}

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _dir) = crate::support::sqlite_store().await;
                    super::$name(store.clone()).await;
                    store.shutdown().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = super::TestDb::create().await else { return };
                    let store = annals::store::open(&db.url).await.expect("open postgres store");
                    super::$name(store.clone()).await;
                    store.shutdown().await;
                }
            )*
        }
    };
}

both_stores!(
    lookups_ignore_case_within_their_realm,
    profile_password_and_deletion_update_the_rows,
    grants_follow_roles_groups_and_deletions,
    rebuild_equals_the_incremental_model_and_search_is_literal,
    a_page_read_before_a_reset_is_not_applied,
    events_that_change_no_row_move_the_position_but_not_the_checkpoint,
);
