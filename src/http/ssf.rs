//! Shared Signals Framework 1.0 endpoints of a realm (the transmitter side):
//!
//! - `GET /.well-known/ssf-configuration/realms/{realm}`: transmitter metadata;
//! - `POST|GET|PATCH|PUT|DELETE /realms/{realm}/ssf/streams[?stream_id=ID]`: stream configuration;
//! - `POST /realms/{realm}/ssf/verify`: a verification event through a stream;
//! - `POST /realms/{realm}/ssf/poll/{stream_id}`: poll delivery (RFC 8936).
//!
//! A receiver is a client whose token holds `realm-management`'s `manage-events` role (or a
//! master administrator); a stream belongs to the client it was created by, and SETs name it as
//! their audience.
use super::oidc::admin_token::{self, Caller};
use super::AppState;
use crate::domain::ssf_stream::{SsfStream, SsfStreamCommand, SsfStreamError};
use crate::ssf::{set, Transmitter, POLL_MAX};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use annals_events::ssf_stream::{SsfStreamCreated, POLL, PUSH};
use annals_events::Actor;
use annals_projections::realms::RealmView;
use annals_projections::ssf_streams::SsfStreamView;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// A stream configuration request is small; anything bigger is refused unread.
const BODY_MAX: usize = 16 * 1024;
/// Streams one receiver may have in a realm (Okta allows one per client).
const STREAMS_PER_RECEIVER: usize = 5;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/.well-known/ssf-configuration/realms/{realm}").route(web::get().to(metadata)));
}

/// The receiver endpoints, inside the realm scope (`/realms/{realm}`, see `http::oidc`): a
/// scope takes every path under its prefix, so they cannot be routes of their own beside it.
pub fn configure_in_realm(scope: actix_web::Scope) -> actix_web::Scope {
    scope
        .service(
            web::resource("/ssf/streams")
                .route(web::post().to(create))
                .route(web::get().to(read))
                .route(web::patch().to(patch))
                .route(web::put().to(put))
                .route(web::delete().to(delete)),
        )
        .service(web::resource("/ssf/verify").route(web::post().to(verify)))
        .service(web::resource("/ssf/poll/{stream}").route(web::post().to(poll)))
}

fn error(status: StatusCode, description: &str) -> HttpResponse {
    HttpResponse::build(status).insert_header(("Cache-Control", "no-store")).json(json!({ "error": description }))
}

/// A refused or failed stream command as the receiver sees it.
fn command_failed(e: crate::actors::CommandError<SsfStreamError>, what: &str) -> HttpResponse {
    match e {
        crate::actors::CommandError::Domain(SsfStreamError::NotFound) => error(StatusCode::NOT_FOUND, "no such stream"),
        crate::actors::CommandError::Domain(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        e => {
            tracing::error!(error = %e, "{what}");
            error(StatusCode::SERVICE_UNAVAILABLE, "try again")
        }
    }
}

fn issuer(state: &AppState, realm: &RealmView) -> String {
    crate::oidc::issuer(&state.base_url, &realm.name)
}

fn realm(state: &AppState, name: &str) -> Option<Arc<RealmView>> {
    state.read_models.read().realms.shared_by_name(name).filter(|r| r.settings.enabled).cloned()
}

async fn metadata(state: web::Data<AppState>, name: web::Path<String>) -> HttpResponse {
    let Some(realm) = realm(&state, &name) else { return error(StatusCode::NOT_FOUND, "Realm not found.") };
    let iss = issuer(&state, &realm);
    HttpResponse::Ok().json(json!({
        "spec_version": "1_0",
        "issuer": iss,
        "jwks_uri": format!("{}/audit/certs", state.base_url),
        "delivery_methods_supported": [PUSH, POLL],
        "configuration_endpoint": format!("{iss}/ssf/streams"),
        "verification_endpoint": format!("{iss}/ssf/verify"),
        "authorization_schemes": [{ "spec_urn": "urn:ietf:rfc:6749" }],
        "default_subjects": "ALL",
    }))
}

/// The receiver behind the request: a client allowed to manage the realm's event streams.
async fn receiver(state: &AppState, req: &HttpRequest, realm: &RealmView) -> Result<(Caller, String), HttpResponse> {
    let Some(caller) = admin_token::caller(state, req, realm).await else {
        return Err(error(StatusCode::UNAUTHORIZED, "a bearer token is required"));
    };
    if !caller.has_realm_management_role(realm, "manage-events") {
        return Err(error(StatusCode::FORBIDDEN, "the token lacks realm-management's manage-events role"));
    }
    let client = caller.client_id().unwrap_or_default().to_string();
    Ok((caller, client))
}

/// The enabled realm named in the path and the receiver calling.
async fn realm_and_receiver(
    state: &AppState,
    req: &HttpRequest,
    name: &str,
) -> Result<(Arc<RealmView>, Caller, String), HttpResponse> {
    let realm = realm(state, name).ok_or_else(|| error(StatusCode::NOT_FOUND, "Realm not found."))?;
    let (caller, audience) = receiver(state, req, &realm).await?;
    Ok((realm, caller, audience))
}

/// The realm, the receiver and its JSON request body, or the answer refusing them.
async fn receiver_request<T: serde::de::DeserializeOwned>(
    state: &AppState,
    req: &HttpRequest,
    name: &str,
    body: &[u8],
) -> Result<(Arc<RealmView>, String, T), HttpResponse> {
    let (realm, _, audience) = realm_and_receiver(state, req, name).await?;
    let parsed = parse(body).map_err(|(status, why)| error(status, &why))?;
    Ok((realm, audience, parsed))
}

/// What a receiver's stream command is recorded with: the receiver as a client acting for itself.
fn receiver_meta(req: &HttpRequest, realm: &RealmView, audience: &str) -> annals_events::Metadata {
    super::oidc::metadata(req, &realm.id, Actor::Client { client_id: audience.to_string(), realm: realm.id.clone() })
}

/// A stream's configuration as SSF 1.0 §8.1.1 describes it.
fn config(state: &AppState, realm: &RealmView, s: &SsfStreamView) -> Value {
    let iss = issuer(state, realm);
    let endpoint = match s.method.as_str() {
        POLL => Some(format!("{iss}/ssf/poll/{}", s.id)),
        _ => s.endpoint_url.clone(),
    };
    let delivered: Vec<&str> =
        set::SUPPORTED.into_iter().filter(|u| s.events_requested.iter().any(|r| r == u)).collect();
    json!({
        "stream_id": s.id,
        "iss": iss,
        "aud": s.audience,
        "delivery": { "method": s.method, "endpoint_url": endpoint },
        "events_supported": set::SUPPORTED,
        "events_requested": s.events_requested,
        "events_delivered": delivered,
        "description": s.description,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Delivery {
    method: String,
    #[serde(default)]
    endpoint_url: Option<String>,
    #[serde(default)]
    authorization_header: Option<String>,
}

#[derive(Deserialize)]
struct CreateRequest {
    delivery: Delivery,
    #[serde(default)]
    events_requested: Vec<String>,
    #[serde(default)]
    description: Option<String>,
}

/// A configuration body, parsed.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, (StatusCode, String)> {
    if body.len() > BODY_MAX {
        return Err((StatusCode::PAYLOAD_TOO_LARGE, "the stream configuration is too large".into()));
    }
    serde_json::from_slice(body).map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid stream configuration: {e}")))
}

/// A configuration as it will be recorded: sizes bounded, the push endpoint allowed, the
/// receiver's push credential sealed.
struct Checked {
    method: String,
    endpoint_url: Option<String>,
    authorization: Option<annals_events::signing_key::SealedKey>,
    events_requested: Vec<String>,
    description: Option<String>,
}

async fn check(
    state: &AppState,
    delivery: Delivery,
    events_requested: Vec<String>,
    description: Option<String>,
) -> Result<Checked, HttpResponse> {
    if events_requested.len() > 64 || events_requested.iter().any(|e| e.len() > 256) {
        return Err(error(StatusCode::BAD_REQUEST, "events_requested: at most 64 URIs of 256 characters"));
    }
    if description.as_ref().is_some_and(|d| d.len() > 1_024)
        || delivery.endpoint_url.as_ref().is_some_and(|u| u.len() > 2_048)
    {
        return Err(error(StatusCode::BAD_REQUEST, "description or endpoint_url too long"));
    }
    if let Some(u) = &delivery.endpoint_url {
        if !crate::ssf::endpoint_allowed(u, state.ssf_private_endpoints).await {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "endpoint_url must be an https URL without credentials whose host resolves to public addresses",
            ));
        }
    }
    let authorization = match &delivery.authorization_header {
        None => None,
        Some(h) if h.len() > 4_096 || reqwest::header::HeaderValue::from_str(h).is_err() => {
            return Err(error(StatusCode::BAD_REQUEST, "authorization_header is not a usable header value"))
        }
        Some(h) => Some(state.keys.seal(h.as_bytes()).map_err(|e| {
            tracing::error!(error = %e, "a stream's authorization header cannot be sealed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "the stream cannot be configured")
        })?),
    };
    Ok(Checked {
        method: delivery.method,
        endpoint_url: delivery.endpoint_url,
        authorization,
        events_requested,
        description,
    })
}

/// SSF 1.0 §8.1.1.3 and .4: PATCH changes what the body names, PUT replaces the whole
/// configuration. The delivery method cannot change.
#[derive(Deserialize)]
struct UpdateRequest {
    stream_id: String,
    #[serde(default)]
    delivery: Option<Delivery>,
    #[serde(default)]
    events_requested: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
}

async fn patch(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    update(state, req, name, body, false).await
}

async fn put(state: web::Data<AppState>, req: HttpRequest, name: web::Path<String>, body: web::Bytes) -> HttpResponse {
    update(state, req, name, body, true).await
}

async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
    replace: bool,
) -> HttpResponse {
    let (realm, audience, r): (_, _, UpdateRequest) = match receiver_request(&state, &req, &name, &body).await {
        Ok(x) => x,
        Err(res) => return res,
    };
    let current = state.read_models.read().ssf_streams.get(&r.stream_id).cloned();
    let Some(current) = current.filter(|s| s.realm_id == realm.id && s.audience == audience) else {
        return error(StatusCode::NOT_FOUND, "no such stream");
    };
    if replace && r.delivery.is_none() {
        return error(StatusCode::BAD_REQUEST, "a replacement needs its delivery");
    }
    let kept_delivery = r.delivery.is_none();
    let delivery = r.delivery.unwrap_or(Delivery {
        method: current.method.clone(),
        endpoint_url: current.endpoint_url.clone(),
        authorization_header: None,
    });
    if delivery.method != current.method {
        return error(StatusCode::BAD_REQUEST, "the delivery method of a stream cannot change");
    }
    let events = match (r.events_requested, replace) {
        (Some(e), _) => e,
        (None, true) => vec![],
        (None, false) => current.events_requested.clone(),
    };
    let description = if replace { r.description } else { r.description.or(current.description.clone()) };
    let mut c = match check(&state, delivery, events, description).await {
        Ok(c) => c,
        Err(res) => return res,
    };
    if kept_delivery {
        c.authorization.clone_from(&current.authorization);
    }
    let update = annals_events::ssf_stream::SsfStreamUpdated {
        endpoint_url: c.endpoint_url,
        authorization: c.authorization,
        events_requested: c.events_requested,
        description: c.description,
        at: 0,
    };
    let meta = receiver_meta(&req, &realm, &audience);
    let cmd = SsfStreamCommand::Update { audience, update: Box::new(update) };
    execute(&state, &realm, &r.stream_id, cmd, meta, StatusCode::OK).await
}

/// Runs a stream command and answers with the stream's configuration once the read models
/// show it.
async fn execute(
    state: &AppState,
    realm: &RealmView,
    id: &str,
    cmd: SsfStreamCommand,
    meta: annals_events::Metadata,
    status: StatusCode,
) -> HttpResponse {
    match state.hosts.execute::<SsfStream>(id, cmd, meta).await {
        Ok(done) => {
            let _ = state.read_models.wait_for(done.position, std::time::Duration::from_secs(5)).await;
            let view = state.read_models.read().ssf_streams.get(id).cloned();
            match view {
                Some(v) => HttpResponse::build(status).json(config(state, realm, &v)),
                None => error(StatusCode::SERVICE_UNAVAILABLE, "recorded; read the stream again in a moment"),
            }
        }
        Err(e) => command_failed(e, "a stream command failed"),
    }
}

async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (realm, audience, r): (_, _, CreateRequest) = match receiver_request(&state, &req, &name, &body).await {
        Ok(x) => x,
        Err(res) => return res,
    };
    if state.read_models.read().ssf_streams.of(&realm.id, &audience).len() >= STREAMS_PER_RECEIVER {
        return error(StatusCode::CONFLICT, "this receiver has as many streams as it may");
    }
    let c = match check(&state, r.delivery, r.events_requested, r.description).await {
        Ok(c) => c,
        Err(res) => return res,
    };
    let id = uuid::Uuid::now_v7().to_string();
    let created = SsfStreamCreated {
        realm_id: realm.id.clone(),
        audience: audience.clone(),
        method: c.method,
        endpoint_url: c.endpoint_url,
        authorization: c.authorization,
        events_requested: c.events_requested,
        description: c.description,
        at: 0,
    };
    let meta = receiver_meta(&req, &realm, &audience);
    execute(&state, &realm, &id, SsfStreamCommand::Create(Box::new(created)), meta, StatusCode::CREATED).await
}

/// SSF 1.0 §8.1.4: the receiver asks for a verification event through its stream.
#[derive(Deserialize)]
struct VerifyRequest {
    stream_id: String,
    #[serde(default)]
    state: Option<String>,
}

async fn verify(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (realm, audience, r): (_, _, VerifyRequest) = match receiver_request(&state, &req, &name, &body).await {
        Ok(x) => x,
        Err(res) => return res,
    };
    let mine = state.read_models.read().ssf_streams.get(&r.stream_id).is_some_and(|s| s.realm_id == realm.id);
    if !mine {
        return error(StatusCode::NOT_FOUND, "no such stream");
    }
    let meta = receiver_meta(&req, &realm, &audience);
    let cmd = SsfStreamCommand::Verify { audience, state: r.state };
    match state.hosts.execute::<SsfStream>(&r.stream_id, cmd, meta).await {
        Ok(_) => HttpResponse::NoContent().finish(),
        Err(e) => command_failed(e, "a verification cannot be recorded"),
    }
}

async fn read(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let (realm, _, audience) = match realm_and_receiver(&state, &req, &name).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let dir = state.read_models.read();
    let mine = dir.ssf_streams.of(&realm.id, &audience);
    match query.get("stream_id") {
        Some(id) => match mine.into_iter().find(|s| &s.id == id) {
            Some(s) => HttpResponse::Ok().json(config(&state, &realm, s)),
            None => error(StatusCode::NOT_FOUND, "no such stream"),
        },
        None => HttpResponse::Ok().json(mine.into_iter().map(|s| config(&state, &realm, s)).collect::<Vec<_>>()),
    }
}

async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let (realm, caller, audience) = match realm_and_receiver(&state, &req, &name).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    // A master administrator (a token of another realm) may delete any stream of the realm:
    // a receiver client that is gone cannot delete its own.
    let owner = (caller.realm.id == realm.id).then(|| audience.clone());
    let Some(id) = query.get("stream_id").filter(|i| uuid::Uuid::parse_str(i).is_ok()) else {
        return error(StatusCode::BAD_REQUEST, "stream_id is required");
    };
    let meta = receiver_meta(&req, &realm, &audience);
    let cmd = SsfStreamCommand::Delete { realm_id: realm.id.clone(), audience: owner };
    match state.hosts.execute::<SsfStream>(id, cmd, meta).await {
        Ok(done) => {
            let _ = state.read_models.wait_for(done.position, std::time::Duration::from_secs(5)).await;
            state.ssf_acks.forget(id);
            HttpResponse::NoContent().finish()
        }
        Err(e) => command_failed(e, "a stream cannot be deleted"),
    }
}

/// RFC 8936 §2.4: acknowledgements, errors, and how many SETs to return.
#[derive(Deserialize, Default)]
struct PollRequest {
    #[serde(default)]
    ack: Vec<String>,
    #[serde(default, rename = "setErrs")]
    set_errs: HashMap<String, Value>,
    #[serde(default, rename = "maxEvents")]
    max_events: Option<usize>,
    #[serde(default, rename = "returnImmediately")]
    return_immediately: bool,
}

fn transmitter(state: &AppState) -> Transmitter {
    Transmitter {
        store: state.store.clone(),
        models: state.read_models.clone(),
        key: state.audit_key.clone(),
        server_keys: state.keys.clone(),
        base_url: state.base_url.clone(),
        hosts: state.hosts.clone(),
        private_endpoints: state.ssf_private_endpoints,
    }
}

async fn poll(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (name, id) = path.into_inner();
    let (realm, _, audience) = match realm_and_receiver(&state, &req, &name).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let stream = state.read_models.read().ssf_streams.get(&id).cloned();
    let Some(stream) = stream.filter(|s| s.realm_id == realm.id && s.audience == audience && s.method == POLL) else {
        return error(StatusCode::NOT_FOUND, "no such poll stream");
    };
    let r: PollRequest = if body.is_empty() {
        PollRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid poll request: {e}")),
        }
    };
    let max = r.max_events.unwrap_or(100).min(POLL_MAX);
    let tx = transmitter(&state);
    let failed = |e: crate::ssf::SsfError| {
        tracing::error!(error = %e, stream = %id, "poll cannot be answered");
        error(StatusCode::SERVICE_UNAVAILABLE, "try again")
    };
    // Acknowledged (or reported in error) SETs are not returned again; the checkpoint moves
    // past the leading run of them.
    let after = match tx.checkpoint(&stream).await {
        Ok(a) => a,
        Err(e) => return failed(e),
    };
    if !r.ack.is_empty() || !r.set_errs.is_empty() {
        let (outstanding, _) = match tx.pending(&stream, after, POLL_MAX, false).await {
            Ok(p) => p,
            Err(e) => return failed(e),
        };
        for p in outstanding.iter().filter(|p| r.set_errs.contains_key(&p.jti)).take(10) {
            tracing::warn!(stream = %id, jti = %p.jti, "the receiver reported a SET in error");
        }
        let acked: Vec<&str> = r.ack.iter().chain(r.set_errs.keys()).map(String::as_str).collect();
        if let Some(to) = state.ssf_acks.note(&id, &acked, &outstanding) {
            if let Err(e) = tx.advance(&stream, to).await {
                return failed(e);
            }
        }
    }
    // Long poll (RFC 8936 §2.4): up to ten seconds for a SET, unless asked to return at once.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut head = state.store.watch_head();
    loop {
        let after = match tx.checkpoint(&stream).await {
            Ok(a) => a,
            Err(e) => return failed(e),
        };
        let (sets, read_to) = match tx.pending(&stream, after, (max + 1).min(POLL_MAX + 1), true).await {
            Ok(p) => p,
            Err(e) => return failed(e),
        };
        if let Err(e) = tx.skip_to(&stream, after, &sets, read_to).await {
            return failed(e);
        }
        let sets: Vec<_> = sets.into_iter().filter(|p| !state.ssf_acks.acked(&id, &p.jti)).collect();
        let caught_up = read_to >= *state.store.watch_head().borrow();
        if !sets.is_empty() || r.return_immediately || max == 0 || tokio::time::Instant::now() >= deadline {
            let more = sets.len() > max || !caught_up;
            let sets: serde_json::Map<String, Value> =
                sets.into_iter().take(max).map(|p| (p.jti, Value::String(p.set))).collect();
            return HttpResponse::Ok()
                .insert_header(("Cache-Control", "no-store"))
                .json(json!({ "sets": sets, "moreAvailable": more }));
        }
        if caught_up {
            let _ = tokio::time::timeout_at(deadline, head.changed()).await;
        }
    }
}
