//! One request on one origin connection, waiting for the response head.
//!
//! If the client gives up meanwhile (an HTTP/2 RST_STREAM, a closed
//! connection), the proxy drops the request's future, and with it this
//! exchange. Dropping the origin connection then would cost a new TCP (and
//! TLS) connection for every cancelled request, which is what a client that
//! cancels everything it sends is after. So for HTTP/2 clients (an HTTP/1.1
//! client cancels only by closing its own connection, at its own cost) the
//! exchange is finished in the background instead: the response is read (up to [`DRAIN_LIMIT`] bytes of
//! body, within [`DRAIN_TIME`]) and the connection goes back to the pool.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::{Lease, OriginBody};
use super::connect::Connection;
use super::server::{InFlight, Server};

/// The most response body read to keep a connection whose client left.
const DRAIN_LIMIT: usize = 256 * 1024;
/// How long a response whose client left is waited for and read.
const DRAIN_TIME: Duration = Duration::from_secs(30);

type Pending<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A request sent on `conn`; resolves to the send's outcome with the
/// connection and the in-flight count handed back. Used for HTTP/2 clients
/// only (a box per request); otherwise the send is awaited directly and a
/// cancelled request closes its connection.
pub(super) struct Exchange<T: Send + 'static> {
    pending: Pending<T>,
    parked: Option<(Arc<Server>, Connection, InFlight)>,
    /// The response in the send's outcome, if it has one.
    response: fn(T) -> Option<Response<Incoming>>,
}

impl<T: Send + 'static> Exchange<T> {
    pub(super) fn new(
        sent: impl Future<Output = T> + Send + 'static,
        server: &Arc<Server>,
        conn: Connection,
        in_flight: InFlight,
        response: fn(T) -> Option<Response<Incoming>>,
    ) -> Exchange<T> {
        Exchange { pending: Box::pin(sent), parked: Some((Arc::clone(server), conn, in_flight)), response }
    }
}

impl<T: Send + 'static> Future for Exchange<T> {
    type Output = (T, Connection, InFlight);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = std::task::ready!(self.pending.as_mut().poll(cx));
        let (_, conn, in_flight) = self.parked.take().expect("an exchange is polled to completion once");
        Poll::Ready((outcome, conn, in_flight))
    }
}

impl<T: Send + 'static> Drop for Exchange<T> {
    fn drop(&mut self) {
        let Some((server, conn, in_flight)) = self.parked.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pending = std::mem::replace(&mut self.pending, Box::pin(std::future::pending()));
        let response = self.response;
        runtime.spawn(async move {
            let finished = tokio::time::timeout(DRAIN_TIME, async move {
                let Some(answer) = response(pending.await) else {
                    return;
                };
                if answer.status() == StatusCode::SWITCHING_PROTOCOLS {
                    return;
                }
                // The lease gives the connection back when the body has been read to its end.
                let mut body = OriginBody::new(answer.into_body(), Lease { server, conn, in_flight });
                let mut read = 0;
                while let Some(Ok(frame)) = body.frame().await {
                    read += frame.data_ref().map_or(0, |d| d.len());
                    if read > DRAIN_LIMIT {
                        return;
                    }
                }
            });
            let _ = finished.await;
        });
    }
}
