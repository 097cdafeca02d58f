//! The served configuration, built from a validated [`Config`]: sites with
//! their rustls `ServerConfig`, trust stores and routes resolved to upstream
//! pools, and the lookup from SNI / Host to a site. A reload builds a new
//! [`Runtime`] and swaps it in; connections keep the one they started with.
//!
//! A reload carries over from the previous runtime what the change leaves as it
//! was, rather than building it again: an upstream pool (its servers' health and
//! its one health-check task), a site's certificate (see [`crate::certificates`]:
//! replaced in place when its files change, without a reload), and a trust store
//! (its fetched CRLs; changed CRL files are read into it).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderValue;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;

use crate::Error;
use crate::acme_client::AcmeClient;
use crate::certificates::{Issuers, SiteCertificate};
use crate::config::{Config, MtlsMode, RouteMtls, TlsVersion, TrustConfig};
use crate::internal_ca::InternalCa;
use crate::keyless::{InternalIdentity, KeyServers};
use crate::metrics::{Metrics, RequestDurations};
use crate::trust::{HandshakePolicy, SiteVerifier, TrustError, TrustStore, read_certificates, read_crl};
use crate::upstream::{Pool, UpstreamConfig};

/// `Strict-Transport-Security: max-age` of `mtls = "require"` sites that set none: one year.
pub const DEFAULT_HSTS_MAX_AGE: u64 = 31_536_000;

/// A route: the longest matching prefix wins.
#[derive(Debug)]
pub struct Route {
    /// Path prefix, canonical, without a trailing slash (`""`: the site default).
    pub prefix: String,
    /// The prefix is compared ignoring ASCII case.
    pub case_insensitive: bool,
    /// WebSocket upgrades are forwarded.
    pub websocket: bool,
    /// A valid client certificate is required here.
    pub require_cert: bool,
    /// Where requests go.
    pub upstream: Arc<Pool>,
    /// The histograms of its requests' durations, by status class (resolved when it was built).
    pub durations: RequestDurations,
}

/// One site, ready to serve.
pub struct Site {
    /// Position in the config, for logs.
    pub index: usize,
    /// Host names and wildcards, lowercase.
    pub hosts: Vec<String>,
    /// Client-certificate mode.
    pub mtls: MtlsMode,
    /// TLS configuration for connections to this site; its certificate is `certificate`'s.
    pub tls: Arc<ServerConfig>,
    /// The site's certificate, swapped in place when its source gives a new one.
    pub certificate: Arc<SiteCertificate>,
    /// Trust store, when the site verifies client certificates.
    pub trust: Option<Arc<TrustStore>>,
    /// Routes, longest prefix first; the site default last (prefix "").
    pub routes: Vec<Route>,
    /// `Strict-Transport-Security` value.
    pub hsts: Option<HeaderValue>,
}

impl Site {
    /// The route for a canonical path: the longest prefix it is under.
    pub fn route(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| crate::target::under_prefix(path, &r.prefix, r.case_insensitive))
    }

    /// Whether `host` (no port, lowercase) is one of this site's names.
    pub fn serves(&self, host: &str) -> bool {
        self.hosts.iter().any(|pattern| host_matches(pattern, host))
    }
}

/// Whether `pattern`, a name or a `*.` wildcard of one label, covers `host`.
pub(crate) fn host_matches(pattern: &str, host: &str) -> bool {
    pki::wildcard_matches(pattern, host)
}

/// What files looked like, taken before reading them: when the files look otherwise
/// later, they changed since (or while) they were read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FileStamps(Vec<(PathBuf, Option<FileStamp>)>);

/// What one file looked like. The inode tells a file renamed into place from the one it
/// replaced even within the resolution of modification times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    modified: SystemTime,
    len: u64,
    inode: u64,
}

impl FileStamps {
    /// How `paths` look now (`None`: the file cannot be read).
    pub(crate) fn of<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> FileStamps {
        let stamp = |path: &Path| {
            let metadata = std::fs::metadata(path).ok()?;
            Some(FileStamp { modified: metadata.modified().ok()?, len: metadata.len(), inode: metadata.ino() })
        };
        FileStamps(paths.into_iter().map(|p| (p.as_ref().to_owned(), stamp(p.as_ref()))).collect())
    }

    /// Whether a file that `earlier` has too looks otherwise here. A file only here is new
    /// to the watch: whatever began watching it has just read it.
    pub(crate) fn changed_since(&self, earlier: &FileStamps) -> bool {
        self.0.iter().any(|(path, now)| earlier.0.iter().any(|(p, then)| p == path && then != now))
    }
}

/// What a trust store was built from: its table, the chain cache setting, its files as they were.
struct TrustOrigin {
    config: TrustConfig,
    cache_secs: u64,
    ca_files: FileStamps,
    crl_files: FileStamps,
}

impl TrustOrigin {
    /// Whether the two differ at most in what their CRL files hold.
    fn same_but_crls(&self, other: &TrustOrigin) -> bool {
        self.config == other.config && self.cache_secs == other.cache_secs && self.ca_files == other.ca_files
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
    /// The origin TLS files of each pool, as they were when it was built.
    pool_files: HashMap<String, FileStamps>,
    trust_stores: Vec<(TrustOrigin, Arc<TrustStore>)>,
    /// The key servers of each `[[keyless]]` table, by name.
    keyless: HashMap<String, Arc<KeyServers>>,
}

impl Runtime {
    /// Builds a runtime; `base_dir` resolves relative paths (the config file's directory).
    /// Its routes and pools count in `metrics`.
    pub async fn build(
        config: Config,
        base_dir: &Path,
        provider: Arc<CryptoProvider>,
        internal: Option<&Arc<InternalCa>>,
        acme: Option<&Arc<AcmeClient>>,
        metrics: &Metrics,
    ) -> Result<Runtime, Error> {
        Runtime::assemble(config, base_dir, provider, (internal, acme), metrics, None).await
    }

    /// Builds the runtime of a changed configuration, taking over from `previous` what
    /// is unchanged: a pool whose `[[upstream]]` table and TLS files are the same (its
    /// servers' health stays, its health checks go on), a site certificate with the same
    /// source and hosts (and the certificate it serves now), a trust store with the same
    /// table and CA files (its CRL URLs are not fetched again; CRL files that changed are
    /// read into it in place, so connections open on it see them).
    pub async fn rebuild(
        previous: &Runtime,
        config: Config,
        base_dir: &Path,
        provider: Arc<CryptoProvider>,
        internal: Option<&Arc<InternalCa>>,
        acme: Option<&Arc<AcmeClient>>,
        metrics: &Metrics,
    ) -> Result<Runtime, Error> {
        Runtime::assemble(config, base_dir, provider, (internal, acme), metrics, Some(previous)).await
    }

    async fn assemble(
        config: Config,
        base_dir: &Path,
        provider: Arc<CryptoProvider>,
        (internal, acme): (Option<&Arc<InternalCa>>, Option<&Arc<AcmeClient>>),
        metrics: &Metrics,
        previous: Option<&Runtime>,
    ) -> Result<Runtime, Error> {
        let acme_tables: Vec<_> = config.acme.iter().map(|t| t.get_ref().clone()).collect();
        for table in &acme_tables {
            crate::acme_client::check_files(table, base_dir)
                .map_err(|problem| Error::AcmeTable { name: table.name.clone(), problem })?;
        }
        let keyless = keyless_servers(&config, base_dir, &provider, internal, previous).await?;
        let issuers = Issuers { internal, acme, acme_tables: &acme_tables, keyless: Some(&keyless) };
        let resolve = |p: &Path| {
            if p.is_absolute() { p.to_owned() } else { base_dir.join(p) }
        };
        let mut pools = HashMap::new();
        let mut pool_files = HashMap::new();
        for upstream in &config.upstreams {
            let files = FileStamps::of(origin_files(upstream).map(resolve));
            let pool = match previous.and_then(|p| p.unchanged_pool(upstream, &files)) {
                Some(pool) => pool,
                None => Arc::new(
                    Pool::new(upstream, base_dir)?.with_connect_durations(metrics.connect_durations(&upstream.name)),
                ),
            };
            pools.insert(upstream.name.clone(), pool);
            pool_files.insert(upstream.name.clone(), files);
        }
        let versions: &[&rustls::SupportedProtocolVersion] = match config.tls.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let mut sites = Vec::new();
        let mut trust_stores = Vec::new();
        let (mut exact, mut wildcard) = (HashMap::new(), HashMap::new());
        for (index, sc) in config.sites.iter().enumerate() {
            let hosts: Vec<String> = sc.hosts.iter().map(|h| h.get_ref().to_ascii_lowercase()).collect();
            let source = sc.certificate.source().map_err(|problem| Error::CertificateTable { site: index, problem })?;
            let kept = previous
                .and_then(|p| p.sites.iter().find(|s| s.certificate.is_for(source, &hosts, &acme_tables, &keyless)));
            let certificate = match kept {
                Some(site) => site.certificate.clone(),
                None => {
                    let certificate = Arc::new(
                        SiteCertificate::load(source, &hosts, base_dir, &provider, &issuers)
                            .await
                            .map_err(|source| Error::Certificate { site: index, source })?,
                    );
                    certificate.start();
                    certificate
                }
            };
            let trust = match &sc.trust {
                None => None,
                Some(t) => {
                    let origin = TrustOrigin {
                        config: t.clone(),
                        cache_secs: config.tls.client_chain_cache_secs,
                        ca_files: FileStamps::of(t.ca_files.iter().map(|f| resolve(f))),
                        crl_files: FileStamps::of(t.crl_files.iter().map(|f| resolve(f))),
                    };
                    let kept = previous.and_then(|p| p.trust_stores.iter().find(|(o, _)| o.same_but_crls(&origin)));
                    let store = match kept {
                        Some((before, store)) if before.crl_files == origin.crl_files => store.clone(),
                        // Only CRL files changed: read into the store in place, so the
                        // connections open on it check their certificates against them too.
                        Some((_, store)) => {
                            store.set_file_crls(read_crls(t, &resolve)?)?;
                            store.clone()
                        }
                        _ => trust_store(t, &config, &resolve, &provider, internal).await?,
                    };
                    trust_stores.push((origin, store.clone()));
                    Some(store)
                }
            };
            let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> = match sc.mtls {
                MtlsMode::Off => WebPkiClientVerifier::no_client_auth(),
                MtlsMode::Require => {
                    Arc::new(SiteVerifier::new(HandshakePolicy::Require, trust.clone(), provider.clone()))
                }
                MtlsMode::Optional => {
                    Arc::new(SiteVerifier::new(HandshakePolicy::Ask, trust.clone(), provider.clone()))
                }
                MtlsMode::Passthrough => {
                    Arc::new(SiteVerifier::new(HandshakePolicy::Forward, trust.clone(), provider.clone()))
                }
            };
            let mut tls = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)
                .map_err(Error::TlsVersions)?
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(certificate.clone());
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
                    // `/admin/` guards `/admin` too: an origin may serve its index there.
                    let prefix = r.path_prefix.trim_end_matches('/').to_owned();
                    Some(Route {
                        durations: metrics.request_durations(&prefix),
                        prefix,
                        case_insensitive: r.case_insensitive,
                        websocket: r.websocket,
                        require_cert: r.mtls == Some(RouteMtls::Require),
                        upstream,
                    })
                })
                .collect();
            routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
            if let Some(pool) = default_pool {
                routes.push(Route {
                    prefix: String::new(),
                    case_insensitive: false,
                    websocket: true,
                    require_cert: false,
                    upstream: pool,
                    durations: metrics.request_durations(""),
                });
            }
            // A site that requires client certificates is HTTPS-only by nature: HSTS by default.
            let hsts_age = sc.hsts_max_age.or((sc.mtls == MtlsMode::Require).then_some(DEFAULT_HSTS_MAX_AGE));
            let hsts = hsts_age.and_then(|age| HeaderValue::from_str(&format!("max-age={age}")).ok());
            for host in &hosts {
                match host.strip_prefix("*.") {
                    Some(suffix) => wildcard.insert(suffix.to_owned(), index),
                    None => exact.insert(host.clone(), index),
                };
            }
            sites.push(Arc::new(Site {
                index,
                hosts,
                mtls: sc.mtls,
                tls: Arc::new(tls),
                certificate,
                trust,
                routes,
                hsts,
            }));
        }
        Ok(Runtime { config, sites, exact, wildcard, pools, pool_files, trust_stores, keyless })
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

    /// The key servers of each `[[keyless]]` table.
    pub fn keyless_tables(&self) -> impl Iterator<Item = &Arc<KeyServers>> {
        self.keyless.values()
    }

    /// The sites, in configuration order.
    pub fn sites(&self) -> &[Arc<Site>] {
        &self.sites
    }

    /// Starts the health checks of every pool (a pool carried over keeps the ones it has).
    pub fn start_health_checks(&self) {
        for pool in self.pools.values() {
            pool.spawn_health_checks();
        }
    }

    /// Looks at every site's certificate source again and swaps in what changed: files
    /// modified since they were read, internal-CA certificates due for renewal when
    /// `renewal_due` (see [`SiteCertificate::refresh`]).
    pub async fn refresh_certificates(&self, renewal_due: bool) {
        for site in &self.sites {
            site.certificate.refresh(renewal_due).await;
        }
    }

    /// This runtime's pool for `upstream` if it was built from the same table and files.
    fn unchanged_pool(&self, upstream: &UpstreamConfig, files: &FileStamps) -> Option<Arc<Pool>> {
        let before = self.config.upstreams.iter().find(|u| u.name == upstream.name)?;
        if before != upstream || self.pool_files.get(&upstream.name) != Some(files) {
            return None;
        }
        self.pools.get(&upstream.name).cloned()
    }
}

/// The key servers of each `[[keyless]]` table: carried over from `previous` when the
/// table is the same (its connections stay open), else set up anew. A table without
/// `ca` trusts the internal CA, one without `client_cert` gets a client certificate
/// from it.
async fn keyless_servers(
    config: &Config,
    base_dir: &Path,
    provider: &Arc<CryptoProvider>,
    internal: Option<&Arc<InternalCa>>,
    previous: Option<&Runtime>,
) -> Result<HashMap<String, Arc<KeyServers>>, Error> {
    let mut servers = HashMap::new();
    for table in config.keyless.iter().map(|t| t.get_ref()) {
        let unchanged = previous.filter(|p| p.config.keyless.iter().any(|t| t.get_ref() == table));
        if let Some(kept) = unchanged.and_then(|p| p.keyless.get(&table.name)) {
            servers.insert(table.name.clone(), kept.clone());
            continue;
        }
        let identity = match internal {
            Some(ca) if table.ca.is_none() || table.client_cert.is_none() => {
                let (chain, key) = ca
                    .client_certificate("gatehouse-gateway")
                    .await
                    .map_err(|e| Error::Keyless(format!("keyless \"{}\": {e}", table.name)))?;
                Some(InternalIdentity { root: ca.root().clone(), chain, key })
            }
            _ => None,
        };
        let set_up = KeyServers::new(table, base_dir, provider, identity).map_err(|e| Error::Keyless(e.to_string()))?;
        servers.insert(table.name.clone(), Arc::new(set_up));
    }
    Ok(servers)
}

/// The files a pool reads: the origin CA bundle and client certificate.
fn origin_files(upstream: &UpstreamConfig) -> impl Iterator<Item = &Path> {
    upstream
        .tls
        .iter()
        .flat_map(|t| [Some(&t.ca), t.client_cert.as_ref(), t.client_key.as_ref()])
        .flatten()
        .map(|p| p.as_path())
}

/// Builds a site's trust store: its CA files and CRL files read, its CRL URLs fetched
/// (the refresh of those runs until the store is dropped).
async fn trust_store(
    t: &TrustConfig,
    config: &Config,
    resolve: &impl Fn(&Path) -> PathBuf,
    provider: &Arc<CryptoProvider>,
    internal: Option<&Arc<InternalCa>>,
) -> Result<Arc<TrustStore>, Error> {
    let mut roots = Vec::new();
    if t.internal_ca {
        let ca = internal.ok_or(Error::NoInternalCa)?;
        // The root is the anchor; the intermediate (issued by it) is a known
        // intermediate, added to the leaf-only chains clients (curl, browsers) send,
        // with its pathLen and name constraints checked (see `TrustStore::new`).
        roots.push(ca.root().clone());
        roots.push(ca.intermediate().clone());
    }
    for f in &t.ca_files {
        roots.extend(read_certificates(&resolve(f))?);
    }
    let crls = read_crls(t, resolve)?;
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
    Ok(store)
}

/// Reads a trust store's CRL files.
fn read_crls(
    t: &TrustConfig,
    resolve: &impl Fn(&Path) -> PathBuf,
) -> Result<Vec<rustls::pki_types::CertificateRevocationListDer<'static>>, TrustError> {
    t.crl_files.iter().map(|f| read_crl(&resolve(f))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime with one site (certificate files in `dir`) and one upstream `app` at `server`.
    fn config(dir: &Path, site: &str, server: &str) -> Config {
        let text = format!(
            "[listen]\nhttps = \"127.0.0.1:8443\"\n[[site]]\nhosts = [\"a.test\"]\n\
             certificate = {{ cert = \"site.pem\", key = \"site.key\" }}\nupstream = \"app\"\n{site}\n\
             [[upstream]]\nname = \"app\"\nservers = [\"{server}\"]\n"
        );
        Config::parse(&dir.join("gw.toml"), &text).expect("a valid config")
    }

    fn write_site_certificate(dir: &Path) {
        let material =
            pki::create_ca(&pki::CaInit { name: "Sites".into(), key_type: pki::KeyType::EcdsaP256, days: 30 }).unwrap();
        let issuer = pki::Issuer::new(
            material.intermediate.der,
            material.intermediate.key,
            material.root.der,
            pki::CaSettings::default(),
        )
        .unwrap();
        let request = pki::LeafRequest {
            profile: pki::Profile::Server,
            subject: pki::Subject::common_name("a.test"),
            sans: vec![pki::SubjectAltName::parse("a.test").unwrap()],
            days: Some(10),
        };
        let (issued, key) = issuer.issue_with_new_key(&request, pki::KeyType::EcdsaP256).unwrap();
        std::fs::write(dir.join("site.pem"), pki::pem_cert(&issued.der)).unwrap();
        std::fs::write(dir.join("site.key"), pki::encode_private_key(&key, None).unwrap().as_bytes()).unwrap();
    }

    #[tokio::test]
    async fn a_rebuild_keeps_what_the_change_leaves_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        write_site_certificate(dir.path());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (base, app) = (dir.path(), "http://127.0.0.1:3000");
        let metrics = Metrics::new();
        let first = Runtime::build(config(base, "", app), base, provider.clone(), None, None, &metrics).await.unwrap();

        let hsts = Runtime::rebuild(
            &first,
            config(base, "hsts_max_age = 600", app),
            base,
            provider.clone(),
            None,
            None,
            &metrics,
        );
        let hsts = hsts.await.unwrap();
        assert!(Arc::ptr_eq(&first.pools["app"], &hsts.pools["app"]), "the unchanged upstream keeps its pool");
        let (before, after) = (first.site_for_sni(Some("a.test")).unwrap(), hsts.site_for_sni(Some("a.test")).unwrap());
        assert!(Arc::ptr_eq(&before.certificate, &after.certificate), "the unchanged source keeps its certificate");
        assert!(after.hsts.is_some(), "and the change is in effect");

        let moved =
            Runtime::rebuild(&hsts, config(base, "", "http://127.0.0.1:3001"), base, provider, None, None, &metrics);
        let moved = moved.await.unwrap();
        assert!(!Arc::ptr_eq(&hsts.pools["app"], &moved.pools["app"]), "a changed upstream gets a new pool");
    }

    #[test]
    fn file_stamps_tell_a_changed_file_and_ignore_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "one").unwrap();
        let before = FileStamps::of([&a]);
        assert!(!FileStamps::of([&a, &b]).changed_since(&before), "a file not watched before is no change");
        let tmp = dir.path().join("a.new");
        std::fs::write(&tmp, "two").unwrap();
        std::fs::rename(&tmp, &a).unwrap();
        assert!(FileStamps::of([&a]).changed_since(&before), "a file renamed into place");
    }
}
