//! A gateway's side of a key server connection, as a test drives it: rustls over a
//! blocking socket with the gateway's client certificate, frames built and read with
//! the `keyless` codec.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::{Message, Opcode, keyless};
use crate::support::env::Cert;

/// How long a test waits for one answer before failing.
const ANSWER_LIMIT: Duration = Duration::from_secs(20);

/// TLS versions and suites a client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// rustls's defaults: TLS 1.3 and 1.2.
    Default,
    /// TLS 1.2 only, with this one cipher suite.
    Tls12(rustls::CipherSuite),
}

/// A TLS connection to a key server.
pub struct Client {
    tls: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

fn client_config(root: &Path, identity: Option<&Cert>, offer: Offer) -> ClientConfig {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    let versions: &[&rustls::SupportedProtocolVersion] = match offer {
        Offer::Default => rustls::DEFAULT_VERSIONS,
        Offer::Tls12(suite) => {
            provider.cipher_suites.retain(|s| s.suite() == suite);
            &[&rustls::version::TLS12]
        }
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(root).expect("read the root").map(|c| c.expect("a root certificate")) {
        roots.add(cert).expect("a usable root");
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .expect("versions the provider supports")
        .with_root_certificates(roots);
    match identity {
        Some(cert) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_file_iter(cert.chain()).unwrap().map(|c| c.unwrap()).collect();
            let key = PrivateKeyDer::from_pem_file(&cert.key).expect("the client key");
            builder.with_client_auth_cert(chain, key).expect("a usable client certificate")
        }
        None => builder.with_no_client_auth(),
    }
}

impl Client {
    /// Connects to 127.0.0.1:`port` as `localhost`, trusting `root`, presenting
    /// `identity`, and completes the handshake (from the client's side: in TLS 1.3
    /// the server judges the client certificate after that).
    pub fn connect(port: u16, root: &Path, identity: Option<&Cert>, offer: Offer) -> Result<Client, String> {
        let config = client_config(root, identity, offer);
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
        tcp.set_read_timeout(Some(ANSWER_LIMIT)).unwrap();
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).map_err(|e| format!("handshake: {e}"))?;
        }
        Ok(Client { tls, buf: Vec::new() })
    }

    /// The negotiated TLS version and cipher suite.
    pub fn negotiated(&self) -> (Option<rustls::ProtocolVersion>, Option<rustls::CipherSuite>) {
        (self.tls.conn.protocol_version(), self.tls.conn.negotiated_cipher_suite().map(|s| s.suite()))
    }

    /// Sends `message`, padded as the spec says.
    pub fn send(&mut self, message: &Message) {
        let frame = message.encode().expect("a frame that fits");
        self.send_raw(&frame).expect("send a frame");
    }

    /// Sends bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tls.write_all(bytes)?;
        self.tls.flush()
    }

    /// The next whole frame's bytes; `Err` when the connection ends or fails first.
    pub fn recv_frame(&mut self) -> Result<Vec<u8>, String> {
        loop {
            if self.buf.len() >= keyless::HEADER_LEN {
                let length = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
                let total = keyless::HEADER_LEN + length;
                if self.buf.len() >= total {
                    return Ok(self.buf.drain(..total).collect());
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.tls.read(&mut chunk) {
                Ok(0) => return Err(format!("connection closed ({} bytes of a frame read)", self.buf.len())),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// The next response.
    pub fn recv(&mut self) -> Result<Message, String> {
        let frame = self.recv_frame()?;
        match keyless::decode(&frame) {
            Ok(keyless::Decoded::Complete { message, .. }) => Ok(message),
            other => Err(format!("the server sent a frame that does not decode: {other:?}")),
        }
    }

    /// Sends `request` and reads the next response, which must carry its id.
    #[track_caller]
    pub fn call(&mut self, request: &Message) -> Message {
        self.send(request);
        let response = self.recv().unwrap_or_else(|e| panic!("no answer to request {}: {e}", request.id));
        assert_eq!(response.id, request.id, "the answer carries another id");
        response
    }

    /// `Ok` when the server closes the connection without sending a byte more;
    /// `Err` with what happened instead (a frame came, or it stayed open).
    pub fn closed_without_reply(&mut self) -> Result<(), String> {
        self.closed_within(ANSWER_LIMIT)
    }

    /// [`Client::closed_without_reply`], waiting up to `limit`.
    pub fn closed_within(&mut self, limit: Duration) -> Result<(), String> {
        self.tls.sock.set_read_timeout(Some(limit)).unwrap();
        if !self.buf.is_empty() {
            return Err(format!("{} bytes were already waiting", self.buf.len()));
        }
        let mut chunk = [0u8; 4096];
        match self.tls.read(&mut chunk) {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!("{n} bytes came: {:02X?}", &chunk[..16.min(n)])),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                Err(format!("still open after {limit:?}"))
            }
            // A reset, or an end without close_notify: closed all the same.
            Err(_) => Ok(()),
        }
    }
}

/// What the tests have the key server sign: a handshake transcript's stand-in.
pub const TRANSCRIPT: &[u8] = b"the handshake transcript a gateway signs for a TLS client";

/// The signature of a success response, or a panic naming what came instead.
#[track_caller]
pub fn signature(response: &Message) -> &[u8] {
    assert_eq!(response.opcode, Some(Opcode::Response), "expected a success, got {response:?}");
    response.payload()
}
