//! [`Database`]: the store a storage URL names, on whichever backend it is.

use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::acme::{AcmeAccount, AcmeAuthorization, AcmeChallenge, AcmeEabKey, AcmeIdentifier, AcmeOrder, AcmeStore};
use crate::acme_client::{AcmeClientStore, AnswerKind, ChallengeAnswer, ClientAccount};
use crate::ca_files::CaFile;
use crate::leases::{Lease, LeaseStore};
use crate::migrations::SchemaVersions;
use crate::postgres::without_password;
use crate::record::{
    CertificateRecord, ListFilter, NewCertificate, ReleaseOutcome, Revocation, RevocationChanges, RevokeOutcome,
    RevokedEntry, RevokedSerialsSink,
};
use crate::revocation_log::RevocationNotices;
use crate::site_certificates::{NewSiteCertificate, SiteCertificate, SiteCertificateStore};
use crate::snapshot::Snapshot;
use crate::{PgStore, Result, SqliteStore, Store, StoreError};

/// The issuance database and ACME state, on SQLite or PostgreSQL.
///
/// The rest of gatehouse holds this type, so the backend is a matter of the
/// storage URL alone.
#[derive(Debug, Clone)]
pub enum Database {
    /// One SQLite file: the embedded default.
    Sqlite(SqliteStore),
    /// A PostgreSQL database that several instances may share.
    Postgres(PgStore),
}

/// Calls the same method on whichever backend `self` is.
macro_rules! on_backend {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Database::Sqlite($store) => $call,
            Database::Postgres($store) => $call,
        }
    };
}

/// As [`on_backend!`], for what a gateway keeps asking while it serves (revocations,
/// site certificates and their leases, ACME client answers and accounts): on
/// PostgreSQL, an error that hides an unreachable database says so
/// ([`PgStore::unreachable`]), so the gateway's log names the cause, not "pool timed out".
macro_rules! on_backend_saying_why {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Database::Sqlite($store) => $call,
            Database::Postgres($store) => match $call {
                Err(e) => Err($store.unreachable(e).await),
                ok => ok,
            },
        }
    };
}

/// Where a storage URL points, parsed: `sqlite://PATH` (or `sqlite:PATH`) or
/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (or `postgresql://`).
#[derive(Clone, PartialEq, Eq)]
pub enum StorageUrl {
    /// One SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, by its URL as libpq reads it.
    Postgres(String),
}

impl StorageUrl {
    /// Reads a storage URL; [`UnknownScheme`](StoreError::UnknownScheme) or
    /// [`MissingPath`](StoreError::MissingPath) when it names no database.
    pub fn parse(url: &str) -> Result<StorageUrl> {
        let (scheme, rest) = url.split_once(':').unwrap_or(("", url));
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path.is_empty() {
                    return Err(StoreError::MissingPath(url.to_owned()));
                }
                Ok(StorageUrl::Sqlite(PathBuf::from(path)))
            }
            "postgres" | "postgresql" => Ok(StorageUrl::Postgres(url.to_owned())),
            _ => Err(StoreError::UnknownScheme(without_password(url))),
        }
    }
}

/// The URL as messages and logs may show it: the password, if any, elided.
impl fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            StorageUrl::Postgres(url) => f.write_str(&without_password(url)),
        }
    }
}

/// Never the password, even in a debug print.
impl fmt::Debug for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageUrl({self})")
    }
}

impl Database {
    /// Opens the database a storage URL names, bringing its schema up to date:
    /// `sqlite://PATH` or `sqlite:PATH` (created if missing), or
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (also `postgresql://`).
    pub async fn open(url: &str) -> Result<Database> {
        Database::open_url(&StorageUrl::parse(url)?).await
    }

    /// [`open`](Database::open) of a parsed URL.
    pub async fn open_url(url: &StorageUrl) -> Result<Database> {
        Ok(Database::open_migrating(url).await?.0)
    }

    /// [`open_url`](Database::open_url), saying which schema version it found and which it left.
    pub async fn open_migrating(url: &StorageUrl) -> Result<(Database, SchemaVersions)> {
        Ok(match url {
            StorageUrl::Sqlite(path) => {
                let (store, versions) = SqliteStore::open_migrating(path).await?;
                (Database::Sqlite(store), versions)
            }
            StorageUrl::Postgres(url) => {
                let (store, versions) = PgStore::connect_migrating(url).await?;
                (Database::Postgres(store), versions)
            }
        })
    }

    /// Opens (creating if needed) the SQLite database at `path`.
    pub async fn open_sqlite(path: &Path) -> Result<Database> {
        Ok(Database::Sqlite(SqliteStore::open(path).await?))
    }

    /// Everything the database holds but nonces, read as of one moment.
    pub async fn export(&self) -> Result<Snapshot> {
        on_backend!(self, store => store.export().await)
    }

    /// The CA's files kept in the database (see [`CaFile`]); empty when it holds no CA.
    pub async fn ca_files(&self) -> Result<Vec<CaFile>> {
        on_backend!(self, store => store.ca_files().await)
    }

    /// Keeps `files` as the database's CA, all or none; `false` when it already holds one.
    pub async fn put_ca_files(&self, files: &[CaFile]) -> Result<bool> {
        on_backend!(self, store => store.put_ca_files(files).await)
    }

    /// Replaces the CA file `name` with `new` if it still holds `old`; whether it did
    /// (`false`: another instance changed it first, or there is no such file).
    pub async fn replace_ca_file(&self, name: &str, old: &[u8], new: &[u8]) -> Result<bool> {
        on_backend!(self, store => store.replace_ca_file(name, old, new).await)
    }

    /// Writes `snapshot` into this database, which must hold nothing (nonces aside),
    /// in one transaction: all of it or, on any error, none.
    pub async fn import(&self, snapshot: &Snapshot) -> Result<()> {
        on_backend!(self, store => store.import(snapshot).await)
    }
}

#[async_trait]
impl Store for Database {
    async fn record_issued(&self, certificates: &[NewCertificate]) -> Result<()> {
        on_backend!(self, store => store.record_issued(certificates).await)
    }
    async fn record_undelivered(&self, certificates: &[NewCertificate]) -> Result<()> {
        on_backend!(self, store => store.record_undelivered(certificates).await)
    }
    async fn mark_delivered(&self, serials: &[String]) -> Result<()> {
        on_backend!(self, store => store.mark_delivered(serials).await)
    }
    async fn release_hold(&self, serial: &str) -> Result<ReleaseOutcome> {
        on_backend!(self, store => store.release_hold(serial).await)
    }
    async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>> {
        on_backend!(self, store => store.certificate(serial).await)
    }
    async fn certificates(&self, filter: ListFilter) -> Result<Vec<CertificateRecord>> {
        on_backend!(self, store => store.certificates(filter).await)
    }
    async fn revoke(&self, serial: &str, revocation: Revocation) -> Result<RevokeOutcome> {
        on_backend!(self, store => store.revoke(serial, revocation).await)
    }
    async fn revoked(&self, issuer: &str) -> Result<Vec<RevokedEntry>> {
        on_backend!(self, store => store.revoked(issuer).await)
    }
    async fn next_crl_number(&self, issuer: &str) -> Result<u64> {
        on_backend!(self, store => store.next_crl_number(issuer).await)
    }
    async fn revoked_serials(&self, issuer: &str, into: &mut dyn RevokedSerialsSink) -> Result<u64> {
        on_backend_saying_why!(self, store => store.revoked_serials(issuer, into).await)
    }
    async fn revocation_changes(&self, issuer: &str, cursor: u64) -> Result<RevocationChanges> {
        on_backend_saying_why!(self, store => store.revocation_changes(issuer, cursor).await)
    }
    async fn revocation_notices(&self) -> Result<Option<RevocationNotices>> {
        on_backend_saying_why!(self, store => store.revocation_notices().await)
    }
}

#[async_trait]
impl AcmeStore for Database {
    async fn nonce_insert(&self, nonce: &str, expires: i64) -> Result<()> {
        on_backend!(self, store => store.nonce_insert(nonce, expires).await)
    }
    async fn nonce_take(&self, nonce: &str, now: i64) -> Result<bool> {
        on_backend!(self, store => store.nonce_take(nonce, now).await)
    }
    async fn nonce_sweep(&self, now: i64) -> Result<u64> {
        on_backend!(self, store => store.nonce_sweep(now).await)
    }
    async fn account_insert(&self, account: &AcmeAccount) -> Result<bool> {
        on_backend!(self, store => store.account_insert(account).await)
    }
    async fn account(&self, id: &str) -> Result<Option<AcmeAccount>> {
        on_backend!(self, store => store.account(id).await)
    }
    async fn account_by_thumbprint(&self, thumbprint: &str) -> Result<Option<AcmeAccount>> {
        on_backend!(self, store => store.account_by_thumbprint(thumbprint).await)
    }
    async fn account_update(&self, id: &str, contact: &[String], status: &str) -> Result<()> {
        on_backend!(self, store => store.account_update(id, contact, status).await)
    }
    async fn account_key_change(&self, id: &str, thumbprint: &str, jwk: &str) -> Result<bool> {
        on_backend!(self, store => store.account_key_change(id, thumbprint, jwk).await)
    }
    async fn order_insert(&self, order: &AcmeOrder, new_authorizations: &[AcmeAuthorization]) -> Result<()> {
        on_backend!(self, store => store.order_insert(order, new_authorizations).await)
    }
    async fn order(&self, id: &str) -> Result<Option<AcmeOrder>> {
        on_backend!(self, store => store.order(id).await)
    }
    async fn orders_of(&self, account_id: &str) -> Result<Vec<String>> {
        on_backend!(self, store => store.orders_of(account_id).await)
    }
    async fn order_transition(
        &self,
        id: &str,
        from: &str,
        status: &str,
        error: Option<&str>,
        certificate_serial: Option<&str>,
    ) -> Result<bool> {
        on_backend!(self, store => store.order_transition(id, from, status, error, certificate_serial).await)
    }
    async fn order_by_certificate(&self, serial: &str) -> Result<Option<AcmeOrder>> {
        on_backend!(self, store => store.order_by_certificate(serial).await)
    }
    async fn authorization(&self, id: &str) -> Result<Option<AcmeAuthorization>> {
        on_backend!(self, store => store.authorization(id).await)
    }
    async fn authorization_reusable(
        &self,
        account_id: &str,
        identifier: &AcmeIdentifier,
        wildcard: bool,
        now: i64,
    ) -> Result<Option<AcmeAuthorization>> {
        on_backend!(self, store => store.authorization_reusable(account_id, identifier, wildcard, now).await)
    }
    async fn authorization_status(&self, id: &str, status: &str, expires: Option<i64>) -> Result<()> {
        on_backend!(self, store => store.authorization_status(id, status, expires).await)
    }
    async fn challenge(&self, id: &str) -> Result<Option<(AcmeAuthorization, AcmeChallenge)>> {
        on_backend!(self, store => store.challenge(id).await)
    }
    async fn orders_since(&self, account_id: &str, since: i64) -> Result<u64> {
        on_backend!(self, store => store.orders_since(account_id, since).await)
    }
    async fn failed_validations_since(&self, account_id: &str, since: i64) -> Result<u64> {
        on_backend!(self, store => store.failed_validations_since(account_id, since).await)
    }
    async fn eab_insert(&self, key: &AcmeEabKey) -> Result<()> {
        on_backend!(self, store => store.eab_insert(key).await)
    }
    async fn eab_keys(&self) -> Result<Vec<AcmeEabKey>> {
        on_backend!(self, store => store.eab_keys().await)
    }
    async fn eab_key(&self, kid: &str) -> Result<Option<AcmeEabKey>> {
        on_backend!(self, store => store.eab_key(kid).await)
    }
    async fn eab_revoke(&self, kid: &str, at: i64) -> Result<bool> {
        on_backend!(self, store => store.eab_revoke(kid, at).await)
    }
    async fn eab_bind(&self, kid: &str, account_id: &str) -> Result<bool> {
        on_backend!(self, store => store.eab_bind(kid, account_id).await)
    }
    async fn challenge_transition(
        &self,
        id: &str,
        from: &str,
        status: &str,
        validated_at: Option<i64>,
        error: Option<&str>,
    ) -> Result<bool> {
        on_backend!(self, store => store.challenge_transition(id, from, status, validated_at, error).await)
    }
}

#[async_trait]
impl LeaseStore for Database {
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<Option<Lease>> {
        on_backend_saying_why!(self, store => store.acquire_lease(name, holder, ttl).await)
    }
    async fn renew_lease(&self, lease: &Lease, ttl: std::time::Duration) -> Result<bool> {
        on_backend_saying_why!(self, store => store.renew_lease(lease, ttl).await)
    }
    async fn release_lease(&self, lease: &Lease) -> Result<()> {
        on_backend_saying_why!(self, store => store.release_lease(lease).await)
    }
}

#[async_trait]
impl SiteCertificateStore for Database {
    async fn put_site_certificate(&self, certificate: NewSiteCertificate<'_>, lease: &Lease) -> Result<()> {
        on_backend_saying_why!(self, store => store.put_site_certificate(certificate, lease).await)
    }
    async fn site_certificate(&self, name: &str) -> Result<Option<SiteCertificate>> {
        on_backend_saying_why!(self, store => store.site_certificate(name).await)
    }
}

#[async_trait]
impl AcmeClientStore for Database {
    async fn put_answer(&self, answer: &ChallengeAnswer, ttl: std::time::Duration) -> Result<()> {
        on_backend_saying_why!(self, store => store.put_answer(answer, ttl).await)
    }
    async fn answer(&self, kind: AnswerKind, name: &str) -> Result<Option<ChallengeAnswer>> {
        on_backend_saying_why!(self, store => store.answer(kind, name).await)
    }
    async fn remove_answer(&self, answer: &ChallengeAnswer) -> Result<()> {
        on_backend_saying_why!(self, store => store.remove_answer(answer).await)
    }
    async fn client_account(&self, directory: &str, name: &str) -> Result<Option<ClientAccount>> {
        on_backend_saying_why!(self, store => store.client_account(directory, name).await)
    }
    async fn keep_client_account(&self, account: &ClientAccount) -> Result<ClientAccount> {
        on_backend_saying_why!(self, store => store.keep_client_account(account).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_url_with_no_known_scheme_is_refused_with_the_known_ones() {
        let err = Database::open("mysql://ca:pw@db/pki").await.unwrap_err();
        assert!(matches!(err, StoreError::UnknownScheme(ref url) if url == "mysql://ca:***@db/pki"), "{err}");
        let message = err.to_string();
        assert!(message.contains("sqlite://") && message.contains("postgres://"), "{message}");
        assert!(matches!(Database::open("sqlite://").await.unwrap_err(), StoreError::MissingPath(_)));
        assert!(matches!(Database::open("/var/lib/gatehouse.db").await.unwrap_err(), StoreError::UnknownScheme(_)));
    }

    #[test]
    fn a_storage_url_never_shows_its_password() {
        let url = StorageUrl::parse("postgresql://ca:s3cret@db/pki").unwrap();
        assert_eq!(url.to_string(), "postgresql://ca:***@db/pki");
        assert!(!format!("{url:?}").contains("s3cret"));
        let url = StorageUrl::parse("sqlite:/var/lib/gatehouse/gatehouse.db").unwrap();
        assert_eq!(url, StorageUrl::Sqlite("/var/lib/gatehouse/gatehouse.db".into()));
        assert_eq!(url.to_string(), "sqlite:///var/lib/gatehouse/gatehouse.db");
    }

    #[tokio::test]
    async fn sqlite_urls_name_a_file() {
        let dir = tempfile::tempdir().unwrap();
        for (url, file) in [("sqlite://{}/a.db", "a.db"), ("sqlite:{}/b.db", "b.db")] {
            let url = url.replace("{}", &dir.path().display().to_string());
            let database = Database::open(&url).await.unwrap();
            assert!(matches!(database, Database::Sqlite(_)));
            assert!(dir.path().join(file).exists(), "{url} made no {file}");
        }
    }
}
