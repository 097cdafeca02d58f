//! [`AcmeStore`] on either SQL backend: the ACME tables of the schema's third migration.
//!
//! Every decision two instances could race on is one statement on one row: a
//! nonce is taken by deleting it, orders and challenges move by compare-and-set
//! (`UPDATE ... WHERE status = from`), an account's key is unique by constraint.

use async_trait::async_trait;
use sqlx::Row;

use crate::acme::{AcmeAccount, AcmeAuthorization, AcmeChallenge, AcmeEabKey, AcmeIdentifier, AcmeOrder, AcmeStore};
use crate::backend::{Nonces, for_every_backend, now_unix};
use crate::{Result, StoreError};

fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column} column: {e}")))
}

pub(crate) const SELECT_EAB: &str =
    "SELECT kid, label, hmac_key, created_at, revoked_at, account_id FROM acme_eab_keys";
pub(crate) const SELECT_ACCOUNT: &str =
    "SELECT id, thumbprint, jwk, contact, status, eab_kid, created_at FROM acme_accounts";
pub(crate) const SELECT_ORDER: &str = "SELECT id, account_id, status, identifiers, authorizations, not_before, not_after, \
     profile, replaces, expires, error, certificate_serial, created_at FROM acme_orders";
pub(crate) const SELECT_AUTHORIZATION: &str = "SELECT id, account_id, identifier_type, identifier_value, wildcard, status, \
     expires FROM acme_authorizations";
const SELECT_CHALLENGE: &str = "SELECT id, kind, token, status, validated_at, error FROM acme_challenges";

for_every_backend! {
    impl SqlStore {
        pub(crate) fn account_from_row(row: &DB::Row) -> Result<AcmeAccount> {
            Ok(AcmeAccount {
                id: row.try_get("id")?,
                thumbprint: row.try_get("thumbprint")?,
                jwk: row.try_get("jwk")?,
                contact: from_json("contact", &row.try_get::<String, _>("contact")?)?,
                status: row.try_get("status")?,
                eab_kid: row.try_get("eab_kid")?,
                created_at: row.try_get("created_at")?,
            })
        }

        pub(crate) fn order_from_row(row: &DB::Row) -> Result<AcmeOrder> {
            Ok(AcmeOrder {
                id: row.try_get("id")?,
                account_id: row.try_get("account_id")?,
                status: row.try_get("status")?,
                identifiers: from_json("identifiers", &row.try_get::<String, _>("identifiers")?)?,
                authorizations: from_json("authorizations", &row.try_get::<String, _>("authorizations")?)?,
                not_before: row.try_get("not_before")?,
                not_after: row.try_get("not_after")?,
                profile: row.try_get("profile")?,
                replaces: row.try_get("replaces")?,
                expires: row.try_get("expires")?,
                error: row.try_get("error")?,
                certificate_serial: row.try_get("certificate_serial")?,
                created_at: row.try_get("created_at")?,
            })
        }

        pub(crate) fn challenge_from_row(row: &DB::Row) -> Result<AcmeChallenge> {
            Ok(AcmeChallenge {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                token: row.try_get("token")?,
                status: row.try_get("status")?,
                validated_at: row.try_get("validated_at")?,
                error: row.try_get("error")?,
            })
        }

        pub(crate) fn eab_from_row(row: &DB::Row) -> Result<AcmeEabKey> {
            Ok(AcmeEabKey {
                kid: row.try_get("kid")?,
                label: row.try_get("label")?,
                hmac_key: row.try_get("hmac_key")?,
                created_at: row.try_get("created_at")?,
                revoked_at: row.try_get("revoked_at")?,
                account_id: row.try_get("account_id")?,
            })
        }

        /// An authorization row completed with its challenges.
        async fn authorization_from_row(&self, row: &DB::Row) -> Result<AcmeAuthorization> {
            let id: String = row.try_get("id")?;
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "{SELECT_CHALLENGE} WHERE authorization_id = $1 ORDER BY position"
            )))
            .bind(&id)
            .fetch_all(&self.pool)
            .await?;
            let challenges = rows.iter().map(Self::challenge_from_row).collect::<Result<_>>()?;
            Self::authorization_with(row, challenges)
        }

        /// An authorization row with the challenges read for it.
        pub(crate) fn authorization_with(row: &DB::Row, challenges: Vec<AcmeChallenge>) -> Result<AcmeAuthorization> {
            Ok(AcmeAuthorization {
                id: row.try_get("id")?,
                account_id: row.try_get("account_id")?,
                identifier: AcmeIdentifier {
                    kind: row.try_get("identifier_type")?,
                    value: row.try_get("identifier_value")?,
                },
                wildcard: row.try_get("wildcard")?,
                status: row.try_get("status")?,
                expires: row.try_get("expires")?,
                challenges,
            })
        }

        /// Inserts an account; `false` when an account already has its key.
        pub(crate) async fn insert_account(connection: &mut DB::Connection, account: &AcmeAccount) -> Result<bool> {
            let inserted = sqlx::query(
                "INSERT INTO acme_accounts (id, thumbprint, jwk, contact, status, eab_kid, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&account.id)
            .bind(&account.thumbprint)
            .bind(&account.jwk)
            .bind(json(&account.contact)?)
            .bind(&account.status)
            .bind(&account.eab_kid)
            .bind(account.created_at)
            .execute(&mut *connection)
            .await;
            match inserted {
                Ok(_) => Ok(true),
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(false),
                Err(e) => Err(e.into()),
            }
        }

        /// Inserts an authorization with its challenges.
        pub(crate) async fn insert_authorization(
            connection: &mut DB::Connection,
            authorization: &AcmeAuthorization,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO acme_authorizations (id, account_id, identifier_type, identifier_value, wildcard, \
                 status, expires) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&authorization.id)
            .bind(&authorization.account_id)
            .bind(&authorization.identifier.kind)
            .bind(&authorization.identifier.value)
            .bind(authorization.wildcard)
            .bind(&authorization.status)
            .bind(authorization.expires)
            .execute(&mut *connection)
            .await?;
            for (position, challenge) in authorization.challenges.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO acme_challenges (id, authorization_id, position, kind, token, status, \
                     validated_at, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&challenge.id)
                .bind(&authorization.id)
                .bind(position as i64)
                .bind(&challenge.kind)
                .bind(&challenge.token)
                .bind(&challenge.status)
                .bind(challenge.validated_at)
                .bind(&challenge.error)
                .execute(&mut *connection)
                .await?;
            }
            Ok(())
        }

        /// Inserts an order (its authorizations are inserted on their own).
        pub(crate) async fn insert_order(connection: &mut DB::Connection, order: &AcmeOrder) -> Result<()> {
            sqlx::query(
                "INSERT INTO acme_orders (id, account_id, status, identifiers, authorizations, not_before, not_after, \
                 profile, replaces, expires, error, certificate_serial, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(&order.id)
            .bind(&order.account_id)
            .bind(&order.status)
            .bind(json(&order.identifiers)?)
            .bind(json(&order.authorizations)?)
            .bind(order.not_before)
            .bind(order.not_after)
            .bind(&order.profile)
            .bind(&order.replaces)
            .bind(order.expires)
            .bind(&order.error)
            .bind(&order.certificate_serial)
            .bind(order.created_at)
            .execute(&mut *connection)
            .await?;
            Ok(())
        }

        /// Inserts an external account binding key.
        pub(crate) async fn insert_eab(connection: &mut DB::Connection, key: &AcmeEabKey) -> Result<()> {
            sqlx::query(
                "INSERT INTO acme_eab_keys (kid, label, hmac_key, created_at, revoked_at, account_id) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&key.kid)
            .bind(&key.label)
            .bind(&key.hmac_key)
            .bind(key.created_at)
            .bind(key.revoked_at)
            .bind(&key.account_id)
            .execute(&mut *connection)
            .await?;
            Ok(())
        }
    }
}

for_every_backend! {
#[async_trait]
impl AcmeStore for SqlStore {
    async fn nonce_insert(&self, nonce: &str, expires: i64) -> Result<()> {
        match &self.nonces {
            Nonces::Memory(book) => book.insert(nonce, expires),
            Nonces::Pool(pool) => {
                sqlx::query("INSERT INTO acme_nonces (nonce, expires) VALUES ($1, $2)")
                    .bind(nonce)
                    .bind(expires)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    async fn nonce_take(&self, nonce: &str, now: i64) -> Result<bool> {
        match &self.nonces {
            Nonces::Memory(book) => Ok(book.take(nonce, now)),
            Nonces::Pool(pool) => {
                let taken = sqlx::query("DELETE FROM acme_nonces WHERE nonce = $1 AND expires >= $2")
                    .bind(nonce)
                    .bind(now)
                    .execute(pool)
                    .await?;
                Ok(DB::rows_affected(&taken) == 1)
            }
        }
    }

    async fn nonce_sweep(&self, now: i64) -> Result<u64> {
        match &self.nonces {
            Nonces::Memory(book) => Ok(book.sweep(now)),
            Nonces::Pool(pool) => {
                let swept =
                    sqlx::query("DELETE FROM acme_nonces WHERE expires < $1").bind(now).execute(pool).await?;
                Ok(DB::rows_affected(&swept))
            }
        }
    }

    async fn account_insert(&self, account: &AcmeAccount) -> Result<bool> {
        let inserted = Self::insert_account(&mut *self.pool.acquire().await?, account).await?;
        self.durable().await?;
        Ok(inserted)
    }

    async fn account(&self, id: &str) -> Result<Option<AcmeAccount>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_ACCOUNT} WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::account_from_row).transpose()
    }

    async fn account_by_thumbprint(&self, thumbprint: &str) -> Result<Option<AcmeAccount>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_ACCOUNT} WHERE thumbprint = $1")))
            .bind(thumbprint)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::account_from_row).transpose()
    }

    async fn account_update(&self, id: &str, contact: &[String], status: &str) -> Result<()> {
        sqlx::query("UPDATE acme_accounts SET contact = $1, status = $2 WHERE id = $3")
            .bind(json(&contact)?)
            .bind(status)
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.durable().await?;
        Ok(())
    }

    async fn account_key_change(&self, id: &str, thumbprint: &str, jwk: &str) -> Result<bool> {
        let changed = sqlx::query("UPDATE acme_accounts SET thumbprint = $1, jwk = $2 WHERE id = $3")
            .bind(thumbprint)
            .bind(jwk)
            .bind(id)
            .execute(&self.pool)
            .await;
        match changed {
            Ok(_) => self.durable().await.map(|()| true),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn order_insert(&self, order: &AcmeOrder, new_authorizations: &[AcmeAuthorization]) -> Result<()> {
        let mut tx = self.write_transaction().await?;
        for authorization in new_authorizations {
            Self::insert_authorization(&mut tx, authorization).await?;
        }
        Self::insert_order(&mut tx, order).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn order(&self, id: &str) -> Result<Option<AcmeOrder>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_ORDER} WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::order_from_row).transpose()
    }

    async fn orders_of(&self, account_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT id FROM acme_orders WHERE account_id = $1 ORDER BY created_at, rowid")
            .bind(account_id)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn order_transition(
        &self,
        id: &str,
        from: &str,
        status: &str,
        error: Option<&str>,
        certificate_serial: Option<&str>,
    ) -> Result<bool> {
        let moved = sqlx::query(
            "UPDATE acme_orders SET status = $1, error = COALESCE($2, error), \
             certificate_serial = COALESCE($3, certificate_serial) WHERE id = $4 AND status = $5",
        )
        .bind(status)
        .bind(error)
        .bind(certificate_serial)
        .bind(id)
        .bind(from)
        .execute(&self.pool)
        .await?;
        self.durable().await?;
        Ok(DB::rows_affected(&moved) == 1)
    }

    async fn order_by_certificate(&self, serial: &str) -> Result<Option<AcmeOrder>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_ORDER} WHERE certificate_serial = $1")))
            .bind(serial)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::order_from_row).transpose()
    }

    async fn authorization(&self, id: &str) -> Result<Option<AcmeAuthorization>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_AUTHORIZATION} WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(Some(self.authorization_from_row(&row).await?)),
            None => Ok(None),
        }
    }

    async fn authorization_reusable(
        &self,
        account_id: &str,
        identifier: &AcmeIdentifier,
        wildcard: bool,
        now: i64,
    ) -> Result<Option<AcmeAuthorization>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT_AUTHORIZATION} WHERE account_id = $1 AND identifier_type = $2 AND identifier_value = $3 \
             AND wildcard = $4 AND status = 'valid' AND expires > $5 ORDER BY expires DESC LIMIT 1"
        )))
        .bind(account_id)
        .bind(&identifier.kind)
        .bind(&identifier.value)
        .bind(wildcard)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some(self.authorization_from_row(&row).await?)),
            None => Ok(None),
        }
    }

    async fn authorization_status(&self, id: &str, status: &str, expires: Option<i64>) -> Result<()> {
        sqlx::query("UPDATE acme_authorizations SET status = $1, expires = COALESCE($2, expires) WHERE id = $3")
            .bind(status)
            .bind(expires)
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.durable().await?;
        Ok(())
    }

    async fn challenge(&self, id: &str) -> Result<Option<(AcmeAuthorization, AcmeChallenge)>> {
        let authorization_id: Option<String> =
            sqlx::query_scalar("SELECT authorization_id FROM acme_challenges WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        let Some(authorization_id) = authorization_id else {
            return Ok(None);
        };
        let Some(authorization) = self.authorization(&authorization_id).await? else {
            return Ok(None);
        };
        let challenge = authorization.challenges.iter().find(|c| c.id == id).cloned();
        Ok(challenge.map(|c| (authorization, c)))
    }

    async fn orders_since(&self, account_id: &str, since: i64) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM acme_orders WHERE account_id = $1 AND created_at >= $2")
            .bind(account_id)
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    async fn failed_validations_since(&self, account_id: &str, since: i64) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM acme_challenges c JOIN acme_authorizations a ON a.id = c.authorization_id \
             WHERE a.account_id = $1 AND c.failed_at >= $2",
        )
        .bind(account_id)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(n.max(0) as u64)
    }

    async fn eab_insert(&self, key: &AcmeEabKey) -> Result<()> {
        Self::insert_eab(&mut *self.pool.acquire().await?, key).await?;
        self.durable().await
    }

    async fn eab_keys(&self) -> Result<Vec<AcmeEabKey>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_EAB} ORDER BY created_at, rowid")))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::eab_from_row).collect()
    }

    async fn eab_key(&self, kid: &str) -> Result<Option<AcmeEabKey>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_EAB} WHERE kid = $1")))
            .bind(kid)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::eab_from_row).transpose()
    }

    async fn eab_revoke(&self, kid: &str, at: i64) -> Result<bool> {
        let done = sqlx::query("UPDATE acme_eab_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE kid = $2")
            .bind(at)
            .bind(kid)
            .execute(&self.pool)
            .await?;
        self.durable().await?;
        Ok(DB::rows_affected(&done) == 1)
    }

    async fn eab_bind(&self, kid: &str, account_id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE acme_eab_keys SET account_id = $1 WHERE kid = $2 AND account_id IS NULL AND revoked_at IS NULL",
        )
        .bind(account_id)
        .bind(kid)
        .execute(&self.pool)
        .await?;
        self.durable().await?;
        Ok(DB::rows_affected(&done) == 1)
    }

    async fn challenge_transition(
        &self,
        id: &str,
        from: &str,
        status: &str,
        validated_at: Option<i64>,
        error: Option<&str>,
    ) -> Result<bool> {
        let failed_at = (status == "invalid").then(now_unix);
        let moved = sqlx::query(
            "UPDATE acme_challenges SET status = $1, validated_at = COALESCE($2, validated_at), \
             failed_at = COALESCE($3, failed_at), error = COALESCE($4, error) WHERE id = $5 AND status = $6",
        )
        .bind(status)
        .bind(validated_at)
        .bind(failed_at)
        .bind(error)
        .bind(id)
        .bind(from)
        .execute(&self.pool)
        .await?;
        self.durable().await?;
        Ok(DB::rows_affected(&moved) == 1)
    }
}
}
