//! Limits: slowloris (handshake and request head within header_read_timeout_ms) and
//! non-TLS bytes on the TLS port.
//!
//! The timeout tests wait for the close itself (up to ten times the timeout) and check
//! only that it did not come before the timeout: the clock starts before the client's
//! first byte, so the gateway's own clock cannot have started earlier.
mod support;
use support::*;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const HEADER_READ_TIMEOUT: Duration = Duration::from_millis(1000);
const LIMITS: &str = "[limits]\nheader_read_timeout_ms = 1000\n";
/// How long a test waits for a close the header read timeout makes; only a hang reaches it.
const CLOSE_LIMIT: Duration = Duration::from_secs(10);
/// How much earlier than the timeout a close is still accepted (clock reads, rounding).
const EARLY: Duration = Duration::from_millis(100);

/// The close came after the header read timeout, not at once for another reason.
#[track_caller]
fn assert_not_before_timeout(took: Duration, what: &str) {
    assert!(
        took + EARLY >= HEADER_READ_TIMEOUT,
        "{what} was closed after {} ms, before header_read_timeout_ms = {}",
        ms(took),
        ms(HEADER_READ_TIMEOUT)
    );
}

#[test]
fn stalled_partial_request_head_is_disconnected_after_header_read_timeout() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, LIMITS, "");

    let (mut client, mut stdin) = s_client_open(gw.https, &["-servername", "localhost", "-quiet"]);
    // Part of a request head, then nothing.
    let sent = Instant::now();
    stdin.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").unwrap();
    stdin.flush().unwrap();
    let st = client.wait_exit(CLOSE_LIMIT);
    let took = sent.elapsed();
    assert!(
        st.is_some(),
        "the stalled connection was not closed within {} ms (header_read_timeout_ms = 1000)\n{}",
        ms(CLOSE_LIMIT),
        client.dump()
    );
    assert_not_before_timeout(took, "the stalled connection");
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
    let connecting = Instant::now();
    let mut tcp = TcpStream::connect(("127.0.0.1", gw.https)).unwrap();
    let (_, closed, _) = read_until_closed(&mut tcp, CLOSE_LIMIT);
    assert!(closed, "a connection that never starts the handshake should be closed (header_read_timeout_ms = 1000)");
    assert_not_before_timeout(connecting.elapsed(), "the silent connection");
    assert!(gw.curl("localhost", "/", &[]).ok());
}

#[test]
fn garbage_bytes_on_the_tls_port_close_the_connection_and_others_are_served() {
    let env = Env::new();
    let up = Upstream::start(&env);
    // A header read timeout far beyond the waits below: a connection closed within them was
    // closed for its bytes, not by the timeout.
    let mut gw = Gateway::localhost(&env, &up, "[limits]\nheader_read_timeout_ms = 120000\n", "");
    let limit = Duration::from_secs(20);

    // A connection stalled in the middle of a TLS record header: it must not block others.
    let mut stalled = TcpStream::connect(("127.0.0.1", gw.https)).unwrap();
    stalled.write_all(&[0x16, 0x03]).unwrap();

    // Plain HTTP on the TLS port.
    let mut tcp = TcpStream::connect(("127.0.0.1", gw.https)).unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let (got, closed, _) = read_until_closed(&mut tcp, limit);
    assert!(closed, "plain HTTP on the TLS port: connection should be closed (got {} bytes)", got.len());
    assert!(!String::from_utf8_lossy(&got).contains(" 200 "), "{:?}", String::from_utf8_lossy(&got));

    // Random binary garbage.
    let mut tcp = TcpStream::connect(("127.0.0.1", gw.https)).unwrap();
    let garbage: Vec<u8> = (0..2048u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let _ = tcp.write_all(&garbage);
    let (_, closed, _) = read_until_closed(&mut tcp, limit);
    assert!(closed, "garbage on the TLS port: connection should be closed");

    // The gateway still serves others, and the stalled connection is still open.
    for _ in 0..3 {
        let r = gw.curl("localhost", "/", &[]);
        assert!(r.ok(), "{r:?}\n{}", gw.proc.dump());
    }
    assert!(gw.proc.try_exit().is_none());
    stalled.set_nonblocking(true).unwrap();
    let still_open = matches!(stalled.read(&mut [0u8; 16]), Err(e) if e.kind() == ErrorKind::WouldBlock);
    assert!(still_open, "the stalled connection should still be waiting for the rest of its record");
}

#[test]
fn trickled_request_head_is_disconnected_after_header_read_timeout() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, LIMITS, "");

    let (mut client, mut stdin) = s_client_open(gw.https, &["-servername", "localhost", "-quiet"]);
    let start = Instant::now();
    stdin.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n").unwrap();
    stdin.flush().unwrap();
    // One header byte every 200 ms (slowloris): 50 bytes, ten times the timeout, keep a
    // connection whose clock restarted with each byte open to the end.
    let mut closed = None;
    for _ in 0..50 {
        if client.try_exit().is_some() || stdin.write_all(b"X").and_then(|_| stdin.flush()).is_err() {
            closed = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = closed
        .or_else(|| client.try_exit().map(|_| start.elapsed()))
        .unwrap_or_else(|| panic!("a trickled request head kept the connection open for 50 bytes\n{}", client.dump()));
    assert_not_before_timeout(took, "the trickled connection");
    assert!(!client.stdout().contains("HTTP/1.1 200"), "{}", client.dump());
    assert!(gw.curl("localhost", "/", &[]).ok());
}
