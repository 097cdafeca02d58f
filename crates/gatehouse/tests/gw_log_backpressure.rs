//! A stdout nobody reads does not stall the gateway: access lines wait in a
//! bounded queue (`[log] queue_lines`) and what does not fit is dropped and
//! counted in `gatehouse_log_lines_dropped_total`, while requests are served.
mod support;
use support::*;

use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn a_stdout_nobody_reads_drops_lines_instead_of_stalling_requests() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let (https, admin) = (free_port(), free_port());
    let toml = localhost_config(&env, &listen_toml(https, None, Some(admin)), &up, "[log]\nqueue_lines = 50\n", "");
    let config = env.write("gw.toml", &toml);
    let mut cmd = gh_cmd(&env.data(), &["serve", "--config", s(&config)]);
    // stdout is a pipe that is never read: once its 64 KiB are full, every write would block.
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn gatehouse serve");
    let _stdout_kept_open = child.stdout.take();
    let up_in_time = poll_until(Duration::from_secs(20), || port_open(https));
    assert!(up_in_time.is_some(), "gatehouse serve did not listen");

    // Long paths make long access lines: 400 of them are ~10x what the pipe and the queue hold.
    let path = format!("/{}", "x".repeat(1500));
    let urls: String =
        (0..400).map(|i| format!("url = \"https://localhost:{https}{path}?{i}\"\noutput = \"/dev/null\"\n")).collect();
    let list = env.write("urls.txt", &urls);
    let resolve = format!("localhost:{https}:127.0.0.1");
    let mut c = Command::new(CURL);
    c.args(["-sS", "--cacert", s(&env.root()), "--resolve", &resolve, "-K", s(&list), "-w", "%{http_code}\n"]);
    let o = run_limited(c, Duration::from_secs(120));
    let dropped = metric(&metrics(admin), "gatehouse_log_lines_dropped_total");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(o.code, 0, "{}", o.all());
    let ok = o.stdout.lines().filter(|l| *l == "200").count();
    assert_eq!(ok, 400, "every request is served while stdout is full: {}", o.all());
    assert!(dropped.is_some_and(|d| d > 0.0), "lines that did not fit are counted: {dropped:?}");
}
