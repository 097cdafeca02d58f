//! The ACME server at the protocol level: a small client written here signs
//! JWS requests (aws-lc-rs) and sends them with curl to `gatehouse serve`
//! with an `[acme_server]` table, answering http-01 itself. It checks a whole
//! order, renewal information, key rollover and deactivation, and that each
//! kind of bad request gets its ACME error type and leaves nothing behind.
mod support;
use support::*;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

/// One ACME server for the tests of this file, with an http-01 port of its own.
struct Server {
    env: Env,
    _daemon: Daemon,
    base: String,
    http_01: u16,
    calls: AtomicUsize,
}

fn server() -> &'static Server {
    static SERVER: std::sync::OnceLock<Server> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        let env = Env::new();
        let port = free_port();
        let http_01 = free_port();
        let toml = format!(
            "[acme_server]\nlisten = \"127.0.0.1:{port}\"\nhttp_01_port = {http_01}\ntls_alpn_01_port = {}\n",
            free_port()
        );
        // A Daemon, not a Gateway: this server lives in a static, whose destructor never
        // runs, and the Daemon's guard stops it (and removes its dir) when the binary exits.
        let config = env.write("acme.toml", &toml);
        let mut command = gh_cmd(&env.data(), &["serve", "--config", s(&config)]);
        command.current_dir("/");
        let mut daemon = Daemon::spawn(&command, "gatehouse serve", Some(env.path()));
        daemon.wait_listening(port, &toml);
        let base = format!("https://localhost:{port}");
        Server { env, _daemon: daemon, base, http_01, calls: AtomicUsize::new(0) }
    })
}

/// An HTTP answer as curl saw it.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The ACME error type of a problem document, without its URN prefix.
    fn problem(&self) -> String {
        let v = self.json();
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{}", self.body);
        v["type"].as_str().unwrap_or_default().trim_start_matches("urn:ietf:params:acme:error:").to_owned()
    }
}

/// curl a URL of the shared server: GET, or POST of `body` as application/jose+json.
fn send(url: &str, body: Option<&[u8]>) -> Answer {
    send_to(&server().env, url, body)
}

/// A fresh nonce from the server whose directory is under `base`.
fn nonce_of(env: &Env, base: &str) -> String {
    send_to(env, &format!("{base}/new-nonce"), None).header("replay-nonce").expect("a nonce").to_owned()
}

/// curl a URL of the server of `env`.
fn send_to(env: &Env, url: &str, body: Option<&[u8]>) -> Answer {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let headers_file = env.path().join(format!("h{n}.txt"));
    let mut args: Vec<String> = vec![
        "-sS".into(),
        "--cacert".into(),
        env.root().display().to_string(),
        "-D".into(),
        headers_file.display().to_string(),
    ];
    if let Some(body) = body {
        let file = env.path().join(format!("b{n}.json"));
        std::fs::write(&file, body).unwrap();
        args.extend(["-H".into(), "Content-Type: application/jose+json".into()]);
        args.extend(["--data-binary".into(), format!("@{}", file.display())]);
    }
    args.push(url.to_owned());
    let out = std::process::Command::new("curl").args(&args).output().expect("curl runs");
    assert!(out.status.success(), "curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    let raw = std::fs::read_to_string(&headers_file).unwrap();
    let mut lines = raw.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap();
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())).collect();
    Answer { status, headers, body: String::from_utf8_lossy(&out.stdout).into_owned() }
}

fn url(path: &str) -> String {
    format!("{}/acme/{path}", server().base)
}

fn nonce() -> String {
    send(&url("new-nonce"), None).header("replay-nonce").expect("a nonce").to_owned()
}

/// An ES256 account key and, once registered, its account URL.
struct Client {
    key: EcdsaKeyPair,
    kid: Option<String>,
}

impl Client {
    fn new() -> Client {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        Client { key, kid: None }
    }

    fn jwk(&self) -> Value {
        let point = self.key.public_key().as_ref();
        json!({ "kty": "EC", "crv": "P-256", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]) })
    }

    fn thumbprint(&self) -> String {
        let jwk = self.jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()))
    }

    /// A flattened JWS of `payload` (`None`: POST-as-GET) with the given header fields.
    fn sign(&self, header: Value, payload: Option<&Value>) -> Vec<u8> {
        let protected = B64.encode(header.to_string());
        let payload = payload.map(|p| B64.encode(p.to_string())).unwrap_or_default();
        let signature = self.key.sign(&SystemRandom::new(), format!("{protected}.{payload}").as_bytes()).unwrap();
        json!({ "protected": protected, "payload": payload, "signature": B64.encode(signature.as_ref()) })
            .to_string()
            .into_bytes()
    }

    fn header(&self, url: &str, nonce: &str) -> Value {
        let mut header = json!({ "alg": "ES256", "nonce": nonce, "url": url });
        match &self.kid {
            Some(kid) => header["kid"] = json!(kid),
            None => header["jwk"] = self.jwk(),
        }
        header
    }

    fn post(&self, url: &str, payload: Option<&Value>) -> Answer {
        send(url, Some(&self.sign(self.header(url, &nonce()), payload)))
    }

    fn register(mut self) -> Client {
        let answer = self.post(
            &url("new-account"),
            Some(&json!({ "termsOfServiceAgreed": true, "contact": ["mailto:t@example.test"] })),
        );
        assert_eq!(answer.status, 201, "{}", answer.body);
        self.kid = Some(answer.header("location").expect("account URL").to_owned());
        self
    }
}

/// Answers http-01 for one token on the server's http-01 port, `answers` times, with `body`.
fn serve_http_01(token: String, body: String, answers: usize) -> std::thread::JoinHandle<()> {
    // Tests of this file share the port: wait until another's responder has let it go.
    let mut listener = None;
    poll_until(std::time::Duration::from_secs(120), || {
        listener = TcpListener::bind(("127.0.0.1", server().http_01)).ok();
        listener.is_some()
    });
    let listener = listener.expect("the http-01 port became free");
    std::thread::spawn(move || {
        for _ in 0..answers {
            let Ok((mut stream, _)) = listener.accept() else { return };
            let mut request = [0u8; 2048];
            let n = stream.read(&mut request).unwrap_or(0);
            let text = String::from_utf8_lossy(&request[..n]);
            let ok = text.starts_with(&format!("GET /.well-known/acme-challenge/{token} "));
            let (status, body) = if ok { ("200 OK", body.as_str()) } else { ("404 Not Found", "") };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    })
}

/// A P-256 key and a CSR (DER) naming `names`, made by openssl.
fn csr(names: &[&str]) -> (PathBuf, Vec<u8>) {
    let env = &server().env;
    let n = server().calls.fetch_add(1, Ordering::Relaxed);
    let key = env.path().join(format!("k{n}.pem"));
    let der = env.path().join(format!("c{n}.der"));
    let sans = names
        .iter()
        .map(|n| if n.parse::<std::net::IpAddr>().is_ok() { format!("IP:{n}") } else { format!("DNS:{n}") })
        .collect::<Vec<_>>()
        .join(",");
    openssl_ok(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        s(&key),
        "-subj",
        &format!("/CN={}", names[0]),
        "-addext",
        &format!("subjectAltName={sans}"),
        "-outform",
        "DER",
        "-out",
        s(&der),
    ]);
    (key, std::fs::read(der).unwrap())
}

/// Orders `name`, answers its http-01 and returns (order URL, order object).
fn authorized_order(client: &Client, name: &str) -> (String, Value) {
    authorized_order_of(client, json!({ "identifiers": [{ "type": "dns", "value": name }] }))
}

/// Places the new-order `payload` (one identifier), answers its http-01 and returns (order URL, order object).
fn authorized_order_of(client: &Client, payload: Value) -> (String, Value) {
    let answer = client.post(&url("new-order"), Some(&payload));
    assert_eq!(answer.status, 201, "{}", answer.body);
    let order_url = answer.header("location").unwrap().to_owned();
    let order = answer.json();
    let authz_url = order["authorizations"][0].as_str().unwrap().to_owned();
    let authz = client.post(&authz_url, None).json();
    let challenge = authz["challenges"].as_array().unwrap().iter().find(|c| c["type"] == "http-01").unwrap().clone();
    let token = challenge["token"].as_str().unwrap().to_owned();
    let responder = serve_http_01(token.clone(), format!("{token}.{}", client.thumbprint()), 1);
    let answer = client.post(challenge["url"].as_str().unwrap(), Some(&json!({})));
    assert_eq!(answer.status, 200, "{}", answer.body);
    responder.join().unwrap();
    let ready =
        poll_until(std::time::Duration::from_secs(30), || client.post(&order_url, None).json()["status"] == "ready");
    assert!(ready.is_some(), "the order did not become ready: {}", client.post(&order_url, None).body);
    let order = client.post(&order_url, None).json();
    (order_url, order)
}

/// Unix seconds of an RFC 3339 time.
fn unix(text: &str) -> i64 {
    ::time::OffsetDateTime::parse(text, &::time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
        .unix_timestamp()
}

#[test]
fn a_whole_order_then_renewal_information_and_revocation() {
    let client = Client::new().register();
    let (order_url, order) = authorized_order(&client, "whole.example.test.localhost");
    let finalize = order["finalize"].as_str().unwrap();
    let (_key, der) = csr(&["whole.example.test.localhost"]);
    let answer = client.post(finalize, Some(&json!({ "csr": B64.encode(&der) })));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let order = client.post(&order_url, None).json();
    assert_eq!(order["status"], "valid", "{order}");
    let chain = client.post(order["certificate"].as_str().unwrap(), None);
    assert_eq!(chain.header("content-type"), Some("application/pem-certificate-chain"));
    assert_eq!(chain.body.matches("BEGIN CERTIFICATE").count(), 2, "leaf and intermediate: {}", chain.body);
    let env = &server().env;
    let pem = env.write("whole.pem", &chain.body);
    let leaf = env.write("whole-leaf.pem", &chain.body[..chain.body.find("-----END CERTIFICATE-----").unwrap() + 26]);
    openssl_ok(&["verify", "-CAfile", s(&env.root()), "-untrusted", s(&pem), "-purpose", "sslserver", s(&leaf)]);
    // The CA database knows where it came from.
    let serial = norm_serial(&serial_of(&leaf));
    let listed = list_json(&env.data(), &[]);
    let entry = find_serial(&listed, &serial).expect("in ca list");
    assert!(entry["source"].as_str().is_some_and(|s| s.starts_with("acme:")), "{entry}");

    // RFC 9773: the last third of its lifetime, and a window in the past once revoked.
    let aki = openssl_ok(&["x509", "-in", s(&leaf), "-noout", "-ext", "authorityKeyIdentifier"]);
    let key_id_hex: String = aki.lines().nth(1).unwrap().trim().trim_start_matches("keyid:").replace(':', "");
    let key_id = (0..key_id_hex.len()).step_by(2).map(|i| u8::from_str_radix(&key_id_hex[i..i + 2], 16).unwrap());
    let serial_bytes = (0..serial.len()).step_by(2).map(|i| u8::from_str_radix(&serial[i..i + 2], 16).unwrap());
    let ari = url(&format!(
        "renewal-info/{}.{}",
        B64.encode(key_id.collect::<Vec<u8>>()),
        B64.encode(serial_bytes.collect::<Vec<u8>>())
    ));
    let window = send(&ari, None);
    assert_eq!(window.status, 200, "{}", window.body);
    assert!(window.header("retry-after").is_some());
    let start = unix(window.json()["suggestedWindow"]["start"].as_str().unwrap());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(
        start > now + 30 * 86400,
        "the window of a fresh 90-day certificate starts in its last third: {}",
        window.body
    );
    env.gh_ok(&["ca", "revoke", &serial, "--reason", "keyCompromise"]);
    let window = send(&ari, None).json();
    let end = unix(window["suggestedWindow"]["end"].as_str().unwrap());
    assert!(end < now + 60, "a revoked certificate's window is in the past: {window}");
}

#[test]
fn the_account_key_rolls_over_and_the_account_deactivates() {
    let client = Client::new().register();
    let kid = client.kid.clone().unwrap();
    let new_key = Client::new();
    let change_url = url("key-change");
    let inner_header = json!({ "alg": "ES256", "jwk": new_key.jwk(), "url": change_url });
    let inner = new_key.sign(inner_header, Some(&json!({ "account": kid, "oldKey": client.jwk() })));
    let answer = client.post(&change_url, Some(&serde_json::from_slice(&inner).unwrap()));
    assert_eq!(answer.status, 200, "{}", answer.body);

    // The old key is no account's any more; the new one is this account's.
    let old = Client { key: client.key, kid: None };
    let answer = old.post(&url("new-account"), Some(&json!({ "onlyReturnExisting": true })));
    assert_eq!((answer.status, answer.problem().as_str()), (403, "accountDoesNotExist"), "{}", answer.body);
    let found = new_key.post(&url("new-account"), Some(&json!({ "onlyReturnExisting": true })));
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(found.header("location"), Some(kid.as_str()));

    let client = Client { key: new_key.key, kid: Some(kid.clone()) };
    let deactivated = client.post(&kid, Some(&json!({ "status": "deactivated" })));
    assert_eq!(deactivated.json()["status"], "deactivated", "{}", deactivated.body);
    let refused =
        client.post(&url("new-order"), Some(&json!({ "identifiers": [{ "type": "dns", "value": "x.localhost" }] })));
    assert_eq!((refused.status, refused.problem().as_str()), (403, "unauthorized"), "{}", refused.body);
}

#[test]
fn bad_requests_get_their_error_type_and_change_nothing() {
    let client = Client::new().register();
    let kid = client.kid.clone().unwrap();
    let orders_before = client.post(&format!("{kid}/orders"), None).json()["orders"].as_array().unwrap().len();

    // Not JSON, then a JWS whose payload is not JSON.
    let answer = send(&url("new-order"), Some(b"{not json"));
    assert_eq!((answer.status, answer.problem().as_str()), (400, "malformed"), "{}", answer.body);
    let header = client.header(&url("new-order"), &nonce());
    let protected = B64.encode(header.to_string());
    let payload = B64.encode("not json");
    let signature = client.key.sign(&SystemRandom::new(), format!("{protected}.{payload}").as_bytes()).unwrap();
    let body = json!({ "protected": protected, "payload": payload, "signature": B64.encode(signature.as_ref()) });
    let answer = send(&url("new-order"), Some(body.to_string().as_bytes()));
    assert_eq!(answer.problem(), "malformed", "{}", answer.body);

    // A bad signature: the payload changed after signing.
    let mut signed: Value = serde_json::from_slice(&client.sign(
        client.header(&url("new-order"), &nonce()),
        Some(&json!({ "identifiers": [{ "type": "dns", "value": "a.localhost" }] })),
    ))
    .unwrap();
    signed["payload"] =
        json!(B64.encode(json!({ "identifiers": [{ "type": "dns", "value": "b.localhost" }] }).to_string()));
    let answer = send(&url("new-order"), Some(signed.to_string().as_bytes()));
    assert_eq!(answer.problem(), "malformed", "{}", answer.body);
    assert!(answer.json()["detail"].as_str().unwrap().contains("signature"), "{}", answer.body);

    // An unknown kid.
    let stranger = Client {
        key: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
        kid: Some(url("acct/nobody")),
    };
    let answer = stranger.post(&url("new-order"), Some(&json!({ "identifiers": [] })));
    assert_eq!((answer.status, answer.problem().as_str()), (403, "accountDoesNotExist"), "{}", answer.body);

    // A url header that is not the URL the request went to.
    let body = client.sign(client.header(&url("new-account"), &nonce()), Some(&json!({})));
    let answer = send(&url("new-order"), Some(&body));
    assert_eq!(answer.problem(), "unauthorized", "{}", answer.body);

    // An algorithm ACME does not take.
    let mut header = client.header(&url("new-order"), &nonce());
    header["alg"] = json!("HS256");
    let answer = send(&url("new-order"), Some(&client.sign(header, Some(&json!({})))));
    assert_eq!(answer.problem(), "badSignatureAlgorithm", "{}", answer.body);

    // A nonce used twice: the second use is refused, with a fresh nonce to retry with.
    let used = nonce();
    let once = send(&kid, Some(&client.sign(client.header(&kid, &used), None)));
    assert_eq!(once.status, 200, "{}", once.body);
    let twice = send(&kid, Some(&client.sign(client.header(&kid, &used), None)));
    assert_eq!((twice.status, twice.problem().as_str()), (400, "badNonce"), "{}", twice.body);
    assert!(twice.header("replay-nonce").is_some_and(|n| n != used));

    // A body over 64 KiB.
    let big = json!({ "identifiers": [{ "type": "dns", "value": "x".repeat(70_000) }] });
    let answer = client.post(&url("new-order"), Some(&big));
    assert_eq!((answer.status, answer.problem().as_str()), (413, "malformed"), "{}", answer.body);

    // A weak RSA account key: refused before anything is recorded.
    let mut n = vec![0xc5u8; 128];
    n[127] |= 1;
    let weak = json!({ "alg": "RS256", "nonce": nonce(), "url": url("new-account"),
        "jwk": { "kty": "RSA", "n": B64.encode(&n), "e": "AQAB" } });
    let body = json!({ "protected": B64.encode(weak.to_string()), "payload": B64.encode("{}"), "signature": B64.encode([1u8; 128]) });
    let answer = send(&url("new-account"), Some(body.to_string().as_bytes()));
    assert_eq!(answer.problem(), "badPublicKey", "{}", answer.body);

    // Finalize before the authorizations are valid, then a CSR for other names.
    let answer = client
        .post(&url("new-order"), Some(&json!({ "identifiers": [{ "type": "dns", "value": "early.localhost" }] })));
    assert_eq!(answer.status, 201, "{}", answer.body);
    let finalize = answer.json()["finalize"].as_str().unwrap().to_owned();
    let (_, der) = csr(&["early.localhost"]);
    let early = client.post(&finalize, Some(&json!({ "csr": B64.encode(&der) })));
    assert_eq!((early.status, early.problem().as_str()), (403, "orderNotReady"), "{}", early.body);
    let (order_url, order) = authorized_order(&client, "names.localhost");
    let (_, other) = csr(&["other.localhost"]);
    let answer = client.post(order["finalize"].as_str().unwrap(), Some(&json!({ "csr": B64.encode(&other) })));
    assert_eq!(answer.problem(), "badCSR", "{}", answer.body);
    assert!(answer.json()["detail"].as_str().unwrap().contains("other.localhost"), "{}", answer.body);
    assert_eq!(client.post(&order_url, None).json()["status"], "ready", "a refused CSR leaves the order ready");

    // An http-01 answer that is not the key authorization: the challenge and its authorization are invalid.
    let answer = client
        .post(&url("new-order"), Some(&json!({ "identifiers": [{ "type": "dns", "value": "wrong.localhost" }] })));
    let authz_url = answer.json()["authorizations"][0].as_str().unwrap().to_owned();
    let challenge = client.post(&authz_url, None).json()["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "http-01")
        .unwrap()
        .clone();
    let responder = serve_http_01(challenge["token"].as_str().unwrap().to_owned(), "not-it".into(), 3);
    client.post(challenge["url"].as_str().unwrap(), Some(&json!({})));
    let settled =
        poll_until(std::time::Duration::from_secs(60), || client.post(&authz_url, None).json()["status"] != "pending");
    assert!(settled.is_some());
    responder.join().unwrap();
    let authz = client.post(&authz_url, None).json();
    assert_eq!(authz["status"], "invalid", "{authz}");
    let challenge = authz["challenges"].as_array().unwrap().iter().find(|c| c["type"] == "http-01").unwrap();
    assert_eq!(challenge["error"]["type"], "urn:ietf:params:acme:error:incorrectResponse", "{authz}");

    // Nothing half-written: no certificate came of any of it.
    let env = &server().env;
    let issued: Vec<Value> =
        list_json(&env.data(), &[]).into_iter().filter(|e| e["sans"].to_string().contains("other.localhost")).collect();
    assert!(issued.is_empty(), "{issued:?}");
    let orders_after = client.post(&format!("{kid}/orders"), None).json()["orders"].as_array().unwrap().len();
    assert_eq!(orders_after, orders_before + 3, "only the three accepted new-orders were recorded");
}

/// Finalizes an authorized order with a CSR for `names`; returns the leaf's PEM file.
/// Returns the leaf's PEM file and the PEM file of its key.
fn finalize_and_fetch(
    client: &Client,
    order_url: &str,
    order: &Value,
    names: &[&str],
    file: &str,
) -> (PathBuf, PathBuf) {
    let (key, der) = csr(names);
    let answer = client.post(order["finalize"].as_str().unwrap(), Some(&json!({ "csr": B64.encode(&der) })));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let order = client.post(order_url, None).json();
    let chain = client.post(order["certificate"].as_str().unwrap(), None).body;
    (server().env.write(file, &chain[..chain.find("-----END CERTIFICATE-----").unwrap() + 26]), key)
}

#[test]
fn profiles_set_lifetime_key_usage_and_the_identifiers_taken_and_a_key_holder_revokes() {
    let client = Client::new().register();
    let directory = send(&url("directory"), None).json();
    for name in ["server", "shortlived", "node"] {
        assert!(directory["meta"]["profiles"][name].is_string(), "{directory}");
    }
    // An IP address under the default profile, and an unknown profile, are refused.
    let ip = json!({ "identifiers": [{ "type": "ip", "value": "127.0.0.1" }] });
    let answer = client.post(&url("new-order"), Some(&ip));
    assert_eq!(answer.problem(), "rejectedIdentifier", "{}", answer.body);
    assert!(answer.json()["detail"].as_str().unwrap().contains("shortlived"), "{}", answer.body);
    let answer = client.post(
        &url("new-order"),
        Some(&json!({ "profile": "forever", "identifiers": [{ "type": "dns", "value": "a.localhost" }] })),
    );
    assert_eq!(answer.problem(), "invalidProfile", "{}", answer.body);

    // shortlived: an IP address (RFC 8738), 160 hours.
    let (order_url, order) = authorized_order_of(
        &client,
        json!({ "profile": "shortlived", "identifiers": [{ "type": "ip", "value": "127.0.0.1" }] }),
    );
    assert_eq!(order["profile"], "shortlived");
    let (leaf, _) = finalize_and_fetch(&client, &order_url, &order, &["127.0.0.1"], "short.pem");
    let dates = openssl_ok(&["x509", "-in", s(&leaf), "-noout", "-startdate", "-enddate"]);
    let get = |k: &str| openssl_time(dates.lines().find_map(|l| l.strip_prefix(k)).unwrap());
    let hours = (get("notAfter=") - get("notBefore=")) / 3600;
    assert!(
        (160..=161).contains(&hours),
        "a shortlived certificate lasts 160 hours (plus clock-skew backdating): {hours}"
    );
    assert!(x509_ext(&leaf, "subjectAltName").contains("IP Address:127.0.0.1"));
    openssl_ok(&[
        "verify",
        "-CAfile",
        s(&server().env.root()),
        "-untrusted",
        s(&server().env.intermediate()),
        "-verify_ip",
        "127.0.0.1",
        s(&leaf),
    ]);

    // node: serverAuth and clientAuth.
    let (order_url, order) = authorized_order_of(
        &client,
        json!({ "profile": "node", "identifiers": [{ "type": "dns", "value": "node1.localhost" }] }),
    );
    let (leaf, key) = finalize_and_fetch(&client, &order_url, &order, &["node1.localhost"], "node.pem");
    let eku = x509_ext(&leaf, "extendedKeyUsage");
    assert!(eku.contains("TLS Web Server Authentication") && eku.contains("TLS Web Client Authentication"), "{eku}");
    for purpose in ["sslserver", "sslclient"] {
        openssl_ok(&[
            "verify",
            "-CAfile",
            s(&server().env.root()),
            "-untrusted",
            s(&server().env.intermediate()),
            "-purpose",
            purpose,
            s(&leaf),
        ]);
    }
    // RFC 8555 7.6: revoked by whoever holds the certificate's key, with no account.
    let pkcs8 = std::process::Command::new("openssl")
        .args(["pkcs8", "-topk8", "-nocrypt", "-in", s(&key), "-outform", "DER"])
        .output()
        .unwrap()
        .stdout;
    let holder = Client { key: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).unwrap(), kid: None };
    let leaf_der = std::process::Command::new("openssl")
        .args(["x509", "-in", s(&leaf), "-outform", "DER"])
        .output()
        .unwrap()
        .stdout;
    let stranger = Client::new();
    let refused = stranger.post(&url("revoke-cert"), Some(&json!({ "certificate": B64.encode(&leaf_der) })));
    assert_eq!(refused.problem(), "unauthorized", "another key may not revoke it: {}", refused.body);
    let revoked = holder.post(&url("revoke-cert"), Some(&json!({ "certificate": B64.encode(&leaf_der), "reason": 1 })));
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let serial = norm_serial(&serial_of(&leaf));
    let entry = find_serial(&list_json(&server().env.data(), &[]), &serial).cloned().unwrap();
    assert_eq!(
        (entry["status"].as_str(), entry["revocation_reason"].as_str()),
        (Some("revoked"), Some("keyCompromise"))
    );
    let again = holder.post(&url("revoke-cert"), Some(&json!({ "certificate": B64.encode(&leaf_der) })));
    assert_eq!(again.problem(), "alreadyRevoked", "{}", again.body);
}

/// With `eab_required = true` an account needs a key from `ca acme eab new`, used once;
/// `orders_per_hour` limits orders with rateLimited and Retry-After.
#[test]
fn external_account_binding_and_rate_limits() {
    let env = Env::new();
    let port = free_port();
    let toml = format!(
        "[acme_server]\nlisten = \"127.0.0.1:{port}\"\nhttp_01_port = {}\neab_required = true\norders_per_hour = 2\n",
        free_port()
    );
    let _strict = Gateway::start(&env, "strict.toml", port, &toml);
    let base = format!("https://localhost:{port}/acme");
    let directory = send_to(&env, &format!("{base}/directory"), None).json();
    assert_eq!(directory["meta"]["externalAccountRequired"], true, "{directory}");

    // $ gatehouse ca acme eab new --label node7
    let made = env.gh_ok(&["ca", "acme", "eab", "new", "--label", "node7"]);
    let field = |name: &str| made.lines().find_map(|l| l.strip_prefix(name)).unwrap().trim().to_owned();
    let (kid, hmac_key) = (field("kid:"), B64.decode(field("hmac key:")).unwrap());

    let client = Client::new();
    let new_account = format!("{base}/new-account");
    let post = |client: &Client, url: &str, payload: Value| {
        let header = json!({ "alg": "ES256", "nonce": nonce_of(&env, &base), "url": url, "jwk": client.jwk() });
        send_to(&env, url, Some(&client.sign(header, Some(&payload))))
    };
    let answer = post(&client, &new_account, json!({ "termsOfServiceAgreed": true }));
    assert_eq!((answer.status, answer.problem().as_str()), (403, "externalAccountRequired"), "{}", answer.body);

    let binding = |client: &Client, key: &[u8]| {
        let protected = B64.encode(json!({ "alg": "HS256", "kid": kid, "url": new_account }).to_string());
        let payload = B64.encode(client.jwk().to_string());
        let mac = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
            format!("{protected}.{payload}").as_bytes(),
        );
        json!({ "protected": protected, "payload": payload, "signature": B64.encode(mac.as_ref()) })
    };
    let wrong = post(&client, &new_account, json!({ "externalAccountBinding": binding(&client, b"not the key") }));
    assert_eq!(wrong.problem(), "unauthorized", "{}", wrong.body);
    let made = post(&client, &new_account, json!({ "externalAccountBinding": binding(&client, &hmac_key) }));
    assert_eq!(made.status, 201, "{}", made.body);
    let account_url = made.header("location").unwrap().to_owned();
    // The key binds one account.
    let second = Client::new();
    let again = post(&second, &new_account, json!({ "externalAccountBinding": binding(&second, &hmac_key) }));
    assert_eq!(again.problem(), "unauthorized", "{}", again.body);
    let listed = env.gh_ok(&["ca", "acme", "eab", "list", "--json"]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["account"].as_str(), account_url.rsplit('/').next(), "{listed}");

    // Two orders an hour, then rateLimited with Retry-After.
    let client = Client { key: client.key, kid: Some(account_url) };
    let order = |n: usize| {
        let url = format!("{base}/new-order");
        let header = client.header(&url, &nonce_of(&env, &base));
        let payload = json!({ "identifiers": [{ "type": "dns", "value": format!("r{n}.localhost") }] });
        send_to(&env, &url, Some(&client.sign(header, Some(&payload))))
    };
    assert_eq!(order(1).status, 201);
    assert_eq!(order(2).status, 201);
    let limited = order(3);
    assert_eq!((limited.status, limited.problem().as_str()), (429, "rateLimited"), "{}", limited.body);
    assert!(limited.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok()), "{:?}", limited.headers);
}
