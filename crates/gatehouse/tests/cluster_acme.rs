//! Two ACME server instances on one PostgreSQL storage answer one client as one
//! server: an order started on one finishes on the other, and each nonce one
//! hands out is accepted by the other. The instances have empty data dirs of
//! their own and take the CA from the storage (`shared_ca`).
//!
//! The client is instant-acme (the crate gatehouse's own ACME client uses) over
//! HTTP/1.1, with a connector that sends its requests to the two instances in
//! turn, keeping the Host the client addressed (as a load balancer in front of
//! them would): every POST carries the nonce of the answer before it, which the
//! other instance gave. The http-01 answers are files served by a real HTTP
//! server; names resolve through a real bind9.

mod support;
use support::*;

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri, header};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType, HttpClient, Identifier, NewAccount,
    NewOrder, OrderStatus,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

const PASSPHRASE: &str = "a passphrase for the shared CA";

/// An HTTP client that sends each request to the next of `instances` in turn, with
/// the Host the client addressed kept, and counts what each was sent.
struct InTurn {
    inner: Box<dyn HttpClient>,
    instances: Vec<SocketAddr>,
    next: AtomicUsize,
    sent: Arc<Vec<AtomicUsize>>,
}

impl HttpClient for InTurn {
    fn request(
        &self,
        mut req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let i = self.next.fetch_add(1, Ordering::SeqCst) % self.instances.len();
        self.sent[i].fetch_add(1, Ordering::SeqCst);
        let addressed = req.uri().authority().expect("an absolute URL").as_str().to_owned();
        let path = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
        *req.uri_mut() = format!("https://{}{path}", self.instances[i]).parse::<Uri>().expect("a URL");
        req.headers_mut().insert(header::HOST, addressed.parse().expect("a Host value"));
        self.inner.request(req)
    }
}

/// instant-acme's hyper client over HTTP/1.1 (so the server reads the Host header),
/// trusting only `root`.
fn client_trusting(root: &Path) -> Box<dyn HttpClient> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(root).expect("read the root") {
        roots.add(cert.expect("a root certificate")).expect("add the root");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    let https =
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().wrap_connector(tcp);
    Box::new(HyperClient::builder(TokioExecutor::new()).build::<_, BodyWrapper<Bytes>>(https))
}

/// `gatehouse serve` of an ACME server on `pg`, from the empty data dir `data`.
fn acme_instance(env: &Env, name: &str, data: &Path, pg: &str, http_01_port: u16, resolver: &str) -> (Proc, u16) {
    let port = free_port();
    let config = format!(
        "storage = \"{pg}\"\ndata_dir = \"{}\"\n\n[acme_server]\nlisten = \"127.0.0.1:{port}\"\n\
         http_01_port = {http_01_port}\ndns_resolver = \"{resolver}\"\n",
        data.display()
    );
    let path = env.write(name, &config);
    let mut c = gh_cmd(data, &["serve", "--config", s(&path)]);
    c.env("GATEHOUSE_CA_PASSPHRASE", PASSPHRASE);
    let mut proc = Proc::spawn(c, "gatehouse serve (ACME)");
    proc.wait_listening(port, Duration::from_secs(30), &format!("config:\n{config}"));
    (proc, port)
}

#[test]
fn an_order_started_on_one_instance_finishes_on_the_other() {
    let pg = test_cluster::database_blocking();
    let first = tmp();
    let init = gh_env(
        &first,
        &["--storage", &pg, "ca", "init", "--name", "Shared CA"],
        &[("GATEHOUSE_CA_PASSPHRASE", PASSPHRASE)],
    );
    assert_eq!(init.code, 0, "{}", init.all());
    let root = root_crt(&first);

    let env = Env::new();
    let bind = Bind9::start();
    let webroot = mkdir(env.path().join("web"));
    let challenges = mkdir(webroot.join(".well-known/acme-challenge"));
    let files = FileServer::start(&env, &webroot);
    let files_port: u16 = files.url("").rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse().ok()).unwrap();
    let (a_dir, b_dir) = (tmp(), tmp());
    let (mut a, a_port) = acme_instance(&env, "a.toml", &a_dir, &pg, files_port, &bind.addr());
    let (mut b, b_port) = acme_instance(&env, "b.toml", &b_dir, &pg, files_port, &bind.addr());

    let sent = Arc::new(vec![AtomicUsize::new(0), AtomicUsize::new(0)]);
    let in_turn = InTurn {
        inner: client_trusting(&root),
        instances: vec![format!("127.0.0.1:{a_port}").parse().unwrap(), format!("127.0.0.1:{b_port}").parse().unwrap()],
        next: AtomicUsize::new(0),
        sent: sent.clone(),
    };
    let name = "across.example.test";
    let directory = format!("https://127.0.0.1:{a_port}/acme/directory");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let chain = runtime.block_on(async {
        let new = NewAccount { contact: &[], terms_of_service_agreed: true, only_return_existing: false };
        let (account, _) = Account::builder_with_http(Box::new(in_turn))
            .create(&new, directory, None)
            .await
            .unwrap_or_else(|e| panic!("new account through both instances: {e}"));
        let identifiers = [Identifier::Dns(name.to_owned())];
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await.expect("new order");
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.expect("an authorization");
            assert_eq!(authorization.status, AuthorizationStatus::Pending);
            let mut challenge = authorization.challenge(ChallengeType::Http01).expect("an http-01 challenge");
            write(challenges.join(&challenge.token), challenge.key_authorization().as_str());
            challenge.set_ready().await.expect("challenge ready");
        }
        // Each refresh goes to the instance after the one that took the last answer.
        let retries = instant_acme::RetryPolicy::default().timeout(Duration::from_secs(60));
        let status = order.poll_ready(&retries).await.expect("the order after validation");
        assert_eq!(status, OrderStatus::Ready, "the order after validation");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        order.finalize_csr(params.serialize_request(&key).unwrap().der()).await.expect("finalize");
        order.poll_certificate(&retries).await.expect("the certificate")
    });
    let served: Vec<usize> = sent.iter().map(|n| n.load(Ordering::SeqCst)).collect();
    assert!(served.iter().all(|&n| n >= 4), "requests per instance: {served:?}");

    // The chain verifies to the shared root, and the certificate is in the one database.
    let leaf = env.write("across.pem", &chain);
    let verified = openssl_ok(&["verify", "-CAfile", s(&root), "-untrusted", s(&leaf), s(&leaf)]);
    assert!(verified.contains(": OK"), "{verified}");
    let listed = list_json(&first, &["--storage", &pg]);
    let entry = listed.iter().find(|c| c["common_name"] == name || c["sans"].to_string().contains(name));
    let entry = entry.unwrap_or_else(|| panic!("{name} is not in ca list --json: {listed:?}"));
    assert!(entry["source"].as_str().is_some_and(|s| s.starts_with("acme:")), "{entry}");
    a.kill();
    b.kill();
}
