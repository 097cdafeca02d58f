//! Which database a command uses (`--storage`, `GATEHOUSE_STORAGE`, a serve
//! config's `storage`, else the data dir's SQLite file), and `gatehouse store ...`:
//! bringing its schema up to date, copying it to another backend, and backing it up
//! to a file sealed with a passphrase (`store::seal_backup`) and restoring that.
//!
//! The database holds the CA's files only where `ca init` or a later command put them
//! there (a PostgreSQL storage, see `shared_ca`); otherwise they stay in the data dir.

use std::path::Path;
use std::process::ExitCode;

use pki::CaDir;
use store::{BackupError, Database, Snapshot, StorageUrl, StoreError};

use crate::Failure;
use crate::cli::{Global, StoreCommand};

/// Where `store backup` and `store restore` take the passphrase from.
const BACKUP_PASSPHRASE_ENV: &str = "GATEHOUSE_BACKUP_PASSPHRASE";

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
        StoreCommand::Backup { file, force } => backup(&selected(global, &global.data_dir)?, &file, force).await,
        StoreCommand::Restore { file } => restore(&selected(global, &global.data_dir)?, &file).await,
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
    let snapshot = export(from, &format!("--from {from}"), "copy").await?;
    let target = Database::open_url(to).await?;
    target.import(&snapshot).await.map_err(|e| match e {
        StoreError::NotEmpty(_) => Failure::failed(format!("--to {to}: {e}")),
        e => Failure::from(e),
    })?;
    println!("copied {from} to {to}:");
    print_counts(&snapshot);
    Ok(ExitCode::SUCCESS)
}

/// Everything in the database at `url` but nonces, refusing a SQLite file that is not
/// there (opening would make an empty one); `named` and `verb` say so in that message.
async fn export(url: &StorageUrl, named: &str, verb: &str) -> Result<Snapshot, Failure> {
    if let StorageUrl::Sqlite(path) = url
        && !path.is_file()
    {
        return Err(Failure::failed(format!(
            "{named}: there is no such file; give the database to {verb} (by default DATA_DIR/gatehouse.db)"
        )));
    }
    Ok(Database::open_url(url).await?.export().await?)
}

async fn backup(url: &StorageUrl, file: &Path, force: bool) -> Result<ExitCode, Failure> {
    let passphrase = backup_passphrase()?;
    if !force && file.exists() {
        return Err(Failure::failed(format!("{} exists; give another file, or --force to replace it", file.display())));
    }
    let snapshot = export(url, &url.to_string(), "back up with --storage").await?;
    let sealed = store::seal_backup(&snapshot, &passphrase).map_err(|e| match e {
        BackupError::ShortPassphrase(_) => Failure::usage(format!("{BACKUP_PASSPHRASE_ENV}: {e}")),
        e => Failure::failed(e.to_string()),
    })?;
    pki::files::write_atomic(file, &sealed, pki::files::PRIVATE, true)?;
    println!("backed up {url} to {} ({} bytes, encrypted):", file.display(), sealed.len());
    print_counts(&snapshot);
    Ok(ExitCode::SUCCESS)
}

async fn restore(url: &StorageUrl, file: &Path) -> Result<ExitCode, Failure> {
    let passphrase = backup_passphrase()?;
    let sealed = std::fs::read(file).map_err(|e| Failure::failed(format!("cannot read {}: {e}", file.display())))?;
    // Opened before the target is touched: a wrong passphrase leaves no empty database behind.
    let snapshot =
        store::open_backup(&sealed, &passphrase).map_err(|e| Failure::failed(format!("{}: {e}", file.display())))?;
    let target = Database::open_url(url).await?;
    target.import(&snapshot).await.map_err(|e| match e {
        StoreError::NotEmpty(held) => Failure::failed(format!(
            "{url} already holds {held}; restore only into an empty database (a new SQLite file, or a PostgreSQL \
             database just made with createdb): gatehouse does not merge two CAs' records"
        )),
        e => Failure::from(e),
    })?;
    println!("restored {} into {url}:", file.display());
    print_counts(&snapshot);
    Ok(ExitCode::SUCCESS)
}

/// The backup passphrase from the environment; never prompted for, so a backup runs
/// the same from cron as from a shell.
fn backup_passphrase() -> Result<String, Failure> {
    match std::env::var(BACKUP_PASSPHRASE_ENV) {
        Ok(text) if !text.is_empty() => Ok(text),
        Ok(_) | Err(std::env::VarError::NotPresent) => Err(Failure::usage(format!(
            "set {BACKUP_PASSPHRASE_ENV} to the passphrase that encrypts the backup (at least {} characters)",
            store::MIN_PASSPHRASE_CHARS
        ))),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(Failure::usage(format!("{BACKUP_PASSPHRASE_ENV} is not valid UTF-8; use a UTF-8 passphrase")))
        }
    }
}

/// [`counts`], indented under the line that says what was done.
fn print_counts(snapshot: &Snapshot) {
    for line in counts(snapshot) {
        println!("  {line}");
    }
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
        match snapshot.ca_files.len() {
            0 => "no CA files (the CA is in the data dir only)".to_owned(),
            n => format!("the CA: {} (certificates, settings, keys encrypted)", count(n, "file", "files")),
        },
        match snapshot.site_certificates.len() {
            0 => "no site certificates".to_owned(),
            n => format!("{} (keys encrypted)", count(n, "site certificate", "site certificates")),
        },
        match snapshot.acme_client_accounts.len() {
            0 => "no ACME client accounts".to_owned(),
            n => format!("{} (keys encrypted)", count(n, "ACME client account", "ACME client accounts")),
        },
    ]
}
