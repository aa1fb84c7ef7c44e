//! The HTTP layer: the only place that knows actix-web types.
mod audit;
pub mod drain;
mod health;
mod oidc;
mod ssf;

pub use oidc::spawn_backchannel_logout;
pub use oidc::spawn_replay_revocation;
pub mod pages;

use crate::actors::Hosts;
use crate::readmodels::ReadModels;
use crate::store::SharedStore;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use actix_web::HttpMessage;
use std::time::Instant;
use tracing::Instrument;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: SharedStore,
    pub read_models: ReadModels,
    pub sql_models: crate::sqlmodels::SqlModels,
    pub hosts: Hosts,
    pub base_url: String,
    pub clock: crate::clock::SharedClock,
    pub keys: std::sync::Arc<crate::secrets::ServerKeys>,
    /// Signs checkpoints and evidence manifests; published at `/audit/certs`.
    pub audit_key: std::sync::Arc<crate::audit_key::AuditKey>,
    pub signers: crate::oidc::tokens::Signers,
    pub pages: std::sync::Arc<pages::Pages>,
    pub subjects: oidc::Subjects,
    pub login_gates: oidc::LoginGates,
    pub verified_tokens: oidc::VerifiedTokens,
    /// Key sets of `private_key_jwt` clients registered by URL.
    pub client_jwks: std::sync::Arc<crate::oidc::client_jwks::ClientJwks>,
    /// Records requests refused before any aggregate, floods summarized.
    pub rejections: std::sync::Arc<crate::rejections::Rejections>,
    /// Shared Signals push streams may target loopback and private addresses.
    pub ssf_private_endpoints: bool,
    /// Poll acknowledgements not yet covered by a stream's checkpoint (node-local).
    pub ssf_acks: std::sync::Arc<crate::ssf::Acks>,
    /// Requests under way; closed when the node stops.
    pub requests: std::sync::Arc<drain::RequestGate>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/health/live").route(web::get().to(health::live)))
        .service(web::resource("/health/ready").route(web::get().to(health::ready)))
        .service(web::resource("/metrics").route(web::get().to(health::metrics)))
        .configure(oidc::configure)
        .configure(audit::configure)
        .configure(ssf::configure);
}

/// The request header carrying a caller's correlation id; echoed on the response.
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// Counts every request in the node's request gate (a stopping node refuses new ones, see
/// `drain`), gives it a tracing span with a correlation id (the caller's, when it sent a
/// well-formed one, else a new UUIDv7), echoes it, and records latency by route pattern
/// (never by raw path: ids would explode metric cardinality).
pub async fn observe<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let started = Instant::now();
    // Counted while under way; refused once the node is stopping (see `drain`).
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let _admitted = match state.as_ref().map(|s| s.requests.admit()) {
        Some(None) => {
            // `force_close`, not a `Connection` header: actix writes that header from the
            // response's connection type and drops one set by hand.
            let refusal = actix_web::HttpResponse::ServiceUnavailable()
                .insert_header((actix_web::http::header::RETRY_AFTER, "1"))
                .force_close()
                .body("stopping");
            return Ok(req.into_response(refusal).map_into_right_body());
        }
        admitted => admitted.flatten(),
    };
    let method = req.method().clone();
    let correlation = req
        .headers()
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    req.extensions_mut().insert(Correlation(correlation.clone()));
    let span = tracing::info_span!("http", %method, path = %req.path(), correlation_id = %correlation);
    let mut res = next.call(req).instrument(span.clone()).await?;
    // Cheap once a resource matched: actix walks the ids it recorded while routing.
    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".into());
    let status = res.status();
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&correlation) {
        res.headers_mut().insert(actix_web::http::header::HeaderName::from_static(CORRELATION_HEADER), v);
    }
    let elapsed = started.elapsed();
    crate::metrics::HTTP_SECONDS
        .with_label_values(&[method.as_str(), &route, status.as_str()])
        .observe(elapsed.as_secs_f64());
    span.in_scope(|| tracing::debug!(%route, status = status.as_u16(), micros = elapsed.as_micros() as u64, "request"));
    Ok(res.map_into_left_body())
}

/// The request's correlation id, for handlers that turn requests into commands.
#[derive(Clone, Debug)]
pub struct Correlation(pub String);
