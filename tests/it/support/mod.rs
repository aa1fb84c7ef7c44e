//! Shared test support: real databases with random names, and a running server.
pub mod pg;

use annals::store::{self, SharedStore};

/// A fresh SQLite store in its own temp dir (kept alive by the returned guard).
pub async fn sqlite_store() -> (SharedStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("annals.db");
    let store = store::open(path.to_str().expect("utf8 path")).await.expect("open sqlite store");
    (store, dir)
}
