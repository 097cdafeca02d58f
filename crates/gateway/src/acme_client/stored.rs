//! A certificate kept by the ACME client in the data dir:
//! `acme/ACCOUNT/NAMES/certificate.pem` (the chain, leaf first) and `key.pem`
//! (mode 0600), each replaced in one rename, the key first: a crash between
//! the two leaves a key that does not fit the certificate, which is refused
//! on reading and ordered again.

use std::path::Path;

use instant_acme::CertificateIdentifier;
use rustls::pki_types::{CertificateDer, Der};
use x509_parser::extensions::ParsedExtension;

use crate::certificates::Leaf;

/// A chain and its key, with what the schedule needs of the leaf.
pub struct Stored {
    /// The chain, leaf first, PEM.
    pub chain_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The leaf's serial, hex.
    pub serial: String,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    names: Vec<String>,
    leaf: Vec<u8>,
}

impl Stored {
    /// Reads the leaf of `chain_pem`; an error when there is none or it is not X.509.
    pub fn new(chain_pem: String, key_pem: String) -> Result<Stored, String> {
        let leaf: CertificateDer<'static> =
            pki::read_first_pem(chain_pem.as_bytes()).map_err(|e| format!("the chain holds no certificate: {e}"))?;
        let parsed = Leaf::from_der(&leaf).map_err(|e| e.to_string())?;
        Ok(Stored {
            chain_pem,
            key_pem,
            serial: parsed.serial,
            not_before: parsed.not_before,
            not_after: parsed.not_after,
            names: parsed.names,
            leaf: leaf.to_vec(),
        })
    }

    /// The certificate kept in `dir`, if any; an error when it is there but unreadable.
    pub(super) fn read(dir: &Path) -> Result<Option<Stored>, String> {
        let chain = match std::fs::read_to_string(dir.join("certificate.pem")) {
            Ok(chain) => chain,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        };
        let key = std::fs::read_to_string(dir.join("key.pem")).map_err(|e| format!("{}: {e}", dir.display()))?;
        Stored::new(chain, key).map(Some)
    }

    /// Keeps it in `dir`: the key (0600), then the chain, each in one rename.
    pub(super) fn write(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let write = |name: &str, text: &str, mode| {
            pki::files::write_atomic(&dir.join(name), text.as_bytes(), mode, true).map_err(|e| e.to_string())
        };
        write("key.pem", &self.key_pem, pki::files::PRIVATE)?;
        write("certificate.pem", &self.chain_pem, pki::files::PUBLIC)
    }

    /// Whether its names cover every one of `names`.
    pub fn covers(&self, names: &[String]) -> bool {
        let leaf = Leaf { names: self.names.clone(), serial: String::new(), not_before: 0, not_after: 0 };
        names.iter().all(|n| leaf.covers(n))
    }

    /// The leaf, DER.
    pub fn leaf_der(&self) -> &[u8] {
        &self.leaf
    }

    /// Its RFC 9773 identifier: the authority key identifier and the serial, as encoded.
    pub fn certificate_id(&self) -> Option<CertificateIdentifier<'static>> {
        let (_, cert) = x509_parser::parse_x509_certificate(&self.leaf).ok()?;
        let key_id = cert.extensions().iter().find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref().map(|k| k.0.to_vec()),
            _ => None,
        })?;
        let serial = cert.tbs_certificate.raw_serial().to_vec();
        Some(CertificateIdentifier::new(Der::from_slice(&key_id), Der::from_slice(&serial)).into_owned())
    }
}

/// A name as one path component: lowercase, `*` as `_`, anything but letters, digits,
/// `-`, `.` and `_` dropped.
pub(super) fn file_name(name: &str) -> String {
    let cleaned: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c == '*' { '_' } else { c })
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .collect();
    match cleaned.trim_start_matches('.') {
        "" => "_".to_owned(),
        rest => rest.to_owned(),
    }
}

/// The directory of a certificate for `names`: the first name, and when there are more,
/// a digest of them all, so two sites that share a first name keep apart.
pub(super) fn names_dir(names: &[String]) -> String {
    let first = file_name(names.first().map(String::as_str).unwrap_or("_"));
    if names.len() == 1 {
        return first;
    }
    let mut sorted = names.to_vec();
    sorted.sort();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, sorted.join("\n").as_bytes());
    format!("{first}+{}", hex::encode(&digest.as_ref()[..6]))
}
