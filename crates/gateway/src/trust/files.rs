//! Reading what a trust store is built from: PEM bundles of CA certificates
//! and CRL files (PEM or DER), and why one cannot be read ([`TrustError`]).

use std::path::{Path, PathBuf};

use pki::{PemDefect, PemFileError};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};

/// A certificate bundle or CRL file that cannot be used; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The bundle cannot be opened.
    #[error("{path}: cannot read it: {source}")]
    UnreadableBundle {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A section of the bundle is not PEM.
    #[error("{path}: not a PEM certificate bundle: {source}")]
    NotPemBundle {
        /// The file.
        path: PathBuf,
        /// What is wrong with its PEM.
        source: PemDefect,
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
    NotPem(PemDefect),
    /// The DER is not a CRL webpki accepts.
    #[error("not a CRL gatehouse can use: {}; give the CRL as `gatehouse ca crl` or `openssl ca -gencrl` writes it (PEM or DER)", crl_defect(.0))]
    Invalid(webpki::Error),
}

/// What webpki's refusal of a CRL means for the file.
fn crl_defect(e: &webpki::Error) -> String {
    match e {
        webpki::Error::BadDer | webpki::Error::TrailingData(_) => {
            "it is not the DER of a CRL (damaged, cut off, or another kind of file)".to_owned()
        }
        webpki::Error::UnsupportedCrlVersion => "it is not a version 2 CRL (RFC 5280)".to_owned(),
        webpki::Error::UnsupportedDeltaCrl => "it is a delta CRL, and only complete CRLs are read".to_owned(),
        webpki::Error::UnsupportedIndirectCrl => "it is an indirect CRL, which is not supported".to_owned(),
        other => format!("webpki refuses it ({other:?})"),
    }
}

/// Reads every certificate of a PEM bundle.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let certs = pki::read_pem_file(path).map_err(|e| match e {
        PemFileError::Unreadable(source) => TrustError::UnreadableBundle { path: path.to_owned(), source },
        PemFileError::Defect(source) => TrustError::NotPemBundle { path: path.to_owned(), source },
    })?;
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
        pki::read_first_pem(bytes).map_err(CrlError::NotPem)?
    } else {
        CertificateRevocationListDer::from(bytes.to_vec())
    };
    webpki::OwnedCertRevocationList::from_der(crl.as_ref()).map_err(CrlError::Invalid)?;
    Ok(crl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_bundle_or_crl_is_described_as_a_file() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let bundle = dir.path().join("ca.pem");
        std::fs::write(&bundle, "-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----\n").expect("write");
        let err = read_certificates(&bundle).expect_err("a damaged bundle").to_string();
        assert!(err.contains("ca.pem") && err.contains("base64 text"), "{err}");
        std::fs::write(&bundle, "-----BEGIN CERTIFICATE-----\nMAA=\n").expect("write");
        let err = read_certificates(&bundle).expect_err("a cut-off bundle").to_string();
        assert!(err.contains("no END line"), "{err}");
        let err = read_certificates(&dir.path().join("missing.pem")).expect_err("no file").to_string();
        assert!(err.contains("missing.pem: cannot read it"), "{err}");

        let err = parse_crl(b"\x30\x03\x02\x01\x01").expect_err("not a CRL").to_string();
        assert!(err.contains("not the DER of a CRL") && err.contains("gatehouse ca crl"), "{err}");
        let err = parse_crl(b"-----BEGIN X509 CRL-----\nMAA=\n").expect_err("cut off").to_string();
        assert!(err.contains("not a PEM CRL: its PEM block has no END line"), "{err}");
    }
}
