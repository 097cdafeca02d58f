//! The PostgreSQL backend: one database that several gatehouse instances share.
//!
//! Nothing here relies on one process's memory: what two instances could race on
//! is decided by the database (row locks, unique constraints, single-statement
//! upserts and compare-and-set updates; see `certificates.rs` and `acme_sql.rs`).
//! A commit returns once PostgreSQL has it on disk: connections turn
//! `synchronous_commit` back on where the server or role turned it off. The
//! schema version lives in the one-row table `gatehouse_schema`, and migrating
//! holds an advisory lock, so instances that start at once migrate one at a time.
//!
//! A read or write waits [`ACQUIRE_TIMEOUT`] for a connection, not sqlx's 30 s: a
//! gateway whose database went away learns it within seconds and serves on with
//! what it read last. Since sqlx retries a refused connection until then and keeps
//! no cause, [`SqlStore::unreachable`] finds out what happened by connecting once.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Connection, Postgres};

use crate::backend::{Nonces, SqlStore};
use crate::durability::Durability;
use crate::migrations::{self, SchemaVersions};
use crate::{Result, StoreError};

/// The issuance database in a PostgreSQL database.
pub type PgStore = SqlStore<Postgres>;

/// How long a query waits for a connection of the pool (sqlx's default is 30 s): far
/// more than a busy pool of a healthy database makes anyone wait, and short enough
/// that a database that went away is noticed within seconds.
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long [`SqlStore::unreachable`] waits for its one connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The key of the advisory lock held while migrating: "gatehous" in ASCII, so a
/// DBA who sees it in `pg_locks` can tell whose it is.
const MIGRATION_LOCK: i64 = 0x6761_7465_686f_7573;

/// Makes a session's commits wait for the disk unless the server was set to wait for
/// more (a synchronous standby): only `off` is changed.
const DURABLE_COMMITS: &str =
    "SELECT set_config('synchronous_commit', 'on', false) WHERE current_setting('synchronous_commit') = 'off'";

impl SqlStore<Postgres> {
    /// Connects to the database at `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`,
    /// as libpq reads it) and brings its schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        Ok(SqlStore::connect_migrating(url).await?.0)
    }

    /// [`connect`](SqlStore::connect), saying which schema version it found and which it left.
    pub async fn connect_migrating(url: &str) -> Result<(Self, SchemaVersions)> {
        let connect_error = |source| StoreError::Connect { url: without_password(url), source };
        let options = PgConnectOptions::from_str(url).map_err(connect_error)?;
        // One connection first, without the pool's retries, so that a wrong URL or a
        // server that is down is told at once and in the server's words.
        let mut first = PgConnection::connect_with(&options).await.map_err(connect_error)?;
        sqlx::raw_sql(DURABLE_COMMITS).execute(&mut first).await?;
        let versions = migrate(&mut first).await?;
        first.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|connection, _| {
                Box::pin(async move { sqlx::raw_sql(DURABLE_COMMITS).execute(connection).await.map(drop) })
            })
            .connect_lazy_with(options.clone());
        let nonces = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|connection, _| {
                Box::pin(
                    async move { sqlx::raw_sql("SET synchronous_commit = off").execute(connection).await.map(drop) },
                )
            })
            .connect_lazy_with(options);
        Ok((SqlStore { pool, nonces: Nonces::Pool(nonces), durability: Durability::AtCommit }, versions))
    }
}

impl SqlStore<Postgres> {
    /// `error`, or why the database cannot be reached where that is what `error` hides:
    /// the pool timed out (sqlx retries a refused connection until then and keeps no
    /// cause) or a connection broke. Found by connecting once, for at most
    /// [`PROBE_TIMEOUT`]; a database that answers leaves `error` as it was (a pool
    /// too busy, say).
    pub(crate) async fn unreachable(&self, error: StoreError) -> StoreError {
        unreachable(&self.pool.connect_options(), error).await
    }
}

/// [`SqlStore::unreachable`] of the database `options` connect to.
pub(crate) async fn unreachable(options: &PgConnectOptions, error: StoreError) -> StoreError {
    let StoreError::Backend(
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_),
    ) = error
    else {
        return error;
    };
    // Built from the options, so it has no password to elide.
    let url = format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default()
    );
    let source = match tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            return error;
        }
        Ok(Err(source)) => source,
        Err(_) => sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
        )),
    };
    StoreError::Connect { url, source }
}

/// Brings the schema up to date, one instance at a time.
async fn migrate(connection: &mut PgConnection) -> Result<SchemaVersions> {
    let mut tx = connection.begin().await?;
    // Held to the end of the transaction: a second instance waits here, then
    // finds the schema current. DDL is transactional, so a failed step leaves nothing.
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS gatehouse_schema (\
             one     BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), \
             version BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let found: Option<i64> =
        sqlx::query_scalar("SELECT version FROM gatehouse_schema").fetch_optional(&mut *tx).await?;
    let before = found.unwrap_or(0);
    let mut reached = None;
    for (version, step) in migrations::pending(before)? {
        sqlx::raw_sql(sqlx::AssertSqlSafe(step.postgres)).execute(&mut *tx).await?;
        reached = Some(version);
    }
    if let Some(version) = reached {
        sqlx::query(
            "INSERT INTO gatehouse_schema (version) VALUES ($1) \
             ON CONFLICT (one) DO UPDATE SET version = excluded.version",
        )
        .bind(version)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(SchemaVersions { before, after: reached.unwrap_or(before) })
}

/// `url` with its password, if it has one, replaced by `***`, for messages and logs.
pub(crate) fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let parameters: Vec<&str> = query
                .split('&')
                .map(|pair| if pair.to_ascii_lowercase().starts_with("password=") { "password=***" } else { pair })
                .collect();
            format!("{path}?{}", parameters.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn passwords_are_elided_from_urls() {
        assert_eq!(
            without_password("postgres://ca:s3cr:et@db.internal:5432/pki"),
            "postgres://ca:***@db.internal:5432/pki"
        );
        assert_eq!(without_password("postgres://ca@db/pki"), "postgres://ca@db/pki");
        assert_eq!(
            without_password("postgresql://db/pki?user=ca&Password=x&sslmode=require"),
            "postgresql://db/pki?user=ca&password=***&sslmode=require"
        );
        assert_eq!(without_password("postgres://a:b@h?password=c"), "postgres://a:***@h?password=***");
        assert_eq!(without_password("not a url"), "not a url");
    }
}
