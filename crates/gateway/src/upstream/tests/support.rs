//! Real peers for the pool tests: hyper HTTP/1.1 origin servers (plain or
//! TLS requiring a client certificate), a front server that forwards through
//! a pool the way the proxy does, a client, and certificates from `pki`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::upstream::{OriginBody, Pool, UpstreamConfig};

type TestBody = UnsyncBoxBody<Bytes, Infallible>;

/// What an origin's handlers share with the test.
#[derive(Default)]
pub struct OriginState {
    pub name: String,
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Requests other than health checks.
    pub hits: AtomicUsize,
    pub health_hits: AtomicUsize,
    /// What `/health` answers: 200 when true, 503 when false.
    pub healthy: AtomicBool,
    /// Wakes `/hold` requests and `/stream` bodies.
    pub release: Notify,
}

/// An origin server on 127.0.0.1; aborting it closes its listener and every connection.
pub struct Origin {
    pub addr: SocketAddr,
    pub state: Arc<OriginState>,
    task: JoinHandle<()>,
}

impl Origin {
    pub async fn start(name: &str) -> Origin {
        Origin::start_with(name, None).await
    }

    /// With `tls`, connections are TLS with that server configuration.
    pub async fn start_with(name: &str, tls: Option<Arc<rustls::ServerConfig>>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin address");
        let state =
            Arc::new(OriginState { name: name.to_owned(), healthy: AtomicBool::new(true), ..OriginState::default() });
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            // Owned by this task: aborting it drops every connection too.
            let mut connections = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let state = Arc::clone(&shared);
                let tls = tls.clone().map(TlsAcceptor::from);
                connections.spawn(async move {
                    match tls {
                        None => serve(TokioIo::new(tcp), state, 0).await,
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(tcp).await else { return };
                            let certs = stream.get_ref().1.peer_certificates().map_or(0, <[_]>::len);
                            serve(TokioIo::new(stream), state, certs).await;
                        }
                    }
                });
            }
        });
        Origin { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// Stops accepting and closes every open connection.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn serve<I>(io: TokioIo<I>, state: Arc<OriginState>, client_certs: usize)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(req, Arc::clone(&state), client_certs));
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).with_upgrades().await;
}

async fn handle(
    mut req: Request<Incoming>,
    state: Arc<OriginState>,
    client_certs: usize,
) -> Result<Response<TestBody>, Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/health" {
        state.health_hits.fetch_add(1, Ordering::SeqCst);
        let status = if state.healthy.load(Ordering::SeqCst) { 200 } else { 503 };
        return Ok(reply(status, String::new()));
    }
    state.hits.fetch_add(1, Ordering::SeqCst);
    match path.as_str() {
        "/hold" => state.release.notified().await,
        "/stream" => {
            // Head and a first chunk now, the end once released.
            let chunks = futures_util::stream::unfold(0u8, move |step| {
                let state = Arc::clone(&state);
                async move {
                    let chunk: &'static [u8] = match step {
                        0 => b"first;",
                        1 => {
                            state.release.notified().await;
                            b"last"
                        }
                        _ => return None,
                    };
                    Some((Ok(Frame::data(Bytes::from_static(chunk))), step + 1))
                }
            });
            return Ok(Response::new(StreamBody::new(chunks).boxed_unsync()));
        }
        "/upgrade" => {
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(upgraded) = upgrade.await else { return };
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = io.read(&mut buf).await {
                    if io.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
            let mut res = reply(101, String::new());
            res.headers_mut().insert("connection", "upgrade".parse().expect("header"));
            res.headers_mut().insert("upgrade", "echo".parse().expect("header"));
            return Ok(res);
        }
        _ => {}
    }
    let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or("-").to_owned();
    let method = req.method().clone();
    let body = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
    let mut res = reply(200, format!("{} {method} {path} host={host} body={body}", state.name));
    res.headers_mut().insert("x-client-certs", client_certs.into());
    Ok(res)
}

fn reply(status: u16, body: String) -> Response<TestBody> {
    let mut res = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *res.status_mut() = StatusCode::from_u16(status).expect("status");
    res
}

/// The proxy's use of a pool: forward, tunnel upgrades, map errors to statuses.
pub async fn front(pool: Arc<Pool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind front");
    let addr = listener.local_addr().expect("front address");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let pool = Arc::clone(&pool);
            let service = service_fn(move |req| forward(Arc::clone(&pool), req));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).with_upgrades(),
            );
        }
    });
    addr
}

async fn forward(
    pool: Arc<Pool>,
    mut req: Request<Incoming>,
) -> Result<Response<Either<OriginBody, Full<Bytes>>>, Infallible> {
    let downstream = hyper::upgrade::on(&mut req);
    match pool.forward(req, true).await {
        Ok((mut res, server)) => {
            if res.status() == StatusCode::SWITCHING_PROTOCOLS {
                let upstream = hyper::upgrade::on(&mut res);
                tokio::spawn(async move {
                    if let (Ok(down), Ok(up)) = (downstream.await, upstream.await) {
                        let (mut down, mut up) = (TokioIo::new(down), TokioIo::new(up));
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
            }
            res.headers_mut().insert("x-upstream-server", server.parse().expect("header"));
            Ok(res.map(Either::Left))
        }
        Err(e) => {
            let mut res = Response::new(Either::Right(Full::new(Bytes::from(e.to_string()))));
            *res.status_mut() = e.status();
            Ok(res)
        }
    }
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The server the front reported.
    pub fn server(&self) -> &str {
        self.headers.get("x-upstream-server").and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// A client connection to `addr`, driven (upgrades included) by the returned task.
pub async fn client(addr: SocketAddr) -> (SendRequest<Full<Bytes>>, JoinHandle<hyper::Result<()>>) {
    let tcp = TcpStream::connect(addr).await.expect("connect to front");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.expect("client handshake");
    (sender, tokio::spawn(conn.with_upgrades()))
}

/// A GET of `path` with the Host every test uses.
pub fn get_request(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).header("host", "app.example").body(Full::new(Bytes::new())).expect("request")
}

/// Sends one request to `addr` on a new connection and reads the whole response.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Reply {
    let (mut sender, _conn) = client(addr).await;
    let res = sender.send_request(req).await.expect("response from front");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() }
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, get_request(path)).await
}

/// A pool from TOML (one `[[upstream]]` table's body), relative paths against `base`.
pub fn pool_from(toml_text: &str, base: &std::path::Path) -> Arc<Pool> {
    let config: UpstreamConfig = toml::from_str(toml_text).expect("upstream TOML");
    Arc::new(Pool::new(&config, base).expect("pool"))
}

/// Waits up to 5 s for `cond`.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// An address nothing listens on (connections are refused).
pub async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address")
}
