//! The command line: a contract scripts and tests rely on. Every flag has an `ANNALS_*`
//! environment twin.
pub mod activity;
pub mod at;
pub mod events;
pub mod evidence;
pub mod import;
pub mod replay;
pub mod timeline;
pub mod trace_token;

use crate::config::{FileConfig, StoreConfig};
use annals_events::StreamId;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "annals", version, about = "Event-sourced identity and single-sign-on server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Log format on stderr.
    #[arg(long, env = "ANNALS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the log lives; shared by every command.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Directory for the SQLite file and the server keys.
    #[arg(long, env = "ANNALS_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// `postgres://...` selects PostgreSQL; default is `annals.db` in the data directory.
    #[arg(long, env = "ANNALS_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// A TOML file with the same keys as the flags (listen, base_url, data_dir, database_url, import_realm, theme_dir, audit_key, audit_checkpoint_interval, and a [sinks] table).
    #[arg(long, env = "ANNALS_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// The audit key (PKCS#8 PEM Ed25519) that signs checkpoints and evidence; default derived from the server keys.
    #[arg(long, env = "ANNALS_AUDIT_KEY", global = true)]
    pub audit_key: Option<PathBuf>,
}

impl StoreArgs {
    pub fn resolve(&self, file: &FileConfig) -> StoreConfig {
        StoreConfig::resolve(self.data_dir.clone(), self.database_url.clone(), file)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Import a Keycloak realm export (JSON) into the log.
    Import { file: PathBuf },
    /// Export a realm in Keycloak's representation.
    Export {
        realm: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Recompute the hash chain over the whole log; exit 2 naming the first bad position.
    Verify,
    /// Print a stream's events and the state they fold to.
    Replay {
        /// `TYPE/ID`, e.g. `user/0190...`.
        #[arg(long)]
        stream: StreamId,
        /// Stop at this time (RFC 3339).
        #[arg(long, conflicts_with = "version")]
        at: Option<chrono::DateTime<chrono::Utc>>,
        /// Stop at this stream version.
        #[arg(long)]
        version: Option<u64>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The event log and its schema.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Read models.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Evidence bundles: one user's records, provable against signed checkpoints.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// Every audit record about one user in a window, as text (and `--html FILE`).
    Timeline {
        #[command(flatten)]
        window: UserWindow,
        /// Also write a self-contained HTML report with a timeline chart here.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Which login, client and session produced a token, every refresh after it, and
    /// whether and when it was revoked.
    TraceToken {
        /// The token (a JWT) or its id (`jti`).
        token: String,
    },
    /// What was active at a moment: sessions or tokens, folding the log up to it.
    At {
        /// The moment (RFC 3339).
        time: chrono::DateTime<chrono::Utc>,
        #[arg(value_enum)]
        what: crate::cli::at::What,
        #[arg(long)]
        realm: Option<String>,
        /// A username (with `--realm`) or a user id.
        #[arg(long)]
        user: Option<String>,
    },
}

/// One user's records in a time window: what `timeline` shows and `evidence export` proves.
#[derive(Clone, Debug, Args)]
pub struct UserWindow {
    #[arg(long)]
    pub realm: String,
    /// A username, or the id of a user (also one since deleted).
    #[arg(long)]
    pub user: String,
    /// Only records of this client (`clientId`).
    #[arg(long)]
    pub client: Option<String>,
    /// Start of the window (RFC 3339).
    #[arg(long)]
    pub from: chrono::DateTime<chrono::Utc>,
    /// End of the window (RFC 3339).
    #[arg(long)]
    pub to: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Write every record about a user in a time window, with proofs, to FILE.
    Export {
        #[command(flatten)]
        window: UserWindow,
        file: PathBuf,
    },
    /// Check a bundle offline: exit 0 verified under a trusted `--key`, 3 consistent but the key unchecked, 2 naming every altered, missing or reordered record.
    Verify {
        file: PathBuf,
        /// The audit keys to trust: a JWK or JWKS file (the server's `/audit/certs`).
        #[arg(long)]
        key: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, env = "ANNALS_LISTEN")]
    pub listen: Option<String>,
    /// The externally visible base URL (issuer prefix); default `http://{listen address}`.
    #[arg(long, env = "ANNALS_BASE_URL")]
    pub base_url: Option<String>,
    /// Import every `*.json` realm in this directory at start (realms that exist are skipped).
    #[arg(long, env = "ANNALS_IMPORT_REALM")]
    pub import_realm: Option<PathBuf>,
    /// A directory of templates (`login.html`, `error.html`, ...) that replace the built-in pages.
    #[arg(long, env = "ANNALS_THEME_DIR")]
    pub theme_dir: Option<PathBuf>,
    /// An audit sink, `NAME=URL` (repeatable; e.g. `siem=syslog+tls://logs:6514?format=cef`).
    #[arg(long = "sink", env = "ANNALS_SINKS", value_delimiter = ',')]
    pub sinks: Vec<crate::sinks::SinkSpec>,
    /// Seconds between signed audit checkpoints (default 60).
    #[arg(long, env = "ANNALS_AUDIT_CHECKPOINT_INTERVAL", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub audit_checkpoint_interval: Option<u64>,
    /// Let Shared Signals push streams target loopback and private addresses, and plain http
    /// (development and tests only: a receiver could otherwise make the server call into its
    /// own network).
    #[arg(long, env = "ANNALS_SSF_ALLOW_PRIVATE_ENDPOINTS")]
    pub ssf_allow_private_endpoints: bool,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print the global log as NDJSON.
    Tail {
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Keep printing new events as they are committed.
        #[arg(long)]
        follow: bool,
    },
    /// Write a JSON Schema for every event type.
    Schema {
        #[arg(long, default_value = "events/schema")]
        out: PathBuf,
        /// Do not write; exit 1 if the files in `--out` differ from the generated ones.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Rebuild read models from position 0 and report what they hold.
    Rebuild { name: Option<String> },
}
