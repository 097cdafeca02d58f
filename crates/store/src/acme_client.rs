//! The ACME client's state that the gateways of one database share: the answers
//! to http-01 and tls-alpn-01 challenges while an order waits for them, and the
//! client's accounts.
//!
//! An answer is written by the instance that orders, before it tells the CA to
//! validate, and read by whichever instance the CA's request reaches. It is
//! transient: it lives until the order is done (the orderer removes it) or
//! until its expiry, by the database's clock, after which it is ignored and
//! swept by the next write. Answers are not secret (the CA fetches them in the
//! clear), so they are stored as they are served.
//!
//! An account is keyed by its CA's directory URL and the `[[acme]]` table's
//! name. Its private key is encrypted by the caller (this crate never sees a key
//! in the clear). The first instance to register one keeps it: storing is
//! insert-if-absent, and a loser of the race gets the winner's account back.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;

use crate::Result;
use crate::StoreError;
use crate::backend::for_every_backend;

/// Which challenge an answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnswerKind {
    /// http-01 (RFC 8555 §8.3): stored by token, the key authorization as its value.
    Http01,
    /// tls-alpn-01 (RFC 8737): stored by the name a validation's SNI carries, the
    /// SHA-256 digest of the key authorization (hex) as its value.
    TlsAlpn01,
}

impl AnswerKind {
    /// The challenge type's name in RFC 8555 and RFC 8737, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerKind::Http01 => "http-01",
            AnswerKind::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// One challenge answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeAnswer {
    /// The challenge type.
    pub kind: AnswerKind,
    /// The token (http-01), or the lowercase SNI name (tls-alpn-01; an IP address's
    /// reverse-DNS name, RFC 8738 §6).
    pub name: String,
    /// The identifier being validated, as the order names it.
    pub identifier: String,
    /// The key authorization (http-01), or its SHA-256 digest in hex (tls-alpn-01).
    pub value: String,
}

/// An ACME client account as stored: where it is registered and its credentials.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAccount {
    /// The CA's directory URL.
    pub directory: String,
    /// The `[[acme]]` table's name.
    pub name: String,
    /// The account URL the CA gave (its `kid`).
    pub account_url: String,
    /// The account's private key, an encrypted PKCS#8 PEM.
    pub key_pem: String,
    /// When it was stored, unix milliseconds by the database's clock.
    pub created_at: i64,
}

/// The ACME client's shared state.
#[async_trait]
pub trait AcmeClientStore: Send + Sync {
    /// Stores `answer` until `ttl` from now, replacing one of the same kind and name;
    /// sweeps answers that ran out.
    async fn put_answer(&self, answer: &ChallengeAnswer, ttl: Duration) -> Result<()>;

    /// The answer of this kind and name that has not run out, if any.
    async fn answer(&self, kind: AnswerKind, name: &str) -> Result<Option<ChallengeAnswer>>;

    /// Removes `answer`, if it is still the one stored (a later order's answer for the
    /// same name stays).
    async fn remove_answer(&self, answer: &ChallengeAnswer) -> Result<()>;

    /// The account of table `name` at `directory`, if one is stored.
    async fn client_account(&self, directory: &str, name: &str) -> Result<Option<ClientAccount>>;

    /// Stores `account` unless one is stored for its directory and name already; the
    /// stored one either way (compare its `account_url` to tell whether this one won).
    async fn keep_client_account(&self, account: &ClientAccount) -> Result<ClientAccount>;
}

fn millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
}

fn kind_from(text: &str) -> Result<AnswerKind> {
    match text {
        "http-01" => Ok(AnswerKind::Http01),
        "tls-alpn-01" => Ok(AnswerKind::TlsAlpn01),
        other => Err(StoreError::Corrupt(format!("acme_client_answers.kind {other:?}"))),
    }
}

/// The columns of an ACME client account, as [`SqlStore::client_account_from_row`] reads them.
pub(crate) const SELECT_CLIENT_ACCOUNT: &str =
    "SELECT directory, name, account_url, key_pem, created_at FROM acme_client_accounts";

for_every_backend! {
    impl SqlStore {
        pub(crate) fn client_account_from_row(row: &DB::Row) -> Result<ClientAccount> {
            Ok(ClientAccount {
                directory: row.try_get("directory")?,
                name: row.try_get("name")?,
                account_url: row.try_get("account_url")?,
                key_pem: row.try_get("key_pem")?,
                created_at: row.try_get("created_at")?,
            })
        }

        /// Writes a stored account as it is, its time included (a restore).
        pub(crate) async fn insert_client_account(
            connection: &mut DB::Connection,
            account: &ClientAccount,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO acme_client_accounts (directory, name, account_url, key_pem, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&account.directory)
            .bind(&account.name)
            .bind(&account.account_url)
            .bind(&account.key_pem)
            .bind(account.created_at)
            .execute(&mut *connection)
            .await?;
            Ok(())
        }
    }
}

for_every_backend! {
    #[async_trait]
    impl AcmeClientStore for SqlStore {
        async fn put_answer(&self, answer: &ChallengeAnswer, ttl: Duration) -> Result<()> {
            let now = DB::NOW_MILLIS;
            let mut tx = self.write_transaction().await?;
            let sweep = format!("DELETE FROM acme_client_answers WHERE expires_at <= {now}");
            sqlx::query(sqlx::AssertSqlSafe(sweep)).execute(&mut *tx).await?;
            let sql = format!(
                "INSERT INTO acme_client_answers (kind, name, identifier, value, expires_at) \
                 VALUES ($1, $2, $3, $4, {now} + $5) \
                 ON CONFLICT (kind, name) DO UPDATE SET identifier = excluded.identifier, \
                     value = excluded.value, expires_at = excluded.expires_at"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(answer.kind.as_str())
                .bind(&answer.name)
                .bind(&answer.identifier)
                .bind(&answer.value)
                .bind(millis(ttl))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        }

        async fn answer(&self, kind: AnswerKind, name: &str) -> Result<Option<ChallengeAnswer>> {
            let sql = format!(
                "SELECT kind, name, identifier, value FROM acme_client_answers \
                 WHERE kind = $1 AND name = $2 AND expires_at > {}",
                DB::NOW_MILLIS
            );
            let row: Option<(String, String, String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(kind.as_str())
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
            row.map(|(kind, name, identifier, value)| Ok(ChallengeAnswer { kind: kind_from(&kind)?, name, identifier, value }))
                .transpose()
        }

        async fn remove_answer(&self, answer: &ChallengeAnswer) -> Result<()> {
            sqlx::query("DELETE FROM acme_client_answers WHERE kind = $1 AND name = $2 AND value = $3")
                .bind(answer.kind.as_str())
                .bind(&answer.name)
                .bind(&answer.value)
                .execute(&self.pool)
                .await?;
            Ok(())
        }

        async fn client_account(&self, directory: &str, name: &str) -> Result<Option<ClientAccount>> {
            let sql = format!("{SELECT_CLIENT_ACCOUNT} WHERE directory = $1 AND name = $2");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(directory)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
            row.as_ref().map(Self::client_account_from_row).transpose()
        }

        async fn keep_client_account(&self, account: &ClientAccount) -> Result<ClientAccount> {
            // Two instances inserting at once on PostgreSQL: the primary key's index
            // makes the second wait for the first to commit, then do nothing.
            let sql = format!(
                "INSERT INTO acme_client_accounts (directory, name, account_url, key_pem, created_at) \
                 VALUES ($1, $2, $3, $4, {}) ON CONFLICT (directory, name) DO NOTHING",
                DB::NOW_MILLIS
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&account.directory)
                .bind(&account.name)
                .bind(&account.account_url)
                .bind(&account.key_pem)
                .execute(&self.pool)
                .await?;
            self.durable().await?;
            self.client_account(&account.directory, &account.name).await?.ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "the ACME account of {} at {} was stored and is gone",
                    account.name, account.directory
                ))
            })
        }
    }
}
