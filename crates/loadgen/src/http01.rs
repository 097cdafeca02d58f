//! The http-01 responder of the `acme` mode (RFC 8555 §8.3): one plain HTTP/1.1
//! listener that answers `GET /.well-known/acme-challenge/TOKEN` with the key
//! authorization of every token some client task has pending.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const PREFIX: &str = "/.well-known/acme-challenge/";

/// Token → key authorization, shared by the client tasks (writers) and the
/// responder (reader).
#[derive(Clone, Default)]
pub struct Tokens(Arc<Mutex<HashMap<String, String>>>);

impl Tokens {
    pub fn insert(&self, token: &str, key_authorization: &str) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(token.to_owned(), key_authorization.to_owned());
    }

    pub fn remove(&self, token: &str) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(token);
    }

    fn get(&self, token: &str) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(token).cloned()
    }
}

/// Serves `tokens` on `listener` until the runtime stops.
pub async fn serve(listener: TcpListener, tokens: Tokens) {
    loop {
        let (sock, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("http-01 responder accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let tokens = tokens.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let found = req.uri().path().strip_prefix(PREFIX).and_then(|t| tokens.get(t));
                async move {
                    let mut resp = match found {
                        Some(ka) => Response::new(Full::new(Bytes::from(ka))),
                        None => {
                            let mut r = Response::new(Full::new(Bytes::from_static(b"no such token\n")));
                            *r.status_mut() = StatusCode::NOT_FOUND;
                            r
                        }
                    };
                    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(sock), svc).await;
        });
    }
}
