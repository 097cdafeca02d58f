//! certbot (PyPI, scripts/test.sh's virtualenv) against gatehouse's ACME server
//! (issue 9): http-01 with `--standalone`, a wildcard over dns-01 through bind9 and
//! RFC 2136, `--required-profile shortlived`, `renew` (forced, and by ARI after
//! `gatehouse ca revoke`) and `revoke`. Every certificate verifies with openssl
//! against the gatehouse root and is in `gatehouse ca list --json`.
//!
//! One server and one bind9 serve all the tests of this file
//! ([`GatehouseAcme::shared`]); a test whose certbot listens on the http-01 port
//! holds that port's lock for the run. acme_harness_pebble runs the same certbot
//! against pebble: when it passes and these fail, look at the server.

mod support;

use support::*;

/// `certbot certonly --standalone` for `names` as lineage `cert_name`, asserting success.
#[track_caller]
fn certonly_http(server: &GatehouseAcme, certbot: &Certbot, cert_name: &str, names: &[&str], extra: &[&str]) -> Issued {
    let _port = server.hold_http();
    let o = certbot.certonly(cert_name, Solver::Http(server.http_01_port), names, extra);
    assert_client_ok("certbot certonly --standalone", &o);
    certbot.live(cert_name)
}

#[test]
fn certbot_gets_a_certificate_over_http01_standalone() {
    let server = GatehouseAcme::shared();
    let certbot = server.certbot();
    let names = ["certbot-http.example.test", "www.certbot-http.example.test"];
    let issued = certonly_http(server, &certbot, "http", &names, &[]);
    server.assert_issued(&issued, &names, SERVER_PROFILE_HOURS);
}

#[test]
fn certbot_gets_a_wildcard_over_dns01_through_bind9() {
    let server = GatehouseAcme::shared();
    let certbot = server.certbot();
    let names = ["*.example.test"];
    let o = certbot.certonly("wildcard", Solver::Dns(&server.bind), &names, &[]);
    assert_client_ok("certbot certonly --dns-rfc2136", &o);
    server.assert_issued(&certbot.live("wildcard"), &names, SERVER_PROFILE_HOURS);
    let left = server.bind.txt("_acme-challenge.example.test");
    assert!(left.is_empty(), "certbot left TXT records behind: {left:?}");
}

#[test]
fn certbot_required_profile_shortlived_gets_160_hours() {
    let server = GatehouseAcme::shared();
    let certbot = server.certbot();
    let names = ["certbot-short.example.test"];
    let issued = certonly_http(server, &certbot, "short", &names, &["--required-profile", "shortlived"]);
    server.assert_issued(&issued, &names, SHORTLIVED_PROFILE_HOURS);
}

#[test]
fn certbot_renew_force_renewal_gets_a_new_certificate() {
    let server = GatehouseAcme::shared();
    let certbot = server.certbot();
    let names = ["certbot-renew.example.test"];
    let first = certonly_http(server, &certbot, "renew", &names, &[]).keep_copy(&certbot.dir.join("first"));
    let o = {
        let _port = server.hold_http();
        certbot.renew("renew", &["--force-renewal"])
    };
    assert_client_ok("certbot renew --force-renewal", &o);
    let renewed = certbot.live("renew");
    assert_ne!(renewed.serial(), first.serial(), "certbot renew --force-renewal kept the old certificate");
    server.assert_issued(&renewed, &names, SERVER_PROFILE_HOURS);
    // The first certificate stays on record, valid, beside its replacement.
    assert_eq!(server.entry(&first)["status"], "valid");
}

/// What certbot logs when its renewalInfo request failed (it then falls back to its
/// own threshold and asks again only 6 hours later).
const ARI_ERROR: &str = "An error occurred requesting ACME Renewal Information";

/// ARI (RFC 9773): a fresh certificate's window is in its last third, so a plain
/// `certbot renew` asks the server and keeps it.
#[test]
fn certbot_renew_keeps_a_fresh_certificate_after_asking_ari() {
    let server = GatehouseAcme::shared();
    let certbot = server.certbot();
    let names = ["certbot-fresh.example.test"];
    let first = certonly_http(server, &certbot, "fresh", &names, &[]).serial();
    let o = {
        let _port = server.hold_http();
        certbot.renew("fresh", &[])
    };
    assert_client_ok("certbot renew (not due)", &o);
    assert_eq!(certbot.live("fresh").serial(), first, "certbot renewed a fresh certificate:\n{}", o.all());
    let log = certbot.log();
    assert!(!log.contains(ARI_ERROR), "certbot's renewalInfo request failed:\n{log}");
}

/// ARI (RFC 9773): once `gatehouse ca revoke` has revoked a certificate, its renewal
/// window is in the past and a plain `certbot renew` replaces it at once. (certbot
/// asks again only after the Retry-After of its last renewalInfo answer, so this
/// lineage's first `renew` comes after the revocation.)
#[test]
fn certbot_renew_follows_ari_after_ca_revoke() {
    let server = GatehouseAcme::shared();
    let certbot = server.certbot();
    let names = ["certbot-ari.example.test"];
    let first = certonly_http(server, &certbot, "ari", &names, &[]).serial();
    server.env.gh_ok(&["ca", "revoke", &first]);
    let o = {
        let _port = server.hold_http();
        certbot.renew("ari", &[])
    };
    assert_client_ok("certbot renew (ARI window in the past)", &o);
    let renewed = certbot.live("ari");
    assert_ne!(
        renewed.serial(),
        first,
        "certbot did not renew a certificate revoked with `ca revoke` (ARI window in the past):\n{}\n--- certbot log ---\n{}",
        o.all(),
        certbot.log()
    );
    server.assert_issued(&renewed, &names, SERVER_PROFILE_HOURS);
}

#[test]
fn certbot_revoke_shows_in_ca_list_and_crl() {
    let server = GatehouseAcme::shared();
    let certbot = server.certbot();
    let names = ["certbot-revoke.example.test"];
    let issued = certonly_http(server, &certbot, "revoke", &names, &[]);
    server.assert_issued(&issued, &names, SERVER_PROFILE_HOURS);
    assert_client_ok("certbot revoke", &certbot.revoke("revoke", &[]));
    server.assert_revoked(&issued);
}
