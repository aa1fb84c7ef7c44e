//! `GET /realms/{realm}/protocol/openid-connect/certs`: the realm's JSON Web Key Set.
//!
//! Every key the realm signs with now, and every retired key whose tokens may still be alive
//! (published until its `publish_until`), so a relying party can verify any token the realm
//! issued and not yet expired, across a rotation. Public members only (see `public`).
use super::realm_not_found;
use crate::http::AppState;
use actix_web::http::header::{CacheControl, CacheDirective, ACCESS_CONTROL_ALLOW_ORIGIN};
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

pub async fn certs(state: web::Data<AppState>, realm: web::Path<String>) -> HttpResponse {
    let now = state.clock.now();
    let dir = state.read_models.read();
    let Some(realm) = dir.realms.by_name(&realm) else { return realm_not_found() };
    let keys: Vec<Value> =
        dir.signing_keys.published(&realm.id, now).into_iter().map(|k| public(&k.public_jwk)).collect();
    // Revalidated on every use: a relying party must see a new key as soon as it signs. Any
    // origin may read it (as from Keycloak): browser-side relying parties verify with it.
    HttpResponse::Ok()
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        .insert_header((ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .json(json!({ "keys": keys }))
}

/// The public members of a JWK, whatever else a stored one holds: the event's JWK is written by
/// key generation alone today, and this keeps a future writer from publishing more.
const PUBLIC_MEMBERS: [&str; 9] = ["kty", "kid", "use", "alg", "n", "e", "crv", "x", "y"];

fn public(jwk: &Value) -> Value {
    let members = jwk.as_object().into_iter().flatten().filter(|(k, _)| PUBLIC_MEMBERS.contains(&k.as_str()));
    Value::Object(members.map(|(k, v)| (k.clone(), v.clone())).collect())
}
