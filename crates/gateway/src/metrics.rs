//! Metrics for Prometheus (`/metrics` on the admin listener), kept in a
//! prometheus-client [`Registry`]: requests by status class and refusals by
//! reason, request durations by route and status class, handshakes with their
//! duration, client-certificate refusals by reason, open connections and the
//! connection limits, upstream failures and connect durations, reloads; at each
//! scrape, dropped log lines, the healthy servers of each pool and the key
//! servers of each `[[keyless]]` table (listed, and attached through the tunnel).
//!
//! The request path pays no lock, no allocation and no lookup for them: every
//! label set is resolved once (the counters of each reason when the metrics are
//! made, a route's histograms when the runtime is built, see
//! [`Metrics::request_durations`]) and counting is an atomic add on a handle
//! held in an array or in the [`Route`](crate::sites::Route).

use std::fmt;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

use crate::refusal::{HandshakeRefusal, Refusal, RequestRefusal};
use crate::sites::Runtime;

mod duration;

pub use duration::DurationHistogram;

/// The `Content-Type` of [`Metrics::render`]: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The `route` label of requests answered before a route was chosen (a bad target, a Host
/// the connection does not serve, no route). Route prefixes start with `/`, so no route has it.
pub const NO_ROUTE: &str = "none";

/// The `route` label of a site's default route (the one without a prefix).
pub const DEFAULT_ROUTE: &str = "default";

/// One label: `[("name", "value")]`.
type Label = [(&'static str, &'static str); 1];

/// The `upstream` label: an `[[upstream]]` name.
type UpstreamLabel = [(&'static str, String); 1];

/// The labels of a request's duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    /// The route's path prefix, [`DEFAULT_ROUTE`] or [`NO_ROUTE`].
    route: String,
    /// The status class, `2xx`.
    code: &'static str,
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The index of a status's class in [`STATUS_CLASSES`].
fn status_class(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

/// Process-wide metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: [Counter; STATUS_CLASSES.len()],
    refused: [Counter; RequestRefusal::COUNT],
    request_durations: Family<RouteLabels, DurationHistogram>,
    unrouted: RequestDurations,
    handshakes: Counter,
    handshake_durations: DurationHistogram,
    client_cert_refusals: [Counter; Refusal::COUNT],
    unknown_sni: Counter,
    tls_errors: Counter,
    connections_open: Gauge,
    connections_total: Counter,
    connections_limit: Gauge,
    connections_refused_per_ip: Counter,
    upstream_errors: Counter,
    connect_durations: Family<UpstreamLabel, DurationHistogram>,
    reloads: Counter,
    reload_failures: Counter,
    acme_orders: Family<AcmeOrderLabels, Counter>,
}

/// The labels of `gatehouse_acme_orders_total`: the `[[acme]]` table and the result.
type AcmeOrderLabels = [(&'static str, String); 2];

impl crate::acme_client::OrderEvents for Metrics {
    fn order(&self, acme: &str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.acme_orders.get_or_create(&[("acme", acme.to_owned()), ("result", result.to_owned())]).inc();
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// Counters of a family, one per value of `label`, resolved now.
fn counters<const N: usize>(
    family: &Family<Label, Counter>,
    label: &'static str,
    values: [&'static str; N],
) -> [Counter; N] {
    values.map(|value| family.get_or_create(&[(label, value)]).clone())
}

/// `metric`, registered in `registry` as `name` with the `help` line (the registry ends it with a full stop).
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// Registers every metric, with each label set the request path counts in.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let r = &mut registry;
        let requests = registered(r, "gatehouse_requests", "Requests answered, by status class", Family::default());
        let refused = registered(
            r,
            "gatehouse_requests_refused",
            "Requests the gateway answered itself or the client gave up on, by reason (the access line's refused field)",
            Family::default(),
        );
        let request_durations = registered(
            r,
            "gatehouse_request_duration_seconds",
            "From request head to end of response body, by route (path prefix, default or none) and status class",
            Family::default(),
        );
        let handshakes = registered(r, "gatehouse_tls_handshakes", "TLS handshakes completed", Counter::default());
        let handshake_durations = registered(
            r,
            "gatehouse_tls_handshake_duration_seconds",
            "From accept to the end of a completed TLS handshake",
            DurationHistogram::default(),
        );
        let client_cert_refusals = registered(
            r,
            "gatehouse_client_cert_refusals",
            "Client certificates refused, by reason",
            Family::default(),
        );
        let unknown_sni =
            registered(r, "gatehouse_tls_unknown_sni", "ClientHellos for a name no site serves", Counter::default());
        let tls_errors = registered(
            r,
            "gatehouse_tls_errors",
            "Handshakes failed otherwise: not TLS, protocol errors, timeouts, oversized messages",
            Counter::default(),
        );
        let connections_open =
            registered(r, "gatehouse_connections_open", "TLS connections open now", Gauge::default());
        let connections_total = registered(r, "gatehouse_connections", "TLS connections served", Counter::default());
        let connections_limit =
            registered(r, "gatehouse_connections_limit", "limits.max_connections in force", Gauge::default());
        let connections_refused = registered(
            r,
            "gatehouse_connections_refused",
            "Connections closed at accept, by reason",
            Family::default(),
        );
        registered(
            r,
            "gatehouse_log_lines_dropped",
            "Log lines dropped because stdout did not keep up",
            DroppedLogLines,
        );
        let upstream_errors = registered(
            r,
            "gatehouse_upstream_errors",
            "Upstream failures answered with 502, 503 or 504",
            Counter::default(),
        );
        let connect_durations = registered(
            r,
            "gatehouse_upstream_connect_duration_seconds",
            "Opening a connection to an origin server for a request (TCP, TLS, HTTP/1.1 handshake), by upstream",
            Family::default(),
        );
        let reloads = registered(r, "gatehouse_config_reloads", "Configuration reloads, by result", Family::default());

        let [reloads, reload_failures] = counters(&reloads, "result", ["ok", "refused"]);
        let acme_orders = registered(
            r,
            "gatehouse_acme_orders",
            "ACME orders for site certificates, by [[acme]] table and result (ok, failed)",
            Family::default(),
        );
        let [connections_refused_per_ip] = counters(&connections_refused, "reason", ["max_connections_per_ip"]);
        Metrics {
            requests: counters(&requests, "code", STATUS_CLASSES),
            refused: counters(&refused, "reason", RequestRefusal::ALL),
            unrouted: RequestDurations::resolve(&request_durations, NO_ROUTE),
            request_durations,
            handshakes,
            handshake_durations,
            client_cert_refusals: counters(&client_cert_refusals, "reason", Refusal::ALL),
            unknown_sni,
            tls_errors,
            connections_open,
            connections_total,
            connections_limit,
            connections_refused_per_ip,
            upstream_errors,
            connect_durations,
            reloads,
            reload_failures,
            acme_orders,
            registry,
        }
    }

    /// Counts a response by status class.
    pub fn request(&self, status: u16) {
        self.requests[status_class(status)].inc();
    }

    /// Counts a request the gateway answered itself, or its client gave up on.
    pub fn refused(&self, refusal: &RequestRefusal) {
        self.refused[refusal.index()].inc();
    }

    /// The duration histograms of requests on the route with `prefix` (`""`, the site
    /// default, is labelled [`DEFAULT_ROUTE`]): resolved once, when the runtime is built,
    /// and kept in the route.
    pub fn request_durations(&self, prefix: &str) -> RequestDurations {
        let route = if prefix.is_empty() { DEFAULT_ROUTE } else { prefix };
        RequestDurations::resolve(&self.request_durations, route)
    }

    /// The duration histograms of requests answered before a route was chosen.
    pub fn unrouted(&self) -> &RequestDurations {
        &self.unrouted
    }

    /// Counts a completed handshake, begun `elapsed` ago.
    pub fn handshake(&self, elapsed: Duration) {
        self.handshakes.inc();
        self.handshake_durations.observe(elapsed);
    }

    /// Counts a refused handshake by its reason: a client certificate's, an unknown name,
    /// an oversized message (a TLS error).
    pub fn handshake_refused(&self, refusal: &HandshakeRefusal) {
        match refusal {
            HandshakeRefusal::ClientCertificate(r) => self.client_cert_refused(r),
            HandshakeRefusal::UnknownServerName { .. } => {
                self.unknown_sni.inc();
            }
            HandshakeRefusal::TooLarge => self.tls_error(),
        }
    }

    /// Counts a refused client certificate.
    pub fn client_cert_refused(&self, refusal: &Refusal) {
        self.client_cert_refusals[refusal.index()].inc();
    }

    /// Counts any other failed handshake (not TLS, protocol error, timeout).
    pub fn tls_error(&self) {
        self.tls_errors.inc();
    }

    /// A connection opened (`+1`) or closed (`-1`).
    pub fn connection(&self, delta: i64) {
        if delta > 0 {
            self.connections_total.inc();
        }
        self.connections_open.inc_by(delta);
    }

    /// The connection limit in force (`limits.max_connections`, fitted to the open-file limit).
    pub fn set_connection_limit(&self, limit: usize) {
        self.connections_limit.set(i64::try_from(limit).unwrap_or(i64::MAX));
    }

    /// Counts a connection closed at accept: its client has `limits.max_connections_per_ip` open.
    pub fn connection_refused_per_ip(&self) {
        self.connections_refused_per_ip.inc();
    }

    /// Open connections now.
    pub fn open_connections(&self) -> i64 {
        self.connections_open.get()
    }

    /// Counts an upstream failure answered with 502/503/504.
    pub fn upstream_error(&self) {
        self.upstream_errors.inc();
    }

    /// The histogram of connect durations to the servers of `upstream`: resolved once, when
    /// its pool is built, and kept in the pool.
    pub fn connect_durations(&self, upstream: &str) -> DurationHistogram {
        self.connect_durations.get_or_create(&[("upstream", upstream.to_owned())]).clone()
    }

    /// Counts a reload attempt.
    pub fn reload(&self, ok: bool) {
        if ok { &self.reloads } else { &self.reload_failures }.inc();
    }

    /// Prometheus text exposition ([`CONTENT_TYPE`]): the registry, then the servers of
    /// `runtime`'s pools as they are now.
    pub fn render(&self, runtime: &Runtime) -> String {
        let mut out = String::new();
        let encoded = prometheus_text::encode(&mut out, &self.registry)
            .and_then(|()| prometheus_text::encode(&mut out, &pool_servers(runtime)))
            .and_then(|()| prometheus_text::encode(&mut out, &key_servers(runtime)))
            .and_then(|()| prometheus_text::encode(&mut out, &certificate_expiry(runtime)));
        if encoded.is_err() {
            tracing::error!("cannot encode the metrics");
        }
        out
    }
}

/// Healthy and configured servers of each pool of `runtime`, read now.
fn pool_servers(runtime: &Runtime) -> Registry {
    let healthy = Family::<UpstreamLabel, Gauge>::default();
    let servers = Family::<UpstreamLabel, Gauge>::default();
    for (name, pool) in &runtime.pools {
        let upstream = [("upstream", name.clone())];
        healthy.get_or_create(&upstream).set(i64::try_from(pool.healthy()).unwrap_or(i64::MAX));
        servers.get_or_create(&upstream).set(i64::try_from(pool.servers()).unwrap_or(i64::MAX));
    }
    let mut registry = Registry::default();
    registry.register(
        "gatehouse_upstream_healthy_servers",
        "Servers of an upstream that may be picked now: up by health checks and not ejected",
        healthy,
    );
    registry.register("gatehouse_upstream_servers", "Servers of an upstream, configured", servers);
    registry
}

/// The labels of a `[[keyless]]` table's key servers: the table, and how they are
/// reached (`listed` in `servers`, or attached through the `tunnel`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyServerLabels {
    keyless: String,
    via: &'static str,
}

/// The key servers of each `[[keyless]]` table, read now: listed and attached, and of
/// those, the ones requests go to first (a listed server that failed lately is tried last).
fn key_servers(runtime: &Runtime) -> Registry {
    let servers = Family::<KeyServerLabels, Gauge>::default();
    let up = Family::<KeyServerLabels, Gauge>::default();
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    for table in runtime.keyless_tables() {
        let counts = table.counts();
        for (via, all, usable) in
            [("listed", counts.listed, counts.listed_up), ("tunnel", counts.attached, counts.attached)]
        {
            let labels = KeyServerLabels { keyless: table.name().to_owned(), via };
            servers.get_or_create(&labels).set(count(all));
            up.get_or_create(&labels).set(count(usable));
        }
    }
    let mut registry = Registry::default();
    registry.register(
        "gatehouse_keyless_servers",
        "Key servers of a keyless table: listed in servers, or attached through the keyless tunnel now",
        servers,
    );
    registry.register(
        "gatehouse_keyless_servers_up",
        "Key servers of a keyless table asked first: attached, or listed and not failed in the last 2 s",
        up,
    );
    registry
}

/// When the certificate each site serves now expires, read now; a site is labelled with
/// its first host.
fn certificate_expiry(runtime: &Runtime) -> Registry {
    let expiry = Family::<[(&'static str, String); 1], Gauge>::default();
    for site in runtime.sites() {
        if let (Some(host), Some(not_after)) = (site.hosts.first(), site.certificate.not_after()) {
            expiry.get_or_create(&[("site", host.clone())]).set(not_after);
        }
    }
    let mut registry = Registry::default();
    registry.register(
        "gatehouse_certificate_expiry_timestamp_seconds",
        "notAfter of the certificate each site serves now (Unix time), by the site's first host",
        expiry,
    );
    registry
}

/// `gatehouse_log_lines_dropped_total`, read from the log queue at each scrape.
#[derive(Debug, Clone)]
struct DroppedLogLines;

impl EncodeMetric for DroppedLogLines {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        encoder.encode_counter::<NoLabelSet, _, u64>(&crate::log::dropped_lines(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// The duration histograms of one route, one per status class.
#[derive(Debug, Clone)]
pub struct RequestDurations([DurationHistogram; STATUS_CLASSES.len()]);

impl RequestDurations {
    fn resolve(family: &Family<RouteLabels, DurationHistogram>, route: &str) -> RequestDurations {
        RequestDurations(
            STATUS_CLASSES.map(|code| family.get_or_create(&RouteLabels { route: route.to_owned(), code }).clone()),
        )
    }

    /// The histogram of responses with `status`.
    pub fn for_status(&self, status: u16) -> &DurationHistogram {
        &self.0[status_class(status)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `name_and_labels` in `text`.
    fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' ')?.parse().ok())
    }

    fn encoded(metrics: &Metrics) -> String {
        let mut out = String::new();
        prometheus_text::encode(&mut out, &metrics.registry).expect("encoded");
        out
    }

    #[test]
    fn the_registry_has_every_family_with_its_labels() {
        let metrics = Metrics::new();
        let admin = metrics.request_durations("/admin");
        admin.for_status(403).observe(Duration::from_millis(3));
        metrics.request_durations("").for_status(200).observe(Duration::from_millis(20));
        metrics.request(403);
        metrics.refused(&RequestRefusal::RouteRequiresCertificate(crate::refusal::NoVerifiedCertificate::NotVerified));
        metrics.handshake(Duration::from_millis(2));
        metrics.connect_durations("app").observe(Duration::from_micros(300));
        metrics.handshake_refused(&HandshakeRefusal::ClientCertificate(Refusal::Expired));
        metrics.reload(false);
        let text = encoded(&metrics);

        let bucket = "gatehouse_request_duration_seconds_bucket";
        assert_eq!(sample(&text, &format!("{bucket}{{route=\"/admin\",code=\"4xx\",le=\"0.0025\"}}")), Some(0.0));
        assert_eq!(sample(&text, &format!("{bucket}{{route=\"/admin\",code=\"4xx\",le=\"0.005\"}}")), Some(1.0));
        assert_eq!(sample(&text, &format!("{bucket}{{route=\"/admin\",code=\"4xx\",le=\"+Inf\"}}")), Some(1.0));
        assert_eq!(
            sample(&text, "gatehouse_request_duration_seconds_count{route=\"default\",code=\"2xx\"}"),
            Some(1.0)
        );
        assert_eq!(sample(&text, "gatehouse_request_duration_seconds_count{route=\"none\",code=\"5xx\"}"), Some(0.0));
        assert!(text.contains("# TYPE gatehouse_request_duration_seconds histogram\n"), "{text}");
        assert_eq!(sample(&text, "gatehouse_tls_handshake_duration_seconds_count"), Some(1.0));
        assert_eq!(sample(&text, "gatehouse_tls_handshake_duration_seconds_bucket{le=\"0.0025\"}"), Some(1.0));
        assert_eq!(sample(&text, "gatehouse_upstream_connect_duration_seconds_count{upstream=\"app\"}"), Some(1.0));
        assert!(text.contains("# TYPE gatehouse_upstream_connect_duration_seconds histogram\n"), "{text}");

        assert_eq!(sample(&text, "gatehouse_requests_total{code=\"4xx\"}"), Some(1.0));
        assert_eq!(sample(&text, "gatehouse_requests_refused_total{reason=\"route_requires_certificate\"}"), Some(1.0));
        for reason in RequestRefusal::ALL {
            let line = format!("gatehouse_requests_refused_total{{reason=\"{reason}\"}}");
            assert!(sample(&text, &line).is_some(), "{line} is there from the start");
        }
        assert_eq!(sample(&text, "gatehouse_client_cert_refusals_total{reason=\"expired\"}"), Some(1.0));
        assert_eq!(sample(&text, "gatehouse_client_cert_refusals_total{reason=\"no_certificate\"}"), Some(0.0));
        assert_eq!(sample(&text, "gatehouse_tls_handshakes_total"), Some(1.0));
        assert_eq!(sample(&text, "gatehouse_config_reloads_total{result=\"refused\"}"), Some(1.0));
        assert_eq!(sample(&text, "gatehouse_config_reloads_total{result=\"ok\"}"), Some(0.0));
        assert!(sample(&text, "gatehouse_connections_refused_total{reason=\"max_connections_per_ip\"}").is_some());
        assert!(sample(&text, "gatehouse_log_lines_dropped_total").is_some(), "{text}");
        for gauge in ["gatehouse_connections_open", "gatehouse_connections_limit"] {
            assert!(text.contains(&format!("# TYPE {gauge} gauge\n")), "{gauge}");
        }
    }
}
