//! The events this node's writer committed last, kept in memory so that the read models that
//! follow the log (`EventStore::read_all_payloads`) take them from here instead of reading them
//! back from the database. Verification, tails and sinks (`read_all`) still read the database.
//!
//! Every read model wakes on every commit; reading back what was just written cost a
//! round trip to SQLite's connection thread (a read transaction that also discards the
//! connection's page cache after each write) for each model and each commit, about a sixth
//! of a client-credentials token's cost. The writer has every field of those rows already.
//!
//! Only a contiguous run of positions is ever served: commits of another node (PostgreSQL)
//! or another process (SQLite) are not here, so a position missing from the window sends the
//! reader to the database, which is the authority. Rows enter only after their COMMIT
//! succeeded, so nothing here can be absent from the database; whether a row is durable yet
//! is the reader's `until` to decide, as with rows read from the database.
use annals_events::RecordedEvent;
use std::collections::VecDeque;
use std::sync::Mutex;

/// How many events the window holds. A read model more than this far behind (a rebuild, a
/// burst it could not follow) reads from the database, as it always did.
pub(crate) const WINDOW: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct Recent {
    rows: Mutex<VecDeque<RecordedEvent>>,
}

impl Recent {
    /// Adds a committed batch (positions ascending, after everything held).
    pub fn push(&self, batch: Vec<RecordedEvent>) {
        if batch.is_empty() {
            return;
        }
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        // A batch that does not follow what is held (positions reused after a restore, a
        // bug) must not leave an out-of-order window: start over from it.
        if rows.back().is_some_and(|last| last.position >= batch[0].position) {
            rows.clear();
        }
        rows.extend(batch);
        let excess = rows.len().saturating_sub(WINDOW);
        rows.drain(..excess);
    }

    /// The events from `after + 1` on, at most `limit`, if the window holds `after + 1`: a run
    /// with no gap in positions (it ends at the first position another writer took). `None`
    /// when the window does not hold `after + 1`: the caller reads the database.
    pub fn after(&self, after: u64, limit: usize) -> Option<Vec<RecordedEvent>> {
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let first = rows.front()?.position;
        let next = after.checked_add(1)?;
        if next < first {
            return None;
        }
        let start = rows.binary_search_by_key(&next, |r| r.position).ok()?;
        let mut out = Vec::new();
        for r in rows.range(start..).take(limit) {
            if r.position != next + out.len() as u64 {
                break;
            }
            out.push(r.clone());
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals_events::{StreamId, StreamType};
    use chrono::Utc;

    fn row(position: u64) -> RecordedEvent {
        RecordedEvent {
            event_id: uuid::Uuid::now_v7(),
            stream: StreamId::new(StreamType::User, "u"),
            version: position,
            position,
            recorded_at: Utc::now(),
            event_type: "user.created".into(),
            schema_version: 1,
            payload: "{}".into(),
            metadata: "{}".into(),
            prev_hash: [0; 32],
            hash: [0; 32],
        }
    }

    fn positions(v: Option<Vec<RecordedEvent>>) -> Option<Vec<u64>> {
        v.map(|v| v.iter().map(|r| r.position).collect())
    }

    #[test]
    fn given_an_empty_window_when_asked_then_the_database_answers() {
        assert_eq!(positions(Recent::default().after(0, 10)), None);
    }

    #[test]
    fn given_commits_when_asked_after_a_held_position_then_the_rest_comes_in_order_up_to_the_limit() {
        let r = Recent::default();
        r.push((1..=3).map(row).collect());
        r.push((4..=6).map(row).collect());
        assert_eq!(positions(r.after(0, 100)), Some(vec![1, 2, 3, 4, 5, 6]));
        assert_eq!(positions(r.after(2, 2)), Some(vec![3, 4]));
        // Past the window's end: another writer may have committed there.
        assert_eq!(positions(r.after(6, 10)), None);
    }

    #[test]
    fn given_a_position_before_the_window_when_asked_then_the_database_answers() {
        let r = Recent::default();
        r.push((10..=12).map(row).collect());
        assert_eq!(positions(r.after(5, 10)), None);
        assert_eq!(positions(r.after(9, 10)), Some(vec![10, 11, 12]));
    }

    #[test]
    fn given_another_writers_commit_between_ours_when_asked_then_the_run_stops_at_the_gap() {
        let r = Recent::default();
        r.push((1..=3).map(row).collect());
        // Positions 4 and 5 were taken by another node.
        r.push((6..=7).map(row).collect());
        assert_eq!(positions(r.after(0, 10)), Some(vec![1, 2, 3]));
        assert_eq!(positions(r.after(3, 10)), None);
        assert_eq!(positions(r.after(5, 10)), Some(vec![6, 7]));
    }

    #[test]
    fn given_more_than_the_window_when_pushed_then_the_oldest_leave_it() {
        let r = Recent::default();
        r.push((1..=WINDOW as u64 + 10).map(row).collect());
        assert_eq!(positions(r.after(5, 1)), None);
        assert_eq!(positions(r.after(10, 1)), Some(vec![11]));
    }

    #[test]
    fn given_a_batch_that_does_not_follow_when_pushed_then_the_window_restarts_from_it() {
        let r = Recent::default();
        r.push((1..=5).map(row).collect());
        r.push((3..=4).map(row).collect());
        assert_eq!(positions(r.after(0, 10)), None);
        assert_eq!(positions(r.after(2, 10)), Some(vec![3, 4]));
    }
}
