//! The LogoutDelivery aggregate: telling one client, by back-channel logout, that one session
//! ended. Each attempt is an event; a failure schedules the next attempt with exponential
//! backoff until [`MAX_ATTEMPTS`], then gives up (recorded too).
use super::{Aggregate, Lifecycle};
use annals_events::logout_delivery::*;
use annals_events::StreamType;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Attempts before giving up: with the backoff below, about eight and a half minutes.
pub const MAX_ATTEMPTS: u32 = 10;
/// The longest wait between two attempts (seconds).
const MAX_BACKOFF: i64 = 300;

/// Seconds to wait after failed attempt `attempt` (1-based): 1, 2, 4, ... capped.
pub fn backoff(attempt: u32) -> i64 {
    // The shift is bounded first: 1 << 63 is negative.
    (1i64 << attempt.saturating_sub(1).min(20)).min(MAX_BACKOFF)
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogoutDelivery {
    pub lifecycle: Lifecycle,
    pub attempts: u32,
    /// Delivered, or given up.
    pub finished: bool,
}

/// Where the delivery goes and what was sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub realm_id: String,
    pub session_id: String,
    pub client: String,
    pub url: String,
}

#[derive(Clone, Debug)]
pub enum LogoutDeliveryCommand {
    /// Changes nothing: asks for the state (before an attempt: another node may have
    /// finished the delivery while this node's read model has not shown it yet).
    Check,
    /// The client answered 2xx.
    Delivered { target: Target, status: u16, jti: String },
    /// The attempt failed; the aggregate decides whether another follows.
    Failed { target: Target, status: Option<u16>, error: String, jti: Option<String> },
    /// Nothing can be sent any more (the client or its URL is gone).
    Abandon { target: Target, error: String },
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LogoutDeliveryError {}

impl Aggregate for LogoutDelivery {
    const KIND: StreamType = StreamType::LogoutDelivery;
    type Command = LogoutDeliveryCommand;
    type Event = LogoutDeliveryEvent;
    type Error = LogoutDeliveryError;

    fn decide(
        &self,
        command: LogoutDeliveryCommand,
        now: DateTime<Utc>,
    ) -> Result<Vec<LogoutDeliveryEvent>, LogoutDeliveryError> {
        // Another node may have finished it meanwhile: nothing more to record.
        if self.finished || matches!(command, LogoutDeliveryCommand::Check) {
            return Ok(vec![]);
        }
        let (at, at_ms) = (now.timestamp(), now.timestamp_millis());
        let attempt = self.attempts + 1;
        Ok(vec![match command {
            LogoutDeliveryCommand::Check => unreachable!("answered above"),
            LogoutDeliveryCommand::Delivered { target: t, status, jti } => LogoutDeliveryDelivered {
                realm_id: t.realm_id,
                session_id: t.session_id,
                client: t.client,
                url: t.url,
                attempt,
                status,
                jti,
                at,
            }
            .into(),
            LogoutDeliveryCommand::Failed { target: t, status, error, jti } => LogoutDeliveryFailed {
                realm_id: t.realm_id,
                session_id: t.session_id,
                client: t.client,
                url: t.url,
                attempt,
                status,
                error,
                jti,
                retry_at_ms: (attempt < MAX_ATTEMPTS).then(|| at_ms + backoff(attempt) * 1000),
                at,
            }
            .into(),
            LogoutDeliveryCommand::Abandon { target: t, error } => LogoutDeliveryFailed {
                realm_id: t.realm_id,
                session_id: t.session_id,
                client: t.client,
                url: t.url,
                attempt,
                status: None,
                error,
                jti: None,
                retry_at_ms: None,
                at,
            }
            .into(),
        }])
    }

    fn apply(mut self, event: &LogoutDeliveryEvent) -> Self {
        self.lifecycle = Lifecycle::Live;
        match event {
            LogoutDeliveryEvent::Delivered(d) => {
                self.attempts = d.attempt;
                self.finished = true;
            }
            LogoutDeliveryEvent::Failed(f) => {
                self.attempts = f.attempt;
                self.finished = f.retry_at_ms.is_none();
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{given, now};

    fn target() -> Target {
        Target { realm_id: "r".into(), session_id: "s".into(), client: "c".into(), url: "https://rp/bc".into() }
    }

    fn failed() -> LogoutDeliveryCommand {
        LogoutDeliveryCommand::Failed { target: target(), status: Some(503), error: "HTTP 503".into(), jti: None }
    }

    #[test]
    fn given_failures_when_retried_then_each_waits_twice_as_long_up_to_a_cap_and_then_gives_up() {
        assert_eq!((1..=10).map(backoff).collect::<Vec<_>>(), vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(backoff(64), 300);
        let mut history = Vec::new();
        for attempt in 1..=MAX_ATTEMPTS {
            let events = given::<LogoutDelivery>(history.clone()).decide(failed(), now()).unwrap();
            let [LogoutDeliveryEvent::Failed(f)] = &events[..] else { panic!("{events:?}") };
            assert_eq!(f.attempt, attempt);
            let expected = (attempt < MAX_ATTEMPTS).then(|| now().timestamp_millis() + backoff(attempt) * 1000);
            assert_eq!(f.retry_at_ms, expected, "attempt {attempt}");
            history.extend(events);
        }
        let state = given::<LogoutDelivery>(history);
        assert!(state.finished);
        assert_eq!(state.decide(failed(), now()).unwrap(), vec![], "given up: nothing more");
    }

    #[test]
    fn given_a_failure_when_delivered_then_finished_and_later_reports_record_nothing() {
        let history = given::<LogoutDelivery>(vec![]).decide(failed(), now()).unwrap();
        let ok = LogoutDeliveryCommand::Delivered { target: target(), status: 204, jti: "j".into() };
        let events = given::<LogoutDelivery>(history.clone()).decide(ok.clone(), now()).unwrap();
        assert!(matches!(&events[..], [LogoutDeliveryEvent::Delivered(d)] if d.attempt == 2 && d.status == 204));
        let mut all = history;
        all.extend(events);
        assert_eq!(given::<LogoutDelivery>(all).decide(ok, now()).unwrap(), vec![]);
    }

    #[test]
    fn given_a_client_without_url_when_abandoned_then_no_retry_is_scheduled() {
        let cmd = LogoutDeliveryCommand::Abandon { target: target(), error: "no back-channel URL".into() };
        let events = given::<LogoutDelivery>(vec![]).decide(cmd, now()).unwrap();
        assert!(matches!(&events[..], [LogoutDeliveryEvent::Failed(f)] if f.retry_at_ms.is_none()));
        assert!(given::<LogoutDelivery>(events).finished);
    }
}
