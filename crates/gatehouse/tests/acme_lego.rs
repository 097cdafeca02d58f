//! lego (Debian's 4.9.1) against gatehouse's ACME server (issue 9): http-01,
//! tls-alpn-01, a wildcard over dns-01 with its rfc2136 provider and bind9, `renew`
//! and `revoke`. Every certificate verifies with openssl against the gatehouse root
//! and is in `gatehouse ca list --json`.
//!
//! One server and one bind9 serve all the tests of this file
//! ([`GatehouseAcme::shared`]); a test whose lego listens on a challenge port holds
//! that port's lock for the run. acme_harness_pebble runs the same lego against
//! pebble: when it passes and these fail, look at the server.

mod support;

use support::*;

#[test]
fn lego_gets_a_certificate_over_http01() {
    let server = GatehouseAcme::shared();
    let lego = server.lego();
    let names = ["lego-http.example.test", "www.lego-http.example.test"];
    let issued = server.obtain_http(&lego, &names);
    server.assert_issued(&issued, &names, SERVER_PROFILE_HOURS);
}

#[test]
fn lego_gets_a_certificate_over_tls_alpn01() {
    let server = GatehouseAcme::shared();
    let lego = server.lego();
    let names = ["lego-tls.example.test"];
    let o = {
        let _port = server.hold_tls();
        lego.obtain(Solver::TlsAlpn(server.tls_alpn_01_port), &names)
    };
    assert_client_ok("lego --tls run", &o);
    server.assert_issued(&lego.issued(names[0]), &names, SERVER_PROFILE_HOURS);
}

#[test]
fn lego_gets_a_wildcard_over_dns01_through_bind9() {
    let server = GatehouseAcme::shared();
    let lego = server.lego();
    // Both names prove themselves with a TXT record at the same name, at once.
    let names = ["*.example.test", "example.test"];
    assert_client_ok("lego --dns rfc2136 run", &lego.obtain(Solver::Dns(&server.bind), &names));
    server.assert_issued(&lego.issued(names[0]), &names, SERVER_PROFILE_HOURS);
    let left = server.bind.txt("_acme-challenge.example.test");
    assert!(left.is_empty(), "lego left TXT records behind: {left:?}");
}

#[test]
fn lego_renew_gets_a_new_certificate() {
    let server = GatehouseAcme::shared();
    let lego = server.lego();
    let names = ["lego-renew.example.test"];
    let first = server.obtain_http(&lego, &names).serial();
    // Due when fewer than 91 days are left: a 90-day certificate at once.
    let o = {
        let _port = server.hold_http();
        lego.renew(Solver::Http(server.http_01_port), &names, 91)
    };
    assert_client_ok("lego renew --days 91", &o);
    let renewed = lego.issued(names[0]);
    assert_ne!(renewed.serial(), first, "lego renew kept the old certificate:\n{}", o.all());
    server.assert_issued(&renewed, &names, SERVER_PROFILE_HOURS);
}

#[test]
fn lego_revoke_shows_in_ca_list_and_crl() {
    let server = GatehouseAcme::shared();
    let lego = server.lego();
    let names = ["lego-revoke.example.test"];
    let issued = server.obtain_http(&lego, &names);
    server.assert_issued(&issued, &names, SERVER_PROFILE_HOURS);
    assert_client_ok("lego revoke", &lego.revoke(&names));
    server.assert_revoked(&issued);
}
