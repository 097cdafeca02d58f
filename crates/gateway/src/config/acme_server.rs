//! `[acme_server]`: the settings of the ACME server (crates/acme) that `gatehouse serve`
//! runs beside, or instead of, the gateway's sites.

use std::net::SocketAddr;

use serde::Deserialize;

/// `[acme_server]`: an RFC 8555 server issuing from the internal CA.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AcmeServerSettings {
    /// Its HTTPS listener; the directory is `https://HOST:PORT/acme/directory`.
    pub listen: SocketAddr,
    /// Port http-01 challenges are fetched from.
    #[serde(default = "default_http_01_port")]
    pub http_01_port: u16,
    /// Port tls-alpn-01 challenges are checked on.
    #[serde(default = "default_tls_alpn_01_port")]
    pub tls_alpn_01_port: u16,
    /// DNS server (`IP:PORT`) for identifiers and dns-01 records; default the system's.
    pub dns_resolver: Option<SocketAddr>,
    /// Names its own TLS certificate carries besides `localhost` and the listen address.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Whether a new account needs an external account binding (`gatehouse ca acme eab new`).
    #[serde(default)]
    pub eab_required: bool,
    /// New orders an account may place per hour.
    #[serde(default = "default_orders_per_hour")]
    pub orders_per_hour: u32,
    /// Failed challenge validations an account may have per hour.
    #[serde(default = "default_failed_validations_per_hour")]
    pub failed_validations_per_hour: u32,
    /// Retry-After of renewal information (RFC 9773), seconds: how soon a client that
    /// follows it sees a revocation. Shorter for short-lived certificates (a tenth of
    /// their lifetime).
    #[serde(default = "default_renewal_info_retry_secs")]
    pub renewal_info_retry_secs: u64,
}

fn default_renewal_info_retry_secs() -> u64 {
    6 * 3600
}

fn default_orders_per_hour() -> u32 {
    300
}

fn default_failed_validations_per_hour() -> u32 {
    60
}

fn default_http_01_port() -> u16 {
    80
}

fn default_tls_alpn_01_port() -> u16 {
    443
}
