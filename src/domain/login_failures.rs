//! The LoginFailures aggregate: brute-force protection for one user or one source address,
//! by Keycloak's rules (realm `bruteForceProtected` settings):
//!
//! - failures within `maxDeltaTimeSeconds` of each other accumulate; a longer pause resets;
//! - every `failureFactor` failures lock for `waitIncrementSeconds` times the multiple;
//! - two failures closer than `quickLoginCheckMilliSeconds` lock for at least
//!   `minimumQuickLoginWaitSeconds`;
//! - no lock exceeds `maxFailureWaitSeconds`; with `permanentLockout`, reaching the failure
//!   factor locks until an administrator clears it.
use super::{Aggregate, Lifecycle};
use annals_events::login_failures::*;
use annals_events::realm::BruteForceSettings;
use annals_events::StreamType;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoginFailures {
    pub lifecycle: Lifecycle,
    pub failures: u32,
    pub last_failure_ms: i64,
    pub locked_until: Option<i64>,
    pub permanent: bool,
}

#[derive(Clone, Debug)]
pub enum LoginFailuresCommand {
    /// Changes nothing: asks for the state (is it locked?).
    Check,
    RecordFailure(BruteForceSettings),
    /// A successful login: the count starts again (a lock stays until it expires).
    Clear,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LoginFailuresError {}

/// The stream of a user's failures, and of a source address's.
pub fn user_key(realm_id: &str, user_id: &str) -> String {
    format!("{realm_id}:user:{user_id}")
}

pub fn address_key(realm_id: &str, address: &str) -> String {
    format!("{realm_id}:ip:{address}")
}

impl LoginFailures {
    /// Whether logins are refused at `now` (epoch seconds).
    pub fn locked(&self, now: i64) -> bool {
        self.permanent || self.locked_until.is_some_and(|u| now < u)
    }
}

impl Aggregate for LoginFailures {
    const KIND: StreamType = StreamType::LoginFailures;
    type Command = LoginFailuresCommand;
    type Event = LoginFailuresEvent;
    type Error = LoginFailuresError;

    fn decide(
        &self,
        command: LoginFailuresCommand,
        now: DateTime<Utc>,
    ) -> Result<Vec<LoginFailuresEvent>, LoginFailuresError> {
        let at_ms = now.timestamp_millis();
        match command {
            LoginFailuresCommand::Check => Ok(vec![]),
            LoginFailuresCommand::Clear if self.failures == 0 => Ok(vec![]),
            LoginFailuresCommand::Clear => Ok(vec![LoginFailuresCleared { at_ms }.into()]),
            LoginFailuresCommand::RecordFailure(s) => {
                if !s.enabled || self.locked(now.timestamp()) {
                    // Attempts during a lock are refused before any password check; they
                    // do not extend it (Keycloak does not either).
                    return Ok(vec![]);
                }
                let delta_ms = at_ms - self.last_failure_ms;
                let failures = match self.failures > 0 && delta_ms > i64::from(s.max_delta_time_seconds) * 1000 {
                    true => 1,
                    false => self.failures + 1,
                };
                let mut events: Vec<LoginFailuresEvent> = vec![LoginFailureRecorded { failures, at_ms }.into()];
                let factor = s.failure_factor.max(1);
                if s.permanent_lockout && failures >= factor {
                    events.push(LoginLockedOut { until: None, permanent: true, failures }.into());
                    return Ok(events);
                }
                let mut wait = i64::from(s.wait_increment_seconds) * i64::from(failures / factor);
                if self.failures > 0 && delta_ms >= 0 && (delta_ms as u64) < s.quick_login_check_milli_seconds {
                    wait = wait.max(i64::from(s.minimum_quick_login_wait_seconds));
                }
                let wait = wait.min(i64::from(s.max_failure_wait_seconds));
                if wait > 0 {
                    events.push(
                        LoginLockedOut { until: Some(now.timestamp() + wait), permanent: false, failures }.into(),
                    );
                }
                Ok(events)
            }
        }
    }

    fn apply(mut self, event: &LoginFailuresEvent) -> Self {
        self.lifecycle = Lifecycle::Live;
        match event {
            LoginFailuresEvent::Recorded(r) => {
                self.failures = r.failures;
                self.last_failure_ms = r.at_ms;
            }
            LoginFailuresEvent::LockedOut(l) => {
                self.locked_until = l.until;
                self.permanent = l.permanent;
            }
            LoginFailuresEvent::Cleared(_) => self.failures = 0,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fold;
    use crate::domain::testing::now;

    fn settings() -> BruteForceSettings {
        BruteForceSettings { enabled: true, failure_factor: 3, ..Default::default() }
    }

    /// Given failures at these offsets (ms), the state after them.
    fn after(offsets_ms: &[i64], s: &BruteForceSettings) -> (LoginFailures, Vec<LoginFailuresEvent>) {
        let mut state = LoginFailures::default();
        let mut all = Vec::new();
        for o in offsets_ms {
            let at = now() + chrono::Duration::milliseconds(*o);
            let events = state.decide(LoginFailuresCommand::RecordFailure(s.clone()), at).unwrap();
            state = fold(state, &events);
            all.extend(events);
        }
        (state, all)
    }

    #[test]
    fn given_slow_failures_when_the_factor_is_reached_then_the_wait_increment_applies() {
        let (state, events) = after(&[0, 5_000, 10_000], &settings());
        assert!(
            matches!(events.last(), Some(LoginFailuresEvent::LockedOut(l)) if l.until == Some(now().timestamp() + 10 + 60))
        );
        assert!(state.locked(now().timestamp() + 69) && !state.locked(now().timestamp() + 70));
        let (state, _) = after(&[0, 5_000], &settings());
        assert!(!state.locked(now().timestamp() + 5), "below the factor: no lock");
    }

    #[test]
    fn given_two_quick_failures_then_the_minimum_quick_wait_applies() {
        let (state, events) = after(&[0, 200], &settings());
        assert!(
            matches!(events.last(), Some(LoginFailuresEvent::LockedOut(l)) if l.until == Some(now().timestamp() + 60))
        );
        assert!(state.locked(now().timestamp() + 59));
    }

    #[test]
    fn given_a_long_pause_then_the_count_restarts_and_waits_are_capped() {
        let s = BruteForceSettings { max_delta_time_seconds: 10, ..settings() };
        let (state, _) = after(&[0, 5_000, 20_000], &s);
        assert_eq!(state.failures, 1);
        let capped = BruteForceSettings { wait_increment_seconds: 10_000, max_failure_wait_seconds: 900, ..settings() };
        let (_, events) = after(&[0, 5_000, 10_000], &capped);
        assert!(
            matches!(events.last(), Some(LoginFailuresEvent::LockedOut(l)) if l.until == Some(now().timestamp() + 10 + 900))
        );
    }

    #[test]
    fn given_permanent_lockout_then_the_factor_locks_for_good_and_success_does_not_unlock() {
        let s = BruteForceSettings { permanent_lockout: true, ..settings() };
        let (state, _) = after(&[0, 5_000, 10_000], &s);
        assert!(state.permanent && state.locked(now().timestamp() + 1_000_000));
        let cleared = fold(state.clone(), &state.decide(LoginFailuresCommand::Clear, now()).unwrap());
        assert!(cleared.locked(now().timestamp()));
    }

    #[test]
    fn given_protection_off_or_a_lock_in_force_then_nothing_is_recorded() {
        let off = BruteForceSettings { enabled: false, ..settings() };
        assert_eq!(after(&[0, 1, 2], &off).1, vec![]);
        let (state, _) = after(&[0, 100], &settings());
        let during =
            state.decide(LoginFailuresCommand::RecordFailure(settings()), now() + chrono::Duration::seconds(5));
        assert_eq!(during, Ok(vec![]));
    }
}
