//! Server certificate names, checked as browsers check them, before anything is signed:
//! `gatehouse ca issue` and `ca sign` run as a user would, results read with openssl.
mod support;
use support::*;

use std::path::{Path, PathBuf};

/// `openssl x509 -noout -ext subjectAltName` of a certificate.
fn san_of(crt: &Path) -> String {
    x509_ext(crt, "subjectAltName")
}

/// `openssl verify -CAfile root -untrusted intermediate -verify_ip IP | -verify_hostname NAME CRT`.
fn verify_name(d: &Path, flag: &str, name: &str, crt: &Path) -> (i32, String) {
    let o = openssl(&["verify", "-CAfile", s(&root_crt(d)), "-untrusted", s(&inter_crt(d)), flag, name, s(crt)]);
    (o.code, o.all())
}

#[track_caller]
fn assert_verifies_as(d: &Path, flag: &str, name: &str, crt: &Path) {
    let (code, out) = verify_name(d, flag, name, crt);
    assert_eq!(code, 0, "openssl verify {flag} {name} failed for {crt:?}: {out}\nSAN: {}", san_of(crt));
}

/// `gatehouse ca issue --profile server --cn CN --out OUT EXTRA...`, expecting success; the certificate.
#[track_caller]
fn issue_server(d: &Path, cn: &str, extra: &[&str]) -> PathBuf {
    let out = mkdir(d.join("out"));
    issue(d, &out, "server", cn, extra);
    out.join(format!("{cn}.crt"))
}

/// A refusal: exit `code`, one short sentence on stderr containing each of `words`, and
/// nothing signed (no certificate file, nothing recorded).
#[track_caller]
fn refused(d: &Path, args: &[&str], code: i32, words: &[&str]) -> String {
    let out = d.join("refused-out");
    let mut all = args.to_vec();
    if args.get(1) == Some(&"issue") {
        all.extend_from_slice(&["--out", s(&out)]);
    }
    let recorded = list_json(d, &[]).len();
    let o = gh(d, &all);
    assert_eq!(o.code, code, "{args:?}: expected exit {code}\nstdout: {}\nstderr: {}", o.stdout, o.stderr);
    for word in words {
        assert!(o.stderr.contains(word), "{args:?}: stderr should contain {word:?}: {}", o.stderr);
    }
    assert_eq!(o.stderr.trim().lines().count(), 1, "one sentence, not: {}", o.stderr);
    assert!(o.stderr.len() < 600, "{args:?}: the refusal is {} bytes long: {}", o.stderr.len(), o.stderr);
    assert!(!o.stdout.contains("BEGIN CERTIFICATE"), "a refused command printed a certificate");
    let written: Vec<String> = if exists(&out) { ls(&out) } else { Vec::new() };
    assert!(written.iter().all(|f| !f.ends_with(".crt")), "a refused command wrote {written:?}");
    assert_eq!(list_json(d, &[]).len(), recorded, "a refused command recorded a certificate");
    o.stderr
}

#[test]
fn an_ip_address_cn_is_an_ip_san_that_openssl_verifies() {
    let d = init_ca(&[]);
    // $ gatehouse ca issue --profile server --cn 10.1.2.3
    let crt = issue_server(&d, "10.1.2.3", &[]);
    let san = san_of(&crt);
    assert!(san.contains("IP Address:10.1.2.3") && !san.contains("DNS:"), "{san}");
    assert_verifies_as(&d, "-verify_ip", "10.1.2.3", &crt);
    assert_ne!(verify_name(&d, "-verify_ip", "10.1.2.4", &crt).0, 0, "another address must not verify");

    // IPv6 literals too, as --cn and as a bare --san.
    let crt = issue_server(&d, "2001:db8::7", &["--san", "fd00::1"]);
    let san = san_of(&crt);
    assert!(san.contains("IP Address:2001:DB8:0:0:0:0:0:7") && san.contains("IP Address:FD00:0:0:0:0:0:0:1"), "{san}");
    assert_verifies_as(&d, "-verify_ip", "2001:db8::7", &crt);
    assert_verifies_as(&d, "-verify_ip", "fd00::1", &crt);
}

#[test]
fn what_only_looks_like_an_ip_address_is_refused() {
    let d = init_ca(&[]);
    let server = ["ca", "issue", "--profile", "server"];
    for bad in ["999.1.1.1", "1.2.3", "010.1.2.3", "DNS:10.1.2.3", "DNS:app.0x1f"] {
        let mut args = server.to_vec();
        args.extend_from_slice(&["--cn", "www.example.test", "--san", bad]);
        refused(&d, &args, 2, &["10.1.2.3"]);
    }
    let mut args = server.to_vec();
    args.extend_from_slice(&["--cn", "999.1.1.1"]);
    refused(&d, &args, 2, &["IPv4", "10.1.2.3"]);
}

#[test]
fn a_server_certificate_names_a_host_or_is_refused_saying_what_to_pass() {
    let d = init_ca(&[]);
    let server = |cn: &'static str| vec!["ca", "issue", "--profile", "server", "--cn", cn];
    refused(&d, &server("hello world"), 2, &["a space", "a server certificate must name a host", "--san DNS:"]);
    refused(&d, &server("single"), 2, &["single label", "--san DNS:NAME"]);
    refused(&d, &server("foo_bar.example.test"), 2, &["'_'", "use a hyphen instead"]);

    // localhost keeps working, as a CN alone.
    let crt = issue_server(&d, "localhost", &[]);
    assert!(san_of(&crt).contains("DNS:localhost"), "{}", san_of(&crt));
    assert_verifies_as(&d, "-verify_hostname", "localhost", &crt);
    // A single label is certified when asked for by name.
    let crt = issue_server(&d, "single", &["--san", "DNS:single"]);
    assert!(san_of(&crt).contains("DNS:single"), "{}", san_of(&crt));
    assert_verifies_as(&d, "-verify_hostname", "single", &crt);
}

#[test]
fn an_idn_is_certified_as_its_a_label() {
    let d = init_ca(&[]);
    // $ gatehouse ca issue --profile server --cn bücher.example
    let crt = issue_server(&d, "bücher.example", &[]);
    let san = san_of(&crt);
    assert!(san.contains("DNS:xn--bcher-kva.example"), "{san}");
    assert!(subject_of(&crt).contains("CN=xn--bcher-kva.example"), "the CN is one of the SANs: {}", subject_of(&crt));
    assert_verifies_as(&d, "-verify_hostname", "xn--bcher-kva.example", &crt);

    let bad = ["ca", "issue", "--profile", "server", "--cn", "www.example.test", "--san", "DNS:xn--zz.example"];
    refused(&d, &bad, 2, &["internationalized", "A-label"]);
}

#[test]
fn wildcards_only_as_the_whole_leftmost_label() {
    let d = init_ca(&[]);
    let crt = issue_server(&d, "wild.example.test", &["--san", "*.apps.example.test"]);
    assert!(san_of(&crt).contains("DNS:*.apps.example.test"), "{}", san_of(&crt));
    assert_verifies_as(&d, "-verify_hostname", "x.apps.example.test", &crt);
    for bad in ["DNS:f*.example.test", "DNS:a.*.example.test", "DNS:*.test"] {
        let args = ["ca", "issue", "--profile", "server", "--cn", "w.example.test", "--san", bad];
        refused(&d, &args, 2, &["*.example.com"]);
    }
}

#[test]
fn a_long_cn_and_a_huge_name_are_refused_without_being_echoed() {
    let d = init_ca(&[]);
    let cn = format!("{}.example", "a".repeat(57));
    assert_eq!(cn.len(), 65);
    let args = ["ca", "issue", "--profile", "server", "--cn", &cn];
    refused(&d, &args, 2, &["65 characters", "at most 64", "--san DNS:"]);

    let huge = format!("DNS:{}.example", "ab".repeat(50_000));
    let args = ["ca", "issue", "--profile", "server", "--cn", "www.example.test", "--san", &huge];
    refused(&d, &args, 2, &["100008 characters", "at most 253"]);
}

#[test]
fn an_unknown_san_type_is_named() {
    let d = init_ca(&[]);
    let args = ["ca", "issue", "--profile", "server", "--cn", "www.example.test", "--san", "FOO:bar"];
    let err = refused(&d, &args, 2, &["unknown SAN type FOO; use DNS:, IP:, email: or URI:"]);
    assert!(!err.contains("invalid DNS name") && !err.contains("not a valid DNS name"), "{err}");
}

#[test]
fn csr_signing_applies_the_same_checks() {
    let d = init_ca(&[]);
    let sign =
        |csr: &Path| vec!["ca".to_owned(), "sign".to_owned(), s(csr).to_owned(), "--profile".into(), "server".into()];
    let run = |csr: &Path, code: i32, words: &[&str]| {
        let args = sign(csr);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&d, &args, code, words)
    };
    // $ openssl req -new ... -subj '/CN=hello world'   (no subjectAltName)
    let (csr, _) = csr_ec(&d, "hello", "/CN=hello world", None, &[]);
    run(&csr, 2, &["a server certificate must name a host"]);
    let (csr, _) = csr_ec(&d, "numeric", "/CN=www.example.test", Some("DNS:999.1.1.1"), &[]);
    run(&csr, 2, &["IPv4"]);
    let (csr, _) = csr_ec(&d, "under", "/CN=www.example.test", Some("DNS:foo_bar.example.test"), &[]);
    run(&csr, 2, &["use a hyphen instead"]);
    // (openssl req itself refuses a CN over 64 characters; the pki tests sign such a CSR.)

    // A CSR whose CN is an address gets it as an IP SAN.
    let (csr, _) = csr_ec(&d, "addr", "/CN=10.9.8.7", None, &[]);
    let crt = d.join("addr.crt");
    gh_ok(&d, &["ca", "sign", s(&csr), "--profile", "server", "--out", s(&crt)]);
    assert!(san_of(&crt).contains("IP Address:10.9.8.7"), "{}", san_of(&crt));
    assert_verifies_as(&d, "-verify_ip", "10.9.8.7", &crt);
}

#[test]
fn a_file_that_is_not_a_csr_is_described_not_parsed_aloud() {
    let d = init_ca(&[]);
    let (csr, _) = csr_ec(&d, "ok", "/CN=ok.example.test", Some("DNS:ok.example.test"), &[]);
    let der = d.join("ok.der");
    openssl_ok(&["req", "-in", s(&csr), "-outform", "DER", "-out", s(&der)]);
    let der_bytes = read_bytes(&der);
    let pem = read(&csr);
    let files: [(&str, Vec<u8>, &str); 6] = [
        ("empty.csr", Vec::new(), "the file is empty"),
        ("cut.der", der_bytes[..der_bytes.len() / 2].to_vec(), "it ends early"),
        ("cut.csr", pem.as_bytes()[..pem.len() / 2].to_vec(), "no END line"),
        ("root.csr", read_bytes(root_crt(&d)), "holds a certificate, not a certificate request"),
        ("hello.txt", b"hello world\n".to_vec(), "neither PEM text nor a DER PKCS#10 request"),
        ("key.csr", read_bytes(d.join("ok.key")), "'PRIVATE KEY' block, not a 'CERTIFICATE REQUEST'"),
    ];
    for (name, bytes, said) in files {
        let path = d.join(name);
        write(&path, &bytes);
        let err = refused(&d, &["ca", "sign", s(&path), "--profile", "server"], 1, &[said, "`openssl req -new`"]);
        for internal in ["NomError", "Der(", "Eof", "Parsing", "bytes/chars", "malformedframing"] {
            assert!(!err.contains(internal), "{name}: parser internals in {err}");
        }
    }
}
