//! Listeners and connections. A TLS connection goes through named phases
//! ([`connection`]): accept → pick the site (SNI) → handshake → check the
//! client certificate → log a refusal → build the [`Connection`] → serve
//! HTTP/1.1 or HTTP/2 by ALPN. `admission`: the connection limits taken at
//! accept; `limits`: idle and slow-header limits and drain on shutdown;
//! `plain`: the redirect and admin listeners.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::{Acceptor, ServerConnection};
use rustls::{InvalidMessage, ProtocolVersion};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, StartHandshake};

use crate::Gateway;
use crate::config::{Limits, MtlsMode};
use crate::identity::IdentityHeaders;
use crate::log::{HandshakeEntry, write_line};
use crate::metrics::Metrics;
use crate::proxy::{self, ClientCert, Connection};
use crate::refusal::{HandshakeRefusal, RefusedCertificate};
use crate::sites::{Runtime, Site};
use crate::trust::{Refusal, RevocationWatch, summarize};

mod admission;
mod limits;
mod plain;

use admission::{Admission, ClientSlot};
pub use admission::{ClientConnections, ConnectionSlots, raise_open_file_limit};
use limits::{Activity, Watched, drive};
pub use plain::{serve_admin, serve_redirect};

/// Accepts TLS connections until `shutdown` turns true; each is served by a task of its own.
pub async fn serve_tls(gateway: Arc<Gateway>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    while let Some(accepted) = accept(&gateway, &listener, &mut shutdown).await {
        tokio::spawn(connection(gateway.clone(), accepted, shutdown.clone()));
    }
}

/// A client past accept: its socket and address, and the slots it holds.
struct Accepted {
    tcp: TcpStream,
    peer: SocketAddr,
    slots: Slots,
}

/// What an open connection holds against the limits, given back when it drops.
struct Slots {
    _connection: OwnedSemaphorePermit,
    _client: ClientSlot,
}

/// Phase 1, accept: waits for a free connection slot (`limits.max_connections`),
/// then for a client. A client over `limits.max_connections_per_ip` is closed
/// at once, before any TLS. `None` on shutdown.
async fn accept(gateway: &Gateway, listener: &TcpListener, shutdown: &mut watch::Receiver<bool>) -> Option<Accepted> {
    let slots = &gateway.connection_slots;
    loop {
        let permit = tokio::select! {
            permit = slots.acquire() => permit,
            _ = shutdown.changed() => return None,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return None,
        };
        let per_ip = gateway.runtime.load().config.limits.max_connections_per_ip;
        let client = match gateway.clients.admit(peer.ip(), per_ip, Instant::now()) {
            Admission::Admitted(client) => client,
            Admission::Refused { client, open, log } => {
                gateway.metrics.connection_refused_per_ip();
                if log {
                    let connections = if open == 1 { "connection" } else { "connections" };
                    tracing::warn!(
                        "client {client} has {open} {connections} open, limits.max_connections_per_ip; \
                         its further connections are closed at accept (logged once per 10 s per client)"
                    );
                }
                drop(tcp);
                continue;
            }
        };
        // A reload lowered the limit while this slot waited for a client: the client waits for the next one.
        let permit = match slots.confirm(permit) {
            Some(permit) => permit,
            None => tokio::select! {
                permit = slots.acquire() => permit,
                _ = shutdown.changed() => return None,
            },
        };
        return Some(Accepted { tcp, peer, slots: Slots { _connection: permit, _client: client } });
    }
}

/// One client's connection, phase by phase after accept. Serving runs on a
/// task of its own, so the handshake's state does not stay allocated for the
/// life of a keep-alive connection.
async fn connection(gateway: Arc<Gateway>, accepted: Accepted, shutdown: watch::Receiver<bool>) {
    let Accepted { tcp, peer, slots } = accepted;
    let runtime = gateway.runtime.load_full();
    let limits = runtime.config.limits.clone();
    let timeout = Duration::from_millis(limits.header_read_timeout_ms);
    let mut report = Report { peer, sni: None, metrics: &gateway.metrics, log: runtime.config.log.handshakes };
    let begun = Instant::now();
    let _ = tcp.set_nodelay(true);

    let hello = match client_hello(tcp, timeout).await {
        Ok(hello) => hello,
        Err(failure) => return report.handshake_failed(failure),
    };
    report.sni = hello.client_hello().server_name().map(str::to_owned);
    if offers_only_acme_tls(&hello) {
        return answer_tls_alpn_01(&gateway, hello, report.sni.as_deref(), timeout).await;
    }
    let Some(site) = pick_site(&runtime, &report) else {
        return;
    };
    let tls = match handshake(hello, &site, timeout).await {
        Ok(tls) => tls,
        Err(failure) => return report.handshake_failed(failure),
    };
    gateway.metrics.handshake(begun.elapsed());
    let chain = tls.get_ref().1.peer_certificates().map(<[_]>::to_vec).unwrap_or_default();
    // Read before the check: a CRL change after it makes the first request verify again.
    let crl_generation = site.trust.as_ref().map_or(0, |trust| trust.generation());
    let client = check_client_certificate(&site, &chain);
    if let ClientCert::Refused(refusal) = &client {
        report.client_cert_refused(refusal, &chain);
        if site.mtls == MtlsMode::Require {
            // Revoked between the handshake and now: a require site serves nobody unverified.
            return;
        }
    }
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let conn = build_connection(&runtime, site, tls.get_ref().1, client, chain, crl_generation, &report);
    drop(runtime);
    let metrics = gateway.metrics.clone();
    tokio::spawn(serve_http(Established { tls, conn, h2, limits, slots, shutdown, metrics }));
}

/// Why a connection ended before its TLS handshake completed.
enum HandshakeFailure {
    /// Refused: the client certificate (`mtls = "require"`, with its serial and
    /// subject when it parsed) or an oversized message.
    Refused(HandshakeRefusal, Option<RefusedCertificate>),
    /// Not TLS, a protocol error, a reset.
    Failed(io::Error),
    /// Not done within `limits.header_read_timeout_ms`.
    TimedOut,
}

impl HandshakeFailure {
    fn from_io(error: io::Error) -> HandshakeFailure {
        let rustls_error = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
        match rustls_error {
            Some(rustls::Error::InvalidMessage(
                InvalidMessage::HandshakePayloadTooLarge | InvalidMessage::CertificatePayloadTooLarge,
            )) => HandshakeFailure::Refused(HandshakeRefusal::TooLarge, None),
            Some(e) => match Refusal::from_rustls(e) {
                Refusal::Other(_) | Refusal::Malformed if !is_cert_error(e) => HandshakeFailure::Failed(error),
                refusal => HandshakeFailure::Refused(
                    HandshakeRefusal::ClientCertificate(refusal),
                    RefusedCertificate::in_error(e).cloned(),
                ),
            },
            None => HandshakeFailure::Failed(error),
        }
    }
}

fn is_cert_error(error: &rustls::Error) -> bool {
    matches!(error, rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
}

/// Phase 2, pick the site, begins here: reads the ClientHello, whose SNI
/// picks the site's configuration before the handshake goes on.
async fn client_hello(tcp: TcpStream, timeout: Duration) -> Result<StartHandshake<TcpStream>, HandshakeFailure> {
    match tokio::time::timeout(timeout, LazyConfigAcceptor::new(Acceptor::default(), tcp)).await {
        Ok(Ok(hello)) => Ok(hello),
        Ok(Err(e)) => Err(HandshakeFailure::from_io(e)),
        Err(_) => Err(HandshakeFailure::TimedOut),
    }
}

/// Whether the ClientHello offers the single ALPN protocol `acme-tls/1`, as a CA
/// validating tls-alpn-01 does (RFC 8737 §3).
fn offers_only_acme_tls(hello: &StartHandshake<TcpStream>) -> bool {
    let Some(mut alpn) = hello.client_hello().alpn() else { return false };
    alpn.next() == Some(crate::acme_client::ACME_TLS_ALPN) && alpn.next().is_none()
}

/// A tls-alpn-01 validation: the handshake completes with the challenge certificate of
/// the SNI name while its order waits for it (on this instance, or on another that
/// shared its answer through the database: the ClientHello has been read, so the
/// lookup is awaited here, before rustls picks a certificate), and the connection is
/// closed; without one (no order for that name now) the connection is closed unanswered.
async fn answer_tls_alpn_01(gateway: &Gateway, hello: StartHandshake<TcpStream>, sni: Option<&str>, timeout: Duration) {
    let key = match sni.zip(gateway.acme.as_ref()) {
        Some((name, acme)) => acme.challenges.tls_alpn_01_answer(&name.to_ascii_lowercase(), &gateway.provider).await,
        None => None,
    };
    let Some(key) = key else {
        tracing::debug!(sni = ?sni, "acme-tls/1 handshake for a name with no tls-alpn-01 challenge pending; closed");
        return;
    };
    let config = rustls::ServerConfig::builder_with_provider(gateway.provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| b.with_no_client_auth().with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key))));
    let Ok(mut config) = config else { return };
    config.alpn_protocols = vec![crate::acme_client::ACME_TLS_ALPN.to_vec()];
    if let Ok(Ok(mut tls)) = tokio::time::timeout(timeout, hello.into_stream(Arc::new(config))).await {
        use tokio::io::AsyncWriteExt;
        let _ = tls.shutdown().await;
    }
}

/// Phase 2, pick the site: the one whose names match the SNI (no SNI: the
/// first site). An unknown name is refused and logged.
fn pick_site(runtime: &Runtime, report: &Report<'_>) -> Option<Arc<Site>> {
    let site = runtime.site_for_sni(report.sni.as_deref()).cloned();
    if site.is_none() {
        report.handshake_refused(&HandshakeRefusal::UnknownServerName { sni: report.sni.clone() }, None);
    }
    site
}

/// Phase 3, handshake: completes TLS with the site's configuration, whose
/// verifier refuses a client certificate a `require` site does not accept.
async fn handshake(
    hello: StartHandshake<TcpStream>,
    site: &Site,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, HandshakeFailure> {
    match tokio::time::timeout(timeout, hello.into_stream(site.tls.clone())).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(HandshakeFailure::from_io(e)),
        Err(_) => Err(HandshakeFailure::TimedOut),
    }
}

/// Phase 4, check the client certificate: what the site's `mtls` mode makes
/// of the chain the client presented (verified now, against the trust store
/// and revocations as they are at this moment).
fn check_client_certificate(site: &Site, chain: &[CertificateDer<'static>]) -> ClientCert {
    match (site.mtls, chain.split_first()) {
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
    }
}

/// Phase 5, log a refusal: where a connection's refusals go, the metrics and,
/// when `log.handshakes` is on, one JSON line each.
struct Report<'a> {
    peer: SocketAddr,
    sni: Option<String>,
    metrics: &'a Arc<Metrics>,
    log: bool,
}

impl Report<'_> {
    /// Counts a refused handshake and writes its `handshake_refused` line.
    fn handshake_refused(&self, refusal: &HandshakeRefusal, certificate: Option<RefusedCertificate>) {
        self.metrics.handshake_refused(refusal);
        if self.log {
            let (serial, subject) = certificate.map(|c| (c.serial, c.subject)).unwrap_or_default();
            let mut entry = HandshakeEntry::new(
                "handshake_refused",
                self.peer,
                self.sni.clone(),
                refusal.label(),
                refusal.to_string(),
                serial,
            );
            entry.client_subject = subject;
            write_line(&entry);
        }
    }

    /// A handshake that did not complete: a refused certificate or an oversized
    /// message is logged; anything else (not TLS, a reset, a timeout) is only counted.
    fn handshake_failed(&self, failure: HandshakeFailure) {
        match failure {
            HandshakeFailure::Refused(refusal, certificate) => self.handshake_refused(&refusal, certificate),
            HandshakeFailure::Failed(e) => {
                self.metrics.tls_error();
                tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
            }
            HandshakeFailure::TimedOut => {
                self.metrics.tls_error();
                tracing::debug!(peer = %self.peer, "TLS handshake not done within limits.header_read_timeout_ms");
            }
        }
    }

    /// A `client_cert_refused` line: the certificate was refused after the handshake.
    fn client_cert_refused(&self, refusal: &Refusal, chain: &[CertificateDer<'static>]) {
        self.metrics.client_cert_refused(refusal);
        if self.log {
            let summary = chain.first().and_then(|c| summarize(c).ok()).map(|(s, _)| s);
            let (serial, subject) = summary.map(|s| (Some(s.serial), Some(s.subject))).unwrap_or_default();
            let detail = refusal.to_string();
            let mut entry = HandshakeEntry::new(
                "client_cert_refused",
                self.peer,
                self.sni.clone(),
                refusal.label(),
                detail,
                serial,
            );
            entry.client_subject = subject;
            write_line(&entry);
        }
    }
}

/// Phase 6, build the [`Connection`] every request on it reads: the site,
/// the TLS parameters, the client certificate's state and the identity
/// headers, made once for all its requests.
fn build_connection(
    runtime: &Runtime,
    site: Arc<Site>,
    session: &ServerConnection,
    client: ClientCert,
    chain: Vec<CertificateDer<'static>>,
    crl_generation: u64,
    report: &Report<'_>,
) -> Arc<Connection> {
    let format = runtime.config.identity.format;
    let identity = match &client {
        ClientCert::Verified(summary) => IdentityHeaders::new(format, &chain, Some(summary)),
        ClientCert::Unverified(summary) => IdentityHeaders::new(format, &chain, summary.as_ref()),
        _ => IdentityHeaders::default(),
    };
    let revocation = match (&client, &site.trust) {
        (ClientCert::Verified(summary), Some(trust)) => {
            Some(RevocationWatch::new(trust.clone(), chain, summary.serial.clone(), crl_generation))
        }
        _ => None,
    };
    Arc::new(Connection {
        peer: report.peer,
        site,
        tls_version: match session.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "unknown",
        },
        cipher: session.negotiated_cipher_suite().and_then(|s| s.suite().as_str()).unwrap_or("unknown"),
        client,
        identity,
        forwarded_for: header::HeaderValue::from_str(&report.peer.ip().to_string())
            .expect("an IP address is a valid header value"),
        request_timeout: Duration::from_millis(runtime.config.limits.request_timeout_ms),
        access_log: runtime.config.log.access,
        metrics: report.metrics.clone(),
        requests: Default::default(),
        revocation,
    })
}

/// A connection past its handshake, ready for HTTP.
struct Established {
    tls: TlsStream<TcpStream>,
    conn: Arc<Connection>,
    h2: bool,
    limits: Limits,
    slots: Slots,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
}

/// Phase 7, serve: HTTP/1.1 or HTTP/2 on an established connection until it
/// ends, within the idle and slow-header limits (see [`drive`]).
async fn serve_http(established: Established) {
    let Established { tls, conn, h2, limits, slots, mut shutdown, metrics } = established;
    metrics.connection(1);
    let idle = Duration::from_millis(limits.idle_timeout_ms);
    let activity = Arc::new(Activity::default());
    let service = {
        let activity = activity.clone();
        service_fn(move |req: Request<Incoming>| {
            let conn = conn.clone();
            let guard = activity.begin();
            // Boxed once: the request's future is large, and HTTP/2 moves it into a task of its own.
            let handled = Box::pin(proxy::handle(conn, req));
            async move {
                let response = handled.await;
                drop(guard);
                response
            }
        })
    };
    // Neither hyper builder has a head timeout that spares idle keep-alive connections:
    // it is kept in `drive`, from what `Watched` sees of the bytes read.
    let head_timeout = Duration::from_millis(limits.header_read_timeout_ms);
    // Boxed, so a connection holds the state of the protocol it speaks and not the other's.
    if h2 {
        let io = TokioIo::new(Watched::http2(tls, activity.clone()));
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(Duration::from_secs(30)));
        let conn = Box::pin(builder.serve_connection(io, service));
        drive(conn, &activity, idle, head_timeout, &mut shutdown, |c| c.graceful_shutdown()).await;
    } else {
        let io = TokioIo::new(Watched::http1(tls, activity.clone()));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_header_size(limits.max_header_bytes)
            .max_buf_size(limits.max_header_bytes.max(8192));
        let conn = Box::pin(builder.serve_connection(io, service).with_upgrades());
        drive(conn, &activity, idle, head_timeout, &mut shutdown, |c| c.graceful_shutdown()).await;
    }
    metrics.connection(-1);
    drop(slots);
}
