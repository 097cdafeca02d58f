//! `gatehouse ca sign CSR`: CSRs made by `openssl req`, refusals, ca.toml policy.
mod support;
use support::*;

use std::path::{Path, PathBuf};

/// Refusal check: exit 1, stderr contains `word`, nothing recorded, no output file.
#[track_caller]
fn refused(d: &Path, args: &[&str], word: &str, out_file: Option<&Path>) -> String {
    let Out { code, stdout, stderr: err } = gh(d, args);
    assert_eq!(code, 1, "{args:?} should be refused with exit 1\nstdout: {stdout}\nstderr: {err}");
    assert!(err.contains(word), "{args:?}: stderr should contain {word:?}: {err}");
    assert!(!stdout.contains("BEGIN CERTIFICATE"), "refused sign printed a certificate");
    assert!(err.trim().lines().count() <= 3, "expected one clear sentence on stderr, got: {err}");
    if let Some(f) = out_file {
        assert!(!exists(f), "refused command wrote {f:?}");
    }
    assert!(list_json(d, &[]).is_empty(), "refused command recorded a certificate");
    err
}

/// DER -> PEM with the given label, via `openssl base64`.
fn to_pem(d: &Path, der: &[u8], label: &str) -> String {
    let inp = d.join("der.bin");
    let b64 = d.join("der.b64");
    write(&inp, der);
    openssl_ok(&["base64", "-e", "-in", s(&inp), "-out", s(&b64)]);
    format!("-----BEGIN {label}-----\n{}-----END {label}-----\n", read(&b64))
}

fn csr_der(csr: &Path, d: &Path) -> PathBuf {
    let der = d.join(format!("{}.der", csr.file_stem().unwrap().to_str().unwrap()));
    openssl_ok(&["req", "-in", s(csr), "-outform", "DER", "-out", s(&der)]);
    der
}

#[test]
fn sign_ec_csr_server_profile() {
    let d = init_ca(&["--crl-url", "http://crl.example.test/i.crl"]);
    // $ openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj ... -addext subjectAltName=...
    let (csr, key) = csr_ec(
        &d,
        "web",
        "/CN=web.example.test/O=Example Org/C=DE",
        Some("DNS:web.example.test,DNS:www.web.example.test,IP:10.0.0.5"),
        &[],
    );
    let crt = d.join("web.crt");
    // $ gatehouse ca sign web.csr --profile server --out web.crt
    let stdout = gh_ok(&d, &["ca", "sign", s(&csr), "--profile", "server", "--out", s(&crt)]);
    assert_eq!(serial_line(&stdout), serial_of(&crt), "stdout serial vs certificate");
    assert!(serial_of(&crt).len() >= 16);
    assert_verifies(&d, "sslserver", &crt);
    assert_eq!(cert_pubkey(&crt), key_pubkey(&key, None), "certificate is not for the CSR's key");

    let t = x509_text(&crt);
    assert!(t.contains("Version: 3 (0x2)"));
    assert!(t.contains("X509v3 Basic Constraints: critical") && t.contains("CA:FALSE"), "{t}");
    assert!(t.contains("TLS Web Server Authentication"), "{t}");
    assert!(t.contains("X509v3 Subject Key Identifier") && t.contains("X509v3 Authority Key Identifier"), "{t}");
    assert!(t.contains("URI:http://crl.example.test/i.crl"), "no CRL DP:\n{t}");
    let san = x509_ext(&crt, "subjectAltName");
    for w in ["DNS:web.example.test", "DNS:www.web.example.test", "IP Address:10.0.0.5"] {
        assert!(san.contains(w), "SAN lacks {w}: {san}");
    }
    let subj = subject_of(&crt);
    assert!(
        subj.contains("CN=web.example.test") && subj.contains("O=Example Org") && subj.contains("C=DE"),
        "subject {subj}"
    );

    // recorded
    let list = list_json(&d, &[]);
    let e = find_serial(&list, &serial_of(&crt)).unwrap_or_else(|| panic!("signed cert not listed: {list:?}"));
    assert_eq!(e["profile"], "server");
    assert_eq!(e["status"], "valid");
}

#[test]
fn sign_rsa_2048_csr_client_profile_to_stdout() {
    let d = init_ca(&[]);
    let (csr, key) = csr_rsa(&d, "user", 2048, "/CN=user-rsa/O=Example Org", Some("email:user@example.test"), &[]);
    // $ gatehouse ca sign user.csr --profile client > user.crt
    let stdout = gh_ok(&d, &["ca", "sign", s(&csr), "--profile", "client"]);
    let certs = pem_certs(&stdout);
    assert_eq!(certs.len(), 1, "stdout should carry the certificate PEM:\n{stdout}");
    let crt = d.join("user.crt");
    write(&crt, &certs[0]);
    assert_verifies(&d, "sslclient", &crt);
    assert_eq!(cert_pubkey(&crt), key_pubkey(&key, None));
    let t = x509_text(&crt);
    assert!(t.contains("TLS Web Client Authentication"), "{t}");
    assert!(t.contains("Digital Signature") && t.contains("Key Encipherment"), "RSA key usage:\n{t}");
    assert!(x509_ext(&crt, "subjectAltName").contains("email:user@example.test"));
    assert!(find_serial(&list_json(&d, &[]), &serial_of(&crt)).is_some(), "signed cert not recorded");
}

#[test]
fn sign_der_csr() {
    let d = init_ca(&[]);
    let (csr, _) = csr_ec(&d, "der", "/CN=der.example.test", Some("DNS:der.example.test"), &[]);
    let der = csr_der(&csr, &d);
    let crt = d.join("der.crt");
    let stdout = gh_ok(&d, &["ca", "sign", s(&der), "--profile", "server", "--out", s(&crt)]);
    assert_eq!(serial_line(&stdout), serial_of(&crt));
    assert_verifies(&d, "sslserver", &crt);
}

#[test]
fn sign_copies_only_configured_subject_fields_and_honours_days() {
    let d = init_ca(&[]);
    let (csr, _) = csr_ec(
        &d,
        "subj",
        "/C=DE/ST=Berlin/L=Berlin/O=Example Org/OU=Platform/CN=subj.example.test/emailAddress=admin@example.test",
        Some("DNS:subj.example.test"),
        &[],
    );
    let crt = d.join("subj.crt");
    gh_ok(&d, &["ca", "sign", s(&csr), "--profile", "server", "--days", "30", "--out", s(&crt)]);
    let subj = subject_of(&crt);
    for w in ["CN=subj.example.test", "O=Example Org", "OU=Platform", "C=DE", "ST=Berlin", "L=Berlin"] {
        assert!(subj.contains(w), "subject {subj} lacks {w}");
    }
    assert!(!subj.contains("admin@example.test"), "emailAddress copied although not in subject_fields: {subj}");
    assert!(valid_after(&crt, 29 * 86400) && !valid_after(&crt, 31 * 86400), "--days 30 not honoured");

    // subject_fields = ["CN"] -> O/OU/... dropped
    write(
        ca_toml(&d),
        ca_toml_text(None, 168, &OPEN, &OPEN)
            .replace(r#"subject_fields = ["CN", "O", "OU", "C", "ST", "L"]"#, r#"subject_fields = ["CN"]"#),
    );
    let crt2 = d.join("subj2.crt");
    gh_ok(&d, &["ca", "sign", s(&csr), "--profile", "server", "--out", s(&crt2)]);
    let subj = subject_of(&crt2);
    assert!(subj.contains("CN=subj.example.test"), "{subj}");
    assert!(
        !subj.contains("O=Example Org") && !subj.contains("OU=") && !subj.contains("C=DE"),
        "fields copied despite subject_fields: {subj}"
    );
}

// ---------------------------------------------------------------- refusals

#[test]
fn refuses_tampered_csr_signature() {
    let d = init_ca(&[]);
    for (name, make) in [("ec", true), ("rsa", false)] {
        let (csr, _) = if make {
            csr_ec(&d, name, "/CN=tamper.example.test", Some("DNS:tamper.example.test"), &[])
        } else {
            csr_rsa(&d, name, 2048, "/CN=tamper.example.test", Some("DNS:tamper.example.test"), &[])
        };
        // flip a bit in the last byte of the DER = inside the signature BIT STRING
        let mut der = read_bytes(csr_der(&csr, &d));
        let n = der.len();
        der[n - 1] ^= 0x01;
        let bad_der = d.join(format!("{name}-tampered.der"));
        write(&bad_der, &der);
        let bad_pem = d.join(format!("{name}-tampered.csr"));
        write(&bad_pem, to_pem(&d, &der, "CERTIFICATE REQUEST"));
        // openssl agrees the signature is bad but the CSR still parses
        openssl_ok(&["req", "-in", s(&bad_pem), "-noout", "-subject"]);
        // (OpenSSL 3.0 `req -verify` exits 0 either way; read its verdict)
        let Out { stdout: o, stderr: e, .. } = openssl(&["req", "-in", s(&bad_pem), "-noout", "-verify"]);
        assert!(format!("{o}{e}").contains("verify failure"), "openssl still verifies the tampered CSR: {o}{e}");

        let out = d.join("tampered.crt");
        refused(&d, &["ca", "sign", s(&bad_pem), "--profile", "server", "--out", s(&out)], "signature", Some(&out));
        refused(&d, &["ca", "sign", s(&bad_der), "--profile", "server", "--out", s(&out)], "signature", Some(&out));
    }
}

#[test]
fn refuses_tampered_csr_subject() {
    let d = init_ca(&[]);
    let (csr, _) = csr_ec(&d, "subj", "/CN=aaaa.example.test", Some("DNS:aaaa.example.test"), &[]);
    let der = read_bytes(csr_der(&csr, &d));
    // rewrite the CN inside the signed CertificationRequestInfo: aaaa -> baaa
    let pos = der.windows(4).position(|w| w == b"aaaa").expect("CN bytes in DER");
    let mut bad = der.clone();
    bad[pos] = b'b';
    let p = d.join("subj-tampered.csr");
    write(&p, to_pem(&d, &bad, "CERTIFICATE REQUEST"));
    refused(&d, &["ca", "sign", s(&p), "--profile", "server"], "signature", None);
}

#[test]
fn refuses_rsa_1024() {
    let d = init_ca(&[]);
    let (csr, _) = csr_rsa(&d, "small", 1024, "/CN=small.example.test", Some("DNS:small.example.test"), &[]);
    let out = d.join("small.crt");
    refused(&d, &["ca", "sign", s(&csr), "--profile", "server", "--out", s(&out)], "2048", Some(&out));
}

#[test]
fn refuses_sha1_signed_csr() {
    let d = init_ca(&[]);
    // $ openssl req -new ... -sha1
    let (csr, _) = csr_ec(&d, "sha1", "/CN=sha1.example.test", Some("DNS:sha1.example.test"), &["-sha1"]);
    let t = openssl_ok(&["req", "-in", s(&csr), "-noout", "-text"]);
    assert!(t.contains("ecdsa-with-SHA1"), "openssl did not make a SHA-1 CSR:\n{t}");
    let out = d.join("sha1.crt");
    refused(&d, &["ca", "sign", s(&csr), "--profile", "server", "--out", s(&out)], "SHA-1", Some(&out));

    let (csr, _) = csr_rsa(&d, "sha1rsa", 2048, "/CN=sha1.example.test", Some("DNS:sha1.example.test"), &["-sha1"]);
    refused(&d, &["ca", "sign", s(&csr), "--profile", "server", "--out", s(&out)], "SHA-1", Some(&out));
}

#[test]
fn refuses_malformed_input() {
    let d = init_ca(&[]);
    let out = d.join("x.crt");

    let garbage_pem = d.join("garbage.csr");
    write(
        &garbage_pem,
        "-----BEGIN CERTIFICATE REQUEST-----\nThis is %% not base64 at all!!\n-----END CERTIFICATE REQUEST-----\n",
    );
    refused(&d, &["ca", "sign", s(&garbage_pem), "--profile", "server", "--out", s(&out)], "CSR", Some(&out));

    let truncated = d.join("truncated.csr");
    let (csr, _) = csr_ec(&d, "ok", "/CN=ok.example.test", Some("DNS:ok.example.test"), &[]);
    let der = read_bytes(csr_der(&csr, &d));
    write(&truncated, to_pem(&d, &der[..der.len() / 2], "CERTIFICATE REQUEST"));
    refused(&d, &["ca", "sign", s(&truncated), "--profile", "server", "--out", s(&out)], "CSR", Some(&out));

    let random = d.join("random.bin");
    write(&random, (0..300u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect::<Vec<u8>>());
    refused(&d, &["ca", "sign", s(&random), "--profile", "server", "--out", s(&out)], "CSR", Some(&out));

    let text = d.join("hello.txt");
    write(&text, "hello world\n");
    refused(&d, &["ca", "sign", s(&text), "--profile", "server", "--out", s(&out)], "CSR", Some(&out));

    // a certificate is not a CSR
    let notcsr = d.join("root-copy.pem");
    write(&notcsr, read(root_crt(&d)));
    refused(&d, &["ca", "sign", s(&notcsr), "--profile", "server", "--out", s(&out)], "CSR", Some(&out));
}

#[test]
fn refuses_days_over_max_days() {
    let d = init_ca(&[]);
    let (csr, _) = csr_ec(&d, "long", "/CN=long.example.test", Some("DNS:long.example.test"), &[]);
    let out = d.join("long.crt");
    refused(
        &d,
        &["ca", "sign", s(&csr), "--profile", "server", "--days", "399", "--out", s(&out)],
        "max_days",
        Some(&out),
    );
    refused(
        &d,
        &["ca", "sign", s(&csr), "--profile", "client", "--days", "4000", "--out", s(&out)],
        "max_days",
        Some(&out),
    );

    // a lowered max_days in ca.toml is enforced
    write(
        ca_toml(&d),
        ca_toml_text(None, 168, &OPEN, &OPEN)
            .replace("default_days = 90", "default_days = 20")
            .replace("max_days = 398", "max_days = 30"),
    );
    refused(
        &d,
        &["ca", "sign", s(&csr), "--profile", "server", "--days", "31", "--out", s(&out)],
        "max_days",
        Some(&out),
    );
    gh_ok(&d, &["ca", "sign", s(&csr), "--profile", "server", "--days", "30", "--out", s(&out)]);
    assert!(valid_after(&out, 29 * 86400) && !valid_after(&out, 31 * 86400));
}

// ---------------------------------------------------------------- policy

const STRICT_SERVER: Policy<'static> = Policy {
    dns: r#"["*.example.com", "exact.example.org"]"#,
    ips: r#"["10.0.0.0/8", "fd00::/8"]"#,
    emails: "[]",
    uris: r#"["spiffe://example.org/*"]"#,
};
const STRICT_CLIENT: Policy<'static> =
    Policy { dns: "[]", ips: "[]", emails: r#"["*@example.com"]"#, uris: r#"["*"]"# };

fn strict_ca() -> TempDir {
    let d = init_ca(&[]);
    write(ca_toml(&d), ca_toml_text(None, 168, &STRICT_SERVER, &STRICT_CLIENT));
    d
}

#[test]
fn sign_refuses_san_outside_policy() {
    let d = strict_ca();
    let out = d.join("p.crt");
    for (i, san) in [
        "DNS:evil.test",
        "DNS:a.b.example.com", // two labels under example.com
        "DNS:example.com",     // apex is not "one label under"
        "DNS:exact.example.org.evil.test",
        "IP:192.168.1.1",
        "IP:2001:db8::1",
        "email:ops@example.com", // server allows no e-mail SANs
        "URI:spiffe://evil.org/ns/x",
    ]
    .iter()
    .enumerate()
    {
        let (csr, _) =
            csr_ec(&d, &format!("bad{i}"), "/CN=a.example.com", Some(&format!("DNS:a.example.com,{san}")), &[]);
        refused(&d, &["ca", "sign", s(&csr), "--profile", "server", "--out", s(&out)], "policy", Some(&out));
    }
    // client: e-mail only under example.com, no DNS
    let (csr, _) = csr_ec(&d, "badc1", "/CN=user", Some("email:user@evil.test"), &[]);
    refused(&d, &["ca", "sign", s(&csr), "--profile", "client", "--out", s(&out)], "policy", Some(&out));
    let (csr, _) = csr_ec(&d, "badc2", "/CN=user", Some("email:user@example.com,DNS:host.example.com"), &[]);
    refused(&d, &["ca", "sign", s(&csr), "--profile", "client", "--out", s(&out)], "policy", Some(&out));
}

#[test]
fn sign_accepts_san_inside_policy() {
    let d = strict_ca();
    let (csr, _) = csr_ec(
        &d,
        "good",
        "/CN=a.example.com",
        Some(
            "DNS:a.example.com,DNS:*.example.com,DNS:exact.example.org,IP:10.20.30.40,IP:fd00::5,URI:spiffe://example.org/ns/prod",
        ),
        &[],
    );
    let crt = d.join("good.crt");
    gh_ok(&d, &["ca", "sign", s(&csr), "--profile", "server", "--out", s(&crt)]);
    assert_verifies(&d, "sslserver", &crt);
    let san = x509_ext(&crt, "subjectAltName");
    for w in [
        "DNS:a.example.com",
        "DNS:*.example.com",
        "DNS:exact.example.org",
        "IP Address:10.20.30.40",
        "URI:spiffe://example.org/ns/prod",
    ] {
        assert!(san.contains(w), "{san} lacks {w}");
    }
    let (csr, _) = csr_ec(&d, "goodc", "/CN=user", Some("email:user@example.com"), &[]);
    let crt = d.join("goodc.crt");
    gh_ok(&d, &["ca", "sign", s(&csr), "--profile", "client", "--out", s(&crt)]);
    assert_verifies(&d, "sslclient", &crt);
}

#[test]
fn issue_applies_the_same_policy() {
    let d = strict_ca();
    let out = mkdir(d.join("out"));
    for san in ["DNS:evil.test", "IP:192.168.1.1", "email:x@example.com", "URI:https://example.org/x"] {
        let Out { code, stderr: err, .. } =
            gh(&d, &["ca", "issue", "--profile", "server", "--cn", "a.example.com", "--san", san, "--out", s(&out)]);
        assert_eq!(code, 1, "issue with {san} outside policy: {err}");
        assert!(err.contains("policy"), "{san}: {err}");
    }
    let Out { code, stderr: err, .. } = gh(
        &d,
        &["ca", "issue", "--profile", "client", "--cn", "bob", "--san", "email:bob@evil.test", "--out", s(&out)],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("policy"), "{err}");
    assert!(ls(&out).is_empty(), "refused issues wrote {:?}", ls(&out));
    assert!(list_json(&d, &[]).is_empty());

    issue(&d, &out, "server", "a.example.com", &["--san", "IP:10.1.1.1", "--san", "URI:spiffe://example.org/w"]);
    issue(&d, &out, "client", "bob", &["--san", "email:bob@example.com"]);
    assert_eq!(list_json(&d, &[]).len(), 2);
}

#[test]
fn unknown_key_in_ca_toml_is_a_config_error() {
    let d = init_ca(&[]);
    let (csr, _) = csr_ec(&d, "k", "/CN=k.example.test", Some("DNS:k.example.test"), &[]);
    let good = ca_toml_text(None, 168, &OPEN, &OPEN);

    // unknown key inside a profile table
    let mut lines: Vec<String> = good.lines().map(String::from).collect();
    let at = lines.iter().position(|l| l.starts_with("max_days = 398")).unwrap() + 1;
    lines.insert(at, "allowed_colours = [\"blue\"]".into());
    let lineno = at + 1; // 1-based
    write(ca_toml(&d), lines.join("\n") + "\n");
    for args in [
        vec!["ca", "sign", s(&csr), "--profile", "server"],
        vec!["ca", "issue", "--profile", "server", "--cn", "k.example.test", "--out", s(&d)],
    ] {
        let Out { code, stderr: err, .. } = gh(&d, &args);
        assert_eq!(code, 2, "{args:?} with unknown key must exit 2: {err}");
        assert!(err.contains("allowed_colours"), "stderr should name the key: {err}");
        assert!(
            err.contains(&format!("line {lineno}")) || err.contains(&format!(":{lineno}")),
            "stderr should name line {lineno}: {err}"
        );
    }

    // unknown top-level key
    write(
        ca_toml(&d),
        format!("crl_next_update_hours = 24\nfrobnicate = true\n{}", good.replace("crl_next_update_hours = 168\n", "")),
    );
    let Out { code, stderr: err, .. } = gh(&d, &["ca", "sign", s(&csr), "--profile", "server"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("frobnicate"), "{err}");
    assert!(err.contains("line 2") || err.contains(":2"), "stderr should name line 2: {err}");
    assert!(list_json(&d, &[]).is_empty());
}

#[test]
fn sign_usage_errors() {
    let d = init_ca(&[]);
    let (csr, _) = csr_ec(&d, "u", "/CN=u.example.test", Some("DNS:u.example.test"), &[]);
    let Out { code, stderr: err, .. } = gh(&d, &["ca", "sign", s(&csr), "--profile", "nope"]);
    assert_eq!(code, 2, "{err}");
    let Out { code, stderr: err, .. } = gh(&d, &["ca", "sign", "--profile", "server"]);
    assert_eq!(code, 2, "missing CSR_FILE: {err}");
}

#[test]
fn sign_refuses_a_uri_san_that_would_forge_an_xfcc_element() {
    let d = init_ca(&[]);
    let out = d.join("m.crt");
    // openssl -addext splits at ',', so the SAN comes from a config section.
    let cnf = d.join("req.cnf");
    write(
        &cnf,
        "[req]\ndistinguished_name = dn\n[dn]\n[ext]\nsubjectAltName = @alt\n\
         [alt]\nURI.1 = spiffe://t/m,By=spiffe://gw;URI=spiffe://prod/admin\n",
    );
    let (csr, _) = csr_ec(&d, "mallory", "/CN=mallory", None, &["-config", s(&cnf), "-reqexts", "ext"]);
    let err =
        refused(&d, &["ca", "sign", s(&csr), "--profile", "client", "--out", s(&out)], "contains ','", Some(&out));
    assert!(err.contains("spiffe://t/m,By=spiffe://gw;URI=spiffe://prod/admin"), "{err}");
}
