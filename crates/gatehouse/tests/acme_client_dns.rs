//! dns-01 records of gatehouse's ACME client (issue 10): `DnsSolver` writes and removes
//! `_acme-challenge` TXT records at a real bind9, over RFC 2136 updates signed with its
//! TSIG key, and through an exec hook that runs nsupdate. What the solver wrote is
//! judged by dig.
//!
//! One bind9 serves all the tests of this file; each test uses its own names under
//! `example.test`, so they run side by side.

mod support;

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use ::gateway::acme_client::dns::{DnsError, DnsSolver};
use ::gateway::acme_client::{DnsConfig, Rfc2136Config};
use support::acme::*;
use support::files::{tmp, write};
use support::net::{free_port, poll_until};
use support::process::require;

/// How long `present` may wait for the record to be visible, and a test for dig to see a
/// change: generous, as the machine may be busy; the success path takes milliseconds.
const VISIBLE_LIMIT: Duration = Duration::from_secs(30);
const NSUPDATE: &str = "/usr/bin/nsupdate";

/// The bind9 of this test binary, started by the first test that asks.
#[track_caller]
fn bind() -> &'static Bind9 {
    static SHARED: OnceLock<Result<Bind9, String>> = OnceLock::new();
    let r = SHARED.get_or_init(|| {
        std::panic::catch_unwind(Bind9::start).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|m| m.to_string()))
                .unwrap_or_else(|| "bind9 did not start".into())
        })
    });
    match r {
        Ok(bind) => bind,
        Err(m) => panic!("the shared bind9 did not start: {m}"),
    }
}

/// Runs the solver's future to its end, as the ACME order code's runtime would.
fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime").block_on(f)
}

/// `rfc2136 = { server = bind, key_name = "acme-update", key_secret_file = FILE }`.
fn rfc2136(bind: &Bind9, key_secret_file: &str) -> DnsConfig {
    DnsConfig::Rfc2136(Rfc2136Config {
        server: bind.addr().parse().unwrap(),
        key_name: bind.key_name.clone(),
        key_algorithm: bind.algorithm.to_string(),
        key_secret_file: key_secret_file.into(),
    })
}

/// A solver with the key as tsig-keygen printed it: `key.conf`, relative to bind's dir.
fn solver(bind: &Bind9) -> DnsSolver {
    DnsSolver::new(&rfc2136(bind, "key.conf"), bind.dir.path()).expect("DnsSolver::new")
}

#[track_caller]
fn present(solver: &DnsSolver, name: &str, value: &str) {
    block_on(solver.present(name, value, VISIBLE_LIMIT)).unwrap_or_else(|e| panic!("present {name}: {e}"));
}

#[track_caller]
fn cleanup(solver: &DnsSolver, name: &str, value: &str) {
    block_on(solver.cleanup(name, value)).unwrap_or_else(|e| panic!("cleanup {name}: {e}"));
}

/// The TXT values dig finds at `name`, sorted.
fn txt(bind: &Bind9, name: &str) -> Vec<String> {
    let mut values = bind.txt(name);
    values.sort();
    values
}

/// Waits until dig finds exactly `want` (sorted) at `name`.
#[track_caller]
fn wait_txt(bind: &Bind9, name: &str, want: &[&str]) {
    let mut seen = Vec::new();
    let found = poll_until(VISIBLE_LIMIT, || {
        seen = txt(bind, name);
        seen == want
    });
    assert!(found.is_some(), "TXT {name}: want {want:?}, dig still finds {seen:?}");
}

/// The error of `r`, as the ACME order code would log it.
#[track_caller]
fn message<T>(r: Result<T, DnsError>, what: &str) -> String {
    match r {
        Ok(_) => panic!("{what}: succeeded, want an error"),
        Err(e) => e.to_string(),
    }
}

#[track_caller]
fn assert_mentions(message: &str, words: &[&str]) {
    for w in words {
        assert!(message.contains(w), "want {w:?} in the error: {message}");
    }
}

#[test]
fn present_writes_the_record_and_cleanup_removes_it() {
    let bind = bind();
    let solver = solver(bind);
    let record = "_acme-challenge.a.example.test";
    present(&solver, "a.example.test", "value-a");
    // present returns once the primary answers the record: no waiting here.
    assert_eq!(txt(bind, record), ["value-a"]);
    cleanup(&solver, "a.example.test", "value-a");
    wait_txt(bind, record, &[]);
}

#[test]
fn a_wildcard_and_its_base_name_hold_two_values_at_one_name() {
    let bind = bind();
    let solver = solver(bind);
    let record = "_acme-challenge.b.example.test";
    present(&solver, "*.b.example.test", "value-wildcard");
    present(&solver, "b.example.test", "value-base");
    assert_eq!(txt(bind, record), ["value-base", "value-wildcard"]);

    cleanup(&solver, "*.b.example.test", "value-wildcard");
    wait_txt(bind, record, &["value-base"]);
    cleanup(&solver, "b.example.test", "value-base");
    wait_txt(bind, record, &[]);
}

#[test]
fn the_zone_apex_gets_its_record() {
    let bind = bind();
    let solver = solver(bind);
    present(&solver, "example.test", "value-apex");
    assert_eq!(txt(bind, "_acme-challenge.example.test"), ["value-apex"]);
    cleanup(&solver, "example.test", "value-apex");
    wait_txt(bind, "_acme-challenge.example.test", &[]);
}

#[test]
fn the_secret_file_may_hold_the_bare_base64_secret() {
    let bind = bind();
    let dir = tmp();
    write(dir.join("acme-update.secret"), format!("{}\n\n", bind.secret));
    let solver = DnsSolver::new(&rfc2136(bind, "acme-update.secret"), dir.path()).expect("DnsSolver::new");
    present(&solver, "c.example.test", "value-bare");
    assert_eq!(txt(bind, "_acme-challenge.c.example.test"), ["value-bare"]);
    cleanup(&solver, "c.example.test", "value-bare");
    wait_txt(bind, "_acme-challenge.c.example.test", &[]);
}

#[test]
fn a_wrong_secret_is_refused_with_the_key_named() {
    let bind = bind();
    let dir = tmp();
    // A valid base64 secret of the right length, but not the server's.
    write(dir.join("wrong.secret"), "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE=\n");
    let solver = DnsSolver::new(&rfc2136(bind, "wrong.secret"), dir.path()).expect("DnsSolver::new");
    let m = message(block_on(solver.present("d.example.test", "value-wrong", VISIBLE_LIMIT)), "a wrong secret");
    assert_mentions(&m, &["acme-update", "does not match", "BADSIG", "wrong.secret", &bind.addr()]);
    assert!(!m.contains(&bind.secret), "the error shows the secret: {m}");
    assert_eq!(txt(bind, "_acme-challenge.d.example.test"), Vec::<String>::new());

    // The right secret under a name the server has no key for.
    write(dir.join("right.secret"), &bind.secret);
    let mut config = rfc2136(bind, "right.secret");
    if let DnsConfig::Rfc2136(c) = &mut config {
        c.key_name = "no-such-key".into();
    }
    let solver = DnsSolver::new(&config, dir.path()).expect("DnsSolver::new");
    let m = message(block_on(solver.present("d.example.test", "value-wrong", VISIBLE_LIMIT)), "an unknown key");
    assert_mentions(&m, &["no-such-key", "BADKEY", "key_name"]);
}

#[test]
fn a_name_outside_the_servers_zones_is_refused_with_the_rcode() {
    let bind = bind();
    let solver = solver(bind);
    let m = message(block_on(solver.present("other.test", "value-other", VISIBLE_LIMIT)), "a name in no zone");
    assert_mentions(&m, &["acme-update", "REFUSED", "_acme-challenge.other.test", &bind.addr()]);
}

#[test]
fn a_primary_that_does_not_answer_is_named_in_the_error() {
    let bind = bind();
    let mut config = rfc2136(bind, "key.conf");
    let nobody = format!("127.0.0.1:{}", free_port());
    if let DnsConfig::Rfc2136(c) = &mut config {
        c.server = nobody.parse().unwrap();
    }
    let solver = DnsSolver::new(&config, bind.dir.path()).expect("DnsSolver::new");
    let m = message(block_on(solver.present("g.example.test", "value-g", VISIBLE_LIMIT)), "a closed port");
    assert_mentions(&m, &["no answer from", &nobody, "acme-update", "_acme-challenge.g.example.test"]);
}

#[test]
fn a_secret_file_that_is_not_a_secret_is_refused_naming_the_file() {
    let bind = bind();
    let dir = tmp();
    write(dir.join("garbage.secret"), "this is not base64 at all!\n");
    let m = message(DnsSolver::new(&rfc2136(bind, "garbage.secret"), dir.path()), "a garbage secret file");
    assert_mentions(&m, &[&dir.join("garbage.secret").display().to_string(), "base64"]);

    let m = message(DnsSolver::new(&rfc2136(bind, "missing.secret"), dir.path()), "a missing secret file");
    assert_mentions(&m, &[&dir.join("missing.secret").display().to_string(), "cannot read"]);
}

/// An exec hook in `dir` that runs nsupdate against bind with its key, as a site's own
/// script would.
fn nsupdate_hook(bind: &Bind9, dir: &Path) -> std::path::PathBuf {
    require(NSUPDATE);
    let hook = dir.join("dns-hook.sh");
    write(
        &hook,
        format!(
            "#!/bin/sh\nset -e\ncase \"$1\" in\n  present) change=\"add $2 60 TXT \\\"$3\\\"\" ;;\n  \
             cleanup) change=\"delete $2 TXT \\\"$3\\\"\" ;;\n  *) echo \"unknown action $1\" >&2; exit 2 ;;\nesac\n\
             {NSUPDATE} -y {}:{}:{} <<EOF\nserver 127.0.0.1 {}\nupdate $change\nsend\nEOF\n",
            bind.algorithm, bind.key_name, bind.secret, bind.port
        ),
    );
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    hook
}

#[test]
fn an_exec_hook_writes_and_removes_the_record() {
    let bind = bind();
    let dir = tmp();
    nsupdate_hook(bind, dir.path());
    let solver = DnsSolver::new(&DnsConfig::Exec("dns-hook.sh".into()), dir.path()).expect("DnsSolver::new");
    let record = "_acme-challenge.e.example.test";
    // The system resolver does not know this zone: present warns and goes on.
    present(&solver, "*.e.example.test", "value-exec");
    wait_txt(bind, record, &["value-exec"]);
    cleanup(&solver, "*.e.example.test", "value-exec");
    wait_txt(bind, record, &[]);
}

#[test]
fn a_failing_exec_hook_is_an_error_with_its_status_and_stderr() {
    let dir = tmp();
    let hook = dir.join("failing-hook.sh");
    write(&hook, "#!/bin/sh\necho \"starting $1 $2\" >&2\necho 'the zone is on fire' >&2\nexit 3\n");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let solver = DnsSolver::new(&DnsConfig::Exec(hook.clone()), Path::new("/nonexistent")).expect("DnsSolver::new");
    let m = message(block_on(solver.present("f.example.test", "value-f", VISIBLE_LIMIT)), "a hook exiting 3");
    assert_mentions(&m, &["exit status: 3", "the zone is on fire", "starting present _acme-challenge.f.example.test."]);
    let m = message(block_on(solver.cleanup("f.example.test", "value-f")), "a hook exiting 3");
    assert_mentions(&m, &["exit status: 3", "cleanup"]);

    let solver = DnsSolver::new(&DnsConfig::Exec("no-such-hook".into()), dir.path()).expect("DnsSolver::new");
    let m = message(block_on(solver.present("f.example.test", "value-f", VISIBLE_LIMIT)), "a missing hook");
    assert_mentions(&m, &[&dir.join("no-such-hook").display().to_string(), "cannot run"]);
}
