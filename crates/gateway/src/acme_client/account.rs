//! The ACME account of an `[[acme]]` table: restored, or registered once.
//!
//! One process keeps it in `DATA_DIR/acme/TABLE/account.json` (mode 0600). The
//! gateways of one shared database use one account per table and directory: it
//! is stored there, its key encrypted with the CA passphrase (PKCS#8, PBES2, as
//! site keys are), and looked for there first. The first instance to store one
//! keeps it (insert-if-absent); an instance that registered at the same time
//! and lost takes the stored one and deactivates its own at the CA. An account
//! the data dir already held (an instance that ran before it shared) is offered
//! to the database before a new one is registered. The data dir keeps a copy,
//! used while the database cannot be read.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use instant_acme::{Account, AccountCredentials, NewAccount};
use rustls::pki_types::PrivatePkcs8KeyDer;
use serde::{Deserialize, Serialize};
use store::{AcmeClientStore, ClientAccount};

use super::order::{builder, eab_key};
use super::shared::SharedSites;
use super::{AcmeConfig, AcmeError, problem_detail};

/// The account file: the directory it is registered at, and instant-acme's credentials.
#[derive(Serialize, Deserialize)]
struct AccountFile {
    directory: String,
    credentials: AccountCredentials,
}

/// The account of `table`: from the shared database when there is one, else from
/// `dir/account.json` when it was registered at the same directory, else registered.
pub(super) async fn account(
    table: &AcmeConfig,
    base_dir: &Path,
    dir: &Path,
    shared: Option<&SharedSites>,
) -> Result<Account, AcmeError> {
    let cached = read_cached(table, dir)?;
    let Some(shared) = shared else {
        if let Some(credentials) = cached {
            return restore(table, base_dir, credentials).await;
        }
        let (account, credentials) = register(table, base_dir).await?;
        write_cached(table, dir, credentials)?;
        return Ok(account);
    };
    match shared.store().client_account(&table.directory, &table.name).await {
        Ok(Some(stored)) => {
            let credentials = from_stored(&stored, shared)?;
            restore_and_cache(table, base_dir, dir, credentials).await
        }
        Ok(None) => share(table, base_dir, dir, shared, cached).await,
        Err(e) => match cached {
            Some(credentials) => {
                tracing::warn!(acme = %table.name, error = %e, "cannot read the shared ACME account; using the data dir's copy");
                restore(table, base_dir, credentials).await
            }
            None => Err(AcmeError::Local(format!(
                "cannot read the shared ACME account of {} from the database ({e}); it is not registered anew \
                 while the database may hold one; the order is tried again later",
                table.name
            ))),
        },
    }
}

/// Stores this instance's account (the data dir's, or one registered now) unless
/// another instance stored one first; the stored one.
async fn share(
    table: &AcmeConfig,
    base_dir: &Path,
    dir: &Path,
    shared: &SharedSites,
    cached: Option<AccountCredentials>,
) -> Result<Account, AcmeError> {
    let (account, credentials, registered) = match cached {
        Some(credentials) => (restore(table, base_dir, clone(&credentials)?).await?, credentials, false),
        None => {
            let (account, credentials) = register(table, base_dir).await?;
            // Kept before it is shared: if the database write fails, the next try offers
            // this account instead of registering yet another.
            write_cached(table, dir, clone(&credentials)?)?;
            (account, credentials, true)
        }
    };
    let ours = to_stored(table, &credentials, shared)?;
    let kept = shared.store().keep_client_account(&ours).await.map_err(|e| {
        AcmeError::Local(format!("cannot store the ACME account of {} in the shared database: {e}", table.name))
    })?;
    if kept.account_url == ours.account_url {
        tracing::info!(acme = %table.name, account = %kept.account_url, "ACME account shared through the database");
        return Ok(account);
    }
    tracing::info!(
        acme = %table.name, account = %kept.account_url, ours = %ours.account_url,
        "another instance shared its ACME account first; using that one"
    );
    if registered {
        // Ours was never used for anything; leave no stray account at the CA.
        if let Err(e) = account.deactivate().await {
            tracing::warn!(acme = %table.name, account = %ours.account_url, error = %problem_detail(&e), "cannot deactivate the unused ACME account");
        }
    }
    restore_and_cache(table, base_dir, dir, from_stored(&kept, shared)?).await
}

/// Registers a new account at the table's directory.
async fn register(table: &AcmeConfig, base_dir: &Path) -> Result<(Account, AccountCredentials), AcmeError> {
    let contact: Vec<String> =
        table.contact.iter().map(|c| if c.contains(':') { c.clone() } else { format!("mailto:{c}") }).collect();
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let eab = eab_key(table, base_dir)?;
    let new = NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false };
    let (account, credentials) = builder(table, base_dir)?
        .create(&new, table.directory.clone(), eab.as_ref())
        .await
        .map_err(|e| failed(table, problem_detail(&e)))?;
    tracing::info!(acme = %table.name, directory = %table.directory, account = %account.id(), "ACME account registered");
    Ok((account, credentials))
}

async fn restore(table: &AcmeConfig, base_dir: &Path, credentials: AccountCredentials) -> Result<Account, AcmeError> {
    builder(table, base_dir)?.from_credentials(credentials).await.map_err(|e| failed(table, problem_detail(&e)))
}

/// Restores `credentials` and keeps them in the data dir as the copy for when the
/// database cannot be read.
async fn restore_and_cache(
    table: &AcmeConfig,
    base_dir: &Path,
    dir: &Path,
    credentials: AccountCredentials,
) -> Result<Account, AcmeError> {
    let account = restore(table, base_dir, clone(&credentials)?).await?;
    if let Err(e) = write_cached(table, dir, credentials) {
        tracing::warn!(acme = %table.name, error = %e, "cannot keep a copy of the shared ACME account in the data dir");
    }
    Ok(account)
}

fn failed(table: &AcmeConfig, detail: String) -> AcmeError {
    AcmeError::Account { directory: table.directory.clone(), detail }
}

/// The data dir's account, if it was registered at the table's directory.
fn read_cached(table: &AcmeConfig, dir: &Path) -> Result<Option<AccountCredentials>, AcmeError> {
    let path = dir.join("account.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
    match serde_json::from_str::<AccountFile>(&text) {
        Ok(file) if file.directory == table.directory => Ok(Some(file.credentials)),
        Ok(_) => {
            tracing::info!(acme = %table.name, "the directory changed; registering a new account");
            Ok(None)
        }
        Err(e) => Err(AcmeError::Local(format!(
            "{} is damaged ({e}); move it away to register a new account",
            path.display()
        ))),
    }
}

/// Writes the account file, mode 0600.
fn write_cached(table: &AcmeConfig, dir: &Path, credentials: AccountCredentials) -> Result<(), AcmeError> {
    let file = AccountFile { directory: table.directory.clone(), credentials };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| AcmeError::Local(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| AcmeError::Local(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join("account.json");
    pki::files::write_atomic(&path, &json, pki::files::PRIVATE, true).map_err(|e| AcmeError::Local(e.to_string()))
}

/// instant-acme's credentials are opaque but serializable: `id` (the account URL),
/// `key_pkcs8` (base64url DER) and `directory`.
#[derive(Serialize, Deserialize)]
struct CredentialFields {
    id: String,
    key_pkcs8: String,
    directory: Option<String>,
}

fn clone(credentials: &AccountCredentials) -> Result<AccountCredentials, AcmeError> {
    let value = serde_json::to_value(credentials).map_err(|e| AcmeError::Local(e.to_string()))?;
    serde_json::from_value(value).map_err(|e| AcmeError::Local(e.to_string()))
}

/// The account as the database keeps it: its URL, and its key encrypted.
fn to_stored(
    table: &AcmeConfig,
    credentials: &AccountCredentials,
    shared: &SharedSites,
) -> Result<ClientAccount, AcmeError> {
    let value = serde_json::to_value(credentials).map_err(|e| AcmeError::Local(e.to_string()))?;
    let fields: CredentialFields = serde_json::from_value(value)
        .map_err(|e| AcmeError::Local(format!("the ACME account credentials have an unknown shape: {e}")))?;
    let key = rcgen::KeyPair::try_from(credentials.private_key())
        .map_err(|e| AcmeError::Local(format!("the ACME account key of {}: {e}", table.name)))?;
    let key_pem =
        pki::encode_private_key(&key, Some(shared.passphrase())).map_err(|e| AcmeError::Local(e.to_string()))?;
    Ok(ClientAccount {
        directory: table.directory.clone(),
        name: table.name.clone(),
        account_url: fields.id,
        key_pem: key_pem.to_string(),
        created_at: 0,
    })
}

/// The credentials of a stored account, its key decrypted.
fn from_stored(stored: &ClientAccount, shared: &SharedSites) -> Result<AccountCredentials, AcmeError> {
    let what = format!("the shared ACME account of {}", stored.name);
    let key = pki::decode_private_key(Path::new(&what), &stored.key_pem, Some(shared.passphrase()))
        .map_err(|e| AcmeError::Local(e.to_string()))?;
    let der = PrivatePkcs8KeyDer::from(key.serialize_der());
    let fields = CredentialFields {
        id: stored.account_url.clone(),
        key_pkcs8: URL_SAFE_NO_PAD.encode(der.secret_pkcs8_der()),
        directory: Some(stored.directory.clone()),
    };
    let value = serde_json::to_value(fields).map_err(|e| AcmeError::Local(e.to_string()))?;
    serde_json::from_value(value).map_err(|e| AcmeError::Local(format!("{what}: {e}")))
}
