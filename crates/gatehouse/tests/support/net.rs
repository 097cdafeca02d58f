//! Ports for the servers a test starts, and waiting: for a port, for a condition,
//! for the peer to close a socket.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Where [`free_port`] hands out ports: below the kernel's ephemeral range (32768 and
/// up), which bind(0) and outgoing connections draw from.
const PORTS_FROM: u16 = 20_000;
const PORTS: u32 = 12_000;

/// A free port for a server the test starts. Taken below the ephemeral range and from
/// a counter, so no other socket of this test binary can take it between this probe
/// and the server's bind: with bind(0)-and-release, two tests could be handed the same
/// port. Each binary starts its walk at a place drawn from its pid, so binaries that
/// run at the same time walk apart; the bind probe skips what another one holds.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(97) % PORTS;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = PORTS_FROM + ((start + n) % PORTS) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// True when 127.0.0.1:`port` accepts a TCP connection now.
pub fn port_open(port: u16) -> bool {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// Calls `f` every `every` until it returns `Some` or `limit` passes.
pub fn wait_for<T>(limit: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= limit {
            return None;
        }
        thread::sleep(every);
    }
}

/// Polls `f` every 100 ms until it returns true or `limit` passes; the elapsed time on success.
pub fn poll_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    wait_for(limit, Duration::from_millis(100), || f().then(|| start.elapsed()))
}

/// Reads until EOF/reset or `limit`; returns (bytes, closed_by_peer, elapsed).
pub fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool, Duration) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return (got, false, start.elapsed());
        }
        stream.set_read_timeout(Some(left.min(Duration::from_millis(200)))).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (got, true, start.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return (got, true, start.elapsed()),
        }
    }
}
