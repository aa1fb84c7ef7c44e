//! Liveness, readiness and metrics.
use super::AppState;
use actix_web::{web, HttpResponse};
use serde_json::json;
use std::time::Duration;

pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "UP"}))
}

/// Ready when the store answers and the read models have caught up with its head.
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
    HttpResponse::Ok().json(
        json!({"status": "UP", "checks": {"store": "UP", "projections": {"position": state.read_models.position()}}}),
    )
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
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(crate::metrics::render())
}
