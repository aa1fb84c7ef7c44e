//! The SsfStream aggregate: a Shared Signals stream's configuration, created once and deleted
//! once. Delivery itself is a projection of the log (see `crate::ssf`), not state here.
use super::{Aggregate, Lifecycle};
use annals_events::ssf_stream::*;
use annals_events::StreamType;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SsfStream {
    pub lifecycle: Lifecycle,
    pub realm_id: String,
    pub audience: String,
    pub method: String,
}

#[derive(Clone, Debug)]
pub enum SsfStreamCommand {
    Create(Box<SsfStreamCreated>),
    /// A new configuration from the stream's receiver (the method stays).
    Update {
        audience: String,
        update: Box<SsfStreamUpdated>,
    },
    /// The receiver asks for a verification SET carrying `state`.
    Verify {
        audience: String,
        state: Option<String>,
    },
    /// Deletes the stream of this realm and audience (a receiver may delete only its own).
    Delete {
        realm_id: String,
        audience: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SsfStreamError {
    #[error("the stream exists already")]
    Exists,
    #[error("no such stream")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
}

impl Aggregate for SsfStream {
    const KIND: StreamType = StreamType::SsfStream;
    type Command = SsfStreamCommand;
    type Event = SsfStreamEvent;
    type Error = SsfStreamError;

    fn decide(&self, command: SsfStreamCommand, now: DateTime<Utc>) -> Result<Vec<SsfStreamEvent>, SsfStreamError> {
        match command {
            SsfStreamCommand::Create(c) => {
                if self.lifecycle != Lifecycle::New {
                    return Err(SsfStreamError::Exists);
                }
                match (c.method.as_str(), &c.endpoint_url) {
                    (PUSH, Some(u)) if url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) => {}
                    (PUSH, _) => {
                        return Err(SsfStreamError::Invalid("push delivery needs an http(s) endpoint_url".into()))
                    }
                    (POLL, None) => {}
                    (POLL, Some(_)) => {
                        return Err(SsfStreamError::Invalid(
                            "poll delivery takes no endpoint_url: Annals assigns it".into(),
                        ))
                    }
                    (other, _) => {
                        return Err(SsfStreamError::Invalid(format!("delivery method {other:?} is not supported")))
                    }
                }
                Ok(vec![SsfStreamCreated { at: now.timestamp(), ..*c }.into()])
            }
            SsfStreamCommand::Update { audience, update } => {
                if self.lifecycle != Lifecycle::Live || audience != self.audience {
                    return Err(SsfStreamError::NotFound);
                }
                match (self.method.as_str(), &update.endpoint_url) {
                    (PUSH, Some(_)) | (POLL, None) => {}
                    (PUSH, None) => return Err(SsfStreamError::Invalid("push delivery needs an endpoint_url".into())),
                    _ => {
                        return Err(SsfStreamError::Invalid(
                            "poll delivery takes no endpoint_url: Annals assigns it".into(),
                        ))
                    }
                }
                Ok(vec![SsfStreamUpdated { at: now.timestamp(), ..*update }.into()])
            }
            SsfStreamCommand::Verify { audience, state } => {
                if self.lifecycle != Lifecycle::Live || audience != self.audience {
                    return Err(SsfStreamError::NotFound);
                }
                if state.as_ref().is_some_and(|s| s.len() > 256) {
                    return Err(SsfStreamError::Invalid("state: at most 256 characters".into()));
                }
                Ok(vec![SsfStreamVerificationRequested { state, at: now.timestamp() }.into()])
            }
            SsfStreamCommand::Delete { realm_id, audience } => {
                let mine = self.realm_id == realm_id && audience.is_none_or(|a| a == self.audience);
                if self.lifecycle != Lifecycle::Live || !mine {
                    return Err(SsfStreamError::NotFound);
                }
                Ok(vec![SsfStreamDeleted { at: now.timestamp() }.into()])
            }
        }
    }

    fn apply(mut self, event: &SsfStreamEvent) -> Self {
        match event {
            SsfStreamEvent::Created(c) => {
                self.lifecycle = Lifecycle::Live;
                self.realm_id.clone_from(&c.realm_id);
                self.audience.clone_from(&c.audience);
                self.method.clone_from(&c.method);
            }
            SsfStreamEvent::Updated(_) | SsfStreamEvent::VerificationRequested(_) => {}
            SsfStreamEvent::Deleted(_) => self.lifecycle = Lifecycle::Deleted,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{given, now};

    fn create(method: &str, url: Option<&str>) -> SsfStreamCommand {
        SsfStreamCommand::Create(Box::new(SsfStreamCreated {
            realm_id: "r".into(),
            audience: "receiver".into(),
            method: method.into(),
            endpoint_url: url.map(String::from),
            authorization: None,
            events_requested: vec![],
            description: None,
            at: 0,
        }))
    }

    #[test]
    fn given_nothing_when_a_push_or_poll_stream_is_created_then_it_is_live_and_cannot_be_created_twice() {
        let events = given::<SsfStream>(vec![]).decide(create(PUSH, Some("https://rx.example/ssf")), now()).unwrap();
        let [SsfStreamEvent::Created(c)] = &events[..] else { panic!("{events:?}") };
        assert_eq!(c.at, now().timestamp());
        let state = given::<SsfStream>(events);
        assert_eq!((state.lifecycle, state.audience.as_str()), (Lifecycle::Live, "receiver"));
        assert_eq!(state.decide(create(POLL, None), now()), Err(SsfStreamError::Exists));
        assert!(given::<SsfStream>(vec![]).decide(create(POLL, None), now()).is_ok());
    }

    #[test]
    fn given_a_bad_delivery_when_created_then_it_is_refused_with_the_reason() {
        for (method, url, says) in [
            (PUSH, None, "endpoint_url"),
            (PUSH, Some("ftp://x/"), "endpoint_url"),
            (POLL, Some("https://x/"), "assigns"),
            ("urn:example:smoke-signals", None, "not supported"),
        ] {
            let err = given::<SsfStream>(vec![]).decide(create(method, url), now()).unwrap_err().to_string();
            assert!(err.contains(says), "{method}: {err}");
        }
    }

    #[test]
    fn given_a_push_stream_when_its_receiver_updates_it_then_the_new_configuration_is_recorded() {
        let live = given::<SsfStream>(
            given::<SsfStream>(vec![]).decide(create(PUSH, Some("https://rx.example/a")), now()).unwrap(),
        );
        let update = |url: Option<&str>| SsfStreamUpdated {
            endpoint_url: url.map(String::from),
            authorization: None,
            events_requested: vec!["urn:x".into()],
            description: None,
            at: 0,
        };
        let mine = SsfStreamCommand::Update {
            audience: "receiver".into(),
            update: Box::new(update(Some("https://rx.example/b"))),
        };
        let events = live.decide(mine, now()).unwrap();
        assert!(
            matches!(&events[..], [SsfStreamEvent::Updated(u)] if u.endpoint_url.as_deref() == Some("https://rx.example/b"))
        );
        let theirs =
            SsfStreamCommand::Update { audience: "other".into(), update: Box::new(update(Some("https://x/"))) };
        assert_eq!(live.decide(theirs, now()), Err(SsfStreamError::NotFound));
        let no_url = SsfStreamCommand::Update { audience: "receiver".into(), update: Box::new(update(None)) };
        assert!(live.decide(no_url, now()).is_err(), "push keeps an endpoint");
    }

    #[test]
    fn given_a_stream_when_its_receiver_asks_for_verification_then_the_state_is_recorded() {
        let live = given::<SsfStream>(given::<SsfStream>(vec![]).decide(create(POLL, None), now()).unwrap());
        let ask = |who: &str, state: &str| SsfStreamCommand::Verify { audience: who.into(), state: Some(state.into()) };
        let events = live.decide(ask("receiver", "abc"), now()).unwrap();
        assert!(matches!(&events[..], [SsfStreamEvent::VerificationRequested(v)] if v.state.as_deref() == Some("abc")));
        assert_eq!(live.decide(ask("someone-else", "abc"), now()), Err(SsfStreamError::NotFound));
        assert!(live.decide(ask("receiver", &"x".repeat(257)), now()).is_err());
    }

    #[test]
    fn given_a_stream_when_deleted_by_another_receiver_or_twice_then_not_found() {
        let live = given::<SsfStream>(given::<SsfStream>(vec![]).decide(create(POLL, None), now()).unwrap());
        let other = SsfStreamCommand::Delete { realm_id: "r".into(), audience: Some("someone-else".into()) };
        assert_eq!(live.decide(other, now()), Err(SsfStreamError::NotFound));
        let own = SsfStreamCommand::Delete { realm_id: "r".into(), audience: Some("receiver".into()) };
        let deleted = live.decide(own.clone(), now()).unwrap();
        let gone = given::<SsfStream>(
            given::<SsfStream>(vec![]).decide(create(POLL, None), now()).unwrap().into_iter().chain(deleted).collect(),
        );
        assert_eq!(gone.decide(own, now()), Err(SsfStreamError::NotFound));
    }
}
