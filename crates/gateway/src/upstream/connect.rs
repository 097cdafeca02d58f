//! Opening a connection to an origin server: TCP connect and, for
//! `https://` servers, the TLS handshake, both within `connect_timeout_ms`,
//! then an HTTP/1.1 client connection (with upgrades, for WebSocket) driven by
//! its own task.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tracing::debug;

use super::UpstreamError;
use super::server::{InFlight, Server};
use super::tls::OriginTls;

/// Body of a request to an origin: the downstream body, or nothing (which
/// can be sent again when a request is retried).
pub(super) type ProxyBody = Either<Incoming, Empty<Bytes>>;

/// Dials the servers of one pool.
pub(super) struct Connector {
    pub(super) tls: Option<OriginTls>,
    pub(super) timeout: Duration,
}

impl Connector {
    /// Connects to `server`; an error is always `Connect` or `Timeout`.
    pub(super) async fn connect(&self, server: &Server) -> Result<Connection, UpstreamError> {
        let authority = server.authority();
        let stream = tokio::time::timeout(self.timeout, self.open(server))
            .await
            .map_err(|_| UpstreamError::Timeout { server: authority.to_owned() })??;
        let tunnel = Arc::new(OnceLock::new());
        let io = TokioIo::new(OriginIo { stream, _tunnel: Arc::clone(&tunnel) });
        let (sender, conn) = http1::Builder::new().handshake(io).await.map_err(|e| UpstreamError::Protocol {
            server: authority.to_owned(),
            message: format!("HTTP/1.1 handshake: {e}"),
        })?;
        let server_name = authority.to_owned();
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                debug!(server = %server_name, error = %e, "upstream connection ended with an error");
            }
        });
        Ok(Connection { sender, tunnel })
    }

    async fn open(&self, server: &Server) -> Result<Stream, UpstreamError> {
        let authority = server.authority();
        let refused = |message: String| UpstreamError::Connect { server: authority.to_owned(), message };
        let tcp = TcpStream::connect(authority).await.map_err(|e| refused(format!("TCP connect: {e}")))?;
        // Requests are written whole; Nagle would only delay small ones.
        tcp.set_nodelay(true).map_err(|e| refused(format!("TCP_NODELAY: {e}")))?;
        let (Some(tls), Some(name)) = (&self.tls, &server.tls_name) else {
            return Ok(Stream::Plain(tcp));
        };
        let tls_stream = tls
            .connector
            .connect(name.clone(), tcp)
            .await
            .map_err(|e| refused(format!("TLS handshake with {:?}: {e}", name.to_str())))?;
        Ok(Stream::Tls(Box::new(tls_stream)))
    }
}

/// An HTTP/1.1 client connection to one server.
pub(super) struct Connection {
    pub(super) sender: http1::SendRequest<ProxyBody>,
    /// Shared with the transport; see [`Connection::hold_until_closed`].
    tunnel: Arc<OnceLock<InFlight>>,
}

impl Connection {
    pub(super) fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// After a `101 Switching Protocols` the transport becomes the upgraded
    /// stream (a WebSocket, say): the request stays in flight for
    /// least-connections until that stream is dropped.
    pub(super) fn hold_until_closed(self, in_flight: InFlight) {
        // Set at most once: a connection carries one upgrade, after which it is never reused.
        let _ = self.tunnel.set(in_flight);
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The transport under an origin connection.
struct OriginIo {
    stream: Stream,
    /// Dropped with the transport, ending the in-flight count of an upgraded request.
    _tunnel: Arc<OnceLock<InFlight>>,
}

impl AsyncRead for OriginIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for OriginIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
