//! The operations (opcodes) of requests and responses, and the hash each
//! signing opcode names.

/// The hash an opcode names: the length its digest payload must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// MD5 and SHA-1 digests concatenated (TLS 1.0/1.1), 36 bytes, signed
    /// without a DigestInfo.
    Md5Sha1,
    /// SHA-1, 20 bytes.
    Sha1,
    /// SHA-224, 28 bytes.
    Sha224,
    /// SHA-256, 32 bytes.
    Sha256,
    /// SHA-384, 48 bytes.
    Sha384,
    /// SHA-512, 64 bytes.
    Sha512,
}

impl HashAlgorithm {
    /// The length in bytes of a digest made with this hash.
    pub const fn digest_len(self) -> usize {
        match self {
            HashAlgorithm::Md5Sha1 => 36,
            HashAlgorithm::Sha1 => 20,
            HashAlgorithm::Sha224 => 28,
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha384 => 48,
            HashAlgorithm::Sha512 => 64,
        }
    }
}

/// The operation of a request, or the kind of a response (item 0x11, one byte).
///
/// [`Opcode::from_u8`] never gives [`Opcode::Unknown`] for a value that has a
/// variant of its own; build opcodes through it (or the named variants) so
/// that equal bytes give equal opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// 0x01: RSA decrypt. Ciphertext in; the raw `m = c^d mod n` out,
    /// left-padded to the modulus length, PKCS#1 padding not removed.
    RsaDecrypt,
    /// 0x02: RSA PKCS#1 v1.5 signature of an MD5-SHA1 digest (no DigestInfo).
    RsaSignMd5Sha1,
    /// 0x03: RSA PKCS#1 v1.5 signature of a SHA-1 digest.
    RsaSignSha1,
    /// 0x04: RSA PKCS#1 v1.5 signature of a SHA-224 digest.
    RsaSignSha224,
    /// 0x05: RSA PKCS#1 v1.5 signature of a SHA-256 digest.
    RsaSignSha256,
    /// 0x06: RSA PKCS#1 v1.5 signature of a SHA-384 digest.
    RsaSignSha384,
    /// 0x07: RSA PKCS#1 v1.5 signature of a SHA-512 digest.
    RsaSignSha512,
    /// 0x12: ECDSA signature of an MD5-SHA1 digest; DER `SEQUENCE {r, s}` out.
    EcdsaSignMd5Sha1,
    /// 0x13: ECDSA signature of a SHA-1 digest.
    EcdsaSignSha1,
    /// 0x14: ECDSA signature of a SHA-224 digest.
    EcdsaSignSha224,
    /// 0x15: ECDSA signature of a SHA-256 digest.
    EcdsaSignSha256,
    /// 0x16: ECDSA signature of a SHA-384 digest.
    EcdsaSignSha384,
    /// 0x17: ECDSA signature of a SHA-512 digest.
    EcdsaSignSha512,
    /// 0x18: Ed25519 signature of the whole message (not a digest); 64 bytes out.
    Ed25519Sign,
    /// 0x21: seal a blob (optional for servers).
    Seal,
    /// 0x22: unseal a blob (optional for servers).
    Unseal,
    /// 0x24: a custom function named by item 0x13 (optional for servers).
    Custom,
    /// 0x35: RSA-PSS signature of a SHA-256 digest, MGF1 with SHA-256, salt 32 bytes.
    RsaPssSignSha256,
    /// 0x36: RSA-PSS signature of a SHA-384 digest, MGF1 with SHA-384, salt 48 bytes.
    RsaPssSignSha384,
    /// 0x37: RSA-PSS signature of a SHA-512 digest, MGF1 with SHA-512, salt 64 bytes.
    RsaPssSignSha512,
    /// 0xF0 (response): success; the payload is the result.
    Response,
    /// 0xF1: ping; the payload (any) is echoed in a pong.
    Ping,
    /// 0xF2 (response): pong; the ping's payload echoed, omitted when empty.
    Pong,
    /// 0xFF (response): error; the payload is one [`ErrorCode`](crate::ErrorCode) byte.
    Error,
    /// Any other value. A server answers it with error 0x05 (bad opcode).
    Unknown(u8),
}

impl Opcode {
    /// The opcode with number `value`.
    pub const fn from_u8(value: u8) -> Opcode {
        match value {
            0x01 => Opcode::RsaDecrypt,
            0x02 => Opcode::RsaSignMd5Sha1,
            0x03 => Opcode::RsaSignSha1,
            0x04 => Opcode::RsaSignSha224,
            0x05 => Opcode::RsaSignSha256,
            0x06 => Opcode::RsaSignSha384,
            0x07 => Opcode::RsaSignSha512,
            0x12 => Opcode::EcdsaSignMd5Sha1,
            0x13 => Opcode::EcdsaSignSha1,
            0x14 => Opcode::EcdsaSignSha224,
            0x15 => Opcode::EcdsaSignSha256,
            0x16 => Opcode::EcdsaSignSha384,
            0x17 => Opcode::EcdsaSignSha512,
            0x18 => Opcode::Ed25519Sign,
            0x21 => Opcode::Seal,
            0x22 => Opcode::Unseal,
            0x24 => Opcode::Custom,
            0x35 => Opcode::RsaPssSignSha256,
            0x36 => Opcode::RsaPssSignSha384,
            0x37 => Opcode::RsaPssSignSha512,
            0xF0 => Opcode::Response,
            0xF1 => Opcode::Ping,
            0xF2 => Opcode::Pong,
            0xFF => Opcode::Error,
            other => Opcode::Unknown(other),
        }
    }

    /// The opcode's number on the wire.
    pub const fn to_u8(self) -> u8 {
        match self {
            Opcode::RsaDecrypt => 0x01,
            Opcode::RsaSignMd5Sha1 => 0x02,
            Opcode::RsaSignSha1 => 0x03,
            Opcode::RsaSignSha224 => 0x04,
            Opcode::RsaSignSha256 => 0x05,
            Opcode::RsaSignSha384 => 0x06,
            Opcode::RsaSignSha512 => 0x07,
            Opcode::EcdsaSignMd5Sha1 => 0x12,
            Opcode::EcdsaSignSha1 => 0x13,
            Opcode::EcdsaSignSha224 => 0x14,
            Opcode::EcdsaSignSha256 => 0x15,
            Opcode::EcdsaSignSha384 => 0x16,
            Opcode::EcdsaSignSha512 => 0x17,
            Opcode::Ed25519Sign => 0x18,
            Opcode::Seal => 0x21,
            Opcode::Unseal => 0x22,
            Opcode::Custom => 0x24,
            Opcode::RsaPssSignSha256 => 0x35,
            Opcode::RsaPssSignSha384 => 0x36,
            Opcode::RsaPssSignSha512 => 0x37,
            Opcode::Response => 0xF0,
            Opcode::Ping => 0xF1,
            Opcode::Pong => 0xF2,
            Opcode::Error => 0xFF,
            Opcode::Unknown(value) => value,
        }
    }

    /// Whether this is a response opcode (success, pong, error). A server
    /// answers a request carrying one with error 0x06 (unexpected opcode).
    pub const fn is_response(self) -> bool {
        matches!(self, Opcode::Response | Opcode::Pong | Opcode::Error)
    }

    /// Whether this is an opcode the protocol defines for requests.
    pub const fn is_request(self) -> bool {
        !self.is_response() && !matches!(self, Opcode::Unknown(_))
    }

    /// The hash whose digest this opcode signs, for the RSA PKCS#1 v1.5,
    /// ECDSA and RSA-PSS opcodes; `None` for the others (Ed25519 signs the
    /// whole message). The payload of a request with such an opcode must be a
    /// digest of exactly [`HashAlgorithm::digest_len`] bytes.
    pub const fn hash(self) -> Option<HashAlgorithm> {
        use HashAlgorithm::*;
        Some(match self {
            Opcode::RsaSignMd5Sha1 | Opcode::EcdsaSignMd5Sha1 => Md5Sha1,
            Opcode::RsaSignSha1 | Opcode::EcdsaSignSha1 => Sha1,
            Opcode::RsaSignSha224 | Opcode::EcdsaSignSha224 => Sha224,
            Opcode::RsaSignSha256 | Opcode::EcdsaSignSha256 | Opcode::RsaPssSignSha256 => Sha256,
            Opcode::RsaSignSha384 | Opcode::EcdsaSignSha384 | Opcode::RsaPssSignSha384 => Sha384,
            Opcode::RsaSignSha512 | Opcode::EcdsaSignSha512 | Opcode::RsaPssSignSha512 => Sha512,
            _ => return None,
        })
    }

    /// The RSA PKCS#1 v1.5 signing opcode for `hash`.
    pub const fn rsa_sign(hash: HashAlgorithm) -> Opcode {
        match hash {
            HashAlgorithm::Md5Sha1 => Opcode::RsaSignMd5Sha1,
            HashAlgorithm::Sha1 => Opcode::RsaSignSha1,
            HashAlgorithm::Sha224 => Opcode::RsaSignSha224,
            HashAlgorithm::Sha256 => Opcode::RsaSignSha256,
            HashAlgorithm::Sha384 => Opcode::RsaSignSha384,
            HashAlgorithm::Sha512 => Opcode::RsaSignSha512,
        }
    }

    /// The ECDSA signing opcode for `hash`.
    pub const fn ecdsa_sign(hash: HashAlgorithm) -> Opcode {
        match hash {
            HashAlgorithm::Md5Sha1 => Opcode::EcdsaSignMd5Sha1,
            HashAlgorithm::Sha1 => Opcode::EcdsaSignSha1,
            HashAlgorithm::Sha224 => Opcode::EcdsaSignSha224,
            HashAlgorithm::Sha256 => Opcode::EcdsaSignSha256,
            HashAlgorithm::Sha384 => Opcode::EcdsaSignSha384,
            HashAlgorithm::Sha512 => Opcode::EcdsaSignSha512,
        }
    }

    /// The RSA-PSS signing opcode for `hash`, which the protocol has for
    /// SHA-256, SHA-384 and SHA-512 only.
    pub const fn rsa_pss_sign(hash: HashAlgorithm) -> Option<Opcode> {
        match hash {
            HashAlgorithm::Sha256 => Some(Opcode::RsaPssSignSha256),
            HashAlgorithm::Sha384 => Some(Opcode::RsaPssSignSha384),
            HashAlgorithm::Sha512 => Some(Opcode::RsaPssSignSha512),
            _ => None,
        }
    }
}

impl From<u8> for Opcode {
    fn from(value: u8) -> Opcode {
        Opcode::from_u8(value)
    }
}

impl From<Opcode> for u8 {
    fn from(opcode: Opcode) -> u8 {
        opcode.to_u8()
    }
}

impl std::fmt::Display for Opcode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Opcode::Unknown(value) => write!(f, "unknown opcode 0x{value:02X}"),
            known => write!(f, "{known:?} (0x{:02X})", known.to_u8()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips_and_unknown_is_only_for_unnamed_values() {
        let mut named = 0;
        for value in 0..=255u8 {
            let opcode = Opcode::from_u8(value);
            assert_eq!(opcode.to_u8(), value);
            if !matches!(opcode, Opcode::Unknown(_)) {
                named += 1;
            }
        }
        // 0x01, 0x02-0x07, 0x12-0x17, 0x18, 0x21, 0x22, 0x24, 0x35-0x37, 0xF0, 0xF1, 0xF2, 0xFF.
        assert_eq!(named, 1 + 6 + 6 + 1 + 2 + 1 + 3 + 4);
    }

    #[test]
    fn builders_name_the_hash_they_take() {
        for hash in [
            HashAlgorithm::Md5Sha1,
            HashAlgorithm::Sha1,
            HashAlgorithm::Sha224,
            HashAlgorithm::Sha256,
            HashAlgorithm::Sha384,
            HashAlgorithm::Sha512,
        ] {
            assert_eq!(Opcode::rsa_sign(hash).hash(), Some(hash));
            assert_eq!(Opcode::ecdsa_sign(hash).hash(), Some(hash));
            if let Some(pss) = Opcode::rsa_pss_sign(hash) {
                assert_eq!(pss.hash(), Some(hash));
            }
        }
    }
}
