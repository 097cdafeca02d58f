//! A `[[site]]` table: its host names, where its certificate comes from, its
//! client-certificate mode and trust store, and its routes.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::certificates::CertificateSource;

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

fn default_true() -> bool {
    true
}

fn default_crl_refresh() -> u64 {
    3600
}
