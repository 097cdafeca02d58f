//! Round robin, least connections, and when a request stops counting as in flight.

use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;

use super::support::{Origin, client, front, get, get_request, pool_from, wait_until};

#[tokio::test]
async fn round_robin_gives_each_server_an_equal_share() {
    let origins = [Origin::start("a").await, Origin::start("b").await, Origin::start("c").await];
    let pool = pool_from(
        &format!(
            r#"name = "app"
               servers = ["{}", "{}", "{}"]"#,
            origins[0].url(),
            origins[1].url(),
            origins[2].url()
        ),
        Path::new("."),
    );
    let front = front(pool.clone()).await;
    for _ in 0..9 {
        let reply = get(front, "/items?page=2").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let origin =
            origins.iter().find(|o| o.authority() == reply.server()).expect("reported server is one of the pool's");
        // Path and query kept, Host kept, the reported server is the one that answered.
        assert_eq!(reply.body, format!("{} GET /items host=app.example body=0", origin.state.name));
    }
    for origin in &origins {
        assert_eq!(origin.state.hits.load(SeqCst), 3);
    }
    assert_eq!((pool.healthy(), pool.servers()), (3, 3));
}

#[tokio::test]
async fn least_conn_sends_new_requests_to_the_idle_server() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let pool = pool_from(
        &format!(
            r#"name = "app"
               servers = ["{}", "{}"]
               balance = "least_conn""#,
            a.url(),
            b.url()
        ),
        Path::new("."),
    );
    let front = front(pool.clone()).await;
    let held = tokio::spawn(async move { get(front, "/hold").await });
    let (a_state, b_state) = (a.state.clone(), b.state.clone());
    wait_until("the held request reaches an origin", || a_state.hits.load(SeqCst) + b_state.hits.load(SeqCst) == 1)
        .await;
    // servers[0] is a, servers[1] is b.
    let (busy, idle) = if a.state.hits.load(SeqCst) == 1 { (&a, 1) } else { (&b, 0) };
    let idle_server = pool.servers[idle].clone();
    for _ in 0..4 {
        wait_until("the idle server's last request is done", || idle_server.in_flight() == 0).await;
        let reply = get(front, "/").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.server(), idle_server.authority());
    }
    assert_eq!(busy.state.hits.load(SeqCst), 1);
    busy.state.release.notify_one();
    let reply = held.await.expect("held request");
    assert_eq!((reply.status.as_u16(), reply.server()), (200, busy.authority().as_str()));
    wait_until("nothing is in flight", || pool.servers.iter().all(|s| s.in_flight() == 0)).await;
}

#[tokio::test]
async fn a_request_is_in_flight_until_its_response_body_ends() {
    let a = Origin::start("a").await;
    let pool = pool_from(&format!("name = \"app\"\nservers = [\"{}\"]", a.url()), Path::new("."));
    let front = front(pool.clone()).await;
    let (mut sender, _client) = client(front).await;
    let res = sender.send_request(get_request("/stream")).await.expect("response head");
    assert_eq!(res.status(), 200);
    // The head has arrived but the body has not ended: still in flight.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(pool.servers[0].in_flight(), 1);
    a.state.release.notify_one();
    let body = http_body_util::BodyExt::collect(res.into_body()).await.expect("body").to_bytes();
    assert_eq!(&body[..], b"first;last");
    wait_until("the finished request stops counting", || pool.servers[0].in_flight() == 0).await;
    // The connection went back to the idle list and carries the next requests.
    for _ in 0..2 {
        wait_until("the connection is idle", || pool.servers[0].idle_count() == 1).await;
        let reply = get(front, "/").await;
        assert_eq!(reply.status, 200);
    }
    assert_eq!(a.state.connections.load(SeqCst), 1);

    // A client that leaves mid-body ends the request as well.
    let (mut sender, connection) = client(front).await;
    let res = sender.send_request(get_request("/stream")).await.expect("response head");
    assert_eq!(pool.servers[0].in_flight(), 1);
    drop((res, sender));
    connection.abort();
    wait_until("the abandoned request stops counting", || pool.servers[0].in_flight() == 0).await;
}
