//! `GET /admin/realms/{realm}/audit?after=POSITION&max=N`: a realm's audit records as NDJSON,
//! in log order, from just after `after`. Resumable: every record carries its position, and
//! the `Annals-Audit-Position` header names the last position examined, which may lie beyond
//! the last record when the realm's events are sparse: the next request continues from it.
//! Requires `view-events` on the realm or a `master` administrator (Keycloak's rule).
use super::oidc::admin_token;
use super::AppState;
use crate::audit::{Auditor, DirectoryNames};
use actix_web::http::header::{HeaderValue, CACHE_CONTROL, WWW_AUTHENTICATE};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use std::collections::HashMap;

/// Records per response unless `max` says fewer.
const DEFAULT_MAX: usize = 1_000;
/// Most records one response carries.
const MAX_MAX: usize = 10_000;
/// Most events one request examines: a realm with few events in a large log answers after
/// this many with what it found and the position reached, instead of reading the whole log.
const SCAN_LIMIT: u64 = 50_000;
/// Events read from the log at a time.
const PAGE: usize = 1_000;

/// The name of the header carrying the last position examined.
pub const POSITION_HEADER: &str = "annals-audit-position";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/admin/realms/{realm}/audit").route(web::get().to(pull)));
}

fn error(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}

async fn pull(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let Some(realm) = state.read_models.read().realms.by_name(&name).cloned() else {
        return error(StatusCode::NOT_FOUND, "Realm not found.");
    };
    let Some(caller) = admin_token::caller(&state, &req, &realm).await else {
        let mut res = error(StatusCode::UNAUTHORIZED, "HTTP 401 Unauthorized");
        res.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return res;
    };
    if !caller.may_view_events(&realm) {
        return error(StatusCode::FORBIDDEN, "HTTP 403 Forbidden");
    }
    // A malformed number is the caller's error (400), never a silent default.
    let number = |key: &str| -> Result<Option<u64>, String> {
        match query.get(key) {
            None => Ok(None),
            Some(v) => v.parse::<u64>().map(Some).map_err(|_| format!("{key} must be a non-negative integer")),
        }
    };
    let (after, max) = match (number("after"), number("max")) {
        (Ok(a), Ok(m)) => (a.unwrap_or(0), m.map_or(DEFAULT_MAX, |m| (m as usize).clamp(1, MAX_MAX))),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, &e),
    };
    // Only what is durable: on PostgreSQL a commit is visible a moment before its flush, and
    // one lost in a crash may have its positions reused; a record once sent must stay true.
    let head = match state.store.head().await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "audit head unavailable");
            return error(StatusCode::SERVICE_UNAVAILABLE, "The log cannot be read now.");
        }
    };
    let mut auditor = Auditor::default();
    let mut lines = Vec::new();
    let (mut at, mut count) = (after, 0usize);
    'read: while at < head && at - after < SCAN_LIMIT {
        let page = match state.store.read_all(at, PAGE.min((head - at) as usize)).await {
            Ok(mut p) => {
                p.retain(|e| e.position <= head);
                p
            }
            Err(e) => {
                tracing::error!(error = %e, "audit read failed");
                return error(StatusCode::SERVICE_UNAVAILABLE, "The log cannot be read now.");
            }
        };
        if page.is_empty() {
            break;
        }
        // Events whose metadata names another realm are passed over before any context is
        // built for them (that may read their stream's history).
        let last = page.last().map_or(at, |e| e.position);
        let prepared =
            match auditor.prepare(&*state.store, page, |m| m.realm.as_ref().is_none_or(|r| *r == realm.id)).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "audit records cannot be built");
                    return error(StatusCode::INTERNAL_SERVER_ERROR, "The log cannot be turned into audit records.");
                }
            };
        let dir = state.read_models.read();
        let names = DirectoryNames(&dir);
        for p in prepared {
            // Stop at a record boundary: the position header must cover exactly what was sent.
            if count == max {
                break 'read;
            }
            at = p.position();
            if p.realm_id() != Some(realm.id.as_str()) {
                continue;
            }
            match serde_json::to_vec(&p.record(&names)) {
                Ok(mut line) => {
                    line.push(b'\n');
                    lines.extend_from_slice(&line);
                    count += 1;
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit record cannot be encoded");
                    return error(StatusCode::INTERNAL_SERVER_ERROR, "An audit record cannot be encoded.");
                }
            }
        }
        // The whole page was examined (events passed over included).
        at = last;
    }
    let mut res = HttpResponse::Ok().content_type("application/x-ndjson").body(lines);
    res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&at.to_string()) {
        res.headers_mut().insert(actix_web::http::header::HeaderName::from_static(POSITION_HEADER), v);
    }
    res
}
