//! The signing key of a keyless site: what rustls calls for a handshake's
//! signature. It knows the certificate's public key (its kind, for the schemes
//! it can offer, and its SKI, which names the key to the key server) and sends
//! the digest (the whole message for Ed25519) to the table's key servers.

use std::sync::Arc;

use keyless::{HashAlgorithm, Ski};
use rustls::pki_types::{CertificateDer, SubjectPublicKeyInfoDer};
use rustls::sign::{Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};

use super::{KeyServers, KeylessError};

/// The kinds of key a keyless site's certificate may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcdsaP256,
    EcdsaP384,
    Ed25519,
}

impl KeyKind {
    /// The schemes it signs with, most preferred first.
    fn schemes(self) -> &'static [SignatureScheme] {
        match self {
            KeyKind::Rsa => &[
                SignatureScheme::RSA_PSS_SHA256,
                SignatureScheme::RSA_PSS_SHA384,
                SignatureScheme::RSA_PSS_SHA512,
                SignatureScheme::RSA_PKCS1_SHA256,
                SignatureScheme::RSA_PKCS1_SHA384,
                SignatureScheme::RSA_PKCS1_SHA512,
            ],
            KeyKind::EcdsaP256 => &[SignatureScheme::ECDSA_NISTP256_SHA256],
            KeyKind::EcdsaP384 => &[SignatureScheme::ECDSA_NISTP384_SHA384],
            KeyKind::Ed25519 => &[SignatureScheme::ED25519],
        }
    }

    fn algorithm(self) -> SignatureAlgorithm {
        match self {
            KeyKind::Rsa => SignatureAlgorithm::RSA,
            KeyKind::EcdsaP256 | KeyKind::EcdsaP384 => SignatureAlgorithm::ECDSA,
            KeyKind::Ed25519 => SignatureAlgorithm::ED25519,
        }
    }
}

/// A key that lives on a key server.
#[derive(Debug)]
pub struct RemoteKey {
    servers: Arc<KeyServers>,
    ski: Ski,
    kind: KeyKind,
    spki: Vec<u8>,
}

impl std::fmt::Debug for KeyServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyServers").field("name", &self.name).finish()
    }
}

impl RemoteKey {
    /// The key of `leaf`'s public key, signed with by `servers`. Refused for a key kind
    /// the protocol or TLS cannot sign with here (only RSA, ECDSA P-256/P-384, Ed25519).
    pub fn new(leaf: &CertificateDer<'_>, servers: Arc<KeyServers>) -> Result<RemoteKey, KeylessError> {
        let (_, cert) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| KeylessError::Config(format!("the site certificate is not X.509: {e}")))?;
        let spki = cert.public_key();
        let algorithm = &spki.algorithm.algorithm;
        let kind = if *algorithm == OID_PKCS1_RSAENCRYPTION {
            KeyKind::Rsa
        } else if *algorithm == OID_SIG_ED25519 {
            KeyKind::Ed25519
        } else if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
            match curve {
                Some(c) if c == OID_EC_P256 => KeyKind::EcdsaP256,
                Some(c) if c == OID_NIST_EC_P384 => KeyKind::EcdsaP384,
                _ => {
                    return Err(KeylessError::Config(
                        "the site certificate's EC curve is not P-256 or P-384".to_owned(),
                    ));
                }
            }
        } else {
            return Err(KeylessError::Config(format!(
                "the site certificate's key ({algorithm}) is not RSA, ECDSA P-256/P-384 or Ed25519"
            )));
        };
        // The protocol's SKI: SHA-1 of the subjectPublicKey BIT STRING's contents.
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &spki.subject_public_key.data);
        let mut ski = [0u8; 20];
        ski.copy_from_slice(digest.as_ref());
        Ok(RemoteKey { servers, ski: Ski(ski), kind, spki: spki.raw.to_vec() })
    }

    /// The SKI the key server is asked for, hex (for logs).
    pub fn ski_hex(&self) -> String {
        hex::encode(self.ski.0)
    }
}

impl SigningKey for RemoteKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let scheme = self.kind.schemes().iter().find(|s| offered.contains(s))?;
        Some(Box::new(RemoteSigner { servers: self.servers.clone(), ski: self.ski, scheme: *scheme }))
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(self.spki.as_slice()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.kind.algorithm()
    }
}

/// One handshake's signature, by the key server.
#[derive(Debug)]
struct RemoteSigner {
    servers: Arc<KeyServers>,
    ski: Ski,
    scheme: SignatureScheme,
}

impl Signer for RemoteSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let scheme = keyless::SignatureScheme::from_u16(u16::from(self.scheme))
            .ok_or_else(|| rustls::Error::General(format!("no keyless opcode for {:?}", self.scheme)))?;
        let opcode = scheme
            .opcode()
            .ok_or_else(|| rustls::Error::General(format!("no keyless opcode for {:?}", self.scheme)))?;
        let payload = match scheme.hash() {
            Some(hash) => digest(hash, message)?,
            None => message.to_vec(),
        };
        self.servers.sign_blocking(opcode, self.ski, payload).map_err(|error| {
            tracing::warn!(
                keyless = %self.servers.name(), ski = %hex::encode(self.ski.0), reason = %error.label(), %error,
                "handshake refused: the key server did not sign"
            );
            rustls::Error::General(error.to_string())
        })
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

/// The digest of `message` the key server signs.
fn digest(hash: HashAlgorithm, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
    use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, SHA224, SHA256, SHA384, SHA512, digest};
    let algorithm = match hash {
        HashAlgorithm::Sha1 => &SHA1_FOR_LEGACY_USE_ONLY,
        HashAlgorithm::Sha224 => &SHA224,
        HashAlgorithm::Sha256 => &SHA256,
        HashAlgorithm::Sha384 => &SHA384,
        HashAlgorithm::Sha512 => &SHA512,
        HashAlgorithm::Md5Sha1 => return Err(rustls::Error::General("MD5-SHA1 is not offered".to_owned())),
    };
    Ok(digest(algorithm, message).as_ref().to_vec())
}
