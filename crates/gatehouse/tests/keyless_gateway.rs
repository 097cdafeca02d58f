//! Keyless sites (issue 11): the gateway holds only the certificate, and `gatehouse
//! keyserver` signs each full handshake. curl and `openssl s_client` complete TLS 1.3
//! and TLS 1.2 handshakes with ECDSA P-256, RSA-2048 (PSS in 1.3, PKCS#1 v1.5 in 1.2
//! when the client offers only that) and Ed25519 keys from a key directory; a key the
//! key server does not have fails the handshake, logged with the protocol's error
//! code, and one that a second key server has is found there; with two key servers,
//! stopping one under load fails no handshake.
//!
//! The key server is [`KeyServer`] (its CA is the gateway's internal CA: the gateway's
//! client certificate and its trust in the key server come from it by default).

mod support;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::acme::{Daemon, shared_fixture};
use support::keyless::{HandshakeLoad, KeyServer};
use support::*;

/// The key server's keys the sites use, with the host each site serves.
const SITES: [(&str, &str); 3] =
    [("p256-pkcs8", "ec.keyless.test"), ("rsa-pkcs8", "rsa.keyless.test"), ("ed25519", "ed.keyless.test")];

/// A gateway with one keyless site per [`SITES`] entry (and `extra_sites`), signing
/// through the key servers on `ports`, its data dir the key server's (its internal CA).
struct KeylessGateway {
    gateway: Gateway,
    _upstream: Upstream,
}

impl KeylessGateway {
    #[track_caller]
    fn start(ks: &KeyServer, ports: &[u16], extra_sites: &[(PathBuf, &str)], name: &str) -> KeylessGateway {
        let upstream = Upstream::start(&ks.env);
        let https = free_port();
        let servers: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        let mut toml = format!(
            "{}\n[runtime]\nworker_threads = 1\n\n[[keyless]]\nname = \"ks\"\nservers = [{}]\nserver_name = \"localhost\"\ntimeout_ms = 3000\n",
            listen_toml(https, None, None),
            servers.join(", ")
        );
        let mut sites: Vec<(PathBuf, &str)> =
            SITES.iter().map(|(key, host)| (ks.site_certificate(&ks.key(key).file, host), *host)).collect();
        sites.extend(extra_sites.iter().cloned());
        for (chain, host) in &sites {
            toml.push_str(&format!(
                "\n[[site]]\nhosts = [\"{host}\"]\ncertificate = {{ cert = \"{}\", keyless = \"ks\" }}\nupstream = \"app\"\n",
                s(chain)
            ));
        }
        toml.push_str(&upstream_toml("app", &upstream.url()));
        let gateway = Gateway::start(&ks.env, name, https, &toml);
        KeylessGateway { gateway, _upstream: upstream }
    }
}

/// One gateway over the shared key server for the tests that only connect.
fn shared() -> &'static KeylessGateway {
    static GATEWAY: OnceLock<Result<KeylessGateway, String>> = OnceLock::new();
    shared_fixture(&GATEWAY, "keyless gateway", || {
        KeylessGateway::start(KeyServer::shared(), &[KeyServer::shared().port], &[], "keyless-gw.toml")
    })
}

#[test]
fn tls13_and_tls12_handshakes_are_signed_by_the_key_server() {
    let gw = &shared().gateway;
    for (_, host) in SITES {
        // curl: TLS 1.3 and TLS 1.2, through to the upstream.
        for version in [["--tlsv1.3", "--tls-max", "1.3"], ["--tlsv1.2", "--tls-max", "1.2"]] {
            let r = gw.curl(host, "/keyless", &version);
            assert_eq!(r.status, 200, "curl {version:?} {host}: {r:?}\n{}", gw.proc.dump());
        }
        let tls13 = gw.s_client_verified(host, &["-tls1_3"]);
        assert!(tls13.contains("TLSv1.3"), "{tls13}");
        let tls12 = gw.s_client_verified(host, &["-tls1_2"]);
        assert!(tls12.contains("TLSv1.2"), "{tls12}");
    }
    // RSA: PSS in TLS 1.3; PKCS#1 v1.5 when a TLS 1.2 client offers only that.
    let rsa = "rsa.keyless.test";
    let pss = gw.s_client_verified(rsa, &["-tls1_3"]);
    assert!(pss.contains("Peer signature type: RSA-PSS"), "{pss}");
    let pkcs1 = gw.s_client_verified(rsa, &["-tls1_2", "-sigalgs", "RSA+SHA256"]);
    assert!(pkcs1.contains("Peer signature type: RSA\n") || pkcs1.contains("Peer signature type: RSA\r"), "{pkcs1}");
    let ed = gw.s_client_verified("ed.keyless.test", &["-tls1_3"]);
    assert!(ed.to_ascii_lowercase().contains("peer signature type: ed25519"), "{ed}");
    let ec = gw.s_client_verified("ec.keyless.test", &["-tls1_2"]);
    assert!(ec.contains("Peer signature type: ECDSA"), "{ec}");
    // The key server did the signing: its metrics count each family's operations.
    let m = metrics(KeyServer::shared().metrics_port);
    for family in ["ecdsa", "rsa_pss", "rsa_pkcs1", "ed25519"] {
        let ok = metric(&m, &format!("keyserver_operations_total{{family=\"{family}\",result=\"ok\"}}"));
        assert!(ok.is_some_and(|n| n >= 1.0), "no {family} signature counted by the key server:\n{m}");
    }
}

#[test]
fn a_key_the_key_server_does_not_have_fails_the_handshake_with_its_error_code() {
    let ks = KeyServer::shared();
    let chain = orphan_key(ks, "unknown-key");
    let kg = KeylessGateway::start(ks, &[ks.port], &[(chain, "orphan.keyless.test")], "orphan-gw.toml");
    let gw = &kg.gateway;
    let r = gw.curl("orphan.keyless.test", "/", &[]);
    assert_ne!(r.status, 200, "a handshake without the key completed: {r:?}");
    let start = Instant::now();
    while !gw.proc.stderr().contains("reason=keyless_error:key_not_found") {
        assert!(start.elapsed() < Duration::from_secs(20), "no keyless_error:key_not_found line:\n{}", gw.proc.dump());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The other sites are not affected.
    assert_eq!(gw.curl("ec.keyless.test", "/", &[]).status, 200);
}

/// A P-256 key made in `dir` under the key server's test dir, never given to the key
/// server, and the chain of a site certificate for `orphan.keyless.test` with it.
fn orphan_key(ks: &KeyServer, dir: &str) -> PathBuf {
    let dir = ks.env.path().join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("orphan.key");
    openssl_ok(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", s(&key)]);
    ks.site_certificate(&key, "orphan.keyless.test")
}

/// A second key server with the shared one's certificate and CA, serving the keys of
/// `keys` (a directory under the key server's test dir), listening on its own port.
fn second_key_server(ks: &KeyServer, name: &str, keys: &str) -> (Daemon, u16) {
    let port = free_port();
    let config = ks.env.write(
        &format!("{name}.toml"),
        &format!(
            "listen = \"127.0.0.1:{port}\"\ncertificate = {{ cert = \"certs/localhost.fullchain.pem\", key = \"certs/localhost.key\" }}\n\
             [[keys]]\ndir = \"{keys}\"\n"
        ),
    );
    let mut c = gh_cmd(&ks.env.data(), &["keyserver", "--config", s(&config)]);
    c.current_dir("/");
    let mut daemon = Daemon::spawn(&c, &format!("gatehouse keyserver ({name})"), None);
    daemon.wait_listening(port, name);
    (daemon, port)
}

#[test]
fn key_servers_holding_different_keys_each_sign_with_their_own() {
    let ks = KeyServer::shared();
    // The second key server holds only a key the shared one has not.
    let chain = orphan_key(ks, "only-on-second");
    let (_second, port) = second_key_server(ks, "keyserver-orphan", "only-on-second");
    let kg = KeylessGateway::start(ks, &[port, ks.port], &[(chain, "orphan.keyless.test")], "split-gw.toml");
    let gw = &kg.gateway;
    // Requests start at each server in turn: the one without the key passes it on.
    for round in 0..4 {
        for host in ["orphan.keyless.test", "ec.keyless.test"] {
            let r = gw.curl(host, "/split", &[]);
            assert_eq!(r.status, 200, "round {round}, {host}: {r:?}\n{}", gw.proc.dump());
        }
    }
}

#[test]
fn stopping_one_of_two_key_servers_under_load_fails_no_handshake() {
    let ks = KeyServer::shared();
    // A second key server: the same keys, certificate and CA, another port.
    let (second, port) = second_key_server(ks, "keyserver-2", "keys");
    // The second first: a server list is tried in turn from a rotating start.
    let kg = KeylessGateway::start(ks, &[port, ks.port], &[], "two-gw.toml");
    let load = HandshakeLoad::start("ec.keyless.test", kg.gateway.https, "/load", &kg.gateway.root, 2);
    load.wait_done(20);
    let before = load.done();
    drop(second); // SIGTERM to the second key server, under load
    load.wait_done(before + 60);
    let (total, failures) = load.finish();
    eprintln!("{total} handshakes, {} failed, the second key server stopped after {before}", failures.len());
    assert!(failures.is_empty(), "handshakes failed around the stop: {failures:?}\n{}", kg.gateway.proc.dump());
}
