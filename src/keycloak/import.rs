//! Planning the import of a Keycloak realm export: parse, validate, and map to the events that
//! create the realm, its clients, roles, groups and users.
//!
//! Planning is pure apart from hashing and sealing: it reads the text and the current
//! directory and returns every append, or an error naming the JSON path at fault. The caller
//! appends the whole plan with one atomic `append_all`, so a refused file writes nothing and
//! an accepted one appears at once.
use super::representation::{
    ClientRep, ClientRoleNames, CredentialRep, GroupRep, PasswordCredentialData, PasswordSecretData, RealmRep, RoleRep,
    UserRep, MASKED_SECRET,
};
use crate::credentials::password::{self, hash_password, keycloak_to_phc};
use crate::secrets::{sealed_from_text, sealed_to_text, ServerKeys, DIGEST_ALG};
use crate::store::{ExpectedVersion, StreamAppend};
use annals_events::client::{ClientCreated, ClientEvent, ClientSettings, SecretDigest};
use annals_events::group::{GroupCreated, GroupEvent, GroupRoleGranted};
use annals_events::realm::{BruteForceSettings, RealmCreated, RealmEvent, RealmSettings};
use annals_events::role::{RoleCompositesSet, RoleCreated, RoleEvent};
use annals_events::signing_key::SealedKey;
use annals_events::user::{
    PasswordHash, UserCreated, UserEvent, UserJoinedGroup, UserPasswordSet, UserProfile, UserRoleGranted,
};
use annals_events::{DomainEvent, Metadata, NewEvent, StreamId, StreamType};
use annals_projections::Directory;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

/// Keys (compared case-insensitively) whose string values are secrets wherever they appear in
/// fields Annals keeps but does not map: SMTP and LDAP passwords, identity-provider client
/// secrets, key-provider private keys, other credentials' secret data. Their values are sealed
/// before they go into an event, because no event may hold a secret in clear.
const SECRET_KEYS: [&str; 8] = [
    "password",
    "secret",
    "clientsecret",
    "bindcredential",
    "privatekey",
    "secretdata",
    "kerberospassword",
    "client.secret.rotated",
];

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The text is not JSON of the realm representation's shape: a syntax error or a wrong
    /// type at `path`. Handled: the import command prints it and exits non-zero; nothing is
    /// appended.
    #[error("{path}: {message}")]
    Malformed { path: String, message: String },
    /// The file is well formed but refused (duplicate, unresolved reference, invalid URI,
    /// secret on a public client, ...). Handled: like [`ImportError::Malformed`].
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    /// A realm of that name already exists. Handled: like [`ImportError::Malformed`]; the
    /// operator deletes the realm or renames it in the file.
    #[error("realm: a realm named {name:?} already exists")]
    RealmExists { name: String },
    /// Hashing a password or sealing a secret failed. Handled: like
    /// [`ImportError::Malformed`]; points at the value that could not be protected.
    #[error("{path}: {message}")]
    Crypto { path: String, message: String },
    /// An event could not be encoded (a bug, not a property of the file). Handled: like
    /// [`ImportError::Malformed`].
    #[error("{path}: cannot encode event: {source}")]
    Encode { path: String, source: serde_json::Error },
}

impl ImportError {
    /// The JSON path of the offending value (`clients[3].redirectUris[0]`).
    pub fn path(&self) -> &str {
        match self {
            ImportError::Malformed { path, .. }
            | ImportError::Invalid { path, .. }
            | ImportError::Crypto { path, .. }
            | ImportError::Encode { path, .. } => path,
            ImportError::RealmExists { .. } => "realm",
        }
    }
}

/// Every append that imports one realm. Append all of it with one `append_all`, or none.
#[derive(Clone, Debug)]
pub struct ImportPlan {
    pub realm_name: String,
    /// The realm's stream id: the representation's `id`, else its name.
    pub realm_id: String,
    /// One append per new stream, each expecting the stream not to exist yet.
    pub appends: Vec<StreamAppend>,
    pub counts: ImportCounts,
}

/// What a plan creates, for the operator's summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub clients: usize,
    pub realm_roles: usize,
    pub client_roles: usize,
    pub groups: usize,
    pub users: usize,
    pub passwords: usize,
    pub events: usize,
}

/// Parses and validates a Keycloak realm export and plans the events that import it.
pub fn plan_import(
    json: &str,
    keys: &ServerKeys,
    existing: &Directory,
    user_ids: &HashSet<String>,
) -> Result<ImportPlan, ImportError> {
    let rep: RealmRep = parse_at(json, "")?;
    Planner::new(keys, existing, user_ids).plan(rep)
}

/// Deserializes `json`, naming the path of any error below `prefix`.
fn parse_at<T: DeserializeOwned>(json: &str, prefix: &str) -> Result<T, ImportError> {
    let mut de = serde_json::Deserializer::from_str(json);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| ImportError::Malformed {
        path: join_path(prefix, &e.path().to_string()),
        message: e.into_inner().to_string(),
    })?;
    de.end().map_err(|e| ImportError::Malformed { path: join_path(prefix, "."), message: e.to_string() })?;
    Ok(value)
}

/// `prefix` + a serde_path_to_error path, whose root is written `.`.
fn join_path(prefix: &str, inner: &str) -> String {
    match (prefix.is_empty(), inner == ".") {
        (true, _) => inner.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}.{inner}"),
    }
}

fn invalid(path: impl Into<String>, reason: impl Into<String>) -> ImportError {
    ImportError::Invalid { path: path.into(), reason: reason.into() }
}

/// Realm names appear in every URL (`/realms/{name}`), so only URL-safe characters.
pub fn validate_realm_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the realm name must not be empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a usable realm name"));
    }
    match name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        Some(c) => Err(format!("realm name {name:?} contains {c:?}; use letters, digits, '-', '_' and '.'")),
        None => Ok(()),
    }
}

/// Whether a redirect URI is one Keycloak accepts: an absolute URI, a path relative to the
/// client's root URL, or either of those followed by a single trailing `*` wildcard.
pub fn valid_redirect_uri(uri: &str) -> bool {
    if uri.is_empty() || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let base = uri.strip_suffix('*').unwrap_or(uri);
    if base.contains('*') {
        // Keycloak matches only a trailing wildcard; one elsewhere would silently never match.
        return false;
    }
    if base.is_empty() {
        // A lone `*`: Keycloak accepts it (any URI), however unwise.
        return true;
    }
    base.starts_with('/') || is_absolute_uri(base)
}

/// RFC 3986 `scheme ":" hier-part`, and for http(s) a non-empty authority.
fn is_absolute_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else { return false };
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok || rest.is_empty() {
        return false;
    }
    if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
        let Some(after) = rest.strip_prefix("//") else { return false };
        let authority = after.split(['/', '?', '#']).next().unwrap_or_default();
        return !authority.is_empty() && !authority.starts_with(':');
    }
    true
}

/// The realm settings a representation sets, Keycloak's defaults for the rest.
pub fn realm_settings(rep: &RealmRep) -> RealmSettings {
    let d = RealmSettings::default();
    let b = BruteForceSettings::default();
    RealmSettings {
        display_name: rep.display_name.clone(),
        enabled: rep.enabled.unwrap_or(d.enabled),
        access_token_lifespan: rep.access_token_lifespan.unwrap_or(d.access_token_lifespan),
        sso_session_idle_timeout: rep.sso_session_idle_timeout.unwrap_or(d.sso_session_idle_timeout),
        sso_session_max_lifespan: rep.sso_session_max_lifespan.unwrap_or(d.sso_session_max_lifespan),
        offline_session_idle_timeout: rep.offline_session_idle_timeout.unwrap_or(d.offline_session_idle_timeout),
        offline_session_max_lifespan_enabled: rep
            .offline_session_max_lifespan_enabled
            .unwrap_or(d.offline_session_max_lifespan_enabled),
        offline_session_max_lifespan: rep.offline_session_max_lifespan.unwrap_or(d.offline_session_max_lifespan),
        access_code_lifespan: rep.access_code_lifespan.unwrap_or(d.access_code_lifespan),
        default_signature_algorithm: rep.default_signature_algorithm.clone().unwrap_or(d.default_signature_algorithm),
        registration_allowed: rep.registration_allowed.unwrap_or(d.registration_allowed),
        login_with_email_allowed: rep.login_with_email_allowed.unwrap_or(d.login_with_email_allowed),
        duplicate_emails_allowed: rep.duplicate_emails_allowed.unwrap_or(d.duplicate_emails_allowed),
        reset_password_allowed: rep.reset_password_allowed.unwrap_or(d.reset_password_allowed),
        remember_me: rep.remember_me.unwrap_or(d.remember_me),
        verify_email: rep.verify_email.unwrap_or(d.verify_email),
        ssl_required: rep.ssl_required.clone().unwrap_or(d.ssl_required),
        brute_force: BruteForceSettings {
            enabled: rep.brute_force_protected.unwrap_or(b.enabled),
            permanent_lockout: rep.permanent_lockout.unwrap_or(b.permanent_lockout),
            failure_factor: rep.failure_factor.unwrap_or(b.failure_factor),
            wait_increment_seconds: rep.wait_increment_seconds.unwrap_or(b.wait_increment_seconds),
            max_failure_wait_seconds: rep.max_failure_wait_seconds.unwrap_or(b.max_failure_wait_seconds),
            minimum_quick_login_wait_seconds: rep
                .minimum_quick_login_wait_seconds
                .unwrap_or(b.minimum_quick_login_wait_seconds),
            quick_login_check_milli_seconds: rep
                .quick_login_check_milli_seconds
                .unwrap_or(b.quick_login_check_milli_seconds),
            max_delta_time_seconds: rep.max_delta_time_seconds.unwrap_or(b.max_delta_time_seconds),
        },
    }
}

/// The client settings a representation sets, Keycloak's defaults for the rest.
fn client_settings(c: &ClientRep) -> ClientSettings {
    let d = ClientSettings::default();
    ClientSettings {
        name: c.name.clone(),
        description: c.description.clone(),
        enabled: c.enabled.unwrap_or(d.enabled),
        protocol: c.protocol.clone().unwrap_or(d.protocol),
        public_client: c.public_client.unwrap_or(d.public_client),
        bearer_only: c.bearer_only.unwrap_or(d.bearer_only),
        consent_required: c.consent_required.unwrap_or(d.consent_required),
        standard_flow_enabled: c.standard_flow_enabled.unwrap_or(d.standard_flow_enabled),
        implicit_flow_enabled: c.implicit_flow_enabled.unwrap_or(d.implicit_flow_enabled),
        direct_access_grants_enabled: c.direct_access_grants_enabled.unwrap_or(d.direct_access_grants_enabled),
        service_accounts_enabled: c.service_accounts_enabled.unwrap_or(d.service_accounts_enabled),
        frontchannel_logout: c.frontchannel_logout.unwrap_or(d.frontchannel_logout),
        full_scope_allowed: c.full_scope_allowed.unwrap_or(d.full_scope_allowed),
        client_authenticator_type: c.client_authenticator_type.clone().unwrap_or(d.client_authenticator_type),
        root_url: c.root_url.clone(),
        base_url: c.base_url.clone(),
        admin_url: c.admin_url.clone(),
        redirect_uris: c.redirect_uris.clone().unwrap_or_default(),
        web_origins: c.web_origins.clone().unwrap_or_default(),
        default_client_scopes: c.default_client_scopes.clone().unwrap_or_default(),
        optional_client_scopes: c.optional_client_scopes.clone().unwrap_or_default(),
        attributes: c.attributes.clone().unwrap_or_default(),
    }
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEYS.contains(&key.as_str())
}

/// A value worth sealing: not empty, not Keycloak's mask, not sealed already (an Annals
/// export read back).
fn needs_sealing(s: &str) -> bool {
    !s.is_empty() && s != MASKED_SECRET && sealed_from_text(s).is_none()
}

/// Removes duplicates, keeping the first occurrence, so a role listed twice is granted once.
fn dedup(ids: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    ids.into_iter().filter(|id| seen.insert(id.clone())).collect()
}

/// Group paths are written with a leading `/`; Keycloak also accepts them without.
fn normalize_group_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

struct Planner<'a> {
    keys: &'a ServerKeys,
    existing: &'a Directory,
    /// Ids of users that exist already (users are not in the in-memory directory).
    user_ids: &'a HashSet<String>,
    realm_id: String,
    metadata: Metadata,
    appends: Vec<StreamAppend>,
    streams: HashSet<StreamId>,
    counts: ImportCounts,
    /// OAuth `clientId` to the client's stream id.
    clients: HashMap<String, String>,
    /// (owning client's stream id, role name) to the role's stream id.
    roles: HashMap<(Option<String>, String), String>,
    /// Group path (`/staff/admins`) to the group's stream id.
    groups: HashMap<String, String>,
}

/// A role whose id is assigned, waiting for its events (composites need every id first).
struct PendingRole {
    path: String,
    client: Option<String>,
    id: String,
    rep: RoleRep,
}

impl<'a> Planner<'a> {
    fn new(keys: &'a ServerKeys, existing: &'a Directory, user_ids: &'a HashSet<String>) -> Self {
        Planner {
            keys,
            existing,
            user_ids,
            realm_id: String::new(),
            metadata: Metadata::default(),
            appends: Vec::new(),
            streams: HashSet::new(),
            counts: ImportCounts::default(),
            clients: HashMap::new(),
            roles: HashMap::new(),
            groups: HashMap::new(),
        }
    }

    fn plan(mut self, mut rep: RealmRep) -> Result<ImportPlan, ImportError> {
        let name = rep.realm.take().ok_or_else(|| invalid("realm", "the realm name is missing"))?;
        validate_realm_name(&name).map_err(|reason| invalid("realm", reason))?;
        if self.existing.realms.by_name(&name).is_some() {
            return Err(ImportError::RealmExists { name });
        }
        self.metadata = Metadata::system("import").with_realm(name.clone());
        self.realm_id = self.stream_id(StreamType::Realm, rep.id.take().or_else(|| Some(name.clone())), "")?;

        let settings = realm_settings(&rep);
        let clients = rep.clients.take().unwrap_or_default();
        let roles = rep.roles.take().unwrap_or_default();
        let groups = rep.groups.take().unwrap_or_default();
        let users = rep.users.take().unwrap_or_default();
        let extra = self.seal_extra(std::mem::take(&mut rep.extra), "")?;
        let realm = RealmCreated { name: name.clone(), settings: settings.clone(), extra };
        self.push(StreamType::Realm, self.realm_id.clone(), vec![RealmEvent::from(realm).into()], "realm")?;

        for (i, client) in clients.into_iter().enumerate() {
            self.plan_client(&format!("clients[{i}]"), client)?;
        }
        self.plan_roles(roles.realm.unwrap_or_default(), roles.client.unwrap_or_default())?;
        for (i, group) in groups.into_iter().enumerate() {
            self.plan_group(format!("groups[{i}]"), group, None)?;
        }
        let mut usernames = HashSet::new();
        let mut emails = HashSet::new();
        for (i, user) in users.into_iter().enumerate() {
            let path = format!("users[{i}]");
            if !usernames.insert(user.username.to_lowercase()) {
                return Err(invalid(
                    format!("{path}.username"),
                    format!("duplicate username {:?} (usernames are case-insensitive)", user.username),
                ));
            }
            if let Some(email) = user.email.as_deref().filter(|e| !e.is_empty()) {
                if !settings.duplicate_emails_allowed && !emails.insert(email.to_lowercase()) {
                    return Err(invalid(
                        format!("{path}.email"),
                        format!("duplicate email {email:?} and the realm does not allow duplicate emails"),
                    ));
                }
            }
            self.plan_user(&path, user)?;
        }

        self.counts.events = self.appends.iter().map(|a| a.events.len()).sum();
        Ok(ImportPlan { realm_name: name, realm_id: self.realm_id, appends: self.appends, counts: self.counts })
    }

    fn plan_client(&mut self, path: &str, mut c: ClientRep) -> Result<(), ImportError> {
        if c.client_id.is_empty() {
            return Err(invalid(format!("{path}.clientId"), "clientId must not be empty"));
        }
        if self.clients.contains_key(&c.client_id) {
            return Err(invalid(format!("{path}.clientId"), format!("duplicate clientId {:?}", c.client_id)));
        }
        let mut settings = client_settings(&c);
        for (j, uri) in settings.redirect_uris.iter().enumerate() {
            if !valid_redirect_uri(uri) {
                return Err(invalid(
                    format!("{path}.redirectUris[{j}]"),
                    format!(
                        "{uri:?} is not an absolute URI, a path relative to the root URL, or one of those ending in '*'"
                    ),
                ));
            }
        }
        for (key, value) in settings.attributes.iter_mut() {
            if is_secret_key(key) && needs_sealing(value) {
                *value = self.seal_text(value, &format!("{path}.attributes.{key}"))?;
            }
        }
        let clear = c.secret.clone().filter(|s| !s.is_empty() && s != MASKED_SECRET);
        let exported_sealed = c.annals_sealed_secret.take();
        let secret = self.client_secret(path, c.secret.take(), c.annals_secret_digest.take())?;
        let sealed_secret = self.sealed_client_secret(path, clear, exported_sealed, secret.as_ref())?;
        if let (Some(_), true) = (&secret, settings.public_client) {
            return Err(invalid(
                format!("{path}.secret"),
                "a public client has no secret; make it confidential (publicClient: false) or drop the secret",
            ));
        }
        let id = self.stream_id(StreamType::Client, c.id.take(), path)?;
        self.clients.insert(c.client_id.clone(), id.clone());
        let extra = self.seal_extra(std::mem::take(&mut c.extra), path)?;
        let created = ClientCreated {
            realm_id: self.realm_id.clone(),
            client_id: c.client_id,
            settings,
            secret,
            sealed_secret,
            extra,
        };
        self.counts.clients += 1;
        self.push(StreamType::Client, id, vec![ClientEvent::from(created).into()], path)
    }

    /// The secret sealed beside its digest (`client_secret_jwt` needs it as its HMAC key):
    /// the clear secret sealed now, or Annals' own sealed copy from an Annals export, which
    /// must open under this server's keys.
    fn sealed_client_secret(
        &self,
        path: &str,
        clear: Option<String>,
        exported: Option<String>,
        digest: Option<&SecretDigest>,
    ) -> Result<Option<SealedKey>, ImportError> {
        let Some(digest) = digest else { return Ok(None) };
        if let Some(clear) = clear {
            let sealed = self
                .keys
                .seal(clear.as_bytes())
                .map_err(|e| ImportError::Crypto { path: format!("{path}.secret"), message: e.to_string() })?;
            return Ok(Some(sealed));
        }
        let Some(text) = exported else { return Ok(None) };
        let here = format!("{path}.annalsSealedSecret");
        let sealed = sealed_from_text(&text).ok_or_else(|| invalid(here.clone(), "not an Annals sealed value"))?;
        let opened =
            self.keys.open(&sealed).map_err(|e| invalid(&here, format!("{e}; supply the clear secret instead")))?;
        // Both must be the same secret, or secret and assertion authentication would differ.
        if !String::from_utf8(opened).is_ok_and(|s| self.keys.verify_digest(&s, digest)) {
            return Err(invalid(here, "the sealed secret is not the one annalsSecretDigest names"));
        }
        Ok(Some(sealed))
    }

    /// The digest to store: of the clear secret, or Annals' own digest from an Annals export.
    fn client_secret(
        &self,
        path: &str,
        secret: Option<String>,
        digest: Option<SecretDigest>,
    ) -> Result<Option<SecretDigest>, ImportError> {
        let secret = secret.filter(|s| !s.is_empty());
        match (secret, digest) {
            (Some(s), _) if s != MASKED_SECRET => Ok(Some(self.keys.digest(&s))),
            (_, Some(d)) => {
                if d.alg != DIGEST_ALG || d.key_id != self.keys.key_id() {
                    return Err(invalid(
                        format!("{path}.annalsSecretDigest"),
                        format!(
                            "digest {}/{} was made with another server key than this server's ({}), so it \
                             cannot verify here; supply the clear secret instead",
                            d.alg,
                            d.key_id,
                            self.keys.key_id()
                        ),
                    ));
                }
                Ok(Some(d))
            }
            (Some(_), None) => Err(invalid(
                format!("{path}.secret"),
                "the secret is masked (\"**********\"); export with `kc.sh export` to include secrets, or \
                 set the clear secret",
            )),
            (None, None) => Ok(None),
        }
    }

    fn plan_roles(
        &mut self,
        realm_roles: Vec<RoleRep>,
        client_roles: BTreeMap<String, Vec<RoleRep>>,
    ) -> Result<(), ImportError> {
        // First every id, so composites may name roles listed after them.
        let mut pending = Vec::new();
        for (i, rep) in realm_roles.into_iter().enumerate() {
            pending.push(self.register_role(format!("roles.realm[{i}]"), None, rep)?);
        }
        for (client_id, reps) in client_roles {
            let client = self.clients.get(&client_id).cloned().ok_or_else(|| {
                invalid(format!("roles.client.{client_id}"), format!("no client has clientId {client_id:?}"))
            })?;
            for (i, rep) in reps.into_iter().enumerate() {
                pending.push(self.register_role(
                    format!("roles.client.{client_id}[{i}]"),
                    Some(client.clone()),
                    rep,
                )?);
            }
        }
        for PendingRole { path, client, id, mut rep } in pending {
            let composites = match rep.composites.take() {
                Some(c) => self.resolve_roles(
                    c.realm.as_deref().unwrap_or_default(),
                    &format!("{path}.composites.realm"),
                    &c.client.unwrap_or_default(),
                    &format!("{path}.composites.client"),
                )?,
                None => Vec::new(),
            };
            let extra = self.seal_extra(std::mem::take(&mut rep.extra), &path)?;
            if client.is_some() {
                self.counts.client_roles += 1;
            } else {
                self.counts.realm_roles += 1;
            }
            let created = RoleCreated {
                realm_id: self.realm_id.clone(),
                client_id: client,
                name: rep.name,
                description: rep.description,
                attributes: rep.attributes.unwrap_or_default(),
                extra,
            };
            let mut events: Vec<DomainEvent> = vec![RoleEvent::from(created).into()];
            if !composites.is_empty() {
                events.push(RoleEvent::from(RoleCompositesSet { composites }).into());
            }
            self.push(StreamType::Role, id, events, &path)?;
        }
        Ok(())
    }

    fn register_role(
        &mut self,
        path: String,
        client: Option<String>,
        mut rep: RoleRep,
    ) -> Result<PendingRole, ImportError> {
        if rep.name.is_empty() {
            return Err(invalid(format!("{path}.name"), "role name must not be empty"));
        }
        let key = (client.clone(), rep.name.clone());
        if self.roles.contains_key(&key) {
            return Err(invalid(format!("{path}.name"), format!("duplicate role name {:?}", rep.name)));
        }
        let id = self.stream_id(StreamType::Role, rep.id.take(), &path)?;
        self.roles.insert(key, id.clone());
        Ok(PendingRole { path, client, id, rep })
    }

    /// Role ids for realm role names and client role names (by OAuth `clientId`), in order,
    /// without duplicates. Paths name the list each name came from.
    fn resolve_roles(
        &self,
        realm: &[String],
        realm_path: &str,
        client: &ClientRoleNames,
        client_path: &str,
    ) -> Result<Vec<String>, ImportError> {
        let mut ids = Vec::new();
        for (j, name) in realm.iter().enumerate() {
            let id = self
                .roles
                .get(&(None, name.clone()))
                .ok_or_else(|| invalid(format!("{realm_path}[{j}]"), format!("no realm role named {name:?}")))?;
            ids.push(id.clone());
        }
        for (client_id, names) in client {
            let client = self.clients.get(client_id).ok_or_else(|| {
                invalid(format!("{client_path}.{client_id}"), format!("no client has clientId {client_id:?}"))
            })?;
            for (j, name) in names.iter().enumerate() {
                let id = self.roles.get(&(Some(client.clone()), name.clone())).ok_or_else(|| {
                    invalid(
                        format!("{client_path}.{client_id}[{j}]"),
                        format!("client {client_id:?} has no role named {name:?}"),
                    )
                })?;
                ids.push(id.clone());
            }
        }
        Ok(dedup(ids))
    }

    fn plan_group(
        &mut self,
        path: String,
        mut g: GroupRep,
        parent: Option<(String, String)>,
    ) -> Result<(), ImportError> {
        if g.name.is_empty() || g.name.contains('/') {
            return Err(invalid(
                format!("{path}.name"),
                format!("group name {:?} must be non-empty and without '/'", g.name),
            ));
        }
        let group_path = match &parent {
            Some((_, parent_path)) => format!("{parent_path}/{}", g.name),
            None => format!("/{}", g.name),
        };
        if self.groups.contains_key(&group_path) {
            return Err(invalid(format!("{path}.name"), format!("duplicate group {group_path:?}")));
        }
        let id = self.stream_id(StreamType::Group, g.id.take(), &path)?;
        self.groups.insert(group_path.clone(), id.clone());
        let roles = self.resolve_roles(
            g.realm_roles.as_deref().unwrap_or_default(),
            &format!("{path}.realmRoles"),
            &g.client_roles.take().unwrap_or_default(),
            &format!("{path}.clientRoles"),
        )?;
        let extra = self.seal_extra(std::mem::take(&mut g.extra), &path)?;
        let created = GroupCreated {
            realm_id: self.realm_id.clone(),
            name: g.name,
            parent_id: parent.map(|(parent_id, _)| parent_id),
            attributes: g.attributes.unwrap_or_default(),
            extra,
        };
        let mut events: Vec<DomainEvent> = vec![GroupEvent::from(created).into()];
        events.extend(roles.into_iter().map(|role_id| GroupEvent::from(GroupRoleGranted { role_id }).into()));
        self.counts.groups += 1;
        // Parents before children, so the log never names a parent that does not exist yet.
        self.push(StreamType::Group, id.clone(), events, &path)?;
        for (j, sub) in g.sub_groups.unwrap_or_default().into_iter().enumerate() {
            self.plan_group(format!("{path}.subGroups[{j}]"), sub, Some((id.clone(), group_path.clone())))?;
        }
        Ok(())
    }

    fn plan_user(&mut self, path: &str, mut u: UserRep) -> Result<(), ImportError> {
        if u.username.is_empty() {
            return Err(invalid(format!("{path}.username"), "username must not be empty"));
        }
        let id = self.stream_id(StreamType::User, u.id.take(), path)?;
        let roles = self.resolve_roles(
            u.realm_roles.as_deref().unwrap_or_default(),
            &format!("{path}.realmRoles"),
            &u.client_roles.take().unwrap_or_default(),
            &format!("{path}.clientRoles"),
        )?;
        let mut groups = Vec::new();
        for (j, group_path) in u.groups.take().unwrap_or_default().iter().enumerate() {
            let group = self
                .groups
                .get(&normalize_group_path(group_path))
                .ok_or_else(|| invalid(format!("{path}.groups[{j}]"), format!("no group at path {group_path:?}")))?;
            groups.push(group.clone());
        }
        let (password, stubs) = self.plan_credentials(path, u.credentials.take().unwrap_or_default())?;
        let mut extra = std::mem::take(&mut u.extra);
        if !stubs.is_empty() {
            // Credential metadata and non-password credentials travel in `extra` so an export
            // gives them back; their secrets are sealed below like any other.
            extra.insert("credentials".into(), Value::Array(stubs));
        }
        let extra = self.seal_extra(extra, path)?;
        let created = UserCreated {
            realm_id: self.realm_id.clone(),
            username: u.username,
            profile: UserProfile {
                email: u.email,
                email_verified: u.email_verified.unwrap_or(false),
                first_name: u.first_name,
                last_name: u.last_name,
                // Keycloak treats an absent `enabled` as false.
                enabled: u.enabled.unwrap_or(false),
                attributes: u.attributes.unwrap_or_default(),
                required_actions: u.required_actions.unwrap_or_default(),
            },
            created_timestamp: u.created_timestamp,
            federation_link: u.federation_link,
            extra,
        };
        let mut events: Vec<DomainEvent> = vec![UserEvent::from(created).into()];
        if let Some((hash, temporary)) = password {
            self.counts.passwords += 1;
            events.push(UserEvent::from(UserPasswordSet { hash, temporary }).into());
        }
        events.extend(roles.into_iter().map(|role_id| UserEvent::from(UserRoleGranted { role_id }).into()));
        events.extend(dedup(groups).into_iter().map(|group_id| UserEvent::from(UserJoinedGroup { group_id }).into()));
        self.counts.users += 1;
        self.push(StreamType::User, id, events, path)
    }

    /// The password (hash, temporary) and the credential entries to keep in `extra`: the
    /// password credential's own fields (id, label, dates) when it has any, and every other
    /// credential whole.
    #[allow(clippy::type_complexity)]
    fn plan_credentials(
        &self,
        path: &str,
        credentials: Vec<CredentialRep>,
    ) -> Result<(Option<(PasswordHash, bool)>, Vec<Value>), ImportError> {
        let mut password = None;
        let mut stubs = Vec::new();
        for (j, c) in credentials.into_iter().enumerate() {
            let cpath = format!("{path}.credentials[{j}]");
            match c.kind.as_deref() {
                Some("password") => {
                    if password.is_some() {
                        return Err(invalid(cpath, "a user has at most one password credential"));
                    }
                    let hash =
                        match (c.value, c.secret_data, c.credential_data) {
                            (Some(clear), None, None) => hash_password(&clear).map_err(|e| ImportError::Crypto {
                                path: format!("{cpath}.value"),
                                message: e.to_string(),
                            })?,
                            (None, Some(secret), Some(data)) => keycloak_hash(&cpath, &secret, &data)?,
                            _ => return Err(invalid(
                                cpath,
                                "a password credential has either `value` or both `secretData` and `credentialData`",
                            )),
                        };
                    password = Some((hash, c.temporary.unwrap_or(false)));
                    if !c.extra.is_empty() {
                        let mut stub = c.extra;
                        stub.insert("type".into(), Value::String("password".into()));
                        stubs.push(Value::Object(stub));
                    }
                }
                Some(_) => {
                    let mut c = c;
                    if let Some(clear) = c.value.as_deref().filter(|v| needs_sealing(v)) {
                        c.value = Some(self.seal_text(clear, &format!("{cpath}.value"))?);
                    }
                    let stub =
                        serde_json::to_value(&c).map_err(|source| ImportError::Encode { path: cpath, source })?;
                    stubs.push(stub);
                }
                None => return Err(invalid(format!("{cpath}.type"), "the credential has no type")),
            }
        }
        Ok((password, stubs))
    }

    /// A stream id: the representation's own id, or a fresh UUIDv7. Refuses an id used twice
    /// in the file or already taken in the directory, which the store would refuse anyway,
    /// but without a path.
    fn stream_id(&mut self, kind: StreamType, given: Option<String>, path: &str) -> Result<String, ImportError> {
        let id_path = if path.is_empty() { "id".to_string() } else { format!("{path}.id") };
        let id = match given {
            Some(id) if id.is_empty() => return Err(invalid(id_path, "id must not be empty")),
            Some(id) => id,
            None => Uuid::now_v7().to_string(),
        };
        let taken = match kind {
            StreamType::Realm => self.existing.realms.get(&id).is_some(),
            StreamType::Client => self.existing.clients.get(&id).is_some(),
            StreamType::User => self.user_ids.contains(&id),
            StreamType::Role => self.existing.memberships.role(&id).is_some(),
            StreamType::Group => self.existing.memberships.group(&id).is_some(),
            StreamType::SigningKey => self.existing.signing_keys.get(&id).is_some(),
            // Runtime streams: an import never creates them.
            StreamType::AuthRequest
            | StreamType::Session
            | StreamType::ClientGrant
            | StreamType::LoginFailures
            | StreamType::ClientAssertion
            | StreamType::LogoutDelivery
            | StreamType::AuditCheckpoint
            | StreamType::SinkDelivery
            | StreamType::RejectedRequest
            | StreamType::SsfStream => false,
        };
        if taken {
            return Err(invalid(id_path, format!("a {kind} with id {id:?} already exists")));
        }
        if !self.streams.insert(StreamId::new(kind, id.clone())) {
            return Err(invalid(id_path, format!("id {id:?} is used by another {kind} in this file")));
        }
        Ok(id)
    }

    fn push(&mut self, kind: StreamType, id: String, events: Vec<DomainEvent>, path: &str) -> Result<(), ImportError> {
        let events = events
            .iter()
            .map(|e| NewEvent::new(e, &self.metadata))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| ImportError::Encode { path: path.to_string(), source })?;
        self.appends.push(StreamAppend {
            stream: StreamId::new(kind, id),
            expected: ExpectedVersion::Exact(0),
            events,
        });
        Ok(())
    }

    fn seal_text(&self, clear: &str, path: &str) -> Result<String, ImportError> {
        let sealed = self
            .keys
            .seal(clear.as_bytes())
            .map_err(|e| ImportError::Crypto { path: path.to_string(), message: e.to_string() })?;
        Ok(sealed_to_text(&sealed))
    }

    /// Seals the values of secret-named keys anywhere inside an `extra` map.
    fn seal_extra(&self, mut extra: Map<String, Value>, path: &str) -> Result<Map<String, Value>, ImportError> {
        for (key, value) in extra.iter_mut() {
            let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
            self.seal_value(value, is_secret_key(key), &here)?;
        }
        Ok(extra)
    }

    fn seal_value(&self, value: &mut Value, secret: bool, path: &str) -> Result<(), ImportError> {
        match value {
            Value::String(s) if secret && needs_sealing(s) => *s = self.seal_text(s, path)?,
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.seal_value(item, secret, &format!("{path}[{i}]"))?;
                }
            }
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    self.seal_value(v, is_secret_key(key), &format!("{path}.{key}"))?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// A Keycloak hashed password credential as [`PasswordHash::Keycloak`], or as a PHC string
/// when it is exactly an Annals argon2id hash (see [`keycloak_to_phc`]).
fn keycloak_hash(cpath: &str, secret: &str, data: &str) -> Result<PasswordHash, ImportError> {
    let secret: PasswordSecretData = parse_at(secret, &format!("{cpath}.secretData"))?;
    let data: PasswordCredentialData = parse_at(data, &format!("{cpath}.credentialData"))?;
    if !secret.additional_parameters.is_empty() {
        return Err(invalid(
            format!("{cpath}.secretData.additionalParameters"),
            "no Keycloak password provider Annals knows uses secret additional parameters",
        ));
    }
    let hash = PasswordHash::Keycloak {
        algorithm: data.algorithm,
        iterations: data.hash_iterations,
        salt: secret.salt,
        value: secret.value,
        additional_parameters: data.additional_parameters,
    };
    password::check_hash(&hash).map_err(|e| invalid(format!("{cpath}.credentialData"), e.to_string()))?;
    Ok(keycloak_to_phc(&hash).unwrap_or(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_url_safe_names_when_validated_then_accepted_and_others_refused() {
        for ok in ["acme", "ACME-prod_2.eu", "a"] {
            assert_eq!(validate_realm_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", "acme corp", "acme/x", "acmé", "a?b"] {
            assert!(validate_realm_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn given_redirect_uris_when_validated_then_keycloak_forms_pass() {
        for ok in [
            "https://app.acme.example/callback",
            "https://app.acme.example/*",
            "http://localhost:3000/*",
            "/*",
            "/silent-check-sso.html",
            "com.acme.app:/oauth2redirect",
            "urn:ietf:wg:oauth:2.0:oob",
            "*",
        ] {
            assert!(valid_redirect_uri(ok), "{ok}");
        }
        for bad in [
            "",
            "app.acme.example/cb",
            "https://*.acme.example/cb",
            "https:///nohost",
            "https:app",
            "https://app.acme.example/a b",
            "1http://x",
            "**",
        ] {
            assert!(!valid_redirect_uri(bad), "{bad}");
        }
    }

    #[test]
    fn given_a_sparse_realm_when_mapping_settings_then_keycloak_defaults_fill_the_rest() {
        let rep =
            RealmRep { access_token_lifespan: Some(900), brute_force_protected: Some(true), ..Default::default() };
        let s = realm_settings(&rep);
        assert_eq!(s.access_token_lifespan, 900);
        assert!(s.brute_force.enabled);
        assert_eq!(s.brute_force.failure_factor, 30);
        assert_eq!(s.sso_session_idle_timeout, 1800);
        assert_eq!(s.ssl_required, "external");
    }

    #[test]
    fn given_secret_like_keys_when_checked_then_matched_case_insensitively() {
        assert!(is_secret_key("password"));
        assert!(is_secret_key("clientSecret"));
        assert!(is_secret_key("bindCredential"));
        assert!(!is_secret_key("passwordPolicy"));
        assert!(!needs_sealing(MASKED_SECRET));
        assert!(!needs_sealing(""));
        assert!(needs_sealing("hunter2"));
    }

    #[test]
    fn given_serde_paths_when_joined_then_the_root_dot_disappears() {
        assert_eq!(join_path("", "clients[0].name"), "clients[0].name");
        assert_eq!(join_path("users[1].credentials[0].secretData", "."), "users[1].credentials[0].secretData");
        assert_eq!(join_path("a", "salt"), "a.salt");
    }

    #[test]
    fn given_group_paths_with_and_without_a_leading_slash_when_normalized_then_equal() {
        assert_eq!(normalize_group_path("staff/admins"), "/staff/admins");
        assert_eq!(normalize_group_path("/staff"), "/staff");
    }
}
