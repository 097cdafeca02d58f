//! The request path, one phase per function, in the order they run:
//!
//! 0. [`target`]: one authority (Host and `:authority` or an absolute-form
//!    target must agree) and the canonical path (see [`crate::target`]);
//!    what cannot be made unambiguous is a 400, CONNECT a 405. The request
//!    is routed on these and forwarded with them.
//! 1. [`route`]: the Host must belong to the connection's site (else 421);
//!    the longest prefix the path is under picks the route.
//! 2. [`policy`]: a route that requires a client certificate refuses the
//!    request (403, HTML or JSON by Accept, with the reason) unless the
//!    connection's certificate verified.
//! 3. [`upstream_request`] (in `headers`): hop-by-hop and spoofable headers removed, Host
//!    set to the checked authority, the client identity, `X-Forwarded-*` and
//!    `X-Request-Id` set; `Upgrade` kept only for WebSocket on routes that
//!    allow it (never h2c).
//! 4. forward: [`Pool::forward`](crate::upstream::Pool::forward) sends it; a
//!    WebSocket 101 is spliced through, any other 101 is a 502.
//! 5. [`response_filter`] (in `headers`): hop-by-hop headers removed, HSTS added.
//! 6. logging: the access line is written when the response body ends
//!    ([`LoggedBody`], in `answer`, with the answers the gateway gives itself).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::Authority;
use http::{Request, Response, StatusCode};
use http_body_util::Either;
use hyper::body::Incoming;

use crate::identity::IdentityHeaders;
use crate::metrics::Metrics;
use crate::refusal::{NoVerifiedCertificate, RequestRefusal, Unforwardable, UpstreamFailure};
use crate::sites::{Route, Site};
use crate::target::{TargetError, bare_host, canonical_path};
use crate::trust::{CertSummary, Refusal, RevocationWatch};

mod answer;
mod headers;

pub use answer::{LoggedBody, ProxyBody};
use answer::{Refused, Unanswered, access_entry, wants_json};
pub use headers::{response_filter, upstream_request};

/// What the connection knows of the client certificate.
#[derive(Debug, Clone)]
pub enum ClientCert {
    /// None was presented (or the site does not ask).
    None,
    /// Presented and verified.
    Verified(CertSummary),
    /// Presented and refused (optional mode), with the reason.
    Refused(Refusal),
    /// Presented, not verified (passthrough).
    Unverified(Option<CertSummary>),
}

impl ClientCert {
    fn verify_label(&self) -> String {
        match self {
            ClientCert::None => "none".into(),
            ClientCert::Verified(_) => "verified".into(),
            ClientCert::Refused(r) => format!("refused:{}", r.label()),
            ClientCert::Unverified(_) => "unverified".into(),
        }
    }

    fn summary(&self) -> Option<&CertSummary> {
        match self {
            ClientCert::Verified(s) | ClientCert::Unverified(Some(s)) => Some(s),
            _ => None,
        }
    }
}

/// One downstream TLS connection, shared by its requests.
pub struct Connection {
    /// Client address.
    pub peer: SocketAddr,
    /// The site the SNI chose.
    pub site: Arc<Site>,
    /// Negotiated TLS version.
    pub tls_version: &'static str,
    /// Negotiated cipher suite.
    pub cipher: &'static str,
    /// The client certificate's state.
    pub client: ClientCert,
    /// Identity headers for the upstream.
    pub identity: IdentityHeaders,
    /// `X-Forwarded-For`: the client address.
    pub forwarded_for: HeaderValue,
    /// Time allowed for the upstream's response head.
    pub request_timeout: Duration,
    /// Whether to write access lines.
    pub access_log: bool,
    /// Process-wide counters.
    pub metrics: Arc<Metrics>,
    /// Requests answered and given up by the client on this connection.
    pub requests: RequestCounts,
    /// The verified client certificate, checked again on each request.
    pub revocation: Option<RevocationWatch>,
}

/// How a connection's requests ended: a client that cancels most of what it
/// sends (HTTP/2 HEADERS then RST_STREAM, over and over) makes the origin do
/// work nobody reads, so past a budget its requests are no longer forwarded.
#[derive(Debug, Default)]
pub struct RequestCounts {
    answered: AtomicU32,
    cancelled: AtomicU32,
}

impl RequestCounts {
    /// Cancellations tolerated before the ratio is looked at.
    const FREE_CANCELS: u32 = 100;

    /// Whether this connection has cancelled more requests than it let finish, past the free budget.
    fn over_budget(&self) -> bool {
        let cancelled = self.cancelled.load(Ordering::Relaxed);
        cancelled > Self::FREE_CANCELS && cancelled > self.answered.load(Ordering::Relaxed)
    }
}

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A process-unique request id: a random per-process prefix and a counter
/// (unique, cheap, not secret), 24 hex digits.
fn request_id() -> HeaderValue {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let prefix = *PREFIX.get_or_init(|| {
        let mut seed = [0u8; 8];
        let _ = aws_lc_rs::rand::fill(&mut seed);
        u64::from_le_bytes(seed)
    });
    let count = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed) as u32;
    let mut id = [0u8; 24];
    let digits = b"0123456789abcdef";
    let nibbles =
        (0..16).rev().map(|i| (prefix >> (i * 4)) & 0xf).chain((0..8).rev().map(|i| u64::from(count >> (i * 4)) & 0xf));
    for (out, nibble) in id.iter_mut().zip(nibbles) {
        *out = digits[nibble as usize];
    }
    HeaderValue::from_bytes(&id).expect("hex digits are a valid header value")
}

/// Handles one request through every phase.
pub async fn handle(conn: Arc<Connection>, mut req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let id = request_id();
    let accept_json = wants_json(req.headers());
    let refused = Refused { conn: &conn, started, json: accept_json };
    let unrouted = conn.metrics.unrouted();
    // The access line is only assembled when it will be written.
    let authority = match target(&mut req) {
        Ok(authority) => authority,
        Err(refusal) => {
            let entry = conn.access_log.then(|| access_entry(&conn, &id, &req, "", req.uri().path()));
            return Ok(refused.answer(entry, refusal.into(), unrouted));
        }
    };
    let host = bare_host(&authority);
    let entry = conn.access_log.then(|| access_entry(&conn, &id, &req, host, req.uri().path()));
    if let Some(Err(refusal)) = conn.revocation.as_ref().map(RevocationWatch::check) {
        // Revoked (or no longer verifying under new CRLs) since the handshake: nothing on
        // this connection is served any more, and an HTTP/1.1 one is closed.
        let mut response = refused.answer(entry, RequestRefusal::ClientCertificate(refusal), unrouted);
        if req.version() != http::Version::HTTP_2 {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return Ok(response);
    }
    let route = match route(&conn.site, host, req.uri().path()) {
        Ok(route) => route,
        Err(refusal) => return Ok(refused.answer(entry, refusal, unrouted)),
    };
    if let Err(why) = policy(route, &conn.client) {
        return Ok(refused.answer(entry, RequestRefusal::RouteRequiresCertificate(why), &route.durations));
    }
    if conn.requests.over_budget() {
        return Ok(refused.answer(entry, RequestRefusal::TooManyCancelledRequests, &route.durations));
    }
    let mut pending = Unanswered { entry, started, conn: &conn, route, answered: false };
    forward(&conn, req, route, &authority, id, &mut pending, refused).await
}

/// Phases 3 to 6 for a request that may go through.
async fn forward(
    conn: &Connection,
    mut req: Request<Incoming>,
    route: &Route,
    authority: &Authority,
    id: HeaderValue,
    pending: &mut Unanswered<'_>,
    refused: Refused<'_>,
) -> Result<Response<ProxyBody>, Infallible> {
    let downstream_h2 = req.version() == http::Version::HTTP_2;
    let websocket = route.websocket && is_websocket_upgrade(&req);
    upstream_request(conn, &mut req, authority, id.clone(), websocket);
    let upgrade = websocket.then(|| hyper::upgrade::on(&mut req));

    let forwarded = tokio::time::timeout(conn.request_timeout, route.upstream.forward(req, downstream_h2)).await;
    let mut entry = pending.answered();
    let (mut response, server) = match forwarded {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            conn.metrics.upstream_error();
            // The address and the OS error are for the operator's log, not the client.
            tracing::warn!(request_id = %id.to_str().unwrap_or_default(), error = %e, "upstream failed");
            let refusal = RequestRefusal::UpstreamUnavailable(UpstreamFailure::from(&e));
            return Ok(refused.answer(entry, refusal, &route.durations));
        }
        Err(_) => {
            conn.metrics.upstream_error();
            return Ok(refused.answer(entry, RequestRefusal::UpstreamTimeout, &route.durations));
        }
    };
    if let Some(e) = entry.as_mut() {
        e.upstream = Some(server);
    }
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        match upgrade {
            Some(downstream) if is_websocket_switch(&response) => {
                splice_upgrade(downstream, hyper::upgrade::on(&mut response));
            }
            _ => {
                // An origin that switches protocols unasked would get a tunnel past every later check.
                conn.metrics.upstream_error();
                tracing::warn!(request_id = %id.to_str().unwrap_or_default(), "the upstream switched protocols unasked");
                return Ok(refused.answer(entry, RequestRefusal::UpstreamSwitchedProtocols, &route.durations));
            }
        }
    } else {
        response_filter(&conn.site, response.headers_mut(), downstream_h2);
    }
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let logged = LoggedBody::new(Either::Left(body), entry, status, pending.started, conn, &route.durations);
    Ok(Response::from_parts(parts, logged))
}

/// Phase 0: the one authority and the canonical path the request is
/// decided on; the request's URI is rewritten to that path (query kept), so
/// the origin receives what was routed.
pub fn target<B>(req: &mut Request<B>) -> Result<Authority, Unforwardable> {
    if req.method() == http::Method::CONNECT {
        return Err(Unforwardable::Connect);
    }
    let authority = crate::target::authority(req.uri(), req.headers()).map_err(Unforwardable::Target)?;
    if let Some(path) = canonical_path(req.uri().path()).map_err(Unforwardable::Target)? {
        let path_and_query = match req.uri().query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        let uri = http::Uri::try_from(path_and_query).map_err(|_| Unforwardable::Target(TargetError::NotOriginForm))?;
        *req.uri_mut() = uri;
    }
    Ok(authority)
}

/// `Upgrade: websocket` on an HTTP/1.1 GET, the only upgrade forwarded.
fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == http::Version::HTTP_11 && req.method() == http::Method::GET && upgrade_is_websocket(req.headers())
}

/// A 101 that switches to WebSocket.
fn is_websocket_switch<B>(response: &Response<B>) -> bool {
    upgrade_is_websocket(response.headers())
}

fn upgrade_is_websocket(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::UPGRADE).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => value.as_bytes().eq_ignore_ascii_case(b"websocket"),
        _ => false,
    }
}

/// Phase 1: the Host must be one of the site's names; the longest prefix route wins.
pub fn route<'a>(site: &'a Site, host: &str, path: &str) -> Result<&'a Route, RequestRefusal> {
    if !site.serves(host) {
        return Err(RequestRefusal::HostNotServed);
    }
    site.route(path).ok_or(RequestRefusal::NoRoute)
}

/// Phase 2: the per-route client-certificate requirement.
pub fn policy(route: &Route, client: &ClientCert) -> Result<(), NoVerifiedCertificate> {
    if !route.require_cert {
        return Ok(());
    }
    match client {
        ClientCert::Verified(_) => Ok(()),
        ClientCert::Refused(r) => Err(NoVerifiedCertificate::Refused(r.clone())),
        ClientCert::None => Err(NoVerifiedCertificate::Refused(Refusal::NoCertificate)),
        ClientCert::Unverified(_) => Err(NoVerifiedCertificate::NotVerified),
    }
}

fn splice_upgrade(downstream: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    tokio::spawn(async move {
        let (Ok(down), Ok(up)) = (downstream.await, upstream.await) else {
            tracing::debug!("an upgraded connection closed before it was established");
            return;
        };
        let mut down = hyper_util::rt::TokioIo::new(down);
        let mut up = hyper_util::rt::TokioIo::new(up);
        if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
            tracing::debug!(error = %e, "upgraded connection ended");
        }
    });
}
