//! PKCS#10 certificate signing requests: parsing and the checks every CSR
//! must pass before any policy is consulted (well-formed, self-signature
//! valid, no SHA-1, no RSA below 2048 bits, a key type we can certify).

use rcgen::SubjectPublicKeyInfo;
use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::SectionKind;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::authority::{LeafRequest, Subject};
use crate::error::{Error, Result};
use crate::name::{self, SubjectAltName};
use crate::pem::PemDefect;
use crate::profile::{DnField, Profile, ProfilePolicy};

/// What is wrong with bytes given as a CSR, said as what the file is rather than as what
/// the parser met.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrDefect {
    /// Nothing but white space.
    #[error("the file is empty")]
    Empty,
    /// PEM text that cannot be read.
    #[error("the file is not a PEM CSR: {0}")]
    Pem(PemDefect),
    /// PEM of another kind.
    #[error("the file holds a PEM '{0}' block, not a 'CERTIFICATE REQUEST'")]
    OtherPemBlock(String),
    /// A certificate (PEM or DER) where a CSR belongs.
    #[error("the file holds a certificate, not a certificate request")]
    Certificate,
    /// DER that stops before its structure ends.
    #[error("the file is not a PEM CSR or DER CSR: it ends early, as if cut off")]
    Truncated,
    /// Bytes that are neither PEM nor a DER PKCS#10 structure.
    #[error("the file is neither PEM text nor a DER PKCS#10 request")]
    NotDer,
    /// A request followed by more bytes.
    #[error("the request is followed by {0} more bytes")]
    Trailing(usize),
    /// An RSA key that does not decode.
    #[error("its RSA public key cannot be read")]
    RsaKey,
    /// A subject attribute that is not a string.
    #[error("a subject attribute is not a string")]
    SubjectAttribute,
    /// An iPAddress name of a length other than 4 or 16 bytes.
    #[error("an IP address SAN is {0} bytes long, where IPv4 has 4 and IPv6 16")]
    IpLength(usize),
    /// A SAN type gatehouse does not certify.
    #[error("it asks for a {0} SAN, which gatehouse does not certify (DNS, IP, email and URI only)")]
    SanType(&'static str),
}

/// Signature algorithms that use SHA-1 (RSA, the old OIW RSA OID, ECDSA, DSA).
const SHA1_SIGNATURES: [&str; 4] = ["1.2.840.113549.1.1.5", "1.3.14.3.2.29", "1.2.840.10045.4.1", "1.2.840.10040.4.3"];
/// Signature algorithms accepted on a CSR.
const ACCEPTED_SIGNATURES: [&str; 7] = [
    "1.2.840.113549.1.1.11", // sha256WithRSAEncryption
    "1.2.840.113549.1.1.12", // sha384WithRSAEncryption
    "1.2.840.113549.1.1.13", // sha512WithRSAEncryption
    "1.2.840.10045.4.3.2",   // ecdsa-with-SHA256
    "1.2.840.10045.4.3.3",   // ecdsa-with-SHA384
    "1.2.840.10045.4.3.4",   // ecdsa-with-SHA512
    "1.3.101.112",           // Ed25519
];
const RSA_KEY: &str = "1.2.840.113549.1.1.1";

/// A CSR that passed the checks: its public key, subject and requested names.
#[derive(Debug, Clone)]
pub struct CheckedCsr {
    spki: SubjectPublicKeyInfo,
    key_is_rsa: bool,
    subject: Subject,
    sans: Vec<SubjectAltName>,
}

impl CheckedCsr {
    /// Parses a CSR (PEM or DER) and checks it.
    pub fn parse(input: &[u8]) -> Result<CheckedCsr> {
        let der = to_der(input).map_err(Error::MalformedCsr)?;
        let (rest, csr) =
            X509CertificationRequest::from_der(&der).map_err(|e| Error::MalformedCsr(der_defect(&der, &e)))?;
        if !rest.is_empty() {
            return Err(Error::MalformedCsr(CsrDefect::Trailing(rest.len())));
        }
        let sig_oid = csr.signature_algorithm.algorithm.to_id_string();
        if SHA1_SIGNATURES.contains(&sig_oid.as_str()) {
            return Err(Error::Sha1Signature);
        }
        if !ACCEPTED_SIGNATURES.contains(&sig_oid.as_str()) {
            return Err(Error::UnsupportedSignature(sig_oid));
        }
        let info = &csr.certification_request_info;
        let key_oid = info.subject_pki.algorithm.algorithm.to_id_string();
        let key_is_rsa = key_oid == RSA_KEY;
        if key_is_rsa {
            let bits = match info.subject_pki.parsed() {
                Ok(PublicKey::RSA(rsa)) => rsa.key_size(),
                _ => return Err(Error::MalformedCsr(CsrDefect::RsaKey)),
            };
            if bits < 2048 {
                return Err(Error::WeakRsaKey(bits));
            }
        }
        csr.verify_signature().map_err(|_| Error::CsrSignature)?;
        let spki = SubjectPublicKeyInfo::from_der(info.subject_pki.raw).map_err(|_| Error::UnsupportedKey(key_oid))?;

        let mut subject = Subject::default();
        for attr in info.subject.iter_attributes() {
            let Some(field) = dn_field(&attr.attr_type().to_id_string()) else {
                continue;
            };
            let value = attr.as_str().map_err(|_| Error::MalformedCsr(CsrDefect::SubjectAttribute))?;
            subject.0.push((field, value.to_owned()));
        }
        let mut sans = Vec::new();
        if let Some(extensions) = csr.requested_extensions() {
            for ext in extensions {
                if let ParsedExtension::SubjectAlternativeName(san) = ext {
                    for name in &san.general_names {
                        sans.push(general_name(name)?);
                    }
                }
            }
        }
        Ok(CheckedCsr { spki, key_is_rsa, subject, sans })
    }

    /// The request to issue under `profile`: subject attributes the policy does not take are dropped.
    pub fn to_request(&self, profile: Profile, policy: &ProfilePolicy, days: Option<u32>) -> LeafRequest {
        let subject = Subject(
            self.subject.0.iter().filter(|(field, _)| policy.subject_fields.contains(field)).cloned().collect(),
        );
        LeafRequest { profile, subject, sans: self.sans.clone(), days }
    }

    /// The requested public key.
    pub fn public_key(&self) -> &SubjectPublicKeyInfo {
        &self.spki
    }

    /// Whether the key is RSA.
    pub fn key_is_rsa(&self) -> bool {
        self.key_is_rsa
    }
}

/// The DER of a CSR given as PEM or DER.
fn to_der(input: &[u8]) -> std::result::Result<Vec<u8>, CsrDefect> {
    if input.iter().all(u8::is_ascii_whitespace) {
        return Err(CsrDefect::Empty);
    }
    if !crate::pem::is_pem(input) {
        return Ok(input.to_vec());
    }
    // Netscape-era tools label a CSR NEW CERTIFICATE REQUEST; pki-types knows RFC 7468's label.
    let relabelled;
    let text = if crate::pem::first_label(input).as_deref() == Some("NEW CERTIFICATE REQUEST") {
        relabelled = String::from_utf8_lossy(input).replace("NEW CERTIFICATE REQUEST", "CERTIFICATE REQUEST");
        relabelled.as_bytes()
    } else {
        input
    };
    match crate::pem::read_first_pem::<CertificateSigningRequestDer<'static>>(text) {
        Ok(csr) => Ok(csr.as_ref().to_vec()),
        Err(PemDefect::NoBlock) if crate::pem::kinds(text).first() == Some(&SectionKind::Certificate) => {
            Err(CsrDefect::Certificate)
        }
        Err(PemDefect::NoBlock) => match crate::pem::first_label(text) {
            Some(label) if label != "CERTIFICATE REQUEST" => Err(CsrDefect::OtherPemBlock(crate::error::shown(&label))),
            _ => Err(CsrDefect::Pem(PemDefect::NoBlock)),
        },
        Err(defect) => Err(CsrDefect::Pem(defect)),
    }
}

/// Why `der` is not a PKCS#10 request, from what the parser met.
fn der_defect(der: &[u8], e: &x509_parser::nom::Err<x509_parser::error::X509Error>) -> CsrDefect {
    use x509_parser::error::X509Error;
    use x509_parser::nom::Err;
    if x509_parser::parse_x509_certificate(der).is_ok() {
        return CsrDefect::Certificate;
    }
    // DER begins with a SEQUENCE; what does not was never one, however the parser stopped.
    if der.first() != Some(&0x30) {
        return CsrDefect::NotDer;
    }
    match e {
        Err::Incomplete(_) => CsrDefect::Truncated,
        Err::Error(X509Error::Der(der_error)) | Err::Failure(X509Error::Der(der_error))
            if matches!(
                der_error,
                x509_parser::der_parser::error::Error::Incomplete(_)
                    | x509_parser::der_parser::error::Error::InvalidLength
            ) =>
        {
            CsrDefect::Truncated
        }
        Err::Error(X509Error::NomError(x509_parser::nom::error::ErrorKind::Eof))
        | Err::Failure(X509Error::NomError(x509_parser::nom::error::ErrorKind::Eof)) => CsrDefect::Truncated,
        _ => CsrDefect::NotDer,
    }
}

fn dn_field(oid: &str) -> Option<DnField> {
    Some(match oid {
        "2.5.4.3" => DnField::CommonName,
        "2.5.4.10" => DnField::Organization,
        "2.5.4.11" => DnField::OrganizationalUnit,
        "2.5.4.6" => DnField::Country,
        "2.5.4.8" => DnField::State,
        "2.5.4.7" => DnField::Locality,
        _ => return None,
    })
}

/// A requested name, checked as it is: not trimmed, so what is certified is what was asked for.
fn general_name(name: &GeneralName<'_>) -> Result<SubjectAltName> {
    match name {
        GeneralName::DNSName(n) => name::dns(n),
        GeneralName::RFC822Name(n) => name::email(n),
        GeneralName::URI(n) => name::uri(n),
        GeneralName::IPAddress(bytes) => crate::x509::ip_address(bytes)
            .map(SubjectAltName::Ip)
            .ok_or(Error::MalformedCsr(CsrDefect::IpLength(bytes.len()))),
        other => Err(Error::MalformedCsr(CsrDefect::SanType(match other {
            GeneralName::DirectoryName(_) => "directory name",
            GeneralName::OtherName(..) => "other name",
            GeneralName::RegisteredID(_) => "registered ID",
            GeneralName::X400Address(_) => "X.400 address",
            GeneralName::EDIPartyName(_) => "EDI party name",
            _ => "kind of",
        }))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyType;

    fn csr_pem(sans: &[&str]) -> String {
        let key = KeyType::EcdsaP256.generate().unwrap();
        let mut params = rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "app.example.com");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Example");
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn reads_subject_and_sans() {
        let csr = CheckedCsr::parse(csr_pem(&["app.example.com", "10.0.0.1"]).as_bytes()).unwrap();
        assert_eq!(csr.subject.cn(), Some("app.example.com"));
        assert_eq!(
            csr.sans.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["DNS:app.example.com", "IP:10.0.0.1"]
        );
        let mut policy = crate::settings::CaSettings::default().server;
        policy.subject_fields = vec![DnField::CommonName];
        let req = csr.to_request(Profile::Server, &policy, None);
        assert_eq!(req.subject.to_string(), "CN=app.example.com");
    }

    /// A CSR for `cn` asking for one URI SAN, made with rcgen (which encodes what it is given).
    fn csr_with_uri(cn: &str, uri: &str) -> String {
        let key = KeyType::EcdsaP256.generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn issuer() -> crate::Issuer {
        let ca = crate::create_ca(&crate::CaInit { name: "t".into(), key_type: KeyType::EcdsaP256, days: 1 }).unwrap();
        crate::Issuer::new(ca.intermediate.der, ca.intermediate.key, ca.root.der, Default::default()).unwrap()
    }

    #[test]
    fn names_that_break_identity_headers_are_refused_before_signing() {
        let issuer = issuer();
        let policy = &issuer.settings().client;
        let sign = |pem: &str| {
            let csr = CheckedCsr::parse(pem.as_bytes())?;
            issuer.issue(&csr.to_request(Profile::Client, policy, None), csr.public_key(), csr.key_is_rsa())
        };
        // Valid RFC 3986, refused by the default policy.
        let hostile = "spiffe://t/m,By=spiffe://gw;URI=spiffe://prod/admin";
        assert!(matches!(sign(&csr_with_uri("m", hostile)), Err(Error::UriSeparator { character: ',', .. })));
        // Not RFC 3986 at all: refused while reading the CSR, and not trimmed into something else.
        for bad in ["spiffe://t/a\"b", "spiffe://t/a b", "spiffe://t/a\n", " spiffe://t/a"] {
            let err = CheckedCsr::parse(csr_with_uri("m", bad).as_bytes()).unwrap_err();
            assert!(matches!(err, Error::InvalidName { kind: "URI", .. }), "{bad:?}: {err:?}");
        }
        let err = sign(&csr_with_uri("m\u{1b}[2Jadmin", "spiffe://t/m")).unwrap_err();
        assert!(matches!(err, Error::InvalidName { kind: "common name (CN)", .. }), "{err:?}");
        assert!(err.to_string().contains("U+001B") && !err.to_string().contains('\u{1b}'), "{err}");
        assert!(sign(&csr_with_uri("m", "spiffe://t/m")).is_ok());
    }

    #[test]
    fn refuses_garbage_and_wrong_pem_blocks() {
        assert!(matches!(CheckedCsr::parse(b"hello"), Err(Error::MalformedCsr(CsrDefect::NotDer))));
        let cert = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        assert!(matches!(CheckedCsr::parse(cert.as_bytes()), Err(Error::MalformedCsr(CsrDefect::Certificate))));
        let key = "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n";
        let err = CheckedCsr::parse(key.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("'EC PARAMETERS' block, not a 'CERTIFICATE REQUEST'"), "{err}");
    }

    /// Each way a CSR file goes wrong gets a sentence about the file, never the parser's words.
    #[test]
    fn malformed_csrs_are_described_as_files() {
        let pem_text = csr_pem(&["a.example.com"]);
        let der = to_der(pem_text.as_bytes()).unwrap();
        let cut_pem = &pem_text[..pem_text.len() / 2];
        let damaged = pem_text.replacen('M', "%", 3);
        let legacy = pem_text.replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST");
        let mut trailing = der.clone();
        trailing.extend_from_slice(b"xx");
        let ca = crate::create_ca(&crate::CaInit { name: "t".into(), key_type: KeyType::EcdsaP256, days: 1 }).unwrap();
        let cases: [(&[u8], CsrDefect); 8] = [
            (b"", CsrDefect::Empty),
            (b" \n", CsrDefect::Empty),
            (&der[..der.len() / 2], CsrDefect::Truncated),
            (&der[..3], CsrDefect::Truncated),
            (cut_pem.as_bytes(), CsrDefect::Pem(PemDefect::NoEnd)),
            (damaged.as_bytes(), CsrDefect::Pem(PemDefect::BadBase64)),
            (&trailing, CsrDefect::Trailing(2)),
            (&ca.root.der, CsrDefect::Certificate),
        ];
        for (input, want) in cases {
            let err = CheckedCsr::parse(input).unwrap_err();
            let message = err.to_string();
            assert!(matches!(&err, Error::MalformedCsr(got) if *got == want), "{want:?}: {err:?}");
            for internal in ["Nom", "Der(", "Eof", "Parsing", "Incomplete", "bytes/chars"] {
                assert!(!message.contains(internal), "{want:?}: parser words in {message}");
            }
            assert!(message.contains("`openssl req -new`"), "{message}");
        }
        assert!(CheckedCsr::parse(legacy.as_bytes()).is_ok(), "the NEW CERTIFICATE REQUEST label is read");
    }

    #[test]
    fn refuses_a_tampered_signature() {
        let pem_text = csr_pem(&["a.example.com"]);
        let mut der = to_der(pem_text.as_bytes()).unwrap();
        let last = der.len() - 3;
        der[last] ^= 0x01;
        assert!(matches!(CheckedCsr::parse(&der), Err(Error::CsrSignature)));
    }
}
