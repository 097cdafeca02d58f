//! [`Daemon`]: a server that stops with its guard, or when the test binary exits.

use super::*;

/// A long-running server held by a shell that stops it when the shell's stdin closes:
/// on drop, or when the test binary exits, for a fixture in a `static` (whose
/// destructor never runs). SIGTERM first, SIGKILL 10 s later; then `cleanup`, if
/// given, is removed. The shell exits with the server's status, so an early exit
/// shows as the guard's exit.
pub struct Daemon {
    pub proc: Proc,
}

/// `"$@"` runs in the background with fd 3 closed; a watcher reads fd 3 (the guard's
/// stdin; an async list's own stdin would be /dev/null) and stops it at EOF. The
/// watcher ignores the signals a whole process group may get (a killed `cargo test`),
/// so it still stops the server when the test binary is gone.
const DAEMON_SH: &str = r#"exec 3<&0
"$@" 3<&- </dev/null &
child=$!
(
  trap '' HUP INT TERM PIPE
  read -r _ <&3
  kill "$child" 2>/dev/null
  i=0
  while kill -0 "$child" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  kill -KILL "$child" 2>/dev/null
  [ -n "$GH_DAEMON_CLEANUP" ] && rm -rf "$GH_DAEMON_CLEANUP"
) &
watcher=$!
exec 3<&-
wait "$child"
status=$?
kill -KILL "$watcher" 2>/dev/null
[ -n "$GH_DAEMON_CLEANUP" ] && rm -rf "$GH_DAEMON_CLEANUP"
exit "$status"
"#;

impl Daemon {
    /// Starts `cmd` (its program, arguments, environment changes and working dir)
    /// under the guard.
    pub fn spawn(cmd: &Command, name: &str, cleanup: Option<&Path>) -> Daemon {
        require(&cmd.get_program().to_string_lossy());
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(DAEMON_SH).arg(name).arg(cmd.get_program()).args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(d) = cmd.get_current_dir() {
            c.current_dir(d);
        }
        if let Some(d) = cleanup {
            c.env("GH_DAEMON_CLEANUP", d);
        }
        Daemon { proc: Proc::spawn_with_stdin(c, name) }
    }

    /// Waits until 127.0.0.1:`port` accepts; panics with the output when the server
    /// exits first or `START_LIMIT` passes.
    #[track_caller]
    pub fn wait_listening(&mut self, port: u16, context: &str) {
        self.proc.wait_listening(port, START_LIMIT, context);
    }

    /// Waits for a stderr line satisfying `pred` (bounded like [`Daemon::wait_listening`]).
    #[track_caller]
    pub fn wait_stderr(&mut self, what: &str, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if self.proc.stderr().lines().any(&pred) {
                return;
            }
            if let Some(st) = self.proc.try_exit() {
                panic!("{} exited ({st}) before {what}\n{}", self.proc.name, self.proc.dump());
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {what} after {START_LIMIT:?}\n{}",
                self.proc.name,
                self.proc.dump()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.proc.close_stdin();
        // The server's own shutdown, or the watcher's SIGKILL; Proc's drop kills the shell.
        self.proc.wait_exit(Duration::from_secs(15));
    }
}

/// A temp dir for a fixture that may live in a `static`: [`Daemon`] removes it.
pub(super) fn fixture_dir() -> (TempDir, PathBuf) {
    let d = tmp();
    let p = d.path().to_path_buf();
    (d, p)
}
