//! The rustls client-certificate verifier of a site: verify during the
//! handshake (`require`), or only check possession of the key and let the
//! connection verify afterwards (`optional`, `passthrough`).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::refusal::Refusal;
use crate::trust::TrustStore;

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
        let algorithms = &self.provider.signature_verification_algorithms;
        if self.policy == HandshakePolicy::Require {
            return rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms);
        }
        // As for TLS 1.3 below; rustls has no raw-key check for TLS 1.2, where a
        // scheme may stand for several algorithms (ECDSA on any curve): try each.
        let spki = raw_key(cert)?;
        let key = webpki::RawPublicKeyEntity::try_from(&spki).map_err(|_| bad_signature())?;
        let candidates =
            algorithms.mapping.iter().find(|(scheme, _)| *scheme == dss.scheme).map(|(_, algs)| *algs).unwrap_or(&[]);
        for algorithm in candidates {
            match key.verify_signature(*algorithm, message, dss.signature()) {
                Ok(()) => return Ok(HandshakeSignatureValid::assertion()),
                Err(webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_)) => continue,
                Err(_) => return Err(bad_signature()),
            }
        }
        Err(rustls::Error::PeerMisbehaved(rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme))
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
        rustls::crypto::verify_tls13_signature_with_raw_key(message, &raw_key(cert)?, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The certificate's public key, read without judging the rest of the certificate.
fn raw_key(cert: &CertificateDer<'_>) -> Result<rustls::pki_types::SubjectPublicKeyInfoDer<'static>, rustls::Error> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    Ok(rustls::pki_types::SubjectPublicKeyInfoDer::from(parsed.public_key().raw.to_vec()))
}

fn bad_signature() -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::BadSignature)
}
