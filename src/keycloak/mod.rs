//! Keycloak realm representation: import a realm Keycloak exported, export a realm in the same
//! format. Users switching from Keycloak bring their realms with one command, and can take
//! them back.
pub mod export;
pub mod import;
pub mod representation;

pub use export::{export_realm, ExportError};
pub use import::{plan_import, ImportCounts, ImportError, ImportPlan};

#[cfg(test)]
mod tests;
