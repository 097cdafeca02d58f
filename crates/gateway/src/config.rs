//! The gateway configuration file (TOML): listeners, sites, routes, trust
//! stores, upstream pools, limits. Unknown keys are errors; every error names
//! the key and the line. Validation happens here, once, so a config that
//! loads is a config that can be served.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use pki::line_col;

use crate::upstream::UpstreamConfig;

/// A configuration error: file, line and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// The configuration file.
    pub path: PathBuf,
    /// `line N, column M: ...` or `key: ...`.
    pub message: String,
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Data dir of the internal CA (default: the `--data-dir` of the command).
    pub data_dir: Option<PathBuf>,
    /// Listening addresses.
    pub listen: Listen,
    /// TLS settings shared by every site.
    #[serde(default)]
    pub tls: TlsSettings,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// How the client identity is sent upstream.
    #[serde(default)]
    pub identity: IdentitySettings,
    /// Runtime sizing.
    #[serde(default)]
    pub runtime: RuntimeSettings,
    /// Logging.
    #[serde(default)]
    pub log: LogSettings,
    /// Sites by host name.
    #[serde(default, rename = "site")]
    pub sites: Vec<SiteConfig>,
    /// Upstream pools.
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<UpstreamConfig>,
}

/// Listening addresses.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// The TLS listener.
    pub https: SocketAddr,
    /// Optional plain-HTTP listener that redirects to HTTPS.
    pub http: Option<SocketAddr>,
    /// Optional admin listener: `/metrics`, `/healthz`.
    pub admin: Option<SocketAddr>,
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
    /// Concurrent downstream connections; further ones wait in the accept queue.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 32 * 1024,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 75_000,
            request_timeout_ms: 60_000,
            max_connections: 20_000,
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
}

/// Identity forwarding.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IdentitySettings {
    /// `rfc9440` (default) or `xfcc`.
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
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { access: true, handshakes: true }
    }
}

/// Client-certificate mode of a site.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum MtlsMode {
    /// No CertificateRequest.
    #[default]
    Off,
    /// Ask; verify what is given; routes decide.
    Optional,
    /// The handshake fails without a valid certificate.
    Require,
    /// Ask, do not verify, forward what is given.
    Passthrough,
}

/// Per-route client-certificate requirement.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RouteMtls {
    /// A valid client certificate is required on this route (403 otherwise).
    Require,
    /// No requirement (the site's mode still applies at the handshake).
    Off,
}

/// Where a site's certificate comes from.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// Certificate chain PEM (leaf first).
    pub cert: Option<PathBuf>,
    /// Private key PEM.
    pub key: Option<PathBuf>,
    /// Issue (and renew) the certificate from the internal CA for the site's host names.
    #[serde(default)]
    pub internal_ca: bool,
}

/// Trust store for client certificates.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// Trust the internal CA's root, and its revocations (seen within a second).
    #[serde(default)]
    pub internal_ca: bool,
    /// CA bundle files (PEM).
    #[serde(default)]
    pub ca_files: Vec<PathBuf>,
    /// CRL files (PEM or DER), reloaded when they change.
    #[serde(default)]
    pub crl_files: Vec<PathBuf>,
    /// CRL URLs, fetched at start and refreshed at nextUpdate or every `crl_refresh_secs`.
    #[serde(default)]
    pub crl_urls: Vec<String>,
    /// Longest time between CRL URL refreshes, seconds.
    #[serde(default = "default_crl_refresh")]
    pub crl_refresh_secs: u64,
}

fn default_crl_refresh() -> u64 {
    3600
}

/// One site: host names, certificate, mTLS policy, routes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Exact names and `*.example.com` wildcards (one label).
    pub hosts: Vec<Spanned<String>>,
    /// The site's certificate.
    #[serde(default)]
    pub certificate: CertificateConfig,
    /// Client-certificate mode.
    #[serde(default)]
    pub mtls: MtlsMode,
    /// Trust store for client certificates.
    pub trust: Option<TrustConfig>,
    /// Default upstream of the site's routes.
    pub upstream: Option<Spanned<String>>,
    /// Send `Strict-Transport-Security: max-age=N` (seconds) when set.
    pub hsts_max_age: Option<u64>,
    /// Routes by path prefix; the longest matching prefix wins.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
}

/// A route: a path prefix with its own mTLS requirement and upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Matches request paths starting with this.
    pub path_prefix: String,
    /// Per-route requirement.
    pub mtls: Option<RouteMtls>,
    /// Upstream (default: the site's).
    pub upstream: Option<Spanned<String>>,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError { path: path.to_owned(), message: format!("cannot read it: {e}") })?;
        Config::parse(path, &text)
    }

    /// Parses and validates configuration text; `path` is used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let err = |message: String| ConfigError { path: path.to_owned(), message };
        let config: Config = toml::from_str(text).map_err(|e| err(toml_message(text, e.span(), e.message())))?;
        config.validate(text).map_err(err)?;
        Ok(config)
    }

    fn validate(&self, text: &str) -> Result<(), String> {
        let at = |span: std::ops::Range<usize>| line_col(text, span.start);
        let upstream_names: HashSet<&str> = self.upstreams.iter().map(|u| u.name.as_str()).collect();
        if upstream_names.len() != self.upstreams.len() {
            return Err("two [[upstream]] tables have the same name; give each a unique name".into());
        }
        let check_upstream = |u: &Spanned<String>, key: &str| {
            if upstream_names.contains(u.get_ref().as_str()) {
                Ok(())
            } else {
                Err(format!(
                    "{}: {key} = \"{}\" names no [[upstream]]; define it or fix the name",
                    at(u.span()),
                    u.get_ref()
                ))
            }
        };
        if self.sites.is_empty() {
            return Err("no [[site]] is configured; add one with hosts, certificate and upstream".into());
        }
        let mut seen_hosts = HashSet::new();
        for (i, site) in self.sites.iter().enumerate() {
            if site.hosts.is_empty() {
                return Err(format!("site[{i}].hosts is empty; list the host names this site serves"));
            }
            for host in &site.hosts {
                let name = host.get_ref().to_ascii_lowercase();
                if !is_host_pattern(&name) {
                    return Err(format!(
                        "{}: site[{i}].hosts entry \"{name}\" is not a host name, IP address or *.wildcard",
                        at(host.span())
                    ));
                }
                if !seen_hosts.insert(name.clone()) {
                    return Err(format!("{}: host \"{name}\" is served by two sites; keep it in one", at(host.span())));
                }
            }
            let c = &site.certificate;
            match (c.cert.is_some(), c.key.is_some(), c.internal_ca) {
                (true, true, false) | (false, false, true) => {}
                (false, false, false) => {
                    return Err(format!(
                        "site[{i}].certificate is missing; give cert and key files or internal_ca = true"
                    ));
                }
                (true, false, _) | (false, true, _) => {
                    return Err(format!("site[{i}].certificate needs both cert and key"));
                }
                (true, true, true) => {
                    return Err(format!("site[{i}].certificate has files and internal_ca = true; choose one"));
                }
            }
            if matches!(site.mtls, MtlsMode::Optional | MtlsMode::Require) {
                match &site.trust {
                    Some(t) if t.internal_ca || !t.ca_files.is_empty() => {}
                    _ => {
                        return Err(format!(
                            "site[{i}] has mtls = \"{}\" but no trust store; add trust = {{ internal_ca = true }} or trust = {{ ca_files = [...] }}",
                            if site.mtls == MtlsMode::Require { "require" } else { "optional" }
                        ));
                    }
                }
            }
            if let Some(u) = &site.upstream {
                check_upstream(u, &format!("site[{i}].upstream"))?;
            }
            for (j, route) in site.routes.iter().enumerate() {
                if !route.path_prefix.starts_with('/') {
                    return Err(format!(
                        "site[{i}].route[{j}].path_prefix \"{}\" must start with '/'",
                        route.path_prefix
                    ));
                }
                if route.mtls == Some(RouteMtls::Require)
                    && !matches!(site.mtls, MtlsMode::Optional | MtlsMode::Require)
                {
                    return Err(format!(
                        "site[{i}].route[{j}] requires a client certificate but the site has mtls = off or passthrough; set the site's mtls = \"optional\""
                    ));
                }
                match &route.upstream {
                    Some(u) => check_upstream(u, &format!("site[{i}].route[{j}].upstream"))?,
                    None if site.upstream.is_none() => {
                        return Err(format!("site[{i}].route[{j}] has no upstream and the site has none; set one"));
                    }
                    None => {}
                }
            }
            if site.upstream.is_none() && site.routes.iter().all(|r| r.path_prefix != "/") {
                return Err(format!(
                    "site[{i}] has no upstream for paths no route matches; set site[{i}].upstream or add a route for \"/\""
                ));
            }
        }
        if self.limits.max_connections == 0 || self.limits.max_header_bytes < 1024 {
            return Err("limits: max_connections must be at least 1 and max_header_bytes at least 1024".into());
        }
        Ok(())
    }

    /// Every file the running configuration reads, for reload-on-change.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for site in &self.sites {
            files.extend(site.certificate.cert.iter().cloned());
            files.extend(site.certificate.key.iter().cloned());
            if let Some(t) = &site.trust {
                files.extend(t.ca_files.iter().cloned());
                files.extend(t.crl_files.iter().cloned());
            }
        }
        files
    }
}

/// Whether `name` is a host name, an IP address, or a `*.` wildcard of a host name.
pub fn is_host_pattern(name: &str) -> bool {
    name.parse::<std::net::IpAddr>().is_ok() || pki::is_dns_name(name)
}

fn toml_message(text: &str, span: Option<std::ops::Range<usize>>, message: &str) -> String {
    match span {
        Some(span) => format!("{}: {}", line_col(text, span.start), message.trim_end()),
        None => message.trim_end().to_owned(),
    }
}
