//! The User aggregate: profile, password, role grants, group membership.
use super::{validate, Aggregate, Lifecycle};
use annals_events::user::*;
use annals_events::StreamType;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub lifecycle: Lifecycle,
    pub realm_id: String,
    pub username: String,
    pub profile: UserProfile,
    /// `phc` or Keycloak's algorithm id; never the hash itself in the state's logs.
    pub password_format: Option<String>,
    pub roles: BTreeSet<String>,
    pub groups: BTreeSet<String>,
    /// Scopes consented to, by client (internal id).
    #[serde(default)]
    pub consents: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Clone, Debug)]
pub enum UserCommand {
    Create {
        realm_id: String,
        username: String,
        profile: UserProfile,
        created_timestamp: Option<i64>,
        federation_link: Option<String>,
        extra: Map<String, Value>,
    },
    ChangeProfile {
        profile: UserProfile,
    },
    SetPassword {
        hash: PasswordHash,
        temporary: bool,
    },
    /// After a successful login against a legacy hash: store the argon2id rehash.
    UpgradePasswordHash {
        hash: PasswordHash,
    },
    GrantRole {
        role_id: String,
    },
    RevokeRole {
        role_id: String,
    },
    JoinGroup {
        group_id: String,
    },
    LeaveGroup {
        group_id: String,
    },
    /// Consent given on the consent page; adds to what the client already had.
    GrantConsent {
        client: String,
        scopes: Vec<String>,
    },
    Delete,
}

/// Errors of user commands: 409 `AlreadyExists`, 404 `NotFound`, 400 the rest.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum UserError {
    #[error("user already exists")]
    AlreadyExists,
    #[error("user not found")]
    NotFound,
    #[error("invalid username: {0}")]
    InvalidUsername(String),
    #[error("invalid email: {0}")]
    InvalidEmail(String),
    #[error("the stored password hash needs no upgrade")]
    NothingToUpgrade,
}

fn format_of(hash: &PasswordHash) -> String {
    match hash {
        PasswordHash::Phc { .. } => "phc".into(),
        PasswordHash::Keycloak { algorithm, .. } => algorithm.clone(),
    }
}

fn check_profile(p: &UserProfile) -> Result<(), UserError> {
    if let Some(email) = &p.email {
        let ok = email.len() <= 254
            && email.split_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'));
        if !ok || email.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(UserError::InvalidEmail(email.clone()));
        }
    }
    Ok(())
}

impl Aggregate for User {
    const KIND: StreamType = StreamType::User;
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;

    fn decide(&self, command: UserCommand, _now: DateTime<Utc>) -> Result<Vec<UserEvent>, UserError> {
        use UserCommand as C;
        Ok(match command {
            C::Create { realm_id, username, profile, created_timestamp, federation_link, extra } => {
                if self.lifecycle != Lifecycle::New {
                    return Err(UserError::AlreadyExists);
                }
                validate::name(&username).map_err(UserError::InvalidUsername)?;
                check_profile(&profile)?;
                vec![UserCreated { realm_id, username, profile, created_timestamp, federation_link, extra }.into()]
            }
            _ if self.lifecycle != Lifecycle::Live => return Err(UserError::NotFound),
            C::ChangeProfile { profile } if profile == self.profile => vec![],
            C::ChangeProfile { profile } => {
                check_profile(&profile)?;
                vec![UserProfileChanged { profile }.into()]
            }
            C::SetPassword { hash, temporary } => vec![UserPasswordSet { hash, temporary }.into()],
            C::UpgradePasswordHash { hash } => match self.password_format.as_deref() {
                Some(from) if from != "phc" => {
                    vec![UserPasswordHashUpgraded { from_algorithm: from.to_string(), hash }.into()]
                }
                _ => return Err(UserError::NothingToUpgrade),
            },
            // Grants and membership are set-like: repeating one changes nothing and records nothing.
            C::GrantRole { role_id } if self.roles.contains(&role_id) => vec![],
            C::GrantRole { role_id } => vec![UserRoleGranted { role_id }.into()],
            C::RevokeRole { role_id } if !self.roles.contains(&role_id) => vec![],
            C::RevokeRole { role_id } => vec![UserRoleRevoked { role_id }.into()],
            C::JoinGroup { group_id } if self.groups.contains(&group_id) => vec![],
            C::JoinGroup { group_id } => vec![UserJoinedGroup { group_id }.into()],
            C::LeaveGroup { group_id } if !self.groups.contains(&group_id) => vec![],
            C::LeaveGroup { group_id } => vec![UserLeftGroup { group_id }.into()],
            C::GrantConsent { client, scopes } => {
                let mut all = self.consents.get(&client).cloned().unwrap_or_default();
                let before = all.len();
                all.extend(scopes);
                match all.len() == before && self.consents.contains_key(&client) {
                    true => vec![],
                    false => vec![UserConsentGranted { client, scopes: all.into_iter().collect() }.into()],
                }
            }
            C::Delete => vec![UserDeleted {}.into()],
        })
    }

    fn apply(mut self, event: &UserEvent) -> Self {
        match event {
            UserEvent::Created(c) => {
                self.lifecycle = Lifecycle::Live;
                self.realm_id = c.realm_id.clone();
                self.username = c.username.clone();
                self.profile = c.profile.clone();
            }
            UserEvent::ProfileChanged(c) => self.profile = c.profile.clone(),
            UserEvent::PasswordSet(c) => self.password_format = Some(format_of(&c.hash)),
            UserEvent::PasswordHashUpgraded(c) => self.password_format = Some(format_of(&c.hash)),
            UserEvent::RoleGranted(c) => {
                self.roles.insert(c.role_id.clone());
            }
            UserEvent::RoleRevoked(c) => {
                self.roles.remove(&c.role_id);
            }
            UserEvent::JoinedGroup(c) => {
                self.groups.insert(c.group_id.clone());
            }
            UserEvent::LeftGroup(c) => {
                self.groups.remove(&c.group_id);
            }
            UserEvent::ConsentGranted(c) => {
                self.consents.insert(c.client.clone(), c.scopes.iter().cloned().collect());
            }
            UserEvent::Deleted(_) => self.lifecycle = Lifecycle::Deleted,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{given, now};

    fn created() -> UserEvent {
        UserCreated {
            realm_id: "r".into(),
            username: "ada".into(),
            profile: UserProfile { enabled: true, ..Default::default() },
            created_timestamp: None,
            federation_link: None,
            extra: Map::new(),
        }
        .into()
    }
    fn keycloak_hash() -> PasswordHash {
        PasswordHash::Keycloak {
            algorithm: "pbkdf2-sha256".into(),
            iterations: 27500,
            salt: "c2FsdA==".into(),
            value: "aGFzaA==".into(),
            additional_parameters: Default::default(),
        }
    }
    fn phc() -> PasswordHash {
        PasswordHash::Phc { phc: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into() }
    }

    #[test]
    fn given_nothing_when_created_with_bad_email_then_refused() {
        let cmd = UserCommand::Create {
            realm_id: "r".into(),
            username: "ada".into(),
            profile: UserProfile { email: Some("not an email".into()), ..Default::default() },
            created_timestamp: None,
            federation_link: None,
            extra: Map::new(),
        };
        assert!(matches!(given::<User>(vec![]).decide(cmd, now()), Err(UserError::InvalidEmail(_))));
    }

    #[test]
    fn given_a_user_when_a_role_is_granted_twice_then_one_event() {
        let u = given::<User>(vec![created()]);
        let first = u.clone().decide(UserCommand::GrantRole { role_id: "x".into() }, now()).unwrap();
        assert_eq!(first.len(), 1);
        let u = crate::domain::fold(u, &first);
        assert_eq!(u.decide(UserCommand::GrantRole { role_id: "x".into() }, now()), Ok(vec![]));
    }

    #[test]
    fn given_a_keycloak_hash_when_upgraded_then_the_old_algorithm_is_recorded() {
        let u = given::<User>(vec![created(), UserPasswordSet { hash: keycloak_hash(), temporary: false }.into()]);
        let out = u.decide(UserCommand::UpgradePasswordHash { hash: phc() }, now()).unwrap();
        assert_eq!(out, vec![UserPasswordHashUpgraded { from_algorithm: "pbkdf2-sha256".into(), hash: phc() }.into()]);
    }

    #[test]
    fn given_an_argon2id_hash_when_upgraded_then_nothing_to_upgrade() {
        let u = given::<User>(vec![created(), UserPasswordSet { hash: phc(), temporary: false }.into()]);
        assert_eq!(u.decide(UserCommand::UpgradePasswordHash { hash: phc() }, now()), Err(UserError::NothingToUpgrade));
    }

    #[test]
    fn given_a_deleted_user_when_anything_then_not_found() {
        let u = given::<User>(vec![created(), UserDeleted {}.into()]);
        assert_eq!(u.clone().decide(UserCommand::Delete, now()), Err(UserError::NotFound));
        assert_eq!(u.decide(UserCommand::JoinGroup { group_id: "g".into() }, now()), Err(UserError::NotFound));
    }

    #[test]
    fn given_a_member_when_leaving_then_left_and_leaving_again_is_a_no_op() {
        let u = given::<User>(vec![created(), UserJoinedGroup { group_id: "g".into() }.into()]);
        let out = u.clone().decide(UserCommand::LeaveGroup { group_id: "g".into() }, now()).unwrap();
        assert_eq!(out, vec![UserLeftGroup { group_id: "g".into() }.into()]);
        let u = crate::domain::fold(u, &out);
        assert_eq!(u.decide(UserCommand::LeaveGroup { group_id: "g".into() }, now()), Ok(vec![]));
    }

    #[test]
    fn given_a_user_when_consent_is_granted_then_it_adds_to_earlier_consent_and_repeats_record_nothing() {
        let created: UserEvent = UserCreated {
            realm_id: "r".into(),
            username: "ada".into(),
            profile: UserProfile::default(),
            created_timestamp: None,
            federation_link: None,
            extra: Map::new(),
        }
        .into();
        let grant = |scopes: &[&str]| UserCommand::GrantConsent {
            client: "c1".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        };
        let first = given::<User>(vec![created.clone()]).decide(grant(&["email"]), now()).unwrap();
        assert_eq!(first, vec![UserConsentGranted { client: "c1".into(), scopes: vec!["email".into()] }.into()]);
        let mut history = vec![created];
        history.extend(first);
        let more = given::<User>(history.clone()).decide(grant(&["profile"]), now()).unwrap();
        assert_eq!(
            more,
            vec![UserConsentGranted { client: "c1".into(), scopes: vec!["email".into(), "profile".into()] }.into()]
        );
        assert_eq!(given::<User>(history).decide(grant(&["email"]), now()).unwrap(), vec![], "already consented");
    }
}
