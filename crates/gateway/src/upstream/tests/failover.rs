//! Connect failures: passive ejection, the retry on another server, the
//! second attempt after an origin closes a long-idle connection, and the
//! statuses a request gets when nothing can answer.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::support::{Origin, dead_addr, front, get, pool_from, send, wait_until};
use crate::upstream::pool::REUSE_RACE;

#[tokio::test]
async fn a_killed_server_is_ejected_and_its_requests_retried_on_another() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let b_authority = b.authority();
    let pool = pool_from(
        &format!(
            r#"name = "app"
               servers = ["{}", "{}"]
               max_fails = 1"#,
            a.url(),
            b.url()
        ),
        Path::new("."),
    );
    let front = front(pool.clone()).await;
    // Both servers answer, and each leaves an idle keep-alive connection.
    let mut seen = vec![get(front, "/").await.server().to_owned(), get(front, "/").await.server().to_owned()];
    seen.sort();
    let mut expected = vec![a.authority(), b.authority()];
    expected.sort();
    assert_eq!(seen, expected);

    b.kill().await;
    for _ in 0..4 {
        let reply = get(front, "/").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.server(), a.authority());
    }
    // The request that found b refused was retried on a; b is now skipped.
    assert_eq!(a.state.hits.load(SeqCst), 5);
    assert_eq!((pool.healthy(), pool.servers()), (1, 2));
    assert!(!pool.servers[1].available(), "{b_authority} should be ejected");
}

#[tokio::test]
async fn a_request_with_a_body_is_not_retried() {
    let a = Origin::start("a").await;
    let dead = dead_addr().await;
    // max_fails = 0: no ejection, so round robin alternates between the two.
    let pool = pool_from(
        &format!(
            r#"name = "app"
               servers = ["http://{dead}", "{}"]
               max_fails = 0"#,
            a.url()
        ),
        Path::new("."),
    );
    let front = front(pool.clone()).await;
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let req = Request::post("/form")
            .header("host", "app.example")
            .body(Full::new(Bytes::from_static(b"name=value")))
            .expect("request");
        let reply = send(front, req).await;
        if reply.status == 502 {
            assert!(reply.body.contains(&format!("cannot connect to upstream server {dead}")), "{}", reply.body);
        } else {
            assert_eq!(reply.body, "a POST /form host=app.example body=10");
        }
        statuses.push(reply.status.as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 502]);
    // A body-less GET that meets the dead server is retried on a.
    for _ in 0..2 {
        assert_eq!(get(front, "/").await.status, 200);
    }
    assert_eq!(pool.healthy(), 2, "max_fails = 0 never ejects");
}

#[tokio::test]
async fn no_available_server_is_a_503() {
    let dead = dead_addr().await;
    let pool = pool_from(
        &format!(
            r#"name = "app"
               servers = ["http://{dead}"]
               max_fails = 1"#
        ),
        Path::new("."),
    );
    let front = front(pool.clone()).await;
    // The first request finds the server refusing (and no other to retry on)...
    let reply = get(front, "/").await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert!(reply.body.contains("TCP connect"), "{}", reply.body);
    // ...after which it is ejected for fail_timeout_ms.
    let reply = get(front, "/").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.body, r#"upstream "app" has no healthy server"#);
    assert_eq!(pool.healthy(), 0);
}

#[tokio::test]
async fn a_server_that_does_not_complete_the_handshake_is_a_504() {
    // Accepts TCP but never answers the TLS ClientHello.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = super::certs::TestCa::new("Timeout Test");
    super::certs::write(dir.path(), "ca.pem", &ca.root_pem());
    let pool = pool_from(
        &format!(
            r#"name = "slow"
               servers = ["https://{addr}"]
               connect_timeout_ms = 200
               tls = {{ ca = "ca.pem" }}"#
        ),
        dir.path(),
    );
    let front = front(pool.clone()).await;
    let started = std::time::Instant::now();
    let reply = get(front, "/").await;
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.body, format!("connecting to upstream server {addr} timed out"));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

/// An origin that answers the first request on each connection and closes the
/// connection when a second request arrives on it, without answering: what an
/// origin does when its keep-alive timeout fires as the request comes in.
/// Returns its address and how many connections it accepted.
async fn closing_origin() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            count.fetch_add(1, SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                for answered in [false, true] {
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tcp.read(&mut buf).await {
                            Ok(n @ 1..) => head.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                    }
                    head.clear();
                    if answered {
                        return; // the second request: close without a response
                    }
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if tcp.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_get_on_a_long_idle_connection_the_origin_closes_is_sent_again_on_a_new_one() {
    let (origin, accepted) = closing_origin().await;
    let pool = pool_from(&format!("name = \"app\"\nservers = [\"http://{origin}\"]"), Path::new("."));
    let front = front(pool.clone()).await;
    assert_eq!(get(front, "/").await.status, 200);
    wait_until("the connection is idle", || pool.servers[0].idle_count() == 1).await;
    // Idle for longer than the window in which a connection is taken to be open.
    tokio::time::sleep(REUSE_RACE + Duration::from_millis(200)).await;
    let reply = get(front, "/").await;
    assert_eq!(reply.status, 200, "sent again on a new connection: {}", reply.body);
    assert_eq!(accepted.load(SeqCst), 2);
}

#[tokio::test]
async fn a_get_on_a_connection_used_just_before_is_not_sent_again() {
    // The trade-off of not copying every request: an origin that closes a
    // connection used less than REUSE_RACE ago makes that request a 502.
    let (origin, accepted) = closing_origin().await;
    let pool = pool_from(&format!("name = \"app\"\nservers = [\"http://{origin}\"]"), Path::new("."));
    let front = front(pool.clone()).await;
    assert_eq!(get(front, "/").await.status, 200);
    wait_until("the connection is idle", || pool.servers[0].idle_count() == 1).await;
    let reply = get(front, "/").await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(accepted.load(SeqCst), 1);
}
