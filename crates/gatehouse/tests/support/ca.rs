//! A CA data dir used directly as `--data-dir` (the `ca_*` tests): where its files
//! are, `ca init` / `ca issue` / `ca list --json` as one-liners, its sqlite3
//! database, and `ca.toml` text.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::encoding::{json, norm_serial};
use super::files::{TempDir, read, tmp, write};
use super::gatehouse::gh_ok;
use super::openssl::openssl_ok;
use super::process::run_limited;
use super::{Value, s};

pub const SQLITE3: &str = "/usr/bin/sqlite3";

// ---------------------------------------------------------------- layout

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

/// Write DIR/chain.pem = intermediate + root (for `openssl crl -verify -CAfile`).
pub fn chain_file(dir: &Path) -> PathBuf {
    let p = dir.join("chain.pem");
    write(&p, format!("{}{}", read(inter_crt(dir)), read(root_crt(dir))));
    p
}

// ---------------------------------------------------------------- commands

/// `mktemp -d && gatehouse --data-dir $D ca init EXTRA...`
#[track_caller]
pub fn init_ca(extra: &[&str]) -> TempDir {
    let d = tmp();
    let mut args = vec!["ca", "init"];
    args.extend_from_slice(extra);
    gh_ok(&d, &args);
    d
}

/// `gatehouse ca issue --profile P --cn CN --out OUT EXTRA...` (asserts success), returns stdout.
#[track_caller]
pub fn issue(dir: &Path, out: &Path, profile: &str, cn: &str, extra: &[&str]) -> String {
    let mut args = vec!["ca", "issue", "--profile", profile, "--cn", cn, "--out", s(out)];
    args.extend_from_slice(extra);
    gh_ok(dir, &args)
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

/// `gatehouse ca crl --out DIR/crl.pem EXTRA...`: the new CRL's revoked certificates as
/// `openssl crl -text` prints them (serial, date and reason of each, in the CRL's order),
/// and its number.
#[track_caller]
pub fn crl_revoked(dir: &Path, extra: &[&str]) -> (String, u64) {
    let file = dir.join("crl.pem");
    let mut args = vec!["ca", "crl", "--out", s(&file)];
    args.extend_from_slice(extra);
    gh_ok(dir, &args);
    let text = openssl_ok(&["crl", "-in", s(&file), "-noout", "-text"]);
    let revoked = text
        .split_once("Revoked Certificates:")
        .and_then(|(_, rest)| rest.split_once("Signature Algorithm"))
        .map(|(entries, _)| entries.to_owned())
        .unwrap_or_else(|| panic!("no revoked certificates in the CRL:\n{text}"));
    let number = text
        .lines()
        .skip_while(|l| !l.contains("X509v3 CRL Number"))
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no CRL number in:\n{text}"));
    (revoked, number)
}

/// Find the list entry with the given serial (any form).
pub fn find_serial<'a>(list: &'a [Value], serial: &str) -> Option<&'a Value> {
    let want = norm_serial(serial);
    list.iter().find(|e| e["serial"].as_str().map(norm_serial).as_deref() == Some(want.as_str()))
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

/// `sqlite3 DB SQL` -> trimmed stdout (asserts success).
#[track_caller]
pub fn sqlite3(db: &Path, sql: &str) -> String {
    let mut c = Command::new(SQLITE3);
    c.arg(db).arg(sql);
    let o = run_limited(c, Duration::from_secs(60));
    assert_eq!(o.code, 0, "sqlite3 {sql:?} failed: {}", o.stderr);
    o.stdout.trim().to_string()
}

// ---------------------------------------------------------------- ca.toml

/// The SAN policy lists of one profile (TOML array literals, e.g. `["*"]`).
pub struct Policy<'a> {
    pub dns: &'a str,
    pub ips: &'a str,
    pub emails: &'a str,
    pub uris: &'a str,
}

pub const OPEN: Policy<'static> =
    Policy { dns: r#"["*"]"#, ips: r#"["0.0.0.0/0", "::/0"]"#, emails: r#"["*"]"#, uris: r#"["*"]"# };

/// A complete ca.toml using only the keys from the contract, with the given
/// server/client SAN policies.
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
