//! The request as an origin receives it: the downstream request in HTTP/1.1
//! origin form, and whether it may be sent a second time.

use http::header::HOST;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Uri, Version};
use http_body_util::{Either, Empty};
use hyper::body::{Body, Incoming};

use super::connect::ProxyBody;

/// A request being forwarded, possibly over several attempts.
pub(super) struct Outgoing {
    method: Method,
    /// Origin form (`/path?query`): what an HTTP/1.1 origin expects on the request line.
    uri: Uri,
    /// `None` once they went out without a copy kept.
    headers: Option<HeaderMap>,
    /// Whether the downstream request has a body; without one the request
    /// can be built again for another attempt.
    has_body: bool,
    /// The downstream body until it is handed to a connection.
    body: Option<Incoming>,
    /// A request a connection handed back without having written any of it.
    returned: Option<Request<ProxyBody>>,
    /// Finish the exchange in the background if the caller gives up (see `exchange`).
    pub(super) finish_if_cancelled: bool,
}

impl Outgoing {
    pub(super) fn new(req: Request<Incoming>) -> Outgoing {
        let (parts, body) = req.into_parts();
        let mut headers = parts.headers;
        // An HTTP/2 request carries its host as :authority; HTTP/1.1 needs a Host header.
        if !headers.contains_key(HOST)
            && let Some(authority) = parts.uri.authority()
            && let Ok(value) = HeaderValue::from_str(authority.as_str())
        {
            headers.insert(HOST, value);
        }
        let path = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        let empty = body.is_end_stream() || body.size_hint().exact() == Some(0);
        Outgoing {
            method: parts.method,
            uri: Uri::from(path),
            headers: Some(headers),
            has_body: !empty,
            body: if empty { None } else { Some(body) },
            returned: None,
            finish_if_cancelled: false,
        }
    }

    /// Idempotent method and no body: sending it again after a failure is safe.
    fn replayable(&self) -> bool {
        !self.has_body
            && matches!(
                self.method,
                Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
            )
    }

    /// Whether the request can go out (again) on another connection: it was
    /// handed back unsent, or it is replayable and a copy was kept.
    pub(super) fn can_send_again(&self) -> bool {
        self.returned.is_some() || (self.replayable() && self.headers.is_some())
    }

    /// The request for the next attempt, with `server` (`host:port`) as Host
    /// if the downstream request named none; `None` once it went out without
    /// a copy. `keep_copy` keeps the headers of a replayable request so it
    /// can be built again.
    pub(super) fn take(&mut self, server: &str, keep_copy: bool) -> Option<Request<ProxyBody>> {
        if let Some(req) = self.returned.take() {
            return Some(req);
        }
        let headers = if keep_copy && self.replayable() { self.headers.clone()? } else { self.headers.take()? };
        let body = if self.has_body { Either::Left(self.body.take()?) } else { Either::Right(Empty::new()) };
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = headers;
        if !req.headers().contains_key(HOST)
            && let Ok(value) = HeaderValue::from_str(server)
        {
            req.headers_mut().insert(HOST, value);
        }
        Some(req)
    }

    /// Keeps a request a connection gave back unsent, for the next attempt.
    pub(super) fn give_back(&mut self, req: Request<ProxyBody>) {
        self.returned = Some(req);
    }
}
