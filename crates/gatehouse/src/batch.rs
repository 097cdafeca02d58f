//! `gatehouse ca batch`: one client bundle per CSV row, the replacement for
//! running `cert-gen.sh` once per user.
//!
//! Rows are issued in chunks: sign the chunk on every core, record it in the
//! database in one durable transaction, then write its files. A `kill -9`
//! at any point leaves only certificates that are recorded; a row whose
//! NAME.crt exists (written last) is skipped, so the same command resumes.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use pki::{CertificateAuthority, Issued, KeyType, LeafRequest, Pkcs12Format, Profile, Subject, SubjectAltName};
use rayon::prelude::*;
use store::SqliteStore;

use crate::Failure;
use crate::bundle::{self, BundlePaths, P12Request};

/// Rows signed, recorded and written together.
const CHUNK: usize = 256;

/// One usable CSV row.
struct Row {
    line: u64,
    cn: String,
    email: Option<SubjectAltName>,
    password: Option<String>,
}

/// What became of the rows.
#[derive(Default)]
struct Tally {
    issued: usize,
    skipped: usize,
    failed: usize,
}

fn report(line: u64, reason: impl std::fmt::Display) {
    eprintln!("line {line}: {reason}");
}

/// Reads the CSV; bad rows are reported and counted, good ones returned.
fn read_rows(csv_path: &Path, tally: &mut Tally) -> Result<Vec<Row>, Failure> {
    let file = std::fs::File::open(csv_path)
        .map_err(|e| Failure::failed(format!("cannot read {}: {e}", csv_path.display())))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(file);
    let mut rows = Vec::new();
    let mut first_line_of: HashMap<String, u64> = HashMap::new();
    for (index, record) in reader.records().enumerate() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(index as u64 + 1);
                report(line, format!("unreadable CSV: {e}"));
                tally.failed += 1;
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or(index as u64 + 1);
        let field = |i: usize| record.get(i).filter(|s| !s.is_empty()).map(str::to_owned);
        let Some(cn) = field(0) else {
            if record.iter().all(str::is_empty) {
                continue; // blank line
            }
            report(line, "the cn (first column) is empty");
            tally.failed += 1;
            continue;
        };
        if index == 0 && cn.eq_ignore_ascii_case("cn") {
            continue; // header
        }
        if record.len() > 3 {
            report(line, format!("{} columns; expected cn, email, password", record.len()));
            tally.failed += 1;
            continue;
        }
        if let Err(why) = bundle::file_stem(&cn) {
            report(line, why);
            tally.failed += 1;
            continue;
        }
        let email = match field(1).map(|e| SubjectAltName::parse(&format!("email:{e}"))).transpose() {
            Ok(e) => e,
            Err(e) => {
                report(line, e);
                tally.failed += 1;
                continue;
            }
        };
        if let Some(first) = first_line_of.get(&cn) {
            report(line, format!("duplicate cn '{cn}' (first on line {first})"));
            tally.failed += 1;
            continue;
        }
        first_line_of.insert(cn.clone(), line);
        rows.push(Row { line, cn, email, password: field(2) });
    }
    Ok(rows)
}

/// A row signed and ready to record and write.
struct Signed<'a> {
    row: &'a Row,
    issued: Issued,
    key: rcgen::KeyPair,
    p12: Option<Vec<u8>>,
    generated_password: Option<String>,
}

pub async fn run(
    ca: &CertificateAuthority<SqliteStore>,
    csv_path: &Path,
    out: &Path,
    p12: Option<Pkcs12Format>,
    profile: Profile,
    days: Option<u32>,
    key_type: KeyType,
) -> Result<ExitCode, Failure> {
    let started = Instant::now();
    let mut tally = Tally::default();
    let rows = read_rows(csv_path, &mut tally)?;
    std::fs::create_dir_all(out).map_err(|e| Failure::failed(format!("cannot create {}: {e}", out.display())))?;
    let stale = pki::files::remove_stale_temps(out);
    if stale > 0 {
        eprintln!("removed {stale} partial files left in {} by an interrupted run", out.display());
    }
    // Days are checked once, before anything is issued, so a bad --days fails the whole run cleanly.
    ca.issuer().settings().policy(profile).lifetime_days(profile, days)?;

    let (todo, done): (Vec<&Row>, Vec<&Row>) =
        rows.iter().partition(|row| !BundlePaths::new(out, &row.cn).crt.exists());
    tally.skipped = done.len();
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(todo.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} certificates, eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut passwords = None;

    for chunk in todo.chunks(CHUNK) {
        let results: Vec<Result<Signed<'_>, (u64, pki::Error)>> =
            chunk.par_iter().map(|row| sign_row(ca, row, profile, days, key_type, p12)).collect();
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
        ca.record(&signed.iter().map(|s| &s.issued).collect::<Vec<_>>()).await?;
        // Passwords are durable before any PKCS#12 that needs them exists on disk.
        let generated: Vec<_> =
            signed.iter().filter_map(|s| s.generated_password.as_ref().map(|p| (&s.row.cn, p))).collect();
        if !generated.is_empty() {
            let file = match passwords.as_mut() {
                Some(f) => f,
                None => passwords.insert(open_passwords(out)?),
            };
            for (cn, password) in generated {
                writeln!(file, "{cn},{password}")
                    .map_err(|e| Failure::failed(format!("cannot write passwords.csv: {e}")))?;
            }
            file.sync_data().map_err(|e| Failure::failed(format!("cannot write passwords.csv: {e}")))?;
        }
        let written: Vec<Result<(), (u64, pki::Error)>> = signed
            .par_iter()
            .map(|s| {
                let paths = BundlePaths::new(out, &s.row.cn);
                bundle::write(&paths, ca.issuer(), &s.issued, &s.key, s.p12.as_deref(), false)
                    .map_err(|e| (s.row.line, e))
            })
            .collect();
        for (s, result) in signed.iter().zip(&written) {
            match result {
                Ok(()) => tally.issued += 1,
                Err((line, e)) => {
                    report(*line, format!("{e} (serial {} is recorded; revoke it or re-run)", s.issued.serial));
                    tally.failed += 1;
                }
            }
        }
        if let Some(bar) = &progress {
            bar.inc(chunk.len() as u64);
        }
    }
    pki::files::sync_dir(out)?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    eprintln!(
        "issued {}, skipped {} (already in {}), failed {} in {:.2}s",
        tally.issued,
        tally.skipped,
        out.display(),
        tally.failed,
        started.elapsed().as_secs_f64()
    );
    if passwords.is_some() {
        eprintln!("generated PKCS#12 passwords are in {} (mode 0600)", out.join("passwords.csv").display());
    }
    Ok(if tally.failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn sign_row<'a>(
    ca: &CertificateAuthority<SqliteStore>,
    row: &'a Row,
    profile: Profile,
    days: Option<u32>,
    key_type: KeyType,
    p12: Option<Pkcs12Format>,
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
        Some(format) => {
            let (password, generated) = match &row.password {
                Some(p) => (p.clone(), None),
                None => {
                    let p = pki::generate_password();
                    (p.clone(), Some(p))
                }
            };
            let bytes =
                bundle::pkcs12(ca.issuer(), &row.cn, &issued, &key, &P12Request { password: &password, format })
                    .map_err(fail)?;
            (Some(bytes), generated)
        }
    };
    Ok(Signed { row, issued, key, p12, generated_password })
}

fn open_passwords(out: &Path) -> Result<std::fs::File, Failure> {
    let path = out.join("passwords.csv");
    let fresh = !path.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(pki::files::PRIVATE)
        .open(&path)
        .map_err(|e| Failure::failed(format!("cannot create {}: {e}", path.display())))?;
    if fresh {
        writeln!(file, "cn,password").map_err(|e| Failure::failed(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(file)
}
