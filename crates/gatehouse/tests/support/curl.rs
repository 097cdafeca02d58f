//! curl as the HTTP client: one run ([`curl`]) gives status, HTTP version, the last
//! header block and the body ([`Resp`]); [`Received`] is what the echo upstream saw.

use std::ffi::OsStr;
use std::fs;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Value;
use super::process::run_limited;

pub const CURL: &str = "curl";

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

/// `curl -sS --max-time 20 -D H -o B -w '%{http_code}\n%{http_version}\n' ARGS...`
pub fn curl<S: AsRef<OsStr>>(args: &[S]) -> Resp {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let base = std::env::temp_dir().join(format!("gatehouse-curl-{}-{n}", std::process::id()));
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

    /// What the python echo upstream received.
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
