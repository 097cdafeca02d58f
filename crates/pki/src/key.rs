//! Key types, key generation, and private keys at rest (PKCS#8 PEM, optionally
//! encrypted with a passphrase: PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC, which
//! `openssl pkey` reads).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use pkcs8::LineEnding;
use pkcs8::der::Encode;
use pkcs8::der::zeroize::Zeroizing;
use rcgen::{KeyPair, RsaKeySize, SignatureAlgorithm};

use crate::error::{Error, Result};

/// The key algorithms gatehouse issues and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256 (the default: small, fast, universally supported).
    #[default]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384,
    /// RSA 2048 with PKCS#1 v1.5 SHA-256.
    Rsa2048,
    /// RSA 3072.
    Rsa3072,
    /// RSA 4096.
    Rsa4096,
    /// Ed25519.
    Ed25519,
}

impl KeyType {
    /// Every key type, in the order the CLI lists them.
    pub const ALL: [KeyType; 6] = [
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::Rsa2048,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
        KeyType::Ed25519,
    ];

    /// The CLI name (`ecdsa-p256`, ...).
    pub fn name(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa3072 => "rsa-3072",
            KeyType::Rsa4096 => "rsa-4096",
            KeyType::Ed25519 => "ed25519",
        }
    }

    /// The signature algorithm a key of this type signs with.
    pub fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    /// Whether keys of this type are RSA (their certificates also get keyEncipherment).
    pub fn is_rsa(self) -> bool {
        matches!(self, KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096)
    }

    /// Generates a fresh key pair.
    pub fn generate(self) -> Result<KeyPair> {
        let alg = self.signature_algorithm();
        let generated = match self {
            KeyType::Rsa2048 => KeyPair::generate_rsa_for(alg, RsaKeySize::_2048),
            KeyType::Rsa3072 => KeyPair::generate_rsa_for(alg, RsaKeySize::_3072),
            KeyType::Rsa4096 => KeyPair::generate_rsa_for(alg, RsaKeySize::_4096),
            _ => KeyPair::generate_for(alg),
        };
        generated.map_err(Error::KeyGeneration)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        KeyType::ALL.into_iter().find(|t| t.name() == wanted).ok_or_else(|| Error::UnknownKeyType(s.to_owned()))
    }
}

/// A passphrase that protects CA keys at rest. Zeroed on drop, never printed.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps a passphrase (one trailing newline, as files usually have, is removed).
    pub fn new(mut text: String) -> Self {
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        Passphrase(Zeroizing::new(text))
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

const ENCRYPTED_LABEL: &str = "ENCRYPTED PRIVATE KEY";
const PLAIN_LABEL: &str = "PRIVATE KEY";

/// PBKDF2-HMAC-SHA256 rounds for keys at rest (OWASP's 2023 figure). PBKDF2
/// rather than scrypt because OpenSSL's default scrypt memory limit refuses
/// the parameters a strong scrypt needs, and operators must be able to read
/// their CA keys with `openssl pkey`.
const PBKDF2_ITERATIONS: u32 = 600_000;

/// The private key as PKCS#8 v1 DER. aws-lc writes Ed25519 keys as PKCS#8
/// v2 (with the public key), which OpenSSL 3.0 cannot read; v1 is what every
/// tool reads, and the public key is derivable anyway.
pub fn private_key_der(key: &KeyPair) -> Result<Zeroizing<Vec<u8>>> {
    let der = Zeroizing::new(key.serialize_der());
    let mut info = pkcs8::PrivateKeyInfo::try_from(der.as_slice()).map_err(Error::KeyEncoding)?;
    if info.public_key.is_none() {
        return Ok(der);
    }
    info.public_key = None;
    let v1 = info.to_der().map_err(|e| Error::KeyEncoding(e.into()))?;
    Ok(Zeroizing::new(v1))
}

/// Encodes a private key as PKCS#8 PEM, encrypted when a passphrase is given.
pub fn encode_private_key(key: &KeyPair, passphrase: Option<&Passphrase>) -> Result<Zeroizing<String>> {
    let der = private_key_der(key)?;
    let info = pkcs8::PrivateKeyInfo::try_from(der.as_slice()).map_err(Error::KeyEncoding)?;
    match passphrase {
        None => Ok(Zeroizing::new(crate::pem::encode(PLAIN_LABEL, &der))),
        Some(passphrase) => {
            let mut salt = [0u8; 16];
            let mut iv = [0u8; 16];
            aws_lc_rs::rand::fill(&mut salt)
                .and_then(|()| aws_lc_rs::rand::fill(&mut iv))
                .expect("the OS random number generator failed");
            let params = pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(PBKDF2_ITERATIONS, &salt, &iv)
                .map_err(|e| Error::KeyEncoding(e.into()))?;
            let encrypted = info.encrypt_with_params(params, passphrase.bytes()).map_err(Error::KeyEncoding)?;
            encrypted.to_pem(ENCRYPTED_LABEL, LineEnding::LF).map_err(|e| Error::KeyEncoding(e.into()))
        }
    }
}

/// Whether `pem` starts with an encrypted PKCS#8 block.
pub(crate) fn is_encrypted_pem(pem: &[u8]) -> bool {
    crate::pem::first_label(pem).as_deref() == Some(ENCRYPTED_LABEL)
}

/// Reads a PKCS#8 PEM private key (plain or encrypted) from `path`.
///
/// pki-types has no section kind for encrypted PKCS#8, so that one block is read by the
/// pkcs8 crate, which decrypts it; every other PEM goes through [`read_first_pem`](crate::read_first_pem).
pub fn decode_private_key(path: &Path, pem_text: &str, passphrase: Option<&Passphrase>) -> Result<KeyPair> {
    let bad = |why: String| Error::BadFile { path: path.to_owned(), what: "private key", why };
    let label = crate::pem::first_label(pem_text.as_bytes());
    let der: Zeroizing<Vec<u8>> = match label.as_deref() {
        Some(ENCRYPTED_LABEL) => {
            let passphrase = passphrase.ok_or_else(|| Error::PassphraseNeeded(path.to_owned()))?;
            let (_, document) = pkcs8::SecretDocument::from_pem(pem_text).map_err(|_| {
                bad(format!("its {ENCRYPTED_LABEL} block is damaged or cut off; restore it from a backup"))
            })?;
            let info = pkcs8::EncryptedPrivateKeyInfo::try_from(document.as_bytes()).map_err(|_| {
                bad(format!("its {ENCRYPTED_LABEL} block is not PKCS#8 (RFC 5958); restore it from a backup"))
            })?;
            let plain = info.decrypt(passphrase.bytes()).map_err(|_| Error::WrongPassphrase(path.to_owned()))?;
            Zeroizing::new(plain.as_bytes().to_vec())
        }
        Some(PLAIN_LABEL) => {
            let key: rustls_pki_types::PrivatePkcs8KeyDer<'static> = crate::pem::read_first_pem(pem_text.as_bytes())
                .map_err(|defect| bad(format!("{defect}; restore it from a backup")))?;
            Zeroizing::new(key.secret_pkcs8_der().to_vec())
        }
        Some(other) => {
            return Err(bad(format!(
                "it holds a '{}' block, where a PKCS#8 '{PLAIN_LABEL}' or '{ENCRYPTED_LABEL}' block belongs",
                crate::error::shown(other)
            )));
        }
        None => return Err(bad("it is not PEM; it should hold a PKCS#8 'PRIVATE KEY' block".to_owned())),
    };
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_slice());
    KeyPair::try_from(&der).map_err(|e| bad(format!("unsupported key ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_type_names_round_trip_and_unknown_is_refused() {
        for t in KeyType::ALL {
            assert_eq!(t.name().parse::<KeyType>().unwrap(), t);
        }
        assert_eq!("ECDSA_P384".parse::<KeyType>().unwrap(), KeyType::EcdsaP384);
        let err = "rsa-1024".parse::<KeyType>().unwrap_err().to_string();
        assert!(err.contains("rsa-1024") && err.contains("ecdsa-p256"), "{err}");
    }

    #[test]
    fn encrypted_key_needs_the_right_passphrase() {
        let key = KeyType::EcdsaP256.generate().unwrap();
        let pass = Passphrase::new("correct horse\n".into());
        let pem = encode_private_key(&key, Some(&pass)).unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        let path = Path::new("k.pem");
        let back = decode_private_key(path, &pem, Some(&Passphrase::new("correct horse".into()))).unwrap();
        assert_eq!(back.public_key_raw(), key.public_key_raw());
        assert!(matches!(decode_private_key(path, &pem, None), Err(Error::PassphraseNeeded(_))));
        let wrong = decode_private_key(path, &pem, Some(&Passphrase::new("wrong".into())));
        assert!(matches!(wrong, Err(Error::WrongPassphrase(_))));
    }

    #[test]
    fn ed25519_keys_are_written_as_pkcs8_v1() {
        let key = KeyType::Ed25519.generate().unwrap();
        let der = private_key_der(&key).unwrap();
        let info = pkcs8::PrivateKeyInfo::try_from(der.as_slice()).unwrap();
        assert!(info.public_key.is_none());
        assert_eq!(info.version(), pkcs8::Version::V1);
    }

    #[test]
    fn plain_keys_of_every_type_round_trip() {
        for t in [KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Rsa2048, KeyType::Ed25519] {
            let key = t.generate().unwrap();
            let pem = encode_private_key(&key, None).unwrap();
            let back = decode_private_key(Path::new("k"), &pem, None).unwrap();
            assert_eq!(back.public_key_raw(), key.public_key_raw(), "{t}");
        }
    }
}
