//! The HTTP layer: the only place that knows actix-web types.
mod health;

use crate::actors::Hosts;
use crate::readmodels::ReadModels;
use crate::store::SharedStore;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use std::time::Instant;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: SharedStore,
    pub read_models: ReadModels,
    pub hosts: Hosts,
    pub base_url: String,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/health/live").route(web::get().to(health::live)))
        .service(web::resource("/health/ready").route(web::get().to(health::ready)))
        .service(web::resource("/metrics").route(web::get().to(health::metrics)));
}

/// Records request latency by route pattern (never by raw path: ids would explode cardinality).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let res = next.call(req).await?;
    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".into());
    crate::metrics::HTTP_SECONDS
        .with_label_values(&[&method, &route, res.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    Ok(res)
}
