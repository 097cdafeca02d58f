//! `gatehouse ca issue`: files, modes, X.509 contents checked with openssl.
mod support;
use support::*;

use std::collections::HashSet;

const CRL_URL: &str = "http://crl.example.test/gatehouse/intermediate.crl";

/// Text of the first line after a heading line containing `heading` in `openssl x509 -text`.
fn ext_value<'a>(text: &'a str, heading: &str) -> Option<&'a str> {
    let mut it = text.lines();
    while let Some(l) = it.next() {
        if l.contains(heading) {
            return it.next().map(str::trim);
        }
    }
    None
}

#[test]
fn server_cert_files_modes_and_openssl_verify() {
    let d = init_ca(&["--crl-url", CRL_URL]);
    let out = mkdir(d.join("out"));
    // $ gatehouse ca issue --profile server --cn www.example.test --san ... --out out
    let stdout = issue(
        &d,
        &out,
        "server",
        "www.example.test",
        &[
            "--san",
            "DNS:api.example.test",
            "--san",
            "DNS:*.apps.example.test",
            "--san",
            "IP:10.1.2.3",
            "--san",
            "IP:2001:db8::1",
            "--san",
            "email:ops@example.test",
            "--san",
            "URI:https://example.test/service/www",
        ],
    );
    let crt = out.join("www.example.test.crt");
    let key = out.join("www.example.test.key");
    let full = out.join("www.example.test.fullchain.pem");
    for f in [&crt, &key, &full] {
        assert!(exists(f), "{f:?} missing; out has {:?}", ls(&out));
    }
    assert!(!exists(out.join("www.example.test.p12")), "p12 written without --p12");

    // $ stat -c %a www.example.test.key ; head -1 www.example.test.key
    assert_eq!(mode(&key), 0o600, "leaf key mode");
    assert!(read(&key).starts_with("-----BEGIN PRIVATE KEY-----"), "leaf key is not PKCS#8 PEM");
    assert_eq!(key_pubkey(&key, None), cert_pubkey(&crt), "key does not match certificate");

    // .crt is the leaf only; fullchain = leaf then intermediate (no root)
    assert_eq!(pem_certs(&read(&crt)).len(), 1, "NAME.crt must hold the leaf only");
    let chain = pem_certs(&read(&full));
    assert_eq!(chain.len(), 2, "fullchain must hold exactly 2 certificates");
    assert_eq!(fingerprint_pem(&chain[0]), fingerprint(&crt), "fullchain[0] is not the leaf");
    assert_eq!(fingerprint_pem(&chain[1]), fingerprint(&inter_crt(&d)), "fullchain[1] is not the intermediate");

    // $ openssl verify -purpose sslserver -CAfile root.crt -untrusted intermediate.crt www.crt
    assert_verifies(&d, "sslserver", &crt);
    // a server certificate is not a client certificate
    let (code, msg) = verify(&d, "sslclient", &crt);
    assert_ne!(code, 0, "server cert passed -purpose sslclient: {msg}");

    // serial: line equals openssl's serial
    let serial = serial_line(&stdout);
    assert_eq!(serial, serial_of(&crt), "stdout serial differs from the certificate's");
    assert!(serial.len() >= 16, "serial {serial} shorter than 64 bits");
    assert!(
        serial.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()),
        "serial not uppercase hex: {serial}"
    );
}

#[test]
fn server_cert_extensions() {
    let d = init_ca(&["--crl-url", CRL_URL]);
    let out = mkdir(d.join("out"));
    issue(
        &d,
        &out,
        "server",
        "www.example.test",
        &[
            "--san",
            "DNS:api.example.test",
            "--san",
            "DNS:*.apps.example.test",
            "--san",
            "IP:10.1.2.3",
            "--san",
            "IP:2001:db8::1",
            "--san",
            "email:ops@example.test",
            "--san",
            "URI:https://example.test/service/www",
        ],
    );
    let crt = out.join("www.example.test.crt");
    // $ openssl x509 -in www.example.test.crt -text -noout
    let t = x509_text(&crt);
    assert!(t.contains("Version: 3 (0x2)"), "not X.509 v3:\n{t}");
    assert!(t.contains("X509v3 Basic Constraints: critical"), "basicConstraints not critical:\n{t}");
    assert_eq!(ext_value(&t, "X509v3 Basic Constraints"), Some("CA:FALSE"), "{t}");
    let ku = ext_value(&t, "X509v3 Key Usage").unwrap_or_else(|| panic!("no key usage:\n{t}"));
    assert!(ku.contains("Digital Signature"), "key usage {ku}");
    assert!(!ku.contains("Certificate Sign"), "leaf may not sign certificates: {ku}");
    assert!(!ku.contains("Key Encipherment"), "EC leaf with keyEncipherment: {ku}");
    let eku = ext_value(&t, "X509v3 Extended Key Usage").unwrap_or_else(|| panic!("no EKU:\n{t}"));
    assert!(eku.contains("TLS Web Server Authentication"), "EKU {eku}");
    assert!(!eku.contains("TLS Web Client Authentication"), "server EKU includes clientAuth: {eku}");

    // SKI present; AKI = intermediate's SKI
    let ski = ext_value(&t, "X509v3 Subject Key Identifier").unwrap_or_else(|| panic!("no SKI:\n{t}"));
    assert!(ski.len() >= 20, "SKI {ski}");
    let aki = ext_value(&t, "X509v3 Authority Key Identifier").unwrap_or_else(|| panic!("no AKI:\n{t}"));
    let inter_ski =
        ext_value(&x509_text(&inter_crt(&d)), "X509v3 Subject Key Identifier").expect("intermediate SKI").to_string();
    assert_eq!(aki.trim_start_matches("keyid:"), inter_ski, "AKI must be the intermediate's SKI");

    // SANs, including the CN added as DNS
    let san = ext_value(&t, "X509v3 Subject Alternative Name").unwrap_or_else(|| panic!("no SAN:\n{t}"));
    let entries: Vec<&str> = san.split(", ").collect();
    for want in [
        "DNS:www.example.test",
        "DNS:api.example.test",
        "DNS:*.apps.example.test",
        "IP Address:10.1.2.3",
        "IP Address:2001:DB8:0:0:0:0:0:1",
        "email:ops@example.test",
        "URI:https://example.test/service/www",
    ] {
        assert!(entries.contains(&want), "SAN lacks {want}: {san}");
    }
    assert_eq!(entries.len(), 7, "unexpected SAN entries: {san}");

    // CRL distribution point
    assert!(t.contains("X509v3 CRL Distribution Points"), "no CRL DP:\n{t}");
    assert!(t.contains(&format!("URI:{CRL_URL}")), "CRL DP does not carry {CRL_URL}:\n{t}");

    // subject CN and issuer = intermediate
    assert!(subject_of(&crt).contains("CN=www.example.test"), "subject {}", subject_of(&crt));
    let issuer = openssl_ok(&["x509", "-in", s(&crt), "-noout", "-issuer", "-nameopt", "RFC2253"]);
    assert_eq!(issuer.trim().trim_start_matches("issuer="), subject_of(&inter_crt(&d)));
}

#[test]
fn no_crl_distribution_point_without_crl_url() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    issue(&d, &out, "server", "nocdp.example.test", &[]);
    let t = x509_text(&out.join("nocdp.example.test.crt"));
    assert!(!t.contains("CRL Distribution Points"), "CDP present without crl_url:\n{t}");
    // CN looks like a host name -> it is the DNS SAN
    assert!(x509_ext(&out.join("nocdp.example.test.crt"), "subjectAltName").contains("DNS:nocdp.example.test"));
}

#[test]
fn crl_url_set_later_in_ca_toml_is_used() {
    let d = init_ca(&[]);
    write(ca_toml(&d), ca_toml_text(Some("http://later.example.test/ca.crl"), 168, &OPEN, &OPEN));
    let out = mkdir(d.join("out"));
    issue(&d, &out, "server", "later.example.test", &[]);
    let t = x509_text(&out.join("later.example.test.crt"));
    assert!(t.contains("URI:http://later.example.test/ca.crl"), "crl_url from ca.toml not used:\n{t}");
}

#[test]
fn client_cert_verifies_as_sslclient_only() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let stdout = issue(&d, &out, "client", "alice", &["--san", "email:alice@example.test"]);
    let crt = out.join("alice.crt");
    assert_eq!(serial_line(&stdout), serial_of(&crt));
    assert_eq!(mode(out.join("alice.key")), 0o600);
    // $ openssl verify -purpose sslclient ...
    assert_verifies(&d, "sslclient", &crt);
    let (code, msg) = verify(&d, "sslserver", &crt);
    assert_ne!(code, 0, "client cert passed -purpose sslserver: {msg}");
    let t = x509_text(&crt);
    let eku = ext_value(&t, "X509v3 Extended Key Usage").unwrap_or_else(|| panic!("no EKU:\n{t}"));
    assert!(eku.contains("TLS Web Client Authentication") && !eku.contains("Server"), "EKU {eku}");
    assert!(t.contains("X509v3 Basic Constraints: critical") && t.contains("CA:FALSE"), "{t}");
    assert!(x509_ext(&crt, "subjectAltName").contains("email:alice@example.test"));
    assert!(subject_of(&crt).contains("CN=alice"));
}

#[test]
fn rsa_leaf_has_key_encipherment() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    issue(&d, &out, "server", "rsa.example.test", &["--key-type", "rsa-2048"]);
    let crt = out.join("rsa.example.test.crt");
    let t = x509_text(&crt);
    assert!(t.contains("rsaEncryption") && t.contains("Public-Key: (2048 bit)"), "{t}");
    let ku = ext_value(&t, "X509v3 Key Usage").unwrap_or_else(|| panic!("no key usage:\n{t}"));
    assert!(ku.contains("Digital Signature") && ku.contains("Key Encipherment"), "RSA key usage {ku}");
    assert!(read(out.join("rsa.example.test.key")).starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(mode(out.join("rsa.example.test.key")), 0o600);
    assert_verifies(&d, "sslserver", &crt);
}

#[test]
fn leaf_key_type_p384() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    issue(&d, &out, "server", "p384.example.test", &["--key-type", "ecdsa-p384"]);
    let t = x509_text(&out.join("p384.example.test.crt"));
    assert!(t.contains("NIST CURVE: P-384"), "{t}");
    assert_verifies(&d, "sslserver", &out.join("p384.example.test.crt"));
    assert_eq!(key_pubkey(&out.join("p384.example.test.key"), None), cert_pubkey(&out.join("p384.example.test.crt")));
}

#[test]
fn leaf_key_type_ed25519() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    issue(&d, &out, "client", "edwards", &["--key-type", "ed25519"]);
    let t = x509_text(&out.join("edwards.crt"));
    assert!(t.contains("ED25519"), "{t}");
    assert_verifies(&d, "sslclient", &out.join("edwards.crt"));
    // NAME.key must be usable by OpenSSL (e.g. a TLS server loading it)
    let key = out.join("edwards.key");
    let Out { code, stderr: err, .. } = openssl(&["pkey", "-in", s(&key), "-noout"]);
    assert_eq!(code, 0, "`openssl pkey -in edwards.key` cannot read the issued Ed25519 key: {err}");
    assert_eq!(key_pubkey(&key, None), cert_pubkey(&out.join("edwards.crt")));
}

#[test]
fn serials_are_random_distinct_and_at_least_64_bits() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let mut seen = HashSet::new();
    for i in 0..6 {
        let cn = format!("host{i}.example.test");
        let stdout = issue(&d, &out, "server", &cn, &[]);
        let ser = serial_of(&out.join(format!("{cn}.crt")));
        assert_eq!(serial_line(&stdout), ser);
        assert!(ser.len() >= 16, "serial {ser} < 64 bits");
        assert!(!ser.starts_with('-'), "negative serial {ser}");
        assert!(seen.insert(ser.clone()), "serial {ser} issued twice");
    }
    // not sequential: the numeric values should not be consecutive
    let mut v: Vec<u128> =
        seen.iter().map(|s| u128::from_str_radix(&s[s.len().saturating_sub(30)..], 16).unwrap()).collect();
    v.sort();
    assert!(v.windows(2).any(|w| w[1] - w[0] > 1_000_000), "serials look sequential: {seen:?}");
}

#[test]
fn bare_san_values_are_classified() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    issue(
        &d,
        &out,
        "server",
        "bare.example.test",
        &[
            "--san",
            "plain.example.test",
            "--san",
            "192.168.10.20",
            "--san",
            "fd00::7",
            "--san",
            "bob@example.test",
            "--san",
            "spiffe://example.org/ns/prod/sa/web",
        ],
    );
    let san = x509_ext(&out.join("bare.example.test.crt"), "subjectAltName");
    for want in [
        "DNS:plain.example.test",
        "IP Address:192.168.10.20",
        "IP Address:FD00:0:0:0:0:0:0:7",
        "email:bob@example.test",
        "URI:spiffe://example.org/ns/prod/sa/web",
        "DNS:bare.example.test",
    ] {
        assert!(san.contains(want), "SAN lacks {want}: {san}");
    }
}

#[test]
fn cn_already_listed_is_not_duplicated_and_non_hostname_cn_is_not_a_san() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    issue(
        &d,
        &out,
        "server",
        "dup.example.test",
        &["--san", "DNS:dup.example.test", "--san", "DNS:other.example.test"],
    );
    let san = x509_ext(&out.join("dup.example.test.crt"), "subjectAltName");
    assert_eq!(san.matches("DNS:dup.example.test").count(), 1, "CN listed twice: {san}");
    assert!(san.contains("DNS:other.example.test"), "{san}");

    issue(&d, &out, "server", "Internal Service", &["--san", "DNS:svc.example.test"]);
    let crt = out.join("Internal Service.crt");
    assert!(exists(&crt), "out has {:?}", ls(&out));
    let san = x509_ext(&crt, "subjectAltName");
    assert!(san.contains("DNS:svc.example.test"), "{san}");
    assert!(!san.contains("Internal Service"), "non-hostname CN added as DNS SAN: {san}");
    assert!(subject_of(&crt).contains("CN=Internal Service"));
}

#[test]
fn out_defaults_to_current_directory() {
    let d = init_ca(&[]);
    let cwd = mkdir(d.join("here"));
    // $ cd here && gatehouse --data-dir $D ca issue --profile client --cn carol
    let Out { code, stdout, stderr: err } = gh_in(&d, &cwd, &["ca", "issue", "--profile", "client", "--cn", "carol"]);
    assert_eq!(code, 0, "{err}");
    for f in ["carol.crt", "carol.key", "carol.fullchain.pem"] {
        assert!(exists(cwd.join(f)), "{f} not written to the cwd; cwd has {:?}", ls(&cwd));
    }
    assert_eq!(serial_line(&stdout), serial_of(&cwd.join("carol.crt")));
}

#[test]
fn refuses_to_overwrite_without_force() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let first = issue(&d, &out, "server", "keep.example.test", &[]);
    let files = ["keep.example.test.crt", "keep.example.test.key", "keep.example.test.fullchain.pem"];
    let before: Vec<Vec<u8>> = files.iter().map(|f| read_bytes(out.join(f))).collect();

    // $ gatehouse ca issue ... (same name again)
    let Out { code, stderr: err, .. } =
        gh(&d, &["ca", "issue", "--profile", "server", "--cn", "keep.example.test", "--out", s(&out)]);
    assert_eq!(code, 1, "overwrite without --force must exit 1: {err}");
    assert!(!err.trim().is_empty(), "no error sentence on stderr");
    for (f, b) in files.iter().zip(&before) {
        assert!(read_bytes(out.join(f)) == *b, "{f} changed by a refused issue");
    }
    assert_eq!(list_json(&d, &[]).len(), 1, "refused issue recorded a certificate");

    // $ gatehouse ca issue ... --force
    let second = issue(&d, &out, "server", "keep.example.test", &["--force"]);
    let crt = out.join("keep.example.test.crt");
    assert_ne!(serial_line(&second), serial_line(&first), "--force did not issue a new certificate");
    assert_eq!(serial_line(&second), serial_of(&crt));
    assert!(read_bytes(out.join(files[1])) != before[1], "--force kept the old key");
    assert_eq!(key_pubkey(&out.join(files[1]), None), cert_pubkey(&crt));
    assert_eq!(mode(out.join(files[1])), 0o600);
    assert_verifies(&d, "sslserver", &crt);
}

#[test]
fn days_default_and_explicit() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    issue(&d, &out, "server", "default.example.test", &[]);
    let c = out.join("default.example.test.crt");
    assert!(valid_after(&c, 89 * 86400) && !valid_after(&c, 91 * 86400), "server default_days is not 90");

    issue(&d, &out, "client", "default-client", &[]);
    let c = out.join("default-client.crt");
    assert!(valid_after(&c, 364 * 86400) && !valid_after(&c, 366 * 86400), "client default_days is not 365");

    issue(&d, &out, "server", "ten.example.test", &["--days", "10"]);
    let c = out.join("ten.example.test.crt");
    assert!(valid_after(&c, 9 * 86400) && !valid_after(&c, 11 * 86400), "--days 10 not honoured");
    // notBefore is not in the future
    let nb = openssl_ok(&["x509", "-in", s(&c), "-noout", "-startdate"]);
    let nb = openssl_time(nb.trim().trim_start_matches("notBefore="));
    assert!(nb <= unix_now() + 5, "notBefore in the future");

    issue(&d, &out, "server", "max.example.test", &["--days", "398"]);
    assert!(valid_after(&out.join("max.example.test.crt"), 397 * 86400));
}

#[test]
fn days_over_max_days_refused() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let Out { code, stderr: err, .. } =
        gh(&d, &["ca", "issue", "--profile", "server", "--cn", "long.example.test", "--days", "399", "--out", s(&out)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("max_days"), "stderr should name max_days: {err}");
    assert!(!exists(out.join("long.example.test.crt")));
    let Out { code, stderr: err, .. } =
        gh(&d, &["ca", "issue", "--profile", "client", "--cn", "longclient", "--days", "3651", "--out", s(&out)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("max_days"), "{err}");
    assert!(list_json(&d, &[]).is_empty(), "refused issue recorded a certificate");
}

#[test]
fn usage_errors_exit_2() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    // unknown profile
    let Out { code, stderr: err, .. } = gh(&d, &["ca", "issue", "--profile", "admin", "--cn", "x", "--out", s(&out)]);
    assert_eq!(code, 2, "unknown profile: {err}");
    // missing --cn
    let Out { code, stderr: err, .. } = gh(&d, &["ca", "issue", "--profile", "server", "--out", s(&out)]);
    assert_eq!(code, 2, "missing --cn: {err}");
    assert!(ls(&out).is_empty(), "usage errors wrote files: {:?}", ls(&out));
}

#[test]
fn uri_san_that_would_forge_an_xfcc_element_is_refused_before_signing() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let hostile = "URI:spiffe://t/m,By=spiffe://gw;URI=spiffe://prod/admin";
    let Out { code, stdout, stderr: err } =
        gh(&d, &["ca", "issue", "--profile", "client", "--cn", "x", "--san", hostile, "--out", s(&out)]);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one clear sentence: {err}");
    assert!(
        err.contains("'spiffe://t/m,By=spiffe://gw;URI=spiffe://prod/admin' contains ','")
            && err.contains("X-Forwarded-Client-Cert")
            && err.contains("allow_uri_separators"),
        "the message must name the SAN, the character and what to do: {err}"
    );
    assert!(ls(&out).is_empty(), "a refused issue wrote files: {:?}", ls(&out));
    assert!(list_json(&d, &[]).is_empty(), "a refused issue recorded a certificate");

    // Not RFC 3986 at all (a quote, a space): a malformed name, refused as a usage error.
    for bad in ["URI:spiffe://t/\"admin\"", "URI:spiffe://t/a b"] {
        let Out { code, stderr: err, .. } =
            gh(&d, &["ca", "issue", "--profile", "client", "--cn", "x", "--san", bad, "--out", s(&out)]);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains("RFC 3986"), "{bad}: {err}");
    }
    assert!(list_json(&d, &[]).is_empty(), "a refused issue recorded a certificate");

    // The CA operator may allow separators for a profile.
    let toml = std::fs::read_to_string(ca_toml(&d)).unwrap();
    let allowed = toml.replacen("allow_uri_separators = false", "allow_uri_separators = true", 2);
    assert_ne!(toml, allowed, "ca init writes allow_uri_separators into ca.toml");
    write(ca_toml(&d), &allowed);
    gh_ok(&d, &["ca", "issue", "--profile", "client", "--cn", "x", "--san", hostile, "--out", s(&out)]);
    assert!(x509_ext(&out.join("x.crt"), "subjectAltName").contains(hostile));
}

/// Files and record never disagree: an output directory that cannot be written is found
/// before anything is signed, and a bundle that fails half-way leaves its certificate
/// recorded as never delivered and revoked as superseded, not valid.
#[test]
fn a_bundle_that_cannot_be_delivered_leaves_no_valid_certificate() {
    let d = init_ca(&[]);
    let file = d.join("not-a-dir");
    write(&file, "x");
    // $ gatehouse ca issue --profile client --cn alice --out not-a-dir/out
    let Out { code, stderr: err, .. } =
        gh(&d, &["ca", "issue", "--profile", "client", "--cn", "alice", "--out", s(&file.join("out"))]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot write to") && err.contains("--out"), "{err}");
    assert!(list_json(&d, &[]).is_empty(), "a certificate was recorded for an unwritable --out");

    // A name too long for a file name is refused before signing, without echoing it whole.
    let long = "a".repeat(300);
    let out = mkdir(d.join("out"));
    let Out { code, stderr: err, .. } =
        gh(&d, &["ca", "issue", "--profile", "client", "--cn", &long, "--out", s(&out)]);
    assert_ne!(code, 0, "{err}");
    assert!(err.len() < 600, "the error echoes the input: {} bytes", err.len());
    assert!(list_json(&d, &[]).is_empty(), "a certificate was recorded for an unusable name");

    // NAME.crt is a directory: the key and chain are written, the certificate cannot be.
    std::fs::create_dir(out.join("bob.crt")).unwrap();
    let Out { code, stderr: err, .. } =
        gh(&d, &["ca", "issue", "--profile", "client", "--cn", "bob", "--out", s(&out), "--force"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("was not delivered") && err.contains("superseded"), "{err}");
    let list = list_json(&d, &[]);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["status"], "revoked", "{}", list[0]);
    assert_eq!(list[0]["revocation_reason"], "superseded", "{}", list[0]);
    assert!(list_json(&d, &["--status", "valid"]).is_empty());

    // once the path is free, the same command delivers a valid one
    std::fs::remove_dir(out.join("bob.crt")).unwrap();
    gh_ok(&d, &["ca", "issue", "--profile", "client", "--cn", "bob", "--out", s(&out), "--force"]);
    let valid = list_json(&d, &["--status", "valid"]);
    assert_eq!(valid.len(), 1, "{valid:?}");
    assert_eq!(norm_serial(valid[0]["serial"].as_str().unwrap()), norm_serial(&serial_of(&out.join("bob.crt"))));
}
