//! Access and connection logs: one JSON object per line on stdout. Lines go
//! through a bounded queue to one writer thread, so they never interleave
//! and a slow stdout never blocks a worker (what does not fit is dropped and
//! counted). Never contains secrets: no keys, no passwords, no full
//! certificates (serial and subject only).

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{OnceLock, mpsc};

use serde::Serialize;

/// One line per request.
#[derive(Debug, Serialize)]
pub struct AccessEntry {
    /// RFC 3339 time the request arrived.
    pub time: String,
    /// Always "request".
    pub event: &'static str,
    /// Request id, also sent upstream as `X-Request-Id`.
    pub request_id: String,
    /// Client IP address.
    pub client_ip: String,
    /// Host asked for.
    pub host: String,
    /// Method.
    pub method: String,
    /// Path (without the query string).
    pub path: String,
    /// HTTP version.
    pub protocol: &'static str,
    /// Status sent.
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: u64,
    /// Milliseconds from request head to end of response body.
    pub duration_ms: f64,
    /// TLS version.
    pub tls_version: &'static str,
    /// TLS cipher suite.
    pub cipher: &'static str,
    /// Client certificate serial (hex), if any.
    pub client_serial: Option<String>,
    /// Client certificate subject, if any.
    pub client_subject: Option<String>,
    /// `verified`, `refused:<reason>`, `unverified` (passthrough) or `none`.
    pub client_verify: String,
    /// The upstream server that answered, if any.
    pub upstream: Option<String>,
    /// Why the gateway answered itself, if it did, or why nothing was answered: the label of a
    /// [`RequestRefusal`](crate::refusal::RequestRefusal) (`route_requires_certificate`,
    /// `upstream_unavailable`, `client_closed_request`, ...).
    pub refused: Option<&'static str>,
}

/// One line per refused handshake or refused client certificate.
#[derive(Debug, Serialize)]
pub struct HandshakeEntry {
    /// RFC 3339 time.
    pub time: String,
    /// `handshake_refused` or `client_cert_refused`.
    pub event: &'static str,
    /// Client IP address.
    pub client_ip: String,
    /// SNI sent, if any.
    pub sni: Option<String>,
    /// The label of a [`HandshakeRefusal`](crate::refusal::HandshakeRefusal) or of a
    /// [`Refusal`](crate::refusal::Refusal) (`no_certificate`, `unknown_issuer`, `expired`, `revoked`,
    /// `x509_v1`, `wrong_eku`, `unknown_server_name`, ...).
    pub reason: &'static str,
    /// The sentence for humans.
    pub detail: String,
    /// Client certificate serial, when one was parsed.
    pub client_serial: Option<String>,
    /// Client certificate subject DN, when one was parsed.
    pub client_subject: Option<String>,
}

impl HandshakeEntry {
    /// A line for `event` (`handshake_refused`, `client_cert_refused`) stamped now.
    pub fn new(
        event: &'static str,
        peer: std::net::SocketAddr,
        sni: Option<String>,
        reason: &'static str,
        detail: String,
        client_serial: Option<String>,
    ) -> HandshakeEntry {
        HandshakeEntry {
            time: now_rfc3339(),
            event,
            client_ip: peer.ip().to_string(),
            sni,
            reason,
            detail,
            client_serial,
            client_subject: None,
        }
    }
}

/// Lines waiting for the writer at most, unless [`set_queue_lines`] said otherwise;
/// past that, lines are dropped and counted.
pub const DEFAULT_QUEUE_LINES: usize = 16_384;

/// Lines dropped because stdout did not keep up.
static DROPPED: AtomicU64 = AtomicU64::new(0);

enum Message {
    Line(Vec<u8>),
    /// Answered once every line queued before it is written.
    Flush(mpsc::SyncSender<()>),
}

static QUEUE: OnceLock<mpsc::SyncSender<Message>> = OnceLock::new();

/// Room for waiting lines the writer starts with (`[log] queue_lines`).
static QUEUE_LINES: AtomicUsize = AtomicUsize::new(DEFAULT_QUEUE_LINES);

/// Sets the room for `lines` waiting lines (`[log] queue_lines`). The writer
/// thread starts with the first line, so a gateway that logs nothing runs no
/// thread for it; once started, its size stays.
pub fn set_queue_lines(lines: usize) {
    QUEUE_LINES.store(lines.max(1), Ordering::Relaxed);
}

/// The queue to the writer thread, which the first call starts.
fn queue() -> &'static mpsc::SyncSender<Message> {
    QUEUE.get_or_init(|| {
        let (sender, receiver) = mpsc::sync_channel(QUEUE_LINES.load(Ordering::Relaxed));
        let spawned = std::thread::Builder::new().name("gatehouse-log".into()).spawn(move || write_lines(receiver));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the log writer; log lines will be dropped");
        }
        sender
    })
}

/// Bytes of lines gathered before they are written.
const BATCH_BYTES: usize = 64 * 1024;

/// The writer thread: lines go out in batches, written whenever the queue is empty.
fn write_lines(receiver: mpsc::Receiver<Message>) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    let mut next = receiver.recv();
    while let Ok(message) = next {
        match message {
            Message::Line(line) => {
                if batch.len() + line.len() > BATCH_BYTES {
                    write_batch(&mut batch);
                }
                batch.extend_from_slice(&line);
            }
            Message::Flush(done) => {
                write_batch(&mut batch);
                let _ = done.send(());
            }
        }
        next = match receiver.try_recv() {
            Ok(message) => Ok(message),
            Err(_) => {
                write_batch(&mut batch);
                receiver.recv()
            }
        };
    }
    write_batch(&mut batch);
}

/// Writes whole lines to stdout and empties `batch`. Stdout is locked for the one write,
/// not for the life of the thread: the process prints to stdout too (`gatehouse
/// quickstart`, its commands), and its lines fall between these, never inside one.
fn write_batch(batch: &mut Vec<u8>) {
    if batch.is_empty() {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    // A closed stdout must not take the gateway down; logging is best effort.
    let _ = stdout.write_all(batch).and_then(|()| stdout.flush());
    batch.clear();
}

/// Queues one JSON line for stdout. Never blocks: a worker thread must not
/// wait on a slow terminal or a full pipe, so when the queue is full the line
/// is dropped and counted ([`dropped_lines`], `gatehouse_log_lines_dropped_total`).
pub fn write_line(entry: &impl Serialize) {
    let mut line = match serde_json::to_vec(entry) {
        Ok(line) => line,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a log line");
            return;
        }
    };
    line.push(b'\n');
    if queue().try_send(Message::Line(line)).is_err() {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Log lines dropped so far because the queue to stdout was full.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Waits (at most `limit`) until every line queued so far is written: before the process exits.
pub fn flush(limit: std::time::Duration) {
    // No writer yet: no line was ever queued.
    let Some(queue) = QUEUE.get() else {
        return;
    };
    let (done, written) = mpsc::sync_channel(1);
    if queue.send(Message::Flush(done)).is_ok() {
        let _ = written.recv_timeout(limit);
    }
}

/// The current time in RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    now.format(&format).unwrap_or_default()
}
