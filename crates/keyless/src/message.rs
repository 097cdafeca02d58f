//! A message (request or response) as typed items, and the builders the key
//! server and the gateway use.

use std::fmt;
use std::net::IpAddr;

use crate::{ErrorCode, Opcode};

/// A Subject Key Identifier (item 0x04): SHA-1 of the contents of the
/// subjectPublicKey BIT STRING of the key's SubjectPublicKeyInfo (RFC 5280
/// §4.2.1.2, method 1). The key selector of a request.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ski(pub [u8; 20]);

/// A certificate digest (item 0x01): SHA-256 of the RSA modulus written as
/// upper-case hex text. Legacy; still a way to select a key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertificateDigest(pub [u8; 32]);

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

impl fmt::Display for Ski {
    /// Lower-case hex, as logs and `openssl x509 -text` (without colons) show it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for Ski {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ski({self})")
    }
}

impl fmt::Display for CertificateDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for CertificateDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertificateDigest({self})")
    }
}

/// The compliance region of a request (item 0x17, one byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComplianceRegion {
    /// 0x01: FedRAMP High.
    FedRampHigh,
    /// Any other value.
    Unknown(u8),
}

impl ComplianceRegion {
    /// The region with number `value`; never `Unknown(0x01)`.
    pub const fn from_u8(value: u8) -> ComplianceRegion {
        match value {
            0x01 => ComplianceRegion::FedRampHigh,
            other => ComplianceRegion::Unknown(other),
        }
    }

    /// The region's number on the wire.
    pub const fn to_u8(self) -> u8 {
        match self {
            ComplianceRegion::FedRampHigh => 0x01,
            ComplianceRegion::Unknown(value) => value,
        }
    }
}

/// How a request names its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeySelector {
    /// By Subject Key Identifier (item 0x04), the usual way.
    Ski(Ski),
    /// By the legacy certificate digest (item 0x01).
    CertificateDigest(CertificateDigest),
}

/// One message, request or response: the frame's id and the items the
/// protocol defines, each `None` when absent.
///
/// An item whose data does not fit its type is absent: the spec says so of an
/// SKI that is not 20 bytes and a digest that is not 32, and this crate does
/// the same for an IP that is not 4 or 16 bytes, a string item that is not
/// UTF-8 and a compliance region that is not one byte. Only the opcode is
/// strict (not one byte is [`Malformed`](crate::Malformed)), as the spec says.
/// Padding and unknown tags are not kept. `decode(encode(m)) == m` for every
/// message whose byte items fit in a frame.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Message {
    /// The frame's id: the client picks it; the response carries the same.
    pub id: u32,
    /// 0x11: the operation, or the kind of response. A request without one is
    /// answered with [`ErrorCode::BadOpcode`] ([`Message::check_request`]).
    pub opcode: Option<Opcode>,
    /// 0x12: the operation's input (digest, ciphertext, message) or result.
    pub payload: Option<Vec<u8>>,
    /// 0x01: the legacy certificate digest.
    pub certificate_digest: Option<CertificateDigest>,
    /// 0x02: the server name of the end user's connection.
    pub sni: Option<String>,
    /// 0x03: the end user's address.
    pub client_ip: Option<IpAddr>,
    /// 0x04: the key selector.
    pub ski: Option<Ski>,
    /// 0x05: the address the end user connected to.
    pub server_ip: Option<IpAddr>,
    /// 0x06: a certificate ID.
    pub certificate_id: Option<String>,
    /// 0x13: the custom function's name (opcode 0x24).
    pub custom_function_name: Option<String>,
    /// 0x14: extra bytes for the operation.
    pub extra: Option<Vec<u8>>,
    /// 0x15: a tracing span (not to be sent to remote key servers).
    pub tracing_span: Option<Vec<u8>>,
    /// 0x16: a JSON object as text; its `request_id` is used in logs.
    pub request_context: Option<String>,
    /// 0x17: the compliance region.
    pub compliance_region: Option<ComplianceRegion>,
}

impl Message {
    /// A request for `opcode` on the key `key` with `payload` (a digest for
    /// the signing opcodes whose [`Opcode::hash`] is set, the whole message
    /// for Ed25519, the ciphertext for RSA decrypt).
    pub fn request(id: u32, opcode: Opcode, key: KeySelector, payload: Vec<u8>) -> Message {
        let mut message = Message { id, opcode: Some(opcode), payload: Some(payload), ..Message::default() };
        match key {
            KeySelector::Ski(ski) => message.ski = Some(ski),
            KeySelector::CertificateDigest(digest) => message.certificate_digest = Some(digest),
        }
        message
    }

    /// A ping; an empty `payload` is left out, as in the spec's worked frame.
    pub fn ping(id: u32, payload: Vec<u8>) -> Message {
        Message { id, opcode: Some(Opcode::Ping), payload: non_empty(payload), ..Message::default() }
    }

    /// The pong answering a ping: its payload echoed, left out when empty.
    pub fn pong(id: u32, payload: Vec<u8>) -> Message {
        Message { id, opcode: Some(Opcode::Pong), payload: non_empty(payload), ..Message::default() }
    }

    /// A success response (0xF0) carrying the operation's result.
    pub fn success(id: u32, payload: Vec<u8>) -> Message {
        Message { id, opcode: Some(Opcode::Response), payload: Some(payload), ..Message::default() }
    }

    /// An error response (0xFF): the payload is the one code byte.
    pub fn error(id: u32, code: ErrorCode) -> Message {
        Message { id, opcode: Some(Opcode::Error), payload: Some(vec![code.to_u8()]), ..Message::default() }
    }

    /// A response carrying `result`: success with the result, or the error.
    pub fn response(id: u32, result: Result<Vec<u8>, ErrorCode>) -> Message {
        match result {
            Ok(payload) => Message::success(id, payload),
            Err(code) => Message::error(id, code),
        }
    }

    /// The payload, empty when absent.
    pub fn payload(&self) -> &[u8] {
        self.payload.as_deref().unwrap_or_default()
    }

    /// The key the request names: its SKI, else its certificate digest.
    pub fn key_selector(&self) -> Option<KeySelector> {
        self.ski.map(KeySelector::Ski).or(self.certificate_digest.map(KeySelector::CertificateDigest))
    }

    /// The code of an error response: `Some` when the opcode is 0xFF and the
    /// payload is exactly one byte.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match (self.opcode, self.payload()) {
            (Some(Opcode::Error), [code]) => Some(ErrorCode::from_u8(*code)),
            _ => None,
        }
    }

    /// The checks the spec puts on a request before any key is looked at:
    /// no opcode or an unknown one is [`ErrorCode::BadOpcode`], a response
    /// opcode is [`ErrorCode::UnexpectedOpcode`], and a digest whose length is
    /// not that of the hash the opcode names is [`ErrorCode::CryptoFailure`].
    /// Finding the key (and [`ErrorCode::Internal`] when there is no SKI) is
    /// the server's part.
    pub fn check_request(&self) -> Result<Opcode, ErrorCode> {
        let opcode = match self.opcode {
            None | Some(Opcode::Unknown(_)) => return Err(ErrorCode::BadOpcode),
            Some(opcode) if opcode.is_response() => return Err(ErrorCode::UnexpectedOpcode),
            Some(opcode) => opcode,
        };
        match opcode.hash() {
            Some(hash) if hash.digest_len() != self.payload().len() => Err(ErrorCode::CryptoFailure),
            _ => Ok(opcode),
        }
    }
}

fn non_empty(payload: Vec<u8>) -> Option<Vec<u8>> {
    (!payload.is_empty()).then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_request_follows_the_spec() {
        let ski = KeySelector::Ski(Ski([7; 20]));
        assert_eq!(
            Message::request(1, Opcode::EcdsaSignSha256, ski, vec![0; 32]).check_request(),
            Ok(Opcode::EcdsaSignSha256)
        );
        assert_eq!(
            Message::request(1, Opcode::EcdsaSignSha256, ski, vec![0; 48]).check_request(),
            Err(ErrorCode::CryptoFailure)
        );
        assert_eq!(
            Message::request(1, Opcode::RsaSignMd5Sha1, ski, vec![0; 36]).check_request(),
            Ok(Opcode::RsaSignMd5Sha1)
        );
        assert_eq!(Message::request(1, Opcode::Ed25519Sign, ski, vec![0; 5]).check_request(), Ok(Opcode::Ed25519Sign));
        assert_eq!(Message::success(1, vec![]).check_request(), Err(ErrorCode::UnexpectedOpcode));
        assert_eq!(Message::pong(1, vec![]).check_request(), Err(ErrorCode::UnexpectedOpcode));
        assert_eq!(Message::error(1, ErrorCode::Read).check_request(), Err(ErrorCode::UnexpectedOpcode));
        let unknown = Message { opcode: Some(Opcode::Unknown(0x99)), ..Message::default() };
        assert_eq!(unknown.check_request(), Err(ErrorCode::BadOpcode));
        assert_eq!(Message::default().check_request(), Err(ErrorCode::BadOpcode));
        assert_eq!(Message::ping(1, vec![]).check_request(), Ok(Opcode::Ping));
    }

    #[test]
    fn error_code_needs_the_error_opcode_and_one_byte() {
        assert_eq!(Message::error(3, ErrorCode::Expired).error_code(), Some(ErrorCode::Expired));
        assert_eq!(Message::success(3, vec![2]).error_code(), None);
        let long = Message { opcode: Some(Opcode::Error), payload: Some(vec![2, 2]), ..Message::default() };
        assert_eq!(long.error_code(), None);
    }

    #[test]
    fn ski_shows_as_hex() {
        let mut bytes = [0u8; 20];
        bytes[0] = 0xAB;
        bytes[19] = 0x01;
        assert_eq!(Ski(bytes).to_string(), format!("ab{}01", "00".repeat(18)));
    }
}
