//! `GET /admin/realms/{realm}/audit?after=POSITION&max=N`: a realm's audit records as NDJSON,
//! in log order, from just after `after`. Resumable: every record carries its position, and
//! the `Annals-Audit-Position` header names the last position examined, which may lie beyond
//! the last record when the realm's events are sparse: the next request continues from it.
//! With `Accept: text/event-stream` the same URL is a live tail (Server-Sent Events): each
//! record an event whose id is its position, from `Last-Event-ID` (a reconnecting client's)
//! or `after`, then new records as they become durable; the caller's token is checked again
//! while the stream lasts, and the stream ends when it no longer passes.
//! Requires `view-events` on the realm or a `master` administrator (Keycloak's rule).
use super::oidc::admin_token;
use super::AppState;
use crate::audit::{Auditor, DirectoryNames};
use actix_web::http::header::{HeaderValue, ACCEPT, CACHE_CONTROL, WWW_AUTHENTICATE};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use annals_projections::realms::RealmView;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Records per response unless `max` says fewer.
const DEFAULT_MAX: usize = 1_000;
/// Most records one response carries.
const MAX_MAX: usize = 10_000;
/// Most events one request examines: a realm with few events in a large log answers after
/// this many with what it found and the position reached, instead of reading the whole log.
const SCAN_LIMIT: u64 = 50_000;
/// Events read from the log at a time.
const PAGE: usize = 1_000;
/// A live tail sends a comment this often when idle, so proxies keep the connection.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A live tail checks its caller's token again this often.
const RECHECK: Duration = Duration::from_secs(30);
/// Frames a live tail may have queued for a slow reader before it waits for it.
const TAIL_QUEUE: usize = 16;
/// A live tail whose reader takes nothing for this long is ended (its task and queue freed).
const STALLED: Duration = Duration::from_secs(60);

/// The name of the header carrying the last position examined.
pub const POSITION_HEADER: &str = "annals-audit-position";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/admin/realms/{realm}/audit").route(web::get().to(pull)))
        .service(web::resource("/audit/certs").route(web::get().to(certs)));
}

/// The audit key as a JWKS: what checkpoints, evidence manifests and (later) security event
/// tokens are checked against. Public, like a realm's `certs`.
async fn certs(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "max-age=300"))
        .insert_header(("Access-Control-Allow-Origin", "*"))
        .json(state.audit_key.jwks())
}

fn error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}

/// Why records could not be read; logged here, answered without details.
enum ReadFailure {
    Unavailable,
    Unbuildable,
}

impl ReadFailure {
    fn response(&self) -> HttpResponse {
        match self {
            ReadFailure::Unavailable => error(StatusCode::SERVICE_UNAVAILABLE, "The log cannot be read now."),
            ReadFailure::Unbuildable => {
                error(StatusCode::INTERNAL_SERVER_ERROR, "The log cannot be turned into audit records.")
            }
        }
    }
}

/// The realm's records after `after`, up to `head`, examining at most `scan` events and
/// keeping at most `max` records: each as (position, JSON), and the last position examined
/// (the resume point, at a record boundary when `max` stopped it).
async fn collect(
    state: &AppState,
    auditor: &mut Auditor,
    realm: &RealmView,
    after: u64,
    head: u64,
    max: usize,
    scan: u64,
) -> Result<(Vec<(u64, Vec<u8>)>, u64), ReadFailure> {
    let mut out = Vec::new();
    let mut at = after;
    while at < head && at - after < scan {
        let mut page = state.store.read_all(at, PAGE.min((head - at) as usize)).await.map_err(|e| {
            tracing::error!(error = %e, "audit read failed");
            ReadFailure::Unavailable
        })?;
        page.retain(|e| e.position <= head);
        let Some(last) = page.last().map(|e| e.position) else { break };
        // Events whose metadata names another realm are passed over before any context is
        // built for them (that may read their stream's history).
        let prepared = auditor
            .prepare(&*state.store, page, |m| m.realm.as_ref().is_none_or(|r| *r == realm.id))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "audit records cannot be built");
                ReadFailure::Unbuildable
            })?;
        let dir = state.read_models.read();
        let names = DirectoryNames(&dir);
        for p in prepared {
            // Stop at a record boundary: the resume point must cover exactly what was kept.
            if out.len() == max {
                return Ok((out, at));
            }
            at = p.position();
            if p.realm_id() != Some(realm.id.as_str()) && !p.log_wide() {
                continue;
            }
            let line = serde_json::to_vec(&p.record(&names)).map_err(|e| {
                tracing::error!(error = %e, "audit record cannot be encoded");
                ReadFailure::Unbuildable
            })?;
            out.push((p.position(), line));
        }
        // The whole page was examined (events passed over included).
        at = last;
    }
    Ok((out, at))
}

/// A refused call of the admin API, recorded (see `crate::rejections`).
async fn refused_admin(state: &AppState, req: &HttpRequest, realm: &RealmView, reason: &'static str, why: String) {
    let refused = crate::rejections::Refused { endpoint: "admin", reason, description: why, ..Default::default() };
    let meta = super::oidc::metadata(req, &realm.id, annals_events::Actor::System { component: "rejections".into() });
    state.rejections.note(refused, meta).await;
}

async fn pull(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let Some(realm) = state.read_models.read().realms.shared_by_name(&name).cloned() else {
        return error(StatusCode::NOT_FOUND, "Realm not found.");
    };
    let Some(caller) = admin_token::caller(&state, &req, &realm).await else {
        refused_admin(&state, &req, &realm, "invalid_token", "no valid bearer token".into()).await;
        let mut res = error(StatusCode::UNAUTHORIZED, "HTTP 401 Unauthorized");
        res.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return res;
    };
    if !caller.may_view_events(&realm) {
        let who = format!("user id {} of realm {} lacks view-events", caller.subject.user.id, caller.realm.name);
        refused_admin(&state, &req, &realm, "not_allowed", who).await;
        return error(StatusCode::FORBIDDEN, "HTTP 403 Forbidden");
    }
    // A malformed number is the caller's error (400), never a silent default.
    let number = |key: &str, value: Option<&str>| -> Result<Option<u64>, String> {
        match value {
            None => Ok(None),
            Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| format!("{key} must be a non-negative integer")),
        }
    };
    let last_event_id = req.headers().get("last-event-id").map(|v| v.to_str().unwrap_or("-"));
    let (after, max, resumed) = match (
        number("after", query.get("after").map(String::as_str)),
        number("max", query.get("max").map(String::as_str)),
        number("Last-Event-ID", last_event_id),
    ) {
        (Ok(a), Ok(m), Ok(l)) => (a.unwrap_or(0), m.map_or(DEFAULT_MAX, |m| (m as usize).clamp(1, MAX_MAX)), l),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let wants_stream = req
        .headers()
        .get_all(ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with("text/event-stream")));
    if wants_stream {
        let token = admin_token::bearer_token(&req).unwrap_or_default().to_string();
        return tail(state.into_inner(), realm, token, resumed.unwrap_or(after));
    }
    // Only what is durable: on PostgreSQL a commit is visible a moment before its flush, and
    // one lost in a crash may have its positions reused; a record once sent must stay true.
    let head = match state.store.head().await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "audit head unavailable");
            return ReadFailure::Unavailable.response();
        }
    };
    let (records, at) = match collect(&state, &mut Auditor::default(), &realm, after, head, max, SCAN_LIMIT).await {
        Ok(r) => r,
        Err(f) => return f.response(),
    };
    let mut body = Vec::with_capacity(records.iter().map(|(_, l)| l.len() + 1).sum());
    for (_, line) in records {
        body.extend_from_slice(&line);
        body.push(b'\n');
    }
    let mut res = HttpResponse::Ok().content_type("application/x-ndjson").body(body);
    res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&at.to_string()) {
        res.headers_mut().insert(actix_web::http::header::HeaderName::from_static(POSITION_HEADER), v);
    }
    res
}

/// One Server-Sent Event: the record's position as its id, the record as its data (JSON has
/// no line breaks, so it is one `data` line).
fn sse_event(position: u64, record: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(record.len() + 40);
    b.extend_from_slice(format!("id: {position}\nevent: audit\ndata: ").as_bytes());
    b.extend_from_slice(record);
    b.extend_from_slice(b"\n\n");
    Bytes::from(b)
}

/// The live tail: a task reads records as the durable head moves and queues them for the
/// response; it ends when the client goes away, the caller's token stops passing, or the log
/// cannot be read (an `error` event says which).
fn tail(state: std::sync::Arc<AppState>, realm: std::sync::Arc<RealmView>, token: String, from: u64) -> HttpResponse {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(TAIL_QUEUE);
    // False when the client is gone or has read nothing for `STALLED`.
    let send = move |tx: tokio::sync::mpsc::Sender<Bytes>, b: Bytes| async move {
        matches!(tokio::time::timeout(STALLED, tx.send(b)).await, Ok(Ok(())))
    };
    actix_web::rt::spawn(async move {
        let mut head_rx = state.store.watch_head();
        let mut auditor = Auditor::default();
        let (mut at, mut checked) = (from, Instant::now());
        // Tells a client to reconnect after 2 s (EventSource's `retry`).
        if !send(tx.clone(), Bytes::from_static(b"retry: 2000\n\n")).await {
            return;
        }
        loop {
            if checked.elapsed() >= RECHECK {
                let still = admin_token::caller_by_token(&state, &token, &realm).await;
                if !still.is_some_and(|c| c.may_view_events(&realm)) {
                    send(
                        tx.clone(),
                        Bytes::from_static(b"event: error\ndata: {\"error\":\"token no longer valid\"}\n\n"),
                    )
                    .await;
                    return;
                }
                checked = Instant::now();
            }
            // The head watch moves only to durable positions.
            let head = *head_rx.borrow_and_update();
            if at < head {
                match collect(&state, &mut auditor, &realm, at, head, PAGE, PAGE as u64).await {
                    Ok((records, reached)) => {
                        for (position, line) in records {
                            if !send(tx.clone(), sse_event(position, &line)).await {
                                return;
                            }
                        }
                        at = reached;
                    }
                    Err(_) => {
                        send(
                            tx.clone(),
                            Bytes::from_static(b"event: error\ndata: {\"error\":\"the log cannot be read now\"}\n\n"),
                        )
                        .await;
                        return;
                    }
                }
                continue;
            }
            tokio::select! {
                changed = head_rx.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(KEEP_ALIVE) => {
                    if !send(tx.clone(), Bytes::from_static(b": keep-alive\n\n")).await {
                        return;
                    }
                }
                // A closed client is noticed even while the log is quiet.
                _ = tx.closed() => return,
            }
        }
    });
    let body =
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, actix_web::Error>(b), rx)) },
        );
    let mut res = HttpResponse::Ok().content_type("text/event-stream").streaming(body);
    res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies such as nginx must not buffer a live stream.
    res.headers_mut()
        .insert(actix_web::http::header::HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no"));
    res
}
