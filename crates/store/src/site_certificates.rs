//! Site certificates stored once for every gateway on the database: the chain, its
//! private key (encrypted by the caller; this crate never sees a key in the clear),
//! and the lease and fencing token it was written under.
//!
//! A write is taken only from the current holder of the lease it names: the lease's
//! row is read with [`FOR_UPDATE`](crate::Backend::FOR_UPDATE) in the writing
//! transaction, so a new grant of that lease waits for the write to commit, and a
//! holder whose lease was taken over gets [`LeaseLost`](StoreError::LeaseLost)
//! instead of overwriting what the new holder wrote.

use async_trait::async_trait;
use sqlx::Row;

use crate::backend::for_every_backend;
use crate::leases::Lease;
use crate::{Result, StoreError};

/// A site's certificate as stored (and as a [`Snapshot`](crate::Snapshot) carries it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteCertificate {
    /// What it is stored by (for example the site's sorted names).
    pub name: String,
    /// The chain, leaf first, PEM.
    pub chain_pem: String,
    /// The private key, an encrypted PKCS#8 PEM.
    pub key_pem: String,
    /// The leaf's notAfter, unix seconds.
    pub not_after: i64,
    /// When it was written, unix milliseconds by the database's clock.
    pub updated_at: i64,
    /// The lease it was written under.
    pub lease: String,
    /// That lease's fencing token at the time.
    pub fencing: i64,
}

/// A certificate to store: see [`SiteCertificate`].
#[derive(Debug, Clone, Copy)]
pub struct NewSiteCertificate<'a> {
    /// What it is stored by.
    pub name: &'a str,
    /// The chain, leaf first, PEM.
    pub chain_pem: &'a str,
    /// The private key, an encrypted PKCS#8 PEM.
    pub key_pem: &'a str,
    /// The leaf's notAfter, unix seconds.
    pub not_after: i64,
}

pub(crate) const SELECT_SITE_CERTIFICATE: &str =
    "SELECT name, chain_pem, key_pem, not_after, updated_at, lease, fencing FROM site_certificates";

/// Site certificates in the shared database.
#[async_trait]
pub trait SiteCertificateStore: Send + Sync {
    /// Stores (or replaces) a site certificate, if `lease` is still current: its
    /// holder and fencing token those of the lease's row. Fails with
    /// [`LeaseLost`](StoreError::LeaseLost) when another instance took the lease over.
    async fn put_site_certificate(&self, certificate: NewSiteCertificate<'_>, lease: &Lease) -> Result<()>;

    /// The site certificate stored by this name, if any.
    async fn site_certificate(&self, name: &str) -> Result<Option<SiteCertificate>>;
}

for_every_backend! {
    #[async_trait]
    impl SiteCertificateStore for SqlStore {
        async fn put_site_certificate(&self, certificate: NewSiteCertificate<'_>, lease: &Lease) -> Result<()> {
            let mut tx = self.write_transaction().await?;
            let sql = format!("SELECT holder, fencing FROM leases WHERE name = $1{}", DB::FOR_UPDATE);
            let current: Option<(String, i64)> =
                sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(&lease.name).fetch_optional(&mut *tx).await?;
            if current.as_ref().is_none_or(|(holder, fencing)| *holder != lease.holder || *fencing != lease.fencing) {
                return Err(StoreError::LeaseLost {
                    name: lease.name.clone(),
                    fencing: lease.fencing,
                    current: current.map(|(holder, fencing)| format!("{holder} (fencing token {fencing})")),
                });
            }
            let sql = format!(
                "INSERT INTO site_certificates (name, chain_pem, key_pem, not_after, updated_at, lease, fencing) \
                 VALUES ($1, $2, $3, $4, {}, $5, $6) \
                 ON CONFLICT (name) DO UPDATE SET chain_pem = excluded.chain_pem, key_pem = excluded.key_pem, \
                     not_after = excluded.not_after, updated_at = excluded.updated_at, lease = excluded.lease, \
                     fencing = excluded.fencing",
                DB::NOW_MILLIS
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(certificate.name)
                .bind(certificate.chain_pem)
                .bind(certificate.key_pem)
                .bind(certificate.not_after)
                .bind(&lease.name)
                .bind(lease.fencing)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        }

        async fn site_certificate(&self, name: &str) -> Result<Option<SiteCertificate>> {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_SITE_CERTIFICATE} WHERE name = $1")))
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
            row.as_ref().map(Self::site_certificate_from_row).transpose()
        }
    }
}

for_every_backend! {
    impl SqlStore {
        pub(crate) fn site_certificate_from_row(row: &DB::Row) -> Result<SiteCertificate> {
            Ok(SiteCertificate {
                name: row.try_get("name")?,
                chain_pem: row.try_get("chain_pem")?,
                key_pem: row.try_get("key_pem")?,
                not_after: row.try_get("not_after")?,
                updated_at: row.try_get("updated_at")?,
                lease: row.try_get("lease")?,
                fencing: row.try_get("fencing")?,
            })
        }

        /// Writes a stored certificate as it is, lease and fencing token included (a
        /// restore: the lease it names is not copied, and a new one writes over it).
        pub(crate) async fn insert_site_certificate(
            connection: &mut DB::Connection,
            certificate: &SiteCertificate,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO site_certificates (name, chain_pem, key_pem, not_after, updated_at, lease, fencing) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&certificate.name)
            .bind(&certificate.chain_pem)
            .bind(&certificate.key_pem)
            .bind(certificate.not_after)
            .bind(certificate.updated_at)
            .bind(&certificate.lease)
            .bind(certificate.fencing)
            .execute(&mut *connection)
            .await?;
            Ok(())
        }
    }
}
