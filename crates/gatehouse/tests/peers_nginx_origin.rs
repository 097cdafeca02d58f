//! Authenticated origin pull against a real nginx: the origin serves HTTPS with a
//! server certificate from the gatehouse CA and requires a client certificate
//! (`ssl_verify_client on`, `ssl_client_certificate` = gatehouse root + intermediate).
//! The gateway's `[[upstream]] tls = { ca, client_cert, client_key, server_name }`
//! must verify the origin and present the pull certificate (docs/gateway.md).
mod support;
use support::*;

use std::fs;

/// The CA, the origin's certificate, the pull certificate and nginx.
struct Origin {
    env: Env,
    nginx: Nginx,
    pull: Cert,
}

fn origin() -> Origin {
    let env = Env::new();
    let server = env.issue("server", "origin.test", &["DNS:origin.test", "IP:127.0.0.1"]);
    // The gateway's identity at the origin, in T/pull (named relative to the config).
    let pull = env.issue_in(&env.path().join("pull"), "client", "gateway-pull", &[], &[]);
    // nginx trusts the gatehouse root + intermediate for client certificates.
    let bundle =
        format!("{}{}", fs::read_to_string(env.root()).unwrap(), fs::read_to_string(env.intermediate()).unwrap());
    let bundle_path = env.write("nginx-client-ca.pem", &bundle);
    // The CA file the gateway verifies the origin against, next to the config.
    fs::copy(env.root(), env.path().join("origin-ca.pem")).unwrap();

    let port = free_port();
    let body = format!(
        "server {{\n\
           listen 127.0.0.1:{port} ssl;\n\
           server_name origin.test;\n\
           ssl_certificate {cert};\n\
           ssl_certificate_key {key};\n\
           ssl_verify_client on;\n\
           ssl_client_certificate {bundle};\n\
           ssl_verify_depth 3;\n\
           default_type text/plain;\n\
           location / {{ return 200 \"origin saw $ssl_client_s_dn verify=$ssl_client_verify\\n\"; }}\n\
         }}",
        cert = s(server.chain()),
        key = s(&server.key),
        bundle = s(&bundle_path),
    );
    let nginx = Nginx::start(&env, port, &body);

    // The peer itself behaves as assumed: refuses without a certificate, accepts the pull one.
    let url = format!("https://origin.test:{port}/");
    let resolve = format!("origin.test:{port}:127.0.0.1");
    let direct = curl(&["--cacert", s(&env.root()), "--resolve", &resolve, &url]);
    assert_eq!(direct.status, 400, "nginx without a client certificate: {direct:?}\n{}", nginx.proc.dump());
    let direct =
        curl(&["--cacert", s(&env.root()), "--resolve", &resolve, "--cert", s(&pull.crt), "--key", s(&pull.key), &url]);
    assert!(
        direct.status == 200 && direct.body.contains("verify=SUCCESS"),
        "nginx with the pull certificate: {direct:?}\n{}",
        nginx.proc.dump()
    );
    Origin { env, nginx, pull }
}

/// The gateway config: site `localhost` (internal CA certificate, no mTLS) in front of
/// upstream `origin` = the nginx, with the given `tls = { ... }` table (relative paths).
fn gateway_toml(https: u16, origin_port: u16, tls: &str) -> String {
    format!(
        "[listen]\nhttps = \"127.0.0.1:{https}\"\n\n\
         [[site]]\nhosts = [\"localhost\"]\ncertificate = {{ internal_ca = true }}\nupstream = \"origin\"\n\n\
         [[upstream]]\nname = \"origin\"\nservers = [\"https://127.0.0.1:{origin_port}\"]\ntls = {tls}\n"
    )
}

const PULL_TLS: &str = "{ ca = \"origin-ca.pem\", client_cert = \"pull/gateway-pull.fullchain.pem\", client_key = \"pull/gateway-pull.key\", server_name = \"origin.test\" }";

#[test]
fn origin_pull_presents_the_pull_certificate_and_nginx_verifies_it() {
    let o = origin();
    let https = free_port();
    let gw = Gateway::start(&o.env, "gw.toml", https, &gateway_toml(https, o.nginx.port, PULL_TLS));
    assert!(o.pull.fullchain.as_ref().is_some_and(|p| p.exists()));

    for i in 0..3 {
        let r = gw.curl("localhost", &format!("/item/{i}"), &[]);
        assert_eq!(
            r.status,
            200,
            "request {i} through the gateway: {r:?}\n{}\n{}",
            gw.proc.dump(),
            o.nginx.proc.dump()
        );
        assert!(r.body.contains("origin saw"), "not the origin's answer: {:?}", r.body);
        assert!(r.body.contains("verify=SUCCESS"), "nginx did not verify the pull certificate: {:?}", r.body);
        assert!(
            r.body.contains("CN=gateway-pull"),
            "nginx saw another subject than the pull certificate: {:?}",
            r.body
        );
    }
    // The access line names the origin server.
    let upstream = format!("127.0.0.1:{}", o.nginx.port);
    let line = gw
        .proc
        .wait_json(std::time::Duration::from_secs(5), |v| v["event"] == "request" && v["status"] == 200)
        .unwrap_or_else(|| panic!("no access line\n{}", gw.proc.dump()));
    assert_eq!(line["upstream"], upstream.as_str(), "access line: {line}");
}

/// Without `client_cert` the gateway has no identity to present. nginx (1.22, as
/// packaged) does not fail the TLS handshake for a missing certificate: it completes
/// it and answers `400 No required SSL certificate was sent`. The gateway must pass
/// that refusal on and must never get the origin's 200.
#[test]
fn origin_pull_without_client_certificate_is_refused_by_the_origin() {
    let o = origin();
    let https = free_port();
    let tls = "{ ca = \"origin-ca.pem\", server_name = \"origin.test\" }";
    let gw = Gateway::start(&o.env, "gw.toml", https, &gateway_toml(https, o.nginx.port, tls));

    let r = gw.curl("localhost", "/", &[]);
    assert_eq!(r.exit, 0, "curl failed: {r:?}\n{}", gw.proc.dump());
    assert!(!r.body.contains("origin saw"), "origin served a gateway without a pull certificate: {r:?}");
    assert_ne!(r.status, 200, "origin pull without client_cert succeeded: {r:?}");
    assert_eq!(
        r.status,
        400,
        "expected nginx's own refusal (400 No required SSL certificate was sent) passed through: {r:?}\n{}",
        gw.proc.dump()
    );
    assert!(r.body.contains("No required SSL certificate was sent"), "not nginx's refusal: {r:?}");
}

/// The origin certificate must chain to `tls.ca`: with an unrelated CA, and with a
/// `server_name` the origin certificate does not name, the gateway answers 502.
#[test]
fn origin_pull_with_wrong_ca_or_wrong_name_is_502() {
    let o = origin();
    let other_root = o.env.other_ca("other-ca");
    fs::copy(&other_root, o.env.path().join("wrong-ca.pem")).unwrap();

    let https = free_port();
    let tls = "{ ca = \"wrong-ca.pem\", client_cert = \"pull/gateway-pull.fullchain.pem\", client_key = \"pull/gateway-pull.key\", server_name = \"origin.test\" }";
    let gw = Gateway::start(&o.env, "gw-wrong-ca.toml", https, &gateway_toml(https, o.nginx.port, tls));
    let r = gw.curl("localhost", "/", &[]);
    assert_eq!(r.status, 502, "origin verified against an unrelated CA: {r:?}\n{}", gw.proc.dump());
    assert!(!r.body.contains("origin saw"), "{r:?}");
    drop(gw);

    let https = free_port();
    let tls = "{ ca = \"origin-ca.pem\", client_cert = \"pull/gateway-pull.fullchain.pem\", client_key = \"pull/gateway-pull.key\", server_name = \"not-origin.test\" }";
    let gw = Gateway::start(&o.env, "gw-wrong-name.toml", https, &gateway_toml(https, o.nginx.port, tls));
    let r = gw.curl("localhost", "/", &[]);
    assert_eq!(r.status, 502, "origin certificate accepted for a name it does not carry: {r:?}\n{}", gw.proc.dump());
    assert!(!r.body.contains("origin saw"), "{r:?}");
}
