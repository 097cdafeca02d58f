//! Connection set-up and one request, shared by `run` and `idle`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{CONNECTION, HOST, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::BoxError;

pub type Body = Empty<Bytes>;

/// Everything needed to open a connection to the proxy and build a request.
pub struct Target {
    pub addr: SocketAddr,
    pub server_name: ServerName<'static>,
    pub connector: TlsConnector,
    /// origin-form URI for HTTP/1.1 ("/path")
    pub uri_h1: Uri,
    /// absolute URI for HTTP/2 (":scheme", ":authority" come from it)
    pub uri_h2: Uri,
    pub host: HeaderValue,
    pub timeout: Duration,
}

impl Target {
    pub async fn connect_tls(&self) -> Result<TlsStream<TcpStream>, BoxError> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        Ok(self.connector.connect(self.server_name.clone(), tcp).await?)
    }

    pub fn request_h1(&self, close: bool) -> Request<Body> {
        let mut req = Request::new(Body::new());
        *req.uri_mut() = self.uri_h1.clone();
        req.headers_mut().insert(HOST, self.host.clone());
        if close {
            req.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        req
    }

    pub fn request_h2(&self) -> Request<Body> {
        let mut req = Request::new(Body::new());
        *req.uri_mut() = self.uri_h2.clone();
        *req.version_mut() = http::Version::HTTP_2;
        req
    }
}

/// A keep-alive connection's request sender.
pub enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

impl Sender {
    /// Open a keep-alive connection; its connection task is spawned.
    pub async fn open(t: &Target, h2: bool) -> Result<Sender, BoxError> {
        let tls = t.connect_tls().await?;
        if h2 {
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err("server did not negotiate h2 (ALPN)".into());
            }
            let (tx, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Sender::H2(tx))
        } else {
            let (tx, conn) = http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Sender::H1(tx))
        }
    }

    pub fn is_closed(&self) -> bool {
        match self {
            Sender::H1(tx) => tx.is_closed(),
            Sender::H2(tx) => tx.is_closed(),
        }
    }

    pub fn clone_h2(&self) -> Option<Sender> {
        match self {
            Sender::H2(tx) => Some(Sender::H2(tx.clone())),
            Sender::H1(_) => None,
        }
    }

    /// One request on this connection; Ok only for a 2xx with body "ok\n".
    pub async fn request(&mut self, t: &Target) -> Result<(), BoxError> {
        let resp = match self {
            Sender::H1(tx) => {
                tx.ready().await?;
                tx.send_request(t.request_h1(false)).await?
            }
            Sender::H2(tx) => {
                tx.ready().await?;
                tx.send_request(t.request_h2()).await?
            }
        };
        check(resp).await
    }
}

pub async fn check(resp: Response<Incoming>) -> Result<(), BoxError> {
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Err(format!("HTTP status {}", status.as_u16()).into());
    }
    if body.as_ref() != b"ok\n" {
        return Err(format!("unexpected body ({} bytes)", body.len()).into());
    }
    Ok(())
}

/// New TCP connection, full TLS 1.3 handshake with client certificate, one
/// `Connection: close` GET, then close.
pub async fn one_shot(t: &Target) -> Result<(), BoxError> {
    let tls = t.connect_tls().await?;
    let (mut tx, conn) = http1::handshake::<_, Body>(TokioIo::new(tls)).await?;
    let mut conn = pin!(conn);
    let req = t.request_h1(true);
    let res = {
        let mut fut = pin!(async {
            let resp = tx.send_request(req).await?;
            check(resp).await
        });
        let mut conn_done = false;
        loop {
            tokio::select! {
                r = &mut fut => break r,
                _ = &mut conn, if !conn_done => conn_done = true,
            }
        }
    };
    drop(tx);
    // Let hyper finish its side of the close (it shuts the connection down
    // after a `Connection: close` exchange); do not wait for long.
    let _ = tokio::time::timeout(Duration::from_millis(200), conn).await;
    res
}

/// Per-worker counters, merged at the end.
pub struct Stats {
    pub ok: u64,
    pub errors: u64,
    pub hist: Histogram<u64>,
    pub kinds: BTreeMap<String, u64>,
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            ok: 0,
            errors: 0,
            hist: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds"),
            kinds: BTreeMap::new(),
        }
    }

    pub fn ok(&mut self, latency: Duration) {
        self.ok += 1;
        self.hist.saturating_record(latency.as_micros().max(1) as u64);
    }

    pub fn error(&mut self, e: &BoxError) {
        self.errors += 1;
        let mut k = describe(e);
        if k.len() > 160 {
            let mut cut = 160;
            while !k.is_char_boundary(cut) {
                cut -= 1;
            }
            k.truncate(cut);
        }
        *self.kinds.entry(k).or_insert(0) += 1;
    }

    pub fn merge(&mut self, o: Stats) {
        self.ok += o.ok;
        self.errors += o.errors;
        self.hist.add(&o.hist).expect("histogram merge");
        for (k, v) in o.kinds {
            *self.kinds.entry(k).or_insert(0) += v;
        }
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

/// Error text including sources (hyper errors hide the useful part in `source()`).
pub fn describe(e: &BoxError) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        src = c.source();
    }
    s
}
