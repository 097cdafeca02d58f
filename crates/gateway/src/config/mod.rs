//! The gateway configuration file (TOML): listeners, sites, routes, trust
//! stores, upstream pools, limits. Unknown keys are errors; every error names
//! the key and the line, and one run reports every error: the document is
//! read table by table (each `[[site]]` and `[[upstream]]` on its own), then
//! validated as a whole, so a config that loads is a config that can be served.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use pki::line_col;

use crate::acme_client::{AcmeConfig, Challenge};
use crate::certificates::CertificateSource;
use crate::keyless::KeylessConfig;
use crate::upstream::UpstreamConfig;

mod acme_server;
mod read;

pub use acme_server::AcmeServerSettings;

/// Every problem found in a configuration file.
#[derive(Debug)]
pub struct ConfigError {
    /// The configuration file.
    pub path: PathBuf,
    /// One sentence per problem, `line N, column M: key: ...` or `key: ...`; never empty.
    pub messages: Vec<String>,
}

impl ConfigError {
    fn new(path: &Path, messages: Vec<String>) -> ConfigError {
        ConfigError { path: path.to_owned(), messages: messages.iter().map(|m| one_line(m)).collect() }
    }

    /// `path: message`, one per problem.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.messages.iter().map(|message| format!("{}: {message}", self.path.display()))
    }
}

impl fmt::Display for ConfigError {
    /// One line per problem, each starting with the file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.lines().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            f.write_str(&line)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The longest message a problem gets: values from the file are quoted in
/// messages, and a value can be any length.
const MESSAGE_LIMIT: usize = 400;

/// A message as one line of bounded length: control characters from the file
/// (a key or value with a newline or an escape sequence) are written escaped,
/// and a long message is cut, saying so.
fn one_line(message: &str) -> String {
    let mut line = String::with_capacity(message.len().min(MESSAGE_LIMIT + 16));
    for c in message.chars() {
        if line.len() >= MESSAGE_LIMIT {
            line.push_str("… (cut)");
            break;
        }
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Data dir of the internal CA (default: the `--data-dir` of the command).
    pub data_dir: Option<PathBuf>,
    /// The database of the internal CA and the ACME server: `sqlite://PATH` or
    /// `postgres://USER@HOST:PORT/DATABASE` (default: the command's `--storage`, else
    /// `sqlite://DATA_DIR/gatehouse.db`).
    pub storage: Option<Spanned<String>>,
    /// Listening addresses (required when there are sites).
    pub listen: Option<Listen>,
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
    /// The ACME server on the internal CA, when configured.
    pub acme_server: Option<AcmeServerSettings>,
    /// ACME accounts that sites get certificates from (`certificate = { acme = "NAME" }`).
    #[serde(default, rename = "acme")]
    pub acme: Vec<Spanned<AcmeConfig>>,
    /// Key servers that sign for sites whose keys the gateway does not hold
    /// (`certificate = { cert = "...", keyless = "NAME" }`).
    #[serde(default, rename = "keyless")]
    pub keyless: Vec<Spanned<KeylessConfig>>,
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

/// A site's `certificate` table: `{ cert = "chain.pem", key = "key.pem" }` or
/// `{ internal_ca = true }`, read into its [`CertificateSource`] as the file is parsed.
/// A table that names no source keeps the reason, which validation reports, so every
/// site of a configuration that loads has a source.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(from = "CertificateKeys")]
pub struct CertificateConfig(Result<CertificateSource, CertificateProblem>);

impl CertificateConfig {
    /// Where the certificate comes from; an error only in a configuration that failed validation.
    pub fn source(&self) -> Result<&CertificateSource, CertificateProblem> {
        self.0.as_ref().map_err(|problem| *problem)
    }
}

impl Default for CertificateConfig {
    fn default() -> Self {
        CertificateConfig(Err(CertificateProblem::Missing))
    }
}

/// Why a `certificate` table names no source; completes `site[N].certificate ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CertificateProblem {
    /// No `certificate` key, or an empty table.
    #[error("is missing; give cert and key files, internal_ca = true or acme = \"NAME\"")]
    Missing,
    /// `cert` without `key`, or the other way round.
    #[error("needs both cert and key")]
    HalfPair,
    /// More than one source together.
    #[error("has more than one of files, internal_ca = true and acme; choose one")]
    Both,
    /// `keyless` without the certificate it signs for.
    #[error("has keyless but no cert; give the site's certificate chain as cert")]
    KeylessWithoutCert,
    /// `keyless` with a key file: the key is on the key server.
    #[error("has keyless and a key; a keyless site's key stays on the key server, drop key")]
    KeylessWithKey,
}

/// The keys a `certificate` table may have.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificateKeys {
    /// Certificate chain PEM (leaf first).
    cert: Option<PathBuf>,
    /// Private key PEM.
    key: Option<PathBuf>,
    /// Issue (and renew) the certificate from the internal CA for the site's host names.
    #[serde(default)]
    internal_ca: bool,
    /// Obtain (and renew) the certificate through the `[[acme]]` table of this name.
    acme: Option<String>,
    /// Sign with the key servers of the `[[keyless]]` table of this name (with `cert`).
    keyless: Option<String>,
}

impl From<CertificateKeys> for CertificateConfig {
    fn from(keys: CertificateKeys) -> Self {
        CertificateConfig(match (keys.cert, keys.key, keys.internal_ca, keys.acme, keys.keyless) {
            (Some(cert), Some(key), false, None, None) => Ok(CertificateSource::Files { cert, key }),
            (None, None, true, None, None) => Ok(CertificateSource::InternalCa),
            (None, None, false, Some(name), None) => Ok(CertificateSource::Acme(name)),
            (Some(cert), None, false, None, Some(name)) => Ok(CertificateSource::Keyless { cert, name }),
            (None, None, false, None, Some(_)) => Err(CertificateProblem::KeylessWithoutCert),
            (_, Some(_), false, None, Some(_)) => Err(CertificateProblem::KeylessWithKey),
            (None, None, false, None, None) => Err(CertificateProblem::Missing),
            (Some(_), None, _, _, None) | (None, Some(_), _, _, None) => Err(CertificateProblem::HalfPair),
            _ => Err(CertificateProblem::Both),
        })
    }
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

/// What is wrong with the `[[acme]]` tables on their own: names used twice, a dns-01
/// table without `dns`, a `dns` table without dns-01.
pub fn acme_table_problems(tables: &[Spanned<AcmeConfig>], text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut names = HashSet::new();
    for (i, table) in tables.iter().enumerate() {
        let (acme, at) = (table.get_ref(), line_col(text, table.span().start));
        if !names.insert(acme.name.as_str()) {
            problems.push(format!("{at}: acme[{i}].name \"{}\" is used by two [[acme]] tables", acme.name));
        }
        if !acme.directory.starts_with("https://") {
            problems.push(format!(
                "{at}: acme[{i}].directory \"{}\" is not an https:// URL; give the CA's directory URL",
                acme.directory
            ));
        }
        match (acme.challenge, &acme.dns) {
            (Challenge::Dns01, None) => problems.push(format!(
                "{at}: acme[{i}] has challenge = \"dns-01\" but no dns table; add dns = {{ rfc2136 = {{ ... }} }} or dns = {{ exec = \"PATH\" }}"
            )),
            (Challenge::Http01 | Challenge::TlsAlpn01, Some(_)) => problems.push(format!(
                "{at}: acme[{i}] has a dns table but challenge = \"{}\"; set challenge = \"dns-01\" or drop the dns table",
                acme.challenge
            )),
            _ => {}
        }
    }
    problems
}

/// What keeps a site from getting its certificate through `acme`: a wildcard without
/// dns-01, http-01 without a plain-HTTP listener.
fn site_acme_problems(i: usize, site: &SiteConfig, acme: &AcmeConfig, config: &Config, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if acme.challenge != Challenge::Dns01 {
        for host in site.hosts.iter().filter(|h| h.get_ref().starts_with("*.")) {
            problems.push(format!(
                "{}: site[{i}].hosts entry \"{}\" is a wildcard, which only dns-01 can prove, but [[acme]] \"{}\" uses {}; \
                 use an [[acme]] table with challenge = \"dns-01\"",
                line_col(text, host.span().start),
                host.get_ref(),
                acme.name,
                acme.challenge
            ));
        }
    }
    if acme.challenge == Challenge::Http01 && config.listen.as_ref().is_some_and(|l| l.http.is_none()) {
        problems.push(format!(
            "site[{i}] gets its certificate through [[acme]] \"{}\" with http-01, which is answered on the plain-HTTP \
             listener; add http = \"0.0.0.0:80\" to [listen] or use tls-alpn-01",
            acme.name
        ));
    }
    problems
}

fn default_true() -> bool {
    true
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
    /// Matches this path and the paths below it (`/admin` covers `/admin`,
    /// `/admin/x` and `/admin;p`, not `/administrator`), compared with the
    /// request's canonical path.
    pub path_prefix: String,
    /// Compare the prefix ignoring ASCII case, for origins that ignore it
    /// (IIS, some object stores), so `/ADMIN` is under `/admin`.
    #[serde(default)]
    pub case_insensitive: bool,
    /// Let WebSocket upgrades through on this route (default true); no other
    /// upgrade is ever forwarded.
    #[serde(default = "default_true")]
    pub websocket: bool,
    /// Per-route requirement.
    pub mtls: Option<RouteMtls>,
    /// Upstream (default: the site's).
    pub upstream: Option<Spanned<String>>,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::new(path, vec![format!("cannot read it: {e}")]))?;
        Config::parse(path, &text)
    }

    /// Parses and validates configuration text; `path` is used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config = read::read_tables(text).map_err(|messages| ConfigError::new(path, messages))?;
        let problems = config.validate(text);
        if problems.is_empty() { Ok(config) } else { Err(ConfigError::new(path, problems)) }
    }

    /// Every reason the configuration cannot be served, sites in file order.
    fn validate(&self, text: &str) -> Vec<String> {
        let at = |span: std::ops::Range<usize>| line_col(text, span.start);
        let mut problems = Vec::new();
        let upstream_names: HashSet<&str> = self.upstreams.iter().map(|u| u.name.as_str()).collect();
        if upstream_names.len() != self.upstreams.len() {
            problems.push("two [[upstream]] tables have the same name; give each a unique name".to_owned());
        }
        // One problem per upstream (its first), but every upstream.
        problems.extend(self.upstreams.iter().filter_map(|u| u.check().err()).map(|e| e.to_string()));
        let check_upstream = |u: &Spanned<String>, key: &str, problems: &mut Vec<String>| {
            if !upstream_names.contains(u.get_ref().as_str()) {
                problems.push(format!(
                    "{}: {key} = \"{}\" names no [[upstream]]; define it or fix the name",
                    at(u.span()),
                    u.get_ref()
                ));
            }
        };
        if let Some(storage) = &self.storage
            && let Err(e) = store::StorageUrl::parse(storage.get_ref())
        {
            problems.push(format!("{}: storage: {e}", at(storage.span())));
        }
        if self.sites.is_empty() && self.acme_server.is_none() {
            problems.push(
                "no [[site]] and no [acme_server] is configured; add a site with hosts, certificate and upstream"
                    .to_owned(),
            );
        }
        let mut seen_hosts = HashSet::new();
        for (i, site) in self.sites.iter().enumerate() {
            if site.hosts.is_empty() {
                problems.push(format!("site[{i}].hosts is empty; list the host names this site serves"));
            }
            for host in &site.hosts {
                let name = host.get_ref().to_ascii_lowercase();
                if !is_host_pattern(&name) {
                    problems.push(format!(
                        "{}: site[{i}].hosts entry \"{name}\" is not a host name, IP address or *.wildcard",
                        at(host.span())
                    ));
                } else if !seen_hosts.insert(name.clone()) {
                    problems
                        .push(format!("{}: host \"{name}\" is served by two sites; keep it in one", at(host.span())));
                }
            }
            match site.certificate.source() {
                Err(problem) => problems.push(format!("site[{i}].certificate {problem}")),
                Ok(CertificateSource::Keyless { name, .. }) => {
                    if !self.keyless.iter().any(|k| k.get_ref().name == *name) {
                        problems.push(format!(
                            "site[{i}].certificate.keyless = \"{name}\" names no [[keyless]] table; define it or fix the name"
                        ));
                    }
                }
                Ok(CertificateSource::Acme(name)) => match self.acme_table(name) {
                    None => problems.push(format!(
                        "site[{i}].certificate.acme = \"{name}\" names no [[acme]] table; define it or fix the name"
                    )),
                    Some(acme) => problems.extend(site_acme_problems(i, site, acme.get_ref(), self, text)),
                },
                Ok(_) => {}
            }
            if matches!(site.mtls, MtlsMode::Optional | MtlsMode::Require) {
                match &site.trust {
                    Some(t) if t.internal_ca || !t.ca_files.is_empty() => {}
                    _ => problems.push(format!(
                        "site[{i}] has mtls = \"{}\" but no trust store; add trust = {{ internal_ca = true }} or trust = {{ ca_files = [...] }}",
                        if site.mtls == MtlsMode::Require { "require" } else { "optional" }
                    )),
                }
            }
            if let Some(u) = &site.upstream {
                check_upstream(u, &format!("site[{i}].upstream"), &mut problems);
            }
            for (j, route) in site.routes.iter().enumerate() {
                if !route.path_prefix.starts_with('/') {
                    problems.push(format!(
                        "site[{i}].route[{j}].path_prefix \"{}\" must start with '/'",
                        route.path_prefix
                    ));
                } else {
                    match crate::target::canonical_path(&route.path_prefix) {
                        Ok(None) => {}
                        Ok(Some(canonical)) => problems.push(format!(
                            "site[{i}].route[{j}].path_prefix \"{}\" is not in canonical form; write it as \"{canonical}\" (requests are matched on their canonical path)",
                            route.path_prefix
                        )),
                        Err(e) => problems.push(format!(
                            "site[{i}].route[{j}].path_prefix \"{}\" can never match: {e}",
                            route.path_prefix
                        )),
                    }
                }
                if route.mtls == Some(RouteMtls::Require)
                    && !matches!(site.mtls, MtlsMode::Optional | MtlsMode::Require)
                {
                    problems.push(format!(
                        "site[{i}].route[{j}] requires a client certificate but the site has mtls = off or passthrough; set the site's mtls = \"optional\""
                    ));
                }
                match &route.upstream {
                    Some(u) => check_upstream(u, &format!("site[{i}].route[{j}].upstream"), &mut problems),
                    None if site.upstream.is_none() => {
                        problems.push(format!("site[{i}].route[{j}] has no upstream and the site has none; set one"));
                    }
                    None => {}
                }
            }
            if site.upstream.is_none() && site.routes.iter().all(|r| r.path_prefix != "/") {
                problems.push(format!(
                    "site[{i}] has no upstream for paths no route matches; set site[{i}].upstream or add a route for \"/\""
                ));
            }
        }
        problems.extend(acme_table_problems(&self.acme, text));
        let mut keyless_names = HashSet::new();
        let tunnel = self.listen.as_ref().and_then(|l| l.keyless_tunnel);
        for (i, table) in self.keyless.iter().enumerate() {
            let (keyless, at) = (table.get_ref(), line_col(text, table.span().start));
            if !keyless_names.insert(keyless.name.as_str()) {
                problems
                    .push(format!("{at}: keyless[{i}].name \"{}\" is used by two [[keyless]] tables", keyless.name));
            }
            if keyless.client_cert.is_some() != keyless.client_key.is_some() {
                problems.push(format!("{at}: keyless[{i}] needs both client_cert and client_key, or neither"));
            }
            if keyless.servers.is_empty() && tunnel.is_some() && keyless.server_name.is_none() {
                problems.push(format!(
                    "{at}: keyless[{i}] takes key servers from the tunnel but has no server_name; set the name their \
                     certificates carry (without it any client certificate of the same CA could attach)"
                ));
            }
            if keyless.servers.is_empty() && tunnel.is_none() {
                problems.push(format!(
                    "{at}: keyless[{i}] has no servers and there is no [listen] keyless_tunnel for key servers to \
                     attach to; list servers = [\"IP:PORT\"] or set keyless_tunnel"
                ));
            }
        }
        if let Some(listen) = &self.listen {
            if listen.keyless_tunnel.is_some() && self.keyless.is_empty() {
                problems.push(
                    "listen.keyless_tunnel is set but no [[keyless]] table uses key servers; add one or drop keyless_tunnel"
                        .to_owned(),
                );
            }
            if listen.keyless_tunnel.is_none() && !listen.keyless_tunnel_names.is_empty() {
                problems.push("listen.keyless_tunnel_names without keyless_tunnel; set keyless_tunnel".to_owned());
            }
            for name in &listen.keyless_tunnel_names {
                if !is_host_pattern(name) || name.starts_with("*.") {
                    problems.push(format!("listen.keyless_tunnel_names: {name:?} is not a host name or IP address"));
                }
            }
        }
        if self.limits.max_connections == 0 || self.limits.max_header_bytes < 1024 {
            problems.push("limits: max_connections must be at least 1 and max_header_bytes at least 1024".to_owned());
        }
        problems
    }

    /// The `[[acme]]` table called `name`.
    pub fn acme_table(&self, name: &str) -> Option<&Spanned<AcmeConfig>> {
        self.acme.iter().find(|a| a.get_ref().name == name)
    }

    /// Every file the running configuration reads but site certificates, for reload-on-change
    /// (a site's certificate files are watched by the site, which swaps them in without a reload).
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for site in &self.sites {
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

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"data_dir = "ca"

[listen]
https = "127.0.0.1:8443"

[tls]
min_version = "1.3"

[limits]
max_connections = 10

[identity]
format = "xfcc"

[runtime]
worker_threads = 1

[log]
access = false

[[site]]
hosts = ["a.example"]
certificate = { internal_ca = true }
upstream = "app"

[[site]]
hosts = ["b.example"]
certificate = { internal_ca = true }
upstream = "app"

[[upstream]]
name = "app"
servers = ["http://127.0.0.1:3000"]
"#;

    fn messages(text: &str) -> Vec<String> {
        Config::parse(Path::new("t.toml"), text).expect_err("the config should be refused").messages
    }

    #[test]
    fn every_top_level_key_is_read() {
        let config = Config::parse(Path::new("t.toml"), GOOD).expect("valid config");
        assert_eq!(config.sites.len(), 2);
        assert_eq!(config.identity.format, IdentityFormat::Xfcc);
        let host = &config.sites[1].hosts[0];
        assert_eq!(&GOOD[host.span()], "\"b.example\"", "spans are relative to the whole file");
    }

    #[test]
    fn schema_problems_in_every_table_are_reported_in_file_order() {
        let text = GOOD
            .replace("data_dir = \"ca\"\n", "data_dir = \"ca\"\nbacklog = 5\n")
            .replace("access = false", "access = \"no\"")
            .replacen("upstream = \"app\"\n", "upstream = \"app\"\ncolour = \"blue\"\n", 1)
            .replacen("hosts = [\"b.example\"]\n", "hosts = [\"b.example\", 3]\n", 1)
            .replace("servers = [\"http://127.0.0.1:3000\"]", "servers = \"http://127.0.0.1:3000\"");
        assert_eq!(
            messages(&text),
            [
                "line 2, column 1: backlog: unknown field `backlog`, expected one of `data_dir`, `storage`, `listen`, \
                 `tls`, `limits`, `identity`, `runtime`, `log`, `site`, `upstream`, `acme_server`, `acme`, `keyless`",
                "line 20, column 10: log.access: invalid type: string \"no\", expected a boolean",
                "line 26, column 1: site[0].colour: unknown field `colour`, expected one of `hosts`, `certificate`, \
                 `mtls`, `trust`, `upstream`, `hsts_max_age`, `route`",
                "line 29, column 23: site[1].hosts[1]: invalid type: integer `3`, expected a string",
                "line 35, column 11: upstream[0].servers: invalid type: string \"http://127.0.0.1:3000\", expected a sequence",
            ]
        );
    }

    #[test]
    fn storage_is_a_url_that_names_a_backend() {
        let good = GOOD.replace("data_dir = \"ca\"\n", "data_dir = \"ca\"\nstorage = \"postgres://ca@db:5432/pki\"\n");
        let config = Config::parse(Path::new("t.toml"), &good).expect("valid config");
        assert_eq!(config.storage.map(|s| s.into_inner()).as_deref(), Some("postgres://ca@db:5432/pki"));
        let bad = GOOD.replace("data_dir = \"ca\"\n", "data_dir = \"ca\"\nstorage = \"mysql://ca:pw@db/pki\"\n");
        let found = messages(&bad);
        assert!(
            found.len() == 1
                && found[0].starts_with("line 2, column 11: storage: the storage URL mysql://ca:***@db/pki"),
            "{found:?}"
        );
    }

    #[test]
    fn a_problem_deep_in_a_table_names_its_whole_path() {
        let text = GOOD
            .replacen("upstream = \"app\"\n", "upstream = \"app\"\n[[site.route]]\npath_prefix = \"/\"\n[[site.route]]\npath_prefix = \"/a\"\nmtls = \"sometimes\"\n", 1)
            .replace("hosts = [\"b.example\"]\ncertificate = { internal_ca = true }", "hosts = [\"b.example\"]\ncertificate = { internal_ca = \"yes\" }");
        assert_eq!(
            messages(&text),
            [
                "line 29, column 8: site[0].route[1].mtls: unknown variant `sometimes`, expected `require` or `off`",
                "line 33, column 31: site[1].certificate.internal_ca: invalid type: string \"yes\", expected a boolean",
            ]
        );
    }

    #[test]
    fn a_missing_key_names_its_table() {
        let text =
            GOOD.replacen("hosts = [\"b.example\"]\n", "", 1).replace("[listen]\nhttps = \"127.0.0.1:8443\"\n", "");
        assert_eq!(
            messages(&text),
            [
                "line 24, column 1: site[1]: missing field `hosts`",
                "missing field `listen`; add a [listen] table with https = \"ADDRESS:PORT\"",
            ]
        );
    }

    /// A configuration with one ACME site: `site` and `acme` are the lines of each table.
    fn acme_config(listen: &str, site: &str, acme: &str) -> String {
        format!(
            "[listen]\nhttps = \"127.0.0.1:8443\"\n{listen}\n[[acme]]\nname = \"le\"\n\
             directory = \"https://acme.example/directory\"\n{acme}\n[[site]]\n{site}\nupstream = \"app\"\n\
             [[upstream]]\nname = \"app\"\nservers = [\"http://127.0.0.1:3000\"]\n"
        )
    }

    #[test]
    fn acme_sites_are_checked_against_their_tables() {
        let http = "http = \"127.0.0.1:8080\"";
        let ok = acme_config(http, "hosts = [\"a.test\"]\ncertificate = { acme = \"le\" }", "");
        let config = Config::parse(Path::new("t.toml"), &ok).expect("valid");
        assert_eq!(config.sites[0].certificate.source(), Ok(&CertificateSource::Acme("le".into())));
        assert_eq!(config.acme[0].get_ref().challenge, Challenge::Http01, "http-01 unless told otherwise");

        let wildcard = acme_config(http, "hosts = [\"a.test\", \"*.b.test\"]\ncertificate = { acme = \"le\" }", "");
        assert_eq!(
            messages(&wildcard),
            ["line 9, column 20: site[0].hosts entry \"*.b.test\" is a wildcard, which only dns-01 can prove, but \
                 [[acme]] \"le\" uses http-01; use an [[acme]] table with challenge = \"dns-01\""]
        );
        let unknown = acme_config(http, "hosts = [\"a.test\"]\ncertificate = { acme = \"zerossl\" }", "");
        assert_eq!(
            messages(&unknown),
            ["site[0].certificate.acme = \"zerossl\" names no [[acme]] table; define it or fix the name"]
        );
        let no_http = acme_config("", "hosts = [\"a.test\"]\ncertificate = { acme = \"le\" }", "");
        let found = messages(&no_http);
        assert!(found.len() == 1 && found[0].contains("add http = \"0.0.0.0:80\" to [listen]"), "{found:?}");
        let tls =
            acme_config("", "hosts = [\"a.test\"]\ncertificate = { acme = \"le\" }", "challenge = \"tls-alpn-01\"");
        Config::parse(Path::new("t.toml"), &tls).expect("tls-alpn-01 needs no plain-HTTP listener");
        let no_dns =
            acme_config(http, "hosts = [\"*.b.test\"]\ncertificate = { acme = \"le\" }", "challenge = \"dns-01\"");
        let found = messages(&no_dns);
        assert!(found.len() == 1 && found[0].contains("challenge = \"dns-01\" but no dns table"), "{found:?}");
        let both = acme_config(http, "hosts = [\"a.test\"]\ncertificate = { acme = \"le\", internal_ca = true }", "");
        assert_eq!(
            messages(&both),
            ["site[0].certificate has more than one of files, internal_ca = true and acme; choose one"]
        );
        let bad_challenge =
            acme_config(http, "hosts = [\"a.test\"]\ncertificate = { acme = \"le\" }", "challenge = \"dns\"");
        let found = messages(&bad_challenge);
        assert!(found.len() == 1 && found[0].contains("acme[0].challenge: unknown variant `dns`"), "{found:?}");
    }

    #[test]
    fn keyless_sites_name_their_table_and_give_no_key() {
        let config = |certificate: &str, table: &str| {
            format!(
                "[listen]\nhttps = \"127.0.0.1:8443\"\n[[keyless]]\nname = \"ks\"\nservers = [\"127.0.0.1:2407\"]\n{table}\n\
                 [[site]]\nhosts = [\"a.test\"]\ncertificate = {certificate}\nupstream = \"app\"\n\
                 [[upstream]]\nname = \"app\"\nservers = [\"http://127.0.0.1:3000\"]\n"
            )
        };
        let ok =
            Config::parse(Path::new("t.toml"), &config("{ cert = \"a.pem\", keyless = \"ks\" }", "")).expect("valid");
        assert_eq!(
            ok.sites[0].certificate.source(),
            Ok(&CertificateSource::Keyless { cert: "a.pem".into(), name: "ks".into() })
        );
        assert_eq!(ok.keyless[0].get_ref().timeout_ms, 2000);
        for (certificate, table, message) in [
            (
                "{ cert = \"a.pem\", keyless = \"other\" }",
                "",
                "site[0].certificate.keyless = \"other\" names no [[keyless]] table; define it or fix the name",
            ),
            (
                "{ keyless = \"ks\" }",
                "",
                "site[0].certificate has keyless but no cert; give the site's certificate chain as cert",
            ),
            (
                "{ cert = \"a.pem\", key = \"a.key\", keyless = \"ks\" }",
                "",
                "site[0].certificate has keyless and a key; a keyless site's key stays on the key server, drop key",
            ),
            (
                "{ cert = \"a.pem\", keyless = \"ks\" }",
                "client_cert = \"gw.crt\"",
                "line 3, column 1: keyless[0] needs both client_cert and client_key, or neither",
            ),
        ] {
            assert_eq!(messages(&config(certificate, table)), [message], "{certificate} {table}");
        }
        let unknown = messages(&config("{ cert = \"a.pem\", keyless = \"ks\" }", "retries = 3"));
        assert!(
            unknown.len() == 1 && unknown[0].contains("keyless[0].retries: unknown field `retries`"),
            "{unknown:?}"
        );
    }

    #[test]
    fn key_servers_are_listed_or_attach_through_the_tunnel() {
        let config = |listen: &str, servers: &str, tables: bool| {
            let table =
                if tables { format!("[[keyless]]\nname = \"ks\"\nservers = {servers}\n") } else { String::new() };
            let certificate =
                if tables { "{ cert = \"a.pem\", keyless = \"ks\" }" } else { "{ cert = \"a.pem\", key = \"a.key\" }" };
            format!(
                "[listen]\nhttps = \"127.0.0.1:8443\"\n{listen}\n{table}\
                 [[site]]\nhosts = [\"a.test\"]\ncertificate = {certificate}\nupstream = \"app\"\n\
                 [[upstream]]\nname = \"app\"\nservers = [\"http://127.0.0.1:3000\"]\n"
            )
        };
        let tunnel = "keyless_tunnel = \"127.0.0.1:2408\"\nkeyless_tunnel_names = [\"edge.example.com\"]";
        assert_eq!(
            messages(&config(tunnel, "[]", true)),
            ["line 5, column 1: keyless[0] takes key servers from the tunnel but has no server_name; set the name \
              their certificates carry (without it any client certificate of the same CA could attach)"]
        );
        let ok = Config::parse(Path::new("t.toml"), &config(tunnel, "[]\nserver_name = \"keys.internal\"", true))
            .expect("valid");
        let listen = ok.listen.expect("listen");
        assert_eq!(listen.keyless_tunnel, Some("127.0.0.1:2408".parse().unwrap()));
        assert_eq!(listen.keyless_tunnel_names, ["edge.example.com"]);
        assert_eq!(
            messages(&config("", "[]", true)),
            ["line 4, column 1: keyless[0] has no servers and there is no [listen] keyless_tunnel for key servers \
              to attach to; list servers = [\"IP:PORT\"] or set keyless_tunnel"]
        );
        assert_eq!(
            messages(&config(tunnel, "[]", false)),
            ["listen.keyless_tunnel is set but no [[keyless]] table uses key servers; add one or drop keyless_tunnel"]
        );
        let bad_name = "keyless_tunnel = \"127.0.0.1:2408\"\nkeyless_tunnel_names = [\"*.example.com\", \"a b\"]";
        assert_eq!(messages(&config(bad_name, "[\"127.0.0.1:2407\"]", true)).len(), 2);
        assert_eq!(
            messages(&config("keyless_tunnel_names = [\"edge\"]", "[\"127.0.0.1:2407\"]", true)),
            ["listen.keyless_tunnel_names without keyless_tunnel; set keyless_tunnel"]
        );
    }

    #[test]
    fn a_syntax_error_is_the_only_one() {
        let text = GOOD.replace("worker_threads = 1", "worker_threads = ").replace("access = false", "colour = 1");
        let found = messages(&text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("line 16, column 18: "), "{found:?}");
    }

    #[test]
    fn every_semantic_problem_is_reported() {
        let text = GOOD
            .replacen("upstream = \"app\"\n", "upstream = \"app\"\n[[site.route]]\npath_prefix = \"api\"\n", 1)
            .replace("hosts = [\"b.example\"]", "hosts = [\"a.example\"]")
            .replacen("upstream = \"app\"\n\n[[upstream]]", "upstream = \"nowhere\"\n\n[[upstream]]", 1)
            .replace("servers = [\"http://127.0.0.1:3000\"]", "servers = []");
        assert_eq!(
            messages(&text),
            [
                "upstream \"app\": servers is empty; list at least one URL",
                "site[0].route[0].path_prefix \"api\" must start with '/'",
                "line 29, column 10: host \"a.example\" is served by two sites; keep it in one",
                "line 31, column 12: site[1].upstream = \"nowhere\" names no [[upstream]]; define it or fix the name",
            ]
        );
    }

    #[test]
    fn messages_quoting_the_file_stay_one_short_line() {
        let long = "x".repeat(5000);
        let semantic = GOOD.replace("hosts = [\"b.example\"]", "hosts = [\"b\\n.example\"]").replacen(
            "upstream = \"app\"\n",
            &format!("upstream = \"{long}\"\n"),
            1,
        );
        let mut found = messages(&semantic);
        found.extend(messages(&GOOD.replace("format = \"xfcc\"", "format = \"a\\u001b[2Jb\"")));
        assert_eq!(found.len(), 3, "{found:?}");
        for message in &found {
            assert!(!message.chars().any(char::is_control), "{message:?}");
            assert!(message.len() < 500, "{} bytes: {}", message.len(), &message[..100]);
        }
        assert!(found.iter().any(|m| m.contains("b\\n.example")), "{found:?}");
        assert!(found.iter().any(|m| m.ends_with("… (cut)")), "{found:?}");
    }

    #[test]
    fn the_error_shows_one_line_per_problem() {
        let error = ConfigError::new(Path::new("gw.toml"), vec!["one".to_owned(), "two".to_owned()]);
        assert_eq!(error.to_string(), "gw.toml: one\ngw.toml: two");
    }
}
