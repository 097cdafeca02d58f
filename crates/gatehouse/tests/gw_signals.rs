//! SIGTERM/SIGINT: stop accepting, finish open requests, exit 0.
//!
//! "Promptly" means well within the 30 s the gateway gives open connections to drain:
//! an exit that waited for that drain would miss the 10 s the tests wait.
mod support;
use support::*;

use std::io::Write;
use std::thread;
use std::time::Duration;

/// How long a test waits for the gateway to exit; a third of its 30 s drain limit.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

/// The echo upstream's answers, but a request for `/hold...` prints `got PATH` and waits until
/// a line (or EOF) arrives on stdin, which releases every held request. Prints its port first.
fn start(env: &Env, up: &Upstream) -> Gateway {
    Gateway::localhost(env, up, "", "")
}

#[test]
fn sigterm_when_idle_exits_0_promptly() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let mut gw = start(&env, &up);
    assert!(gw.curl("localhost", "/", &[]).ok());
    gw.proc.signal("TERM");
    let st = gw.proc.wait_exit(EXIT_LIMIT);
    assert!(st.is_some(), "still running {EXIT_LIMIT:?} after SIGTERM\n{}", gw.proc.dump());
    assert!(st.unwrap().success(), "exit status after SIGTERM: {st:?}\n{}", gw.proc.dump());
}

#[test]
fn sigint_when_idle_exits_0() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let mut gw = start(&env, &up);
    assert!(gw.curl("localhost", "/", &[]).ok());
    gw.proc.signal("INT");
    let st = gw.proc.wait_exit(EXIT_LIMIT);
    assert!(st.is_some_and(|s| s.success()), "SIGINT: {st:?}\n{}", gw.proc.dump());
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    let env = Env::new();
    let mut up = Upstream::holding(&env);
    let mut gw = start(&env, &up);
    let args: Vec<String> = vec![
        "--cacert".into(),
        s(&gw.root).into(),
        "--resolve".into(),
        format!("localhost:{}:127.0.0.1", gw.https),
        gw.url("localhost", "/hold"),
    ];
    let slow = thread::spawn(move || curl(&args));
    // The request is at the upstream, which holds it until released.
    let arrived = up.proc.wait_stdout(Duration::from_secs(20), |l| l == "got /hold");
    assert!(arrived.is_some(), "the held request did not reach the upstream\n{}", up.proc.dump());
    gw.proc.signal("TERM");

    // No new connections are accepted: the listener closes.
    let closed = poll_until(EXIT_LIMIT, || !port_open(gw.https));
    assert!(closed.is_some(), "the TLS port still accepts after SIGTERM\n{}", gw.proc.dump());
    let r = gw.curl("localhost", "/", &["--max-time", "3"]);
    assert!(!r.ok(), "a new request after SIGTERM should not be served: {r:?}");
    assert!(gw.proc.try_exit().is_none(), "exited before the in-flight request finished\n{}", gw.proc.dump());
    assert!(!slow.is_finished(), "the held request must still be in flight");

    up.proc.send_line("release");
    let r = slow.join().unwrap();
    assert!(r.ok(), "the in-flight request must complete: {r:?}\n{}", gw.proc.dump());
    assert_eq!(r.upstream().path, "/hold");

    let st = gw.proc.wait_exit(EXIT_LIMIT);
    assert!(st.is_some_and(|s| s.success()), "exit 0 after draining: {st:?}\n{}", gw.proc.dump());
}

#[test]
fn sigterm_with_an_idle_keepalive_connection_exits_promptly() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let mut gw = start(&env, &up);
    // A keep-alive HTTP/1.1 connection that finished its request and stays open.
    let (client, mut stdin) = s_client_open(gw.https, &["-servername", "localhost", "-quiet"]);
    stdin.write_all(b"GET /keep HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    stdin.flush().unwrap();
    let answered = client.wait_stdout(Duration::from_secs(10), |l| l.starts_with("HTTP/1.1 200"));
    assert!(answered.is_some(), "no answer on the keep-alive connection\n{}", client.dump());

    gw.proc.signal("TERM");
    let st = gw.proc.wait_exit(EXIT_LIMIT);
    assert!(
        st.is_some(),
        "an idle keep-alive connection kept the gateway running {EXIT_LIMIT:?} after SIGTERM\n{}",
        gw.proc.dump()
    );
    assert!(st.unwrap().success(), "{st:?}");
    drop(stdin);
}
