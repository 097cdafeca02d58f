//! CRLs published at URLs: fetched when the configuration loads (a site does
//! not start without them), then refreshed at their nextUpdate or every
//! `crl_refresh_secs`, whichever comes first. A failed refresh keeps the last
//! good CRL and says so in the log.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateRevocationListDer;

use crate::trust::{CrlError, TrustStore, parse_crl};

/// Largest CRL accepted (a CRL of 100,000 entries is about 4 MB).
const MAX_CRL_BYTES: usize = 64 * 1024 * 1024;

/// A fetched CRL and its nextUpdate (unix seconds), if it has one.
pub struct Fetched {
    /// The CRL.
    pub crl: CertificateRevocationListDer<'static>,
    /// When its issuer promises the next one.
    pub next_update: Option<i64>,
}

/// Why a CRL URL gave no CRL; the message names the URL.
#[derive(Debug, thiserror::Error)]
pub enum CrlFetchError {
    /// The URL does not parse.
    #[error("CRL URL {url} is not a URL: {source}")]
    NotAUrl {
        /// The URL as configured.
        url: String,
        /// What the URI parser said.
        source: http::uri::InvalidUri,
    },
    /// Not `http://`.
    #[error("CRL URL {url} must be http:// (CRLs are signed, so they are published over plain HTTP)")]
    NotHttp {
        /// The URL as configured.
        url: String,
    },
    /// No response head within 10 s.
    #[error("CRL URL {url} did not answer within 10 s")]
    TimedOut {
        /// The URL as configured.
        url: String,
    },
    /// Connecting or sending failed.
    #[error("cannot fetch the CRL {url}: {source}")]
    Fetch {
        /// The URL as configured.
        url: String,
        /// What the HTTP client said.
        source: hyper_util::client::legacy::Error,
    },
    /// An answer other than 2xx.
    #[error("CRL URL {url} answered {status}")]
    Status {
        /// The URL as configured.
        url: String,
        /// The status.
        status: http::StatusCode,
    },
    /// The body broke off or is over the size limit.
    #[error("cannot read the CRL {url}: {source}")]
    Body {
        /// The URL as configured.
        url: String,
        /// What the body reader said.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The body is not a CRL.
    #[error("{url}: {source}")]
    Crl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        source: CrlError,
    },
}

/// Fetches and parses one CRL over HTTP.
pub async fn fetch(url: &str) -> Result<Fetched, CrlFetchError> {
    let url_owned = || url.to_owned();
    let uri: http::Uri = url.parse().map_err(|source| CrlFetchError::NotAUrl { url: url_owned(), source })?;
    if uri.scheme_str() != Some("http") {
        return Err(CrlFetchError::NotHttp { url: url_owned() });
    }
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let response = tokio::time::timeout(Duration::from_secs(10), client.get(uri))
        .await
        .map_err(|_| CrlFetchError::TimedOut { url: url_owned() })?
        .map_err(|source| CrlFetchError::Fetch { url: url_owned(), source })?;
    if !response.status().is_success() {
        return Err(CrlFetchError::Status { url: url_owned(), status: response.status() });
    }
    let body = Limited::new(response.into_body(), MAX_CRL_BYTES)
        .collect()
        .await
        .map_err(|source| CrlFetchError::Body { url: url_owned(), source })?
        .to_bytes();
    let crl = parse_crl(&body).map_err(|source| CrlFetchError::Crl { url: url_owned(), source })?;
    let next_update = x509_parser::parse_x509_crl(&crl).ok().and_then(|(_, c)| c.next_update()).map(|t| t.timestamp());
    Ok(Fetched { crl, next_update })
}

/// Refreshes the trust store's URL CRLs until the store is dropped.
pub fn spawn_refresh(trust: &Arc<TrustStore>, refresh_secs: u64, mut next_updates: Vec<Option<i64>>) {
    if trust.crl_urls.is_empty() {
        return;
    }
    let weak = Arc::downgrade(trust);
    tokio::spawn(async move {
        loop {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let soonest = next_updates.iter().flatten().map(|t| (t - now).max(5) as u64).min().unwrap_or(refresh_secs);
            tokio::time::sleep(Duration::from_secs(soonest.min(refresh_secs).max(1))).await;
            let Some(trust) = weak.upgrade() else { return };
            let mut crls = Vec::new();
            let mut updates = Vec::new();
            let mut ok = true;
            for url in &trust.crl_urls {
                match fetch(url).await {
                    Ok(f) => {
                        crls.push(f.crl);
                        updates.push(f.next_update);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "CRL refresh failed; keeping the last good CRLs");
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                match trust.set_url_crls(crls) {
                    Ok(()) => next_updates = updates,
                    Err(e) => tracing::warn!(error = %e, "refreshed CRLs unusable; keeping the last good ones"),
                }
            }
        }
    });
}
