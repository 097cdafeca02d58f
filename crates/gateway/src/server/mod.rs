//! Listeners and connections: accept, TLS handshake (the SNI picks the
//! site's configuration before the handshake goes on), client-certificate
//! outcome, HTTP/1.1 or HTTP/2 by ALPN. `limits`: idle and slow-header
//! limits and drain on shutdown; `plain`: the redirect and admin listeners.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, header};
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

mod limits;
mod plain;

use limits::{Activity, Watched, drive};
pub use plain::{serve_admin, serve_redirect};

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
            // Boxed once: the request's future is large, and HTTP/2 moves it into a task of its own.
            let handled = Box::pin(proxy::handle(conn, req));
            async move {
                let response = handled.await;
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
