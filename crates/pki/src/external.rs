//! CA keys that pki does not hold: the intermediate's key in a PKCS#11 token
//! (`gatehouse ca init --key-store pkcs11:...`). pki signs through the
//! [`ExternalKey`] trait and opens such keys through a [`TokenOpener`] the
//! program installs at start ([`set_token_opener`]): the token code (cryptoki)
//! lives in the key server crate, above pki, and every caller of
//! [`crate::CaDir::issuer`] (the `ca` commands, the gateway's internal CA, the
//! ACME server) then works unchanged.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm, SigningKey};

/// A private key held elsewhere that signs on request.
pub trait ExternalKey: Send + Sync {
    /// The subjectPublicKey bits (for EC the uncompressed point, for RSA the
    /// RSAPublicKey DER).
    fn public_key(&self) -> &[u8];
    /// The certificate signature algorithm the key signs with.
    fn algorithm(&self) -> &'static SignatureAlgorithm;
    /// The signature of `message` (hashed here or in the token, as the
    /// algorithm says), encoded as X.509 carries it.
    fn sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, String>;
    /// Where the key is, for messages (a URI without any PIN).
    fn describe(&self) -> String;
}

/// Opens the key a `ca/intermediate.pkcs11` file names: its URI, and the CA
/// directory that relative paths in it are taken from.
pub type TokenOpener = fn(uri: &str, base: &Path) -> std::result::Result<Arc<dyn ExternalKey>, String>;

static OPENER: OnceLock<TokenOpener> = OnceLock::new();

/// Installs the opener of token keys (once per process; later calls are ignored).
pub fn set_token_opener(opener: TokenOpener) {
    let _ = OPENER.set(opener);
}

pub(crate) fn token_opener() -> Option<TokenOpener> {
    OPENER.get().copied()
}

/// The issuing CA's key: a key pair pki holds, or a key in a token.
pub enum CaKey {
    /// Read from `ca/intermediate.key`.
    File(KeyPair),
    /// In a token, named by `ca/intermediate.pkcs11`.
    External(Arc<dyn ExternalKey>),
}

impl From<KeyPair> for CaKey {
    fn from(key: KeyPair) -> CaKey {
        CaKey::File(key)
    }
}

impl PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        match self {
            CaKey::File(key) => key.der_bytes(),
            CaKey::External(key) => key.public_key(),
        }
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self {
            CaKey::File(key) => PublicKeyData::algorithm(key),
            CaKey::External(key) => key.algorithm(),
        }
    }
}

impl SigningKey for CaKey {
    fn sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        match self {
            CaKey::File(key) => key.sign(message),
            CaKey::External(key) => key.sign(message).map_err(|why| {
                tracing::error!(key = %key.describe(), error = %why, "the token did not sign");
                rcgen::Error::RemoteKeyError
            }),
        }
    }
}
