//! Credentials: how Annals stores and checks what users prove themselves with.
//!
//! Passwords are stored as argon2id PHC strings. Hashes imported from Keycloak are kept as
//! Keycloak wrote them and replaced by argon2id at the next successful login.
pub mod password;

pub use password::{hash_password, upgrade_event, verify_password, PasswordError, Verified};
