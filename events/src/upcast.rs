//! Schema versions and upcasters.
//!
//! A payload's shape never changes in place, except by a new optional member that older
//! payloads lack (read as absent; a node of the previous release ignores it, so a rolling
//! upgrade can mix them; `SessionStarted.started_at` and `AuthRequestCodeRedeemed.offline`
//! came so). Any other new shape gets a new schema version and an upcaster that turns version
//! N into N+1. Stored events are never rewritten; they are upcast
//! when read. The current version of a type is 1 + the number of upcasters registered for it.
use serde_json::Value;
use std::fmt;

/// Turns one event type's payload from `from_version` into `from_version + 1`.
#[derive(Clone, Copy)]
pub struct Upcaster {
    pub event_type: &'static str,
    pub from_version: u32,
    pub upcast: fn(Value) -> Result<Value, String>,
}

/// The upcasters in force. Every payload is still at version 1, so none is registered yet;
/// the first schema change adds its upcaster here together with a fixture of the old shape.
pub const UPCASTERS: &[Upcaster] = &[];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpcastError {
    /// The event was written by a newer Annals than this one.
    FromTheFuture { event_type: String, version: u32, current: u32 },
    /// A version has no upcaster: the registry has a hole.
    Missing { event_type: String, version: u32 },
    /// The upcaster refused the payload.
    Failed { event_type: String, version: u32, reason: String },
}

impl fmt::Display for UpcastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpcastError::FromTheFuture { event_type, version, current } => {
                write!(f, "{event_type} v{version} is newer than this build understands (v{current}); upgrade Annals")
            }
            UpcastError::Missing { event_type, version } => {
                write!(f, "no upcaster for {event_type} v{version}")
            }
            UpcastError::Failed { event_type, version, reason } => {
                write!(f, "upcasting {event_type} v{version} failed: {reason}")
            }
        }
    }
}

impl std::error::Error for UpcastError {}

/// The schema version new events of this type are written with.
pub fn current_version(event_type: &str) -> u32 {
    current_version_with(UPCASTERS, event_type)
}

pub fn current_version_with(upcasters: &[Upcaster], event_type: &str) -> u32 {
    1 + upcasters.iter().filter(|u| u.event_type == event_type).count() as u32
}

/// Brings a stored payload up to the current version.
pub fn upcast(event_type: &str, version: u32, payload: Value) -> Result<Value, UpcastError> {
    upcast_with(UPCASTERS, event_type, version, payload)
}

pub fn upcast_with(
    upcasters: &[Upcaster],
    event_type: &str,
    mut version: u32,
    mut payload: Value,
) -> Result<Value, UpcastError> {
    let current = current_version_with(upcasters, event_type);
    if version > current {
        return Err(UpcastError::FromTheFuture { event_type: event_type.into(), version, current });
    }
    while version < current {
        let step = upcasters
            .iter()
            .find(|u| u.event_type == event_type && u.from_version == version)
            .ok_or_else(|| UpcastError::Missing { event_type: event_type.into(), version })?;
        payload = (step.upcast)(payload).map_err(|reason| UpcastError::Failed {
            event_type: event_type.into(),
            version,
            reason,
        })?;
        version += 1;
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // A two-step history for one type: v1 had `name`, v2 split it, v3 added `enabled`.
    fn split_name(mut v: Value) -> Result<Value, String> {
        let name = v["name"].as_str().ok_or("name missing")?.to_string();
        let (first, last) = name.split_once(' ').unwrap_or((&name, ""));
        v["first_name"] = json!(first);
        v["last_name"] = json!(last);
        v.as_object_mut().unwrap().remove("name");
        Ok(v)
    }
    fn add_enabled(mut v: Value) -> Result<Value, String> {
        v["enabled"] = json!(true);
        Ok(v)
    }
    const HISTORY: &[Upcaster] = &[
        Upcaster { event_type: "t.x", from_version: 2, upcast: add_enabled },
        Upcaster { event_type: "t.x", from_version: 1, upcast: split_name },
    ];

    #[test]
    fn given_a_v1_payload_when_upcast_then_every_step_applies_in_order() {
        let out = upcast_with(HISTORY, "t.x", 1, json!({"name": "Ada Lovelace"})).unwrap();
        assert_eq!(out, json!({"first_name": "Ada", "last_name": "Lovelace", "enabled": true}));
    }

    #[test]
    fn given_a_current_payload_when_upcast_then_it_is_unchanged() {
        let v = json!({"first_name": "A", "last_name": "", "enabled": false});
        assert_eq!(upcast_with(HISTORY, "t.x", 3, v.clone()).unwrap(), v);
        assert_eq!(current_version_with(HISTORY, "t.x"), 3);
        assert_eq!(current_version_with(HISTORY, "t.other"), 1);
    }

    #[test]
    fn given_a_future_version_when_upcast_then_it_is_refused() {
        let err = upcast_with(HISTORY, "t.x", 4, json!({})).unwrap_err();
        assert!(matches!(err, UpcastError::FromTheFuture { current: 3, .. }));
    }

    #[test]
    fn given_a_bad_old_payload_when_upcast_then_the_step_is_named() {
        let err = upcast_with(HISTORY, "t.x", 1, json!({})).unwrap_err();
        assert!(matches!(err, UpcastError::Failed { version: 1, .. }));
    }

    #[test]
    fn production_registry_has_no_holes() {
        for u in UPCASTERS {
            for v in 1..current_version(u.event_type) {
                assert!(UPCASTERS.iter().any(|x| x.event_type == u.event_type && x.from_version == v));
            }
        }
    }
}
