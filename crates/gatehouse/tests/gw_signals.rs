//! SIGTERM/SIGINT: stop accepting, finish open requests, exit 0.
mod support;
use support::*;

use std::thread;
use std::time::{Duration, Instant};

fn start(env: &Env, up: &Upstream) -> Gateway {
    Gateway::localhost(env, up, "", "")
}

#[test]
fn sigterm_when_idle_exits_0_promptly() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let mut gw = start(&env, &up);
    assert!(gw.curl("localhost", "/", &[]).ok());
    let t = Instant::now();
    gw.proc.signal("TERM");
    let st = gw.proc.wait_exit(Duration::from_secs(5));
    assert!(st.is_some(), "still running 5 s after SIGTERM\n{}", gw.proc.dump());
    assert!(st.unwrap().success(), "exit status after SIGTERM: {st:?}\n{}", gw.proc.dump());
    assert!(t.elapsed() < Duration::from_secs(5), "took {} ms", ms(t.elapsed()));
}

#[test]
fn sigint_when_idle_exits_0() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let mut gw = start(&env, &up);
    assert!(gw.curl("localhost", "/", &[]).ok());
    gw.proc.signal("INT");
    let st = gw.proc.wait_exit(Duration::from_secs(5));
    assert!(st.is_some_and(|s| s.success()), "SIGINT: {st:?}\n{}", gw.proc.dump());
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let mut gw = start(&env, &up);
    let args: Vec<String> = vec![
        "--cacert".into(),
        s(&gw.root).into(),
        "--resolve".into(),
        format!("localhost:{}:127.0.0.1", gw.https),
        gw.url("localhost", "/slow"),
    ];
    let started = Instant::now();
    let slow = thread::spawn(move || curl(&args));
    thread::sleep(Duration::from_millis(800));
    gw.proc.signal("TERM");
    thread::sleep(Duration::from_millis(300));

    // No new connections are accepted.
    let r = gw.curl("localhost", "/", &["--max-time", "3"]);
    assert!(!r.ok(), "a new request after SIGTERM should not be served: {r:?}");
    assert!(gw.proc.try_exit().is_none(), "exited before the in-flight request finished\n{}", gw.proc.dump());

    let r = slow.join().unwrap();
    assert!(r.ok(), "the in-flight request must complete: {r:?}\n{}", gw.proc.dump());
    assert_eq!(r.upstream().path, "/slow");
    assert!(started.elapsed() >= Duration::from_millis(2900));

    let st = gw.proc.wait_exit(Duration::from_secs(5));
    assert!(st.is_some_and(|s| s.success()), "exit 0 after draining: {st:?}\n{}", gw.proc.dump());
}

#[test]
fn sigterm_with_an_idle_keepalive_connection_exits_promptly() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let mut gw = start(&env, &up);
    // A keep-alive HTTP/1.1 connection that finished its request and stays open.
    let (client, mut stdin) = s_client_open(gw.https, &["-servername", "localhost", "-quiet"]);
    use std::io::Write;
    stdin.write_all(b"GET /keep HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    stdin.flush().unwrap();
    let answered = client.wait_stdout(Duration::from_secs(5), |l| l.starts_with("HTTP/1.1 200"));
    assert!(answered.is_some(), "no answer on the keep-alive connection\n{}", client.dump());

    let t = Instant::now();
    gw.proc.signal("TERM");
    let st = gw.proc.wait_exit(Duration::from_secs(5));
    assert!(
        st.is_some(),
        "an idle keep-alive connection kept the gateway running 5 s after SIGTERM\n{}",
        gw.proc.dump()
    );
    assert!(st.unwrap().success(), "{st:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    drop(stdin);
}
