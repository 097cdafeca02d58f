//! The plain-HTTP listeners: the redirect to HTTPS (which also answers ACME http-01
//! challenges and publishes the internal CA's CRL) and the admin endpoints.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Gateway;

/// Where the plain-HTTP listener publishes the internal CA's CRL, whatever the host:
/// the URL to give as `crl_url` in `ca.toml` is `http://HOST[:PORT]` of this listener
/// followed by this path.
pub const CRL_PATH: &str = "/ca/intermediate.crl";

/// The plain-HTTP listener: a request for a host some site serves is
/// redirected to HTTPS (308); the `Location` is built only from the checked
/// authority and canonical path, so a hostile Host cannot shape it. Before the
/// redirect come the CRL ([`CRL_PATH`]) and ACME http-01 answers, which clients
/// fetch over plain HTTP.
pub async fn serve_redirect(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    https_port: u16,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
            _ = shutdown.changed() => return,
        };
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let service = service_fn(move |mut req: Request<Incoming>| {
                let gateway = gateway.clone();
                async move {
                    let response = if let Some(crl) = crl_answer(&gateway, &req).await {
                        crl
                    } else if let Some(answer) = http_01_answer(&gateway, &req).await {
                        answer
                    } else {
                        redirect(&gateway, &mut req, https_port)
                    };
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// The internal CA's CRL (DER, `application/pkix-crl`) for a GET or HEAD of
/// [`CRL_PATH`] exactly, when the gateway uses the internal CA; 503 when it cannot
/// be made now (the log says why).
async fn crl_answer(gateway: &Gateway, req: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
    if !matches!(*req.method(), http::Method::GET | http::Method::HEAD) || req.uri().path() != CRL_PATH {
        return None;
    }
    let mut response = match gateway.internal.as_ref()?.published_crl().await {
        Some(der) => {
            let mut response = Response::new(Full::new(der));
            response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/pkix-crl"));
            response
        }
        None => {
            let mut response =
                Response::new(Full::new(Bytes::from("the CRL cannot be made now; the gateway's log says why\n")));
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            response
        }
    };
    response.headers_mut().insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-cache"));
    Some(response)
}

/// The answer to an ACME http-01 challenge being validated, whatever the host: the CA
/// asks over plain HTTP, and this comes before the redirect. Only a GET of the
/// challenge path may wait for the shared database (`acme_client::answers`).
async fn http_01_answer(gateway: &Gateway, req: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
    if req.method() != http::Method::GET {
        return None;
    }
    let key_authorization = gateway.acme.as_ref()?.challenges.http_01_answer(req.uri().path()).await?;
    let mut response = Response::new(Full::new(Bytes::from(key_authorization)));
    response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    Some(response)
}

/// The redirect for one request, or why there is none.
fn redirect(gateway: &Gateway, req: &mut Request<Incoming>, https_port: u16) -> Response<Full<Bytes>> {
    let answer = |status: StatusCode, text: String| {
        let mut response = Response::new(Full::new(Bytes::from(text)));
        *response.status_mut() = status;
        response
    };
    let authority = match crate::proxy::target(req) {
        Ok(authority) => authority,
        Err(refusal) => return answer(StatusCode::BAD_REQUEST, format!("{refusal}\n")),
    };
    let host = crate::target::bare_host(&authority);
    if gateway.runtime.load().site_for_sni(Some(host)).is_none() {
        return answer(StatusCode::NOT_FOUND, "no site is served for this host\n".to_owned());
    }
    let port = if https_port == 443 { String::new() } else { format!(":{https_port}") };
    let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let location = format!("https://{}{port}{path}", authority.host());
    match http::HeaderValue::from_str(&location) {
        Ok(value) => {
            let mut response = answer(StatusCode::PERMANENT_REDIRECT, format!("redirecting to {location}\n"));
            response.headers_mut().insert(header::LOCATION, value);
            response
        }
        Err(_) => answer(StatusCode::BAD_REQUEST, "the request cannot be redirected\n".to_owned()),
    }
}

/// The admin listener: `/metrics` (Prometheus) and `/healthz`.
pub async fn serve_admin(gateway: Arc<Gateway>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
            _ = shutdown.changed() => return,
        };
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let gateway = gateway.clone();
                async move {
                    let (status, content_type, body) = match req.uri().path() {
                        "/metrics" => (
                            StatusCode::OK,
                            crate::metrics::CONTENT_TYPE,
                            gateway.metrics.render(&gateway.runtime.load()),
                        ),
                        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
                        _ => (StatusCode::NOT_FOUND, "text/plain", "not found; try /metrics or /healthz\n".to_owned()),
                    };
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    *response.status_mut() = status;
                    response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}
