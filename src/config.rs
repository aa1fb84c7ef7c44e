//! Configuration: command-line flags, each with an `ANNALS_*` environment twin, over an
//! optional TOML file, over defaults.
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by `--config` cannot be read or parsed; start-up aborts with the reason.
    #[error("configuration file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

/// The keys a configuration file may hold (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub base_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub import_realm: Option<PathBuf>,
    pub theme_dir: Option<PathBuf>,
    /// Audit sinks by name: `siem = "syslog+tcp://logs:514"`.
    #[serde(default)]
    pub sinks: std::collections::BTreeMap<String, String>,
    pub audit_key: Option<PathBuf>,
    pub audit_checkpoint_interval: Option<u64>,
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::File { path: path.into(), reason: e.to_string() })?;
        toml::from_str(&text).map_err(|e| ConfigError::File { path: path.into(), reason: e.to_string() })
    }
}

/// Where the log lives.
#[derive(Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub database_url: String,
}

impl StoreConfig {
    /// `database_url` picks PostgreSQL; the default is `annals.db` in the data directory.
    pub fn resolve(data_dir: Option<PathBuf>, database_url: Option<String>, file: &FileConfig) -> Self {
        let data_dir = data_dir.or_else(|| file.data_dir.clone()).unwrap_or_else(|| PathBuf::from("./annals-data"));
        let database_url = database_url
            .or_else(|| file.database_url.clone())
            .unwrap_or_else(|| data_dir.join("annals.db").to_string_lossy().into_owned());
        StoreConfig { data_dir, database_url }
    }
}

/// Not `Debug`: it holds the bootstrap password.
#[derive(Clone)]
pub struct ServeConfig {
    pub store: StoreConfig,
    pub listen: String,
    pub base_url: Option<String>,
    pub import_realm: Option<PathBuf>,
    /// Templates here replace the built-in login pages of the same name.
    pub theme_dir: Option<PathBuf>,
    pub bootstrap_admin_username: String,
    pub bootstrap_admin_password: Option<String>,
    /// Where the audit stream is delivered.
    pub sinks: Vec<crate::sinks::SinkSpec>,
    /// A PEM Ed25519 key for checkpoints and evidence; default derived from the server keys.
    pub audit_key: Option<PathBuf>,
    /// How often a signed checkpoint is appended (when anything was appended since).
    pub checkpoint_interval: std::time::Duration,
    /// The window over which refused requests past a few per source are only counted.
    pub rejection_window: std::time::Duration,
    /// Shared Signals push streams may target loopback and private addresses, and http.
    pub ssf_private_endpoints: bool,
}

/// A database URL fit for logs and terminals: any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let Some((userinfo, host)) = rest.rsplit_once('@') else { return url.to_string() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_terminal() {
        assert_eq!(redact_url("postgres://annals:s3cr@t@db:5432/annals"), "postgres://annals:***@db:5432/annals");
        assert_eq!(redact_url("postgres://postgres@127.0.0.1/x"), "postgres://postgres@127.0.0.1/x");
        assert_eq!(redact_url("./annals-data/annals.db"), "./annals-data/annals.db");
    }
}
