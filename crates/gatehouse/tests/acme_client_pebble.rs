//! gatehouse's ACME client (issue 10) against Let's Encrypt's pebble: a site with
//! `certificate = { acme = "pebble" }` serves a self-signed placeholder, gets its
//! certificate over http-01 on the gateway's plain-HTTP listener, over tls-alpn-01 on
//! its TLS listener, or as a wildcard over dns-01 through bind9 and RFC 2136, then
//! serves it (openssl and curl verify it against pebble's root); a restart on the same
//! data dir serves the kept certificate without a new order. `gatehouse config check`
//! refuses what cannot work.
//!
//! One bind9 and one pebble serve every test. pebble validates on fixed ports, which
//! are the gateway's `[listen]` http and https: one gateway at a time ([`peers`]'s lock).

mod support;

use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock};

use support::*;

/// bind9, pebble validating on `pebble.http_port` / `pebble.tls_port`, and the lock of
/// those ports.
struct Peers {
    bind: Bind9,
    pebble: Pebble,
    lock: Mutex<()>,
}

fn peers() -> &'static Peers {
    static PEERS: OnceLock<Result<Peers, String>> = OnceLock::new();
    shared_fixture(&PEERS, "bind9 and pebble", || {
        let bind = Bind9::start();
        let pebble = Pebble::start(free_port(), free_port(), &bind);
        Peers { bind, pebble, lock: Mutex::new(()) }
    })
}

impl Peers {
    /// The gateway ports, held for one gateway's life.
    fn hold(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A gateway config with one `[[acme]]` table `pebble` (`challenge`, `extra` lines)
    /// and one site for `hosts`, listening where pebble validates.
    fn config(&self, admin: u16, challenge: &str, extra: &str, hosts: &[&str], upstream: &Upstream) -> String {
        let p = &self.pebble;
        let body = format!(
            "{}{}",
            acme_toml("pebble", &p.directory(), &p.tls_root, challenge, extra),
            acme_site_toml(hosts, "pebble")
        );
        edge_toml(p.tls_port, p.http_port, admin, &body, &upstream.url())
    }

    fn start(&self, dir: &Path, toml: &str, admin: u16) -> Edge {
        Edge::start(dir, self.pebble.tls_port, admin, toml)
    }
}

/// The first handshake of a gateway that has no certificate yet gets the placeholder,
/// unless the order was done before it (pebble is fast); the log says which.
#[track_caller]
fn first_handshake(edge: &mut Edge, host: &str, dir: &Path) {
    let served = edge.served(host, &dir.join("first"));
    if subject_of(&served.leaf).contains("placeholder") {
        assert_placeholder(&served, host);
    }
    let warned = edge.wait_log(0, NO_CERTIFICATE_YET, LOG_LIMIT);
    assert!(warned.text.contains("WARN"), "{}", warned.text);
    assert_eq!(warned.field("hosts").as_deref(), Some(host), "{}", warned.text);
    assert_eq!(warned.field("acme").as_deref(), Some("pebble"), "{}", warned.text);
}

/// Asserts a new handshake for `sni` gets the certificate of the `obtained` log line, for
/// exactly `names`, verifying to pebble's root with the chain the gateway sent, with the
/// key the gateway keeps; returns it.
#[track_caller]
fn assert_serves(edge: &Edge, sni: &str, first_host: &str, names: &[&str], obtained: &LogLine, into: &Path) -> Issued {
    let mut served = edge.served(sni, into);
    let stored = edge.stored_dir("pebble", first_host);
    served.key = stored.join("key.pem");
    let root = peers().pebble.issuing_root();
    served.assert_valid(&root, names);
    edge.assert_verifies(sni, &root);
    assert_eq!(norm_serial(&served.serial()), obtained.serial(), "served vs logged: {}", obtained.text);
    let chain = pem_certs(&read(&served.chain));
    assert!(!chain.is_empty(), "the gateway sent the leaf without pebble's intermediate");
    served
}

#[test]
fn http01_certificate_is_obtained_and_served() {
    let peers = peers();
    let _ports = peers.hold();
    let dir = tmp();
    let env = Env::empty();
    let upstream = Upstream::start(&env);
    let host = "a.example.test";
    let admin = free_port();
    let mut edge = peers.start(&dir, &peers.config(admin, "http-01", "", &[host], &upstream), admin);
    first_handshake(&mut edge, host, &dir);
    let obtained = edge.wait_certificate(0, OBTAINED);
    assert_eq!(obtained.field("hosts").as_deref(), Some(host), "{}", obtained.text);
    edge.wait_log(0, ACCOUNT_REGISTERED, LOG_LIMIT);

    assert_serves(&edge, host, host, &[host], &obtained, &dir.join("served"));
    let r = curl_edge(&edge, host, "/through", &peers.pebble.issuing_root());
    assert_upstream_answered(&r, "/through");
    assert_eq!(edge.orders("pebble", "ok"), 1.0, "{}", edge.metrics());

    let account = dir.join("data/acme/pebble/account.json");
    assert_eq!(mode(&account), 0o600, "{}", account.display());
    let kept = edge.stored_dir("pebble", host);
    assert_eq!(mode(kept.join("key.pem")), 0o600);
    assert!(exists(kept.join("certificate.pem")));
}

#[test]
fn tls_alpn01_certificate_is_obtained_and_served() {
    let peers = peers();
    let _ports = peers.hold();
    let dir = tmp();
    let env = Env::empty();
    let upstream = Upstream::start(&env);
    let host = "b.example.test";
    let admin = free_port();
    let mut edge = peers.start(&dir, &peers.config(admin, "tls-alpn-01", "", &[host], &upstream), admin);
    first_handshake(&mut edge, host, &dir);
    let obtained = edge.wait_certificate(0, OBTAINED);
    assert_serves(&edge, host, host, &[host], &obtained, &dir.join("served"));
    let r = curl_edge(&edge, host, "/alpn", &peers.pebble.issuing_root());
    assert_upstream_answered(&r, "/alpn");
}

#[test]
fn dns01_wildcard_through_bind9_is_obtained_and_its_records_removed() {
    let peers = peers();
    let _ports = peers.hold();
    let dir = tmp();
    let env = Env::empty();
    let upstream = Upstream::start(&env);
    let hosts = ["*.w.example.test", "w.example.test"];
    let admin = free_port();
    // The key as tsig-keygen printed it (named.conf's `key` block).
    let dns = rfc2136_toml(&peers.bind, &peers.bind.dir.join("key.conf"));
    let mut edge = peers.start(&dir, &peers.config(admin, "dns-01", &dns, &hosts, &upstream), admin);
    let obtained = edge.wait_certificate(0, OBTAINED);
    assert_eq!(obtained.field("hosts").as_deref(), Some("*.w.example.test,w.example.test"), "{}", obtained.text);

    let served = assert_serves(&edge, "x.w.example.test", hosts[0], &hosts, &obtained, &dir.join("served"));
    assert!(served.sans().contains(&"DNS:*.w.example.test".to_string()), "{:?}", served.sans());
    let r = curl_edge(&edge, "x.w.example.test", "/wild", &peers.pebble.issuing_root());
    assert_upstream_answered(&r, "/wild");
    let r = curl_edge(&edge, "w.example.test", "/base", &peers.pebble.issuing_root());
    assert_upstream_answered(&r, "/base");
    // Both names were proven with a record at the same name; both are gone.
    let left = peers.bind.txt("_acme-challenge.w.example.test");
    assert!(left.is_empty(), "the gateway left dns-01 records behind: {left:?}");
}

#[test]
fn a_restart_serves_the_kept_certificate_without_a_new_order() {
    let peers = peers();
    let _ports = peers.hold();
    let dir = tmp();
    let env = Env::empty();
    let upstream = Upstream::start(&env);
    let host = "d.example.test";
    let admin = free_port();
    let toml = peers.config(admin, "http-01", "", &[host], &upstream);
    let first = {
        let mut edge = peers.start(&dir, &toml, admin);
        let obtained = edge.wait_certificate(0, OBTAINED);
        assert_serves(&edge, host, host, &[host], &obtained, &dir.join("first")).serial()
    };

    let mut edge = peers.start(&dir, &toml, admin);
    let scheduled = edge.wait_log(0, SCHEDULED, ORDER_LIMIT);
    assert!(scheduled.field("at").is_some(), "{}", scheduled.text);
    let served = edge.served(host, &dir.join("again"));
    assert_eq!(served.serial(), first, "the restarted gateway serves another certificate");
    for what in [OBTAINED, RENEWED, ACCOUNT_REGISTERED, NO_CERTIFICATE_YET, ORDER_FAILED] {
        let seen = edge.lines(0, what);
        assert!(seen.is_empty(), "after a restart with a valid kept certificate: {seen:?}\n{}", edge.proc.dump());
    }
    assert_eq!(edge.orders("pebble", "ok"), 0.0, "{}", edge.metrics());
    assert_eq!(edge.orders("pebble", "failed"), 0.0, "{}", edge.metrics());
}

/// The 1-based line of the first line of `toml` that contains `what`.
fn line_of(toml: &str, what: &str) -> usize {
    toml.lines().position(|l| l.contains(what)).map(|i| i + 1).unwrap_or_else(|| panic!("no {what:?} in\n{toml}"))
}

#[test]
fn config_check_refuses_a_wildcard_without_dns01_and_an_unknown_acme_table() {
    let dir = tmp();
    let data = mkdir(dir.join("data"));
    let bundle = dir.join("bundle.pem");
    write(&bundle, "");
    let check = |toml: &str| {
        let file = dir.join("gw.toml");
        write(&file, toml);
        gh(&data, &["config", "check", s(&file)])
    };

    let body = format!(
        "{}{}",
        acme_toml("le", "https://localhost:14000/dir", &bundle, "http-01", ""),
        acme_site_toml(&["*.w.example.test", "w.example.test"], "le")
    );
    let toml = edge_toml(8443, 8080, 9090, &body, "http://127.0.0.1:9");
    let o = check(&toml);
    assert_eq!(o.code, 2, "{toml}\n{}", o.all());
    let line = line_of(&toml, "hosts = [\"*.w.example.test\"");
    for words in [format!("line {line},"), "*.w.example.test".into(), "dns-01".into(), "\"le\"".into()] {
        assert!(o.stderr.contains(&words), "want {words:?} in:\n{}\n{toml}", o.stderr);
    }

    let body = format!(
        "{}{}",
        acme_toml("le", "https://localhost:14000/dir", &bundle, "http-01", ""),
        acme_site_toml(&["n.example.test"], "nope")
    );
    let toml = edge_toml(8443, 8080, 9090, &body, "http://127.0.0.1:9");
    let o = check(&toml);
    assert_eq!(o.code, 2, "{toml}\n{}", o.all());
    for words in ["acme = \"nope\"", "no [[acme]] table"] {
        assert!(o.stderr.contains(words), "want {words:?} in:\n{}\n{toml}", o.stderr);
    }
}
