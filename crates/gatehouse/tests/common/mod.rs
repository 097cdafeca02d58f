//! Tiny shell-like harness for the `gatehouse ca ...` integration tests.
//!
//! Everything runs real processes: the `gatehouse` binary, `/usr/bin/openssl`
//! and `/usr/bin/sqlite3`.  Helpers return `(exit_code, stdout, stderr)` like a
//! shell session would show them; `*_ok` variants assert exit 0 and return stdout.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use serde_json::Value;

pub const OPENSSL: &str = "/usr/bin/openssl";
pub const SQLITE3: &str = "/usr/bin/sqlite3";
pub const PASS_ENV: &str = "GATEHOUSE_CA_PASSPHRASE";

// ---------------------------------------------------------------- temp dirs

/// A temporary directory removed on drop (std only, no extra dev-dependency).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join<P: AsRef<Path>>(&self, p: P) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

/// `mktemp -d`
pub fn tmp() -> TempDir {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    let p = std::env::temp_dir().join(format!(
        "gatehouse-it-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        nanos
    ));
    fs::create_dir_all(&p).unwrap();
    TempDir(p)
}

// ---------------------------------------------------------------- processes

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gatehouse")
}

fn out3(o: Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Build `gatehouse --data-dir DIR ARGS...` with cwd = DIR, stdin closed and the
/// passphrase variable removed from the environment.
pub fn gh_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("--data-dir").arg(dir).args(args);
    c.current_dir(dir);
    c.env_remove(PASS_ENV);
    c.env("NO_COLOR", "1");
    c.stdin(Stdio::null());
    c
}

/// `gatehouse --data-dir DIR ARGS...` -> (code, stdout, stderr)
pub fn gh(dir: &Path, args: &[&str]) -> (i32, String, String) {
    out3(gh_cmd(dir, args).output().expect("run gatehouse"))
}

/// Same, with extra environment variables.
pub fn gh_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = gh_cmd(dir, args);
    for (k, v) in env {
        c.env(k, v);
    }
    out3(c.output().expect("run gatehouse"))
}

/// Same, run from another working directory.
pub fn gh_in(dir: &Path, cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let mut c = gh_cmd(dir, args);
    c.current_dir(cwd);
    out3(c.output().expect("run gatehouse"))
}

/// Same, stdout as raw bytes (for DER output).
pub fn gh_raw(dir: &Path, args: &[&str]) -> (i32, Vec<u8>, String) {
    let o = gh_cmd(dir, args).output().expect("run gatehouse");
    (o.status.code().unwrap_or(-1), o.stdout, String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Spawn in the background (stdout/stderr discarded), for kill -9 tests.
pub fn gh_spawn(dir: &Path, args: &[&str]) -> Child {
    let mut c = gh_cmd(dir, args);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c.spawn().expect("spawn gatehouse")
}

/// Assert exit 0 and return stdout.
#[track_caller]
pub fn gh_ok(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = gh(dir, args);
    assert_eq!(code, 0, "gatehouse {args:?} failed\nstdout: {out}\nstderr: {err}");
    out
}

/// Assert exit `want` and return stderr.
#[track_caller]
pub fn gh_fails(dir: &Path, args: &[&str], want: i32) -> String {
    let (code, out, err) = gh(dir, args);
    assert_eq!(code, want, "gatehouse {args:?}: expected exit {want}\nstdout: {out}\nstderr: {err}");
    err
}

/// `openssl ARGS...` -> (code, stdout, stderr)
pub fn openssl(args: &[&str]) -> (i32, String, String) {
    out3(Command::new(OPENSSL).args(args).stdin(Stdio::null()).output().expect("run openssl"))
}

/// `openssl ARGS...` with the given working directory.
pub fn openssl_in(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    out3(Command::new(OPENSSL).args(args).current_dir(cwd).stdin(Stdio::null()).output().expect("run openssl"))
}

/// Assert openssl exit 0; return stdout followed by stderr (openssl prints
/// much of its information, e.g. `pkcs12 -info`, on stderr).
#[track_caller]
pub fn openssl_ok(args: &[&str]) -> String {
    let (code, out, err) = openssl(args);
    assert_eq!(code, 0, "openssl {args:?} failed\nstdout: {out}\nstderr: {err}");
    format!("{out}{err}")
}

/// `sqlite3 DB SQL` -> trimmed stdout (asserts success).
#[track_caller]
pub fn sqlite3(db: &Path, sql: &str) -> String {
    let o = Command::new(SQLITE3).arg(db).arg(sql).stdin(Stdio::null()).output().expect("run sqlite3");
    let (code, out, err) = out3(o);
    assert_eq!(code, 0, "sqlite3 {sql:?} failed: {err}");
    out.trim().to_string()
}

// ---------------------------------------------------------------- files

pub fn write<P: AsRef<Path>>(p: P, s: impl AsRef<[u8]>) {
    let mut f = fs::File::create(p.as_ref()).unwrap_or_else(|e| panic!("create {:?}: {e}", p.as_ref()));
    f.write_all(s.as_ref()).unwrap();
}

#[track_caller]
pub fn read<P: AsRef<Path>>(p: P) -> String {
    fs::read_to_string(p.as_ref()).unwrap_or_else(|e| panic!("read {:?}: {e}", p.as_ref()))
}

#[track_caller]
pub fn read_bytes<P: AsRef<Path>>(p: P) -> Vec<u8> {
    fs::read(p.as_ref()).unwrap_or_else(|e| panic!("read {:?}: {e}", p.as_ref()))
}

/// `stat -c %a`
#[track_caller]
pub fn mode<P: AsRef<Path>>(p: P) -> u32 {
    fs::metadata(p.as_ref()).unwrap_or_else(|e| panic!("stat {:?}: {e}", p.as_ref())).permissions().mode() & 0o777
}

pub fn exists<P: AsRef<Path>>(p: P) -> bool {
    p.as_ref().exists()
}

pub fn mkdir<P: AsRef<Path>>(p: P) -> PathBuf {
    fs::create_dir_all(p.as_ref()).unwrap();
    p.as_ref().to_path_buf()
}

/// `ls DIR` (sorted file names)
pub fn ls<P: AsRef<Path>>(p: P) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(p.as_ref())
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------- CA layout

pub fn root_crt(dir: &Path) -> PathBuf {
    dir.join("ca/root.crt")
}
pub fn root_key(dir: &Path) -> PathBuf {
    dir.join("ca/root.key")
}
pub fn inter_crt(dir: &Path) -> PathBuf {
    dir.join("ca/intermediate.crt")
}
pub fn inter_key(dir: &Path) -> PathBuf {
    dir.join("ca/intermediate.key")
}
pub fn db(dir: &Path) -> PathBuf {
    dir.join("gatehouse.db")
}
pub fn ca_toml(dir: &Path) -> PathBuf {
    dir.join("ca.toml")
}

/// `mktemp -d && gatehouse --data-dir $D ca init EXTRA...`
#[track_caller]
pub fn init_ca(extra: &[&str]) -> TempDir {
    let d = tmp();
    let mut args = vec!["ca", "init"];
    args.extend_from_slice(extra);
    gh_ok(&d, &args);
    d
}

/// Write DIR/chain.pem = intermediate + root (for `openssl crl -verify -CAfile`).
pub fn chain_file(dir: &Path) -> PathBuf {
    let p = dir.join("chain.pem");
    write(&p, format!("{}{}", read(inter_crt(dir)), read(root_crt(dir))));
    p
}

/// `gatehouse ca issue --profile P --cn CN --out OUT EXTRA...` (asserts success), returns stdout.
#[track_caller]
pub fn issue(dir: &Path, out: &Path, profile: &str, cn: &str, extra: &[&str]) -> String {
    let mut args = vec!["ca", "issue", "--profile", profile, "--cn", cn, "--out", s(out)];
    args.extend_from_slice(extra);
    gh_ok(dir, &args)
}

// ---------------------------------------------------------------- openssl helpers

/// `openssl x509 -in CRT -text -noout`
#[track_caller]
pub fn x509_text(crt: &Path) -> String {
    openssl_ok(&["x509", "-in", s(crt), "-text", "-noout"])
}

/// `openssl x509 -in CRT -noout -ext NAME` (empty string when absent)
pub fn x509_ext(crt: &Path, ext: &str) -> String {
    let (_, out, _) = openssl(&["x509", "-in", s(crt), "-noout", "-ext", ext]);
    out
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

/// SHA-256 fingerprint of a certificate file (first cert in the file).
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
    let (code, out, err) = openssl(&args);
    assert_eq!(code, 0, "openssl pkey failed: {err}");
    out
}

/// `openssl verify -purpose P -CAfile root -untrusted intermediate CRT` -> (code, stdout+stderr)
pub fn verify(dir: &Path, purpose: &str, crt: &Path) -> (i32, String) {
    let (code, out, err) = openssl(&[
        "verify",
        "-purpose",
        purpose,
        "-CAfile",
        s(&root_crt(dir)),
        "-untrusted",
        s(&inter_crt(dir)),
        s(crt),
    ]);
    (code, format!("{out}{err}"))
}

#[track_caller]
pub fn assert_verifies(dir: &Path, purpose: &str, crt: &Path) {
    let (code, out) = verify(dir, purpose, crt);
    assert!(code == 0 && out.contains(": OK"), "openssl verify -purpose {purpose} {crt:?}: {out}");
}

/// `openssl x509 -checkend SECS` : true if the cert is still valid SECS seconds from now.
pub fn valid_after(crt: &Path, secs: i64) -> bool {
    let n = secs.to_string();
    openssl(&["x509", "-in", s(crt), "-noout", "-checkend", &n]).0 == 0
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

/// Read the serial from a line `serial: HEX` of a command's stdout.
#[track_caller]
pub fn serial_line(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("serial:"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| panic!("no `serial: HEX` line in stdout: {stdout:?}"))
}

/// Canonical serial for comparisons across forms: uppercase, no colons, no leading zeros.
pub fn norm_serial(s: &str) -> String {
    let t: String = s.chars().filter(|c| *c != ':' && !c.is_whitespace()).collect::<String>().to_uppercase();
    let t = t.trim_start_matches("0X").trim_start_matches('0');
    if t.is_empty() { "0".into() } else { t.to_string() }
}

/// Lowercase colon form: "5a:3f:..." (as `openssl x509 -text` prints it).
pub fn colon_lower(hex: &str) -> String {
    let h = hex.to_lowercase();
    let h = if h.len() % 2 == 1 { format!("0{h}") } else { h };
    h.as_bytes().chunks(2).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(":")
}

/// `openssl req` making an EC P-256 CSR; returns (csr, key).
#[track_caller]
pub fn csr_ec(d: &Path, name: &str, subj: &str, san: Option<&str>, extra: &[&str]) -> (PathBuf, PathBuf) {
    let csr = d.join(format!("{name}.csr"));
    let key = d.join(format!("{name}.key"));
    let mut args = vec![
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        s(&key),
        "-out",
        s(&csr),
        "-subj",
        subj,
    ];
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

/// `openssl req` making an RSA CSR of the given size; returns (csr, key).
#[track_caller]
pub fn csr_rsa(d: &Path, name: &str, bits: u32, subj: &str, san: Option<&str>, extra: &[&str]) -> (PathBuf, PathBuf) {
    let csr = d.join(format!("{name}.csr"));
    let key = d.join(format!("{name}.key"));
    let newkey = format!("rsa:{bits}");
    let mut args =
        vec!["req", "-new", "-newkey", &newkey, "-nodes", "-keyout", s(&key), "-out", s(&csr), "-subj", subj];
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

// ---------------------------------------------------------------- JSON

#[track_caller]
pub fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// `gatehouse ca list --json EXTRA...` as a Vec of objects.
#[track_caller]
pub fn list_json(dir: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["ca", "list", "--json"];
    args.extend_from_slice(extra);
    let out = gh_ok(dir, &args);
    match json(&out) {
        Value::Array(v) => v,
        other => panic!("ca list --json is not an array: {other}"),
    }
}

/// Find the list entry with the given serial (any form).
pub fn find_serial<'a>(list: &'a [Value], serial: &str) -> Option<&'a Value> {
    let want = norm_serial(serial);
    list.iter().find(|e| e["serial"].as_str().map(norm_serial).as_deref() == Some(want.as_str()))
}

// ---------------------------------------------------------------- time

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn hms(t: &str) -> i64 {
    let p: Vec<i64> = t.split(':').map(|x| x.parse().unwrap()).collect();
    p[0] * 3600 + p[1] * 60 + p[2]
}

/// Parse OpenSSL's "Nov 24 04:41:00 2026 GMT" into a Unix timestamp.
#[track_caller]
pub fn openssl_time(t: &str) -> i64 {
    const M: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let f: Vec<&str> = t.split_whitespace().collect();
    assert!(f.len() >= 4, "bad openssl time {t:?}");
    let mon = M.iter().position(|m| *m == f[0]).unwrap_or_else(|| panic!("bad month in {t:?}")) as i64 + 1;
    let day: i64 = f[1].parse().unwrap();
    let year: i64 = f[3].parse().unwrap();
    days_from_civil(year, mon, day) * 86400 + hms(f[2])
}

/// Parse an RFC 3339 timestamp ("2026-11-24T04:41:00Z", fractional seconds and
/// numeric offsets accepted) into a Unix timestamp; None if it is not RFC 3339.
pub fn rfc3339(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &t[19..];
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        rest = &r[n..];
    }
    let off = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            sign * (rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60)
        }
    };
    Some(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off)
}

// ---------------------------------------------------------------- ca.toml

/// A complete ca.toml using only the keys from the contract, with the given
/// server/client SAN policy lists (TOML array literals, e.g. `["*"]`).
pub struct Policy<'a> {
    pub dns: &'a str,
    pub ips: &'a str,
    pub emails: &'a str,
    pub uris: &'a str,
}

pub const OPEN: Policy<'static> =
    Policy { dns: r#"["*"]"#, ips: r#"["0.0.0.0/0", "::/0"]"#, emails: r#"["*"]"#, uris: r#"["*"]"# };

pub fn ca_toml_text(crl_url: Option<&str>, next_update_hours: u32, server: &Policy, client: &Policy) -> String {
    let mut t = String::new();
    if let Some(u) = crl_url {
        t.push_str(&format!("crl_url = \"{u}\"\n"));
    }
    t.push_str(&format!("crl_next_update_hours = {next_update_hours}\n"));
    for (name, days, max, p) in [("server", 90, 398, server), ("client", 365, 3650, client)] {
        t.push_str(&format!(
            "\n[profiles.{name}]\ndefault_days = {days}\nmax_days = {max}\n\
             subject_fields = [\"CN\", \"O\", \"OU\", \"C\", \"ST\", \"L\"]\n\
             allowed_dns = {}\nallowed_ips = {}\nallowed_emails = {}\nallowed_uris = {}\n",
            p.dns, p.ips, p.emails, p.uris
        ));
    }
    t
}
