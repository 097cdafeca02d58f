//! The frame: the 8-byte header, the body of tag-length-value items, the
//! padding rule, and [`decode`] / [`Message::encode`] between bytes and a
//! [`Message`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::message::{CertificateDigest, ComplianceRegion, Message, Ski};
use crate::{Opcode, Tag};

/// The protocol's major version, the first byte of every frame.
pub const VERSION_MAJOR: u8 = 0x01;
/// The protocol's minor version, the second byte of every frame sent.
pub const VERSION_MINOR: u8 = 0x00;
/// The length of the frame header: version (2), body length (2), id (4).
pub const HEADER_LEN: usize = 8;
/// The length, header included, that padding brings every frame up to.
pub const MIN_FRAME_LEN: usize = 1024;
/// The key server's customary TCP port.
pub const DEFAULT_PORT: u16 = 2407;

/// An item's header: tag (1) and length (2).
const ITEM_HEADER_LEN: usize = 3;

/// The frame header, as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// The major version; 0x01 is the only one spoken.
    pub major: u8,
    /// The minor version; 0x00 is sent, any is accepted.
    pub minor: u8,
    /// The length of the body, in bytes.
    pub length: u16,
    /// The id the client chose for the request, echoed by the response.
    pub id: u32,
}

impl Header {
    /// Reads a header from its 8 bytes, checking nothing.
    pub const fn from_bytes(bytes: [u8; HEADER_LEN]) -> Header {
        let [major, minor, l0, l1, i0, i1, i2, i3] = bytes;
        Header { major, minor, length: u16::from_be_bytes([l0, l1]), id: u32::from_be_bytes([i0, i1, i2, i3]) }
    }

    /// The header's 8 bytes.
    pub const fn to_bytes(self) -> [u8; HEADER_LEN] {
        let [l0, l1] = self.length.to_be_bytes();
        let [i0, i1, i2, i3] = self.id.to_be_bytes();
        [self.major, self.minor, l0, l1, i0, i1, i2, i3]
    }

    /// The whole frame's length: header and body.
    pub const fn frame_len(self) -> usize {
        HEADER_LEN + self.length as usize
    }
}

/// Whether [`Message::encode_with`] pads the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Padding {
    /// The spec's rule, for every message sent: when `8 + B < 1024` (B = the
    /// other items' bytes), add a 0x20 item of `max(0, 1024 − (8 + B + 3))`
    /// zero bytes.
    #[default]
    ToMinimum,
    /// No padding item (receivers must not require one): for tests.
    Off,
}

/// What [`decode`] found at the start of a buffer.
// A `Decoded` lives only until the caller matches on it, once per read; boxing
// the message would cost an allocation per frame to save a move of ~270 bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole frame: the message, and the bytes of the buffer it took
    /// (header and body). The bytes after them are the next frame's.
    Complete {
        /// The message the frame carries.
        message: Message,
        /// The frame's length: drop this many bytes from the buffer.
        consumed: usize,
    },
    /// The buffer holds less than one frame: read more, until it holds at
    /// least `needed` bytes in all (8 while the header is incomplete, then the
    /// whole frame's length).
    Incomplete {
        /// The number of bytes, counted from the start of the buffer, to have
        /// before calling [`decode`] again.
        needed: usize,
    },
}

/// Why a frame is malformed. The reference server closes the connection
/// without replying; only [`Malformed::Version`] leaves an id that could be
/// answered (with error 0x04, version mismatch) before closing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// The major version is not 0x01.
    #[error("frame {id} has protocol version {major}.{minor}; only major version 1 is spoken")]
    Version {
        /// The frame's first byte.
        major: u8,
        /// The frame's second byte.
        minor: u8,
        /// The frame's id.
        id: u32,
    },
    /// The body ends inside an item's 3-byte header.
    #[error("the body ends {remaining} byte(s) into the header of an item (tag 0x{tag:02X}) at body offset {offset}")]
    ItemHeaderPastBody {
        /// The item's tag byte.
        tag: u8,
        /// Where the item starts, counted from the start of the body.
        offset: usize,
        /// The bytes of the body left at `offset` (1 or 2).
        remaining: usize,
    },
    /// An item's data runs past the end of the body.
    #[error(
        "the item with tag 0x{tag:02X} at body offset {offset} says {length} bytes of data, but the body has {remaining} after its header"
    )]
    ItemPastBody {
        /// The item's tag byte.
        tag: u8,
        /// Where the item starts, counted from the start of the body.
        offset: usize,
        /// The length the item's header gives.
        length: usize,
        /// The bytes of the body after the item's header.
        remaining: usize,
    },
    /// A tag the protocol defines appears a second time.
    #[error("{tag} appears twice; the second at body offset {offset}")]
    DuplicateTag {
        /// The repeated tag.
        tag: Tag,
        /// Where the second one starts, counted from the start of the body.
        offset: usize,
    },
    /// The opcode item's data is not exactly one byte.
    #[error("the opcode item has {length} bytes of data; it must have exactly 1")]
    OpcodeLength {
        /// The item's length.
        length: usize,
    },
}

/// Why a message cannot be encoded: the protocol's lengths are 16 bits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// One item's data is longer than 65535 bytes.
    #[error("the {tag} item is {length} bytes; an item holds at most 65535")]
    ItemTooLong {
        /// The item.
        tag: Tag,
        /// Its length.
        length: usize,
    },
    /// The items together are longer than 65535 bytes.
    #[error("the items take {length} bytes; a frame's body holds at most 65535")]
    BodyTooLong {
        /// The length of the body, item headers included.
        length: usize,
    },
}

/// Reads the frame at the start of `buf`: the message and the bytes it took,
/// or how many bytes are needed, or why the frame is malformed.
///
/// Never panics. Unknown tags and padding are skipped; items whose data does
/// not fit their type are absent (see [`Message`]).
pub fn decode(buf: &[u8]) -> Result<Decoded, Malformed> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(Decoded::Incomplete { needed: HEADER_LEN });
    };
    let header = Header::from_bytes(*header);
    if header.major != VERSION_MAJOR {
        return Err(Malformed::Version { major: header.major, minor: header.minor, id: header.id });
    }
    let consumed = header.frame_len();
    let Some(body) = buf.get(HEADER_LEN..consumed) else {
        return Ok(Decoded::Incomplete { needed: consumed });
    };
    let message = decode_body(header.id, body)?;
    Ok(Decoded::Complete { message, consumed })
}

fn decode_body(id: u32, body: &[u8]) -> Result<Message, Malformed> {
    let mut message = Message { id, ..Message::default() };
    let mut seen: u16 = 0;
    let mut offset = 0;
    while let Some(rest) = body.get(offset..).filter(|rest| !rest.is_empty()) {
        let (tag, length, after_header) = match rest {
            [tag, l0, l1, after @ ..] => (*tag, usize::from(u16::from_be_bytes([*l0, *l1])), after),
            [tag, ..] => return Err(Malformed::ItemHeaderPastBody { tag: *tag, offset, remaining: rest.len() }),
            [] => break,
        };
        let Some(data) = after_header.get(..length) else {
            return Err(Malformed::ItemPastBody { tag, offset, length, remaining: after_header.len() });
        };
        let item_offset = offset;
        offset += ITEM_HEADER_LEN + length;
        let Some(tag) = Tag::from_u8(tag) else {
            continue;
        };
        let bit = 1u16 << tag.index();
        if seen & bit != 0 {
            return Err(Malformed::DuplicateTag { tag, offset: item_offset });
        }
        seen |= bit;
        read_item(&mut message, tag, data)?;
    }
    Ok(message)
}

/// Stores one known item in `message`; data that does not fit the item's
/// type leaves it absent, except for the opcode.
fn read_item(message: &mut Message, tag: Tag, data: &[u8]) -> Result<(), Malformed> {
    match tag {
        Tag::CertificateDigest => message.certificate_digest = data.try_into().ok().map(CertificateDigest),
        Tag::Sni => message.sni = text(data),
        Tag::ClientIp => message.client_ip = ip(data),
        Tag::Ski => message.ski = data.try_into().ok().map(Ski),
        Tag::ServerIp => message.server_ip = ip(data),
        Tag::CertificateId => message.certificate_id = text(data),
        Tag::Opcode => match data {
            [opcode] => message.opcode = Some(Opcode::from_u8(*opcode)),
            _ => return Err(Malformed::OpcodeLength { length: data.len() }),
        },
        Tag::Payload => message.payload = Some(data.to_vec()),
        Tag::CustomFunctionName => message.custom_function_name = text(data),
        Tag::Extra => message.extra = Some(data.to_vec()),
        Tag::TracingSpan => message.tracing_span = Some(data.to_vec()),
        Tag::RequestContext => message.request_context = text(data),
        Tag::ComplianceRegion => {
            message.compliance_region = match data {
                [region] => Some(ComplianceRegion::from_u8(*region)),
                _ => None,
            }
        }
        Tag::Padding => {}
    }
    Ok(())
}

fn text(data: &[u8]) -> Option<String> {
    std::str::from_utf8(data).ok().map(str::to_owned)
}

fn ip(data: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(data) {
        Some(IpAddr::V4(Ipv4Addr::from(v4)))
    } else if let Ok(v6) = <[u8; 16]>::try_from(data) {
        Some(IpAddr::V6(Ipv6Addr::from(v6)))
    } else {
        None
    }
}

impl Message {
    /// The frame for this message, padded as the spec says every message is.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        self.encode_with(Padding::ToMinimum)
    }

    /// The frame for this message, padded or not.
    pub fn encode_with(&self, padding: Padding) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(MIN_FRAME_LEN);
        self.encode_into(padding, &mut out)?;
        Ok(out)
    }

    /// Appends the frame for this message to `out` and returns its length;
    /// on an error `out` is left as it was. Items are written in the order of
    /// their tags, padding last.
    pub fn encode_into(&self, padding: Padding, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
        let start = out.len();
        let written = self.write_frame(padding, out);
        if written.is_err() {
            out.truncate(start);
        }
        written
    }

    fn write_frame(&self, padding: Padding, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
        let start = out.len();
        out.extend_from_slice(
            &Header { major: VERSION_MAJOR, minor: VERSION_MINOR, length: 0, id: self.id }.to_bytes(),
        );
        if let Some(digest) = &self.certificate_digest {
            put(out, Tag::CertificateDigest, &digest.0)?;
        }
        if let Some(sni) = &self.sni {
            put(out, Tag::Sni, sni.as_bytes())?;
        }
        if let Some(client_ip) = self.client_ip {
            put_ip(out, Tag::ClientIp, client_ip)?;
        }
        if let Some(ski) = &self.ski {
            put(out, Tag::Ski, &ski.0)?;
        }
        if let Some(server_ip) = self.server_ip {
            put_ip(out, Tag::ServerIp, server_ip)?;
        }
        if let Some(certificate_id) = &self.certificate_id {
            put(out, Tag::CertificateId, certificate_id.as_bytes())?;
        }
        if let Some(opcode) = self.opcode {
            put(out, Tag::Opcode, &[opcode.to_u8()])?;
        }
        if let Some(payload) = &self.payload {
            put(out, Tag::Payload, payload)?;
        }
        if let Some(name) = &self.custom_function_name {
            put(out, Tag::CustomFunctionName, name.as_bytes())?;
        }
        if let Some(extra) = &self.extra {
            put(out, Tag::Extra, extra)?;
        }
        if let Some(span) = &self.tracing_span {
            put(out, Tag::TracingSpan, span)?;
        }
        if let Some(context) = &self.request_context {
            put(out, Tag::RequestContext, context.as_bytes())?;
        }
        if let Some(region) = self.compliance_region {
            put(out, Tag::ComplianceRegion, &[region.to_u8()])?;
        }
        let unpadded = out.len() - start;
        if padding == Padding::ToMinimum && unpadded < MIN_FRAME_LEN {
            // The spec's rule as written: a frame whose other items leave 1 or
            // 2 bytes to 1024 still gets an empty padding item, and so ends at
            // 1025 or 1026 bytes.
            let zeros = MIN_FRAME_LEN.saturating_sub(unpadded + ITEM_HEADER_LEN);
            out.push(Tag::Padding.to_u8());
            out.extend_from_slice(&item_len(Tag::Padding, zeros)?.to_be_bytes());
            out.resize(out.len() + zeros, 0);
        }
        let frame_len = out.len() - start;
        let body_len = frame_len - HEADER_LEN;
        let length = u16::try_from(body_len).map_err(|_| EncodeError::BodyTooLong { length: body_len })?;
        out[start + 2..start + 4].copy_from_slice(&length.to_be_bytes());
        Ok(frame_len)
    }
}

fn item_len(tag: Tag, length: usize) -> Result<u16, EncodeError> {
    u16::try_from(length).map_err(|_| EncodeError::ItemTooLong { tag, length })
}

fn put(out: &mut Vec<u8>, tag: Tag, data: &[u8]) -> Result<(), EncodeError> {
    let length = item_len(tag, data.len())?;
    out.push(tag.to_u8());
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(data);
    Ok(())
}

fn put_ip(out: &mut Vec<u8>, tag: Tag, ip: IpAddr) -> Result<(), EncodeError> {
    match ip {
        IpAddr::V4(v4) => put(out, tag, &v4.octets()),
        IpAddr::V6(v6) => put(out, tag, &v6.octets()),
    }
}
