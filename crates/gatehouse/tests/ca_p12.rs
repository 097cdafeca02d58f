//! `gatehouse ca issue --p12`: PKCS#12 bundles read back with `openssl pkcs12`.
mod support;
use support::*;

use std::path::Path;

/// `openssl pkcs12 [-legacy] -in P12 -passin pass:PW ARGS...` -> (code, stdout+stderr)
fn pkcs12(p12: &Path, pw: &str, legacy: bool, args: &[&str]) -> (i32, String) {
    let pass = format!("pass:{pw}");
    let mut a = vec!["pkcs12"];
    if legacy {
        a.push("-legacy");
    }
    a.extend_from_slice(&["-in", s(p12), "-passin", &pass]);
    a.extend_from_slice(args);
    let Out { code, stdout: out, stderr: err } = openssl(&a);
    (code, format!("{out}{err}"))
}

#[track_caller]
fn pkcs12_ok(p12: &Path, pw: &str, legacy: bool, args: &[&str]) -> String {
    let (code, out) = pkcs12(p12, pw, legacy, args);
    assert_eq!(code, 0, "openssl pkcs12 {args:?} on {p12:?} failed: {out}");
    out
}

/// Certificates, friendly name and key inside the bundle match the issued files.
fn check_contents(d: &Path, out: &Path, cn: &str, pw: &str, legacy: bool) {
    let p12 = out.join(format!("{cn}.p12"));
    let crt = out.join(format!("{cn}.crt"));
    // $ openssl pkcs12 -in CN.p12 -passin pass:PW -nokeys
    let certs_txt = pkcs12_ok(&p12, pw, legacy, &["-nokeys"]);
    let certs = pem_certs(&certs_txt);
    assert_eq!(certs.len(), 3, "p12 should hold leaf + intermediate + root:\n{certs_txt}");
    let fps: Vec<String> = certs.iter().map(|c| fingerprint_pem(c)).collect();
    for (what, f) in [("leaf", &crt), ("intermediate", &inter_crt(d)), ("root", &root_crt(d))] {
        assert!(fps.contains(&fingerprint(f)), "p12 lacks the {what} certificate");
    }
    // $ openssl pkcs12 ... -clcerts -nokeys  -> just the leaf
    let leaf = pem_certs(&pkcs12_ok(&p12, pw, legacy, &["-clcerts", "-nokeys"]));
    assert_eq!(leaf.len(), 1);
    assert_eq!(fingerprint_pem(&leaf[0]), fingerprint(&crt), "-clcerts is not the leaf");
    // $ openssl pkcs12 ... -nocerts -nodes  -> the leaf's private key
    let tmpd = tmp();
    let keyfile = tmpd.join("k.pem");
    let pass = format!("pass:{pw}");
    let mut a = vec!["pkcs12"];
    if legacy {
        a.push("-legacy");
    }
    a.extend_from_slice(&["-in", s(&p12), "-passin", &pass, "-nocerts", "-nodes", "-out", s(&keyfile)]);
    openssl_ok(&a);
    assert_eq!(key_pubkey(&keyfile, None), cert_pubkey(&crt), "p12 key does not match the certificate");
    // the key bag's friendlyName is the CN
    let key_bag = read(&keyfile);
    assert!(
        key_bag.lines().any(|l| l.trim() == format!("friendlyName: {cn}")),
        "key bag friendlyName is not the CN {cn:?}:\n{key_bag}"
    );
}

/// friendlyName of the leaf certificate bag (`-clcerts -nokeys`).
fn leaf_friendly_name(p12: &Path, pw: &str, legacy: bool) -> String {
    let txt = pkcs12_ok(p12, pw, legacy, &["-clcerts", "-nokeys"]);
    txt.lines()
        .find_map(|l| l.trim().strip_prefix("friendlyName: "))
        .unwrap_or_else(|| panic!("leaf certificate bag has no friendlyName:\n{txt}"))
        .to_string()
}

#[test]
fn modern_p12_with_password_file() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let pwfile = d.join("p12pass.txt");
    write(&pwfile, "Tr0ub4dor&3 horse\nsecond line ignored\n");
    // $ gatehouse ca issue --profile client --cn client1 --p12 --p12-password-file p12pass.txt
    let stdout = issue(&d, &out, "client", "client1", &["--p12", "--p12-password-file", s(&pwfile)]);
    assert!(!stdout.contains("p12 password:"), "password printed although it came from a file:\n{stdout}");
    let p12 = out.join("client1.p12");
    assert!(exists(&p12), "out has {:?}", ls(&out));
    // other bundle files are still written
    assert!(
        exists(out.join("client1.crt")) && exists(out.join("client1.key")) && exists(out.join("client1.fullchain.pem"))
    );

    let pw = "Tr0ub4dor&3 horse"; // first line, trailing newline stripped
    // $ openssl pkcs12 -in client1.p12 -passin pass:... -info -nokeys -noout
    let info = pkcs12_ok(&p12, pw, false, &["-info", "-nokeys", "-noout"]);
    assert!(info.contains("MAC: sha256"), "MAC is not HMAC-SHA256:\n{info}");
    assert!(
        info.contains("PBES2") && info.contains("PBKDF2") && info.contains("AES-256-CBC"),
        "not PBES2/PBKDF2/AES-256-CBC:\n{info}"
    );
    assert!(
        !info.contains("TripleDES") && !info.contains("RC2") && !info.contains("MAC: sha1"),
        "legacy algorithms in a default p12:\n{info}"
    );
    // shrouded key bag uses the modern scheme too
    let keybag =
        info.lines().find(|l| l.contains("Shrouded Keybag")).unwrap_or_else(|| panic!("no shrouded keybag:\n{info}"));
    assert!(keybag.contains("AES-256-CBC"), "key bag {keybag}");

    check_contents(&d, &out, "client1", pw, false);

    // wrong password -> openssl refuses
    let (code, msg) = pkcs12(&p12, "wrong password", false, &["-info", "-nokeys", "-noout"]);
    assert_ne!(code, 0, "openssl accepted a wrong p12 password: {msg}");
    // the password including the newline / the second line is not the password
    let (code, _) = pkcs12(&p12, "second line ignored", false, &["-noout"]);
    assert_ne!(code, 0);
}

#[test]
fn legacy_p12_uses_3des_and_sha1_mac() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let pwfile = d.join("p12pass.txt");
    write(&pwfile, "legacy-pass\n");
    // $ gatehouse ca issue --profile client --cn oldbox --p12 --legacy --p12-password-file ...
    issue(&d, &out, "client", "oldbox", &["--p12", "--legacy", "--p12-password-file", s(&pwfile)]);
    let p12 = out.join("oldbox.p12");
    // $ openssl pkcs12 -legacy -in oldbox.p12 -passin pass:legacy-pass -info -nokeys -noout
    let info = pkcs12_ok(&p12, "legacy-pass", true, &["-info", "-nokeys", "-noout"]);
    assert!(info.contains("MAC: sha1"), "legacy MAC is not SHA-1:\n{info}");
    assert!(info.contains("pbeWithSHA1And3-KeyTripleDES-CBC"), "legacy p12 is not PBE-SHA1-3DES:\n{info}");
    assert!(!info.contains("AES-256-CBC") && !info.contains("PBES2"), "modern algorithms in a legacy p12:\n{info}");
    let keybag =
        info.lines().find(|l| l.contains("Shrouded Keybag")).unwrap_or_else(|| panic!("no shrouded keybag:\n{info}"));
    assert!(keybag.contains("pbeWithSHA1And3-KeyTripleDES-CBC"), "key bag {keybag}");

    check_contents(&d, &out, "oldbox", "legacy-pass", true);

    let (code, msg) = pkcs12(&p12, "legacy-passX", true, &["-noout"]);
    assert_ne!(code, 0, "openssl accepted a wrong legacy p12 password: {msg}");
}

#[test]
fn generated_password_is_printed_once_and_opens_the_bundle() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    // $ gatehouse ca issue --profile server --cn p12.example.test --p12
    let Out { code, stdout, stderr } =
        gh(&d, &["ca", "issue", "--profile", "server", "--cn", "p12.example.test", "--p12", "--out", s(&out)]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("p12 password:")).collect();
    assert_eq!(lines.len(), 1, "generated password must be printed exactly once:\n{stdout}");
    let pw = lines[0].trim().strip_prefix("p12 password:").expect("line starts with `p12 password:`").trim();
    assert!(!pw.is_empty(), "empty generated password");
    assert_eq!(stdout.matches(pw).count(), 1, "password appears more than once on stdout");
    assert!(!stderr.contains(pw), "password leaked to stderr");
    assert_eq!(serial_line(&stdout), serial_of(&out.join("p12.example.test.crt")));

    let p12 = out.join("p12.example.test.p12");
    let info = pkcs12_ok(&p12, pw, false, &["-info", "-nokeys", "-noout"]);
    assert!(info.contains("MAC: sha256") && info.contains("AES-256-CBC"), "{info}");
    check_contents(&d, &out, "p12.example.test", pw, false);
    let (code, _) = pkcs12(&p12, "", false, &["-noout"]);
    assert_ne!(code, 0, "p12 opens with an empty password");

    // a second bundle gets a different password
    let stdout2 = issue(&d, &out, "server", "p12b.example.test", &["--p12"]);
    let pw2 =
        stdout2.lines().find_map(|l| l.trim().strip_prefix("p12 password:")).expect("password line").trim().to_string();
    assert_ne!(pw, pw2, "generated passwords repeat");
}

#[test]
fn p12_with_rsa_key_and_legacy_generated_password() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let stdout = issue(&d, &out, "client", "rsauser", &["--key-type", "rsa-2048", "--p12", "--legacy"]);
    let pw =
        stdout.lines().find_map(|l| l.trim().strip_prefix("p12 password:")).expect("password line").trim().to_string();
    let info = pkcs12_ok(&out.join("rsauser.p12"), &pw, true, &["-info", "-nokeys", "-noout"]);
    assert!(info.contains("MAC: sha1") && info.contains("pbeWithSHA1And3-KeyTripleDES-CBC"), "{info}");
    check_contents(&d, &out, "rsauser", &pw, true);
}

#[test]
fn p12_is_not_overwritten_without_force() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let pwfile = d.join("pw");
    write(&pwfile, "pw-one\n");
    issue(&d, &out, "client", "dave", &["--p12", "--p12-password-file", s(&pwfile)]);
    let before = read_bytes(out.join("dave.p12"));
    write(&pwfile, "pw-two\n");
    let Out { code, stderr: err, .. } = gh(
        &d,
        &[
            "ca",
            "issue",
            "--profile",
            "client",
            "--cn",
            "dave",
            "--p12",
            "--p12-password-file",
            s(&pwfile),
            "--out",
            s(&out),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(read_bytes(out.join("dave.p12")) == before, "p12 overwritten without --force");
    pkcs12_ok(&out.join("dave.p12"), "pw-one", false, &["-noout"]);
    issue(&d, &out, "client", "dave", &["--p12", "--p12-password-file", s(&pwfile), "--force"]);
    pkcs12_ok(&out.join("dave.p12"), "pw-two", false, &["-noout"]);
    check_contents(&d, &out, "dave", "pw-two", false);
}

#[test]
fn leaf_certificate_bag_friendly_name_is_its_subject() {
    // The key bag is labelled with the CN (tested above); p12-keystore labels
    // certificate bags with their subject DN, which names the CN too.
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let pwfile = d.join("pw");
    write(&pwfile, "pw\n");
    issue(&d, &out, "client", "client1", &["--p12", "--p12-password-file", s(&pwfile)]);
    issue(&d, &out, "server", "srv.example.test", &["--p12", "--legacy", "--p12-password-file", s(&pwfile)]);
    // $ openssl pkcs12 -in client1.p12 -passin pass:pw -clcerts -nokeys | grep friendlyName
    assert_eq!(leaf_friendly_name(&out.join("client1.p12"), "pw", false), "CN=client1", "leaf cert bag friendlyName");
    assert_eq!(
        leaf_friendly_name(&out.join("srv.example.test.p12"), "pw", true),
        "CN=srv.example.test",
        "leaf cert bag friendlyName"
    );
}
