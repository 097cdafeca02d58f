//! Upstream side: 502 when the upstream cannot be reached, 504 after request_timeout_ms,
//! WebSocket (Upgrade) passes through on HTTP/1.1 and survives a reload.
mod support;
use support::*;

use std::io::Write;
use std::time::{Duration, Instant};

#[test]
fn unreachable_upstream_is_502() {
    let env = Env::new();
    let https = free_port();
    let dead = free_port(); // nothing listens there
    let cert = localhost_cert(&env);
    let toml = format!(
        "{}\n[[site]]\nhosts = [\"localhost\"]\ncertificate = {}\nupstream = \"gone\"\n{}",
        listen_toml(https, None, None),
        Env::cert_toml(&cert),
        upstream_toml("gone", &format!("http://127.0.0.1:{dead}"))
    );
    let gw = Gateway::start(&env, "gw.toml", https, &toml);
    let r = gw.curl("localhost", "/", &[]);
    assert_eq!(r.status, 502, "{r:?}");
    let line = gw.proc.wait_json(Duration::from_secs(3), |v| v["event"] == "request").expect("access line");
    assert_eq!(line["status"], 502, "{line}");
}

#[test]
fn slow_upstream_is_504_after_request_timeout() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "[limits]\nrequest_timeout_ms = 1000\n", "");
    let t = Instant::now();
    let r = gw.curl("localhost", "/slow", &[]);
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{r:?}");
    assert!(took < Duration::from_millis(2800), "504 should come after ~1 s, took {} ms", ms(took));
    assert!(gw.curl("localhost", "/fast", &[]).ok());
}

#[test]
fn websocket_upgrade_passes_through_and_survives_a_reload() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "", "");
    let (ws, mut stdin) = s_client_open(gw.https, &["-servername", "localhost", "-quiet"]);
    stdin
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .unwrap();
    stdin.flush().unwrap();
    let switched = ws.wait_stdout(Duration::from_secs(5), |l| l.starts_with("HTTP/1.1 101"));
    assert!(switched.is_some(), "no 101 Switching Protocols\n{}\n{}", ws.dump(), gw.proc.dump());

    stdin.write_all(b"ping-1\n").unwrap();
    stdin.flush().unwrap();
    assert!(ws.wait_stdout(Duration::from_secs(5), |l| l.contains("echo:ping-1")).is_some(), "{}", ws.dump());

    // Reload (HSTS added) while the upgraded connection is open.
    let cert = localhost_cert(&env);
    let toml = std::fs::read_to_string(&gw.config).unwrap();
    assert!(toml.contains(&Env::cert_toml(&cert)));
    gw.rewrite_config(&toml.replace("upstream = \"app\"\n", "upstream = \"app\"\nhsts_max_age = 77\n"));
    gw.proc.signal("HUP");
    let applied = poll_until(Duration::from_secs(4), || {
        gw.curl("localhost", "/", &[]).header("strict-transport-security").is_some_and(|v| v.contains("max-age=77"))
    });
    assert!(applied.is_some(), "reload not applied\n{}", gw.proc.dump());

    stdin.write_all(b"ping-2\n").unwrap();
    stdin.flush().unwrap();
    assert!(
        ws.wait_stdout(Duration::from_secs(5), |l| l.contains("echo:ping-2")).is_some(),
        "the open WebSocket must survive the reload\n{}",
        ws.dump()
    );
    drop(stdin);
}
