//! `gatehouse agent --config FILE [--once]`: certificates for machines that are
//! not behind the gateway (the Consul seed's nodes), obtained and renewed
//! through the same `[[acme]]` tables and renewal rules as the gateway's sites,
//! written where the service reads them, then its reload command run.
//!
//! The file:
//! ```toml
//! http_01_listen = "0.0.0.0:80"        # where http-01 is answered during an order
//! tls_alpn_01_listen = "0.0.0.0:443"   # where tls-alpn-01 is
//! [[acme]]                             # as in the gateway's configuration
//! name = "internal"
//! directory = "https://ca.internal:9000/acme/directory"
//! [[certificate]]
//! names = ["node1.dc1.consul"]
//! acme = "internal"
//! cert = "/etc/consul.d/tls/node.pem"  # the leaf, then its intermediates
//! key = "/etc/consul.d/tls/node-key.pem"  # mode 0600
//! chain = "/etc/consul.d/tls/chain.pem"   # the intermediates (optional)
//! ca = "/etc/consul.d/tls/ca.pem"      # the root (optional)
//! reload = "systemctl reload consul"   # run after new files are written (optional)
//! ```
//!
//! Exit codes (`--once`): 0 every certificate is in place (obtained, renewed, or not
//! due); 1 a certificate could not be obtained or renewed (the others were done);
//! 2 the configuration is wrong; 3 files were written but a reload command failed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use gateway::acme_client::{AcmeClient, AcmeConfig, AcmeError, Managed, SharedSites, Standalone, Stored, site};
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use store::StorageUrl;
use toml::Spanned;

use crate::Failure;

/// The agent's file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentConfig {
    /// Where accounts and certificates are kept (default: `--data-dir`).
    data_dir: Option<PathBuf>,
    #[serde(default = "default_http_01")]
    http_01_listen: SocketAddr,
    #[serde(default = "default_tls_alpn_01")]
    tls_alpn_01_listen: SocketAddr,
    #[serde(default, rename = "acme")]
    acme: Vec<Spanned<AcmeConfig>>,
    #[serde(default, rename = "certificate")]
    certificates: Vec<Spanned<Entry>>,
}

fn default_http_01() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 80))
}

fn default_tls_alpn_01() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 443))
}

/// One `[[certificate]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    names: Vec<String>,
    acme: String,
    cert: PathBuf,
    key: PathBuf,
    chain: Option<PathBuf>,
    ca: Option<PathBuf>,
    reload: Option<String>,
}

/// What happened to one certificate in a pass.
enum Outcome {
    Obtained(Stored),
    Renewed(Stored),
    NotDue { at: String },
    Failed(AcmeError),
}

/// Reads and checks the file: every problem, each with its line.
fn load(path: &Path) -> Result<AgentConfig, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("{}: cannot read it: {e}", path.display())))?;
    let config: AgentConfig = toml::from_str(&text)
        .map_err(|e| Failure::usage(format!("{}: {}", path.display(), e.to_string().replace('\n', " "))))?;
    let mut problems = gateway::config::acme_table_problems(&config.acme, &text);
    if config.certificates.is_empty() {
        problems.push("no [[certificate]]; add one with names, acme, cert and key".to_owned());
    }
    for (i, entry) in config.certificates.iter().enumerate() {
        let at = pki::line_col(&text, entry.span().start);
        let entry = entry.get_ref();
        if entry.names.is_empty() {
            problems.push(format!("{at}: certificate[{i}].names is empty; list the names it is for"));
        }
        match config.acme.iter().find(|a| a.get_ref().name == entry.acme) {
            None => problems.push(format!(
                "{at}: certificate[{i}].acme = \"{}\" names no [[acme]] table; define it or fix the name",
                entry.acme
            )),
            Some(table) if table.get_ref().challenge != gateway::acme_client::Challenge::Dns01 => {
                for name in entry.names.iter().filter(|n| n.starts_with("*.")) {
                    problems.push(format!(
                        "{at}: certificate[{i}].names entry \"{name}\" is a wildcard, which only dns-01 can prove; \
                         use an [[acme]] table with challenge = \"dns-01\""
                    ));
                }
            }
            Some(_) => {}
        }
    }
    if !problems.is_empty() {
        let lines: Vec<String> = problems.iter().map(|p| format!("{}: {p}", path.display())).collect();
        return Err(Failure::usage(lines.join("\n")));
    }
    Ok(config)
}

/// `gatehouse agent`.
pub async fn run(global: &crate::cli::Global, path: &Path, once: bool) -> Result<ExitCode, Failure> {
    let config = load(path)?;
    let base_dir = path.parent().map(Path::to_owned).unwrap_or_else(|| PathBuf::from("."));
    for table in &config.acme {
        gateway::acme_client::check_files(table.get_ref(), &base_dir)
            .map_err(|e| Failure::usage(format!("{}: acme \"{}\": {e}", path.display(), table.get_ref().name)))?;
    }
    let data_dir = match &config.data_dir {
        Some(dir) if dir.is_relative() => base_dir.join(dir),
        Some(dir) => dir.clone(),
        None => global.data_dir.clone(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client = Arc::new(AcmeClient::new(&data_dir, provider, None).shared(shared(global).await?));
    let standalone = Standalone { http: config.http_01_listen, tls: config.tls_alpn_01_listen };
    let entries: Vec<(Entry, Arc<Managed>)> = config
        .certificates
        .iter()
        .map(|entry| {
            let entry = entry.get_ref().clone();
            let table = config.acme.iter().map(Spanned::get_ref).find(|a| a.name == entry.acme).cloned();
            let managed = Managed {
                acme: table.expect("checked in load"),
                names: entry.names.iter().map(|n| n.to_ascii_lowercase()).collect(),
                base_dir: base_dir.clone(),
                client: client.clone(),
                standalone: Some(standalone),
            };
            (entry, Arc::new(managed))
        })
        .collect();
    if once {
        return Ok(pass(&entries).await);
    }
    // Files left behind (a crash between keeping a certificate and writing them) first.
    let mut stops = Vec::new();
    for (entry, managed) in entries {
        if let Some(stored) = managed.kept().await {
            match write_files(&entry, &managed, &stored) {
                Ok(true) => {
                    reload(&entry, &stored);
                }
                Ok(false) => {}
                Err(e) => eprintln!("{}: {e}", entry.names.join(",")),
            }
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        let kept = managed.clone();
        let install = move |stored: &Stored| -> Result<(), AcmeError> {
            write_files(&entry, &kept, stored).map_err(AcmeError::Local)?;
            reload(&entry, stored);
            Ok(())
        };
        tokio::spawn(site::keep(managed, install, stopped));
    }
    gateway::wait_for_termination().await;
    drop(stops);
    Ok(ExitCode::SUCCESS)
}

/// Certificates kept in a PostgreSQL storage (`--storage`, `GATEHOUSE_STORAGE`) as the
/// gateway keeps its sites' (`shared.rs`): stored once, their keys encrypted with the CA
/// passphrase, ordered by one agent at a time under a lease, so agents that ask for
/// the same names (a pair of nodes behind one name) share one certificate, and a node
/// whose disk is replaced gets its certificate back. On SQLite, or with no storage
/// given, they stay in the data dir alone: a file of one machine shares nothing.
async fn shared(global: &crate::cli::Global) -> Result<Option<SharedSites>, Failure> {
    let Some(url) = &global.storage else { return Ok(None) };
    let url = StorageUrl::parse(url).map_err(|e| Failure::usage(format!("{}: {e}", global.storage_flag)))?;
    if !matches!(url, StorageUrl::Postgres(_)) {
        return Ok(None);
    }
    let store = crate::storage::open(&url).await?;
    crate::serve::shared_sites(global, store).map(Some)
}

/// `--once`: each certificate obtained, renewed when due, its files written when they
/// differ from it, its reload run when they were.
async fn pass(entries: &[(Entry, Arc<Managed>)]) -> ExitCode {
    let (mut failed, mut reload_failed) = (false, false);
    for (entry, managed) in entries {
        let names = entry.names.join(",");
        let current = managed.kept().await;
        let outcome = match &current {
            None => match managed.obtain(None).await {
                Ok(stored) => Outcome::Obtained(stored),
                Err(e) => Outcome::Failed(e),
            },
            Some(stored) => {
                let renewal = managed.renewal(stored).await;
                if renewal.due() {
                    match managed.obtain(Some(stored)).await {
                        Ok(stored) => Outcome::Renewed(stored),
                        Err(e) => Outcome::Failed(e),
                    }
                } else {
                    let at = renewal.at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64);
                    Outcome::NotDue { at: format!("{} ({})", pki::rfc3339(at.unwrap_or(0)), renewal.reason) }
                }
            }
        };
        let (stored, said) = match outcome {
            Outcome::Obtained(stored) => {
                let said = format!("obtained, serial {}, expires {}", stored.serial, pki::rfc3339(stored.not_after));
                (Some(stored), said)
            }
            Outcome::Renewed(stored) => {
                let said = format!("renewed, serial {}, expires {}", stored.serial, pki::rfc3339(stored.not_after));
                (Some(stored), said)
            }
            Outcome::NotDue { at } => (current, format!("not due; renewal at {at}")),
            Outcome::Failed(e) => {
                failed = true;
                (current, format!("failed: {e}"))
            }
        };
        println!("{names}: {said}");
        let Some(stored) = stored else { continue };
        match write_files(entry, managed, &stored) {
            Ok(true) => {
                println!("{names}: wrote {}", entry.cert.display());
                if !reload(entry, &stored) {
                    reload_failed = true;
                }
            }
            Ok(false) => {}
            Err(e) => {
                failed = true;
                println!("{names}: {e}");
            }
        }
    }
    match (failed, reload_failed) {
        (true, _) => ExitCode::from(1),
        (false, true) => ExitCode::from(3),
        (false, false) => ExitCode::SUCCESS,
    }
}

/// Writes the entry's files from `stored` when they differ from it (each in one rename;
/// the key first, mode 0600). Whether anything was written.
fn write_files(entry: &Entry, managed: &Managed, stored: &Stored) -> Result<bool, String> {
    let base_dir = managed.base_dir.as_path();
    let resolve = |p: &Path| if p.is_absolute() { p.to_owned() } else { base_dir.join(p) };
    let chain: Vec<CertificateDer<'static>> =
        pki::read_pem(stored.chain_pem.as_bytes()).map_err(|e| format!("the kept chain is not PEM: {e}"))?;
    let intermediates: String = chain.iter().skip(1).map(|c| pki::pem_cert(c)).collect();
    let mut files = vec![(resolve(&entry.key), stored.key_pem.clone(), pki::files::PRIVATE)];
    files.push((resolve(&entry.cert), stored.chain_pem.clone(), pki::files::PUBLIC));
    if let Some(path) = &entry.chain {
        files.push((resolve(path), intermediates, pki::files::PUBLIC));
    }
    if let Some(path) = &entry.ca {
        let bundle = managed.acme.ca_bundle.as_deref().map(resolve);
        match root_of(&chain, bundle.as_deref()) {
            Some(root) => files.push((resolve(path), root, pki::files::PUBLIC)),
            None => tracing::warn!(
                names = %entry.names.join(","),
                "the root of the chain is not known (not in the chain, nor in the [[acme]] ca_bundle); {} not written",
                path.display()
            ),
        }
    }
    let mut wrote = false;
    for (path, text, mode) in files {
        if std::fs::read_to_string(&path).is_ok_and(|on_disk| on_disk == text) {
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        pki::files::write_atomic(&path, text.as_bytes(), mode, true).map_err(|e| e.to_string())?;
        wrote = true;
    }
    Ok(wrote)
}

/// The root the chain ends at: its last certificate when self-signed, else the
/// certificate of `bundle` (the `[[acme]]` table's `ca_bundle`) that issued it.
fn root_of(chain: &[CertificateDer<'static>], bundle: Option<&Path>) -> Option<String> {
    let last = chain.last()?;
    let (_, top) = x509_parser::parse_x509_certificate(last).ok()?;
    if top.subject() == top.issuer() {
        return Some(pki::pem_cert(last));
    }
    let bundle = std::fs::read(bundle?).ok()?;
    let candidates: Vec<CertificateDer<'static>> = pki::read_pem(&bundle).ok()?;
    candidates.iter().find_map(|c| {
        let (_, parsed) = x509_parser::parse_x509_certificate(c).ok()?;
        (parsed.subject() == top.issuer()).then(|| pki::pem_cert(c))
    })
}

/// Runs the entry's reload command (through `sh -c`, as certbot's deploy hooks);
/// whether it succeeded.
fn reload(entry: &Entry, stored: &Stored) -> bool {
    let Some(command) = &entry.reload else { return true };
    let names = entry.names.join(",");
    let output = std::process::Command::new("sh").args(["-c", command]).output();
    match output {
        Ok(out) if out.status.success() => {
            tracing::info!(%names, serial = %stored.serial, %command, "reload command ran");
            true
        }
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            tracing::error!(%names, %command, status = %out.status, stderr = %tail.join(" | "), "reload command failed");
            eprintln!("{names}: reload command `{command}` failed ({}): {}", out.status, tail.join(" | "));
            false
        }
        Err(e) => {
            tracing::error!(%names, %command, error = %e, "reload command could not start");
            eprintln!("{names}: reload command `{command}` could not start: {e}");
            false
        }
    }
}
