//! Child processes: commands run to completion with a time limit ([`run_limited`],
//! [`Out`]) and long-running ones whose output is collected line by line and which
//! are killed on drop ([`Proc`]); checks that a peer program is installed.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::Value;
use super::net::{port_open, wait_for};

/// Debian's python3 (the one `python3-websockets` is installed for), not a pyenv one on PATH.
pub const PYTHON: &str = "/usr/bin/python3";

/// Panics with a clear sentence when a peer program is missing
/// (scripts/test.sh installs every peer; no test is skipped).
#[track_caller]
pub fn require(program: &str) {
    let found = if program.contains('/') {
        Path::new(program).exists()
    } else {
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file())).unwrap_or(false)
    };
    assert!(found, "peer program {program} is not installed; run scripts/test.sh (it installs the peers)");
}

/// Panics unless `/usr/bin/python3 -c "import MODULE"` works.
#[track_caller]
pub fn require_python_module(module: &str) {
    require(PYTHON);
    let o = Command::new(PYTHON).args(["-c", &format!("import {module}")]).output().expect("run python3");
    assert!(
        o.status.success(),
        "{PYTHON} cannot import {module} (Debian package python3-{module}); run scripts/test.sh\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

// ---------------------------------------------------------------- finished commands

/// Output of a finished command.
#[derive(Debug, Clone)]
pub struct Out {
    /// Exit code; -1 when ended by a signal, -9 when the harness killed it at its time limit.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// stdout followed by stderr (openssl prints much of its information on stderr).
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` (stdin closed) in its own process group; after `limit` the whole
/// group is killed (Chromium forks helpers).
pub fn run_limited(cmd: Command, limit: Duration) -> Out {
    let (code, stdout, stderr) = run_limited_raw(cmd, limit, None);
    Out { code, stdout: String::from_utf8_lossy(&stdout).into_owned(), stderr }
}

/// Same, with `input` on stdin, which stays open `hold` longer before EOF (a client
/// such as `openssl s_client` quits at EOF, before the server's answer otherwise).
pub fn run_limited_with_input(cmd: Command, limit: Duration, input: &str, hold: Duration) -> Out {
    let (code, stdout, stderr) = run_limited_raw(cmd, limit, Some((input.as_bytes(), hold)));
    Out { code, stdout: String::from_utf8_lossy(&stdout).into_owned(), stderr }
}

/// The one runner behind the others: stdin from `input` (then EOF after its hold
/// time) or closed; stdout as raw bytes (for DER output): (code, stdout, stderr).
pub fn run_limited_raw(mut cmd: Command, limit: Duration, input: Option<(&[u8], Duration)>) -> (i32, Vec<u8>, String) {
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.process_group(0);
    let what = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let pid = child.id();
    if let (Some((input, hold)), Some(mut stdin)) = (input, child.stdin.take()) {
        let input = input.to_vec();
        thread::spawn(move || {
            let _ = stdin.write_all(&input);
            thread::sleep(hold);
        });
    }
    let so = read_all(Box::new(child.stdout.take().unwrap()));
    let se = read_all(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let mut killed = false;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() >= deadline {
            // The child is not reaped yet, so its pid (= the group id) is still ours.
            kill_group(pid);
            killed = true;
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    // EOF comes once every holder of the pipes is gone; a helper that outlived the
    // child keeps the group alive, so killing the group then hits only our processes.
    let mut take = |rx: &Receiver<Vec<u8>>| -> Vec<u8> {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(v) => v,
            Err(_) => {
                if !killed {
                    kill_group(pid);
                    killed = true;
                }
                rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default()
            }
        }
    };
    let stdout = take(&so);
    let stderr = String::from_utf8_lossy(&take(&se)).into_owned();
    match status {
        Some(st) => (st.code().unwrap_or(-1), stdout, stderr),
        None => (-9, stdout, format!("{stderr}\n[harness: {what} killed after {limit:?}]")),
    }
}

/// Reads `r` to its end on a thread; the bytes arrive on the returned channel.
fn read_all(mut r: Box<dyn Read + Send>) -> Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        let _ = tx.send(v);
    });
    rx
}

/// `kill -KILL -- -PGID`: the process group this harness created for one child.
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

// ---------------------------------------------------------------- long-running processes

/// A child whose stdout/stderr lines are collected; killed on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
    stdin: Option<ChildStdin>,
    exited: Option<ExitStatus>,
}

fn collect(r: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_string();
                    into.lock().unwrap().push(line);
                }
            }
        }
    });
}

/// How often the `wait_*` methods look again.
const PROC_POLL: Duration = Duration::from_millis(20);

impl Proc {
    /// Starts `cmd` with stdin closed.
    pub fn spawn(cmd: Command, name: &str) -> Proc {
        Proc::start(cmd, name, false)
    }

    /// Starts `cmd` with a pipe on stdin ([`Proc::send_line`], [`Proc::take_stdin`]).
    pub fn spawn_with_stdin(cmd: Command, name: &str) -> Proc {
        Proc::start(cmd, name, true)
    }

    fn start(mut cmd: Command, name: &str, with_stdin: bool) -> Proc {
        cmd.stdin(if with_stdin { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), out.clone());
        collect(child.stderr.take().unwrap(), err.clone());
        let stdin = child.stdin.take();
        Proc { child, name: name.into(), out, err, stdin, exited: None }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes one line on the child's stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("started without stdin");
        let res = writeln!(stdin, "{line}").and_then(|_| stdin.flush());
        if let Err(e) = res {
            panic!("write to {}: {e}\n{}", self.name, self.dump());
        }
    }

    /// The write end of the child's stdin, for raw bytes; dropping it closes stdin.
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.stdin.take().expect("started without stdin, or stdin already taken")
    }

    /// Closes the child's stdin.
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }
    pub fn stdout(&self) -> String {
        self.stdout_lines().join("\n")
    }
    /// Number of stdout lines so far (to wait for lines after a point).
    pub fn stdout_len(&self) -> usize {
        self.out.lock().unwrap().len()
    }
    pub fn stderr(&self) -> String {
        self.err.lock().unwrap().join("\n")
    }
    /// Number of stderr lines so far (to look at what comes after a point).
    pub fn stderr_len(&self) -> usize {
        self.err.lock().unwrap().len()
    }
    pub fn stderr_since(&self, n: usize) -> String {
        self.err.lock().unwrap()[n..].join("\n")
    }

    /// `kill -s SIG PID`
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill").args(["-s", sig, &self.pid().to_string()]).status().unwrap();
        assert!(st.success(), "kill -s {sig} {} failed", self.pid());
    }

    /// The exit status if the process has ended.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().unwrap();
        }
        self.exited
    }

    /// Waits up to `limit` for the process to end.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_for(limit, PROC_POLL, || self.try_exit())
    }

    /// SIGKILL now (and reap).
    pub fn kill(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    /// Waits up to `limit` for a stdout line satisfying `pred`.
    pub fn wait_stdout(&self, limit: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        self.wait_stdout_after(0, limit, pred)
    }

    /// Waits up to `limit` for a stdout line, after the first `from` lines, satisfying `pred`.
    pub fn wait_stdout_after(&self, from: usize, limit: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        wait_for(limit, PROC_POLL, || self.stdout_lines().into_iter().skip(from).find(|l| pred(l)))
    }

    /// stdout lines that are JSON objects.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout_lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .filter(|v| v.is_object())
            .collect()
    }

    /// Waits up to `limit` for a JSON stdout line satisfying `pred`.
    pub fn wait_json(&self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        wait_for(limit, PROC_POLL, || self.json_lines().into_iter().find(|v| pred(v)))
    }

    /// Waits up to `limit` until 127.0.0.1:`port` accepts; panics, with `context` and
    /// the output so far, when the process ends first or the time runs out.
    #[track_caller]
    pub fn wait_listening(&mut self, port: u16, limit: Duration, context: &str) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.try_exit() {
                panic!("{} exited early ({st})\n{context}\n{}", self.name, self.dump());
            }
            if port_open(port) {
                return;
            }
            assert!(Instant::now() < deadline, "{} did not listen on {port}\n{context}\n{}", self.name, self.dump());
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn dump(&self) -> String {
        format!("--- {} stdout ---\n{}\n--- {} stderr ---\n{}", self.name, self.stdout(), self.name, self.stderr())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin.take();
        self.kill();
    }
}
