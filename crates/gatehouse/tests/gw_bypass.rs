//! No way around the route policy: the request is decided on one canonical
//! path and one authority, and the origin receives exactly those.
//!
//! Attacked as an outsider would: `curl --path-as-is` spellings of a guarded
//! path (against the python echo origin, which normalizes nothing, and nginx,
//! which normalizes), raw HTTP/1.1 over TLS (h2c upgrades, absolute-form and
//! duplicate Hosts, CONNECT, `OPTIONS *`), hand-built HTTP/2 frames with
//! python's h2 (`:authority` against `host`, `:path *`), and the plain-HTTP
//! redirect with a hostile Host.
mod support;
use support::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// Answers every request with `101 Switching Protocols` to h2c, asked or not.
const ROGUE_ORIGIN_PY: &str = r#"
import socket, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(16)
print(srv.getsockname()[1], flush=True)
def serve(c):
    data = b""
    while b"\r\n\r\n" not in data:
        more = c.recv(4096)
        if not more:
            return
        data += more
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
    c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// One HTTP/2 request with exactly the given header fields (pseudo-headers
/// included, unvalidated), over TLS with ALPN h2; prints {"status", "body", "reset"}.
const H2_CLIENT_PY: &str = r#"
import json, socket, ssl, sys
import h2.config, h2.connection, h2.events
port, cafile, fields = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
ctx = ssl.create_default_context(cafile=cafile)
ctx.set_alpn_protocols(["h2"])
sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=15), server_hostname="localhost")
assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
config = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,
                                   normalize_outbound_headers=False, validate_inbound_headers=False)
conn = h2.connection.H2Connection(config=config)
conn.initiate_connection()
conn.send_headers(1, [(k.encode(), v.encode()) for k, v in fields], end_stream=True)
sock.sendall(conn.data_to_send())
status, body, reset, done = None, b"", None, False
while not done:
    data = sock.recv(65536)
    if not data:
        break
    for event in conn.receive_data(data):
        if isinstance(event, h2.events.ResponseReceived):
            status = int(dict(event.headers)[b":status"])
        elif isinstance(event, h2.events.DataReceived):
            body += event.data
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            reset, done = int(event.error_code), True
        elif isinstance(event, (h2.events.StreamEnded, h2.events.ConnectionTerminated)):
            done = True
    sock.sendall(conn.data_to_send())
print(json.dumps({"status": status, "body": body.decode("utf-8", "replace"), "reset": reset}))
"#;

struct Fixture {
    env: Env,
    gw: Gateway,
    http: u16,
    _up: Upstream,
    _rogue: Proc,
}

/// localhost, `mtls = "optional"` with the internal CA: `/admin` and
/// `/Files` (case-insensitive) need a certificate; `/ws-closed` takes no
/// WebSocket; `/rogue` goes to an origin that switches protocols unasked;
/// `/down` to a closed port. A plain-HTTP listener redirects.
fn fixture() -> Fixture {
    let env = Env::new();
    let up = Upstream::start(&env);
    let (rogue, rogue_port) = python_server(&env, "rogue.py", ROGUE_ORIGIN_PY, &[], "rogue origin");
    let rogue_port: u16 = rogue_port.parse().expect("the rogue origin prints its port");
    let down = free_port();
    let (https, http) = (free_port(), free_port());
    let top = format!(
        "{}{}",
        upstream_toml("rogue", &format!("http://127.0.0.1:{rogue_port}")),
        upstream_toml("down", &format!("http://127.0.0.1:{down}"))
    );
    let site = "mtls = \"optional\"\ntrust = { internal_ca = true }\n\
        [[site.route]]\npath_prefix = \"/admin\"\nmtls = \"require\"\n\
        [[site.route]]\npath_prefix = \"/Files\"\nmtls = \"require\"\ncase_insensitive = true\n\
        [[site.route]]\npath_prefix = \"/ws-closed\"\nwebsocket = false\n\
        [[site.route]]\npath_prefix = \"/rogue\"\nupstream = \"rogue\"\n\
        [[site.route]]\npath_prefix = \"/down\"\nupstream = \"down\"\n";
    let toml = localhost_config(&env, &listen_toml(https, Some(http), None), &up, &top, site);
    let gw = Gateway::start(&env, "gw.toml", https, &toml);
    assert!(poll_until(Duration::from_secs(10), || port_open(http)).is_some(), "http listener not up");
    Fixture { env, gw, http, _up: up, _rogue: rogue }
}

/// Raw bytes over TLS (SNI localhost, ALPN http/1.1) to the gateway; what
/// came back until the server closed (requests say `Connection: close`).
fn tls_raw(gw: &Gateway, request: &str) -> String {
    let mut tls = rustls_stream(gw);
    tls.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let _ = tls.read_to_end(&mut got);
    String::from_utf8_lossy(&got).into_owned()
}

/// The status code of a raw HTTP/1.1 response.
fn status_of(response: &str) -> u16 {
    response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The JSON body of a raw response from the echo upstream: what it received.
fn echoed(response: &str) -> Value {
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not the echo upstream's JSON ({e}):\n{response}"))
}

fn echoed_header<'a>(v: &'a Value, name: &str) -> Vec<&'a str> {
    v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|p| p[1].as_str().unwrap())
        .collect()
}

/// One hand-built HTTP/2 request: (status, body, RST_STREAM code).
fn h2_request(f: &Fixture, fields: &[(&str, &str)]) -> (Option<u16>, String, Option<u64>) {
    require_python_module("h2");
    let script = f.env.write("h2client.py", H2_CLIENT_PY);
    let fields: Vec<[&str; 2]> = fields.iter().map(|(k, v)| [*k, *v]).collect();
    let mut c = Command::new(PYTHON);
    c.arg(&script).arg(f.gw.https.to_string()).arg(s(&f.gw.root)).arg(serde_json::to_string(&fields).unwrap());
    let o = run_limited(c, Duration::from_secs(30));
    assert_eq!(o.code, 0, "h2 client: {}", o.all());
    let v: Value = serde_json::from_str(o.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", o.all()));
    (v["status"].as_u64().map(|s| s as u16), v["body"].as_str().unwrap_or_default().to_owned(), v["reset"].as_u64())
}

#[test]
fn spellings_of_a_guarded_path_are_that_path() {
    let f = fixture();
    let guarded = ["/admin", "//admin", "/x/../admin", "/./admin", "/%61dmin", "/admin/", "/admin;a=b", "/files/x"];
    for path in guarded.iter().chain(&["/FILES", "/Files/../fIlEs/y"]) {
        for http in ["--http1.1", "--http2"] {
            let r = f.gw.curl("localhost", path, &["--path-as-is", http]);
            assert_eq!(r.status, 403, "{http} {path} without a certificate must be refused: {r:?}");
        }
    }
    for path in ["/%2e%2e/admin", "/a%2fadmin", "/admin%5c", "/a\\admin", "/a%00", "/public/..;/admin", "/%ff", "/.."] {
        let r = f.gw.curl("localhost", path, &["--path-as-is"]);
        assert_eq!(r.status, 400, "{path} is ambiguous and must be refused: {r:?}");
    }
    // Segment boundaries: /administrator is not under /admin; /ADMIN is (routes are
    // case-sensitive unless they say otherwise); the origin sees the canonical path.
    for (path, seen) in
        [("/administrator", "/administrator"), ("/ADMIN", "/ADMIN"), ("//open/./a/../b?q=%2F", "/open/b?q=%2F")]
    {
        let r = f.gw.curl("localhost", path, &["--path-as-is"]);
        assert!(r.ok(), "{path}: {r:?}");
        assert_eq!(r.upstream().path, seen, "{path}");
    }
    // With a certificate, the guarded route's origin gets the canonical path, not the spelling.
    let alice = f.env.client("alice");
    for (path, seen) in
        [("//admin//x/./y/../z?k=v", "/admin/x/z?k=v"), ("/%61dmin/%7euser/caf%c3%a9", "/admin/~user/caf%C3%A9")]
    {
        let r = f.gw.curl_cert("localhost", path, &alice, &["--path-as-is"]);
        assert!(r.ok(), "{path}: {r:?}");
        assert_eq!(r.upstream().path, seen, "{path}");
    }
    // The access line names the refusal and the path that was decided on.
    let r = f.gw.curl("localhost", "/x/../admin", &["--path-as-is", "-H", "X-Request-Id: ignored"]);
    assert_eq!(r.status, 403);
    let refused = f.gw.proc.wait_json(Duration::from_secs(5), |v| {
        v["event"] == "request" && v["path"] == "/admin" && v["refused"] == "route_requires_certificate"
    });
    assert!(refused.is_some(), "{}", f.gw.proc.dump());
    let bad = f.gw.proc.wait_json(Duration::from_secs(5), |v| v["refused"] == "path_encoded_slash");
    assert!(bad.is_some(), "{}", f.gw.proc.dump());
}

#[test]
fn a_normalizing_origin_is_not_reached_by_another_spelling() {
    require("nginx");
    let env = Env::new();
    let port = free_port();
    let nginx = Nginx::start(
        &env,
        port,
        &format!(
            "server {{ listen 127.0.0.1:{port}; default_type text/plain;\n\
             location /admin {{ return 200 \"admin area $uri\\n\"; }}\n\
             location / {{ return 200 \"public $uri\\n\"; }} }}"
        ),
    );
    let https = free_port();
    let cert = localhost_cert(&env);
    let toml = format!(
        "{}\n[[site]]\nhosts = [\"localhost\"]\ncertificate = {}\nupstream = \"nginx\"\nmtls = \"optional\"\n\
         trust = {{ internal_ca = true }}\n[[site.route]]\npath_prefix = \"/admin\"\nmtls = \"require\"\n{}",
        listen_toml(https, None, None),
        Env::cert_toml(&cert),
        upstream_toml("nginx", &format!("http://127.0.0.1:{}", nginx.port))
    );
    let gw = Gateway::start(&env, "gw.toml", https, &toml);
    // nginx itself reads every spelling as /admin ...
    let direct = curl(&["--path-as-is".to_owned(), format!("http://127.0.0.1:{port}//x/../%61dmin")]);
    assert!(direct.body.starts_with("admin area"), "nginx normalizes: {direct:?}");
    // ... and none of them gets there through the gateway without a certificate.
    for path in ["/admin", "//admin", "/x/../admin", "/./admin", "/%61dmin", "/admin/../admin/"] {
        let r = gw.curl("localhost", path, &["--path-as-is"]);
        assert_eq!(r.status, 403, "{path}: {r:?}");
        assert!(!r.body.contains("admin area"), "{path}: {r:?}");
    }
    let r = gw.curl("localhost", "/public/x", &[]);
    assert!(r.status == 200 && r.body.starts_with("public /public/x"), "{r:?}");
}

#[test]
fn only_websocket_upgrades_are_forwarded() {
    let f = fixture();
    // The h2c attack: upgrade on an open route, then speak HTTP/2 past the policy.
    let h2c = "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\
               Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    let response = tls_raw(&f.gw, h2c);
    assert_eq!(status_of(&response), 200, "h2c must not be switched to:\n{response}");
    let seen = echoed(&response);
    assert!(echoed_header(&seen, "upgrade").is_empty(), "Upgrade reached the origin: {seen}");
    assert!(echoed_header(&seen, "http2-settings").is_empty(), "HTTP2-Settings reached the origin: {seen}");
    // Any other protocol name is dropped the same way.
    let other = "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, close\r\nUpgrade: tls/1.2\r\n\r\n";
    let response = tls_raw(&f.gw, other);
    assert_eq!(status_of(&response), 200, "{response}");
    assert!(echoed_header(&echoed(&response), "upgrade").is_empty());
    // WebSocket goes through where allowed, and not on a route that says websocket = false.
    let ws = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    };
    let mut opened = rustls_stream(&f.gw);
    opened.write_all(ws("/ws").as_bytes()).unwrap();
    let mut head = [0u8; 12];
    opened.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101", "a WebSocket upgrade on an open route is switched");
    let closed = tls_raw(&f.gw, &ws("/ws-closed").replace("Connection: Upgrade", "Connection: Upgrade, close"));
    assert_eq!(status_of(&closed), 200, "{closed}");
    assert!(echoed_header(&echoed(&closed), "upgrade").is_empty());
    // An origin that switches protocols unasked gets no tunnel: 502.
    let r = f.gw.curl("localhost", "/rogue", &[]);
    assert_eq!(r.status, 502, "{r:?}");
}

/// A TLS stream to the gateway, left open.
fn rustls_stream(gw: &Gateway) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&gw.root).unwrap();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", gw.https)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    rustls::StreamOwned::new(client, tcp)
}

#[test]
fn one_authority_is_checked_and_forwarded() {
    let f = fixture();
    let port = f.gw.https;
    // HTTP/1.1: absolute form with another Host, two Hosts, a Host with a path, none.
    let requests = [
        format!("GET https://localhost:{port}/x HTTP/1.1\r\nHost: other.localhost\r\nConnection: close\r\n\r\n"),
        "GET /x HTTP/1.1\r\nHost: localhost\r\nHost: other.localhost\r\nConnection: close\r\n\r\n".to_owned(),
        "GET /x HTTP/1.1\r\nHost: localhost/foo?\r\nConnection: close\r\n\r\n".to_owned(),
        "GET /x HTTP/1.1\r\nHost: user@localhost\r\nConnection: close\r\n\r\n".to_owned(),
        "GET /x HTTP/1.1\r\nConnection: close\r\n\r\n".to_owned(),
        "OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_owned(),
    ];
    for request in &requests {
        let response = tls_raw(&f.gw, request);
        assert_eq!(status_of(&response), 400, "{request:?}\n{response}");
    }
    let connect = tls_raw(&f.gw, "CONNECT localhost:22 HTTP/1.1\r\nHost: localhost:22\r\n\r\n");
    assert_eq!(status_of(&connect), 405, "{connect}");
    // Absolute form that agrees: the origin gets that authority as Host, once.
    let agreeing =
        format!("GET https://LOCALHOST:{port}/x HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n");
    let response = tls_raw(&f.gw, &agreeing);
    assert_eq!(status_of(&response), 200, "{response}");
    let seen = echoed(&response);
    assert_eq!(echoed_header(&seen, "host"), [format!("localhost:{port}")], "{seen}");
    assert_eq!(seen["path"], "/x");

    // HTTP/2: :authority and host disagree; :path *; then a request that agrees.
    let authority = format!("localhost:{port}");
    let base = [(":method", "GET"), (":scheme", "https"), (":authority", authority.as_str()), (":path", "/x")];
    let mut conflicting = base.to_vec();
    conflicting.push(("host", "other.localhost"));
    let (status, body, reset) = h2_request(&f, &conflicting);
    assert!(status == Some(400) || reset.is_some(), "conflicting host over HTTP/2: {status:?} {body} {reset:?}");
    let mut asterisk = base.to_vec();
    asterisk[3] = (":path", "*");
    let (status, body, reset) = h2_request(&f, &asterisk);
    assert!(status == Some(400) || reset.is_some(), ":path * over HTTP/2: {status:?} {body} {reset:?}");
    let mut agreeing = base.to_vec();
    agreeing.push(("host", authority.as_str()));
    let (status, body, _) = h2_request(&f, &agreeing);
    assert_eq!(status, Some(200), "{body}");
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echoed_header(&seen, "host"), [authority.as_str()], "{seen}");
}

#[test]
fn the_redirect_is_built_only_from_a_served_host() {
    let f = fixture();
    let raw = |host: &str| {
        let mut tcp = TcpStream::connect(("127.0.0.1", f.http)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(tcp, "GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
        let mut got = String::new();
        let _ = tcp.read_to_string(&mut got);
        got
    };
    let hostile = raw("evil.example/foo?");
    assert_eq!(status_of(&hostile), 400, "{hostile}");
    assert!(!hostile.to_ascii_lowercase().contains("location:"), "{hostile}");
    let foreign = raw("evil.example");
    assert_eq!(status_of(&foreign), 404, "{foreign}");
    assert!(!foreign.to_ascii_lowercase().contains("location:"), "{foreign}");
    let served = raw("LocalHost:80");
    assert_eq!(status_of(&served), 308, "{served}");
    assert!(served.contains(&format!("location: https://localhost:{}/x\r\n", f.gw.https)), "{served}");
}

#[test]
fn error_pages_do_not_show_the_upstream() {
    let f = fixture();
    let r = f.gw.curl("localhost", "/down", &[]);
    assert!(r.status == 502 || r.status == 503, "{r:?}");
    let closed_port = r.body.contains("127.0.0.1") || r.body.to_ascii_lowercase().contains("refused");
    assert!(!closed_port, "the error page names the upstream or the OS error: {}", r.body);
    let json = f.gw.curl("localhost", "/down", &["-H", "Accept: application/json"]);
    assert!(!json.body.contains("127.0.0.1"), "{}", json.body);
}
