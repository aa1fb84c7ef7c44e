//! `users`: the rows of the SQL read model that holds users, their direct role grants and
//! their group memberships. Users live in SQL, not in memory: 100,000 of them cost ~110 MB
//! as in-memory views, and only the configuration (realms, clients, roles, groups, keys) is
//! needed on every request. The fold is pure: it turns one event into row changes; the server
//! applies them together with the checkpoint in one transaction.
use annals_events::group::GroupEvent;
use annals_events::role::RoleEvent;
use annals_events::user::{PasswordHash, UserEvent, UserProfile};
use annals_events::{DomainEvent, RecordedEvent};
use serde_json::{Map, Value};

pub const NAME: &str = "users";

/// A user as the read model returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct UserView {
    pub id: String,
    pub realm_id: String,
    pub username: String,
    pub profile: UserProfile,
    pub password: Option<PasswordHash>,
    pub password_temporary: bool,
    /// Keycloak's `createdTimestamp` when imported, otherwise the creation event's time.
    pub created_timestamp: i64,
    pub federation_link: Option<String>,
    pub extra: Map<String, Value>,
}

/// One change to the model's tables. Changes of one page are applied in log order.
#[derive(Clone, Debug, PartialEq)]
pub enum UserChange {
    /// `position` orders users who share a username (see [`username_key`]).
    Insert {
        user: Box<UserView>,
        position: u64,
    },
    Profile {
        user_id: String,
        profile: UserProfile,
    },
    /// `temporary` is `None` when an upgrade keeps the flag the password had.
    Password {
        user_id: String,
        hash: PasswordHash,
        temporary: Option<bool>,
    },
    /// The user's row, grants and memberships go.
    Delete {
        user_id: String,
    },
    GrantRole {
        user_id: String,
        role_id: String,
    },
    RevokeRole {
        user_id: String,
        role_id: String,
    },
    JoinGroup {
        user_id: String,
        group_id: String,
    },
    LeaveGroup {
        user_id: String,
        group_id: String,
    },
    /// A deleted role is revoked from every user.
    RoleDeleted {
        role_id: String,
    },
    /// A deleted group loses all its members.
    GroupDeleted {
        group_id: String,
    },
}

/// The lookup key of usernames and emails: Unicode lowercase, so `ÄDA` finds `äda` (SQL's
/// `lower()` is ASCII-only on SQLite, so keys are computed here, not in the database).
pub fn key(s: &str) -> String {
    s.to_lowercase()
}

/// Separates fields in [`search_tail`]; a control character no name contains.
pub const SEARCH_SEPARATOR: char = '\u{1f}';

/// The profile's part of the lowercased search text (the username's key is prepended in SQL,
/// so a profile change does not need the username): separator, email, first and last name.
pub fn search_tail(profile: &UserProfile) -> String {
    let mut s = String::new();
    for field in [&profile.email, &profile.first_name, &profile.last_name] {
        s.push(SEARCH_SEPARATOR);
        s.push_str(&key(field.as_deref().unwrap_or("")));
    }
    s
}

/// The row changes one event causes (none for events that do not touch the tables).
/// Whether events of this type can change the model's rows (others need not be decoded).
pub fn concerns(event_type: &str) -> bool {
    event_type.starts_with("user.") || event_type.starts_with("role.") || event_type.starts_with("group.")
}

pub fn changes(event: &RecordedEvent, decoded: &DomainEvent) -> Option<UserChange> {
    let id = || event.stream.id.clone();
    Some(match decoded {
        DomainEvent::User(e) => match e {
            UserEvent::Created(c) => UserChange::Insert {
                user: Box::new(UserView {
                    id: id(),
                    realm_id: c.realm_id.clone(),
                    username: c.username.clone(),
                    profile: c.profile.clone(),
                    password: None,
                    password_temporary: false,
                    created_timestamp: c.created_timestamp.unwrap_or_else(|| event.recorded_at.timestamp_millis()),
                    federation_link: c.federation_link.clone(),
                    extra: c.extra.clone(),
                }),
                position: event.position,
            },
            UserEvent::ProfileChanged(c) => UserChange::Profile { user_id: id(), profile: c.profile.clone() },
            UserEvent::PasswordSet(c) => {
                UserChange::Password { user_id: id(), hash: c.hash.clone(), temporary: Some(c.temporary) }
            }
            UserEvent::PasswordHashUpgraded(c) => {
                UserChange::Password { user_id: id(), hash: c.hash.clone(), temporary: None }
            }
            UserEvent::Deleted(_) => UserChange::Delete { user_id: id() },
            UserEvent::RoleGranted(c) => UserChange::GrantRole { user_id: id(), role_id: c.role_id.clone() },
            UserEvent::RoleRevoked(c) => UserChange::RevokeRole { user_id: id(), role_id: c.role_id.clone() },
            UserEvent::JoinedGroup(c) => UserChange::JoinGroup { user_id: id(), group_id: c.group_id.clone() },
            UserEvent::LeftGroup(c) => UserChange::LeaveGroup { user_id: id(), group_id: c.group_id.clone() },
            // Consents live in the in-memory `consents` model.
            UserEvent::ConsentGranted(_) => return None,
        },
        DomainEvent::Role(RoleEvent::Deleted(_)) => UserChange::RoleDeleted { role_id: id() },
        DomainEvent::Group(GroupEvent::Deleted(_)) => UserChange::GroupDeleted { group_id: id() },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals_events::role::RoleDeleted;
    use annals_events::user::{UserCreated, UserDeleted, UserPasswordHashUpgraded, UserPasswordSet, UserRoleGranted};
    use annals_events::{StreamId, StreamType};

    fn rec(kind: StreamType, id: &str, e: &DomainEvent) -> RecordedEvent {
        RecordedEvent {
            event_id: uuid::Uuid::now_v7(),
            stream: StreamId::new(kind, id),
            version: 1,
            position: 7,
            recorded_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
            event_type: e.event_type().into(),
            schema_version: 1,
            payload: "{}".into(),
            metadata: "{}".into(),
            prev_hash: [0; 32],
            hash: [0; 32],
        }
    }

    fn phc() -> PasswordHash {
        PasswordHash::Phc { phc: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into() }
    }

    #[test]
    fn given_a_created_user_without_timestamp_when_folded_then_the_event_time_and_position_are_kept() {
        let e: DomainEvent = UserEvent::from(UserCreated {
            realm_id: "r".into(),
            username: "Ada".into(),
            profile: UserProfile { email: Some("a@x.org".into()), enabled: true, ..Default::default() },
            created_timestamp: None,
            federation_link: None,
            extra: Default::default(),
        })
        .into();
        match changes(&rec(StreamType::User, "u1", &e), &e) {
            Some(UserChange::Insert { user, position }) => {
                assert_eq!((user.id.as_str(), user.created_timestamp, position), ("u1", 1_800_000_000_000, 7));
                assert_eq!(user.username, "Ada", "the username is kept as given; only the key is folded");
                assert_eq!(user.password, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn given_password_events_when_folded_then_an_upgrade_keeps_the_temporary_flag() {
        let set: DomainEvent = UserEvent::from(UserPasswordSet { hash: phc(), temporary: true }).into();
        let up: DomainEvent =
            UserEvent::from(UserPasswordHashUpgraded { from_algorithm: "pbkdf2-sha256".into(), hash: phc() }).into();
        assert_eq!(
            changes(&rec(StreamType::User, "u", &set), &set),
            Some(UserChange::Password { user_id: "u".into(), hash: phc(), temporary: Some(true) })
        );
        assert_eq!(
            changes(&rec(StreamType::User, "u", &up), &up),
            Some(UserChange::Password { user_id: "u".into(), hash: phc(), temporary: None })
        );
    }

    #[test]
    fn given_grants_and_deletions_when_folded_then_they_name_the_right_rows() {
        let grant: DomainEvent = UserEvent::from(UserRoleGranted { role_id: "x".into() }).into();
        assert_eq!(
            changes(&rec(StreamType::User, "u", &grant), &grant),
            Some(UserChange::GrantRole { user_id: "u".into(), role_id: "x".into() })
        );
        let del: DomainEvent = UserEvent::from(UserDeleted {}).into();
        assert_eq!(changes(&rec(StreamType::User, "u", &del), &del), Some(UserChange::Delete { user_id: "u".into() }));
        let role_gone: DomainEvent = RoleEvent::from(RoleDeleted {}).into();
        assert_eq!(
            changes(&rec(StreamType::Role, "x", &role_gone), &role_gone),
            Some(UserChange::RoleDeleted { role_id: "x".into() })
        );
    }

    #[test]
    fn given_a_profile_when_searched_then_the_tail_is_lowercased_and_separated() {
        let p = UserProfile {
            email: Some("ÄDA@Example.org".into()),
            first_name: Some("Ada".into()),
            last_name: None,
            ..Default::default()
        };
        assert_eq!(search_tail(&p), "\u{1f}äda@example.org\u{1f}ada\u{1f}");
        assert_eq!(key("ÄDA"), "äda");
    }
}
