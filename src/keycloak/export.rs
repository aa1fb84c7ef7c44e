//! Writing a realm from the read models in Keycloak's realm representation, so Annals' export
//! imports into Annals (losslessly) and into Keycloak.
//!
//! Fields Annals kept without mapping (`extra`) are merged back. Password hashes are written
//! in Keycloak's hashed-credential form; client secrets only as Annals' digest, since the
//! clear secret is never stored.
use super::representation::{
    ClientRep, ClientRoleNames, CompositesRep, CredentialRep, GroupRep, PasswordCredentialData, PasswordSecretData,
    RealmRep, RoleRep, RolesRep, UserRep, MASKED_SECRET,
};
use crate::credentials::password::{phc_to_keycloak, PasswordError};
use crate::sqlmodels::users::UserWithGrants;
use annals_events::user::PasswordHash;
use annals_projections::clients::ClientView;
use annals_projections::memberships::{GroupView, RoleView};
use annals_projections::realms::RealmView;
use annals_projections::users::UserView;
use annals_projections::Directory;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// No realm has this name. Handled: the CLI or admin API reports "not found".
    #[error("no realm named {0:?}")]
    RealmNotFound(String),
    /// The read models name a role, group or client that is not there. Handled: the export is
    /// refused rather than written incomplete; it indicates a projection bug.
    #[error("inconsistent read model: {0}")]
    Dangling(String),
    /// A stored password hash cannot be written in Keycloak's form. Handled: the export is
    /// refused naming the user; the operator resets that user's password.
    #[error("user {username:?}: {source}")]
    Password { username: String, source: PasswordError },
    /// Serializing the representation failed (a bug). Handled: the export is refused.
    #[error("cannot encode the export: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The realm named `realm_name` as a Keycloak realm representation. `users` are the realm's
/// users from the `users` read model ([`crate::sqlmodels::users::realm_users`]).
pub fn export_realm(dir: &Directory, users: &[UserWithGrants], realm_name: &str) -> Result<Value, ExportError> {
    let realm = dir.realms.by_name(realm_name).ok_or_else(|| ExportError::RealmNotFound(realm_name.to_string()))?;
    let ctx = Context::new(dir, realm);
    let mut rep = realm_rep(realm);
    rep.clients = Some(ctx.clients.iter().copied().map(client_rep).collect());
    rep.roles = Some(ctx.roles_rep()?);
    rep.groups = Some(ctx.group_tree(None)?);
    rep.users =
        Some(users.iter().filter(|u| u.user.realm_id == realm.id).map(|u| ctx.user_rep(u)).collect::<Result<_, _>>()?);
    Ok(serde_json::to_value(rep)?)
}

/// Removes from `extra` the keys a representation sets itself, so a stray copy in `extra`
/// cannot shadow the mapped value when both are flattened into one object.
fn without_mapped<T: Serialize>(rep: &T, mut extra: Map<String, Value>) -> Result<Map<String, Value>, ExportError> {
    if let Value::Object(mapped) = serde_json::to_value(rep)? {
        extra.retain(|k, _| !mapped.contains_key(k));
    }
    Ok(extra)
}

fn realm_rep(realm: &RealmView) -> RealmRep {
    let s = &realm.settings;
    let b = &s.brute_force;
    RealmRep {
        id: Some(realm.id.clone()),
        realm: Some(realm.name.clone()),
        display_name: s.display_name.clone(),
        enabled: Some(s.enabled),
        access_token_lifespan: Some(s.access_token_lifespan),
        sso_session_idle_timeout: Some(s.sso_session_idle_timeout),
        sso_session_max_lifespan: Some(s.sso_session_max_lifespan),
        offline_session_idle_timeout: Some(s.offline_session_idle_timeout),
        offline_session_max_lifespan_enabled: Some(s.offline_session_max_lifespan_enabled),
        offline_session_max_lifespan: Some(s.offline_session_max_lifespan),
        access_code_lifespan: Some(s.access_code_lifespan),
        default_signature_algorithm: Some(s.default_signature_algorithm.clone()),
        registration_allowed: Some(s.registration_allowed),
        login_with_email_allowed: Some(s.login_with_email_allowed),
        duplicate_emails_allowed: Some(s.duplicate_emails_allowed),
        reset_password_allowed: Some(s.reset_password_allowed),
        remember_me: Some(s.remember_me),
        verify_email: Some(s.verify_email),
        ssl_required: Some(s.ssl_required.clone()),
        brute_force_protected: Some(b.enabled),
        permanent_lockout: Some(b.permanent_lockout),
        failure_factor: Some(b.failure_factor),
        wait_increment_seconds: Some(b.wait_increment_seconds),
        max_failure_wait_seconds: Some(b.max_failure_wait_seconds),
        minimum_quick_login_wait_seconds: Some(b.minimum_quick_login_wait_seconds),
        quick_login_check_milli_seconds: Some(b.quick_login_check_milli_seconds),
        max_delta_time_seconds: Some(b.max_delta_time_seconds),
        // The realm's own `extra` never holds these (import consumes them), but strip them
        // anyway so an odd key cannot duplicate a list written from the read models.
        // The offline maximum is mapped now; older realms' copies in `extra` are read into the
        // settings (see the realms projection) and must not shadow them here.
        extra: strip(
            &realm.extra,
            &["clients", "roles", "groups", "users", "offlineSessionMaxLifespanEnabled", "offlineSessionMaxLifespan"],
        ),
        ..RealmRep::default()
    }
}

fn strip(extra: &Map<String, Value>, keys: &[&str]) -> Map<String, Value> {
    extra.iter().filter(|(k, _)| !keys.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn client_rep(c: &ClientView) -> ClientRep {
    let s = &c.settings;
    let rep = ClientRep {
        id: Some(c.id.clone()),
        client_id: c.client_id.clone(),
        name: s.name.clone(),
        description: s.description.clone(),
        enabled: Some(s.enabled),
        protocol: Some(s.protocol.clone()),
        public_client: Some(s.public_client),
        bearer_only: Some(s.bearer_only),
        consent_required: Some(s.consent_required),
        standard_flow_enabled: Some(s.standard_flow_enabled),
        implicit_flow_enabled: Some(s.implicit_flow_enabled),
        direct_access_grants_enabled: Some(s.direct_access_grants_enabled),
        service_accounts_enabled: Some(s.service_accounts_enabled),
        frontchannel_logout: Some(s.frontchannel_logout),
        full_scope_allowed: Some(s.full_scope_allowed),
        client_authenticator_type: Some(s.client_authenticator_type.clone()),
        root_url: s.root_url.clone(),
        base_url: s.base_url.clone(),
        admin_url: s.admin_url.clone(),
        redirect_uris: Some(s.redirect_uris.clone()),
        web_origins: Some(s.web_origins.clone()),
        default_client_scopes: Some(s.default_client_scopes.clone()),
        optional_client_scopes: Some(s.optional_client_scopes.clone()),
        attributes: Some(s.attributes.clone()),
        // Keycloak's own mask, so Keycloak reads a confidential client; the digest lets Annals
        // restore the secret without ever having it in clear.
        secret: c.secret.as_ref().map(|_| MASKED_SECRET.to_string()),
        annals_secret_digest: c.secret.clone(),
        annals_sealed_secret: c.sealed_secret.as_ref().map(crate::secrets::sealed_to_text),
        extra: Map::new(),
    };
    ClientRep { extra: strip(&c.extra, &["secret", "annalsSecretDigest", "annalsSealedSecret"]), ..rep }
}

/// Lookups shared by the parts of one realm's export.
struct Context<'a> {
    dir: &'a Directory,
    realm_id: &'a str,
    /// The realm's clients, by `clientId`.
    clients: Vec<&'a ClientView>,
    /// A client's stream id to its OAuth `clientId`.
    client_ids: HashMap<&'a str, &'a str>,
    groups: Vec<&'a GroupView>,
}

impl<'a> Context<'a> {
    fn new(dir: &'a Directory, realm: &'a RealmView) -> Self {
        let mut clients: Vec<_> = dir.clients.in_realm(&realm.id).collect();
        clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        let client_ids = clients.iter().map(|c| (c.id.as_str(), c.client_id.as_str())).collect();
        let mut groups: Vec<_> = dir.memberships.groups_in_realm(&realm.id).collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Context { dir, realm_id: &realm.id, clients, client_ids, groups }
    }

    fn role(&self, id: &str) -> Result<&'a RoleView, ExportError> {
        self.dir.memberships.role(id).ok_or_else(|| ExportError::Dangling(format!("role {id:?}")))
    }

    /// Role ids as Keycloak names them: realm role names, and client role names by `clientId`.
    fn role_names(&self, ids: &BTreeSet<String>) -> Result<(Vec<String>, ClientRoleNames), ExportError> {
        let mut realm = Vec::new();
        let mut client = ClientRoleNames::new();
        for id in ids {
            let role = self.role(id)?;
            match &role.client_id {
                None => realm.push(role.name.clone()),
                Some(owner) => {
                    let client_id = self
                        .client_ids
                        .get(owner.as_str())
                        .ok_or_else(|| ExportError::Dangling(format!("client {owner:?} of role {id:?}")))?;
                    client.entry(client_id.to_string()).or_default().push(role.name.clone());
                }
            }
        }
        realm.sort();
        client.values_mut().for_each(|names| names.sort());
        Ok((realm, client))
    }

    fn role_rep(&self, role: &RoleView) -> Result<RoleRep, ExportError> {
        let (realm, client) = self.role_names(&role.composites)?;
        let composites = (!role.composites.is_empty()).then(|| CompositesRep {
            realm: (!realm.is_empty()).then_some(realm),
            client: (!client.is_empty()).then_some(client),
        });
        let rep = RoleRep {
            id: Some(role.id.clone()),
            name: role.name.clone(),
            description: role.description.clone(),
            composite: Some(!role.composites.is_empty()),
            composites,
            client_role: Some(role.client_id.is_some()),
            container_id: Some(role.client_id.clone().unwrap_or_else(|| self.realm_id.to_string())),
            attributes: Some(role.attributes.clone()),
            extra: Map::new(),
        };
        let extra = without_mapped(&rep, role.extra.clone())?;
        Ok(RoleRep { extra, ..rep })
    }

    fn roles_rep(&self) -> Result<RolesRep, ExportError> {
        let mut roles: Vec<_> = self.dir.memberships.roles_in_realm(self.realm_id).collect();
        roles.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        let mut realm = Vec::new();
        // Keycloak lists every client, with an empty list when it has no roles.
        let mut client: BTreeMap<String, Vec<RoleRep>> =
            self.clients.iter().map(|c| (c.client_id.clone(), Vec::new())).collect();
        for role in roles {
            match &role.client_id {
                None => realm.push(self.role_rep(role)?),
                Some(owner) => match self.client_ids.get(owner.as_str()) {
                    Some(client_id) => client.entry(client_id.to_string()).or_default().push(self.role_rep(role)?),
                    // Roles of a deleted client: Keycloak deletes them with the client, and
                    // nothing can name them in a representation, so they are left out.
                    None => continue,
                },
            }
        }
        Ok(RolesRep { realm: Some(realm), client: Some(client) })
    }

    fn group_path(&self, id: &str) -> Result<String, ExportError> {
        let mut names = Vec::new();
        let mut current = Some(id.to_string());
        while let Some(gid) = current {
            // The projection bounds ancestor walks the same way; a cycle is a corrupt model.
            if names.len() > 64 {
                return Err(ExportError::Dangling(format!("group {id:?} has a parent cycle")));
            }
            let group =
                self.dir.memberships.group(&gid).ok_or_else(|| ExportError::Dangling(format!("group {gid:?}")))?;
            names.push(group.name.as_str());
            current = group.parent_id.clone();
        }
        names.reverse();
        Ok(format!("/{}", names.join("/")))
    }

    fn group_tree(&self, parent: Option<&str>) -> Result<Vec<GroupRep>, ExportError> {
        let mut out = Vec::new();
        for group in self.groups.iter().filter(|g| g.parent_id.as_deref() == parent) {
            let (realm_roles, client_roles) = self.role_names(&group.roles)?;
            let sub_groups = self.group_tree(Some(&group.id))?;
            let rep = GroupRep {
                id: Some(group.id.clone()),
                name: group.name.clone(),
                path: Some(self.group_path(&group.id)?),
                parent_id: group.parent_id.clone(),
                sub_group_count: Some(sub_groups.len() as u64),
                sub_groups: Some(sub_groups),
                attributes: Some(group.attributes.clone()),
                realm_roles: Some(realm_roles),
                client_roles: Some(client_roles),
                extra: Map::new(),
            };
            let extra = without_mapped(&rep, group.extra.clone())?;
            out.push(GroupRep { extra, ..rep });
        }
        Ok(out)
    }

    fn user_rep(&self, grants: &UserWithGrants) -> Result<UserRep, ExportError> {
        let u = &grants.user;
        let (realm_roles, client_roles) = self.role_names(&grants.roles)?;
        let mut groups = grants.groups.iter().map(|g| self.group_path(g)).collect::<Result<Vec<_>, _>>()?;
        groups.sort();
        let mut extra = u.extra.clone();
        let stubs = match extra.remove("credentials") {
            Some(Value::Array(stubs)) => stubs,
            _ => Vec::new(),
        };
        let credentials = credentials(u, stubs)?;
        let p = &u.profile;
        let rep = UserRep {
            id: Some(u.id.to_string()),
            created_timestamp: Some(u.created_timestamp),
            username: u.username.clone(),
            enabled: Some(p.enabled),
            email_verified: Some(p.email_verified),
            first_name: p.first_name.clone(),
            last_name: p.last_name.clone(),
            email: p.email.clone(),
            attributes: Some(p.attributes.clone()),
            required_actions: Some(p.required_actions.clone()),
            federation_link: u.federation_link.clone(),
            realm_roles: Some(realm_roles),
            client_roles: Some(client_roles),
            groups: Some(groups),
            credentials: Some(credentials),
            extra: Map::new(),
        };
        let extra = without_mapped(&rep, extra)?;
        Ok(UserRep { extra, ..rep })
    }
}

/// The user's credentials: the kept entries from import, with the current password hash
/// merged into the password entry (or appended when there is none).
fn credentials(u: &UserView, stubs: Vec<Value>) -> Result<Vec<CredentialRep>, ExportError> {
    let mut out = Vec::new();
    let mut password = match &u.password {
        Some(hash) => Some(password_credential(&u.username, hash, u.password_temporary)?),
        None => None,
    };
    for stub in stubs {
        let Ok(mut c) = serde_json::from_value::<CredentialRep>(stub) else { continue };
        if c.kind.as_deref() == Some("password") {
            // Without a current password the kept metadata describes nothing.
            let Some(p) = password.take() else { continue };
            c.secret_data = p.secret_data;
            c.credential_data = p.credential_data;
            c.temporary = p.temporary;
            c.value = None;
        }
        out.push(c);
    }
    out.extend(password);
    Ok(out)
}

/// A password hash as Keycloak's hashed password credential. Annals' argon2id PHC strings
/// become Keycloak `argon2` hashes, which Keycloak verifies.
fn password_credential(username: &str, hash: &PasswordHash, temporary: bool) -> Result<CredentialRep, ExportError> {
    let err = |source| ExportError::Password { username: username.to_string(), source };
    let keycloak = match hash {
        PasswordHash::Phc { phc } => phc_to_keycloak(phc).map_err(err)?,
        other => other.clone(),
    };
    let PasswordHash::Keycloak { algorithm, iterations, salt, value, additional_parameters } = keycloak else {
        return Err(err(PasswordError::UnknownAlgorithm("phc".into())));
    };
    let secret = PasswordSecretData { value, salt, additional_parameters: BTreeMap::new() };
    let data = PasswordCredentialData { hash_iterations: iterations, algorithm, additional_parameters };
    Ok(CredentialRep {
        kind: Some("password".into()),
        value: None,
        // Keycloak's own exports leave it out; write it only when it carries information.
        temporary: temporary.then_some(true),
        secret_data: Some(serde_json::to_string(&secret)?),
        credential_data: Some(serde_json::to_string(&data)?),
        extra: Map::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phc_user(temporary: bool) -> UserView {
        UserView {
            id: "u1".into(),
            realm_id: "r".into(),
            username: "dave".into(),
            profile: Default::default(),
            password: Some(PasswordHash::Phc {
                phc:
                    "$argon2id$v=19$m=19456,t=2,p=1$ABEiM0RVZneImaq7zN3u/w$ggG5eVD9rnr29qDBC//4Z1M4+XuHGop9XJ98GH2w0as"
                        .into(),
            }),
            password_temporary: temporary,
            created_timestamp: 0,
            federation_link: None,
            extra: Map::new(),
        }
    }

    #[test]
    fn given_an_argon2id_password_when_exported_then_keycloak_argon2_form_is_written() {
        let creds = credentials(&phc_user(true), Vec::new()).unwrap();
        assert_eq!(creds.len(), 1);
        let c = &creds[0];
        assert_eq!(c.kind.as_deref(), Some("password"));
        assert_eq!(c.temporary, Some(true));
        let data: Value = serde_json::from_str(c.credential_data.as_deref().unwrap()).unwrap();
        assert_eq!(data["algorithm"], "argon2");
        assert_eq!(data["hashIterations"], 2);
        assert_eq!(data["additionalParameters"]["memory"], serde_json::json!(["19456"]));
        let secret: Value = serde_json::from_str(c.secret_data.as_deref().unwrap()).unwrap();
        assert_eq!(secret["salt"], "ABEiM0RVZneImaq7zN3u/w==");
    }

    #[test]
    fn given_kept_credential_entries_when_exported_then_the_password_merges_into_its_entry() {
        let stubs = vec![
            serde_json::json!({"type": "otp", "id": "o1", "secretData": "sealed"}),
            serde_json::json!({"type": "password", "id": "p1", "userLabel": "mine"}),
        ];
        let creds = credentials(&phc_user(false), stubs).unwrap();
        assert_eq!(creds.len(), 2);
        assert_eq!(creds[0].kind.as_deref(), Some("otp"));
        assert_eq!(creds[1].extra["id"], "p1");
        assert!(creds[1].secret_data.is_some());
        assert_eq!(creds[1].temporary, None);
    }

    #[test]
    fn given_a_password_entry_but_no_password_when_exported_then_the_entry_is_dropped() {
        let mut u = phc_user(false);
        u.password = None;
        let creds = credentials(&u, vec![serde_json::json!({"type": "password", "id": "p1"})]).unwrap();
        assert!(creds.is_empty());
    }

    #[test]
    fn given_extra_that_repeats_a_mapped_field_when_exported_then_the_mapped_value_wins() {
        let rep = RoleRep { name: "r".into(), ..Default::default() };
        let extra: Map<String, Value> =
            serde_json::from_value(serde_json::json!({"name": "shadow", "keep": 1})).unwrap();
        let kept = without_mapped(&rep, extra).unwrap();
        assert_eq!(kept.len(), 1);
        assert!(kept.contains_key("keep"));
    }
}
