//! The gateway's link to the internal CA: its root as a trust anchor, its
//! revocations, and server certificates for sites with `internal_ca = true`,
//! issued on first use and renewed when a third of their lifetime is left (the
//! site's [`crate::certificates::SiteCertificate`] asks again hourly and swaps the
//! new one in).
//!
//! Revocations are followed, not re-read: the first load reads the whole revoked
//! set (streamed from the store into the compact set, never held as text) and the
//! cursor of the store's revocation change log, both of one moment; from then on only the
//! changes after the cursor are read and applied (a serial revoked is added, a
//! certificateHold released is removed) and the new set is swapped in. The new
//! set shares the bulk of the serials with the old one and copies only the
//! recent changes (see [`crate::trust::RevokedSet`]); every few thousand changes
//! they are merged into the bulk on a blocking thread. The changes are read
//! when the store says something changed (PostgreSQL: a listener on
//! `gatehouse_revocations`, told by each revoking transaction as it commits, so a
//! `gatehouse ca revoke` on any instance is refused by every gateway on that
//! database at once), and every poll interval in any case, which covers SQLite
//! (nothing to listen to), a listener connection that dropped (it reconnects
//! with backoff; what it missed is read after the cursor) and a notice lost in
//! flight. The store's log never hands out a change behind a cursor already
//! read (see the store's `revocation_log.rs`), so nothing is missed either way.
//!
//! On a database the gateways share, a site's certificate is stored there once
//! (its key encrypted) and every instance serves that one; the instance that
//! finds none reusable issues under the site's renewal lease, so instances that
//! start at once issue once (see `acme_client/shared.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use store::{LeaseStore, RevocationNotice, Store};
use tokio::sync::Mutex;

use crate::acme_client::SharedSites;
use crate::certificates::subject_alt_names;
use crate::trust::{InternalRevocations, RevokedSet, RevokedSetBuilder};

mod publish;

use publish::Published;

/// Why the internal CA cannot be opened, or give what the gateway asks of it.
#[derive(Debug, thiserror::Error)]
pub enum InternalCaError {
    /// No CA in the data dir.
    #[error("no CA in {}; run `gatehouse ca init` first", .0.display())]
    NotInitialized(PathBuf),
    /// The root or intermediate certificate file cannot be read.
    #[error("cannot read {}: {source}", .path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why it cannot be read or is not PEM.
        source: pki::PemFileError,
    },
    /// The intermediate certificate is not X.509.
    #[error(
        "the CA's intermediate certificate is not a valid X.509 certificate; restore ca/intermediate.crt from a backup"
    )]
    MalformedIntermediate(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    /// The intermediate has no subjectKeyIdentifier, which revocations are looked up by.
    #[error("the intermediate certificate has no subject key identifier")]
    NoKeyIdentifier,
    /// The issuance database failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Issuing or storing a site certificate failed.
    #[error(transparent)]
    Pki(#[from] pki::Error),
    /// The shared database's copy of a site certificate could not be read or written.
    #[error("{0}")]
    Shared(String),
    /// A site certificate was written and does not read back as one.
    #[error("the certificate just issued cannot be read back")]
    NotReadBack,
}

/// The internal CA as the gateway sees it.
pub struct InternalCa {
    data_dir: PathBuf,
    root: CertificateDer<'static>,
    intermediate: CertificateDer<'static>,
    issuer_key_id: String,
    revocations: Arc<InternalRevocations>,
    /// Where in the store's revocation change log `revocations` is; `None` before the
    /// first load. Held while reading and applying, so the poll and the listener
    /// never apply one batch twice or out of order.
    cursor: Mutex<Option<u64>>,
    /// What reading revocations last failed with, while it fails: logged once, and
    /// again only when it says something else, not at every poll.
    read_failure: std::sync::Mutex<Option<String>>,
    store: Arc<dyn Store>,
    passphrase: Option<pki::Passphrase>,
    /// The database the gateways share, which holds site certificates once for all.
    shared: Option<SharedSites>,
    /// Bumped each time a changed revoked set is swapped in: the published CRL is
    /// made again after it changes.
    revocations_changed: AtomicU64,
    /// The CRL last made for publishing, or why it could not be made
    /// ([`InternalCa::published_crl`]).
    published: Mutex<Published>,
}

/// The longest wait before listening again after the listener connection failed.
const MAX_LISTEN_BACKOFF: Duration = Duration::from_secs(30);

impl InternalCa {
    /// Opens the CA in `data_dir` (its certificates and database; the key is read only to issue).
    pub async fn open(
        data_dir: &Path,
        store: Arc<dyn Store>,
        passphrase: Option<pki::Passphrase>,
    ) -> Result<InternalCa, InternalCaError> {
        let dir = pki::CaDir::new(data_dir);
        if !dir.exists() {
            return Err(InternalCaError::NotInitialized(data_dir.to_owned()));
        }
        let read = |path: PathBuf| {
            pki::read_first_pem_file(&path).map_err(|source| InternalCaError::Unreadable { path, source })
        };
        let root = read(dir.root_path())?;
        let intermediate = read(dir.intermediate_path())?;
        let key_id = key_id_of(&intermediate)?;
        let revocations = Arc::new(InternalRevocations {
            issuer_key_id: hex::decode(&key_id).unwrap_or_default(),
            serials: ArcSwap::from_pointee(RevokedSet::default()),
        });
        let ca = InternalCa {
            data_dir: data_dir.to_owned(),
            root,
            intermediate,
            issuer_key_id: key_id,
            revocations,
            cursor: Mutex::new(None),
            read_failure: std::sync::Mutex::new(None),
            store,
            passphrase,
            shared: None,
            revocations_changed: AtomicU64::new(0),
            published: Mutex::new(Published::default()),
        };
        ca.refresh_revocations().await?;
        Ok(ca)
    }

    /// Stores site certificates in the shared database, once for all instances.
    pub fn share_sites(mut self, shared: Option<SharedSites>) -> InternalCa {
        self.shared = shared;
        self
    }

    /// The root certificate (trust anchor for `trust = { internal_ca = true }`).
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }

    /// The intermediate, sent in chains.
    pub fn intermediate(&self) -> &CertificateDer<'static> {
        &self.intermediate
    }

    /// The live revocation set.
    pub fn revocations(&self) -> Arc<InternalRevocations> {
        self.revocations.clone()
    }

    /// Reads the revocation changes since the last read (the whole set the first
    /// time, or when the store's log is behind the cursor: another database) and
    /// swaps the new set in; returns whether it changed.
    pub async fn refresh_revocations(&self) -> Result<bool, InternalCaError> {
        let mut cursor = self.cursor.lock().await;
        let (serials, changes) = match *cursor {
            Some(after) => {
                let read = self.store.revocation_changes(&self.issuer_key_id, after).await?;
                if read.cursor < after {
                    tracing::warn!(
                        cursor = after,
                        log = read.cursor,
                        "the revocation log is behind this gateway's cursor (a restored or copied database); reading the whole revoked set"
                    );
                    *cursor = None;
                    drop(cursor);
                    return Box::pin(self.refresh_revocations()).await;
                }
                *cursor = Some(read.cursor);
                // Shares the base with the set in use; only the overlay is copied.
                let mut serials = RevokedSet::clone(&self.revocations.serials.load());
                let mut changed = false;
                for change in &read.changes {
                    changed |= serials.apply_hex(&change.serial, change.revoked);
                }
                if !changed {
                    return Ok(false);
                }
                if serials.overlay_full() {
                    serials = merged(serials).await;
                }
                (serials, read.changes.len())
            }
            None => {
                // Streamed into the compact set: no moment holds every serial as text.
                let mut builder = RevokedSetBuilder::default();
                *cursor = Some(self.store.revoked_serials(&self.issuer_key_id, &mut builder).await?);
                if builder.unreadable() > 0 {
                    tracing::warn!(
                        serials = builder.unreadable(),
                        "revoked serials in the issuance database are not hex and match no certificate; revoke them again with `gatehouse ca revoke`"
                    );
                }
                let serials = builder.build();
                if serials.is_empty() && self.revocations.serials.load().is_empty() {
                    return Ok(false);
                }
                (serials, 0)
            }
        };
        tracing::info!(revoked = serials.len(), changes, "internal CA revocation list updated");
        self.revocations.serials.store(Arc::new(serials));
        self.revocations_changed.fetch_add(1, Ordering::Release);
        Ok(true)
    }

    /// [`InternalCa::refresh_revocations`] while following: a failure is logged when
    /// it starts or changes (the database's URL and why it cannot be read, and that
    /// the gateway serves on with the set it has), and its end once reads work again,
    /// at the same level, so that whoever saw the one sees the other.
    async fn refresh_following(&self) {
        let failure = self.refresh_revocations().await.err().map(|e| e.to_string());
        let mut last = self.read_failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if *last == failure {
            return;
        }
        let revoked = self.revocations.serials.load().len();
        match &failure {
            Some(error) => tracing::warn!(
                %error,
                revoked,
                "cannot read revocations from the issuance database; serving on with the revocations read last until it answers"
            ),
            None => tracing::warn!(revoked, "revocations are read from the issuance database again"),
        }
        *last = failure;
    }

    /// Follows revocations until the runtime shuts down: reads the changes every
    /// `interval`, and at once when the store tells of one (where it can).
    pub fn follow_revocations(self: &Arc<Self>, interval: Duration) {
        let ca = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(ca) = ca.upgrade() else { return };
                ca.refresh_following().await;
            }
        });
        let ca = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(500);
            loop {
                let Some(store) = ca.upgrade().map(|ca| ca.store.clone()) else { return };
                match store.revocation_notices().await {
                    Ok(None) => return,
                    Ok(Some(mut notices)) => {
                        backoff = Duration::from_millis(500);
                        // What changed while no one listened is read now.
                        let mut notice = Ok(RevocationNotice::Missed);
                        loop {
                            let issuer = match notice {
                                Ok(RevocationNotice::Changed { issuer }) => Some(issuer),
                                Ok(RevocationNotice::Missed) => None,
                                Err(e) => {
                                    tracing::warn!(error = %e, "lost the database connection that hears of revocations; polling until it is back");
                                    break;
                                }
                            };
                            let Some(ca) = ca.upgrade() else { return };
                            if issuer.is_none_or(|issuer| issuer == ca.issuer_key_id) {
                                ca.refresh_following().await;
                            }
                            drop(ca);
                            notice = notices.next().await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "cannot listen for revocations; polling until it can");
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_LISTEN_BACKOFF);
            }
        });
    }

    /// A server certificate for `hosts` (chain, key): reused from the data dir while
    /// it has more than a third of its life left and names the same hosts, else issued anew.
    pub async fn site_certificate(
        &self,
        hosts: &[String],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), InternalCaError> {
        let stem = hosts.first().map(|h| h.replace('*', "_wildcard")).unwrap_or_else(|| "site".into());
        match &self.shared {
            Some(shared) => self.shared_site_certificate(shared, hosts, &stem).await,
            None => self.kept_certificate(pki::Profile::Server, hosts, &stem).await,
        }
    }

    /// The site certificate for `hosts` in the shared database, if reusable; else
    /// issued under the site's lease and stored there (or, when another instance holds
    /// the lease, what it stores). The data dir keeps a copy.
    async fn shared_site_certificate(
        &self,
        shared: &SharedSites,
        hosts: &[String],
        stem: &str,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), InternalCaError> {
        let mut sorted = hosts.to_vec();
        sorted.sort();
        let name = format!("internal-ca/{}", sorted.join(","));
        let unshared = |e: String| InternalCaError::Shared(format!("the shared certificate {name}: {e}"));
        let (_, crt_path, key_path) = self.site_paths(stem);
        loop {
            if let Some((chain_pem, key_pem)) = shared.read_pem(&name).await.map_err(unshared)?
                && let Some(found) = reusable_pem(&chain_pem, &key_pem, hosts)
            {
                pki::files::create_private_dir(&self.data_dir.join("gateway").join("certs"))?;
                pki::files::write_atomic(&key_path, key_pem.as_bytes(), pki::files::PRIVATE, true)?;
                pki::files::write_atomic(&crt_path, chain_pem.as_bytes(), pki::files::PUBLIC, true)?;
                return Ok(found);
            }
            let Some(lease) = shared.store().acquire_lease(&name, shared.holder(), shared.ttl()).await? else {
                tracing::info!(hosts = ?hosts, lease = %name, "another instance holds the lease; waiting for its certificate");
                tokio::time::sleep(shared.poll_interval()).await;
                continue;
            };
            tracing::info!(hosts = ?hosts, lease = %name, fencing = lease.fencing, "took the lease; issuing");
            let issued = self.issue_site(hosts, stem).await;
            let stored = match &issued {
                Ok((chain_pem, key_pem, not_after)) => {
                    shared.write_pem(&name, chain_pem, key_pem, *not_after, &lease).await.map_err(unshared)
                }
                Err(_) => Ok(()),
            };
            if let Err(e) = shared.store().release_lease(&lease).await {
                tracing::warn!(lease = %name, error = %e, "could not let the lease go; it runs out by itself");
            }
            stored?;
            issued?;
        }
    }

    /// Issues a site certificate for `hosts` and keeps it in the data dir:
    /// (chain PEM, key PEM, notAfter).
    async fn issue_site(&self, hosts: &[String], stem: &str) -> Result<(String, String, i64), InternalCaError> {
        let issued = self.issue_kept(pki::Profile::Server, hosts, stem).await?;
        let (_, leaf) =
            x509_parser::parse_x509_certificate(&issued.chain[0]).map_err(|_| InternalCaError::NotReadBack)?;
        let not_after = leaf.validity().not_after.timestamp();
        Ok((issued.chain_pem, issued.key_pem, not_after))
    }

    /// The keyless tunnel listener's server certificate for `hosts`, kept apart from
    /// the sites' (a site may serve the same names), reused and renewed as theirs are.
    pub async fn tunnel_certificate(
        &self,
        hosts: &[String],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), InternalCaError> {
        self.kept_certificate(pki::Profile::Server, hosts, "keyless-tunnel").await
    }

    /// A client certificate for `name` (the gateway's identity towards key servers),
    /// kept and reused as [`InternalCa::site_certificate`] keeps a site's.
    pub async fn client_certificate(
        &self,
        name: &str,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), InternalCaError> {
        self.kept_certificate(pki::Profile::Client, &[name.to_owned()], &format!("client-{name}")).await
    }

    async fn kept_certificate(
        &self,
        profile: pki::Profile,
        hosts: &[String],
        stem: &str,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), InternalCaError> {
        let (_, crt_path, key_path) = self.site_paths(stem);
        if let Some(found) = reusable(&crt_path, &key_path, hosts) {
            return Ok(found);
        }
        self.issue(profile, hosts, stem).await
    }

    /// Issues a certificate for `hosts` and keeps it in the data dir as `stem`.
    async fn issue(
        &self,
        profile: pki::Profile,
        hosts: &[String],
        stem: &str,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), InternalCaError> {
        let issued = self.issue_kept(profile, hosts, stem).await?;
        Ok((issued.chain, issued.key))
    }

    /// [`InternalCa::issue`], with the PEM it wrote. What was issued, not the files read
    /// back: another process sharing the data dir may have written one of them since.
    async fn issue_kept(&self, profile: pki::Profile, hosts: &[String], stem: &str) -> Result<Kept, InternalCaError> {
        let (dir, crt_path, key_path) = self.site_paths(stem);
        let issuer = pki::CaDir::new(&self.data_dir).issuer(self.passphrase.as_ref())?;
        let ca = pki::CertificateAuthority::new(issuer, self.store.clone());
        let sans = hosts.iter().map(|h| pki::SubjectAltName::parse(h)).collect::<Result<Vec<_>, _>>()?;
        let request = pki::LeafRequest {
            profile,
            subject: pki::Subject::common_name(hosts.first().map(String::as_str).unwrap_or("gatehouse")),
            sans,
            days: None,
        };
        let (issued, key) = ca.issue(&request, pki::KeyType::EcdsaP256).await?;
        pki::files::create_private_dir(&dir)?;
        let key_pem = pki::encode_private_key(&key, None)?;
        let chain_pem = format!("{}{}", pki::pem_cert(&issued.der), pki::pem_cert(&self.intermediate));
        pki::files::write_atomic(&key_path, key_pem.as_bytes(), pki::files::PRIVATE, true)?;
        pki::files::write_atomic(&crt_path, chain_pem.as_bytes(), pki::files::PUBLIC, true)?;
        tracing::info!(hosts = ?hosts, serial = %issued.serial, profile = profile.name(), "issued a certificate from the internal CA");
        let chain = vec![CertificateDer::from(issued.der.to_vec()), self.intermediate.clone()];
        let key = PrivateKeyDer::Pkcs8(pki::private_key_der(&key)?.to_vec().into());
        Ok(Kept { chain, key, chain_pem, key_pem: key_pem.to_string() })
    }

    /// The directory, chain file and key file of the kept certificate `stem`.
    fn site_paths(&self, stem: &str) -> (PathBuf, PathBuf, PathBuf) {
        let dir = self.data_dir.join("gateway").join("certs");
        (dir.clone(), dir.join(format!("{stem}.fullchain.pem")), dir.join(format!("{stem}.key")))
    }
}

/// A certificate just issued and kept in the data dir, as issued and as written.
struct Kept {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    chain_pem: String,
    key_pem: String,
}

/// `serials` with its overlay merged into a new base, on a blocking thread: the
/// merge is a pass over the whole set. Should it fail, the overlay stays.
async fn merged(serials: RevokedSet) -> RevokedSet {
    let merging = serials.clone();
    tokio::task::spawn_blocking(move || merging.merged()).await.unwrap_or(serials)
}

fn key_id_of(cert: &CertificateDer<'_>) -> Result<String, InternalCaError> {
    let key_id = pki::subject_key_id_of_der(cert).map_err(InternalCaError::MalformedIntermediate)?;
    key_id.map(hex::encode_upper).ok_or(InternalCaError::NoKeyIdentifier)
}

/// The stored chain and key if they cover `hosts` and have over a third of their lifetime left.
fn reusable(
    crt: &Path,
    key: &Path,
    hosts: &[String],
) -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = std::fs::read_to_string(crt).ok()?;
    let key = std::fs::read_to_string(key).ok()?;
    reusable_pem(&chain, &key, hosts)
}

/// [`reusable`] of a chain and key in PEM.
fn reusable_pem(
    chain_pem: &str,
    key_pem: &str,
    hosts: &[String],
) -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain: Vec<CertificateDer<'static>> = pki::read_pem(chain_pem.as_bytes()).ok()?;
    let key: PrivateKeyDer<'static> = pki::read_first_pem(key_pem.as_bytes()).ok()?;
    let (_, leaf) = x509_parser::parse_x509_certificate(chain.first()?).ok()?;
    let validity = leaf.validity();
    let (start, end) = (validity.not_before.timestamp(), validity.not_after.timestamp());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if now > end - (end - start) / 3 {
        return None;
    }
    let names = subject_alt_names(&leaf);
    if !hosts.iter().all(|h| names.contains(h)) {
        return None;
    }
    // Two processes sharing a data dir may each have written one of the pair.
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).ok()?;
    let public = signer.public_key()?;
    (public.as_ref() == leaf.tbs_certificate.subject_pki.raw).then_some((chain, key))
}
