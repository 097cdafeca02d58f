//! Every refusal the gateway makes, as a type that travels from where it is
//! made to the log line and the metric label: why a client certificate is
//! refused ([`Refusal`], from the verifier), why a handshake is
//! ([`HandshakeRefusal`]) and why a request is answered by the gateway itself
//! ([`RequestRefusal`]); and the parts of a certificate the gateway reports
//! ([`CertSummary`]).

use std::fmt;
use std::sync::Arc;

use rustls::{CertificateError, OtherError};

use crate::labels::labelled;

mod handshake;
mod request;

pub use handshake::HandshakeRefusal;
pub use request::{NoVerifiedCertificate, RequestRefusal, Unforwardable, UpstreamFailure};

/// Why a client certificate was refused. Its label (`no_certificate`, `expired`, ...) is the
/// `reason` of `client_cert_refused` and `handshake_refused` lines, the `refused` field of the
/// access line of a request refused for it, and the `reason` of
/// `gatehouse_client_cert_refusals_total`.
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
    /// Its keyUsage extension is present and lacks digitalSignature, so its key may not sign a handshake.
    KeyUsage,
    /// Its key is too weak to identify a client (RSA below [`MIN_RSA_BITS`]).
    WeakKey {
        /// The RSA modulus size, bits.
        bits: usize,
    },
    /// A CA on its chain allows fewer CAs below it (basicConstraints pathLen), or the chain
    /// is deeper than path building follows.
    PathLength,
    /// It, or a CA on its chain, names something a CA above it may not certify (name constraints).
    NameConstraints,
    /// A signature in the chain, or the handshake signature, does not verify.
    BadSignature,
    /// Not parseable as a certificate.
    Malformed,
    /// Anything else the verifier reported.
    Other(String),
}

labelled! {
    Refusal {
        NoCertificate => "no_certificate",
        UnknownIssuer => "unknown_issuer",
        Expired => "expired",
        NotYetValid => "not_yet_valid",
        Revoked => "revoked",
        Version1 => "x509_v1",
        WrongPurpose => "wrong_eku",
        KeyUsage => "bad_key_usage",
        WeakKey { .. } => "weak_key",
        PathLength => "path_length",
        NameConstraints => "name_constraints",
        BadSignature => "bad_signature",
        Malformed => "malformed",
        Other(..) => "other",
    }
}

impl Refusal {
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
                CertificateError::Other(OtherError(inner)) => {
                    if let Some(refusal) = inner.downcast_ref::<Refusal>() {
                        return refusal.clone();
                    }
                    if let Some(refused) = inner.downcast_ref::<RefusedCertificate>() {
                        return refused.refusal.clone();
                    }
                    match inner.downcast_ref::<webpki::Error>() {
                        Some(webpki::Error::UnsupportedCertVersion) => Refusal::Version1,
                        Some(webpki::Error::PathLenConstraintViolated | webpki::Error::MaximumPathDepthExceeded) => {
                            Refusal::PathLength
                        }
                        Some(webpki::Error::NameConstraintViolation) => Refusal::NameConstraints,
                        _ => Refusal::Other(inner.to_string()),
                    }
                }
                other => Refusal::Other(format!("{other:?}")),
            },
            other => Refusal::Other(other.to_string()),
        }
    }

    pub(crate) fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(self))))
    }

    /// As [`into_rustls`](Self::into_rustls), naming the certificate refused: a
    /// failed handshake keeps nothing else of it for the log line.
    pub(crate) fn of_certificate(self, der: &[u8]) -> rustls::Error {
        let (serial, subject) = match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => (
                Some(hex::encode_upper(pki::Serial::from_bytes(cert.raw_serial()).as_bytes())),
                Some(cert.subject().to_string()),
            ),
            Err(_) => (None, None),
        };
        let refused = RefusedCertificate { refusal: self, serial, subject };
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(refused))))
    }
}

/// A client certificate refused in the handshake, with who presented it.
#[derive(Debug, Clone)]
pub struct RefusedCertificate {
    /// Why.
    pub refusal: Refusal,
    /// Its serial, uppercase hex, if it parsed.
    pub serial: Option<String>,
    /// Its subject DN, if it parsed.
    pub subject: Option<String>,
}

impl RefusedCertificate {
    /// The refused certificate a rustls error carries, if it carries one.
    pub fn in_error(error: &rustls::Error) -> Option<&RefusedCertificate> {
        match error {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => inner.downcast_ref(),
            _ => None,
        }
    }
}

impl fmt::Display for RefusedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.refusal.fmt(f)
    }
}

impl std::error::Error for RefusedCertificate {}

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
            Refusal::KeyUsage => f.write_str(
                "the client certificate's keyUsage lacks digitalSignature, so its key may not authenticate a TLS client; re-issue it with digitalSignature",
            ),
            Refusal::WeakKey { bits } => write!(
                f,
                "the client certificate has a {bits}-bit RSA key; at least {MIN_RSA_BITS} bits are required (or use an EC key)"
            ),
            Refusal::PathLength => f.write_str(
                "the client certificate's chain has more CAs than an issuing CA allows (basicConstraints pathLen) or than the gateway follows",
            ),
            Refusal::NameConstraints => {
                f.write_str("the client certificate names something its issuing CAs may not certify (name constraints)")
            }
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
    let sans = pki::subject_alt_names(&cert).iter().map(ToString::to_string).collect();
    let authority_key_id = cert.extensions().iter().find_map(|ext| match ext.parsed_extension() {
        x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
            aki.key_identifier.as_ref().map(|k| k.0.to_vec())
        }
        _ => None,
    });
    let summary = CertSummary {
        serial: hex::encode_upper(pki::Serial::from_bytes(cert.raw_serial()).as_bytes()),
        subject: cert.subject().to_string(),
        sans,
        not_after: cert.validity().not_after.timestamp(),
    };
    Ok((summary, authority_key_id))
}

/// The smallest RSA key, in bits, a client may identify itself with (NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;

/// The end-entity checks that path validation leaves to the relying party: webpki reads
/// neither keyUsage nor key sizes. A keyUsage extension, when present, must allow
/// digitalSignature (RFC 5280 4.2.1.3: the key signs the handshake); an RSA key must have
/// at least [`MIN_RSA_BITS`] bits.
pub fn check_end_entity(der: &[u8]) -> Result<(), Refusal> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| Refusal::Malformed)?;
    // An error here is a repeated keyUsage extension, which RFC 5280 forbids.
    let key_usage = cert.key_usage().map_err(|_| Refusal::Malformed)?;
    if key_usage.is_some_and(|ku| !ku.value.digital_signature()) {
        return Err(Refusal::KeyUsage);
    }
    match weak_rsa_bits(cert.public_key()) {
        Some(bits) => Err(Refusal::WeakKey { bits }),
        None => Ok(()),
    }
}

/// The modulus size of an RSA key below [`MIN_RSA_BITS`]; `None` for a strong or non-RSA key.
pub(crate) fn weak_rsa_bits(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Option<usize> {
    let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = spki.parsed() else {
        return None;
    };
    // The modulus is a DER INTEGER: big-endian, with a leading zero byte when its top bit is set.
    let modulus = rsa.modulus.iter().position(|b| *b != 0).map_or(&[][..], |i| &rsa.modulus[i..]);
    let bits = modulus.first().map_or(0, |top| 8 * modulus.len() - top.leading_zeros() as usize);
    (bits < MIN_RSA_BITS).then_some(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_refusal() -> Vec<Refusal> {
        vec![
            Refusal::NoCertificate,
            Refusal::UnknownIssuer,
            Refusal::Expired,
            Refusal::NotYetValid,
            Refusal::Revoked,
            Refusal::Version1,
            Refusal::WrongPurpose,
            Refusal::KeyUsage,
            Refusal::WeakKey { bits: 1024 },
            Refusal::PathLength,
            Refusal::NameConstraints,
            Refusal::BadSignature,
            Refusal::Malformed,
            Refusal::Other("x".into()),
        ]
    }

    #[test]
    fn every_label_is_listed_once_in_variant_order() {
        let labels: Vec<_> = every_refusal().iter().map(Refusal::label).collect();
        assert_eq!(labels, Refusal::ALL);
        crate::labels::assert_distinct_snake_case(&Refusal::ALL);
    }

    #[test]
    fn a_refusal_survives_the_trip_through_a_rustls_error() {
        for refusal in every_refusal() {
            assert_eq!(Refusal::from_rustls(&refusal.clone().into_rustls()), refusal);
        }
    }

    #[test]
    fn webpki_chain_constraint_errors_have_their_own_labels() {
        let from = |e: webpki::Error| {
            let error = rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))));
            Refusal::from_rustls(&error)
        };
        assert_eq!(from(webpki::Error::PathLenConstraintViolated), Refusal::PathLength);
        assert_eq!(from(webpki::Error::MaximumPathDepthExceeded), Refusal::PathLength);
        assert_eq!(from(webpki::Error::NameConstraintViolation), Refusal::NameConstraints);
        assert_eq!(from(webpki::Error::UnsupportedCertVersion), Refusal::Version1);
    }
}
