//! Site mTLS modes: off, require, optional (+ a route with mtls = "require"), passthrough.
mod support;
use support::*;

use std::time::Duration;

const TRUST: &str = "trust = { internal_ca = true }\n";

fn s_client_msg(gw: &Gateway) -> Out {
    gw.s_client(&["-servername", "localhost", "-CAfile", s(&gw.root), "-msg"], "")
}

fn asked_for_certificate(o: &Out) -> bool {
    o.stdout.contains("CertificateRequest") || o.stdout.contains("Acceptable client certificate CA names")
}

#[test]
fn off_asks_for_no_certificate() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "", "mtls = \"off\"\n");
    let o = s_client_msg(&gw);
    assert!(o.stdout.contains("Cipher is"), "handshake should complete:\n{}", o.all());
    assert!(
        !o.stdout.contains("Acceptable client certificate CA names"),
        "mtls = off must not ask for a client certificate:\n{}",
        o.stdout
    );
    assert!(!o.stdout.contains("CertificateRequest"), "mtls = off sent a CertificateRequest:\n{}", o.stdout);

    // curl offering a certificate: nothing asked, nothing forwarded.
    let alice = env.client("alice");
    let r = gw.curl_cert("localhost", "/", &alice, &[]);
    assert!(r.ok(), "{r:?}");
    assert!(r.upstream().all("client-cert").is_empty(), "no certificate was asked, none forwarded: {r:?}");
    let id = r.upstream().one("x-request-id").expect("x-request-id");
    let line = gw.access_line_for(&id).expect("access line");
    assert_eq!(line["client_verify"], "none", "{line}");
}

#[test]
fn require_refuses_the_handshake_without_a_certificate_and_admits_a_good_one() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "", &format!("mtls = \"require\"\n{TRUST}"));
    assert!(asked_for_certificate(&s_client_msg(&gw)), "mtls = require must ask for a client certificate");

    let r = gw.curl("localhost", "/", &[]);
    assert_ne!(r.exit, 0, "no certificate: the handshake must fail: {r:?}");
    assert_ne!(r.status, 200, "{r:?}");
    let line = gw
        .wait_refusal("handshake_refused", "no_certificate", Duration::from_secs(3))
        .unwrap_or_else(|| panic!("no handshake_refused/no_certificate line\n{}", gw.proc.dump()));
    assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
    assert_eq!(line["sni"], "localhost", "{line}");
    assert!(line["detail"].as_str().is_some_and(|d| !d.is_empty()), "{line}");

    let alice = env.client("alice");
    let r = gw.curl_cert("localhost", "/", &alice, &[]);
    assert!(r.ok(), "a valid client certificate gets through: {r:?}");
    assert_eq!(r.upstream().all("client-cert").len(), 1, "{r:?}");
}

fn optional_gateway(env: &Env, up: &Upstream) -> Gateway {
    Gateway::localhost(
        env,
        up,
        "",
        &format!("mtls = \"optional\"\n{TRUST}\n[[site.route]]\npath_prefix = \"/test1\"\nmtls = \"require\"\n"),
    )
}

#[test]
fn optional_route_requires_a_certificate_403_html_or_json() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = optional_gateway(&env, &up);
    assert!(asked_for_certificate(&s_client_msg(&gw)), "mtls = optional must ask for a client certificate");

    // No certificate: the site answers, the route refuses.
    let r = gw.curl("localhost", "/", &[]);
    assert!(r.ok(), "/ without a certificate in optional mode: {r:?}");

    let json = gw.curl("localhost", "/test1", &["-H", "Accept: application/json"]);
    assert_eq!(json.status, 403, "{json:?}");
    assert!(json.header("content-type").is_some_and(|c| c.contains("application/json")), "{json:?}");
    let v = json.json();
    assert_eq!(v["status"], 403, "{v}");
    assert_eq!(v["error"], "route_requires_certificate", "{v}");
    let reason = v["reason"].as_str().unwrap_or_default().to_string();
    assert!(!reason.is_empty(), "the JSON body names the reason: {v}");

    let html = gw.curl("localhost", "/test1", &[]);
    assert_eq!(html.status, 403, "{html:?}");
    assert!(html.header("content-type").is_some_and(|c| c.contains("text/html")), "{html:?}");
    assert!(html.body.to_lowercase().contains("<html"), "{html:?}");
    assert!(html.body.contains(&reason), "the HTML page names the reason ({reason}): {}", html.body);

    // Accept lists with several types count too; sub-paths are covered by the prefix.
    let r = gw.curl("localhost", "/test1/deeper", &["-H", "Accept: text/plain, application/json;q=0.9"]);
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.json()["error"], "route_requires_certificate");

    // With a verified certificate the route answers.
    let alice = env.client("alice");
    let r = gw.curl_cert("localhost", "/test1", &alice, &[]);
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.upstream().path, "/test1");
    assert_eq!(r.upstream().all("client-cert").len(), 1);
}

/// optional mode: a bad certificate is logged as client_cert_refused, the connection goes on,
/// and the /test1 route answers 403 naming the reason.
fn optional_bad_certificate(make: fn(&Env) -> Cert, reason: &str) {
    optional_bad_certificate_over(make, reason, &[]);
}

/// As [`optional_bad_certificate`], with curl options (a TLS version, say).
fn optional_bad_certificate_over(make: fn(&Env) -> Cert, reason: &str, tls: &[&str]) -> Value {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = optional_gateway(&env, &up);
    let cert = make(&env);

    let r = gw.curl_cert("localhost", "/", &cert, tls);
    assert!(r.ok(), "{reason}: in optional mode the connection goes on: {r:?}\n{}", gw.proc.dump());
    assert!(r.upstream().all("client-cert").is_empty(), "{reason}: a refused certificate is not forwarded: {r:?}");
    let line = gw
        .wait_refusal("client_cert_refused", reason, Duration::from_secs(3))
        .unwrap_or_else(|| panic!("no client_cert_refused/{reason} line\n{}", gw.proc.dump()));
    assert_eq!(line["client_ip"], "127.0.0.1", "{line}");

    let r = gw.curl_cert("localhost", "/test1", &cert, &[tls, &["-H", "Accept: application/json"]].concat());
    assert_eq!(r.status, 403, "{reason}: {r:?}");
    let v = r.json();
    assert_eq!(v["error"], "route_requires_certificate", "{v}");
    assert!(v["reason"].as_str().is_some_and(|s| !s.is_empty()), "{v}");

    let access = gw.access_lines().into_iter().find(|l| l["path"] == "/");
    let id = access.as_ref().map(|l| l["client_verify"].clone());
    assert_eq!(id, Some(Value::from(format!("refused:{reason}"))), "access line client_verify\n{}", gw.proc.dump());
    access.unwrap_or_default()
}

#[test]
fn optional_expired_certificate_is_logged_and_connection_goes_on() {
    optional_bad_certificate(|e| e.expired_client("old"), "expired");
}

#[test]
fn optional_wrong_eku_certificate_is_logged_and_connection_goes_on() {
    optional_bad_certificate(|e| e.issue("server", "svc.example.com", &[]), "wrong_eku");
}

#[test]
fn optional_unknown_issuer_certificate_is_logged_and_connection_goes_on() {
    optional_bad_certificate(|e| e.foreign_client("mallory"), "unknown_issuer");
}

#[test]
fn optional_x509_v1_certificate_is_logged_and_connection_goes_on() {
    optional_bad_certificate(|e| e.v1_client("oldstyle"), "x509_v1");
}

#[test]
fn optional_x509_v1_certificate_over_tls12_is_logged_and_connection_goes_on() {
    // TLS 1.2 proves possession of the key by a signature checked against the
    // certificate; for a v1 certificate, against its raw key, as with TLS 1.3.
    let access =
        optional_bad_certificate_over(|e| e.v1_client("oldstyle"), "x509_v1", &["--tlsv1.2", "--tls-max", "1.2"]);
    assert_eq!(access["tls_version"], "TLSv1.2", "{access}");
}

#[test]
fn passthrough_forwards_a_certificate_from_an_unknown_ca() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "", "mtls = \"passthrough\"\n");
    assert!(asked_for_certificate(&s_client_msg(&gw)), "mtls = passthrough must ask for a client certificate");

    let mallory = env.foreign_client("mallory");
    let r = gw.curl_cert("localhost", "/pt", &mallory, &[]);
    assert!(r.ok(), "passthrough does not verify: {r:?}");
    let got = r.upstream();
    assert_eq!(got.one("client-cert"), Some(format!(":{}:", base64(&mallory.der()))), "{got:?}");
    let id = got.one("x-request-id").expect("x-request-id");
    let line = gw.access_line_for(&id).expect("access line");
    assert_eq!(line["client_verify"], "unverified", "{line}");

    // No certificate: still served, nothing forwarded.
    let r = gw.curl("localhost", "/pt", &[]);
    assert!(r.ok(), "{r:?}");
    assert!(r.upstream().all("client-cert").is_empty());
}
