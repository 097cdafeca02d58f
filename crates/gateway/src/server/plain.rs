//! The plain-HTTP listeners: the redirect to HTTPS and the admin endpoints.

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

/// The plain-HTTP listener: a request for a host some site serves is
/// redirected to HTTPS (308); the `Location` is built only from the checked
/// authority and canonical path, so a hostile Host cannot shape it.
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
                async move { Ok::<_, std::convert::Infallible>(redirect(&gateway, &mut req, https_port)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// The redirect for one request, or why there is none. An ACME http-01 challenge being
/// validated is answered first, whatever the host: the CA asks over plain HTTP.
fn redirect(gateway: &Gateway, req: &mut Request<Incoming>, https_port: u16) -> Response<Full<Bytes>> {
    let answer = |status: StatusCode, text: String| {
        let mut response = Response::new(Full::new(Bytes::from(text)));
        *response.status_mut() = status;
        response
    };
    if req.method() == http::Method::GET
        && let Some(acme) = &gateway.acme
        && let Some(key_authorization) = acme.challenges.http_01_path(req.uri().path())
    {
        let mut response = answer(StatusCode::OK, key_authorization);
        response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
        return response;
    }
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
