//! Keyless tunnel mode (issue 11): key servers dial out to the gateway's
//! `[listen] keyless_tunnel`, so they open no port for gateways, and the gateway
//! sends its signing requests back over the connections they opened. curl and
//! `openssl s_client` complete TLS 1.3 and 1.2 handshakes through the tunnel with
//! ECDSA P-256, RSA-2048 and Ed25519 keys from a key directory; two key servers
//! attached for the same keys share the signatures; one killed under load is
//! dropped at once and no handshake fails; certificates the other side does not
//! trust are refused on both sides.
//!
//! The keys, the CA (the gateway's internal CA) and the site certificates come
//! from the shared [`KeyServer`] fixture; its own listening key server is not
//! used here: the gateways list no servers.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::acme::{Daemon, shared_fixture};
use support::keyless::{HandshakeLoad, KeyServer};
use support::*;

/// The key server's keys the sites use, with the host each site serves.
const SITES: [(&str, &str); 3] =
    [("p256-pkcs8", "ec.tunnel.test"), ("rsa-pkcs8", "rsa.tunnel.test"), ("ed25519", "ed.tunnel.test")];

/// The name key servers' certificates carry, which the gateway's table requires.
const KEY_SERVER_NAME: &str = "keys.tunnel.test";

/// A key server's client certificate from the internal CA, naming [`KEY_SERVER_NAME`].
fn key_server_cert(env: &Env, cn: &str) -> Cert {
    env.issue("client", cn, &[&format!("DNS:{KEY_SERVER_NAME}")])
}

/// A gateway whose keyless table has no servers: only key servers attached through
/// its tunnel listener sign.
struct TunnelGateway {
    gateway: Gateway,
    tunnel: u16,
    /// The admin listener (`/metrics`).
    admin: u16,
    _upstream: Upstream,
}

impl TunnelGateway {
    #[track_caller]
    fn start(ks: &KeyServer, name: &str) -> TunnelGateway {
        let upstream = Upstream::start(&ks.env);
        let (https, tunnel, admin) = (free_port(), free_port(), free_port());
        let mut toml = format!(
            "{}keyless_tunnel = \"127.0.0.1:{tunnel}\"\n\n[runtime]\nworker_threads = 1\n\n\
             [[keyless]]\nname = \"ks\"\nservers = []\nserver_name = \"{KEY_SERVER_NAME}\"\ntimeout_ms = 3000\n",
            listen_toml(https, None, Some(admin))
        );
        for (key, host) in SITES {
            let chain = ks.site_certificate(&ks.key(key).file, host);
            toml.push_str(&format!(
                "\n[[site]]\nhosts = [\"{host}\"]\ncertificate = {{ cert = \"{}\", keyless = \"ks\" }}\nupstream = \"app\"\n",
                s(&chain)
            ));
        }
        toml.push_str(&upstream_toml("app", &upstream.url()));
        let gateway = Gateway::start(&ks.env, name, https, &toml);
        assert!(
            gateway.proc.stderr().contains(&format!("keyless tunnel for key servers on 127.0.0.1:{tunnel}")),
            "{}",
            gateway.proc.dump()
        );
        TunnelGateway { gateway, tunnel, admin, _upstream: upstream }
    }

    /// How many key servers the gateway has logged as attached.
    fn attached(&self) -> usize {
        self.gateway.proc.stderr().matches("key server attached through the keyless tunnel").count()
    }

    /// The gateway's gauge of the key servers of table `ks` reached `via` "listed" or "tunnel".
    fn servers_metric(&self, via: &str) -> Option<f64> {
        metric(&metrics(self.admin), &format!("gatehouse_keyless_servers{{keyless=\"ks\",via=\"{via}\"}}"))
    }

    /// Waits until `n` key servers have attached.
    #[track_caller]
    fn wait_attached(&self, n: usize) {
        let start = Instant::now();
        while self.attached() < n {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{n} key servers did not attach:\n{}",
                self.gateway.proc.dump()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The file of a key server in tunnel mode dialling `tunnel`, with `certificate`
/// (its client certificate) and `extra` lines (`trust`, `metrics`).
fn tunnel_config(ks: &KeyServer, name: &str, tunnel: &str, certificate: &Cert, extra: &str) -> PathBuf {
    ks.env.write(
        &format!("{name}.toml"),
        &format!(
            "tunnel = \"{tunnel}\"\n{extra}\ncertificate = {{ cert = \"{}\", key = \"{}\" }}\n[[keys]]\ndir = \"keys\"\n",
            s(certificate.chain()),
            s(&certificate.key)
        ),
    )
}

/// `gatehouse keyserver` with that file; the data dir is the fixture's (its internal
/// CA is the default trust).
fn key_server_command(ks: &KeyServer, config: &std::path::Path) -> Command {
    let mut c = gh_cmd(&ks.env.data(), &["keyserver", "--config", s(config)]);
    c.current_dir("/").env("GATEHOUSE_LOG", "info,keyserver=debug");
    c
}

/// A tunnel gateway with two key servers attached, shared by the tests that only connect.
struct Shared {
    tg: TunnelGateway,
    metrics: [u16; 2],
    _servers: [Daemon; 2],
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();
    shared_fixture(&SHARED, "tunnel gateway", || {
        let ks = KeyServer::shared();
        let tg = TunnelGateway::start(ks, "tunnel-gw.toml");
        let metrics = [free_port(), free_port()];
        // One dials the name, one the address: the certificate carries both.
        let targets = [format!("localhost:{}", tg.tunnel), format!("127.0.0.1:{}", tg.tunnel)];
        let servers = [0, 1].map(|i| {
            let cert = key_server_cert(&ks.env, &format!("tunnel-ks-{i}"));
            let extra = format!("metrics = \"127.0.0.1:{}\"", metrics[i]);
            let config = tunnel_config(ks, &format!("tunnel-ks-{i}"), &targets[i], &cert, &extra);
            let mut daemon = Daemon::spawn(&key_server_command(ks, &config), &format!("keyserver tunnel {i}"), None);
            daemon.wait_listening(metrics[i], "the tunnel key server's metrics");
            daemon
        });
        tg.wait_attached(2);
        Shared { tg, metrics, _servers: servers }
    })
}

/// The signatures a key server has made, every family together.
fn signatures(metrics_port: u16) -> f64 {
    let m = metrics(metrics_port);
    ["ecdsa", "rsa_pss", "rsa_pkcs1", "ed25519"]
        .iter()
        .filter_map(|f| metric(&m, &format!("keyserver_operations_total{{family=\"{f}\",result=\"ok\"}}")))
        .sum()
}

#[test]
fn tls13_and_tls12_handshakes_are_signed_through_the_tunnel_by_both_key_servers() {
    let sh = shared();
    let gw = &sh.tg.gateway;
    for (_, host) in SITES {
        for version in [["--tlsv1.3", "--tls-max", "1.3"], ["--tlsv1.2", "--tls-max", "1.2"]] {
            let r = gw.curl(host, "/tunnel", &version);
            assert_eq!(r.status, 200, "curl {version:?} {host}: {r:?}\n{}", gw.proc.dump());
        }
    }
    let rsa = "rsa.tunnel.test";
    let pss = gw.s_client_verified(rsa, &["-tls1_3"]);
    assert!(pss.contains("Peer signature type: RSA-PSS"), "{pss}");
    let pkcs1 = gw.s_client_verified(rsa, &["-tls1_2", "-sigalgs", "RSA+SHA256"]);
    assert!(pkcs1.contains("Peer signature type: RSA\n") || pkcs1.contains("Peer signature type: RSA\r"), "{pkcs1}");
    let ed = gw.s_client_verified("ed.tunnel.test", &["-tls1_3"]);
    assert!(ed.to_ascii_lowercase().contains("peer signature type: ed25519"), "{ed}");
    let ec = gw.s_client_verified("ec.tunnel.test", &["-tls1_2"]);
    assert!(ec.contains("Peer signature type: ECDSA"), "{ec}");
    // Requests are spread over the attached key servers: each has signed.
    for (i, port) in sh.metrics.iter().enumerate() {
        assert!(signatures(*port) >= 1.0, "tunnel key server {i} signed nothing:\n{}", metrics(*port));
    }
}

#[test]
fn a_key_server_the_gateway_does_not_trust_is_refused_at_the_tunnel() {
    let sh = shared();
    let ks = KeyServer::shared();
    // A client certificate from another CA; the key server itself trusts the gateway.
    let other = Env::new();
    let stranger = key_server_cert(&other, "stranger-ks");
    let trust = format!("trust = [\"{}\"]", s(&ks.env.root()));
    let config = tunnel_config(ks, "stranger-ks", &format!("127.0.0.1:{}", sh.tg.tunnel), &stranger, &trust);
    let mut server = Daemon::spawn(&key_server_command(ks, &config), "keyserver (stranger)", None);
    // TLS 1.3: the refusal is the gateway's alert, read after the handshake completed here.
    // (Both CAs are gatehouse's with the same names: webpki finds a bad signature.)
    server.wait_stderr("the gateway's alert", |l| l.contains("keyless tunnel closed") && l.contains("fatal alert"));
    assert!(!server.proc.stderr().contains("attached to the gateway"), "{}", server.proc.dump());
    let gw = &sh.tg.gateway;
    let start = Instant::now();
    while !gw.proc.stderr().contains("keyless tunnel: a key server's handshake was refused") {
        assert!(start.elapsed() < Duration::from_secs(20), "the gateway logged no refusal:\n{}", gw.proc.dump());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(sh.tg.attached(), 2, "the stranger attached:\n{}", gw.proc.dump());
    assert_eq!(gw.curl("ec.tunnel.test", "/", &[]).status, 200);
}

#[test]
fn a_client_certificate_of_the_same_ca_without_the_name_cannot_attach() {
    let sh = shared();
    let ks = KeyServer::shared();
    // A user's certificate from the gateway's own internal CA: it chains, but is no key server.
    let user = ks.env.client("just-a-user");
    let config = tunnel_config(ks, "user-ks", &format!("127.0.0.1:{}", sh.tg.tunnel), &user, "");
    let mut server = Daemon::spawn(&key_server_command(ks, &config), "keyserver (a user's certificate)", None);
    server.wait_stderr("the gateway's alert", |l| l.contains("keyless tunnel closed") && l.contains("fatal alert"));
    assert!(!server.proc.stderr().contains("attached to the gateway"), "{}", server.proc.dump());
    assert_eq!(sh.tg.attached(), 2, "a user's certificate attached:\n{}", sh.tg.gateway.proc.dump());
}

#[test]
fn a_gateway_the_key_server_does_not_trust_gets_no_connection() {
    let sh = shared();
    let ks = KeyServer::shared();
    // The key server trusts only another CA: the gateway's tunnel certificate fails.
    let other = Env::new();
    let cert = key_server_cert(&ks.env, "wary-ks");
    let trust = format!("trust = [\"{}\"]", s(&other.root()));
    let config = tunnel_config(ks, "wary-ks", &format!("127.0.0.1:{}", sh.tg.tunnel), &cert, &trust);
    let mut server = Daemon::spawn(&key_server_command(ks, &config), "keyserver (wary)", None);
    server.wait_stderr("a refused gateway", |l| {
        l.contains("cannot open the keyless tunnel") && l.contains("invalid peer certificate")
    });
    assert_eq!(sh.tg.attached(), 2, "the wary key server attached:\n{}", sh.tg.gateway.proc.dump());
}

#[test]
fn a_server_certificate_without_client_auth_is_refused_at_start() {
    let ks = KeyServer::shared();
    let server_only = ks.env.issue("server", "server-only", &["DNS:server-only"]);
    let config = tunnel_config(ks, "server-only-ks", "127.0.0.1:9", &server_only, "");
    let o = run_limited(key_server_command(ks, &config), Duration::from_secs(30));
    assert_eq!(o.code, 2, "{}", o.all());
    assert!(
        o.stderr.contains("in tunnel mode it is the key server's TLS client certificate")
            && o.stderr.contains("--profile client"),
        "{}",
        o.all()
    );
}

#[test]
fn a_key_server_killed_under_load_is_dropped_at_once_and_no_handshake_fails() {
    let ks = KeyServer::shared();
    let tg = TunnelGateway::start(ks, "tunnel-failover-gw.toml");
    let mut servers: Vec<Proc> = (0..2)
        .map(|i| {
            let cert = key_server_cert(&ks.env, &format!("failover-ks-{i}"));
            let config = tunnel_config(ks, &format!("failover-ks-{i}"), &format!("127.0.0.1:{}", tg.tunnel), &cert, "");
            Proc::spawn(key_server_command(ks, &config), &format!("keyserver failover {i}"))
        })
        .collect();
    tg.wait_attached(2);
    // Both are on /metrics (attached, none listed).
    assert_eq!(tg.servers_metric("tunnel"), Some(2.0), "{}", metrics(tg.admin));
    assert_eq!(tg.servers_metric("listed"), Some(0.0), "{}", metrics(tg.admin));
    let load = HandshakeLoad::start("ec.tunnel.test", tg.gateway.https, "/load", &tg.gateway.root, 2);
    load.wait_done(20);
    let before = load.done();
    servers[0].kill(); // SIGKILL, under load: no goodbye on the tunnel
    let start = Instant::now();
    while !tg.gateway.proc.stderr().contains("key server left the keyless tunnel") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the killed key server was not dropped:\n{}",
            tg.gateway.proc.dump()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    load.wait_done(before + 60);
    let (total, failures) = load.finish();
    eprintln!("{total} handshakes, {} failed, one key server killed after {before}", failures.len());
    assert!(failures.is_empty(), "handshakes failed around the kill: {failures:?}\n{}", tg.gateway.proc.dump());
    // The survivor carried the rest, and is the one attached server left on /metrics.
    assert!(servers[1].try_exit().is_none(), "{}", servers[1].dump());
    assert_eq!(tg.servers_metric("tunnel"), Some(1.0), "{}", metrics(tg.admin));
}
