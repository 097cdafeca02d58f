//! Tunnel mode: `[listen] keyless_tunnel = "IP:PORT"`. Key servers dial out to
//! this listener (mutual TLS, the key server being the TLS client), so the key
//! owner's network opens no inbound port; the gateway then sends its signing
//! requests back over the connection the key server opened.
//!
//! - The listener's certificate is issued by the internal CA for `localhost`,
//!   the listener's IP and `keyless_tunnel_names`; it is looked at again with
//!   the hourly renewal check and reissued when a third of its life is left.
//! - A key server's client certificate must chain to the trust of at least one
//!   `[[keyless]]` table (its `ca`, or the internal CA) and carry that table's
//!   `server_name`: the same CA may issue users' client certificates, which must
//!   not attach as key servers. The connection then serves every table that
//!   admits it ([`Tunnels`]): requests of those tables
//!   are spread over their dialled servers and attached connections alike.
//! - Each attached connection is pinged every [`PING_EVERY`]: that keeps it from
//!   the key server's idle close, and a key server that answers no ping within
//!   [`PING_TIMEOUT`] is dropped. One that closes its connection or dies is
//!   dropped at once (the read side sees the end), and its waiting requests are
//!   retried on the next server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::connection::Connection;
use super::{KeyServers, runtime};
use keyless::{Message, Opcode};

/// How often an attached key server is pinged.
pub const PING_EVERY: Duration = Duration::from_secs(10);

/// How long a ping may go unanswered before the key server is dropped.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a key server has to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A key server attached through the tunnel.
struct Attached {
    connection: Arc<Connection>,
    chain: Vec<CertificateDer<'static>>,
}

/// The `[[keyless]]` tables of the running configuration and the key servers
/// attached through the tunnel; it outlives reloads, so a connection attached
/// before a reload serves the new configuration's tables that trust it.
#[derive(Default)]
pub struct Tunnels {
    tables: Mutex<Vec<Weak<KeyServers>>>,
    attached: Mutex<Vec<Attached>>,
}

impl std::fmt::Debug for Tunnels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnels").field("attached", &self.attached_count()).finish()
    }
}

impl Tunnels {
    /// Makes `tables` (a configuration's) reachable through the tunnel: each is
    /// given the attached key servers it trusts. Tables seen before are skipped.
    pub fn register<'a>(&self, tables: impl IntoIterator<Item = &'a Arc<KeyServers>>) {
        let mut known = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        known.retain(|t| t.strong_count() > 0);
        for table in tables {
            if known.iter().any(|t| std::ptr::eq(t.as_ptr(), Arc::as_ptr(table))) {
                continue;
            }
            known.push(Arc::downgrade(table));
            for attached in self.live_attached() {
                if table.trusts(&attached.chain) {
                    table.attach(attached.connection.clone());
                }
            }
        }
    }

    /// The tables of the running configuration.
    fn tables(&self) -> Vec<Arc<KeyServers>> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner).iter().filter_map(Weak::upgrade).collect()
    }

    fn live_attached(&self) -> Vec<Attached> {
        let mut attached = self.attached.lock().unwrap_or_else(PoisonError::into_inner);
        attached.retain(|a| a.connection.is_open());
        attached.iter().map(|a| Attached { connection: a.connection.clone(), chain: a.chain.clone() }).collect()
    }

    /// How many key servers are attached now.
    pub fn attached_count(&self) -> usize {
        self.live_attached().len()
    }

    /// Attaches `connection` to every table that trusts `chain`; their names.
    fn attach(&self, connection: Arc<Connection>, chain: Vec<CertificateDer<'static>>) -> Vec<String> {
        let mut names = Vec::new();
        for table in self.tables() {
            if table.trusts(&chain) {
                table.attach(connection.clone());
                names.push(table.name().to_owned());
            }
        }
        self.attached.lock().unwrap_or_else(PoisonError::into_inner).push(Attached { connection, chain });
        names
    }
}

/// The listener's TLS configuration: its certificate (swappable on renewal), and
/// client certificates verified against the trust of the tables.
pub struct TunnelTls {
    certificate: Arc<TunnelCertificate>,
    config: Arc<rustls::ServerConfig>,
}

impl TunnelTls {
    /// A TLS configuration serving `certificate`, admitting key servers that a table
    /// of `tunnels` trusts.
    pub fn new(
        certificate: Arc<CertifiedKey>,
        tunnels: Arc<Tunnels>,
        provider: &Arc<CryptoProvider>,
    ) -> Result<TunnelTls, rustls::Error> {
        let certificate = Arc::new(TunnelCertificate(ArcSwap::new(certificate)));
        let verifier = Arc::new(AnyTable { tunnels, provider: provider.clone() });
        let config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(certificate.clone());
        Ok(TunnelTls { certificate, config: Arc::new(config) })
    }

    /// Serves `certificate` from the next handshake on.
    pub fn replace_certificate(&self, certificate: Arc<CertifiedKey>) {
        self.certificate.0.store(certificate);
    }

    /// The certificate served now.
    pub fn certificate(&self) -> Arc<CertifiedKey> {
        self.certificate.0.load_full()
    }
}

#[derive(Debug)]
struct TunnelCertificate(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for TunnelCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// Accepts a client certificate that chains to the trust of any table.
struct AnyTable {
    tunnels: Arc<Tunnels>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for AnyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnyTable")
    }
}

impl ClientCertVerifier for AnyTable {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let mut refusal = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        for table in self.tunnels.tables() {
            match table.admits(end_entity, intermediates, now) {
                Ok(verified) => return Ok(verified),
                Err(e) => refusal = e,
            }
        }
        Err(refusal)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Accepts key servers on `listener` until `shutdown` turns true. The
/// connections live on the keyless runtime, beside the dialled ones.
pub fn serve(listener: TcpListener, tls: &TunnelTls, tunnels: Arc<Tunnels>, shutdown: watch::Receiver<bool>) {
    let acceptor = TlsAcceptor::from(tls.config.clone());
    let listener = listener.into_std();
    runtime().spawn(async move {
        let listener = match listener.and_then(TcpListener::from_std) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "the keyless tunnel listener cannot be used");
                return;
            }
        };
        let mut shutdown = shutdown;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let _ = tcp.set_nodelay(true);
                        tokio::spawn(attach(tcp, peer, acceptor.clone(), tunnels.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "keyless tunnel: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    });
}

/// One key server dialling in: its handshake, its attachment, then its pings
/// until it goes.
async fn attach(tcp: tokio::net::TcpStream, peer: SocketAddr, acceptor: TlsAcceptor, tunnels: Arc<Tunnels>) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "keyless tunnel: a key server's handshake was refused");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "keyless tunnel: no handshake within 10 s");
            return;
        }
    };
    let chain: Vec<CertificateDer<'static>> = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    let connection = Arc::new(Connection::over(tls, peer));
    let tables = tunnels.attach(connection.clone(), chain);
    tracing::info!(%peer, tables = ?tables, "key server attached through the keyless tunnel");
    // The first tick is at once: a ping right after attaching.
    let mut ticks = tokio::time::interval(PING_EVERY);
    let why = loop {
        tokio::select! {
            () = connection.closed() => break "it closed the connection",
            _ = ticks.tick() => {
                let ping = connection.call(Message::ping(0, b"tunnel".to_vec()));
                match tokio::time::timeout(PING_TIMEOUT, ping).await {
                    Ok(Ok(answer)) if answer.opcode == Some(Opcode::Pong) => {}
                    Ok(_) => break "its ping failed",
                    Err(_) => break "it answered no ping within 5 s",
                }
            }
        }
    };
    connection.close();
    tracing::warn!(%peer, reason = why, "key server left the keyless tunnel");
}
