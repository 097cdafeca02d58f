//! The body of an origin's response. It holds the connection the response
//! came on and gives it back to the server's idle list when the body ends,
//! so the next request can reuse it without a task per request waiting for it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::connect::Connection;
use super::server::{InFlight, Server};

/// A response body from an origin server.
pub struct OriginBody {
    inner: Incoming,
    lease: Option<Lease>,
}

/// The connection a response arrived on, and its count in the server's requests in flight.
pub(super) struct Lease {
    pub(super) server: Arc<Server>,
    pub(super) conn: Connection,
    pub(super) in_flight: InFlight,
}

impl OriginBody {
    pub(super) fn new(inner: Incoming, lease: Lease) -> OriginBody {
        OriginBody { inner, lease: Some(lease) }
    }

    /// The body of an upgrade response (`101`): the connection is the tunnel's now.
    pub(super) fn unleased(inner: Incoming) -> OriginBody {
        OriginBody { inner, lease: None }
    }

    fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }
}

impl Lease {
    /// The exchange is over. The connection goes back to the idle list now if
    /// it can take the next request, else once it can (hyper may still be
    /// finishing the exchange, or the body was dropped early, in which case
    /// the connection closes and is dropped).
    fn release(self) {
        let Lease { server, mut conn, in_flight } = self;
        drop(in_flight);
        if conn.sender.is_ready() {
            server.put_idle(conn);
            return;
        }
        if conn.is_closed() {
            return;
        }
        // Without a runtime (a body dropped after its runtime ended) there is nothing to wait with.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if conn.sender.ready().await.is_ok() {
                    server.put_idle(conn);
                }
            });
        }
    }
}

impl Body for OriginBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            // The last frame: the caller may not poll again.
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.release(),
            Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.release(),
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

impl Drop for OriginBody {
    fn drop(&mut self) {
        self.release();
    }
}
