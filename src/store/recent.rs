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
//! reader to the database, which is the authority. Rows enter after their COMMIT succeeded
//! but are served only once this writer's flush has made them durable: a PostgreSQL commit
//! is asynchronous, and one that a crash of the database then took back (its positions
//! reused by another node) must never reach a read model. Any failed commit or flush empties
//! the window, as does a batch whose positions do not follow it.
use annals_events::RecordedEvent;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// How many events the window holds. A read model more than this far behind (a rebuild, a
/// burst it could not follow) reads from the database, as it always did.
pub(crate) const WINDOW: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct Recent {
    rows: Mutex<VecDeque<RecordedEvent>>,
    /// The last position this writer's flushes have made durable.
    durable: AtomicU64,
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

    /// Everything committed up to `position` is durable (a flush succeeded after it).
    pub fn durable(&self, position: u64) {
        self.durable.fetch_max(position, Ordering::AcqRel);
    }

    /// Forgets every row: a commit or flush failed, so what was committed may be lost.
    pub fn clear(&self) {
        self.rows.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The events from `after + 1` on, at most `limit`, if the window holds `after + 1` and it
    /// is durable: a run with no gap in positions (it ends at the first position another
    /// writer took, or at the first not yet flushed). `None` otherwise: the caller reads the
    /// database.
    pub fn after(&self, after: u64, limit: usize) -> Option<Vec<RecordedEvent>> {
        let durable = self.durable.load(Ordering::Acquire);
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let first = rows.front()?.position;
        let next = after.checked_add(1).filter(|n| *n <= durable)?;
        if next < first {
            return None;
        }
        let start = rows.binary_search_by_key(&next, |r| r.position).ok()?;
        let run = rows
            .range(start..)
            .take(limit)
            .enumerate()
            .take_while(|(i, r)| r.position == next + *i as u64 && r.position <= durable)
            .count();
        Some(rows.range(start..start + run).cloned().collect())
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

    /// A window whose rows are all durable.
    fn flushed(batches: &[std::ops::RangeInclusive<u64>]) -> Recent {
        let r = Recent::default();
        for b in batches {
            r.push(b.clone().map(row).collect());
            r.durable(*b.end());
        }
        r
    }

    #[test]
    fn given_an_empty_window_when_asked_then_the_database_answers() {
        assert_eq!(positions(Recent::default().after(0, 10)), None);
    }

    #[test]
    fn given_commits_not_yet_flushed_when_asked_then_only_the_durable_ones_are_served() {
        let r = flushed(&[1..=3]);
        r.push((4..=6).map(row).collect());
        assert_eq!(positions(r.after(0, 10)), Some(vec![1, 2, 3]));
        assert_eq!(positions(r.after(3, 10)), None);
        r.durable(6);
        assert_eq!(positions(r.after(3, 10)), Some(vec![4, 5, 6]));
    }

    #[test]
    fn given_a_failed_flush_when_the_window_is_cleared_then_nothing_of_it_is_served() {
        let r = flushed(&[1..=3]);
        r.push((4..=6).map(row).collect());
        r.clear();
        // A later flush (after the database came back) covers positions another node reused.
        r.durable(6);
        assert_eq!(positions(r.after(3, 10)), None);
        assert_eq!(positions(r.after(0, 10)), None);
    }

    #[test]
    fn given_commits_when_asked_after_a_held_position_then_the_rest_comes_in_order_up_to_the_limit() {
        let r = flushed(&[1..=3, 4..=6]);
        assert_eq!(positions(r.after(0, 100)), Some(vec![1, 2, 3, 4, 5, 6]));
        assert_eq!(positions(r.after(2, 2)), Some(vec![3, 4]));
        // Past the window's end: another writer may have committed there.
        assert_eq!(positions(r.after(6, 10)), None);
    }

    #[test]
    fn given_a_position_before_the_window_when_asked_then_the_database_answers() {
        let r = flushed(&[10..=12]);
        assert_eq!(positions(r.after(5, 10)), None);
        assert_eq!(positions(r.after(9, 10)), Some(vec![10, 11, 12]));
    }

    #[test]
    fn given_another_writers_commit_between_ours_when_asked_then_the_run_stops_at_the_gap() {
        // Positions 4 and 5 were taken by another node.
        let r = flushed(&[1..=3, 6..=7]);
        assert_eq!(positions(r.after(0, 10)), Some(vec![1, 2, 3]));
        assert_eq!(positions(r.after(3, 10)), None);
        assert_eq!(positions(r.after(5, 10)), Some(vec![6, 7]));
    }

    #[test]
    fn given_more_than_the_window_when_pushed_then_the_oldest_leave_it() {
        let r = flushed(&[1..=WINDOW as u64 + 10]);
        assert_eq!(positions(r.after(5, 1)), None);
        assert_eq!(positions(r.after(10, 1)), Some(vec![11]));
    }

    #[test]
    fn given_a_batch_that_does_not_follow_when_pushed_then_the_window_restarts_from_it() {
        let r = flushed(&[1..=5, 3..=4]);
        assert_eq!(positions(r.after(0, 10)), None);
        assert_eq!(positions(r.after(2, 10)), Some(vec![3, 4]));
    }
}
