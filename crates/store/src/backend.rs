//! What the SQL backends share: the store type over a connection pool, and the
//! few places where SQLite and PostgreSQL need different words.
//!
//! The queries themselves are written once (`certificates.rs`, `acme_sql.rs`) with
//! `$1`-style parameters, which both backends read, against the schema both get
//! from `migrations.rs`. What a backend must guarantee beyond plain SQL (durable
//! commits, one writer at a time or row locks) is set up where it is opened
//! (`sqlite.rs`, `postgres.rs`).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::{Pool, Postgres, Sqlite, Transaction};

use crate::Result;
use crate::durability::Durability;
use crate::nonce_book::NonceBook;
use crate::revocation_log::RevocationNotices;

/// The words in which the backends differ.
pub trait Backend: sqlx::Database {
    /// Starts a transaction that writes, perhaps after reading what it will change.
    ///
    /// SQLite: `BEGIN IMMEDIATE`, which takes the write lock at once; a transaction that
    /// read first and wrote later would fail with "database is locked" (SQLite cannot move
    /// a WAL read snapshot forward into a write) if another connection, say the ACME
    /// server while `ca revoke` runs, wrote in between. This one waits its turn within
    /// the busy timeout instead. PostgreSQL: a plain `BEGIN`; the rows it will change
    /// are read with [`FOR_UPDATE`](Backend::FOR_UPDATE), which locks them.
    const BEGIN_WRITE: &'static str;
    /// Appended to a `SELECT` of rows the same transaction then changes, so two
    /// instances on one database cannot both act on what they read. Empty on SQLite,
    /// where the transaction already holds the one write lock.
    const FOR_UPDATE: &'static str;
    /// Starts a transaction that only reads, and sees every table as of one moment.
    ///
    /// SQLite: a deferred `BEGIN`, whose first read fixes the WAL snapshot the rest see.
    /// PostgreSQL: `REPEATABLE READ`, whose first statement fixes the snapshot.
    const BEGIN_SNAPSHOT: &'static str;
    /// Run, with the issuer's key id as `$1`, in a transaction that changes a
    /// revocation, to tell listeners when it commits; empty where no one can listen.
    const NOTIFY_REVOCATION: &'static str;
    /// The database's clock, unix milliseconds, as an SQL expression: leases expire by
    /// it, so the clocks of the instances sharing a database do not matter.
    const NOW_MILLIS: &'static str;
    /// How many rows a statement changed (sqlx has no trait for it).
    fn rows_affected(result: &Self::QueryResult) -> u64;
    /// A connection of its own that hears of revocation changes, where the backend can push them.
    fn revocation_notices(pool: &Pool<Self>) -> impl Future<Output = Result<Option<RevocationNotices>>> + Send;
}

impl Backend for Sqlite {
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const FOR_UPDATE: &'static str = "";
    const BEGIN_SNAPSHOT: &'static str = "BEGIN";
    const NOTIFY_REVOCATION: &'static str = "";
    const NOW_MILLIS: &'static str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";
    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
    async fn revocation_notices(_: &Pool<Self>) -> Result<Option<RevocationNotices>> {
        // One process writes a SQLite file; there is no one to push from.
        Ok(None)
    }
}

impl Backend for Postgres {
    const BEGIN_WRITE: &'static str = "BEGIN";
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const BEGIN_SNAPSHOT: &'static str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
    const NOTIFY_REVOCATION: &'static str = "SELECT pg_notify('gatehouse_revocations', $1)";
    // The transaction's start, so one statement reads one moment.
    const NOW_MILLIS: &'static str = "CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT)";
    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
    async fn revocation_notices(pool: &Pool<Self>) -> Result<Option<RevocationNotices>> {
        Ok(Some(RevocationNotices::listen(pool).await?))
    }
}

/// The issuance database (and the ACME server's state) in a SQL database.
///
/// See [`SqliteStore`](crate::SqliteStore) and [`PgStore`](crate::PgStore) for how
/// each is opened.
#[derive(Debug)]
pub struct SqlStore<DB: Backend> {
    pub(crate) pool: Pool<DB>,
    /// Where ACME nonces are kept.
    pub(crate) nonces: Nonces<DB>,
    /// How a write transaction's commit is made durable before its call returns.
    pub(crate) durability: Durability,
}

impl<DB: Backend> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        SqlStore { pool: self.pool.clone(), nonces: self.nonces.clone(), durability: self.durability.clone() }
    }
}

/// Where ACME nonces are kept: they need not wait for the disk (a nonce lost in a
/// crash costs a client one badNonce retry), and they are half of an order's writes.
#[derive(Debug)]
pub(crate) enum Nonces<DB: Backend> {
    /// In this process (SQLite, which one process serves): see `nonce_book.rs`.
    Memory(Arc<NonceBook>),
    /// In the database, on connections that commit without waiting for the disk, so
    /// every instance sharing it accepts them (PostgreSQL). Opened on first use.
    Pool(Pool<DB>),
}

impl<DB: Backend> Clone for Nonces<DB> {
    fn clone(&self) -> Self {
        match self {
            Nonces::Memory(book) => Nonces::Memory(book.clone()),
            Nonces::Pool(pool) => Nonces::Pool(pool.clone()),
        }
    }
}

/// A write transaction whose [`commit`](WriteTransaction::commit) returns once the
/// commit is durable. It reads and writes as the connection it holds.
pub(crate) struct WriteTransaction<DB: Backend> {
    transaction: Transaction<'static, DB>,
    durability: Durability,
}

impl<DB: Backend> WriteTransaction<DB> {
    /// Commits, and returns once the commit is on disk.
    pub(crate) async fn commit(self) -> Result<()> {
        self.transaction.commit().await?;
        self.durability.wait().await
    }
}

impl<DB: Backend> Deref for WriteTransaction<DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        &self.transaction
    }
}

impl<DB: Backend> DerefMut for WriteTransaction<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.transaction
    }
}

/// Writes `impl` blocks for [`SqlStore`] over any [`Backend`], with the bounds that
/// let one query body run on both: written once here rather than on every block.
macro_rules! for_every_backend {
    ($(#[$attribute:meta])* impl SqlStore { $($body:tt)* }) => {
        $crate::backend::for_every_backend!(@bounded $(#[$attribute])* impl [] { $($body)* });
    };
    ($(#[$attribute:meta])* impl $trait:ident for SqlStore { $($body:tt)* }) => {
        $crate::backend::for_every_backend!(@bounded $(#[$attribute])* impl [$trait for] { $($body)* });
    };
    (@bounded $(#[$attribute:meta])* impl [$($trait_for:tt)*] { $($body:tt)* }) => {
        $(#[$attribute])*
        impl<DB: $crate::backend::Backend> $($trait_for)* $crate::backend::SqlStore<DB>
        where
            for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
            DB::Arguments: sqlx::IntoArguments<DB>,
            for<'n> &'n str: sqlx::ColumnIndex<DB::Row> + sqlx::Encode<'n, DB> + sqlx::Type<DB>,
            usize: sqlx::ColumnIndex<DB::Row>,
            String: for<'r> sqlx::Decode<'r, DB> + for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
            i64: for<'r> sqlx::Decode<'r, DB> + for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
            bool: for<'r> sqlx::Decode<'r, DB> + for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
            Vec<u8>: for<'r> sqlx::Decode<'r, DB> + for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
            Option<String>: for<'q> sqlx::Encode<'q, DB>,
            Option<i64>: for<'q> sqlx::Encode<'q, DB>,
            for<'n> Option<&'n str>: sqlx::Encode<'n, DB>,
        {
            $($body)*
        }
    };
}
pub(crate) use for_every_backend;

impl<DB: Backend> SqlStore<DB> {
    /// A transaction for reading rows and then changing them (see [`Backend::BEGIN_WRITE`]).
    /// Its commit returns once the commit is durable.
    pub(crate) async fn write_transaction(&self) -> Result<WriteTransaction<DB>> {
        let transaction = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        Ok(WriteTransaction { transaction, durability: self.durability.clone() })
    }

    /// Returns once every write this task made outside a [`WriteTransaction`] is durable.
    pub(crate) async fn durable(&self) -> Result<()> {
        self.durability.wait().await
    }
}

/// Now, unix seconds.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
