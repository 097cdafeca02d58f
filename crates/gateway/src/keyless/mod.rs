//! Keyless sites: `certificate = { cert = "site.fullchain.pem", keyless = "NAME" }`.
//! The gateway holds the certificate only; each full handshake's signature is made
//! by a key server (gatehouse's `keyserver`, or any server of the gokeyless
//! protocol, see the `keyless` crate) named by a `[[keyless]]` table.
//!
//! - [`KeyServers`]: the servers of a table, each behind one multiplexed mTLS
//!   connection ([`connection`]), tried in turn from a rotating start: a server
//!   that fails at the transport is skipped for [`RETRY_AFTER`], and a request it
//!   failed is sent once to the next (the protocol's advice). A server that
//!   answers key-not-found passes the request on to the next, so the servers of
//!   one table (attached through the tunnel by several key owners, say) need not
//!   all hold every key.
//! - [`signer`]: the rustls signing key of a keyless site.
//!
//! # Signing off the event loop
//! rustls asks for a signature synchronously, in the middle of the handshake
//! (rustls issue #1976). The key-server connections run on a runtime of their own
//! (one thread, `gatehouse-keyless`); a handshake that needs a signature sends its
//! request there and waits for the answer inside `tokio::task::block_in_place`, so
//! the worker it ran on hands its other connections to another thread meanwhile
//! and nothing else stalls. We chose this over a signing pool of our own: tokio's
//! blocking threads are that pool (bounded by the runtime's blocking-thread limit),
//! and no handshake state has to move between threads. It needs the multi-thread
//! runtime, which `gatehouse serve` uses whenever a `[[keyless]]` table exists.
//! Resumed sessions sign nothing and never reach a key server.

mod connection;
pub mod signer;
pub mod tunnel;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use keyless::{ErrorCode, KeySelector, Message, Opcode, Ski};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use serde::Deserialize;
use tokio_rustls::TlsConnector;

use connection::Connection;

/// How long a server that failed at the transport is passed over.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);

/// A `[[keyless]]` table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct KeylessConfig {
    /// What sites call it.
    pub name: String,
    /// Key servers, `IP:PORT` (2407 is the protocol's port).
    pub servers: Vec<SocketAddr>,
    /// PEM roots the key servers' certificates are checked with (default: the internal CA).
    pub ca: Option<PathBuf>,
    /// The name the key servers' certificates must carry (default: the server's IP address).
    pub server_name: Option<String>,
    /// The gateway's client certificate chain (default: issued by the internal CA).
    pub client_cert: Option<PathBuf>,
    /// Its key.
    pub client_key: Option<PathBuf>,
    /// How long one signature may take, retry included, milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    2000
}

/// Why a signature could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeylessError {
    /// No key server could be reached, or none answered in time.
    #[error("keyless_unavailable: {0}")]
    Unavailable(String),
    /// The key server answered with an error code.
    #[error("keyless_error:{}: {}", .0.name(), .0.meaning())]
    Server(ErrorCode),
    /// The table's files cannot be used.
    #[error("{0}")]
    Config(String),
}

impl KeylessError {
    /// The refusal's label in logs and metrics: `keyless_unavailable` or `keyless_error:CODE`.
    pub fn label(&self) -> String {
        match self {
            KeylessError::Unavailable(_) | KeylessError::Config(_) => "keyless_unavailable".to_owned(),
            KeylessError::Server(code) => format!("keyless_error:{}", code.name()),
        }
    }
}

/// One key server and its connection, if open.
struct Server {
    addr: SocketAddr,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
    failed_at: Mutex<Option<Instant>>,
}

/// The key servers of a `[[keyless]]` table.
pub struct KeyServers {
    name: String,
    servers: Vec<Server>,
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
    timeout: Duration,
    next: AtomicUsize,
    /// Checks the client certificate of a key server that dials in (the table's trust).
    verifier: Arc<dyn ClientCertVerifier>,
    /// Key servers attached through the tunnel (see [`tunnel`]).
    attached: Mutex<Vec<Arc<Connection>>>,
}

/// The runtime the key-server connections live on.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("gatehouse-keyless")
            .enable_all()
            .build()
            .expect("the keyless runtime starts")
    })
}

impl KeyServers {
    /// The servers of `table`, with the TLS identity it names (or the internal CA's
    /// roots and client certificate, given as `internal`).
    pub fn new(
        table: &KeylessConfig,
        base_dir: &Path,
        provider: &Arc<rustls::crypto::CryptoProvider>,
        internal: Option<InternalIdentity>,
    ) -> Result<KeyServers, KeylessError> {
        let resolve = |p: &Path| if p.is_absolute() { p.to_owned() } else { base_dir.join(p) };
        let config_error = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
            KeylessError::Config(format!("keyless \"{}\": {what} {}: {e}", table.name, path.display()))
        };
        let mut roots = rustls::RootCertStore::empty();
        match (&table.ca, &internal) {
            (Some(ca), _) => {
                let path = resolve(ca);
                let certs: Vec<CertificateDer<'static>> =
                    pki::read_pem_file(&path).map_err(|e| config_error("ca", &path, &e))?;
                for cert in certs {
                    roots.add(cert).map_err(|e| config_error("ca", &path, &e))?;
                }
            }
            (None, Some(identity)) => {
                roots.add(identity.root.clone()).map_err(|e| KeylessError::Config(e.to_string()))?;
            }
            (None, None) => {
                return Err(KeylessError::Config(format!(
                    "keyless \"{}\" has no ca and there is no internal CA to trust the key servers with; set ca",
                    table.name
                )));
            }
        }
        let (chain, key) = match (&table.client_cert, &table.client_key, internal) {
            (Some(cert), Some(key), _) => {
                let (cert, key) = (resolve(cert), resolve(key));
                let chain: Vec<CertificateDer<'static>> =
                    pki::read_pem_file(&cert).map_err(|e| config_error("client_cert", &cert, &e))?;
                let private: PrivateKeyDer<'static> =
                    pki::read_first_pem_file(&key).map_err(|e| config_error("client_key", &key, &e))?;
                (chain, private)
            }
            (None, None, Some(identity)) => (identity.chain, identity.key),
            (None, None, None) => {
                return Err(KeylessError::Config(format!(
                    "keyless \"{}\" has no client_cert and there is no internal CA to issue one; set client_cert and client_key",
                    table.name
                )));
            }
            _ => {
                return Err(KeylessError::Config(format!(
                    "keyless \"{}\" needs both client_cert and client_key",
                    table.name
                )));
            }
        };
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots.clone()), provider.clone())
            .build()
            .map_err(|e| KeylessError::Config(format!("keyless \"{}\": ca: {e}", table.name)))?;
        let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| KeylessError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| KeylessError::Config(format!("keyless \"{}\": client certificate: {e}", table.name)))?;
        let server_name =
            match &table.server_name {
                Some(name) => Some(ServerName::try_from(name.clone()).map_err(|e| {
                    KeylessError::Config(format!("keyless \"{}\": server_name {name:?}: {e}", table.name))
                })?),
                None => None,
            };
        Ok(KeyServers {
            name: table.name.clone(),
            servers: table
                .servers
                .iter()
                .map(|&addr| Server { addr, connection: tokio::sync::Mutex::new(None), failed_at: Mutex::new(None) })
                .collect(),
            connector: TlsConnector::from(Arc::new(tls)),
            server_name,
            timeout: Duration::from_millis(table.timeout_ms.max(1)),
            next: AtomicUsize::new(0),
            verifier,
            attached: Mutex::default(),
        })
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a key server with the certificate `chain` (leaf first) may serve this
    /// table through the tunnel (see [`KeyServers::admits`]).
    pub fn trusts(&self, chain: &[CertificateDer<'static>]) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else { return false };
        self.admits(leaf, intermediates, rustls::pki_types::UnixTime::now()).is_ok()
    }

    /// Admits a key server dialling in through the tunnel: its certificate chains to
    /// the table's trust and names the table's `server_name`. The name is what sets a
    /// key server apart from any other client certificate of the same CA (the internal
    /// CA also issues the users' certificates); a table without one admits none.
    fn admits(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let not_for_name = || rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
        let name = self.server_name.as_ref().ok_or_else(not_for_name)?;
        let verified = self.verifier.verify_client_cert(leaf, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(leaf)
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        cert.verify_is_valid_for_subject_name(name).map_err(|_| not_for_name())?;
        Ok(verified)
    }

    /// Adds a key server attached through the tunnel.
    fn attach(&self, connection: Arc<Connection>) {
        let mut attached = self.attached.lock().unwrap_or_else(PoisonError::into_inner);
        attached.retain(|c| c.is_open());
        attached.push(connection);
    }

    /// The attached key servers still there.
    fn attached(&self) -> Vec<Arc<Connection>> {
        let mut attached = self.attached.lock().unwrap_or_else(PoisonError::into_inner);
        attached.retain(|c| c.is_open());
        attached.clone()
    }

    /// How many key servers the table has now, for the metrics.
    pub fn counts(&self) -> ServerCounts {
        ServerCounts {
            listed: self.servers.len(),
            listed_up: self.servers.iter().filter(|s| !s.failed_lately()).count(),
            attached: self.attached().len(),
        }
    }

    /// Has the key of `ski` sign `payload` with `opcode`, from a synchronous caller (a
    /// rustls handshake): the request goes out on the keyless runtime while this thread
    /// waits, off the event loop when it is on one (see the module docs).
    pub fn sign_blocking(
        self: &Arc<Self>,
        opcode: Opcode,
        ski: Ski,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, KeylessError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let servers = self.clone();
        runtime().spawn(async move {
            let _ = tx.send(servers.sign(opcode, ski, payload).await);
        });
        let timeout = self.timeout + Duration::from_millis(200);
        let wait = move || {
            rx.recv_timeout(timeout).unwrap_or_else(|_| {
                Err(KeylessError::Unavailable(format!("no answer within {} ms", timeout.as_millis())))
            })
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    /// Has the key of `ski` sign `payload` with `opcode`: the servers in turn, a server
    /// that fails at the transport skipped next time, within the table's timeout.
    pub async fn sign(&self, opcode: Opcode, ski: Ski, payload: Vec<u8>) -> Result<Vec<u8>, KeylessError> {
        let request = Message::request(0, opcode, KeySelector::Ski(ski), payload);
        match tokio::time::timeout(self.timeout, self.call(request)).await {
            Ok(answer) => answer,
            Err(_) => Err(KeylessError::Unavailable(format!(
                "no key server of \"{}\" answered within {} ms",
                self.name,
                self.timeout.as_millis()
            ))),
        }
    }

    /// Sends a ping to every server; how many answered.
    pub async fn ping_all(&self) -> usize {
        let mut answered = 0;
        for server in &self.servers {
            if let Ok(answer) = self.call_one(server, Message::ping(0, b"health".to_vec())).await
                && answer.opcode == Some(Opcode::Pong)
            {
                answered += 1;
            }
        }
        answered
    }

    async fn call(&self, request: Message) -> Result<Vec<u8>, KeylessError> {
        let attached = self.attached();
        let total = self.servers.len() + attached.len();
        if total == 0 {
            let why = if self.servers.is_empty() {
                format!("keyless \"{}\" has no key server: none listed, none attached through the tunnel", self.name)
            } else {
                format!("keyless \"{}\" has no key server", self.name)
            };
            return Err(KeylessError::Unavailable(why));
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let order = (0..total).map(|i| match (start + i) % total {
            n if n < self.servers.len() => Target::Dialled(&self.servers[n]),
            n => Target::Attached(&attached[n - self.servers.len()]),
        });
        // Servers that failed lately go last, not away: they may be all there is.
        let (fresh, failed): (Vec<Target<'_>>, Vec<Target<'_>>) = order.partition(|t| !t.failed_lately());
        let mut last = None;
        let mut failures = 0;
        for target in fresh.into_iter().chain(failed) {
            let answer = match target {
                Target::Dialled(server) => self.call_one(server, request.clone()).await,
                Target::Attached(connection) => connection.call(request.clone()).await,
            };
            match answer {
                Ok(answer) => match (answer.opcode, answer.error_code()) {
                    (Some(Opcode::Response), _) => return Ok(answer.payload().to_vec()),
                    // Key servers of one table may hold different keys: ask the next.
                    (_, Some(ErrorCode::KeyNotFound)) => {
                        tracing::debug!(keyless = %self.name, server = %target, "key server has not the key; asking the next");
                        last = Some(KeylessError::Server(ErrorCode::KeyNotFound));
                    }
                    (_, Some(code)) => return Err(KeylessError::Server(code)),
                    _ => return Err(KeylessError::Server(ErrorCode::Format)),
                },
                Err(e) => {
                    if let Target::Dialled(server) = target {
                        server.failed();
                    }
                    tracing::warn!(keyless = %self.name, server = %target, error = %e, "key server failed; trying the next");
                    last = Some(e);
                    // A request that failed at the transport is sent once more at most (the protocol's retry).
                    failures += 1;
                    if failures == 2 {
                        break;
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| KeylessError::Unavailable("no key server".to_owned())))
    }

    async fn call_one(&self, server: &Server, request: Message) -> Result<Message, KeylessError> {
        let connection = {
            let mut slot = server.connection.lock().await;
            match slot.as_ref() {
                Some(c) if c.is_open() => c.clone(),
                _ => {
                    let name =
                        self.server_name.clone().unwrap_or_else(|| ServerName::IpAddress(server.addr.ip().into()));
                    let c = Arc::new(Connection::open(server.addr, name, &self.connector).await?);
                    *slot = Some(c.clone());
                    c
                }
            }
        };
        connection.call(request).await
    }
}

/// The key servers of a table, counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerCounts {
    /// Listed in `servers`.
    pub listed: usize,
    /// Listed and not failed in the last [`RETRY_AFTER`].
    pub listed_up: usize,
    /// Attached through the tunnel now.
    pub attached: usize,
}

/// Where a request may go: a listed server, dialled, or one attached through the tunnel.
#[derive(Clone, Copy)]
enum Target<'a> {
    Dialled(&'a Server),
    Attached(&'a Arc<Connection>),
}

impl Target<'_> {
    fn failed_lately(&self) -> bool {
        match self {
            Target::Dialled(server) => server.failed_lately(),
            Target::Attached(_) => false,
        }
    }
}

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Dialled(server) => write!(f, "{}", server.addr),
            Target::Attached(connection) => write!(f, "{} (tunnel)", connection.addr()),
        }
    }
}

impl Server {
    fn failed(&self) {
        *self.failed_at.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    fn failed_lately(&self) -> bool {
        self.failed_at.lock().unwrap_or_else(PoisonError::into_inner).is_some_and(|at| at.elapsed() < RETRY_AFTER)
    }
}

/// The internal CA's root and the gateway's client certificate from it: a table's
/// defaults.
pub struct InternalIdentity {
    /// The root the key servers' certificates chain to.
    pub root: CertificateDer<'static>,
    /// The gateway's client certificate chain.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its key.
    pub key: PrivateKeyDer<'static>,
}
