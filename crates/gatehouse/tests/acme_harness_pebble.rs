//! The ACME test harness proved against Let's Encrypt's pebble (Debian's): certbot
//! (http-01, dns-01 wildcard through bind9 and RFC 2136, renew, revoke) and lego
//! (http-01, tls-alpn-01, dns-01 wildcard, renew, revoke) get real certificates that
//! openssl verifies against pebble's root. When these pass and an `acme_certbot` /
//! `acme_lego` test fails, the fault is on gatehouse's side.
//!
//! Each test has its own pebble (its challenge ports are the ones its client listens
//! on); one bind9 serves them all.

mod support;

use std::sync::OnceLock;

use support::*;

/// The one bind9 of this binary.
fn bind() -> &'static Bind9 {
    static BIND: OnceLock<Bind9> = OnceLock::new();
    BIND.get_or_init(Bind9::start)
}

/// A pebble whose http-01 and tls-alpn-01 ports are free ports of this test.
fn pebble() -> Pebble {
    Pebble::start(free_port(), free_port(), bind())
}

#[test]
fn certbot_gets_a_certificate_over_http01_standalone() {
    let pebble = pebble();
    assert_directory(&pebble.directory(), &pebble.tls_root);
    let certbot = Certbot::new(&pebble.directory(), &pebble.tls_root);
    let names = ["certbot-http.example.test", "www.certbot-http.example.test"];
    let o = certbot.certonly("http", Solver::Http(pebble.http_port), &names, &[]);
    assert_client_ok("certbot certonly --standalone", &o);
    certbot.live("http").assert_valid(&pebble.issuing_root(), &names);
}

#[test]
fn certbot_gets_a_wildcard_over_dns01_through_bind9() {
    let pebble = pebble();
    let certbot = Certbot::new(&pebble.directory(), &pebble.tls_root);
    let names = ["*.certbot-dns.example.test"];
    let o = certbot.certonly("wildcard", Solver::Dns(bind()), &names, &[]);
    assert_client_ok("certbot certonly --dns-rfc2136", &o);
    certbot.live("wildcard").assert_valid(&pebble.issuing_root(), &names);
    // The plugin deleted its record through the same TSIG key once validated.
    let left = bind().txt("_acme-challenge.certbot-dns.example.test");
    assert!(left.is_empty(), "certbot left TXT records behind: {left:?}");
}

#[test]
fn certbot_renews_and_revokes() {
    let pebble = pebble();
    let certbot = Certbot::new(&pebble.directory(), &pebble.tls_root);
    let names = ["certbot-renew.example.test"];
    assert_client_ok("certbot certonly", &certbot.certonly("r", Solver::Http(pebble.http_port), &names, &[]));
    let first = certbot.live("r").serial();
    assert_client_ok("certbot renew --force-renewal", &certbot.renew("r", &["--force-renewal"]));
    let renewed = certbot.live("r");
    assert_ne!(renewed.serial(), first, "certbot renew --force-renewal kept the old certificate");
    renewed.assert_valid(&pebble.issuing_root(), &names);
    assert_client_ok("certbot revoke", &certbot.revoke("r", &[]));
}

#[test]
fn lego_gets_a_certificate_over_http01() {
    let pebble = pebble();
    let lego = Lego::new(&pebble.directory(), &pebble.tls_root);
    let names = ["lego-http.example.test"];
    assert_client_ok("lego --http run", &lego.obtain(Solver::Http(pebble.http_port), &names));
    lego.issued(names[0]).assert_valid(&pebble.issuing_root(), &names);
}

#[test]
fn lego_gets_a_certificate_over_tls_alpn01() {
    let pebble = pebble();
    let lego = Lego::new(&pebble.directory(), &pebble.tls_root);
    let names = ["lego-tls.example.test"];
    assert_client_ok("lego --tls run", &lego.obtain(Solver::TlsAlpn(pebble.tls_port), &names));
    lego.issued(names[0]).assert_valid(&pebble.issuing_root(), &names);
}

#[test]
fn lego_gets_a_wildcard_over_dns01_through_bind9() {
    let pebble = pebble();
    let lego = Lego::new(&pebble.directory(), &pebble.tls_root);
    let names = ["*.lego-dns.example.test", "lego-dns.example.test"];
    assert_client_ok("lego --dns rfc2136 run", &lego.obtain(Solver::Dns(bind()), &names));
    lego.issued(names[0]).assert_valid(&pebble.issuing_root(), &names);
    let left = bind().txt("_acme-challenge.lego-dns.example.test");
    assert!(left.is_empty(), "lego left TXT records behind: {left:?}");
}

#[test]
fn lego_renews_and_revokes() {
    let pebble = pebble();
    let lego = Lego::new(&pebble.directory(), &pebble.tls_root);
    let names = ["lego-renew.example.test"];
    let solver = Solver::Http(pebble.http_port);
    assert_client_ok("lego run", &lego.obtain(solver, &names));
    let first = lego.issued(names[0]);
    let first_serial = first.serial();
    // Due when fewer days are left than the whole lifetime: at once.
    let days = (first.lifetime_hours() / 24 + 1) as u32;
    assert_client_ok("lego renew", &lego.renew(solver, &names, days));
    let renewed = lego.issued(names[0]);
    assert_ne!(renewed.serial(), first_serial, "lego renew --days {days} kept the old certificate");
    renewed.assert_valid(&pebble.issuing_root(), &names);
    assert_client_ok("lego revoke", &lego.revoke(&names));
}
