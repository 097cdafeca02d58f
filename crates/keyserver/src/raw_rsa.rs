//! The RSA private operations of key files that aws-lc-rs does not offer:
//! opcode 0x01, RSA decrypt (m = c^d mod n, left-padded to the modulus length,
//! the padding left in for the caller to check), and PKCS#1 v1.5 signatures
//! of MD5-SHA1 (bare, no DigestInfo), SHA-1 and SHA-224 digests (0x02–0x04).
//!
//! # Why unsafe code, and why only here
//! aws-lc-rs, which every other operation of this server uses, decrypts only
//! with OAEP or PKCS#1 padding removed, and signs PKCS#1 v1.5 with SHA-256 and
//! longer only. AWS-LC underneath it has both operations: `RSA_decrypt` with
//! `RSA_NO_PADDING` and `RSA_sign` with a hash NID. This module calls them
//! through aws-lc-sys, the build of AWS-LC that aws-lc-rs links, so the private
//! operation is AWS-LC's blinded, constant-time one. RustCrypto's `rsa` crate
//! would do it in safe Rust, but its private operation is not constant-time
//! (RUSTSEC-2023-0071, the Marvin attack), and a raw decryption service is the
//! oracle that attack needs.
//!
//! The unsafe surface is this file: one owned `RSA*`, made from the key's
//! PKCS#1 DER and freed on drop, and two calls that get buffers of the length
//! AWS-LC writes (`RSA_size`), with input lengths checked first.

#![allow(unsafe_code)]

use std::ptr::NonNull;

use aws_lc_sys as ffi;

/// The hash of a legacy PKCS#1 v1.5 signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LegacyHash {
    /// TLS 1.0/1.1's MD5 || SHA-1, 36 bytes, signed without a DigestInfo.
    Md5Sha1,
    /// SHA-1, 20 bytes.
    Sha1,
    /// SHA-224, 28 bytes.
    Sha224,
}

impl LegacyHash {
    fn nid(self) -> std::os::raw::c_int {
        match self {
            LegacyHash::Md5Sha1 => ffi::NID_md5_sha1,
            LegacyHash::Sha1 => ffi::NID_sha1,
            LegacyHash::Sha224 => ffi::NID_sha224,
        }
    }

    fn len(self) -> usize {
        match self {
            LegacyHash::Md5Sha1 => 36,
            LegacyHash::Sha1 => 20,
            LegacyHash::Sha224 => 28,
        }
    }
}

/// An RSA private key held by AWS-LC for the raw operations.
pub(crate) struct RawRsa {
    rsa: NonNull<ffi::RSA>,
    /// The modulus length in bytes: every output's length.
    size: usize,
}

// SAFETY: AWS-LC's RSA private operations may run on one key from several
// threads at once (the blinding and Montgomery caches inside are locked); the
// key is never changed after `from_pkcs1_der`.
unsafe impl Send for RawRsa {}
// SAFETY: as above; `&RawRsa` only reaches `RSA_decrypt` and `RSA_sign`.
unsafe impl Sync for RawRsa {}

impl RawRsa {
    /// The key of a PKCS#1 `RSAPrivateKey` DER; `None` if AWS-LC refuses it.
    pub(crate) fn from_pkcs1_der(der: &[u8]) -> Option<RawRsa> {
        // SAFETY: AWS-LC reads `der.len()` bytes from `der.as_ptr()` and returns a
        // new RSA it owns no reference to, or null.
        let rsa = NonNull::new(unsafe { ffi::RSA_private_key_from_bytes(der.as_ptr(), der.len()) })?;
        // Owned from here: freed on drop, on every path below.
        let mut raw = RawRsa { rsa, size: 0 };
        // SAFETY: `raw.rsa` is a valid RSA; both calls only read it.
        let (size, valid) = unsafe { (ffi::RSA_size(raw.rsa.as_ptr()), ffi::RSA_check_key(raw.rsa.as_ptr())) };
        clear_errors();
        raw.size = usize::try_from(size).ok().filter(|&n| n > 0 && valid == 1)?;
        Some(raw)
    }

    /// m = c^d mod n, `size` bytes. `None` when the ciphertext is not exactly
    /// the modulus length or not below the modulus.
    pub(crate) fn decrypt_raw(&self, ciphertext: &[u8]) -> Option<Vec<u8>> {
        if ciphertext.len() != self.size {
            return None;
        }
        let mut out = vec![0u8; self.size];
        let mut written = 0usize;
        // SAFETY: `out` has `out.len()` writable bytes and AWS-LC writes at most
        // that many; `ciphertext` has `ciphertext.len()` readable bytes; `rsa` is valid.
        let ok = unsafe {
            ffi::RSA_decrypt(
                self.rsa.as_ptr(),
                &mut written,
                out.as_mut_ptr(),
                out.len(),
                ciphertext.as_ptr(),
                ciphertext.len(),
                ffi::RSA_NO_PADDING,
            )
        };
        clear_errors();
        (ok == 1 && written == self.size).then_some(out)
    }

    /// The PKCS#1 v1.5 signature of `digest` under `hash`. `None` when the
    /// digest is not the hash's length or AWS-LC refuses.
    pub(crate) fn sign_pkcs1(&self, hash: LegacyHash, digest: &[u8]) -> Option<Vec<u8>> {
        if digest.len() != hash.len() {
            return None;
        }
        let mut out = vec![0u8; self.size];
        let mut written: std::os::raw::c_uint = 0;
        // SAFETY: `RSA_sign` writes at most `RSA_size` bytes, the length of `out`;
        // `digest` has `digest.len()` readable bytes; `rsa` is valid.
        let ok = unsafe {
            ffi::RSA_sign(hash.nid(), digest.as_ptr(), digest.len(), out.as_mut_ptr(), &mut written, self.rsa.as_ptr())
        };
        clear_errors();
        (ok == 1 && usize::try_from(written).ok() == Some(self.size)).then_some(out)
    }
}

impl Drop for RawRsa {
    fn drop(&mut self) {
        // SAFETY: `rsa` came from `RSA_private_key_from_bytes` and is freed once, here.
        unsafe { ffi::RSA_free(self.rsa.as_ptr()) }
    }
}

/// Drops what a failed call left on this thread's AWS-LC error queue, so it is
/// not read as the cause of a later, unrelated failure.
fn clear_errors() {
    // SAFETY: clears this thread's error queue; no arguments.
    unsafe { ffi::ERR_clear_error() }
}

#[cfg(test)]
mod tests {
    use super::*;

    use aws_lc_rs::rsa::{KeyPair, KeySize, Pkcs1PublicEncryptingKey, PublicEncryptingKey};
    use aws_lc_rs::signature::{self, KeyPair as _, UnparsedPublicKey};

    fn key() -> (KeyPair, RawRsa) {
        let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let pkcs8 = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
        let info = pkcs8::PrivateKeyInfo::try_from(pkcs8.as_ref()).unwrap();
        let raw = RawRsa::from_pkcs1_der(info.private_key).unwrap();
        (pair, raw)
    }

    #[test]
    fn a_sha1_signature_verifies_with_the_public_key_and_lengths_are_checked() {
        let (pair, raw) = key();
        let message = b"a TLS 1.2 ServerKeyExchange";
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, message);
        let sig = raw.sign_pkcs1(LegacyHash::Sha1, digest.as_ref()).unwrap();
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY, pair.public_key().as_ref())
            .verify(message, &sig)
            .expect("aws-lc-rs verifies the SHA-1 signature");
        assert!(raw.sign_pkcs1(LegacyHash::Sha1, &digest.as_ref()[..19]).is_none());
        assert!(raw.sign_pkcs1(LegacyHash::Md5Sha1, digest.as_ref()).is_none());
    }

    #[test]
    fn decryption_leaves_the_pkcs1_padding_in_and_bad_ciphertexts_are_refused() {
        let (pair, raw) = key();
        let der =
            aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(pair.public_key()).unwrap();
        let public = PublicEncryptingKey::from_der(der.as_ref()).unwrap();
        let premaster = [0x03, 0x03, 7, 7, 7, 7, 7, 7];
        let mut ciphertext = vec![0; 256];
        Pkcs1PublicEncryptingKey::new(public).unwrap().encrypt(&premaster, &mut ciphertext).unwrap();
        let block = raw.decrypt_raw(&ciphertext).expect("decrypts");
        // 00 02, nonzero padding, 00, the message: RFC 8017 §7.2.1's EM, as the caller gets it.
        assert_eq!(block.len(), 256);
        assert_eq!(&block[..2], &[0x00, 0x02]);
        assert_eq!(block[256 - premaster.len() - 1], 0);
        assert!(block[2..256 - premaster.len() - 1].iter().all(|&b| b != 0));
        assert_eq!(&block[256 - premaster.len()..], &premaster);

        assert!(raw.decrypt_raw(&ciphertext[1..]).is_none(), "one byte short of the modulus");
        assert!(raw.decrypt_raw(&[0xFF; 256]).is_none(), "0xFF.. is above any 2048-bit modulus");
    }
}
