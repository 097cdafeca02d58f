//! The error codes a key server answers with (the payload of an 0xFF response).

/// The one-byte payload of an error response (opcode 0xFF).
///
/// [`ErrorCode::from_u8`] never gives [`ErrorCode::Unknown`] for a value that
/// has a variant of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0x00: no error.
    None,
    /// 0x01: the cryptographic operation failed; also a digest whose length
    /// does not match the hash the opcode names.
    CryptoFailure,
    /// 0x02: an SKI was given, and the server has no key with it.
    KeyNotFound,
    /// 0x03: the server could not read the request.
    Read,
    /// 0x04: the frame's protocol version is not one the server speaks.
    VersionMismatch,
    /// 0x05: an opcode the server does not know.
    BadOpcode,
    /// 0x06: a response opcode received as a request.
    UnexpectedOpcode,
    /// 0x07: the request is not in the format its operation needs.
    Format,
    /// 0x08: an internal error of the server; also a request without an SKI.
    Internal,
    /// 0x09: the certificate named by the request was not found.
    CertificateNotFound,
    /// 0x0A: the key or certificate has expired.
    Expired,
    /// 0x0B: the remote key server's configuration is wrong.
    RemoteConfiguration,
    /// Any other value.
    Unknown(u8),
}

impl ErrorCode {
    /// Every code the protocol defines, in the order of their numbers.
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::None,
        ErrorCode::CryptoFailure,
        ErrorCode::KeyNotFound,
        ErrorCode::Read,
        ErrorCode::VersionMismatch,
        ErrorCode::BadOpcode,
        ErrorCode::UnexpectedOpcode,
        ErrorCode::Format,
        ErrorCode::Internal,
        ErrorCode::CertificateNotFound,
        ErrorCode::Expired,
        ErrorCode::RemoteConfiguration,
    ];

    /// The code with number `value`.
    pub const fn from_u8(value: u8) -> ErrorCode {
        match value {
            0x00 => ErrorCode::None,
            0x01 => ErrorCode::CryptoFailure,
            0x02 => ErrorCode::KeyNotFound,
            0x03 => ErrorCode::Read,
            0x04 => ErrorCode::VersionMismatch,
            0x05 => ErrorCode::BadOpcode,
            0x06 => ErrorCode::UnexpectedOpcode,
            0x07 => ErrorCode::Format,
            0x08 => ErrorCode::Internal,
            0x09 => ErrorCode::CertificateNotFound,
            0x0A => ErrorCode::Expired,
            0x0B => ErrorCode::RemoteConfiguration,
            other => ErrorCode::Unknown(other),
        }
    }

    /// The code's number on the wire.
    pub const fn to_u8(self) -> u8 {
        match self {
            ErrorCode::None => 0x00,
            ErrorCode::CryptoFailure => 0x01,
            ErrorCode::KeyNotFound => 0x02,
            ErrorCode::Read => 0x03,
            ErrorCode::VersionMismatch => 0x04,
            ErrorCode::BadOpcode => 0x05,
            ErrorCode::UnexpectedOpcode => 0x06,
            ErrorCode::Format => 0x07,
            ErrorCode::Internal => 0x08,
            ErrorCode::CertificateNotFound => 0x09,
            ErrorCode::Expired => 0x0A,
            ErrorCode::RemoteConfiguration => 0x0B,
            ErrorCode::Unknown(value) => value,
        }
    }

    /// A short snake_case name, for log fields and metric labels
    /// (`keyless_error:key_not_found`). Every unknown code is `unknown`.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorCode::None => "none",
            ErrorCode::CryptoFailure => "crypto_failure",
            ErrorCode::KeyNotFound => "key_not_found",
            ErrorCode::Read => "read",
            ErrorCode::VersionMismatch => "version_mismatch",
            ErrorCode::BadOpcode => "bad_opcode",
            ErrorCode::UnexpectedOpcode => "unexpected_opcode",
            ErrorCode::Format => "format",
            ErrorCode::Internal => "internal",
            ErrorCode::CertificateNotFound => "certificate_not_found",
            ErrorCode::Expired => "expired",
            ErrorCode::RemoteConfiguration => "remote_configuration",
            ErrorCode::Unknown(_) => "unknown",
        }
    }

    /// What the code means, in words.
    pub const fn meaning(self) -> &'static str {
        match self {
            ErrorCode::None => "no error",
            ErrorCode::CryptoFailure => "cryptographic operation failed",
            ErrorCode::KeyNotFound => "no key with the given SKI",
            ErrorCode::Read => "the request could not be read",
            ErrorCode::VersionMismatch => "protocol version mismatch",
            ErrorCode::BadOpcode => "unknown opcode",
            ErrorCode::UnexpectedOpcode => "a response opcode sent as a request",
            ErrorCode::Format => "malformed request",
            ErrorCode::Internal => "internal error of the key server",
            ErrorCode::CertificateNotFound => "certificate not found",
            ErrorCode::Expired => "expired",
            ErrorCode::RemoteConfiguration => "remote key server configuration error",
            ErrorCode::Unknown(_) => "unknown error code",
        }
    }
}

impl From<u8> for ErrorCode {
    fn from(value: u8) -> ErrorCode {
        ErrorCode::from_u8(value)
    }
}

impl From<ErrorCode> for u8 {
    fn from(code: ErrorCode) -> u8 {
        code.to_u8()
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "keyless error 0x{:02X}: {}", self.to_u8(), self.meaning())
    }
}

impl std::error::Error for ErrorCode {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips_and_all_lists_the_named_codes() {
        for value in 0..=255u8 {
            let code = ErrorCode::from_u8(value);
            assert_eq!(code.to_u8(), value);
            assert_eq!(matches!(code, ErrorCode::Unknown(_)), value > 0x0B);
        }
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(usize::from(code.to_u8()), i);
        }
    }
}
