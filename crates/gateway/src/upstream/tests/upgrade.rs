//! WebSocket-style upgrades through the pool: the 101 reaches the client, the
//! tunnel carries bytes both ways, and the request counts as in flight until
//! the tunnel closes.

use std::path::Path;

use http::HeaderValue;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::support::{Origin, client, front, get_request, pool_from, wait_until};

#[tokio::test]
async fn an_upgraded_connection_tunnels_through_the_pool() {
    let a = Origin::start("a").await;
    let pool = pool_from(
        &format!(
            r#"name = "ws"
               servers = ["{}"]
               balance = "least_conn""#,
            a.url()
        ),
        Path::new("."),
    );
    let front = front(pool.clone()).await;
    let (mut sender, _client) = client(front).await;
    let mut req = get_request("/upgrade");
    req.headers_mut().insert("connection", HeaderValue::from_static("upgrade"));
    req.headers_mut().insert("upgrade", HeaderValue::from_static("echo"));
    let mut res = sender.send_request(req).await.expect("response");
    assert_eq!(res.status(), 101);
    assert_eq!(res.headers()["upgrade"], "echo");
    let mut tunnel = TokioIo::new(hyper::upgrade::on(&mut res).await.expect("upgrade"));

    for message in [&b"ping"[..], b"second message"] {
        tunnel.write_all(message).await.expect("write");
        let mut echoed = vec![0u8; message.len()];
        tunnel.read_exact(&mut echoed).await.expect("read");
        assert_eq!(echoed, message);
    }
    assert_eq!(pool.servers[0].in_flight(), 1, "an open tunnel is a request in flight");

    drop(tunnel);
    wait_until("the closed tunnel stops counting", || pool.servers[0].in_flight() == 0).await;
}
