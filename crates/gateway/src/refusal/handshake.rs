//! Why a TLS connection is refused before any request ([`HandshakeRefusal`]):
//! the `reason` and `detail` of its `handshake_refused` line.

use std::fmt;

use super::Refusal;
use crate::labels::labelled;

/// Why a handshake was refused. There is no HTTP status: nothing HTTP was said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeRefusal {
    /// No site serves the name the ClientHello asked for (SNI).
    UnknownServerName {
        /// The name asked for; `None` without SNI.
        sni: Option<String>,
    },
    /// A handshake message over the 64 KiB rustls reads: a huge ClientHello or client certificate chain.
    TooLarge,
    /// The client certificate was refused in the handshake (`mtls = "require"`).
    ClientCertificate(Refusal),
}

labelled! {
    HandshakeRefusal {
        UnknownServerName { .. } => "unknown_server_name",
        TooLarge => "client_hello_or_certificate_too_large",
    }
    wraps {
        ClientCertificate(Refusal),
    }
}

impl fmt::Display for HandshakeRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeRefusal::UnknownServerName { sni } => {
                write!(f, "no site serves {}", sni.as_deref().unwrap_or("(no SNI)"))
            }
            HandshakeRefusal::TooLarge => f.write_str(
                "a TLS handshake message (the ClientHello or the client certificate chain) is over 64 KiB, \
                 the most the gateway reads; the client must present a smaller certificate chain",
            ),
            HandshakeRefusal::ClientCertificate(r) => r.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_snake_case_words() {
        crate::labels::assert_distinct_snake_case(&HandshakeRefusal::ALL);
        assert_eq!(HandshakeRefusal::TooLarge.label(), "client_hello_or_certificate_too_large");
        assert_eq!(HandshakeRefusal::UnknownServerName { sni: None }.label(), "unknown_server_name");
        assert_eq!(HandshakeRefusal::ClientCertificate(Refusal::Version1).label(), "x509_v1");
    }
}
