//! One site's certificate resolver: the certificate serving now, where to read it
//! again (files, the internal CA, ACME, a key server), and the checks a replacement
//! passes before it serves the next handshake.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{CertificateError, CertificateSource, Issuers, Leaf, certified_key, now, stored_key};
use crate::acme_client::{AcmeConfig, Managed};
use crate::internal_ca::InternalCa;
use crate::keyless::KeyServers;
use crate::keyless::signer::RemoteKey;
use crate::sites::FileStamps;
use crate::trust::read_certificates;

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
