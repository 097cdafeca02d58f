//! The access line: one JSON object per request on stdout with the documented fields.
mod support;
use support::*;

const FIELDS: [&str; 18] = [
    "event",
    "time",
    "request_id",
    "client_ip",
    "host",
    "method",
    "path",
    "protocol",
    "status",
    "bytes",
    "duration_ms",
    "tls_version",
    "cipher",
    "client_serial",
    "client_subject",
    "client_verify",
    "upstream",
    "refused",
];

fn gateway(env: &Env, up: &Upstream) -> Gateway {
    Gateway::localhost(
        env,
        up,
        "",
        "mtls = \"optional\"\ntrust = { internal_ca = true }\n\n[[site.route]]\npath_prefix = \"/test1\"\nmtls = \"require\"\n",
    )
}

#[track_caller]
fn line_for(gw: &Gateway, r: &Resp) -> Value {
    let id = r.upstream().one("x-request-id").expect("x-request-id");
    let line = gw.access_line_for(&id).unwrap_or_else(|| panic!("no access line for {id}\n{}", gw.proc.dump()));
    for f in FIELDS {
        assert!(line.get(f).is_some(), "access line lacks {f}: {line}");
    }
    line
}

#[test]
fn verified_client_http1_tls13() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = gateway(&env, &up);
    let alice = env.client("alice");
    let r = gw.curl_cert("localhost", "/hello?x=1", &alice, &["--http1.1", "--tlsv1.3"]);
    assert!(r.ok(), "{r:?}");
    let line = line_for(&gw, &r);
    assert_eq!(line["event"], "request");
    let time = line["time"].as_str().unwrap_or_default();
    assert!(time.len() >= 20 && time.as_bytes()[4] == b'-' && time.as_bytes()[10] == b'T', "RFC 3339 time: {line}");
    assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
    assert_eq!(line["host"], "localhost", "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    assert!(line["path"] == "/hello" || line["path"] == "/hello?x=1", "{line}");
    assert_eq!(line["protocol"], "HTTP/1.1", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["bytes"].as_u64(), Some(r.body.len() as u64), "bytes = response body bytes: {line}");
    assert!(line["duration_ms"].as_f64().is_some_and(|d| d >= 0.0), "{line}");
    assert_eq!(line["tls_version"], "TLSv1.3", "{line}");
    assert!(line["cipher"].as_str().is_some_and(|c| !c.is_empty()), "{line}");
    assert_eq!(
        line["client_serial"].as_str().map(norm_serial),
        Some(norm_serial(&alice.serial)),
        "client_serial is the certificate's serial: {line}"
    );
    assert!(line["client_subject"].as_str().is_some_and(|s| s.contains("alice")), "{line}");
    assert_eq!(line["client_verify"], "verified", "{line}");
    let upstream = line["upstream"].as_str().unwrap_or_default();
    assert!(upstream.contains(&up.port.to_string()), "upstream names the server that answered: {line}");
    assert!(line["refused"].is_null() || line["refused"] == "", "a proxied request was not refused: {line}");
}

#[test]
fn tls12_and_http2_are_reported() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = gateway(&env, &up);
    let r = gw.curl("localhost", "/v", &["--http1.1", "--tlsv1.2", "--tls-max", "1.2"]);
    assert!(r.ok(), "{r:?}");
    let line = line_for(&gw, &r);
    assert_eq!(line["tls_version"], "TLSv1.2", "{line}");
    assert_eq!(line["protocol"], "HTTP/1.1", "{line}");
    assert_eq!(line["client_verify"], "none", "{line}");
    assert!(line["client_serial"].is_null(), "{line}");

    let r = gw.curl("localhost", "/v", &["--http2"]);
    assert!(r.ok() && r.http_version == "2", "{r:?}");
    let line = line_for(&gw, &r);
    assert_eq!(line["protocol"], "HTTP/2", "{line}");
    assert_eq!(line["tls_version"], "TLSv1.3", "{line}");
    assert_eq!(line["bytes"].as_u64(), Some(r.body.len() as u64), "{line}");
}

#[test]
fn refused_route_is_logged_with_status_and_reason() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = gateway(&env, &up);
    let r = gw.curl("localhost", "/test1/x", &["--http1.1"]);
    assert_eq!(r.status, 403, "{r:?}");
    let line = gw
        .proc
        .wait_json(std::time::Duration::from_secs(3), |v| v["event"] == "request" && v["path"] == "/test1/x")
        .unwrap_or_else(|| panic!("no access line for /test1/x\n{}", gw.proc.dump()));
    for f in FIELDS {
        assert!(line.get(f).is_some(), "access line lacks {f}: {line}");
    }
    assert_eq!(line["status"], 403, "{line}");
    assert_eq!(line["bytes"].as_u64(), Some(r.body.len() as u64), "{line}");
    assert_eq!(line["client_verify"], "none", "{line}");
    assert!(line["upstream"].is_null(), "no upstream answered: {line}");
    assert!(line["refused"].as_str().is_some_and(|s| !s.is_empty()), "refused says why: {line}");

    // A wrong-EKU certificate on the optional site: client_verify refused:wrong_eku.
    let svc = env.issue("server", "svc.example.com", &[]);
    let r = gw.curl_cert("localhost", "/ok", &svc, &[]);
    assert!(r.ok(), "{r:?}");
    let line = line_for(&gw, &r);
    assert_eq!(line["client_verify"], "refused:wrong_eku", "{line}");
}
