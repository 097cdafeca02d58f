//! Upstream pools at the binary level, with real /usr/bin/python3 http.server
//! backends that answer with their own name: round robin alternates; a killed
//! backend costs no request (passive ejection / retry on the other server); the
//! active health check takes it out of the pool
//! (`gatehouse_upstream_healthy_servers{upstream="app"} 1` on the admin /metrics)
//! and brings it back when it is restarted; least_conn loads, serves, and sends
//! requests away from a server that is busy.
mod support;
use support::*;

use std::process::Command;
use std::thread;
use std::time::Duration;

/// `NAME PORT`: answers every GET with "backend NAME\n"; /slow waits 2 s first.
/// Prints its port once listening.
const BACKEND_PY: &str = r#"
import sys, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

name, port = sys.argv[1], int(sys.argv[2])

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(2)
        body = ("backend " + name + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

class S(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

server = S(("127.0.0.1", port), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

struct Backend {
    proc: Proc,
    port: u16,
}

fn backend(env: &Env, name: &str, port: u16) -> Backend {
    let (proc, p) =
        python_server(env, "backend.py", BACKEND_PY, &[name, &port.to_string()], &format!("backend {name}"));
    let port: u16 = p.parse().unwrap_or_else(|_| panic!("backend {name} printed {p:?}\n{}", proc.dump()));
    Backend { proc, port }
}

fn config(https: u16, admin: u16, servers: &[u16], balance: &str, health: bool) -> String {
    let list = servers.iter().map(|p| format!("\"http://127.0.0.1:{p}\"")).collect::<Vec<_>>().join(", ");
    let health = if health { "health = { path = \"/\", interval_ms = 200, unhealthy_threshold = 1 }\n" } else { "" };
    format!(
        "[listen]\nhttps = \"127.0.0.1:{https}\"\nadmin = \"127.0.0.1:{admin}\"\n\n\
         [[site]]\nhosts = [\"localhost\"]\ncertificate = {{ internal_ca = true }}\nupstream = \"app\"\n\n\
         [[upstream]]\nname = \"app\"\nservers = [{list}]\nbalance = \"{balance}\"\n{health}"
    )
}

/// GET / through the gateway: (status, backend name).
fn who(gw: &Gateway, path: &str) -> (u16, String) {
    let r = gw.curl("localhost", path, &[]);
    let name = r.body.trim().strip_prefix("backend ").unwrap_or("").to_string();
    (r.status, if r.status == 200 { name } else { format!("{r:?}") })
}

fn healthy(admin: u16) -> Option<f64> {
    metric(&metrics(admin), "gatehouse_upstream_healthy_servers{upstream=\"app\"}")
}

#[test]
fn round_robin_alternates_survives_a_dead_backend_and_takes_it_back() {
    require(PYTHON);
    let env = Env::new();
    let a = backend(&env, "a", 0);
    let mut b = backend(&env, "b", 0);
    let (https, admin) = (free_port(), free_port());
    let gw = Gateway::start(&env, "gw.toml", https, &config(https, admin, &[a.port, b.port], "round_robin", true));

    // Both servers healthy; round robin alternates strictly.
    let up = poll_until(Duration::from_secs(5), || healthy(admin) == Some(2.0));
    assert!(up.is_some(), "healthy servers never 2:\n{}\n{}", metrics(admin), gw.proc.dump());
    let seq: Vec<String> = (0..6)
        .map(|i| {
            let (st, name) = who(&gw, &format!("/rr/{i}"));
            assert_eq!(st, 200, "request {i}: {name}\n{}", gw.proc.dump());
            name
        })
        .collect();
    for w in seq.windows(2) {
        assert_ne!(w[0], w[1], "round robin did not alternate: {seq:?}");
    }
    assert!(seq.iter().all(|n| n == "a" || n == "b"), "{seq:?}");

    // Kill b: every request still gets 200, from a (retry on connect failure, then ejection/health).
    let b_port = b.port;
    b.proc.kill();
    for i in 0..6 {
        let (st, name) = who(&gw, &format!("/after-kill/{i}"));
        assert_eq!(st, 200, "request {i} after killing backend b: {name}\n{}", gw.proc.dump());
        assert_eq!(name, "a", "request {i} after killing b");
    }
    let down = poll_until(Duration::from_secs(5), || healthy(admin) == Some(1.0));
    assert!(
        down.is_some(),
        "gatehouse_upstream_healthy_servers{{upstream=\"app\"}} not 1 after killing b:\n{}\n{}",
        metrics(admin),
        gw.proc.dump()
    );
    let text = metrics(admin);
    assert_eq!(metric(&text, "gatehouse_upstream_servers{upstream=\"app\"}"), Some(2.0), "{text}");

    // Restart b on the same port: back to 2 within a few seconds, and it gets requests again.
    let b2 = backend(&env, "b", b_port);
    assert_eq!(b2.port, b_port);
    let back = poll_until(Duration::from_secs(5), || healthy(admin) == Some(2.0));
    assert!(back.is_some(), "b not back in the pool:\n{}\n{}", metrics(admin), gw.proc.dump());
    let seq: Vec<String> = (0..4)
        .map(|i| {
            let (st, name) = who(&gw, &format!("/back/{i}"));
            assert_eq!(st, 200, "request {i}: {name}");
            name
        })
        .collect();
    assert!(seq.contains(&"a".to_string()) && seq.contains(&"b".to_string()), "after restart: {seq:?}");
    drop(a);
}

#[test]
fn least_conn_loads_serves_and_avoids_the_busy_server() {
    require(PYTHON);
    let env = Env::new();
    let a = backend(&env, "a", 0);
    let b = backend(&env, "b", 0);
    let (https, admin) = (free_port(), free_port());
    let toml = config(https, admin, &[a.port, b.port], "least_conn", false);

    let check = env.gh(&["config", "check", s(&env.write("lc-check.toml", &toml))]);
    assert_eq!(check.code, 0, "config check of a least_conn pool:\n{}", check.all());

    let gw = Gateway::start(&env, "gw.toml", https, &toml);
    for i in 0..4 {
        let (st, name) = who(&gw, &format!("/lc/{i}"));
        assert_eq!(st, 200, "request {i}: {name}\n{}", gw.proc.dump());
        assert!(name == "a" || name == "b", "{name}");
    }

    // One slow request keeps a server busy for 2 s; meanwhile the others go to the idle one.
    let url = format!("https://localhost:{https}/slow");
    let resolve = format!("localhost:{https}:127.0.0.1");
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "20", "--cacert", s(&env.root()), "--resolve", &resolve, &url]);
    let mut slow = Proc::spawn(c, "curl /slow");
    thread::sleep(Duration::from_millis(500));
    let quick: Vec<String> = (0..4)
        .map(|i| {
            let (st, name) = who(&gw, &format!("/quick/{i}"));
            assert_eq!(st, 200, "request {i}: {name}");
            name
        })
        .collect();
    let st = slow.wait_exit(Duration::from_secs(20)).expect("slow request did not finish");
    assert!(st.success(), "{}", slow.dump());
    let busy = slow.stdout().trim().strip_prefix("backend ").unwrap_or("").to_string();
    assert!(busy == "a" || busy == "b", "slow answer: {}", slow.dump());
    assert!(quick.iter().all(|n| *n != busy), "least_conn sent requests to {busy}, busy with /slow: {quick:?}");
}
