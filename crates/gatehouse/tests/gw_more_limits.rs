//! `[limits]`: max_header_bytes (431 or a closed connection, never a 2xx),
//! idle_timeout_ms (idle keep-alive connections are closed) and max_connections
//! (a connection over the limit waits until a slot frees up).
mod support;
use support::*;

use std::io::Write;
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
fn idle_keepalive_connection(gw: &Gateway) -> (Proc, std::process::ChildStdin) {
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

#[test]
fn idle_keepalive_connection_is_closed_after_idle_timeout() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "[limits]\nidle_timeout_ms = 1500\n", "");

    let (mut client, stdin) = idle_keepalive_connection(&gw);
    let answered = Instant::now();
    let st = client.wait_exit(Duration::from_secs(4));
    let took = answered.elapsed();
    eprintln!("idle connection closed after {} ms", ms(took));
    assert!(
        st.is_some(),
        "an idle keep-alive connection was not closed within 4 s (idle_timeout_ms = 1500)\n{}",
        client.dump()
    );
    assert!(took >= Duration::from_millis(1000), "closed after {} ms: too early for idle_timeout_ms = 1500", ms(took));
    drop(stdin);

    // A busy connection is not idle: a request every 500 ms keeps it open beyond 1.5 s.
    let (mut client, mut stdin) = idle_keepalive_connection(&gw);
    for i in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            client.try_exit().is_none(),
            "a connection used every 500 ms was closed (request {i})\n{}",
            client.dump()
        );
        stdin.write_all(format!("GET /busy{i} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
        let want = i + 2;
        poll_until(Duration::from_secs(5), || count_200(&client) >= want)
            .unwrap_or_else(|| panic!("no answer to /busy{i} on the busy connection\n{}", client.dump()));
    }
    drop(stdin);
}

#[test]
fn max_connections_third_connection_waits_until_a_slot_frees() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "[limits]\nmax_connections = 2\n", "");

    let (mut one, stdin1) = idle_keepalive_connection(&gw);
    let (mut two, stdin2) = idle_keepalive_connection(&gw);

    // A third client does not complete a request within 1 s.
    let start = Instant::now();
    let r = gw.curl("localhost", "/third", &["--max-time", "1"]);
    assert!(
        !r.ok(),
        "with max_connections = 2 and two open connections a third request must not complete: {r:?}\n{}",
        gw.proc.dump()
    );
    assert_ne!(r.exit, 0, "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(one.try_exit().is_none() && two.try_exit().is_none(), "the two idle connections must still be open");

    // Close one idle connection: a new request succeeds.
    drop(stdin1);
    let _ = one.child.kill();
    let _ = one.wait_exit(Duration::from_secs(2));
    let mut last = None;
    let took = poll_until(Duration::from_secs(5), || {
        let r = gw.curl("localhost", "/fourth", &["--max-time", "2"]);
        let ok = r.ok();
        last = Some(r);
        ok
    });
    assert!(took.is_some(), "after closing one connection a new request must succeed: {last:?}\n{}", gw.proc.dump());
    assert_eq!(last.unwrap().upstream().path, "/fourth");
    assert!(two.try_exit().is_none(), "the other idle connection is untouched");
    drop(stdin2);
}

#[test]
fn keepalive_connection_outlives_the_header_read_timeout_while_idle() {
    // The header read timeout counts from the first byte of a request head; a connection
    // that simply waits for its next request is governed by idle_timeout_ms alone.
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "[limits]\nheader_read_timeout_ms = 800\nidle_timeout_ms = 10000\n", "");

    let (mut client, mut stdin) = idle_keepalive_connection(&gw);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        client.try_exit().is_none(),
        "an idle keep-alive connection was closed by the header read timeout\n{}",
        client.dump()
    );
    stdin.write_all(b"GET /again HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    stdin.flush().unwrap();
    poll_until(Duration::from_secs(5), || count_200(&client) >= 2)
        .unwrap_or_else(|| panic!("no answer on the kept-alive connection after 2.5 s idle\n{}", client.dump()));
    drop(stdin);
}
