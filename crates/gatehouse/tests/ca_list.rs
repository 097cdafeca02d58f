//! `gatehouse ca list` and `ca show`.
//!
//! Status "expired" is not constructible through the CLI (`--days` is at least 1 and the
//! tests do not touch the clock or the database schema), so only `--status expired`
//! returning nothing for fresh certificates is checked.
mod support;
use support::*;

use std::path::PathBuf;

/// init; server cert `web` with SANs, client cert `alice`; `web` revoked (keyCompromise).
fn setup() -> (TempDir, PathBuf, PathBuf) {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    issue(
        &d,
        &out,
        "server",
        "web.example.test",
        &[
            "--san",
            "DNS:api.example.test",
            "--san",
            "IP:10.0.0.1",
            "--san",
            "URI:https://example.test/web",
            "--days",
            "30",
        ],
    );
    issue(&d, &out, "client", "alice", &["--san", "email:alice@example.test"]);
    let web = out.join("web.example.test.crt");
    let alice = out.join("alice.crt");
    gh_ok(&d, &["ca", "revoke", &serial_of(&web), "--reason", "keyCompromise"]);
    (d, web, alice)
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn list_is_empty_after_init_ca_certs_are_not_listed() {
    let d = init_ca(&[]);
    assert!(list_json(&d, &[]).is_empty(), "CA certificates must not be listed");
    let root_serial = serial_of(&root_crt(&d));
    let inter_serial = serial_of(&inter_crt(&d));
    let out = mkdir(d.join("out"));
    issue(&d, &out, "server", "one.example.test", &[]);
    let list = list_json(&d, &[]);
    assert_eq!(list.len(), 1);
    assert!(find_serial(&list, &root_serial).is_none() && find_serial(&list, &inter_serial).is_none());
    let plain = gh_ok(&d, &["ca", "list"]);
    assert!(!norm_serial(&plain).contains(&norm_serial(&root_serial)), "root listed: {plain}");
}

#[test]
fn list_json_fields() {
    let (d, web, alice) = setup();
    // $ gatehouse ca list --json
    let list = list_json(&d, &[]);
    assert_eq!(list.len(), 2, "{list:?}");

    let w = find_serial(&list, &serial_of(&web)).unwrap_or_else(|| panic!("web not listed: {list:?}"));
    let a = find_serial(&list, &serial_of(&alice)).unwrap_or_else(|| panic!("alice not listed: {list:?}"));
    for e in [w, a] {
        for k in [
            "serial",
            "status",
            "profile",
            "subject",
            "common_name",
            "sans",
            "not_before",
            "not_after",
            "revoked_at",
            "revocation_reason",
        ] {
            assert!(e.get(k).is_some(), "field {k} missing in {e}");
        }
    }
    assert_eq!(w["status"], "revoked");
    assert_eq!(w["profile"], "server");
    assert_eq!(w["common_name"], "web.example.test");
    assert!(w["subject"].as_str().unwrap().contains("web.example.test"), "{}", w["subject"]);
    let sans = strs(&w["sans"]);
    for want in ["DNS:web.example.test", "DNS:api.example.test", "IP:10.0.0.1", "URI:https://example.test/web"] {
        assert!(sans.iter().any(|x| x == want), "sans {sans:?} lacks {want}");
    }
    assert_eq!(w["revocation_reason"], "keyCompromise");
    let revoked_at = rfc3339(w["revoked_at"].as_str().unwrap_or_else(|| panic!("revoked_at not a string: {w}")))
        .unwrap_or_else(|| panic!("revoked_at not RFC 3339: {}", w["revoked_at"]));
    assert!((revoked_at - unix_now()).abs() < 600, "revoked_at is not about now");

    assert_eq!(a["status"], "valid");
    assert_eq!(a["profile"], "client");
    assert_eq!(a["common_name"], "alice");
    assert!(strs(&a["sans"]).iter().any(|x| x == "email:alice@example.test"), "{}", a["sans"]);
    assert!(a["revoked_at"].is_null(), "{a}");
    assert!(a["revocation_reason"].is_null(), "{a}");

    // validity agrees with the certificate (RFC 3339 vs openssl's dates)
    for (e, crt, days) in [(w, &web, 30), (a, &alice, 365)] {
        let nb = rfc3339(e["not_before"].as_str().unwrap()).unwrap_or_else(|| panic!("not_before not RFC 3339: {e}"));
        let na = rfc3339(e["not_after"].as_str().unwrap()).unwrap_or_else(|| panic!("not_after not RFC 3339: {e}"));
        let dates = openssl_ok(&["x509", "-in", s(crt), "-noout", "-startdate", "-enddate"]);
        let get = |k: &str| openssl_time(dates.lines().find_map(|l| l.strip_prefix(k)).unwrap());
        assert!((nb - get("notBefore=")).abs() <= 1, "not_before {} vs cert {dates}", e["not_before"]);
        assert!((na - get("notAfter=")).abs() <= 1, "not_after {} vs cert {dates}", e["not_after"]);
        assert!(
            (na - unix_now() - days * 86400).abs() <= 86400,
            "not_after {} is not ~{days} days ahead",
            e["not_after"]
        );
    }
    // serial as openssl prints it (case-insensitively, colons allowed)
    assert_eq!(norm_serial(w["serial"].as_str().unwrap()), norm_serial(&serial_of(&web)));
}

#[test]
fn list_status_filter() {
    let (d, web, alice) = setup();
    let valid = list_json(&d, &["--status", "valid"]);
    assert_eq!(valid.len(), 1, "{valid:?}");
    assert!(find_serial(&valid, &serial_of(&alice)).is_some());
    let revoked = list_json(&d, &["--status", "revoked"]);
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert!(find_serial(&revoked, &serial_of(&web)).is_some());
    let expired = list_json(&d, &["--status", "expired"]);
    assert!(expired.is_empty(), "fresh certificates listed as expired: {expired:?}");
    let Out { code, stderr: err, .. } = gh(&d, &["ca", "list", "--status", "bogus"]);
    assert_eq!(code, 2, "bad --status value is a usage error: {err}");
}

#[test]
fn plain_list_one_line_per_cert() {
    let (d, web, alice) = setup();
    // $ gatehouse ca list
    let out = gh_ok(&d, &["ca", "list"]);
    let sw = norm_serial(&serial_of(&web));
    let sa = norm_serial(&serial_of(&alice));
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    let lw: Vec<&&str> = lines.iter().filter(|l| norm_serial(l).contains(&sw)).collect();
    let la: Vec<&&str> = lines.iter().filter(|l| norm_serial(l).contains(&sa)).collect();
    assert_eq!(lw.len(), 1, "web should be on exactly one line:\n{out}");
    assert_eq!(la.len(), 1, "alice should be on exactly one line:\n{out}");
    assert!(lw[0].contains("revoked") && lw[0].contains("web.example.test"), "{}", lw[0]);
    assert!(la[0].contains("valid") && la[0].contains("alice"), "{}", la[0]);
    assert!(lines.len() <= 3, "more than one line per cert (plus an optional header):\n{out}");
    // --status filter applies to plain output too
    let out = gh_ok(&d, &["ca", "list", "--status", "valid"]);
    assert!(norm_serial(&out).contains(&sa) && !norm_serial(&out).contains(&sw), "{out}");
}

#[test]
fn show_by_serial_forms() {
    let (d, web, alice) = setup();
    let sa = serial_of(&alice);
    for form in [sa.clone(), sa.to_lowercase(), colon_lower(&sa), colon_lower(&sa).to_uppercase()] {
        // $ gatehouse ca show SERIAL
        let Out { code, stdout: out, stderr: err } = gh(&d, &["ca", "show", &form]);
        assert_eq!(code, 0, "ca show {form}: {err}");
        assert!(out.contains("alice"), "ca show {form} output lacks the CN:\n{out}");
        assert!(!out.contains("web.example.test"), "ca show {form} printed another cert:\n{out}");
    }
    let out = gh_ok(&d, &["ca", "show", &serial_of(&web).to_lowercase()]);
    assert!(out.contains("web.example.test"), "{out}");
    let Out { code, stderr: err, .. } = gh(&d, &["ca", "show", "00FFEEDDCCBBAA998877"]);
    assert_eq!(code, 1, "unknown serial: {err}");
}

#[test]
fn show_json_is_the_list_object_plus_pem() {
    let (d, web, alice) = setup();
    let list = list_json(&d, &[]);
    for crt in [&web, &alice] {
        let ser = serial_of(crt);
        // $ gatehouse ca show --json serial (lowercase, colons)
        let v = json(&gh_ok(&d, &["ca", "show", "--json", &colon_lower(&ser)]));
        let from_list = find_serial(&list, &ser).unwrap();
        for (k, val) in from_list.as_object().unwrap() {
            assert_eq!(&v[k], val, "show --json field {k} differs from list --json");
        }
        let pem = v["pem"].as_str().unwrap_or_else(|| panic!("no pem string: {v}"));
        assert_eq!(fingerprint_pem(pem), fingerprint(crt), "show --json pem is not the certificate");
    }
}
