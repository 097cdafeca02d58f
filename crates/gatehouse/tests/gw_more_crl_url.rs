//! CRLs published at URLs (`trust = { crl_urls = [...], crl_refresh_secs = N }`): fetched at
//! start (a site does not start without them) and refreshed every `crl_refresh_secs`.
//! The CRL is made by `gatehouse ca crl` and served by a python3 `http.server`; the
//! trust store is the CA files only (no `internal_ca`), so revocation can only come
//! from the fetched CRL.
mod support;
use support::*;

use std::time::{Duration, Instant};

/// root + intermediate in one PEM file (T/ca-bundle.pem).
fn ca_bundle(env: &Env) -> std::path::PathBuf {
    let root = std::fs::read_to_string(env.root()).unwrap();
    let inter = std::fs::read_to_string(env.intermediate()).unwrap();
    env.write("ca-bundle.pem", &format!("{root}{inter}"))
}

fn crl_site(env: &Env, crl_url: &str) -> String {
    let bundle = ca_bundle(env);
    format!(
        "mtls = \"require\"\ntrust = {{ ca_files = [\"{}\"], crl_urls = [\"{crl_url}\"], crl_refresh_secs = 1 }}\n",
        s(&bundle)
    )
}

#[test]
fn crl_from_url_refuses_revoked_and_refreshes() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let alice = env.client("alice");
    let bob = env.client("bob");

    // alice revoked, CRL published at http://127.0.0.1:PORT/ca.crl.
    env.gh_ok(&["ca", "revoke", &alice.serial]);
    let pub_dir = env.path().join("pub");
    std::fs::create_dir_all(&pub_dir).unwrap();
    let crl = pub_dir.join("ca.crl");
    env.gh_ok(&["ca", "crl", "--out", s(&crl)]);
    let files = FileServer::start(&env, &pub_dir);
    let url = files.url("ca.crl");
    // The file server really serves it.
    let r = curl(std::slice::from_ref(&url));
    assert_eq!(r.status, 200, "the python file server does not serve the CRL: {r:?}");

    let mut gw = Gateway::localhost(&env, &up, "", &crl_site(&env, &url));

    // alice (revoked in the fetched CRL): refused at the handshake, reason revoked.
    let r = gw.curl_cert("localhost", "/", &alice, &[]);
    assert_ne!(r.exit, 0, "revoked alice must be refused at the handshake: {r:?}\n{}", gw.proc.dump());
    assert_ne!(r.status, 200, "{r:?}");
    let line = gw
        .wait_refusal("handshake_refused", "revoked", Duration::from_secs(3))
        .unwrap_or_else(|| panic!("no handshake_refused/revoked line for alice\n{}", gw.proc.dump()));
    assert_eq!(line["sni"], "localhost", "{line}");

    // bob (not revoked): served.
    let r = gw.curl_cert("localhost", "/", &bob, &[]);
    assert!(r.ok(), "bob is not revoked and must get 200: {r:?}\n{}", gw.proc.dump());

    // Revoke bob and publish a new CRL in place: refused within ~3 s (refresh every 1 s).
    env.gh_ok(&["ca", "revoke", &bob.serial]);
    env.gh_ok(&["ca", "crl", "--out", s(&crl)]);
    let published = Instant::now();
    let mut last = None;
    let took = poll_until(Duration::from_secs(6), || {
        let r = gw.curl_cert("localhost", "/", &bob, &[]);
        let refused = r.exit != 0 && r.status != 200;
        last = Some(r);
        refused
    })
    .map(|_| published.elapsed());
    let took = took.unwrap_or_else(|| {
        panic!(
            "bob still served 6 s after the CRL at the URL changed (crl_refresh_secs = 1): {last:?}\n{}",
            gw.proc.dump()
        )
    });
    assert!(took <= Duration::from_millis(3500), "the refreshed CRL applied only after {} ms", ms(took));
    let n =
        gw.proc.json_lines().iter().filter(|v| v["event"] == "handshake_refused" && v["reason"] == "revoked").count();
    assert!(n >= 2, "expected handshake_refused/revoked lines for alice and bob\n{}", gw.proc.dump());

    assert!(gw.proc.try_exit().is_none(), "the gateway must keep running\n{}", gw.proc.dump());
}

#[test]
fn crl_url_on_a_dead_port_fails_serve_at_start_naming_the_url() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let https = free_port();
    let dead = free_port();
    let url = format!("http://127.0.0.1:{dead}/ca.crl");
    let toml = localhost_config(&env, &listen_toml(https, None, None), &up, "", &crl_site(&env, &url));
    let config = env.write("gw.toml", &toml);

    let mut c = gh_cmd(&env.data(), &["serve", "--config", s(&config)]);
    c.current_dir("/");
    let started = Instant::now();
    let o = run_limited(c, Duration::from_secs(25));
    assert_ne!(o.code, -9, "gatehouse serve kept running although its CRL URL is unreachable:\n{}", o.all());
    assert_ne!(o.code, 0, "gatehouse serve must fail at start when a CRL URL cannot be fetched:\n{}", o.all());
    assert!(
        o.stderr.contains(&url),
        "stderr should name the CRL URL {url}:\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.stdout,
        o.stderr
    );
    assert!(started.elapsed() <= Duration::from_secs(15), "failing took {} ms", ms(started.elapsed()));
    assert!(!port_open(https), "nothing should listen on the https port after the failed start");
}
