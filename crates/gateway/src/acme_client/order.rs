//! One order, with instant-acme (the account it is made with is `account.rs`'s):
//! create the order (its profile, and the certificate it replaces),
//! answer each authorization's challenge, finalize with a CSR for a key of
//! our own, download the chain.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AuthorizationStatus, BodyWrapper, ChallengeType, ExternalAccountKey, HttpClient, Identifier, NewOrder,
    OrderStatus, RetryPolicy,
};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use store::AnswerKind;

use super::answers::Published;
use super::challenges::{Presented, tls_alpn_01_sni};
use super::dns::DnsSolver;
use super::stored::Stored;
use super::{AcmeConfig, AcmeError, Challenge, Managed, problem_text};

/// How long the CA gets to validate every name of an order.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a dns-01 record gets to show on the zone's server.
const DNS_TIMEOUT: Duration = Duration::from_secs(120);

/// What an order brought: the chain (leaf first) and its key, PEM.
pub(super) struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// The external account binding key of the table, read from its file.
pub(super) fn eab_key(table: &AcmeConfig, base_dir: &Path) -> Result<Option<ExternalAccountKey>, AcmeError> {
    let Some(eab) = &table.eab else { return Ok(None) };
    let file = resolve(base_dir, &eab.hmac_key_file);
    let text = std::fs::read_to_string(&file)
        .map_err(|e| AcmeError::Local(format!("eab.hmac_key_file {}: {e}", file.display())))?;
    use base64::Engine;
    let key =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim().trim_end_matches('=')).map_err(|_| {
            AcmeError::Local(format!(
                "eab.hmac_key_file {}: not a base64url HMAC key; put the key the CA gave in it",
                file.display()
            ))
        })?;
    if key.is_empty() {
        return Err(AcmeError::Local(format!("eab.hmac_key_file {} is empty", file.display())));
    }
    Ok(Some(ExternalAccountKey::new(eab.kid.clone(), &key)))
}

fn resolve(base_dir: &Path, path: &Path) -> std::path::PathBuf {
    if path.is_absolute() { path.to_owned() } else { base_dir.join(path) }
}

/// instant-acme's HTTP client, trusting `ca_bundle` when the table gives one (every
/// certificate in it), the system's roots otherwise.
pub(super) fn builder(table: &AcmeConfig, base_dir: &Path) -> Result<instant_acme::AccountBuilder, AcmeError> {
    let Some(bundle) = &table.ca_bundle else {
        return Account::builder().map_err(|e| AcmeError::Local(format!("no system roots to trust the CA with: {e}")));
    };
    let bundle = resolve(base_dir, bundle);
    let unreadable = |e: String| AcmeError::Local(format!("ca_bundle {}: {e}", bundle.display()));
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&bundle).map_err(|e| unreadable(e.to_string()))? {
        roots.add(cert.map_err(|e| unreadable(e.to_string()))?).map_err(|e| unreadable(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(unreadable("holds no certificate".to_owned()));
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| AcmeError::Local(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);
    let client: Box<dyn HttpClient> =
        Box::new(HyperClient::builder(TokioExecutor::new()).build::<_, BodyWrapper<Bytes>>(https));
    Ok(Account::builder_with_http(client))
}

/// An answer given for one authorization, taken away when dropped or by [`cleanup`]
/// (dns-01 records, and answers shared through the database).
enum Answer {
    Listener { _held: Presented, shared: Option<Published> },
    Dns { name: String, value: String },
}

/// One order, start to certificate.
pub(super) async fn run(managed: &Managed, account: &Account, current: Option<&Stored>) -> Result<Issued, AcmeError> {
    let table = &managed.acme;
    let identifiers: Vec<Identifier> = managed
        .names
        .iter()
        .map(|name| match name.parse::<std::net::IpAddr>() {
            Ok(ip) => Identifier::Ip(ip),
            Err(_) => Identifier::Dns(name.clone()),
        })
        .collect();
    let mut new_order = NewOrder::new(&identifiers);
    if let Some(profile) = &table.profile {
        new_order = new_order.profile(profile);
    }
    let replaces = current.and_then(|c| c.certificate_id());
    if let Some(id) = &replaces
        && account.renewal_info(id).await.is_ok()
    {
        new_order = new_order.replaces(id.clone());
    }
    let mut order = account.new_order(&new_order).await.map_err(AcmeError::order("creating the order"))?;
    let dns = match (table.challenge, &table.dns) {
        (Challenge::Dns01, Some(config)) => Some(
            DnsSolver::new(config, &managed.base_dir)
                .map_err(|source| AcmeError::Dns { name: managed.names.join(","), source: Box::new(source) })?,
        ),
        (Challenge::Dns01, None) => return Err(AcmeError::Local("dns-01 needs a dns table".to_owned())),
        _ => None,
    };
    let _listening = match managed.standalone {
        Some(standalone) => {
            let addr = if table.challenge == Challenge::Http01 { standalone.http } else { standalone.tls };
            let client = &managed.client;
            super::standalone::listen(table.challenge, addr, &client.challenges, client.provider()).await?
        }
        None => None,
    };
    let mut answers = Vec::new();
    let answered = answer_all(managed, &mut order, dns.as_ref(), &mut answers).await;
    let validated = match answered {
        Ok(()) => wait_validated(&mut order, table.challenge).await,
        Err(e) => Err(e),
    };
    cleanup(dns.as_ref(), answers).await;
    validated?;

    let key = table.key_type.0.generate().map_err(|e| AcmeError::Local(e.to_string()))?;
    let mut params =
        rcgen::CertificateParams::new(managed.names.clone()).map_err(|e| AcmeError::Local(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(|e| AcmeError::Local(e.to_string()))?;
    order.finalize_csr(csr.der()).await.map_err(AcmeError::order("finalizing the order"))?;
    let retry = RetryPolicy::new().timeout(VALIDATION_TIMEOUT);
    let chain_pem = order.poll_certificate(&retry).await.map_err(AcmeError::order("downloading the certificate"))?;
    let key_pem = pki::encode_private_key(&key, None).map_err(|e| AcmeError::Local(e.to_string()))?;
    Ok(Issued { chain_pem, key_pem: key_pem.to_string() })
}

/// Gives the answer of every pending authorization and tells the CA to validate it.
async fn answer_all(
    managed: &Managed,
    order: &mut instant_acme::Order,
    dns: Option<&DnsSolver>,
    answers: &mut Vec<Answer>,
) -> Result<(), AcmeError> {
    let challenge = managed.acme.challenge;
    let kind = match challenge {
        Challenge::Http01 => ChallengeType::Http01,
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        Challenge::Dns01 => ChallengeType::Dns01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(AcmeError::order("fetching an authorization"))?;
        let name = authorization.identifier().to_string();
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(AcmeError::Order {
                    step: "fetching an authorization",
                    detail: format!("the authorization of {name} is {other:?}"),
                });
            }
        }
        let offered: Vec<String> =
            authorization.challenges.iter().map(|c| format!("{:?}", c.r#type).to_lowercase()).collect();
        let Some(mut handle) = authorization.challenge(kind.clone()) else {
            return Err(AcmeError::NoChallenge { name, challenge, offered: offered.join(", ") });
        };
        let key_authorization = handle.key_authorization();
        let client = &managed.client;
        // Held here, and shared before the CA is told to validate: it may ask another instance.
        let answer = match challenge {
            Challenge::Http01 => {
                let value = key_authorization.as_str();
                let held = client.challenges.present_http_01(&handle.token, value);
                let shared = client.challenges.share(AnswerKind::Http01, &handle.token, &name, value.to_owned()).await;
                Answer::Listener { _held: held, shared: shared? }
            }
            Challenge::TlsAlpn01 => {
                let host = name.trim_start_matches("*.");
                let digest = key_authorization.digest();
                let held = client
                    .challenges
                    .present_tls_alpn_01(host, digest.as_ref(), client.provider())
                    .map_err(AcmeError::Local)?;
                let sni = tls_alpn_01_sni(host);
                let shared =
                    client.challenges.share(AnswerKind::TlsAlpn01, &sni, host, hex::encode(digest.as_ref())).await;
                Answer::Listener { _held: held, shared: shared? }
            }
            Challenge::Dns01 => {
                let solver = dns.ok_or_else(|| AcmeError::Local("dns-01 needs a dns table".to_owned()))?;
                let value = key_authorization.dns_value();
                let presented = solver.present(&name, &value, DNS_TIMEOUT).await;
                // Recorded before the result is looked at: a record half-written is removed too.
                answers.push(Answer::Dns { name: name.clone(), value });
                presented.map_err(|source| AcmeError::Dns { name: name.clone(), source: Box::new(source) })?;
                handle.set_ready().await.map_err(AcmeError::order("telling the CA to validate"))?;
                continue;
            }
        };
        answers.push(answer);
        handle.set_ready().await.map_err(AcmeError::order("telling the CA to validate"))?;
    }
    Ok(())
}

/// Waits for the order to become ready; an invalid one is explained by the first failed
/// challenge's problem.
async fn wait_validated(order: &mut instant_acme::Order, challenge: Challenge) -> Result<(), AcmeError> {
    let retry = RetryPolicy::new().initial_delay(Duration::from_millis(250)).backoff(1.5).timeout(VALIDATION_TIMEOUT);
    // An invalid order comes back as its own problem (instant-acme makes the order's
    // `error` an Err); the failed challenge says more, so it is looked for first.
    let (status, order_problem) = match order.poll_ready(&retry).await {
        Ok(OrderStatus::Ready | OrderStatus::Valid) => return Ok(()),
        Ok(status) => (format!("{status:?}"), None),
        Err(instant_acme::Error::Api(problem)) => ("invalid".to_owned(), Some(problem)),
        Err(e) => return Err(AcmeError::order("waiting for validation")(e)),
    };
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let Ok(mut authorization) = authorization else { continue };
        if authorization.refresh().await.is_err() {
            continue;
        }
        let name = authorization.identifier().to_string();
        for c in &authorization.challenges {
            if let Some(problem) = &c.error {
                return Err(AcmeError::Validation { name, challenge, detail: problem_text(problem) });
            }
        }
    }
    let detail = match order_problem.as_ref().or(order.state().error.as_ref()) {
        Some(problem) => problem_text(problem),
        None => format!("the order is {status} and no challenge says why"),
    };
    Err(AcmeError::Order { step: "validation", detail })
}

/// Takes every answer away: listener answers as they drop, shared ones from the
/// database, dns-01 records from the zone.
async fn cleanup(dns: Option<&DnsSolver>, answers: Vec<Answer>) {
    for answer in answers {
        match answer {
            Answer::Listener { _held, shared: Some(shared) } => shared.remove().await,
            Answer::Listener { .. } => {}
            Answer::Dns { name, value } => {
                if let Some(solver) = dns
                    && let Err(e) = solver.cleanup(&name, &value).await
                {
                    tracing::warn!(%name, error = %e, "the dns-01 record could not be removed; remove it by hand");
                }
            }
        }
    }
}
