//! Reload: a change of the config file takes effect without a restart; an invalid one
//! is refused (stderr) and the old config keeps serving; SIGHUP reloads; requests in
//! flight survive a reload.
mod support;
use support::*;

use std::fs;
use std::io::Write;
use std::thread;
use std::time::Duration;

const SITE: &str = "mtls = \"optional\"\ntrust = { internal_ca = true }\n";
const SITE_V2: &str = "mtls = \"optional\"\ntrust = { internal_ca = true }\nhsts_max_age = 600\n\n\
                       [[site.route]]\npath_prefix = \"/test1\"\nmtls = \"require\"\n";
/// How long a test waits for a reload to show; the file watcher looks every second.
const RELOAD_LIMIT: Duration = Duration::from_secs(15);

/// The echo upstream's answers, but a request for `/hold...` prints `got PATH` and waits until
/// a line (or EOF) arrives on stdin, which releases every held request. Prints its port first.
struct Fx {
    env: Env,
    up: Upstream,
    gw: Gateway,
    listen: String,
}

fn start() -> Fx {
    let env = Env::new();
    let up = Upstream::start(&env);
    start_with(env, up, SITE)
}

/// The gateway in front of `up`, its one site's keys `site`.
fn start_with(env: Env, up: Upstream, site: &str) -> Fx {
    let https = free_port();
    let listen = listen_toml(https, None, None);
    let gw = Gateway::start(&env, "gw.toml", https, &localhost_config(&env, &listen, &up, "", site));
    Fx { env, up, gw, listen }
}

impl Fx {
    fn config(&self, site: &str) -> String {
        localhost_config(&self.env, &self.listen, &self.up, "", site)
    }
}

/// The new config is in effect: /test1 needs a certificate and HSTS is sent.
fn v2_in_effect(gw: &Gateway) -> bool {
    let r = gw.curl("localhost", "/test1", &[]);
    r.status == 403 && r.header("strict-transport-security").is_some_and(|v| v.contains("max-age=600"))
}

fn v1_in_effect(gw: &Gateway) -> bool {
    let r = gw.curl("localhost", "/test1", &[]);
    r.ok() && r.header("strict-transport-security").is_none()
}

#[test]
fn changed_config_file_takes_effect_without_restart() {
    let mut fx = start();
    assert!(v1_in_effect(&fx.gw), "initial config: /test1 open, no HSTS");
    let pid = fx.gw.proc.pid();
    fx.gw.rewrite_config(&fx.config(SITE_V2));
    let took = poll_until(RELOAD_LIMIT, || v2_in_effect(&fx.gw));
    assert!(took.is_some(), "the changed config was not applied within {RELOAD_LIMIT:?}\n{}", fx.gw.proc.dump());
    assert!(fx.gw.proc.try_exit().is_none(), "the gateway must not restart/exit");
    assert_eq!(fx.gw.proc.pid(), pid);
    let alice = fx.env.client("alice");
    assert!(fx.gw.curl_cert("localhost", "/test1", &alice, &[]).ok(), "new route admits a verified client");
}

#[test]
fn invalid_config_is_refused_and_the_old_one_keeps_serving() {
    let mut fx = start();
    assert!(v1_in_effect(&fx.gw));

    // 1. An unknown key.
    let n0 = fx.gw.proc.stderr_len();
    fx.gw.rewrite_config(&fx.config(&format!("{SITE}bogus_reload_key = 1\n")));
    let logged = poll_until(RELOAD_LIMIT, || {
        let e = fx.gw.proc.stderr_since(n0).to_lowercase();
        e.contains("bogus_reload_key")
    });
    assert!(logged.is_some(), "the refused reload should be logged on stderr naming the key\n{}", fx.gw.proc.dump());
    assert!(fx.gw.proc.try_exit().is_none(), "an invalid config must not stop the gateway");
    for _ in 0..3 {
        assert!(v1_in_effect(&fx.gw), "the old config keeps serving\n{}", fx.gw.proc.dump());
    }

    // 2. A certificate file that does not exist.
    let n1 = fx.gw.proc.stderr_len();
    let broken = fx.config(SITE_V2).replace("localhost.fullchain.pem", "no-such-chain.pem");
    fx.gw.rewrite_config(&broken);
    let logged = poll_until(RELOAD_LIMIT, || fx.gw.proc.stderr_since(n1).contains("no-such-chain.pem"));
    assert!(logged.is_some(), "the refused reload should be logged on stderr\n{}", fx.gw.proc.dump());
    assert!(v1_in_effect(&fx.gw), "the old config (and certificate) keeps serving\n{}", fx.gw.proc.dump());

    // 3. A good config is picked up again.
    fx.gw.rewrite_config(&fx.config(SITE_V2));
    assert!(poll_until(RELOAD_LIMIT, || v2_in_effect(&fx.gw)).is_some(), "{}", fx.gw.proc.dump());
}

#[test]
fn sighup_reloads() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let https = free_port();
    let listen = listen_toml(https, None, None);
    // The file watcher compares modification time, length and inode: the new config is
    // written in place, as long as the old one (a comment pads that), and gets the old
    // time back, so only the signal says "reload".
    let v1 = localhost_config(&env, &listen, &up, "", SITE);
    let v2 = localhost_config(&env, &listen, &up, "", SITE_V2);
    let pad = v2.len().checked_sub(v1.len() + 2).expect("the new config is the longer one");
    let v1 = format!("{v1}#{}\n", " ".repeat(pad));
    assert_eq!(v1.len(), v2.len());
    let gw = Gateway::start(&env, "gw.toml", https, &v1);
    assert!(v1_in_effect(&gw));
    let mtime = fs::metadata(&gw.config).unwrap().modified().unwrap();
    let mut file = fs::File::options().write(true).truncate(true).open(&gw.config).unwrap();
    file.write_all(v2.as_bytes()).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);

    gw.proc.signal("HUP");
    let took = poll_until(RELOAD_LIMIT, || v2_in_effect(&gw));
    assert!(took.is_some(), "SIGHUP did not reload the config\n{}", gw.proc.dump());
    assert!(v2_in_effect(&gw));
}

#[test]
fn requests_in_flight_survive_a_reload() {
    let env = Env::new();
    let up = Upstream::holding(&env);
    let mut fx = start_with(env, up, SITE);
    let protocols = [("--http1.1", "/hold/h1"), ("--http2", "/hold/h2")];
    let slow: Vec<_> = protocols
        .into_iter()
        .map(|(proto, path)| {
            let args: Vec<String> = vec![
                "--cacert".into(),
                s(&fx.gw.root).into(),
                "--resolve".into(),
                format!("localhost:{}:127.0.0.1", fx.gw.https),
                proto.into(),
                fx.gw.url("localhost", path),
            ];
            thread::spawn(move || curl(&args))
        })
        .collect();
    // Both requests are at the upstream, which holds them until released.
    let arrived = poll_until(Duration::from_secs(20), || fx.up.proc.stdout().matches("got /hold").count() >= 2);
    assert!(arrived.is_some(), "the held requests did not reach the upstream\n{}", fx.up.proc.dump());

    fx.gw.rewrite_config(&fx.config(SITE_V2));
    fx.gw.proc.signal("HUP");
    let applied = poll_until(RELOAD_LIMIT, || v2_in_effect(&fx.gw));
    assert!(applied.is_some(), "reload not applied\n{}", fx.gw.proc.dump());
    assert!(slow.iter().all(|t| !t.is_finished()), "the held requests must still be in flight at the reload");

    fx.up.proc.send_line("release");
    for (t, (_, path)) in slow.into_iter().zip(protocols) {
        let r = t.join().unwrap();
        assert!(r.ok(), "the in-flight request must complete with 200 across the reload: {r:?}\n{}", fx.gw.proc.dump());
        assert_eq!(r.upstream().path, path);
    }
}
