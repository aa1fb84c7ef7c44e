//! Row <-> RecordedEvent mapping shared by both backends.

/// The columns every event read selects, in this order.
pub(crate) const EVENT_COLUMNS: &str =
    "position, event_id, stream_type, stream_id, version, recorded_at_us, event_type, schema_version, payload, metadata, prev_hash, hash";

/// Decodes one event row of either backend (the column types are the same up to sqlx's mapping).
macro_rules! decode_event_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = $row;
        let position: i64 = row.try_get(0)?;
        let corrupt = |reason: String| $crate::store::StoreError::Corrupt { position: position as u64, reason };
        let stream_type: String = row.try_get(2)?;
        let kind = stream_type.parse::<annals_events::StreamType>().map_err(|e| corrupt(e.to_string()))?;
        let recorded_at_us: i64 = row.try_get(5)?;
        let prev: Vec<u8> = row.try_get(10)?;
        let hash: Vec<u8> = row.try_get(11)?;
        let schema_version: i32 = row.try_get(7)?;
        annals_events::RecordedEvent {
            position: position as u64,
            event_id: row.try_get(1)?,
            stream: annals_events::StreamId::new(kind, row.try_get::<String, _>(3)?),
            version: row.try_get::<i64, _>(4)? as u64,
            recorded_at: chrono::DateTime::from_timestamp_micros(recorded_at_us)
                .ok_or_else(|| corrupt(format!("timestamp {recorded_at_us} out of range")))?,
            event_type: row.try_get(6)?,
            schema_version: schema_version as u32,
            payload: row.try_get(8)?,
            metadata: row.try_get(9)?,
            prev_hash: prev.try_into().map_err(|_| corrupt("prev_hash is not 32 bytes".into()))?,
            hash: hash.try_into().map_err(|_| corrupt("hash is not 32 bytes".into()))?,
        }
    }};
}
pub(crate) use decode_event_row;

/// A stream id from its stored type and id columns.
pub(crate) fn stream_id(kind: &str, id: String) -> Result<annals_events::StreamId, super::StoreError> {
    let kind = kind.parse().map_err(|e: annals_events::stream::UnknownStreamType| super::StoreError::Corrupt {
        position: 0,
        reason: e.to_string(),
    })?;
    Ok(annals_events::StreamId::new(kind, id))
}
