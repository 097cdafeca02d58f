//! Durable state of gatehouse: the issuance database of the certificate
//! authority (what was issued, what was revoked, CRL numbers).
//!
//! This crate owns the [`Store`] and [`AcmeStore`] traits and their backends.
//! The SQLite backend ([`SqliteStore`]) is the embedded default: one file in
//! the data dir, no setup. The PostgreSQL backend ([`PgStore`]) is one database
//! that several gatehouse instances share. [`Database`] is either, chosen by a
//! storage URL. The traits speak only plain data (hex serials, DER bytes, unix
//! times); both backends run the same queries (`certificates.rs` for issuance
//! and revocation, `acme_sql.rs` for ACME) on the same schema (`migrations.rs`).
//! Every change of a revocation is numbered in a change log (`revocation_log.rs`)
//! that gateways follow with a cursor, told of changes at once on PostgreSQL
//! ([`RevocationNotices`]).
//! Site certificates are stored once for all gateways (`site_certificates.rs`),
//! written under a lease with a fencing token (`leases.rs`) so that one instance at
//! a time renews a site.
//! The ACME client's challenge answers and accounts are shared too (`acme_client.rs`),
//! so that whichever instance a CA's validation reaches can answer it.
//! A whole store can be read out and written into another as a [`Snapshot`]
//! (`snapshot.rs`), which is how a CA moves between backends, and sealed with a
//! passphrase into a backup file ([`seal_backup`], [`open_backup`], `backup.rs`).
//!
//! It knows nothing of X.509 encoding, HTTP or TLS. Every write that matters
//! (recording an issued certificate, a revocation, a CRL number) is durable
//! when the call returns.

#![forbid(unsafe_code)]

mod acme;
mod acme_client;
mod acme_sql;
mod backend;
mod backup;
mod ca_files;
mod certificates;
mod database;
mod durability;
mod leases;
mod migrations;
mod nonce_book;
mod postgres;
mod record;
mod revocation_log;
mod site_certificates;
mod snapshot;
mod sqlite;

pub use acme::{AcmeAccount, AcmeAuthorization, AcmeChallenge, AcmeEabKey, AcmeIdentifier, AcmeOrder, AcmeStore};
pub use acme_client::{AcmeClientStore, AnswerKind, ChallengeAnswer, ClientAccount};
pub use backend::{Backend, SqlStore};
pub use backup::{BackupError, MIN_PASSPHRASE_CHARS, open as open_backup, seal as seal_backup};
pub use ca_files::CaFile;
pub use database::{Database, StorageUrl};
pub use leases::{Lease, LeaseStore};
pub use migrations::SchemaVersions;
pub use postgres::PgStore;
pub use record::{
    CertificateRecord, ListFilter, NewCertificate, ReleaseOutcome, Revocation, RevocationChange, RevocationChanges,
    RevokeOutcome, RevokedEntry, RevokedSerialsSink,
};
pub use revocation_log::{RevocationNotice, RevocationNotices};
pub use site_certificates::{NewSiteCertificate, SiteCertificate, SiteCertificateStore};
pub use snapshot::{ChallengeFailure, CrlNumber, Snapshot};
pub use sqlite::SqliteStore;

use async_trait::async_trait;

/// What can go wrong when reading or writing the issuance database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A certificate with this serial is already recorded: serials are never reused.
    #[error("serial {0} is already recorded; serials are never reused")]
    SerialExists(String),
    /// The database could not be opened or created.
    #[error("cannot open the database {path}: {source}; check that the data dir exists and is writable")]
    Open {
        /// Where the database was looked for.
        path: String,
        /// What the backend said.
        source: sqlx::Error,
    },
    /// The PostgreSQL database could not be reached or refused the connection.
    #[error(
        "cannot connect to the database {url}: {source}; check that PostgreSQL is running there, that the URL's \
         host, port, user, password and database are right, and that the server admits this host and user \
         (pg_hba.conf)"
    )]
    Connect {
        /// The storage URL, its password elided.
        url: String,
        /// What the backend said.
        source: sqlx::Error,
    },
    /// A storage URL whose scheme names no backend.
    #[error(
        "the storage URL {0} names no known backend; use sqlite://PATH (or sqlite:PATH) or \
         postgres://USER@HOST:PORT/DATABASE (or postgresql://...)"
    )]
    UnknownScheme(String),
    /// A `sqlite:` storage URL without a file path.
    #[error(
        "the storage URL {0} has no file path; write sqlite://PATH, for example sqlite:///var/lib/gatehouse/gatehouse.db"
    )]
    MissingPath(String),
    /// A copy's target already holds data: copies go only into an empty database.
    #[error(
        "the target database already holds {0}; copy only into an empty database (a new SQLite file, or a \
         PostgreSQL database just made with createdb): gatehouse does not merge two CAs' records"
    )]
    NotEmpty(String),
    /// The database was written by a newer gatehouse.
    #[error(
        "the database schema version {found} is newer than this gatehouse understands ({known}); upgrade gatehouse"
    )]
    SchemaTooNew {
        /// Version found in the database.
        found: i64,
        /// Newest version this build knows.
        known: i64,
    },
    /// A write under a lease that another instance has since been granted.
    #[error(
        "the lease {name} was taken over (this instance's fencing token {fencing} is no longer current; now held \
         by {}), so its write was refused: another instance is doing this work",
        current.as_deref().unwrap_or("no one")
    )]
    LeaseLost {
        /// The lease's name.
        name: String,
        /// The fencing token written under.
        fencing: i64,
        /// Its holder now, and its token.
        current: Option<String>,
    },
    /// A commit was written but the disk would not flush it (SQLite's group commit).
    #[error(
        "the database's write-ahead log {path} could not be flushed to disk ({source}); the last change may not \
         survive a power cut: check the disk (full, read-only, failing) and retry"
    )]
    NotDurable {
        /// The file that was being flushed.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// A stored row does not have the shape this build expects.
    #[error("the database holds a malformed row ({0}); restore it from a backup")]
    Corrupt(String),
    /// Any other backend failure (disk full, lock timeout, I/O error).
    #[error("database error: {0}")]
    Backend(#[from] sqlx::Error),
}

/// Result of a store operation.
pub type Result<T> = std::result::Result<T, StoreError>;

/// The issuance database of a certificate authority.
///
/// Implementations must make every write durable before returning and keep
/// serials unique per store.
#[async_trait]
pub trait Store: Send + Sync {
    /// Records issued certificates atomically: all of them or none.
    /// Fails with [`StoreError::SerialExists`] if any serial is already recorded.
    async fn record_issued(&self, certificates: &[NewCertificate]) -> Result<()>;

    /// Records certificates whose files are still to be written, all or none:
    /// recorded so nothing leaves the CA unrecorded, but not counted as valid
    /// until [`mark_delivered`](Store::mark_delivered).
    async fn record_undelivered(&self, certificates: &[NewCertificate]) -> Result<()>;

    /// Marks certificates recorded with [`record_undelivered`](Store::record_undelivered) as delivered.
    async fn mark_delivered(&self, serials: &[String]) -> Result<()>;

    /// Undoes a revocation with reason certificateHold (RFC 5280 allows only that one).
    async fn release_hold(&self, serial: &str) -> Result<ReleaseOutcome>;

    /// The certificate with this serial (uppercase hex), if recorded.
    async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>>;

    /// Recorded certificates matching the filter, oldest first.
    async fn certificates(&self, filter: ListFilter) -> Result<Vec<CertificateRecord>>;

    /// Marks a certificate revoked. Never changes an existing revocation.
    async fn revoke(&self, serial: &str, revocation: Revocation) -> Result<RevokeOutcome>;

    /// Every revoked certificate of one issuer (identified by its key id), for a CRL.
    async fn revoked(&self, issuer: &str) -> Result<Vec<RevokedEntry>>;

    /// Takes the next CRL number of an issuer: 1 for its first CRL, then one more each call.
    async fn next_crl_number(&self, issuer: &str) -> Result<u64>;

    /// The revoked serials of one issuer now, handed to `into` one by one as they are
    /// read (never all held at once); returns the cursor to follow their changes from
    /// ([`revocation_changes`](Store::revocation_changes)). The serials and the cursor
    /// are of one moment, so the changes after the cursor are exactly those the
    /// serials miss.
    async fn revoked_serials(&self, issuer: &str, into: &mut dyn RevokedSerialsSink) -> Result<u64>;

    /// The changes of one issuer's revocations (revoked, hold released) made after
    /// `cursor`, in order. None is ever missed: see `revocation_log.rs`.
    async fn revocation_changes(&self, issuer: &str, cursor: u64) -> Result<RevocationChanges>;

    /// A connection told of every revocation change as it commits, where the
    /// backend can push (PostgreSQL's LISTEN/NOTIFY); `None` where it cannot
    /// (SQLite: poll [`revocation_changes`](Store::revocation_changes)).
    async fn revocation_notices(&self) -> Result<Option<RevocationNotices>>;
}

/// A shared store is a store, so callers can hold `Arc<dyn Store>`.
#[async_trait]
impl<T: Store + ?Sized> Store for std::sync::Arc<T> {
    async fn record_issued(&self, certificates: &[NewCertificate]) -> Result<()> {
        (**self).record_issued(certificates).await
    }
    async fn record_undelivered(&self, certificates: &[NewCertificate]) -> Result<()> {
        (**self).record_undelivered(certificates).await
    }
    async fn mark_delivered(&self, serials: &[String]) -> Result<()> {
        (**self).mark_delivered(serials).await
    }
    async fn release_hold(&self, serial: &str) -> Result<ReleaseOutcome> {
        (**self).release_hold(serial).await
    }
    async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>> {
        (**self).certificate(serial).await
    }
    async fn certificates(&self, filter: ListFilter) -> Result<Vec<CertificateRecord>> {
        (**self).certificates(filter).await
    }
    async fn revoke(&self, serial: &str, revocation: Revocation) -> Result<RevokeOutcome> {
        (**self).revoke(serial, revocation).await
    }
    async fn revoked(&self, issuer: &str) -> Result<Vec<RevokedEntry>> {
        (**self).revoked(issuer).await
    }
    async fn next_crl_number(&self, issuer: &str) -> Result<u64> {
        (**self).next_crl_number(issuer).await
    }
    async fn revoked_serials(&self, issuer: &str, into: &mut dyn RevokedSerialsSink) -> Result<u64> {
        (**self).revoked_serials(issuer, into).await
    }
    async fn revocation_changes(&self, issuer: &str, cursor: u64) -> Result<RevocationChanges> {
        (**self).revocation_changes(issuer, cursor).await
    }
    async fn revocation_notices(&self) -> Result<Option<RevocationNotices>> {
        (**self).revocation_notices().await
    }
}
