//! `[limits]`: max_header_bytes (431 or a closed connection, never a 2xx),
//! idle_timeout_ms (idle keep-alive connections are closed) and max_connections
//! (a connection over the limit waits until a slot frees up).
mod support;
use support::*;

use std::io::Write;
use std::process::ChildStdin;
use std::time::{Duration, Instant};

/// A request head over the limit: no 200; if a status came back, it is 431.
#[track_caller]
fn assert_header_refused(r: &Resp, what: &str) {
    let brief = format!(
        "curl exit {}, status {}, HTTP/{}, {} body bytes, stderr {:?}",
        r.exit,
        r.status,
        r.http_version,
        r.body.len(),
        r.stderr
    );
    eprintln!("{what}: big header -> {brief}");
    assert_ne!(r.status, 200, "{what}: a 4 KB header with max_header_bytes = 1024 must not be served: {brief}");
    assert!(!(200..300).contains(&r.status), "{what}: no 2xx expected: {brief}");
    if r.status != 0 {
        assert_eq!(r.status, 431, "{what}: the only status allowed is 431 Request Header Fields Too Large: {brief}");
    }
}

#[test]
fn max_header_bytes_http1_big_header_is_431_or_closed() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "[limits]\nmax_header_bytes = 1024\n", "");

    let r = gw.curl("localhost", "/", &["--http1.1"]);
    assert!(r.ok(), "a normal request must be served: {r:?}\n{}", gw.proc.dump());

    let big = format!("X-Big: {}", "a".repeat(4096));
    let r = gw.curl("localhost", "/", &["--http1.1", "-H", &big]);
    assert_header_refused(&r, "HTTP/1.1");

    // Nothing of it reached the upstream, and the gateway still serves.
    let r = gw.curl("localhost", "/after", &["--http1.1"]);
    assert!(r.ok(), "{r:?}");
}

#[test]
fn max_header_bytes_http2_big_header_is_431_or_refused() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "[limits]\nmax_header_bytes = 1024\n", "");

    let r = gw.curl("localhost", "/", &["--http2"]);
    assert!(r.ok() && r.http_version == "2", "a normal HTTP/2 request must be served: {r:?}");

    let big = format!("X-Big: {}", "a".repeat(4096));
    let r = gw.curl("localhost", "/", &["--http2", "-H", &big]);
    assert_header_refused(&r, "HTTP/2");
    let r = gw.curl("localhost", "/after", &["--http2"]);
    assert!(r.ok(), "{r:?}");
}

/// How many `HTTP/1.1 200` status lines a raw client has printed. (Bodies end without a
/// newline, so a body shows up as a line only together with what follows it.)
fn count_200(client: &Proc) -> usize {
    client.stdout().matches("HTTP/1.1 200").count()
}

/// `openssl s_client -quiet` connected to the gateway; sends one keep-alive request and
/// waits for its 200 (and the head's Content-Length line).
fn idle_keepalive_connection(gw: &Gateway) -> (Proc, ChildStdin) {
    let (client, mut stdin) = s_client_open(gw.https, &["-servername", "localhost", "-quiet"]);
    stdin.write_all(b"GET /keepalive HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    stdin.flush().unwrap();
    client
        .wait_stdout(Duration::from_secs(10), |l| l.to_ascii_lowercase().starts_with("content-length:"))
        .unwrap_or_else(|| panic!("no 200 on the keep-alive connection\n{}", client.dump()));
    assert_eq!(count_200(&client), 1, "{}", client.dump());
    assert!(
        !client.stdout().to_ascii_lowercase().contains("connection: close"),
        "the gateway must keep the connection alive:\n{}",
        client.dump()
    );
    (client, stdin)
}

/// Sends `GET PATH` on a raw keep-alive connection and waits for its answer, the `want`-th 200.
#[track_caller]
fn request_on(client: &Proc, stdin: &mut ChildStdin, path: &str, want: usize) {
    stdin.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes()).unwrap();
    stdin.flush().unwrap();
    poll_until(Duration::from_secs(10), || count_200(client) >= want)
        .unwrap_or_else(|| panic!("no answer to {path} on the keep-alive connection\n{}", client.dump()));
}

#[test]
fn idle_keepalive_connection_is_closed_after_idle_timeout() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let idle = Duration::from_millis(1500);
    let gw = Gateway::localhost(&env, &up, "[limits]\nidle_timeout_ms = 1500\n", "");

    // The gateway's idle clock starts after the answer, so after this.
    let asked = Instant::now();
    let (mut client, stdin) = idle_keepalive_connection(&gw);
    let st = client.wait_exit(idle * 10);
    let took = asked.elapsed();
    eprintln!("idle connection closed {} ms after its request", ms(took));
    assert!(
        st.is_some(),
        "an idle keep-alive connection was not closed within {} ms (idle_timeout_ms = 1500)\n{}",
        ms(idle * 10),
        client.dump()
    );
    assert!(
        took + Duration::from_millis(100) >= idle,
        "closed {} ms after its request: before idle_timeout_ms = 1500",
        ms(took)
    );
    drop(stdin);

    // A busy connection is not idle: a request every 300 ms keeps it open beyond 1.5 s.
    let opened = Instant::now();
    let (mut client, mut stdin) = idle_keepalive_connection(&gw);
    for i in 0..8 {
        // The client's pace, the input of this test.
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            client.try_exit().is_none(),
            "a connection used every 300 ms was closed (request {i})\n{}",
            client.dump()
        );
        request_on(&client, &mut stdin, &format!("/busy{i}"), i + 2);
    }
    assert!(opened.elapsed() > idle, "the busy connection lived longer than idle_timeout_ms");
    assert!(client.try_exit().is_none(), "the busy connection is still open\n{}", client.dump());
    drop(stdin);
}

/// Connections the kernel completed on 127.0.0.1:`port` that the server has not accepted
/// yet: the accept queue of the listening socket (`rx_queue` of its /proc/net/tcp row).
fn accept_queue(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .map(|row| row.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 4 && f[1] == local && f[3] == "0A")
        .and_then(|f| f[4].split_once(':').and_then(|(_, rx)| usize::from_str_radix(rx, 16).ok()))
        .unwrap_or(0)
}

#[test]
fn max_connections_third_connection_waits_until_a_slot_frees() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "[limits]\nmax_connections = 2\n", "");

    let (mut one, mut stdin1) = idle_keepalive_connection(&gw);
    let (mut two, stdin2) = idle_keepalive_connection(&gw);

    std::thread::scope(|scope| {
        let third = scope.spawn(|| gw.curl("localhost", "/third", &[]));
        // The kernel completes its TCP handshake; the gateway does not accept it.
        wait_for(Duration::from_secs(10), Duration::from_millis(20), || (accept_queue(gw.https) >= 1).then_some(()))
            .unwrap_or_else(|| panic!("the third connection never waited in the listener's queue\n{}", gw.proc.dump()));
        // Meanwhile the gateway serves the open connections, and still leaves the third one waiting.
        for i in 0..3 {
            request_on(&one, &mut stdin1, &format!("/meanwhile{i}"), i + 2);
        }
        assert!(
            !third.is_finished() && accept_queue(gw.https) == 1,
            "with max_connections = 2 and two open connections a third must wait\n{}",
            gw.proc.dump()
        );
        assert!(one.try_exit().is_none() && two.try_exit().is_none(), "the two idle connections must still be open");

        // Close one connection: the waiting one is taken and served.
        drop(stdin1);
        one.kill();
        let r = third.join().unwrap();
        assert!(r.ok(), "after closing one connection the waiting request must be served: {r:?}\n{}", gw.proc.dump());
        assert_eq!(r.upstream().path, "/third");
    });
    assert!(two.try_exit().is_none(), "the other idle connection is untouched");
    drop(stdin2);
}

/// A connection that sends part of a request head, then nothing; returns once the header
/// read timeout has closed it.
fn stalled_head_is_closed(gw: &Gateway) {
    let (mut client, mut stdin) = s_client_open(gw.https, &["-servername", "localhost", "-quiet"]);
    stdin.write_all(b"GET /stalled HTTP/1.1\r\nHost: localhost\r\n").unwrap();
    stdin.flush().unwrap();
    let st = client.wait_exit(Duration::from_secs(10));
    assert!(st.is_some(), "a stalled request head was not closed by the header read timeout\n{}", client.dump());
}

#[test]
fn keepalive_connection_outlives_the_header_read_timeout_while_idle() {
    // The header read timeout counts from the first byte of a request head; a connection
    // that simply waits for its next request is governed by idle_timeout_ms alone.
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "[limits]\nheader_read_timeout_ms = 800\nidle_timeout_ms = 60000\n", "");

    let (mut client, mut stdin) = idle_keepalive_connection(&gw);
    // The clock: two stalled heads opened one after the other, after this connection went
    // idle, are each closed by the header read timeout; the idle connection outlives both.
    for _ in 0..2 {
        stalled_head_is_closed(&gw);
    }
    assert!(
        client.try_exit().is_none(),
        "an idle keep-alive connection was closed by the header read timeout\n{}",
        client.dump()
    );
    request_on(&client, &mut stdin, "/again", 2);
    drop(stdin);
}
