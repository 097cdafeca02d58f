//! Why a client certificate is refused ([`Refusal`], which travels from the
//! verifier to the connection log and the metric label), and the parts of a
//! certificate the gateway reports ([`CertSummary`]).

use std::fmt;
use std::sync::Arc;

use rustls::{CertificateError, OtherError};

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

    pub(crate) fn into_rustls(self) -> rustls::Error {
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
