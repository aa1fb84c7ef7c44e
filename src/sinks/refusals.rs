//! Records a receiver refuses for their content. Each is sent again with backoff; once
//! refused [`REFUSAL_ATTEMPTS`] times, the refusal is recorded as a `sink_delivery.rejected`
//! event (which the sinks then deliver like any record) and delivery goes past it. Nothing is
//! passed over without that event, except a refused report of a refusal (any sink's): it is
//! not reported again, or two sinks refusing each other's reports would grow the log forever.
//! A receiver that refuses everything holds delivery: it may pass over one record before it
//! has taken any in this run (so a restart loop cannot skip records one run at a time), and
//! [`REFUSED_IN_ROW_MAX`] records in a row after that.
use crate::actors::Hosts;
use crate::domain::sink_delivery::{Rejection, SinkDelivery, SinkDeliveryCommand};
use crate::metrics;
use annals_events::{Actor, Metadata};
use annals_projections::audit::AuditRecord;

/// Sends of a record the receiver refuses before the refusal is recorded and delivery goes
/// past it: with the delivery loop's backoff, about four seconds.
const REFUSAL_ATTEMPTS: u32 = 5;
/// Records refused one after another with none taken between: past this many, the receiver
/// is broken rather than the records, and delivery holds (the lag grows) until it takes one.
const REFUSED_IN_ROW_MAX: u32 = 3;

/// What delivery does after a refusal.
pub enum Refused {
    /// Send the record again after the backoff.
    Retry,
    /// The refusal is recorded (or the record reports a refusal to this same sink): go on.
    Passed,
}

/// The record a receiver refuses while it is retried, and how many were refused in a row.
pub struct Refusals {
    current: Option<(u64, u32)>,
    in_row: u32,
}

impl Default for Refusals {
    /// A receiver not yet seen to take a record may pass over only one.
    fn default() -> Self {
        Refusals { current: None, in_row: REFUSED_IN_ROW_MAX - 1 }
    }
}

impl Refusals {
    /// Counts one refusal of the record at `position`: `Some(attempts)` once it was refused
    /// [`REFUSAL_ATTEMPTS`] times and may be recorded and gone past; `None` to send it again
    /// (also while the receiver refuses record after record).
    fn count(&mut self, position: u64) -> Option<u32> {
        let attempts = match &mut self.current {
            Some((p, n)) if *p == position => {
                *n += 1;
                *n
            }
            other => {
                *other = Some((position, 1));
                1
            }
        };
        (attempts >= REFUSAL_ATTEMPTS && self.in_row < REFUSED_IN_ROW_MAX).then_some(attempts)
    }

    /// The receiver took records: refusals before them no longer count as in a row.
    pub fn took(&mut self) {
        self.in_row = 0;
    }

    /// One refusal of `record`; once [`Refusals::count`] allows it, records the refusal as a
    /// `sink_delivery.rejected` event so that delivery may go past the record.
    pub async fn refused(
        &mut self,
        hosts: &Hosts,
        name: &str,
        record: &AuditRecord,
        status: Option<u16>,
        reason: &str,
    ) -> Refused {
        metrics::SINK_FAILURES.with_label_values(&[name]).inc();
        let (position, id) = (record.position, record.id.as_str());
        let Some(attempts) = self.count(position) else {
            if self.in_row >= REFUSED_IN_ROW_MAX {
                tracing::error!(
                    sink = name,
                    position,
                    event_id = id,
                    reason,
                    "receiver refuses record after record; delivery holds until it takes one"
                );
            } else {
                tracing::warn!(sink = name, position, event_id = id, reason, "receiver refused a record; retrying");
            }
            return Refused::Retry;
        };
        // A refused report of a refusal is not reported again: the reports of two sinks could
        // be refused in turn forever. The log holds it; the error line counts it.
        let report = record.annals_type == "sink_delivery.rejected";
        if !report {
            let rejection = Rejection {
                sink: name.to_string(),
                position,
                event_id: id.to_string(),
                event_type: record.annals_type.to_string(),
                realm_id: record.realm_id.clone(),
                status,
                reason: reason.to_string(),
                attempts,
            };
            let meta = Metadata {
                realm: record.realm_id.clone(),
                actor: Actor::System { component: "audit-sink".into() },
                ..Default::default()
            };
            if let Err(e) = hosts.execute::<SinkDelivery>(name, SinkDeliveryCommand::Reject(rejection), meta).await {
                tracing::error!(sink = name, position, error = %e, "a refused record cannot be recorded; retrying");
                return Refused::Retry;
            }
        }
        tracing::error!(sink = name, position, event_id = id, reason, report, "receiver refused a record for good");
        if !report {
            metrics::SINK_REJECTED.with_label_values(&[name]).inc();
        }
        self.current = None;
        self.in_row += 1;
        Refused::Passed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_refused_record_when_refused_again_then_it_is_recorded_at_the_fifth_refusal() {
        let mut r = Refusals::default();
        r.took();
        assert_eq!((1..=4).map(|_| r.count(7)).collect::<Vec<_>>(), vec![None; 4]);
        assert_eq!(r.count(7), Some(5));
        // another record starts its own count
        assert_eq!(r.count(8), None);
    }

    #[test]
    fn given_records_refused_in_a_row_when_another_is_refused_then_delivery_holds_until_one_is_taken() {
        let mut r = Refusals::default();
        r.took();
        for position in 1..=u64::from(REFUSED_IN_ROW_MAX) {
            let attempts = (0..REFUSAL_ATTEMPTS).filter_map(|_| r.count(position)).collect::<Vec<_>>();
            assert_eq!(attempts, vec![REFUSAL_ATTEMPTS], "record {position}");
            (r.current, r.in_row) = (None, r.in_row + 1);
        }
        let next = u64::from(REFUSED_IN_ROW_MAX) + 1;
        assert!((0..100).all(|_| r.count(next).is_none()), "a receiver refusing everything holds delivery");
        r.took();
        assert_eq!(r.count(next), Some(101), "once it takes one, refusals count again");
    }

    #[test]
    fn given_a_receiver_that_took_nothing_yet_when_it_refuses_then_only_one_record_is_passed_over() {
        let mut r = Refusals::default();
        assert_eq!((0..REFUSAL_ATTEMPTS).filter_map(|_| r.count(1)).collect::<Vec<_>>(), vec![REFUSAL_ATTEMPTS]);
        (r.current, r.in_row) = (None, r.in_row + 1);
        assert!((0..50).all(|_| r.count(2).is_none()), "a second refusal before anything is taken holds");
    }
}
