//! `/usr/bin/openssl` as the independent judge of what gatehouse writes and serves:
//! reading certificates and keys, verifying chains, making CSRs, `s_client`.

use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command};
use std::time::Duration;

use super::ca::{inter_crt, root_crt};
use super::files::{tmp, write};
use super::process::{Out, Proc, run_limited, run_limited_raw, run_limited_with_input};
use super::s;

pub const OPENSSL: &str = "/usr/bin/openssl";

/// How long one openssl run may take (key generation included).
const OPENSSL_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- runs

/// `openssl ARGS...`
pub fn openssl(args: &[&str]) -> Out {
    let mut c = Command::new(OPENSSL);
    c.args(args);
    run_limited(c, OPENSSL_LIMIT)
}

/// `openssl ARGS...` (asserts exit 0); stdout followed by stderr (openssl prints
/// much of its information, e.g. `pkcs12 -info`, on stderr).
#[track_caller]
pub fn openssl_ok(args: &[&str]) -> String {
    let o = openssl(args);
    assert_eq!(o.code, 0, "openssl {args:?} failed\nstdout: {}\nstderr: {}", o.stdout, o.stderr);
    o.all()
}

/// `openssl ARGS...` in a directory (asserts exit 0); stdout followed by stderr.
#[track_caller]
pub fn openssl_in(cwd: &Path, args: &[&str]) -> String {
    let mut c = Command::new(OPENSSL);
    c.args(args).current_dir(cwd);
    let o = run_limited(c, OPENSSL_LIMIT);
    assert_eq!(o.code, 0, "openssl {args:?} in {cwd:?} failed\nstdout: {}\nstderr: {}", o.stdout, o.stderr);
    o.all()
}

// ---------------------------------------------------------------- certificates

/// `openssl x509 -in CRT -text -noout`
#[track_caller]
pub fn x509_text(crt: &Path) -> String {
    openssl_ok(&["x509", "-in", s(crt), "-text", "-noout"])
}

/// `openssl x509 -in CRT -noout -ext NAME` (empty string when absent)
pub fn x509_ext(crt: &Path, ext: &str) -> String {
    openssl(&["x509", "-in", s(crt), "-noout", "-ext", ext]).stdout
}

/// `openssl x509 -in CRT -serial -noout` -> the HEX after "serial="
#[track_caller]
pub fn serial_of(crt: &Path) -> String {
    let out = openssl_ok(&["x509", "-in", s(crt), "-serial", "-noout"]);
    out.lines()
        .find_map(|l| l.trim().strip_prefix("serial="))
        .unwrap_or_else(|| panic!("no serial= in {out}"))
        .to_string()
}

/// `openssl x509 -in CRT -subject -noout` -> text after "subject="
#[track_caller]
pub fn subject_of(crt: &Path) -> String {
    let out = openssl_ok(&["x509", "-in", s(crt), "-subject", "-noout", "-nameopt", "RFC2253"]);
    out.trim().trim_start_matches("subject=").to_string()
}

/// SHA-256 fingerprint line of a certificate file (first cert in the file):
/// `sha256 Fingerprint=AB:CD:...`.
#[track_caller]
pub fn fingerprint(crt: &Path) -> String {
    openssl_ok(&["x509", "-in", s(crt), "-noout", "-fingerprint", "-sha256"]).trim().to_string()
}

/// Fingerprint of a PEM certificate given as text.
#[track_caller]
pub fn fingerprint_pem(pem: &str) -> String {
    let d = tmp();
    let p = d.join("c.pem");
    write(&p, pem);
    fingerprint(&p)
}

/// Public key (PEM SPKI) of a certificate.
#[track_caller]
pub fn cert_pubkey(crt: &Path) -> String {
    openssl_ok(&["x509", "-in", s(crt), "-noout", "-pubkey"])
}

/// Public key (PEM SPKI) of a private key file.
#[track_caller]
pub fn key_pubkey(key: &Path, passin: Option<&str>) -> String {
    let mut args = vec!["pkey", "-in", s(key), "-pubout"];
    let pass;
    if let Some(p) = passin {
        pass = format!("pass:{p}");
        args.push("-passin");
        args.push(&pass);
    }
    let o = openssl(&args);
    assert_eq!(o.code, 0, "openssl pkey failed: {}", o.stderr);
    o.stdout
}

/// `openssl verify -purpose P -CAfile root -untrusted intermediate CRT` with the CA
/// of data dir `dir` -> (code, stdout+stderr)
pub fn verify(dir: &Path, purpose: &str, crt: &Path) -> (i32, String) {
    let root = root_crt(dir);
    let inter = inter_crt(dir);
    let o = openssl(&["verify", "-purpose", purpose, "-CAfile", s(&root), "-untrusted", s(&inter), s(crt)]);
    (o.code, o.all())
}

#[track_caller]
pub fn assert_verifies(dir: &Path, purpose: &str, crt: &Path) {
    let (code, out) = verify(dir, purpose, crt);
    assert!(code == 0 && out.contains(": OK"), "openssl verify -purpose {purpose} {crt:?}: {out}");
}

/// `openssl x509 -checkend SECS`: true if the cert is still valid SECS seconds from now.
pub fn valid_after(crt: &Path, secs: i64) -> bool {
    let n = secs.to_string();
    openssl(&["x509", "-in", s(crt), "-noout", "-checkend", &n]).code == 0
}

/// Split a PEM bundle into its certificate blocks.
pub fn pem_certs(bundle: &str) -> Vec<String> {
    let mut v = Vec::new();
    let mut cur: Option<String> = None;
    for line in bundle.lines() {
        if line.starts_with("-----BEGIN CERTIFICATE-----") {
            cur = Some(String::new());
        }
        if let Some(c) = cur.as_mut() {
            c.push_str(line);
            c.push('\n');
        }
        if line.starts_with("-----END CERTIFICATE-----")
            && let Some(c) = cur.take()
        {
            v.push(c);
        }
    }
    v
}

/// DER of the first certificate in a PEM text, via `openssl x509 -outform DER`.
#[track_caller]
pub fn pem_to_der(pem: &str) -> Vec<u8> {
    let mut c = Command::new(OPENSSL);
    c.args(["x509", "-outform", "DER"]);
    let (code, der, err) = run_limited_raw(c, OPENSSL_LIMIT, Some((pem.as_bytes(), Duration::ZERO)));
    assert_eq!(code, 0, "openssl x509 -outform DER: {err}");
    der
}

// ---------------------------------------------------------------- CSRs

/// `openssl req` making an EC P-256 key and CSR as D/NAME.{csr,key}; returns (csr, key).
#[track_caller]
pub fn csr_ec(d: &Path, name: &str, subj: &str, san: Option<&str>, extra: &[&str]) -> (PathBuf, PathBuf) {
    req_new(d, name, &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"], subj, san, extra)
}

/// `openssl req` making an RSA key of the given size and CSR; returns (csr, key).
#[track_caller]
pub fn csr_rsa(d: &Path, name: &str, bits: u32, subj: &str, san: Option<&str>, extra: &[&str]) -> (PathBuf, PathBuf) {
    req_new(d, name, &[&format!("rsa:{bits}")], subj, san, extra)
}

/// `openssl req -new -newkey NEWKEY... -nodes -keyout D/NAME.key -out D/NAME.csr -subj SUBJ
/// [-addext subjectAltName=SAN] EXTRA...`
#[track_caller]
fn req_new(d: &Path, name: &str, newkey: &[&str], subj: &str, san: Option<&str>, extra: &[&str]) -> (PathBuf, PathBuf) {
    let csr = d.join(format!("{name}.csr"));
    let key = d.join(format!("{name}.key"));
    let mut args = vec!["req", "-new", "-newkey"];
    args.extend_from_slice(newkey);
    args.extend_from_slice(&["-nodes", "-keyout", s(&key), "-out", s(&csr), "-subj", subj]);
    let addext;
    if let Some(san) = san {
        addext = format!("subjectAltName={san}");
        args.push("-addext");
        args.push(&addext);
    }
    args.extend_from_slice(extra);
    openssl_ok(&args);
    (csr, key)
}

// ---------------------------------------------------------------- s_client

/// `openssl s_client -connect 127.0.0.1:PORT ARGS` with `input` on stdin, then EOF.
pub fn s_client(port: u16, args: &[&str], input: &str) -> Out {
    let connect = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(OPENSSL);
    cmd.args(["s_client", "-connect", &connect]).args(args);
    // Give the handshake (and an answer) time before EOF makes s_client quit.
    run_limited_with_input(cmd, Duration::from_secs(15), input, Duration::from_millis(500))
}

/// `openssl s_client -connect 127.0.0.1:PORT ARGS` kept running with stdin open.
pub fn s_client_open(port: u16, args: &[&str]) -> (Proc, ChildStdin) {
    let connect = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(OPENSSL);
    cmd.args(["s_client", "-connect", &connect]).args(args);
    let mut p = Proc::spawn_with_stdin(cmd, "openssl s_client");
    let stdin = p.take_stdin();
    (p, stdin)
}

/// The first certificate s_client -showcerts printed (the server's leaf).
pub fn first_pem(s_client_output: &str) -> Option<String> {
    pem_certs(s_client_output).into_iter().next()
}
