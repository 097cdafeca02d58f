//! `gatehouse serve`, `gatehouse quickstart` and `gatehouse config check`:
//! wiring of the gateway crate (configuration, internal CA, runtime).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use gateway::acme_client::SharedSites;
use gateway::certificates::CertificateSource;
use gateway::{Config, Gateway, InternalCa};
use pki::{CaDir, CaInit, KeyType, LeafRequest, Pkcs12Format, Subject, SubjectAltName};
use store::{Database, StorageUrl, Store};

use crate::Failure;
use crate::bundle::{self, BundlePaths, P12Request};
use crate::cli::Global;

/// Builds the tokio runtime the gateway runs on.
pub fn runtime(worker_threads: Option<usize>) -> Result<tokio::runtime::Runtime, Failure> {
    // One worker: a current-thread runtime does the same work without cross-thread scheduling.
    let mut builder = match worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build().map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))
}

/// The runtime `serve` runs `config` on: [`runtime`] with its `worker_threads`, but
/// multi-threaded (one worker if so configured) when a `[[keyless]]` table exists:
/// handshakes that wait for a key server step off their worker
/// (`tokio::task::block_in_place`), which a current-thread runtime cannot do.
pub fn runtime_for(config: &Config) -> Result<tokio::runtime::Runtime, Failure> {
    match config.runtime.worker_threads {
        Some(1) if !config.keyless.is_empty() => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(1);
            builder.enable_all().build().map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))
        }
        threads => runtime(threads),
    }
}

/// Reads and validates a config file (exit 2 on errors): every problem on a
/// `gatehouse: FILE: ...` line of its own, then how many there were.
pub fn load_config(path: &Path) -> Result<Config, Failure> {
    Config::load(path).map_err(|e| {
        let mut lines: Vec<String> = e.lines().collect();
        if lines.len() == 1 {
            return Failure::usage(lines.remove(0));
        }
        // main prints the failure itself as the last `gatehouse: ` line.
        for line in &lines {
            eprintln!("gatehouse: {line}");
        }
        Failure::usage(format!("{}: {} errors", path.display(), lines.len()))
    })
}

fn uses_internal_ca(config: &Config) -> bool {
    let keyless_defaults = config.keyless.iter().any(|k| k.get_ref().ca.is_none() || k.get_ref().client_cert.is_none());
    let keyless_tunnel = config.listen.as_ref().is_some_and(|l| l.keyless_tunnel.is_some());
    keyless_defaults
        || keyless_tunnel
        || config.sites.iter().any(|s| {
            s.certificate.source() == Ok(&CertificateSource::InternalCa)
                || s.trust.as_ref().is_some_and(|t| t.internal_ca)
        })
}

/// The internal CA of `data_dir`, recording in `store`.
/// Its site certificates in `shared`, when the storage is shared.
async fn open_internal(
    global: &Global,
    data_dir: &Path,
    store: Database,
    shared: Option<SharedSites>,
) -> Result<Arc<InternalCa>, Failure> {
    let store: Arc<dyn Store> = Arc::new(store);
    let passphrase = crate::ca::passphrase(global)?;
    Ok(Arc::new(InternalCa::open(data_dir, store, passphrase).await?.share_sites(shared)))
}

/// The data dir of a config: its `data_dir` (relative to the file), else `--data-dir`
/// (which `main` has checked).
fn data_dir(global: &Global, config: &Config, config_path: &Path) -> Result<PathBuf, Failure> {
    let dir = match (&config.data_dir, config_path.parent()) {
        (Some(d), Some(base)) if d.is_relative() => base.join(d),
        (Some(d), _) => d.clone(),
        (None, _) => return Ok(global.data_dir.clone()),
    };
    crate::usable_data_dir(&dir, &format!("{}: data_dir", config_path.display()))?;
    Ok(dir)
}

/// Starts the `[acme_server]`: the internal CA's issuer and database, a TLS
/// certificate from that CA for its listener, and the accept loop.
async fn start_acme_server(
    global: &Global,
    data_dir: &Path,
    store: &Database,
    settings: &gateway::config::AcmeServerSettings,
) -> Result<(), Failure> {
    let dir = CaDir::new(data_dir);
    let ca = pki::CertificateAuthority::new(dir.issuer(crate::ca::passphrase(global)?.as_ref())?, store.clone());
    let internal = open_internal(global, data_dir, store.clone(), None).await?;
    let mut hosts = vec!["localhost".to_owned()];
    if !settings.listen.ip().is_unspecified() {
        hosts.push(settings.listen.ip().to_string());
    }
    hosts.extend(settings.hosts.iter().cloned());
    let (chain, key) = internal.site_certificate(&hosts).await?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| Failure::failed(format!("acme_server: its TLS certificate cannot be used: {e}")))?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acme = acme::Settings {
        http_01_port: settings.http_01_port,
        tls_alpn_01_port: settings.tls_alpn_01_port,
        dns_resolver: settings.dns_resolver,
        eab_required: settings.eab_required,
        orders_per_hour: settings.orders_per_hour,
        failed_validations_per_hour: settings.failed_validations_per_hour,
        renewal_info_retry_secs: settings.renewal_info_retry_secs.max(1),
    };
    let server =
        acme::AcmeServer::new(ca, store.clone(), &acme).map_err(|e| Failure::failed(format!("acme_server: {e}")))?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| Failure::failed(format!("acme_server: cannot listen on {}: {e}", settings.listen)))?;
    let bound = listener.local_addr().unwrap_or(settings.listen);
    tokio::spawn(Arc::new(server).serve(listener, Arc::new(tls)));
    eprintln!("gatehouse serving ACME on https://{bound}/acme/directory");
    Ok(())
}

/// Site certificates in the shared database `store`, their keys encrypted with the CA
/// passphrase: refused without one, rather than writing keys in the clear.
pub(crate) fn shared_sites(global: &Global, store: Database) -> Result<SharedSites, Failure> {
    let passphrase = crate::ca::passphrase(global)?.ok_or_else(|| {
        Failure::usage(
            "sharing site certificates on PostgreSQL storage needs a passphrase to encrypt their keys: set \
             GATEHOUSE_CA_PASSPHRASE (or give --ca-passphrase-file FILE)",
        )
    })?;
    SharedSites::new(store, passphrase).map_err(Failure::usage)
}

/// `gatehouse serve --config FILE`.
pub async fn serve(global: &Global, config_path: &Path, config: Config) -> Result<ExitCode, Failure> {
    // The database is opened once the config needs it: an ACME server, the internal CA, or
    // site certificates stored once for all instances on a shared storage.
    let storage = crate::storage::for_config(global, &config, &data_dir(global, &config, config_path)?)?;
    let uses_ca = config.acme_server.is_some() || uses_internal_ca(&config);
    let shares_sites = matches!(storage, StorageUrl::Postgres(_))
        && (!config.acme.is_empty()
            || config.sites.iter().any(|s| s.certificate.source() == Ok(&CertificateSource::InternalCa)));
    let store = if uses_ca || shares_sites {
        let store = crate::storage::open(&storage).await?;
        if uses_ca {
            let dir = CaDir::new(data_dir(global, &config, config_path)?);
            crate::shared_ca::take(&dir, &store, &storage).await?;
        }
        Some(store)
    } else {
        None
    };
    if let (Some(settings), Some(store)) = (&config.acme_server, &store) {
        start_acme_server(global, &data_dir(global, &config, config_path)?, store, settings).await?;
        if config.sites.is_empty() {
            gateway::wait_for_termination().await;
            return Ok(ExitCode::SUCCESS);
        }
    }
    let shared = match (&store, shares_sites) {
        (Some(store), true) => Some(shared_sites(global, store.clone())?),
        _ => None,
    };
    let internal = match store {
        Some(store) if uses_internal_ca(&config) => {
            Some(open_internal(global, &data_dir(global, &config, config_path)?, store, shared.clone()).await?)
        }
        _ => None,
    };
    // ACME accounts are kept in the data dir, and so are certificates unless the storage is shared.
    let acme_dir = if config.acme.is_empty() { None } else { Some(data_dir(global, &config, config_path)?) };
    // Anything Gateway::new refuses is in the configuration (a file it names, a trust store).
    let gateway = Gateway::new(config, Some(config_path.to_owned()), internal, acme_dir.as_deref(), shared)
        .await
        .map_err(|e| Failure::usage(format!("{}: {e}", config_path.display())))?;
    let listeners = gateway.bind().await?;
    gateway
        .run(listeners, |bound| {
            eprintln!("gatehouse serving https on {}", bound.https);
            if let Some(a) = bound.http {
                eprintln!("redirecting http on {a}");
            }
            if let Some(a) = bound.admin {
                eprintln!("admin (/metrics, /healthz) on {a}");
            }
            if let Some(a) = bound.keyless_tunnel {
                eprintln!("keyless tunnel for key servers on {a}");
            }
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// `gatehouse config check FILE`: parse, validate, and read every file it names. It only
/// reads: certificates the internal CA would issue are issued by `serve`, so a check needs
/// neither the CA's passphrase nor its database, and writes nothing to the data dir.
pub async fn check(global: &Global, path: &Path) -> Result<ExitCode, Failure> {
    if is_key_server_file(path) {
        return check_key_server(global, path);
    }
    let config = load_config(path)?;
    let data_dir = data_dir(global, &config, path)?;
    let ca_dir = CaDir::new(&data_dir);
    let internal = if uses_internal_ca(&config) && ca_dir.exists() {
        let read = |file: PathBuf| gateway::trust::read_certificates(&file).map_err(|e| Failure::failed(e.to_string()));
        Some([read(ca_dir.root_path())?, read(ca_dir.intermediate_path())?].concat())
    } else {
        None
    };
    let base = path.parent().unwrap_or(Path::new("."));
    gateway::check(&config, base, internal.as_deref())
        .await
        .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    if uses_internal_ca(&config) && internal.is_none() {
        let storage = crate::storage::for_config(global, &config, &data_dir)?;
        match &storage {
            StorageUrl::Postgres(_) => eprintln!(
                "note: no CA in {} yet: `serve` takes the one kept in {storage}, or run `gatehouse ca init` with that storage",
                data_dir.display()
            ),
            StorageUrl::Sqlite(_) => eprintln!(
                "note: no CA in {} yet: `serve` needs one there for internal_ca (run `gatehouse ca init`)",
                data_dir.display()
            ),
        }
    }
    let (sites, upstreams) = (config.sites.len(), config.upstreams.len());
    println!(
        "{}: ok ({}, {})",
        path.display(),
        crate::count(sites, "site", "sites"),
        crate::count(upstreams, "upstream", "upstreams")
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether `path` is a `gatehouse keyserver` file (it has `[[keys]]`) rather than a
/// gateway configuration.
fn is_key_server_file(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else { return false };
    text.parse::<toml::Table>().is_ok_and(|table| table.contains_key("keys"))
}

/// `gatehouse config check` of a key server file: the file, then every key and the TLS
/// identity and trust it names, loaded as `gatehouse keyserver` loads them (a PKCS#11
/// token is opened and logged in to); nothing is bound.
fn check_key_server(global: &Global, path: &Path) -> Result<ExitCode, Failure> {
    let in_file = |e: &dyn std::fmt::Display| Failure::usage(format!("{}: {e}", path.display()));
    let config = keyserver::Config::load(path, &global.data_dir).map_err(|e| in_file(&e))?;
    let prepared = keyserver::Prepared::new(&config).map_err(|e| in_file(&e))?;
    let keys = prepared.keys().len();
    println!("{}: ok (key server, {})", path.display(), crate::count(keys, "key", "keys"));
    Ok(ExitCode::SUCCESS)
}

/// Options of `gatehouse quickstart`.
pub struct Quickstart {
    pub listen: SocketAddr,
    pub upstream: Option<String>,
    pub hostname: String,
}

/// `gatehouse quickstart`: CA, server certificate, a first client bundle, and the gateway with mTLS required.
pub async fn quickstart(global: &Global, options: Quickstart) -> Result<ExitCode, Failure> {
    let mut hosts = vec![options.hostname.clone()];
    if options.hostname == "localhost" {
        hosts.push("127.0.0.1".into());
    }
    for h in &hosts {
        SubjectAltName::parse(h).map_err(|e| Failure::usage(format!("--hostname: {e}")))?;
    }
    let upstream = match options.upstream {
        Some(url) => url,
        None => {
            let addr = gateway::echo::spawn_echo()
                .await
                .map_err(|e| Failure::failed(format!("cannot start the echo upstream: {e}")))?;
            format!("http://{addr}")
        }
    };
    // Values go into the TOML as TOML strings, quoted and escaped.
    let quoted = |text: &str| toml::Value::String(text.to_owned()).to_string();
    let hosts_toml = hosts.iter().map(|h| quoted(h)).collect::<Vec<_>>().join(", ");
    let toml = format!(
        "[listen]\nhttps = {listen}\n\n[[site]]\nhosts = [{hosts_toml}]\ncertificate = {{ internal_ca = true }}\nmtls = \"require\"\ntrust = {{ internal_ca = true }}\nupstream = \"app\"\n\n[[upstream]]\nname = \"app\"\nservers = [{servers}]\n",
        listen = quoted(&options.listen.to_string()),
        servers = quoted(&upstream),
    );
    // --listen and --hostname are checked above: what the configuration refuses is the upstream.
    let config = Config::parse(Path::new("quickstart"), &toml).map_err(|e| upstream_refused(&upstream, &e))?;
    let data_dir = global.data_dir.clone();
    let dir = CaDir::new(&data_dir);
    let passphrase = crate::ca::passphrase(global)?;
    let url = crate::storage::selected(global, &data_dir)?;
    // A SQLite file goes in the data dir, which making the CA creates; a shared storage
    // may hold the CA already (see shared_ca).
    let shared = match url {
        StorageUrl::Sqlite(_) => None,
        StorageUrl::Postgres(_) => Some(crate::storage::open(&url).await?),
    };
    let found = match &shared {
        Some(db) => crate::shared_ca::agree(&dir, db, &url).await?,
        None => crate::shared_ca::Agreement::Local,
    };
    if !dir.exists() {
        if let Some(db) = &shared {
            crate::shared_ca::check_init(db, &url, passphrase.is_some()).await?;
        }
        dir.init(
            &CaInit { name: "gatehouse".into(), key_type: KeyType::EcdsaP256, days: 3650 },
            None,
            passphrase.as_ref(),
        )?;
        if let Some(db) = &shared {
            crate::shared_ca::share_new(&dir, db, &url).await?;
        }
        eprintln!("created a CA in {}", data_dir.display());
    } else if found == crate::shared_ca::Agreement::Installed {
        eprintln!("took the CA kept in {url} into {}", data_dir.display());
    }
    if let Some(db) = &shared
        && matches!(found, crate::shared_ca::Agreement::Same | crate::shared_ca::Agreement::Shared)
        && let Some(said) = crate::shared_ca::sync_policy(&dir, db, &url).await?
    {
        eprintln!("{said}");
    }
    let store = match shared {
        Some(db) => db,
        None => crate::storage::open(&url).await?,
    };
    let client_dir = data_dir.join("quickstart");
    let user = "first-user";
    let paths = BundlePaths::new(&client_dir, user);
    let password_path = client_dir.join(format!("{user}.p12-password"));
    if !paths.crt.exists() || !password_path.exists() {
        let ca = pki::CertificateAuthority::new(dir.issuer(passphrase.as_ref())?, store.clone());
        pki::files::create_private_dir(&client_dir)?;
        let request = LeafRequest {
            profile: pki::Profile::Client,
            subject: Subject::common_name(user),
            sans: vec![],
            days: None,
        };
        let (issued, key) = ca.issue(&request, KeyType::EcdsaP256).await?;
        let password = pki::generate_password();
        let p12 = bundle::pkcs12(
            ca.issuer(),
            user,
            &issued,
            &key,
            &P12Request { password: &password, format: Pkcs12Format::Modern },
        )?;
        pki::files::write_atomic(&password_path, format!("{password}\n").as_bytes(), pki::files::PRIVATE, true)?;
        bundle::write(&paths, ca.issuer(), &issued, &key, Some(&p12), true)?;
    }
    let internal: Arc<dyn Store> = Arc::new(store);
    let internal = Arc::new(InternalCa::open(&data_dir, internal, passphrase).await?);

    let gateway = Gateway::new(config, None, Some(internal), None, None).await?;
    let listeners = gateway.bind().await?;
    let hints = Hints { global, root: dir.root_path(), paths, password_path };
    let hostname = options.hostname.clone();
    gateway
        .run(listeners, move |bound| {
            let url = format!("https://{hostname}:{}/", bound.https.port());
            // The gateway serves on whether or not anyone reads this.
            let _ = std::io::stdout().write_all(hints.text(&url, &upstream).as_bytes());
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// `--upstream URL` refused by the configuration: the sentence about its URL, with the flag.
fn upstream_refused(url: &str, error: &gateway::ConfigError) -> Failure {
    let about_url = format!("servers[0] {url:?} ");
    let reasons: Vec<&str> =
        error.messages.iter().map(|m| m.split_once(about_url.as_str()).map_or(m.as_str(), |(_, why)| why)).collect();
    Failure::usage(format!("--upstream {url} {}", reasons.join("; ")))
}

/// What quickstart prints once it serves: the commands that get through and are refused,
/// and the CA commands for more users, for this data dir.
struct Hints<'a> {
    global: &'a Global,
    root: PathBuf,
    paths: BundlePaths,
    password_path: PathBuf,
}

impl Hints<'_> {
    fn text(&self, url: &str, upstream: &str) -> String {
        let q = |p: &Path| shell_word(&p.display().to_string());
        let (root, crt, key) = (q(&self.root), q(&self.paths.crt), q(&self.paths.key));
        // The CA commands act on this CA only with the options it was started with.
        let mut ca = String::from("gatehouse");
        if self.global.data_dir != Path::new(crate::cli::DEFAULT_DATA_DIR) {
            ca += &format!(" --data-dir {}", q(&self.global.data_dir));
        }
        if let Some(file) = &self.global.ca_passphrase_file {
            ca += &format!(" --ca-passphrase-file {}", q(file));
        }
        // Shown with its password elided: the operator typed it, the terminal need not keep it.
        if let Some(Ok(url)) = self.global.storage.as_deref().map(store::StorageUrl::parse) {
            ca += &format!(" --storage {}", shell_word(&url.to_string()));
        }
        format!(
            "gatehouse is serving {url} with client certificates required, in front of {upstream}\n\n\
             gets through (presents the first user's certificate):\n  \
             curl --cacert {root} --cert {crt} --key {key} {url}\n\
             is refused (no client certificate):\n  curl --cacert {root} {url}\n\n\
             browser bundle: {} (password in {})\n\
             more users: {ca} ca issue --profile client --cn NAME --p12\n\
             revoke one: {ca} ca revoke SERIAL   (refused here within two seconds)\n",
            q(&self.paths.p12),
            q(&self.password_path),
        )
    }
}

/// `text` as one word for a POSIX shell: as it is when it is plain, else in single quotes.
fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        return text.to_owned();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}
