//! A CA kept in PostgreSQL, as the fault tests use it: commands run with the
//! storage URL and the CA's passphrase, and the serials of many delivered
//! certificates read at once.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use super::encoding::norm_serial;
use super::files::{ls, read, write};
use super::gatehouse::{gh_cmd, gh_env};
use super::openssl::openssl_ok;
use super::process::Out;
use super::s;

/// The passphrase of the CAs the fault tests keep in PostgreSQL.
pub const PG_PASSPHRASE: &str = "a passphrase for the CA kept in postgres";

/// `GATEHOUSE_STORAGE=URL GATEHOUSE_CA_PASSPHRASE=P gatehouse --data-dir DIR ARGS...`
pub fn on_pg_cmd(dir: &Path, url: &str, args: &[&str]) -> Command {
    let mut c = gh_cmd(dir, args);
    c.env("GATEHOUSE_STORAGE", url).env("GATEHOUSE_CA_PASSPHRASE", PG_PASSPHRASE);
    c
}

/// [`on_pg_cmd`], run to its end.
pub fn on_pg(dir: &Path, url: &str, args: &[&str]) -> Out {
    gh_env(dir, args, &[("GATEHOUSE_STORAGE", url), ("GATEHOUSE_CA_PASSPHRASE", PG_PASSPHRASE)])
}

/// [`on_pg`], asserting success.
#[track_caller]
pub fn on_pg_ok(dir: &Path, url: &str, args: &[&str]) -> Out {
    let o = on_pg(dir, url, args);
    assert_eq!(o.code, 0, "gatehouse {args:?} on {url} failed:\n{}", o.all());
    o
}

/// The serials (normalised) of the `*.crt` files in `out`, by file name. `cache`
/// holds (contents, serial) of files read before, so each file is parsed once: one
/// `openssl storeutl` run reads all the new ones (one process per file costs ~25 ms).
#[track_caller]
pub fn crt_serials(out: &Path, cache: &mut HashMap<String, (String, String)>) -> HashMap<String, String> {
    let names: Vec<String> = ls(out).into_iter().filter(|f| f.ends_with(".crt")).collect();
    let mut fresh = Vec::new();
    for name in &names {
        let pem = read(out.join(name));
        if cache.get(name).is_some_and(|(known, _)| *known == pem) {
            continue;
        }
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 1, "{name} is not one certificate:\n{pem}");
        assert!(pem.contains("-----END CERTIFICATE-----"), "{name} is truncated:\n{pem}");
        fresh.push((name.clone(), pem));
    }
    if !fresh.is_empty() {
        let all = out.parent().expect("out has a parent").join("all-new.pem");
        write(&all, fresh.iter().map(|(_, pem)| pem.as_str()).collect::<String>());
        let text = openssl_ok(&["storeutl", "-noout", "-text", "-certs", s(&all)]);
        let serials = storeutl_serials(&text);
        assert_eq!(serials.len(), fresh.len(), "openssl could not parse every .crt file in {}", out.display());
        for ((name, pem), serial) in fresh.into_iter().zip(serials) {
            cache.insert(name, (pem, serial));
        }
    }
    names.into_iter().map(|name| (name.clone(), cache[&name].1.clone())).collect()
}

/// The serials in `openssl storeutl -text` output, in order.
fn storeutl_serials(text: &str) -> Vec<String> {
    let mut serials = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim().strip_prefix("Serial Number:") else { continue };
        let rest = rest.trim();
        let hex = if rest.is_empty() {
            lines.next().expect("a serial value line").trim().to_owned()
        } else {
            // A small serial prints as "123 (0x7b)".
            rest.split("(0x").nth(1).map(|h| h.trim_end_matches(')').to_owned()).unwrap_or_else(|| rest.to_owned())
        };
        serials.push(norm_serial(&hex));
    }
    serials
}

/// A `ca batch` CSV of `rows` users named `PREFIX0000`...; its path.
pub fn users_csv(dir: &Path, prefix: &str, rows: usize) -> std::path::PathBuf {
    let csv = dir.join(format!("{prefix}.csv"));
    let mut body = String::from("cn,email,password\n");
    for i in 0..rows {
        body.push_str(&format!("{prefix}{i:04},{prefix}{i:04}@example.test,\n"));
    }
    write(&csv, body);
    csv
}

/// The numbers (issued, skipped, failed) of `ca batch`'s summary line "issued N, skipped K, failed M ...".
#[track_caller]
pub fn batch_summary(stderr: &str) -> [u64; 3] {
    let line = stderr
        .lines()
        .find(|l| l.contains("issued ") && l.contains("skipped "))
        .unwrap_or_else(|| panic!("no summary in: {stderr}"));
    let number = |word: &str| -> u64 {
        let at = line.find(word).unwrap_or_else(|| panic!("summary {line:?} lacks {word:?}")) + word.len();
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad summary {line:?}"))
    };
    [number("issued "), number("skipped "), number("failed ")]
}
