//! Connect failures: passive ejection, the retry on another server, and the
//! statuses a request gets when nothing can answer.

use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio::net::TcpListener;

use super::support::{Origin, dead_addr, front, get, pool_from, send};

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
