//! The ACME server's state (RFC 8555): nonces, accounts, orders,
//! authorizations and challenges. Everything an order needs to finish is
//! here, none of it in one process's memory, so any instance on a shared
//! database can answer the same client later.

use async_trait::async_trait;

use crate::Result;

/// An ACME account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeAccount {
    /// Opaque id, the last segment of the account URL.
    pub id: String,
    /// RFC 7638 thumbprint of the account key: unique.
    pub thumbprint: String,
    /// The account key, JWK JSON.
    pub jwk: String,
    /// `mailto:` URLs.
    pub contact: Vec<String>,
    /// `valid`, `deactivated` or `revoked`.
    pub status: String,
    /// The key id of the external account binding it was created with.
    pub eab_kid: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// An identifier of an order or authorization: type (`dns`, `ip`) and value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AcmeIdentifier {
    /// `dns` or `ip`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The name or address.
    pub value: String,
}

/// An ACME order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeOrder {
    /// Opaque id.
    pub id: String,
    /// The account that placed it.
    pub account_id: String,
    /// `pending`, `ready`, `processing`, `valid` or `invalid`.
    pub status: String,
    /// What the certificate will name.
    pub identifiers: Vec<AcmeIdentifier>,
    /// Ids of its authorizations, one per identifier, in order.
    pub authorizations: Vec<String>,
    /// Requested notBefore / notAfter, unix seconds.
    pub not_before: Option<i64>,
    /// See `not_before`.
    pub not_after: Option<i64>,
    /// The ACME profile asked for.
    pub profile: Option<String>,
    /// The certificate it replaces (RFC 9773 `replaces`: an ARI certificate id).
    pub replaces: Option<String>,
    /// Unix seconds after which it is abandoned.
    pub expires: i64,
    /// A problem document (JSON) once invalid.
    pub error: Option<String>,
    /// Serial of the issued certificate once valid.
    pub certificate_serial: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// An ACME authorization with its challenges.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeAuthorization {
    /// Opaque id.
    pub id: String,
    /// The account it belongs to.
    pub account_id: String,
    /// What it proves control of (for a wildcard order, the base name).
    pub identifier: AcmeIdentifier,
    /// Whether it was made for a wildcard identifier.
    pub wildcard: bool,
    /// `pending`, `valid`, `invalid`, `deactivated`, `expired` or `revoked`.
    pub status: String,
    /// Unix seconds.
    pub expires: i64,
    /// Its challenges.
    pub challenges: Vec<AcmeChallenge>,
}

/// One way to prove an authorization.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeChallenge {
    /// Opaque id.
    pub id: String,
    /// `http-01`, `dns-01` or `tls-alpn-01`.
    pub kind: String,
    /// The token (base64url, 128 bits or more).
    pub token: String,
    /// `pending`, `processing`, `valid` or `invalid`.
    pub status: String,
    /// Unix seconds, once valid.
    pub validated_at: Option<i64>,
    /// A problem document (JSON) once invalid.
    pub error: Option<String>,
}

/// The ACME server's share of the database.
#[async_trait]
pub trait AcmeStore: Send + Sync {
    /// Keeps a nonce until `expires` (unix seconds).
    async fn nonce_insert(&self, nonce: &str, expires: i64) -> Result<()>;
    /// Uses a nonce up: `true` once, if it was issued and has not expired at `now`.
    async fn nonce_take(&self, nonce: &str, now: i64) -> Result<bool>;
    /// Forgets the nonces expired at `now`; returns how many.
    async fn nonce_sweep(&self, now: i64) -> Result<u64>;

    /// Records a new account; `false` when an account already has its key.
    async fn account_insert(&self, account: &AcmeAccount) -> Result<bool>;
    /// The account with this id.
    async fn account(&self, id: &str) -> Result<Option<AcmeAccount>>;
    /// The account whose key has this thumbprint.
    async fn account_by_thumbprint(&self, thumbprint: &str) -> Result<Option<AcmeAccount>>;
    /// Sets an account's contacts and status.
    async fn account_update(&self, id: &str, contact: &[String], status: &str) -> Result<()>;
    /// Replaces an account's key; `false` when another account has the new key.
    async fn account_key_change(&self, id: &str, thumbprint: &str, jwk: &str) -> Result<bool>;

    /// Records an order with the authorizations it made, in one transaction.
    async fn order_insert(&self, order: &AcmeOrder, new_authorizations: &[AcmeAuthorization]) -> Result<()>;
    /// The order with this id.
    async fn order(&self, id: &str) -> Result<Option<AcmeOrder>>;
    /// Ids of an account's orders, oldest first.
    async fn orders_of(&self, account_id: &str) -> Result<Vec<String>>;
    /// Moves an order from `from` to `status` (with an error or a certificate); `false`
    /// when it was not in `from` any more (another request moved it first).
    async fn order_transition(
        &self,
        id: &str,
        from: &str,
        status: &str,
        error: Option<&str>,
        certificate_serial: Option<&str>,
    ) -> Result<bool>;
    /// The order that produced the certificate with this serial.
    async fn order_by_certificate(&self, serial: &str) -> Result<Option<AcmeOrder>>;

    /// The authorization with this id, with its challenges.
    async fn authorization(&self, id: &str) -> Result<Option<AcmeAuthorization>>;
    /// A valid, unexpired authorization of this account for this identifier, to reuse.
    async fn authorization_reusable(
        &self,
        account_id: &str,
        identifier: &AcmeIdentifier,
        wildcard: bool,
        now: i64,
    ) -> Result<Option<AcmeAuthorization>>;
    /// Sets an authorization's status, and its expiry when given.
    async fn authorization_status(&self, id: &str, status: &str, expires: Option<i64>) -> Result<()>;
    /// The authorization and challenge of a challenge id.
    async fn challenge(&self, id: &str) -> Result<Option<(AcmeAuthorization, AcmeChallenge)>>;
    /// Orders an account placed at or after `since` (unix seconds).
    async fn orders_since(&self, account_id: &str, since: i64) -> Result<u64>;
    /// Challenges of an account that failed at or after `since`.
    async fn failed_validations_since(&self, account_id: &str, since: i64) -> Result<u64>;

    /// Records an external account binding key.
    async fn eab_insert(&self, key: &AcmeEabKey) -> Result<()>;
    /// Every external account binding key, oldest first.
    async fn eab_keys(&self) -> Result<Vec<AcmeEabKey>>;
    /// The external account binding key with this kid.
    async fn eab_key(&self, kid: &str) -> Result<Option<AcmeEabKey>>;
    /// Revokes an external account binding key; `false` when none has this kid.
    async fn eab_revoke(&self, kid: &str, at: i64) -> Result<bool>;
    /// Binds a key to the account it created; `false` when it is bound already or revoked.
    async fn eab_bind(&self, kid: &str, account_id: &str) -> Result<bool>;

    /// Moves a challenge from `from` to `status` (`invalid` records when, for rate limits);
    /// `false` when it was not in `from`.
    async fn challenge_transition(
        &self,
        id: &str,
        from: &str,
        status: &str,
        validated_at: Option<i64>,
        error: Option<&str>,
    ) -> Result<bool>;
}

/// A key for external account binding (RFC 8555 7.3.4), made by `gatehouse ca acme eab new`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeEabKey {
    /// The key id the client sends.
    pub kid: String,
    /// What it is for, as the operator named it.
    pub label: String,
    /// The HMAC key.
    #[serde(with = "crate::snapshot::base64_bytes")]
    pub hmac_key: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, once revoked.
    pub revoked_at: Option<i64>,
    /// The account it created, once used (a key binds one account).
    pub account_id: Option<String>,
}
