//! The embedded SQLite backend: one database file in the data dir.
//!
//! WAL journal with `synchronous = FULL`, so a committed transaction is on
//! disk when the commit returns (a `kill -9` or a power cut after that loses
//! nothing). The schema version lives in `PRAGMA user_version`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};

use crate::record::{
    CertificateRecord, ListFilter, NewCertificate, ReleaseOutcome, Revocation, RevokeOutcome, RevokedEntry,
};
use crate::{Result, Store, StoreError};

/// Schema migrations, applied in order; index + 1 is the version they lead to.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE certificates (
    serial            TEXT PRIMARY KEY NOT NULL,
    issuer            TEXT NOT NULL,
    profile           TEXT NOT NULL,
    subject           TEXT NOT NULL,
    common_name       TEXT NOT NULL,
    sans              TEXT NOT NULL,
    not_before        INTEGER NOT NULL,
    not_after         INTEGER NOT NULL,
    der               BLOB NOT NULL,
    issued_at         INTEGER NOT NULL,
    revoked_at        INTEGER,
    revocation_reason INTEGER
) STRICT;
CREATE INDEX certificates_revoked ON certificates (issuer, revoked_at) WHERE revoked_at IS NOT NULL;
CREATE TABLE crl_numbers (
    issuer TEXT PRIMARY KEY NOT NULL,
    last   INTEGER NOT NULL
) STRICT;
"#,
    r#"
ALTER TABLE certificates ADD COLUMN delivered INTEGER NOT NULL DEFAULT 1;
CREATE INDEX certificates_undelivered ON certificates (common_name) WHERE delivered = 0;
"#,
    r#"
ALTER TABLE certificates ADD COLUMN source TEXT;
CREATE TABLE acme_nonces (
    nonce   TEXT PRIMARY KEY NOT NULL,
    expires INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TABLE acme_accounts (
    id         TEXT PRIMARY KEY NOT NULL,
    thumbprint TEXT NOT NULL UNIQUE,
    jwk        TEXT NOT NULL,
    contact    TEXT NOT NULL,
    status     TEXT NOT NULL,
    eab_kid    TEXT,
    created_at INTEGER NOT NULL
) STRICT;
CREATE TABLE acme_orders (
    id                 TEXT PRIMARY KEY NOT NULL,
    account_id         TEXT NOT NULL REFERENCES acme_accounts (id),
    status             TEXT NOT NULL,
    identifiers        TEXT NOT NULL,
    authorizations     TEXT NOT NULL,
    not_before         INTEGER,
    not_after          INTEGER,
    profile            TEXT,
    replaces           TEXT,
    expires            INTEGER NOT NULL,
    error              TEXT,
    certificate_serial TEXT,
    created_at         INTEGER NOT NULL
) STRICT;
CREATE INDEX acme_orders_account ON acme_orders (account_id, created_at);
CREATE INDEX acme_orders_certificate ON acme_orders (certificate_serial) WHERE certificate_serial IS NOT NULL;
CREATE TABLE acme_authorizations (
    id               TEXT PRIMARY KEY NOT NULL,
    account_id       TEXT NOT NULL REFERENCES acme_accounts (id),
    identifier_type  TEXT NOT NULL,
    identifier_value TEXT NOT NULL,
    wildcard         INTEGER NOT NULL,
    status           TEXT NOT NULL,
    expires          INTEGER NOT NULL
) STRICT;
CREATE INDEX acme_authorizations_reuse
    ON acme_authorizations (account_id, identifier_type, identifier_value, wildcard, status);
CREATE TABLE acme_challenges (
    id               TEXT PRIMARY KEY NOT NULL,
    authorization_id TEXT NOT NULL REFERENCES acme_authorizations (id),
    position         INTEGER NOT NULL,
    kind             TEXT NOT NULL,
    token            TEXT NOT NULL,
    status           TEXT NOT NULL,
    validated_at     INTEGER,
    failed_at        INTEGER,
    error            TEXT
) STRICT;
CREATE INDEX acme_challenges_authorization ON acme_challenges (authorization_id, position);
CREATE TABLE acme_eab_keys (
    kid        TEXT PRIMARY KEY NOT NULL,
    label      TEXT NOT NULL,
    hmac_key   BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    account_id TEXT
) STRICT;
"#,
];

/// The issuance database in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    /// Connections for ACME nonces, committed without an fsync each (`synchronous =
    /// NORMAL`, still crash-safe in WAL mode): a nonce lost in a power cut costs a client
    /// one badNonce retry, and nonces are half of an order's commits. Opened on first use.
    pub(crate) nonces: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self> {
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
        let nonces = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_lazy_with(options.synchronous(SqliteSynchronous::Normal));
        let store = SqliteStore { pool, nonces };
        store.migrate().await?;
        Ok(store)
    }

    /// A transaction that takes the write lock at its start (`BEGIN IMMEDIATE`). One
    /// that read first and wrote later would fail at once with "database is locked"
    /// (SQLite cannot move a WAL read snapshot forward into a write) if another
    /// connection, say the ACME server while `ca revoke` runs, wrote in between;
    /// this one waits its turn within the busy timeout instead.
    pub(crate) async fn write_transaction(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn migrate(&self) -> Result<()> {
        let mut tx = self.write_transaction().await?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(&mut *tx).await?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::SchemaTooNew { found: version, known });
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            sqlx::raw_sql(sqlx::AssertSqlSafe(*sql)).execute(&mut *tx).await?;
            let bump = format!("PRAGMA user_version = {}", index + 1);
            sqlx::raw_sql(sqlx::AssertSqlSafe(bump)).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Inserts certificates in one transaction, all or none.
    async fn insert(&self, certificates: &[NewCertificate], delivered: bool) -> Result<()> {
        let issued_at = now_unix();
        let mut tx = self.write_transaction().await?;
        for cert in certificates {
            let sans = serde_json::to_string(&cert.sans).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let inserted = sqlx::query(
                "INSERT INTO certificates (serial, issuer, profile, subject, common_name, sans, not_before, \
                 not_after, der, issued_at, delivered, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&cert.serial)
            .bind(&cert.issuer)
            .bind(&cert.profile)
            .bind(&cert.subject)
            .bind(&cert.common_name)
            .bind(sans)
            .bind(cert.not_before)
            .bind(cert.not_after)
            .bind(&cert.der)
            .bind(issued_at)
            .bind(delivered)
            .bind(&cert.source)
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {}
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                    return Err(StoreError::SerialExists(cert.serial.clone()));
                }
                Err(e) => return Err(e.into()),
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// A certificate's revocation, read inside `tx`: `None` when no certificate has this
/// serial, `Some(None)` when it is not revoked.
async fn revocation_of(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    serial: &str,
) -> Result<Option<Option<Revocation>>> {
    let row: Option<(Option<i64>, Option<i64>)> =
        sqlx::query_as("SELECT revoked_at, revocation_reason FROM certificates WHERE serial = ?")
            .bind(serial)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(row.map(|(revoked_at, reason)| {
        revoked_at
            .map(|revoked_at| Revocation { revoked_at, reason: reason.and_then(|r| u8::try_from(r).ok()).unwrap_or(0) })
    }))
}

fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn record_from_row(row: &SqliteRow) -> Result<CertificateRecord> {
    let sans_json: String = row.try_get("sans")?;
    let sans: Vec<String> =
        serde_json::from_str(&sans_json).map_err(|e| StoreError::Corrupt(format!("sans column: {e}")))?;
    let revoked_at: Option<i64> = row.try_get("revoked_at")?;
    let reason: Option<i64> = row.try_get("revocation_reason")?;
    let revocation = match (revoked_at, reason) {
        (Some(revoked_at), Some(reason)) => Some(Revocation {
            revoked_at,
            reason: u8::try_from(reason).map_err(|_| StoreError::Corrupt(format!("revocation reason {reason}")))?,
        }),
        _ => None,
    };
    Ok(CertificateRecord {
        certificate: NewCertificate {
            serial: row.try_get("serial")?,
            issuer: row.try_get("issuer")?,
            profile: row.try_get("profile")?,
            subject: row.try_get("subject")?,
            common_name: row.try_get("common_name")?,
            sans,
            not_before: row.try_get("not_before")?,
            not_after: row.try_get("not_after")?,
            der: row.try_get("der")?,
            source: row.try_get("source")?,
        },
        issued_at: row.try_get("issued_at")?,
        revocation,
        delivered: row.try_get("delivered")?,
    })
}

const SELECT_CERTIFICATE: &str = "SELECT serial, issuer, profile, subject, common_name, sans, not_before, not_after, \
     der, issued_at, revoked_at, revocation_reason, delivered, source FROM certificates";

/// RFC 5280 CRLReason certificateHold: the one revocation that can be released.
const CERTIFICATE_HOLD: i64 = 6;

#[async_trait]
impl Store for SqliteStore {
    async fn record_issued(&self, certificates: &[NewCertificate]) -> Result<()> {
        self.insert(certificates, true).await
    }

    async fn record_undelivered(&self, certificates: &[NewCertificate]) -> Result<()> {
        self.insert(certificates, false).await
    }

    async fn mark_delivered(&self, serials: &[String]) -> Result<()> {
        let mut tx = self.write_transaction().await?;
        for serial in serials {
            sqlx::query("UPDATE certificates SET delivered = 1 WHERE serial = ?")
                .bind(serial)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn release_hold(&self, serial: &str) -> Result<ReleaseOutcome> {
        let mut tx = self.write_transaction().await?;
        let outcome = match revocation_of(&mut tx, serial).await? {
            None => ReleaseOutcome::NotFound,
            Some(Some(revocation)) if i64::from(revocation.reason) == CERTIFICATE_HOLD => {
                sqlx::query("UPDATE certificates SET revoked_at = NULL, revocation_reason = NULL WHERE serial = ?")
                    .bind(serial)
                    .execute(&mut *tx)
                    .await?;
                ReleaseOutcome::Released
            }
            Some(revocation) => ReleaseOutcome::NotOnHold(revocation),
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_CERTIFICATE} WHERE serial = ?")))
            .bind(serial)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    async fn certificates(&self, filter: ListFilter) -> Result<Vec<CertificateRecord>> {
        let (condition, now) = match filter {
            ListFilter::All => ("1 = 1 OR ? IS NULL", 0),
            ListFilter::Valid { now } => ("revoked_at IS NULL AND delivered = 1 AND not_after >= ?", now),
            ListFilter::Revoked => ("revoked_at IS NOT NULL OR ? IS NULL", 0),
            ListFilter::Expired { now } => ("revoked_at IS NULL AND delivered = 1 AND not_after < ?", now),
            ListFilter::Undelivered => ("revoked_at IS NULL AND delivered = 0 OR ? IS NULL", 0),
        };
        let sql = format!("{SELECT_CERTIFICATE} WHERE {condition} ORDER BY issued_at, rowid");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).fetch_all(&self.pool).await?;
        rows.iter().map(record_from_row).collect()
    }

    async fn revoke(&self, serial: &str, revocation: Revocation) -> Result<RevokeOutcome> {
        let mut tx = self.write_transaction().await?;
        let outcome = match revocation_of(&mut tx, serial).await? {
            None => RevokeOutcome::NotFound,
            Some(Some(earlier)) => RevokeOutcome::AlreadyRevoked(earlier),
            Some(None) => {
                sqlx::query("UPDATE certificates SET revoked_at = ?, revocation_reason = ? WHERE serial = ?")
                    .bind(revocation.revoked_at)
                    .bind(i64::from(revocation.reason))
                    .bind(serial)
                    .execute(&mut *tx)
                    .await?;
                RevokeOutcome::Revoked
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn revoked(&self, issuer: &str) -> Result<Vec<RevokedEntry>> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT serial, revoked_at, revocation_reason FROM certificates \
             WHERE issuer = ? AND revoked_at IS NOT NULL ORDER BY revoked_at, serial",
        )
        .bind(issuer)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(serial, revoked_at, reason)| {
                let reason =
                    u8::try_from(reason).map_err(|_| StoreError::Corrupt(format!("revocation reason {reason}")))?;
                Ok(RevokedEntry { serial, revocation: Revocation { revoked_at, reason } })
            })
            .collect()
    }

    async fn next_crl_number(&self, issuer: &str) -> Result<u64> {
        let number: i64 = sqlx::query_scalar(
            "INSERT INTO crl_numbers (issuer, last) VALUES (?, 1) \
             ON CONFLICT (issuer) DO UPDATE SET last = last + 1 RETURNING last",
        )
        .bind(issuer)
        .fetch_one(&self.pool)
        .await?;
        u64::try_from(number).map_err(|_| StoreError::Corrupt(format!("CRL number {number}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(serial: &str, not_after: i64) -> NewCertificate {
        NewCertificate {
            serial: serial.into(),
            issuer: "AB".into(),
            profile: "client".into(),
            subject: "CN=alice".into(),
            common_name: "alice".into(),
            sans: vec!["email:alice@example.com".into()],
            not_before: 0,
            not_after,
            der: vec![0x30, 0x00],
            source: None,
        }
    }

    async fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn records_and_reads_back() {
        let (_dir, store) = open().await;
        store.record_issued(&[cert("01", 100), cert("02", 200)]).await.unwrap();
        let got = store.certificate("02").await.unwrap().unwrap();
        assert_eq!(got.certificate, cert("02", 200));
        assert!(got.revocation.is_none());
        assert!(store.certificate("03").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn duplicate_serial_rolls_back_the_whole_batch() {
        let (_dir, store) = open().await;
        store.record_issued(&[cert("01", 100)]).await.unwrap();
        let err = store.record_issued(&[cert("02", 100), cert("01", 100)]).await.unwrap_err();
        assert!(matches!(err, StoreError::SerialExists(ref s) if s == "01"), "{err}");
        assert!(store.certificate("02").await.unwrap().is_none(), "partial batch was kept");
    }

    #[tokio::test]
    async fn revocation_is_kept_once_and_filters_work() {
        let (_dir, store) = open().await;
        store.record_issued(&[cert("01", 100), cert("02", 50), cert("03", 1000)]).await.unwrap();
        let first = Revocation { revoked_at: 10, reason: 1 };
        assert_eq!(store.revoke("01", first).await.unwrap(), RevokeOutcome::Revoked);
        let again = store.revoke("01", Revocation { revoked_at: 20, reason: 4 }).await.unwrap();
        assert_eq!(again, RevokeOutcome::AlreadyRevoked(first));
        assert_eq!(store.revoke("FF", first).await.unwrap(), RevokeOutcome::NotFound);

        let serials = |v: Vec<CertificateRecord>| v.into_iter().map(|r| r.certificate.serial).collect::<Vec<_>>();
        assert_eq!(serials(store.certificates(ListFilter::Valid { now: 60 }).await.unwrap()), ["03"]);
        assert_eq!(serials(store.certificates(ListFilter::Expired { now: 60 }).await.unwrap()), ["02"]);
        assert_eq!(serials(store.certificates(ListFilter::Revoked).await.unwrap()), ["01"]);
        assert_eq!(store.certificates(ListFilter::All).await.unwrap().len(), 3);
        let revoked = store.revoked("AB").await.unwrap();
        assert_eq!(revoked, vec![RevokedEntry { serial: "01".into(), revocation: first }]);
        assert!(store.revoked("CD").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn undelivered_certificates_count_once_delivered() {
        let (_dir, store) = open().await;
        store.record_undelivered(&[cert("01", 100), cert("02", 100)]).await.unwrap();
        store.record_issued(&[cert("03", 100)]).await.unwrap();
        let serials = |v: Vec<CertificateRecord>| v.into_iter().map(|r| r.certificate.serial).collect::<Vec<_>>();
        assert_eq!(serials(store.certificates(ListFilter::Valid { now: 0 }).await.unwrap()), ["03"]);
        assert_eq!(serials(store.certificates(ListFilter::Undelivered).await.unwrap()), ["01", "02"]);
        assert!(!store.certificate("01").await.unwrap().unwrap().delivered);

        store.mark_delivered(&["01".into()]).await.unwrap();
        assert_eq!(serials(store.certificates(ListFilter::Valid { now: 0 }).await.unwrap()), ["01", "03"]);
        // an undelivered certificate revoked is revoked, no longer undelivered
        store.revoke("02", Revocation { revoked_at: 5, reason: 4 }).await.unwrap();
        assert!(store.certificates(ListFilter::Undelivered).await.unwrap().is_empty());
        assert_eq!(serials(store.certificates(ListFilter::Revoked).await.unwrap()), ["02"]);
    }

    #[tokio::test]
    async fn only_a_hold_is_released() {
        let (_dir, store) = open().await;
        store.record_issued(&[cert("01", 100), cert("02", 100)]).await.unwrap();
        assert_eq!(store.release_hold("01").await.unwrap(), ReleaseOutcome::NotOnHold(None));
        assert_eq!(store.release_hold("FF").await.unwrap(), ReleaseOutcome::NotFound);
        store.revoke("01", Revocation { revoked_at: 5, reason: 6 }).await.unwrap();
        let key_compromise = Revocation { revoked_at: 5, reason: 1 };
        store.revoke("02", key_compromise).await.unwrap();
        assert_eq!(store.release_hold("01").await.unwrap(), ReleaseOutcome::Released);
        assert!(store.certificate("01").await.unwrap().unwrap().revocation.is_none());
        assert!(store.revoked("AB").await.unwrap().iter().all(|r| r.serial != "01"));
        assert_eq!(store.release_hold("02").await.unwrap(), ReleaseOutcome::NotOnHold(Some(key_compromise)));
    }

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
            sqlx::raw_sql(sqlx::AssertSqlSafe(MIGRATIONS[0])).execute(&pool).await.unwrap();
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

    #[tokio::test]
    async fn crl_numbers_increase_per_issuer_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        {
            let store = SqliteStore::open(&path).await.unwrap();
            assert_eq!(store.next_crl_number("AB").await.unwrap(), 1);
            assert_eq!(store.next_crl_number("AB").await.unwrap(), 2);
            assert_eq!(store.next_crl_number("CD").await.unwrap(), 1);
        }
        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(store.next_crl_number("AB").await.unwrap(), 3);
    }
}
