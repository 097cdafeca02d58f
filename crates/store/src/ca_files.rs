//! The CA's own files kept in the database (`ca_files`): its root and
//! intermediate certificates, `ca.toml`, and its keys as the data dir holds
//! them, which on a shared database are always encrypted with the CA passphrase
//! or are only the RFC 7512 URI of a key in a PKCS#11 token (`pki::CaDir`
//! refuses to hand over a key in the clear). An instance with an empty data dir
//! writes them into its `ca/` and issues like the one that made the CA.
//!
//! They go in together or not at all, and only into a database that holds no
//! CA: a second `ca init` on the same database is refused rather than leave two
//! CAs' records in one history.

use sqlx::Row;

use crate::Result;
use crate::backend::for_every_backend;

/// One file of the CA, by its name under the data dir (`ca/root.crt`, `ca.toml`, ...).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaFile {
    /// Path relative to the data dir, `/`-separated.
    pub name: String,
    /// The file's bytes.
    #[serde(with = "crate::snapshot::base64_bytes")]
    pub contents: Vec<u8>,
    /// Whether it is written 0600 (a key, or a key's token URI).
    pub private: bool,
}

for_every_backend! {
    impl SqlStore {
        /// The CA's files, by name; empty when the database holds no CA.
        pub(crate) async fn ca_files(&self) -> Result<Vec<CaFile>> {
            let rows = sqlx::query("SELECT name, contents, private FROM ca_files ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
            rows.iter().map(Self::ca_file_from_row).collect()
        }

        pub(crate) fn ca_file_from_row(row: &DB::Row) -> Result<CaFile> {
            Ok(CaFile { name: row.try_get("name")?, contents: row.try_get("contents")?, private: row.try_get("private")? })
        }

        /// Inserts one file; whether it went in (`false`: one of that name is there).
        pub(crate) async fn insert_ca_file(connection: &mut DB::Connection, file: &CaFile) -> Result<bool> {
            let inserted = sqlx::query(
                "INSERT INTO ca_files (name, contents, private) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            )
            .bind(&file.name)
            .bind(&file.contents)
            .bind(file.private)
            .execute(&mut *connection)
            .await?;
            Ok(DB::rows_affected(&inserted) == 1)
        }

        /// Replaces the contents of the CA file `name` if they are still `old` (a
        /// compare-and-set, so two instances changing it at once cannot both win);
        /// whether it was replaced.
        pub(crate) async fn replace_ca_file(&self, name: &str, old: &[u8], new: &[u8]) -> Result<bool> {
            let mut tx = self.write_transaction().await?;
            let sql = format!("SELECT contents FROM ca_files WHERE name = $1{}", DB::FOR_UPDATE);
            let held: Option<Vec<u8>> =
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(&mut *tx).await?;
            if held.as_deref() != Some(old) {
                return Ok(false);
            }
            sqlx::query("UPDATE ca_files SET contents = $1 WHERE name = $2")
                .bind(new.to_vec())
                .bind(name)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        }

        /// Keeps `files` as the database's CA, in one transaction; `false` (and nothing
        /// written) when it already holds one.
        pub(crate) async fn put_ca_files(&self, files: &[CaFile]) -> Result<bool> {
            let mut tx = self.write_transaction().await?;
            // Two instances putting at once: the second waits on the first's key and,
            // once it commits, inserts nothing.
            for file in files {
                if !Self::insert_ca_file(&mut tx, file).await? {
                    return Ok(false);
                }
            }
            let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ca_files").fetch_one(&mut *tx).await?;
            if held as usize != files.len() {
                return Ok(false);
            }
            tx.commit().await?;
            Ok(true)
        }
    }
}
