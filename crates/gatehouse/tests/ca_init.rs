//! `gatehouse ca init` and `ca root`, key types, encrypted CA keys.
mod support;
use support::*;

const CA_FILES: [&str; 6] =
    ["ca/root.crt", "ca/root.key", "ca/intermediate.crt", "ca/intermediate.key", "ca.toml", "gatehouse.db"];

#[test]
fn init_creates_files_with_private_key_modes() {
    let d = tmp();
    // $ gatehouse --data-dir $D ca init
    let Out { code, stderr: err, .. } = gh(&d, &["ca", "init"]);
    assert_eq!(code, 0, "ca init failed: {err}");

    for f in CA_FILES {
        assert!(exists(d.join(f)), "{f} missing after ca init; dir has {:?}", ls(&*d));
    }
    // $ stat -c %a ca/*.key
    assert_eq!(mode(root_key(&d)), 0o600, "root.key mode");
    assert_eq!(mode(inter_key(&d)), 0o600, "intermediate.key mode");

    // keys are plain (unencrypted) PEM that openssl reads without a passphrase
    for k in [root_key(&d), inter_key(&d)] {
        let pem = read(&k);
        assert!(pem.contains("-----BEGIN") && pem.contains("PRIVATE KEY-----"), "{k:?} not PEM key");
        assert!(!pem.contains("ENCRYPTED"), "{k:?} encrypted without passphrase");
        openssl_ok(&["pkey", "-in", s(&k), "-noout"]);
    }
    // keys belong to their certificates
    assert_eq!(key_pubkey(&root_key(&d), None), cert_pubkey(&root_crt(&d)), "root key/cert mismatch");
    assert_eq!(key_pubkey(&inter_key(&d), None), cert_pubkey(&inter_crt(&d)), "intermediate key/cert mismatch");

    // $ sqlite3 gatehouse.db 'PRAGMA integrity_check'
    assert_eq!(sqlite3(&db(&d), "PRAGMA integrity_check"), "ok");

    // ca.toml carries the profile policy (commented defaults are fine)
    let toml = read(ca_toml(&d));
    for key in [
        "crl_next_update_hours",
        "profiles.server",
        "profiles.client",
        "max_days",
        "allowed_dns",
        "allowed_ips",
        "allowed_emails",
        "allowed_uris",
    ] {
        assert!(toml.contains(key), "ca.toml does not mention {key}:\n{toml}");
    }
}

#[test]
fn init_builds_a_root_and_intermediate_chain_openssl_accepts() {
    let d = init_ca(&[]);
    let root = root_crt(&d);
    let inter = inter_crt(&d);
    // $ openssl verify -CAfile root.crt root.crt intermediate.crt
    let out = openssl_ok(&["verify", "-CAfile", s(&root), s(&root), s(&inter)]);
    assert!(out.contains("root.crt: OK") && out.contains("intermediate.crt: OK"), "{out}");

    let rt = x509_text(&root);
    let it = x509_text(&inter);
    for t in [&rt, &it] {
        assert!(t.contains("Version: 3 (0x2)"), "{t}");
        assert!(t.contains("CA:TRUE"), "CA cert without CA:TRUE:\n{t}");
        assert!(t.contains("Certificate Sign"), "CA cert cannot sign certs:\n{t}");
        assert!(t.contains("CRL Sign"), "CA cert cannot sign CRLs:\n{t}");
    }
    // the intermediate is issued by the root, not self-signed
    assert_ne!(subject_of(&root), subject_of(&inter));
    let issuer = openssl_ok(&["x509", "-in", s(&inter), "-noout", "-issuer", "-nameopt", "RFC2253"]);
    assert_eq!(issuer.trim().trim_start_matches("issuer="), subject_of(&root));

    // default key type is ecdsa-p256
    assert!(rt.contains("id-ecPublicKey") && rt.contains("P-256"), "root not P-256:\n{rt}");
    assert!(it.contains("id-ecPublicKey") && it.contains("P-256"), "intermediate not P-256:\n{it}");
}

#[test]
fn ca_root_prints_the_root_certificate() {
    let d = init_ca(&[]);
    // $ gatehouse ca root > printed.pem
    let out = gh_ok(&d, &["ca", "root"]);
    assert_eq!(pem_certs(&out).len(), 1, "ca root should print exactly one certificate: {out}");
    assert_eq!(fingerprint_pem(&out), fingerprint(&root_crt(&d)));
}

#[test]
fn second_init_refuses_and_leaves_files_unchanged() {
    let d = init_ca(&[]);
    let before: Vec<Vec<u8>> = CA_FILES.iter().map(|f| read_bytes(d.join(f))).collect();

    // $ gatehouse ca init   (again)
    let Out { code, stderr: err, .. } = gh(&d, &["ca", "init"]);
    assert_eq!(code, 1, "second ca init must exit 1; stderr: {err}");
    assert!(err.contains("already"), "stderr should say 'already': {err}");

    // and with other options as well
    let Out { code, stderr: err, .. } = gh(&d, &["ca", "init", "--key-type", "rsa-2048", "--name", "Other"]);
    assert_eq!(code, 1, "third ca init must exit 1; stderr: {err}");
    assert!(err.contains("already"), "stderr should say 'already': {err}");

    for (f, b) in CA_FILES.iter().zip(before) {
        assert!(read_bytes(d.join(f)) == b, "{f} changed by a refused ca init");
    }
}

#[test]
fn data_dir_flag_is_accepted_after_the_subcommand() {
    let d = tmp();
    // $ gatehouse ca init --data-dir $D
    let o = std::process::Command::new(bin())
        .args(["ca", "init", "--data-dir", s(&d)])
        .env_remove(PASS_ENV)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(exists(root_crt(&d)) && exists(inter_key(&d)));
    // $ gatehouse ca root --data-dir $D
    let o = std::process::Command::new(bin())
        .args(["ca", "root", "--data-dir", s(&d)])
        .env_remove(PASS_ENV)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(fingerprint_pem(&String::from_utf8_lossy(&o.stdout)), fingerprint(&root_crt(&d)));
}

#[test]
fn init_name_and_days() {
    let d = tmp();
    gh_ok(&d, &["ca", "init", "--name", "Acme Test CA", "--days", "30"]);
    let subj = subject_of(&root_crt(&d));
    assert!(subj.contains("Acme Test CA"), "root subject {subj:?} should carry --name");
    // root valid for ~30 days: still valid in 29 days, expired in 31
    assert!(valid_after(&root_crt(&d), 29 * 86400), "root expires before 29 days");
    assert!(!valid_after(&root_crt(&d), 31 * 86400), "root valid beyond 31 days with --days 30");
}

#[test]
fn init_rejects_unknown_key_type_as_usage_error() {
    let d = tmp();
    let Out { code, stderr: err, .. } = gh(&d, &["ca", "init", "--key-type", "dsa-1024"]);
    assert_eq!(code, 2, "unknown key type must be a usage error (exit 2): {err}");
    assert!(!exists(root_key(&d)), "refused init must not write keys");
}

/// init with KEYTYPE, check both CA certificates, then issue a leaf and verify it.
fn key_type_round_trip(key_type: &str, want: &[&str]) {
    let d = init_ca(&["--key-type", key_type]);
    for crt in [root_crt(&d), inter_crt(&d)] {
        let t = x509_text(&crt);
        for w in want {
            assert!(t.contains(w), "{key_type}: {crt:?} text lacks {w:?}:\n{t}");
        }
    }
    let out = mkdir(d.join("out"));
    issue(&d, &out, "server", "kt.example.test", &[]);
    assert_verifies(&d, "sslserver", &out.join("kt.example.test.crt"));
    // the CA keys are PKCS#8 that OpenSSL reads
    for k in [root_key(&d), inter_key(&d)] {
        assert_eq!(mode(&k), 0o600);
        let Out { code, stderr: err, .. } = openssl(&["pkey", "-in", s(&k), "-noout"]);
        assert_eq!(code, 0, "{key_type}: `openssl pkey -in {}` cannot read the CA key: {err}", k.display());
    }
}

#[test]
fn init_key_type_ecdsa_p256() {
    key_type_round_trip("ecdsa-p256", &["id-ecPublicKey", "NIST CURVE: P-256"]);
}

#[test]
fn init_key_type_ecdsa_p384() {
    key_type_round_trip("ecdsa-p384", &["id-ecPublicKey", "NIST CURVE: P-384"]);
}

#[test]
fn init_key_type_rsa_2048() {
    key_type_round_trip("rsa-2048", &["rsaEncryption", "Public-Key: (2048 bit)"]);
}

#[test]
fn init_key_type_rsa_3072() {
    key_type_round_trip("rsa-3072", &["rsaEncryption", "Public-Key: (3072 bit)"]);
}

#[test]
fn init_key_type_ed25519() {
    key_type_round_trip("ed25519", &["ED25519"]);
}

// ---------------------------------------------------------------- encrypted keys

#[test]
fn passphrase_env_encrypts_keys_and_gates_signing() {
    let d = tmp();
    let pw = "correct horse battery staple";
    // $ GATEHOUSE_CA_PASSPHRASE=... gatehouse ca init
    let Out { code, stderr: err, .. } = gh_env(&d, &["ca", "init"], &[(PASS_ENV, pw)]);
    assert_eq!(code, 0, "{err}");

    for k in [root_key(&d), inter_key(&d)] {
        assert_eq!(mode(&k), 0o600);
        let pem = read(&k);
        assert!(pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----"), "{k:?} not encrypted:\n{pem}");
        // $ openssl pkey -in KEY -passin pass:PW -noout
        let pass = format!("pass:{pw}");
        openssl_ok(&["pkey", "-in", s(&k), "-passin", &pass, "-noout"]);
        let Out { code: c, .. } = openssl(&["pkey", "-in", s(&k), "-passin", "pass:not-the-passphrase", "-noout"]);
        assert_ne!(c, 0, "openssl decrypted {k:?} with a wrong passphrase");
    }
    assert_eq!(key_pubkey(&inter_key(&d), Some(pw)), cert_pubkey(&inter_crt(&d)));
    assert_eq!(key_pubkey(&root_key(&d), Some(pw)), cert_pubkey(&root_crt(&d)));

    let out = mkdir(d.join("out"));
    let (csr, _) = csr_ec(&d, "req", "/CN=csr.example.test", Some("DNS:csr.example.test"), &[]);
    write(d.join("batch.csv"), "cn\nbatchuser\n");
    let (csr_crt, crl_pem, batch_csv) = (out.join("csr.crt"), out.join("crl.pem"), d.join("batch.csv"));
    let signing: Vec<Vec<&str>> = vec![
        vec!["ca", "issue", "--profile", "server", "--cn", "www.example.test", "--out", s(&out)],
        vec!["ca", "sign", s(&csr), "--profile", "server", "--out", s(&csr_crt)],
        vec!["ca", "crl", "--out", s(&crl_pem)],
        vec!["ca", "batch", s(&batch_csv), "--out", s(&out)],
    ];
    for args in &signing {
        // without the passphrase
        let Out { code, stderr: err, .. } = gh(&d, args);
        assert_eq!(code, 1, "{args:?} without passphrase must exit 1; stderr: {err}");
        assert!(err.contains("passphrase"), "{args:?}: stderr should mention the passphrase: {err}");
        // with a wrong passphrase
        let Out { code, stderr: err, .. } = gh_env(&d, args, &[(PASS_ENV, "wrong wrong wrong")]);
        assert_eq!(code, 1, "{args:?} with wrong passphrase must exit 1; stderr: {err}");
        assert!(err.contains("passphrase"), "{args:?}: stderr should mention the passphrase: {err}");
    }
    assert!(!exists(out.join("www.example.test.crt")), "issue wrote a cert without the passphrase");
    assert!(!exists(out.join("csr.crt")), "sign wrote a cert without the passphrase");
    assert!(!exists(out.join("crl.pem")), "crl wrote a CRL without the passphrase");
    assert!(!exists(out.join("batchuser.crt")), "batch wrote a cert without the passphrase");
    assert!(list_json(&d, &[]).is_empty(), "refused commands recorded certificates");

    // with the right passphrase everything works
    for args in &signing {
        let Out { code, stderr: err, .. } = gh_env(&d, args, &[(PASS_ENV, pw)]);
        assert_eq!(code, 0, "{args:?} with the passphrase failed: {err}");
    }
    assert_verifies(&d, "sslserver", &out.join("www.example.test.crt"));
    assert_verifies(&d, "sslserver", &out.join("csr.crt"));
    assert_verifies(&d, "sslclient", &out.join("batchuser.crt"));
    let chain = chain_file(&d);
    openssl_ok(&["crl", "-in", s(&out.join("crl.pem")), "-CAfile", s(&chain), "-verify", "-noout"]);
}

#[test]
fn passphrase_file_flag_encrypts_keys() {
    let d = tmp();
    let pwfile = d.join("ca-pass.txt");
    write(&pwfile, "file-based-passphrase"); // no trailing newline: unambiguous
    // $ gatehouse --ca-passphrase-file FILE ca init
    let Out { code, stderr: err, .. } = gh(&d, &["--ca-passphrase-file", s(&pwfile), "ca", "init"]);
    assert_eq!(code, 0, "{err}");
    for k in [root_key(&d), inter_key(&d)] {
        assert!(read(&k).contains("-----BEGIN ENCRYPTED PRIVATE KEY-----"), "{k:?} not encrypted");
        openssl_ok(&["pkey", "-in", s(&k), "-passin", &format!("file:{}", s(&pwfile)), "-noout"]);
    }
    let out = mkdir(d.join("out"));
    // issue needs it
    let Out { code, stderr: err, .. } =
        gh(&d, &["ca", "issue", "--profile", "client", "--cn", "alice", "--out", s(&out)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("passphrase"), "{err}");
    // wrong passphrase file
    let bad = d.join("bad-pass.txt");
    write(&bad, "nope");
    let Out { code, stderr: err, .. } = gh(
        &d,
        &["--ca-passphrase-file", s(&bad), "ca", "issue", "--profile", "client", "--cn", "alice", "--out", s(&out)],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("passphrase"), "{err}");
    // right one
    let o = gh_ok(
        &d,
        &["--ca-passphrase-file", s(&pwfile), "ca", "issue", "--profile", "client", "--cn", "alice", "--out", s(&out)],
    );
    assert_eq!(serial_line(&o), serial_of(&out.join("alice.crt")));
    assert_verifies(&d, "sslclient", &out.join("alice.crt"));
}

/// The contract: encrypted CA keys are PEM "ENCRYPTED PRIVATE KEY" that
/// `openssl pkey` decrypts with the passphrase, whatever the key type.
fn encrypted_key_type(key_type: &str) {
    let d = tmp();
    let Out { code, stderr: err, .. } =
        gh_env(&d, &["ca", "init", "--key-type", key_type], &[(PASS_ENV, "s3cret pass")]);
    assert_eq!(code, 0, "{key_type}: {err}");
    for k in [root_key(&d), inter_key(&d)] {
        assert!(read(&k).starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"), "{key_type}: {k:?} not encrypted");
        // $ openssl pkey -in KEY -passin pass:... -noout
        let Out { code, stderr: err, .. } = openssl(&["pkey", "-in", s(&k), "-passin", "pass:s3cret pass", "-noout"]);
        assert_eq!(code, 0, "{key_type}: openssl pkey cannot decrypt {}: {err}", k.display());
    }
    let out = mkdir(d.join("out"));
    let Out { code, stderr: err, .. } = gh_env(
        &d,
        &["ca", "issue", "--profile", "server", "--cn", "enc.example.test", "--out", s(&out)],
        &[(PASS_ENV, "s3cret pass")],
    );
    assert_eq!(code, 0, "{key_type}: {err}");
    assert_verifies(&d, "sslserver", &out.join("enc.example.test.crt"));
}

#[test]
fn encrypted_keys_open_with_openssl_ecdsa_p384() {
    encrypted_key_type("ecdsa-p384");
}

#[test]
fn encrypted_keys_open_with_openssl_rsa_2048() {
    encrypted_key_type("rsa-2048");
}

#[test]
fn encrypted_keys_open_with_openssl_ed25519() {
    encrypted_key_type("ed25519");
}
