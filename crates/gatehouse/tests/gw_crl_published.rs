//! A gateway that uses the internal CA publishes its CRL on its plain-HTTP listener
//! at `/ca/intermediate.crl`, the URL `crl_url` in `ca.toml` writes into the
//! certificates the CA issues. openssl, given only the certificate and the CA,
//! follows that distribution point: it accepts the certificate, and once the
//! certificate is revoked, refuses it. Between changes the same CRL is served, so
//! fetching it often uses up no CRL numbers. A CRL that cannot be made (here the
//! intermediate's key is unreadable) is a 503 that names nothing of the CA, logged
//! once however often it is asked for, and is served again once it can be made.
mod support;
use support::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `curl -o T/NAME URL`: the body as bytes, in a file.
fn download(dir: &Path, name: &str, url: &str) -> PathBuf {
    let file = dir.join(name);
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail", "--max-time", "20", "-o", s(&file), url]);
    let out = run_limited(cmd, Duration::from_secs(30));
    assert_eq!(out.code, 0, "curl {url}: {}", out.all());
    file
}

/// `openssl verify -crl_check -crl_download`: the CRL comes from the certificate's
/// distribution point, nowhere else.
fn verify_with_downloaded_crl(env: &Env, cert: &Cert) -> Out {
    openssl(&[
        "verify",
        "-crl_check",
        "-crl_download",
        "-CAfile",
        s(&env.root()),
        "-untrusted",
        s(&env.intermediate()),
        s(&cert.crt),
    ])
}

/// A site that verifies client certificates with the internal CA.
const USES_THE_CA: &str = "mtls = \"optional\"\ntrust = { internal_ca = true }\n";

#[test]
fn the_crl_at_the_certificates_distribution_point_is_the_gateways_and_follows_revocations() {
    let env = Env::new();
    let (https, http) = (free_port(), free_port());
    let crl_url = format!("http://127.0.0.1:{http}/ca/intermediate.crl");
    env.set_crl_url(&crl_url);
    let up = Upstream::start(&env);
    // A gateway that uses the internal CA (here to verify client certificates) publishes its CRL.
    let toml = localhost_config(&env, &listen_toml(https, Some(http), None), &up, "", USES_THE_CA);
    let gw = Gateway::start(&env, "gw.toml", https, &toml);
    let alice = env.client("alice");
    assert!(x509_text(&alice.crt).contains(&format!("URI:{crl_url}")), "{}", x509_text(&alice.crt));

    let ok = verify_with_downloaded_crl(&env, &alice);
    assert!(ok.code == 0 && ok.stdout.contains(": OK"), "before the revocation: {}\n{}", ok.all(), gw.proc.dump());

    // The same CRL until something changes.
    let head = curl(&[&crl_url]);
    assert_eq!(head.status, 200, "{head:?}");
    assert!(head.headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("content-type") && v == "application/pkix-crl"));
    let first = download(env.path(), "first.crl", &crl_url);
    let again = download(env.path(), "again.crl", &crl_url);
    assert_eq!(fs::read(first).unwrap(), fs::read(again).unwrap(), "a second CRL though nothing changed");

    env.gh_ok(&["ca", "revoke", &alice.serial, "--reason", "keyCompromise"]);
    let refused = wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
        let out = verify_with_downloaded_crl(&env, &alice);
        (out.code != 0).then_some(out)
    })
    .unwrap_or_else(|| panic!("the downloaded CRL never listed the revocation\n{}", gw.proc.dump()));
    assert!(refused.all().contains("certificate revoked"), "{}", refused.all());

    // The published CRL is the intermediate's, signed by it, and lists the serial.
    let crl = download(env.path(), "after.crl", &crl_url);
    let text =
        openssl(&["crl", "-inform", "DER", "-in", s(&crl), "-noout", "-text", "-CAfile", s(&env.intermediate())]);
    assert!(text.all().contains("verify OK"), "{}", text.all());
    assert!(text.stdout.contains(&alice.serial), "{}", text.stdout);
    assert!(text.stdout.contains("Key Compromise"), "{}", text.stdout);

    // Only that one path: anything else on the listener is still the redirect.
    let other = curl(&[format!("http://localhost:{http}/ca/x.crl")]);
    assert_eq!(other.status, 308, "{other:?}");
}

#[test]
fn a_crl_that_cannot_be_made_is_a_503_logged_once_and_is_served_once_it_can_be() {
    let env = Env::new();
    let (https, http) = (free_port(), free_port());
    let up = Upstream::start(&env);
    let toml = localhost_config(&env, &listen_toml(https, Some(http), None), &up, "", USES_THE_CA);
    let gw = Gateway::start(&env, "gw.toml", https, &toml);
    let url = format!("http://127.0.0.1:{http}/ca/intermediate.crl");
    let key = env.intermediate_key();
    let kept = fs::read(&key).expect("the intermediate key");
    fs::write(&key, "not a key\n").expect("spoil the key");

    for _ in 0..3 {
        let answer = curl(&[&url]);
        assert_eq!(answer.status, 503, "{answer:?}");
        assert!(answer.body.contains("cannot be made now"), "{answer:?}");
        assert!(!answer.body.contains(s(env.path())), "the answer names the data dir: {answer:?}");
    }
    let logged = |needle: &str| gw.proc.stderr().matches(needle).count() + gw.proc.stdout().matches(needle).count();
    let seen = wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
        (logged("cannot make the CRL to publish") > 0).then_some(())
    });
    assert!(seen.is_some(), "no log line says why\n{}", gw.proc.dump());
    assert_eq!(logged("cannot make the CRL to publish"), 1, "one reason, one line\n{}", gw.proc.dump());

    fs::write(&key, kept).expect("put the key back");
    let served =
        wait_for(Duration::from_secs(60), Duration::from_millis(500), || (curl(&[&url]).status == 200).then_some(()));
    assert!(served.is_some(), "the CRL was not served again\n{}", gw.proc.dump());
    let crl = download(env.path(), "again.crl", &url);
    let text = openssl(&["crl", "-inform", "DER", "-in", s(&crl), "-noout", "-CAfile", s(&env.intermediate())]);
    assert!(text.all().contains("verify OK"), "{}", text.all());
    assert!(logged("the CRL to publish can be made again") > 0, "{}", gw.proc.dump());
}
