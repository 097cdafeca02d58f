//! The gokeyless (Cloudflare Keyless SSL) wire protocol as a codec: the frame
//! header, the items of a message ([`Tag`]), the operations ([`Opcode`]) and the
//! error codes ([`ErrorCode`]), with [`Message::encode`] (padded to the
//! protocol's 1024-byte minimum) and [`decode`] from a byte slice.
//!
//! The crate owns the bytes on the wire and nothing else: no sockets, no
//! keys, no TLS. The key server and the gateway's remote signer build on it.
//!
//! # Why by hand
//! No maintained Rust crate speaks this protocol, and gokeyless itself, the
//! reference implementation, is published under a proprietary services
//! agreement: its code, tests and test data may not be used. This crate is
//! written from `shared/keyless-protocol.md` (the protocol in gatehouse's own
//! words) and RFCs; its test vectors are assembled by hand from that page.
//! The protocol is small (an 8-byte header and tag-length-value items), so a
//! hand-written codec is a few hundred lines, with no dependency but
//! `thiserror`.
//!
//! # Decoding rules (from the spec)
//! - Big-endian; the body is `length` bytes of items, each
//!   `tag (u8) · length (u16) · data`, in any order.
//! - Frames are sent as version 1.0. A major version other than 1 is
//!   [`Malformed::Version`] (with the frame's id, so a server can answer
//!   error 0x04 before closing); any minor version is read as 1.x, as minor
//!   versions conventionally stay compatible (the spec names only 1.0).
//! - Unknown tags are skipped. A known tag twice, an item running past the
//!   body, or an opcode item that is not exactly one byte is [`Malformed`]
//!   (the reference server closes the connection without replying).
//! - An SKI that is not 20 bytes or a certificate digest that is not 32 is
//!   treated as absent. This crate applies the same rule to every item whose
//!   data does not fit its type (an IP that is not 4 or 16 bytes, a string
//!   that is not UTF-8, a compliance region that is not one byte): see
//!   [`Message`].
//! - Padding is never required and its contents are ignored.
//!
//! ```
//! use keyless::{Decoded, ErrorCode, Message, decode};
//!
//! let reply = Message::error(0x2A, ErrorCode::KeyNotFound);
//! let bytes = reply.encode().unwrap();
//! assert_eq!(bytes.len(), 1024);
//! match decode(&bytes).unwrap() {
//!     Decoded::Complete { message, consumed } => {
//!         assert_eq!(consumed, 1024);
//!         assert_eq!(message.error_code(), Some(ErrorCode::KeyNotFound));
//!     }
//!     Decoded::Incomplete { .. } => unreachable!("the whole frame is there"),
//! }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error_code;
mod frame;
mod message;
mod opcode;
mod scheme;
mod tag;

pub use error_code::ErrorCode;
pub use frame::{
    DEFAULT_PORT, Decoded, EncodeError, HEADER_LEN, Header, MIN_FRAME_LEN, Malformed, Padding, VERSION_MAJOR,
    VERSION_MINOR, decode,
};
pub use message::{CertificateDigest, ComplianceRegion, KeySelector, Message, Ski};
pub use opcode::{HashAlgorithm, Opcode};
pub use scheme::SignatureScheme;
pub use tag::Tag;
