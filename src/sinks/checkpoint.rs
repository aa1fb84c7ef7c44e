//! Where each sink has got to: a row `sink:NAME` in the `checkpoints` table, beside the log,
//! so a restarted node resumes delivery where the receiver surely had everything.
use crate::store::DbPool;
use sqlx::Row;

pub fn key(sink: &str) -> String {
    format!("sink:{sink}")
}

pub async fn load(pool: &DbPool, sink: &str) -> Result<u64, sqlx::Error> {
    load_key(pool, &key(sink)).await
}

/// The position of checkpoint row `name` (0 when there is none): sinks' and Shared Signals
/// streams' alike.
pub async fn load_key(pool: &DbPool, name: &str) -> Result<u64, sqlx::Error> {
    let row = match pool {
        DbPool::Sqlite(p) => sqlx::query("SELECT position FROM checkpoints WHERE name = ?")
            .bind(name)
            .fetch_optional(p)
            .await?
            .map(|r| r.try_get::<i64, _>(0)),
        DbPool::Postgres(p) => sqlx::query("SELECT position FROM checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(p)
            .await?
            .map(|r| r.try_get::<i64, _>(0)),
    };
    Ok(row.transpose()?.unwrap_or(0).max(0) as u64)
}

/// Moves the checkpoint forward only: two nodes delivering the same sink never move it back.
pub async fn save(pool: &DbPool, sink: &str, position: u64) -> Result<(), sqlx::Error> {
    save_key(pool, &key(sink), position).await
}

/// Moves checkpoint row `name` forward (never back).
pub async fn save_key(pool: &DbPool, name: &str, position: u64) -> Result<(), sqlx::Error> {
    let position = i64::try_from(position).unwrap_or(i64::MAX);
    match pool {
        DbPool::Sqlite(p) => {
            sqlx::query(
                "INSERT INTO checkpoints (name, position) VALUES (?, ?) ON CONFLICT (name) DO UPDATE \
                 SET position = excluded.position WHERE checkpoints.position < excluded.position",
            )
            .bind(name)
            .bind(position)
            .execute(p)
            .await?;
        }
        DbPool::Postgres(p) => {
            sqlx::query(
                "INSERT INTO checkpoints (name, position) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE \
                 SET position = excluded.position WHERE checkpoints.position < excluded.position",
            )
            .bind(name)
            .bind(position)
            .execute(p)
            .await?;
        }
    }
    Ok(())
}
