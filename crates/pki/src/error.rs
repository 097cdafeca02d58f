//! The one error type of the CA core. Each variant's message is a sentence
//! that says what was wrong and what to do about it, and quotes what it was
//! given only in part ([`shown`]), so a pasted file cannot flood a terminal.

use std::path::PathBuf;

use crate::csr::CsrDefect;

/// Longest part of a user's value an error message quotes, in characters.
const QUOTED_CHARS: usize = 64;

/// A value as an error message quotes it: control characters escaped, so the message cannot
/// rewrite a terminal or a log line, and cut after [`QUOTED_CHARS`] characters with the length said.
pub(crate) fn shown(value: &str) -> String {
    let length = value.chars().count();
    if length <= QUOTED_CHARS {
        return value.escape_debug().to_string();
    }
    let head: String = value.chars().take(QUOTED_CHARS).collect();
    format!("{}... ({length} characters)", head.escape_debug())
}

/// Why a CA operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key type name that gatehouse does not know.
    #[error("unknown key type '{}'; use one of ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096, ed25519", shown(.0))]
    UnknownKeyType(String),
    /// A revocation reason name that is not one of RFC 5280's.
    #[error(
        "unknown revocation reason '{}'; use one of unspecified, keyCompromise, cACompromise, affiliationChanged, \
         superseded, cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise",
        shown(.0)
    )]
    UnknownReason(String),
    /// A serial number that is not hex.
    #[error("'{}' is not a certificate serial; give it in hex as `openssl x509 -serial` prints it", shown(.0))]
    MalformedSerial(String),
    /// A subject alternative name or subject attribute that is malformed or cannot be encoded.
    #[error("'{}' is not a valid {kind}: {why}", shown(.value))]
    InvalidName {
        /// The name as given.
        value: String,
        /// What it should have been: `DNS name`, `IP address`, `email address`, `URI`,
        /// `subject alternative name`, `common name (CN)`, ...
        kind: &'static str,
        /// What is wrong with it and what to do.
        why: String,
    },
    /// Neither a common name nor a SAN was given.
    #[error("the certificate would name no one: give a common name (--cn) or at least one subject alternative name")]
    NoName,
    /// A name outside the profile's policy.
    #[error(
        "{} is outside the {profile} profile's policy ({key} in ca.toml); ask the CA operator to allow it or request another name",
        shown(.name)
    )]
    PolicyViolation {
        /// The profile that refused.
        profile: &'static str,
        /// The refused name, e.g. `DNS:evil.example`.
        name: String,
        /// The policy key that governs it.
        key: &'static str,
    },
    /// A URI SAN with `,` or `;`, which the profile's policy refuses: X-Forwarded-Client-Cert and
    /// similar identity headers use them as separators, and a parser that trusts the header
    /// would read the rest of the URI as another identity.
    #[error(
        "the URI SAN '{}' contains '{character}', which the {profile} profile's policy refuses because identity \
         headers such as X-Forwarded-Client-Cert use it as a separator; request a URI without ',' and ';' \
         (no SPIFFE ID has them), or let the CA operator set allow_uri_separators = true under \
         [profiles.{profile}] in ca.toml",
        shown(.uri)
    )]
    UriSeparator {
        /// The profile that refused.
        profile: &'static str,
        /// The URI.
        uri: String,
        /// The first separator in it.
        character: char,
    },
    /// Requested lifetime above the profile's maximum.
    #[error(
        "{days} days is longer than the {profile} profile allows (max_days = {max} in ca.toml); ask for at most {max} days"
    )]
    LifetimeTooLong {
        /// The profile.
        profile: &'static str,
        /// Days requested.
        days: u32,
        /// Days allowed.
        max: u32,
    },
    /// Zero days requested.
    #[error("a certificate must be valid for at least one day; give --days 1 or more")]
    ZeroLifetime,
    /// Input that is not a PKCS#10 CSR gatehouse can read.
    #[error("this is not a CSR gatehouse can sign: {0}; give the CSR as `openssl req -new` writes it (PEM or DER)")]
    MalformedCsr(CsrDefect),
    /// The CSR's self-signature does not verify.
    #[error(
        "the CSR signature does not verify against its own public key; the request was altered or is corrupt, make it again"
    )]
    CsrSignature,
    /// The CSR is signed with SHA-1.
    #[error("the CSR is signed with SHA-1, which gatehouse refuses; make it again with SHA-256 (openssl req -sha256)")]
    Sha1Signature,
    /// A signature algorithm gatehouse does not accept.
    #[error(
        "the CSR uses the signature algorithm {0}, which gatehouse does not accept; use ECDSA, RSA or Ed25519 with SHA-256 or better"
    )]
    UnsupportedSignature(String),
    /// An RSA key below 2048 bits.
    #[error(
        "the RSA key has {0} bits; gatehouse requires at least 2048 bits, make a new key (openssl genrsa 2048 or larger)"
    )]
    WeakRsaKey(usize),
    /// A public key type gatehouse does not accept.
    #[error("the public key type {0} is not accepted; use ECDSA P-256/P-384, RSA 2048+ or Ed25519")]
    UnsupportedKey(String),
    /// Key generation failed in the crypto library.
    #[error("key generation failed: {0}")]
    KeyGeneration(rcgen::Error),
    /// Encoding or signing failed in the certificate library.
    #[error("signing failed: {0}")]
    Signing(rcgen::Error),
    /// A CA already lives in this data dir.
    #[error(
        "a CA already exists in {0}; refusing to overwrite it (use another --data-dir, or move that directory away first)"
    )]
    AlreadyInitialized(PathBuf),
    /// No CA in this data dir.
    #[error("no CA in {0}; run `gatehouse ca init` first (or point --data-dir at the right directory)")]
    NotInitialized(PathBuf),
    /// A CA key kept in the clear, asked to go into a shared database.
    #[error(
        "the CA key {0} is not encrypted, and a CA kept in a shared database holds its keys only encrypted; \
         make the CA with GATEHOUSE_CA_PASSPHRASE set (or its keys in a PKCS#11 token, --key-store and --root-key-store)"
    )]
    PlainKeyNotShared(PathBuf),
    /// The CA files a shared database gave are not a whole CA; nothing was written.
    #[error(
        "the CA kept in the storage is damaged ({0}); nothing was written to the data dir; restore the storage from a backup"
    )]
    SharedCaDamaged(String),
    /// An encrypted CA key and no passphrase.
    #[error("the CA key {0} is encrypted; set GATEHOUSE_CA_PASSPHRASE or pass --ca-passphrase-file")]
    PassphraseNeeded(PathBuf),
    /// The passphrase does not decrypt the key.
    #[error("the passphrase does not decrypt {0}; check GATEHOUSE_CA_PASSPHRASE or --ca-passphrase-file")]
    WrongPassphrase(PathBuf),
    /// A key or certificate file that cannot be read as such.
    #[error("{path} is not a usable {what}: {why}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What it should have been.
        what: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A file-system failure.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done (read, write, create).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// PKCS#12 encoding failed.
    #[error("cannot build the PKCS#12 bundle: {0}")]
    Pkcs12(#[source] p12_keystore::error::Error),
    /// A PKCS#12 bundle was asked for without a certificate.
    #[error("a PKCS#12 bundle needs the certificate of its key, and none was given")]
    Pkcs12WithoutCertificate,
    /// A private key could not be written as (encrypted) PKCS#8.
    #[error("cannot encode the private key as PKCS#8: {0}")]
    KeyEncoding(#[source] pkcs8::Error),
    /// The issuing CA's certificate does not parse, although it was read as PEM.
    #[error(
        "the CA's intermediate certificate is not a valid X.509 certificate; restore ca/intermediate.crt from a backup"
    )]
    MalformedCaCertificate(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    /// The CRL's nextUpdate would not be after thisUpdate.
    #[error("the CRL must be valid for at least one hour; give --next-update-hours 1 or more")]
    CrlValidity,
    /// No certificate with this serial.
    #[error("no certificate with serial {0} was issued by this CA; `gatehouse ca list` shows the serials")]
    UnknownSerial(String),
    /// Revoking twice.
    #[error("certificate {serial} was already revoked at {at} ({reason}); nothing changed")]
    AlreadyRevoked {
        /// Serial.
        serial: String,
        /// When, RFC 3339.
        at: String,
        /// Reason name.
        reason: &'static str,
    },
    /// Releasing a certificate that is not on hold.
    #[error(
        "certificate {serial} is {state}; only a revocation with reason certificateHold can be released \
         (RFC 5280), any other revocation is final"
    )]
    NotOnHold {
        /// Serial.
        serial: String,
        /// "not revoked", or "revoked (keyCompromise)" and so on.
        state: String,
    },
    /// The CA settings file is invalid (a configuration error).
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The issuance database failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// Result of a CA operation.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { action, path, source }
    }
}

/// An invalid `ca.toml`: the message names the key and the line.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SettingsError {
    /// The settings file.
    pub path: PathBuf,
    /// What toml or the validation said, with line and column.
    pub message: String,
}
