//! Checking a username and password against the realm's users: the login page and the
//! password grant share it. A name that matches nobody costs the same hashing time as a wrong
//! password, so response times do not reveal which accounts exist.
use crate::credentials::password::{self, PasswordError, Verified};
use crate::sqlmodels::{users, SqlModelError};
use crate::store::DbPool;
use annals_events::user::PasswordHash;
use annals_projections::realms::RealmView;
use annals_projections::users::UserView;
use std::sync::OnceLock;

/// Longest username and password looked at (longer ones cannot match: Keycloak's limits).
pub const MAX_USERNAME: usize = 255;
pub const MAX_PASSWORD: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The credentials do not identify an enabled user. `reason` is Keycloak's error name.
    #[error("{reason}")]
    Rejected { reason: &'static str, user_id: Option<String> },
    #[error(transparent)]
    Model(#[from] SqlModelError),
    /// The stored hash cannot be checked (unknown algorithm, damaged): the user must reset.
    #[error(transparent)]
    Hash(#[from] PasswordError),
    #[error("password check did not finish: {0}")]
    Join(String),
    /// Every core is hashing and the wait ran out: the caller answers 503.
    #[error("too many password checks at once")]
    Busy,
}

/// A user whose password matched, and whether the stored hash should be upgraded.
#[derive(Debug)]
pub struct LoggedIn {
    pub user: UserView,
    pub needs_upgrade: bool,
}

/// A hash checked when no user matches, so the miss takes as long as a wrong password.
fn decoy() -> &'static PasswordHash {
    static DECOY: OnceLock<PasswordHash> = OnceLock::new();
    DECOY.get_or_init(|| {
        password::hash_password("annals-decoy-password").unwrap_or(PasswordHash::Phc { phc: String::new() })
    })
}

/// Password checks running at once: one per core. argon2id fills 19 MiB per check; more
/// checks than cores only interleave on the same core, thrash its caches and finish later,
/// while queued ones cost nothing.
fn hashing_slots() -> &'static std::sync::Arc<tokio::sync::Semaphore> {
    static SLOTS: OnceLock<std::sync::Arc<tokio::sync::Semaphore>> = OnceLock::new();
    SLOTS.get_or_init(|| {
        std::sync::Arc::new(tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())))
    })
}

/// How long a check waits for a core before the login is refused as busy.
const HASHING_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn verify(pw: String, hash: PasswordHash) -> Result<Verified, LoginError> {
    // The permit moves into the hashing job: a request dropped by its client does not free
    // the core while its hash still runs.
    let slot = tokio::time::timeout(HASHING_WAIT, hashing_slots().clone().acquire_owned())
        .await
        .map_err(|_| LoginError::Busy)?
        .map_err(|e| LoginError::Join(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        password::verify_password(&pw, &hash)
    })
    .await
    .map_err(|e| LoginError::Join(e.to_string()))?
    .map_err(LoginError::Hash)
}

/// Finds the user by username (or email, where the realm allows it) and checks the password.
pub async fn check_password(
    pool: &DbPool,
    realm: &RealmView,
    username: &str,
    pw: &str,
) -> Result<LoggedIn, LoginError> {
    let user = find_user(pool, realm, username).await?;
    verify_user(user, pw).await
}

/// The user a typed name designates: by username, or by email where the realm allows it.
pub async fn find_user(pool: &DbPool, realm: &RealmView, username: &str) -> Result<Option<UserView>, LoginError> {
    let username = username.trim();
    if username.is_empty() || username.len() > MAX_USERNAME {
        return Ok(None);
    }
    let mut user = users::by_username(pool, &realm.id, username).await?;
    if user.is_none() && realm.settings.login_with_email_allowed && username.contains('@') {
        let mut found = users::by_email(pool, &realm.id, username).await?;
        // With duplicate emails allowed an address names nobody in particular.
        if found.len() == 1 {
            user = found.pop();
        }
    }
    Ok(user)
}

/// Checks the password of the user found, or of nobody at the same cost.
pub async fn verify_user(user: Option<UserView>, pw: &str) -> Result<LoggedIn, LoginError> {
    let reject = |reason, user_id| LoginError::Rejected { reason, user_id };
    if pw.is_empty() || pw.len() > MAX_PASSWORD {
        return Err(reject("invalid_user_credentials", user.map(|u| u.id)));
    }
    let Some(user) = user else {
        let _ = verify(pw.to_string(), decoy().clone()).await;
        return Err(reject("user_not_found", None));
    };
    let Some(hash) = user.password.clone() else {
        let _ = verify(pw.to_string(), decoy().clone()).await;
        return Err(reject("invalid_user_credentials", Some(user.id)));
    };
    let verified = verify(pw.to_string(), hash).await?;
    if !verified.ok {
        return Err(reject("invalid_user_credentials", Some(user.id)));
    }
    // Checked after the password, as Keycloak does, so "disabled" is told only to someone
    // who knows the password.
    if !user.profile.enabled {
        return Err(reject("user_disabled", Some(user.id)));
    }
    Ok(LoggedIn { needs_upgrade: verified.needs_upgrade, user })
}
