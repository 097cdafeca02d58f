//! Listeners and TLS settings: http -> 308 redirect, admin /healthz and /metrics,
//! HSTS, tls.min_version = "1.3", HTTP/2 by ALPN.
mod support;
use support::*;

use std::time::Duration;

#[test]
fn http_listener_redirects_with_308_to_the_https_port() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let (https, http) = (free_port(), free_port());
    let toml = localhost_config(&env, &listen_toml(https, Some(http), None), &up, "", "");
    let gw = Gateway::start(&env, "gw.toml", https, &toml);
    assert!(poll_until(Duration::from_secs(5), || port_open(http)).is_some(), "http listener not up");

    let resolve = format!("localhost:{http}:127.0.0.1");
    let r = curl(&["--resolve".into(), resolve.clone(), format!("http://localhost:{http}/a/b")]);
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(r.header("location"), Some(format!("https://localhost:{https}/a/b").as_str()), "{r:?}");

    let r = curl(&["--resolve".into(), resolve, format!("http://localhost:{http}/q/r?x=1")]);
    assert_eq!(r.status, 308, "{r:?}");
    let loc = r.header("location").unwrap_or_default();
    assert!(loc.starts_with(&format!("https://localhost:{https}/q/r")), "{r:?}");

    // Following it lands on the TLS listener.
    let r = curl(&[
        "-L".into(),
        "--cacert".into(),
        s(&gw.root).into(),
        "--resolve".into(),
        format!("localhost:{http}:127.0.0.1"),
        "--resolve".into(),
        format!("localhost:{https}:127.0.0.1"),
        format!("http://localhost:{http}/follow"),
    ]);
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.upstream().path, "/follow");
}

#[test]
fn admin_healthz_and_metrics() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let (https, admin) = (free_port(), free_port());
    let toml = localhost_config(
        &env,
        &listen_toml(https, None, Some(admin)),
        &up,
        "",
        "mtls = \"require\"\ntrust = { internal_ca = true }\n",
    );
    let gw = Gateway::start(&env, "gw.toml", https, &toml);
    assert!(poll_until(Duration::from_secs(5), || port_open(admin)).is_some(), "admin listener not up");

    let r = curl(&[format!("http://127.0.0.1:{admin}/healthz")]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.trim().eq_ignore_ascii_case("ok"), "/healthz body: {:?}", r.body);

    let alice = env.client("alice");
    assert!(gw.curl_cert("localhost", "/", &alice, &[]).ok());
    let refused = gw.curl("localhost", "/", &[]);
    assert_ne!(refused.exit, 0, "{refused:?}");
    gw.wait_refusal("handshake_refused", "no_certificate", Duration::from_secs(3)).expect("refusal logged");

    let r = curl(&[format!("http://127.0.0.1:{admin}/metrics")]);
    assert_eq!(r.status, 200, "{r:?}");
    let m = &r.body;
    let requests: f64 = m
        .lines()
        .filter(|l| l.starts_with("gatehouse_requests_total"))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum();
    assert!(requests >= 1.0, "gatehouse_requests_total should count the request:\n{m}");
    let n = metric(m, "gatehouse_client_cert_refusals_total{reason=\"no_certificate\"}");
    assert!(n.is_some_and(|n| n >= 1.0), "no_certificate refusal counted:\n{m}");
}

#[test]
fn hsts_max_age_sends_strict_transport_security() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "", "hsts_max_age = 31536000\n");
    for proto in ["--http1.1", "--http2"] {
        let r = gw.curl("localhost", "/", &[proto]);
        assert!(r.ok(), "{r:?}");
        let v = r.header("strict-transport-security").unwrap_or_else(|| panic!("{proto}: no HSTS header: {r:?}"));
        assert!(v.contains("max-age=31536000"), "{v}");
    }
}

#[test]
fn a_site_that_requires_certificates_sends_hsts_by_default() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "", "mtls = \"require\"\ntrust = { internal_ca = true }\n");
    let r = gw.curl_cert("localhost", "/", &env.client("alice"), &[]);
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.header("strict-transport-security"), Some("max-age=31536000"), "{r:?}");
}

#[test]
fn no_hsts_header_without_hsts_max_age() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "", "");
    let r = gw.curl("localhost", "/", &[]);
    assert!(r.ok() && r.header("strict-transport-security").is_none(), "{r:?}");
}

#[test]
fn tls_min_version_1_3_refuses_tls_1_2() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "[tls]\nmin_version = \"1.3\"\n", "");
    let o = gw.s_client(&["-servername", "localhost", "-tls1_2"], "");
    assert!(!o.stdout.contains("New, TLSv1.2"), "TLS 1.2 must be refused:\n{}", o.all());
    assert_ne!(o.code, 0, "s_client -tls1_2 should fail:\n{}", o.all());
    let o = gw.s_client(&["-servername", "localhost", "-tls1_3"], "");
    assert!(o.stdout.contains("New, TLSv1.3"), "TLS 1.3 works:\n{}", o.all());
    let r = gw.curl("localhost", "/", &["--tlsv1.2", "--tls-max", "1.2"]);
    assert_ne!(r.exit, 0, "{r:?}");
    assert!(gw.curl("localhost", "/", &[]).ok());
}

#[test]
fn default_min_version_accepts_tls_1_2() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "", "");
    let o = gw.s_client(&["-servername", "localhost", "-tls1_2"], "");
    assert!(o.stdout.contains("New, TLSv1.2"), "{}", o.all());
}

#[test]
fn http2_and_http1_by_alpn() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "", "");
    let r = gw.curl("localhost", "/h2", &["--http2"]);
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.http_version, "2", "{r:?}");
    let r = gw.curl("localhost", "/h1", &["--http1.1"]);
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.http_version, "1.1", "{r:?}");
    let o = gw.s_client(&["-servername", "localhost", "-alpn", "h2"], "");
    assert!(o.stdout.contains("ALPN protocol: h2"), "{}", o.all());
    let lines = gw.access_lines();
    let proto = |p: &str| lines.iter().find(|l| l["path"] == p).map(|l| l["protocol"].clone());
    assert_eq!(proto("/h2"), Some(Value::from("HTTP/2")), "{lines:?}");
    assert_eq!(proto("/h1"), Some(Value::from("HTTP/1.1")), "{lines:?}");
}
