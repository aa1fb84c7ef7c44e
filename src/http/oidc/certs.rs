//! `GET /realms/{realm}/protocol/openid-connect/certs`: the realm's JSON Web Key Set.
//!
//! Every key the realm signs with now, and every retired key whose tokens may still be alive
//! (published until its `publish_until`), so a relying party can verify any token the realm
//! issued and not yet expired, across a rotation. Public halves only: the ring holds the
//! published JWK apart from the sealed private key, and nothing else is read here.
use super::realm_not_found;
use crate::http::AppState;
use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

pub async fn certs(state: web::Data<AppState>, realm: web::Path<String>) -> HttpResponse {
    let now = state.clock.now();
    let dir = state.read_models.read();
    let Some(realm) = dir.realms.by_name(&realm) else { return realm_not_found() };
    let keys: Vec<&Value> = dir.signing_keys.published(&realm.id, now).into_iter().map(|k| &k.public_jwk).collect();
    // Revalidated on every use: a relying party must see a new key as soon as it signs.
    HttpResponse::Ok().insert_header(CacheControl(vec![CacheDirective::NoCache])).json(json!({ "keys": keys }))
}
