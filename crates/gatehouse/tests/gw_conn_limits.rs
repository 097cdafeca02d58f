//! Connection limits that hold: `max_connections_per_ip` (closed at accept, counted,
//! logged once), `max_connections` fitted to the open-file limit (a warning, and
//! connections over it wait instead of accept failing with EMFILE) and changed by a
//! reload, the header read timeout on HTTP/2 (a dribbled preface or HEADERS frame is
//! closed; an idle connection is not), and an oversized client certificate refused
//! with a log line.
mod support;
use support::*;

use std::io::Write;
use std::net::TcpStream;
use std::process::{ChildStdin, Command};
use std::time::{Duration, Instant};

/// A gateway for localhost with an admin listener; returns it and the admin port.
fn gateway_with_admin(env: &Env, up: &Upstream, top: &str, site: &str) -> (Gateway, u16) {
    let (https, admin) = (free_port(), free_port());
    let toml = localhost_config(env, &listen_toml(https, None, Some(admin)), up, top, site);
    (Gateway::start(env, "gw.toml", https, &toml), admin)
}

/// Waits until the sample `name` on /metrics satisfies `pred`; its value.
#[track_caller]
fn wait_metric(gw: &Gateway, admin: u16, name: &str, pred: impl Fn(f64) -> bool) -> f64 {
    let mut last = None;
    let found = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        last = metric(&metrics(admin), name);
        last.filter(|v| pred(*v))
    });
    found.unwrap_or_else(|| panic!("{name} is {last:?} after 10 s\n{}", gw.proc.dump()))
}

/// Waits until every TLS-port connection made before (the harness's readiness probe)
/// has been handled, so the per-client count starts from zero.
fn wait_probe_handled(gw: &Gateway, admin: u16) {
    wait_metric(gw, admin, "gatehouse_tls_errors_total", |v| v >= 1.0);
}

/// A raw TCP connection to the TLS port that sends nothing (it holds its slots until the
/// header read timeout).
fn hold(gw: &Gateway) -> TcpStream {
    TcpStream::connect(("127.0.0.1", gw.https)).unwrap()
}

fn stderr_count(gw: &Gateway, needle: &str) -> usize {
    gw.proc.stderr().lines().filter(|l| l.contains(needle)).count()
}

const PER_IP: &str = "gatehouse_connections_refused_total{reason=\"max_connections_per_ip\"}";

#[test]
fn a_client_over_max_connections_per_ip_is_closed_at_accept_counted_and_logged_once() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let top = "[limits]\nmax_connections_per_ip = 3\nheader_read_timeout_ms = 60000\n";
    let (gw, admin) = gateway_with_admin(&env, &up, top, "");
    wait_probe_handled(&gw, admin);

    let mut held: Vec<TcpStream> = (0..3).map(|_| hold(&gw)).collect();
    // The fourth, fifth and sixth from 127.0.0.1 are closed at once, before any TLS.
    for n in 1..=3 {
        let mut over = hold(&gw);
        let (got, closed, took) = read_until_closed(&mut over, Duration::from_secs(10));
        assert!(
            closed && got.is_empty(),
            "connection {} over the limit of 3 was not closed\n{}",
            n + 3,
            gw.proc.dump()
        );
        assert!(took < Duration::from_secs(5), "closed only after {} ms", ms(took));
        wait_metric(&gw, admin, PER_IP, |v| v >= f64::from(n));
    }
    let r = gw.curl("localhost", "/", &["--max-time", "5"]);
    assert!(!r.ok(), "a fourth connection from 127.0.0.1 must not be served: {r:?}");

    let line = gw
        .proc
        .stderr()
        .lines()
        .find(|l| l.contains("max_connections_per_ip"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no warning about the per-IP limit\n{}", gw.proc.dump()));
    assert!(line.contains("127.0.0.1"), "the warning names the client: {line}");
    assert_eq!(stderr_count(&gw, "max_connections_per_ip"), 1, "one warning for four refusals\n{}", gw.proc.dump());

    // Once one of the three closes, the client gets a connection again.
    drop(held.remove(0));
    let served = poll_until(Duration::from_secs(10), || gw.curl("localhost", "/", &["--max-time", "5"]).ok());
    assert!(served.is_some(), "no request served after one of the three connections closed\n{}", gw.proc.dump());
    drop(held);
}

#[test]
fn max_connections_is_fitted_to_the_open_file_limit_and_connections_over_it_wait() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let (https, admin) = (free_port(), free_port());
    // A max_connections of its own (the default is fitted to the machine without a warning).
    let top = "[limits]\nmax_connections = 1000\nmax_connections_per_ip = 0\nheader_read_timeout_ms = 60000\n";
    let toml = localhost_config(&env, &listen_toml(https, None, Some(admin)), &up, top, "");
    let config = env.write("gw.toml", &toml);
    // Soft and hard limit 192: nothing to raise. (192 - 64) / 2 = 64 connections fit.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "ulimit -n 192 && exec \"$0\" \"$@\"", bin(), "--data-dir", s(&env.data())]);
    cmd.args(["serve", "--config", s(&config)]).current_dir("/");
    cmd.env_remove(PASS_ENV).env_remove("GATEHOUSE_DATA_DIR").env("NO_COLOR", "1");
    let mut proc = Proc::spawn(cmd, "gatehouse serve (ulimit -n 192)");
    proc.wait_listening(https, Duration::from_secs(20), &toml);
    let mut gw = Gateway { proc, https, config, root: env.root() };

    let warning = gw
        .proc
        .stderr()
        .lines()
        .find(|l| l.contains("limits.max_connections"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no warning that max_connections was lowered\n{}", gw.proc.dump()));
    for part in ["1000", "64", "192", "ulimit -n", "LimitNOFILE"] {
        assert!(warning.contains(part), "the warning should name {part:?}: {warning}");
    }
    assert_eq!(wait_metric(&gw, admin, "gatehouse_connections_limit", |_| true), 64.0);

    // More connections than the process has descriptors left: those past 64 wait in the
    // accept queue (128 deep) instead of accept failing (EMFILE) over and over.
    let open_files = std::fs::read_dir(format!("/proc/{}/fd", gw.proc.pid())).unwrap().count();
    let n = 192 - open_files + 8;
    assert!(n <= 64 + 128, "{open_files} descriptors open at start: too many for this test's arithmetic");
    let held: Vec<TcpStream> = (0..n).map(|_| hold(&gw)).collect();
    let r = gw.curl("localhost", "/", &["--max-time", "2"]);
    assert!(!r.ok(), "with 64 slots taken a request must wait: {r:?}");
    assert!(gw.proc.try_exit().is_none(), "the gateway died\n{}", gw.proc.dump());
    assert_eq!(stderr_count(&gw, "accept failed"), 0, "accept ran out of descriptors\n{}", gw.proc.dump());
    // The admin listener still has descriptors to answer with.
    assert!(metric(&metrics(admin), "gatehouse_connections_limit").is_some());

    drop(held);
    let served = poll_until(Duration::from_secs(20), || gw.curl("localhost", "/", &["--max-time", "5"]).ok());
    assert!(served.is_some(), "no request served once the held connections closed\n{}", gw.proc.dump());
    assert_eq!(stderr_count(&gw, "accept failed"), 0, "{}", gw.proc.dump());
}

#[test]
fn a_reload_grows_and_shrinks_max_connections_without_cutting_open_ones() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let limits = |n: usize| format!("[limits]\nmax_connections = {n}\nheader_read_timeout_ms = 60000\n");
    let (gw, admin) = gateway_with_admin(&env, &up, &limits(2), "");
    let toml = |n: usize| localhost_config(&env, &listen_toml(gw.https, None, Some(admin)), &up, &limits(n), "");
    assert_eq!(wait_metric(&gw, admin, "gatehouse_connections_limit", |_| true), 2.0);
    wait_probe_handled(&gw, admin);

    let mut held = vec![hold(&gw), hold(&gw)];
    let r = gw.curl("localhost", "/", &["--max-time", "1"]);
    assert!(!r.ok(), "max_connections = 2 with two open: a third must wait: {r:?}");

    gw.rewrite_config(&toml(4));
    wait_metric(&gw, admin, "gatehouse_connections_limit", |v| v == 4.0);
    let r = gw.curl("localhost", "/", &["--max-time", "5"]);
    assert!(r.ok(), "after the reload to 4 a third connection is served: {r:?}\n{}", gw.proc.dump());

    gw.rewrite_config(&toml(2));
    wait_metric(&gw, admin, "gatehouse_connections_limit", |v| v == 2.0);
    let r = gw.curl("localhost", "/", &["--max-time", "1"]);
    assert!(!r.ok(), "back to 2 with two open: a third must wait again: {r:?}");
    // The open ones were not cut.
    for c in &mut held {
        let (_, closed, _) = read_until_closed(c, Duration::from_millis(300));
        assert!(!closed, "a held connection was closed by the reload");
    }
    drop(held.remove(0));
    let served = poll_until(Duration::from_secs(10), || gw.curl("localhost", "/", &["--max-time", "5"]).ok());
    assert!(served.is_some(), "no request served after one of the two closed\n{}", gw.proc.dump());
    let refused = gw.proc.stderr().lines().filter(|l| l.contains("reload refused")).count();
    assert_eq!(refused, 0, "{}", gw.proc.dump());
}

// ---------------------------------------------------------------- HTTP/2 header read timeout

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An HTTP/2 frame on stream `stream`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A GET request head for `path` on stream `stream` (HPACK without Huffman or indexing).
fn get_headers(stream: u32, path: &str) -> Vec<u8> {
    // :method GET, :scheme https, then :path and :authority as literals with indexed names.
    let mut block = vec![0x82, 0x87, 0x04, path.len() as u8];
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, 9]);
    block.extend_from_slice(b"localhost");
    frame(0x1, 0x4 | 0x1, stream, &block)
}

/// `openssl s_client -alpn h2` connected to the gateway, once it reports h2 was negotiated.
fn h2_client(gw: &Gateway) -> (Proc, ChildStdin) {
    let (client, stdin) = s_client_open(gw.https, &["-servername", "localhost", "-alpn", "h2", "-nocommands"]);
    client
        .wait_stdout(Duration::from_secs(10), |l| l.contains("ALPN protocol: h2"))
        .unwrap_or_else(|| panic!("h2 was not negotiated\n{}", client.dump()));
    (client, stdin)
}

/// Sends `bytes` one every `every` until the connection closes (or 20 s pass); the time it took.
fn dribble(client: &mut Proc, stdin: &mut ChildStdin, bytes: &[u8], every: Duration) -> Option<Duration> {
    let start = Instant::now();
    for b in bytes.iter().cycle() {
        if start.elapsed() >= Duration::from_secs(20) {
            return None;
        }
        if client.try_exit().is_some() || stdin.write_all(&[*b]).and_then(|_| stdin.flush()).is_err() {
            return Some(start.elapsed());
        }
        // Waiting for the close, one byte interval at most.
        if client.wait_exit(every).is_some() {
            return Some(start.elapsed());
        }
    }
    None
}

#[test]
fn http2_preface_sent_a_byte_a_second_is_closed_after_the_header_read_timeout() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "[limits]\nheader_read_timeout_ms = 2000\n", "");

    let (mut client, mut stdin) = h2_client(&gw);
    let took = dribble(&mut client, &mut stdin, PREFACE, Duration::from_secs(1))
        .unwrap_or_else(|| panic!("a dribbled HTTP/2 preface kept the connection open 20 s\n{}", client.dump()));
    eprintln!("dribbled preface closed after {} ms", ms(took));
    assert!(took >= Duration::from_millis(1000), "closed after {} ms: before the timeout of 2000 ms", ms(took));
    assert!(gw.curl("localhost", "/", &["--http2"]).ok());
}

#[test]
fn http2_request_head_sent_slowly_is_closed_and_an_idle_http2_connection_is_not() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let top = "[limits]\nheader_read_timeout_ms = 2000\nidle_timeout_ms = 60000\n";
    let gw = Gateway::localhost(&env, &up, top, "");

    // The preface and SETTINGS at once, then a HEADERS frame a byte every 300 ms.
    let (mut client, mut stdin) = h2_client(&gw);
    stdin.write_all(&[PREFACE, &frame(0x4, 0, 0, &[])].concat()).unwrap();
    stdin.flush().unwrap();
    let took = dribble(&mut client, &mut stdin, &get_headers(1, "/slow"), Duration::from_millis(300))
        .unwrap_or_else(|| panic!("a dribbled HEADERS frame kept the connection open 20 s\n{}", client.dump()));
    eprintln!("dribbled HEADERS closed after {} ms", ms(took));
    assert!(gw.access_lines().iter().all(|l| l["path"] != "/slow"), "{}", gw.proc.dump());

    // A request, then frames that are no request head (SETTINGS ack, PING, WINDOW_UPDATE):
    // the connection waits for its next request past the header read timeout.
    let (mut client, mut stdin) = h2_client(&gw);
    stdin.write_all(&[PREFACE, &frame(0x4, 0, 0, &[]), &get_headers(1, "/first")].concat()).unwrap();
    stdin.flush().unwrap();
    gw.proc
        .wait_json(Duration::from_secs(10), |v| v["event"] == "request" && v["path"] == "/first")
        .unwrap_or_else(|| panic!("no access line for /first\n{}", gw.proc.dump()));
    let control = [frame(0x4, 0x1, 0, &[]), frame(0x6, 0, 0, &[7; 8]), frame(0x8, 0, 0, &[0, 1, 0, 0])].concat();
    stdin.write_all(&control).unwrap();
    stdin.flush().unwrap();
    let closed = client.wait_exit(Duration::from_secs(6));
    assert!(closed.is_none(), "an idle HTTP/2 connection was closed by the header read timeout\n{}", client.dump());
    stdin.write_all(&get_headers(3, "/second")).unwrap();
    stdin.flush().unwrap();
    gw.proc
        .wait_json(Duration::from_secs(10), |v| v["event"] == "request" && v["path"] == "/second")
        .unwrap_or_else(|| panic!("no answer on the idle HTTP/2 connection\n{}\n{}", client.dump(), gw.proc.dump()));
    drop(stdin);
}

// ---------------------------------------------------------------- oversized client certificate

#[test]
fn a_92_kb_client_certificate_is_refused_with_a_handshake_refused_line() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "", "mtls = \"require\"\ntrust = { internal_ca = true }\n");

    let comment = "x".repeat(92 * 1024);
    let big = env.openssl_ca(
        "big",
        "big-client",
        &format!("extendedKeyUsage = clientAuth\nnsComment = \"{comment}\"\n"),
        "20240101000000Z",
        "20340101000000Z",
    );
    let size = big.der().len();
    assert!(size > 92 * 1024, "the certificate is {size} bytes");

    let r = gw.curl_cert("localhost", "/", &big, &[]);
    assert!(!r.ok(), "a 92 KB certificate must not be served: {r:?}");
    let line = gw
        .wait_refusal("handshake_refused", "client_hello_or_certificate_too_large", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no handshake_refused line for the 92 KB certificate\n{}", gw.proc.dump()));
    assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
    assert!(line["detail"].as_str().is_some_and(|d| d.contains("64 KiB")), "{line}");

    let alice = env.client("alice");
    assert!(gw.curl_cert("localhost", "/", &alice, &[]).ok());
}
