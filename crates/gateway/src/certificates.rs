//! Site certificates: where each comes from ([`CertificateSource`]), loading one into a
//! rustls [`CertifiedKey`] with its checks, and each site's resolver ([`SiteCertificate`]),
//! which hands the certificate to every handshake and takes a new one in place.
//!
//! A site's `ServerConfig` is built around its resolver, so a replaced or renewed
//! certificate reaches the next handshake without rebuilding anything, and open
//! connections keep the one they began with. The site is picked by SNI before the
//! handshake and each site has a resolver of its own: a site never serves another's
//! certificate.
//!
//! What is refused: a chain or key that cannot be read, a key that does not belong to
//! the certificate and, as a replacement, a certificate that covers fewer of the site's
//! names than the one serving, or that is not valid now while the one serving is. The
//! certificate serving goes on serving, and the refusal is logged once per change.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{Error as TlsError, InconsistentKeys};
use x509_parser::certificate::X509Certificate;

use crate::acme_client::{AcmeClient, AcmeConfig, Managed, Stored};
use crate::internal_ca::{InternalCa, InternalCaError};
use crate::keyless::KeyServers;
use crate::keyless::signer::RemoteKey;
use crate::sites::{FileStamps, host_matches};
use crate::trust::{TrustError, read_certificates};

/// Where a site's certificate comes from: the `certificate` table of a `[[site]]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CertificateSource {
    /// `{ cert = "chain.pem", key = "key.pem" }`: PEM files (chain leaf first), read
    /// again when either changes. Relative paths start at the config file's directory.
    Files {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// `{ internal_ca = true }`: issued by the internal CA for the site's host names,
    /// renewed when a third of its lifetime is left.
    InternalCa,
    /// `{ acme = "NAME" }`: obtained and renewed through the `[[acme]]` table of that name
    /// (see [`crate::acme_client`]).
    Acme(String),
    /// `{ cert = "chain.pem", keyless = "NAME" }`: the chain from a file (read again when
    /// it changes), signed for by the key servers of the `[[keyless]]` table of that name
    /// (see [`crate::keyless`]).
    Keyless {
        /// Certificate chain.
        cert: PathBuf,
        /// The `[[keyless]]` table.
        name: String,
    },
}

/// Why a certificate cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// The chain file cannot be read or holds no certificate (the message names the file).
    #[error(transparent)]
    UnreadableChain(TrustError),
    /// The key file cannot be read or is not a PEM private key.
    #[error("{path}: not a PEM private key: {source}")]
    UnreadableKey {
        /// The key file.
        path: PathBuf,
        /// Why it cannot be read or is not PEM.
        source: pki::PemFileError,
    },
    /// A private key of a kind the TLS stack cannot sign with.
    #[error("the private key is unusable: {0}")]
    UnusableKey(TlsError),
    /// The private key is not the one the certificate was issued for.
    #[error("the private key does not belong to the certificate; replace the two together")]
    KeyMismatch,
    /// The chain cannot be used as it is (rustls's reason).
    #[error("the certificate chain is unusable: {0}")]
    Malformed(TlsError),
    /// The leaf certificate is not X.509.
    #[error(
        "the leaf certificate is not a valid X.509 certificate; give the chain as PEM, leaf first, as `openssl x509` \
         writes it"
    )]
    Unparsable(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    /// `internal_ca = true` without a CA to issue from.
    #[error("a site has certificate.internal_ca = true but there is no CA in the data dir")]
    NoInternalCa,
    /// The internal CA could not read or issue the site certificate.
    #[error("the internal CA cannot provide the site certificate: {0}")]
    InternalCa(InternalCaError),
    /// A replacement that covers fewer of the site's names than the certificate serving.
    #[error("the new certificate does not cover {}, which the one serving does", .0.join(", "))]
    NamesLost(Vec<String>),
    /// `acme = "NAME"` without an ACME client or table (a configuration that failed validation).
    #[error("a site has certificate.acme = \"{0}\" but there is no such [[acme]] table")]
    NoAcme(String),
    /// `keyless = "NAME"` and no such table, or its key servers cannot be set up.
    #[error("keyless: {0}")]
    Keyless(String),
    /// A certificate the ACME client kept cannot be read.
    #[error("the certificate kept in the data dir is unusable: {0}")]
    Kept(String),
    /// The placeholder served until the first ACME certificate could not be made.
    #[error("cannot make the placeholder certificate: {0}")]
    Placeholder(String),
    /// A replacement outside its validity period while the certificate serving is within its own.
    #[error("the new certificate is not valid now (from {not_before} to {not_after}) and the one serving is")]
    NotValidNow {
        /// notBefore, RFC 3339.
        not_before: String,
        /// notAfter, RFC 3339.
        not_after: String,
    },
}

/// A `CertifiedKey` from a chain (leaf first) and its private key, checked to belong
/// together. A key that cannot tell its public key (a remote signer may not) is taken
/// on trust, as rustls does.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, CertificateError> {
    let signing_key = provider.key_provider.load_private_key(key).map_err(CertificateError::UnusableKey)?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(TlsError::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(TlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(CertificateError::KeyMismatch),
        Err(e) => Err(CertificateError::Malformed(e)),
    }
}

/// What certificates can come from besides files: the internal CA, and ACME accounts.
#[derive(Clone, Copy, Default)]
pub struct Issuers<'a> {
    /// The internal CA, when the data dir has one.
    pub internal: Option<&'a Arc<InternalCa>>,
    /// The process's ACME client.
    pub acme: Option<&'a Arc<AcmeClient>>,
    /// The configuration's `[[acme]]` tables.
    pub acme_tables: &'a [AcmeConfig],
    /// The key servers of the `[[keyless]]` tables, by name.
    pub keyless: Option<&'a std::collections::HashMap<String, Arc<KeyServers>>>,
}

/// The `CertifiedKey` of a certificate the ACME client keeps.
pub fn stored_key(stored: &Stored, provider: &CryptoProvider) -> Result<CertifiedKey, CertificateError> {
    let chain = pki::read_pem(stored.chain_pem.as_bytes())
        .map_err(|e| CertificateError::Kept(format!("the chain is not PEM: {e}")))?;
    let key = pki::read_first_pem(stored.key_pem.as_bytes())
        .map_err(|e| CertificateError::Kept(format!("the key is not PEM: {e}")))?;
    certified_key(chain, key, provider)
}

/// What happened when a site's certificate was looked at again ([`SiteCertificate::refresh`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// Nothing to read, or the same certificate.
    Unchanged,
    /// A new certificate serves the next handshakes.
    Replaced,
    /// The new certificate was refused (and logged); the old one keeps serving.
    Refused,
}

/// One site's certificate: the rustls resolver of its `ServerConfig`, holding the
/// certificate served now, and where to get it again.
pub struct SiteCertificate {
    source: CertificateSource,
    hosts: Vec<String>,
    /// The `[[acme]]` table of an ACME source, as it was when loaded.
    acme_table: Option<AcmeConfig>,
    origin: Origin,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    /// What the files looked like when last read, and since.
    files: Mutex<FilesSeen>,
    /// Dropped with the site: its ACME renewal task stops.
    acme_stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

/// What a site's certificate files looked like (taken before reading them): when last
/// read, loaded or refused, so they are read again once, and only once, they change;
/// and at the last look, if they had changed, so they are read only once they have
/// stayed the same between two looks: a pair being written (a key renamed into place
/// before its certificate, a file copied over in place) is not read half-way.
#[derive(Default)]
struct FilesSeen {
    read: FileStamps,
    changed: Option<FileStamps>,
}

impl FilesSeen {
    /// Whether to read the files, which look like `now`.
    fn due(&mut self, now: FileStamps) -> bool {
        if now == self.read {
            self.changed = None;
            return false;
        }
        if self.changed.as_ref() == Some(&now) {
            self.read = now;
            self.changed = None;
            return true;
        }
        self.changed = Some(now);
        false
    }
}

/// A [`CertificateSource`] resolved for reading: paths made absolute, the CA at hand.
enum Origin {
    Files { cert: PathBuf, key: PathBuf },
    InternalCa(Arc<InternalCa>),
    Acme(Arc<Managed>),
    Keyless { cert: PathBuf, servers: Arc<KeyServers> },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Files { cert, key } => write!(f, "{} with key {}", cert.display(), key.display()),
            Origin::InternalCa(_) => f.write_str("the internal CA"),
            Origin::Acme(managed) => write!(f, "ACME ({})", managed.acme.name),
            Origin::Keyless { cert, servers } => write!(f, "{} with keyless {}", cert.display(), servers.name()),
        }
    }
}

impl Origin {
    fn stamps(&self) -> FileStamps {
        match self {
            Origin::Files { cert, key } => FileStamps::of([cert, key]),
            Origin::Keyless { cert, .. } => FileStamps::of([cert]),
            Origin::InternalCa(_) | Origin::Acme(_) => FileStamps::default(),
        }
    }

    /// Reads the certificate (files) or asks the CA for it (reused while fresh, else issued anew).
    async fn obtain(&self, hosts: &[String], provider: &CryptoProvider) -> Result<CertifiedKey, CertificateError> {
        let (chain, key) = match self {
            Origin::Files { cert, key } => {
                let chain = read_certificates(cert).map_err(CertificateError::UnreadableChain)?;
                let key = pki::read_first_pem_file(key)
                    .map_err(|source| CertificateError::UnreadableKey { path: key.clone(), source })?;
                (chain, key)
            }
            Origin::InternalCa(ca) => ca.site_certificate(hosts).await.map_err(CertificateError::InternalCa)?,
            Origin::Keyless { cert, servers } => {
                let chain = read_certificates(cert).map_err(CertificateError::UnreadableChain)?;
                let key =
                    RemoteKey::new(&chain[0], servers.clone()).map_err(|e| CertificateError::Keyless(e.to_string()))?;
                return Ok(CertifiedKey::new(chain, Arc::new(key)));
            }
            Origin::Acme(managed) => {
                let kept = managed.kept().await.map(|stored| stored_key(&stored, provider));
                return match kept {
                    Some(Ok(key)) => Ok(key),
                    Some(Err(e)) => {
                        tracing::warn!(
                            hosts = %hosts.join(","), acme = %managed.acme.name, error = %e,
                            "the kept certificate is unusable; serving a self-signed placeholder until the ACME order completes"
                        );
                        crate::acme_client::placeholder(hosts, provider).map_err(CertificateError::Placeholder)
                    }
                    None => {
                        tracing::warn!(
                            hosts = %hosts.join(","), acme = %managed.acme.name,
                            "no certificate yet; serving a self-signed placeholder until the ACME order completes"
                        );
                        crate::acme_client::placeholder(hosts, provider).map_err(CertificateError::Placeholder)
                    }
                };
            }
        };
        certified_key(chain, key, provider)
    }
}

impl SiteCertificate {
    /// Loads the certificate of the site serving `hosts` (lowercase) from `source`;
    /// relative paths start at `base_dir`. A certificate that does not cover every host,
    /// or is not valid now, is served with a warning: clients decide what they accept.
    pub async fn load(
        source: &CertificateSource,
        hosts: &[String],
        base_dir: &Path,
        provider: &Arc<CryptoProvider>,
        issuers: &Issuers<'_>,
    ) -> Result<SiteCertificate, CertificateError> {
        let resolve = |p: &Path| if p.is_absolute() { p.to_owned() } else { base_dir.join(p) };
        let mut acme_table = None;
        let origin = match source {
            CertificateSource::Files { cert, key } => Origin::Files { cert: resolve(cert), key: resolve(key) },
            CertificateSource::InternalCa => {
                Origin::InternalCa(issuers.internal.cloned().ok_or(CertificateError::NoInternalCa)?)
            }
            CertificateSource::Keyless { cert, name } => {
                let servers = issuers.keyless.and_then(|k| k.get(name)).cloned().ok_or_else(|| {
                    CertificateError::Keyless(format!(
                        "no [[keyless]] table \"{name}\" (or its key servers could not be set up)"
                    ))
                })?;
                Origin::Keyless { cert: resolve(cert), servers }
            }
            CertificateSource::Acme(name) => {
                let no_acme = || CertificateError::NoAcme(name.clone());
                let table = issuers.acme_tables.iter().find(|t| t.name == *name).ok_or_else(no_acme)?;
                let client = issuers.acme.cloned().ok_or_else(no_acme)?;
                acme_table = Some(table.clone());
                let names = hosts.to_vec();
                Origin::Acme(Arc::new(Managed {
                    acme: table.clone(),
                    names,
                    base_dir: base_dir.to_owned(),
                    client,
                    standalone: None,
                }))
            }
        };
        let stamps = origin.stamps();
        let key = origin.obtain(hosts, provider).await?;
        let leaf = Leaf::of(&key)?;
        let uncovered = leaf.uncovered(hosts);
        if !uncovered.is_empty() {
            tracing::warn!(
                hosts = %hosts.join(","), from = %origin, uncovered = %uncovered.join(","),
                "the site certificate does not name every host of the site; clients refuse it for those"
            );
        }
        if !leaf.valid_at(now()) {
            tracing::warn!(
                hosts = %hosts.join(","), from = %origin, not_before = %pki::rfc3339(leaf.not_before),
                not_after = %pki::rfc3339(leaf.not_after), "the site certificate is not valid now"
            );
        }
        Ok(SiteCertificate {
            source: source.clone(),
            hosts: hosts.to_vec(),
            acme_table,
            origin,
            provider: provider.clone(),
            current: ArcSwap::from_pointee(key),
            files: Mutex::new(FilesSeen { read: stamps, changed: None }),
            acme_stop: Mutex::new(None),
        })
    }

    /// Starts renewing an ACME certificate (obtaining it first when the site has none):
    /// a task of its own, which stops when the site is dropped. Nothing for other sources.
    pub fn start(self: &Arc<Self>) {
        let Origin::Acme(managed) = &self.origin else { return };
        let (stop, stopped) = tokio::sync::oneshot::channel();
        *self.acme_stop.lock().unwrap_or_else(PoisonError::into_inner) = Some(stop);
        tokio::spawn(crate::acme_client::site::keep_site(Arc::downgrade(self), managed.clone(), stopped));
    }

    /// Whether this is the certificate of a site with `source` and `hosts` (and, for an
    /// ACME source, the same `[[acme]]` table): a reloaded configuration keeps it (and
    /// what it serves now) rather than loading it anew.
    pub fn is_for(
        &self,
        source: &CertificateSource,
        hosts: &[String],
        acme_tables: &[AcmeConfig],
        keyless: &std::collections::HashMap<String, Arc<KeyServers>>,
    ) -> bool {
        let table = match source {
            CertificateSource::Acme(name) => acme_tables.iter().find(|t| t.name == *name),
            _ => None,
        };
        let same_key_servers = match (&self.origin, source) {
            (Origin::Keyless { servers, .. }, CertificateSource::Keyless { name, .. }) => {
                keyless.get(name).is_some_and(|now| Arc::ptr_eq(now, servers))
            }
            _ => true,
        };
        self.source == *source && self.hosts == hosts && self.acme_table.as_ref() == table && same_key_servers
    }

    /// The TLS provider its keys are loaded with.
    pub(crate) fn provider(&self) -> &CryptoProvider {
        &self.provider
    }

    /// The hosts of the site.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// notAfter of the certificate serving, Unix seconds (for `/metrics`).
    pub fn not_after(&self) -> Option<i64> {
        Leaf::of(&self.current()).ok().map(|l| l.not_after)
    }

    /// The certificate served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Gets the certificate from its source again if it may have changed, and swaps it in
    /// when it did: files once they changed since last read and then stayed the same until
    /// this look (called every second, a change is served within two), the internal CA's
    /// when `renewal_due` (it renews a certificate with a third of its lifetime left). A
    /// new certificate is logged, and so is a refused one.
    pub async fn refresh(&self, renewal_due: bool) -> Refresh {
        let due = match &self.origin {
            Origin::Files { .. } | Origin::Keyless { .. } => {
                let now = self.origin.stamps();
                self.files.lock().unwrap_or_else(PoisonError::into_inner).due(now)
            }
            Origin::InternalCa(_) => renewal_due,
            // Its own task renews it (see `start`).
            Origin::Acme(_) => false,
        };
        if !due {
            return Refresh::Unchanged;
        }
        let replaced = match self.origin.obtain(&self.hosts, &self.provider).await {
            Ok(key) => self.replace(key),
            Err(e) => Err(e),
        };
        let (hosts, from) = (self.hosts.join(","), &self.origin);
        match replaced {
            Ok(false) => Refresh::Unchanged,
            Ok(true) => {
                let leaf = Leaf::of(&self.current());
                let (serial, not_after) = leaf.map(|l| (l.serial, pki::rfc3339(l.not_after))).unwrap_or_default();
                if let Origin::InternalCa(_) = self.origin {
                    tracing::info!(%hosts, %from, %serial, %not_after, "certificate renewed");
                } else {
                    tracing::info!(%hosts, %from, %serial, %not_after, "certificate replaced");
                }
                Refresh::Replaced
            }
            Err(error) => {
                tracing::error!(%hosts, %from, %error, "new certificate refused; the current one keeps serving");
                Refresh::Refused
            }
        }
    }

    /// Serves `new` from the next handshake on; `Ok(false)` when it is the certificate
    /// serving. Refused when it covers fewer of the site's names than the one serving, or
    /// is not valid now while that one is.
    pub fn replace(&self, new: CertifiedKey) -> Result<bool, CertificateError> {
        let current = self.current.load_full();
        if current.cert == new.cert {
            return Ok(false);
        }
        let fresh = Leaf::of(&new)?;
        // The one serving was checked when it came; one that cannot be parsed covers nothing.
        let serving = Leaf::of(&current).ok();
        let lost: Vec<String> = match &serving {
            Some(serving) => {
                fresh.uncovered(&self.hosts).into_iter().filter(|h| serving.covers(h)).map(str::to_owned).collect()
            }
            None => Vec::new(),
        };
        if !lost.is_empty() {
            return Err(CertificateError::NamesLost(lost));
        }
        let now = now();
        if serving.is_some_and(|s| s.valid_at(now)) && !fresh.valid_at(now) {
            return Err(CertificateError::NotValidNow {
                not_before: pki::rfc3339(fresh.not_before),
                not_after: pki::rfc3339(fresh.not_after),
            });
        }
        self.current.store(Arc::new(new));
        Ok(true)
    }
}

impl fmt::Debug for SiteCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SiteCertificate").field("hosts", &self.hosts).field("source", &self.source).finish()
    }
}

impl ResolvesServerCert for SiteCertificate {
    /// The certificate serving now, whatever the ClientHello: the site was chosen by its SNI.
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// What the checks need of a leaf certificate.
pub(crate) struct Leaf {
    pub(crate) names: Vec<String>,
    pub(crate) serial: String,
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

impl Leaf {
    fn of(key: &CertifiedKey) -> Result<Leaf, CertificateError> {
        Leaf::from_der(key.end_entity_cert().map_err(CertificateError::Malformed)?)
    }

    pub(crate) fn from_der(der: &[u8]) -> Result<Leaf, CertificateError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(CertificateError::Unparsable)?;
        let validity = cert.validity();
        Ok(Leaf {
            names: subject_alt_names(&cert),
            serial: hex::encode_upper(cert.tbs_certificate.serial.to_bytes_be()),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }

    /// Whether a subjectAltName covers `host` (a site's host name, IP address or wildcard).
    pub(crate) fn covers(&self, host: &str) -> bool {
        self.names.iter().any(|name| match (name.parse::<IpAddr>(), host.parse::<IpAddr>()) {
            (Ok(name), Ok(host)) => name == host,
            (Err(_), Err(_)) => host_matches(name, host),
            _ => false,
        })
    }

    /// The hosts no subjectAltName covers.
    fn uncovered<'h>(&self, hosts: &'h [String]) -> Vec<&'h str> {
        hosts.iter().map(String::as_str).filter(|h| !self.covers(h)).collect()
    }

    pub(crate) fn valid_at(&self, unix: i64) -> bool {
        (self.not_before..=self.not_after).contains(&unix)
    }
}

pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The DNS names (lowercase) and IP addresses of a certificate's subjectAltName, as text.
pub(crate) fn subject_alt_names(cert: &X509Certificate<'_>) -> Vec<String> {
    pki::subject_alt_names(cert)
        .into_iter()
        .filter_map(|name| match name {
            pki::SubjectAltName::Dns(dns) => Some(dns),
            pki::SubjectAltName::Ip(ip) => Some(ip.to_string()),
            pki::SubjectAltName::Email(_) | pki::SubjectAltName::Uri(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

    use super::*;
    use crate::config::Config;

    struct Ca {
        issuer: pki::Issuer,
        dir: tempfile::TempDir,
        provider: Arc<CryptoProvider>,
    }

    fn ca() -> Ca {
        let material =
            pki::create_ca(&pki::CaInit { name: "Seam".into(), key_type: pki::KeyType::EcdsaP256, days: 30 })
                .expect("a test CA");
        let issuer = pki::Issuer::new(
            material.intermediate.der,
            material.intermediate.key,
            material.root.der,
            pki::CaSettings::default(),
        )
        .expect("an issuer");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Ca { issuer, dir: tempfile::tempdir().expect("a temp dir"), provider }
    }

    impl Ca {
        /// A server certificate for `names`: (chain PEM with the intermediate, key PEM).
        fn issue(&self, names: &[&str]) -> (String, String) {
            let request = pki::LeafRequest {
                profile: pki::Profile::Server,
                subject: pki::Subject::common_name(names[0]),
                sans: names.iter().map(|n| pki::SubjectAltName::parse(n).expect("a name")).collect(),
                days: Some(10),
            };
            let (issued, key) = self.issuer.issue_with_new_key(&request, pki::KeyType::EcdsaP256).expect("issued");
            let chain = format!("{}{}", pki::pem_cert(&issued.der), pki::pem_cert(self.issuer.intermediate()));
            (chain, pki::encode_private_key(&key, None).expect("key PEM").to_string())
        }

        /// Writes `site.pem` and `site.key` (write, then rename over, as deploy tools do),
        /// each with a modification time of its own: the clock may not tick between two installs.
        fn install(&self, chain: &str, key: &str) {
            static INSTALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
            for (name, text) in [("site.key", key), ("site.pem", chain)] {
                let tmp = self.dir.path().join(format!("{name}.new"));
                std::fs::write(&tmp, text).expect("write");
                let n = INSTALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + n);
                std::fs::File::options().write(true).open(&tmp).and_then(|f| f.set_modified(mtime)).expect("mtime");
                std::fs::rename(&tmp, self.dir.path().join(name)).expect("rename");
            }
        }

        fn source(&self) -> CertificateSource {
            CertificateSource::Files { cert: "site.pem".into(), key: "site.key".into() }
        }

        async fn load(&self, hosts: &[&str]) -> Result<SiteCertificate, CertificateError> {
            let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
            SiteCertificate::load(&self.source(), &hosts, self.dir.path(), &self.provider, &Issuers::default()).await
        }

        fn server_config(&self, site: &Arc<SiteCertificate>) -> Arc<ServerConfig> {
            let config = ServerConfig::builder_with_provider(self.provider.clone())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_cert_resolver(site.clone());
            Arc::new(config)
        }

        fn client(&self, name: &str) -> ClientConnection {
            let mut roots = RootCertStore::empty();
            roots.add(self.issuer.root().clone()).expect("root");
            let config = ClientConfig::builder_with_provider(self.provider.clone())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = ServerName::try_from(name.to_owned()).expect("a server name");
            ClientConnection::new(Arc::new(config), name).expect("a client")
        }
    }

    /// Refreshes after the files have stayed the same for one look.
    async fn refresh_settled(site: &SiteCertificate) -> Refresh {
        assert_eq!(site.refresh(false).await, Refresh::Unchanged, "files just changed are not read yet");
        site.refresh(false).await
    }

    fn leaf_der(chain_pem: &str) -> CertificateDer<'static> {
        pki::read_first_pem(chain_pem.as_bytes()).expect("a PEM certificate")
    }

    fn to_server(client: &mut ClientConnection, server: &mut ServerConnection) {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).expect("client writes");
        }
        let mut rd = wire.as_slice();
        while !rd.is_empty() {
            server.read_tls(&mut rd).expect("server reads");
            server.process_new_packets().expect("server accepts");
        }
    }

    fn to_client(server: &mut ServerConnection, client: &mut ClientConnection) {
        let mut wire = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut wire).expect("server writes");
        }
        let mut rd = wire.as_slice();
        while !rd.is_empty() {
            client.read_tls(&mut rd).expect("client reads");
            client.process_new_packets().expect("client accepts the server");
        }
    }

    /// A handshake begun: the server has read the ClientHello, picked its certificate and answered.
    fn begin(ca: &Ca, config: &Arc<ServerConfig>) -> (ClientConnection, ServerConnection) {
        let mut client = ca.client("a.test");
        let mut server = ServerConnection::new(config.clone()).expect("a server");
        to_server(&mut client, &mut server);
        (client, server)
    }

    /// Completes the handshake; the leaf the client verified.
    fn finish(mut client: ClientConnection, mut server: ServerConnection) -> CertificateDer<'static> {
        to_client(&mut server, &mut client);
        to_server(&mut client, &mut server);
        assert!(!client.is_handshaking() && !server.is_handshaking(), "the handshake completes");
        client.peer_certificates().expect("a server certificate")[0].clone()
    }

    #[tokio::test]
    async fn new_handshakes_get_a_replaced_certificate_and_one_begun_keeps_its_own() {
        let ca = ca();
        let (first, first_key) = ca.issue(&["a.test"]);
        ca.install(&first, &first_key);
        let site = Arc::new(ca.load(&["a.test"]).await.expect("loaded"));
        let config = ca.server_config(&site);
        assert_eq!(finish_new(&ca, &config), leaf_der(&first));

        let (client, server) = begin(&ca, &config);
        let (second, second_key) = ca.issue(&["a.test"]);
        ca.install(&second, &second_key);
        assert_eq!(refresh_settled(&site).await, Refresh::Replaced);
        assert_eq!(finish(client, server), leaf_der(&first), "a handshake begun before keeps the certificate it got");
        assert_eq!(finish_new(&ca, &config), leaf_der(&second), "the next handshake gets the new certificate");
        assert_eq!(site.refresh(false).await, Refresh::Unchanged, "files read once per change");
    }

    fn finish_new(ca: &Ca, config: &Arc<ServerConfig>) -> CertificateDer<'static> {
        let (client, server) = begin(ca, config);
        finish(client, server)
    }

    #[tokio::test]
    async fn a_broken_replacement_is_refused_and_the_certificate_serving_stays() {
        let ca = ca();
        let (first, first_key) = ca.issue(&["a.test"]);
        ca.install(&first, &first_key);
        let site = Arc::new(ca.load(&["a.test"]).await.expect("loaded"));
        let config = ca.server_config(&site);

        let (_, other_key) = ca.issue(&["a.test"]);
        ca.install(&first, &other_key);
        assert_eq!(refresh_settled(&site).await, Refresh::Refused, "a key that is not the certificate's");
        assert_eq!(finish_new(&ca, &config), leaf_der(&first));
        assert_eq!(site.refresh(false).await, Refresh::Unchanged, "refused once, not every time it is looked at");

        ca.install("not a certificate\n", &first_key);
        assert_eq!(refresh_settled(&site).await, Refresh::Refused, "a chain file without a certificate");
        assert_eq!(finish_new(&ca, &config), leaf_der(&first));

        let (second, second_key) = ca.issue(&["a.test"]);
        ca.install(&second, &second_key);
        assert_eq!(refresh_settled(&site).await, Refresh::Replaced, "a good pair after a bad one");
        assert_eq!(finish_new(&ca, &config), leaf_der(&second));
    }

    #[tokio::test]
    async fn a_pair_written_one_file_at_a_time_is_read_once_both_are_in_place() {
        let ca = ca();
        let (first, first_key) = ca.issue(&["a.test"]);
        ca.install(&first, &first_key);
        let site = ca.load(&["a.test"]).await.expect("loaded");
        let (second, second_key) = ca.issue(&["a.test"]);
        // The key first: with the old certificate, it does not fit.
        ca.install(&first, &second_key);
        assert_eq!(site.refresh(false).await, Refresh::Unchanged);
        ca.install(&second, &second_key);
        assert_eq!(site.refresh(false).await, Refresh::Unchanged, "the certificate changed since the last look");
        assert_eq!(site.refresh(false).await, Refresh::Replaced, "no refusal of the half-written pair");
        assert_eq!(site.current().cert[0], leaf_der(&second));
    }

    #[tokio::test]
    async fn a_replacement_that_drops_one_of_the_site_names_is_refused() {
        let ca = ca();
        let (both, both_key) = ca.issue(&["a.test", "b.test"]);
        ca.install(&both, &both_key);
        let site = ca.load(&["a.test", "b.test"]).await.expect("loaded");
        let (narrow, narrow_key) = ca.issue(&["a.test"]);
        let key = pki::read_first_pem(narrow_key.as_bytes()).expect("key");
        let narrow_chain = pki::read_pem(narrow.as_bytes()).unwrap();
        let refused = site.replace(certified_key(narrow_chain, key, &ca.provider).expect("a pair"));
        assert!(matches!(&refused, Err(CertificateError::NamesLost(lost)) if lost == &["b.test"]), "{refused:?}");
        assert_eq!(site.current().cert[0], leaf_der(&both));
    }

    #[tokio::test]
    async fn a_certificate_that_cannot_be_loaded_names_what_is_wrong() {
        let ca = ca();
        let refused = ca.load(&["a.test"]).await.expect_err("no files yet");
        assert!(refused.to_string().contains("site.pem"), "{refused}");
        let (chain, _) = ca.issue(&["a.test"]);
        let (_, other_key) = ca.issue(&["a.test"]);
        ca.install(&chain, &other_key);
        assert!(matches!(ca.load(&["a.test"]).await, Err(CertificateError::KeyMismatch)));
        let none = Issuers::default();
        let internal = SiteCertificate::load(&CertificateSource::InternalCa, &[], ca.dir.path(), &ca.provider, &none);
        assert!(matches!(internal.await, Err(CertificateError::NoInternalCa)));
    }

    #[test]
    fn subject_alt_names_cover_a_site_host_as_clients_match_them() {
        let leaf = Leaf {
            names: vec!["*.example.com".into(), "app.test".into(), "127.0.0.1".into(), "::1".into()],
            serial: String::new(),
            not_before: 0,
            not_after: 0,
        };
        for host in ["x.example.com", "*.example.com", "app.test", "127.0.0.1", "0:0:0:0:0:0:0:1"] {
            assert!(leaf.covers(host), "{host}");
        }
        for host in ["example.com", "a.b.example.com", "other.test", "127.0.0.2"] {
            assert!(!leaf.covers(host), "{host}");
        }
    }

    #[test]
    fn a_certificate_table_becomes_a_source_or_says_what_is_wrong() {
        let config = |certificate: &str| {
            let text = format!(
                "[listen]\nhttps = \"127.0.0.1:8443\"\n[[site]]\nhosts = [\"a.test\"]\n{certificate}upstream = \"app\"\n\
                 [[upstream]]\nname = \"app\"\nservers = [\"http://127.0.0.1:3000\"]\n"
            );
            Config::parse(Path::new("t.toml"), &text)
        };
        let files = config("certificate = { cert = \"c.pem\", key = \"k.pem\" }\n").expect("valid");
        assert_eq!(
            files.sites[0].certificate.source(),
            Ok(&CertificateSource::Files { cert: "c.pem".into(), key: "k.pem".into() })
        );
        let internal = config("certificate = { internal_ca = true }\n").expect("valid");
        assert_eq!(internal.sites[0].certificate.source(), Ok(&CertificateSource::InternalCa));
        for (certificate, message) in [
            ("", "site[0].certificate is missing; give cert and key files, internal_ca = true or acme = \"NAME\""),
            ("certificate = { cert = \"c.pem\" }\n", "site[0].certificate needs both cert and key"),
            ("certificate = { key = \"k.pem\", internal_ca = true }\n", "site[0].certificate needs both cert and key"),
            (
                "certificate = { cert = \"c.pem\", key = \"k.pem\", internal_ca = true }\n",
                "site[0].certificate has more than one of files, internal_ca = true and acme; choose one",
            ),
        ] {
            let refused = config(certificate).expect_err("refused");
            assert_eq!(refused.messages, [message]);
        }
    }
}
