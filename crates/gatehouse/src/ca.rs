//! `gatehouse ca ...`: the certificate authority commands.

use std::path::Path;
use std::process::ExitCode;

use pki::{
    CaDir, CaInit, CertificateAuthority, CertificateStatus, CheckedCsr, KeyType, LeafRequest, Passphrase, Pkcs12Format,
    RevocationReason, Serial, Subject, SubjectAltName,
};
use serde_json::json;
use store::{CertificateRecord, Database, ListFilter, StorageUrl, Store};

use crate::Failure;
use crate::bundle::{self, BundlePaths, P12Request};
use crate::cli::{AcmeCommand, CaCommand, Global, StatusArg};

pub async fn run(global: &Global, command: CaCommand) -> Result<ExitCode, Failure> {
    let dir = CaDir::new(&global.data_dir);
    match command {
        CaCommand::Init { name, key_type, days, crl_url, key_store, root_key_store } => {
            let init_params = CaInit { name, key_type: parse_key_type(&key_type)?, days };
            init(global, &dir, init_params, crl_url, (key_store, root_key_store)).await
        }
        CaCommand::Root => {
            if global.storage.is_some() {
                open_store(global, &dir).await?;
            }
            print!("{}", dir.root_pem()?);
            Ok(ExitCode::SUCCESS)
        }
        CaCommand::Issue { profile, cn, sans, days, key_type, out, p12, p12_password_file, force } => {
            let request = LeafRequest {
                profile: profile.into(),
                subject: Subject::common_name(&cn),
                sans: sans.iter().map(|s| SubjectAltName::parse(s)).collect::<pki::Result<_>>()?,
                days,
            };
            let p12 = p12.p12.then_some(if p12.legacy { Pkcs12Format::Legacy } else { Pkcs12Format::Modern });
            issue(global, &dir, &request, &cn, &key_type, &out, p12, p12_password_file.as_deref(), force).await
        }
        CaCommand::Sign { csr, profile, days, out } => {
            sign(global, &dir, &csr, profile.into(), days, out.as_deref()).await
        }
        CaCommand::Revoke { serial, reason } => {
            let serial: Serial = serial.parse()?;
            let reason: RevocationReason = reason.parse()?;
            let store = open_store(global, &dir).await?;
            pki::revoke(&store, &serial, reason).await?;
            println!("revoked {serial} ({reason})");
            Ok(ExitCode::SUCCESS)
        }
        CaCommand::Unrevoke { serial } => {
            let serial: Serial = serial.parse()?;
            let store = open_store(global, &dir).await?;
            pki::release_hold(&store, &serial).await?;
            println!("released {serial}: valid again, and off the next CRL (run `gatehouse ca crl`)");
            Ok(ExitCode::SUCCESS)
        }
        CaCommand::Crl { out, der, next_update_hours } => {
            crl(global, &dir, out.as_deref(), der, next_update_hours).await
        }
        CaCommand::List { status, json } => list(&open_store(global, &dir).await?, status, json).await,
        CaCommand::Show { serial, json } => show(&open_store(global, &dir).await?, &serial, json).await,
        CaCommand::Acme { command: AcmeCommand::Eab { command } } => {
            crate::acme_keys::eab(&open_store(global, &dir).await?, command).await
        }
        CaCommand::Batch { csv, out, p12, p12_password_file, profile, days, key_type } => {
            let format = p12.p12.then_some(if p12.legacy { Pkcs12Format::Legacy } else { Pkcs12Format::Modern });
            let p12 = match format {
                Some(format) => Some(crate::batch::P12Options {
                    format,
                    password: p12_password_file.as_deref().map(read_password).transpose()?,
                }),
                None => None,
            };
            let ca = open_ca(global, &dir).await?;
            crate::batch::run(&ca, &csv, &out, p12, profile.into(), days, parse_key_type(&key_type)?).await
        }
    }
}

fn parse_key_type(text: &str) -> Result<KeyType, Failure> {
    text.parse::<KeyType>().map_err(|e| Failure::usage(e.to_string()))
}

/// The CA passphrase: from --ca-passphrase-file, else GATEHOUSE_CA_PASSPHRASE, else none.
pub(crate) fn passphrase(global: &Global) -> Result<Option<Passphrase>, Failure> {
    if let Some(path) = &global.ca_passphrase_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::failed(format!("cannot read the passphrase file {}: {e}", path.display())))?;
        return Ok(Some(Passphrase::new(text)));
    }
    match std::env::var("GATEHOUSE_CA_PASSPHRASE") {
        Ok(text) if !text.is_empty() => Ok(Some(Passphrase::new(text))),
        _ => Ok(None),
    }
}

/// The CA's database at the selected storage, once the data dir holds the CA: its
/// own, or on a shared storage the one kept there (see [`crate::shared_ca`]).
async fn open_store(global: &Global, dir: &CaDir) -> Result<Database, Failure> {
    let url = crate::storage::selected(global, &global.data_dir)?;
    if let StorageUrl::Sqlite(_) = url
        && !dir.exists()
    {
        return Err(pki::Error::NotInitialized(global.data_dir.clone()).into());
    }
    let db = crate::storage::open(&url).await?;
    crate::shared_ca::take(dir, &db, &url).await?;
    Ok(db)
}

pub(crate) async fn open_ca(global: &Global, dir: &CaDir) -> Result<CertificateAuthority<Database>, Failure> {
    let store = open_store(global, dir).await?;
    let issuer = dir.issuer(passphrase(global)?.as_ref())?;
    Ok(CertificateAuthority::new(issuer, store))
}

async fn init(
    global: &Global,
    dir: &CaDir,
    init: CaInit,
    crl_url: Option<String>,
    (key_store, root_key_store): (Option<String>, Option<String>),
) -> Result<ExitCode, Failure> {
    let key_type = init.key_type;
    let passphrase = passphrase(global)?;
    // A PostgreSQL storage is reached before the CA is made, so a wrong URL leaves no CA
    // behind; a SQLite file goes in the data dir, which making the CA creates.
    let url = crate::storage::selected(global, &global.data_dir)?;
    if let StorageUrl::Postgres(_) = url {
        let db = crate::storage::open(&url).await?;
        let both_in_tokens = key_store.is_some() && root_key_store.is_some();
        crate::shared_ca::check_init(&db, &url, passphrase.is_some() || both_in_tokens).await?;
    }
    match &key_store {
        None => {
            dir.init(&init, crl_url.as_deref(), passphrase.as_ref())?;
        }
        Some(uri) => {
            if dir.exists() {
                return Err(pki::Error::AlreadyInitialized(global.data_dir.join("ca")).into());
            }
            if root_key_store.as_deref() == Some(uri.as_str()) {
                return Err(Failure::usage(
                    "--root-key-store names the same key as --key-store; give it another object",
                ));
            }
            let key = keyserver::ca_key::generate(uri, Path::new("/"), key_type)
                .map_err(|why| Failure::usage(format!("--key-store: {why}")))?;
            let root = match &root_key_store {
                Some(root_uri) => Some((
                    root_uri.as_str(),
                    keyserver::ca_key::generate(root_uri, Path::new("/"), key_type)
                        .map_err(|why| Failure::usage(format!("--root-key-store: {why}")))?,
                )),
                None => None,
            };
            dir.init_with_token_key(&init, crl_url.as_deref(), passphrase.as_ref(), (uri, key), root)?;
        }
    }
    let db = crate::storage::open(&url).await?;
    crate::shared_ca::share_new(dir, &db, &url).await?;
    println!("created an {key_type} root and issuing CA in {}", global.data_dir.display());
    println!("database:                 {url}");
    println!("root certificate:         {}", dir.root_path().display());
    println!("intermediate certificate: {}", dir.intermediate_path().display());
    println!("settings and policy:      {}", dir.settings_path().display());
    match (&key_store, &root_key_store) {
        (Some(uri), None) => println!("the intermediate's key is in the token ({uri}); the root key is in ca/root.key"),
        (Some(uri), Some(root)) => {
            println!("the intermediate's key is in the token ({uri}); the root's is in ({root})")
        }
        _ => {}
    }
    if passphrase.is_some() {
        println!("the CA keys in files are encrypted with the passphrase you gave");
    }
    if let StorageUrl::Postgres(_) = url {
        println!(
            "the CA is kept in the database too: another instance needs only --storage, the passphrase and an empty --data-dir"
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
async fn issue(
    global: &Global,
    dir: &CaDir,
    request: &LeafRequest,
    cn: &str,
    key_type: &str,
    out: &Path,
    p12: Option<Pkcs12Format>,
    p12_password_file: Option<&Path>,
    force: bool,
) -> Result<ExitCode, Failure> {
    let key_type = parse_key_type(key_type)?;
    let stem = bundle::file_stem(cn).map_err(Failure::usage)?;
    let paths = BundlePaths::new(out, stem);
    if let Some(existing) = paths.existing(p12.is_some()).filter(|_| !force) {
        return Err(Failure::failed(format!(
            "{} already exists; pass --force to replace it or choose another --out",
            existing.display()
        )));
    }
    let password = match (p12, p12_password_file) {
        (Some(_), Some(file)) => Some((read_password(file)?, false)),
        (Some(_), None) => Some((pki::generate_password(), true)),
        _ => None,
    };
    let ca = open_ca(global, dir).await?;
    // Every check of the request before anything is created: a refused name leaves no --out.
    ca.issuer().check_request(request)?;
    bundle::check_writable(out)?;
    let (issued, key) = ca.issuer().issue_with_new_key(request, key_type)?;
    let p12_bytes = match (p12, &password) {
        (Some(format), Some((password, _))) => {
            Some(bundle::pkcs12(ca.issuer(), cn, &issued, &key, &P12Request { password, format })?)
        }
        _ => None,
    };
    // Recorded before any file exists, delivered once all of them do: an
    // interrupted run leaves a record that says it was never delivered.
    ca.record_undelivered(&[&issued]).await?;
    let serial = issued.serial.to_string();
    if let Err(e) = bundle::write(&paths, ca.issuer(), &issued, &key, p12_bytes.as_deref(), true) {
        let undone = match ca.supersede(&serial).await {
            Ok(()) => "it is revoked as superseded and counts as never issued".to_owned(),
            Err(revoke) => {
                format!("revoking it failed too ({revoke}): run `gatehouse ca revoke {serial} --reason superseded`")
            }
        };
        return Err(Failure::failed(format!("{e}; certificate {serial} was not delivered, so {undone}")));
    }
    ca.delivered(std::slice::from_ref(&serial)).await?;
    println!("serial: {}", issued.serial);
    println!("certificate: {}", paths.crt.display());
    println!("private key: {}", paths.key.display());
    println!("full chain:  {}", paths.fullchain.display());
    if p12_bytes.is_some() {
        println!("PKCS#12:     {}", paths.p12.display());
    }
    if let Some((password, true)) = password {
        println!("p12 password: {password}");
        println!("(shown once; it is not stored anywhere)");
    }
    Ok(ExitCode::SUCCESS)
}

fn read_password(path: &Path) -> Result<String, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::failed(format!("cannot read the password file {}: {e}", path.display())))?;
    let line = text.lines().next().unwrap_or_default().to_owned();
    if line.is_empty() {
        return Err(Failure::failed(format!(
            "the password file {} is empty; put the password on its first line",
            path.display()
        )));
    }
    Ok(line)
}

async fn sign(
    global: &Global,
    dir: &CaDir,
    csr_path: &Path,
    profile: pki::Profile,
    days: Option<u32>,
    out: Option<&Path>,
) -> Result<ExitCode, Failure> {
    let input = std::fs::read(csr_path)
        .map_err(|e| Failure::failed(format!("cannot read the CSR {}: {e}", csr_path.display())))?;
    let csr = CheckedCsr::parse(&input)?;
    let ca = open_ca(global, dir).await?;
    let request = csr.to_request(profile, ca.issuer().settings().policy(profile), days);
    let issued = ca.sign(&request, &csr).await?;
    let pem = pki::pem_cert(&issued.der);
    match out {
        Some(path) => {
            pki::files::write_atomic(path, pem.as_bytes(), pki::files::PUBLIC, true)?;
            println!("serial: {}", issued.serial);
            println!("certificate: {}", path.display());
        }
        None => print!("{pem}"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn crl(
    global: &Global,
    dir: &CaDir,
    out: Option<&Path>,
    der: bool,
    hours: Option<u32>,
) -> Result<ExitCode, Failure> {
    let ca = open_ca(global, dir).await?;
    let crl = ca.crl(hours).await?;
    let bytes = if der { crl.der } else { pki::pem_crl(&crl.der).into_bytes() };
    match out {
        Some(path) => {
            pki::files::write_atomic(path, &bytes, pki::files::PUBLIC, true)?;
            eprintln!(
                "CRL number {} with {} written to {}",
                crl.number,
                crate::count(crl.entries, "revoked certificate", "revoked certificates"),
                path.display()
            );
        }
        None => {
            use std::io::Write;
            match std::io::stdout().write_all(&bytes) {
                Ok(()) => {}
                // The reader went away (`| head`): end quietly, as print! does.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(crate::CLOSED_STDOUT),
                Err(e) => return Err(Failure::failed(format!("cannot write the CRL: {e}"))),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn record_json(record: &CertificateRecord, now: i64) -> serde_json::Value {
    let c = &record.certificate;
    json!({
        "serial": c.serial,
        "status": CertificateStatus::of(record, now).name(),
        "profile": c.profile,
        "subject": c.subject,
        "common_name": c.common_name,
        "sans": c.sans,
        "not_before": pki::rfc3339(c.not_before),
        "not_after": pki::rfc3339(c.not_after),
        "issued_at": pki::rfc3339(record.issued_at),
        "revoked_at": record.revocation.map(|r| pki::rfc3339(r.revoked_at)),
        "revocation_reason": record.revocation.map(|r| RevocationReason::from_code(r.reason).name()),
        "source": c.source,
    })
}

async fn list(store: &Database, status: Option<StatusArg>, json: bool) -> Result<ExitCode, Failure> {
    let now = now();
    let filter = match status {
        None => ListFilter::All,
        Some(StatusArg::Valid) => CertificateStatus::Valid.filter(now),
        Some(StatusArg::Revoked) => CertificateStatus::Revoked.filter(now),
        Some(StatusArg::Expired) => CertificateStatus::Expired.filter(now),
        Some(StatusArg::Undelivered) => CertificateStatus::Undelivered.filter(now),
    };
    let records = store.certificates(filter).await?;
    if json {
        let all: Vec<_> = records.iter().map(|r| record_json(r, now)).collect();
        println!("{}", serde_json::Value::Array(all));
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<32}  {:<7}  {:<20}  {:<6}  SUBJECT / SANS", "SERIAL", "STATUS", "NOT AFTER", "PROFILE");
    for r in &records {
        let c = &r.certificate;
        println!(
            "{:<32}  {:<7}  {:<20}  {:<6}  {} [{}]",
            c.serial,
            CertificateStatus::of(r, now).name(),
            pki::rfc3339(c.not_after),
            c.profile,
            c.subject,
            c.sans.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(store: &Database, serial: &str, json: bool) -> Result<ExitCode, Failure> {
    let serial: Serial = serial.parse()?;
    let record =
        store.certificate(&serial.to_string()).await?.ok_or_else(|| pki::Error::UnknownSerial(serial.to_string()))?;
    let now = now();
    let pem = pki::pem_cert(&record.certificate.der);
    if json {
        let mut value = record_json(&record, now);
        value["pem"] = json!(pem);
        println!("{value}");
        return Ok(ExitCode::SUCCESS);
    }
    let value = record_json(&record, now);
    for key in [
        "serial",
        "status",
        "profile",
        "subject",
        "sans",
        "not_before",
        "not_after",
        "issued_at",
        "revoked_at",
        "revocation_reason",
    ] {
        let v = &value[key];
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "-".into(),
            serde_json::Value::Array(items) => items.iter().filter_map(|i| i.as_str()).collect::<Vec<_>>().join(", "),
            other => other.to_string(),
        };
        println!("{key:<18} {text}");
    }
    print!("{pem}");
    Ok(ExitCode::SUCCESS)
}
