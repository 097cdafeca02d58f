//! The gateway: a TLS-terminating reverse proxy with per-host, per-path
//! client-certificate policy, revocation, identity forwarding, upstream pools
//! with health checks, hot reload, logs and metrics.
//!
//! It owns listeners, the SNI-to-site choice, client-certificate
//! verification, the request phases (see [`proxy`]), upstream pools and the
//! reload machinery. It knows nothing of SQL: the internal CA's revocations
//! and certificates come through the `store::Store` trait and `pki`.

#![forbid(unsafe_code)]

pub mod acme_client;
pub mod certificates;
pub mod config;
pub mod crl_fetch;
pub mod echo;
mod error;
pub mod identity;
pub mod internal_ca;
pub mod keyless;
mod labels;
pub mod log;
pub mod metrics;
pub mod proxy;
pub mod refusal;
pub mod server;
pub mod site_verifier;
pub mod sites;
pub mod target;
pub mod trust;
pub mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::{Config, ConfigError};
pub use error::Error;
pub use internal_ca::{InternalCa, InternalCaError};

use crate::acme_client::AcmeClient;
use crate::keyless::tunnel::{TunnelTls, Tunnels};

use crate::metrics::Metrics;
use crate::server::{ClientConnections, ConnectionSlots};
use crate::sites::{FileStamps, Runtime};

/// The running gateway.
pub struct Gateway {
    /// What connections are served with now.
    pub runtime: ArcSwap<Runtime>,
    /// Metrics, served on the admin listener.
    pub metrics: Arc<Metrics>,
    /// Downstream connection limit (`limits.max_connections`, within the open-file limit).
    pub connection_slots: ConnectionSlots,
    /// Open connections per client (`limits.max_connections_per_ip`).
    pub clients: Arc<ClientConnections>,
    pub(crate) provider: Arc<CryptoProvider>,
    internal: Option<Arc<InternalCa>>,
    /// The ACME client of `certificate = { acme = ... }` sites, whose challenge answers
    /// the listeners serve.
    pub acme: Option<Arc<AcmeClient>>,
    config_path: Option<PathBuf>,
    base_dir: PathBuf,
    /// The `[[keyless]]` tables and the key servers attached through the tunnel.
    tunnels: Arc<Tunnels>,
    /// The tunnel listener's TLS, when `[listen] keyless_tunnel` is set.
    tunnel_tls: Option<TunnelTls>,
}

/// The listeners [`Gateway::bind`] took.
#[derive(Debug)]
pub struct Listeners {
    https: TcpListener,
    http: Option<TcpListener>,
    admin: Option<TcpListener>,
    keyless_tunnel: Option<TcpListener>,
}

/// Addresses the gateway actually listens on (ports resolved).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// TLS listener.
    pub https: SocketAddr,
    /// Redirect listener.
    pub http: Option<SocketAddr>,
    /// Admin listener.
    pub admin: Option<SocketAddr>,
    /// Keyless tunnel listener.
    pub keyless_tunnel: Option<SocketAddr>,
}

impl Gateway {
    /// Builds the gateway from a validated config. `config_path` enables reload
    /// from that file; relative paths in the config resolve against its directory.
    /// Raises the process's open-file limit to its hard limit, and lowers
    /// `limits.max_connections` (with a warning) to what that leaves room for.
    /// `data_dir` keeps the ACME accounts and certificates of `acme` sites; `shared`,
    /// the database the instances share, stores those certificates once for all.
    pub async fn new(
        config: Config,
        config_path: Option<PathBuf>,
        internal: Option<Arc<InternalCa>>,
        data_dir: Option<&Path>,
        shared: Option<acme_client::SharedSites>,
    ) -> Result<Arc<Gateway>, Error> {
        log::set_queue_lines(config.log.queue_lines);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let base_dir =
            config_path.as_deref().and_then(Path::parent).map(Path::to_owned).unwrap_or_else(|| PathBuf::from("."));
        let max_connections = config.limits.max_connections;
        let metrics = Arc::new(Metrics::new());
        let acme = data_dir.map(|dir| {
            let events: Arc<dyn acme_client::OrderEvents> = metrics.clone();
            Arc::new(AcmeClient::new(dir, provider.clone(), Some(events)).shared(shared))
        });
        let tunnel_tls = match config.listen.as_ref().and_then(|l| l.keyless_tunnel.map(|addr| (l, addr))) {
            Some((listen, addr)) => Some(tunnel_tls(internal.as_ref(), listen, addr, &provider).await?),
            None => None,
        };
        let runtime =
            Runtime::build(config, &base_dir, provider.clone(), internal.as_ref(), acme.as_ref(), &metrics).await?;
        let tunnels = Arc::new(Tunnels::default());
        tunnels.register(runtime.keyless_tables());
        let tunnel_tls = match tunnel_tls {
            Some(certificate) => Some(
                TunnelTls::new(certificate, tunnels.clone(), &provider)
                    .map_err(|e| Error::Keyless(format!("listen.keyless_tunnel: {e}")))?,
            ),
            None => None,
        };
        server::raise_open_file_limit();
        let connection_slots = ConnectionSlots::new(max_connections);
        metrics.set_connection_limit(connection_slots.size());
        runtime.start_health_checks();
        if let Some(ca) = &internal {
            ca.follow_revocations(Duration::from_millis(500));
        }
        Ok(Arc::new(Gateway {
            runtime: ArcSwap::from_pointee(runtime),
            metrics,
            connection_slots,
            clients: Arc::default(),
            provider,
            internal,
            acme,
            config_path,
            base_dir,
            tunnels,
            tunnel_tls,
        }))
    }

    /// Re-reads the config file and swaps in the new runtime; on any error the old one keeps serving.
    /// The new limits apply to connections accepted from then on, and `limits.max_connections` to
    /// the count of open ones: lowered, no connection is cut, and none is accepted until fewer are open.
    pub async fn reload(&self) -> Result<(), Error> {
        let result = self.try_reload().await;
        self.metrics.reload(result.is_ok());
        match &result {
            Ok(()) => tracing::info!("configuration reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "reload refused; the previous configuration keeps serving")
            }
        }
        result
    }

    async fn try_reload(&self) -> Result<(), Error> {
        let path = self.config_path.as_deref().ok_or(Error::NoConfigFile)?;
        // One log line for the refusal, however many problems the file has (see `Error::Config`).
        let config = Config::load(path).map_err(Error::Config)?;
        if config.listen != self.runtime.load().config.listen {
            tracing::warn!("listen addresses changed; they take effect at the next restart");
        }
        let max_connections = config.limits.max_connections;
        let previous = self.runtime.load_full();
        let (provider, internal, acme) = (self.provider.clone(), self.internal.as_ref(), self.acme.as_ref());
        let runtime =
            Runtime::rebuild(&previous, config, &self.base_dir, provider, internal, acme, &self.metrics).await?;
        runtime.start_health_checks();
        self.tunnels.register(runtime.keyless_tables());
        self.runtime.store(Arc::new(runtime));
        let was = self.connection_slots.size();
        let now = self.connection_slots.resize(max_connections);
        self.metrics.set_connection_limit(now);
        if now != was {
            tracing::info!("connection limit changed from {was} to {now} (limits.max_connections)");
        }
        Ok(())
    }

    /// Binds the listeners; then serve with [`Gateway::run`].
    pub async fn bind(&self) -> Result<Listeners, Error> {
        let listen = self.runtime.load().config.listen.clone().ok_or(Error::NoListener)?;
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|source| Error::Listen { addr, source })
        };
        let optional = |addr: Option<SocketAddr>| async move {
            match addr {
                Some(a) => bind(a).await.map(Some),
                None => Ok(None),
            }
        };
        Ok(Listeners {
            https: bind(listen.https).await?,
            http: optional(listen.http).await?,
            admin: optional(listen.admin).await?,
            keyless_tunnel: optional(listen.keyless_tunnel).await?,
        })
    }

    /// Serves until SIGTERM or SIGINT, reloading on SIGHUP and on changes of the files the
    /// config reads; then stops accepting and drains open connections (30 s at most).
    pub async fn run(self: Arc<Self>, listeners: Listeners, on_ready: impl FnOnce(Bound)) -> Result<(), Error> {
        let Listeners { https, http, admin, keyless_tunnel } = listeners;
        let bound = Bound {
            https: https.local_addr().map_err(Error::ListenerAddress)?,
            http: http.as_ref().and_then(|l| l.local_addr().ok()),
            admin: admin.as_ref().and_then(|l| l.local_addr().ok()),
            keyless_tunnel: keyless_tunnel.as_ref().and_then(|l| l.local_addr().ok()),
        };
        let (stop, stopped) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(server::serve_tls(self.clone(), https, stopped.clone()))];
        if let Some(l) = http {
            tasks.push(tokio::spawn(server::serve_redirect(self.clone(), l, bound.https.port(), stopped.clone())));
        }
        if let Some(l) = admin {
            tasks.push(tokio::spawn(server::serve_admin(self.clone(), l, stopped.clone())));
        }
        if let (Some(l), Some(tls)) = (keyless_tunnel, &self.tunnel_tls) {
            keyless::tunnel::serve(l, tls, self.tunnels.clone(), stopped.clone());
        }
        self.clone().spawn_watchers();
        on_ready(bound);

        wait_for_termination().await;
        tracing::info!("shutting down: no new connections, draining open ones");
        let _ = stop.send(true);
        for t in tasks {
            let _ = t.await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.metrics.open_connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The last access lines are still queued for stdout.
        let _ = tokio::task::spawn_blocking(|| log::flush(Duration::from_secs(5))).await;
        Ok(())
    }

    /// Key servers attached through the keyless tunnel now.
    pub fn keyless_tunnel_attached(&self) -> usize {
        self.tunnels.attached_count()
    }

    /// Reissues the tunnel listener's certificate when a third of its life is left.
    async fn renew_tunnel_certificate(&self) {
        let (Some(tls), Some(listen)) = (&self.tunnel_tls, self.runtime.load().config.listen.clone()) else {
            return;
        };
        let Some(addr) = listen.keyless_tunnel else { return };
        match tunnel_tls(self.internal.as_ref(), &listen, addr, &self.provider).await {
            Ok(certificate) if certificate.cert != tls.certificate().cert => {
                tls.replace_certificate(certificate);
                tracing::info!("keyless tunnel certificate renewed");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "keyless tunnel certificate could not be renewed; the current one stays")
            }
        }
    }

    /// SIGHUP, and a change of the config file or of a file it names (site certificates
    /// aside), reload the configuration. Every second, each site's certificate source is
    /// looked at too: changed files are swapped in without a reload, and internal-CA
    /// certificates are renewed the same way (checked hourly).
    fn spawn_watchers(self: Arc<Self>) {
        let gateway = self.clone();
        tokio::spawn(async move {
            let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                let _ = gateway.reload().await;
            }
        });
        tokio::spawn(async move {
            let mut seen = self.fingerprint();
            let mut last_renewal_check = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = self.fingerprint();
                if now.changed_since(&seen) {
                    let _ = self.reload().await;
                }
                seen = now;
                let renewal_due = last_renewal_check.elapsed() >= Duration::from_secs(3600);
                if renewal_due {
                    last_renewal_check = tokio::time::Instant::now();
                    self.renew_tunnel_certificate().await;
                }
                self.runtime.load_full().refresh_certificates(renewal_due).await;
            }
        });
    }

    /// Modification times of the config file and every file it names but site certificates
    /// (none without a config file).
    fn fingerprint(&self) -> FileStamps {
        let Some(config_path) = &self.config_path else {
            return FileStamps::default();
        };
        let watched = self.runtime.load().config.watched_files();
        let resolved = watched.into_iter().map(|p| if p.is_absolute() { p } else { self.base_dir.join(p) });
        FileStamps::of(std::iter::once(config_path.clone()).chain(resolved))
    }
}

/// The keyless tunnel listener's certificate, from the internal CA: for `localhost`,
/// the listener's IP (unless unspecified) and `keyless_tunnel_names`.
async fn tunnel_tls(
    internal: Option<&Arc<InternalCa>>,
    listen: &config::Listen,
    addr: SocketAddr,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<rustls::sign::CertifiedKey>, Error> {
    let ca = internal.ok_or_else(|| {
        Error::Keyless(
            "listen.keyless_tunnel takes its certificate from the internal CA, and the data dir has none; \
             run gatehouse ca init"
                .to_owned(),
        )
    })?;
    let mut hosts = listen.keyless_tunnel_names.clone();
    hosts.push("localhost".to_owned());
    if !addr.ip().is_unspecified() {
        hosts.push(addr.ip().to_string());
    }
    hosts.dedup();
    let (chain, key) =
        ca.tunnel_certificate(&hosts).await.map_err(|e| Error::Keyless(format!("listen.keyless_tunnel: {e}")))?;
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| Error::Keyless(format!("listen.keyless_tunnel: its key: {e}")))?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(chain, key)))
}

/// Checks a configuration the way [`Gateway::new`] would build it, reading every file it
/// names, and builds, issues, fetches and writes nothing (`gatehouse config check`). In the
/// order the gateway builds them: upstream pools with their TLS files; each site's
/// certificate files, read with the key matched to the certificate; each trust store put
/// together from its CA and CRL files. `internal_ca` is the internal CA's root and
/// intermediate when the data dir has a CA; trust stores with `internal_ca = true` are
/// checked with them. A site whose certificate the internal CA issues has its host names
/// checked as the CA would take them; the certificate itself, and the CRLs of CRL URLs,
/// are left to [`Gateway::new`]: issuing needs the CA's key and database, fetching the network.
pub async fn check(
    config: &Config,
    base_dir: &Path,
    internal_ca: Option<&[rustls::pki_types::CertificateDer<'static>]>,
) -> Result<(), Error> {
    use crate::certificates::{CertificateError, CertificateSource, SiteCertificate};
    use crate::trust::{TrustStore, read_certificates, read_crl};

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let resolve = |p: &Path| if p.is_absolute() { p.to_owned() } else { base_dir.join(p) };
    for upstream in &config.upstreams {
        upstream::Pool::new(upstream, base_dir)?;
    }
    for table in &config.acme {
        let table = table.get_ref();
        acme_client::check_files(table, base_dir)
            .map_err(|problem| Error::AcmeTable { name: table.name.clone(), problem })?;
    }
    for table in &config.keyless {
        let table = table.get_ref();
        let fail = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
            Error::Keyless(format!("keyless \"{}\": {what} {}: {e}", table.name, path.display()))
        };
        match &table.ca {
            Some(ca) => read_certificates(&resolve(ca)).map(drop).map_err(|e| fail("ca", ca, &e))?,
            None if internal_ca.is_none() => {
                return Err(Error::Keyless(format!(
                    "keyless \"{}\" has no ca and there is no internal CA to trust the key servers with; set ca",
                    table.name
                )));
            }
            None => {}
        }
        if let (Some(cert), Some(key)) = (&table.client_cert, &table.client_key) {
            read_certificates(&resolve(cert)).map(drop).map_err(|e| fail("client_cert", cert, &e))?;
            pki::read_first_pem_file::<rustls::pki_types::PrivateKeyDer<'static>>(&resolve(key))
                .map(drop)
                .map_err(|e| fail("client_key", key, &e))?;
        } else if internal_ca.is_none() {
            return Err(Error::Keyless(format!(
                "keyless \"{}\" has no client_cert and there is no internal CA to issue one; set client_cert and client_key",
                table.name
            )));
        }
    }
    for (index, site) in config.sites.iter().enumerate() {
        let source = site.certificate.source().map_err(|problem| Error::CertificateTable { site: index, problem })?;
        let hosts: Vec<String> = site.hosts.iter().map(|h| h.get_ref().to_ascii_lowercase()).collect();
        let certificate = match source {
            CertificateSource::Files { .. } => {
                SiteCertificate::load(source, &hosts, base_dir, &provider, &Default::default()).await.map(drop)
            }
            // The account's files are checked below; the certificate is the CA's to give.
            CertificateSource::Acme(_) => Ok(()),
            // The chain is read here; the key is the key server's.
            CertificateSource::Keyless { cert, .. } => {
                read_certificates(&resolve(cert)).map(drop).map_err(CertificateError::UnreadableChain)
            }
            // What the internal CA would be asked for: a SAN per host.
            CertificateSource::InternalCa => hosts.iter().try_for_each(|h| match pki::SubjectAltName::parse(h) {
                Ok(_) => Ok(()),
                Err(e) => Err(CertificateError::InternalCa(InternalCaError::Pki(e))),
            }),
        };
        certificate.map_err(|source| Error::Certificate { site: index, source })?;
        let Some(trust) = &site.trust else { continue };
        let mut cas = match internal_ca {
            Some(certificates) if trust.internal_ca => certificates.to_vec(),
            _ => Vec::new(),
        };
        for file in &trust.ca_files {
            cas.extend(read_certificates(&resolve(file))?);
        }
        let crls = trust.crl_files.iter().map(|f| read_crl(&resolve(f))).collect::<Result<Vec<_>, _>>()?;
        // A store that trusts only an internal CA not at hand is put together by `serve`.
        if !cas.is_empty() || !trust.internal_ca {
            let cache_secs = config.tls.client_chain_cache_secs;
            TrustStore::new(provider.clone(), cas, crls, Vec::new(), Vec::new(), None, cache_secs)?;
        }
    }
    Ok(())
}

/// Waits for SIGTERM or Ctrl-C.
pub async fn wait_for_termination() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
