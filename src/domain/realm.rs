//! The Realm aggregate.
use super::{validate, Aggregate, Lifecycle};
use annals_events::realm::*;
use annals_events::StreamType;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Realm {
    pub lifecycle: Lifecycle,
    pub name: String,
    pub settings: RealmSettings,
}

#[derive(Clone, Debug)]
pub enum RealmCommand {
    Create { name: String, settings: RealmSettings, extra: Map<String, Value> },
    ChangeSettings { settings: RealmSettings, extra: Map<String, Value> },
    Delete,
}

/// Errors of realm commands; the admin API answers 409 for `AlreadyExists`, 404 for
/// `NotFound`, 400 for the rest.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RealmError {
    #[error("realm already exists")]
    AlreadyExists,
    #[error("realm not found")]
    NotFound,
    #[error("invalid realm name: {0}")]
    InvalidName(String),
    #[error("invalid realm settings: {0}")]
    InvalidSettings(String),
    #[error("the master realm cannot be deleted")]
    MasterRealm,
}

fn check_settings(s: &RealmSettings) -> Result<(), RealmError> {
    let bad = |m: &str| Err(RealmError::InvalidSettings(m.into()));
    if s.access_token_lifespan == 0 || s.sso_session_idle_timeout == 0 || s.sso_session_max_lifespan == 0 {
        return bad("lifespans and timeouts must be positive");
    }
    if s.brute_force.enabled && s.brute_force.failure_factor == 0 {
        return bad("brute force failure factor must be at least 1");
    }
    if !matches!(
        s.default_signature_algorithm.as_str(),
        "RS256" | "ES256" | "EdDSA" | "PS256" | "RS384" | "RS512" | "ES384"
    ) {
        return bad("unsupported default signature algorithm");
    }
    Ok(())
}

impl Aggregate for Realm {
    const KIND: StreamType = StreamType::Realm;
    type Command = RealmCommand;
    type Event = RealmEvent;
    type Error = RealmError;

    fn decide(&self, command: RealmCommand, _now: DateTime<Utc>) -> Result<Vec<RealmEvent>, RealmError> {
        match (self.lifecycle, command) {
            (Lifecycle::New, RealmCommand::Create { name, settings, extra }) => {
                validate::url_segment(&name).map_err(RealmError::InvalidName)?;
                check_settings(&settings)?;
                Ok(vec![RealmCreated { name, settings, extra }.into()])
            }
            (_, RealmCommand::Create { .. }) => Err(RealmError::AlreadyExists),
            (Lifecycle::Live, RealmCommand::ChangeSettings { settings, extra }) => {
                check_settings(&settings)?;
                if settings == self.settings && extra.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![RealmSettingsChanged { settings, extra }.into()])
            }
            (Lifecycle::Live, RealmCommand::Delete) if self.name == "master" => Err(RealmError::MasterRealm),
            (Lifecycle::Live, RealmCommand::Delete) => Ok(vec![RealmDeleted {}.into()]),
            (_, _) => Err(RealmError::NotFound),
        }
    }

    fn apply(mut self, event: &RealmEvent) -> Self {
        match event {
            RealmEvent::Created(c) => {
                self.lifecycle = Lifecycle::Live;
                self.name = c.name.clone();
                self.settings = c.settings.clone();
            }
            RealmEvent::SettingsChanged(c) => self.settings = c.settings.clone(),
            RealmEvent::Deleted(_) => self.lifecycle = Lifecycle::Deleted,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{given, now};

    fn created(name: &str) -> RealmEvent {
        RealmCreated { name: name.into(), settings: RealmSettings::default(), extra: Map::new() }.into()
    }

    #[test]
    fn given_nothing_when_created_then_realm_created() {
        let out = given::<Realm>(vec![])
            .decide(
                RealmCommand::Create { name: "acme".into(), settings: RealmSettings::default(), extra: Map::new() },
                now(),
            )
            .unwrap();
        assert_eq!(out, vec![created("acme")]);
    }

    #[test]
    fn given_a_realm_when_created_again_then_already_exists() {
        let cmd = RealmCommand::Create { name: "acme".into(), settings: RealmSettings::default(), extra: Map::new() };
        assert_eq!(given::<Realm>(vec![created("acme")]).decide(cmd, now()), Err(RealmError::AlreadyExists));
    }

    #[test]
    fn given_nothing_when_created_with_a_path_name_then_refused() {
        let cmd = RealmCommand::Create { name: "a/../b".into(), settings: RealmSettings::default(), extra: Map::new() };
        assert!(matches!(given::<Realm>(vec![]).decide(cmd, now()), Err(RealmError::InvalidName(_))));
    }

    #[test]
    fn given_a_realm_when_settings_unchanged_then_no_event() {
        let cmd = RealmCommand::ChangeSettings { settings: RealmSettings::default(), extra: Map::new() };
        assert_eq!(given::<Realm>(vec![created("acme")]).decide(cmd, now()), Ok(vec![]));
    }

    #[test]
    fn given_a_realm_when_lifespan_zero_then_refused() {
        let settings = RealmSettings { access_token_lifespan: 0, ..Default::default() };
        let cmd = RealmCommand::ChangeSettings { settings, extra: Map::new() };
        assert!(matches!(
            given::<Realm>(vec![created("acme")]).decide(cmd, now()),
            Err(RealmError::InvalidSettings(_))
        ));
    }

    #[test]
    fn given_master_when_deleted_then_refused_and_others_delete() {
        assert_eq!(
            given::<Realm>(vec![created("master")]).decide(RealmCommand::Delete, now()),
            Err(RealmError::MasterRealm)
        );
        let r = given::<Realm>(vec![created("acme")]);
        let out = r.clone().decide(RealmCommand::Delete, now()).unwrap();
        let r = crate::domain::fold(r, &out);
        assert_eq!(r.lifecycle, Lifecycle::Deleted);
        assert_eq!(r.decide(RealmCommand::Delete, now()), Err(RealmError::NotFound));
    }
}
