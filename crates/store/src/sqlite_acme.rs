//! [`AcmeStore`] on SQLite: the ACME tables of the schema's third migration.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::acme::{AcmeAccount, AcmeAuthorization, AcmeChallenge, AcmeEabKey, AcmeIdentifier, AcmeOrder, AcmeStore};
use crate::sqlite::SqliteStore;
use crate::{Result, StoreError};

fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column} column: {e}")))
}

fn account_from_row(row: &SqliteRow) -> Result<AcmeAccount> {
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

fn order_from_row(row: &SqliteRow) -> Result<AcmeOrder> {
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

fn challenge_from_row(row: &SqliteRow) -> Result<AcmeChallenge> {
    Ok(AcmeChallenge {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        token: row.try_get("token")?,
        status: row.try_get("status")?,
        validated_at: row.try_get("validated_at")?,
        error: row.try_get("error")?,
    })
}

fn eab_from_row(row: &SqliteRow) -> Result<AcmeEabKey> {
    Ok(AcmeEabKey {
        kid: row.try_get("kid")?,
        label: row.try_get("label")?,
        hmac_key: row.try_get("hmac_key")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        account_id: row.try_get("account_id")?,
    })
}

fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

const SELECT_EAB: &str = "SELECT kid, label, hmac_key, created_at, revoked_at, account_id FROM acme_eab_keys";
const SELECT_ACCOUNT: &str = "SELECT id, thumbprint, jwk, contact, status, eab_kid, created_at FROM acme_accounts";
const SELECT_ORDER: &str = "SELECT id, account_id, status, identifiers, authorizations, not_before, not_after, \
     profile, replaces, expires, error, certificate_serial, created_at FROM acme_orders";
const SELECT_AUTHORIZATION: &str = "SELECT id, account_id, identifier_type, identifier_value, wildcard, status, \
     expires FROM acme_authorizations";
const SELECT_CHALLENGE: &str = "SELECT id, kind, token, status, validated_at, error FROM acme_challenges";

impl SqliteStore {
    /// An authorization row completed with its challenges.
    async fn authorization_from_row(&self, row: &SqliteRow) -> Result<AcmeAuthorization> {
        let id: String = row.try_get("id")?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT_CHALLENGE} WHERE authorization_id = ? ORDER BY position"
        )))
        .bind(&id)
        .fetch_all(&self.pool)
        .await?;
        Ok(AcmeAuthorization {
            id,
            account_id: row.try_get("account_id")?,
            identifier: AcmeIdentifier {
                kind: row.try_get("identifier_type")?,
                value: row.try_get("identifier_value")?,
            },
            wildcard: row.try_get("wildcard")?,
            status: row.try_get("status")?,
            expires: row.try_get("expires")?,
            challenges: rows.iter().map(challenge_from_row).collect::<Result<_>>()?,
        })
    }
}

#[async_trait]
impl AcmeStore for SqliteStore {
    async fn nonce_insert(&self, nonce: &str, expires: i64) -> Result<()> {
        sqlx::query("INSERT INTO acme_nonces (nonce, expires) VALUES (?, ?)")
            .bind(nonce)
            .bind(expires)
            .execute(&self.nonces)
            .await?;
        Ok(())
    }

    async fn nonce_take(&self, nonce: &str, now: i64) -> Result<bool> {
        let taken = sqlx::query("DELETE FROM acme_nonces WHERE nonce = ? AND expires >= ?")
            .bind(nonce)
            .bind(now)
            .execute(&self.nonces)
            .await?;
        Ok(taken.rows_affected() == 1)
    }

    async fn nonce_sweep(&self, now: i64) -> Result<u64> {
        let swept = sqlx::query("DELETE FROM acme_nonces WHERE expires < ?").bind(now).execute(&self.nonces).await?;
        Ok(swept.rows_affected())
    }

    async fn account_insert(&self, account: &AcmeAccount) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO acme_accounts (id, thumbprint, jwk, contact, status, eab_kid, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&account.id)
        .bind(&account.thumbprint)
        .bind(&account.jwk)
        .bind(json(&account.contact)?)
        .bind(&account.status)
        .bind(&account.eab_kid)
        .bind(account.created_at)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn account(&self, id: &str) -> Result<Option<AcmeAccount>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_ACCOUNT} WHERE id = ?")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn account_by_thumbprint(&self, thumbprint: &str) -> Result<Option<AcmeAccount>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_ACCOUNT} WHERE thumbprint = ?")))
            .bind(thumbprint)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn account_update(&self, id: &str, contact: &[String], status: &str) -> Result<()> {
        sqlx::query("UPDATE acme_accounts SET contact = ?, status = ? WHERE id = ?")
            .bind(json(&contact)?)
            .bind(status)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn account_key_change(&self, id: &str, thumbprint: &str, jwk: &str) -> Result<bool> {
        let changed = sqlx::query("UPDATE acme_accounts SET thumbprint = ?, jwk = ? WHERE id = ?")
            .bind(thumbprint)
            .bind(jwk)
            .bind(id)
            .execute(&self.pool)
            .await;
        match changed {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn order_insert(&self, order: &AcmeOrder, new_authorizations: &[AcmeAuthorization]) -> Result<()> {
        let mut tx = self.write_transaction().await?;
        for authorization in new_authorizations {
            sqlx::query(
                "INSERT INTO acme_authorizations (id, account_id, identifier_type, identifier_value, wildcard, \
                 status, expires) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&authorization.id)
            .bind(&authorization.account_id)
            .bind(&authorization.identifier.kind)
            .bind(&authorization.identifier.value)
            .bind(authorization.wildcard)
            .bind(&authorization.status)
            .bind(authorization.expires)
            .execute(&mut *tx)
            .await?;
            for (position, challenge) in authorization.challenges.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO acme_challenges (id, authorization_id, position, kind, token, status, \
                     validated_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&challenge.id)
                .bind(&authorization.id)
                .bind(position as i64)
                .bind(&challenge.kind)
                .bind(&challenge.token)
                .bind(&challenge.status)
                .bind(challenge.validated_at)
                .bind(&challenge.error)
                .execute(&mut *tx)
                .await?;
            }
        }
        sqlx::query(
            "INSERT INTO acme_orders (id, account_id, status, identifiers, authorizations, not_before, not_after, \
             profile, replaces, expires, error, certificate_serial, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn order(&self, id: &str) -> Result<Option<AcmeOrder>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_ORDER} WHERE id = ?")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(order_from_row).transpose()
    }

    async fn orders_of(&self, account_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT id FROM acme_orders WHERE account_id = ? ORDER BY created_at, rowid")
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
            "UPDATE acme_orders SET status = ?, error = COALESCE(?, error), \
             certificate_serial = COALESCE(?, certificate_serial) WHERE id = ? AND status = ?",
        )
        .bind(status)
        .bind(error)
        .bind(certificate_serial)
        .bind(id)
        .bind(from)
        .execute(&self.pool)
        .await?;
        Ok(moved.rows_affected() == 1)
    }

    async fn order_by_certificate(&self, serial: &str) -> Result<Option<AcmeOrder>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_ORDER} WHERE certificate_serial = ?")))
            .bind(serial)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(order_from_row).transpose()
    }

    async fn authorization(&self, id: &str) -> Result<Option<AcmeAuthorization>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_AUTHORIZATION} WHERE id = ?")))
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
            "{SELECT_AUTHORIZATION} WHERE account_id = ? AND identifier_type = ? AND identifier_value = ? \
             AND wildcard = ? AND status = 'valid' AND expires > ? ORDER BY expires DESC LIMIT 1"
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
        sqlx::query("UPDATE acme_authorizations SET status = ?, expires = COALESCE(?, expires) WHERE id = ?")
            .bind(status)
            .bind(expires)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn challenge(&self, id: &str) -> Result<Option<(AcmeAuthorization, AcmeChallenge)>> {
        let authorization_id: Option<String> =
            sqlx::query_scalar("SELECT authorization_id FROM acme_challenges WHERE id = ?")
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
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM acme_orders WHERE account_id = ? AND created_at >= ?")
            .bind(account_id)
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    async fn failed_validations_since(&self, account_id: &str, since: i64) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM acme_challenges c JOIN acme_authorizations a ON a.id = c.authorization_id \
             WHERE a.account_id = ? AND c.failed_at >= ?",
        )
        .bind(account_id)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(n.max(0) as u64)
    }

    async fn eab_insert(&self, key: &AcmeEabKey) -> Result<()> {
        sqlx::query(
            "INSERT INTO acme_eab_keys (kid, label, hmac_key, created_at, revoked_at, account_id) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.kid)
        .bind(&key.label)
        .bind(&key.hmac_key)
        .bind(key.created_at)
        .bind(key.revoked_at)
        .bind(&key.account_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn eab_keys(&self) -> Result<Vec<AcmeEabKey>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_EAB} ORDER BY created_at, rowid")))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(eab_from_row).collect()
    }

    async fn eab_key(&self, kid: &str) -> Result<Option<AcmeEabKey>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_EAB} WHERE kid = ?")))
            .bind(kid)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(eab_from_row).transpose()
    }

    async fn eab_revoke(&self, kid: &str, at: i64) -> Result<bool> {
        let done = sqlx::query("UPDATE acme_eab_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE kid = ?")
            .bind(at)
            .bind(kid)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn eab_bind(&self, kid: &str, account_id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE acme_eab_keys SET account_id = ? WHERE kid = ? AND account_id IS NULL AND revoked_at IS NULL",
        )
        .bind(account_id)
        .bind(kid)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
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
            "UPDATE acme_challenges SET status = ?, validated_at = COALESCE(?, validated_at), \
             failed_at = COALESCE(?, failed_at), error = COALESCE(?, error) WHERE id = ? AND status = ?",
        )
        .bind(status)
        .bind(validated_at)
        .bind(failed_at)
        .bind(error)
        .bind(id)
        .bind(from)
        .execute(&self.pool)
        .await?;
        Ok(moved.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        (dir, store)
    }

    fn account(id: &str, thumbprint: &str) -> AcmeAccount {
        AcmeAccount {
            id: id.into(),
            thumbprint: thumbprint.into(),
            jwk: "{}".into(),
            contact: vec!["mailto:a@example.test".into()],
            status: "valid".into(),
            eab_kid: None,
            created_at: 1,
        }
    }

    #[tokio::test]
    async fn a_nonce_is_taken_once_and_not_after_it_expires() {
        let (_dir, store) = open().await;
        store.nonce_insert("n1", 100).await.unwrap();
        store.nonce_insert("n2", 100).await.unwrap();
        assert!(store.nonce_take("n1", 50).await.unwrap());
        assert!(!store.nonce_take("n1", 50).await.unwrap(), "a nonce was used twice");
        assert!(!store.nonce_take("n2", 101).await.unwrap(), "an expired nonce was taken");
        assert!(!store.nonce_take("never", 50).await.unwrap());
        store.nonce_insert("n3", 100).await.unwrap();
        assert_eq!(store.nonce_sweep(101).await.unwrap(), 2, "the expired n2 and n3 are swept");
    }

    #[tokio::test]
    async fn accounts_are_unique_by_key() {
        let (_dir, store) = open().await;
        assert!(store.account_insert(&account("a1", "t1")).await.unwrap());
        assert!(!store.account_insert(&account("a2", "t1")).await.unwrap(), "two accounts with one key");
        assert_eq!(store.account_by_thumbprint("t1").await.unwrap().unwrap().id, "a1");
        assert!(store.account_insert(&account("a3", "t3")).await.unwrap());
        assert!(!store.account_key_change("a3", "t1", "{}").await.unwrap(), "a key taken from another account");
        assert!(store.account_key_change("a3", "t4", "{\"k\":1}").await.unwrap());
        assert_eq!(store.account("a3").await.unwrap().unwrap().thumbprint, "t4");
        store.account_update("a3", &[], "deactivated").await.unwrap();
        let a3 = store.account("a3").await.unwrap().unwrap();
        assert_eq!((a3.status.as_str(), a3.contact.len()), ("deactivated", 0));
    }

    #[tokio::test]
    async fn orders_authorizations_and_challenges_move_once() {
        let (_dir, store) = open().await;
        store.account_insert(&account("a1", "t1")).await.unwrap();
        let identifier = AcmeIdentifier { kind: "dns".into(), value: "x.example.test".into() };
        let challenge = |id: &str, kind: &str| AcmeChallenge {
            id: id.into(),
            kind: kind.into(),
            token: format!("token-{id}"),
            status: "pending".into(),
            validated_at: None,
            error: None,
        };
        let authorization = AcmeAuthorization {
            id: "z1".into(),
            account_id: "a1".into(),
            identifier: identifier.clone(),
            wildcard: false,
            status: "pending".into(),
            expires: 1000,
            challenges: vec![challenge("c1", "http-01"), challenge("c2", "dns-01")],
        };
        let order = AcmeOrder {
            id: "o1".into(),
            account_id: "a1".into(),
            status: "pending".into(),
            identifiers: vec![identifier.clone()],
            authorizations: vec!["z1".into()],
            not_before: None,
            not_after: None,
            profile: None,
            replaces: None,
            expires: 1000,
            error: None,
            certificate_serial: None,
            created_at: 5,
        };
        store.order_insert(&order, std::slice::from_ref(&authorization)).await.unwrap();
        assert_eq!(store.order("o1").await.unwrap().unwrap(), order);
        assert_eq!(store.authorization("z1").await.unwrap().unwrap(), authorization);
        assert_eq!(store.orders_of("a1").await.unwrap(), ["o1"]);

        let (found, c2) = store.challenge("c2").await.unwrap().unwrap();
        assert_eq!((found.id.as_str(), c2.kind.as_str()), ("z1", "dns-01"));
        assert!(store.challenge_transition("c1", "pending", "processing", None, None).await.unwrap());
        assert!(!store.challenge_transition("c1", "pending", "processing", None, None).await.unwrap());
        assert!(store.challenge_transition("c1", "processing", "valid", Some(7), None).await.unwrap());
        assert!(store.authorization_reusable("a1", &identifier, false, 10).await.unwrap().is_none());
        store.authorization_status("z1", "valid", None).await.unwrap();
        let reused = store.authorization_reusable("a1", &identifier, false, 10).await.unwrap().unwrap();
        assert_eq!(reused.challenges[0].validated_at, Some(7));
        assert!(store.authorization_reusable("a1", &identifier, true, 10).await.unwrap().is_none());
        assert!(store.authorization_reusable("a1", &identifier, false, 1000).await.unwrap().is_none());

        assert!(store.order_transition("o1", "pending", "ready", None, None).await.unwrap());
        assert!(!store.order_transition("o1", "pending", "ready", None, None).await.unwrap());
        assert!(store.order_transition("o1", "ready", "valid", None, Some("AB")).await.unwrap());
        assert_eq!(store.order_by_certificate("AB").await.unwrap().unwrap().status, "valid");
    }
}
