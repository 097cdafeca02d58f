//! Access and connection logs: one JSON object per line on stdout, written
//! whole under a lock so lines never interleave. Never contains secrets:
//! no keys, no passwords, no full certificates (serial and subject only).

use std::io::Write;

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
    /// Why the gateway answered itself, if it did (`route_requires_certificate`, `upstream_unavailable`, ...).
    pub refused: Option<String>,
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
    /// Stable reason label (`no_certificate`, `unknown_issuer`, `expired`, `revoked`, `x509_v1`, `wrong_eku`, ...).
    pub reason: String,
    /// The sentence for humans.
    pub detail: String,
    /// Client certificate serial, when one was parsed.
    pub client_serial: Option<String>,
}

impl HandshakeEntry {
    /// A line for `event` (`handshake_refused`, `client_cert_refused`) stamped now.
    pub fn new(
        event: &'static str,
        peer: std::net::SocketAddr,
        sni: Option<String>,
        reason: &str,
        detail: String,
        client_serial: Option<String>,
    ) -> HandshakeEntry {
        HandshakeEntry {
            time: now_rfc3339(),
            event,
            client_ip: peer.ip().to_string(),
            sni,
            reason: reason.into(),
            detail,
            client_serial,
        }
    }
}

/// Writes one JSON line to stdout.
pub fn write_line(entry: &impl Serialize) {
    let mut line = match serde_json::to_vec(entry) {
        Ok(line) => line,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a log line");
            return;
        }
    };
    line.push(b'\n');
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    // A closed stdout must not take the gateway down; logging is best effort.
    let _ = lock.write_all(&line);
    let _ = lock.flush();
}

/// The current time in RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    now.format(&format).unwrap_or_default()
}
