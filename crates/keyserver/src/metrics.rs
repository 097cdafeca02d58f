//! Metrics for Prometheus, served on `GET /metrics` when `metrics = "IP:PORT"`:
//!
//! - `keyserver_operations_total{family, result}`: requests answered, by opcode
//!   family (`ecdsa`, `rsa_pkcs1`, `rsa_pss`, `ed25519`, `rsa_decrypt`, `ping`,
//!   `seal`, `unseal`, `custom`, `response`, `unknown`) and result (`ok`, `error`);
//! - `keyserver_errors_total{code}`: error answers, by the protocol's code name;
//! - `keyserver_operation_duration_seconds{key_type}`: how long private-key
//!   operations took, by key type;
//! - `keyserver_connections_total`, `keyserver_connections_open`,
//!   `keyserver_handshake_refusals_total{reason}`, `keyserver_malformed_frames_total`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use keyless::{ErrorCode, Opcode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::keys::KeyType;
use crate::tls::HandshakeRefusal;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    family: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyTypeLabel {
    key_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// From 20 µs (an ECDSA P-256 signature) to 0.1 s (RSA 8192).
fn duration_histogram() -> Histogram {
    Histogram::new([0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1])
}

/// The key server's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    operations: Family<OperationLabels, Counter>,
    errors: Family<CodeLabel, Counter>,
    durations: Family<KeyTypeLabel, Histogram, fn() -> Histogram>,
    connections: Counter,
    open: Gauge,
    refusals: Family<ReasonLabel, Counter>,
    malformed: Counter,
}

/// The opcode family label of a request's opcode.
pub(crate) fn family(opcode: Option<Opcode>) -> &'static str {
    use Opcode::*;
    match opcode {
        Some(RsaDecrypt) => "rsa_decrypt",
        Some(RsaSignMd5Sha1 | RsaSignSha1 | RsaSignSha224 | RsaSignSha256 | RsaSignSha384 | RsaSignSha512) => {
            "rsa_pkcs1"
        }
        Some(RsaPssSignSha256 | RsaPssSignSha384 | RsaPssSignSha512) => "rsa_pss",
        Some(
            EcdsaSignMd5Sha1 | EcdsaSignSha1 | EcdsaSignSha224 | EcdsaSignSha256 | EcdsaSignSha384 | EcdsaSignSha512,
        ) => "ecdsa",
        Some(Ed25519Sign) => "ed25519",
        Some(Seal) => "seal",
        Some(Unseal) => "unseal",
        Some(Custom) => "custom",
        Some(Ping) => "ping",
        Some(Response | Pong | Error) => "response",
        Some(Unknown(_)) | None => "unknown",
    }
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("keyserver");
        let operations = Family::<OperationLabels, Counter>::default();
        registry.register("operations", "Requests answered, by opcode family and result", operations.clone());
        let errors = Family::<CodeLabel, Counter>::default();
        registry.register("errors", "Error answers, by error code", errors.clone());
        let durations: Family<KeyTypeLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register("operation_duration_seconds", "Private-key operation time, by key type", durations.clone());
        let connections = Counter::default();
        registry.register("connections", "Gateway connections accepted (TCP)", connections.clone());
        let open = Gauge::default();
        registry.register("connections_open", "Gateway connections open", open.clone());
        let refusals = Family::<ReasonLabel, Counter>::default();
        registry.register("handshake_refusals", "TLS handshakes refused, by reason", refusals.clone());
        let malformed = Counter::default();
        registry.register("malformed_frames", "Connections closed for a malformed frame", malformed.clone());
        Metrics { registry, operations, errors, durations, connections, open, refusals, malformed }
    }

    /// One request answered with `result`.
    pub(crate) fn answered(&self, family: &'static str, result: Result<(), ErrorCode>) {
        let label = if result.is_ok() { "ok" } else { "error" };
        self.operations.get_or_create(&OperationLabels { family, result: label }).inc();
        if let Err(code) = result {
            self.errors.get_or_create(&CodeLabel { code: code.name() }).inc();
        }
    }

    /// One private-key operation took `elapsed`.
    pub(crate) fn operation_took(&self, key_type: KeyType, elapsed: Duration) {
        self.durations.get_or_create(&KeyTypeLabel { key_type: key_type.name() }).observe(elapsed.as_secs_f64());
    }

    pub(crate) fn connection_opened(&self) {
        self.connections.inc();
        self.open.inc();
    }

    pub(crate) fn connection_closed(&self) {
        self.open.dec();
    }

    pub(crate) fn handshake_refused(&self, reason: HandshakeRefusal) {
        self.refusals.get_or_create(&ReasonLabel { reason: reason.name() }).inc();
    }

    pub(crate) fn malformed_frame(&self) {
        self.malformed.inc();
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String does not fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(respond(&request, &metrics)) }
            });
            if let Err(e) =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await
            {
                tracing::debug!(%peer, error = %e, "metrics connection ended with an error");
            }
        });
    }
}

fn respond(request: &Request<hyper::body::Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&hyper::Method::GET, "/metrics") => {
            (StatusCode::OK, prometheus_client::encoding::prometheus_text::CONTENT_TYPE, metrics.render())
        }
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found; try GET /metrics\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
