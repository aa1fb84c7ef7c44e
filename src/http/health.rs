//! Liveness, readiness and metrics.
use super::AppState;
use actix_web::{web, HttpResponse};
use serde_json::json;
use std::time::Duration;

pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "UP"}))
}

/// Ready when the store answers and the read models (in memory and SQL) have caught up with
/// its head.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let head = tokio::time::timeout(Duration::from_secs(2), state.store.head()).await;
    let head = match head {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return down(json!({"store": format!("unreachable: {e}")})),
        Err(_) => return down(json!({"store": "timed out"})),
    };
    if !state.read_models.healthy() {
        return down(json!({"store": "UP", "projections": "stopped at an event they cannot fold"}));
    }
    if state.read_models.wait_for(head, Duration::from_secs(1)).await.is_err() {
        return down(json!({"store": "UP", "projections": {"head": head, "position": state.read_models.position()}}));
    }
    // Users live in the SQL read models: a node whose users lag cannot log anyone in.
    let sql = &state.sql_models;
    if !sql.healthy() {
        return down(json!({"store": "UP", "sql_models": "cannot catch up (see the log)"}));
    }
    if !sql.wait_for(head, Duration::from_secs(1)).await {
        return down(json!({"store": "UP", "sql_models": {"head": head, "position": sql.position()}}));
    }
    HttpResponse::Ok().json(json!({"status": "UP", "checks": {
        "store": "UP",
        "projections": {"position": state.read_models.position()},
        "sql_models": {"position": sql.position()},
    }}))
}

fn down(checks: serde_json::Value) -> HttpResponse {
    HttpResponse::ServiceUnavailable().json(json!({"status": "DOWN", "checks": checks}))
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let head = state.store.head().await.unwrap_or(0);
    let at = state.read_models.position();
    for name in annals_projections::Directory::NAMES {
        crate::metrics::PROJECTION_LAG.with_label_values(&[name]).set(head.saturating_sub(at) as i64);
    }
    let at = state.sql_models.position();
    for name in crate::sqlmodels::NAMES {
        crate::metrics::PROJECTION_LAG.with_label_values(&[name]).set(head.saturating_sub(at) as i64);
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(crate::metrics::render())
}
