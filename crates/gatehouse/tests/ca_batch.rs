//! `gatehouse ca batch FILE.csv --out DIR`: client bundles from a CSV.
mod support;
use support::*;

use std::path::Path;

/// Parse the single `issued N, skipped K, failed M` summary line from stderr.
#[track_caller]
fn summary(stderr: &str) -> (u64, u64, u64) {
    let lines: Vec<&str> =
        stderr.lines().filter(|l| l.contains("issued ") && l.contains("skipped ") && l.contains("failed ")).collect();
    assert_eq!(lines.len(), 1, "expected exactly one summary line on stderr:\n{stderr}");
    let l = lines[0];
    let num = |k: &str| -> u64 {
        let at = l.find(k).unwrap() + k.len();
        l[at..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("bad summary {l:?}"))
    };
    assert!(l.trim_start().starts_with("issued "), "summary should start with `issued N`: {l:?}");
    (num("issued "), num("skipped "), num("failed "))
}

fn batch(d: &Path, csv: &Path, out: &Path, extra: &[&str]) -> Out {
    let mut a = vec!["ca", "batch", s(csv), "--out", s(out)];
    a.extend_from_slice(extra);
    gh(d, &a)
}

/// Read DIR/passwords.csv into (cn, password) pairs (header line skipped).
fn passwords(out: &Path) -> Vec<(String, String)> {
    read(out.join("passwords.csv"))
        .lines()
        .filter(|l| !l.trim().is_empty() && l.trim() != "cn,password")
        .map(|l| {
            let (a, b) = l.split_once(',').unwrap_or_else(|| panic!("bad passwords.csv line {l:?}"));
            (a.trim().to_string(), b.trim().trim_matches('"').to_string())
        })
        .collect()
}

fn pkcs12_opens(p12: &Path, pw: &str, legacy: bool) -> String {
    let pass = format!("pass:{pw}");
    let mut a = vec!["pkcs12"];
    if legacy {
        a.push("-legacy");
    }
    a.extend_from_slice(&["-in", s(p12), "-passin", &pass, "-info", "-nodes"]);
    openssl_ok(&a)
}

#[test]
fn batch_issues_client_bundles_with_emails() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("bundles"));
    let csv = d.join("users.csv");
    write(&csv, "cn,email,password\nalice,alice@example.test,\nbob,,\ncarol,carol@example.test,\n");
    // $ gatehouse ca batch users.csv --out bundles
    let Out { code, stdout, stderr: err } = batch(&d, &csv, &out, &[]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {err}");
    assert_eq!(summary(&err), (3, 0, 0), "{err}");
    assert!(!exists(out.join("cn.crt")), "header row issued as a certificate");

    let list = list_json(&d, &[]);
    assert_eq!(list.len(), 3, "{list:?}");
    for cn in ["alice", "bob", "carol"] {
        let crt = out.join(format!("{cn}.crt"));
        let key = out.join(format!("{cn}.key"));
        let full = out.join(format!("{cn}.fullchain.pem"));
        assert!(exists(&crt) && exists(&key) && exists(&full), "{cn} bundle incomplete: {:?}", ls(&out));
        assert_eq!(mode(&key), 0o600, "{cn}.key mode");
        assert_eq!(key_pubkey(&key, None), cert_pubkey(&crt), "{cn} key/cert mismatch");
        assert_eq!(pem_certs(&read(&full)).len(), 2, "{cn} fullchain");
        assert!(!exists(out.join(format!("{cn}.p12"))), "p12 without --p12");
        // $ openssl verify -purpose sslclient ...
        assert_verifies(&d, "sslclient", &crt);
        assert!(x509_text(&crt).contains("TLS Web Client Authentication"));
        assert!(subject_of(&crt).contains(&format!("CN={cn}")));
        let e = find_serial(&list, &serial_of(&crt)).unwrap_or_else(|| panic!("{cn} not in ca list"));
        assert_eq!(e["profile"], "client");
        assert_eq!(e["common_name"], cn);
    }
    for (cn, mail) in [("alice", "alice@example.test"), ("carol", "carol@example.test")] {
        let san = x509_ext(&out.join(format!("{cn}.crt")), "subjectAltName");
        assert!(san.contains(&format!("email:{mail}")), "{cn} SAN {san}");
    }
    assert!(!x509_ext(&out.join("bob.crt"), "subjectAltName").contains("email:"));
    // client default_days = 365
    assert!(valid_after(&out.join("bob.crt"), 364 * 86400) && !valid_after(&out.join("bob.crt"), 366 * 86400));
}

#[test]
fn batch_with_cn_only_header_and_days() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let csv = d.join("names.csv");
    write(&csv, "cn\ndora\nemil\n");
    let Out { code, stderr: err, .. } = batch(&d, &csv, &out, &["--days", "7"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(summary(&err), (2, 0, 0));
    for cn in ["dora", "emil"] {
        let crt = out.join(format!("{cn}.crt"));
        assert_verifies(&d, "sslclient", &crt);
        assert!(valid_after(&crt, 6 * 86400) && !valid_after(&crt, 8 * 86400), "--days 7 not honoured");
    }
    assert!(!exists(out.join("cn.crt")), "the header was issued as a user");
}

/// A file whose first line is not a header of known columns is refused whole: no
/// user is named after a header, nor after a whole semicolon-separated line.
#[test]
fn a_csv_without_a_known_header_issues_nothing() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    for (file, body) in [
        ("plain.csv", "dora\nemil\n"),
        ("name.csv", "name\ndora\n"),
        ("name-mail.csv", "name,mail\ndora,dora@example.test\n"),
        ("excel.csv", "Name;E-Mail\ndora;dora@example.test\n"),
    ] {
        let csv = d.join(file);
        write(&csv, body);
        // $ gatehouse ca batch name.csv --out out
        let Out { code, stderr: err, .. } = batch(&d, &csv, &out, &[]);
        assert_eq!(code, 1, "{file}: {err}");
        assert!(err.contains("line 1: the first line must be a header"), "{file}: {err}");
        assert!(err.contains("cn, email, password"), "{file}: the allowed columns are not named: {err}");
        assert!(err.contains("nothing was issued"), "{file}: {err}");
        assert!(list_json(&d, &[]).is_empty(), "{file}: something was issued");
        assert!(ls(&out).is_empty(), "{file}: files were written: {:?}", ls(&out));
    }
    let csv = d.join("nocn.csv");
    write(&csv, "email\ndora@example.test\n");
    let Out { code, stderr: err, .. } = batch(&d, &csv, &out, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("has no cn column; allowed columns: cn, email, password"), "{err}");
}

/// Excel writes semicolons in many locales: the header says which delimiter the file uses.
#[test]
fn a_semicolon_separated_csv_is_read_by_its_header() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let csv = d.join("excel.csv");
    write(&csv, "CN;Email\r\ndora;dora@example.test\r\nemil;\r\n");
    let Out { code, stderr: err, .. } = batch(&d, &csv, &out, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(summary(&err), (2, 0, 0));
    assert!(x509_ext(&out.join("dora.crt"), "subjectAltName").contains("email:dora@example.test"));
    assert!(subject_of(&out.join("dora.crt")).contains("dora"), "{}", subject_of(&out.join("dora.crt")));
}

#[test]
fn batch_p12_passwords_from_rows_and_generated() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let csv = d.join("users.csv");
    write(&csv, "cn,email,password\nalice,alice@example.test,\nbob,bob@example.test,bobs-own-secret\ncarol,,\n");
    // $ gatehouse ca batch users.csv --out out --p12
    let Out { code, stdout, stderr: err } = batch(&d, &csv, &out, &["--p12"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(summary(&err), (3, 0, 0));

    let pwfile = out.join("passwords.csv");
    assert!(exists(&pwfile), "no passwords.csv; out has {:?}", ls(&out));
    assert_eq!(mode(&pwfile), 0o600, "passwords.csv mode");
    let pws = passwords(&out);
    let names: Vec<&str> = pws.iter().map(|(c, _)| c.as_str()).collect();
    assert!(names.contains(&"alice") && names.contains(&"carol"), "generated passwords missing: {pws:?}");
    assert!(!names.contains(&"bob"), "bob's password came from the CSV and must not be in passwords.csv: {pws:?}");
    assert!(!read(&pwfile).contains("bobs-own-secret"));
    assert!(!stdout.contains("bobs-own-secret") && !err.contains("bobs-own-secret"), "row password echoed");

    for (cn, pw) in &pws {
        assert!(!pw.is_empty());
        let info = pkcs12_opens(&out.join(format!("{cn}.p12")), pw, false);
        assert!(info.contains("MAC: sha256") && info.contains("AES-256-CBC"), "{cn}: {info}");
        assert!(info.contains(&format!("friendlyName: {cn}")), "{cn}: {info}");
        assert_eq!(pem_certs(&info).len(), 3, "{cn}: chain not in p12");
    }
    let info = pkcs12_opens(&out.join("bob.p12"), "bobs-own-secret", false);
    assert!(info.contains("friendlyName: bob"), "{info}");
    let Out { code, .. } = openssl(&["pkcs12", "-in", s(&out.join("bob.p12")), "-passin", "pass:wrong", "-noout"]);
    assert_ne!(code, 0, "bob.p12 opens with a wrong password");
}

#[test]
fn batch_p12_legacy() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let csv = d.join("u.csv");
    write(&csv, "cn,email,password\nold1,,pw-old-1\n");
    let Out { code, stderr: err, .. } = batch(&d, &csv, &out, &["--p12", "--legacy"]);
    assert_eq!(code, 0, "{err}");
    let info = pkcs12_opens(&out.join("old1.p12"), "pw-old-1", true);
    assert!(info.contains("MAC: sha1") && info.contains("pbeWithSHA1And3-KeyTripleDES-CBC"), "{info}");
}

/// Every bad row is reported with its line, and nothing is issued until the file is right:
/// a duplicate found halfway must not leave half the users issued.
#[test]
fn bad_rows_are_all_reported_and_nothing_issued() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let csv = d.join("mixed.csv");
    let good = "cn,email,password\ngood1,good1@example.test,\ngood2,,\n";
    write(
        &csv,
        "cn,email,password\n\
         good1,good1@example.test,\n\
         ,nobody@example.test,\n\
         evil/name,,\n\
         .hidden,,\n\
         dave,not-an-email,\n\
         good2,,\n\
         good1,,\n",
    );
    // $ gatehouse ca batch mixed.csv --out out ; echo $?
    let Out { code, stderr: err, .. } = batch(&d, &csv, &out, &[]);
    assert_eq!(code, 1, "a bad row -> exit 1; stderr: {err}");
    for n in [3, 4, 5, 6, 8] {
        assert!(err.contains(&format!("line {n}:")), "line {n} not reported:\n{err}");
    }
    for n in [1, 2, 7] {
        assert!(!err.contains(&format!("line {n}:")), "good line {n} reported as bad:\n{err}");
    }
    assert!(err.contains("line 8: the cn 'good1' repeats line 2"), "{err}");
    assert!(err.contains("5 problems") && err.contains("nothing was issued"), "{err}");
    assert!(list_json(&d, &[]).is_empty(), "rows were issued from a file with errors");
    assert!(ls(&out).is_empty(), "files were written: {:?}", ls(&out));
    assert!(!exists(d.join("name.crt")));

    // fixed, it goes through
    write(&csv, good);
    let Out { code, stderr: err, .. } = batch(&d, &csv, &out, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(summary(&err), (2, 0, 0), "{err}");
    assert_verifies(&d, "sslclient", &out.join("good1.crt"));
    assert!(x509_ext(&out.join("good1.crt"), "subjectAltName").contains("email:good1@example.test"));
}

/// `--p12-password-file`: one password for every bundle, none written to passwords.csv.
#[test]
fn one_password_for_every_bundle_from_a_file() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let csv = d.join("u.csv");
    write(&csv, "cn\nann\nben\n");
    let pw = d.join("pw.txt");
    write(&pw, "one-for-all\n");
    // $ gatehouse ca batch u.csv --out out --p12 --p12-password-file pw.txt
    let Out { code, stderr: err, .. } = batch(&d, &csv, &out, &["--p12", "--p12-password-file", s(&pw)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(summary(&err), (2, 0, 0));
    for cn in ["ann", "ben"] {
        pkcs12_opens(&out.join(format!("{cn}.p12")), "one-for-all", false);
    }
    assert!(!exists(out.join("passwords.csv")), "passwords.csv written although the password was given");

    // a row's own password and the file's would compete: refused before anything is issued
    let csv2 = d.join("u2.csv");
    write(&csv2, "cn,password\ncid,own\n");
    let Out { code, stderr: err, .. } = batch(&d, &csv2, &out, &["--p12", "--p12-password-file", s(&pw)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("line 2:") && err.contains("--p12-password-file"), "{err}");
    assert!(!exists(out.join("cid.crt")));
    // the password file needs --p12
    let Out { code, stderr: err, .. } = batch(&d, &csv, &out, &["--p12-password-file", s(&pw)]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn rerun_skips_existing_bundles() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let csv = d.join("u.csv");
    write(&csv, "cn,email,password\nu1,,\nu2,,\nu3,,\n");
    let Out { code, stderr: err, .. } = batch(&d, &csv, &out, &["--p12"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(summary(&err), (3, 0, 0));
    let before: Vec<Vec<u8>> =
        ["u1.crt", "u2.key", "u3.p12", "passwords.csv"].iter().map(|f| read_bytes(out.join(f))).collect();

    // $ gatehouse ca batch u.csv --out out --p12    (again)
    let Out { code, stderr: err, .. } = batch(&d, &csv, &out, &["--p12"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(summary(&err), (0, 3, 0), "{err}");
    let after: Vec<Vec<u8>> =
        ["u1.crt", "u2.key", "u3.p12", "passwords.csv"].iter().map(|f| read_bytes(out.join(f))).collect();
    assert!(before == after, "re-run changed existing bundles");
    assert_eq!(list_json(&d, &[]).len(), 3, "re-run issued again");

    // a new row is issued, old ones skipped; its generated password is added
    write(&csv, "cn,email,password\nu1,,\nu2,,\nu3,,\nu4,,\n");
    let Out { code, stderr: err, .. } = batch(&d, &csv, &out, &["--p12"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(summary(&err), (1, 3, 0), "{err}");
    assert_eq!(list_json(&d, &[]).len(), 4);
    let pws = passwords(&out);
    for cn in ["u1", "u2", "u3", "u4"] {
        let pw = &pws.iter().find(|(c, _)| c == cn).unwrap_or_else(|| panic!("{cn} not in passwords.csv: {pws:?}")).1;
        pkcs12_opens(&out.join(format!("{cn}.p12")), pw, false);
    }
    assert_eq!(mode(out.join("passwords.csv")), 0o600);
}

/// A row an interrupted run left without its NAME.crt (written last) is issued
/// again, and what that run wrote of it is removed first: no old PKCS#12 stays
/// beside the row's new password.
#[test]
fn rerun_replaces_a_partial_bundle() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let csv = d.join("u.csv");
    write(&csv, "cn,email,password\nu1,,\nu2,,\n");
    let Out { code, stderr: err, .. } = batch(&d, &csv, &out, &["--p12"]);
    assert_eq!(code, 0, "{err}");
    let old_p12 = read_bytes(out.join("u2.p12"));
    // what a kill -9 between u2.p12 and u2.crt leaves
    std::fs::remove_file(out.join("u2.crt")).unwrap();

    // $ gatehouse ca batch u.csv --out out --p12    (again)
    let Out { code, stderr: err, .. } = batch(&d, &csv, &out, &["--p12"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(summary(&err), (1, 1, 0), "{err}");
    assert!(err.contains("removed 3 files of bundles an interrupted run left"), "{err}");
    assert!(read_bytes(out.join("u2.p12")) != old_p12, "u2.p12 was not replaced");
    let pws = passwords(&out);
    assert_eq!(pws.iter().filter(|(cn, _)| cn == "u2").count(), 1, "{pws:?}");
    for cn in ["u1", "u2"] {
        let pw = &pws.iter().find(|(c, _)| c == cn).unwrap_or_else(|| panic!("{cn} not in passwords.csv: {pws:?}")).1;
        pkcs12_opens(&out.join(format!("{cn}.p12")), pw, false);
    }
}

#[test]
fn batch_requires_out() {
    let d = init_ca(&[]);
    let csv = d.join("u.csv");
    write(&csv, "cn\nx1\n");
    let Out { code, stderr: err, .. } = gh(&d, &["ca", "batch", s(&csv)]);
    assert_eq!(code, 2, "missing --out is a usage error: {err}");
    assert!(list_json(&d, &[]).is_empty());
}
