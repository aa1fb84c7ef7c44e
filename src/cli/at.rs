//! `annals at TIME sessions|tokens [--realm R] [--user NAME]`: what was active at a moment,
//! computed by folding the log up to that moment (nothing written after it counts).
use super::activity::Activity;
use crate::store::{EventStore, SharedStore, StoreError};
use annals_projections::Directory;
use chrono::{DateTime, Utc};
use std::fmt::Write as _;

/// Events read per page while folding.
const PAGE: usize = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum AtError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("event at position {0} cannot be decoded: {1}")]
    Decode(u64, String),
    #[error("no realm named {0:?}")]
    UnknownRealm(String),
    #[error("the users read model: {0}")]
    Users(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    Sessions,
    Tokens,
}

pub struct AtRequest {
    pub at: DateTime<Utc>,
    pub what: What,
    pub realm: Option<String>,
    pub user: Option<String>,
}

/// The first position recorded at or after `t` (positions are appended in time order), or
/// one past the head.
pub async fn first_at(store: &dyn EventStore, t: DateTime<Utc>) -> Result<u64, StoreError> {
    let (mut lo, mut hi) = (1, store.head().await? + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match store.read_all(mid - 1, 1).await?.first() {
            Some(e) if e.recorded_at < t => lo = mid + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// The log folded up to the last event recorded at or before `t`; that event's position.
pub async fn fold_until(store: &SharedStore, t: DateTime<Utc>) -> Result<(Activity, u64), AtError> {
    let last = first_at(&**store, t + chrono::Duration::microseconds(1)).await?.saturating_sub(1);
    let mut activity = Activity::default();
    let mut after = 0;
    while after < last {
        let page = store.read_all_payloads(after, PAGE.min((last - after) as usize)).await?;
        let Some(end) = page.last().map(|e| e.position) else { break };
        for e in page.iter().filter(|e| e.position <= last && Activity::concerns(&e.event_type)) {
            let d = e.decode().map_err(|err| AtError::Decode(e.position, err.to_string()))?;
            activity.apply(e, &d);
        }
        after = end;
    }
    Ok((activity, last))
}

pub async fn report(store: &SharedStore, req: &AtRequest) -> Result<String, AtError> {
    let mut dir = Directory::default();
    for e in store.read_directory().await? {
        dir.fold(&e).map_err(|err| AtError::Decode(e.position, err.to_string()))?;
    }
    let realm_id = match &req.realm {
        Some(name) => Some(dir.realms.by_name(name).map(|r| r.id.clone()).ok_or(AtError::UnknownRealm(name.clone()))?),
        None => None,
    };
    let user_id = match (&req.user, &realm_id) {
        (Some(u), Some(r)) => Some(
            crate::sqlmodels::users::by_username(&store.pool(), r, u)
                .await
                .map_err(|e| AtError::Users(e.to_string()))?
                .map_or_else(|| u.clone(), |v| v.id),
        ),
        (Some(u), None) => Some(u.clone()),
        _ => None,
    };
    let (activity, last) = fold_until(store, req.at).await?;
    let t = req.at.timestamp();
    let realm_ok = |r: Option<&str>| realm_id.as_deref().is_none_or(|want| r == Some(want));
    let client = |id: &str| dir.clients.get(id).map_or_else(|| id.to_string(), |c| c.client_id.clone());
    let realm = |id: &str| dir.realms.get(id).map_or_else(|| id.to_string(), |r| r.name.clone());
    let time = |s: i64| DateTime::from_timestamp(s, 0).map_or_else(|| s.to_string(), |d| d.to_rfc3339());
    let mut out = format!("as of {} (log position {last})\n", req.at.to_rfc3339());
    match req.what {
        What::Sessions => {
            let live: Vec<_> = activity
                .sessions_at(t)
                .into_iter()
                .filter(|s| realm_ok(Some(&s.realm_id)))
                .filter(|s| user_id.as_deref().is_none_or(|u| u == s.user_id))
                .collect();
            let _ = writeln!(out, "{} active sessions", live.len());
            for s in live {
                let offline = s.offline_from.as_ref().map(|f| format!(" offline_from={f}")).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "session {} realm={} user={} method={} started={} last_active={}{offline} #{}",
                    s.id,
                    realm(&s.realm_id),
                    s.user_id,
                    s.method,
                    time(s.started_at),
                    time(s.last_active),
                    s.started_position
                );
            }
        }
        What::Tokens => {
            let user_of = |k: &super::activity::TokenLife| {
                k.session.as_ref().and_then(|s| activity.sessions.get(s)).map(|s| s.user_id.clone())
            };
            let live: Vec<_> = activity
                .tokens_at(t)
                .into_iter()
                .filter(|k| realm_ok(k.realm_id.as_deref()))
                .filter(|k| user_id.as_deref().is_none_or(|u| user_of(k).as_deref() == Some(u)))
                .collect();
            let _ = writeln!(out, "{} active tokens", live.len());
            for k in live {
                let _ = writeln!(
                    out,
                    "{} {} client={} user={} session={} grant={} issued={} expires={} #{}",
                    k.kind,
                    k.id,
                    client(&k.client),
                    user_of(k).unwrap_or_else(|| "-".into()),
                    k.session.as_deref().unwrap_or("-"),
                    k.grant,
                    time(k.issued_at),
                    k.expires_at.map_or_else(|| "with its session".into(), time),
                    k.issued_position
                );
            }
        }
    }
    Ok(out)
}
