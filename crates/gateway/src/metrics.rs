//! Counters for Prometheus (`/metrics` on the admin listener): requests by
//! status class, handshakes and refusals by reason, open connections and
//! the connection limits, upstream failures, healthy servers per pool.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::sites::Runtime;
use crate::trust::Refusal;

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: [AtomicU64; 5],
    handshakes: AtomicU64,
    refusals: [AtomicU64; Refusal::LABELS.len()],
    unknown_sni: AtomicU64,
    tls_errors: AtomicU64,
    connections_open: AtomicI64,
    connections_total: AtomicU64,
    connections_limit: AtomicU64,
    connections_refused_per_ip: AtomicU64,
    upstream_errors: AtomicU64,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
}

impl Metrics {
    /// Counts a response by status class.
    pub fn request(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a completed handshake.
    pub fn handshake(&self) {
        self.handshakes.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused client certificate.
    pub fn refusal(&self, refusal: &Refusal) {
        if let Some(i) = Refusal::LABELS.iter().position(|l| *l == refusal.label()) {
            self.refusals[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a ClientHello for a name no site serves.
    pub fn unknown_sni(&self) {
        self.unknown_sni.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts any other failed handshake (not TLS, protocol error, timeout).
    pub fn tls_error(&self) {
        self.tls_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection opened (`+1`) or closed (`-1`).
    pub fn connection(&self, delta: i64) {
        if delta > 0 {
            self.connections_total.fetch_add(1, Ordering::Relaxed);
        }
        self.connections_open.fetch_add(delta, Ordering::Relaxed);
    }

    /// The connection limit in force (`limits.max_connections`, fitted to the open-file limit).
    pub fn set_connection_limit(&self, limit: usize) {
        self.connections_limit.store(u64::try_from(limit).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Counts a connection closed at accept: its client has `limits.max_connections_per_ip` open.
    pub fn connection_refused_per_ip(&self) {
        self.connections_refused_per_ip.fetch_add(1, Ordering::Relaxed);
    }

    /// Open connections now.
    pub fn open_connections(&self) -> i64 {
        self.connections_open.load(Ordering::Relaxed)
    }

    /// Counts an upstream failure answered with 502/503/504.
    pub fn upstream_error(&self) {
        self.upstream_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a reload attempt.
    pub fn reload(&self, ok: bool) {
        if ok { &self.reloads } else { &self.reload_failures }.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition.
    pub fn render(&self, runtime: &Runtime) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.push_str("# TYPE gatehouse_requests_total counter\n");
        for (i, c) in self.requests.iter().enumerate() {
            let _ = writeln!(out, "gatehouse_requests_total{{code=\"{}xx\"}} {}", i + 1, get(c));
        }
        out.push_str("# TYPE gatehouse_tls_handshakes_total counter\n");
        let _ = writeln!(out, "gatehouse_tls_handshakes_total {}", get(&self.handshakes));
        out.push_str("# TYPE gatehouse_client_cert_refusals_total counter\n");
        for (label, c) in Refusal::LABELS.iter().zip(&self.refusals) {
            let _ = writeln!(out, "gatehouse_client_cert_refusals_total{{reason=\"{label}\"}} {}", get(c));
        }
        out.push_str("# TYPE gatehouse_tls_unknown_sni_total counter\n");
        let _ = writeln!(out, "gatehouse_tls_unknown_sni_total {}", get(&self.unknown_sni));
        out.push_str("# TYPE gatehouse_tls_errors_total counter\n");
        let _ = writeln!(out, "gatehouse_tls_errors_total {}", get(&self.tls_errors));
        out.push_str("# TYPE gatehouse_connections_open gauge\n");
        let _ = writeln!(out, "gatehouse_connections_open {}", self.connections_open.load(Ordering::Relaxed));
        out.push_str("# TYPE gatehouse_connections_total counter\n");
        let _ = writeln!(out, "gatehouse_connections_total {}", get(&self.connections_total));
        out.push_str("# TYPE gatehouse_connections_limit gauge\n");
        let _ = writeln!(out, "gatehouse_connections_limit {}", get(&self.connections_limit));
        out.push_str("# TYPE gatehouse_connections_refused_total counter\n");
        let _ = writeln!(
            out,
            "gatehouse_connections_refused_total{{reason=\"max_connections_per_ip\"}} {}",
            get(&self.connections_refused_per_ip)
        );
        out.push_str("# TYPE gatehouse_log_lines_dropped_total counter\n");
        let _ = writeln!(out, "gatehouse_log_lines_dropped_total {}", crate::log::dropped_lines());
        out.push_str("# TYPE gatehouse_upstream_errors_total counter\n");
        let _ = writeln!(out, "gatehouse_upstream_errors_total {}", get(&self.upstream_errors));
        out.push_str("# TYPE gatehouse_config_reloads_total counter\n");
        let _ = writeln!(out, "gatehouse_config_reloads_total{{result=\"ok\"}} {}", get(&self.reloads));
        let _ = writeln!(out, "gatehouse_config_reloads_total{{result=\"refused\"}} {}", get(&self.reload_failures));
        out.push_str("# TYPE gatehouse_upstream_healthy_servers gauge\n");
        let mut pools: Vec<_> = runtime.pools.iter().collect();
        pools.sort_by(|a, b| a.0.cmp(b.0));
        for (name, pool) in pools {
            let _ = writeln!(out, "gatehouse_upstream_healthy_servers{{upstream=\"{name}\"}} {}", pool.healthy());
            let _ = writeln!(out, "gatehouse_upstream_servers{{upstream=\"{name}\"}} {}", pool.servers());
        }
        out
    }
}
