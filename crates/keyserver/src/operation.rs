//! One private-key operation: the opcode, a key, the payload in, the result out.
//!
//! Digests arrive already made (the gateway hashed the handshake transcript),
//! so RSA and ECDSA sign a precomputed digest through aws-lc-rs's
//! `sign_digest`; Ed25519 signs the whole message. RSA decryption and the
//! legacy PKCS#1 v1.5 digests go to AWS-LC itself (`crate::raw_rsa`). Keys in a token are the
//! token's to use (`crate::pkcs11`). The request's digest length has been
//! checked against the opcode's hash before this runs.

use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::signature::{self, RsaEncoding};
use keyless::{ErrorCode, Opcode};

use crate::keys::{Key, KeyPair, KeyType};
use crate::raw_rsa::{LegacyHash, RawRsa};

/// Why an operation gave no result; on the wire each is the error code
/// [`OperationError::code`] gives, in the log each is named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OperationError {
    /// The opcode is for another kind of key (an ECDSA opcode on an RSA key).
    #[error("the opcode is for another kind of key")]
    WrongKeyType,
    /// aws-lc refused to sign.
    #[error("aws-lc failed the operation")]
    Crypto,
    /// The token refused the operation: bad input, a mechanism it lacks, a key
    /// not allowed to do it.
    #[error("the token refused it: {0}")]
    TokenRefused(String),
    /// The token failed: no session, a device error, the token gone.
    #[error("the token failed: {0}")]
    TokenFailed(String),
}

impl OperationError {
    /// The protocol's error code: 0x08 (internal) when the token failed, else
    /// 0x01 (crypto failure).
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            OperationError::TokenFailed(_) => ErrorCode::Internal,
            _ => ErrorCode::CryptoFailure,
        }
    }
}

/// Performs `opcode` with `key` on `payload`; `opcode` is a request opcode
/// other than ping, seal, unseal and custom, which are answered without a key.
pub(crate) fn perform(key: &Key, opcode: Opcode, payload: &[u8]) -> Result<Vec<u8>, OperationError> {
    use Opcode::*;
    match (&key.pair, opcode) {
        (KeyPair::Token(k), _) => crate::pkcs11::perform(k, opcode, payload),
        (KeyPair::Rsa(_, raw), RsaDecrypt) => raw.decrypt_raw(payload).ok_or(OperationError::Crypto),
        (KeyPair::Rsa(_, raw), RsaSignMd5Sha1) => legacy(raw, LegacyHash::Md5Sha1, payload),
        (KeyPair::Rsa(_, raw), RsaSignSha1) => legacy(raw, LegacyHash::Sha1, payload),
        (KeyPair::Rsa(_, raw), RsaSignSha224) => legacy(raw, LegacyHash::Sha224, payload),
        (KeyPair::Rsa(k, _), RsaSignSha256) => rsa_sign(k, &signature::RSA_PKCS1_SHA256, &digest::SHA256, payload),
        (KeyPair::Rsa(k, _), RsaSignSha384) => rsa_sign(k, &signature::RSA_PKCS1_SHA384, &digest::SHA384, payload),
        (KeyPair::Rsa(k, _), RsaSignSha512) => rsa_sign(k, &signature::RSA_PKCS1_SHA512, &digest::SHA512, payload),
        // aws-lc-rs's PSS encodings use MGF1 with the same hash and a salt as long as it.
        (KeyPair::Rsa(k, _), RsaPssSignSha256) => rsa_sign(k, &signature::RSA_PSS_SHA256, &digest::SHA256, payload),
        (KeyPair::Rsa(k, _), RsaPssSignSha384) => rsa_sign(k, &signature::RSA_PSS_SHA384, &digest::SHA384, payload),
        (KeyPair::Rsa(k, _), RsaPssSignSha512) => rsa_sign(k, &signature::RSA_PSS_SHA512, &digest::SHA512, payload),
        (
            KeyPair::Ecdsa(k, curve),
            EcdsaSignMd5Sha1 | EcdsaSignSha1 | EcdsaSignSha224 | EcdsaSignSha256 | EcdsaSignSha384 | EcdsaSignSha512,
        ) => ecdsa_sign(k, *curve, payload),
        (KeyPair::Ed25519(k), Ed25519Sign) => Ok(k.sign(payload).as_ref().to_vec()),
        _ => Err(OperationError::WrongKeyType),
    }
}

fn legacy(key: &RawRsa, hash: LegacyHash, digest: &[u8]) -> Result<Vec<u8>, OperationError> {
    key.sign_pkcs1(hash, digest).ok_or(OperationError::Crypto)
}

fn rsa_sign(
    key: &aws_lc_rs::rsa::KeyPair,
    encoding: &'static dyn RsaEncoding,
    hash: &'static digest::Algorithm,
    payload: &[u8],
) -> Result<Vec<u8>, OperationError> {
    let digest = Digest::import_less_safe(payload, hash).map_err(|_| OperationError::Crypto)?;
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign_digest(encoding, &digest, &mut signature).map_err(|_| OperationError::Crypto)?;
    Ok(signature)
}

/// ECDSA over any digest. aws-lc-rs signs a digest of its key's own hash only,
/// but ECDSA uses nothing of the hash but the digest's leftmost bits, as many
/// as the curve order has (SEC 1 §4.1.3 step 5). So a longer digest is cut to
/// the key's hash length (256 bits for P-256, 384 for P-384: exactly the bits
/// ECDSA takes) and a shorter one is left-padded with zeros (the same integer);
/// P-521's SHA-512 length is below its 521-bit order, so nothing is ever cut
/// there. The signature is the one a signer given the original digest makes.
fn ecdsa_sign(key: &signature::EcdsaKeyPair, curve: KeyType, payload: &[u8]) -> Result<Vec<u8>, OperationError> {
    let hash = match curve {
        KeyType::EcdsaP256 => &digest::SHA256,
        KeyType::EcdsaP384 => &digest::SHA384,
        _ => &digest::SHA512,
    };
    let len = hash.output_len();
    let fitted: Vec<u8> = if payload.len() >= len {
        payload[..len].to_vec()
    } else {
        let mut padded = vec![0; len - payload.len()];
        padded.extend_from_slice(payload);
        padded
    };
    let digest = Digest::import_less_safe(&fitted, hash).map_err(|_| OperationError::Crypto)?;
    let signature = key.sign_digest(&digest).map_err(|_| OperationError::Crypto)?;
    Ok(signature.as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{KeyPair as _, UnparsedPublicKey};

    #[test]
    fn ecdsa_over_a_longer_or_shorter_digest_verifies_as_that_digest() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair =
            signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let message = b"the handshake transcript";
        for (verify, hash) in [
            (&signature::ECDSA_P256_SHA384_ASN1, &digest::SHA384),
            (&signature::ECDSA_P256_SHA1_ASN1, &digest::SHA1_FOR_LEGACY_USE_ONLY),
            (&signature::ECDSA_P256_SHA256_ASN1, &digest::SHA256),
        ] {
            let digest = digest::digest(hash, message);
            let sig = ecdsa_sign(&pair, KeyType::EcdsaP256, digest.as_ref()).unwrap();
            UnparsedPublicKey::new(verify, pair.public_key().as_ref())
                .verify(message, &sig)
                .unwrap_or_else(|_| panic!("{hash:?}"));
        }
    }
}
