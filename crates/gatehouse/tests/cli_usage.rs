//! The command line as a demanding user meets it: output into a pipe that closes
//! (`ca list | head -1`), a bad flag value named as the flag, a data dir that is a file,
//! English counts, and quickstart's hints acting on the CA quickstart used.
mod support;
use support::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A pipe buffer holds 64 KiB on Linux: longer output meets the closed pipe for sure.
const PIPE_BUFFER: usize = 64 * 1024;

/// `sh -c SCRIPT` in `cwd` with the built binary's directory first on PATH, so that
/// `gatehouse` in SCRIPT is the binary under test; no data dir or passphrase inherited.
fn sh(cwd: &Path, script: &str) -> Out {
    let bin_dir = Path::new(bin()).parent().expect("the binary's directory");
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut c = Command::new("sh");
    c.arg("-c").arg(script).current_dir(cwd).env("PATH", path);
    c.env_remove("GATEHOUSE_DATA_DIR").env_remove(PASS_ENV);
    run_limited(c, Duration::from_secs(60))
}

/// A CA whose `ca list` is longer than a pipe holds: server certificates with many SANs.
fn ca_with_a_long_list() -> Env {
    let env = Env::new();
    let names: Vec<String> = (0..100).map(|i| format!("DNS:host-{i:03}.a-long-service-name.example.com")).collect();
    let sans: Vec<&str> = names.iter().map(String::as_str).collect();
    for n in 0..30 {
        env.issue("server", &format!("service-{n:02}.example.com"), &sans);
    }
    let listed = env.gh_ok(&["ca", "list"]).len();
    assert!(listed > 2 * PIPE_BUFFER, "ca list is {listed} bytes, not longer than a pipe holds");
    env
}

/// Runs `COMMAND | READER` through `sh` and returns its outcome and COMMAND's own exit status.
fn through_closing_pipe(env: &Env, command: &str, reader: &str) -> (Out, String) {
    let status = env.path().join("status");
    let script =
        format!("{{ gatehouse --data-dir '{}' {command}; echo $? > '{}'; }} | {reader}", s(&env.data()), s(&status));
    let o = sh(env.path(), &script);
    (o, fs::read_to_string(&status).unwrap_or_default().trim().to_owned())
}

#[test]
fn output_into_a_pipe_that_closes_ends_quietly() {
    let env = ca_with_a_long_list();

    let (o, status) = through_closing_pipe(&env, "ca list", "head -1");
    assert_eq!(o.code, 0, "`ca list | head -1`:\n{}", o.all());
    assert!(o.stdout.starts_with("SERIAL") && o.stdout.lines().count() == 1, "head -1 printed:\n{}", o.stdout);
    assert_eq!(o.stderr, "", "`ca list | head -1` said something on stderr");
    assert_eq!(status, "141", "gatehouse's own exit status should be SIGPIPE's (128 + 13):\n{}", o.all());

    let (o, status) = through_closing_pipe(&env, "ca list --json", "head -c 100");
    assert_eq!(o.code, 0, "`ca list --json | head -c 100`:\n{}", o.all());
    assert_eq!(o.stdout.len(), 100, "head -c 100 printed:\n{}", o.stdout);
    assert_eq!(o.stderr, "", "`ca list --json | head -c 100` said something on stderr");
    assert_eq!(status, "141", "{}", o.all());
}

#[test]
fn a_listen_address_out_of_range_names_the_flag() {
    let env = Env::empty();
    let o = env.gh(&["quickstart", "--listen", "127.0.0.1:99999"]);
    assert_eq!(o.code, 2, "{}", o.all());
    assert!(o.stderr.contains("--listen") && o.stderr.contains("127.0.0.1:99999"), "{}", o.all());
    assert!(o.stderr.contains("port from 0 to 65535"), "does not say what is wrong:\n{}", o.all());
    assert!(!o.stderr.contains("line 2"), "names a file the user never wrote:\n{}", o.all());
    assert!(!env.data().exists(), "a refused quickstart created {}", env.data().display());
}

#[test]
fn an_upstream_that_is_not_http_names_the_flag_and_creates_nothing() {
    let env = Env::empty();
    let o = env.gh(&["quickstart", "--listen", "127.0.0.1:0", "--upstream", "ftp://127.0.0.1:21"]);
    assert_eq!(o.code, 2, "{}", o.all());
    assert_eq!(
        o.stderr.trim(),
        "gatehouse: --upstream ftp://127.0.0.1:21 must be an http:// or https:// URL",
        "{}",
        o.all()
    );
    assert!(!env.data().exists(), "a refused quickstart created {}", env.data().display());
}

#[test]
fn a_data_dir_that_is_a_file_is_named_as_a_file() {
    let env = Env::empty();
    let file = env.write("data", "not a directory\n");
    let o = run_limited(
        {
            let mut c = Command::new(bin());
            c.args(["--data-dir", s(&file), "ca", "list"]).env_remove("GATEHOUSE_DATA_DIR");
            c
        },
        Duration::from_secs(30),
    );
    assert_eq!(o.code, 2, "{}", o.all());
    assert_eq!(o.stderr.trim(), format!("gatehouse: --data-dir {} is a file; give a directory", s(&file)));

    let mut c = Command::new(bin());
    c.args(["ca", "init"]).env("GATEHOUSE_DATA_DIR", &file);
    let o = run_limited(c, Duration::from_secs(30));
    assert_eq!(o.code, 2, "{}", o.all());
    let want = format!("gatehouse: GATEHOUSE_DATA_DIR {} is a file; give a directory", s(&file));
    assert_eq!(o.stderr.trim(), want);
    assert_eq!(fs::read_to_string(&file).unwrap(), "not a directory\n", "the file was touched");
}

#[test]
fn counts_are_english() {
    let env = Env::new();
    let crl = env.path().join("crl.pem");
    let none = env.gh(&["ca", "crl", "--out", s(&crl)]);
    assert!(none.stderr.contains("with 0 revoked certificates written"), "{}", none.all());
    let alice = env.gh_ok(&["ca", "issue", "--profile", "client", "--cn", "alice", "--out", "certs"]);
    env.gh_ok(&["ca", "revoke", &serial_line(&alice)]);
    let one = env.gh(&["ca", "crl", "--out", s(&crl)]);
    assert!(one.stderr.contains("with 1 revoked certificate written"), "{}", one.all());
}

/// Runs quickstart in `cwd` with `args` until it has printed its hints; returns them.
fn quickstart_hints(cwd: &Path, args: &[&str]) -> Vec<String> {
    let port = free_port().to_string();
    let mut c = Command::new(bin());
    c.args(args).args(["quickstart", "--listen", &format!("127.0.0.1:{port}")]).current_dir(cwd);
    c.env_remove("GATEHOUSE_DATA_DIR").env_remove(PASS_ENV);
    let qs = Proc::spawn(c, "gatehouse quickstart");
    let last = qs.wait_stdout(Duration::from_secs(30), |l| l.starts_with("revoke one:"));
    assert!(last.is_some(), "quickstart printed no hints:\n{}", qs.dump());
    qs.stdout_lines()
}

/// The `more users:` command of `hints`, issuing for NAME.
fn more_users_command(hints: &[String], name: &str) -> String {
    let line = hints.iter().find_map(|l| l.strip_prefix("more users: ")).expect("a `more users:` hint");
    line.replace("NAME", name)
}

#[test]
fn quickstart_hints_act_on_the_ca_it_used() {
    let env = Env::empty();
    let data = env.path().join("elsewhere data");
    let hints = quickstart_hints(env.path(), &["--data-dir", s(&data)]);
    let issue = more_users_command(&hints, "bob");
    assert!(issue.contains("--data-dir"), "the hint lacks --data-dir:\n{}", hints.join("\n"));
    let o = sh(env.path(), &issue);
    assert_eq!(o.code, 0, "the printed command `{issue}` failed:\n{}", o.all());
    let bob = list_json(&data, &[]).into_iter().any(|c| c["common_name"] == "bob");
    assert!(bob, "`{issue}` did not issue from quickstart's CA in {}", data.display());

    // With the default data dir the hint needs no --data-dir, and works as printed.
    let cwd: PathBuf = env.path().join("default");
    fs::create_dir_all(&cwd).unwrap();
    let hints = quickstart_hints(&cwd, &[]);
    let issue = more_users_command(&hints, "carol");
    assert!(!issue.contains("--data-dir"), "{issue}");
    let o = sh(&cwd, &issue);
    assert_eq!(o.code, 0, "the printed command `{issue}` failed:\n{}", o.all());
    let carol = list_json(&cwd.join("gatehouse-data"), &[]).into_iter().any(|c| c["common_name"] == "carol");
    assert!(carol, "`{issue}` did not issue from quickstart's CA");
}
