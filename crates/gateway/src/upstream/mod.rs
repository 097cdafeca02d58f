//! Upstream pools: the origin servers behind a route, and getting a request
//! to one of them.
//!
//! This module owns, for each `[[upstream]]` table: choosing a server (round
//! robin or least connections, healthy servers only), active health checks,
//! passive ejection of servers that refuse connections, one retry of an
//! idempotent body-less request on another server after a connect failure,
//! keep-alive HTTP/1.1 connections to the origins (plain or TLS verified
//! against the configured CA, with an optional client certificate), and the
//! hand-over of upgraded connections (WebSocket).
//!
//! It does not decide which upstream a request goes to, nor what headers it
//! carries: the proxy prepares the request (Host kept, identity headers set)
//! and this module only sends it.
//!
//! File by step: `config` (the TOML tables and their validation), `tls`
//! (origin trust and client certificate), `connect` (dialling a server),
//! `server` (per-server state), `balance` (the choice), `health` (active
//! checks), `request` (what the origin receives), `pool` (the
//! request path that ties them together), `exchange` (a request waiting for
//! its response, finished in the background if the client leaves), `body`
//! (the response body that gives its connection back).

mod balance;
mod body;
mod config;
mod connect;
mod exchange;
mod health;
mod pool;
mod request;
mod server;
mod tls;

#[cfg(test)]
mod tests;

use http::StatusCode;

use crate::refusal::UpstreamFailure;

pub use body::OriginBody;
pub use config::{Balance, HealthConfig, UpstreamConfig, UpstreamTls};
pub use pool::Pool;

/// Why a request could not be forwarded, or a pool not built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The `[[upstream]]` table is invalid; one sentence naming the upstream and the key.
    #[error("{0}")]
    Config(String),
    /// Every server is down (health checks) or ejected (connect failures).
    #[error("upstream {upstream:?} has no healthy server")]
    NoHealthyServer {
        /// The upstream's name.
        upstream: String,
    },
    /// TCP connect or TLS handshake to the server failed.
    #[error("cannot connect to upstream server {server}: {message}")]
    Connect {
        /// `host:port` of the server.
        server: String,
        /// What failed (the OS or TLS error).
        message: String,
    },
    /// TCP connect plus TLS handshake took longer than `connect_timeout_ms`.
    #[error("connecting to upstream server {server} timed out")]
    Timeout {
        /// `host:port` of the server.
        server: String,
    },
    /// The connection was established but the exchange failed (connection
    /// closed early, malformed response, request body error).
    #[error("upstream server {server} failed the exchange: {message}")]
    Protocol {
        /// `host:port` of the server.
        server: String,
        /// What went wrong.
        message: String,
    },
}

impl UpstreamError {
    /// The status the proxy answers with: 503 when no server is available,
    /// 504 on a connect timeout, 502 when a server failed, 500 for a
    /// configuration error (which `Pool::new` reports, never `forward`).
    pub fn status(&self) -> StatusCode {
        UpstreamFailure::from(self).status()
    }

    /// The request never reached the server: it counts towards passive
    /// ejection and may go to another server.
    fn is_connect_failure(&self) -> bool {
        matches!(self, UpstreamError::Connect { .. } | UpstreamError::Timeout { .. })
    }
}
