//! `annals timeline`: every audit record about one user in a time window (the sessions,
//! authorization requests, grants and tokens, admin changes of the user, brute-force
//! counters) as text or as a self-contained HTML report with a timeline chart.
//!
//! Nothing scans the log: the user's streams come from the `events_naming_user` index, the
//! names records carry from the realm and client streams (`events_directory`), and only those
//! streams' events in the window are read.
use crate::audit::{Auditor, DirectoryNames};
use crate::store::{SharedStore, StoreError};
use annals_events::{RecordedEvent, StreamId, StreamType};
use annals_projections::audit::{AuditRecord, Outcome};
use annals_projections::Directory;
use chrono::{DateTime, Utc};
use std::fmt::Write as _;

#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the realm and client streams cannot be folded: {0}")]
    Directory(String),
    #[error("the users read model: {0}")]
    Users(String),
    #[error("no realm named {0:?}")]
    UnknownRealm(String),
    #[error("the window ends ({to}) before it starts ({from})")]
    Window { from: DateTime<Utc>, to: DateTime<Utc> },
    #[error("audit records cannot be built: {0}")]
    Audit(String),
}

pub use super::UserWindow as TimelineRequest;

pub struct Timeline {
    pub realm: String,
    pub username: String,
    pub user_id: String,
    pub client: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// In log order.
    pub records: Vec<AuditRecord>,
}

/// The streams that can hold records about a user: those the index finds, the user's own,
/// and the user's brute-force counter.
async fn user_streams(store: &SharedStore, realm_id: &str, user_id: &str) -> Result<Vec<StreamId>, StoreError> {
    let mut streams = store.streams_naming_user(user_id).await?;
    streams.push(StreamId::new(StreamType::User, user_id));
    streams.push(StreamId::new(StreamType::LoginFailures, format!("{realm_id}:user:{user_id}")));
    streams.sort();
    streams.dedup();
    Ok(streams)
}

/// One user's audit records in a window, with the events they are made of: what `timeline`
/// shows and `evidence export` proves.
pub struct AboutUser {
    pub username: String,
    pub user_id: String,
    /// In log order.
    pub entries: Vec<(RecordedEvent, AuditRecord)>,
}

/// Every event whose audit record names the user (and the client, if asked) in the window,
/// found through the indexes: the same set a scan of the whole log finds (tested).
pub async fn about_user(store: &SharedStore, req: &TimelineRequest) -> Result<AboutUser, TimelineError> {
    if req.from > req.to {
        return Err(TimelineError::Window { from: req.from, to: req.to });
    }
    let mut dir = Directory::default();
    for e in store.read_directory().await? {
        dir.fold(&e).map_err(|e| TimelineError::Directory(e.to_string()))?;
    }
    let realm_id =
        dir.realms.by_name(&req.realm).map(|r| r.id.clone()).ok_or(TimelineError::UnknownRealm(req.realm.clone()))?;
    let users = |e: crate::sqlmodels::SqlModelError| TimelineError::Users(e.to_string());
    // The users model as the servers keep it; brought up to the head only when the name is
    // not there (a user created a moment ago, or no server running): catching up reads the
    // log from the model's checkpoint, which may trail by many events that change no row.
    let mut found = crate::sqlmodels::users::by_username(&store.pool(), &realm_id, &req.user).await.map_err(users)?;
    if found.is_none() {
        crate::sqlmodels::catch_up(store).await.map_err(users)?;
        found = crate::sqlmodels::users::by_username(&store.pool(), &realm_id, &req.user).await.map_err(users)?;
    }
    let (username, user_id) = match found {
        Some(u) => (u.username.clone(), u.id.clone()),
        None => (req.user.clone(), req.user.clone()),
    };
    let streams = user_streams(store, &realm_id, &user_id).await?;
    let events = store.read_streams_between(&streams, req.from, req.to).await?;
    let prepared = Auditor::default()
        .prepare(&**store, events, |m| m.realm.as_ref().is_none_or(|r| *r == realm_id))
        .await
        .map_err(|e| TimelineError::Audit(e.to_string()))?;
    let names = DirectoryNames(&dir);
    let mut entries = Vec::new();
    for p in prepared.into_iter().filter(|p| p.realm_id() == Some(realm_id.as_str())) {
        let r = p.record(&names);
        // A stream about the user may also hold others' attempts (a wrong username first).
        let about = r.user_id.as_deref() == Some(user_id.as_str())
            && req.client.as_ref().is_none_or(|c| r.client_id.as_deref() == Some(c.as_str()));
        if about {
            entries.push((p.into_event(), r));
        }
    }
    Ok(AboutUser { username, user_id, entries })
}

pub async fn gather(store: &SharedStore, req: &TimelineRequest) -> Result<Timeline, TimelineError> {
    let found = about_user(store, req).await?;
    Ok(Timeline {
        realm: req.realm.clone(),
        username: found.username,
        user_id: found.user_id,
        client: req.client.clone(),
        from: req.from,
        to: req.to,
        records: found.entries.into_iter().map(|(_, r)| r).collect(),
    })
}

fn time(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// What a record is about, in a word: its stream's kind (`session`, `auth_request`, ...).
fn lane(r: &AuditRecord) -> &str {
    r.stream.split_once('/').map_or(r.stream.as_str(), |(kind, _)| kind)
}

fn details(r: &AuditRecord) -> String {
    r.details.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

/// One line per record, oldest first.
pub fn render_text(t: &Timeline) -> String {
    let mut out = format!(
        "timeline of {} ({}) in realm {}{} from {} to {}: {} records\n",
        t.username,
        t.user_id,
        t.realm,
        t.client.as_ref().map(|c| format!(", client {c}")).unwrap_or_default(),
        t.from.to_rfc3339(),
        t.to.to_rfc3339(),
        t.records.len()
    );
    for r in &t.records {
        let _ = writeln!(
            out,
            "{} #{:<9} {:<22} {:<34} {:<7} client={} session={} ip={}{} {}",
            time(r.time),
            r.position,
            r.r#type.unwrap_or("-"),
            r.annals_type,
            if r.outcome == Outcome::Success { "ok" } else { "FAILED" },
            r.client_id.as_deref().unwrap_or("-"),
            r.session_id.as_deref().unwrap_or("-"),
            r.ip_address.as_deref().unwrap_or("-"),
            r.error.as_deref().map(|e| format!(" error={e}")).unwrap_or_default(),
            details(r),
        );
    }
    out
}

/// Text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CHART_WIDTH: f64 = 1000.0;
const LANE_HEIGHT: f64 = 28.0;
const LABEL_WIDTH: f64 = 130.0;

/// A self-contained page (no script, no outside resource): the window as an SVG chart with a
/// lane per kind of stream and a mark per record (red for failures, each with a tooltip),
/// then every record in a table.
pub fn render_html(t: &Timeline) -> String {
    let mut lanes: Vec<&str> = t.records.iter().map(lane).collect();
    lanes.sort_unstable();
    lanes.dedup();
    let (from, to) = (t.from.timestamp_millis(), t.to.timestamp_millis().max(t.from.timestamp_millis() + 1));
    let x = |ms: i64| LABEL_WIDTH + (ms - from) as f64 / (to - from) as f64 * (CHART_WIDTH - LABEL_WIDTH - 10.0);
    let height = LANE_HEIGHT * lanes.len().max(1) as f64 + 30.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{height}" role="img" aria-label="timeline chart">"#
    );
    for (i, name) in lanes.iter().enumerate() {
        let y = LANE_HEIGHT * i as f64 + LANE_HEIGHT / 2.0;
        let _ = write!(
            svg,
            r#"<text x="4" y="{:.1}" class="lane">{}</text><line x1="{LABEL_WIDTH}" x2="{}" y1="{y:.1}" y2="{y:.1}" class="axis"/>"#,
            y + 4.0,
            esc(name),
            CHART_WIDTH - 10.0
        );
    }
    for r in &t.records {
        let y = LANE_HEIGHT * lanes.iter().position(|l| *l == lane(r)).unwrap_or(0) as f64 + LANE_HEIGHT / 2.0;
        let class = if r.outcome == Outcome::Success { "ok" } else { "failed" };
        let _ = write!(
            svg,
            r##"<a href="#p{}"><circle cx="{:.1}" cy="{y:.1}" r="5" class="{class}"><title>{} {} {}</title></circle></a>"##,
            r.position,
            x(r.time),
            esc(&time(r.time)),
            esc(r.r#type.unwrap_or(r.annals_type)),
            esc(r.client_id.as_deref().unwrap_or(""))
        );
    }
    let bottom = height - 8.0;
    let _ = write!(
        svg,
        r#"<text x="{LABEL_WIDTH}" y="{bottom}" class="tick">{}</text><text x="{}" y="{bottom}" class="tick" text-anchor="end">{}</text></svg>"#,
        esc(&t.from.to_rfc3339()),
        CHART_WIDTH - 10.0,
        esc(&t.to.to_rfc3339())
    );
    let mut rows = String::new();
    for r in &t.records {
        let class = if r.outcome == Outcome::Success { "" } else { r#" class="failed""# };
        let _ = write!(
            rows,
            r#"<tr id="p{}"{class}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            r.position,
            esc(&time(r.time)),
            r.position,
            esc(r.r#type.unwrap_or("")),
            esc(r.annals_type),
            esc(r.client_id.as_deref().unwrap_or("")),
            esc(r.session_id.as_deref().unwrap_or("")),
            esc(r.ip_address.as_deref().unwrap_or("")),
            esc(r.error.as_deref().unwrap_or("")),
            esc(&details(r)),
        );
    }
    let title = format!("Timeline of {} in {}", t.username, t.realm);
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #222; }}
.lane {{ font-size: 12px; fill: #444; }} .tick {{ font-size: 11px; fill: #666; }}
.axis {{ stroke: #ccc; }} circle.ok {{ fill: #2a7; }} circle.failed {{ fill: #d33; }}
table {{ border-collapse: collapse; margin-top: 1.5em; }} td, th {{ border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }}
tr.failed td {{ background: #fdecea; }}
</style></head><body>
<h1>{title}</h1>
<p>User id {user_id}{client}; from {from} to {to}; {n} records ({failed} failed).</p>
{svg}
<table><thead><tr><th>Time</th><th>Position</th><th>Keycloak type</th><th>Annals type</th><th>Client</th><th>Session</th><th>Address</th><th>Error</th><th>Details</th></tr></thead>
<tbody>{rows}</tbody></table>
</body></html>
"#,
        title = esc(&title),
        user_id = esc(&t.user_id),
        client = t.client.as_ref().map(|c| format!(", client {}", esc(c))).unwrap_or_default(),
        from = esc(&t.from.to_rfc3339()),
        to = esc(&t.to.to_rfc3339()),
        n = t.records.len(),
        failed = t.records.iter().filter(|r| r.outcome != Outcome::Success).count(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::tests::record;

    fn timeline(records: Vec<AuditRecord>) -> Timeline {
        Timeline {
            realm: "demo".into(),
            username: "<alice>".into(),
            user_id: "u-1".into(),
            client: None,
            from: DateTime::from_timestamp_millis(1_795_000_000_000).unwrap(),
            to: DateTime::from_timestamp_millis(1_795_000_100_000).unwrap(),
            records,
        }
    }

    #[test]
    fn given_records_when_rendered_as_html_then_every_caller_string_is_escaped_and_failures_marked() {
        let mut r = record();
        r.details.insert("username", "<script>alert(1)</script>".into());
        let html = render_html(&timeline(vec![r]));
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("Timeline of &lt;alice&gt; in demo"));
        assert!(html.contains(r#"class="failed""#) && html.contains(r#"id="p42""#));
        assert_eq!(html.matches("<circle").count(), 1);
        assert!(!html.contains("http://") || html.contains("http://www.w3.org/2000/svg"), "nothing outside");
    }

    #[test]
    fn given_records_when_rendered_as_text_then_one_line_each_with_type_and_outcome() {
        let text = render_text(&timeline(vec![record(), record()]));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("2 records"));
        assert!(lines[1].contains("LOGIN_ERROR") && lines[1].contains("FAILED") && lines[1].contains("#42"));
        assert!(lines[1].contains("error=invalid_user_credentials"));
    }
}
