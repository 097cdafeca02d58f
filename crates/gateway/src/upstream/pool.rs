//! The request path through a pool: pick a server, send over an idle
//! keep-alive connection or a new one, retry a replayable request once on
//! another server after a connect failure, and hand the connection back when
//! the response body is done.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tracing::debug;

use super::UpstreamError;
use super::balance::Balancer;
use super::body::{Lease, OriginBody};
use super::config::{self, HealthCheck, UpstreamConfig};
use super::connect::{Connection, Connector};
use super::exchange::Exchange;
use super::health;
use super::request::Outgoing;
use super::server::{Ejection, InFlight, Server};
use super::tls::OriginTls;
use crate::metrics::DurationHistogram;

/// A connection idle for less than this is taken to be open: origins close
/// idle connections after seconds (nginx 75, Node.js 5, gunicorn 2), so a
/// request on it is not kept for a second attempt. One idle for longer may
/// be closed by the origin as the request goes out, so a copy is kept.
pub(super) const REUSE_RACE: Duration = Duration::from_secs(1);

/// One upstream: its servers, their state and their connections.
///
/// Shared as `Arc<Pool>`; a reload keeps the pool of an `[[upstream]]` it
/// leaves unchanged (see `sites::Runtime::rebuild`) and builds a new one for a
/// changed table; a pool's health checks stop when its last `Arc` is dropped.
pub struct Pool {
    pub(super) name: Arc<str>,
    pub(super) servers: Vec<Arc<Server>>,
    balancer: Balancer,
    pub(super) connector: Connector,
    health: Option<HealthCheck>,
    health_started: AtomicBool,
    /// How long opening a connection for a request takes, per [`Pool::with_connect_durations`].
    connect_durations: DurationHistogram,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<&str> = self.servers.iter().map(|s| s.authority()).collect();
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("servers", &servers)
            .field("healthy", &self.healthy())
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// Validates `config` and reads its TLS files (relative paths against `base_dir`).
    pub fn new(config: &UpstreamConfig, base_dir: &Path) -> Result<Pool, UpstreamError> {
        let checked = config::check(config)?;
        let tls = config.tls.as_ref().map(|t| OriginTls::load(&config.name, t, base_dir)).transpose()?;
        let name: Arc<str> = Arc::from(config.name.as_str());
        let ejection = Ejection { max_fails: config.max_fails, fail_timeout: checked.fail_timeout };
        let mut servers = Vec::with_capacity(checked.servers.len());
        for (i, addr) in checked.servers.into_iter().enumerate() {
            let tls_name = match (&tls, addr.tls) {
                (Some(tls), true) => Some(tls.name_for(&config.name, i, &addr)?),
                _ => None,
            };
            // Health checks ask for the virtual host the origin certificate names, if configured.
            let check_host = match (&config.tls, addr.tls) {
                (Some(t), true) => t.server_name.clone(),
                _ => None,
            }
            .unwrap_or_else(|| addr.authority.clone());
            servers.push(Arc::new(Server::new(Arc::clone(&name), addr, tls_name, check_host, ejection)));
        }
        Ok(Pool {
            name,
            servers,
            balancer: Balancer::new(config.balance),
            connector: Connector { tls, timeout: checked.connect_timeout },
            health: checked.health,
            health_started: AtomicBool::new(false),
            connect_durations: DurationHistogram::default(),
        })
    }

    /// Observes in `histogram` how long each connection opened for a request takes to
    /// open (TCP, TLS, HTTP/1.1 handshake); a pool not given one counts for nobody.
    pub fn with_connect_durations(self, histogram: DurationHistogram) -> Pool {
        Pool { connect_durations: histogram, ..self }
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts the active health checks, if configured, on the current tokio
    /// runtime. They stop once the last `Arc<Pool>` is dropped. A second call
    /// does nothing.
    pub fn spawn_health_checks(self: &Arc<Self>) {
        let Some(check) = self.health.clone() else {
            return;
        };
        if self.health_started.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(health::run(Arc::downgrade(self), check));
    }

    /// Sends `req` to one available server and returns the response with
    /// the server's `host:port`.
    ///
    /// The request goes out as HTTP/1.1 in origin form (`/path?query`) with
    /// its headers as given; a request without Host gets its URI authority,
    /// or the server's. A connect failure counts towards the server's
    /// ejection; an idempotent request without a body is then sent once more,
    /// to another server.
    ///
    /// The server counts the request as in flight (least connections) until
    /// the response body is finished or dropped; after a `101 Switching
    /// Protocols`, until the upgraded connection is dropped. To tunnel an
    /// upgrade, take `hyper::upgrade::on(&mut downstream_request)` before
    /// calling this, and `hyper::upgrade::on(&mut response)` after.
    ///
    /// With `finish_if_cancelled`, a request whose caller gives up before the
    /// response head is finished in the background and its connection kept
    /// (see `exchange`); worth its allocation for HTTP/2 clients, which can
    /// cancel a request without closing their connection.
    pub async fn forward(
        &self,
        req: Request<Incoming>,
        finish_if_cancelled: bool,
    ) -> Result<(Response<OriginBody>, String), UpstreamError> {
        let mut out = Outgoing::new(req);
        out.finish_if_cancelled = finish_if_cancelled;
        let first = self.pick(None)?;
        let error = match self.attempt(first, &mut out).await {
            Ok(response) => return Ok((response, self.servers[first].authority().to_owned())),
            Err(error) => error,
        };
        if !(error.is_connect_failure() && out.can_send_again()) {
            return Err(error);
        }
        let Ok(second) = self.pick(Some(first)) else {
            return Err(error);
        };
        let server = &self.servers[second];
        debug!(upstream = %self.name, server = %server.authority(), %error, "retrying on another server");
        let response = self.attempt(second, &mut out).await?;
        Ok((response, server.authority().to_owned()))
    }

    /// Servers that may be picked now: up by health checks and not ejected.
    pub fn healthy(&self) -> usize {
        self.servers.iter().filter(|s| s.available()).count()
    }

    /// Servers configured.
    pub fn servers(&self) -> usize {
        self.servers.len()
    }

    fn pick(&self, exclude: Option<usize>) -> Result<usize, UpstreamError> {
        self.balancer
            .pick(&self.servers, exclude)
            .ok_or_else(|| UpstreamError::NoHealthyServer { upstream: self.name.to_string() })
    }

    /// One try on `servers[index]`: an idle connection if one is open, else
    /// (or when a long-idle one fails under a replayable request) a new one.
    async fn attempt(&self, index: usize, out: &mut Outgoing) -> Result<Response<OriginBody>, UpstreamError> {
        let server = &self.servers[index];
        let mut in_flight = server.begin();
        while let Some((mut conn, idle_for)) = server.take_idle() {
            // The origin may close a connection that sat idle just as the request
            // goes out; only then is a copy kept to send the request again.
            let keep_copy = idle_for >= REUSE_RACE;
            let req = out.take(server.authority(), keep_copy).ok_or_else(|| already_sent(server))?;
            let sent = conn.sender.try_send_request(req);
            let (outcome, conn, back) = if out.finish_if_cancelled {
                Exchange::new(sent, server, conn, in_flight, Result::ok).await
            } else {
                (sent.await, conn, in_flight)
            };
            in_flight = back;
            match outcome {
                Ok(response) => return Ok(hand_back(server, conn, response, in_flight)),
                Err(mut e) => {
                    if let Some(req) = e.take_message() {
                        // Closed before any of the request was written.
                        out.give_back(req);
                        continue;
                    }
                    if !out.can_send_again() {
                        return Err(exchange_failed(server, &e.into_error()));
                    }
                    // Most likely the origin closed the idle connection as the
                    // request went out. An idempotent request may be sent again,
                    // once, on a new connection: not on the next idle one, so a
                    // request that crashes the origin is not sent to every connection.
                    debug!(upstream = %self.name, server = %server.authority(), error = %e.into_error(), "reused connection failed");
                    break;
                }
            }
        }
        let opening = Instant::now();
        // Boxed: opening a connection (TCP, TLS, the HTTP/1.1 handshake) is a large future
        // that most requests never run; inline, every request's future would carry its
        // size, and move it at each await above.
        let mut conn = match Box::pin(self.connector.connect(server)).await {
            Ok(conn) => {
                self.connect_durations.observe(opening.elapsed());
                server.connect_succeeded();
                conn
            }
            Err(error) => {
                server.connect_failed(&error.to_string());
                return Err(error);
            }
        };
        let req = out.take(server.authority(), false).ok_or_else(|| already_sent(server))?;
        let sent = conn.sender.send_request(req);
        let (outcome, conn, in_flight) = if out.finish_if_cancelled {
            Exchange::new(sent, server, conn, in_flight, Result::ok).await
        } else {
            (sent.await, conn, in_flight)
        };
        match outcome {
            Ok(response) => Ok(hand_back(server, conn, response, in_flight)),
            Err(e) => Err(exchange_failed(server, &e)),
        }
    }
}

/// The response, with its connection leased to its body until the body ends.
fn hand_back(
    server: &Arc<Server>,
    conn: Connection,
    response: Response<Incoming>,
    in_flight: InFlight,
) -> Response<OriginBody> {
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        conn.hold_until_closed(in_flight);
        return response.map(OriginBody::unleased);
    }
    let server = Arc::clone(server);
    response.map(|body| OriginBody::new(body, Lease { server, conn, in_flight }))
}

fn exchange_failed(server: &Server, error: &hyper::Error) -> UpstreamError {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    UpstreamError::Protocol { server: server.authority().to_owned(), message }
}

fn already_sent(server: &Server) -> UpstreamError {
    UpstreamError::Protocol {
        server: server.authority().to_owned(),
        message: "the request was already sent and cannot be sent again".to_owned(),
    }
}
