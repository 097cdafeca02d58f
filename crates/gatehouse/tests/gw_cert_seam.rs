//! The live certificate seam: a site's certificate files replaced on disk are served to
//! the next handshakes without a configuration reload, while connections opened before
//! go on; a replacement that does not fit is refused (stderr) and the old certificate
//! keeps serving; and a reload that leaves an `[[upstream]]` as it was keeps its pool,
//! so a server health checks took down stays down.
mod support;
use support::*;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::ChildStdin;
use std::time::{Duration, Instant};

/// `gatehouse serve` as [`Gateway::start`] does, with info logging (the default shows
/// warnings only), so the test can read what each change did.
fn start_logged(env: &Env, https: u16, toml: &str) -> Gateway {
    let config = env.write("gw.toml", toml);
    let mut c = gh_cmd(&env.data(), &["serve", "--config", s(&config)]);
    c.current_dir("/");
    c.env("GATEHOUSE_LOG", "info");
    let mut proc = Proc::spawn(c, "gatehouse serve");
    proc.wait_listening(https, Duration::from_secs(20), &format!("config:\n{toml}"));
    Gateway { proc, https, config, root: env.root() }
}

/// A server certificate for localhost and 127.0.0.1 from the internal CA, in `T/NAME/`.
fn localhost_pair(env: &Env, name: &str) -> Cert {
    env.issue_in(&env.path().join(name), "server", "localhost", &["DNS:localhost", "IP:127.0.0.1"], &[])
}

/// Puts `chain` and `key` in place as `T/live/site.pem` and `T/live/site.key`, each
/// written next to its place and renamed over it, as deploy tools do.
fn install(env: &Env, chain: &Path, key: &Path) {
    let live = env.path().join("live");
    fs::create_dir_all(&live).unwrap();
    for (from, name) in [(key, "site.key"), (chain, "site.pem")] {
        let tmp = live.join(format!("{name}.new"));
        fs::copy(from, &tmp).unwrap();
        fs::rename(&tmp, live.join(name)).unwrap();
    }
}

/// A gateway whose one site (localhost, 127.0.0.1) serves `T/live/site.pem` + `site.key`.
fn live_site(env: &Env, up: &Upstream) -> Gateway {
    let https = free_port();
    let toml = format!(
        "{}\n[[site]]\nhosts = [\"localhost\", \"127.0.0.1\"]\n\
         certificate = {{ cert = \"live/site.pem\", key = \"live/site.key\" }}\nupstream = \"app\"\n{}",
        listen_toml(https, None, None),
        upstream_toml("app", &up.url())
    );
    start_logged(env, https, &toml)
}

/// DER of the leaf a new handshake for SNI localhost gets.
fn served_leaf(gw: &Gateway) -> Vec<u8> {
    let o = gw.s_client(&["-servername", "localhost", "-showcerts"], "");
    let pem = first_pem(&o.stdout).unwrap_or_else(|| panic!("no server certificate:\n{}\n{}", o.all(), gw.proc.dump()));
    pem_to_der(&pem)
}

/// Waits until stderr, after its first `from` lines, has a line containing every one of `words`.
fn wait_log(gw: &Gateway, from: usize, words: &[&str]) -> Option<String> {
    wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
        gw.proc.stderr_since(from).lines().find(|l| words.iter().all(|w| l.contains(w))).map(str::to_owned)
    })
}

/// Sends a GET of `path` on the open s_client connection and waits for its 200, the
/// `answers`-th on that connection (a body ends without a newline, so the next status
/// line may share its line).
fn get_on(open: &Proc, stdin: &mut ChildStdin, path: &str, answers: usize) {
    stdin.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes()).unwrap();
    stdin.flush().unwrap();
    let answered = poll_until(Duration::from_secs(10), || open.stdout().matches("HTTP/1.1 200 OK").count() >= answers);
    assert!(answered.is_some(), "no 200 for GET {path} on the open connection\n{}", open.dump());
}

#[test]
fn replaced_certificate_files_reach_new_handshakes_without_a_reload_and_open_connections_go_on() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let first = localhost_pair(&env, "first");
    install(&env, first.chain(), &first.key);
    let gw = live_site(&env, &up);
    assert_eq!(served_leaf(&gw), first.der(), "the certificate from the files");

    // A connection opened now, with a request answered on it.
    let (open, mut stdin) = s_client_open(gw.https, &["-servername", "localhost", "-showcerts", "-nocommands"]);
    get_on(&open, &mut stdin, "/before", 1);
    let open_leaf = first_pem(&open.stdout()).map(|pem| pem_to_der(&pem));
    assert_eq!(open_leaf, Some(first.der()), "the open connection got the first certificate\n{}", open.dump());

    let second = localhost_pair(&env, "second");
    let n = gw.proc.stderr_len();
    install(&env, second.chain(), &second.key);
    let line = wait_log(&gw, n, &["certificate replaced", "localhost,127.0.0.1"]);
    assert!(line.is_some(), "no \"certificate replaced\" line naming the site's hosts\n{}", gw.proc.dump());
    let line = line.unwrap();
    assert!(line.contains(&norm_serial(&second.serial)), "the line names the new serial {}: {line}", second.serial);

    assert_eq!(served_leaf(&gw), second.der(), "a new handshake gets the new certificate\n{}", gw.proc.dump());
    let r = gw.curl("localhost", "/after", &[]);
    assert!(r.ok(), "the new certificate verifies and serves: {r:?}");
    // The connection opened before goes on, on the certificate it began with.
    get_on(&open, &mut stdin, "/after-swap", 2);
    let mut open = open;
    assert!(open.try_exit().is_none(), "the open connection must not be closed\n{}", open.dump());
    let stderr = gw.proc.stderr();
    assert!(!stderr.contains("configuration reloaded"), "a certificate change is no reload:\n{stderr}");
    assert!(!stderr.contains("refused"), "nothing was refused:\n{stderr}");
}

#[test]
fn a_replacement_that_does_not_fit_is_refused_and_the_old_certificate_keeps_serving() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let first = localhost_pair(&env, "first");
    install(&env, first.chain(), &first.key);
    let gw = live_site(&env, &up);
    assert_eq!(served_leaf(&gw), first.der());

    // The first chain with another certificate's key.
    let other = localhost_pair(&env, "other");
    let n = gw.proc.stderr_len();
    install(&env, first.chain(), &other.key);
    let line = wait_log(&gw, n, &["new certificate refused", "does not belong to the certificate", "localhost"]);
    assert!(line.is_some(), "the key that does not fit should be refused on stderr\n{}", gw.proc.dump());
    assert!(line.unwrap().contains("site.key"), "the line names the files");
    assert_eq!(served_leaf(&gw), first.der(), "the old certificate keeps serving");
    assert!(gw.curl("localhost", "/", &[]).ok(), "and verifies\n{}", gw.proc.dump());

    // A chain file that holds no certificate.
    let n = gw.proc.stderr_len();
    let garbage = env.write("garbage.pem", "this is not a certificate\n");
    install(&env, &garbage, &first.key);
    let line = wait_log(&gw, n, &["new certificate refused", "site.pem"]);
    assert!(line.is_some(), "an unreadable chain should be refused on stderr\n{}", gw.proc.dump());
    assert_eq!(served_leaf(&gw), first.der(), "the old certificate keeps serving");

    // A good pair is taken again.
    let n = gw.proc.stderr_len();
    install(&env, other.chain(), &other.key);
    assert!(wait_log(&gw, n, &["certificate replaced"]).is_some(), "{}", gw.proc.dump());
    assert_eq!(served_leaf(&gw), other.der());
    assert!(!gw.proc.stderr().contains("configuration reloaded"));
}

/// Answers `/health` with 503 and anything else with 200, and prints each path it is asked for.
const SICK_PY: &str = r#"
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        print(self.path, flush=True)
        status, body = (503, b"sick") if self.path == "/health" else (200, b"served by the sick server")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

class S(ThreadingHTTPServer):
    daemon_threads = True

s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

#[test]
fn a_reload_that_leaves_an_upstream_as_it_was_keeps_its_servers_health_and_one_health_check() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let (sick, sick_port) = python_server(&env, "sick.py", SICK_PY, &[], "sick upstream");
    let sick_server = format!("127.0.0.1:{sick_port}");
    let checks = || sick.stdout_lines().iter().filter(|l| l.as_str() == "/health").count();
    let (https, admin) = (free_port(), free_port());
    // A fresh pool would need four failed checks, 1.5 s, to take the sick server down again.
    let config = |site: &str| {
        format!(
            "{}\n[[site]]\nhosts = [\"localhost\", \"127.0.0.1\"]\ncertificate = {}\nupstream = \"app\"\n{site}\n\
             [[upstream]]\nname = \"app\"\nservers = [\"{}\", \"http://{sick_server}\"]\n\
             health = {{ path = \"/health\", interval_ms = 500, unhealthy_threshold = 4, healthy_threshold = 1 }}\n",
            listen_toml(https, None, Some(admin)),
            Env::cert_toml(&localhost_cert(&env)),
            up.url()
        )
    };
    let gw = start_logged(&env, https, &config(""));
    let healthy = || metric(&metrics(admin), "gatehouse_upstream_healthy_servers{upstream=\"app\"}");
    let down = poll_until(Duration::from_secs(10), || healthy() == Some(1.0));
    assert!(down.is_some(), "health checks never took the sick server down:\n{}", gw.proc.dump());

    // A change that leaves the upstream as it was.
    let n = gw.proc.stderr_len();
    gw.rewrite_config(&config("hsts_max_age = 600\n"));
    assert!(wait_log(&gw, n, &["configuration reloaded"]).is_some(), "{}", gw.proc.dump());
    assert_eq!(healthy(), Some(1.0), "right after the reload the sick server is still down\n{}", metrics(admin));
    for i in 0..8 {
        let r = gw.curl("localhost", &format!("/after-reload-{i}"), &[]);
        assert!(r.ok(), "request {i} after the reload: {r:?}\n{}", gw.proc.dump());
        assert!(r.header("strict-transport-security").is_some(), "the new config serves: {r:?}");
        assert_eq!(r.upstream().path, format!("/after-reload-{i}"), "answered by the healthy server");
    }
    let named_sick: Vec<_> = gw.access_lines().into_iter().filter(|l| l["upstream"] == sick_server.as_str()).collect();
    assert!(named_sick.is_empty(), "no request may go to the server health checks took down: {named_sick:?}");
    assert!(!sick.stdout_lines().iter().any(|l| l.starts_with("/after")), "{}", sick.dump());

    // One health check task, not one more per reload: six checks of the sick server take
    // five intervals (2.5 s); two tasks would make them in half that.
    let (from, started) = (checks(), Instant::now());
    let six = poll_until(Duration::from_secs(10), || {
        assert_eq!(healthy(), Some(1.0), "the sick server came back up\n{}", gw.proc.dump());
        checks() >= from + 6
    });
    assert!(six.is_some(), "health checks stopped after the reload\n{}", sick.dump());
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(2000), "six checks in {} ms: the checks run twice", ms(took));
}
