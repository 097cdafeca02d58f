//! Reading what a trust store is built from: PEM bundles of CA certificates
//! and CRL files (PEM or DER), and why one cannot be read ([`TrustError`]).

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};

/// A certificate bundle or CRL file that cannot be used; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The bundle cannot be opened.
    #[error("{path}: cannot read it: {source}")]
    UnreadableBundle {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        source: pem::Error,
    },
    /// A section of the bundle is not PEM.
    #[error("{path}: not a PEM certificate bundle: {source}")]
    NotPemBundle {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        source: pem::Error,
    },
    /// The bundle holds no certificate.
    #[error("{path}: holds no CERTIFICATE block; give a PEM file")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The CRL file cannot be read.
    #[error("{path}: cannot read it: {source}")]
    UnreadableCrl {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The CRL file holds no valid CRL.
    #[error("{path}: {source}")]
    Crl {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: CrlError,
    },
}

/// Bytes that are not a CRL.
#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    /// They begin as PEM and are not.
    #[error("not a PEM CRL: {0}")]
    NotPem(pem::Error),
    /// The DER is not a CRL webpki accepts.
    #[error("not a valid CRL: {0:?}")]
    Invalid(webpki::Error),
}

/// Reads every certificate of a PEM bundle.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|source| TrustError::UnreadableBundle { path: path.to_owned(), source })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TrustError::NotPemBundle { path: path.to_owned(), source })?;
    if certs.is_empty() {
        return Err(TrustError::NoCertificate { path: path.to_owned() });
    }
    Ok(certs)
}

/// Reads a CRL file, PEM or DER.
pub fn read_crl(path: &Path) -> Result<CertificateRevocationListDer<'static>, TrustError> {
    let bytes = std::fs::read(path).map_err(|source| TrustError::UnreadableCrl { path: path.to_owned(), source })?;
    parse_crl(&bytes).map_err(|source| TrustError::Crl { path: path.to_owned(), source })
}

/// Parses a CRL, PEM or DER.
pub fn parse_crl(bytes: &[u8]) -> Result<CertificateRevocationListDer<'static>, CrlError> {
    let crl = if bytes.starts_with(b"-----BEGIN") {
        CertificateRevocationListDer::from_pem_slice(bytes).map_err(CrlError::NotPem)?
    } else {
        CertificateRevocationListDer::from(bytes.to_vec())
    };
    webpki::OwnedCertRevocationList::from_der(crl.as_ref()).map_err(CrlError::Invalid)?;
    Ok(crl)
}
