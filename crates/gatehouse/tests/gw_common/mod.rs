//! Harness for the gateway integration tests (`gw_*.rs`), per docs/gateway.md.
//!
//! Everything is a real process: the `gatehouse` binary (CA commands, `serve`,
//! `quickstart`), `curl`, `openssl s_client` / `openssl x509|ca|req`, and a tiny
//! python3 `http.server` upstream that answers with the request it received as
//! JSON. Every child process is owned by a guard that kills it on drop.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub use serde_json::Value;

pub const OPENSSL: &str = "openssl";
pub const CURL: &str = "curl";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gatehouse")
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// ---------------------------------------------------------------- small commands

/// Output of a finished command.
#[derive(Debug, Clone)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    fn from(o: std::process::Output) -> Out {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs a command with stdin closed, killing it after `limit`.
pub fn run_limited(mut cmd: Command, limit: Duration) -> Out {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    wait_output(child, limit, &format!("{cmd:?}"))
}

fn wait_output(mut child: Child, limit: Duration, what: &str) -> Out {
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t2 = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let stdout = String::from_utf8_lossy(&t1.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&t2.join().unwrap()).into_owned();
    match status {
        Some(st) => Out { code: st.code().unwrap_or(-1), stdout, stderr },
        None => Out { code: -9, stdout, stderr: format!("{stderr}\n[harness: {what} killed after {limit:?}]") },
    }
}

/// `openssl ARGS...` (asserts exit 0), stdout+stderr.
#[track_caller]
pub fn openssl_ok(args: &[&str]) -> String {
    let o = Out::from(Command::new(OPENSSL).args(args).stdin(Stdio::null()).output().expect("run openssl"));
    assert_eq!(o.code, 0, "openssl {args:?} failed:\n{}", o.all());
    o.all()
}

/// `openssl ARGS...` in a directory (asserts exit 0).
#[track_caller]
pub fn openssl_in(cwd: &Path, args: &[&str]) -> String {
    let o = Out::from(
        Command::new(OPENSSL).args(args).current_dir(cwd).stdin(Stdio::null()).output().expect("run openssl"),
    );
    assert_eq!(o.code, 0, "openssl {args:?} failed:\n{}", o.all());
    o.all()
}

// ---------------------------------------------------------------- encodings

pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

/// Canonical serial: uppercase hex without colons or leading zeros.
pub fn norm_serial(s: &str) -> String {
    let t: String = s.chars().filter(|c| *c != ':' && !c.is_whitespace()).collect::<String>().to_uppercase();
    let t = t.trim_start_matches('0');
    if t.is_empty() { "0".into() } else { t.to_string() }
}

// ---------------------------------------------------------------- certificates

/// A certificate and its key on disk.
#[derive(Debug, Clone)]
pub struct Cert {
    pub crt: PathBuf,
    pub key: PathBuf,
    /// Leaf + intermediate, when the CA wrote one.
    pub fullchain: Option<PathBuf>,
    /// Uppercase hex serial as `openssl x509 -serial` prints it.
    pub serial: String,
}

impl Cert {
    pub fn from_files(crt: PathBuf, key: PathBuf) -> Cert {
        let serial = serial_of(&crt);
        Cert { crt, key, fullchain: None, serial }
    }

    /// `--cert CRT --key KEY` for curl.
    pub fn curl_args(&self) -> Vec<String> {
        vec!["--cert".into(), s(&self.crt).into(), "--key".into(), s(&self.key).into()]
    }

    /// `-cert CRT -key KEY` for openssl s_client.
    pub fn s_client_args(&self) -> Vec<String> {
        vec!["-cert".into(), s(&self.crt).into(), "-key".into(), s(&self.key).into()]
    }

    /// DER of the leaf.
    pub fn der(&self) -> Vec<u8> {
        pem_to_der(&fs::read_to_string(&self.crt).unwrap())
    }

    /// Lowercase hex SHA-256 of the leaf's DER.
    pub fn sha256_hex(&self) -> String {
        let o = openssl_ok(&["x509", "-in", s(&self.crt), "-noout", "-fingerprint", "-sha256"]);
        let v = o.trim().rsplit('=').next().unwrap().replace(':', "").to_lowercase();
        assert_eq!(v.len(), 64, "bad fingerprint output {o}");
        v
    }
}

/// `openssl x509 -serial -noout` -> HEX
#[track_caller]
pub fn serial_of(crt: &Path) -> String {
    let out = openssl_ok(&["x509", "-in", s(crt), "-serial", "-noout"]);
    out.lines()
        .find_map(|l| l.trim().strip_prefix("serial="))
        .unwrap_or_else(|| panic!("no serial= in {out}"))
        .to_string()
}

/// DER of the first certificate in a PEM text, via `openssl x509 -outform DER`.
pub fn pem_to_der(pem: &str) -> Vec<u8> {
    let mut child = Command::new(OPENSSL)
        .args(["x509", "-outform", "DER"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(pem.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "openssl x509 -outform DER: {}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// Split a PEM bundle into its certificate blocks.
pub fn pem_certs(bundle: &str) -> Vec<String> {
    let mut v = Vec::new();
    let mut cur: Option<String> = None;
    for line in bundle.lines() {
        if line.starts_with("-----BEGIN CERTIFICATE-----") {
            cur = Some(String::new());
        }
        if let Some(c) = cur.as_mut() {
            c.push_str(line);
            c.push('\n');
        }
        if line.starts_with("-----END CERTIFICATE-----")
            && let Some(c) = cur.take()
        {
            v.push(c);
        }
    }
    v
}

// ---------------------------------------------------------------- test environment

/// A temp dir with an internal CA in `DIR/data` (from `gatehouse ca init`).
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    /// `gatehouse --data-dir T/data ca init`
    pub fn new() -> Env {
        let env = Env::empty();
        env.gh_ok(&["ca", "init"]);
        fs::create_dir_all(env.path().join("certs")).unwrap();
        env
    }

    /// A temp dir without a CA.
    pub fn empty() -> Env {
        Env { dir: tempfile::Builder::new().prefix("gatehouse-gw-").tempdir().unwrap() }
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
    pub fn intermediate_key(&self) -> PathBuf {
        self.data().join("ca/intermediate.key")
    }

    /// `gatehouse --data-dir T/data ARGS...` with cwd T.
    pub fn gh(&self, args: &[&str]) -> Out {
        let mut c = Command::new(bin());
        c.arg("--data-dir").arg(self.data()).args(args).current_dir(self.path());
        c.env_remove("GATEHOUSE_CA_PASSPHRASE").env_remove("GATEHOUSE_DATA_DIR");
        run_limited(c, Duration::from_secs(30))
    }

    #[track_caller]
    pub fn gh_ok(&self, args: &[&str]) -> String {
        let o = self.gh(args);
        assert_eq!(o.code, 0, "gatehouse {args:?} failed:\n{}", o.all());
        o.stdout
    }

    /// `gatehouse ca issue --profile P --cn CN --san ... --out T/certs`
    #[track_caller]
    pub fn issue(&self, profile: &str, cn: &str, sans: &[&str]) -> Cert {
        let out = self.path().join("certs");
        let mut args = vec!["ca", "issue", "--profile", profile, "--cn", cn, "--out", s(&out)];
        for san in sans {
            args.push("--san");
            args.push(san);
        }
        self.gh_ok(&args);
        let crt = out.join(format!("{cn}.crt"));
        let mut c = Cert::from_files(crt, out.join(format!("{cn}.key")));
        c.fullchain = Some(out.join(format!("{cn}.fullchain.pem")));
        c
    }

    /// A client certificate from the internal CA.
    pub fn client(&self, cn: &str) -> Cert {
        self.issue("client", cn, &[])
    }

    /// Server certificate for `localhost` and `127.0.0.1` from the internal CA.
    pub fn localhost_server(&self) -> Cert {
        self.issue("server", "localhost", &["DNS:localhost", "IP:127.0.0.1"])
    }

    /// `certificate = { cert = ..., key = ... }` value with the file pair (fullchain).
    pub fn cert_toml(c: &Cert) -> String {
        format!("{{ cert = \"{}\", key = \"{}\" }}", s(c.fullchain.as_ref().unwrap_or(&c.crt)), s(&c.key))
    }

    /// A fresh EC key and CSR in T/certs; returns (csr, key).
    pub fn csr(&self, name: &str, cn: &str) -> (PathBuf, PathBuf) {
        let d = self.path().join("certs");
        let csr = d.join(format!("{name}.csr"));
        let key = d.join(format!("{name}.key"));
        let subj = format!("/CN={cn}");
        openssl_ok(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            s(&key),
            "-out",
            s(&csr),
            "-subj",
            &subj,
        ]);
        (csr, key)
    }

    /// An X.509 v1 client certificate signed by the internal intermediate key
    /// (`openssl x509 -req` without -extfile).
    pub fn v1_client(&self, cn: &str) -> Cert {
        let (csr, key) = self.csr(&format!("{cn}-v1"), cn);
        let crt = self.path().join("certs").join(format!("{cn}-v1.crt"));
        openssl_ok(&[
            "x509",
            "-req",
            "-in",
            s(&csr),
            "-CA",
            s(&self.intermediate()),
            "-CAkey",
            s(&self.intermediate_key()),
            "-set_serial",
            "0x5A17C0FFEE0001",
            "-days",
            "30",
            "-sha256",
            "-out",
            s(&crt),
        ]);
        let text = openssl_ok(&["x509", "-in", s(&crt), "-noout", "-text"]);
        assert!(text.contains("Version: 1 (0x0)"), "expected an X.509 v1 certificate:\n{text}");
        Cert::from_files(crt, key)
    }

    /// A v3 client certificate (EKU clientAuth) from the internal intermediate
    /// whose validity ended in 2020 (`openssl ca -startdate/-enddate`).
    pub fn expired_client(&self, cn: &str) -> Cert {
        self.openssl_ca_client(cn, "20200101000000Z", "20200201000000Z")
    }

    /// `openssl ca` with a minimal config, signing with the internal intermediate.
    pub fn openssl_ca_client(&self, cn: &str, start: &str, end: &str) -> Cert {
        let d = self.path().join(format!("openssl-ca-{cn}"));
        fs::create_dir_all(d.join("newcerts")).unwrap();
        fs::write(d.join("index.txt"), "").unwrap();
        fs::write(
            d.join("ca.cnf"),
            "[ca]\ndefault_ca = CA_default\n[CA_default]\ndir = .\ndatabase = index.txt\nnew_certs_dir = newcerts\n\
             serial = serial\nrand_serial = yes\ndefault_md = sha256\npolicy = policy_any\ncopy_extensions = none\n\
             unique_subject = no\n[policy_any]\ncommonName = supplied\n[ext]\n\
             basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
             extendedKeyUsage = clientAuth\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n",
        )
        .unwrap();
        let (csr, key) = self.csr(cn, cn);
        let crt = d.join(format!("{cn}.crt"));
        openssl_in(
            &d,
            &[
                "ca",
                "-config",
                "ca.cnf",
                "-batch",
                "-notext",
                "-cert",
                s(&self.intermediate()),
                "-keyfile",
                s(&self.intermediate_key()),
                "-in",
                s(&csr),
                "-out",
                s(&crt),
                "-startdate",
                start,
                "-enddate",
                end,
                "-extensions",
                "ext",
            ],
        );
        Cert::from_files(crt, key)
    }

    /// A client certificate from a second, unrelated gatehouse CA (named differently).
    pub fn foreign_client(&self, cn: &str) -> Cert {
        let other = self.path().join("other-ca");
        let run = |args: &[&str]| {
            let mut c = Command::new(bin());
            c.arg("--data-dir").arg(&other).args(args).current_dir(self.path());
            let o = run_limited(c, Duration::from_secs(30));
            assert_eq!(o.code, 0, "gatehouse {args:?} (other CA) failed:\n{}", o.all());
        };
        if !other.join("ca/root.crt").exists() {
            run(&["ca", "init", "--name", "Unrelated Org"]);
        }
        let out = self.path().join("other-certs");
        fs::create_dir_all(&out).unwrap();
        run(&["ca", "issue", "--profile", "client", "--cn", cn, "--out", s(&out)]);
        Cert::from_files(out.join(format!("{cn}.crt")), out.join(format!("{cn}.key")))
    }

    /// Writes `T/NAME` and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        fs::write(&p, text).unwrap();
        p
    }
}

// ---------------------------------------------------------------- ports

/// A port that was free a moment ago (bind port 0, read it, release it).
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

/// Waits until 127.0.0.1:port accepts TCP connections.
pub fn port_open(port: u16) -> bool {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

// ---------------------------------------------------------------- processes

/// A child process whose stdout and stderr lines are collected; killed on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
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
    pub fn spawn(mut cmd: Command, name: &str) -> Proc {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), out.clone());
        collect(child.stderr.take().unwrap(), err.clone());
        Proc { child, name: name.into(), out, err, exited: None }
    }

    /// Like [`Proc::spawn`] but stdin stays open; returns its write end.
    pub fn spawn_with_stdin(mut cmd: Command, name: &str) -> (Proc, std::process::ChildStdin) {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdin = child.stdin.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), out.clone());
        collect(child.stderr.take().unwrap(), err.clone());
        (Proc { child, name: name.into(), out, err, exited: None }, stdin)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
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
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------- python upstream

/// Answers every request with JSON {method, path, headers: [[name, value], ...]};
/// paths starting with /slow sleep 3 s first; /ws with an Upgrade header answers 101 and
/// echoes raw bytes prefixed with `echo:`. Prints its port on the first line.
pub const UPSTREAM_PY: &str = r#"
import json, sys, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        if self.path.startswith("/ws") and self.headers.get("Upgrade"):
            # Minimal Upgrade: 101, then echo raw bytes until the peer closes.
            self.send_response(101)
            self.send_header("Upgrade", self.headers.get("Upgrade"))
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            while True:
                data = self.connection.recv(4096)
                if not data:
                    break
                self.connection.sendall(b"echo:" + data)
            self.close_connection = True
            return
        if self.path.startswith("/slow"):
            time.sleep(3)
        n = int(self.headers.get("Content-Length") or 0)
        body_in = self.rfile.read(n).decode("utf-8", "replace") if n else ""
        body = json.dumps({"method": self.command, "path": self.path,
                           "headers": [[k, v] for k, v in self.headers.items()],
                           "body": body_in}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = answer
    do_POST = answer
    def log_message(self, *a):
        pass

class S(ThreadingHTTPServer):
    daemon_threads = True

s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// The python upstream.
pub struct Upstream {
    pub proc: Proc,
    pub port: u16,
}

impl Upstream {
    pub fn start(env: &Env) -> Upstream {
        let script = env.path().join("upstream.py");
        fs::write(&script, UPSTREAM_PY).unwrap();
        let mut c = Command::new("python3");
        c.arg("-u").arg(&script);
        let proc = Proc::spawn(c, "python upstream");
        let line = proc
            .wait_stdout(Duration::from_secs(10), |l| l.trim().parse::<u16>().is_ok())
            .unwrap_or_else(|| panic!("python upstream did not start\n{}", proc.dump()));
        let port = line.trim().parse().unwrap();
        Upstream { proc, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

// ---------------------------------------------------------------- the gateway

/// `gatehouse serve --config T/gw.toml`, killed on drop.
pub struct Gateway {
    pub proc: Proc,
    pub https: u16,
    pub config: PathBuf,
    pub root: PathBuf,
}

/// `[listen]` block on 127.0.0.1 with the given ports.
pub fn listen_toml(https: u16, http: Option<u16>, admin: Option<u16>) -> String {
    let mut t = format!("[listen]\nhttps = \"127.0.0.1:{https}\"\n");
    if let Some(p) = http {
        t.push_str(&format!("http = \"127.0.0.1:{p}\"\n"));
    }
    if let Some(p) = admin {
        t.push_str(&format!("admin = \"127.0.0.1:{p}\"\n"));
    }
    t
}

/// `[[upstream]] name = NAME servers = [URL]`
pub fn upstream_toml(name: &str, url: &str) -> String {
    format!("\n[[upstream]]\nname = \"{name}\"\nservers = [\"{url}\"]\n")
}

impl Gateway {
    /// Writes `T/gw.toml` and starts `gatehouse --data-dir T/data serve --config T/gw.toml`
    /// from the directory `/` (so relative paths must resolve against the config's directory);
    /// waits until the https port accepts.
    pub fn start(env: &Env, https: u16, toml: &str) -> Gateway {
        let config = env.write("gw.toml", toml);
        let mut c = Command::new(bin());
        c.arg("--data-dir").arg(env.data()).arg("serve").arg("--config").arg(&config);
        c.current_dir("/");
        c.env_remove("GATEHOUSE_CA_PASSPHRASE").env_remove("GATEHOUSE_DATA_DIR");
        let mut proc = Proc::spawn(c, "gatehouse serve");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = proc.try_exit() {
                panic!("gatehouse serve exited early ({st})\nconfig:\n{toml}\n{}", proc.dump());
            }
            if port_open(https) {
                break;
            }
            if Instant::now() >= deadline {
                panic!("gatehouse serve did not listen on {https}\n{}", proc.dump());
            }
            thread::sleep(Duration::from_millis(50));
        }
        Gateway { proc, https, config, root: env.root() }
    }

    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.https)
    }

    /// curl https://HOST:PORT/PATH with --cacert root and --resolve HOST:PORT:127.0.0.1.
    pub fn curl(&self, host: &str, path: &str, extra: &[&str]) -> Resp {
        let mut args: Vec<String> = vec!["--cacert".into(), s(&self.root).into()];
        if host.parse::<std::net::IpAddr>().is_err() {
            args.push("--resolve".into());
            args.push(format!("{host}:{}:127.0.0.1", self.https));
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        args.push(self.url(host, path));
        curl(&args)
    }

    /// Same with a client certificate.
    pub fn curl_cert(&self, host: &str, path: &str, cert: &Cert, extra: &[&str]) -> Resp {
        let ca = cert.curl_args();
        let mut all: Vec<&str> = ca.iter().map(String::as_str).collect();
        all.extend_from_slice(extra);
        self.curl(host, path, &all)
    }

    /// `openssl s_client -connect 127.0.0.1:PORT ARGS` with `input` on stdin (then EOF).
    pub fn s_client(&self, args: &[&str], input: &str) -> Out {
        s_client(self.https, args, input)
    }

    /// Access lines (`"event":"request"`).
    pub fn access_lines(&self) -> Vec<Value> {
        self.proc.json_lines().into_iter().filter(|v| v["event"] == "request").collect()
    }

    /// Waits for the access line of a request id.
    pub fn access_line_for(&self, request_id: &str) -> Option<Value> {
        self.proc.wait_json(Duration::from_secs(5), |v| v["event"] == "request" && v["request_id"] == request_id)
    }

    /// Waits for a handshake/client-cert log line with this event and reason.
    pub fn wait_refusal(&self, event: &str, reason: &str, limit: Duration) -> Option<Value> {
        self.proc.wait_json(limit, |v| v["event"] == event && v["reason"] == reason)
    }

    /// Rewrites the config file (same path).
    pub fn rewrite_config(&self, toml: &str) {
        let tmp = self.config.with_extension("toml.new");
        fs::write(&tmp, toml).unwrap();
        fs::rename(&tmp, &self.config).unwrap();
    }
}

/// `openssl s_client -connect 127.0.0.1:PORT ARGS` kept running with stdin open.
pub fn s_client_open(port: u16, args: &[&str]) -> (Proc, std::process::ChildStdin) {
    let connect = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(OPENSSL);
    cmd.args(["s_client", "-connect", &connect]).args(args);
    Proc::spawn_with_stdin(cmd, "openssl s_client")
}

/// `openssl s_client -connect 127.0.0.1:PORT ARGS` with `input` on stdin, then EOF.
pub fn s_client(port: u16, args: &[&str], input: &str) -> Out {
    let connect = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(OPENSSL);
    cmd.args(["s_client", "-connect", &connect]).args(args);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn openssl s_client");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
        // Give the handshake (and an answer) time before EOF makes s_client quit.
        thread::sleep(Duration::from_millis(500));
        drop(stdin);
    });
    wait_output(child, Duration::from_secs(15), "openssl s_client")
}

/// The first certificate s_client -showcerts printed (the server's leaf).
pub fn first_pem(s_client_output: &str) -> Option<String> {
    pem_certs(s_client_output).into_iter().next()
}

// ---------------------------------------------------------------- curl

/// The outcome of one curl run.
#[derive(Debug, Clone)]
pub struct Resp {
    /// curl's exit code (0 when an HTTP response arrived).
    pub exit: i32,
    pub status: u16,
    /// `%{http_version}`: "1.1", "2", ...
    pub http_version: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub stderr: String,
}

static CURL_N: AtomicU64 = AtomicU64::new(0);

/// `curl -sS --max-time 20 -D H -o B -w ... ARGS...`
pub fn curl(args: &[String]) -> Resp {
    let n = CURL_N.fetch_add(1, Ordering::SeqCst);
    let base = std::env::temp_dir().join(format!("gatehouse-gw-curl-{}-{n}", std::process::id()));
    let (hfile, bfile) = (base.with_extension("h"), base.with_extension("b"));
    let mut cmd = Command::new(CURL);
    cmd.args(["-sS", "--max-time", "20", "-D"]).arg(&hfile).arg("-o").arg(&bfile);
    cmd.args(["-w", "%{http_code}\n%{http_version}\n"]);
    cmd.args(args);
    let o = run_limited(cmd, Duration::from_secs(30));
    let head = fs::read_to_string(&hfile).unwrap_or_default();
    let body = fs::read(&bfile).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let _ = fs::remove_file(&hfile);
    let _ = fs::remove_file(&bfile);
    let mut w = o.stdout.lines();
    let status = w.next().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    let http_version = w.next().unwrap_or("").trim().to_string();
    // The last header block (curl writes one per response it saw).
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
    Resp { exit: o.code, status, http_version, headers, body, stderr: o.stderr }
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// What the python upstream received.
    #[track_caller]
    pub fn upstream(&self) -> Received {
        let v = self.json();
        let headers = v["headers"]
            .as_array()
            .unwrap_or_else(|| panic!("not an upstream echo: {self:?}"))
            .iter()
            .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_str().unwrap().to_string()))
            .collect();
        Received { method: v["method"].as_str().unwrap().into(), path: v["path"].as_str().unwrap().into(), headers }
    }

    pub fn ok(&self) -> bool {
        self.exit == 0 && self.status == 200
    }
}

/// The request the upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Received {
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone()).collect()
    }
    /// The single value of a header (panics when it is repeated).
    #[track_caller]
    pub fn one(&self, name: &str) -> Option<String> {
        let v = self.all(name);
        assert!(v.len() <= 1, "header {name} sent upstream {} times: {v:?}", v.len());
        v.into_iter().next()
    }
}

// ---------------------------------------------------------------- raw sockets

/// Reads until EOF/reset or `limit`; returns (bytes, closed_by_peer, elapsed).
pub fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool, Duration) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return (got, false, start.elapsed());
        }
        stream.set_read_timeout(Some(left.min(Duration::from_millis(200)))).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (got, true, start.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return (got, true, start.elapsed()),
        }
    }
}

/// Polls `f` every 100 ms until it returns true or `limit` passes; returns the elapsed time on success.
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

// ---------------------------------------------------------------- one-site configs

/// The server certificate for localhost/127.0.0.1 (issued once per Env).
pub fn localhost_cert(env: &Env) -> Cert {
    let crt = env.path().join("certs/localhost.crt");
    if crt.exists() {
        let mut c = Cert::from_files(crt, env.path().join("certs/localhost.key"));
        c.fullchain = Some(env.path().join("certs/localhost.fullchain.pem"));
        c
    } else {
        env.localhost_server()
    }
}

/// A config with one site for `localhost` and `127.0.0.1` (certificate from files) whose
/// upstream is `app` = the python upstream. `top` goes before the site (its own tables),
/// `site` inside `[[site]]` (keys, then any `[[site.route]]`).
pub fn localhost_config(env: &Env, listen: &str, up: &Upstream, top: &str, site: &str) -> String {
    let cert = localhost_cert(env);
    format!(
        "{listen}\n{top}\n[[site]]\nhosts = [\"localhost\", \"127.0.0.1\"]\ncertificate = {}\nupstream = \"app\"\n{site}\n{}",
        Env::cert_toml(&cert),
        upstream_toml("app", &up.url())
    )
}

impl Gateway {
    /// Starts a gateway with [`localhost_config`] on a free https port.
    pub fn localhost(env: &Env, up: &Upstream, top: &str, site: &str) -> Gateway {
        let https = free_port();
        let toml = localhost_config(env, &listen_toml(https, None, None), up, top, site);
        Gateway::start(env, https, &toml)
    }
}

// ---------------------------------------------------------------- static file server (added for gw_more_*)

/// Serves the files of `sys.argv[1]` over plain HTTP on 127.0.0.1 (port 0); prints the port.
pub const FILES_PY: &str = r#"
import sys, functools
from http.server import ThreadingHTTPServer, SimpleHTTPRequestHandler

class H(SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass

class S(ThreadingHTTPServer):
    daemon_threads = True

s = S(("127.0.0.1", 0), functools.partial(H, directory=sys.argv[1]))
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// `/usr/bin/python3` `http.server` serving a directory, killed on drop.
pub struct FileServer {
    pub proc: Proc,
    pub port: u16,
}

impl FileServer {
    pub fn start(env: &Env, dir: &Path) -> FileServer {
        let script = env.path().join("files.py");
        fs::write(&script, FILES_PY).unwrap();
        let mut c = Command::new("/usr/bin/python3");
        c.arg("-u").arg(&script).arg(dir);
        let proc = Proc::spawn(c, "python file server");
        let line = proc
            .wait_stdout(Duration::from_secs(10), |l| l.trim().parse::<u16>().is_ok())
            .unwrap_or_else(|| panic!("python file server did not start\n{}", proc.dump()));
        let port = line.trim().parse().unwrap();
        FileServer { proc, port }
    }

    /// `http://127.0.0.1:PORT/NAME`
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

// ---------------------------------------------------------------- time (added for gw_more_*)

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// `YYYYMMDDHHMMSSZ` (as `openssl ca -startdate/-enddate` take it) for a Unix time.
pub fn openssl_time(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil from days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}{m:02}{d:02}{:02}{:02}{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}
