//! The item tags of a message body: every tag the spec's table lists.

/// The tag of an item in a message body (`tag (u8) · length (u16) · data`).
///
/// Only the tags the protocol defines are here; a receiver skips the others,
/// so there is no variant for them ([`Tag::from_u8`] gives `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tag {
    /// 0x01: 32 bytes, SHA-256 of the RSA modulus written as upper-case hex
    /// text. Legacy; a key server may still look keys up by it.
    CertificateDigest,
    /// 0x02: the server name of the end user's TLS connection.
    Sni,
    /// 0x03: the end user's IP address, 4 or 16 bytes.
    ClientIp,
    /// 0x04: the Subject Key Identifier (20 bytes) that selects the key.
    Ski,
    /// 0x05: the IP address the end user connected to, 4 or 16 bytes.
    ServerIp,
    /// 0x06: a certificate ID, as a string.
    CertificateId,
    /// 0x11: the operation, exactly one byte.
    Opcode,
    /// 0x12: the operation's input or result.
    Payload,
    /// 0x13: the name of the custom function (opcode 0x24).
    CustomFunctionName,
    /// 0x14: extra bytes for the operation.
    Extra,
    /// 0x15: a tracing span; not sent to remote key servers.
    TracingSpan,
    /// 0x16: a JSON object; its `request_id` is used in logs.
    RequestContext,
    /// 0x17: one byte naming a compliance region (0x01 FedRAMP High).
    ComplianceRegion,
    /// 0x20: padding, so a frame is at least 1024 bytes.
    Padding,
}

impl Tag {
    /// Every tag, in the order of their numbers.
    pub const ALL: [Tag; 14] = [
        Tag::CertificateDigest,
        Tag::Sni,
        Tag::ClientIp,
        Tag::Ski,
        Tag::ServerIp,
        Tag::CertificateId,
        Tag::Opcode,
        Tag::Payload,
        Tag::CustomFunctionName,
        Tag::Extra,
        Tag::TracingSpan,
        Tag::RequestContext,
        Tag::ComplianceRegion,
        Tag::Padding,
    ];

    /// The tag's number on the wire.
    pub const fn to_u8(self) -> u8 {
        match self {
            Tag::CertificateDigest => 0x01,
            Tag::Sni => 0x02,
            Tag::ClientIp => 0x03,
            Tag::Ski => 0x04,
            Tag::ServerIp => 0x05,
            Tag::CertificateId => 0x06,
            Tag::Opcode => 0x11,
            Tag::Payload => 0x12,
            Tag::CustomFunctionName => 0x13,
            Tag::Extra => 0x14,
            Tag::TracingSpan => 0x15,
            Tag::RequestContext => 0x16,
            Tag::ComplianceRegion => 0x17,
            Tag::Padding => 0x20,
        }
    }

    /// The tag with number `value`, or `None` for a tag the protocol does not
    /// define (which a receiver skips).
    pub const fn from_u8(value: u8) -> Option<Tag> {
        Some(match value {
            0x01 => Tag::CertificateDigest,
            0x02 => Tag::Sni,
            0x03 => Tag::ClientIp,
            0x04 => Tag::Ski,
            0x05 => Tag::ServerIp,
            0x06 => Tag::CertificateId,
            0x11 => Tag::Opcode,
            0x12 => Tag::Payload,
            0x13 => Tag::CustomFunctionName,
            0x14 => Tag::Extra,
            0x15 => Tag::TracingSpan,
            0x16 => Tag::RequestContext,
            0x17 => Tag::ComplianceRegion,
            0x20 => Tag::Padding,
            _ => return None,
        })
    }

    /// The tag's position in [`Tag::ALL`], for a set of tags seen.
    pub(crate) const fn index(self) -> usize {
        match self {
            Tag::CertificateDigest => 0,
            Tag::Sni => 1,
            Tag::ClientIp => 2,
            Tag::Ski => 3,
            Tag::ServerIp => 4,
            Tag::CertificateId => 5,
            Tag::Opcode => 6,
            Tag::Payload => 7,
            Tag::CustomFunctionName => 8,
            Tag::Extra => 9,
            Tag::TracingSpan => 10,
            Tag::RequestContext => 11,
            Tag::ComplianceRegion => 12,
            Tag::Padding => 13,
        }
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Tag::CertificateDigest => "certificate digest",
            Tag::Sni => "SNI",
            Tag::ClientIp => "client IP",
            Tag::Ski => "SKI",
            Tag::ServerIp => "server IP",
            Tag::CertificateId => "certificate ID",
            Tag::Opcode => "opcode",
            Tag::Payload => "payload",
            Tag::CustomFunctionName => "custom function name",
            Tag::Extra => "extra",
            Tag::TracingSpan => "tracing span",
            Tag::RequestContext => "request context",
            Tag::ComplianceRegion => "compliance region",
            Tag::Padding => "padding",
        };
        write!(f, "{name} (0x{:02X})", self.to_u8())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_index_matches_all() {
        for (i, tag) in Tag::ALL.iter().enumerate() {
            assert_eq!(Tag::from_u8(tag.to_u8()), Some(*tag));
            assert_eq!(tag.index(), i);
        }
        let known = (0..=255u8).filter(|v| Tag::from_u8(*v).is_some()).count();
        assert_eq!(known, Tag::ALL.len());
    }
}
