//! A whole store as plain data ([`Snapshot`]): what `gatehouse store copy` reads
//! from one database and writes into another, on either backend.
//!
//! Export reads every table in one read transaction, so the snapshot is of one
//! moment even while the source serves. Import writes it in one transaction
//! into a database that holds nothing, so a copy lands whole or not at all, and
//! it refuses a database that holds anything rather than merge two histories
//! (two CAs' serials, CRL numbers and ACME accounts cannot be merged safely).
//!
//! Two tables are not copied. Nonces live minutes, and a client given a fresh one
//! retries after a `badNonce`. Leases (`leases.rs`) live seconds, and their fencing
//! tokens mean something only in the database that handed them out: a copied or
//! restored database starts with no lease, the first instance that renews a site
//! takes a new one, and site certificates (which are copied, keys still encrypted
//! as stored) keep the name and token of the lease they were written under only as
//! a record.
//!
//! A snapshot is also what a backup seals (`backup.rs`), as JSON: its field names
//! are part of the backup format. A field added later takes `#[serde(default)]`
//! so older backups still restore; unknown fields are refused, so an older
//! gatehouse never restores part of a newer backup.
//!
//! Carrying another table touches four places: a field of [`Snapshot`], the table in
//! `TABLES` (so a copy refuses a target that holds its rows), its rows read in
//! `export` (with `read_all` and the table's row reader) and written in `import`.

use std::collections::HashMap;

use sqlx::Row;

use crate::acme::{AcmeAccount, AcmeAuthorization, AcmeChallenge, AcmeEabKey, AcmeOrder};
use crate::acme_client::{ClientAccount, SELECT_CLIENT_ACCOUNT};
use crate::acme_sql::{SELECT_ACCOUNT, SELECT_AUTHORIZATION, SELECT_EAB, SELECT_ORDER};
use crate::backend::for_every_backend;
use crate::ca_files::CaFile;
use crate::certificates::{Recorded, SELECT_CERTIFICATE};
use crate::record::CertificateRecord;
use crate::site_certificates::{SELECT_SITE_CERTIFICATE, SiteCertificate};
use crate::{Result, StoreError};

/// Everything a store holds but nonces and leases.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Snapshot {
    /// Every certificate recorded, oldest first, with its delivery and revocation.
    pub certificates: Vec<CertificateRecord>,
    /// The last CRL number each issuer took.
    pub crl_numbers: Vec<CrlNumber>,
    /// ACME accounts.
    pub acme_accounts: Vec<AcmeAccount>,
    /// ACME authorizations with their challenges.
    pub acme_authorizations: Vec<AcmeAuthorization>,
    /// When challenges failed (kept for the failed-validation rate limit).
    pub acme_challenge_failures: Vec<ChallengeFailure>,
    /// ACME orders, oldest first.
    pub acme_orders: Vec<AcmeOrder>,
    /// External account binding keys, oldest first.
    pub acme_eab_keys: Vec<AcmeEabKey>,
    /// The CA's own files, on a storage that keeps them (`ca_files.rs`): keys only
    /// encrypted or as token URIs. Absent from backups made before schema version 5.
    pub ca_files: Vec<CaFile>,
    /// Site certificates stored once for every gateway (`site_certificates.rs`), keys
    /// encrypted as stored. Absent from backups made before schema version 6.
    pub site_certificates: Vec<SiteCertificate>,
    /// The gateways' ACME client accounts (`acme_client.rs`), keys encrypted as stored.
    /// Absent from backups made before schema version 7. Their challenge answers live
    /// minutes and are not copied.
    pub acme_client_accounts: Vec<ClientAccount>,
}

/// The last CRL number an issuer took.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrlNumber {
    /// The issuer's key id (hex).
    pub issuer: String,
    /// The number of its last CRL.
    pub last: i64,
}

/// When a challenge failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeFailure {
    /// The challenge's id.
    pub challenge_id: String,
    /// Unix seconds.
    pub failed_at: i64,
}

/// The tables a snapshot fills, and what a row of each is called in messages.
const TABLES: &[(&str, &str, &str)] = &[
    ("certificates", "certificate", "certificates"),
    ("crl_numbers", "CRL number", "CRL numbers"),
    ("acme_accounts", "ACME account", "ACME accounts"),
    ("acme_orders", "ACME order", "ACME orders"),
    ("acme_authorizations", "ACME authorization", "ACME authorizations"),
    ("acme_eab_keys", "EAB key", "EAB keys"),
    ("ca_files", "CA file", "CA files"),
    ("site_certificates", "site certificate", "site certificates"),
    ("acme_client_accounts", "ACME client account", "ACME client accounts"),
];

for_every_backend! {
    impl SqlStore {
        /// Everything but nonces and leases, as of one moment.
        pub(crate) async fn export(&self) -> Result<Snapshot> {
            let mut tx = self.pool.begin_with(DB::BEGIN_SNAPSHOT).await?;
            let certificates =
                Self::read_all(&mut tx, format!("{SELECT_CERTIFICATE} ORDER BY issued_at, rowid"), Self::record_from_row)
                    .await?;
            let crl_numbers = sqlx::query_as("SELECT issuer, last FROM crl_numbers ORDER BY issuer")
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|(issuer, last): (String, i64)| CrlNumber { issuer, last })
                .collect();
            let acme_accounts =
                Self::read_all(&mut tx, format!("{SELECT_ACCOUNT} ORDER BY created_at, id"), Self::account_from_row)
                    .await?;
            let mut challenges: HashMap<String, Vec<AcmeChallenge>> = HashMap::new();
            let mut acme_challenge_failures = Vec::new();
            let challenge_rows = sqlx::query(
                "SELECT id, kind, token, status, validated_at, error, authorization_id, failed_at \
                 FROM acme_challenges ORDER BY authorization_id, position",
            )
            .fetch_all(&mut *tx)
            .await?;
            for row in &challenge_rows {
                let challenge = Self::challenge_from_row(row)?;
                if let Some(failed_at) = row.try_get::<Option<i64>, _>("failed_at")? {
                    acme_challenge_failures.push(ChallengeFailure { challenge_id: challenge.id.clone(), failed_at });
                }
                challenges.entry(row.try_get("authorization_id")?).or_default().push(challenge);
            }
            let acme_authorizations = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_AUTHORIZATION} ORDER BY id")))
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| {
                    let id: String = row.try_get("id")?;
                    Self::authorization_with(row, challenges.remove(&id).unwrap_or_default())
                })
                .collect::<Result<_>>()?;
            let acme_orders =
                Self::read_all(&mut tx, format!("{SELECT_ORDER} ORDER BY created_at, rowid"), Self::order_from_row)
                    .await?;
            let acme_eab_keys =
                Self::read_all(&mut tx, format!("{SELECT_EAB} ORDER BY created_at, rowid"), Self::eab_from_row).await?;
            let ca_files = Self::read_all(
                &mut tx,
                "SELECT name, contents, private FROM ca_files ORDER BY name".to_owned(),
                Self::ca_file_from_row,
            )
            .await?;
            let site_certificates = Self::read_all(
                &mut tx,
                format!("{SELECT_SITE_CERTIFICATE} ORDER BY name"),
                Self::site_certificate_from_row,
            )
            .await?;
            let acme_client_accounts = Self::read_all(
                &mut tx,
                format!("{SELECT_CLIENT_ACCOUNT} ORDER BY directory, name"),
                Self::client_account_from_row,
            )
            .await?;
            tx.commit().await?;
            Ok(Snapshot {
                certificates,
                crl_numbers,
                acme_accounts,
                acme_authorizations,
                acme_challenge_failures,
                acme_orders,
                acme_eab_keys,
                ca_files,
                site_certificates,
                acme_client_accounts,
            })
        }

        /// Every row `sql` selects, each read by `from_row`.
        async fn read_all<T>(
            tx: &mut sqlx::Transaction<'static, DB>,
            sql: String,
            from_row: fn(&DB::Row) -> Result<T>,
        ) -> Result<Vec<T>> {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut **tx).await?;
            rows.iter().map(from_row).collect()
        }

        /// Writes `snapshot` into this store, which must hold nothing but nonces and leases, in one transaction.
        pub(crate) async fn import(&self, snapshot: &Snapshot) -> Result<()> {
            let mut tx = self.write_transaction().await?;
            let mut held = Vec::new();
            for (table, one, many) in TABLES {
                let sql = format!("SELECT COUNT(*) FROM {table}");
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut *tx).await?;
                if n > 0 {
                    held.push(format!("{n} {}", if n == 1 { one } else { many }));
                }
            }
            if !held.is_empty() {
                return Err(StoreError::NotEmpty(held.join(", ")));
            }
            for account in &snapshot.acme_accounts {
                if !Self::insert_account(&mut tx, account).await? {
                    return Err(StoreError::Corrupt(format!("two ACME accounts have the key of {}", account.id)));
                }
            }
            for authorization in &snapshot.acme_authorizations {
                Self::insert_authorization(&mut tx, authorization).await?;
            }
            for failure in &snapshot.acme_challenge_failures {
                sqlx::query("UPDATE acme_challenges SET failed_at = $1 WHERE id = $2")
                    .bind(failure.failed_at)
                    .bind(&failure.challenge_id)
                    .execute(&mut *tx)
                    .await?;
            }
            for order in &snapshot.acme_orders {
                Self::insert_order(&mut tx, order).await?;
            }
            for record in &snapshot.certificates {
                let recorded =
                    Recorded { issued_at: record.issued_at, delivered: record.delivered, revocation: record.revocation };
                Self::insert_certificate(&mut tx, &record.certificate, recorded).await?;
            }
            for number in &snapshot.crl_numbers {
                sqlx::query("INSERT INTO crl_numbers (issuer, last) VALUES ($1, $2)")
                    .bind(&number.issuer)
                    .bind(number.last)
                    .execute(&mut *tx)
                    .await?;
            }
            for key in &snapshot.acme_eab_keys {
                Self::insert_eab(&mut tx, key).await?;
            }
            for file in &snapshot.ca_files {
                Self::insert_ca_file(&mut tx, file).await?;
            }
            for certificate in &snapshot.site_certificates {
                Self::insert_site_certificate(&mut tx, certificate).await?;
            }
            for account in &snapshot.acme_client_accounts {
                Self::insert_client_account(&mut tx, account).await?;
            }
            tx.commit().await?;
            Ok(())
        }
    }
}

/// Bytes as standard base64 in a snapshot's JSON (certificates' DER, EAB keys).
pub(crate) mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
