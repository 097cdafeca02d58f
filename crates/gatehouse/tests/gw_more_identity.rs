//! Identity details: the xfcc format's Subject="CN=..." element, and the internal CA's
//! revocations in optional mode (a revoked certificate counts as refused: not forwarded,
//! logged as client_cert_refused/revoked, and `mtls = "require"` routes answer 403).
mod support;
use support::*;

use std::time::Duration;

const OPTIONAL_WITH_ROUTE: &str = "mtls = \"optional\"\ntrust = { internal_ca = true }\n\
                                   [[site.route]]\npath_prefix = \"/test1\"\nmtls = \"require\"\n";

/// The `;`-separated elements of an XFCC value, quotes kept.
fn xfcc_elements(xfcc: &str) -> Vec<String> {
    let mut v = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in xfcc.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                cur.push(c);
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ';' if !quoted => v.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        v.push(cur.trim().to_string());
    }
    v
}

#[test]
fn xfcc_has_hash_and_quoted_subject_cn() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(
        &env,
        &up,
        "[identity]\nformat = \"xfcc\"\n",
        "mtls = \"optional\"\ntrust = { internal_ca = true }\n",
    );
    let alice = env.client("alice");
    for proto in ["--http1.1", "--http2"] {
        let r = gw.curl_cert("localhost", "/", &alice, &[proto]);
        assert!(r.ok(), "{proto}: {r:?}");
        let got = r.upstream();
        let xfcc = got.one("x-forwarded-client-cert").unwrap_or_else(|| panic!("{proto}: no XFCC header: {got:?}"));
        let parts = xfcc_elements(&xfcc);
        assert!(
            parts.iter().any(|p| p == "Subject=\"CN=alice\""),
            "{proto}: expected the element Subject=\"CN=alice\" in {xfcc}"
        );
        let hashes: Vec<_> = parts.iter().filter(|p| p.starts_with("Hash=")).collect();
        assert_eq!(hashes.len(), 1, "{proto}: exactly one Hash= element: {xfcc}");
        assert_eq!(hashes[0].trim_start_matches("Hash=").to_lowercase(), alice.sha256_hex(), "{proto}: {xfcc}");
        assert!(got.all("client-cert").is_empty(), "{proto}: xfcc format sends no Client-Cert: {got:?}");
    }

    // A different client: its own subject.
    let bob = env.client("bob");
    let r = gw.curl_cert("localhost", "/", &bob, &[]);
    assert!(r.ok(), "{r:?}");
    let xfcc = r.upstream().one("x-forwarded-client-cert").expect("XFCC for bob");
    assert!(xfcc_elements(&xfcc).iter().any(|p| p == "Subject=\"CN=bob\""), "{xfcc}");
}

/// Checks the optional-mode outcome for a revoked certificate on `gw`.
fn assert_revoked_in_optional_mode(gw: &Gateway, cert: &Cert) {
    // The site answers; the identity is not forwarded.
    let r = gw.curl_cert("localhost", "/", cert, &[]);
    assert!(r.ok(), "optional mode: a revoked certificate does not stop the connection: {r:?}\n{}", gw.proc.dump());
    let got = r.upstream();
    for h in ["client-cert", "client-cert-chain", "x-forwarded-client-cert"] {
        assert!(got.all(h).is_empty(), "a revoked certificate must not be forwarded ({h}): {got:?}");
    }
    let id = got.one("x-request-id").expect("x-request-id");
    let line = gw.access_line_for(&id).unwrap_or_else(|| panic!("no access line for {id}\n{}", gw.proc.dump()));
    assert_eq!(line["client_verify"], "refused:revoked", "{line}");
    assert!(
        gw.wait_refusal("client_cert_refused", "revoked", Duration::from_secs(3)).is_some(),
        "no client_cert_refused/revoked line\n{}",
        gw.proc.dump()
    );

    // A route with mtls = "require": 403, JSON reason mentions revoked.
    let r = gw.curl_cert("localhost", "/test1", cert, &["-H", "Accept: application/json"]);
    assert_eq!(r.status, 403, "{r:?}\n{}", gw.proc.dump());
    let v = r.json();
    assert_eq!(v["status"], 403, "{v}");
    assert_eq!(v["error"], "route_requires_certificate", "{v}");
    let reason = v["reason"].as_str().unwrap_or_default().to_lowercase();
    assert!(reason.contains("revoked"), "the 403 reason must mention revoked: {v}");

    // The HTML variant names the same reason.
    let html = gw.curl_cert("localhost", "/test1", cert, &[]);
    assert_eq!(html.status, 403, "{html:?}");
    assert!(html.body.to_lowercase().contains("revoked"), "{}", html.body);
}

#[test]
fn optional_mode_revoked_before_start_is_refused_on_require_routes() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let alice = env.client("alice");
    env.gh_ok(&["ca", "revoke", &alice.serial]);
    let gw = Gateway::localhost(&env, &up, "", OPTIONAL_WITH_ROUTE);
    assert_revoked_in_optional_mode(&gw, &alice);

    // A non-revoked client of the same CA passes the route.
    let bob = env.client("bob");
    let r = gw.curl_cert("localhost", "/test1", &bob, &[]);
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.upstream().all("client-cert").len(), 1, "{r:?}");
}

#[test]
fn optional_mode_revoked_while_running_is_refused_on_require_routes() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "", OPTIONAL_WITH_ROUTE);
    let alice = env.client("alice");
    // Verified (and so possibly remembered by the gateway) before the revocation.
    for _ in 0..2 {
        let r = gw.curl_cert("localhost", "/test1", &alice, &[]);
        assert!(r.ok(), "alice passes before revocation: {r:?}");
    }

    env.gh_ok(&["ca", "revoke", &alice.serial]);
    let mut last = None;
    let took = poll_until(Duration::from_secs(20), || {
        let r = gw.curl_cert("localhost", "/test1", &alice, &["-H", "Accept: application/json"]);
        let refused = r.status == 403;
        last = Some(r);
        refused
    });
    if took.is_none() {
        panic!("/test1 still served to alice 20 s after `ca revoke` (optional mode): {last:?}\n{}", gw.proc.dump());
    }
    assert_revoked_in_optional_mode(&gw, &alice);
}
