//! The embedded SQLite backend: one database file in the data dir.
//!
//! WAL journal with `synchronous = FULL`, so a committed transaction is on
//! disk when the commit returns (a `kill -9` or a power cut after that loses
//! nothing). The schema version lives in `PRAGMA user_version`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::backend::SqlStore;
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
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool =
            SqlitePoolOptions::new().max_connections(4).connect_with(options.clone()).await.map_err(open_error)?;
        // Nonces commit without an fsync each (`synchronous = NORMAL`, still crash-safe in WAL mode).
        let nonces = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_lazy_with(options.synchronous(SqliteSynchronous::Normal));
        let store = SqlStore { pool, nonces };
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
