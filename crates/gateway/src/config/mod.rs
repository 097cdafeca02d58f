//! The gateway configuration file (TOML): listeners, sites, routes, trust
//! stores, upstream pools, limits. Unknown keys are errors; every error names
//! the key and the line, and one run reports every error: the document is
//! read table by table (each `[[site]]` and `[[upstream]]` on its own), then
//! validated as a whole, so a config that loads is a config that can be served.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::acme_client::AcmeConfig;
use crate::keyless::KeylessConfig;
use crate::upstream::UpstreamConfig;

mod acme_server;
mod error;
mod read;
mod settings;
mod site;
mod validate;

pub use acme_server::AcmeServerSettings;
pub use error::ConfigError;
pub use settings::{
    IdentityFormat, IdentitySettings, Limits, Listen, LogSettings, RuntimeSettings, TlsSettings, TlsVersion,
};
pub use site::{CertificateConfig, CertificateProblem, MtlsMode, RouteConfig, RouteMtls, SiteConfig, TrustConfig};
pub use validate::acme_table_problems;

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
mod tests;
