//! Faults of a cluster kept in PostgreSQL (issue 12): the database stopped and
//! started again under load while two gateways serve from it, two instances issuing
//! at once, and an instance killed mid-batch.
//!
//! - While PostgreSQL is down, the gateways serve with what they last read
//!   (certificates, trust, revocations), `ca issue` and `ca revoke` fail with one
//!   clear line; once it is back, writes succeed, a new revocation reaches both
//!   gateways, and every certificate issued before and after is listed.
//! - Two instances (the second with an empty data dir, taking the CA from the
//!   storage) run `ca batch` at once: no serial is given twice.
//! - `kill -9` of `ca batch` loses no certificate it delivered: each on disk is in
//!   the database, and a re-run completes the rest without duplicates.
mod support;
use support::postgres::*;
use support::*;

use std::collections::{HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Phases of the outage test, as the load threads label their requests.
const BEFORE: u8 = 0;
const DOWN: u8 = 1;
const BACK: u8 = 2;
const PHASES: [&str; 3] = ["before the stop", "while PostgreSQL was down", "after the restart"];

/// What one load thread saw through one gateway, per phase.
#[derive(Default, Clone, Debug)]
struct Tally {
    /// The valid client's requests answered 200, and the others (with what curl saw).
    served: [u64; 3],
    failed: Vec<(u8, String)>,
    /// The revoked client's requests refused, and those answered 200.
    refused: [u64; 3],
    let_in: Vec<(u8, String)>,
}

/// curl through the gateway on `https` presenting `cert`, as [`Gateway::curl_cert`] does.
fn request(https: u16, root: &Path, cert: &Cert) -> Resp {
    let mut args = vec!["--cacert".to_owned(), s(root).to_owned()];
    args.extend(cert.curl_args());
    args.extend([
        "--resolve".to_owned(),
        format!("localhost:{https}:127.0.0.1"),
        format!("https://localhost:{https}/"),
    ]);
    curl(&args)
}

/// Requests through the gateway on `https` in a loop until `stop`: alternately
/// the valid client and the revoked one, counted per phase.
fn load(
    https: u16,
    root: PathBuf,
    valid: Cert,
    revoked: Cert,
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let now = phase.load(Ordering::SeqCst);
            let r = request(https, &root, &valid);
            {
                let mut t = tally.lock().unwrap();
                if r.status == 200 {
                    t.served[now as usize] += 1;
                } else {
                    t.failed.push((now, format!("status {} exit {}: {}", r.status, r.exit, r.stderr.trim())));
                }
            }
            let r = request(https, &root, &revoked);
            let mut t = tally.lock().unwrap();
            if r.status == 200 {
                t.let_in.push((now, format!("{r:?}")));
            } else {
                t.refused[now as usize] += 1;
            }
        }
    })
}

/// `ca issue|revoke` while the database is down: exit 1 and one line naming the
/// database and saying to check that PostgreSQL runs.
#[track_caller]
fn fails_clearly(data: &Path, url: &str, args: &[&str]) -> String {
    let mut all = vec!["--storage", url];
    all.extend_from_slice(args);
    let err = gh_fails(data, &all, 1);
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?} said more than one line: {err}");
    assert!(err.contains("cannot connect to the database postgres://gatehouse:***@127.0.0.1:"), "{args:?}: {err}");
    assert!(err.contains("check that PostgreSQL is running there"), "{args:?}: {err}");
    err.trim_end().to_owned()
}

/// The distinct messages of `log` (gateway stderr lines with their time stripped),
/// each with how many times it came.
fn messages(log: &str) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        // tracing's text lines start with a timestamp; JSON lines carry "timestamp".
        let message = match json_message(line) {
            Some(m) => m,
            None => line.split_once(' ').map(|(_, rest)| rest.to_owned()).unwrap_or_else(|| line.to_owned()),
        };
        match counts.iter_mut().find(|(m, _)| *m == message) {
            Some((_, n)) => *n += 1,
            None => counts.push((message, 1)),
        }
    }
    counts
}

/// The level and message of a JSON log line.
fn json_message(line: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    let message = v["fields"]["message"].as_str().or(v["message"].as_str()).or(v["msg"].as_str())?;
    Some(format!("{} {message}", v["level"].as_str().unwrap_or("")))
}

#[test]
fn gateways_serve_through_a_postgres_restart_and_writes_wait_for_it() {
    let started = Instant::now();
    let env = Env::new();
    let data = env.data();
    let mut cluster = test_cluster::Private::start();
    let pg = cluster.database_blocking();
    gh_ok(&data, &["store", "copy", "--from", &format!("sqlite://{}", db(&data).display()), "--to", &pg]);
    let up = Upstream::start(&env);
    let site = "mtls = \"require\"\ntrust = { internal_ca = true }\n";
    let gateways: Vec<Gateway> = ["gw1.toml", "gw2.toml"]
        .into_iter()
        .map(|name| {
            let https = free_port();
            let config = localhost_config(&env, &listen_toml(https, None, None), &up, "", site);
            Gateway::start(&env, name, https, &format!("storage = \"{pg}\"\n{config}"))
        })
        .collect();
    let certs = env.path().join("pg-certs");
    let storage = ["--storage", pg.as_str()];
    let alice = env.issue_in(&certs, "client", "alice", &[], &storage);
    let mallory = env.issue_in(&certs, "client", "mallory", &[], &storage);
    let carol = env.issue_in(&certs, "client", "carol", &[], &storage);
    gh_ok(&data, &["--storage", &pg, "ca", "revoke", &mallory.serial]);
    for (i, gw) in gateways.iter().enumerate() {
        assert!(gw.until_answer(&alice, true), "gateway {i} refused alice\n{}", gw.proc.dump());
        assert!(gw.until_answer(&mallory, false), "gateway {i} served revoked mallory\n{}", gw.proc.dump());
        assert!(gw.until_answer(&carol, true), "gateway {i} refused carol\n{}", gw.proc.dump());
    }
    let before = list_json(&data, &storage);

    // Load through both gateways for the whole test.
    let phase = Arc::new(AtomicU8::new(BEFORE));
    let stop = Arc::new(AtomicBool::new(false));
    let tallies: Vec<Arc<Mutex<Tally>>> = gateways.iter().map(|_| Arc::default()).collect();
    let loaders: Vec<_> = gateways
        .iter()
        .zip(&tallies)
        .map(|(gw, t)| {
            load(gw.https, env.root(), alice.clone(), mallory.clone(), phase.clone(), stop.clone(), t.clone())
        })
        .collect();
    let served_in = |p: u8| tallies.iter().map(|t| t.lock().unwrap().served[p as usize]).min().unwrap();
    assert!(
        wait_for(Duration::from_secs(20), Duration::from_millis(20), || (served_in(BEFORE) >= 3).then_some(()))
            .is_some(),
        "the load made no requests: {tallies:?}"
    );

    // $ pg_ctl stop -m fast
    let logged: Vec<usize> = gateways.iter().map(|gw| gw.proc.stderr_len()).collect();
    cluster.stop();
    let stopped = Instant::now();
    phase.store(DOWN, Ordering::SeqCst);
    let refused_at = Instant::now();
    let issue_err = fails_clearly(
        &data,
        &pg,
        &["ca", "issue", "--profile", "client", "--cn", "dave", "--out", s(&mkdir(env.path().join("down")))],
    );
    let revoke_err = fails_clearly(&data, &pg, &["ca", "revoke", &carol.serial]);
    let refusals_took = refused_at.elapsed();
    // Until each gateway has said why it cannot read revocations (a read waits for a
    // connection a few seconds, then finds out why), serving the load meanwhile.
    let unreachable = format!("cannot connect to the database postgres://gatehouse@127.0.0.1:{}/", cluster.port());
    let said_why = |log: &str| {
        log.lines().any(|line| {
            line.contains("cannot read revocations from the issuance database; serving on with the revocations read last until it answers")
                && line.contains(&unreachable)
                && line.contains("Connection refused")
        })
    };
    let heard = |i: usize| said_why(&gateways[i].proc.stderr_since(logged[i]));
    let waited = wait_for(Duration::from_secs(50), Duration::from_millis(50), || {
        (served_in(DOWN) >= 15 && (0..gateways.len()).all(heard)).then_some(())
    });
    assert!(waited.is_some(), "during the outage: {tallies:?}\n{}", gateways[0].proc.dump());
    for (i, gw) in gateways.iter().enumerate() {
        assert_eq!(gw.curl_cert("localhost", "/", &carol, &[]).status, 200, "gateway {i} refused carol while down");
        assert_ne!(gw.curl_cert("localhost", "/", &mallory, &[]).status, 200, "gateway {i} let mallory in while down");
    }
    let outage = stopped.elapsed();
    let down_logs: Vec<String> = gateways.iter().zip(&logged).map(|(gw, &n)| gw.proc.stderr_since(n)).collect();
    for (i, log) in down_logs.iter().enumerate() {
        // A few lines for the outage, not one per request or per read.
        assert!(log.lines().count() <= 10, "gateway {i} flooded its log while PostgreSQL was down:\n{log}");
    }

    // $ pg_ctl start
    let logged_back: Vec<usize> = gateways.iter().map(|gw| gw.proc.stderr_len()).collect();
    cluster.start_again();
    phase.store(BACK, Ordering::SeqCst);
    let dave = env.issue_in(&certs, "client", "dave", &[], &storage);
    gh_ok(&data, &["--storage", &pg, "ca", "revoke", &carol.serial]);
    let revoked_at = Instant::now();
    for (i, gw) in gateways.iter().enumerate() {
        assert!(
            gw.until_answer(&carol, false),
            "gateway {i} still served carol 20 s after her revocation once PostgreSQL was back\n{}",
            gw.proc.dump()
        );
        assert!(gw.until_answer(&dave, true), "gateway {i} refused dave\n{}", gw.proc.dump());
    }
    let revocation_took = revoked_at.elapsed();
    for (i, gw) in gateways.iter().enumerate() {
        let read_again = || {
            gw.proc
                .stderr_since(logged_back[i])
                .contains("revocations are read from the issuance database again")
                .then_some(())
        };
        let said = wait_for(Duration::from_secs(20), Duration::from_millis(20), read_again);
        assert!(said.is_some(), "gateway {i} did not say it reads revocations again\n{}", gw.proc.dump());
    }
    assert!(
        wait_for(Duration::from_secs(20), Duration::from_millis(20), || (served_in(BACK) >= 3).then_some(())).is_some(),
        "the load stalled after the restart: {tallies:?}"
    );
    stop.store(true, Ordering::SeqCst);
    for l in loaders {
        l.join().expect("a load thread panicked");
    }

    // Nothing lost: what was listed before the stop, and dave, with their states.
    let after = list_json(&data, &storage);
    assert_eq!(after.len(), before.len() + 1, "before: {before:?}\nafter: {after:?}");
    for entry in &before {
        let serial = entry["serial"].as_str().unwrap();
        assert!(find_serial(&after, serial).is_some(), "{serial} was lost: {after:?}");
    }
    let status = |c: &Cert| find_serial(&after, &c.serial).map(|e| e["status"].as_str().unwrap_or("").to_owned());
    assert_eq!(status(&alice).as_deref(), Some("valid"));
    assert_eq!(status(&dave).as_deref(), Some("valid"));
    assert_eq!(status(&mallory).as_deref(), Some("revoked"));
    assert_eq!(status(&carol).as_deref(), Some("revoked"));

    // The valid client was served throughout, the revoked one never.
    for (i, t) in tallies.iter().enumerate() {
        let t = t.lock().unwrap();
        eprintln!(
            "gateway {i}: alice served {:?} ({} failed), mallory refused {:?} ({} let in) [{}]",
            t.served,
            t.failed.len(),
            t.refused,
            t.let_in.len(),
            PHASES.join(" / ")
        );
        assert!(t.failed.is_empty(), "gateway {i} failed the valid client: {:?}", t.failed);
        assert!(t.let_in.is_empty(), "gateway {i} let the revoked client in: {:?}", t.let_in);
        assert!(t.served[DOWN as usize] > 0 && t.refused[DOWN as usize] > 0, "no load during the outage: {t:?}");
    }
    eprintln!(
        "outage of {outage:?}; ca issue and ca revoke failed in {refusals_took:?}; ca issue said: {issue_err}\nca revoke said: {revoke_err}"
    );
    for (i, log) in down_logs.iter().enumerate() {
        eprintln!("gateway {i} logged while PostgreSQL was down ({} lines):", log.lines().count());
        for (message, n) in messages(log) {
            eprintln!("  {n} x {message}");
        }
        let back = gateways[i].proc.stderr_since(logged_back[i]);
        eprintln!("gateway {i} logged after the restart ({} lines):", back.lines().count());
        for (message, n) in messages(&back) {
            eprintln!("  {n} x {message}");
        }
    }
    eprintln!("a revocation after the restart was enforced by both within {revocation_took:?}");
    eprintln!("outage test took {:?}", started.elapsed());
}

#[test]
fn two_instances_issuing_at_once_never_give_one_serial_twice() {
    const ROWS: usize = 300;
    let started = Instant::now();
    let pg = test_cluster::database_blocking();
    let first = tmp();
    on_pg_ok(&first, &pg, &["ca", "init", "--name", "Shared CA"]);
    // The second instance has nothing but the storage URL and the passphrase.
    let second = tmp();
    let runs: Vec<(PathBuf, PathBuf, Out, Instant, Instant)> = thread::scope(|scope| {
        let handles: Vec<_> = [(first.path(), "alpha"), (second.path(), "beta")]
            .into_iter()
            .map(|(dir, prefix)| {
                let pg = pg.as_str();
                scope.spawn(move || {
                    let csv = users_csv(dir, prefix, ROWS);
                    let out = mkdir(dir.join(format!("{prefix}-out")));
                    let began = Instant::now();
                    let o = on_pg(dir, pg, &["ca", "batch", s(&csv), "--out", s(&out)]);
                    (dir.to_path_buf(), out, o, began, Instant::now())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a batch thread panicked")).collect()
    });
    for (dir, _, o, _, _) in &runs {
        assert_eq!(o.code, 0, "ca batch in {} failed:\n{}", dir.display(), o.all());
        assert_eq!(batch_summary(&o.stderr), [ROWS as u64, 0, 0], "{}", o.stderr);
    }
    assert!(runs[1].2.stderr.contains("took the CA kept in postgres://"), "{}", runs[1].2.stderr);
    let (a, b) = (&runs[0], &runs[1]);
    assert!(a.3 < b.4 && b.3 < a.4, "the two batches did not run at once");

    let listed = list_json(&first, &["--storage", &pg]);
    let mut serials = HashSet::new();
    for e in &listed {
        let serial = norm_serial(e["serial"].as_str().unwrap_or_else(|| panic!("an entry without serial: {e}")));
        assert!(serials.insert(serial.clone()), "serial {serial} was given twice");
    }
    assert_eq!(listed.len(), 2 * ROWS, "ca list --json holds {} certificates, not {}", listed.len(), 2 * ROWS);
    let mut on_disk = HashSet::new();
    for (_, out, ..) in &runs {
        for (name, serial) in crt_serials(out, &mut HashMap::new()) {
            assert!(serials.contains(&serial), "{name} (serial {serial}) is on disk but not in the database");
            assert!(on_disk.insert(serial.clone()), "serial {serial} is in two files");
        }
    }
    assert_eq!(on_disk.len(), 2 * ROWS);
    eprintln!("two batches of {ROWS} at once: {} distinct serials in {:?}", serials.len(), started.elapsed());
}

/// After a kill: every `*.crt` in `out` is listed by serial, no serial twice, and a
/// name's valid certificate is the one on disk. The number of files on disk.
#[track_caller]
fn delivered_are_recorded(
    dir: &Path,
    pg: &str,
    out: &Path,
    cache: &mut HashMap<String, (String, String)>,
    round: &str,
) -> usize {
    let list = list_json(dir, &["--storage", pg]);
    let mut listed = HashSet::new();
    for e in &list {
        let serial = norm_serial(e["serial"].as_str().unwrap_or_else(|| panic!("{round}: entry without serial: {e}")));
        assert!(listed.insert(serial.clone()), "{round}: serial {serial} appears twice in ca list");
    }
    let files = crt_serials(out, cache);
    let mut on_disk = HashSet::new();
    for (name, serial) in &files {
        assert!(listed.contains(serial), "{round}: {name} (serial {serial}) is on disk but not in `ca list --json`");
        assert!(on_disk.insert(serial.clone()), "{round}: serial {serial} used by two files");
    }
    let mut valid_of: HashMap<String, String> = HashMap::new();
    for e in list.iter().filter(|e| e["status"] == "valid") {
        let cn = e["common_name"].as_str().unwrap().to_owned();
        let serial = norm_serial(e["serial"].as_str().unwrap());
        if let Some(other) = valid_of.insert(cn.clone(), serial.clone()) {
            panic!("{round}: {cn} has two valid certificates, {other} and {serial}");
        }
        assert_eq!(
            files.get(&format!("{cn}.crt")),
            Some(&serial),
            "{round}: {cn}'s valid certificate {serial} is not the one on disk"
        );
    }
    files.len()
}

#[test]
fn kill_9_during_a_batch_on_postgres_loses_no_delivered_certificate() {
    const ROWS: usize = 2000;
    let started = Instant::now();
    let pg = test_cluster::database_blocking();
    let d = tmp();
    on_pg_ok(&d, &pg, &["ca", "init"]);
    let out = mkdir(d.join("out"));
    let csv = users_csv(&d, "user", ROWS);
    let mut cache = HashMap::new();
    let crt_count = || ls(&out).iter().filter(|f| f.ends_with(".crt")).count();
    let mut progress = vec![0];
    let mut kills = 0;
    // Kill once some more bundles than the last round's are on disk.
    for (round, more) in [20, 150, 400].into_iter().enumerate() {
        let target = progress.last().unwrap() + more;
        // $ gatehouse ca batch users.csv --out out & ... kill -9 $!
        let mut cmd = on_pg_cmd(&d, &pg, &["ca", "batch", s(&csv), "--out", s(&out)]);
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().expect("spawn gatehouse ca batch");
        let reached = wait_for(Duration::from_secs(60), Duration::from_millis(5), || {
            (crt_count() >= target || child.try_wait().unwrap().is_some()).then_some(())
        });
        assert!(reached.is_some(), "round {round}: fewer than {target} bundles after 60 s");
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
        }
        let status = child.wait().unwrap();
        let label = format!("after kill #{round} at {target} bundles");
        progress.push(delivered_are_recorded(&d, &pg, &out, &mut cache, &label));
        if status.code().is_some() {
            assert_eq!(status.code(), Some(0), "batch round {round} failed on its own");
            break;
        }
        assert_eq!(status.signal(), Some(9), "batch not ended by SIGKILL: {status:?}");
        kills += 1;
    }
    assert!(kills >= 1, "the batch finished before it could be killed");

    // $ gatehouse ca batch users.csv --out out    (re-run to completion)
    let o = on_pg(&d, &pg, &["ca", "batch", s(&csv), "--out", s(&out)]);
    assert_eq!(o.code, 0, "re-run after kill -9 failed (bundles after kills: {progress:?}):\n{}", o.all());
    let [issued, skipped, failed] = batch_summary(&o.stderr);
    assert_eq!(issued + skipped, ROWS as u64, "issued + skipped != rows: {}", o.stderr);
    assert_eq!(failed, 0, "rows failed on re-run: {}", o.stderr);
    assert_eq!(skipped, *progress.last().unwrap() as u64, "skipped != bundles already on disk: {}", o.stderr);
    assert_eq!(delivered_are_recorded(&d, &pg, &out, &mut cache, "after the re-run"), ROWS);
    assert_eq!(list_json(&d, &["--storage", &pg, "--status", "valid"]).len(), ROWS, "valid certificates != rows");
    let undelivered = list_json(&d, &["--storage", &pg, "--status", "undelivered"]);
    assert!(undelivered.is_empty(), "undelivered certificates left after the re-run: {}", undelivered.len());
    let revoked = list_json(&d, &["--storage", &pg, "--status", "revoked"]);
    for e in &revoked {
        assert_eq!(e["revocation_reason"], "superseded", "{e}");
    }
    for i in (0..ROWS).step_by(ROWS / 8) {
        let (crt, key) = (out.join(format!("user{i:04}.crt")), out.join(format!("user{i:04}.key")));
        assert_eq!(mode(&key), 0o600);
        assert_eq!(key_pubkey(&key, None), cert_pubkey(&crt), "user{i:04}: key does not match cert");
        assert_verifies(&d, "sslclient", &crt);
    }
    eprintln!(
        "kill -9 on postgres: bundles after each kill {progress:?}, {kills} kills, {} interrupted ones revoked \
         as superseded, {:?} total",
        revoked.len(),
        started.elapsed()
    );
}
