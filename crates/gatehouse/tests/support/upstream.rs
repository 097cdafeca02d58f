//! Servers the tests start for the gateway to reach: the python3 echo upstream, a
//! static file server (CRLs, pages), any python3 script that prints its port, and
//! nginx. Each is a [`Proc`], killed on drop.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::env::Env;
use super::process::{PYTHON, Proc, require};
use super::s;

/// Runs `/usr/bin/python3 -u SCRIPT ARGS...` (script written to `T/FILE`, cwd T) and
/// waits for its first stdout line, which the scripts here use to print their port.
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

/// [`python_server`] for a script whose first line is its port.
#[track_caller]
fn python_server_port(env: &Env, file: &str, script: &str, args: &[&str], name: &str) -> (Proc, u16) {
    let (proc, first) = python_server(env, file, script, args, name);
    let port = first.parse().unwrap_or_else(|_| panic!("{name} printed {first:?}, not a port\n{}", proc.dump()));
    (proc, port)
}

// ---------------------------------------------------------------- the echo upstream

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

/// The python echo upstream ([`UPSTREAM_PY`]).
pub struct Upstream {
    pub proc: Proc,
    pub port: u16,
}

impl Upstream {
    pub fn start(env: &Env) -> Upstream {
        let (proc, port) = python_server_port(env, "upstream.py", UPSTREAM_PY, &[], "python upstream");
        Upstream { proc, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Like the echo upstream (GET only), but holds requests to `/hold...` (printing
/// `got PATH` as each arrives) until a line comes on its stdin; prints its port first.
pub const HOLDING_UPSTREAM_PY: &str = r#"
import json, sys, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
release = threading.Event()
printing = threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/hold"):
            with printing:
                print("got " + self.path, flush=True)
            release.wait()
        body = json.dumps({"method": self.command, "path": self.path,
                           "headers": [[k, v] for k, v in self.headers.items()], "body": ""}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(ThreadingHTTPServer):
    daemon_threads = True
s = S(("127.0.0.1", 0), H)
threading.Thread(target=s.serve_forever, daemon=True).start()
print(s.server_address[1], flush=True)
sys.stdin.readline()
release.set()
threading.Event().wait()
"#;

impl Upstream {
    /// [`HOLDING_UPSTREAM_PY`]: `proc.send_line` releases the held requests.
    pub fn holding(env: &Env) -> Upstream {
        let script = env.write("holding_upstream.py", HOLDING_UPSTREAM_PY);
        let mut c = Command::new(PYTHON);
        c.arg("-u").arg(&script).current_dir(env.path());
        let proc = Proc::spawn_with_stdin(c, "holding upstream");
        let first = proc
            .wait_stdout(Duration::from_secs(15), |l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("the holding upstream printed nothing\n{}", proc.dump()));
        let port = first.trim().parse().unwrap_or_else(|_| panic!("not a port: {first:?}\n{}", proc.dump()));
        Upstream { proc, port }
    }
}

// ---------------------------------------------------------------- static files

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

/// python3 `http.server` serving a directory ([`FILES_PY`]).
pub struct FileServer {
    pub proc: Proc,
    pub port: u16,
}

impl FileServer {
    pub fn start(env: &Env, dir: &Path) -> FileServer {
        let (proc, port) = python_server_port(env, "files.py", FILES_PY, &[s(dir)], "python file server");
        FileServer { proc, port }
    }

    /// `http://127.0.0.1:PORT/NAME`
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
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
        proc.wait_listening(port, Duration::from_secs(10), &conf);
        Nginx { proc, port }
    }
}
