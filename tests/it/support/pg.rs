//! Throwaway PostgreSQL databases. The server comes from `ANNALS_TEST_PG` (an admin URL), by
//! default the local one; the test script starts a private one with initdb where none runs.
//! Under `CI=true` a missing server fails the test; elsewhere the test says loudly it skipped.
use sqlx::{Connection, PgConnection};

pub fn admin_url() -> String {
    std::env::var("ANNALS_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database created for one test and dropped (with FORCE) when this guard goes.
pub struct TestDb {
    pub url: String,
    name: String,
}

impl TestDb {
    /// Creates a database with a random name, or returns None (skip) when no server runs
    /// outside CI. Under CI a missing server is a failure.
    pub async fn create() -> Option<TestDb> {
        let admin = admin_url();
        let mut conn = match PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("PostgreSQL required under CI but unreachable at {admin}: {e}");
                }
                eprintln!("SKIPPED: PostgreSQL unreachable at {admin}: {e}");
                return None;
            }
        };
        let name = format!("annals_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        Some(TestDb { url: format!("{base}/{name}"), name })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = admin_url();
        // Drop runs outside any runtime guarantee: use a private one on its own thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await.ok()
            })
        })
        .join();
    }
}
