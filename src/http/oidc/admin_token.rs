//! Who is calling an admin endpoint: a bearer access token of the target realm or of
//! `master` (as Keycloak's admin API accepts), verified like any access token (signature,
//! expiry, live session) and resolved to the user's current roles, so a role taken away or a
//! session ended counts at once rather than when the token expires. As in Keycloak, only the
//! admin clients' tokens (`admin-cli`, `security-admin-console`) carry the user's whole current
//! roles; a token any other client obtained counts only for roles it also carries, so an
//! application a master administrator signs in to cannot replay that token as an admin token.
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
    pub realm: Arc<RealmView>,
    pub subject: Arc<Subject>,
    /// The token's claims (its roles count for tokens of other clients than the admin ones).
    claims: Value,
}

/// Keycloak's clients whose tokens act with the user's full roles.
const ADMIN_CLIENTS: [&str; 2] = ["admin-cli", "security-admin-console"];

impl Caller {
    /// The `clientId` the token was issued to.
    pub fn client_id(&self) -> Option<&str> {
        self.claims.get("azp").and_then(Value::as_str)
    }

    /// Keycloak's rule for reading a realm's events: a `master` administrator, or the realm's
    /// own user holding `realm-management`'s `view-events` role.
    pub fn may_view_events(&self, target: &RealmView) -> bool {
        self.has_realm_management_role(target, "view-events")
    }

    /// A master-realm administrator, or a user of `target` holding `realm-management`'s
    /// `role`, in the token too (Keycloak's rule for the admin API).
    pub fn has_realm_management_role(&self, target: &RealmView, role: &str) -> bool {
        let azp = self.claims.get("azp").and_then(Value::as_str).unwrap_or_default();
        let admin_client = ADMIN_CLIENTS.contains(&azp);
        let in_token = |path: &[&str], role: &str| {
            admin_client
                || path
                    .iter()
                    .try_fold(&self.claims, |v, k| v.get(k))
                    .and_then(Value::as_array)
                    .is_some_and(|roles| roles.iter().any(|r| r == role))
        };
        let master_admin = self.realm.name == "master"
            && self.subject.realm_roles.iter().any(|r| r == "admin")
            && in_token(&["realm_access", "roles"], "admin");
        let realm_viewer = self.realm.id == target.id
            && self.subject.client_roles.get("realm-management").is_some_and(|roles| roles.iter().any(|r| r == role))
            && in_token(&["resource_access", "realm-management", "roles"], role);
        master_admin || realm_viewer
    }
}

/// The caller behind the request's bearer token; `None` when there is no valid one.
pub async fn caller(state: &AppState, req: &HttpRequest, target: &RealmView) -> Option<Caller> {
    caller_by_token(state, bearer_token(req)?, target).await
}

/// The request's bearer token, if it has one.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let header = req.headers().get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The caller behind `token`, checked as of now (a long-lived response checks it again).
pub async fn caller_by_token(state: &AppState, token: &str, target: &RealmView) -> Option<Caller> {
    let (target, master) = {
        let dir = state.read_models.read();
        let master = dir.realms.shared_by_name("master").filter(|r| r.settings.enabled && r.id != target.id).cloned();
        (dir.realms.shared(&target.id).unwrap_or_else(|| Arc::new(target.clone())), master)
    };
    let candidates = std::iter::once(target).chain(master);
    for realm in candidates {
        let Some(bearer::Checked::Access(access)) = bearer::active(state, &realm, token).await else { continue };
        let claims = &access.claims;
        // The client the token was issued to must still exist and be enabled.
        let azp = claims.get("azp").and_then(Value::as_str)?;
        let client_enabled =
            state.read_models.read().clients.by_client_id(&realm.id, azp).is_some_and(|c| c.settings.enabled);
        if !client_enabled {
            return None;
        }
        let sub = claims.get("sub").and_then(Value::as_str)?;
        let subject = issue::subject(state, &realm.id, sub).await.ok()?;
        return Some(Caller { realm, subject, claims: claims.clone() });
    }
    None
}
