//! The revocation change log: every change of a certificate's revocation state
//! (revoked, certificateHold released) gets the next number of one counter, so a
//! reader (a gateway's internal CA) holds a cursor and reads only what changed
//! since, and on PostgreSQL a listener hears of each change as it commits.
//!
//! Never missing a change rests on one property: **changes commit in the order of
//! their numbers**. A revoking transaction takes its number with
//! `UPDATE revocation_sequence SET last = last + 1 RETURNING last`, whose row lock it
//! holds until it commits, so the next revoking transaction waits for that commit
//! before it can take the next number. With a plain PostgreSQL sequence (or an
//! identity column) numbers are handed out at once and transactions commit in any
//! order: a reader could see change 8 committed while 7 is still open, move its
//! cursor past 7, and never read it. Here a reader that sees the counter at N sees
//! every change up to N (they committed before N was taken) and none after (N is
//! not committed until they are). Revocations are rare, so serializing their
//! writers costs nothing that matters. SQLite has one writer at a time anyway; the
//! same SQL runs there.
//!
//! The full set and the changes are read in one snapshot transaction together with
//! the counter, so the cursor returned is exactly what was read. The full set is
//! streamed row by row out of that transaction (PostgreSQL sends rows as the reader
//! takes them; sqlx's SQLite worker hands them over through a small bounded channel),
//! so a reader of 10 million serials never holds them all as text; the transaction,
//! and with it the snapshot, stays open until the last row is read.

use futures_util::TryStreamExt;
use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Pool, Postgres};

use crate::backend::for_every_backend;
use crate::record::{RevocationChange, RevocationChanges, RevokedSerialsSink};
use crate::{Result, StoreError};

/// The PostgreSQL channel that revoking transactions notify, the issuer's key id
/// as payload (see [`Backend::NOTIFY_REVOCATION`](crate::Backend::NOTIFY_REVOCATION)).
const CHANNEL: &str = "gatehouse_revocations";

fn cursor(last: i64) -> Result<u64> {
    u64::try_from(last).map_err(|_| StoreError::Corrupt(format!("revocation sequence {last}")))
}

for_every_backend! {
    impl SqlStore {
        /// Numbers a change of `serial`'s revocation inside the transaction that makes
        /// it, and tells listeners (delivered when `tx` commits). The counter's row
        /// lock is held to the commit: that is what orders commits as their numbers.
        pub(crate) async fn log_revocation_change(
            tx: &mut DB::Connection,
            issuer: &str,
            serial: &str,
            revoked: bool,
        ) -> Result<()> {
            let sequence: i64 =
                sqlx::query_scalar("UPDATE revocation_sequence SET last = last + 1 RETURNING last")
                    .fetch_one(&mut *tx)
                    .await?;
            sqlx::query("INSERT INTO revocation_changes (sequence, issuer, serial, revoked) VALUES ($1, $2, $3, $4)")
                .bind(sequence)
                .bind(issuer)
                .bind(serial)
                .bind(revoked)
                .execute(&mut *tx)
                .await?;
            if !DB::NOTIFY_REVOCATION.is_empty() {
                sqlx::query(DB::NOTIFY_REVOCATION).bind(issuer).execute(&mut *tx).await?;
            }
            Ok(())
        }

        /// The revoked serials of `issuer`, handed to `into` as they are read, and the
        /// counter, as of one moment.
        pub(crate) async fn read_revoked_serials(
            &self,
            issuer: &str,
            into: &mut dyn RevokedSerialsSink,
        ) -> Result<u64> {
            let mut tx = self.pool.begin_with(DB::BEGIN_SNAPSHOT).await?;
            let last: i64 = sqlx::query_scalar("SELECT last FROM revocation_sequence").fetch_one(&mut *tx).await?;
            // Counted first, in the same snapshot, so the reader can make room once.
            let count: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM certificates WHERE issuer = $1 AND revoked_at IS NOT NULL")
                    .bind(issuer)
                    .fetch_one(&mut *tx)
                    .await?;
            into.expect(usize::try_from(count).unwrap_or(0));
            // In no order: the reader sorts what it builds, and a sort of 10 million
            // rows here costs the database seconds (SQLite: in the gateway's process).
            let mut serials = sqlx::query_scalar::<_, String>(
                "SELECT serial FROM certificates WHERE issuer = $1 AND revoked_at IS NOT NULL",
            )
            .bind(issuer)
            .fetch(&mut *tx);
            while let Some(serial) = serials.try_next().await? {
                into.serial(&serial);
            }
            drop(serials);
            tx.commit().await?;
            cursor(last)
        }

        /// The changes of `issuer` after `after` and the counter, as of one moment.
        pub(crate) async fn read_revocation_changes(&self, issuer: &str, after: u64) -> Result<RevocationChanges> {
            let after = i64::try_from(after).unwrap_or(i64::MAX);
            let mut tx = self.pool.begin_with(DB::BEGIN_SNAPSHOT).await?;
            let last: i64 = sqlx::query_scalar("SELECT last FROM revocation_sequence").fetch_one(&mut *tx).await?;
            let rows: Vec<(String, bool)> = sqlx::query_as(
                "SELECT serial, revoked FROM revocation_changes \
                 WHERE issuer = $1 AND sequence > $2 AND sequence <= $3 ORDER BY sequence",
            )
            .bind(issuer)
            .bind(after)
            .bind(last)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            let changes = rows.into_iter().map(|(serial, revoked)| RevocationChange { serial, revoked }).collect();
            Ok(RevocationChanges { changes, cursor: cursor(last)? })
        }
    }
}

/// What a [`RevocationNotices`] heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationNotice {
    /// A revocation of this issuer (key id, uppercase hex) changed and committed.
    Changed {
        /// The issuer's key id.
        issuer: String,
    },
    /// The connection was lost and made again: changes made meanwhile were not
    /// heard, so read the changes after the cursor.
    Missed,
}

/// A PostgreSQL connection of its own, listening for revocation changes
/// (`LISTEN gatehouse_revocations`).
///
/// Notices only say when to read: what changed is read from the change log after
/// the reader's cursor, so a notice lost with a connection loses nothing but time.
#[derive(Debug)]
pub struct RevocationNotices {
    listener: PgListener,
    /// How it connects, to say why when it cannot.
    options: Arc<PgConnectOptions>,
}

impl RevocationNotices {
    /// Connects (a pool of one connection with the store's options, so a listener
    /// that waits forever never holds one of the store's) and listens.
    pub(crate) async fn listen(store_pool: &Pool<Postgres>) -> Result<RevocationNotices> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(crate::postgres::ACQUIRE_TIMEOUT)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with((*store_pool.connect_options()).clone());
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(CHANNEL).await?;
        Ok(RevocationNotices { listener, options: store_pool.connect_options() })
    }

    /// Waits for the next notice. An error means the connection is gone and could not
    /// be made again; drop this and [`listen`](crate::Store::revocation_notices) anew
    /// after a while.
    pub async fn next(&mut self) -> Result<RevocationNotice> {
        match self.listener.try_recv().await {
            Ok(Some(notification)) => Ok(RevocationNotice::Changed { issuer: notification.payload().to_owned() }),
            Ok(None) => Ok(RevocationNotice::Missed),
            Err(e) => Err(crate::postgres::unreachable(&self.options, e.into()).await),
        }
    }
}
