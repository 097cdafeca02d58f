//! Leases: of the instances sharing one database, one at a time does a named piece
//! of work (renewing one site's certificate), and a crashed holder's lease runs out.
//!
//! A lease is a row: its holder, its expiry, and a fencing token that every new grant
//! makes larger. Expiry is read from the database's clock
//! ([`NOW_MILLIS`](crate::Backend::NOW_MILLIS)), so the instances' own clocks may
//! disagree. Granting is one upsert, so two instances asking at once on PostgreSQL
//! are ordered by the row's lock and exactly one is granted. A holder that was
//! paused past its expiry may still believe it holds the lease: what it then writes
//! under the lease is refused by the fencing token (see `site_certificates.rs`),
//! not by the holder's belief.

use std::time::Duration;

use async_trait::async_trait;

use crate::Result;
use crate::backend::for_every_backend;

/// A lease granted to one holder: what it writes under the lease carries its
/// fencing token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// What the lease is for.
    pub name: String,
    /// Who holds it.
    pub holder: String,
    /// Larger for each new grant of this name; a write under an older one is refused.
    pub fencing: i64,
}

/// Leases in the shared database.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Grants the lease `name` to `holder` for `ttl` when it is free, expired, or
    /// already `holder`'s (then its expiry moves and its fencing token stays);
    /// `None` while another holder's lease runs.
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<Option<Lease>>;

    /// Moves the expiry of a lease still held under its fencing token to `ttl` from
    /// now; false when it was taken over (stop working under it).
    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool>;

    /// Lets the lease go at once, if it is still this one; the fencing token stays,
    /// so the next grant's is larger.
    async fn release_lease(&self, lease: &Lease) -> Result<()>;
}

fn millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
}

for_every_backend! {
    #[async_trait]
    impl LeaseStore for SqlStore {
        async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<Option<Lease>> {
            // The same holder within its lease keeps its token; every other grant
            // (a new name, an expired or released lease) takes a larger one.
            let now = DB::NOW_MILLIS;
            let sql = format!(
                "INSERT INTO leases (name, holder, fencing, expires_at) VALUES ($1, $2, 1, {now} + $3) \
                 ON CONFLICT (name) DO UPDATE SET \
                     fencing = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > {now} \
                               THEN leases.fencing ELSE leases.fencing + 1 END, \
                     holder = excluded.holder, \
                     expires_at = excluded.expires_at \
                 WHERE leases.holder = excluded.holder OR leases.expires_at <= {now} \
                 RETURNING fencing"
            );
            let fencing: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(name)
                .bind(holder)
                .bind(millis(ttl))
                .fetch_optional(&self.pool)
                .await?;
            self.durable().await?;
            Ok(fencing.map(|fencing| Lease { name: name.to_owned(), holder: holder.to_owned(), fencing }))
        }

        async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool> {
            let sql = format!(
                "UPDATE leases SET expires_at = {} + $1 WHERE name = $2 AND holder = $3 AND fencing = $4",
                DB::NOW_MILLIS
            );
            let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(millis(ttl))
                .bind(&lease.name)
                .bind(&lease.holder)
                .bind(lease.fencing)
                .execute(&self.pool)
                .await?;
            self.durable().await?;
            Ok(DB::rows_affected(&done) == 1)
        }

        async fn release_lease(&self, lease: &Lease) -> Result<()> {
            let sql = format!(
                "UPDATE leases SET expires_at = {} WHERE name = $1 AND holder = $2 AND fencing = $3",
                DB::NOW_MILLIS
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&lease.name)
                .bind(&lease.holder)
                .bind(lease.fencing)
                .execute(&self.pool)
                .await?;
            self.durable().await
        }
    }
}
