//! `UserSearch`: the rows of the SQL read model that answers admin user searches (substring
//! over username, email, first and last name, paged). The fold is pure: it turns an event
//! into row changes; the server applies them together with the checkpoint in one transaction.
use annals_events::user::UserEvent;
use annals_events::{DomainEvent, RecordedEvent};

/// One searchable user. Text columns are stored as given; search lowercases both sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSearchRow {
    pub user_id: String,
    pub realm_id: String,
    pub username: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub enabled: bool,
    pub created_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserSearchChange {
    Insert(UserSearchRow),
    Profile {
        user_id: String,
        email: Option<String>,
        first_name: Option<String>,
        last_name: Option<String>,
        enabled: bool,
    },
    Delete {
        user_id: String,
    },
}

pub const NAME: &str = "user_search";

/// The row changes one event causes (none for events that do not touch the table).
pub fn changes(event: &RecordedEvent, decoded: &DomainEvent) -> Option<UserSearchChange> {
    let DomainEvent::User(e) = decoded else { return None };
    let user_id = event.stream.id.clone();
    match e {
        UserEvent::Created(c) => Some(UserSearchChange::Insert(UserSearchRow {
            user_id,
            realm_id: c.realm_id.clone(),
            username: c.username.clone(),
            email: c.profile.email.clone(),
            first_name: c.profile.first_name.clone(),
            last_name: c.profile.last_name.clone(),
            enabled: c.profile.enabled,
            created_ms: c.created_timestamp.unwrap_or_else(|| event.recorded_at.timestamp_millis()),
        })),
        UserEvent::ProfileChanged(c) => Some(UserSearchChange::Profile {
            user_id,
            email: c.profile.email.clone(),
            first_name: c.profile.first_name.clone(),
            last_name: c.profile.last_name.clone(),
            enabled: c.profile.enabled,
        }),
        UserEvent::Deleted(_) => Some(UserSearchChange::Delete { user_id }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals_events::user::{UserCreated, UserDeleted, UserProfile, UserRoleGranted};
    use annals_events::{StreamId, StreamType};

    fn rec(e: &DomainEvent) -> RecordedEvent {
        RecordedEvent {
            event_id: uuid::Uuid::now_v7(),
            stream: StreamId::new(StreamType::User, "u1"),
            version: 1,
            position: 1,
            recorded_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
            event_type: e.event_type().into(),
            schema_version: 1,
            payload: "{}".into(),
            metadata: "{}".into(),
            prev_hash: [0; 32],
            hash: [0; 32],
        }
    }

    #[test]
    fn given_a_created_user_without_timestamp_when_folded_then_the_event_time_is_used() {
        let e: DomainEvent = UserEvent::from(UserCreated {
            realm_id: "r".into(),
            username: "ada".into(),
            profile: UserProfile { email: Some("a@x.org".into()), enabled: true, ..Default::default() },
            created_timestamp: None,
            federation_link: None,
            extra: Default::default(),
        })
        .into();
        match changes(&rec(&e), &e) {
            Some(UserSearchChange::Insert(row)) => {
                assert_eq!((row.user_id.as_str(), row.created_ms), ("u1", 1_800_000_000_000));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn given_events_outside_the_table_when_folded_then_no_change() {
        let e: DomainEvent = UserEvent::from(UserRoleGranted { role_id: "x".into() }).into();
        assert_eq!(changes(&rec(&e), &e), None);
        let d: DomainEvent = UserEvent::from(UserDeleted {}).into();
        assert_eq!(changes(&rec(&d), &d), Some(UserSearchChange::Delete { user_id: "u1".into() }));
    }
}
