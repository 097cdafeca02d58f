//! One private-key operation of the protocol done by a token with `C_Sign` or
//! `C_Decrypt`, the key never leaving it:
//! - RSA PKCS#1 v1.5: `CKM_RSA_PKCS` over `DigestInfo || digest`, the
//!   DigestInfo built here (RFC 8017 §9.2 note 1); so SHA-1, SHA-224 and the
//!   bare 36-byte MD5-SHA1 digest of TLS 1.0/1.1 (opcodes 0x02–0x04) work too.
//! - RSA-PSS: `CKM_RSA_PKCS_PSS` over the digest, MGF1 with the same hash, a
//!   salt as long as the hash, as the protocol says.
//! - RSA decrypt (0x01): `CKM_RSA_X_509`, the raw m = c^d mod n, left-padded
//!   to the modulus length; the padding is the gateway's to remove.
//! - ECDSA: `CKM_ECDSA` over the digest, cut to the curve's length as file
//!   keys do (see `operation::ecdsa_sign`); the token's `r || s` is turned
//!   into the protocol's DER `SEQUENCE { r, s }`.
//! - Ed25519: `CKM_EDDSA` over the whole message.
//!
//! What the token refuses (bad data, a mechanism it lacks, a key not allowed
//! to sign) is error 0x01; a token that fails (no session, device error) is 0x08.

use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use keyless::Opcode;
use pkcs8::der::Encode;
use pkcs8::der::asn1::{SequenceOf, UintRef};

use super::objects::TokenKey;
use crate::keys::KeyType;
use crate::operation::OperationError;

/// The DER DigestInfo before a digest of each hash (RFC 8017 §9.2 note 1).
const SHA1_INFO: &[u8] = &[0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14];
const SHA224_INFO: &[u8] = &digest_info(0x04, 28);
const SHA256_INFO: &[u8] = &digest_info(0x01, 32);
const SHA384_INFO: &[u8] = &digest_info(0x02, 48);
const SHA512_INFO: &[u8] = &digest_info(0x03, 64);

/// DigestInfo for the SHA-2 hash `2.16.840.1.101.3.4.2.N` of `len` bytes.
const fn digest_info(n: u8, len: u8) -> [u8; 19] {
    [0x30, 0x11 + len, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, n, 0x05, 0x00, 0x04, len]
}

/// Performs `opcode` with the token key `key` on `payload`.
pub(crate) fn perform(key: &TokenKey, opcode: Opcode, payload: &[u8]) -> Result<Vec<u8>, OperationError> {
    use Opcode::*;
    let pss = |hash, mgf, len: u64| Mechanism::RsaPkcsPss(PkcsPssParams { hash_alg: hash, mgf, s_len: len.into() });
    match (key.key_type, opcode) {
        (KeyType::Rsa, RsaDecrypt) => decrypt(key, payload),
        (KeyType::Rsa, RsaSignMd5Sha1) => sign(key, &Mechanism::RsaPkcs, payload),
        (KeyType::Rsa, RsaSignSha1) => sign(key, &Mechanism::RsaPkcs, &[SHA1_INFO, payload].concat()),
        (KeyType::Rsa, RsaSignSha224) => sign(key, &Mechanism::RsaPkcs, &[SHA224_INFO, payload].concat()),
        (KeyType::Rsa, RsaSignSha256) => sign(key, &Mechanism::RsaPkcs, &[SHA256_INFO, payload].concat()),
        (KeyType::Rsa, RsaSignSha384) => sign(key, &Mechanism::RsaPkcs, &[SHA384_INFO, payload].concat()),
        (KeyType::Rsa, RsaSignSha512) => sign(key, &Mechanism::RsaPkcs, &[SHA512_INFO, payload].concat()),
        (KeyType::Rsa, RsaPssSignSha256) => {
            sign(key, &pss(MechanismType::SHA256, PkcsMgfType::MGF1_SHA256, 32), payload)
        }
        (KeyType::Rsa, RsaPssSignSha384) => {
            sign(key, &pss(MechanismType::SHA384, PkcsMgfType::MGF1_SHA384, 48), payload)
        }
        (KeyType::Rsa, RsaPssSignSha512) => {
            sign(key, &pss(MechanismType::SHA512, PkcsMgfType::MGF1_SHA512, 64), payload)
        }
        (
            KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::EcdsaP521,
            EcdsaSignMd5Sha1 | EcdsaSignSha1 | EcdsaSignSha224 | EcdsaSignSha256 | EcdsaSignSha384 | EcdsaSignSha512,
        ) => {
            // The curve order's length in bytes: what ECDSA takes of a digest.
            let order_len = match key.key_type {
                KeyType::EcdsaP256 => 32,
                KeyType::EcdsaP384 => 48,
                _ => 66,
            };
            let digest = &payload[..payload.len().min(order_len)];
            let raw = sign(key, &Mechanism::Ecdsa, digest)?;
            ecdsa_der(&raw)
        }
        (KeyType::Ed25519, Ed25519Sign) => {
            let params =
                cryptoki::mechanism::eddsa::EddsaParams::new(cryptoki::mechanism::eddsa::EddsaSignatureScheme::Pure);
            sign(key, &Mechanism::Eddsa(params), payload)
        }
        _ => Err(OperationError::WrongKeyType),
    }
}

fn sign(key: &TokenKey, mechanism: &Mechanism<'_>, data: &[u8]) -> Result<Vec<u8>, OperationError> {
    key.token.with_session(|session| session.sign(mechanism, key.handle, data)).map_err(token_error)
}

fn decrypt(key: &TokenKey, ciphertext: &[u8]) -> Result<Vec<u8>, OperationError> {
    if ciphertext.len() != key.modulus_len {
        return Err(OperationError::TokenRefused(format!(
            "a ciphertext of {} bytes for a {}-byte modulus",
            ciphertext.len(),
            key.modulus_len
        )));
    }
    let m = key
        .token
        .with_session(|session| session.decrypt(&Mechanism::RsaX509, key.handle, ciphertext))
        .map_err(token_error)?;
    let m = &m[m.len().saturating_sub(key.modulus_len)..];
    let mut block = vec![0; key.modulus_len - m.len()];
    block.extend_from_slice(m);
    Ok(block)
}

/// DER `SEQUENCE { r INTEGER, s INTEGER }` of a PKCS#11 ECDSA signature, the
/// two integers of equal length concatenated (PKCS#11 §2.3.1).
fn ecdsa_der(raw: &[u8]) -> Result<Vec<u8>, OperationError> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return Err(OperationError::TokenRefused(format!("an ECDSA signature of {} bytes", raw.len())));
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let encoded = (|| {
        let mut sequence = SequenceOf::<UintRef<'_>, 2>::new();
        sequence.add(UintRef::new(r)?)?;
        sequence.add(UintRef::new(s)?)?;
        sequence.to_der()
    })();
    encoded.map_err(|e| OperationError::TokenRefused(format!("the ECDSA signature cannot be encoded: {e}")))
}

/// 0x01 for what the token refuses, 0x08 for a token that fails.
fn token_error(error: Error) -> OperationError {
    match error {
        Error::Pkcs11(
            RvError::DataInvalid
            | RvError::DataLenRange
            | RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange
            | RvError::MechanismInvalid
            | RvError::MechanismParamInvalid
            | RvError::KeyTypeInconsistent
            | RvError::KeyFunctionNotPermitted
            | RvError::FunctionNotSupported,
            _,
        ) => OperationError::TokenRefused(error.to_string()),
        _ => OperationError::TokenFailed(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_infos_are_rfc_8017s() {
        let sha256 = [
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04,
            0x20,
        ];
        assert_eq!(SHA256_INFO, sha256);
        assert_eq!((SHA224_INFO[1], SHA384_INFO[1], SHA512_INFO[1]), (0x2d, 0x41, 0x51));
    }

    #[test]
    fn ecdsa_raw_to_der_keeps_integers_positive_and_minimal() {
        let mut raw = vec![0; 32];
        raw[31] = 1;
        raw.extend_from_slice(&[0x80; 32]);
        let der = ecdsa_der(&raw).unwrap();
        assert_eq!(&der[..5], &[0x30, 38, 0x02, 0x01, 0x01]);
        assert_eq!(&der[5..8], &[0x02, 33, 0x00]);
        // P-521: 66-byte integers, a SEQUENCE over 127 bytes (long form length).
        let der = ecdsa_der(&[0xFF; 132]).unwrap();
        assert_eq!(&der[..3], &[0x30, 0x81, 2 * 69]);
        assert!(ecdsa_der(&[1; 63]).is_err());
    }
}
