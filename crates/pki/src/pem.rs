//! PEM in and out, for pki and the gateway alike. Reading goes through rustls-pki-types'
//! [`PemObject`]; writing, which pki-types does not do, through the RFC 7468 encoder of the
//! `der` crate that pkcs8 brings for encrypted keys. What is wrong with a PEM text is a
//! [`PemDefect`], said in the words of the person who gave the file.

use std::path::Path;

use rustls_pki_types::pem::{self, PemObject, SectionKind};

/// Why a text that begins as PEM cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PemDefect {
    /// A BEGIN line without its END line.
    #[error("its PEM block has no END line, as if the file were cut off")]
    NoEnd,
    /// A BEGIN line that is not `-----BEGIN LABEL-----`.
    #[error("its PEM BEGIN line is malformed")]
    BadBegin,
    /// The base64 body does not decode.
    #[error("the base64 text between its BEGIN and END lines is damaged")]
    BadBase64,
    /// No block of the kind asked for.
    #[error("it holds no PEM block of the kind needed")]
    NoBlock,
    /// A block over pki-types' 256 MB limit.
    #[error("its PEM block is larger than 256 MB")]
    TooLarge,
}

impl From<&pem::Error> for PemDefect {
    fn from(e: &pem::Error) -> PemDefect {
        match e {
            pem::Error::MissingSectionEnd { .. } => PemDefect::NoEnd,
            pem::Error::IllegalSectionStart { .. } => PemDefect::BadBegin,
            pem::Error::Base64Decode(_) => PemDefect::BadBase64,
            pem::Error::SectionTooLarge => PemDefect::TooLarge,
            _ => PemDefect::NoBlock,
        }
    }
}

/// Why a PEM file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PemFileError {
    /// The file cannot be read.
    #[error("cannot read it: {0}")]
    Unreadable(#[from] std::io::Error),
    /// Its text is not the PEM needed.
    #[error(transparent)]
    Defect(#[from] PemDefect),
}

/// Every block of `T`'s kind (`CertificateDer`, `PrivateKeyDer`, ...) in the PEM file at `path`.
pub fn read_pem_file<T: PemObject>(path: &Path) -> Result<Vec<T>, PemFileError> {
    Ok(read_pem(&std::fs::read(path)?)?)
}

/// The first block of `T`'s kind in the PEM file at `path`.
pub fn read_first_pem_file<T: PemObject>(path: &Path) -> Result<T, PemFileError> {
    Ok(read_first_pem(&std::fs::read(path)?)?)
}

/// Whether `bytes` begin (after white space) as PEM text.
pub(crate) fn is_pem(bytes: &[u8]) -> bool {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    bytes[start..].starts_with(b"-----BEGIN ")
}

/// The label of the first BEGIN line (`CERTIFICATE`, `X509 CRL`, ...), if there is one.
pub(crate) fn first_label(bytes: &[u8]) -> Option<String> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let at = bytes.windows(BEGIN.len()).position(|w| w == BEGIN)? + BEGIN.len();
    let rest = &bytes[at..];
    let end = rest.windows(5).position(|w| w == b"-----")?;
    // A label is short; a longer "label" is not one, and is not quoted back.
    (end <= 64).then(|| String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// The first block of `T`'s kind in `bytes`.
pub fn read_first_pem<T: PemObject>(bytes: &[u8]) -> Result<T, PemDefect> {
    T::from_pem_slice(bytes).map_err(|e| PemDefect::from(&e))
}

/// Every block of `T`'s kind in `bytes`.
pub fn read_pem<T: PemObject>(bytes: &[u8]) -> Result<Vec<T>, PemDefect> {
    T::pem_slice_iter(bytes).collect::<Result<Vec<T>, _>>().map_err(|e| PemDefect::from(&e))
}

/// The kinds of the blocks pki-types recognises in `bytes`, in order (for messages).
pub(crate) fn kinds(bytes: &[u8]) -> Vec<SectionKind> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes).map_while(|r| r.ok()).map(|(kind, _)| kind).collect()
}

/// PEM text of one DER object, LF line endings, 64 base64 characters a line.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    // Fails only for a label with '-' or white space at its ends, and ours are constants.
    pkcs8::der::pem::encode_string(label, pkcs8::LineEnding::LF, der).expect("PEM encoding of a constant label")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::CertificateDer;

    #[test]
    fn round_trips_and_names_what_is_wrong() {
        let text = encode("CERTIFICATE", b"\x30\x03\x02\x01\x01");
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n") && text.ends_with("-----END CERTIFICATE-----\n"));
        assert_eq!(read_first_pem::<CertificateDer<'_>>(text.as_bytes()).unwrap().as_ref(), b"\x30\x03\x02\x01\x01");
        assert!(is_pem(format!("\n  {text}").as_bytes()));
        assert_eq!(first_label(text.as_bytes()).as_deref(), Some("CERTIFICATE"));
        assert_eq!(kinds(text.as_bytes()), vec![SectionKind::Certificate]);

        let cut = &text[..text.len() - 10];
        assert_eq!(read_first_pem::<CertificateDer<'_>>(cut.as_bytes()).unwrap_err(), PemDefect::NoEnd);
        let damaged = "-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----\n";
        assert_eq!(read_first_pem::<CertificateDer<'_>>(damaged.as_bytes()).unwrap_err(), PemDefect::BadBase64);
        assert_eq!(read_first_pem::<CertificateDer<'_>>(b"hello").unwrap_err(), PemDefect::NoBlock);
        assert!(read_pem::<CertificateDer<'_>>(b"").unwrap().is_empty());
    }
}
