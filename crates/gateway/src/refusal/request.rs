//! Why the gateway answers a request itself instead of forwarding it
//! ([`RequestRefusal`]): the status it answers with, the sentence in the
//! answer, and the label in the access line's `refused` field and in
//! `gatehouse_requests_refused_total{reason}`.

use std::fmt;

use http::StatusCode;

use super::Refusal;
use crate::labels::labelled;
use crate::target::TargetError;
use crate::upstream::UpstreamError;

/// Why a request was not forwarded, or not answered by the origin.
///
/// Built from the narrower reasons of each phase of the request path (see
/// [`crate::proxy`]): the target ([`Unforwardable`]), the client certificate
/// ([`Refusal`], [`NoVerifiedCertificate`]), the route, the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestRefusal {
    /// Phase 0: the target cannot be made unambiguous, or is CONNECT.
    Unforwardable(Unforwardable),
    /// The connection's verified client certificate no longer stands (revoked since the
    /// handshake, or refused under CRLs loaded since): nothing more is served on it.
    ClientCertificate(Refusal),
    /// Phase 1: the Host is not one of the names of the site the connection's SNI chose.
    HostNotServed,
    /// Phase 1: no route of the site is a prefix of the path, and the site has no default upstream.
    NoRoute,
    /// Phase 2: the route requires a verified client certificate and the connection has none.
    RouteRequiresCertificate(NoVerifiedCertificate),
    /// The connection cancelled more requests than it let finish, past a free budget.
    TooManyCancelledRequests,
    /// Phase 4: the upstream pool could not get the request to a server or an answer from it.
    UpstreamUnavailable(UpstreamFailure),
    /// Phase 4: no response head within `limits.request_timeout_ms`.
    UpstreamTimeout,
    /// Phase 4: the origin answered 101 to a request that did not ask for WebSocket.
    UpstreamSwitchedProtocols,
    /// The client gave up before the origin answered (nginx's 499); nothing was sent.
    ClientClosedRequest,
}

labelled! {
    RequestRefusal {
        HostNotServed => "host_not_served_on_this_connection",
        NoRoute => "no_route",
        RouteRequiresCertificate(..) => "route_requires_certificate",
        TooManyCancelledRequests => "too_many_cancelled_requests",
        UpstreamUnavailable(..) => "upstream_unavailable",
        UpstreamTimeout => "upstream_timeout",
        UpstreamSwitchedProtocols => "upstream_switched_protocols",
        ClientClosedRequest => "client_closed_request",
    }
    wraps {
        Unforwardable(Unforwardable),
        ClientCertificate(Refusal),
    }
}

/// nginx's "client closed request": logged and counted, never sent.
const CLIENT_CLOSED_REQUEST: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => panic!("499 is a status code"),
};

impl RequestRefusal {
    /// The status the gateway answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            RequestRefusal::Unforwardable(u) => u.status(),
            RequestRefusal::ClientCertificate(_) | RequestRefusal::RouteRequiresCertificate(_) => StatusCode::FORBIDDEN,
            RequestRefusal::HostNotServed => StatusCode::MISDIRECTED_REQUEST,
            RequestRefusal::NoRoute => StatusCode::NOT_FOUND,
            RequestRefusal::TooManyCancelledRequests => StatusCode::TOO_MANY_REQUESTS,
            RequestRefusal::UpstreamUnavailable(failure) => failure.status(),
            RequestRefusal::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            RequestRefusal::UpstreamSwitchedProtocols => StatusCode::BAD_GATEWAY,
            RequestRefusal::ClientClosedRequest => CLIENT_CLOSED_REQUEST,
        }
    }
}

/// The sentence in the answer's body. It names no upstream address and no OS error:
/// those are for the operator's log.
impl fmt::Display for RequestRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestRefusal::Unforwardable(u) => u.fmt(f),
            RequestRefusal::ClientCertificate(r) => r.fmt(f),
            RequestRefusal::HostNotServed => {
                f.write_str("this connection's site does not serve the host asked for; open a new connection for it")
            }
            RequestRefusal::NoRoute => f.write_str("no route of this site serves the path"),
            RequestRefusal::RouteRequiresCertificate(why) => why.fmt(f),
            RequestRefusal::TooManyCancelledRequests => {
                f.write_str("this connection cancelled most of its requests; open a new one")
            }
            RequestRefusal::UpstreamUnavailable(failure) => failure.fmt(f),
            RequestRefusal::UpstreamTimeout => f.write_str("the upstream server did not answer in time"),
            RequestRefusal::UpstreamSwitchedProtocols => {
                f.write_str("the upstream server switched protocols without being asked to")
            }
            RequestRefusal::ClientClosedRequest => f.write_str("the client closed the request before it was answered"),
        }
    }
}

impl From<Unforwardable> for RequestRefusal {
    fn from(u: Unforwardable) -> RequestRefusal {
        RequestRefusal::Unforwardable(u)
    }
}

/// A request target the gateway does not forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unforwardable {
    /// The path or the authority cannot be made unambiguous.
    Target(TargetError),
    /// CONNECT: a tunnel to anywhere.
    Connect,
}

labelled! {
    Unforwardable {
        Connect => "method_connect",
    }
    wraps {
        Target(TargetError),
    }
}

impl Unforwardable {
    /// 400 for a target, 405 for CONNECT.
    pub fn status(self) -> StatusCode {
        match self {
            Unforwardable::Target(_) => StatusCode::BAD_REQUEST,
            Unforwardable::Connect => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

impl fmt::Display for Unforwardable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unforwardable::Target(e) => e.fmt(f),
            Unforwardable::Connect => f.write_str("CONNECT is not forwarded"),
        }
    }
}

/// Why a connection has no verified client certificate for a route that requires one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoVerifiedCertificate {
    /// None was presented ([`Refusal::NoCertificate`]), or the one presented was refused.
    Refused(Refusal),
    /// One was presented on a `passthrough` site, which forwards it without verifying it.
    NotVerified,
}

impl fmt::Display for NoVerifiedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoVerifiedCertificate::Refused(r) => r.fmt(f),
            NoVerifiedCertificate::NotVerified => f.write_str("the client certificate was not verified"),
        }
    }
}

/// What an upstream pool's failure is to the client: the kind of [`UpstreamError`],
/// without the server's address or the OS error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// Every server is down or ejected (503).
    NoHealthyServer,
    /// Connecting took longer than `connect_timeout_ms` (504).
    ConnectTimeout,
    /// The connection or the exchange failed (502).
    Failed,
    /// The `[[upstream]]` table is invalid (500); reported when a pool is built, not by a request.
    Misconfigured,
}

impl UpstreamFailure {
    /// The status the gateway answers with.
    pub fn status(self) -> StatusCode {
        match self {
            UpstreamFailure::NoHealthyServer => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamFailure::ConnectTimeout => StatusCode::GATEWAY_TIMEOUT,
            UpstreamFailure::Failed => StatusCode::BAD_GATEWAY,
            UpstreamFailure::Misconfigured => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<&UpstreamError> for UpstreamFailure {
    fn from(error: &UpstreamError) -> UpstreamFailure {
        match error {
            UpstreamError::Config(_) => UpstreamFailure::Misconfigured,
            UpstreamError::NoHealthyServer { .. } => UpstreamFailure::NoHealthyServer,
            UpstreamError::Timeout { .. } => UpstreamFailure::ConnectTimeout,
            UpstreamError::Connect { .. } | UpstreamError::Protocol { .. } => UpstreamFailure::Failed,
        }
    }
}

impl fmt::Display for UpstreamFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UpstreamFailure::NoHealthyServer => "no upstream server is available",
            UpstreamFailure::ConnectTimeout => "the upstream server could not be reached in time",
            UpstreamFailure::Failed => "the upstream server failed to answer",
            UpstreamFailure::Misconfigured => "the upstream is misconfigured",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_snake_case_words_and_cover_every_wrapped_reason() {
        crate::labels::assert_distinct_snake_case(&RequestRefusal::ALL);
        assert_eq!(RequestRefusal::COUNT, 8 + Unforwardable::COUNT + Refusal::COUNT);
        for label in TargetError::ALL.iter().chain(&Refusal::ALL).chain(&["method_connect"]) {
            assert!(RequestRefusal::ALL.contains(label), "{label}");
        }
    }

    #[test]
    fn a_value_finds_its_own_label_whatever_it_wraps() {
        let cases = [
            (RequestRefusal::NoRoute, "no_route"),
            (RequestRefusal::ClientClosedRequest, "client_closed_request"),
            (RequestRefusal::Unforwardable(Unforwardable::Connect), "method_connect"),
            (RequestRefusal::Unforwardable(Unforwardable::Target(TargetError::EncodedSlash)), "path_encoded_slash"),
            (RequestRefusal::Unforwardable(Unforwardable::Target(TargetError::BadHost)), "host_malformed"),
            (RequestRefusal::ClientCertificate(Refusal::Revoked), "revoked"),
            (RequestRefusal::ClientCertificate(Refusal::Other("x".into())), "other"),
            (
                RequestRefusal::RouteRequiresCertificate(NoVerifiedCertificate::Refused(Refusal::Expired)),
                "route_requires_certificate",
            ),
        ];
        for (refusal, label) in cases {
            assert_eq!(refusal.label(), label, "{refusal:?}");
            assert_eq!(RequestRefusal::ALL[refusal.index()], label);
        }
    }

    #[test]
    fn each_reason_has_its_status() {
        let cases = [
            (RequestRefusal::Unforwardable(Unforwardable::Target(TargetError::AboveRoot)), 400),
            (RequestRefusal::Unforwardable(Unforwardable::Connect), 405),
            (RequestRefusal::ClientCertificate(Refusal::Revoked), 403),
            (RequestRefusal::RouteRequiresCertificate(NoVerifiedCertificate::NotVerified), 403),
            (RequestRefusal::HostNotServed, 421),
            (RequestRefusal::NoRoute, 404),
            (RequestRefusal::TooManyCancelledRequests, 429),
            (RequestRefusal::UpstreamUnavailable(UpstreamFailure::NoHealthyServer), 503),
            (RequestRefusal::UpstreamUnavailable(UpstreamFailure::ConnectTimeout), 504),
            (RequestRefusal::UpstreamUnavailable(UpstreamFailure::Failed), 502),
            (RequestRefusal::UpstreamTimeout, 504),
            (RequestRefusal::UpstreamSwitchedProtocols, 502),
            (RequestRefusal::ClientClosedRequest, 499),
        ];
        for (refusal, status) in cases {
            assert_eq!(refusal.status().as_u16(), status, "{refusal:?}");
        }
    }

    #[test]
    fn the_sentence_for_a_certificate_is_the_certificate_refusal() {
        let missing = RequestRefusal::RouteRequiresCertificate(NoVerifiedCertificate::Refused(Refusal::NoCertificate));
        assert_eq!(missing.to_string(), "no client certificate was presented");
        assert_eq!(RequestRefusal::ClientCertificate(Refusal::Revoked).to_string(), Refusal::Revoked.to_string());
        for failure in [UpstreamFailure::NoHealthyServer, UpstreamFailure::ConnectTimeout, UpstreamFailure::Failed] {
            let sentence = RequestRefusal::UpstreamUnavailable(failure).to_string();
            assert!(!sentence.contains("refused"), "a client must not read an OS error into it: {sentence}");
        }
    }
}
