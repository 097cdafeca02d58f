//! How a request ends, whoever answers it: the answers the gateway gives itself
//! (refusals as HTML or JSON), the response body that counts its bytes, and the
//! access line and metrics written when the body ends, or when the client gives up
//! first (499).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::Connection;
use crate::log::{AccessEntry, now_rfc3339, write_line};
use crate::metrics::{DurationHistogram, Metrics, RequestDurations};
use crate::refusal::RequestRefusal;
use crate::sites::Route;
use crate::upstream::OriginBody;

/// Response body: the upstream's, or one the gateway made; logged when it ends.
pub type ProxyBody = LoggedBody;

type Inner = Either<OriginBody, Full<Bytes>>;

/// A request on its way to the origin, whose client may give up before the
/// answer: then the access line is written with status 499 (nginx's "client
/// closed request"), and the cancellation counts against the connection.
pub(super) struct Unanswered<'a> {
    pub(super) entry: Option<Box<AccessEntry>>,
    pub(super) started: Instant,
    pub(super) conn: &'a Connection,
    pub(super) route: &'a Route,
    pub(super) answered: bool,
}

impl Unanswered<'_> {
    /// The origin answered (or failed): the access line goes with the response.
    pub(super) fn answered(&mut self) -> Option<Box<AccessEntry>> {
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

/// The access line's fields known before the request is answered.
pub(super) fn access_entry(
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

pub(super) fn wants_json(headers: &HeaderMap) -> bool {
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
pub(super) struct Refused<'a> {
    pub(super) conn: &'a Connection,
    pub(super) started: Instant,
    pub(super) json: bool,
}

impl Refused<'_> {
    /// The response the gateway answers itself with (400, 403, 404, 421, 429, 502, 503, 504):
    /// the refusal's status, its sentence as HTML or JSON (by Accept), and its label in the
    /// access line and `gatehouse_requests_refused_total`.
    pub(super) fn answer(
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
    pub(super) fn new(
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
