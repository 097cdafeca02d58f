//! Tunnel mode (`tunnel = "HOST:PORT"`): the key server dials each gateway's
//! `keyless_tunnel` listener, authenticates with its certificate as a TLS
//! client, checks the gateway's certificate against `trust` for HOST, and then
//! serves the gateway's requests over that connection exactly as it serves a
//! connection it accepted ([`crate::connection::serve`]). The key owner's
//! network needs no inbound port.
//!
//! A tunnel that cannot be opened, or that closes, is dialled again after a
//! backoff that starts at [`FIRST_RETRY`] and doubles up to [`LAST_RETRY`]
//! (a tenth of jitter either way, so that many key servers restarted together
//! do not dial in step); a tunnel that stayed up for a while starts again from
//! the first step.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::TunnelTarget;
use crate::server::Shared;

/// The first wait before dialling again.
pub(crate) const FIRST_RETRY: Duration = Duration::from_millis(250);

/// The longest wait before dialling again.
pub(crate) const LAST_RETRY: Duration = Duration::from_secs(30);

/// How long a tunnel must have stayed up for the backoff to start over.
const STAYED_UP: Duration = Duration::from_secs(30);

/// How long dialling and the TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps a tunnel to `target` open, for as long as the task runs.
pub(crate) async fn keep_open(target: TunnelTarget, connector: TlsConnector, shared: Arc<Shared>) {
    let mut wait = FIRST_RETRY;
    loop {
        let started = Instant::now();
        match tokio::time::timeout(CONNECT_TIMEOUT, open(&target, &connector)).await {
            Ok(Ok((tls, peer))) => {
                // The gateway pings at once: its first request proves it took this key
                // server's certificate (in TLS 1.3 the handshake completes here before
                // the gateway has checked it).
                tracing::debug!(tunnel = %target, %peer, "TLS handshake with the gateway done");
                let attached = target.clone();
                let first: Box<dyn FnOnce() + Send> = Box::new(move || {
                    tracing::info!(tunnel = %attached, %peer, "attached to the gateway's keyless tunnel");
                });
                shared.metrics.connection_opened();
                let end = crate::connection::serve(tls, peer, shared.clone(), Some(first)).await;
                shared.metrics.connection_closed();
                // A gateway that refuses this key server's certificate in TLS 1.3 says so
                // with an alert, which is what ends reading here.
                tracing::warn!(tunnel = %target, %peer, why = %end, "the keyless tunnel closed; dialling again");
                if started.elapsed() >= STAYED_UP {
                    wait = FIRST_RETRY;
                }
            }
            Ok(Err(why)) => {
                tracing::warn!(tunnel = %target, error = %why, retry_ms = wait.as_millis() as u64, "cannot open the keyless tunnel");
            }
            Err(_) => {
                tracing::warn!(tunnel = %target, retry_ms = wait.as_millis() as u64, "cannot open the keyless tunnel: no connection and handshake within 10 s");
            }
        }
        tokio::time::sleep(jittered(wait)).await;
        wait = (wait * 2).min(LAST_RETRY);
    }
}

/// Dials `target` (each address its name resolves to, in turn) and completes the
/// TLS handshake.
async fn open(target: &TunnelTarget, connector: &TlsConnector) -> Result<(TlsStream<TcpStream>, SocketAddr), String> {
    let name = ServerName::try_from(target.host.clone()).map_err(|e| format!("{}: {e}", target.host))?;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
        .collect();
    let mut last = format!("{} resolves to no address", target.host);
    for addr in addrs {
        let tcp = match TcpStream::connect(addr).await {
            Ok(tcp) => tcp,
            Err(e) => {
                last = format!("{addr}: {e}");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        return match connector.connect(name.clone(), tcp).await {
            Ok(tls) => Ok((tls, addr)),
            Err(e) => Err(format!("{addr}: TLS handshake: {e}")),
        };
    }
    Err(last)
}

/// `wait`, give or take a tenth.
fn jittered(wait: Duration) -> Duration {
    let tenth = wait / 10;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let offset = tenth.mul_f64(f64::from(nanos % 2001) / 1000.0);
    wait - tenth + offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_tenth() {
        for wait in [FIRST_RETRY, Duration::from_secs(4), LAST_RETRY] {
            let j = jittered(wait);
            assert!(j >= wait - wait / 10 && j <= wait + wait / 10, "{wait:?} -> {j:?}");
        }
    }
}
