//! Client-certificate trust: the CA certificates and CRLs a site trusts, the
//! revoked serials of the internal CA (updated while running), and the one
//! verification routine used both during the handshake (`require`) and
//! right after it (`optional`). The reason a certificate is refused is a
//! [`Refusal`], which travels to the connection log and the metric label.
//!
//! Of the trusted CA certificates only roots are trust anchors; the others are
//! known intermediates, offered to path building on every verification (see
//! [`TrustStore::new`]), so the constraints they carry hold.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{DistinguishedName, RootCertStore};

pub use crate::refusal::{CertSummary, MIN_RSA_BITS, Refusal, check_end_entity, summarize};
pub use crate::site_verifier::{HandshakePolicy, SiteVerifier};
pub use files::{CrlError, TrustError, parse_crl, read_certificates, read_crl};
pub use revoked::{OVERLAY_LIMIT, RevokedSet, RevokedSetBuilder};

mod files;
mod revoked;

/// Remembered chains at most; the cache starts over when full.
const VERIFIED_CACHE_ENTRIES: usize = 16_384;

/// A chain that verified.
struct Verified {
    summary: CertSummary,
    authority_key_id: Option<Vec<u8>>,
    until: i64,
    generation: u64,
}

/// SHA-256 over the chain, each certificate length-prefixed.
fn chain_key(end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for der in std::iter::once(end_entity).chain(intermediates) {
        ctx.update(&(der.len() as u64).to_be_bytes());
        ctx.update(der);
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Revoked serials of the internal CA's issuing key, swapped for a new set when the database changes.
#[derive(Debug, Default)]
pub struct InternalRevocations {
    /// Key identifier of the internal intermediate.
    pub issuer_key_id: Vec<u8>,
    /// Revoked serials.
    pub serials: ArcSwap<RevokedSet>,
}

/// The site's trusted CA certificates, split by the part they play in path building.
#[derive(Debug, Default)]
struct TrustedCas {
    /// Where a path ends: webpki keeps an anchor's name and key and its name constraints.
    anchors: Vec<CertificateDer<'static>>,
    /// CAs a path goes through to an anchor, with every constraint they carry checked.
    intermediates: Vec<CertificateDer<'static>>,
    /// Subject names of both, for the CertificateRequest.
    subjects: Vec<DistinguishedName>,
    /// Subject key identifiers of both.
    key_ids: HashSet<Vec<u8>>,
}

impl TrustedCas {
    /// Splits trusted CA certificates (duplicates dropped) into anchors and known intermediates.
    ///
    /// A self-issued certificate (subject = issuer: a root) is an anchor. A certificate issued,
    /// directly or through others of them, by an anchor is a known intermediate: the internal
    /// CA's intermediate (issued by its root), or a bundle's intermediate next to its root.
    /// A certificate none of the others issued (a bundle holding only an intermediate, which
    /// nginx's `ssl_client_certificate` accepts too) is an anchor itself, so its basicConstraints
    /// pathLen does not apply to the CAs below it; to have it hold, trust its root as well.
    /// CAs that only issue each other (cross-signed, no root given) are anchors too.
    fn split(cas: Vec<CertificateDer<'static>>) -> Result<TrustedCas, TrustStoreError> {
        let mut unique: Vec<CertificateDer<'static>> = Vec::with_capacity(cas.len());
        for ca in cas {
            if !unique.contains(&ca) {
                unique.push(ca);
            }
        }
        let mut names = Vec::with_capacity(unique.len());
        let mut split = TrustedCas::default();
        for der in &unique {
            let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(TrustStoreError::UnparsableCa)?;
            names.push((cert.subject().as_raw().to_vec(), cert.issuer().as_raw().to_vec()));
            split.subjects.push(DistinguishedName::from(cert.subject().as_raw().to_vec()));
            split.key_ids.extend(pki::subject_key_id(&cert));
        }
        let subjects: HashSet<&[u8]> = names.iter().map(|(subject, _)| subject.as_slice()).collect();
        let is_anchor: Vec<bool> =
            names.iter().map(|(subject, issuer)| subject == issuer || !subjects.contains(issuer.as_slice())).collect();
        // Walk down from the anchors: each round takes in the CAs issued by one reached before.
        let mut reached = is_anchor.clone();
        loop {
            let reached_names: HashSet<&[u8]> =
                names.iter().zip(&reached).filter(|(_, r)| **r).map(|((subject, _), _)| subject.as_slice()).collect();
            let mut grew = false;
            for ((_, issuer), r) in names.iter().zip(reached.iter_mut()) {
                if !*r && reached_names.contains(issuer.as_slice()) {
                    *r = true;
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        for ((der, anchor), r) in unique.into_iter().zip(is_anchor).zip(reached) {
            if anchor || !r { split.anchors.push(der) } else { split.intermediates.push(der) }
        }
        Ok(split)
    }
}

/// The trust store of one site.
pub struct TrustStore {
    roots: Arc<RootCertStore>,
    /// Trusted CAs that are not anchors, added to the chain a client sends.
    intermediates: Vec<CertificateDer<'static>>,
    /// Subject names of every trusted CA, anchor or intermediate.
    hints: Vec<DistinguishedName>,
    /// The CRLs in force: from files, and fetched from URLs; replaced separately.
    crls: std::sync::Mutex<Crls>,
    provider: Arc<CryptoProvider>,
    verifier: ArcSwap<Arc<dyn ClientCertVerifier>>,
    internal: Option<Arc<InternalRevocations>>,
    /// Subject key identifiers of the trusted CA certificates, anchors and intermediates.
    trusted_key_ids: HashSet<Vec<u8>>,
    /// Chains verified recently (see [`TrustStore::verify`]).
    verified: std::sync::Mutex<HashMap<[u8; 32], Verified>>,
    /// Bumped whenever the CRLs change, so cached verdicts made before are ignored.
    generation: AtomicU64,
    /// How long a verified chain is remembered, seconds; 0 turns the cache off.
    cache_secs: i64,
    /// CRL URLs, refreshed by [`crate::crl_fetch::spawn_refresh`].
    pub crl_urls: Vec<String>,
}

impl fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustStore")
            .field("internal", &self.internal.is_some())
            .field("crl_urls", &self.crl_urls)
            .finish()
    }
}

/// Why a trust store cannot be built from its CA certificates and CRLs.
#[derive(Debug, thiserror::Error)]
pub enum TrustStoreError {
    /// A trusted CA certificate is not X.509.
    #[error(
        "a trusted CA certificate is not a valid X.509 certificate (a CERTIFICATE block of the bundle is damaged); \
         give the CA certificates as PEM, as `openssl x509` writes them"
    )]
    UnparsableCa(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    /// webpki does not take a trusted CA certificate as an anchor.
    #[error("a trusted CA certificate is unusable: {0}")]
    UnusableCa(rustls::Error),
    /// No CA certificate at all.
    #[error("the trust store has no CA certificate")]
    NoCa,
    /// The verifier refused the anchors or the CRLs.
    #[error("cannot build the client verifier: {0}")]
    Verifier(rustls::server::VerifierBuilderError),
}

fn build_verifier(
    roots: &Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<dyn ClientCertVerifier>, TrustStoreError> {
    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status()
        .build()
        .map_err(TrustStoreError::Verifier)
}

impl TrustStore {
    /// Builds a trust store from the CA certificates a site trusts, CRLs (from files and
    /// already-fetched URLs) and, optionally, the internal CA's live revocations.
    ///
    /// Only roots become trust anchors; a CA certificate issued by another of `cas` (the
    /// internal CA's intermediate next to its root) is a known intermediate, appended to the
    /// chain each client sends, so a client sending only its leaf verifies and the
    /// intermediate's pathLen and name constraints hold. A CA certificate none of `cas`
    /// issued is an anchor even when it is not self-signed: a site may trust just an
    /// intermediate, as nginx's `ssl_client_certificate` allows (its pathLen then does not
    /// apply; its name constraints do).
    pub fn new(
        provider: Arc<CryptoProvider>,
        cas: Vec<CertificateDer<'static>>,
        file_crls: Vec<CertificateRevocationListDer<'static>>,
        url_crls: Vec<CertificateRevocationListDer<'static>>,
        crl_urls: Vec<String>,
        internal: Option<Arc<InternalRevocations>>,
        cache_secs: u64,
    ) -> Result<TrustStore, TrustStoreError> {
        let TrustedCas { anchors, intermediates, subjects: hints, key_ids: trusted_key_ids } = TrustedCas::split(cas)?;
        let mut store = RootCertStore::empty();
        for anchor in anchors {
            store.add(anchor).map_err(TrustStoreError::UnusableCa)?;
        }
        if store.is_empty() {
            return Err(TrustStoreError::NoCa);
        }
        let roots = Arc::new(store);
        let all: Vec<_> = file_crls.iter().chain(&url_crls).cloned().collect();
        let verifier = build_verifier(&roots, &provider, all)?;

        Ok(TrustStore {
            roots,
            intermediates,
            hints,
            crls: std::sync::Mutex::new(Crls { files: file_crls, urls: url_crls }),
            provider,
            verifier: ArcSwap::from_pointee(verifier),
            internal,
            trusted_key_ids,
            verified: std::sync::Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            cache_secs: i64::try_from(cache_secs).unwrap_or(i64::MAX),
            crl_urls,
        })
    }

    /// Replaces the CRLs fetched from URLs (the file CRLs stay).
    pub fn set_url_crls(&self, url_crls: Vec<CertificateRevocationListDer<'static>>) -> Result<(), TrustStoreError> {
        self.replace_crls(|crls| crls.urls = url_crls)
    }

    /// Replaces the CRLs read from files (those fetched from URLs stay), in place, so
    /// connections open on this store check their certificates against them too.
    pub fn set_file_crls(&self, file_crls: Vec<CertificateRevocationListDer<'static>>) -> Result<(), TrustStoreError> {
        self.replace_crls(|crls| crls.files = file_crls)
    }

    /// Changes the CRLs and builds the verifier for them; cached verdicts made before are dropped.
    fn replace_crls(&self, change: impl FnOnce(&mut Crls)) -> Result<(), TrustStoreError> {
        let mut crls = lock(&self.crls);
        let mut changed = Crls { files: crls.files.clone(), urls: crls.urls.clone() };
        change(&mut changed);
        let all: Vec<_> = changed.files.iter().chain(&changed.urls).cloned().collect();
        self.verifier.store(Arc::new(build_verifier(&self.roots, &self.provider, all)?));
        *crls = changed;
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Verifies a client chain at `now`: v3 only, chains to a trusted root through the CAs the
    /// client sent and the site's known intermediates with their basicConstraints and name
    /// constraints, not revoked, EKU clientAuth, and the end-entity checks of
    /// [`check_end_entity`] (keyUsage allows digitalSignature, RSA of at least [`MIN_RSA_BITS`]).
    ///
    /// A chain that verified is remembered for `client_chain_cache_secs` (a minute by
    /// default; never past its notAfter, and forgotten when the CRLs change), so a client that reconnects costs one signature
    /// check (its handshake signature) instead of two. The internal CA's revocations are
    /// checked on every call.
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<CertSummary, Refusal> {
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let key = chain_key(end_entity, intermediates);
        let generation = self.generation.load(Ordering::Acquire);
        if self.cache_secs == 0 {
            let (summary, authority_key_id) = self.verify_uncached(end_entity, intermediates, now)?;
            return self.not_revoked(summary, authority_key_id);
        }
        let cached = lock(&self.verified)
            .get(&key)
            .filter(|v| v.generation == generation && now_secs < v.until)
            .map(|v| (v.summary.clone(), v.authority_key_id.clone()));
        let (summary, authority_key_id) = match cached {
            Some(hit) => hit,
            None => {
                let (summary, authority_key_id) = self.verify_uncached(end_entity, intermediates, now)?;
                let mut verified = lock(&self.verified);
                if verified.len() >= VERIFIED_CACHE_ENTRIES {
                    verified.clear();
                }
                let until = summary.not_after.min(now_secs.saturating_add(self.cache_secs));
                let entry = Verified {
                    summary: summary.clone(),
                    authority_key_id: authority_key_id.clone(),
                    until,
                    generation,
                };
                verified.insert(key, entry);
                (summary, authority_key_id)
            }
        };
        self.not_revoked(summary, authority_key_id)
    }

    /// The summary of a chain the handshake has just verified: a cache hit when the
    /// cache is on; without the cache, the leaf is only parsed (verifying twice would
    /// double the cost) and the internal revocations checked.
    pub fn verified_summary(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<CertSummary, Refusal> {
        if self.cache_secs > 0 {
            return self.verify(end_entity, intermediates, now);
        }
        let (summary, authority_key_id) = summarize(end_entity)?;
        self.not_revoked(summary, authority_key_id)
    }

    /// Changes whenever the CRLs do (a file, a URL refresh).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The internal CA's live revocation check, done on every verification.
    fn not_revoked(&self, summary: CertSummary, authority_key_id: Option<Vec<u8>>) -> Result<CertSummary, Refusal> {
        if let Some(internal) = &self.internal {
            let ours = authority_key_id.as_deref().is_none_or(|aki| aki == internal.issuer_key_id.as_slice());
            if ours && internal.serials.load().contains_hex(&summary.serial) {
                return Err(Refusal::Revoked);
            }
        }
        Ok(summary)
    }

    fn verify_uncached(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(CertSummary, Option<Vec<u8>>), Refusal> {
        let (summary, authority_key_id) = summarize(end_entity)?;
        let with_known: Vec<CertificateDer<'_>>;
        let candidates = if self.intermediates.is_empty() {
            intermediates
        } else {
            let sent = intermediates.iter().map(|c| CertificateDer::from(c.as_ref()));
            let known = self.intermediates.iter().filter(|k| !intermediates.contains(k));
            with_known = sent.chain(known.map(|k| CertificateDer::from(k.as_ref()))).collect();
            &with_known
        };
        self.verifier.load().verify_client_cert(end_entity, candidates, now).map_err(|e| {
            let refusal = Refusal::from_rustls(&e);
            // A CA with the same name as a trusted one (two default installs) fails on the
            // signature; what the operator needs to hear is that the issuer is not trusted.
            let issued_by_known_key = authority_key_id.as_deref().is_none_or(|aki| {
                self.trusted_key_ids.contains(aki)
                    || intermediates
                        .iter()
                        .any(|i| pki::subject_key_id_of_der(i).ok().flatten().as_deref() == Some(aki))
            });
            if refusal == Refusal::BadSignature && !issued_by_known_key { Refusal::UnknownIssuer } else { refusal }
        })?;
        check_end_entity(end_entity)?;
        Ok((summary, authority_key_id))
    }

    /// Subject names of the trusted CAs, anchors and known intermediates: browsers pick the
    /// certificate to offer by its issuer's name.
    pub(crate) fn hints(&self) -> Vec<DistinguishedName> {
        self.hints.clone()
    }
}

/// The CRLs of a trust store.
struct Crls {
    files: Vec<CertificateRevocationListDer<'static>>,
    urls: Vec<CertificateRevocationListDer<'static>>,
}

/// A verified client certificate of an open connection, checked again on
/// each of its requests: a revocation must reach connections that stay open
/// as fast as it reaches new handshakes. A request costs a lookup in the
/// internal CA's revoked set; the chain is verified again only when the CRLs
/// changed since it last was.
pub struct RevocationWatch {
    trust: Arc<TrustStore>,
    chain: Vec<CertificateDer<'static>>,
    serial: String,
    /// The CRL generation the chain last verified under.
    generation: AtomicU64,
    /// Set once the certificate is refused; it stays refused.
    refused: std::sync::OnceLock<Refusal>,
}

impl fmt::Debug for RevocationWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationWatch").field("serial", &self.serial).finish()
    }
}

impl RevocationWatch {
    /// Watches `chain` (leaf first, verified under CRL `generation`, read before it was verified).
    pub fn new(
        trust: Arc<TrustStore>,
        chain: Vec<CertificateDer<'static>>,
        serial: String,
        generation: u64,
    ) -> RevocationWatch {
        RevocationWatch { trust, chain, serial, generation: AtomicU64::new(generation), refused: Default::default() }
    }

    /// Whether the certificate still stands now.
    pub fn check(&self) -> Result<(), Refusal> {
        if let Some(refusal) = self.refused.get() {
            return Err(refusal.clone());
        }
        let result = self.recheck();
        if let Err(refusal) = &result {
            let _ = self.refused.set(refusal.clone());
        }
        result
    }

    fn recheck(&self) -> Result<(), Refusal> {
        let Some((leaf, intermediates)) = self.chain.split_first() else {
            return Err(Refusal::NoCertificate);
        };
        let now = self.trust.generation();
        if now != self.generation.load(Ordering::Acquire) {
            self.trust.verify(leaf, intermediates, UnixTime::now())?;
            self.generation.store(now, Ordering::Release);
            return Ok(());
        }
        let Some(internal) = &self.trust.internal else {
            return Ok(());
        };
        if !internal.serials.load().contains_hex(&self.serial) {
            return Ok(());
        }
        // The serial is revoked by the internal CA: is this certificate the internal CA's?
        let (summary, authority_key_id) = summarize(leaf)?;
        self.trust.not_revoked(summary, authority_key_id).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(name: &str) -> pki::CaMaterial {
        let init = pki::CaInit { name: name.into(), key_type: pki::KeyType::EcdsaP256, days: 30 };
        pki::create_ca(&init).expect("a test CA")
    }

    #[test]
    fn a_root_is_the_anchor_and_its_intermediate_a_known_intermediate() {
        let ours = ca("Ours");
        let split = TrustedCas::split(vec![
            ours.root.der.clone(),
            ours.intermediate.der.clone(),
            ours.intermediate.der.clone(),
        ])
        .unwrap();
        assert_eq!(split.anchors, vec![ours.root.der.clone()]);
        assert_eq!(split.intermediates, vec![ours.intermediate.der.clone()], "duplicates are dropped");
        assert_eq!(split.subjects.len(), 2, "both names are hints");
        assert_eq!(split.key_ids.len(), 2);
    }

    #[test]
    fn an_intermediate_trusted_without_its_root_is_an_anchor() {
        let partner = ca("Partner");
        let ours = ca("Ours");
        let split = TrustedCas::split(vec![
            partner.intermediate.der.clone(),
            ours.root.der.clone(),
            ours.intermediate.der.clone(),
        ])
        .unwrap();
        assert_eq!(split.anchors, vec![partner.intermediate.der.clone(), ours.root.der.clone()]);
        assert_eq!(split.intermediates, vec![ours.intermediate.der.clone()]);
    }

    #[test]
    fn a_store_of_only_intermediates_still_has_anchors() {
        let ours = ca("Ours");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let store =
            TrustStore::new(provider, vec![ours.intermediate.der.clone()], vec![], vec![], vec![], None, 0).unwrap();
        assert_eq!(store.roots.len(), 1);
        assert!(store.intermediates.is_empty());
    }
}
