//! TLS to the origin: verification against the configured CA, the name
//! checked, and the client certificate of authenticated origin pull.

use std::net::{IpAddr, Ipv4Addr};

use pki::Profile;
use tempfile::TempDir;

use super::certs::{TestCa, write};
use super::support::{Origin, front, get, pool_from};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// An origin requiring a client certificate from `ca`, and a directory with
/// `ca.pem` (the origin's CA) and `client.pem` / `client.key` (a client
/// certificate from the same CA).
async fn mtls_origin(ca: &TestCa, dns: &[&str], ips: &[IpAddr]) -> (Origin, TempDir) {
    let server = ca.leaf(Profile::Server, "origin", dns, ips);
    let origin = Origin::start_with("origin", Some(ca.origin_config(&server))).await;
    let client = ca.leaf(Profile::Client, "gatehouse", &[], &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "ca.pem", &ca.root_pem());
    write(dir.path(), "client.pem", &client.chain_pem());
    write(dir.path(), "client.key", &client.key_pem);
    (origin, dir)
}

fn https(origin: &Origin) -> String {
    format!("https://{}", origin.addr)
}

#[tokio::test]
async fn the_client_certificate_gets_through_an_origin_that_requires_one() {
    let ca = TestCa::new("Origin Pull");
    let (origin, dir) = mtls_origin(&ca, &[], &[LOCALHOST]).await;
    // Relative paths resolve against base_dir.
    let pool = pool_from(
        &format!(
            r#"name = "secure"
               servers = ["{}"]
               [tls]
               ca = "ca.pem"
               client_cert = "client.pem"
               client_key = "client.key""#,
            https(&origin)
        ),
        dir.path(),
    );
    let front = front(pool).await;
    for _ in 0..2 {
        let reply = get(front, "/api").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body, "origin GET /api host=app.example body=0");
        assert_eq!(reply.headers["x-client-certs"], "2", "leaf and intermediate presented");
        assert_eq!(reply.server(), origin.authority());
    }
}

#[tokio::test]
async fn without_a_client_certificate_the_origin_refuses() {
    let ca = TestCa::new("Origin Pull");
    let (origin, dir) = mtls_origin(&ca, &[], &[LOCALHOST]).await;
    let pool = pool_from(
        &format!(
            r#"name = "secure"
               servers = ["{}"]
               tls = {{ ca = "ca.pem" }}"#,
            https(&origin)
        ),
        dir.path(),
    );
    let reply = get(front(pool).await, "/").await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(origin.state.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_origin_certificate_from_another_ca_is_refused() {
    let ca = TestCa::new("Origin Pull");
    let (origin, dir) = mtls_origin(&ca, &[], &[LOCALHOST]).await;
    // The pool trusts some other CA.
    write(dir.path(), "other.pem", &TestCa::new("Other").root_pem());
    let pool = pool_from(
        &format!(
            r#"name = "secure"
               servers = ["{}"]
               max_fails = 1
               tls = {{ ca = "other.pem", client_cert = "client.pem", client_key = "client.key" }}"#,
            https(&origin)
        ),
        dir.path(),
    );
    let reply = get(front(pool.clone()).await, "/").await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert!(reply.body.contains("TLS handshake with \"127.0.0.1\""), "{}", reply.body);
    assert!(reply.body.contains("UnknownIssuer"), "{}", reply.body);
    // A failed handshake is a connect failure: it counts towards ejection.
    assert_eq!(pool.healthy(), 0);
}

#[tokio::test]
async fn server_name_sets_the_name_the_certificate_is_checked_against() {
    let ca = TestCa::new("Origin Pull");
    let (origin, dir) = mtls_origin(&ca, &["origin.internal"], &[]).await;
    let config = |server_name: &str| {
        format!(
            r#"name = "secure"
               servers = ["{}"]
               [tls]
               ca = "ca.pem"
               client_cert = "client.pem"
               client_key = "client.key"
               {server_name}"#,
            https(&origin)
        )
    };
    // The certificate names origin.internal, not 127.0.0.1.
    let reply = get(front(pool_from(&config(""), dir.path())).await, "/").await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert!(reply.body.contains("certificate not valid for name \"127.0.0.1\""), "{}", reply.body);

    let named = pool_from(&config(r#"server_name = "origin.internal""#), dir.path());
    let reply = get(front(named).await, "/").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}
