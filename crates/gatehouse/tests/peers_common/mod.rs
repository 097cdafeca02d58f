//! Harness for the peer tests (`peers_*.rs`): the gateway (docs/gateway.md)
//! against real third-party programs: nginx as an origin that requires a
//! client certificate, Debian's /usr/bin/python3 with `websockets` and
//! `http.server`, Chromium with an NSS database, curl and openssl.
//!
//! Every process is started with `std::process::Command` and owned by a guard
//! that kills it (by its own pid, or its own process group) on drop. Ports are
//! free 127.0.0.1 ports picked at run time.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub use serde_json::Value;

/// Debian's python3 (the one `python3-websockets` is installed for), not a pyenv one on PATH.
pub const PYTHON: &str = "/usr/bin/python3";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gatehouse")
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

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
    /// Exit code; -9 when the harness killed it at its time limit.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn all(&self) -> String {
        format!("--- stdout ---\n{}\n--- stderr ---\n{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` (stdin closed) in its own process group; after `limit` the whole
/// group is killed (Chromium forks helpers).
pub fn run_limited(mut cmd: Command, limit: Duration) -> Out {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.process_group(0);
    let what = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let pid = child.id();
    let reader = |mut r: Box<dyn Read + Send>| {
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            let _ = tx.send(v);
        });
        rx
    };
    let so = reader(Box::new(child.stdout.take().unwrap()));
    let se = reader(Box::new(child.stderr.take().unwrap()));
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
    let mut take = |rx: &std::sync::mpsc::Receiver<Vec<u8>>| -> Vec<u8> {
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
    let stdout = String::from_utf8_lossy(&take(&so)).into_owned();
    let stderr = String::from_utf8_lossy(&take(&se)).into_owned();
    match status {
        Some(st) => Out { code: st.code().unwrap_or(-1), stdout, stderr },
        None => Out { code: -9, stdout, stderr: format!("{stderr}\n[harness: {what} killed after {limit:?}]") },
    }
}

/// `kill -KILL -- -PGID`: the process group this harness created for one child.
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

// ---------------------------------------------------------------- ports

/// A port that was free a moment ago.
/// A free port for a server the test starts. Taken below the kernel's ephemeral range
/// (32768 and up), which bind(0) and outgoing connections draw from, and from a counter,
/// so no other socket of this test run can take it between this probe and the server's
/// bind: with bind(0)-and-release, two tests could be handed the same port.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(97) % 12_000;
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = 20_000 + ((start + n) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn port_open(port: u16) -> bool {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// Polls `f` every 100 ms until it is true or `limit` passes; the elapsed time on success.
pub fn poll_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        thread::sleep(Duration::from_millis(100));
    }
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

impl Proc {
    /// Starts `cmd` with stdin closed.
    pub fn spawn(cmd: Command, name: &str) -> Proc {
        Proc::start(cmd, name, false)
    }

    /// Starts `cmd` with a pipe on stdin ([`Proc::send_line`]).
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
    pub fn stderr(&self) -> String {
        self.err.lock().unwrap().join("\n")
    }

    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().unwrap();
        }
        self.exited
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.try_exit() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
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
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self.stdout_lines().into_iter().find(|l| pred(l)) {
                return Some(l);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Number of stdout lines so far (to wait for lines after a point).
    pub fn stdout_len(&self) -> usize {
        self.out.lock().unwrap().len()
    }

    /// Waits up to `limit` for a stdout line, after the first `from` lines, satisfying `pred`.
    pub fn wait_stdout_after(&self, from: usize, limit: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self.stdout_lines().into_iter().skip(from).find(|l| pred(l)) {
                return Some(l);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// stdout lines that are JSON objects.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout_lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .filter(|v| v.is_object())
            .collect()
    }

    pub fn wait_json(&self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = self.json_lines().into_iter().find(|v| pred(v)) {
                return Some(v);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
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

// ---------------------------------------------------------------- the CA and a temp dir

/// A temp dir `T` with an internal CA in `T/data` and issued certificates in `T/certs`.
pub struct Env {
    pub dir: tempfile::TempDir,
}

/// A certificate issued by `gatehouse ca issue`.
#[derive(Debug, Clone)]
pub struct Issued {
    pub crt: PathBuf,
    pub key: PathBuf,
    pub fullchain: PathBuf,
    pub p12: Option<PathBuf>,
}

impl Env {
    /// `gatehouse --data-dir T/data ca init`
    pub fn new() -> Env {
        let env = Env { dir: tempfile::Builder::new().prefix("gatehouse-peers-").tempdir().unwrap() };
        env.gh_ok(&["ca", "init"]);
        fs::create_dir_all(env.path().join("certs")).unwrap();
        env
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn data(&self) -> PathBuf {
        self.path().join("data")
    }
    pub fn root(&self) -> PathBuf {
        self.data().join("ca/root.crt")
    }
    pub fn intermediate(&self) -> PathBuf {
        self.data().join("ca/intermediate.crt")
    }

    /// `gatehouse --data-dir T/data ARGS...` (cwd T).
    pub fn gh(&self, args: &[&str]) -> Out {
        gh_with_data(&self.data(), self.path(), args)
    }

    #[track_caller]
    pub fn gh_ok(&self, args: &[&str]) -> String {
        let o = self.gh(args);
        assert_eq!(o.code, 0, "gatehouse {args:?} failed:\n{}", o.all());
        o.stdout
    }

    /// `gatehouse ca issue --profile P --cn CN [--san ...] --out OUT [EXTRA...]`
    #[track_caller]
    pub fn issue_in(&self, out: &Path, profile: &str, cn: &str, sans: &[&str], extra: &[&str]) -> Issued {
        fs::create_dir_all(out).unwrap();
        let mut args = vec!["ca", "issue", "--profile", profile, "--cn", cn, "--out", s(out)];
        for san in sans {
            args.push("--san");
            args.push(san);
        }
        args.extend_from_slice(extra);
        self.gh_ok(&args);
        let crt = out.join(format!("{cn}.crt"));
        assert!(crt.exists(), "ca issue wrote no {}", crt.display());
        let p12 = out.join(format!("{cn}.p12"));
        Issued {
            crt,
            key: out.join(format!("{cn}.key")),
            fullchain: out.join(format!("{cn}.fullchain.pem")),
            p12: p12.exists().then_some(p12),
        }
    }

    /// Same, in `T/certs`.
    #[track_caller]
    pub fn issue(&self, profile: &str, cn: &str, sans: &[&str]) -> Issued {
        self.issue_in(&self.path().join("certs"), profile, cn, sans, &[])
    }

    /// Writes `T/NAME` and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        if let Some(d) = p.parent() {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(&p, text).unwrap();
        p
    }

    /// A second, unrelated CA in `T/NAME` (its own `ca init`); returns its root certificate.
    #[track_caller]
    pub fn other_ca(&self, name: &str) -> PathBuf {
        let d = self.path().join(name);
        let o = gh_with_data(&d, self.path(), &["ca", "init", "--name", "Unrelated Org"]);
        assert_eq!(o.code, 0, "ca init of a second CA failed:\n{}", o.all());
        d.join("ca/root.crt")
    }
}

/// `gatehouse --data-dir DATA ARGS...` with cwd `cwd`.
pub fn gh_with_data(data: &Path, cwd: &Path, args: &[&str]) -> Out {
    let mut c = Command::new(bin());
    c.arg("--data-dir").arg(data).args(args).current_dir(cwd);
    c.env_remove("GATEHOUSE_CA_PASSPHRASE").env_remove("GATEHOUSE_DATA_DIR");
    run_limited(c, Duration::from_secs(60))
}

// ---------------------------------------------------------------- the gateway

/// `gatehouse --data-dir T/data serve --config T/NAME`, run from `/` (so relative
/// paths in the config must resolve against the config's directory); killed on drop.
pub struct Gateway {
    pub proc: Proc,
    pub https: u16,
    pub config: PathBuf,
    pub root: PathBuf,
}

impl Gateway {
    /// Writes the config file `T/NAME` and waits until the https port accepts.
    #[track_caller]
    pub fn start(env: &Env, name: &str, https: u16, toml: &str) -> Gateway {
        let config = env.write(name, toml);
        let mut c = Command::new(bin());
        c.arg("--data-dir").arg(env.data()).arg("serve").arg("--config").arg(&config);
        c.current_dir("/").env_remove("GATEHOUSE_CA_PASSPHRASE").env_remove("GATEHOUSE_DATA_DIR");
        let mut proc = Proc::spawn(c, "gatehouse serve");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = proc.try_exit() {
                panic!("gatehouse serve exited early ({st})\nconfig:\n{toml}\n{}", proc.dump());
            }
            if port_open(https) {
                break;
            }
            assert!(Instant::now() < deadline, "gatehouse serve did not listen on {https}\n{}", proc.dump());
            thread::sleep(Duration::from_millis(50));
        }
        Gateway { proc, https, config, root: env.root() }
    }

    /// `https://HOST:PORT/PATH` with `--cacert root --resolve HOST:PORT:127.0.0.1` and `extra` curl args.
    pub fn curl(&self, host: &str, path: &str, extra: &[&str]) -> Resp {
        let url = format!("https://{host}:{}{path}", self.https);
        let resolve = format!("{host}:{}:127.0.0.1", self.https);
        let mut args = vec!["--cacert", s(&self.root), "--resolve", &resolve];
        args.extend_from_slice(extra);
        args.push(&url);
        curl(&args)
    }

    /// Same, presenting a client certificate.
    pub fn curl_cert(&self, host: &str, path: &str, cert: &Issued) -> Resp {
        self.curl(host, path, &["--cert", s(&cert.crt), "--key", s(&cert.key)])
    }

    /// Replaces the config file (write + rename, same path).
    pub fn rewrite_config(&self, toml: &str) {
        let tmp = self.config.with_extension("toml.new");
        fs::write(&tmp, toml).unwrap();
        fs::rename(&tmp, &self.config).unwrap();
    }

    pub fn access_lines(&self) -> Vec<Value> {
        self.proc.json_lines().into_iter().filter(|v| v["event"] == "request").collect()
    }
}

// ---------------------------------------------------------------- curl

/// One curl run.
#[derive(Debug, Clone)]
pub struct Resp {
    /// curl's exit code (0 when a response arrived).
    pub exit: i32,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub stderr: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

static CURL_N: AtomicU64 = AtomicU64::new(0);

/// `curl -sS --max-time 20 -D H -o B -w %{http_code} ARGS...`
pub fn curl(args: &[&str]) -> Resp {
    let n = CURL_N.fetch_add(1, Ordering::SeqCst);
    let base = std::env::temp_dir().join(format!("gatehouse-peers-curl-{}-{n}", std::process::id()));
    let (hfile, bfile) = (base.with_extension("h"), base.with_extension("b"));
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "-D"]).arg(&hfile).arg("-o").arg(&bfile);
    cmd.args(["-w", "%{http_code}"]).args(args);
    let o = run_limited(cmd, Duration::from_secs(30));
    let head = fs::read_to_string(&hfile).unwrap_or_default();
    let body = fs::read(&bfile).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let _ = fs::remove_file(&hfile);
    let _ = fs::remove_file(&bfile);
    let status = o.stdout.trim().parse().unwrap_or(0);
    let block = head
        .replace("\r\n", "\n")
        .split("\n\n")
        .filter(|b| b.trim_start().starts_with("HTTP/"))
        .last()
        .unwrap_or("")
        .to_string();
    let headers = block
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect();
    Resp { exit: o.code, status, headers, body, stderr: o.stderr }
}

// ---------------------------------------------------------------- python peers

/// Runs `/usr/bin/python3 -u SCRIPT ARGS...` (script written to `T/FILE`) and waits
/// for its first stdout line, which the scripts here use to print their port.
#[track_caller]
pub fn python_server(env: &Env, file: &str, script: &str, args: &[&str], name: &str) -> (Proc, String) {
    let path = env.path().join(file);
    if !path.exists() {
        fs::write(&path, script).unwrap();
    }
    let mut c = Command::new(PYTHON);
    c.arg("-u").arg(&path).args(args).current_dir(env.path());
    let proc = Proc::spawn(c, name);
    let first = proc
        .wait_stdout(Duration::from_secs(15), |l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("{name} printed nothing\n{}", proc.dump()));
    (proc, first.trim().to_string())
}

// ---------------------------------------------------------------- nginx

/// `nginx -p T/nginx -c T/nginx/nginx.conf` in the foreground as one process
/// (`master_process off`), so killing its pid stops it; killed on drop.
pub struct Nginx {
    pub proc: Proc,
    pub port: u16,
}

impl Nginx {
    /// Writes `T/nginx/nginx.conf` with `http_body` inside `http { }` and starts nginx,
    /// waiting until `port` accepts.
    #[track_caller]
    pub fn start(env: &Env, port: u16, http_body: &str) -> Nginx {
        require("nginx");
        let prefix = env.path().join("nginx");
        fs::create_dir_all(prefix.join("logs")).unwrap();
        fs::create_dir_all(prefix.join("tmp")).unwrap();
        let tmp = prefix.join("tmp");
        let t = s(&tmp);
        let conf = format!(
            "worker_processes 1;\n\
             events {{ worker_connections 128; }}\n\
             http {{\n\
             access_log off;\n\
             client_body_temp_path {t}/body; proxy_temp_path {t}/proxy; fastcgi_temp_path {t}/fastcgi;\n\
             uwsgi_temp_path {t}/uwsgi; scgi_temp_path {t}/scgi;\n\
             {http_body}\n}}\n"
        );
        let conf_path = prefix.join("nginx.conf");
        fs::write(&conf_path, &conf).unwrap();
        let pid = prefix.join("nginx.pid");
        let globals = format!("daemon off; master_process off; pid {}; error_log stderr;", s(&pid));
        let mut c = Command::new("nginx");
        c.arg("-p").arg(&prefix).arg("-c").arg(&conf_path).arg("-g").arg(globals);
        let mut proc = Proc::spawn(c, "nginx");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = proc.try_exit() {
                panic!("nginx exited ({st})\n{conf}\n{}", proc.dump());
            }
            if port_open(port) {
                break;
            }
            assert!(Instant::now() < deadline, "nginx did not listen on {port}\n{conf}\n{}", proc.dump());
            thread::sleep(Duration::from_millis(50));
        }
        Nginx { proc, port }
    }
}

// ---------------------------------------------------------------- admin /metrics

/// `GET http://127.0.0.1:ADMIN/metrics` body.
pub fn metrics(admin: u16) -> String {
    let url = format!("http://127.0.0.1:{admin}/metrics");
    let r = curl(&[&url]);
    assert_eq!(r.status, 200, "GET /metrics: {r:?}");
    r.body
}

/// The value of one Prometheus sample line `NAME{LABELS} VALUE`.
pub fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}
