//! The key server: [`Prepared`] reads everything the configuration names (keys,
//! certificate, trust) so that a bad file stops the start; [`Server::bind`]
//! takes the ports; [`Server::run`] accepts gateways until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::{Config, Mode, TunnelTarget};
use crate::keys::{KeyError, KeyStore};
use crate::metrics::Metrics;
use crate::tls::{HandshakeRefusal, TlsError, client_config, server_config};

/// How long a gateway has to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) keys: KeyStore,
    pub(crate) metrics: Arc<Metrics>,
}

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A key directory or key file cannot be used (a configuration error).
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The certificate, its key or a trust file cannot be used (a configuration error).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A port cannot be taken.
    #[error("cannot listen on {addr} ({what}): {why}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// `keyless` or `metrics`.
        what: &'static str,
        /// What the system said.
        why: std::io::Error,
    },
}

impl ServerError {
    /// Whether the configuration (or a file it names) is at fault, rather than
    /// the system: a command line reports it as a usage error.
    pub fn is_configuration(&self) -> bool {
        !matches!(self, ServerError::Bind { .. })
    }
}

/// How gateways are met, with its TLS side ready.
enum Gateways {
    /// Listening on `addr`.
    Listen { addr: SocketAddr, acceptor: TlsAcceptor },
    /// Dialling these tunnels.
    Tunnel { targets: Vec<TunnelTarget>, connector: TlsConnector },
}

/// A configuration whose files have all been read.
pub struct Prepared {
    shared: Arc<Shared>,
    gateways: Gateways,
    metrics: Option<SocketAddr>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.gateways {
            Gateways::Listen { addr, .. } => format!("listen {addr}"),
            Gateways::Tunnel { targets, .. } => format!("tunnel {targets:?}"),
        };
        f.debug_struct("Prepared").field("mode", &mode).field("keys", &self.shared.keys.len()).finish()
    }
}

impl Prepared {
    /// Loads the keys and the TLS identity and trust of `config`.
    pub fn new(config: &Config) -> Result<Prepared, ServerError> {
        let keys = KeyStore::load(&config.keys)?;
        let gateways = match &config.mode {
            Mode::Listen(addr) => Gateways::Listen {
                addr: *addr,
                acceptor: TlsAcceptor::from(Arc::new(server_config(&config.cert, &config.key, &config.trust)?)),
            },
            Mode::Tunnel(targets) => Gateways::Tunnel {
                targets: targets.clone(),
                connector: TlsConnector::from(Arc::new(client_config(&config.cert, &config.key, &config.trust)?)),
            },
        };
        Ok(Prepared {
            shared: Arc::new(Shared { keys, metrics: Arc::new(Metrics::new()) }),
            gateways,
            metrics: config.metrics,
        })
    }

    /// The keys loaded.
    pub fn keys(&self) -> &KeyStore {
        &self.shared.keys
    }
}

/// A key server with its ports taken.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    meeting: Meeting,
    metrics: Option<TcpListener>,
}

/// How gateways are met once the ports are taken.
enum Meeting {
    /// On this port.
    Listen { listener: TcpListener, acceptor: TlsAcceptor },
    /// Through these tunnels.
    Tunnel { targets: Vec<TunnelTarget>, connector: TlsConnector },
}

impl std::fmt::Debug for Meeting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Meeting::Listen { listener, .. } => write!(f, "Listen({:?})", listener.local_addr()),
            Meeting::Tunnel { targets, .. } => write!(f, "Tunnel({targets:?})"),
        }
    }
}

impl Server {
    /// Takes the key server's port (none in tunnel mode) and, if configured, the metrics port.
    pub async fn bind(prepared: Prepared) -> Result<Server, ServerError> {
        let bind = |addr: SocketAddr, what| async move {
            TcpListener::bind(addr).await.map_err(|why| ServerError::Bind { addr, what, why })
        };
        let meeting = match prepared.gateways {
            Gateways::Listen { addr, acceptor } => Meeting::Listen { listener: bind(addr, "keyless").await?, acceptor },
            Gateways::Tunnel { targets, connector } => Meeting::Tunnel { targets, connector },
        };
        let metrics = match prepared.metrics {
            Some(addr) => Some(bind(addr, "metrics").await?),
            None => None,
        };
        Ok(Server { shared: prepared.shared, meeting, metrics })
    }

    /// The address gateways connect to (an error in tunnel mode, where there is none).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.meeting {
            Meeting::Listen { listener, .. } => listener.local_addr(),
            Meeting::Tunnel { .. } => Err(std::io::Error::other("tunnel mode: the key server listens for no gateway")),
        }
    }

    /// Accepts gateways (or keeps the tunnels to them open) until `shutdown`
    /// completes. Connections already open are dropped with the runtime.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server { shared, meeting, metrics } = self;
        if let Some(metrics) = metrics {
            if let Ok(addr) = metrics.local_addr() {
                tracing::info!("metrics on http://{addr}/metrics");
            }
            tokio::spawn(crate::metrics::serve(metrics, shared.metrics.clone()));
        }
        let keys = format!("{} key(s): {}", shared.keys.len(), shared.keys.summary());
        let (listener, acceptor) = match meeting {
            Meeting::Listen { listener, acceptor } => {
                if let Ok(listen) = listener.local_addr() {
                    tracing::info!("key server listening on {listen} with {keys}");
                }
                (listener, acceptor)
            }
            Meeting::Tunnel { targets, connector } => {
                let names: Vec<String> = targets.iter().map(ToString::to_string).collect();
                tracing::info!(
                    "key server dialling the keyless tunnel of {} with {keys}; no port is open for gateways",
                    names.join(", ")
                );
                let tunnels: Vec<_> = targets
                    .into_iter()
                    .map(|t| tokio::spawn(crate::tunnel::keep_open(t, connector.clone(), shared.clone())))
                    .collect();
                shutdown.await;
                tunnels.iter().for_each(tokio::task::JoinHandle::abort);
                tracing::info!("key server stopping");
                return;
            }
        };
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        tokio::spawn(connection(tcp, peer, acceptor.clone(), shared.clone()));
                    }
                    Err(e) => {
                        // Out of descriptors, usually: wait rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        tracing::info!("key server stopping");
    }
}

/// One gateway: its handshake, then its requests.
async fn connection(tcp: TcpStream, peer: SocketAddr, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let _ = tcp.set_nodelay(true);
    shared.metrics.connection_opened();
    let refusal = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => {
            tracing::debug!(%peer, "gateway connected");
            let _ = crate::connection::serve(tls, peer, shared.clone(), None).await;
            None
        }
        Ok(Err(e)) => Some((HandshakeRefusal::of(&e), e.to_string())),
        Err(_) => Some((HandshakeRefusal::Timeout, "no handshake within 10 s".to_owned())),
    };
    if let Some((reason, detail)) = refusal {
        shared.metrics.handshake_refused(reason);
        match reason {
            HandshakeRefusal::Closed | HandshakeRefusal::Timeout => {
                tracing::debug!(%peer, reason = reason.name(), %detail, "handshake did not complete");
            }
            _ => tracing::warn!(%peer, reason = reason.name(), %detail, "handshake refused"),
        }
    }
    shared.metrics.connection_closed();
}
