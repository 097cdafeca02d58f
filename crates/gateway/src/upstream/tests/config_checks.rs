//! The `[[upstream]]` tables: defaults, unknown keys, and the sentence each
//! invalid setting is refused with.

use std::path::Path;

use serde::Deserialize;

use super::certs::{TestCa, write};
use crate::upstream::{Balance, HealthConfig, Pool, UpstreamConfig, UpstreamError};

#[derive(Deserialize)]
struct File {
    upstream: Vec<UpstreamConfig>,
}

#[test]
fn defaults_fill_what_is_not_written() {
    let file: File = toml::from_str(
        r#"
        [[upstream]]
        name = "app"
        servers = ["http://127.0.0.1:3000"]

        [[upstream]]
        name = "api"
        servers = ["https://origin.example.com:8443"]
        balance = "least_conn"
        health = {}
        tls = { ca = "origin-ca.pem" }
        "#,
    )
    .expect("valid TOML");
    let app = &file.upstream[0];
    assert_eq!(app.balance, Balance::RoundRobin);
    assert_eq!((app.health.as_ref(), app.tls.as_ref()), (None, None));
    assert_eq!((app.connect_timeout_ms, app.max_fails, app.fail_timeout_ms), (3000, 3, 10_000));
    let api = &file.upstream[1];
    assert_eq!(api.balance, Balance::LeastConn);
    assert_eq!(api.health, Some(HealthConfig::default()));
    let health = HealthConfig::default();
    assert_eq!(health.path, "/");
    assert_eq!((health.interval_ms, health.timeout_ms), (2000, 1000));
    assert_eq!((health.healthy_threshold, health.unhealthy_threshold), (2, 3));
    assert_eq!(health.expect_status, None);
    let tls = api.tls.as_ref().expect("tls");
    assert_eq!((tls.client_cert.as_ref(), tls.server_name.as_ref()), (None, None));
}

#[test]
fn unknown_keys_are_errors() {
    for text in [
        "name = \"a\"\nservers = []\nretries = 2",
        "name = \"a\"\nservers = []\nhealth = { path = \"/\", intervall_ms = 5 }",
        "name = \"a\"\nservers = []\ntls = { ca = \"x\", verify = false }",
        "name = \"a\"\nservers = []\nbalance = \"random\"",
    ] {
        assert!(toml::from_str::<UpstreamConfig>(text).is_err(), "{text}");
    }
}

fn refusal(text: &str, base: &Path) -> String {
    let config: UpstreamConfig = toml::from_str(text).expect("valid TOML");
    match Pool::new(&config, base) {
        Err(UpstreamError::Config(message)) => message,
        Err(other) => panic!("not a config error: {other:?}"),
        Ok(_) => panic!("accepted: {text}"),
    }
}

#[test]
fn invalid_settings_are_refused_with_the_key_named() {
    let here = Path::new(".");
    let cases = [
        (
            r#"name = "app"
               servers = ["http://127.0.0.1:1", "ftp://x"]"#,
            r#"upstream "app": servers[1] "ftp://x" must be an http:// or https:// URL"#,
        ),
        (
            r#"name = "app"
            servers = []"#,
            r#"upstream "app": servers is empty; list at least one URL"#,
        ),
        (
            r#"name = "app"
               servers = ["http://127.0.0.1:1/api"]"#,
            r#"upstream "app": servers[0] "http://127.0.0.1:1/api" must not have a path or query (scheme://host:port)"#,
        ),
        (
            r#"name = "app"
               servers = ["http://127.0.0.1:1", "http://127.0.0.1:1/"]"#,
            r#"upstream "app": servers[1] "http://127.0.0.1:1/" repeats servers[0]"#,
        ),
        (
            r#"name = "app"
               servers = ["https://origin.example"]"#,
            r#"upstream "app": servers[0] "https://origin.example" is https:// but there is no tls table; set tls.ca to the CA bundle the origin certificate chains to"#,
        ),
        (
            r#"name = "app"
               servers = ["http://127.0.0.1:1"]
               tls = { ca = "ca.pem" }"#,
            r#"upstream "app": tls is set but no server is https://"#,
        ),
        (
            r#"name = "app"
               servers = ["http://127.0.0.1:1"]
               health = { path = "health" }"#,
            r#"upstream "app": health.path "health" must be a path starting with /"#,
        ),
        (
            r#"name = "app"
               servers = ["http://127.0.0.1:1"]
               health = { healthy_threshold = 0 }"#,
            r#"upstream "app": health.healthy_threshold must be at least 1"#,
        ),
        (
            r#"name = "app"
               servers = ["http://127.0.0.1:1"]
               health = { expect_status = 42 }"#,
            r#"upstream "app": health.expect_status 42 is not an HTTP status (100-599)"#,
        ),
        (
            r#"name = "app"
               servers = ["http://127.0.0.1:1"]
               connect_timeout_ms = 0"#,
            r#"upstream "app": connect_timeout_ms must be greater than 0"#,
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(refusal(text, here), expected);
    }
}

#[test]
fn tls_files_are_checked_when_the_pool_is_built() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("Config");
    let client = ca.leaf(pki::Profile::Client, "gatehouse", &[], &[]);
    write(dir.path(), "ca.pem", &ca.root_pem());
    write(dir.path(), "garbage.pem", "not a certificate\n");
    write(dir.path(), "client.pem", &client.chain_pem());
    write(dir.path(), "client.key", &client.key_pem);
    let pool = |tls: &str| {
        format!(
            r#"name = "o"
               servers = ["https://127.0.0.1:8443"]
               tls = {{ {tls} }}"#
        )
    };
    let missing = dir.path().join("missing.pem");
    let cases = [
        (r#"ca = "missing.pem""#, format!("upstream \"o\": tls.ca {} cannot be read: ", missing.display())),
        (
            r#"ca = "garbage.pem""#,
            format!("upstream \"o\": tls.ca {} holds no CERTIFICATE block", dir.path().join("garbage.pem").display()),
        ),
        (
            r#"ca = "ca.pem", client_cert = "client.pem""#,
            "upstream \"o\": tls.client_cert is set without tls.client_key".to_owned(),
        ),
        (
            r#"ca = "ca.pem", client_cert = "client.pem", client_key = "ca.pem""#,
            "upstream \"o\": tls.client_key ".to_owned(),
        ),
        (
            r#"ca = "ca.pem", server_name = "bad name!""#,
            "upstream \"o\": tls.server_name \"bad name!\" is not a DNS name or IP address".to_owned(),
        ),
    ];
    for (tls, expected) in cases {
        let message = refusal(&pool(tls), dir.path());
        assert!(message.starts_with(&expected), "{message}\nexpected: {expected}");
    }
    let config: UpstreamConfig =
        toml::from_str(&pool(r#"ca = "ca.pem", client_cert = "client.pem", client_key = "client.key""#))
            .expect("valid TOML");
    let pool = Pool::new(&config, dir.path()).expect("valid TLS files");
    assert_eq!((pool.name(), pool.servers(), pool.healthy()), ("o", 1, 1));
}

#[test]
fn statuses_follow_the_kind_of_failure() {
    let server = || "127.0.0.1:1".to_owned();
    let cases = [
        (UpstreamError::NoHealthyServer { upstream: "a".into() }, 503),
        (UpstreamError::Connect { server: server(), message: "refused".into() }, 502),
        (UpstreamError::Protocol { server: server(), message: "reset".into() }, 502),
        (UpstreamError::Timeout { server: server() }, 504),
        (UpstreamError::Config("x".into()), 500),
    ];
    for (error, status) in cases {
        assert_eq!(error.status(), status, "{error}");
    }
}

#[test]
fn server_urls_become_host_and_port() {
    let config: UpstreamConfig = toml::from_str(
        r#"name = "app"
           servers = ["http://app.internal", "http://[::1]:8080", "HTTP://10.0.0.7:3000/"]"#,
    )
    .expect("valid TOML");
    let pool = Pool::new(&config, Path::new(".")).expect("valid");
    let authorities: Vec<&str> = pool.servers.iter().map(|s| s.authority()).collect();
    assert_eq!(authorities, ["app.internal:80", "[::1]:8080", "10.0.0.7:3000"]);
}
