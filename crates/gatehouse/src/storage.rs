//! Which database a command uses (`--storage`, `GATEHOUSE_STORAGE`, a serve
//! config's `storage`, else the data dir's SQLite file), and `gatehouse store ...`:
//! bringing its schema up to date and copying it to another backend.
//!
//! Only the database moves: the CA's certificates and keys stay in the data dir.

use std::path::Path;
use std::process::ExitCode;

use pki::CaDir;
use store::{Database, Snapshot, StorageUrl, StoreError};

use crate::Failure;
use crate::cli::{Global, StoreCommand};

/// The storage the command line selects for the data dir `data_dir`: `--storage` or
/// `GATEHOUSE_STORAGE` when given, else `sqlite://DATA_DIR/gatehouse.db`.
pub fn selected(global: &Global, data_dir: &Path) -> Result<StorageUrl, Failure> {
    match &global.storage {
        Some(url) => parse(url, global.storage_flag),
        None => Ok(StorageUrl::Sqlite(CaDir::new(data_dir).database())),
    }
}

/// The storage of `gatehouse serve`: the config's `storage` key, else [`selected`].
pub fn for_config(global: &Global, config: &gateway::Config, data_dir: &Path) -> Result<StorageUrl, Failure> {
    match &config.storage {
        Some(url) => parse(url.get_ref(), "the config's storage"),
        None => selected(global, data_dir),
    }
}

/// `url`, or a usage error naming where it came from (`flag`).
fn parse(url: &str, flag: &str) -> Result<StorageUrl, Failure> {
    StorageUrl::parse(url).map_err(|e| Failure::usage(format!("{flag}: {e}")))
}

/// Opens (and migrates) the database at `url`.
pub async fn open(url: &StorageUrl) -> Result<Database, Failure> {
    Ok(Database::open_url(url).await?)
}

/// `gatehouse store ...`.
pub async fn run(global: &Global, command: StoreCommand) -> Result<ExitCode, Failure> {
    match command {
        StoreCommand::Migrate => migrate(&selected(global, &global.data_dir)?).await,
        StoreCommand::Copy { from, to } => copy(&parse(&from, "--from")?, &parse(&to, "--to")?).await,
    }
}

async fn migrate(url: &StorageUrl) -> Result<ExitCode, Failure> {
    let (_, versions) = Database::open_migrating(url).await?;
    if versions.before == versions.after {
        println!("{url}: schema version {} is this gatehouse's; nothing to do", versions.after);
    } else {
        println!("{url}: schema migrated from version {} to version {}", versions.before, versions.after);
    }
    Ok(ExitCode::SUCCESS)
}

async fn copy(from: &StorageUrl, to: &StorageUrl) -> Result<ExitCode, Failure> {
    if from == to {
        return Err(Failure::usage(format!("--from and --to both name {from}; give another database to copy into")));
    }
    if let StorageUrl::Sqlite(path) = from
        && !path.is_file()
    {
        return Err(Failure::failed(format!(
            "--from {from}: there is no such file; give the database to copy (by default DATA_DIR/gatehouse.db)"
        )));
    }
    let source = Database::open_url(from).await?;
    let snapshot = source.export().await?;
    let target = Database::open_url(to).await?;
    target.import(&snapshot).await.map_err(|e| match e {
        StoreError::NotEmpty(_) => Failure::failed(format!("--to {to}: {e}")),
        e => Failure::from(e),
    })?;
    println!("copied {from} to {to}:");
    for line in counts(&snapshot) {
        println!("  {line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// What a snapshot holds, a line per kind of record.
fn counts(snapshot: &Snapshot) -> Vec<String> {
    let count = crate::count;
    let certificates = &snapshot.certificates;
    let revoked = certificates.iter().filter(|c| c.revocation.is_some()).count();
    let undelivered = certificates.iter().filter(|c| !c.delivered).count();
    let challenges: usize = snapshot.acme_authorizations.iter().map(|a| a.challenges.len()).sum();
    vec![
        format!(
            "{} ({revoked} revoked, {undelivered} never delivered)",
            count(certificates.len(), "certificate", "certificates")
        ),
        count(snapshot.crl_numbers.len(), "CRL number", "CRL numbers"),
        [
            count(snapshot.acme_accounts.len(), "ACME account", "ACME accounts"),
            count(snapshot.acme_orders.len(), "order", "orders"),
            count(snapshot.acme_authorizations.len(), "authorization", "authorizations"),
            count(challenges, "challenge", "challenges"),
        ]
        .join(", "),
        count(snapshot.acme_eab_keys.len(), "EAB key", "EAB keys"),
    ]
}
