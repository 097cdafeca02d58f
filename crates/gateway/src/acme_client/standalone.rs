//! Listeners of their own for http-01 and tls-alpn-01, open only while an
//! order runs, for a process that serves nothing else on those ports
//! (`gatehouse agent`, as certbot's and lego's standalone modes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::server::Acceptor;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::LazyConfigAcceptor;

use super::challenges::{ACME_TLS_ALPN, Challenges};
use super::{AcmeError, Challenge};

/// A listener answering validations; closed when dropped.
pub(super) struct Listening(JoinHandle<()>);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Listens on `addr` for `challenge` (nothing for dns-01).
pub(super) async fn listen(
    challenge: Challenge,
    addr: SocketAddr,
    challenges: &Arc<Challenges>,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Option<Listening>, AcmeError> {
    if challenge == Challenge::Dns01 {
        return Ok(None);
    }
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        AcmeError::Local(format!(
            "cannot listen on {addr} to answer {challenge}: {e}; stop what uses it, or choose another challenge"
        ))
    })?;
    let (challenges, provider) = (challenges.clone(), provider.clone());
    let task = match challenge {
        Challenge::Http01 => tokio::spawn(serve_http(listener, challenges)),
        _ => tokio::spawn(serve_tls(listener, challenges, provider)),
    };
    Ok(Some(Listening(task)))
}

async fn serve_http(listener: TcpListener, challenges: Arc<Challenges>) {
    while let Ok((tcp, _)) = listener.accept().await {
        let challenges = challenges.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let answer = challenges.http_01_path(req.uri().path());
                async move {
                    let (status, body) = match answer {
                        Some(key_authorization) => (StatusCode::OK, key_authorization),
                        None => (StatusCode::NOT_FOUND, "no such challenge\n".to_owned()),
                    };
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    *response.status_mut() = status;
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(Duration::from_secs(30), connection).await;
        });
    }
}

async fn serve_tls(listener: TcpListener, challenges: Arc<Challenges>, provider: Arc<rustls::crypto::CryptoProvider>) {
    while let Ok((tcp, _)) = listener.accept().await {
        let (challenges, provider) = (challenges.clone(), provider.clone());
        tokio::spawn(async move {
            let answer = async {
                let hello = LazyConfigAcceptor::new(Acceptor::default(), tcp).await.ok()?;
                let name = hello.client_hello().server_name()?.to_ascii_lowercase();
                let key = challenges.tls_alpn_01(&name)?;
                let resolver = Arc::new(rustls::sign::SingleCertAndKey::from(key));
                let mut config = rustls::ServerConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .ok()?
                    .with_no_client_auth()
                    .with_cert_resolver(resolver);
                config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
                let mut tls = hello.into_stream(Arc::new(config)).await.ok()?;
                use tokio::io::AsyncWriteExt;
                tls.shutdown().await.ok()
            };
            let _ = tokio::time::timeout(Duration::from_secs(30), answer).await;
        });
    }
}
