//! Running the `gatehouse` binary: `gatehouse --data-dir DIR ARGS...`, with stdin
//! closed and nothing taken from the caller's environment (no passphrase, data dir or storage).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::process::{Out, run_limited, run_limited_raw};

/// The variable the CA passphrase may come from.
pub const PASS_ENV: &str = "GATEHOUSE_CA_PASSPHRASE";

/// How long one CLI run may take: room for the 2,000-row `ca batch` of the crash
/// tests on a slow machine; it only turns a hang into a failure.
const CLI_LIMIT: Duration = Duration::from_secs(300);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gatehouse")
}

/// `gatehouse --data-dir DIR ARGS...` with cwd = DIR, stdin closed and the
/// passphrase, data-dir and storage variables removed from the environment.
pub fn gh_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("--data-dir").arg(dir).args(args);
    c.current_dir(dir);
    c.env_remove(PASS_ENV).env_remove("GATEHOUSE_DATA_DIR").env_remove("GATEHOUSE_STORAGE");
    c.env_remove("GATEHOUSE_BACKUP_PASSPHRASE");
    c.env("NO_COLOR", "1");
    c.stdin(Stdio::null());
    c
}

/// `gatehouse --data-dir DIR ARGS...`
pub fn gh(dir: &Path, args: &[&str]) -> Out {
    run_limited(gh_cmd(dir, args), CLI_LIMIT)
}

/// Same, with extra environment variables.
pub fn gh_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut c = gh_cmd(dir, args);
    c.envs(env.iter().copied());
    run_limited(c, CLI_LIMIT)
}

/// Same, run from another working directory.
pub fn gh_in(dir: &Path, cwd: &Path, args: &[&str]) -> Out {
    let mut c = gh_cmd(dir, args);
    c.current_dir(cwd);
    run_limited(c, CLI_LIMIT)
}

/// Same, stdout as raw bytes (for DER output): (code, stdout, stderr).
pub fn gh_raw(dir: &Path, args: &[&str]) -> (i32, Vec<u8>, String) {
    run_limited_raw(gh_cmd(dir, args), CLI_LIMIT, None)
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
    let o = gh(dir, args);
    assert_eq!(o.code, 0, "gatehouse {args:?} failed\nstdout: {}\nstderr: {}", o.stdout, o.stderr);
    o.stdout
}

/// Assert exit `want` and return stderr.
#[track_caller]
pub fn gh_fails(dir: &Path, args: &[&str], want: i32) -> String {
    let o = gh(dir, args);
    assert_eq!(o.code, want, "gatehouse {args:?}: expected exit {want}\nstdout: {}\nstderr: {}", o.stdout, o.stderr);
    o.stderr
}
