//! Who is calling an admin endpoint: a bearer access token of the target realm or of
//! `master` (as Keycloak's admin API accepts), verified like any access token (signature,
//! expiry, live session) and resolved to the user's current roles, so a role taken away or a
//! session ended counts at once rather than when the token expires.
use super::{bearer, issue};
use crate::http::AppState;
use crate::oidc::tokens::Subject;
use actix_web::HttpRequest;
use annals_projections::realms::RealmView;
use serde_json::Value;
use std::sync::Arc;

/// An authenticated caller.
pub struct Caller {
    /// The realm that issued the token.
    pub realm: RealmView,
    pub subject: Arc<Subject>,
}

impl Caller {
    /// Keycloak's rule for reading a realm's events: a `master` administrator, or the realm's
    /// own user holding `realm-management`'s `view-events` role.
    pub fn may_view_events(&self, target: &RealmView) -> bool {
        let master_admin = self.realm.name == "master" && self.subject.realm_roles.iter().any(|r| r == "admin");
        let realm_viewer = self.realm.id == target.id
            && self
                .subject
                .client_roles
                .get("realm-management")
                .is_some_and(|roles| roles.iter().any(|r| r == "view-events"));
        master_admin || realm_viewer
    }
}

/// The caller behind the request's bearer token; `None` when there is no valid one.
pub async fn caller(state: &AppState, req: &HttpRequest, target: &RealmView) -> Option<Caller> {
    let header = req.headers().get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    let master = state.read_models.read().realms.by_name("master").filter(|r| r.settings.enabled).cloned();
    let candidates = std::iter::once(target.clone()).chain(master.filter(|m| m.id != target.id));
    for realm in candidates {
        let Some(bearer::Checked::Access(claims)) = bearer::active(state, &realm, token) else { continue };
        let sub = claims.get("sub").and_then(Value::as_str)?;
        let subject = issue::subject(state, &realm.id, sub).await.ok()?;
        return Some(Caller { realm, subject });
    }
    None
}
