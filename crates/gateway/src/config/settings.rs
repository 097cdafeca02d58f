//! The tables every configuration shares, whatever it serves: listeners, TLS
//! versions, limits, identity forwarding, runtime sizing and logging.

use std::net::SocketAddr;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// The TLS listener.
    pub https: SocketAddr,
    /// Optional plain-HTTP listener that redirects to HTTPS.
    pub http: Option<SocketAddr>,
    /// Optional admin listener: `/metrics`, `/healthz`.
    pub admin: Option<SocketAddr>,
    /// Optional listener key servers dial out to (tunnel mode, see `keyless::tunnel`).
    pub keyless_tunnel: Option<SocketAddr>,
    /// Names the tunnel listener's certificate carries besides `localhost` and its IP:
    /// the host names key servers dial it by.
    #[serde(default)]
    pub keyless_tunnel_names: Vec<String>,
}

/// Lowest TLS version accepted.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

/// TLS settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// Lowest version: "1.2" (default) or "1.3".
    pub min_version: TlsVersion,
    /// How long a verified client chain is remembered, seconds (0: verify every chain every time).
    /// Revocation by the internal CA is checked on every handshake regardless.
    pub client_chain_cache_secs: u64,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings { min_version: TlsVersion::default(), client_chain_cache_secs: 60 }
    }
}

/// Limits that keep the gateway standing under slow or abusive clients.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request head (request line + headers), bytes.
    pub max_header_bytes: usize,
    /// Time allowed for the TLS handshake and for a request head to arrive (slowloris), ms.
    pub header_read_timeout_ms: u64,
    /// Keep-alive connections idle longer than this are closed, ms.
    pub idle_timeout_ms: u64,
    /// Time allowed for the upstream to answer a request (response head), ms.
    pub request_timeout_ms: u64,
    /// Concurrent downstream connections; further ones wait in the accept queue. Lowered
    /// at start (with a warning) to what the open-file limit leaves room for.
    pub max_connections: usize,
    /// Concurrent connections from one client (an IPv4 address, or an IPv6 /64); further
    /// ones are closed at accept. 0: no limit.
    pub max_connections_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 32 * 1024,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 75_000,
            request_timeout_ms: 60_000,
            max_connections: 20_000,
            max_connections_per_ip: 256,
        }
    }
}

/// Header format of the client identity.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum IdentityFormat {
    /// RFC 9440 `Client-Cert` / `Client-Cert-Chain`.
    #[default]
    Rfc9440,
    /// Envoy's `X-Forwarded-Client-Cert`.
    Xfcc,
    /// No identity headers (spoofed copies are still removed): for an
    /// upstream that needs none of them.
    None,
}

/// Identity forwarding.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IdentitySettings {
    /// `rfc9440` (default), `xfcc` or `none`.
    #[serde(default)]
    pub format: IdentityFormat,
}

/// Runtime sizing.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSettings {
    /// Worker threads (default: one per core).
    pub worker_threads: Option<usize>,
}

/// Logging.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// One JSON line per request on stdout.
    pub access: bool,
    /// One JSON line per refused handshake on stdout.
    pub handshakes: bool,
    /// Lines that may wait for a slow stdout; past that they are dropped and counted
    /// (`gatehouse_log_lines_dropped_total`) rather than making requests wait. Read at start.
    pub queue_lines: usize,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { access: true, handshakes: true, queue_lines: crate::log::DEFAULT_QUEUE_LINES }
    }
}
