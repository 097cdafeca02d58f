//! The `[[upstream]]` tables of the gateway configuration and their
//! validation: what an operator writes, and the checked form ([`Checked`])
//! the pool runs on. Every refusal names the upstream and the key.

use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;
use http::uri::{PathAndQuery, Scheme, Uri};
use serde::Deserialize;

use super::UpstreamError;

/// One upstream pool: the origin servers a route forwards to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Name routes refer to.
    pub name: String,
    /// Origin servers as `scheme://host:port` (no path), e.g.
    /// `http://127.0.0.1:3000` or `https://origin.example.com:8443`.
    pub servers: Vec<String>,
    /// How a server is chosen for each request.
    #[serde(default)]
    pub balance: Balance,
    /// Active health checks; without them every server is assumed healthy.
    #[serde(default)]
    pub health: Option<HealthConfig>,
    /// TLS to the origin; required when a server is `https://`.
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
    /// Time allowed for TCP connect plus TLS handshake.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Consecutive connect failures that eject a server (passive health);
    /// 0 turns passive ejection off.
    #[serde(default = "default_max_fails")]
    pub max_fails: u32,
    /// How long an ejected server is skipped before it is tried again.
    #[serde(default = "default_fail_timeout_ms")]
    pub fail_timeout_ms: u64,
}

/// Load-balancing strategy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each available server in turn.
    #[default]
    RoundRobin,
    /// The available server with the fewest requests in flight.
    LeastConn,
}

/// Active health checks: a `GET` to each server every `interval_ms`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Path (and optional query) requested.
    #[serde(default = "default_health_path")]
    pub path: String,
    /// Time between two checks of a server.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Time allowed for connect, handshake and response head.
    #[serde(default = "default_check_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive successes that bring a down server back.
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
    /// Consecutive failures that take a server down.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
    /// The status a healthy server answers; any 2xx or 3xx when unset.
    #[serde(default)]
    pub expect_status: Option<u16>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            path: default_health_path(),
            interval_ms: default_interval_ms(),
            timeout_ms: default_check_timeout_ms(),
            healthy_threshold: default_healthy_threshold(),
            unhealthy_threshold: default_unhealthy_threshold(),
            expect_status: None,
        }
    }
}

/// TLS to the origin: which CA its certificate must chain to, and the client
/// certificate presented for authenticated origin pull.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM bundle of the CA certificates the origin certificate must chain to.
    pub ca: PathBuf,
    /// PEM certificate chain presented to the origin (leaf first).
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// SNI and the name the origin certificate is verified against;
    /// the host of each server URL when unset.
    #[serde(default)]
    pub server_name: Option<String>,
}

fn default_connect_timeout_ms() -> u64 {
    3000
}
fn default_max_fails() -> u32 {
    3
}
fn default_fail_timeout_ms() -> u64 {
    10_000
}
fn default_health_path() -> String {
    "/".to_owned()
}
fn default_interval_ms() -> u64 {
    2000
}
fn default_check_timeout_ms() -> u64 {
    1000
}
fn default_healthy_threshold() -> u32 {
    2
}
fn default_unhealthy_threshold() -> u32 {
    3
}

/// One origin server, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ServerAddr {
    /// `https://` rather than `http://`.
    pub(super) tls: bool,
    /// Host without IPv6 brackets, for SNI.
    pub(super) host: String,
    /// `host:port` with the default port filled in: what is dialled and reported.
    pub(super) authority: String,
}

/// Active health check settings in runtime form.
#[derive(Debug, Clone)]
pub(super) struct HealthCheck {
    pub(super) path: PathAndQuery,
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
    pub(super) healthy_threshold: u32,
    pub(super) unhealthy_threshold: u32,
    pub(super) expect_status: Option<StatusCode>,
}

impl HealthCheck {
    /// Whether a check response says the server is healthy.
    pub(super) fn accepts(&self, status: StatusCode) -> bool {
        match self.expect_status {
            Some(expected) => status == expected,
            None => status.is_success() || status.is_redirection(),
        }
    }
}

/// A validated [`UpstreamConfig`], minus TLS files (read by `tls.rs`).
#[derive(Debug)]
pub(super) struct Checked {
    pub(super) servers: Vec<ServerAddr>,
    pub(super) health: Option<HealthCheck>,
    pub(super) connect_timeout: Duration,
    pub(super) fail_timeout: Duration,
}

/// Builds the `UpstreamError::Config` sentence for upstream `name`.
pub(super) fn refuse(name: &str, what: impl std::fmt::Display) -> UpstreamError {
    UpstreamError::Config(format!("upstream {name:?}: {what}"))
}

impl UpstreamConfig {
    /// The configuration's validation of this table: everything but the TLS
    /// files, the first problem found.
    pub(crate) fn check(&self) -> Result<(), UpstreamError> {
        check(self).map(drop)
    }
}

/// Checks everything but the TLS files.
pub(super) fn check(config: &UpstreamConfig) -> Result<Checked, UpstreamError> {
    let name = config.name.as_str();
    if name.is_empty() {
        return Err(UpstreamError::Config("an [[upstream]] table has an empty name".to_owned()));
    }
    if config.servers.is_empty() {
        return Err(refuse(name, "servers is empty; list at least one URL"));
    }
    let mut servers: Vec<ServerAddr> = Vec::with_capacity(config.servers.len());
    for (i, url) in config.servers.iter().enumerate() {
        let addr = parse_server(url).map_err(|why| refuse(name, format!("servers[{i}] {url:?} {why}")))?;
        if let Some(j) = servers.iter().position(|s| s.authority == addr.authority) {
            return Err(refuse(name, format!("servers[{i}] {url:?} repeats servers[{j}]")));
        }
        servers.push(addr);
    }
    let first_tls = servers.iter().position(|s| s.tls);
    match (&config.tls, first_tls) {
        (None, Some(i)) => {
            return Err(refuse(
                name,
                format!(
                    "servers[{i}] {:?} is https:// but there is no tls table; set tls.ca to the CA bundle the origin certificate chains to",
                    config.servers[i]
                ),
            ));
        }
        // An unused tls table would let an operator believe origin traffic is encrypted.
        (Some(_), None) => return Err(refuse(name, "tls is set but no server is https://")),
        _ => {}
    }
    if config.connect_timeout_ms == 0 {
        return Err(refuse(name, "connect_timeout_ms must be greater than 0"));
    }
    if config.max_fails > 0 && config.fail_timeout_ms == 0 {
        return Err(refuse(name, "fail_timeout_ms must be greater than 0 when max_fails is set"));
    }
    let health = config.health.as_ref().map(|h| check_health(name, h)).transpose()?;
    Ok(Checked {
        servers,
        health,
        connect_timeout: Duration::from_millis(config.connect_timeout_ms),
        fail_timeout: Duration::from_millis(config.fail_timeout_ms),
    })
}

/// Parses `scheme://host[:port]`; the error completes `servers[i] "URL" …`.
fn parse_server(url: &str) -> Result<ServerAddr, &'static str> {
    let uri: Uri = url.parse().map_err(|_| "is not a URL")?;
    let tls = match uri.scheme() {
        Some(s) if *s == Scheme::HTTP => false,
        Some(s) if *s == Scheme::HTTPS => true,
        _ => return Err("must be an http:// or https:// URL"),
    };
    let authority = uri.authority().ok_or("has no host")?;
    if authority.as_str().contains('@') {
        return Err("must not carry user information");
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err("must not have a path or query (scheme://host:port)");
    }
    let bracketed = authority.host();
    if bracketed.is_empty() {
        return Err("has no host");
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let host = bracketed.trim_start_matches('[').trim_end_matches(']').to_owned();
    Ok(ServerAddr { tls, authority: format!("{bracketed}:{port}"), host })
}

fn check_health(name: &str, h: &HealthConfig) -> Result<HealthCheck, UpstreamError> {
    let path = match h.path.parse::<PathAndQuery>() {
        Ok(p) if h.path.starts_with('/') => p,
        _ => {
            return Err(refuse(name, format!("health.path {:?} must be a path starting with /", h.path)));
        }
    };
    for (key, value) in [("interval_ms", h.interval_ms), ("timeout_ms", h.timeout_ms)] {
        if value == 0 {
            return Err(refuse(name, format!("health.{key} must be greater than 0")));
        }
    }
    for (key, value) in [("healthy_threshold", h.healthy_threshold), ("unhealthy_threshold", h.unhealthy_threshold)] {
        if value == 0 {
            return Err(refuse(name, format!("health.{key} must be at least 1")));
        }
    }
    let expect_status = match h.expect_status {
        None => None,
        Some(code) => match StatusCode::from_u16(code) {
            Ok(status) if (100..600).contains(&code) => Some(status),
            _ => {
                return Err(refuse(name, format!("health.expect_status {code} is not an HTTP status (100-599)")));
            }
        },
    };
    Ok(HealthCheck {
        path,
        interval: Duration::from_millis(h.interval_ms),
        timeout: Duration::from_millis(h.timeout_ms),
        healthy_threshold: h.healthy_threshold,
        unhealthy_threshold: h.unhealthy_threshold,
        expect_status,
    })
}
