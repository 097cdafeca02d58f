//! The mutual-TLS server side: the rustls configuration (TLS 1.3 and 1.2, a
//! client certificate required and verified against the trusted CAs) and why a
//! handshake was refused ([`HandshakeRefusal`]), which travels from rustls's
//! error to the connection log and the metric label.
//!
//! aws-lc-rs's default provider offers the two TLS 1.2 suites Cloudflare's edge
//! uses (ECDHE-ECDSA-AES256-GCM-SHA384, ECDHE-RSA-AES256-GCM-SHA384) among its
//! others; which one is chosen follows the server certificate's key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore, ServerConfig};

use crate::config::Trust;

/// Why a gateway's TLS handshake did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeRefusal {
    /// The client sent no certificate.
    NoClientCertificate,
    /// The client certificate does not chain to a trusted CA.
    UnknownIssuer,
    /// The client certificate (or one of its chain) has expired.
    Expired,
    /// The client certificate is not valid yet.
    NotValidYet,
    /// The client certificate is revoked.
    Revoked,
    /// The client certificate is unusable otherwise (encoding, usage, signature).
    BadCertificate,
    /// No protocol version, cipher suite or signature scheme in common.
    Incompatible,
    /// The handshake took longer than the server allows.
    Timeout,
    /// The peer closed the connection or the network failed.
    Closed,
    /// Any other TLS error.
    Tls,
}

impl HandshakeRefusal {
    /// Every reason, for tests and metric listings.
    pub const ALL: [HandshakeRefusal; 10] = [
        HandshakeRefusal::NoClientCertificate,
        HandshakeRefusal::UnknownIssuer,
        HandshakeRefusal::Expired,
        HandshakeRefusal::NotValidYet,
        HandshakeRefusal::Revoked,
        HandshakeRefusal::BadCertificate,
        HandshakeRefusal::Incompatible,
        HandshakeRefusal::Timeout,
        HandshakeRefusal::Closed,
        HandshakeRefusal::Tls,
    ];

    /// The snake_case name used in logs and the `reason` label.
    pub const fn name(self) -> &'static str {
        match self {
            HandshakeRefusal::NoClientCertificate => "no_client_certificate",
            HandshakeRefusal::UnknownIssuer => "unknown_issuer",
            HandshakeRefusal::Expired => "expired",
            HandshakeRefusal::NotValidYet => "not_valid_yet",
            HandshakeRefusal::Revoked => "revoked",
            HandshakeRefusal::BadCertificate => "bad_certificate",
            HandshakeRefusal::Incompatible => "incompatible",
            HandshakeRefusal::Timeout => "timeout",
            HandshakeRefusal::Closed => "closed",
            HandshakeRefusal::Tls => "tls_error",
        }
    }

    /// The reason behind the error tokio-rustls's accept gave.
    pub fn of(error: &std::io::Error) -> HandshakeRefusal {
        let Some(tls) = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
            return HandshakeRefusal::Closed;
        };
        match tls {
            rustls::Error::NoCertificatesPresented => HandshakeRefusal::NoClientCertificate,
            rustls::Error::InvalidCertificate(e) => match e {
                CertificateError::UnknownIssuer => HandshakeRefusal::UnknownIssuer,
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => HandshakeRefusal::Expired,
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    HandshakeRefusal::NotValidYet
                }
                CertificateError::Revoked => HandshakeRefusal::Revoked,
                _ => HandshakeRefusal::BadCertificate,
            },
            rustls::Error::PeerIncompatible(_) => HandshakeRefusal::Incompatible,
            _ => HandshakeRefusal::Tls,
        }
    }
}

/// Why the TLS side cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate chain file cannot be used.
    #[error("certificate {}: {why}", file.display())]
    Certificate {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The private key file cannot be used.
    #[error("certificate key {}: {why}", file.display())]
    Key {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A trust file cannot be used.
    #[error("trust {}: {why}", file.display())]
    Trust {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// No `trust` and no internal CA to trust by default.
    #[error(
        "no trust = [...] is given and {} holds no internal CA; list the gateways' CA certificates in trust, \
         or run gatehouse ca init",
        data_dir.display()
    )]
    NoInternalCa {
        /// The data dir looked in.
        data_dir: PathBuf,
    },
    /// Tunnel mode, and the certificate may not authenticate a TLS client.
    #[error(
        "certificate {}: in tunnel mode it is the key server's TLS client certificate, and its extended key \
         usage leaves out clientAuth; issue it with gatehouse ca issue --profile client (or a server \
         certificate with clientAuth too)",
        file.display()
    )]
    NotForClients {
        /// The file.
        file: PathBuf,
    },
    /// rustls refuses the configuration (a key that does not match the certificate).
    #[error("the certificate and key cannot serve TLS: {0}")]
    Rustls(String),
}

fn certificates(
    file: &Path,
    error: impl Fn(PathBuf, String) -> TlsError,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs =
        pki::read_pem_file::<CertificateDer<'static>>(file).map_err(|e| error(file.to_owned(), e.to_string()))?;
    if certs.is_empty() {
        return Err(error(file.to_owned(), "it holds no CERTIFICATE block".to_owned()));
    }
    Ok(certs)
}

/// The anchors client certificates must chain to.
fn roots(trust: &Trust) -> Result<RootCertStore, TlsError> {
    let trust_error = |file, why| TlsError::Trust { file, why };
    let files = match trust {
        Trust::Files(files) => files.clone(),
        Trust::InternalCa { data_dir } => {
            let ca = pki::CaDir::new(data_dir);
            if !ca.root_path().exists() {
                return Err(TlsError::NoInternalCa { data_dir: data_dir.clone() });
            }
            // The intermediate too: a gateway that sends only its leaf still chains.
            vec![ca.root_path(), ca.intermediate_path()]
        }
    };
    let mut roots = RootCertStore::empty();
    for file in &files {
        for cert in certificates(file, trust_error)? {
            roots
                .add(cert)
                .map_err(|e| TlsError::Trust { file: file.clone(), why: format!("not a CA certificate: {e}") })?;
        }
    }
    Ok(roots)
}

/// The rustls server configuration: identity from `cert`/`key`, client
/// certificates required and verified against `trust`.
pub(crate) fn server_config(cert: &Path, key: &Path, trust: &Trust) -> Result<ServerConfig, TlsError> {
    let chain = certificates(cert, |file, why| TlsError::Certificate { file, why })?;
    let key_der: PrivateKeyDer<'static> =
        pki::read_first_pem_file(key).map_err(|e| TlsError::Key { file: key.to_owned(), why: e.to_string() })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(trust)?), provider.clone())
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsError::Rustls(e.to_string()))
}

/// The rustls client configuration of tunnel mode: identity from `cert`/`key` (a
/// certificate that may authenticate a client), gateways' certificates verified
/// against `trust`.
pub(crate) fn client_config(cert: &Path, key: &Path, trust: &Trust) -> Result<rustls::ClientConfig, TlsError> {
    let chain = certificates(cert, |file, why| TlsError::Certificate { file, why })?;
    if !pki::allows_client_auth(&chain[0]) {
        return Err(TlsError::NotForClients { file: cert.to_owned() });
    }
    let key_der: PrivateKeyDer<'static> =
        pki::read_first_pem_file(key).map_err(|e| TlsError::Key { file: key.to_owned(), why: e.to_string() })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_root_certificates(roots(trust)?)
        .with_client_auth_cert(chain, key_der)
        .map_err(|e| TlsError::Rustls(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_rustls_errors_map() {
        let names: std::collections::HashSet<_> = HandshakeRefusal::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), HandshakeRefusal::ALL.len());
        let io = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        assert_eq!(
            HandshakeRefusal::of(&io(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))),
            HandshakeRefusal::UnknownIssuer
        );
        assert_eq!(
            HandshakeRefusal::of(&io(rustls::Error::NoCertificatesPresented)),
            HandshakeRefusal::NoClientCertificate
        );
        assert_eq!(HandshakeRefusal::of(&std::io::ErrorKind::UnexpectedEof.into()), HandshakeRefusal::Closed);
    }
}
