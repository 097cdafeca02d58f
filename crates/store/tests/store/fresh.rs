//! A new, empty database on either backend, for one test.

use sqlx::Connection;
use store::Database;
use tempfile::TempDir;

/// A new database, and the URL to open it (again) by.
pub struct Fresh {
    /// The storage URL, as `Database::open` takes it.
    pub url: String,
    /// The SQLite file's dir, removed with it; `None` on PostgreSQL.
    dir: Option<TempDir>,
}

impl Fresh {
    /// A SQLite file in a temp dir of its own.
    pub async fn sqlite() -> Fresh {
        let dir = tempfile::tempdir().expect("make a temp dir");
        Fresh { url: format!("sqlite://{}", dir.path().join("gatehouse.db").display()), dir: Some(dir) }
    }

    /// A database of its own in the PostgreSQL test cluster.
    pub async fn postgres() -> Fresh {
        Fresh { url: test_cluster::database().await, dir: None }
    }

    /// Opens it as gatehouse does: a new pool, the schema brought up to date.
    pub async fn open(&self) -> Database {
        Database::open(&self.url).await.unwrap_or_else(|e| panic!("open {}: {e}", self.url))
    }

    /// Marks the schema as written by a gatehouse newer than this one.
    pub async fn set_schema_version(&self, version: i64) {
        if self.dir.is_some() {
            let mut connection = sqlx::SqliteConnection::connect(&self.url).await.expect("open the SQLite file");
            let pragma = format!("PRAGMA user_version = {version}");
            sqlx::raw_sql(sqlx::AssertSqlSafe(pragma)).execute(&mut connection).await.expect("set user_version");
        } else {
            let mut connection = sqlx::PgConnection::connect(&self.url).await.expect("connect to PostgreSQL");
            sqlx::query("UPDATE gatehouse_schema SET version = $1")
                .bind(version)
                .execute(&mut connection)
                .await
                .expect("set the schema version");
        }
    }
}

/// Runs each named behaviour (an async fn taking `&Fresh`) as two tests, one per backend.
macro_rules! on_both_backends {
    ($($behaviour:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    super::$behaviour(&crate::fresh::Fresh::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    super::$behaviour(&crate::fresh::Fresh::postgres().await).await
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;
