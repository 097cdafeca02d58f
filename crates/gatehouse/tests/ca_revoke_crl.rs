//! `gatehouse ca revoke` and `ca crl`, checked with `openssl crl` / `openssl verify -crl_check`.
mod support;
use support::*;

use std::path::{Path, PathBuf};

/// init + two server certs a and b; returns (dir, a.crt, b.crt)
fn setup() -> (TempDir, PathBuf, PathBuf) {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    issue(&d, &out, "server", "a.example.test", &[]);
    issue(&d, &out, "server", "b.example.test", &[]);
    (d, out.join("a.example.test.crt"), out.join("b.example.test.crt"))
}

/// `openssl crl -in CRL [-inform DER] -text -noout`
fn crl_text(crl: &Path, der: bool) -> String {
    let mut a = vec!["crl", "-in", s(crl), "-noout", "-text"];
    if der {
        a.extend_from_slice(&["-inform", "DER"]);
    }
    openssl_ok(&a)
}

/// CRL Number from `openssl crl -text`.
fn crl_number(text: &str) -> u64 {
    let mut it = text.lines();
    while let Some(l) = it.next() {
        if l.contains("X509v3 CRL Number") {
            let v = it.next().expect("CRL number value").trim();
            return match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).unwrap(),
                None => v.parse().unwrap_or_else(|_| panic!("bad CRL number {v:?}")),
            };
        }
    }
    panic!("no CRL Number in:\n{text}");
}

/// (lastUpdate, nextUpdate) as Unix times.
fn crl_times(crl: &Path) -> (i64, i64) {
    let o = openssl_ok(&["crl", "-in", s(crl), "-noout", "-lastupdate", "-nextupdate"]);
    let get =
        |k: &str| openssl_time(o.lines().find_map(|l| l.strip_prefix(k)).unwrap_or_else(|| panic!("no {k} in {o}")));
    (get("lastUpdate="), get("nextUpdate="))
}

/// `openssl verify -crl_check -CAfile root -untrusted inter -CRLfile CRL CRT` -> (code, output)
fn verify_crl(d: &Path, crl: &Path, crt: &Path) -> (i32, String) {
    let Out { code, stdout: out, stderr: err } = openssl(&[
        "verify",
        "-crl_check",
        "-CAfile",
        s(&root_crt(d)),
        "-untrusted",
        s(&inter_crt(d)),
        "-CRLfile",
        s(crl),
        s(crt),
    ]);
    (code, format!("{out}{err}"))
}

#[test]
fn revoke_then_crl_marks_only_that_certificate() {
    let (d, a, b) = setup();
    let sa = serial_of(&a);
    let sb = serial_of(&b);

    // $ gatehouse ca revoke SERIAL --reason keyCompromise
    let out = gh_ok(&d, &["ca", "revoke", &sa, "--reason", "keyCompromise"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("revoked "))
        .unwrap_or_else(|| panic!("no `revoked SERIAL (REASON)` line: {out}"));
    assert!(norm_serial(line).contains(&norm_serial(&sa)), "{line}");
    assert!(line.trim_end().ends_with("(keyCompromise)"), "reason not echoed as RFC 5280 name: {line}");

    // $ gatehouse ca crl --out crl.pem
    let crl = d.join("crl.pem");
    gh_ok(&d, &["ca", "crl", "--out", s(&crl)]);
    assert!(read(&crl).starts_with("-----BEGIN X509 CRL-----"), "not a PEM CRL");

    // $ openssl crl -in crl.pem -CAfile chain.pem -verify -noout
    let chain = chain_file(&d);
    let v = openssl_ok(&["crl", "-in", s(&crl), "-CAfile", s(&chain), "-verify", "-noout"]);
    assert!(v.contains("verify OK"), "{v}");
    // signed by the intermediate
    let iss = openssl_ok(&["crl", "-in", s(&crl), "-noout", "-issuer", "-nameopt", "RFC2253"]);
    assert_eq!(
        iss.trim().trim_start_matches("issuer="),
        subject_of(&inter_crt(&d)),
        "CRL issuer is not the intermediate"
    );

    // $ openssl verify -crl_check ... a.crt  /  b.crt
    let (code, msg) = verify_crl(&d, &crl, &a);
    assert_ne!(code, 0, "revoked cert verified: {msg}");
    assert!(msg.contains("certificate revoked"), "{msg}");
    let (code, msg) = verify_crl(&d, &crl, &b);
    assert!(code == 0 && msg.contains(": OK"), "unrevoked cert rejected: {msg}");

    // $ openssl crl -text
    let t = crl_text(&crl, false);
    assert!(t.contains(&format!("Serial Number: {sa}")), "revoked serial not in CRL:\n{t}");
    assert!(!t.contains(&sb), "unrevoked serial in CRL:\n{t}");
    assert!(t.contains("Key Compromise"), "reason code missing:\n{t}");
    assert!(t.contains("Version 2"), "CRL is not v2:\n{t}");
    crl_number(&t);
}

#[test]
fn crl_number_increases_by_one_per_call_and_is_durable() {
    let (d, a, _b) = setup();
    gh_ok(&d, &["ca", "revoke", &serial_of(&a)]);
    let c1 = d.join("c1.pem");
    let c2 = d.join("c2.pem");
    gh_ok(&d, &["ca", "crl", "--out", s(&c1)]);
    gh_ok(&d, &["ca", "crl", "--out", s(&c2)]);
    // PEM to stdout too
    let stdout = gh_ok(&d, &["ca", "crl"]);
    assert!(stdout.contains("-----BEGIN X509 CRL-----"), "no PEM CRL on stdout: {stdout}");
    let c3 = d.join("c3.pem");
    write(&c3, &stdout);
    let n1 = crl_number(&crl_text(&c1, false));
    let n2 = crl_number(&crl_text(&c2, false));
    let n3 = crl_number(&crl_text(&c3, false));
    assert_eq!(n2, n1 + 1, "CRL number did not increase by one");
    assert_eq!(n3, n2 + 1, "CRL number did not increase by one");
    let chain = chain_file(&d);
    openssl_ok(&["crl", "-in", s(&c3), "-CAfile", s(&chain), "-verify", "-noout"]);
}

#[test]
fn crl_der_output() {
    let (d, a, b) = setup();
    gh_ok(&d, &["ca", "revoke", &serial_of(&a), "--reason", "superseded"]);
    // $ gatehouse ca crl --der --out crl.der
    let der = d.join("crl.der");
    gh_ok(&d, &["ca", "crl", "--der", "--out", s(&der)]);
    let bytes = read_bytes(&der);
    assert_eq!(bytes[0], 0x30, "DER CRL should start with a SEQUENCE");
    let t = crl_text(&der, true);
    assert!(t.contains(&serial_of(&a)) && t.contains("Superseded"), "{t}");
    // openssl verify accepts the DER CRL after conversion
    let pem = d.join("crl-from-der.pem");
    openssl_ok(&["crl", "-inform", "DER", "-in", s(&der), "-out", s(&pem)]);
    let chain = chain_file(&d);
    openssl_ok(&["crl", "-in", s(&pem), "-CAfile", s(&chain), "-verify", "-noout"]);
    let (code, msg) = verify_crl(&d, &pem, &a);
    assert!(code != 0 && msg.contains("certificate revoked"), "{msg}");
    let (code, _) = verify_crl(&d, &pem, &b);
    assert_eq!(code, 0);

    // DER on stdout
    let (code, raw, err) = gh_raw(&d, &["ca", "crl", "--der"]);
    assert_eq!(code, 0, "{err}");
    let der2 = d.join("stdout.der");
    write(&der2, &raw);
    let t2 = crl_text(&der2, true);
    assert_eq!(crl_number(&t2), crl_number(&t) + 1);
}

#[test]
fn next_update_hours() {
    let d = init_ca(&[]);
    let crl = d.join("crl.pem");
    // $ gatehouse ca crl --next-update-hours 5
    gh_ok(&d, &["ca", "crl", "--next-update-hours", "5", "--out", s(&crl)]);
    let (last, next) = crl_times(&crl);
    assert!((last - unix_now()).abs() < 300, "lastUpdate is not now");
    assert!((next - last - 5 * 3600).abs() <= 120, "nextUpdate - lastUpdate = {}s, want 5h", next - last);

    // default from ca.toml: 168 hours
    gh_ok(&d, &["ca", "crl", "--out", s(&crl)]);
    let (last, next) = crl_times(&crl);
    assert!((next - last - 168 * 3600).abs() <= 120, "default nextUpdate {}s, want 168h", next - last);

    // crl_next_update_hours from ca.toml
    write(ca_toml(&d), ca_toml_text(None, 24, &OPEN, &OPEN));
    gh_ok(&d, &["ca", "crl", "--out", s(&crl)]);
    let (last, next) = crl_times(&crl);
    assert!((next - last - 24 * 3600).abs() <= 120, "ca.toml nextUpdate {}s, want 24h", next - last);
    // an empty CRL still verifies
    let chain = chain_file(&d);
    openssl_ok(&["crl", "-in", s(&crl), "-CAfile", s(&chain), "-verify", "-noout"]);
}

#[test]
fn revoke_accepts_lowercase_and_colon_serials() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    for cn in ["l1.example.test", "l2.example.test", "l3.example.test"] {
        issue(&d, &out, "server", cn, &[]);
    }
    let s1 = serial_of(&out.join("l1.example.test.crt"));
    let s2 = serial_of(&out.join("l2.example.test.crt"));
    let s3 = serial_of(&out.join("l3.example.test.crt"));
    gh_ok(&d, &["ca", "revoke", &s1.to_lowercase()]);
    gh_ok(&d, &["ca", "revoke", &colon_lower(&s2), "--reason", "key-compromise"]);
    gh_ok(&d, &["ca", "revoke", &colon_lower(&s3).to_uppercase(), "--reason", "CESSATIONOFOPERATION"]);
    let list = list_json(&d, &[]);
    for (ser, reason) in [(&s1, "unspecified"), (&s2, "keyCompromise"), (&s3, "cessationOfOperation")] {
        let e = find_serial(&list, ser).unwrap_or_else(|| panic!("{ser} not listed"));
        assert_eq!(e["status"], "revoked", "{e}");
        assert_eq!(e["revocation_reason"], reason, "{e}");
    }
    let crl = d.join("crl.pem");
    gh_ok(&d, &["ca", "crl", "--out", s(&crl)]);
    let t = crl_text(&crl, false);
    for ser in [&s1, &s2, &s3] {
        assert!(t.contains(&format!("Serial Number: {ser}")), "{ser} not in CRL:\n{t}");
    }
    assert!(t.contains("Key Compromise") && t.contains("Cessation Of Operation"), "{t}");
}

#[test]
fn every_rfc5280_reason_reaches_the_crl() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let reasons = [
        ("keyCompromise", "Key Compromise"),
        ("cACompromise", "CA Compromise"),
        ("affiliationChanged", "Affiliation Changed"),
        ("superseded", "Superseded"),
        ("cessationOfOperation", "Cessation Of Operation"),
        ("certificateHold", "Certificate Hold"),
        ("privilegeWithdrawn", "Privilege Withdrawn"),
        ("aACompromise", "AA Compromise"),
    ];
    let mut serials = Vec::new();
    for (i, (r, _)) in reasons.iter().enumerate() {
        let cn = format!("r{i}.example.test");
        issue(&d, &out, "server", &cn, &[]);
        let ser = serial_of(&out.join(format!("{cn}.crt")));
        let o = gh_ok(&d, &["ca", "revoke", &ser, "--reason", r]);
        assert!(o.contains(&format!("({r})")), "revoke output {o:?} lacks ({r})");
        serials.push(ser);
    }
    let crl = d.join("crl.pem");
    gh_ok(&d, &["ca", "crl", "--out", s(&crl)]);
    let t = crl_text(&crl, false);
    // each serial followed by its reason
    for ((_, text), ser) in reasons.iter().zip(&serials) {
        let at = t.find(&format!("Serial Number: {ser}")).unwrap_or_else(|| panic!("{ser} not in CRL:\n{t}"));
        let entry = &t[at..];
        let entry = &entry[..entry[1..].find("Serial Number:").map(|p| p + 1).unwrap_or(entry.len())];
        assert!(entry.contains(text), "entry for {ser} lacks {text:?}:\n{entry}");
    }
    let list = list_json(&d, &["--status", "revoked"]);
    assert_eq!(list.len(), reasons.len());
    for ((r, _), ser) in reasons.iter().zip(&serials) {
        assert_eq!(find_serial(&list, ser).unwrap()["revocation_reason"], *r);
    }
}

#[test]
fn unknown_serial_and_double_revoke_are_refused() {
    let (d, a, b) = setup();
    let sa = serial_of(&a);
    // unknown serial
    let Out { code, stderr: err, .. } = gh(&d, &["ca", "revoke", "0123456789ABCDEF0123"]);
    assert_eq!(code, 1, "unknown serial must exit 1: {err}");
    assert!(!err.trim().is_empty());
    // first revoke ok, second refused
    gh_ok(&d, &["ca", "revoke", &sa, "--reason", "superseded"]);
    let Out { code, stderr: err, .. } = gh(&d, &["ca", "revoke", &sa, "--reason", "keyCompromise"]);
    assert_eq!(code, 1, "double revoke must exit 1: {err}");
    assert!(err.contains("already revoked"), "{err}");
    // the original reason stays
    let list = list_json(&d, &[]);
    assert_eq!(find_serial(&list, &sa).unwrap()["revocation_reason"], "superseded");
    assert_eq!(find_serial(&list, &serial_of(&b)).unwrap()["status"], "valid");
    // also refused in another spelling
    let Out { code, stderr: err, .. } = gh(&d, &["ca", "revoke", &colon_lower(&sa)]);
    assert_eq!(code, 1);
    assert!(err.contains("already revoked"), "{err}");
}

#[test]
fn unknown_reason_is_a_usage_error() {
    let (d, a, _b) = setup();
    let Out { code, stderr: err, .. } = gh(&d, &["ca", "revoke", &serial_of(&a), "--reason", "boredom"]);
    assert_eq!(code, 2, "unknown reason: {err}");
    assert_eq!(find_serial(&list_json(&d, &[]), &serial_of(&a)).unwrap()["status"], "valid");
}

/// certificateHold is the one revocation RFC 5280 lets a CA undo: `ca unrevoke` releases
/// it, the certificate verifies again and leaves the next CRL; every other reason is final.
#[test]
fn a_hold_is_released_and_leaves_the_next_crl() {
    let (d, a, b) = setup();
    let (sa, sb) = (serial_of(&a), serial_of(&b));
    // $ gatehouse ca revoke SERIAL --reason certificateHold ; gatehouse ca crl --out crl.pem
    gh_ok(&d, &["ca", "revoke", &sa, "--reason", "certificateHold"]);
    let crl = d.join("crl.pem");
    gh_ok(&d, &["ca", "crl", "--out", s(&crl)]);
    assert!(crl_text(&crl, false).contains("Certificate Hold"), "{}", crl_text(&crl, false));
    let (code, out) = verify_crl(&d, &crl, &a);
    assert_ne!(code, 0, "a held certificate verified: {out}");

    // $ gatehouse ca unrevoke SERIAL ; gatehouse ca crl --out crl2.pem
    let said = gh_ok(&d, &["ca", "unrevoke", &sa]);
    assert!(said.starts_with("released ") && said.contains("off the next CRL"), "{said}");
    let crl2 = d.join("crl2.pem");
    gh_ok(&d, &["ca", "crl", "--out", s(&crl2)]);
    let text = crl_text(&crl2, false);
    assert!(!text.contains(&norm_serial(&sa)) && !text.contains("Certificate Hold"), "still listed:\n{text}");
    let (code, out) = verify_crl(&d, &crl2, &a);
    assert_eq!(code, 0, "released certificate does not verify against the new CRL: {out}");
    let entry = find_serial(&list_json(&d, &[]), &sa).cloned().expect("listed");
    assert_eq!(entry["status"], "valid", "{entry}");

    // releasing what is not on hold says why, and changes nothing
    let Out { code, stderr: err, .. } = gh(&d, &["ca", "unrevoke", &sa]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not revoked") && err.contains("certificateHold"), "{err}");
    gh_ok(&d, &["ca", "revoke", &sb, "--reason", "keyCompromise"]);
    let Out { code, stderr: err, .. } = gh(&d, &["ca", "unrevoke", &sb]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("revoked (keyCompromise)") && err.contains("final"), "{err}");
    let entry = find_serial(&list_json(&d, &[]), &sb).cloned().expect("listed");
    assert_eq!(entry["status"], "revoked", "{entry}");
    let Out { code, stderr: err, .. } = gh(&d, &["ca", "unrevoke", "ABCDEF"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no certificate with serial"), "{err}");
}
