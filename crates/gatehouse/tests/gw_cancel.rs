//! Requests the client gives up on: HTTP/2 HEADERS followed by RST_STREAM once
//! the origin has the request. Each one that reached the origin gets an access
//! line (status 499), and a connection that cancels most of what it sends is
//! no longer forwarded (429), so the origin stops doing work nobody reads.
mod support;
use support::*;

use std::process::Command;
use std::time::Duration;

/// An origin that prints `got PATH from PORT` when a request arrives, holds
/// `/hold/...` for 8 s, answers, and prints `answered PATH`.
const HOLDING_ORIGIN_PY: &str = r#"
import sys, threading, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
printing = threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        with printing:
            print("got %s from %d" % (self.path, self.client_address[1]), flush=True)
        if self.path.startswith("/hold"):
            time.sleep(8)
        body = b"done\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        with printing:
            print("answered " + self.path, flush=True)
    def log_message(self, *a):
        pass
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer.request_queue_size = 256
srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

/// Over one HTTP/2 connection: `open N` sends N GET /hold/I; `reset` resets
/// them all; `get PATH` sends one request and prints its status (or `reset`).
const H2_CANCELLER_PY: &str = r#"
import socket, ssl, sys
import h2.config, h2.connection, h2.events
port, cafile = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=cafile)
ctx.set_alpn_protocols(["h2"])
sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname="localhost")
conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
conn.initiate_connection()
sock.sendall(conn.data_to_send())
authority = "localhost:%d" % port
open_streams = []
def request(path):
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "GET"), (":scheme", "https"), (":authority", authority), (":path", path)], end_stream=True)
    sock.sendall(conn.data_to_send())
    return sid
print("ready", flush=True)
for line in sys.stdin:
    words = line.split()
    if words[0] == "open":
        for i in range(int(words[1])):
            open_streams.append(request("/hold/%d" % i))
        print("opened", flush=True)
    elif words[0] == "reset":
        for sid in open_streams:
            conn.reset_stream(sid)
        sock.sendall(conn.data_to_send())
        open_streams = []
        print("was reset", flush=True)
    elif words[0] == "get":
        sid = request(words[1])
        status = None
        while status is None:
            for event in conn.receive_data(sock.recv(65536)):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == sid:
                    status = dict(event.headers)[b":status"].decode()
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == sid:
                    status = "reset"
            sock.sendall(conn.data_to_send())
        print("status " + status, flush=True)
"#;

#[test]
fn cancelled_requests_are_logged_and_a_cancelling_client_is_cut_off() {
    require_python_module("h2");
    let env = Env::new();
    let (origin, origin_port) = python_server(&env, "holding.py", HOLDING_ORIGIN_PY, &[], "holding origin");
    let https = free_port();
    let cert = localhost_cert(&env);
    let toml = format!(
        "{}\n[[site]]\nhosts = [\"localhost\"]\ncertificate = {}\nupstream = \"app\"\n{}",
        listen_toml(https, None, None),
        Env::cert_toml(&cert),
        upstream_toml("app", &format!("http://127.0.0.1:{origin_port}"))
    );
    let gw = Gateway::start(&env, "gw.toml", https, &toml);

    let script = env.write("canceller.py", H2_CANCELLER_PY);
    let mut c = Command::new(PYTHON);
    c.arg("-u").arg(&script).arg(https.to_string()).arg(s(&gw.root));
    let mut client = Proc::spawn_with_stdin(c, "h2 canceller");
    let limit = Duration::from_secs(60);
    assert!(client.wait_stdout(limit, |l| l == "ready").is_some(), "{}", client.dump());

    // Two rounds of requests the origin has in hand, each then reset by the client.
    let per_round = 60;
    for round in 1..=2 {
        client.send_line(&format!("open {per_round}"));
        let origin_has_them = wait_for(limit, Duration::from_millis(50), || {
            (origin.stdout().matches("got /hold/").count() >= per_round * round).then_some(())
        });
        assert!(origin_has_them.is_some(), "round {round}: the origin did not get them\n{}", origin.dump());
        let before = client.stdout_len();
        client.send_line("reset");
        assert!(client.wait_stdout_after(before, limit, |l| l == "was reset").is_some(), "{}", client.dump());
        // The origin answers them all; the gateway reads the answers nobody waits for.
        let answered = wait_for(limit, Duration::from_millis(50), || {
            (origin.stdout().matches("answered /hold/").count() >= per_round * round).then_some(())
        });
        assert!(answered.is_some(), "round {round}\n{}", origin.dump());
        let logged = wait_for(limit, Duration::from_millis(50), || {
            let lines = gw.access_lines();
            (lines.iter().filter(|v| v["status"] == 499).count() >= per_round * round).then_some(lines)
        });
        let lines = logged
            .unwrap_or_else(|| panic!("round {round}: every cancelled request gets a 499 line\n{}", gw.proc.dump()));
        let cancelled = lines.iter().find(|v| v["status"] == 499).unwrap();
        assert_eq!(cancelled["refused"], "client_closed_request", "{cancelled}");
        assert_eq!(cancelled["protocol"], "HTTP/2", "{cancelled}");
    }

    // The connections of the first round's cancelled requests carried the second round's
    // (each cancelled exchange was finished in the background and its connection kept).
    let seen_by_origin = origin.stdout();
    let ports: std::collections::HashSet<&str> =
        seen_by_origin.lines().filter_map(|l| l.split(" from ").nth(1)).map(str::trim).collect();
    assert!(ports.len() < per_round * 2 * 3 / 4, "{} origin connections for {} requests", ports.len(), per_round * 2);

    // 120 cancelled, none answered: the next request on this connection is not forwarded.
    let seen = origin.stdout().matches("got /after").count();
    let before = client.stdout_len();
    client.send_line("get /after");
    let status = client.wait_stdout_after(before, limit, |l| l.starts_with("status "));
    assert_eq!(status.as_deref(), Some("status 429"), "{}", client.dump());
    assert_eq!(origin.stdout().matches("got /after").count(), seen, "the origin got it");
    let refused = gw.proc.wait_json(limit, |v| v["path"] == "/after" && v["refused"] == "too_many_cancelled_requests");
    assert!(refused.is_some(), "{}", gw.proc.dump());

    // A new connection is served as usual.
    let r = gw.curl("localhost", "/fresh", &["--http2"]);
    assert!(r.ok() && r.body == "done\n", "{r:?}");
}
