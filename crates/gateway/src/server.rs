//! Listeners and connections: accept, TLS handshake (the SNI picks the
//! site's configuration before the handshake goes on), client-certificate
//! outcome, HTTP/1.1 or HTTP/2 by ALPN, limits, idle timeout, drain on
//! shutdown; the plain-HTTP redirect listener and the admin listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::UnixTime;
use rustls::server::Acceptor;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio_rustls::LazyConfigAcceptor;

use crate::Gateway;
use crate::config::MtlsMode;
use crate::identity::IdentityHeaders;
use crate::log::{HandshakeEntry, write_line};
use crate::proxy::{self, ClientCert, Connection};
use crate::trust::{Refusal, summarize};

/// Accepts TLS connections until `shutdown` turns true.
pub async fn serve_tls(gateway: Arc<Gateway>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    loop {
        let permit = tokio::select! {
            permit = gateway.connection_slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = shutdown.changed() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let gateway = gateway.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(connection(gateway, tcp, peer, permit, shutdown));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The TLS handshake and the client-certificate outcome; on success the
/// connection is served by a task of its own, so the handshake's state does
/// not stay allocated for the life of a keep-alive connection.
async fn connection(
    gateway: Arc<Gateway>,
    tcp: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    shutdown: watch::Receiver<bool>,
) {
    let runtime = gateway.runtime.load_full();
    let limits = runtime.config.limits.clone();
    let log_handshakes = runtime.config.log.handshakes;
    let handshake_timeout = Duration::from_millis(limits.header_read_timeout_ms);
    let _ = tcp.set_nodelay(true);
    let metrics = gateway.metrics.clone();

    let start = match tokio::time::timeout(handshake_timeout, LazyConfigAcceptor::new(Acceptor::default(), tcp)).await {
        Ok(Ok(start)) => start,
        Ok(Err(e)) => {
            metrics.tls_error();
            tracing::debug!(%peer, error = %e, "not a TLS ClientHello");
            return;
        }
        Err(_) => {
            metrics.tls_error();
            return;
        }
    };
    let sni = start.client_hello().server_name().map(str::to_owned);
    let Some(site) = runtime.site_for_sni(sni.as_deref()).cloned() else {
        metrics.unknown_sni();
        if log_handshakes {
            let detail = format!("no site serves {}", sni.as_deref().unwrap_or("(no SNI)"));
            write_line(&HandshakeEntry::new(
                "handshake_refused",
                peer,
                sni.clone(),
                "unknown_server_name",
                detail,
                None,
            ));
        }
        return;
    };
    let tls = match tokio::time::timeout(handshake_timeout, start.into_stream(site.tls.clone())).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            let rustls_error = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
            match rustls_error.map(Refusal::from_rustls) {
                Some(refusal @ Refusal::Other(_)) | Some(refusal @ Refusal::Malformed)
                    if !is_cert_error(rustls_error) =>
                {
                    metrics.tls_error();
                    tracing::debug!(%peer, reason = %refusal, "TLS handshake failed");
                }
                Some(refusal) => {
                    metrics.refusal(&refusal);
                    if log_handshakes {
                        let detail = refusal.to_string();
                        write_line(&HandshakeEntry::new("handshake_refused", peer, sni, refusal.label(), detail, None));
                    }
                }
                None => {
                    metrics.tls_error();
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                }
            }
            return;
        }
        Err(_) => {
            metrics.tls_error();
            return;
        }
    };
    metrics.handshake();
    let (_, session) = tls.get_ref();
    let chain = session.peer_certificates().map(<[_]>::to_vec).unwrap_or_default();
    let client = match (site.mtls, chain.split_first()) {
        (MtlsMode::Off, _) | (_, None) => ClientCert::None,
        (MtlsMode::Require, Some((leaf, intermediates))) => match &site.trust {
            Some(trust) => match trust.verified_summary(leaf, intermediates, UnixTime::now()) {
                Ok(summary) => ClientCert::Verified(summary),
                Err(refusal) => ClientCert::Refused(refusal),
            },
            None => ClientCert::Refused(Refusal::UnknownIssuer),
        },
        (MtlsMode::Optional, Some((leaf, intermediates))) => match &site.trust {
            Some(trust) => match trust.verify(leaf, intermediates, UnixTime::now()) {
                Ok(summary) => ClientCert::Verified(summary),
                Err(refusal) => ClientCert::Refused(refusal),
            },
            None => ClientCert::Refused(Refusal::UnknownIssuer),
        },
        (MtlsMode::Passthrough, Some((leaf, _))) => ClientCert::Unverified(summarize(leaf).ok().map(|(s, _)| s)),
    };
    if let ClientCert::Refused(refusal) = &client {
        metrics.refusal(refusal);
        if log_handshakes {
            let serial = chain.first().and_then(|c| summarize(c).ok()).map(|(s, _)| s.serial);
            let detail = refusal.to_string();
            write_line(&HandshakeEntry::new("client_cert_refused", peer, sni.clone(), refusal.label(), detail, serial));
        }
    }
    if site.mtls == MtlsMode::Require && matches!(client, ClientCert::Refused(_)) {
        // Revoked between the handshake and now: a require site serves nobody unverified.
        return;
    }
    let identity = match &client {
        ClientCert::Verified(summary) => IdentityHeaders::new(runtime.config.identity.format, &chain, Some(summary)),
        ClientCert::Unverified(summary) => {
            IdentityHeaders::new(runtime.config.identity.format, &chain, summary.as_ref())
        }
        _ => IdentityHeaders::default(),
    };
    let h2 = session.alpn_protocol() == Some(b"h2");
    let conn = Arc::new(Connection {
        peer,
        site,
        tls_version: match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "unknown",
        },
        cipher: session.negotiated_cipher_suite().and_then(|s| s.suite().as_str()).unwrap_or("unknown"),
        client,
        identity,
        forwarded_for: header::HeaderValue::from_str(&peer.ip().to_string())
            .expect("an IP address is a valid header value"),
        request_timeout: Duration::from_millis(limits.request_timeout_ms),
        access_log: runtime.config.log.access,
        metrics: metrics.clone(),
    });
    drop(runtime);

    tokio::spawn(serve_http(Established { tls, conn, h2, limits, permit, shutdown, metrics }));
}

/// A connection past its handshake, ready for HTTP.
struct Established {
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    conn: Arc<Connection>,
    h2: bool,
    limits: crate::config::Limits,
    permit: OwnedSemaphorePermit,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<crate::metrics::Metrics>,
}

/// Serves HTTP/1.1 or HTTP/2 on an established connection until it ends.
async fn serve_http(established: Established) {
    let Established { tls, conn, h2, limits, permit, mut shutdown, metrics } = established;
    metrics.connection(1);
    let idle = Duration::from_millis(limits.idle_timeout_ms);
    let activity = Arc::new(Activity::default());
    let service = {
        let activity = activity.clone();
        service_fn(move |req: Request<Incoming>| {
            let conn = conn.clone();
            let guard = activity.begin();
            async move {
                let response = proxy::handle(conn, req).await;
                drop(guard);
                response
            }
        })
    };
    let head_timeout = Duration::from_millis(limits.header_read_timeout_ms);
    // Boxed, so a connection holds the state of the protocol it speaks and not the other's.
    if h2 {
        let io = TokioIo::new(tls);
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(Duration::from_secs(30)));
        let conn = Box::pin(builder.serve_connection(io, service));
        drive(conn, &activity, idle, None, &mut shutdown, |c| c.graceful_shutdown()).await;
    } else {
        // hyper's own header timer would also close idle keep-alive connections after it;
        // the head timeout is kept here instead, counted from the first byte of a head.
        let io = TokioIo::new(Watched { inner: tls, activity: activity.clone() });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_header_size(limits.max_header_bytes)
            .max_buf_size(limits.max_header_bytes.max(8192));
        let conn = Box::pin(builder.serve_connection(io, service).with_upgrades());
        drive(conn, &activity, idle, Some(head_timeout), &mut shutdown, |c| c.graceful_shutdown()).await;
    }
    metrics.connection(-1);
    drop(permit);
}

fn is_cert_error(error: Option<&rustls::Error>) -> bool {
    matches!(error, Some(rustls::Error::InvalidCertificate(_)) | Some(rustls::Error::NoCertificatesPresented))
}

/// What the idle and slow-header limits need to know of a connection:
/// requests in flight, requests started, and whether bytes of a next request
/// head have arrived (HTTP/1.1). A request costs a few atomic operations and
/// no clock read; [`drive`] samples these at each check and keeps the times,
/// so the limits hold to within one check interval.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    started: AtomicU64,
    head_bytes: AtomicBool,
}

struct ActivityGuard(Arc<Activity>);

impl Activity {
    /// A request head is complete and its service call starts.
    fn begin(self: &Arc<Self>) -> ActivityGuard {
        self.in_flight.fetch_add(1, Relaxed);
        self.started.fetch_add(1, Relaxed);
        self.head_bytes.store(false, Relaxed);
        ActivityGuard(self.clone())
    }

    /// Bytes arrived; between requests they are the start of the next head.
    fn bytes_read(&self) {
        if self.in_flight.load(Relaxed) == 0 {
            self.head_bytes.store(true, Relaxed);
        }
    }
}

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// The drive loop's view of [`Activity`] over time.
struct Watch {
    started: u64,
    idle_since: Option<Instant>,
    head_since: Option<Instant>,
}

impl Watch {
    /// Samples the connection at `now`: how long it has been idle, and how
    /// long a request head has been arriving without completing.
    fn sample(&mut self, activity: &Activity, now: Instant) -> (Option<Duration>, Option<Duration>) {
        let started = activity.started.load(Relaxed);
        let moved = std::mem::replace(&mut self.started, started) != started;
        let waiting = activity.in_flight.load(Relaxed) == 0;
        // A request since the last sample restarts both clocks.
        if moved || !waiting {
            self.idle_since = None;
            self.head_since = None;
        }
        if !waiting {
            return (None, None);
        }
        let idle_for = now - *self.idle_since.get_or_insert(now);
        let head_for = if activity.head_bytes.load(Relaxed) {
            Some(now - *self.head_since.get_or_insert(now))
        } else {
            self.head_since = None;
            None
        };
        (Some(idle_for), head_for)
    }
}

/// The TLS stream of an HTTP/1.1 connection, reporting reads to its [`Activity`].
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Runs a connection to its end, closing it gracefully when idle too long or on shutdown.
///
/// `idle` closes a keep-alive connection that waits too long for its next
/// request; `head` (HTTP/1.1) drops one whose request head started to
/// arrive and is still incomplete after that long (slowloris).
async fn drive<C, T>(
    mut conn: std::pin::Pin<Box<C>>,
    activity: &Activity,
    idle: Duration,
    head: Option<Duration>,
    shutdown: &mut watch::Receiver<bool>,
    close: fn(std::pin::Pin<&mut C>),
) where
    C: std::future::Future<Output = Result<T, hyper::Error>>,
{
    let mut closing = false;
    let shortest = head.map_or(idle, |h| h.min(idle));
    let check = (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut watch = Watch { started: 0, idle_since: Some(Instant::now()), head_since: None };
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep(check) => {
                let (idle_for, head_pending_for) = watch.sample(activity, Instant::now());
                if head.is_some_and(|h| head_pending_for.is_some_and(|d| d >= h)) {
                    tracing::debug!("request head incomplete after the header read timeout; closing");
                    return;
                }
                if !closing && idle_for.is_some_and(|d| d >= idle) {
                    close(conn.as_mut());
                    closing = true;
                }
            }
            _ = shutdown.changed(), if !closing => {
                close(conn.as_mut());
                closing = true;
            }
        }
    }
}

/// The plain-HTTP listener: every request is redirected to HTTPS (308).
pub async fn serve_redirect(listener: TcpListener, https_port: u16, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
            _ = shutdown.changed() => return,
        };
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| async move {
                let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
                let host = host
                    .rsplit_once(':')
                    .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
                    .map_or(host, |(h, _)| h);
                let port = if https_port == 443 { String::new() } else { format!(":{https_port}") };
                let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
                let location = format!("https://{host}{port}{path}");
                let mut response = Response::new(Full::new(Bytes::from(format!("redirecting to {location}\n"))));
                *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
                if let Ok(v) = http::HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, v);
                }
                Ok::<_, std::convert::Infallible>(response)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// The admin listener: `/metrics` (Prometheus) and `/healthz`.
pub async fn serve_admin(gateway: Arc<Gateway>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
            _ = shutdown.changed() => return,
        };
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let gateway = gateway.clone();
                async move {
                    let (status, content_type, body) = match req.uri().path() {
                        "/metrics" => (
                            StatusCode::OK,
                            "text/plain; version=0.0.4",
                            gateway.metrics.render(&gateway.runtime.load()),
                        ),
                        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
                        _ => (StatusCode::NOT_FOUND, "text/plain", "not found; try /metrics or /healthz\n".to_owned()),
                    };
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    *response.status_mut() = status;
                    response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}
