//! How long a connection may live: the idle timeout between requests, the
//! slow-header limit (HTTP/1.1: from a head's first byte; HTTP/2: the
//! connection preface and a request's HEADERS frames), and a graceful close
//! on shutdown, measured without a clock read per request.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// What the idle and slow-header limits need to know of a connection:
/// requests in flight, requests started, and whether a request head is under
/// way (see [`Watched`]). A request costs a few atomic operations and no clock
/// read; [`drive`] samples these at each check and keeps the times, so the
/// limits hold to within one check interval.
#[derive(Default)]
pub(super) struct Activity {
    in_flight: AtomicUsize,
    started: AtomicU64,
    head_pending: AtomicBool,
}

pub(super) struct ActivityGuard(Arc<Activity>);

impl Activity {
    /// A request head is complete and its service call starts.
    pub(super) fn begin(self: &Arc<Self>) -> ActivityGuard {
        self.in_flight.fetch_add(1, Relaxed);
        self.started.fetch_add(1, Relaxed);
        self.head_pending.store(false, Relaxed);
        ActivityGuard(self.clone())
    }

    /// HTTP/1.1 bytes arrived; between requests they are the start of the next head.
    fn bytes_read(&self) {
        if self.in_flight.load(Relaxed) == 0 {
            self.head_pending.store(true, Relaxed);
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
        let head_for = if activity.head_pending.load(Relaxed) {
            Some(now - *self.head_since.get_or_insert(now))
        } else {
            self.head_since = None;
            None
        };
        (Some(idle_for), head_for)
    }
}

/// The TLS stream of a connection, reporting to its [`Activity`] whether a
/// request head is under way.
pub(super) struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
    heads: Heads,
}

/// How a protocol's bytes tell that a request head is under way.
enum Heads {
    /// Any byte between requests starts the next head.
    Http1,
    /// Frames between requests are mostly not heads (PING and SETTINGS
    /// acknowledgements, WINDOW_UPDATE): the frame headers tell.
    Http2(FrameScanner),
}

impl<T> Watched<T> {
    /// An HTTP/1.1 connection: a head starts with the first byte after a request.
    pub(super) fn http1(inner: T, activity: Arc<Activity>) -> Watched<T> {
        Watched { inner, activity, heads: Heads::Http1 }
    }

    /// An HTTP/2 connection: its preface is due at once, then a head runs from
    /// a HEADERS frame's first byte to its END_HEADERS.
    pub(super) fn http2(inner: T, activity: Arc<Activity>) -> Watched<T> {
        let scanner = FrameScanner::default();
        activity.head_pending.store(scanner.head_pending(), Relaxed);
        Watched { inner, activity, heads: Heads::Http2(scanner) }
    }
}

/// The length of the client connection preface, `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n` (RFC 9113, 3.4).
const PREFACE_LEN: usize = 24;
/// The length of a frame header (RFC 9113, 4.1).
const FRAME_HEADER_LEN: usize = 9;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_HEADERS: u8 = 0x4;

/// Follows the frames a client sends on an HTTP/2 connection, reading only
/// their 9-byte headers (payloads are skipped by length; hyper checks them),
/// to tell whether a request head is under way: the connection preface, a
/// frame header cut short, or a HEADERS frame and its CONTINUATIONs up to the
/// one with END_HEADERS.
#[derive(Debug)]
struct FrameScanner {
    preface_left: usize,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    payload_left: usize,
    /// The frame being read is a HEADERS or CONTINUATION frame.
    head_frame: bool,
    /// A HEADERS or CONTINUATION frame without END_HEADERS came: CONTINUATIONs follow.
    head_open: bool,
}

impl Default for FrameScanner {
    fn default() -> Self {
        FrameScanner {
            preface_left: PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            payload_left: 0,
            head_frame: false,
            head_open: false,
        }
    }
}

impl FrameScanner {
    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(bytes.len());
                self.preface_left -= n;
                bytes = &bytes[n..];
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
            } else {
                let n = (FRAME_HEADER_LEN - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == FRAME_HEADER_LEN {
                    self.frame_header();
                }
            }
        }
    }

    fn frame_header(&mut self) {
        let [l0, l1, l2, kind, flags, ..] = self.header;
        self.header_len = 0;
        self.payload_left = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
        self.head_frame = kind == FRAME_HEADERS || kind == FRAME_CONTINUATION;
        if self.head_frame {
            self.head_open = flags & FLAG_END_HEADERS == 0;
        }
    }

    fn head_pending(&self) -> bool {
        self.preface_left > 0 || self.header_len > 0 || self.head_open || (self.head_frame && self.payload_left > 0)
    }
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
            let this = &mut *self;
            match &mut this.heads {
                Heads::Http1 => this.activity.bytes_read(),
                Heads::Http2(scanner) => {
                    scanner.scan(&buf.filled()[before..]);
                    this.activity.head_pending.store(scanner.head_pending(), Relaxed);
                }
            }
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
/// request; `head` drops one whose request head (or HTTP/2 preface) started
/// and is still incomplete after that long while no request is in flight
/// (slowloris).
pub(super) async fn drive<C, T>(
    mut conn: std::pin::Pin<Box<C>>,
    activity: &Activity,
    idle: Duration,
    head: Duration,
    shutdown: &mut watch::Receiver<bool>,
    close: fn(std::pin::Pin<&mut C>),
) where
    C: std::future::Future<Output = Result<T, hyper::Error>>,
{
    let mut closing = false;
    let check = (head.min(idle) / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let now = Instant::now();
    // An HTTP/2 preface is due from the start.
    let head_since = activity.head_pending.load(Relaxed).then_some(now);
    let mut watch = Watch { started: 0, idle_since: Some(now), head_since };
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
                if head_pending_for.is_some_and(|d| d >= head) {
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

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len().to_be_bytes();
        let mut f = vec![len[5], len[6], len[7], kind, flags, 0, 0, 0, 1];
        f.extend_from_slice(payload);
        f
    }

    /// Feeds `bytes` one at a time; true if a head was pending after each byte but the last.
    fn pending_throughout(scanner: &mut FrameScanner, bytes: &[u8]) -> bool {
        let (last, rest) = bytes.split_last().unwrap();
        let all = rest.iter().all(|b| {
            scanner.scan(std::slice::from_ref(b));
            scanner.head_pending()
        });
        scanner.scan(std::slice::from_ref(last));
        all
    }

    #[test]
    fn an_http2_head_runs_from_the_preface_or_a_headers_frame_to_end_headers() {
        let mut scanner = FrameScanner::default();
        assert!(scanner.head_pending(), "the preface is due before any byte");
        assert!(pending_throughout(&mut scanner, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert!(!scanner.head_pending(), "the preface is complete");
        // A frame header cut short is pending, whatever its type; a SETTINGS payload is not a head.
        assert!(pending_throughout(&mut scanner, &frame(0x4, 0, &[0; 6])[..9]));
        assert!(!scanner.head_pending());
        scanner.scan(&[0; 5]);
        assert!(!scanner.head_pending());
        scanner.scan(&[0]);
        // HEADERS without END_HEADERS, then CONTINUATION with it.
        assert!(pending_throughout(&mut scanner, &frame(FRAME_HEADERS, 0, &[0x82; 4])));
        assert!(scanner.head_pending(), "a CONTINUATION is due");
        assert!(pending_throughout(&mut scanner, &frame(FRAME_CONTINUATION, FLAG_END_HEADERS, &[0x84; 3])));
        assert!(!scanner.head_pending());
        // A whole request head in one read, then a PING and a WINDOW_UPDATE: nothing pending.
        let mut reads = frame(FRAME_HEADERS, FLAG_END_HEADERS | 0x1, &[0x82, 0x87, 0x84]);
        reads.extend(frame(0x6, 0, &[7; 8]));
        reads.extend(frame(0x8, 0, &[0, 0, 1, 0]));
        scanner.scan(&reads);
        assert!(!scanner.head_pending());
        assert!(pending_throughout(&mut scanner, &frame(FRAME_HEADERS, FLAG_END_HEADERS, &[0x82; 10])));
        assert!(!scanner.head_pending());
    }
}
