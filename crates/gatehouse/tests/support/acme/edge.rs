//! [`Edge`]: `gatehouse serve` as an ACME client (issue 10): sites with
//! `certificate = { acme = "NAME" }` whose certificates it obtains and renews itself;
//! the config pieces of such a gateway, its log lines, what a handshake with it
//! gets, and a client that keeps one connection open across a renewal
//! ([`KeptConnection`]).

use std::io::Write;
use std::process::ChildStdin;

use super::super::curl::Resp;
use super::super::encoding::norm_serial;
use super::super::files::ls;
use super::super::gateway::{listen_toml, metric, metrics, upstream_toml};
use super::super::openssl::{pem_certs, s_client, subject_of};
use super::super::process::PYTHON;
use super::*;

/// How long one order may take on a busy machine (a pebble or gatehouse order takes a
/// second or two).
pub const ORDER_LIMIT: Duration = Duration::from_secs(120);
/// How long a log line that follows at once (the placeholder warning) may take.
pub const LOG_LIMIT: Duration = Duration::from_secs(30);

/// The one line of an `[[acme]]` table's `dns` for bind9's RFC 2136 updates, with the
/// TSIG secret read from `key_secret_file`.
pub fn rfc2136_toml(bind: &Bind9, key_secret_file: &Path) -> String {
    format!(
        "dns = {{ rfc2136 = {{ server = \"{}\", key_name = \"{}\", key_algorithm = \"{}\", key_secret_file = \"{}\" }} }}\n",
        bind.addr(),
        bind.key_name,
        bind.algorithm,
        s(key_secret_file)
    )
}

/// An `[[acme]]` table: account `name` at `directory`, whose TLS is checked with
/// `ca_bundle`, proving names with `challenge`; `extra` lines go at its end (`profile`,
/// `dns`).
pub fn acme_toml(name: &str, directory: &str, ca_bundle: &Path, challenge: &str, extra: &str) -> String {
    format!(
        "\n[[acme]]\nname = \"{name}\"\ndirectory = \"{directory}\"\nca_bundle = \"{}\"\n\
         contact = [\"ops@example.test\"]\nchallenge = \"{challenge}\"\n{extra}",
        s(ca_bundle)
    )
}

/// A `[[site]]` for `hosts` whose certificate comes from `[[acme]]` `acme`, forwarding to
/// the upstream `app`.
pub fn acme_site_toml(hosts: &[&str], acme: &str) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    format!("\n[[site]]\nhosts = [{}]\ncertificate = {{ acme = \"{acme}\" }}\nupstream = \"app\"\n", hosts.join(", "))
}

/// A whole gateway config: `[listen]` on 127.0.0.1 (https, http, admin), the `[[acme]]`
/// tables and sites in `body`, and the upstream `app` at `upstream`.
pub fn edge_toml(https: u16, http: u16, admin: u16, body: &str, upstream: &str) -> String {
    format!("{}{body}{}", listen_toml(https, Some(http), Some(admin)), upstream_toml("app", upstream))
}

/// A line of the gateway's log (tracing's text format on stderr) and its place.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// Its index among the stderr lines: wait for later ones from `index + 1`.
    pub index: usize,
    pub text: String,
}

impl LogLine {
    /// The value of `key=VALUE` (up to the next space, or in quotes when tracing quoted
    /// it); `error`, which has spaces but no quotes, runs to the field after it.
    pub fn field(&self, key: &str) -> Option<String> {
        let text = strip_ansi(&self.text);
        let start = text.find(&format!(" {key}="))? + key.len() + 2;
        let rest = &text[start..];
        if let Some(quoted) = rest.strip_prefix('"') {
            return quoted.find('"').map(|end| quoted[..end].to_string());
        }
        let end = if key == "error" {
            rest.find(" retry_in_secs=").unwrap_or(rest.len())
        } else {
            rest.find(' ').unwrap_or(rest.len())
        };
        Some(rest[..end].to_string())
    }

    /// The `serial` field, normalized for comparison with openssl's.
    #[track_caller]
    pub fn serial(&self) -> String {
        norm_serial(&self.field("serial").unwrap_or_else(|| panic!("no serial= in {}", self.text)))
    }
}

/// Tracing's colours, in case a build ignores NO_COLOR.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The log messages the tests wait for.
pub const NO_CERTIFICATE_YET: &str =
    "no certificate yet; serving a self-signed placeholder until the ACME order completes";
pub const OBTAINED: &str = "certificate obtained";
pub const RENEWED: &str = "certificate renewed";
pub const SCHEDULED: &str = "certificate renewal scheduled";
pub const ORDER_FAILED: &str = "ACME order failed; the current certificate keeps serving";
pub const ACCOUNT_REGISTERED: &str = "ACME account registered";

/// `gatehouse --data-dir DIR/data serve --config DIR/edge.toml` with info logging,
/// run from `/`; killed on drop. `DIR` outlives it, so a second `Edge` on the same
/// `DIR` starts from what the first kept.
pub struct Edge {
    pub proc: Proc,
    pub https: u16,
    pub admin: u16,
    pub data: PathBuf,
    pub config: String,
}

impl Edge {
    /// Writes the config and starts the gateway; waits until the https port accepts.
    #[track_caller]
    pub fn start(dir: &Path, https: u16, admin: u16, toml: &str) -> Edge {
        let data = dir.join("data");
        mkdir(&data);
        let path = dir.join("edge.toml");
        write(&path, toml);
        let mut c = gh_cmd(&data, &["serve", "--config", s(&path)]);
        c.current_dir("/");
        c.env("GATEHOUSE_LOG", "info");
        let mut proc = Proc::spawn(c, "gatehouse serve (ACME client)");
        proc.wait_listening(https, START_LIMIT, &format!("config:\n{toml}"));
        Edge { proc, https, admin, data, config: toml.to_string() }
    }

    /// The stderr lines so far: a mark to wait for lines after.
    pub fn mark(&self) -> usize {
        self.proc.stderr_len()
    }

    /// The stderr lines from `from` on that contain `what`.
    pub fn lines(&self, from: usize, what: &str) -> Vec<LogLine> {
        let all = self.proc.stderr();
        all.lines()
            .enumerate()
            .skip(from)
            .filter(|(_, l)| l.contains(what))
            .map(|(index, text)| LogLine { index, text: text.to_string() })
            .collect()
    }

    /// Waits up to `limit` for a stderr line from `from` on that contains `what`; panics
    /// with the log when the gateway exits first or the time runs out.
    #[track_caller]
    pub fn wait_log(&mut self, from: usize, what: &str, limit: Duration) -> LogLine {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.lines(from, what).into_iter().next() {
                return line;
            }
            if let Some(st) = self.proc.try_exit() {
                panic!("the gateway exited ({st}) before logging {what:?}\n{}\n{}", self.config, self.proc.dump());
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not log {what:?} within {limit:?}\n{}\n{}",
                self.config,
                self.proc.dump()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for `event` ([`OBTAINED`] or [`RENEWED`]) from `from` on; a failed order
    /// before it fails the test at once, with the CA's words.
    #[track_caller]
    pub fn wait_certificate(&mut self, from: usize, event: &str) -> LogLine {
        let deadline = Instant::now() + ORDER_LIMIT;
        loop {
            if let Some(line) = self.lines(from, event).into_iter().next() {
                return line;
            }
            if let Some(failed) = self.lines(from, ORDER_FAILED).into_iter().next() {
                panic!(
                    "the order failed instead of {event:?}:\n{}\n{}\n{}",
                    failed.text,
                    self.config,
                    self.proc.dump()
                );
            }
            if let Some(st) = self.proc.try_exit() {
                panic!("the gateway exited ({st}) before {event:?}\n{}\n{}", self.config, self.proc.dump());
            }
            assert!(
                Instant::now() < deadline,
                "no {event:?} within {ORDER_LIMIT:?}\n{}\n{}",
                self.config,
                self.proc.dump()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What a new handshake for SNI `host` gets: the leaf and the certificates sent after
    /// it, written to `into/leaf.pem` and `into/chain.pem` (empty for a self-signed one).
    /// Its `key` names no file: set it to the gateway's ([`Edge::stored_dir`]) to check
    /// that they match.
    #[track_caller]
    pub fn served(&self, host: &str, into: &Path) -> Issued {
        let o = s_client(self.https, &["-servername", host, "-showcerts"], "");
        let certs = pem_certs(&o.stdout);
        assert!(!certs.is_empty(), "no certificate in a handshake for {host}:\n{}\n{}", o.all(), self.proc.dump());
        mkdir(into);
        let (leaf, chain) = (into.join("leaf.pem"), into.join("chain.pem"));
        write(&leaf, &certs[0]);
        write(&chain, certs[1..].concat());
        Issued { leaf, chain, key: into.join("no-key") }
    }

    /// Asserts `openssl s_client` verifies what a new handshake for SNI `host` gets
    /// against `root` alone (so with the chain the gateway sends), for that host name.
    #[track_caller]
    pub fn assert_verifies(&self, host: &str, root: &Path) {
        let args = ["-servername", host, "-CAfile", s(root), "-verify_return_error", "-verify_hostname", host];
        let o = s_client(self.https, &args, "");
        assert!(
            o.stdout.contains("Verify return code: 0 (ok)"),
            "openssl s_client -servername {host} -CAfile {} -verify_hostname {host}:\n{}",
            root.display(),
            o.all()
        );
    }

    /// Where the certificate of `hosts` from `[[acme]]` `acme` is kept:
    /// `DATA/acme/ACME/FIRST_HOST[+DIGEST]/`.
    #[track_caller]
    pub fn stored_dir(&self, acme: &str, first_host: &str) -> PathBuf {
        let account = self.data.join("acme").join(acme);
        let name = first_host.replace('*', "_");
        let found: Vec<String> =
            ls(&account).into_iter().filter(|f| *f == name || f.starts_with(&format!("{name}+"))).collect();
        assert_eq!(found.len(), 1, "want one directory for {first_host} in {}: {:?}", account.display(), ls(&account));
        account.join(&found[0])
    }

    /// The `/metrics` body.
    pub fn metrics(&self) -> String {
        metrics(self.admin)
    }

    /// `gatehouse_acme_orders_total{acme="ACME",result="RESULT"}` (0 when absent).
    pub fn orders(&self, acme: &str, result: &str) -> f64 {
        let text = self.metrics();
        metric(&text, &format!("gatehouse_acme_orders_total{{acme=\"{acme}\",result=\"{result}\"}}")).unwrap_or(0.0)
    }
}

/// Asserts `served` is the placeholder a site gets before its first certificate:
/// self-signed, a subject that says so, for `host`.
#[track_caller]
pub fn assert_placeholder(served: &Issued, host: &str) {
    let subject = subject_of(&served.leaf);
    assert!(subject.contains("placeholder"), "not the placeholder: subject {subject}");
    let issuer = openssl_ok(&["x509", "-in", s(&served.leaf), "-noout", "-issuer", "-nameopt", "RFC2253"]);
    assert_eq!(issuer.trim().trim_start_matches("issuer="), subject, "the placeholder is not self-signed");
    assert!(served.sans().contains(&format!("DNS:{host}")), "the placeholder is not for {host}: {:?}", served.sans());
    assert!(read(&served.chain).is_empty(), "the placeholder came with a chain");
}

/// curl `https://HOST:PORT/PATH` to 127.0.0.1, trusting `root`.
pub fn curl_edge(edge: &Edge, host: &str, path: &str, root: &Path) -> Resp {
    let resolve = format!("{host}:{}:127.0.0.1", edge.https);
    curl(&["--resolve", &resolve, "--cacert", s(root), &format!("https://{host}:{}{path}", edge.https)])
}

/// Asserts the echo upstream answered `path` through the gateway.
#[track_caller]
pub fn assert_upstream_answered(r: &Resp, path: &str) {
    assert!(r.ok(), "GET {path} through the gateway: {r:?}");
    assert_eq!(r.upstream().path, path, "{r:?}");
}

// ---------------------------------------------------------------- one kept connection

/// One HTTPS connection (Python's http.client over its ssl module, which is OpenSSL),
/// kept open; each path read on stdin is requested on it. Prints `ready LOCAL_PORT
/// SERIAL` after the handshake (the serial of the certificate it verified), then
/// `STATUS PATH LOCAL_PORT` per request, or `error ...` and exits when the
/// connection is gone (it never reconnects).
const KEPT_CONNECTION_PY: &str = r#"
import http.client, socket, ssl, sys
host, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)
tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname=host)
conn = http.client.HTTPSConnection(host, port, context=ctx)
conn.sock = tls
conn.auto_open = 0
local = tls.getsockname()[1]
print("ready", local, tls.getpeercert()["serialNumber"], flush=True)
for line in sys.stdin:
    path = line.strip()
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        print(r.status, path, local, flush=True)
    except Exception as e:
        print("error", path, repr(e), flush=True)
        sys.exit(1)
"#;

/// See [`KEPT_CONNECTION_PY`].
pub struct KeptConnection {
    pub proc: Proc,
    stdin: ChildStdin,
    /// The client's port: the same in every answer while it is one connection.
    pub local_port: String,
    /// The serial (normalized) of the certificate its handshake got.
    pub serial: String,
}

impl KeptConnection {
    /// Connects to 127.0.0.1:`port` with SNI `host`, verifying with `root`.
    #[track_caller]
    pub fn open(dir: &Path, port: u16, host: &str, root: &Path) -> KeptConnection {
        let script = dir.join("kept_connection.py");
        write(&script, KEPT_CONNECTION_PY);
        let mut c = Command::new(PYTHON);
        c.arg("-u").arg(&script).args([host, &port.to_string(), s(root)]);
        let mut proc = Proc::spawn_with_stdin(c, "kept connection");
        let stdin = proc.take_stdin();
        let ready = proc
            .wait_stdout(Duration::from_secs(30), |l| l.starts_with("ready ") || l.starts_with("error"))
            .unwrap_or_else(|| panic!("the kept connection did not open\n{}", proc.dump()));
        let f: Vec<&str> = ready.split_whitespace().collect();
        assert_eq!(f.len(), 3, "the kept connection did not open: {ready}\n{}", proc.dump());
        KeptConnection { local_port: f[1].to_string(), serial: norm_serial(f[2]), proc, stdin }
    }

    /// GET `path` on the connection; asserts 200 on the same connection.
    #[track_caller]
    pub fn get(&mut self, path: &str) {
        let from = self.proc.stdout_len();
        let sent = writeln!(self.stdin, "{path}").and_then(|()| self.stdin.flush());
        assert!(sent.is_ok(), "the kept connection's client is gone\n{}", self.proc.dump());
        let answer = self
            .proc
            .wait_stdout_after(from, Duration::from_secs(30), |l| l.contains(&format!(" {path}")))
            .unwrap_or_else(|| panic!("no answer to {path} on the kept connection\n{}", self.proc.dump()));
        assert_eq!(
            answer,
            format!("200 {path} {}", self.local_port),
            "GET {path} on the connection kept open (client port {})",
            self.local_port
        );
    }
}

/// A fixture for all the tests of a binary, kept in `cell` and started by the first
/// test that asks; when that start failed, every test fails with its message at once.
#[track_caller]
pub fn shared_fixture<T>(
    cell: &'static OnceLock<Result<T, String>>,
    what: &str,
    start: impl FnOnce() -> T,
) -> &'static T {
    let r = cell.get_or_init(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(start)).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|m| m.to_string()))
                .unwrap_or_else(|| format!("{what} did not start"))
        })
    });
    match r {
        Ok(fixture) => fixture,
        Err(m) => panic!("the shared {what} did not start: {m}"),
    }
}
