//! `gatehouse serve`, `gatehouse quickstart` and `gatehouse config check`:
//! wiring of the gateway crate (configuration, internal CA, runtime).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use gateway::certificates::CertificateSource;
use gateway::{Config, Gateway, InternalCa};
use pki::{CaDir, CaInit, KeyType, LeafRequest, Pkcs12Format, Subject, SubjectAltName};
use store::{SqliteStore, Store};

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
    config.sites.iter().any(|s| {
        s.certificate.source() == Ok(&CertificateSource::InternalCa) || s.trust.as_ref().is_some_and(|t| t.internal_ca)
    })
}

async fn open_internal(global: &Global, data_dir: &Path) -> Result<Arc<InternalCa>, Failure> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&CaDir::new(data_dir).database()).await?);
    let passphrase = crate::ca::passphrase(global)?;
    Ok(Arc::new(InternalCa::open(data_dir, store, passphrase).await?))
}

fn data_dir(global: &Global, config: &Config, config_path: Option<&Path>) -> PathBuf {
    match (&config.data_dir, config_path.and_then(Path::parent)) {
        (Some(d), Some(base)) if d.is_relative() => base.join(d),
        (Some(d), _) => d.clone(),
        (None, _) => global.data_dir.clone(),
    }
}

/// `gatehouse serve --config FILE`.
pub async fn serve(global: &Global, config_path: &Path, config: Config) -> Result<ExitCode, Failure> {
    let internal = if uses_internal_ca(&config) {
        Some(open_internal(global, &data_dir(global, &config, Some(config_path))).await?)
    } else {
        None
    };
    // Anything Gateway::new refuses is in the configuration (a file it names, a trust store).
    let gateway = Gateway::new(config, Some(config_path.to_owned()), internal)
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
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// `gatehouse config check FILE`: parse, validate, and load every file it names.
pub async fn check(global: &Global, path: &Path) -> Result<ExitCode, Failure> {
    let config = load_config(path)?;
    let internal = if uses_internal_ca(&config) {
        Some(open_internal(global, &data_dir(global, &config, Some(path))).await?)
    } else {
        None
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let (sites, upstreams) = (config.sites.len(), config.upstreams.len());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let metrics = gateway::metrics::Metrics::new();
    gateway::sites::Runtime::build(config, base, provider, internal.as_ref(), &metrics)
        .await
        .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    println!("{}: ok ({sites} sites, {upstreams} upstreams)", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Options of `gatehouse quickstart`.
pub struct Quickstart {
    pub listen: String,
    pub upstream: Option<String>,
    pub hostname: String,
}

/// `gatehouse quickstart`: CA, server certificate, a first client bundle, and the gateway with mTLS required.
pub async fn quickstart(global: &Global, options: Quickstart) -> Result<ExitCode, Failure> {
    let data_dir = global.data_dir.clone();
    let dir = CaDir::new(&data_dir);
    let passphrase = crate::ca::passphrase(global)?;
    if !dir.exists() {
        dir.init(
            &CaInit { name: "gatehouse".into(), key_type: KeyType::EcdsaP256, days: 3650 },
            None,
            passphrase.as_ref(),
        )?;
        eprintln!("created a CA in {}", data_dir.display());
    }
    let store = SqliteStore::open(&dir.database()).await?;
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

    let upstream = match options.upstream {
        Some(url) => url,
        None => {
            let addr = gateway::echo::spawn_echo()
                .await
                .map_err(|e| Failure::failed(format!("cannot start the echo upstream: {e}")))?;
            format!("http://{addr}")
        }
    };
    let mut hosts = vec![options.hostname.clone()];
    if options.hostname == "localhost" {
        hosts.push("127.0.0.1".into());
    }
    let hosts_toml = hosts.iter().map(|h| format!("\"{h}\"")).collect::<Vec<_>>().join(", ");
    for h in &hosts {
        SubjectAltName::parse(h).map_err(|e| Failure::usage(e.to_string()))?;
    }
    let toml = format!(
        "[listen]\nhttps = \"{listen}\"\n\n[[site]]\nhosts = [{hosts_toml}]\ncertificate = {{ internal_ca = true }}\nmtls = \"require\"\ntrust = {{ internal_ca = true }}\nupstream = \"app\"\n\n[[upstream]]\nname = \"app\"\nservers = [\"{upstream}\"]\n",
        listen = options.listen
    );
    let config = Config::parse(Path::new("quickstart"), &toml).map_err(|e| Failure::usage(e.to_string()))?;
    let gateway = Gateway::new(config, None, Some(internal)).await?;
    let listeners = gateway.bind().await?;
    let root = dir.root_path();
    let hostname = options.hostname.clone();
    let (crt, key, p12) = (paths.crt.clone(), paths.key.clone(), paths.p12.clone());
    gateway
        .run(listeners, move |bound| {
            let url = format!("https://{hostname}:{}/", bound.https.port());
            println!("gatehouse is serving {url} with client certificates required, in front of {upstream}");
            println!();
            println!("gets through (presents the first user's certificate):");
            println!("  curl --cacert {} --cert {} --key {} {url}", root.display(), crt.display(), key.display());
            println!("is refused (no client certificate):");
            println!("  curl --cacert {} {url}", root.display());
            println!();
            println!("browser bundle: {} (password in {})", p12.display(), password_path.display());
            println!("more users: gatehouse ca issue --profile client --cn NAME --p12");
            println!("revoke one: gatehouse ca revoke SERIAL   (refused here within two seconds)");
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}
