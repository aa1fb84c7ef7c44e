//! Pure planning of one group-commit batch: idempotency, version checks, positions and hashes.
//! The backends only fetch the facts this needs and insert the rows it returns.
use super::{Appended, ExpectedVersion, StoreError, StreamAppend};
use annals_events::chain::{event_hash, Hash};
use annals_events::{RecordedEvent, StreamId};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use uuid::Uuid;

/// An event already in the log, found by id.
#[derive(Clone, Debug)]
pub struct Existing {
    pub stream: StreamId,
    pub version: u64,
    pub position: u64,
}

/// What the database says before the batch.
#[derive(Debug, Default)]
pub struct Facts {
    pub head_position: u64,
    pub head_hash: Hash,
    pub existing: HashMap<Uuid, Existing>,
    pub versions: HashMap<StreamId, u64>,
}

/// One row of a backend's facts query: `kind` 0 = head (position, hash), 1 = an event id
/// that already exists (position, id, stream, version), 2 = a stream's version.
pub struct FactRow {
    pub kind: i64,
    pub position: Option<i64>,
    pub hash: Option<Vec<u8>>,
    pub event_id: Option<Uuid>,
    pub stream_type: Option<String>,
    pub stream_id: Option<String>,
    pub version: Option<i64>,
}

impl Facts {
    /// Adds one facts-query row; the backends differ only in how they read the columns.
    pub fn add(&mut self, row: FactRow) -> Result<(), StoreError> {
        let position = row.position.unwrap_or(0) as u64;
        let corrupt = |reason: String| StoreError::Corrupt { position, reason };
        let stream = |t: Option<String>, id: Option<String>| -> Result<StreamId, StoreError> {
            let t = t.ok_or_else(|| corrupt("stream type missing".into()))?;
            let kind = t.parse().map_err(|e: annals_events::stream::UnknownStreamType| corrupt(e.to_string()))?;
            Ok(StreamId::new(kind, id.ok_or_else(|| corrupt("stream id missing".into()))?))
        };
        match row.kind {
            0 => {
                self.head_position = position;
                let h = row.hash.ok_or_else(|| corrupt("hash missing".into()))?;
                self.head_hash = h.try_into().map_err(|_| corrupt("hash is not 32 bytes".into()))?;
            }
            1 => {
                let id = row.event_id.ok_or_else(|| corrupt("event id missing".into()))?;
                let version = row.version.unwrap_or(0) as u64;
                self.existing
                    .insert(id, Existing { stream: stream(row.stream_type, row.stream_id)?, version, position });
            }
            _ => {
                // A stream type this build does not know cannot be one the batch appends to.
                if let Ok(s) = stream(row.stream_type, row.stream_id) {
                    self.versions.insert(s, row.version.unwrap_or(0) as u64);
                }
            }
        }
        Ok(())
    }
}

/// One request's outcome.
pub type Outcome = Result<Vec<Appended>, StoreError>;

/// Plans a batch. Requests are independent: one request's conflict does not affect another's.
/// Within a request, appends are all-or-nothing.
pub fn plan(requests: &[&[StreamAppend]], mut facts: Facts, now: DateTime<Utc>) -> (Vec<RecordedEvent>, Vec<Outcome>) {
    let mut rows: Vec<RecordedEvent> = Vec::new();
    let mut outcomes = Vec::with_capacity(requests.len());
    let micros = now.timestamp_micros();
    let recorded_at = DateTime::from_timestamp_micros(micros).unwrap_or(now);
    for appends in requests {
        if let Err(e) = validate(appends) {
            outcomes.push(Err(e));
            continue;
        }
        match replayed(appends, &facts) {
            Ok(Some(done)) => {
                outcomes.push(Ok(done));
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                outcomes.push(Err(e));
                continue;
            }
        }
        if let Err(e) = check_versions(appends, &facts) {
            outcomes.push(Err(e));
            continue;
        }
        let mut done = Vec::with_capacity(appends.len());
        for a in appends.iter() {
            let current = facts.versions.get(&a.stream).copied().unwrap_or(0);
            let first_position = facts.head_position + 1;
            for (i, e) in a.events.iter().enumerate() {
                let mut row = RecordedEvent {
                    event_id: e.event_id,
                    stream: a.stream.clone(),
                    version: current + 1 + i as u64,
                    position: facts.head_position + 1,
                    recorded_at,
                    event_type: e.event_type.clone(),
                    schema_version: e.schema_version,
                    payload: e.payload.clone(),
                    metadata: e.metadata.clone(),
                    prev_hash: facts.head_hash,
                    hash: [0; 32],
                };
                row.hash = event_hash(&row.prev_hash, &row.chain_input());
                facts.head_position = row.position;
                facts.head_hash = row.hash;
                facts.existing.insert(
                    e.event_id,
                    Existing { stream: a.stream.clone(), version: row.version, position: row.position },
                );
                rows.push(row);
            }
            let last_version = current + a.events.len() as u64;
            facts.versions.insert(a.stream.clone(), last_version);
            done.push(Appended {
                stream: a.stream.clone(),
                first_version: current + 1,
                last_version,
                first_position,
                last_position: facts.head_position,
            });
        }
        outcomes.push(Ok(done));
    }
    (rows, outcomes)
}

/// Shape checks that must hold before anything else looks at a request: they keep one bad
/// request from failing the database statement the whole batch shares.
pub fn validate(appends: &[StreamAppend]) -> Result<(), StoreError> {
    let mut ids = std::collections::HashSet::new();
    let mut streams = std::collections::HashSet::new();
    for a in appends {
        if a.events.is_empty() {
            return Err(StoreError::Invalid(format!("append to {} has no events", a.stream)));
        }
        let id = &a.stream.id;
        if id.is_empty() || id.len() > 255 || id.chars().any(char::is_control) {
            return Err(StoreError::Invalid("stream id must be 1..=255 bytes without control characters".into()));
        }
        if !streams.insert(&a.stream) {
            return Err(StoreError::Invalid(format!("{} appears twice in one atomic append", a.stream)));
        }
        for e in &a.events {
            if !ids.insert(e.event_id) {
                return Err(StoreError::Invalid(format!("event id {} appears twice in one append", e.event_id)));
            }
            if e.event_type.is_empty() || e.payload.contains('\0') || e.metadata.contains('\0') {
                return Err(StoreError::Invalid(format!("event {} has no type or contains NUL", e.event_id)));
            }
        }
    }
    Ok(())
}

/// A retried request whose events are all stored already gets the original result.
fn replayed(appends: &[StreamAppend], facts: &Facts) -> Result<Option<Vec<Appended>>, StoreError> {
    let total: usize = appends.iter().map(|a| a.events.len()).sum();
    let found: Vec<&Existing> =
        appends.iter().flat_map(|a| a.events.iter()).filter_map(|e| facts.existing.get(&e.event_id)).collect();
    if found.is_empty() {
        return Ok(None);
    }
    let first_missing_or_moved = appends
        .iter()
        .flat_map(|a| a.events.iter().map(move |e| (a, e)))
        .find(|(a, e)| facts.existing.get(&e.event_id).is_none_or(|x| x.stream != a.stream));
    if found.len() != total || first_missing_or_moved.is_some() {
        let event_id = first_missing_or_moved.map(|(_, e)| e.event_id).unwrap_or_else(|| appends[0].events[0].event_id);
        return Err(StoreError::IdempotencyMismatch { event_id });
    }
    Ok(Some(
        appends
            .iter()
            .map(|a| {
                let first = &facts.existing[&a.events[0].event_id];
                let last = &facts.existing[&a.events[a.events.len() - 1].event_id];
                Appended {
                    stream: a.stream.clone(),
                    first_version: first.version,
                    last_version: last.version,
                    first_position: first.position,
                    last_position: last.position,
                }
            })
            .collect(),
    ))
}

fn check_versions(appends: &[StreamAppend], facts: &Facts) -> Result<(), StoreError> {
    for a in appends {
        let actual = facts.versions.get(&a.stream).copied().unwrap_or(0);
        if let ExpectedVersion::Exact(v) = a.expected {
            if v != actual {
                return Err(StoreError::Conflict { stream: a.stream.clone(), expected: a.expected, actual });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals_events::chain::GENESIS;
    use annals_events::{NewEvent, StreamType};

    fn ev() -> NewEvent {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "user.deleted".into(),
            schema_version: 1,
            payload: "{}".into(),
            metadata: "{}".into(),
        }
    }
    fn stream(id: &str) -> StreamId {
        StreamId::new(StreamType::User, id)
    }
    fn append(id: &str, expected: u64, n: usize) -> StreamAppend {
        StreamAppend {
            stream: stream(id),
            expected: ExpectedVersion::Exact(expected),
            events: (0..n).map(|_| ev()).collect(),
        }
    }
    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    #[test]
    fn given_an_empty_log_when_two_requests_append_then_positions_and_chain_are_contiguous() {
        let a = [append("a", 0, 2)];
        let b = [append("b", 0, 1)];
        let (rows, out) = plan(&[&a, &b], Facts::default(), now());
        assert_eq!(rows.iter().map(|r| r.position).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(rows[0].prev_hash, GENESIS);
        assert_eq!(rows[1].prev_hash, rows[0].hash);
        assert_eq!(rows[2].prev_hash, rows[1].hash);
        assert_eq!(out[0].as_ref().unwrap()[0].last_version, 2);
        assert_eq!(out[1].as_ref().unwrap()[0].first_position, 3);
    }

    #[test]
    fn given_a_stale_expected_version_when_planned_then_only_that_request_conflicts() {
        let mut facts = Facts::default();
        facts.versions.insert(stream("a"), 3);
        facts.head_position = 10;
        let stale = [append("a", 2, 1)];
        let fine = [append("b", 0, 1)];
        let (rows, out) = plan(&[&stale, &fine], facts, now());
        assert!(matches!(out[0], Err(StoreError::Conflict { actual: 3, .. })));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].position, 11);
    }

    #[test]
    fn given_two_requests_for_one_stream_in_a_batch_then_the_second_sees_the_first() {
        let first = [append("a", 0, 1)];
        let second_same_expectation = [append("a", 0, 1)];
        let second_aware = [append("a", 1, 1)];
        let (rows, out) = plan(&[&first, &second_same_expectation, &second_aware], Facts::default(), now());
        assert!(out[0].is_ok());
        assert!(matches!(out[1], Err(StoreError::Conflict { actual: 1, .. })));
        assert_eq!(out[2].as_ref().unwrap()[0].last_version, 2);
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn given_a_retried_request_when_planned_then_the_original_result_returns_and_nothing_is_written() {
        let req = [append("a", 0, 2)];
        let (rows, out) = plan(&[&req], Facts::default(), now());
        let mut facts = Facts { head_position: 2, head_hash: rows[1].hash, ..Default::default() };
        for r in &rows {
            facts
                .existing
                .insert(r.event_id, Existing { stream: r.stream.clone(), version: r.version, position: r.position });
        }
        facts.versions.insert(stream("a"), 2);
        let (again_rows, again) = plan(&[&req], facts, now());
        assert!(again_rows.is_empty());
        assert_eq!(again[0].as_ref().unwrap(), out[0].as_ref().unwrap());
    }

    #[test]
    fn given_a_retry_racing_its_original_in_one_batch_then_it_is_idempotent() {
        let req = [append("a", 0, 1)];
        let (rows, out) = plan(&[&req, &req], Facts::default(), now());
        assert_eq!(rows.len(), 1);
        assert_eq!(out[0].as_ref().unwrap(), out[1].as_ref().unwrap());
    }

    #[test]
    fn given_partly_stored_ids_when_planned_then_the_request_is_refused() {
        let mut req = append("a", 0, 2);
        let mut facts = Facts::default();
        facts.existing.insert(req.events[0].event_id, Existing { stream: stream("a"), version: 1, position: 1 });
        req.expected = ExpectedVersion::Any;
        let (rows, out) = plan(&[&[req]], facts, now());
        assert!(rows.is_empty());
        assert!(matches!(out[0], Err(StoreError::IdempotencyMismatch { .. })));
    }

    #[test]
    fn given_malformed_requests_when_planned_then_each_is_refused_alone_without_panicking() {
        let mut dup = append("a", 0, 1);
        dup.events.push(dup.events[0].clone());
        let mut empty_after_stored = append("b", 0, 1);
        let stored = empty_after_stored.events[0].event_id;
        empty_after_stored.events.clear();
        let mut facts = Facts::default();
        facts.existing.insert(stored, Existing { stream: stream("b"), version: 1, position: 1 });
        let nul = StreamAppend { stream: stream("x\0y"), expected: ExpectedVersion::Any, events: vec![ev()] };
        let fine = [append("c", 0, 1)];
        let (rows, out) = plan(&[&[dup], &[append("z", 0, 1), empty_after_stored], &[nul], &fine], facts, now());
        assert!(matches!(out[0], Err(StoreError::Invalid(_))));
        assert!(matches!(out[1], Err(StoreError::Invalid(_))));
        assert!(matches!(out[2], Err(StoreError::Invalid(_))));
        assert!(out[3].is_ok());
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn given_an_atomic_multi_stream_request_with_one_conflict_then_nothing_of_it_is_written() {
        let mut facts = Facts::default();
        facts.versions.insert(stream("b"), 1);
        let req = [append("a", 0, 1), append("b", 0, 1)];
        let (rows, out) = plan(&[&req], facts, now());
        assert!(rows.is_empty());
        assert!(out[0].is_err());
    }
}
