//! Client-certificate trust: the roots and CRLs a site trusts, the revoked
//! serials of the internal CA (updated while running), and the one
//! verification routine used both during the handshake (`require`) and
//! right after it (`optional`). The reason a certificate is refused is a
//! [`Refusal`], which travels to the connection log and the metric label.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore, SignatureScheme};

/// Why a client certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The client sent no certificate where one is required.
    NoCertificate,
    /// It does not chain to a trusted root.
    UnknownIssuer,
    /// Past its notAfter.
    Expired,
    /// Before its notBefore.
    NotYetValid,
    /// Listed as revoked (CRL or the internal CA's database).
    Revoked,
    /// An X.509 v1 (or v2) certificate: no extensions, so no constraints; it must be re-issued as v3.
    Version1,
    /// Its extended key usage does not include clientAuth.
    WrongPurpose,
    /// A signature in the chain, or the handshake signature, does not verify.
    BadSignature,
    /// Not parseable as a certificate.
    Malformed,
    /// Anything else the verifier reported.
    Other(String),
}

impl Refusal {
    /// Short stable label, used in logs and as the metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::NoCertificate => "no_certificate",
            Refusal::UnknownIssuer => "unknown_issuer",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::Revoked => "revoked",
            Refusal::Version1 => "x509_v1",
            Refusal::WrongPurpose => "wrong_eku",
            Refusal::BadSignature => "bad_signature",
            Refusal::Malformed => "malformed",
            Refusal::Other(_) => "other",
        }
    }

    /// Every label, for metrics.
    pub const LABELS: [&'static str; 10] = [
        "no_certificate",
        "unknown_issuer",
        "expired",
        "not_yet_valid",
        "revoked",
        "x509_v1",
        "wrong_eku",
        "bad_signature",
        "malformed",
        "other",
    ];

    /// Maps a rustls error (as a handshake failure carries it) to a refusal.
    pub fn from_rustls(error: &rustls::Error) -> Refusal {
        match error {
            rustls::Error::NoCertificatesPresented => Refusal::NoCertificate,
            rustls::Error::InvalidCertificate(e) => match e {
                CertificateError::UnknownIssuer => Refusal::UnknownIssuer,
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => Refusal::Expired,
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => Refusal::NotYetValid,
                CertificateError::Revoked => Refusal::Revoked,
                CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                    Refusal::WrongPurpose
                }
                CertificateError::BadSignature => Refusal::BadSignature,
                CertificateError::BadEncoding => Refusal::Malformed,
                CertificateError::Other(OtherError(inner)) => match inner.downcast_ref::<Refusal>() {
                    Some(refusal) => refusal.clone(),
                    None if inner.to_string().contains("UnsupportedCertVersion") => Refusal::Version1,
                    None => Refusal::Other(inner.to_string()),
                },
                other => Refusal::Other(format!("{other:?}")),
            },
            other => Refusal::Other(other.to_string()),
        }
    }

    fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(self))))
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoCertificate => f.write_str("no client certificate was presented"),
            Refusal::UnknownIssuer => f.write_str("the client certificate is not issued by a trusted CA"),
            Refusal::Expired => f.write_str("the client certificate has expired"),
            Refusal::NotYetValid => f.write_str("the client certificate is not valid yet"),
            Refusal::Revoked => f.write_str("the client certificate has been revoked"),
            Refusal::Version1 => f.write_str(
                "the client certificate is X.509 v1 (no extensions); it must be re-issued as v3, e.g. with gatehouse ca issue",
            ),
            Refusal::WrongPurpose => f.write_str("the client certificate is not for client authentication (EKU clientAuth missing)"),
            Refusal::BadSignature => f.write_str("a signature on the client certificate does not verify"),
            Refusal::Malformed => f.write_str("the client certificate cannot be parsed"),
            Refusal::Other(why) => write!(f, "the client certificate was refused: {why}"),
        }
    }
}

impl std::error::Error for Refusal {}

/// What we know of a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Serial, uppercase hex.
    pub serial: String,
    /// Subject DN (RFC 4514-ish, as x509-parser prints it).
    pub subject: String,
    /// SANs as `DNS:x`, `URI:x`, `email:x`, `IP:x`.
    pub sans: Vec<String>,
    /// End of validity, unix seconds.
    pub not_after: i64,
}

/// Parses the parts of a certificate the gateway reports; refuses v1/v2.
pub fn summarize(der: &[u8]) -> Result<(CertSummary, Option<Vec<u8>>), Refusal> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| Refusal::Malformed)?;
    if cert.version() != x509_parser::x509::X509Version::V3 {
        return Err(Refusal::Version1);
    }
    let mut sans = Vec::new();
    let mut authority_key_id = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    use x509_parser::extensions::GeneralName;
                    match name {
                        GeneralName::DNSName(n) => sans.push(format!("DNS:{n}")),
                        GeneralName::URI(n) => sans.push(format!("URI:{n}")),
                        GeneralName::RFC822Name(n) => sans.push(format!("email:{n}")),
                        GeneralName::IPAddress(b) if b.len() == 4 => sans.push(format!(
                            "IP:{}",
                            std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())
                        )),
                        GeneralName::IPAddress(b) if b.len() == 16 => sans.push(format!(
                            "IP:{}",
                            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())
                        )),
                        _ => {}
                    }
                }
            }
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
                authority_key_id = aki.key_identifier.as_ref().map(|k| k.0.to_vec());
            }
            _ => {}
        }
    }
    let summary = CertSummary {
        serial: hex::encode_upper(pki::Serial::from_bytes(cert.raw_serial()).as_bytes()),
        subject: cert.subject().to_string(),
        sans,
        not_after: cert.validity().not_after.timestamp(),
    };
    Ok((summary, authority_key_id))
}

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

/// The subject key identifier of a certificate, if it has one.
fn subject_key_id(der: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.extensions().iter().find_map(|ext| match ext.parsed_extension() {
        x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(ki) => Some(ki.0.to_vec()),
        _ => None,
    })
}

/// Revoked serials of the internal CA's issuing key, replaced as a whole when the database changes.
#[derive(Debug, Default)]
pub struct InternalRevocations {
    /// Key identifier of the internal intermediate.
    pub issuer_key_id: Vec<u8>,
    /// Revoked serials (uppercase hex).
    pub serials: ArcSwap<HashSet<String>>,
}

/// The trust store of one site.
pub struct TrustStore {
    roots: Arc<RootCertStore>,
    file_crls: Vec<CertificateRevocationListDer<'static>>,
    provider: Arc<CryptoProvider>,
    verifier: ArcSwap<Arc<dyn ClientCertVerifier>>,
    internal: Option<Arc<InternalRevocations>>,
    /// Subject key identifiers of the trusted CA certificates.
    anchor_key_ids: HashSet<Vec<u8>>,
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

/// Failure to build a trust store from files.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct TrustError {
    /// The file at fault.
    pub path: PathBuf,
    /// What is wrong and what to do.
    pub why: String,
}

fn build_verifier(
    roots: &Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status()
        .build()
        .map_err(|e| format!("cannot build the client verifier: {e}"))
}

impl TrustStore {
    /// Builds a trust store from root certificates, CRLs (from files and already-fetched URLs)
    /// and, optionally, the internal CA's live revocations.
    pub fn new(
        provider: Arc<CryptoProvider>,
        roots: Vec<CertificateDer<'static>>,
        file_crls: Vec<CertificateRevocationListDer<'static>>,
        url_crls: Vec<CertificateRevocationListDer<'static>>,
        crl_urls: Vec<String>,
        internal: Option<Arc<InternalRevocations>>,
        cache_secs: u64,
    ) -> Result<TrustStore, String> {
        let anchor_key_ids = roots.iter().filter_map(|r| subject_key_id(r)).collect();
        let mut store = RootCertStore::empty();
        for root in roots {
            store.add(root).map_err(|e| format!("a trusted CA certificate is unusable: {e}"))?;
        }
        if store.is_empty() {
            return Err("the trust store has no CA certificate".into());
        }
        let roots = Arc::new(store);
        let all: Vec<_> = file_crls.iter().chain(&url_crls).cloned().collect();
        let verifier = build_verifier(&roots, &provider, all)?;
        Ok(TrustStore {
            roots,
            file_crls,
            provider,
            verifier: ArcSwap::from_pointee(verifier),
            internal,
            anchor_key_ids,
            verified: std::sync::Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            cache_secs: i64::try_from(cache_secs).unwrap_or(i64::MAX),
            crl_urls,
        })
    }

    /// Replaces the CRLs fetched from URLs (the file CRLs stay).
    pub fn set_url_crls(&self, url_crls: Vec<CertificateRevocationListDer<'static>>) -> Result<(), String> {
        let all: Vec<_> = self.file_crls.iter().cloned().chain(url_crls).collect();
        self.verifier.store(Arc::new(build_verifier(&self.roots, &self.provider, all)?));
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Verifies a client chain at `now`: v3 only, chains to a root, not revoked, EKU clientAuth.
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

    /// The internal CA's live revocation check, done on every verification.
    fn not_revoked(&self, summary: CertSummary, authority_key_id: Option<Vec<u8>>) -> Result<CertSummary, Refusal> {
        if let Some(internal) = &self.internal {
            let ours = authority_key_id.as_deref().is_none_or(|aki| aki == internal.issuer_key_id.as_slice());
            if ours && internal.serials.load().contains(&summary.serial) {
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
        self.verifier.load().verify_client_cert(end_entity, intermediates, now).map_err(|e| {
            let refusal = Refusal::from_rustls(&e);
            // A CA with the same name as a trusted one (two default installs) fails on the
            // signature; what the operator needs to hear is that the issuer is not trusted.
            let issued_by_known_key = authority_key_id.as_deref().is_none_or(|aki| {
                self.anchor_key_ids.contains(aki)
                    || intermediates.iter().any(|i| subject_key_id(i).as_deref() == Some(aki))
            });
            if refusal == Refusal::BadSignature && !issued_by_known_key { Refusal::UnknownIssuer } else { refusal }
        })?;
        Ok((summary, authority_key_id))
    }

    fn hints(&self) -> Vec<DistinguishedName> {
        self.roots.subjects()
    }
}

/// How a site's handshake treats client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakePolicy {
    /// Verify during the handshake; fail it without a valid certificate.
    Require,
    /// Ask for a certificate, check only possession of its key; the connection verifies it afterwards.
    Ask,
}

/// The rustls verifier installed in a site's `ServerConfig`.
#[derive(Debug)]
pub struct SiteVerifier {
    policy: HandshakePolicy,
    trust: Option<Arc<TrustStore>>,
    provider: Arc<CryptoProvider>,
    hints: Vec<DistinguishedName>,
}

impl SiteVerifier {
    /// A verifier for `policy`; `trust` is required for [`HandshakePolicy::Require`].
    pub fn new(policy: HandshakePolicy, trust: Option<Arc<TrustStore>>, provider: Arc<CryptoProvider>) -> SiteVerifier {
        let hints = trust.as_ref().map(|t| t.hints()).unwrap_or_default();
        SiteVerifier { policy, trust, provider, hints }
    }
}

impl ClientCertVerifier for SiteVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.policy == HandshakePolicy::Require
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Browsers pick the certificate to offer by these names.
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match (self.policy, &self.trust) {
            (HandshakePolicy::Require, Some(trust)) => trust
                .verify(end_entity, intermediates, now)
                .map(|_| ClientCertVerified::assertion())
                .map_err(Refusal::into_rustls),
            (HandshakePolicy::Require, None) => Err(Refusal::UnknownIssuer.into_rustls()),
            (HandshakePolicy::Ask, _) => Ok(ClientCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        if self.policy == HandshakePolicy::Require {
            return rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms);
        }
        // Asking without verifying: prove possession against the certificate's key alone, so
        // a certificate webpki cannot parse (X.509 v1) still completes the handshake and is
        // refused, with its reason, by the connection's own verification.
        let (_, parsed) = x509_parser::parse_x509_certificate(cert)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let spki = rustls::pki_types::SubjectPublicKeyInfoDer::from(parsed.public_key().raw);
        rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Reads every certificate of a PEM bundle.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let err = |why: String| TrustError { path: path.to_owned(), why };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(format!("cannot read it: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(err("holds no CERTIFICATE block; give a PEM file".into()));
    }
    Ok(certs)
}

/// Reads a CRL file, PEM or DER.
pub fn read_crl(path: &Path) -> Result<CertificateRevocationListDer<'static>, TrustError> {
    let bytes =
        std::fs::read(path).map_err(|e| TrustError { path: path.to_owned(), why: format!("cannot read it: {e}") })?;
    parse_crl(&bytes).map_err(|why| TrustError { path: path.to_owned(), why })
}

/// Parses a CRL, PEM or DER.
pub fn parse_crl(bytes: &[u8]) -> Result<CertificateRevocationListDer<'static>, String> {
    let crl = if bytes.starts_with(b"-----BEGIN") {
        CertificateRevocationListDer::from_pem_slice(bytes).map_err(|e| format!("not a PEM CRL: {e}"))?
    } else {
        CertificateRevocationListDer::from(bytes.to_vec())
    };
    webpki::OwnedCertRevocationList::from_der(crl.as_ref()).map_err(|e| format!("not a valid CRL: {e:?}"))?;
    Ok(crl)
}
