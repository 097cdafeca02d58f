//! Site certificates: where each comes from ([`CertificateSource`]), loading one into a
//! rustls [`CertifiedKey`] with its checks (this module), and each site's resolver
//! ([`SiteCertificate`], in `site`), which hands the certificate to every handshake
//! and takes a new one in place.
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

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{Error as TlsError, InconsistentKeys};
use x509_parser::certificate::X509Certificate;

use crate::acme_client::{AcmeClient, AcmeConfig, Stored};
use crate::internal_ca::{InternalCa, InternalCaError};
use crate::keyless::KeyServers;
use crate::sites::host_matches;
use crate::trust::TrustError;

mod site;

pub use site::{Refresh, SiteCertificate};

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
mod tests;
