//! One ACME client and one order with it, for the `acme` mode: instant-acme over a
//! hyper-rustls client that trusts `--ca`, and the steps of RFC 8555 §7.4 from new
//! order to certificate download, each timed as a [`Phase`].

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AuthorizationStatus, BodyWrapper, ChallengeType, HttpClient, Identifier, NewAccount, NewOrder, Order,
    OrderStatus,
};
use rustls::RootCertStore;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::BoxError;
use crate::acme::{AcmeParams, PHASES, Phase, micros};
use crate::http01::Tokens;

pub async fn new_account(p: &AcmeParams, tls: &Arc<rustls::ClientConfig>) -> Result<Account, instant_acme::Error> {
    let new = NewAccount { contact: &[], terms_of_service_agreed: true, only_return_existing: false };
    let (account, _credentials) =
        Account::builder_with_http(http_client(tls)).create(&new, p.directory.clone(), None).await?;
    Ok(account)
}

/// instant-acme's own client (hyper-rustls, HTTP/2 or HTTP/1.1 by ALPN, one pool per
/// account), but with TCP_NODELAY: without it a request whose headers and body go out
/// in two writes waits for the peer's delayed ACK (40 ms on Linux).
fn http_client(tls: &Arc<rustls::ClientConfig>) -> Box<dyn HttpClient> {
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((**tls).clone())
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);
    Box::new(HyperClient::builder(TokioExecutor::new()).build::<_, BodyWrapper<Bytes>>(https))
}

/// TLS for the ACME server: trusts only the roots in `ca`.
pub fn tls_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, BoxError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        roots.add(cert.map_err(|e| format!("{}: {e}", ca.display()))?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// One full order for `name`; fills `phases` (µs) and counts order refreshes in `polls`;
/// `pending` gets the tokens put in the responder, for the caller to remove.
pub async fn one_order(
    account: &Account,
    name: &str,
    tokens: &Tokens,
    poll: Duration,
    phases: &mut [u64; PHASES.len()],
    polls: &mut u64,
    pending: &mut Vec<String>,
) -> Result<(), String> {
    let mut mark = Instant::now();
    let mut lap = |phase: Phase, phases: &mut [u64; PHASES.len()]| {
        let now = Instant::now();
        phases[phase as usize] += micros(now - mark);
        mark = now;
    };
    let identifiers = [Identifier::Dns(name.to_owned())];
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await.map_err(|e| error_kind(&e))?;
    lap(Phase::NewOrder, phases);

    let mut authorizations = order.authorizations();
    while let Some(a) = authorizations.next().await {
        let mut a = a.map_err(|e| error_kind(&e))?;
        match a.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(format!("authorization {other:?}")),
        }
        let mut challenge = a.challenge(ChallengeType::Http01).ok_or("no http-01 challenge offered")?;
        tokens.insert(&challenge.token, challenge.key_authorization().as_str());
        pending.push(challenge.token.clone());
        lap(Phase::Authorization, phases);
        challenge.set_ready().await.map_err(|e| error_kind(&e))?;
        lap(Phase::Challenge, phases);
    }

    match wait_while(&mut order, OrderStatus::Pending, poll, polls).await? {
        OrderStatus::Ready => {}
        other => return Err(format!("order {other:?} after validation")),
    }
    lap(Phase::Validation, phases);

    let csr = csr(name)?;
    order.finalize_csr(&csr).await.map_err(|e| error_kind(&e))?;
    lap(Phase::Finalize, phases);
    match wait_while(&mut order, OrderStatus::Processing, poll, polls).await? {
        OrderStatus::Valid => {}
        other => return Err(format!("order {other:?} after finalize")),
    }
    lap(Phase::Issuance, phases);

    let chain = order.certificate().await.map_err(|e| error_kind(&e))?.ok_or("no certificate after valid")?;
    if !chain.contains("-----BEGIN CERTIFICATE-----") {
        return Err("download: not a PEM certificate chain".to_owned());
    }
    lap(Phase::Download, phases);
    Ok(())
}

/// Refreshes the order every `poll` while its status is `status`; returns the next one.
/// Fixed interval, Retry-After ignored: the benchmark times the server, not a backoff.
async fn wait_while(
    order: &mut Order,
    status: OrderStatus,
    poll: Duration,
    polls: &mut u64,
) -> Result<OrderStatus, String> {
    let mut now = order.state().status;
    while now == status {
        tokio::time::sleep(poll).await;
        *polls += 1;
        let state = order.refresh().await.map_err(|e| error_kind(&e))?;
        if let Some(problem) = &state.error {
            return Err(format!("order error: {}", problem_kind(problem)));
        }
        now = state.status;
    }
    Ok(now)
}

/// A CSR for `name` (SAN only, empty subject, as instant-acme makes it) with a new P-256 key.
fn csr(name: &str) -> Result<Vec<u8>, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| format!("key: {e}"))?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| format!("CSR: {e}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(|e| format!("CSR: {e}"))?;
    Ok(csr.der().to_vec())
}

/// A short label for an error, to count errors by kind.
pub fn error_kind(e: &instant_acme::Error) -> String {
    match e {
        instant_acme::Error::Api(p) => problem_kind(p),
        other => {
            let s = other.to_string();
            s.chars().take(120).collect()
        }
    }
}

fn problem_kind(p: &instant_acme::Problem) -> String {
    let kind = p.r#type.as_deref().unwrap_or("problem").trim_start_matches("urn:ietf:params:acme:error:");
    let detail: String = p.detail.as_deref().unwrap_or("").chars().take(100).collect();
    format!("{kind}: {detail}")
}
