//! The error of the gateway's public API ([`Gateway`](crate::Gateway) and
//! [`Runtime`](crate::sites::Runtime)): building what a configuration
//! describes, reloading it, listening. Each variant's message is a sentence
//! that names the file, site, URL or address at fault.

use std::net::SocketAddr;

use crate::certificates::CertificateError;
use crate::config::{CertificateProblem, ConfigError};
use crate::crl_fetch::CrlFetchError;
use crate::trust::{TrustError, TrustStoreError};
use crate::upstream::UpstreamError;

/// Why the gateway cannot start, reload or listen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file, read again for a reload, is invalid: every problem on one line.
    #[error("{}: {}", .0.path.display(), .0.messages.join("; "))]
    Config(ConfigError),
    /// A reload was asked of a gateway started without a configuration file.
    #[error("this gateway has no configuration file to reload")]
    NoConfigFile,
    /// The configuration has sites but no `[listen]` table.
    #[error("the configuration has no [listen] table; add one with https = \"ADDRESS:PORT\"")]
    NoListener,
    /// A site's `certificate` table names no source.
    #[error("site[{site}].certificate {problem}")]
    CertificateTable {
        /// The site's position in the configuration.
        site: usize,
        /// What is wrong with the table.
        problem: CertificateProblem,
    },
    /// A site's certificate cannot be loaded.
    #[error("site[{site}] certificate: {source}")]
    Certificate {
        /// The site's position in the configuration.
        site: usize,
        /// Why.
        source: CertificateError,
    },
    /// A trust store's CA or CRL file cannot be read.
    #[error(transparent)]
    TrustFile(#[from] TrustError),
    /// A trust store cannot be built from what it was given.
    #[error(transparent)]
    TrustStore(#[from] TrustStoreError),
    /// `trust = { internal_ca = true }` and no CA in the data dir.
    #[error("a trust store has internal_ca = true but there is no CA in the data dir")]
    NoInternalCa,
    /// A trust store's CRL URL gives no CRL.
    #[error(transparent)]
    CrlFetch(#[from] CrlFetchError),
    /// An `[[upstream]]` table is invalid or its TLS files unusable.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// rustls refuses the TLS versions of `tls.min_version`.
    #[error("TLS versions: {0}")]
    TlsVersions(rustls::Error),
    /// A listener cannot be bound.
    #[error("cannot listen on {addr}: {source}; is another server using it?")]
    Listen {
        /// The address of `[listen]`.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// An `[[acme]]` table names a file that cannot be used.
    #[error("acme \"{name}\": {problem}")]
    AcmeTable {
        /// The table's name.
        name: String,
        /// What is wrong, naming the file.
        problem: String,
    },
    /// A `[[keyless]]` table's key servers cannot be set up (a file, the internal CA).
    #[error("{0}")]
    Keyless(String),
    /// The bound HTTPS listener has no local address.
    #[error(transparent)]
    ListenerAddress(std::io::Error),
}
