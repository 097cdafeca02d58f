//! `gatehouse serve --config`: site certificates from files and from the internal CA,
//! SNI selection (exact, then `*.` wildcard, no SNI -> first site), unknown SNI
//! refused at the handshake, Host not served on the connection -> 421.
mod support;
use support::*;

use std::time::Duration;

struct Fixture {
    env: Env,
    _up: Upstream,
    gw: Gateway,
    file_cert: Cert,
}

/// Site 0: app.example.com + *.example.com, certificate from files (relative paths);
/// site 1: api.example.com, internal CA; site 2: other.test, internal CA. mtls off.
fn fixture() -> Fixture {
    let env = Env::new();
    let file_cert = env.issue("server", "app.example.com", &["DNS:app.example.com", "DNS:*.example.com"]);
    let up = Upstream::start(&env);
    let https = free_port();
    let toml = format!(
        "{listen}
[[site]]
hosts = [\"app.example.com\", \"*.example.com\"]
certificate = {{ cert = \"certs/app.example.com.fullchain.pem\", key = \"certs/app.example.com.key\" }}
upstream = \"app\"

[[site]]
hosts = [\"api.example.com\"]
certificate = {{ internal_ca = true }}
upstream = \"app\"

[[site]]
hosts = [\"other.test\"]
certificate = {{ internal_ca = true }}
upstream = \"app\"
{up}",
        listen = listen_toml(https, None, None),
        up = upstream_toml("app", &up.url())
    );
    let gw = Gateway::start(&env, "gw.toml", https, &toml);
    Fixture { env, _up: up, gw, file_cert }
}

/// DER of the leaf the server presents for an SNI (None: no SNI sent).
fn served_leaf(gw: &Gateway, sni: Option<&str>) -> (Vec<u8>, String) {
    let mut args = vec!["-showcerts", "-CAfile", s(&gw.root)];
    match sni {
        Some(n) => args.extend_from_slice(&["-servername", n]),
        None => args.push("-noservername"),
    }
    let o = gw.s_client(&args, "");
    let pem = first_pem(&o.stdout).unwrap_or_else(|| panic!("no server certificate for SNI {sni:?}:\n{}", o.all()));
    (pem_to_der(&pem), pem)
}

fn sans_of_pem(env: &Env, pem: &str) -> String {
    let p = env.write("served.pem", pem);
    openssl_ok(&["x509", "-in", s(&p), "-noout", "-ext", "subjectAltName"])
}

#[test]
fn certificate_from_files_serves_exact_and_wildcard_names() {
    let f = fixture();
    let want = f.file_cert.der();

    for host in ["app.example.com", "x.example.com", "Deep-Label9.example.com"] {
        let (der, _) = served_leaf(&f.gw, Some(host));
        assert!(der == want, "SNI {host}: the file certificate should be served");
        let r = f.gw.curl(&host.to_ascii_lowercase(), "/hello", &[]);
        assert!(r.ok(), "GET https://{host}/hello through the file certificate: {r:?}");
        assert_eq!(r.upstream().path, "/hello");
    }
    // The chain from the files verifies against the CA root (curl --cacert above did too).
    let o = f.gw.s_client(&["-servername", "app.example.com", "-CAfile", s(&f.gw.root), "-verify_return_error"], "");
    assert!(o.stdout.contains("Verify return code: 0 (ok)"), "{}", o.all());
}

#[test]
fn exact_name_wins_over_wildcard_and_gets_an_internal_ca_certificate() {
    let f = fixture();
    // api.example.com is listed exactly by site 1 and also matches site 0's *.example.com.
    let (der, pem) = served_leaf(&f.gw, Some("api.example.com"));
    assert!(der != f.file_cert.der(), "exact api.example.com must pick its own site, not the wildcard one");
    let sans = sans_of_pem(&f.env, &pem);
    assert!(sans.contains("DNS:api.example.com"), "internal-CA certificate should name the host: {sans}");
    let o = f.gw.s_client(
        &[
            "-servername",
            "api.example.com",
            "-CAfile",
            s(&f.gw.root),
            "-verify_return_error",
            "-verify_hostname",
            "api.example.com",
        ],
        "",
    );
    assert!(o.stdout.contains("Verify return code: 0 (ok)"), "internal-CA certificate must verify:\n{}", o.all());
    let r = f.gw.curl("api.example.com", "/", &[]);
    assert!(r.ok(), "{r:?}");
}

#[test]
fn internal_ca_certificate_for_a_site() {
    let f = fixture();
    let (_, pem) = served_leaf(&f.gw, Some("other.test"));
    assert!(sans_of_pem(&f.env, &pem).contains("DNS:other.test"));
    let r = f.gw.curl("other.test", "/x", &[]);
    assert!(r.ok(), "curl with --cacert root against an internal-CA site certificate: {r:?}");
    assert_eq!(r.upstream().path, "/x");
}

#[test]
fn no_sni_gets_the_first_site() {
    let f = fixture();
    let (der, _) = served_leaf(&f.gw, None);
    assert!(der == f.file_cert.der(), "without SNI the first site's certificate should be served");
}

#[test]
fn unknown_sni_is_refused_at_the_handshake_and_logged() {
    let f = fixture();
    let o = f.gw.s_client(&["-servername", "nope.invalid", "-CAfile", s(&f.gw.root)], "");
    assert!(first_pem(&o.stdout).is_none(), "no certificate should be served for an unknown name:\n{}", o.all());
    assert_ne!(o.code, 0, "s_client should fail for an unknown SNI:\n{}", o.all());
    let line =
        f.gw.wait_refusal("handshake_refused", "unknown_server_name", Duration::from_secs(3))
            .unwrap_or_else(|| panic!("no handshake_refused line\n{}", f.gw.proc.dump()));
    assert_eq!(line["sni"], "nope.invalid", "{line}");
    assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
    assert!(line["detail"].as_str().is_some_and(|d| !d.is_empty()), "{line}");

    // curl too, and the gateway goes on serving.
    let r = f.gw.curl("nope.invalid", "/", &[]);
    assert_ne!(r.exit, 0, "{r:?}");
    assert!(f.gw.curl("app.example.com", "/", &[]).ok());
}

#[test]
fn host_not_served_by_the_connections_site_is_421() {
    let f = fixture();
    for proto in ["--http1.1", "--http2"] {
        // SNI app.example.com (site 0), Host other.test (site 2).
        let r = f.gw.curl("app.example.com", "/", &[proto, "-H", "Host: other.test"]);
        assert_eq!(r.status, 421, "{proto}: Host of another site on this connection: {r:?}");
        // A name of the same site (wildcard) is fine.
        let r = f.gw.curl("app.example.com", "/", &[proto, "-H", "Host: www.example.com"]);
        assert_eq!(r.status, 200, "{proto}: Host www.example.com belongs to the connection's site: {r:?}");
    }
    let line = f.gw.proc.wait_json(Duration::from_secs(3), |v| v["event"] == "request" && v["status"] == 421);
    assert!(line.is_some_and(|l| l["host"] == "other.test"), "access line for the 421\n{}", f.gw.proc.dump());
}
