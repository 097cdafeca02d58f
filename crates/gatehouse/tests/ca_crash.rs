//! Crash safety: `kill -9` a large `ca batch` at several moments, then check the
//! database and the files on disk agree (a certificate counted as valid is the
//! one on disk, one per name; passwords.csv has one line per bundle, which opens
//! it), and that a re-run completes exactly the rows without a delivered bundle.
//!
//! Serials of the certificates on disk are read with OpenSSL.  Spawning
//! `openssl x509 -serial -noout` costs ~25 ms per file here, so the bulk of the files
//! is read in one `openssl storeutl -certs -text` call over their concatenation
//! (in file order), each file being read only once across rounds, and a sample
//! of every round is cross-checked with `openssl x509 -serial -noout`.
mod support;
use support::*;

use std::collections::{HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

const ROWS: usize = 2000;

/// Serials of the certificates in `pems` (in order), via one `openssl storeutl` run.
fn serials_via_storeutl(work: &Path, pems: &[&str]) -> Vec<String> {
    let all = work.join("all-new.pem");
    write(&all, pems.concat());
    let text = openssl_ok(&["storeutl", "-noout", "-text", "-certs", s(&all)]);
    let mut serials = Vec::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        let t = l.trim();
        if let Some(rest) = t.strip_prefix("Serial Number:") {
            let rest = rest.trim();
            let hex = if rest.is_empty() {
                lines.next().expect("serial value line").trim().to_string()
            } else {
                // small serials print as "123 (0x7b)"
                rest.split("(0x")
                    .nth(1)
                    .map(|h| h.trim_end_matches(')').to_string())
                    .unwrap_or_else(|| rest.to_string())
            };
            serials.push(norm_serial(&hex));
        }
    }
    serials
}

/// The state checks after every kill (and at the end). `cache` maps file name ->
/// (contents, serial) so files unchanged since the previous round are not re-read.
fn check_consistent(d: &Path, out: &Path, cache: &mut HashMap<String, (String, String)>, round: &str) -> usize {
    // $ sqlite3 gatehouse.db 'PRAGMA integrity_check'
    assert_eq!(sqlite3(&db(d), "PRAGMA integrity_check"), "ok", "{round}: database corrupt");

    // $ gatehouse ca list --json
    let list = list_json(d, &[]);
    let mut listed = HashSet::new();
    for e in &list {
        let ser = norm_serial(e["serial"].as_str().unwrap_or_else(|| panic!("{round}: entry without serial: {e}")));
        assert!(listed.insert(ser.clone()), "{round}: serial {ser} appears twice in ca list");
    }

    // every *.crt on disk: one complete certificate whose serial is listed
    let crts: Vec<String> = ls(out).into_iter().filter(|f| f.ends_with(".crt")).collect();
    let mut fresh: Vec<(String, String)> = Vec::new();
    for f in &crts {
        let pem = read(out.join(f));
        if cache.get(f).map(|(c, _)| c == &pem).unwrap_or(false) {
            continue;
        }
        assert_eq!(
            pem.matches("-----BEGIN CERTIFICATE-----").count(),
            1,
            "{round}: {f} is not one certificate:\n{pem}"
        );
        assert!(pem.contains("-----END CERTIFICATE-----"), "{round}: {f} is truncated:\n{pem}");
        fresh.push((f.clone(), pem));
    }
    if !fresh.is_empty() {
        let pems: Vec<&str> = fresh.iter().map(|(_, p)| p.as_str()).collect();
        let serials = serials_via_storeutl(out.parent().unwrap(), &pems);
        assert_eq!(serials.len(), fresh.len(), "{round}: openssl could not parse every .crt file");
        // cross-check a sample with `openssl x509 -serial -noout`
        let step = (fresh.len() / 8).max(1);
        for i in (0..fresh.len()).step_by(step) {
            let direct = serial_of(&out.join(&fresh[i].0));
            assert_eq!(norm_serial(&direct), serials[i], "{round}: {} serial mismatch", fresh[i].0);
        }
        for ((f, pem), ser) in fresh.into_iter().zip(serials) {
            cache.insert(f, (pem, ser));
        }
    }
    let mut on_disk = HashSet::new();
    for f in &crts {
        let ser = &cache[f].1;
        assert!(listed.contains(ser), "{round}: {f} (serial {ser}) is on disk but not in `ca list --json`");
        assert!(on_disk.insert(ser.clone()), "{round}: serial {ser} used by two files");
    }
    // A certificate counted as valid is the one its owner has on disk, and a name has at
    // most one: none is left valid whose key was never delivered.
    let mut valid_of: HashMap<String, String> = HashMap::new();
    for e in list.iter().filter(|e| e["status"] == "valid") {
        let cn = e["common_name"].as_str().unwrap().to_owned();
        let ser = norm_serial(e["serial"].as_str().unwrap());
        if let Some(other) = valid_of.insert(cn.clone(), ser.clone()) {
            panic!("{round}: {cn} has two valid certificates, {other} and {ser}");
        }
        let crt = format!("{cn}.crt");
        let disk = cache.get(&crt).map(|(_, s)| s.as_str());
        assert_eq!(disk, Some(ser.as_str()), "{round}: {cn}'s valid certificate {ser} is not the one on disk");
    }
    crts.len()
}

/// The summary numbers (issued, skipped, failed) from "issued N, skipped K, failed M ...".
#[track_caller]
fn summary(err: &str) -> [u64; 3] {
    let sum = err
        .lines()
        .find(|l| l.contains("issued ") && l.contains("skipped "))
        .unwrap_or_else(|| panic!("no summary: {err}"));
    // the rest of the line may hold paths and times: read the number after each word
    let num = |k: &str| -> u64 {
        let at = sum.find(k).unwrap_or_else(|| panic!("summary {sum:?} lacks {k:?}")) + k.len();
        sum[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("bad summary {sum:?}"))
    };
    [num("issued "), num("skipped "), num("failed ")]
}

/// Write a CSV of `rows` users; returns its path.
fn users_csv(d: &Path, rows: usize) -> std::path::PathBuf {
    let csv = d.join("many.csv");
    let mut body = String::from("cn,email,password\n");
    for i in 0..rows {
        body.push_str(&format!("user{i:04},user{i:04}@example.test,\n"));
    }
    write(&csv, body);
    csv
}

/// Start `ca batch` and SIGKILL it after each delay (until a run finishes on its own),
/// checking consistency after every kill. `after_kill` runs extra checks.
/// Returns the number of .crt files on disk after each round, and the number of kills.
fn kill_rounds(
    d: &Path,
    csv: &Path,
    out: &Path,
    extra: &[&str],
    delays: &[u64],
    cache: &mut HashMap<String, (String, String)>,
    after_kill: &dyn Fn(&str),
) -> (Vec<usize>, usize) {
    let mut args = vec!["ca", "batch", s(csv), "--out", s(out)];
    args.extend_from_slice(extra);
    let mut kills = 0;
    let mut progress = Vec::new();
    for (round, &delay_ms) in delays.iter().enumerate() {
        // $ gatehouse ca batch many.csv --out out & sleep X; kill -9 $!
        let mut child = gh_spawn(d, &args);
        sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
        }
        let status = child.wait().unwrap();
        // it may have exited on its own just before the signal
        let finished = status.code().is_some();
        if finished {
            assert_eq!(status.code(), Some(0), "batch run #{round} failed on its own");
        } else {
            assert_eq!(status.signal(), Some(9), "batch not ended by SIGKILL: {status:?}");
            kills += 1;
        }
        let label = format!("after kill #{round} at {delay_ms}ms");
        progress.push(check_consistent(d, out, cache, &label));
        after_kill(&label);
        if finished {
            break;
        }
    }
    (progress, kills)
}

/// Re-run to completion and check every row got its bundle.
fn rerun_completes(
    d: &Path,
    csv: &Path,
    out: &Path,
    extra: &[&str],
    rows: usize,
    progress: &[usize],
    cache: &mut HashMap<String, (String, String)>,
) {
    // $ gatehouse ca batch many.csv --out out    (re-run to completion)
    let mut args = vec!["ca", "batch", s(csv), "--out", s(out)];
    args.extend_from_slice(extra);
    let Out { code, stderr: err, .. } = gh(d, &args);
    assert_eq!(code, 0, "re-run after kill -9 failed (files on disk after kills: {progress:?}):\n{err}");
    let [issued, skipped, failed] = summary(&err);
    assert_eq!(issued + skipped, rows as u64, "issued + skipped != rows: {err}");
    assert_eq!(failed, 0, "rows failed on re-run: {err}");
    assert_eq!(skipped, *progress.last().unwrap() as u64, "skipped != bundles already on disk: {err}");

    let n = check_consistent(d, out, cache, "after re-run");
    assert_eq!(n, rows, "not every row has a certificate");
    // $ gatehouse ca list --status valid --json: exactly one per row, nothing left undelivered
    assert_eq!(list_json(d, &["--status", "valid"]).len(), rows, "valid certificates != rows");
    let undelivered = list_json(d, &["--status", "undelivered"]);
    assert!(undelivered.is_empty(), "undelivered certificates left after the re-run: {}", undelivered.len());
    // every certificate the kills interrupted is revoked as superseded, none otherwise
    let revoked = list_json(d, &["--status", "revoked"]);
    for e in &revoked {
        assert_eq!(e["revocation_reason"], "superseded", "{e}");
    }
    eprintln!("re-run: {} certificates interrupted before delivery were revoked as superseded", revoked.len());
    for i in 0..rows {
        for ext in ["crt", "key", "fullchain.pem"] {
            let f = out.join(format!("user{i:04}.{ext}"));
            assert!(exists(&f), "{f:?} missing after re-run");
        }
    }
    // a sample of bundles is complete and coherent
    for i in (0..rows).step_by((rows / 8).max(1)) {
        let crt = out.join(format!("user{i:04}.crt"));
        let key = out.join(format!("user{i:04}.key"));
        assert_eq!(mode(&key), 0o600);
        assert_eq!(key_pubkey(&key, None), cert_pubkey(&crt), "user{i:04}: key does not match cert");
        assert_verifies(d, "sslclient", &crt);
    }
    assert_eq!(sqlite3(&db(d), "PRAGMA integrity_check"), "ok");
}

#[test]
fn kill_9_during_batch_then_rerun_completes() {
    let started = Instant::now();
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let csv = users_csv(&d, ROWS);
    let mut cache = HashMap::new();
    let delays = [50u64, 300, 800, 120, 200, 450, 150, 250, 600, 100, 1500, 3000];
    let (progress, kills) = kill_rounds(&d, &csv, &out, &[], &delays, &mut cache, &|_| {});
    assert!(kills >= 1, "the batch finished before it could be killed");
    rerun_completes(&d, &csv, &out, &[], ROWS, &progress, &mut cache);
    eprintln!("crash test: .crt files after each kill {progress:?}, {kills} kills, {:?} total", started.elapsed());
}

/// Same with `--p12`: additionally every generated password of a .p12 on disk must be
/// in passwords.csv (mode 0600) and open its bundle, whatever moment the kill hit.
#[test]
fn kill_9_during_p12_batch_keeps_passwords() {
    const P12_ROWS: usize = 600;
    let started = Instant::now();
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let csv = users_csv(&d, P12_ROWS);
    let mut cache = HashMap::new();
    let out2 = out.clone();
    let check_passwords = move |label: &str| {
        let p12s: Vec<String> = ls(&out2).into_iter().filter(|f| f.ends_with(".p12")).collect();
        if p12s.is_empty() {
            return;
        }
        let pwfile = out2.join("passwords.csv");
        assert!(exists(&pwfile), "{label}: .p12 files on disk but no passwords.csv");
        assert_eq!(mode(&pwfile), 0o600, "{label}: passwords.csv mode");
        let text = read(&pwfile);
        let mut pws: HashMap<&str, &str> = HashMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty() && l.trim() != "cn,password") {
            let (cn, pw) = line.split_once(',').unwrap_or_else(|| panic!("{label}: bad passwords.csv line {line:?}"));
            assert!(pws.insert(cn, pw).is_none(), "{label}: {cn} has two lines in passwords.csv");
        }
        for f in &p12s {
            let cn = f.trim_end_matches(".p12");
            assert!(pws.contains_key(cn), "{label}: {f} on disk but its password is not in passwords.csv");
        }
        // the most recently written ones are the likeliest to be torn: open them, and a sample
        let mut sample: Vec<&String> = p12s.iter().rev().take(3).collect();
        sample.extend(p12s.iter().step_by((p12s.len() / 3).max(1)));
        for f in sample {
            let cn = f.trim_end_matches(".p12");
            let pass = format!("pass:{}", pws[cn].trim());
            let Out { code, stdout: o, stderr: e } =
                openssl(&["pkcs12", "-in", s(&out2.join(f)), "-passin", &pass, "-noout"]);
            assert_eq!(code, 0, "{label}: {f} does not open with its passwords.csv entry: {o}{e}");
        }
    };
    let delays = [100u64, 400, 250, 700, 150, 1200, 3000];
    let (progress, kills) = kill_rounds(&d, &csv, &out, &["--p12"], &delays, &mut cache, &check_passwords);
    assert!(kills >= 1, "the batch finished before it could be killed");
    rerun_completes(&d, &csv, &out, &["--p12"], P12_ROWS, &progress, &mut cache);
    check_passwords("after re-run");
    for i in 0..P12_ROWS {
        assert!(exists(out.join(format!("user{i:04}.p12"))), "user{i:04}.p12 missing after re-run");
    }
    eprintln!("p12 crash test: .crt files after each kill {progress:?}, {kills} kills, {:?} total", started.elapsed());
}
