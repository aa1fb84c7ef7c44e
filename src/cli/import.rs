//! Importing Keycloak realm files into the log (CLI `import` and `serve --import-realm`).
//! A file is planned whole (validated, every event built) and appended in one atomic append:
//! an invalid file writes nothing.
use crate::keycloak::import::{plan_import, ImportError};
use crate::provision::{self, ProvisionError};
use crate::readmodels::ReadModels;
use crate::secrets::ServerKeys;
use crate::sqlmodels::{self, SqlModelError};
use crate::store::{SharedStore, StoreError};
use annals_events::realm::RealmEvent;
use annals_events::{DomainEvent, Metadata, StreamType};
use annals_projections::Directory;
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ImportFileError {
    /// Reported with the file name; nothing was written.
    #[error("{0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Invalid(PathBuf, ImportError),
    #[error("{0}: {1}")]
    Provision(PathBuf, ProvisionError),
    #[error("{0}: {1}")]
    Store(PathBuf, StoreError),
    /// The `users` read model could not say which user ids are taken; nothing was written.
    #[error("{0}: {1}")]
    Users(PathBuf, SqlModelError),
}

/// What one import wrote.
#[derive(Debug, Clone)]
pub struct Imported {
    pub realm: String,
    pub events: usize,
    pub last_position: u64,
}

/// Plans and appends one realm file against the given view of the directory.
pub async fn import_file(
    store: &SharedStore,
    existing: &Directory,
    keys: &ServerKeys,
    now: DateTime<Utc>,
    path: &Path,
) -> Result<Imported, ImportFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| ImportFileError::Read(path.into(), e))?;
    let user_ids = async {
        sqlmodels::catch_up(store).await?;
        sqlmodels::users::all_ids(&store.pool()).await
    }
    .await
    .map_err(|e| ImportFileError::Users(path.into(), e))?;
    let mut plan =
        plan_import(&text, keys, existing, &user_ids).map_err(|e| ImportFileError::Invalid(path.into(), e))?;
    // A new realm gets a key for every algorithm a client may choose (per-client
    // `*.signed.response.alg`), its default among them.
    let realm = plan.appends.iter().find(|a| a.stream.kind == StreamType::Realm).and_then(|a| {
        let e = a.events.first()?;
        match DomainEvent::decode(&e.event_type, e.schema_version, serde_json::from_str(&e.payload).ok()?).ok()? {
            DomainEvent::Realm(RealmEvent::Created(_)) => Some(a.stream.id.clone()),
            _ => None,
        }
    });
    if let Some(realm_id) = realm {
        let meta = Metadata::system("import").with_realm(plan.realm_name.clone());
        for alg in ["RS256", "ES256", "EdDSA"] {
            plan.appends.push(
                provision::realm_key(&realm_id, alg, keys, now, &meta)
                    .map_err(|e| ImportFileError::Provision(path.into(), e))?,
            );
        }
    }
    let events = plan.appends.iter().map(|a| a.events.len()).sum();
    let done = store.append_all(plan.appends).await.map_err(|e| ImportFileError::Store(path.into(), e))?;
    let last_position = done.iter().map(|a| a.last_position).max().unwrap_or(0);
    Ok(Imported { realm: plan.realm_name, events, last_position })
}

/// The realm name a file declares, without validating the rest.
fn declared_realm(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("realm")?.as_str().map(str::to_string)
}

/// Imports every `*.json` in `dir` (in name order) whose realm does not exist yet.
pub async fn import_dir(
    store: &SharedStore,
    read_models: &ReadModels,
    keys: &ServerKeys,
    now: DateTime<Utc>,
    dir: &Path,
) -> Result<Vec<String>, ImportFileError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ImportFileError::Read(dir.into(), e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut imported = Vec::new();
    for path in files {
        if let Some(name) = declared_realm(&path) {
            if read_models.read().realms.by_name(&name).is_some() {
                tracing::info!(realm = %name, file = %path.display(), "realm exists; import skipped");
                continue;
            }
        }
        let snapshot = read_models.read().clone();
        let done = import_file(store, &snapshot, keys, now, &path).await?;
        let _ = read_models.wait_for(done.last_position, Duration::from_secs(30)).await;
        tracing::info!(realm = %done.realm, events = done.events, file = %path.display(), "realm imported");
        imported.push(done.realm);
    }
    Ok(imported)
}
