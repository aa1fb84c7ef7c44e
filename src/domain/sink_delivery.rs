//! The SinkDelivery aggregate: what one audit sink's receiver refused for good. Delivery goes
//! past such a record only once the refusal is recorded here, so nothing leaves the SIEM's
//! view in silence; a record refused again (after a restart, or by a second node running the
//! same sink) is recorded once.
use super::{Aggregate, Lifecycle};
use annals_events::sink_delivery::*;
use annals_events::StreamType;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The receiver's reason is kept to this many characters: it is the receiver's text, and a
/// hostile or broken receiver must not grow the log by answering at length.
pub const REASON_MAX: usize = 300;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SinkDelivery {
    pub lifecycle: Lifecycle,
    /// Records refused so far.
    pub rejected: u64,
    /// Every position recorded as refused (few: each is a record a receiver refused).
    pub positions: std::collections::BTreeSet<u64>,
}

/// One refused record, as the sink saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    pub sink: String,
    pub position: u64,
    pub event_id: String,
    pub event_type: String,
    pub realm_id: Option<String>,
    pub status: Option<u16>,
    pub reason: String,
    pub attempts: u32,
}

#[derive(Clone, Debug)]
pub enum SinkDeliveryCommand {
    Reject(Rejection),
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SinkDeliveryError {}

/// The reason as recorded: one line of printable text, at most [`REASON_MAX`] characters.
pub fn tidy_reason(reason: &str) -> String {
    let one_line: String =
        reason.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_string();
    match one_line.char_indices().nth(REASON_MAX) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

impl Aggregate for SinkDelivery {
    const KIND: StreamType = StreamType::SinkDelivery;
    type Command = SinkDeliveryCommand;
    type Event = SinkDeliveryEvent;
    type Error = SinkDeliveryError;

    fn decide(&self, command: SinkDeliveryCommand, now: DateTime<Utc>) -> Result<Vec<SinkDeliveryEvent>, Self::Error> {
        let SinkDeliveryCommand::Reject(r) = command;
        // Recorded already (a restart, a second node, a replay to a new receiver): once.
        if self.positions.contains(&r.position) {
            return Ok(vec![]);
        }
        Ok(vec![SinkDeliveryRejected {
            sink: r.sink,
            position: r.position,
            event_id: r.event_id,
            event_type: r.event_type,
            realm_id: r.realm_id,
            status: r.status,
            reason: tidy_reason(&r.reason),
            attempts: r.attempts,
            at: now.timestamp(),
        }
        .into()])
    }

    fn apply(mut self, event: &SinkDeliveryEvent) -> Self {
        self.lifecycle = Lifecycle::Live;
        let SinkDeliveryEvent::Rejected(r) = event;
        self.rejected += 1;
        self.positions.insert(r.position);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{given, now};

    fn rejection(position: u64, reason: &str) -> SinkDeliveryCommand {
        SinkDeliveryCommand::Reject(Rejection {
            sink: "siem".into(),
            position,
            event_id: format!("id-{position}"),
            event_type: "session.started".into(),
            realm_id: Some("r".into()),
            status: Some(400),
            reason: reason.into(),
            attempts: 5,
        })
    }

    #[test]
    fn given_no_refusal_when_a_record_is_refused_then_it_is_recorded_with_the_receivers_reason() {
        let events = given::<SinkDelivery>(vec![]).decide(rejection(7, "bad field `x`"), now()).unwrap();
        let [SinkDeliveryEvent::Rejected(r)] = &events[..] else { panic!("{events:?}") };
        assert_eq!((r.position, r.event_id.as_str(), r.status, r.attempts), (7, "id-7", Some(400), 5));
        assert_eq!((r.reason.as_str(), r.at), ("bad field `x`", now().timestamp()));
        let state = given::<SinkDelivery>(events);
        assert_eq!((state.rejected, state.positions.len(), state.lifecycle), (1, 1, Lifecycle::Live));
    }

    #[test]
    fn given_a_recorded_refusal_when_the_same_record_is_refused_again_then_nothing_is_recorded() {
        let history = given::<SinkDelivery>(vec![]).decide(rejection(7, "no"), now()).unwrap();
        let state = given::<SinkDelivery>(history.clone());
        assert_eq!(state.decide(rejection(7, "no"), now()).unwrap(), vec![]);
        // An earlier record (the log replayed to a new receiver) is its own refusal.
        let earlier = state.decide(rejection(3, "no"), now()).unwrap();
        assert_eq!(earlier.len(), 1);
        let mut all = history;
        all.extend(earlier);
        let state = given::<SinkDelivery>(all);
        assert_eq!(state.rejected, 2);
        assert_eq!(state.decide(rejection(3, "no"), now()).unwrap(), vec![]);
    }

    #[test]
    fn given_a_receiver_answering_at_length_when_recorded_then_the_reason_is_one_short_line() {
        let long = format!("line one\r\nline\ttwo\u{1b}[31m {}", "é".repeat(1_000));
        let events = given::<SinkDelivery>(vec![]).decide(rejection(1, &long), now()).unwrap();
        let SinkDeliveryEvent::Rejected(r) = &events[0];
        assert!(r.reason.starts_with("line one  line two [31m é"), "{}", r.reason);
        assert_eq!(r.reason.chars().count(), REASON_MAX + 1, "cut, with an ellipsis");
        assert!(!r.reason.chars().any(char::is_control));
        assert_eq!(tidy_reason("  short \n"), "short");
    }
}
