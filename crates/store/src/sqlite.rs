//! The embedded SQLite backend: one database file in the data dir.
//!
//! WAL journal, and a write is on disk when its call returns (a `kill -9` or a
//! power cut after that loses nothing): the connection commits with
//! `synchronous = NORMAL` and the writer then waits for a flush of the WAL that
//! it shares with the writers that committed meanwhile (group commit,
//! `durability.rs`). One connection serves the process: SQLite has one write
//! lock, and writers on several connections only took turns on it by sleeping
//! in its busy handler, each turn with an fsync inside; on one connection they
//! queue without sleeping, and its page cache is never invalidated by a
//! sibling's write. Other processes (`gatehouse ca` beside `serve`) wait their
//! turn through the busy timeout. ACME nonces are kept in memory
//! (`nonce_book.rs`). The schema version lives in `PRAGMA user_version`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::backend::{Nonces, SqlStore};
use crate::durability::{Durability, GroupSync};
use crate::migrations::{self, SchemaVersions};
use crate::{Result, StoreError};

/// The issuance database in one SQLite file.
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self> {
        Ok(SqlStore::open_migrating(path).await?.0)
    }

    /// [`open`](SqlStore::open), saying which schema version it found and which it left.
    pub async fn open_migrating(path: &Path) -> Result<(Self, SchemaVersions)> {
        let open_error = |source| StoreError::Open { path: path.display().to_string(), source };
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(open_error)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // The one connection lives as long as the pool: closing it would checkpoint and
        // remove the WAL, and the next would start cold.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(open_error)?;
        let store = SqlStore {
            pool,
            nonces: Nonces::Memory(Default::default()),
            durability: Durability::Group(std::sync::Arc::new(GroupSync::new(path))),
        };
        let versions = store.migrate().await?;
        Ok((store, versions))
    }

    async fn migrate(&self) -> Result<SchemaVersions> {
        let mut tx = self.write_transaction().await?;
        let found: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(&mut *tx).await?;
        let mut versions = SchemaVersions { before: found, after: found };
        for (version, step) in migrations::pending(found)? {
            sqlx::raw_sql(sqlx::AssertSqlSafe(step.sqlite)).execute(&mut *tx).await?;
            let bump = format!("PRAGMA user_version = {version}");
            sqlx::raw_sql(sqlx::AssertSqlSafe(bump)).execute(&mut *tx).await?;
            versions.after = version;
        }
        tx.commit().await?;
        Ok(versions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ListFilter, Store};

    #[tokio::test]
    async fn a_version_1_database_is_migrated_with_its_certificates_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        {
            // The database as the first schema left it.
            let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
                .unwrap()
                .create_if_missing(true);
            let pool = SqlitePoolOptions::new().connect_with(options).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(migrations::MIGRATIONS[0].sqlite)).execute(&pool).await.unwrap();
            sqlx::raw_sql("PRAGMA user_version = 1").execute(&pool).await.unwrap();
            sqlx::query(
                "INSERT INTO certificates (serial, issuer, profile, subject, common_name, sans, not_before, \
                 not_after, der, issued_at) VALUES ('0A', 'AB', 'client', 'CN=x', 'x', '[]', 0, 100, X'3000', 1)",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        let store = SqliteStore::open(&path).await.unwrap();
        let record = store.certificate("0A").await.unwrap().unwrap();
        assert!(record.delivered, "a certificate issued before delivery was tracked counts as delivered");
        assert_eq!(store.certificates(ListFilter::Valid { now: 0 }).await.unwrap().len(), 1);
    }
}
