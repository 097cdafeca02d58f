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
//! 3. [`upstream_request`]: hop-by-hop and spoofable headers removed, Host
//!    set to the checked authority, the client identity, `X-Forwarded-*` and
//!    `X-Request-Id` set; `Upgrade` kept only for WebSocket on routes that
//!    allow it (never h2c).
//! 4. forward: [`Pool::forward`](crate::upstream::Pool::forward) sends it; a
//!    WebSocket 101 is spliced through, any other 101 is a 502.
//! 5. [`response_filter`]: hop-by-hop headers removed, HSTS added.
//! 6. logging: the access line is written when the response body ends
//!    ([`LoggedBody`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::identity::{IdentityHeaders, is_spoofable, strip_spoofable};
use crate::log::{AccessEntry, now_rfc3339, write_line};
use crate::metrics::{DurationHistogram, Metrics, RequestDurations};
use crate::refusal::{NoVerifiedCertificate, RequestRefusal, Unforwardable, UpstreamFailure};
use crate::sites::{Route, Site};
use crate::target::{TargetError, bare_host, canonical_path, host_of};
use crate::trust::{CertSummary, Refusal, RevocationWatch};
use crate::upstream::OriginBody;

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

/// Response body: the upstream's, or one the gateway made; logged when it ends.
pub type ProxyBody = LoggedBody;

type Inner = Either<OriginBody, Full<Bytes>>;

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

/// A request on its way to the origin, whose client may give up before the
/// answer: then the access line is written with status 499 (nginx's "client
/// closed request"), and the cancellation counts against the connection.
struct Unanswered<'a> {
    entry: Option<Box<AccessEntry>>,
    started: Instant,
    conn: &'a Connection,
    route: &'a Route,
    answered: bool,
}

impl Unanswered<'_> {
    /// The origin answered (or failed): the access line goes with the response.
    fn answered(&mut self) -> Option<Box<AccessEntry>> {
        self.answered = true;
        self.conn.requests.answered.fetch_add(1, Ordering::Relaxed);
        self.entry.take()
    }
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        self.conn.requests.cancelled.fetch_add(1, Ordering::Relaxed);
        let refusal = RequestRefusal::ClientClosedRequest;
        let status = refusal.status().as_u16();
        let elapsed = self.started.elapsed();
        self.conn.metrics.request(status);
        self.conn.metrics.refused(&refusal);
        self.route.durations.for_status(status).observe(elapsed);
        if let Some(mut entry) = self.entry.take() {
            entry.status = status;
            entry.refused = Some(refusal.label());
            entry.duration_ms = milliseconds(elapsed);
            write_line(&entry);
        }
    }
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

/// The access line's fields known before the request is answered.
fn access_entry(
    conn: &Connection,
    id: &HeaderValue,
    req: &Request<Incoming>,
    host: &str,
    path: &str,
) -> Box<AccessEntry> {
    Box::new(AccessEntry {
        time: now_rfc3339(),
        event: "request",
        request_id: id.to_str().unwrap_or_default().to_owned(),
        client_ip: conn.peer.ip().to_string(),
        host: host.to_owned(),
        method: req.method().to_string(),
        path: path.to_owned(),
        protocol: version_name(req.version()),
        status: 0,
        bytes: 0,
        duration_ms: 0.0,
        tls_version: conn.tls_version,
        cipher: conn.cipher,
        client_serial: conn.client.summary().map(|s| s.serial.clone()),
        client_subject: conn.client.summary().map(|s| s.subject.clone()),
        client_verify: conn.client.verify_label(),
        upstream: None,
        refused: None,
    })
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

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Phase 3: headers for the upstream. Host is the authority that was
/// checked, whatever the client sent; an upgrade is kept only for WebSocket.
pub fn upstream_request(
    conn: &Connection,
    req: &mut Request<Incoming>,
    authority: &Authority,
    id: HeaderValue,
    websocket: bool,
) {
    let headers = req.headers_mut();
    // The usual request already says exactly the checked authority: its Host is kept as it is.
    let host_as_checked = headers.get(header::HOST).filter(|v| v.as_bytes() == authority.as_str().as_bytes()).cloned();
    let upgrade = if websocket { headers.get(header::UPGRADE).cloned() } else { None };
    remove_hop_by_hop(headers, true);
    if let Some(protocol) = upgrade {
        headers.insert(header::UPGRADE, protocol);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    conn.identity.apply(headers);
    headers.insert(X_FORWARDED_FOR.clone(), conn.forwarded_for.clone());
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
    let host_as_checked_kept = host_as_checked.is_some();
    let authority_value = host_as_checked.unwrap_or_else(|| {
        HeaderValue::from_str(authority.as_str()).expect("a parsed authority is a valid header value")
    });
    let host = host_of(authority);
    let host_value = if host.len() == authority.as_str().len() {
        authority_value.clone()
    } else {
        HeaderValue::from_str(host).expect("a parsed host is a valid header value")
    };
    headers.insert(X_FORWARDED_HOST.clone(), host_value);
    headers.insert(X_REQUEST_ID.clone(), id);
    if !host_as_checked_kept {
        headers.insert(header::HOST, authority_value);
    }
    *req.version_mut() = http::Version::HTTP_11;
}

/// Phase 5: response headers for the client.
///
/// For an HTTP/2 client the values are copied out of the origin
/// connection's read buffer: HPACK keeps header values in its table for the
/// life of the connection, and each would keep a whole buffer (8 KiB or
/// more) of the origin connection alive with it.
pub fn response_filter(site: &Site, headers: &mut HeaderMap, h2: bool) {
    remove_hop_by_hop(headers, false);
    if h2 {
        for value in headers.values_mut() {
            let sensitive = value.is_sensitive();
            if let Ok(mut copy) = HeaderValue::from_bytes(value.as_bytes()) {
                copy.set_sensitive(sensitive);
                *value = copy;
            }
        }
    }
    if let Some(hsts) = &site.hsts {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
}

static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    // The h2c upgrade's settings: never forwarded, as h2c is not.
    HeaderName::from_static("http2-settings"),
];

/// Removes the hop-by-hop headers, those `Connection` names, and, for a
/// request (`spoofable`), the identity headers only the gateway may set.
fn remove_hop_by_hop(headers: &mut HeaderMap, spoofable: bool) {
    // One pass over the names decides; most messages have none of these.
    let found = headers.keys().any(|name| HOP_BY_HOP.contains(name) || (spoofable && is_spoofable(name)));
    if !found {
        return;
    }
    // Names listed in Connection are hop-by-hop too.
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if spoofable {
        strip_spoofable(headers);
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

fn wants_json(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("application/json"))
}

fn version_name(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    }
}

/// What a refusal of the request needs of it: its connection, when it began, whether
/// the client asked for JSON.
#[derive(Clone, Copy)]
struct Refused<'a> {
    conn: &'a Connection,
    started: Instant,
    json: bool,
}

impl Refused<'_> {
    /// The response the gateway answers itself with (400, 403, 404, 421, 429, 502, 503, 504):
    /// the refusal's status, its sentence as HTML or JSON (by Accept), and its label in the
    /// access line and `gatehouse_requests_refused_total`.
    fn answer(
        self,
        mut entry: Option<Box<AccessEntry>>,
        refusal: RequestRefusal,
        durations: &RequestDurations,
    ) -> Response<ProxyBody> {
        let (conn, status) = (self.conn, refusal.status());
        let message = refusal.to_string();
        let (content_type, body) = if self.json {
            let body = serde_json::json!({ "status": status.as_u16(), "error": refusal.label(), "reason": message });
            ("application/json", body.to_string())
        } else {
            let title = status.canonical_reason().unwrap_or("Error");
            let escaped = message.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
            (
                "text/html; charset=utf-8",
                format!(
                    "<!doctype html><html><head><title>{} {title}</title></head><body><h1>{} {title}</h1><p>{escaped}</p></body></html>\n",
                    status.as_u16(),
                    status.as_u16()
                ),
            )
        };
        conn.metrics.refused(&refusal);
        if let Some(e) = entry.as_mut() {
            e.refused = Some(refusal.label());
        }
        let body = Either::Right(Full::new(Bytes::from(body)));
        let mut response = Response::new(LoggedBody::new(body, entry, status.as_u16(), self.started, conn, durations));
        *response.status_mut() = status;
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(hsts) = &conn.site.hsts {
            response.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        response
    }
}

/// A duration in milliseconds with microsecond precision, as access lines give it.
fn milliseconds(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 1e6).round() / 1e3
}

/// A response body that counts its bytes and writes the access line when it ends or is dropped.
pub struct LoggedBody {
    inner: Inner,
    entry: Option<Box<AccessEntry>>,
    status: u16,
    bytes: u64,
    done: bool,
    started: Instant,
    metrics: Arc<Metrics>,
    /// The route's histogram for this status, picked when the response began.
    duration: DurationHistogram,
}

impl LoggedBody {
    fn new(
        inner: Inner,
        entry: Option<Box<AccessEntry>>,
        status: u16,
        started: Instant,
        conn: &Connection,
        durations: &RequestDurations,
    ) -> LoggedBody {
        let duration = durations.for_status(status).clone();
        LoggedBody { inner, entry, status, bytes: 0, done: false, started, metrics: conn.metrics.clone(), duration }
    }

    fn finish(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let elapsed = self.started.elapsed();
        self.metrics.request(self.status);
        self.duration.observe(elapsed);
        if let Some(mut entry) = self.entry.take() {
            entry.status = self.status;
            entry.bytes = self.bytes;
            entry.duration_ms = milliseconds(elapsed);
            write_line(&entry);
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        self.finish();
    }
}
