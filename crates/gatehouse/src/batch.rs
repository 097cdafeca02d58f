//! `gatehouse ca batch`: one client bundle per CSV row, the replacement for
//! running `cert-gen.sh` once per user.
//!
//! The CSV is read whole first ([`pki::read_roster`]): any problem in it and
//! nothing is issued. Rows are then issued in chunks: sign the chunk on
//! every core; record it in the database as undelivered, in one durable
//! transaction; rewrite passwords.csv (atomically) with the chunk's
//! generated passwords; write the bundles (NAME.crt last); mark them
//! delivered. After a `kill -9` anywhere, running the same command again
//! finishes exactly the rows without a delivered bundle:
//! - a row whose NAME.crt exists is done (if its certificate was still
//!   recorded as undelivered, it is marked delivered now);
//! - every other undelivered certificate of a row's name is revoked as
//!   superseded (its key may sit in a half-written bundle) before the row
//!   is issued again;
//! - the files a row being issued again left (NAME.key, NAME.p12,
//!   NAME.fullchain.pem without NAME.crt) are removed, durably, before
//!   passwords.csv is rewritten, so no bundle from an interrupted run sits
//!   on disk beside a password that is not its own;
//! - passwords.csv keeps one line per bundle on disk, the password of that
//!   bundle: lines of rows being issued again are replaced.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use pki::files::{PRIVATE, write_atomic};
use pki::{CertificateAuthority, Issued, KeyType, LeafRequest, Pkcs12Format, Profile, RosterRow, Subject, pem_cert};
use rayon::prelude::*;
use store::Database;

use crate::Failure;
use crate::bundle::{self, BundlePaths, P12Request};

/// Rows signed, recorded and written together.
const CHUNK: usize = 256;

/// Problems in a CSV listed before the rest are summed up.
const LISTED_PROBLEMS: usize = 20;

/// PKCS#12 bundles: their form, and one password for all (`--p12-password-file`).
pub struct P12Options {
    pub format: Pkcs12Format,
    pub password: Option<String>,
}

/// What became of the rows.
#[derive(Default)]
struct Tally {
    issued: usize,
    skipped: usize,
    superseded: usize,
    failed: usize,
}

fn report(line: u64, reason: impl std::fmt::Display) {
    eprintln!("line {line}: {reason}");
}

/// Reads the CSV; any problem refuses the whole file, before anything is issued.
fn read_rows(csv_path: &Path, p12: Option<&P12Options>) -> Result<Vec<RosterRow>, Failure> {
    let bytes =
        std::fs::read(csv_path).map_err(|e| Failure::failed(format!("cannot read {}: {e}", csv_path.display())))?;
    let mut problems = match pki::read_roster(&bytes, |cn| bundle::file_stem(cn).map(drop)) {
        Ok(rows) => {
            let mut problems = Vec::new();
            for row in &rows {
                if row.password.is_some() {
                    let clash = match p12 {
                        None => Some("it has a password but --p12 was not given; add --p12 or drop the column"),
                        Some(P12Options { password: Some(_), .. }) => {
                            Some("it has a password and --p12-password-file gives one for all; use one or the other")
                        }
                        Some(_) => None,
                    };
                    if let Some(clash) = clash {
                        problems.push(pki::RosterProblem { line: row.line, message: clash.into() });
                    }
                }
            }
            if problems.is_empty() {
                return Ok(rows);
            }
            problems
        }
        Err(problems) => problems,
    };
    problems.sort_by_key(|p| p.line);
    for problem in problems.iter().take(LISTED_PROBLEMS) {
        eprintln!("{problem}");
    }
    if problems.len() > LISTED_PROBLEMS {
        eprintln!("... and {} more", problems.len() - LISTED_PROBLEMS);
    }
    let count = if problems.len() == 1 { "a problem".to_owned() } else { format!("{} problems", problems.len()) };
    Err(Failure::failed(format!("{} has {count} (above); nothing was issued", csv_path.display())))
}

/// A row signed and ready to record and write.
struct Signed<'a> {
    row: &'a RosterRow,
    issued: Issued,
    key: rcgen::KeyPair,
    p12: Option<Vec<u8>>,
    generated_password: Option<String>,
}

pub async fn run(
    ca: &CertificateAuthority<Database>,
    csv_path: &Path,
    out: &Path,
    p12: Option<P12Options>,
    profile: Profile,
    days: Option<u32>,
    key_type: KeyType,
) -> Result<ExitCode, Failure> {
    let started = Instant::now();
    let mut tally = Tally::default();
    let rows = read_rows(csv_path, p12.as_ref())?;
    // Days are checked once, before anything is issued, so a bad --days fails the whole run cleanly.
    ca.issuer().settings().policy(profile).lifetime_days(profile, days)?;
    bundle::check_writable(out)?;
    let stale = pki::files::remove_stale_temps(out);
    if stale > 0 {
        let files = crate::count(stale, "partial file", "partial files");
        eprintln!("removed {files} left in {} by an interrupted run", out.display());
    }

    let todo = reconcile(ca, out, &rows, &mut tally).await?;
    remove_partial_bundles(out, &todo)?;
    let mut passwords = Passwords::load(out, &todo)?;
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(todo.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} certificates, eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });

    for chunk in todo.chunks(CHUNK) {
        let results: Vec<Result<Signed<'_>, (u64, pki::Error)>> =
            chunk.par_iter().map(|row| sign_row(ca, row, profile, days, key_type, p12.as_ref())).collect();
        let mut signed = Vec::with_capacity(results.len());
        for result in results {
            match result {
                Ok(s) => signed.push(s),
                Err((line, e)) => {
                    report(line, e);
                    tally.failed += 1;
                }
            }
        }
        ca.record_undelivered(&signed.iter().map(|s| &s.issued).collect::<Vec<_>>()).await?;
        // Passwords are durable before any PKCS#12 that needs them exists on disk.
        let generated: Vec<_> =
            signed.iter().filter_map(|s| s.generated_password.as_ref().map(|p| (s.row.cn.as_str(), p))).collect();
        if !generated.is_empty() {
            passwords.add(generated);
            passwords.save()?;
        }
        let written: Vec<Result<(), pki::Error>> = signed
            .par_iter()
            .map(|s| {
                let paths = BundlePaths::new(out, &s.row.cn);
                bundle::write(&paths, ca.issuer(), &s.issued, &s.key, s.p12.as_deref(), false)
            })
            .collect();
        // The files reach the disk before the records say they were delivered.
        pki::files::sync_dir(out)?;
        let mut delivered = Vec::with_capacity(signed.len());
        for (s, result) in signed.iter().zip(written) {
            let serial = s.issued.serial.to_string();
            match result {
                Ok(()) => delivered.push(serial),
                Err(e) => {
                    let undone = match ca.supersede(&serial).await {
                        Ok(()) => "revoked as superseded".to_owned(),
                        Err(revoke) => format!("revoking it failed too ({revoke}); revoke it by hand"),
                    };
                    report(s.row.line, format!("{e}; certificate {serial} was not delivered, so it is {undone}"));
                    tally.failed += 1;
                }
            }
        }
        ca.delivered(&delivered).await?;
        tally.issued += delivered.len();
        if let Some(bar) = &progress {
            bar.inc(chunk.len() as u64);
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let superseded = match tally.superseded {
        0 => String::new(),
        1 => ", 1 undelivered certificate of an interrupted run revoked as superseded".to_owned(),
        n => format!(", {n} undelivered certificates of an interrupted run revoked as superseded"),
    };
    eprintln!(
        "issued {}, skipped {} (already in {}), failed {}{superseded} in {:.2}s",
        tally.issued,
        tally.skipped,
        out.display(),
        tally.failed,
        started.elapsed().as_secs_f64()
    );
    if passwords.generated_any() {
        eprintln!("generated PKCS#12 passwords are in {} (mode 0600)", passwords.path.display());
    }
    Ok(if tally.failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Squares the rows with what earlier (possibly interrupted) runs left: rows
/// whose NAME.crt exists are done, and certificates recorded but never
/// delivered are either the one on disk (delivered now) or revoked as
/// superseded. Returns the rows still to issue.
async fn reconcile<'a>(
    ca: &CertificateAuthority<Database>,
    out: &Path,
    rows: &'a [RosterRow],
    tally: &mut Tally,
) -> Result<Vec<&'a RosterRow>, Failure> {
    let mut undelivered: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for record in ca.undelivered().await? {
        let certificate = record.certificate;
        undelivered.entry(certificate.common_name).or_default().push((certificate.serial, pem_cert(&certificate.der)));
    }
    let mut todo = Vec::new();
    let mut delivered = Vec::new();
    let mut superseded = Vec::new();
    for row in rows {
        let on_disk = std::fs::read_to_string(BundlePaths::new(out, &row.cn).crt).ok();
        if on_disk.is_some() {
            tally.skipped += 1;
        } else {
            todo.push(row);
        }
        for (serial, pem) in undelivered.remove(&row.cn).unwrap_or_default() {
            if on_disk.as_deref() == Some(pem.as_str()) {
                delivered.push(serial);
            } else {
                superseded.push(serial);
            }
        }
    }
    ca.delivered(&delivered).await?;
    for serial in &superseded {
        ca.supersede(serial).await?;
    }
    tally.superseded = superseded.len();
    Ok(todo)
}

/// Removes what an interrupted run wrote of the bundles about to be issued
/// again (their NAME.crt, written last, is missing), and makes the removal
/// durable: a PKCS#12 left from that run would otherwise outlive its line in
/// passwords.csv, or sit beside the new password of its row.
fn remove_partial_bundles(out: &Path, todo: &[&RosterRow]) -> Result<(), Failure> {
    let mut removed = 0;
    for row in todo {
        let paths = BundlePaths::new(out, &row.cn);
        for path in [&paths.key, &paths.p12, &paths.fullchain] {
            match std::fs::remove_file(path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Failure::failed(format!(
                        "cannot remove {} left by an interrupted run: {e}; remove it by hand and run again",
                        path.display()
                    )));
                }
            }
        }
    }
    if removed > 0 {
        pki::files::sync_dir(out)?;
        let files = crate::count(removed, "file", "files");
        eprintln!("removed {files} of bundles an interrupted run left without their certificate");
    }
    Ok(())
}

/// passwords.csv: `cn,password` for each bundle whose password was generated.
struct Passwords {
    path: std::path::PathBuf,
    entries: Vec<(String, String)>,
    generated: bool,
}

impl Passwords {
    /// The file's lines, without those of rows about to be issued again.
    fn load(out: &Path, todo: &[&RosterRow]) -> Result<Passwords, Failure> {
        let path = out.join("passwords.csv");
        let mut entries = Vec::new();
        if path.exists() {
            let mut reader = csv::Reader::from_path(&path)
                .map_err(|e| Failure::failed(format!("cannot read {}: {e}", path.display())))?;
            for record in reader.records() {
                let record = record.map_err(|e| {
                    Failure::failed(format!("{} is damaged ({e}); move it away to start it anew", path.display()))
                })?;
                if let (Some(cn), Some(password)) = (record.get(0), record.get(1)) {
                    entries.push((cn.to_owned(), password.to_owned()));
                }
            }
        }
        let reissued: std::collections::HashSet<&str> = todo.iter().map(|r| r.cn.as_str()).collect();
        entries.retain(|(cn, _)| !reissued.contains(cn.as_str()));
        Ok(Passwords { path, entries, generated: false })
    }

    fn add(&mut self, generated: Vec<(&str, &String)>) {
        self.generated = true;
        self.entries.extend(generated.into_iter().map(|(cn, p)| (cn.to_owned(), p.clone())));
    }

    fn generated_any(&self) -> bool {
        self.generated
    }

    /// Replaces the file in one rename, synced, mode 0600.
    fn save(&self) -> Result<(), Failure> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let cannot = |e: csv::Error| Failure::failed(format!("cannot write {}: {e}", self.path.display()));
        writer.write_record(["cn", "password"]).map_err(cannot)?;
        for (cn, password) in &self.entries {
            writer.write_record([cn, password]).map_err(cannot)?;
        }
        let bytes = writer.into_inner().map_err(|e| Failure::failed(format!("cannot write passwords.csv: {e}")))?;
        write_atomic(&self.path, &bytes, PRIVATE, true)?;
        Ok(())
    }
}

fn sign_row<'a>(
    ca: &CertificateAuthority<Database>,
    row: &'a RosterRow,
    profile: Profile,
    days: Option<u32>,
    key_type: KeyType,
    p12: Option<&P12Options>,
) -> Result<Signed<'a>, (u64, pki::Error)> {
    let request = LeafRequest {
        profile,
        subject: Subject::common_name(&row.cn),
        sans: row.email.iter().cloned().collect(),
        days,
    };
    let fail = |e| (row.line, e);
    let (issued, key) = ca.issuer().issue_with_new_key(&request, key_type).map_err(fail)?;
    let (p12, generated_password) = match p12 {
        None => (None, None),
        Some(options) => {
            let (password, generated) = match row.password.as_ref().or(options.password.as_ref()) {
                Some(p) => (p.clone(), None),
                None => {
                    let p = pki::generate_password();
                    (p.clone(), Some(p))
                }
            };
            let request = P12Request { password: &password, format: options.format };
            let bytes = bundle::pkcs12(ca.issuer(), &row.cn, &issued, &key, &request).map_err(fail)?;
            (Some(bytes), generated)
        }
    };
    Ok(Signed { row, issued, key, p12, generated_password })
}
