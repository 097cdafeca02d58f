//! Limits: slowloris (handshake and request head within header_read_timeout_ms) and
//! non-TLS bytes on the TLS port.
mod support;
use support::*;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const LIMITS: &str = "[limits]\nheader_read_timeout_ms = 1000\n";

#[test]
fn stalled_partial_request_head_is_disconnected_after_header_read_timeout() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, LIMITS, "");

    let (mut client, mut stdin) = s_client_open(gw.https, &["-servername", "localhost", "-quiet"]);
    // Part of a request head, then nothing.
    stdin.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").unwrap();
    stdin.flush().unwrap();
    let sent = Instant::now();
    let st = client.wait_exit(Duration::from_secs(6));
    let took = sent.elapsed();
    assert!(st.is_some(), "the stalled connection was not closed within 6 s (header_read_timeout_ms = 1000)");
    assert!(took <= Duration::from_millis(4000), "closed only after {} ms", ms(took));
    assert!(!client.stdout().contains("HTTP/1.1 200"), "the partial request must not be served:\n{}", client.dump());
    drop(stdin);

    // Others are served meanwhile and after.
    assert!(gw.curl("localhost", "/", &[]).ok());
}

#[test]
fn silent_tcp_connection_is_closed_after_header_read_timeout() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, LIMITS, "");
    let mut tcp = TcpStream::connect(("127.0.0.1", gw.https)).unwrap();
    let (_, closed, took) = read_until_closed(&mut tcp, Duration::from_secs(6));
    assert!(closed, "a connection that never starts the handshake should be closed (header_read_timeout_ms = 1000)");
    assert!(took >= Duration::from_millis(500), "closed too early ({} ms)", ms(took));
    assert!(took <= Duration::from_millis(4000), "closed only after {} ms", ms(took));
    assert!(gw.curl("localhost", "/", &[]).ok());
}

#[test]
fn garbage_bytes_on_the_tls_port_close_the_connection_and_others_are_served() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let mut gw = Gateway::localhost(&env, &up, "", "");

    // A connection stalled in the middle of a TLS record header: it must not block others.
    let mut stalled = TcpStream::connect(("127.0.0.1", gw.https)).unwrap();
    stalled.write_all(&[0x16, 0x03]).unwrap();

    // Plain HTTP on the TLS port.
    let mut tcp = TcpStream::connect(("127.0.0.1", gw.https)).unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let (got, closed, took) = read_until_closed(&mut tcp, Duration::from_secs(5));
    assert!(closed, "plain HTTP on the TLS port: connection should be closed (got {} bytes)", got.len());
    assert!(took <= Duration::from_secs(3), "closed only after {} ms", ms(took));
    assert!(!String::from_utf8_lossy(&got).contains(" 200 "), "{:?}", String::from_utf8_lossy(&got));

    // Random binary garbage.
    let mut tcp = TcpStream::connect(("127.0.0.1", gw.https)).unwrap();
    let garbage: Vec<u8> = (0..2048u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let _ = tcp.write_all(&garbage);
    let (_, closed, took) = read_until_closed(&mut tcp, Duration::from_secs(5));
    assert!(closed, "garbage on the TLS port: connection should be closed");
    assert!(took <= Duration::from_secs(3), "closed only after {} ms", ms(took));

    // The gateway still serves others (the stalled connection is still open).
    for _ in 0..3 {
        let r = gw.curl("localhost", "/", &[]);
        assert!(r.ok(), "{r:?}\n{}", gw.proc.dump());
    }
    assert!(gw.proc.try_exit().is_none());
    drop(stalled);
}

#[test]
fn trickled_request_head_is_disconnected_after_header_read_timeout() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, LIMITS, "");

    let (mut client, mut stdin) = s_client_open(gw.https, &["-servername", "localhost", "-quiet"]);
    stdin.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n").unwrap();
    stdin.flush().unwrap();
    let start = Instant::now();
    // One header byte every 200 ms (slowloris), for at most 8 s.
    let mut closed = None;
    while start.elapsed() < Duration::from_secs(8) {
        if client.try_exit().is_some() {
            closed = Some(start.elapsed());
            break;
        }
        if stdin.write_all(b"X").and_then(|_| stdin.flush()).is_err() {
            closed = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let took =
        closed.unwrap_or_else(|| panic!("a trickled request head kept the connection open for 8 s\n{}", client.dump()));
    assert!(took <= Duration::from_millis(4000), "closed only after {} ms", ms(took));
    assert!(!client.stdout().contains("HTTP/1.1 200"), "{}", client.dump());
    assert!(gw.curl("localhost", "/", &[]).ok());
}
