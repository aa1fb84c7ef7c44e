//! Provisioning that creates several aggregates at once (bootstrap, realm keys). Each
//! creation is still decided by its aggregate; the resulting appends commit atomically, so a
//! crash never leaves half a bootstrap behind.
use crate::credentials::password::{self, PasswordError};
use crate::domain::client::{Client, ClientCommand};
use crate::domain::realm::{Realm, RealmCommand};
use crate::domain::role::{Role, RoleCommand};
use crate::domain::signing_key::{SigningKey, SigningKeyCommand};
use crate::domain::user::{User, UserCommand};
use crate::domain::Aggregate;
use crate::keys::{self, KeyError};
use crate::readmodels::{ReadModelError, ReadModels};
use crate::secrets::{SecretsError, ServerKeys};
use crate::store::{ExpectedVersion, SharedStore, StoreError, StreamAppend};
use annals_events::client::ClientSettings;
use annals_events::realm::RealmSettings;
use annals_events::signing_key::SigningKeyGenerated;
use annals_events::user::UserProfile;
use annals_events::{Metadata, NewEvent, StreamId};
use chrono::{DateTime, Utc};
use rand::distributions::{Alphanumeric, DistString};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// An aggregate refused the creation (bad name, already exists); reported to the operator.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
    #[error("event encoding failed: {0}")]
    Encoding(#[from] serde_json::Error),
}

/// Decides commands in turn on a new aggregate and packages the events as one append that
/// requires the stream not to exist yet.
pub fn create_with<A: Aggregate>(
    id: &str,
    commands: Vec<A::Command>,
    now: DateTime<Utc>,
    metadata: &Metadata,
) -> Result<StreamAppend, ProvisionError> {
    create_seeded::<A>(id, commands, now, metadata).map(|(append, _)| append)
}

/// As [`create_with`], with the state the stream will have once the append commits (for
/// `Hosts::remember`).
pub fn create_seeded<A: Aggregate>(
    id: &str,
    commands: Vec<A::Command>,
    now: DateTime<Utc>,
    metadata: &Metadata,
) -> Result<(StreamAppend, A), ProvisionError> {
    let mut state = A::default();
    let mut events = Vec::new();
    for command in commands {
        let decided =
            state.decide(command, now).map_err(|e| ProvisionError::Refused(format!("{} {id}: {e}", A::KIND)))?;
        state = crate::domain::fold(state, &decided);
        events.extend(decided);
    }
    let events = events.into_iter().map(|e| NewEvent::new(&e.into(), metadata)).collect::<Result<Vec<_>, _>>()?;
    Ok((StreamAppend { stream: StreamId::new(A::KIND, id), expected: ExpectedVersion::Exact(0), events }, state))
}

pub fn create<A: Aggregate>(
    id: &str,
    command: A::Command,
    now: DateTime<Utc>,
    metadata: &Metadata,
) -> Result<StreamAppend, ProvisionError> {
    create_with::<A>(id, vec![command], now, metadata)
}

/// A new signing key for a realm, generated, sealed and recorded.
pub fn realm_key(
    realm_id: &str,
    algorithm: &str,
    keys: &ServerKeys,
    now: DateTime<Utc>,
    metadata: &Metadata,
) -> Result<StreamAppend, ProvisionError> {
    let generated = keys::generate(algorithm)?;
    let sealed = keys.seal(&generated.private_pkcs8)?;
    let event = SigningKeyGenerated {
        realm_id: realm_id.to_string(),
        kid: generated.kid.clone(),
        algorithm: generated.algorithm,
        public_jwk: generated.public_jwk,
        private_key: sealed,
    };
    create::<SigningKey>(&generated.kid, SigningKeyCommand::Record(Box::new(event)), now, metadata)
}

/// The bootstrap administrator, when one was created now.
#[derive(Debug, Clone)]
pub struct BootstrapAdmin {
    pub username: String,
    /// Present only when generated: it is shown once and stored nowhere in clear.
    pub generated_password: Option<String>,
}

/// Creates the `master` realm (with an RS256 key, the `admin` role, an administrator
/// holding it and the `admin-cli` client) unless it exists.
pub async fn ensure_master(
    store: &SharedStore,
    read_models: &ReadModels,
    keys: &ServerKeys,
    now: DateTime<Utc>,
    username: &str,
    password: Option<&str>,
) -> Result<Option<BootstrapAdmin>, ProvisionError> {
    if read_models.read().realms.by_name("master").is_some() {
        return Ok(None);
    }
    let meta = Metadata::system("bootstrap").with_realm("master");
    let generated = password.is_none().then(|| Alphanumeric.sample_string(&mut rand::thread_rng(), 24));
    let pw = password.or(generated.as_deref()).unwrap_or_default();
    let realm_id = "master";
    let role_id = uuid::Uuid::now_v7().to_string();
    let user_id = uuid::Uuid::now_v7().to_string();
    let settings = RealmSettings { display_name: Some("Annals".into()), ..Default::default() };
    let user = create_with::<User>(
        &user_id,
        vec![
            UserCommand::Create {
                realm_id: realm_id.into(),
                username: username.into(),
                profile: UserProfile { enabled: true, ..Default::default() },
                created_timestamp: Some(now.timestamp_millis()),
                federation_link: None,
                extra: Default::default(),
            },
            UserCommand::SetPassword { hash: password::hash_password(pw)?, temporary: false },
            UserCommand::GrantRole { role_id: role_id.clone() },
        ],
        now,
        &meta,
    )?;
    let appends = vec![
        create::<Realm>(
            realm_id,
            RealmCommand::Create { name: "master".into(), settings, extra: Default::default() },
            now,
            &meta,
        )?,
        realm_key(realm_id, "RS256", keys, now, &meta)?,
        create::<Role>(
            &role_id,
            RoleCommand::Create {
                realm_id: realm_id.into(),
                client_id: None,
                name: "admin".into(),
                description: Some("Administrator of every realm".into()),
                attributes: Default::default(),
                extra: Default::default(),
            },
            now,
            &meta,
        )?,
        user,
        // Keycloak's public client for administrators' tokens (password grant), which admin
        // tools such as kcadm and the admin client library log in through.
        create::<Client>(
            &uuid::Uuid::now_v7().to_string(),
            ClientCommand::Create {
                realm_id: realm_id.into(),
                client_id: "admin-cli".into(),
                settings: ClientSettings {
                    name: Some("admin-cli".into()),
                    public_client: true,
                    standard_flow_enabled: false,
                    direct_access_grants_enabled: true,
                    ..Default::default()
                },
                secret: None,
                sealed_secret: None,
                extra: Default::default(),
            },
            now,
            &meta,
        )?,
    ];
    let done = match store.append_all(appends).await {
        Ok(done) => done,
        // Another node bootstrapped at the same moment: its master realm stands.
        Err(StoreError::Conflict { .. }) => {
            read_models.wait_for(store.head().await?, Duration::from_secs(10)).await?;
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let last = done.iter().map(|a| a.last_position).max().unwrap_or(0);
    read_models.wait_for(last, Duration::from_secs(10)).await?;
    Ok(Some(BootstrapAdmin { username: username.to_string(), generated_password: generated }))
}
