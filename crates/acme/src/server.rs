//! The ACME endpoints (RFC 8555 7), renewal information (RFC 9773) and the
//! listener they are served on.
//!
//! Every POST is a JWS: its `url` must be the URL it was sent to, its nonce
//! one this server issued and nobody used, its key an account's (`kid`) or,
//! for new-account and revoke-cert, its own (`jwk`). Every response carries
//! a fresh nonce. State lives in the store; nothing an order needs to finish
//! is kept in memory.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, LINK, LOCATION, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use pki::{
    CertificateAuthority, CheckedCsr, IssueOptions, LeafRequest, Profile, RevocationReason, Serial, Subject,
    SubjectAltName,
};
use serde::Deserialize;
use serde_json::{Value, json};
use store::{AcmeAccount, AcmeAuthorization, AcmeChallenge, AcmeIdentifier, AcmeOrder, AcmeStore, Database, Store};
use time::OffsetDateTime;
use tokio::net::TcpListener;

use crate::jws::{self, Jwk, KeyRef};
use crate::problem::Problem;
use crate::validate::Validator;

mod account;
mod authorization;
mod certificate;
mod order;

/// Where the server listens and how it reaches what it validates.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Port http-01 challenges are fetched from (80 on the Internet).
    pub http_01_port: u16,
    /// Port tls-alpn-01 challenges are checked on (443 on the Internet).
    pub tls_alpn_01_port: u16,
    /// DNS server for identifiers and dns-01 records; the system's when `None`.
    pub dns_resolver: Option<SocketAddr>,
    /// Whether a new account needs an external account binding (`gatehouse ca acme eab new`).
    pub eab_required: bool,
    /// New orders an account may place per hour.
    pub orders_per_hour: u32,
    /// Failed challenge validations an account may have per hour before it must wait.
    pub failed_validations_per_hour: u32,
    /// Retry-After of renewal information, seconds (shorter for a certificate whose
    /// lifetime is short: a tenth of it): how soon clients see a revocation.
    pub renewal_info_retry_secs: u64,
}

/// The profile of an order that names none.
const DEFAULT_PROFILE: &str = "server";
/// How long a nonce may wait for its request.
const NONCE_LIFETIME: i64 = 3600;
/// How long a pending order or authorization waits for its client.
const PENDING_LIFETIME: i64 = 7 * 86400;
/// How long a valid authorization is reused (Let's Encrypt: 30 days).
const VALID_AUTHORIZATION_LIFETIME: i64 = 30 * 86400;
/// Attempts at a challenge before it is invalid, and the pause after each failed one.
const VALIDATION_ATTEMPTS: u32 = 3;
const VALIDATION_PAUSE: Duration = Duration::from_secs(1);
/// Seconds a client is asked to wait before polling again.
const POLL_AFTER: u64 = 1;
/// Seconds a rate-limited account is asked to wait: the limits count the last hour.
const RATE_LIMIT_RETRY: u64 = 3600;

/// The ACME server over one CA and its database.
pub struct AcmeServer {
    ca: CertificateAuthority<Database>,
    store: Database,
    validator: Validator,
    settings: Settings,
}

/// What a handler answers, before the nonce and index link are added.
struct Reply {
    status: StatusCode,
    body: Bytes,
    content_type: &'static str,
    location: Option<String>,
    links: Vec<String>,
    retry_after: Option<u64>,
}

impl Reply {
    fn json(status: StatusCode, value: &Value) -> Reply {
        Reply {
            status,
            body: Bytes::from(value.to_string()),
            content_type: "application/json",
            location: None,
            links: Vec::new(),
            retry_after: None,
        }
    }

    fn located(mut self, location: String) -> Reply {
        self.location = Some(location);
        self
    }

    fn link(mut self, url: &str, rel: &str) -> Reply {
        self.links.push(format!("<{url}>;rel=\"{rel}\""));
        self
    }

    fn retry_after(mut self, seconds: u64) -> Reply {
        self.retry_after = Some(seconds);
        self
    }

    /// Asks the client to poll again after [`POLL_AFTER`] while something is `processing`.
    fn polling(self, processing: bool) -> Reply {
        if processing { self.retry_after(POLL_AFTER) } else { self }
    }
}

/// Who signed a request.
enum Signer {
    /// An account, by its `kid`.
    Account(AcmeAccount, Jwk),
    /// A key not (yet) an account's, by its `jwk`.
    Key(Jwk),
}

/// Which key a request may be signed with.
#[derive(PartialEq, Eq, Clone, Copy)]
enum KeyKind {
    AccountOnly,
    KeyOnly,
    Either,
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn rfc3339(unix: i64) -> String {
    pki::rfc3339(unix)
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The id in `{base}/acme/{kind}/{id}`.
fn id_in<'a>(url: &'a str, base: &str, kind: &str) -> Option<&'a str> {
    url.strip_prefix(base)?.strip_prefix("/acme/")?.strip_prefix(kind)?.strip_prefix('/').filter(|id| !id.contains('/'))
}

impl AcmeServer {
    /// A server issuing with `ca`, keeping its state in `store` (the CA's database).
    pub fn new(ca: CertificateAuthority<Database>, store: Database, settings: &Settings) -> Result<AcmeServer, String> {
        let validator = Validator::new(settings.dns_resolver, settings.http_01_port, settings.tls_alpn_01_port)?;
        Ok(AcmeServer { ca, store, validator, settings: settings.clone() })
    }

    /// Serves HTTPS on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, tls: Arc<rustls::ServerConfig>) {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        // Expired nonces are swept now and then rather than on each use.
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                if let Err(e) = store.nonce_sweep(now()).await {
                    tracing::warn!(error = %e, "ACME server: sweeping expired nonces failed");
                }
            }
        });
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "ACME server: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let server = self.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else {
                    tracing::debug!(%peer, "ACME server: TLS handshake failed");
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(req).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), service).await;
            });
        }
    }

    /// Answers one request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let base = base_url(&req);
        let answer = match &base {
            Some(base) => self.route(base, req).await,
            None => Err(Problem::malformed("the request has no usable Host; send Host: NAME[:PORT]")),
        };
        let base = base.unwrap_or_default();
        let reply = answer.unwrap_or_else(|problem| {
            let mut reply = Reply::json(problem.status, &problem.to_json());
            reply.content_type = "application/problem+json";
            reply.retry_after = problem.retry_after;
            reply
        });
        let mut response = Response::new(Full::new(reply.body));
        *response.status_mut() = reply.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(nonce) = self.new_nonce().await
            && let Ok(value) = HeaderValue::from_str(&nonce)
        {
            headers.insert("replay-nonce", value);
        }
        let index = format!("<{base}/acme/directory>;rel=\"index\"");
        for link in std::iter::once(index).chain(reply.links) {
            if let Ok(value) = HeaderValue::from_str(&link) {
                headers.append(LINK, value);
            }
        }
        if let Some(location) = reply.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(LOCATION, location);
        }
        if let Some(seconds) = reply.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }

    async fn new_nonce(&self) -> Result<String, Problem> {
        let nonce = random_id();
        self.store.nonce_insert(&nonce, now() + NONCE_LIFETIME).await?;
        Ok(nonce)
    }

    async fn route(&self, base: &str, req: Request<Incoming>) -> Result<Reply, Problem> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let get = method == Method::GET || method == Method::HEAD;
        match (segments.as_slice(), get) {
            (["acme", "directory"], true) => Ok(self.directory(base)),
            (["acme", "new-nonce"], true) => {
                let status = if method == Method::HEAD { StatusCode::OK } else { StatusCode::NO_CONTENT };
                Ok(Reply { status, ..Reply::json(StatusCode::OK, &Value::Null) }.with_empty_body())
            }
            (["acme", "renewal-info", id], true) => self.renewal_info(id).await,
            (_, true) => {
                Err(Problem::malformed(format!("no GET resource at {path}; the directory is at /acme/directory"))
                    .status(StatusCode::NOT_FOUND))
            }
            _ if method != Method::POST => {
                Err(Problem::malformed(format!("{method} is not allowed here; ACME uses POST"))
                    .status(StatusCode::METHOD_NOT_ALLOWED))
            }
            _ => {
                let url = format!("{base}{path}");
                let body = read_body(req).await?;
                self.post(base, &url, &segments, &body).await
            }
        }
    }

    async fn post(&self, base: &str, url: &str, segments: &[&str], body: &Bytes) -> Result<Reply, Problem> {
        match segments {
            ["acme", "new-account"] => {
                let (request, signer) = self.authenticate(url, body, KeyKind::KeyOnly).await?;
                self.new_account(base, &request, signer).await
            }
            ["acme", "revoke-cert"] => {
                let (request, signer) = self.authenticate(url, body, KeyKind::Either).await?;
                self.revoke(&request, signer).await
            }
            ["acme", "key-change"] => {
                let (request, signer) = self.authenticate(url, body, KeyKind::AccountOnly).await?;
                self.key_change(base, url, &request, signer).await
            }
            _ => {
                let (request, signer) = self.authenticate(url, body, KeyKind::AccountOnly).await?;
                let Signer::Account(account, _) = signer else {
                    return Err(Problem::malformed("this request must be signed with an account's kid"));
                };
                match segments {
                    ["acme", "acct", id] => self.account(base, &request, &account, id).await,
                    ["acme", "acct", id, "orders"] => self.account_orders(base, &request, &account, id).await,
                    ["acme", "new-order"] => self.new_order(base, &request, &account).await,
                    ["acme", "order", id] => self.order(base, &request, &account, id).await,
                    ["acme", "order", id, "finalize"] => self.finalize(base, &request, &account, id).await,
                    ["acme", "authz", id] => self.authorization(base, &request, &account, id).await,
                    ["acme", "chall", id] => self.challenge(base, &request, &account, id).await,
                    ["acme", "cert", serial] => self.certificate(&request, &account, serial).await,
                    _ => Err(Problem::malformed(format!("no ACME resource at {url}")).status(StatusCode::NOT_FOUND)),
                }
            }
        }
    }

    /// Checks a POST's JWS: URL, nonce, key and signature.
    async fn authenticate(&self, url: &str, body: &[u8], kind: KeyKind) -> Result<(jws::Request, Signer), Problem> {
        let request = jws::parse(body)?;
        if request.url != url {
            let shown: String = request.url.chars().take(200).collect();
            return Err(Problem::unauthorized(format!(
                "the JWS \"url\" header is {shown}, but the request was sent to {url}; they must be the same"
            )));
        }
        let fresh = match &request.nonce {
            Some(nonce) => self.store.nonce_take(nonce, now()).await?,
            None => false,
        };
        if !fresh {
            return Err(Problem::new(
                "badNonce",
                "the JWS nonce was not issued by this server, was used already or expired; retry with the Replay-Nonce of this response",
            ));
        }
        let signer = match (&request.key, kind) {
            (KeyRef::Jwk(jwk), KeyKind::KeyOnly | KeyKind::Either) => Signer::Key(jwk.clone()),
            (KeyRef::Kid(kid), KeyKind::AccountOnly | KeyKind::Either) => {
                let base = url.split("/acme/").next().unwrap_or_default();
                let account = match id_in(kid, base, "acct") {
                    Some(id) => self.store.account(id).await?,
                    None => None,
                };
                let Some(account) = account else {
                    return Err(Problem::new("accountDoesNotExist", "the JWS kid names no account of this server"));
                };
                if account.status != "valid" {
                    return Err(Problem::unauthorized(format!("the account is {}", account.status)));
                }
                let value: Value =
                    serde_json::from_str(&account.jwk).map_err(|e| Problem::internal("reading an account key", e))?;
                let jwk = Jwk::from_json(&value).map_err(|e| Problem::internal("reading an account key", e))?;
                Signer::Account(account, jwk)
            }
            (KeyRef::Jwk(_), KeyKind::AccountOnly) => {
                return Err(Problem::malformed("this request must be signed with the account's kid, not a jwk"));
            }
            (KeyRef::Kid(_), KeyKind::KeyOnly) => {
                return Err(Problem::malformed("this request must carry its key as a jwk, not a kid"));
            }
        };
        let key = match &signer {
            Signer::Account(_, jwk) | Signer::Key(jwk) => jwk,
        };
        request.verify(key)?;
        Ok((request, signer))
    }

    fn directory(&self, base: &str) -> Reply {
        let url = |path: &str| format!("{base}/acme/{path}");
        let profiles: serde_json::Map<String, Value> = self
            .ca
            .issuer()
            .settings()
            .acme_profiles
            .iter()
            .map(|(name, profile)| (name.clone(), json!(profile.description)))
            .collect();
        Reply::json(
            StatusCode::OK,
            &json!({
                "newNonce": url("new-nonce"),
                "newAccount": url("new-account"),
                "newOrder": url("new-order"),
                "revokeCert": url("revoke-cert"),
                "keyChange": url("key-change"),
                "renewalInfo": url("renewal-info"),
                "meta": {
                    "externalAccountRequired": self.settings.eab_required,
                    "profiles": profiles,
                },
            }),
        )
    }
}

impl Reply {
    fn with_empty_body(mut self) -> Reply {
        self.body = Bytes::new();
        self
    }
}

/// `https://HOST[:PORT]` of the request, from a Host that is a plain authority.
fn base_url<B>(req: &Request<B>) -> Option<String> {
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned))?;
    let authority: http::uri::Authority = host.parse().ok()?;
    if authority.as_str().contains('@') {
        return None;
    }
    Some(format!("https://{}", authority.as_str().to_ascii_lowercase()))
}

/// The body of a POST, at most 64 KiB, as `application/jose+json`.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, Problem> {
    let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !content_type.starts_with("application/jose+json") {
        return Err(Problem::malformed("an ACME POST must have Content-Type: application/jose+json")
            .status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }
    Limited::new(req.into_body(), jws::MAX_BODY_BYTES).collect().await.map(|b| b.to_bytes()).map_err(|_| {
        Problem::malformed(format!("the request body is over {} KiB", jws::MAX_BODY_BYTES / 1024))
            .status(StatusCode::PAYLOAD_TOO_LARGE)
    })
}
