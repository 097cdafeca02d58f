//! What pki and the gateway read from X.509 certificates: the subject key identifier
//! (RFC 5280 §4.2.1.2) and the subject alternative names (§4.2.1.6).

use std::net::IpAddr;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};

use crate::name::SubjectAltName;

/// The subject key identifier of a parsed certificate, if it has one.
pub fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions().iter().find_map(|ext| match ext.parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(ki) => Some(ki.0.to_vec()),
        _ => None,
    })
}

/// The subject key identifier of a DER certificate: `Err` when it does not parse, `Ok(None)`
/// when it has none.
pub fn subject_key_id_of_der(
    der: &[u8],
) -> Result<Option<Vec<u8>>, x509_parser::nom::Err<x509_parser::error::X509Error>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)?;
    Ok(subject_key_id(&cert))
}

/// Whether a DER certificate may authenticate a TLS client: it has no extended key
/// usage, or one listing clientAuth or anyExtendedKeyUsage. `false` when it does not parse.
pub fn allows_client_auth(der: &[u8]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    match cert.extended_key_usage() {
        Ok(None) => true,
        Ok(Some(eku)) => eku.value.client_auth || eku.value.any,
        Err(_) => false,
    }
}

/// The subject alternative names of a certificate as it carries them (DNS names lowercased),
/// in order; names of other types (directory names, other names) and IP addresses of a
/// length other than 4 or 16 bytes are left out. Nothing is checked: a certificate's names
/// are read, not certified.
pub fn subject_alt_names(cert: &X509Certificate<'_>) -> Vec<SubjectAltName> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(SubjectAltName::Dns(dns.to_ascii_lowercase())),
            GeneralName::IPAddress(bytes) => ip_address(bytes).map(SubjectAltName::Ip),
            GeneralName::RFC822Name(email) => Some(SubjectAltName::Email((*email).to_owned())),
            GeneralName::URI(uri) => Some(SubjectAltName::Uri((*uri).to_owned())),
            _ => None,
        })
        .collect()
}

/// The address of an iPAddress general name: 4 bytes IPv4, 16 bytes IPv6, else none.
pub(crate) fn ip_address(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_key_id_and_the_names_a_certificate_carries() {
        let key = crate::KeyType::EcdsaP256.generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["WWW.Example.com".to_owned()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::IpAddress("10.1.2.3".parse().unwrap()));
        params.subject_alt_names.push(rcgen::SanType::URI("spiffe://t/a".try_into().unwrap()));
        let cert = params.self_signed(&key).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
        let names: Vec<String> = subject_alt_names(&parsed).iter().map(ToString::to_string).collect();
        assert_eq!(names, ["DNS:www.example.com", "IP:10.1.2.3", "URI:spiffe://t/a"]);
        assert_eq!(subject_key_id(&parsed), None, "rcgen gives a self-signed leaf no key identifier");
        let ca = crate::create_ca(&crate::CaInit { name: "t".into(), key_type: crate::KeyType::EcdsaP256, days: 1 })
            .unwrap();
        let id = subject_key_id_of_der(&ca.intermediate.der).unwrap().expect("a CA certificate has a key identifier");
        let (_, intermediate) = x509_parser::parse_x509_certificate(&ca.intermediate.der).unwrap();
        assert_eq!(subject_key_id(&intermediate), Some(id));
        assert!(subject_key_id_of_der(b"\x30\x00").is_err());
        assert_eq!(ip_address(&[1, 2, 3]), None);
    }
}
