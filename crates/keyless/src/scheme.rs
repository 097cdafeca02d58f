//! TLS signature schemes (RFC 8446 §4.2.3) and the opcode that signs for
//! each, so that a TLS stack's signer can ask a key server without this crate
//! depending on that stack: rustls's `SignatureScheme::to_u16()` goes through
//! [`SignatureScheme::from_u16`].

use crate::{HashAlgorithm, Opcode};

/// A TLS signature scheme, named as rustls names them, with its IANA code point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureScheme {
    /// `rsa_pkcs1_sha1` (0x0201).
    RsaPkcs1Sha1,
    /// `ecdsa_sha1` (0x0203).
    EcdsaSha1Legacy,
    /// `rsa_pkcs1_sha256` (0x0401).
    RsaPkcs1Sha256,
    /// `ecdsa_secp256r1_sha256` (0x0403).
    EcdsaNistp256Sha256,
    /// `rsa_pkcs1_sha384` (0x0501).
    RsaPkcs1Sha384,
    /// `ecdsa_secp384r1_sha384` (0x0503).
    EcdsaNistp384Sha384,
    /// `rsa_pkcs1_sha512` (0x0601).
    RsaPkcs1Sha512,
    /// `ecdsa_secp521r1_sha512` (0x0603).
    EcdsaNistp521Sha512,
    /// `rsa_pss_rsae_sha256` (0x0804).
    RsaPssSha256,
    /// `rsa_pss_rsae_sha384` (0x0805).
    RsaPssSha384,
    /// `rsa_pss_rsae_sha512` (0x0806).
    RsaPssSha512,
    /// `ed25519` (0x0807).
    Ed25519,
    /// `ed448` (0x0808): no opcode signs with it.
    Ed448,
    /// `rsa_pss_pss_sha256` (0x0809).
    RsaPssPssSha256,
    /// `rsa_pss_pss_sha384` (0x080A).
    RsaPssPssSha384,
    /// `rsa_pss_pss_sha512` (0x080B).
    RsaPssPssSha512,
}

impl SignatureScheme {
    /// Every scheme this type names.
    pub const ALL: [SignatureScheme; 16] = [
        SignatureScheme::RsaPkcs1Sha1,
        SignatureScheme::EcdsaSha1Legacy,
        SignatureScheme::RsaPkcs1Sha256,
        SignatureScheme::EcdsaNistp256Sha256,
        SignatureScheme::RsaPkcs1Sha384,
        SignatureScheme::EcdsaNistp384Sha384,
        SignatureScheme::RsaPkcs1Sha512,
        SignatureScheme::EcdsaNistp521Sha512,
        SignatureScheme::RsaPssSha256,
        SignatureScheme::RsaPssSha384,
        SignatureScheme::RsaPssSha512,
        SignatureScheme::Ed25519,
        SignatureScheme::Ed448,
        SignatureScheme::RsaPssPssSha256,
        SignatureScheme::RsaPssPssSha384,
        SignatureScheme::RsaPssPssSha512,
    ];

    /// The scheme's IANA code point.
    pub const fn to_u16(self) -> u16 {
        match self {
            SignatureScheme::RsaPkcs1Sha1 => 0x0201,
            SignatureScheme::EcdsaSha1Legacy => 0x0203,
            SignatureScheme::RsaPkcs1Sha256 => 0x0401,
            SignatureScheme::EcdsaNistp256Sha256 => 0x0403,
            SignatureScheme::RsaPkcs1Sha384 => 0x0501,
            SignatureScheme::EcdsaNistp384Sha384 => 0x0503,
            SignatureScheme::RsaPkcs1Sha512 => 0x0601,
            SignatureScheme::EcdsaNistp521Sha512 => 0x0603,
            SignatureScheme::RsaPssSha256 => 0x0804,
            SignatureScheme::RsaPssSha384 => 0x0805,
            SignatureScheme::RsaPssSha512 => 0x0806,
            SignatureScheme::Ed25519 => 0x0807,
            SignatureScheme::Ed448 => 0x0808,
            SignatureScheme::RsaPssPssSha256 => 0x0809,
            SignatureScheme::RsaPssPssSha384 => 0x080A,
            SignatureScheme::RsaPssPssSha512 => 0x080B,
        }
    }

    /// The scheme with IANA code point `value`, if this type names it.
    pub fn from_u16(value: u16) -> Option<SignatureScheme> {
        SignatureScheme::ALL.into_iter().find(|scheme| scheme.to_u16() == value)
    }

    /// The opcode that makes this scheme's signature, or `None` when the
    /// protocol has none (Ed448).
    ///
    /// The RSA-PSS schemes, `rsae` and `pss` alike, sign with MGF1 of the same
    /// hash and a salt as long as the hash, which is what opcodes 0x35–0x37 do.
    pub const fn opcode(self) -> Option<Opcode> {
        Some(match self {
            SignatureScheme::RsaPkcs1Sha1 => Opcode::RsaSignSha1,
            SignatureScheme::RsaPkcs1Sha256 => Opcode::RsaSignSha256,
            SignatureScheme::RsaPkcs1Sha384 => Opcode::RsaSignSha384,
            SignatureScheme::RsaPkcs1Sha512 => Opcode::RsaSignSha512,
            SignatureScheme::EcdsaSha1Legacy => Opcode::EcdsaSignSha1,
            SignatureScheme::EcdsaNistp256Sha256 => Opcode::EcdsaSignSha256,
            SignatureScheme::EcdsaNistp384Sha384 => Opcode::EcdsaSignSha384,
            SignatureScheme::EcdsaNistp521Sha512 => Opcode::EcdsaSignSha512,
            SignatureScheme::RsaPssSha256 | SignatureScheme::RsaPssPssSha256 => Opcode::RsaPssSignSha256,
            SignatureScheme::RsaPssSha384 | SignatureScheme::RsaPssPssSha384 => Opcode::RsaPssSignSha384,
            SignatureScheme::RsaPssSha512 | SignatureScheme::RsaPssPssSha512 => Opcode::RsaPssSignSha512,
            SignatureScheme::Ed25519 => Opcode::Ed25519Sign,
            SignatureScheme::Ed448 => return None,
        })
    }

    /// The hash the signer applies to the message before sending the digest,
    /// or `None` when the key server gets the whole message (Ed25519, Ed448).
    pub const fn hash(self) -> Option<HashAlgorithm> {
        match self.opcode() {
            Some(opcode) => opcode.hash(),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_points_round_trip() {
        for scheme in SignatureScheme::ALL {
            assert_eq!(SignatureScheme::from_u16(scheme.to_u16()), Some(scheme));
        }
        assert_eq!(SignatureScheme::from_u16(0x0000), None);
    }

    #[test]
    fn every_scheme_but_ed448_has_a_signing_opcode() {
        for scheme in SignatureScheme::ALL {
            let opcode = scheme.opcode();
            assert_eq!(opcode.is_none(), scheme == SignatureScheme::Ed448);
            assert!(opcode.is_none_or(Opcode::is_request));
        }
        assert_eq!(SignatureScheme::Ed25519.hash(), None);
        assert_eq!(SignatureScheme::EcdsaNistp384Sha384.hash(), Some(HashAlgorithm::Sha384));
        assert_eq!(SignatureScheme::RsaPssPssSha512.opcode(), Some(Opcode::RsaPssSignSha512));
    }
}
