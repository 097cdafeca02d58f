//! The served configuration, built from a validated [`Config`]: sites with
//! their rustls `ServerConfig`, trust stores and routes resolved to upstream
//! pools, and the lookup from SNI / Host to a site. A reload builds a new
//! [`Runtime`] and swaps it in; connections keep the one they started with.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use http::HeaderValue;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::config::{Config, MtlsMode, RouteMtls, TlsVersion};
use crate::internal_ca::InternalCa;
use crate::trust::{HandshakePolicy, SiteVerifier, TrustStore, read_certificates, read_crl};
use crate::upstream::Pool;

/// A route: the longest matching prefix wins.
#[derive(Debug)]
pub struct Route {
    /// Path prefix.
    pub prefix: String,
    /// A valid client certificate is required here.
    pub require_cert: bool,
    /// Where requests go.
    pub upstream: Arc<Pool>,
}

/// One site, ready to serve.
pub struct Site {
    /// Position in the config, for logs.
    pub index: usize,
    /// Host names and wildcards, lowercase.
    pub hosts: Vec<String>,
    /// Client-certificate mode.
    pub mtls: MtlsMode,
    /// TLS configuration for connections to this site.
    pub tls: Arc<ServerConfig>,
    /// Trust store, when the site verifies client certificates.
    pub trust: Option<Arc<TrustStore>>,
    /// Routes, longest prefix first; the site default last (prefix "").
    pub routes: Vec<Route>,
    /// `Strict-Transport-Security` value.
    pub hsts: Option<HeaderValue>,
}

impl Site {
    /// The route for a path.
    pub fn route(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| path.starts_with(&r.prefix))
    }

    /// Whether `host` (no port, lowercase) is one of this site's names.
    pub fn serves(&self, host: &str) -> bool {
        self.hosts.iter().any(|pattern| host_matches(pattern, host))
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.split_once('.').is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

/// Everything a connection needs, swapped as a whole on reload.
pub struct Runtime {
    /// The configuration it was built from.
    pub config: Config,
    sites: Vec<Arc<Site>>,
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
    /// Upstream pools by name.
    pub pools: HashMap<String, Arc<Pool>>,
}

impl Runtime {
    /// Builds a runtime; `base_dir` resolves relative paths (the config file's directory).
    pub async fn build(
        config: Config,
        base_dir: &Path,
        provider: Arc<CryptoProvider>,
        internal: Option<&Arc<InternalCa>>,
    ) -> Result<Runtime, String> {
        let resolve = |p: &Path| {
            if p.is_absolute() { p.to_owned() } else { base_dir.join(p) }
        };
        let mut pools = HashMap::new();
        for upstream in &config.upstreams {
            let pool = Arc::new(Pool::new(upstream, base_dir).map_err(|e| e.to_string())?);
            pools.insert(upstream.name.clone(), pool);
        }
        let versions: &[&rustls::SupportedProtocolVersion] = match config.tls.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let mut sites = Vec::new();
        let (mut exact, mut wildcard) = (HashMap::new(), HashMap::new());
        for (index, sc) in config.sites.iter().enumerate() {
            let hosts: Vec<String> = sc.hosts.iter().map(|h| h.get_ref().to_ascii_lowercase()).collect();
            let (chain, key) = if sc.certificate.internal_ca {
                let ca =
                    internal.ok_or("a site has certificate.internal_ca = true but there is no CA in the data dir")?;
                ca.site_certificate(&hosts).await?
            } else {
                let cert = resolve(sc.certificate.cert.as_deref().unwrap_or(Path::new("")));
                let key = resolve(sc.certificate.key.as_deref().unwrap_or(Path::new("")));
                load_pair(&cert, &key)?
            };
            let trust = match &sc.trust {
                None => None,
                Some(t) => {
                    let mut roots = Vec::new();
                    if t.internal_ca {
                        let ca = internal
                            .ok_or("a trust store has internal_ca = true but there is no CA in the data dir")?;
                        // The intermediate is an anchor too: clients (curl, browsers) send only their leaf.
                        roots.push(ca.root().clone());
                        roots.push(ca.intermediate().clone());
                    }
                    for f in &t.ca_files {
                        roots.extend(read_certificates(&resolve(f)).map_err(|e| e.to_string())?);
                    }
                    let crls = t
                        .crl_files
                        .iter()
                        .map(|f| read_crl(&resolve(f)).map_err(|e| e.to_string()))
                        .collect::<Result<Vec<_>, _>>()?;
                    let revocations = if t.internal_ca { internal.map(|ca| ca.revocations()) } else { None };
                    let mut url_crls = Vec::new();
                    let mut next_updates = Vec::new();
                    for url in &t.crl_urls {
                        let fetched = crate::crl_fetch::fetch(url).await?;
                        url_crls.push(fetched.crl);
                        next_updates.push(fetched.next_update);
                    }
                    let store = Arc::new(TrustStore::new(
                        provider.clone(),
                        roots,
                        crls,
                        url_crls,
                        t.crl_urls.clone(),
                        revocations,
                        config.tls.client_chain_cache_secs,
                    )?);
                    crate::crl_fetch::spawn_refresh(&store, t.crl_refresh_secs.max(1), next_updates);
                    Some(store)
                }
            };
            let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> = match sc.mtls {
                MtlsMode::Off => WebPkiClientVerifier::no_client_auth(),
                MtlsMode::Require => {
                    Arc::new(SiteVerifier::new(HandshakePolicy::Require, trust.clone(), provider.clone()))
                }
                MtlsMode::Optional | MtlsMode::Passthrough => {
                    Arc::new(SiteVerifier::new(HandshakePolicy::Ask, trust.clone(), provider.clone()))
                }
            };
            let mut tls = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)
                .map_err(|e| format!("TLS versions: {e}"))?
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)
                .map_err(|e| format!("site[{index}] certificate and key do not fit together: {e}"))?;
            tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

            let default_pool = sc.upstream.as_ref().and_then(|u| pools.get(u.get_ref()).cloned());
            let mut routes: Vec<Route> = sc
                .routes
                .iter()
                .filter_map(|r| {
                    let upstream = r
                        .upstream
                        .as_ref()
                        .and_then(|u| pools.get(u.get_ref()).cloned())
                        .or_else(|| default_pool.clone())?;
                    Some(Route {
                        prefix: r.path_prefix.clone(),
                        require_cert: r.mtls == Some(RouteMtls::Require),
                        upstream,
                    })
                })
                .collect();
            routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
            if let Some(pool) = default_pool {
                routes.push(Route { prefix: String::new(), require_cert: false, upstream: pool });
            }
            let hsts = sc.hsts_max_age.and_then(|age| HeaderValue::from_str(&format!("max-age={age}")).ok());
            for host in &hosts {
                match host.strip_prefix("*.") {
                    Some(suffix) => wildcard.insert(suffix.to_owned(), index),
                    None => exact.insert(host.clone(), index),
                };
            }
            sites.push(Arc::new(Site { index, hosts, mtls: sc.mtls, tls: Arc::new(tls), trust, routes, hsts }));
        }
        Ok(Runtime { config, sites, exact, wildcard, pools })
    }

    /// The site for an SNI name: exact, then wildcard; no SNI gets the first site.
    pub fn site_for_sni(&self, sni: Option<&str>) -> Option<&Arc<Site>> {
        let Some(name) = sni else {
            return self.sites.first();
        };
        let name = name.to_ascii_lowercase();
        if let Some(i) = self.exact.get(&name) {
            return self.sites.get(*i);
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).and_then(|i| self.sites.get(*i))
    }

    /// Starts the health checks of every pool.
    pub fn start_health_checks(&self) {
        for pool in self.pools.values() {
            pool.spawn_health_checks();
        }
    }
}

/// Loads a certificate chain and its private key from PEM files.
pub fn load_pair(cert: &Path, key: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = read_certificates(cert).map_err(|e| e.to_string())?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: not a PEM private key: {e}", key.display()))?;
    Ok((chain, key))
}
