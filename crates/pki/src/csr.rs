//! PKCS#10 certificate signing requests: parsing and the checks every CSR
//! must pass before any policy is consulted (well-formed, self-signature
//! valid, no SHA-1, no RSA below 2048 bits, a key type we can certify).

use std::net::IpAddr;

use rcgen::SubjectPublicKeyInfo;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::authority::{LeafRequest, Subject};
use crate::error::{Error, Result};
use crate::name::{self, SubjectAltName};
use crate::profile::{DnField, Profile, ProfilePolicy};

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
        let der = to_der(input)?;
        let (rest, csr) = X509CertificationRequest::from_der(&der)
            .map_err(|e| Error::MalformedCsr(format!("not a PKCS#10 structure: {e}")))?;
        if !rest.is_empty() {
            return Err(Error::MalformedCsr("trailing bytes after the request".into()));
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
                _ => return Err(Error::MalformedCsr("unreadable RSA public key".into())),
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
            let value = attr.as_str().map_err(|_| Error::MalformedCsr("a subject attribute is not a string".into()))?;
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

fn to_der(input: &[u8]) -> Result<Vec<u8>> {
    let text_start = input.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(0);
    if !input[text_start..].starts_with(b"-----BEGIN") {
        return Ok(input.to_vec());
    }
    let block = pem::parse(input).map_err(|e| Error::MalformedCsr(format!("bad PEM: {e}")))?;
    match block.tag() {
        "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => Ok(block.into_contents()),
        other => Err(Error::MalformedCsr(format!("the PEM block is '{other}', not 'CERTIFICATE REQUEST'"))),
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
        GeneralName::IPAddress(bytes) => {
            let ip = match bytes.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).expect("length checked")),
                16 => IpAddr::from(<[u8; 16]>::try_from(*bytes).expect("length checked")),
                _ => {
                    return Err(Error::MalformedCsr("an IP address SAN has a bad length".into()));
                }
            };
            Ok(SubjectAltName::Ip(ip))
        }
        other => Err(Error::MalformedCsr(format!("the SAN {other} is of a type gatehouse does not certify"))),
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
        let mut policy = crate::profile::CaSettings::default().server;
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
        assert!(matches!(CheckedCsr::parse(b"hello"), Err(Error::MalformedCsr(_))));
        let cert = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        let err = CheckedCsr::parse(cert.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("CERTIFICATE REQUEST"), "{err}");
    }

    #[test]
    fn refuses_a_tampered_signature() {
        let pem_text = csr_pem(&["a.example.com"]);
        let mut der = pem::parse(&pem_text).unwrap().into_contents();
        let last = der.len() - 3;
        der[last] ^= 0x01;
        assert!(matches!(CheckedCsr::parse(&der), Err(Error::CsrSignature)));
    }
}
