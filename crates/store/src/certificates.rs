//! [`Store`] on either SQL backend: issuance (recording certificates, listing
//! them) and revocation (revoking, releasing a hold, CRL numbers).
//!
//! Every write commits before the call returns. Several instances may share one
//! PostgreSQL database, so nothing here decides on a value read earlier without
//! holding it: a revocation reads its row with [`FOR_UPDATE`](crate::Backend::FOR_UPDATE), and a CRL
//! number is taken in one upsert. Each change of a revocation is also written to
//! the revocation change log (`revocation_log.rs`) in the same transaction.

use async_trait::async_trait;
use sqlx::Row;

use crate::backend::{for_every_backend, now_unix};
use crate::record::{
    CertificateRecord, ListFilter, NewCertificate, ReleaseOutcome, Revocation, RevocationChanges, RevokeOutcome,
    RevokedEntry, RevokedSerialsSink,
};
use crate::revocation_log::RevocationNotices;
use crate::{Result, Store, StoreError};

pub(crate) const SELECT_CERTIFICATE: &str = "SELECT serial, issuer, profile, subject, common_name, sans, not_before, not_after, \
     der, issued_at, revoked_at, revocation_reason, delivered, source FROM certificates";

/// RFC 5280 CRLReason certificateHold: the one revocation that can be released.
const CERTIFICATE_HOLD: u8 = 6;

/// What the store knows of a certificate besides the certificate itself.
pub(crate) struct Recorded {
    /// When it was recorded, unix seconds.
    pub(crate) issued_at: i64,
    /// Whether its files reached their owner.
    pub(crate) delivered: bool,
    /// Its revocation, if any.
    pub(crate) revocation: Option<Revocation>,
}

fn reason(code: i64) -> Result<u8> {
    u8::try_from(code).map_err(|_| StoreError::Corrupt(format!("revocation reason {code}")))
}

fn revocation(revoked_at: Option<i64>, reason_code: Option<i64>) -> Result<Option<Revocation>> {
    match (revoked_at, reason_code) {
        (Some(revoked_at), Some(code)) => Ok(Some(Revocation { revoked_at, reason: reason(code)? })),
        _ => Ok(None),
    }
}

for_every_backend! {
    impl SqlStore {
        /// Inserts certificates in one transaction, all or none.
        async fn insert(&self, certificates: &[NewCertificate], delivered: bool) -> Result<()> {
            let issued_at = now_unix();
            let mut tx = self.write_transaction().await?;
            for cert in certificates {
                Self::insert_certificate(&mut tx, cert, Recorded { issued_at, delivered, revocation: None }).await?;
            }
            tx.commit().await?;
            Ok(())
        }

        /// Inserts one certificate; [`StoreError::SerialExists`] when its serial is taken.
        pub(crate) async fn insert_certificate(
            connection: &mut DB::Connection,
            cert: &NewCertificate,
            recorded: Recorded,
        ) -> Result<()> {
            let sans = serde_json::to_string(&cert.sans).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let inserted = sqlx::query(
                "INSERT INTO certificates (serial, issuer, profile, subject, common_name, sans, not_before, \
                 not_after, der, issued_at, delivered, source, revoked_at, revocation_reason) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
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
            .bind(recorded.issued_at)
            .bind(recorded.delivered)
            .bind(&cert.source)
            .bind(recorded.revocation.map(|r| r.revoked_at))
            .bind(recorded.revocation.map(|r| i64::from(r.reason)))
            .execute(&mut *connection)
            .await;
            match inserted {
                Ok(_) if recorded.revocation.is_some() => {
                    Self::log_revocation_change(connection, &cert.issuer, &cert.serial, true).await
                }
                Ok(_) => Ok(()),
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                    Err(StoreError::SerialExists(cert.serial.clone()))
                }
                Err(e) => Err(e.into()),
            }
        }

        /// A certificate's issuer and revocation, read and locked inside `tx`: `None` when
        /// no certificate has this serial, a `None` revocation when it is not revoked.
        async fn revocation_of(
            tx: &mut DB::Connection,
            serial: &str,
        ) -> Result<Option<(String, Option<Revocation>)>> {
            let sql = format!(
                "SELECT issuer, revoked_at, revocation_reason FROM certificates WHERE serial = $1{}",
                DB::FOR_UPDATE
            );
            let row: Option<(String, Option<i64>, Option<i64>)> =
                sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(serial).fetch_optional(&mut *tx).await?;
            row.map(|(issuer, revoked_at, code)| Ok((issuer, revocation(revoked_at, code)?))).transpose()
        }

        pub(crate) fn record_from_row(row: &DB::Row) -> Result<CertificateRecord> {
            let sans_json: String = row.try_get("sans")?;
            let sans: Vec<String> =
                serde_json::from_str(&sans_json).map_err(|e| StoreError::Corrupt(format!("sans column: {e}")))?;
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
                revocation: revocation(row.try_get("revoked_at")?, row.try_get("revocation_reason")?)?,
                delivered: row.try_get("delivered")?,
            })
        }
    }
}

for_every_backend! {
    #[async_trait]
    impl Store for SqlStore {
        async fn record_issued(&self, certificates: &[NewCertificate]) -> Result<()> {
            self.insert(certificates, true).await
        }

        async fn record_undelivered(&self, certificates: &[NewCertificate]) -> Result<()> {
            self.insert(certificates, false).await
        }

        async fn mark_delivered(&self, serials: &[String]) -> Result<()> {
            let mut tx = self.write_transaction().await?;
            for serial in serials {
                sqlx::query("UPDATE certificates SET delivered = TRUE WHERE serial = $1")
                    .bind(serial)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }

        async fn release_hold(&self, serial: &str) -> Result<ReleaseOutcome> {
            let mut tx = self.write_transaction().await?;
            let outcome = match Self::revocation_of(&mut tx, serial).await? {
                None => ReleaseOutcome::NotFound,
                Some((issuer, Some(revocation))) if revocation.reason == CERTIFICATE_HOLD => {
                    sqlx::query(
                        "UPDATE certificates SET revoked_at = NULL, revocation_reason = NULL WHERE serial = $1",
                    )
                    .bind(serial)
                    .execute(&mut *tx)
                    .await?;
                    Self::log_revocation_change(&mut tx, &issuer, serial, false).await?;
                    ReleaseOutcome::Released
                }
                Some((_, revocation)) => ReleaseOutcome::NotOnHold(revocation),
            };
            tx.commit().await?;
            Ok(outcome)
        }

        async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>> {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_CERTIFICATE} WHERE serial = $1")))
                .bind(serial)
                .fetch_optional(&self.pool)
                .await?;
            row.as_ref().map(Self::record_from_row).transpose()
        }

        async fn certificates(&self, filter: ListFilter) -> Result<Vec<CertificateRecord>> {
            let (condition, now) = match filter {
                ListFilter::All => ("TRUE", None),
                ListFilter::Valid { now } => ("revoked_at IS NULL AND delivered AND not_after >= $1", Some(now)),
                ListFilter::Revoked => ("revoked_at IS NOT NULL", None),
                ListFilter::Expired { now } => ("revoked_at IS NULL AND delivered AND not_after < $1", Some(now)),
                ListFilter::Undelivered => ("revoked_at IS NULL AND NOT delivered", None),
            };
            let sql = format!("{SELECT_CERTIFICATE} WHERE {condition} ORDER BY issued_at, rowid");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            if let Some(now) = now {
                query = query.bind(now);
            }
            let rows = query.fetch_all(&self.pool).await?;
            rows.iter().map(Self::record_from_row).collect()
        }

        async fn revoke(&self, serial: &str, revocation: Revocation) -> Result<RevokeOutcome> {
            let mut tx = self.write_transaction().await?;
            let outcome = match Self::revocation_of(&mut tx, serial).await? {
                None => RevokeOutcome::NotFound,
                Some((_, Some(earlier))) => RevokeOutcome::AlreadyRevoked(earlier),
                Some((issuer, None)) => {
                    sqlx::query("UPDATE certificates SET revoked_at = $1, revocation_reason = $2 WHERE serial = $3")
                        .bind(revocation.revoked_at)
                        .bind(i64::from(revocation.reason))
                        .bind(serial)
                        .execute(&mut *tx)
                        .await?;
                    Self::log_revocation_change(&mut tx, &issuer, serial, true).await?;
                    RevokeOutcome::Revoked
                }
            };
            tx.commit().await?;
            Ok(outcome)
        }

        async fn revoked(&self, issuer: &str) -> Result<Vec<RevokedEntry>> {
            let rows: Vec<(String, i64, i64)> = sqlx::query_as(
                "SELECT serial, revoked_at, revocation_reason FROM certificates \
                 WHERE issuer = $1 AND revoked_at IS NOT NULL ORDER BY revoked_at, serial",
            )
            .bind(issuer)
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|(serial, revoked_at, code)| {
                    Ok(RevokedEntry { serial, revocation: Revocation { revoked_at, reason: reason(code)? } })
                })
                .collect()
        }

        async fn next_crl_number(&self, issuer: &str) -> Result<u64> {
            // One statement: the row is locked from the read of `last` to its write,
            // so two instances taking a number at once get two numbers.
            let number: i64 = sqlx::query_scalar(
                "INSERT INTO crl_numbers (issuer, last) VALUES ($1, 1) \
                 ON CONFLICT (issuer) DO UPDATE SET last = crl_numbers.last + 1 RETURNING last",
            )
            .bind(issuer)
            .fetch_one(&self.pool)
            .await?;
            u64::try_from(number).map_err(|_| StoreError::Corrupt(format!("CRL number {number}")))
        }

        async fn revoked_serials(&self, issuer: &str, into: &mut dyn RevokedSerialsSink) -> Result<u64> {
            self.read_revoked_serials(issuer, into).await
        }

        async fn revocation_changes(&self, issuer: &str, cursor: u64) -> Result<RevocationChanges> {
            self.read_revocation_changes(issuer, cursor).await
        }

        async fn revocation_notices(&self) -> Result<Option<RevocationNotices>> {
            DB::revocation_notices(&self.pool).await
        }
    }
}
