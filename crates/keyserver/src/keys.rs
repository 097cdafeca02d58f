//! Private keys from directories and PKCS#11 tokens, indexed by SKI.
//!
//! A key directory holds files whose names end in `.key`, each one private key
//! as PEM or DER: PKCS#1 (`RSA PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) or PKCS#8
//! (`PRIVATE KEY`: RSA, EC P-256/P-384/P-521, Ed25519). Files are read in name
//! order; a file that cannot be used stops the start, naming the file; of two
//! keys with the same SKI the first is kept and the second is warned about.
//! Keys in tokens are found by `crate::pkcs11` and stay there; they are indexed
//! here like the others.
//!
//! The SKI is always computed from the public key (RFC 5280 §4.2.1.2 method 1:
//! SHA-1 of the subjectPublicKey BIT STRING's contents), never read from a
//! certificate: RSA → DER `RSAPublicKey`, EC → the uncompressed point,
//! Ed25519 → the 32-byte key.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::digest;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{self, EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair as _};
use keyless::Ski;
use pkcs8::ObjectIdentifier;
use rustls_pki_types::PrivateKeyDer;

use crate::config::KeySource;
use crate::pkcs11::{Modules, TokenError, TokenKey};
use crate::raw_rsa::RawRsa;

/// The kind of a key, as logs and the metrics' `key_type` label name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyType {
    /// RSA, 2048 to 8192 bits.
    Rsa,
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// ECDSA on P-521.
    EcdsaP521,
    /// Ed25519.
    Ed25519,
}

impl KeyType {
    /// Every key type, in the order logs list them.
    pub const ALL: [KeyType; 5] =
        [KeyType::Rsa, KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::EcdsaP521, KeyType::Ed25519];

    /// `rsa`, `ecdsa_p256`, `ecdsa_p384`, `ecdsa_p521`, `ed25519`.
    pub const fn name(self) -> &'static str {
        match self {
            KeyType::Rsa => "rsa",
            KeyType::EcdsaP256 => "ecdsa_p256",
            KeyType::EcdsaP384 => "ecdsa_p384",
            KeyType::EcdsaP521 => "ecdsa_p521",
            KeyType::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The private half: in the form aws-lc-rs signs with, or a handle to a
/// key in a token.
pub(crate) enum KeyPair {
    /// aws-lc-rs's key for TLS's signatures, and AWS-LC's own for the raw
    /// operations aws-lc-rs lacks (`crate::raw_rsa`).
    Rsa(RsaKeyPair, RawRsa),
    Ecdsa(EcdsaKeyPair, KeyType),
    Ed25519(Ed25519KeyPair),
    Token(TokenKey),
}

/// Where a key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// A key file.
    File(PathBuf),
    /// A private key object in a PKCS#11 token.
    Token {
        /// The token's label.
        token: String,
        /// The object's `CKA_LABEL`.
        object: String,
        /// The object's `CKA_ID`, hex.
        id: String,
    },
}

impl fmt::Display for KeyOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyOrigin::File(file) => write!(f, "{}", file.display()),
            KeyOrigin::Token { token, object, id } => write!(f, "token {token} object {object:?} id {id}"),
        }
    }
}

/// One private key, with its SKI and where it is.
pub struct Key {
    ski: Ski,
    origin: KeyOrigin,
    pub(crate) pair: KeyPair,
}

impl Key {
    /// The key's Subject Key Identifier.
    pub fn ski(&self) -> Ski {
        self.ski
    }

    /// Where the key is: its file, or its token and object.
    pub fn origin(&self) -> &KeyOrigin {
        &self.origin
    }

    /// Whether the key is in a token, whose operations may block for as long as
    /// the token takes (a network HSM: milliseconds).
    pub(crate) fn in_token(&self) -> bool {
        matches!(self.pair, KeyPair::Token(_))
    }

    /// The key's kind.
    pub fn key_type(&self) -> KeyType {
        match &self.pair {
            KeyPair::Rsa(..) => KeyType::Rsa,
            KeyPair::Ecdsa(_, kind) => *kind,
            KeyPair::Ed25519(_) => KeyType::Ed25519,
            KeyPair::Token(k) => k.key_type,
        }
    }

    /// Reads one key file (PEM or DER).
    pub fn read(file: &Path) -> Result<Key, KeyError> {
        let bytes = std::fs::read(file).map_err(|e| KeyError::File { file: file.to_owned(), why: e.into() })?;
        let pair = parse(&bytes).map_err(|why| KeyError::File { file: file.to_owned(), why })?;
        let public = match &pair {
            KeyPair::Rsa(k, _) => k.public_key().as_ref().to_vec(),
            KeyPair::Ecdsa(k, _) => k.public_key().as_ref().to_vec(),
            KeyPair::Ed25519(k) => k.public_key().as_ref().to_vec(),
            KeyPair::Token(_) => unreachable!("parse makes no token keys"),
        };
        Ok(Key { ski: ski_of(&public), origin: KeyOrigin::File(file.to_owned()), pair })
    }

    /// A key found in a token.
    fn in_token_found(found: crate::pkcs11::Found) -> Key {
        let crate::pkcs11::Found { key, subject_public_key } = found;
        let origin = KeyOrigin::Token {
            token: key.token.label().to_owned(),
            object: key.label.clone(),
            id: hex::encode(&key.id),
        };
        Key { ski: ski_of(&subject_public_key), origin, pair: KeyPair::Token(key) }
    }
}

impl fmt::Debug for Key {
    /// Never the key material: its SKI, kind and origin.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("ski", &self.ski)
            .field("type", &self.key_type())
            .field("origin", &self.origin)
            .finish()
    }
}

/// SHA-1 of the subjectPublicKey BIT STRING's contents.
fn ski_of(subject_public_key: &[u8]) -> Ski {
    let hash = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, subject_public_key);
    let mut ski = [0u8; 20];
    ski.copy_from_slice(hash.as_ref());
    Ski(ski)
}

/// Why a key directory or key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The directory cannot be listed.
    #[error("key directory {}: cannot read it: {why}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// What the system said.
        why: std::io::Error,
    },
    /// One file cannot be used.
    #[error("key file {}: {why}", file.display())]
    File {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        why: KeyDefect,
    },
    /// A PKCS#11 module or token cannot be used.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// What is wrong with a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyDefect {
    /// It cannot be read.
    #[error("cannot read it: {0}")]
    Unreadable(#[from] std::io::Error),
    /// It is an encrypted key.
    #[error("it is encrypted; the key server reads unencrypted keys (openssl pkey -in FILE -out FILE.key)")]
    Encrypted,
    /// PEM text that holds no usable private key block.
    #[error("{0} (a PKCS#1, SEC1 or PKCS#8 private key)")]
    Pem(pki::PemDefect),
    /// Neither PEM nor a DER private key.
    #[error("it is neither PEM nor a DER PKCS#1, SEC1 or PKCS#8 private key")]
    NotAKey,
    /// A PKCS#8 key of an algorithm the server does not sign with.
    #[error("its PKCS#8 algorithm {0} is not RSA, EC (P-256, P-384, P-521) or Ed25519")]
    Algorithm(String),
    /// An EC key on a curve the server does not sign with.
    #[error("its EC curve {0} is not P-256, P-384 or P-521")]
    Curve(String),
    /// aws-lc refused the key.
    #[error("aws-lc refuses it as {kind}: {reason}")]
    Rejected {
        /// The kind it was read as (`an RSA key`, `a SEC1 EC key`, ...).
        kind: &'static str,
        /// aws-lc's reason (`TooSmall`, `InvalidEncoding`, ...).
        reason: String,
    },
}

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// The curves, with the signing algorithm whose hash length digests are fitted to.
const CURVES: [(&str, KeyType, &EcdsaSigningAlgorithm); 3] = [
    ("1.2.840.10045.3.1.7", KeyType::EcdsaP256, &signature::ECDSA_P256_SHA256_ASN1_SIGNING),
    ("1.3.132.0.34", KeyType::EcdsaP384, &signature::ECDSA_P384_SHA384_ASN1_SIGNING),
    ("1.3.132.0.35", KeyType::EcdsaP521, &signature::ECDSA_P521_SHA512_ASN1_SIGNING),
];

fn rejected(kind: &'static str) -> impl Fn(aws_lc_rs::error::KeyRejected) -> KeyDefect {
    move |e| KeyDefect::Rejected { kind, reason: e.to_string() }
}

fn parse(bytes: &[u8]) -> Result<KeyPair, KeyDefect> {
    let is_pem = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'-');
    let der: PrivateKeyDer<'_> = if is_pem {
        let text = String::from_utf8_lossy(bytes);
        if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") || text.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(KeyDefect::Encrypted);
        }
        pki::read_first_pem(bytes).map_err(KeyDefect::Pem)?
    } else {
        PrivateKeyDer::try_from(bytes).map_err(|_| KeyDefect::NotAKey)?.clone_key()
    };
    match &der {
        PrivateKeyDer::Pkcs1(k) => {
            rsa_pair(RsaKeyPair::from_der(k.secret_pkcs1_der()), k.secret_pkcs1_der(), "a PKCS#1 RSA key")
        }
        PrivateKeyDer::Sec1(k) => {
            let sec1 = k.secret_sec1_der();
            CURVES
                .iter()
                .find_map(|(_, kind, alg)| {
                    EcdsaKeyPair::from_private_key_der(alg, sec1).ok().map(|k| KeyPair::Ecdsa(k, *kind))
                })
                .ok_or(KeyDefect::Rejected {
                    kind: "a SEC1 EC key",
                    reason: "not a P-256, P-384 or P-521 key, or damaged".to_owned(),
                })
        }
        PrivateKeyDer::Pkcs8(k) => parse_pkcs8(k.secret_pkcs8_der()),
        _ => Err(KeyDefect::NotAKey),
    }
}

/// Both forms of an RSA key, from its PKCS#1 DER `pkcs1`.
fn rsa_pair(
    pair: Result<RsaKeyPair, aws_lc_rs::error::KeyRejected>,
    pkcs1: &[u8],
    kind: &'static str,
) -> Result<KeyPair, KeyDefect> {
    let pair = pair.map_err(rejected(kind))?;
    let raw = RawRsa::from_pkcs1_der(pkcs1)
        .ok_or_else(|| KeyDefect::Rejected { kind, reason: "AWS-LC refuses its RSAPrivateKey".to_owned() })?;
    Ok(KeyPair::Rsa(pair, raw))
}

fn parse_pkcs8(der: &[u8]) -> Result<KeyPair, KeyDefect> {
    let info = pkcs8::PrivateKeyInfo::try_from(der).map_err(|_| KeyDefect::NotAKey)?;
    let oid = info.algorithm.oid;
    if oid == RSA_ENCRYPTION {
        rsa_pair(RsaKeyPair::from_pkcs8(der), info.private_key, "a PKCS#8 RSA key")
    } else if oid == EC_PUBLIC_KEY {
        let curve = info.algorithm.parameters_oid().map_err(|_| KeyDefect::Curve("(none given)".to_owned()))?;
        let (_, kind, alg) = CURVES
            .iter()
            .find(|(name, _, _)| ObjectIdentifier::new(name).is_ok_and(|c| c == curve))
            .ok_or_else(|| KeyDefect::Curve(curve.to_string()))?;
        EcdsaKeyPair::from_pkcs8(alg, der).map(|k| KeyPair::Ecdsa(k, *kind)).map_err(rejected("a PKCS#8 EC key"))
    } else if oid == ED25519 {
        // OpenSSL writes PKCS#8 v1 (no public key), which this constructor reads.
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map(KeyPair::Ed25519).map_err(rejected("a PKCS#8 Ed25519 key"))
    } else {
        Err(KeyDefect::Algorithm(oid.to_string()))
    }
}

/// The keys of every `[[keys]]` table, by SKI.
#[derive(Debug, Default)]
pub struct KeyStore {
    keys: HashMap<Ski, Arc<Key>>,
}

impl KeyStore {
    /// Loads every source in order. Warns (tracing) about a key whose SKI an
    /// earlier one has, and about a key file others may read.
    pub fn load(sources: &[KeySource]) -> Result<KeyStore, KeyError> {
        let mut store = KeyStore::default();
        let mut modules = Modules::default();
        for source in sources {
            match source {
                KeySource::Dir(dir) => store.load_dir(dir)?,
                KeySource::Pkcs11(keys) => {
                    for found in modules.keys(keys)? {
                        store.add(Key::in_token_found(found));
                    }
                }
            }
        }
        Ok(store)
    }

    fn load_dir(&mut self, dir: &Path) -> Result<(), KeyError> {
        let dir_error = |why| KeyError::Dir { dir: dir.to_owned(), why };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(dir_error)? {
            let path = entry.map_err(dir_error)?.path();
            // fs::metadata follows symbolic links, as keys linked into a directory are.
            if path.extension().is_some_and(|e| e == "key") && std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                files.push(path);
            }
        }
        files.sort();
        if files.is_empty() {
            tracing::warn!(dir = %dir.display(), "key directory holds no .key files");
        }
        for file in files {
            warn_if_readable_by_others(&file, "key file");
            self.add(Key::read(&file)?);
        }
        Ok(())
    }

    /// Indexes `key`, unless a key with its SKI is there already.
    fn add(&mut self, key: Key) {
        match self.keys.get(&key.ski) {
            Some(first) => tracing::warn!(
                ski = %key.ski,
                kept = %first.origin,
                ignored = %key.origin,
                "two keys have the same SKI; the first is kept"
            ),
            None => {
                tracing::debug!(ski = %key.ski, key_type = %key.key_type(), origin = %key.origin, "key loaded");
                self.keys.insert(key.ski, Arc::new(key));
            }
        }
    }

    /// The key with this SKI.
    pub fn get(&self, ski: &Ski) -> Option<&Arc<Key>> {
        self.keys.get(ski)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many keys of each type, for the start-up log: `2 rsa, 1 ed25519`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = KeyType::ALL
            .iter()
            .filter_map(|t| {
                let n = self.keys.values().filter(|k| k.key_type() == *t).count();
                (n > 0).then(|| format!("{n} {t}"))
            })
            .collect();
        if parts.is_empty() { "none".to_owned() } else { parts.join(", ") }
    }
}

/// Warns when `file` (a `what`: `key file`, `pin_file`) is readable by its group or others.
pub(crate) fn warn_if_readable_by_others(file: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(file) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o044 != 0 {
            tracing::warn!(
                file = %file.display(),
                mode = %format_args!("{mode:o}"),
                "{what} is readable by its group or by others; chmod 600 it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rsa_key_generated_here_has_the_ski_of_its_public_key() {
        let pkcs8 = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'_>>::as_der(&pkcs8).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.key"), der.as_ref()).unwrap();
        std::fs::write(dir.path().join("b.key"), der.as_ref()).unwrap();
        std::fs::write(dir.path().join("ignored.pem"), b"not a key").unwrap();
        let store = KeyStore::load(&[KeySource::Dir(dir.path().to_owned())]).unwrap();
        assert_eq!(store.len(), 1, "the same key twice is kept once");
        assert_eq!(store.summary(), "1 rsa");
        let ski = ski_of(pkcs8.public_key().as_ref());
        assert_eq!(store.get(&ski).unwrap().origin(), &KeyOrigin::File(dir.path().join("a.key")));

        std::fs::write(dir.path().join("c.key"), b"-----BEGIN PRIVATE KEY-----\n%%\n").unwrap();
        let e = KeyStore::load(&[KeySource::Dir(dir.path().to_owned())]).unwrap_err().to_string();
        assert!(e.contains("c.key"), "{e}");
    }
}
