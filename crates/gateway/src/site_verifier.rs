//! The rustls client-certificate verifier of a site: verify during the
//! handshake (`require`), or only check possession of the key and let the
//! connection verify afterwards (`optional`) or forward it (`passthrough`).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::refusal::{Refusal, weak_rsa_bits};
use crate::trust::TrustStore;

/// How a site's handshake treats client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakePolicy {
    /// Verify during the handshake; fail it without a valid certificate.
    Require,
    /// Ask for a certificate, check only possession of its key; the connection verifies it afterwards.
    ///
    /// With a trust store, a key too weak to check possession of (RSA below
    /// [`crate::refusal::MIN_RSA_BITS`]) completes the handshake unchecked: the connection's
    /// verification refuses its certificate ([`Refusal::WeakKey`]), so nothing relies on it.
    Ask,
    /// Ask for a certificate, check only possession of its key, and forward it unverified
    /// (`passthrough`): possession is all the gateway vouches for, so a key whose signature
    /// cannot be checked fails the handshake.
    Forward,
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

    /// The key that proves possession of `cert` when the handshake does not verify it: its
    /// public key, read without judging the rest of the certificate.
    ///
    /// An RSA key below [`crate::refusal::MIN_RSA_BITS`] cannot be checked (aws-lc-rs has no
    /// RSA-PSS, all TLS 1.3 allows, for smaller keys). On an `optional` site (`Ask` with a trust
    /// store) it is `None`: the handshake completes unchecked and the connection's verification
    /// refuses the certificate as [`Refusal::WeakKey`], so nothing relies on it and the routes
    /// that need no certificate still serve. Otherwise it fails the handshake with that refusal.
    fn possession_key(
        &self,
        cert: &CertificateDer<'_>,
    ) -> Result<Option<SubjectPublicKeyInfoDer<'static>>, rustls::Error> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        match weak_rsa_bits(parsed.public_key()) {
            Some(_) if self.policy == HandshakePolicy::Ask && self.trust.is_some() => Ok(None),
            Some(bits) => Err(Refusal::WeakKey { bits }.into_rustls()),
            None => Ok(Some(SubjectPublicKeyInfoDer::from(parsed.public_key().raw.to_vec()))),
        }
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
                .map_err(|refusal| refusal.of_certificate(end_entity)),
            (HandshakePolicy::Require, None) => Err(Refusal::UnknownIssuer.into_rustls()),
            (HandshakePolicy::Ask | HandshakePolicy::Forward, _) => Ok(ClientCertVerified::assertion()),
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
        let Some(spki) = self.possession_key(cert)? else {
            return Ok(HandshakeSignatureValid::assertion());
        };
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
        let Some(spki) = self.possession_key(cert)? else {
            return Ok(HandshakeSignatureValid::assertion());
        };
        rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

fn bad_signature() -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::BadSignature)
}
