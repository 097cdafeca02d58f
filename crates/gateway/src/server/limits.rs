//! How long a connection may live: the idle timeout between requests, the
//! slow-header limit (HTTP/1.1, from a head's first byte), and a graceful
//! close on shutdown, measured without a clock read per request.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// What the idle and slow-header limits need to know of a connection:
/// requests in flight, requests started, and whether bytes of a next request
/// head have arrived (HTTP/1.1). A request costs a few atomic operations and
/// no clock read; [`drive`] samples these at each check and keeps the times,
/// so the limits hold to within one check interval.
#[derive(Default)]
pub(super) struct Activity {
    in_flight: AtomicUsize,
    started: AtomicU64,
    head_bytes: AtomicBool,
}

pub(super) struct ActivityGuard(Arc<Activity>);

impl Activity {
    /// A request head is complete and its service call starts.
    pub(super) fn begin(self: &Arc<Self>) -> ActivityGuard {
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
pub(super) struct Watched<T> {
    pub(super) inner: T,
    pub(super) activity: Arc<Activity>,
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
pub(super) async fn drive<C, T>(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn idle_time_runs_between_requests_and_restarts_after_one() {
        let activity = Arc::new(Activity::default());
        let t0 = Instant::now();
        let mut watch = Watch { started: 0, idle_since: Some(t0), head_since: None };
        assert_eq!(watch.sample(&activity, t0 + secs(2)), (Some(secs(2)), None));
        // A request came and went between two samples: idle again from the sample that saw it.
        drop(activity.begin());
        assert_eq!(watch.sample(&activity, t0 + secs(3)), (Some(secs(0)), None));
        assert_eq!(watch.sample(&activity, t0 + secs(5)), (Some(secs(2)), None));
        // A request in flight: neither clock runs.
        let guard = activity.begin();
        assert_eq!(watch.sample(&activity, t0 + secs(9)), (None, None));
        drop(guard);
        assert_eq!(watch.sample(&activity, t0 + secs(10)), (Some(secs(0)), None));
    }

    #[test]
    fn a_head_that_never_completes_keeps_its_clock_running() {
        let activity = Arc::new(Activity::default());
        let t0 = Instant::now();
        let mut watch = Watch { started: 0, idle_since: Some(t0), head_since: None };
        activity.bytes_read();
        assert_eq!(watch.sample(&activity, t0 + secs(1)).1, Some(secs(0)));
        activity.bytes_read();
        assert_eq!(watch.sample(&activity, t0 + secs(4)).1, Some(secs(3)));
        // The head completed: its request starts and the clock stops.
        let guard = activity.begin();
        assert_eq!(watch.sample(&activity, t0 + secs(5)).1, None);
        drop(guard);
        assert_eq!(watch.sample(&activity, t0 + secs(6)).1, None);
    }
}
