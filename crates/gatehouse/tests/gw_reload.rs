//! Reload: a change of the config file takes effect without a restart; an invalid one
//! is refused (stderr) and the old config keeps serving; SIGHUP reloads; requests in
//! flight survive a reload.
mod support;
use support::*;

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

const SITE: &str = "mtls = \"optional\"\ntrust = { internal_ca = true }\n";
const SITE_V2: &str = "mtls = \"optional\"\ntrust = { internal_ca = true }\nhsts_max_age = 600\n\n\
                       [[site.route]]\npath_prefix = \"/test1\"\nmtls = \"require\"\n";

struct Fx {
    env: Env,
    up: Upstream,
    gw: Gateway,
    listen: String,
}

fn start() -> Fx {
    let env = Env::new();
    let up = Upstream::start(&env);
    let https = free_port();
    let listen = listen_toml(https, None, None);
    let gw = Gateway::start(&env, "gw.toml", https, &localhost_config(&env, &listen, &up, "", SITE));
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
    let took = poll_until(Duration::from_secs(5), || v2_in_effect(&fx.gw));
    assert!(took.is_some(), "the changed config was not applied within 5 s\n{}", fx.gw.proc.dump());
    assert!(took.unwrap() <= Duration::from_millis(3500), "applied only after {} ms", ms(took.unwrap()));
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
    let logged = poll_until(Duration::from_secs(4), || {
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
    let logged = poll_until(Duration::from_secs(4), || fx.gw.proc.stderr_since(n1).contains("no-such-chain.pem"));
    assert!(logged.is_some(), "the refused reload should be logged on stderr\n{}", fx.gw.proc.dump());
    assert!(v1_in_effect(&fx.gw), "the old config (and certificate) keeps serving\n{}", fx.gw.proc.dump());

    // 3. A good config is picked up again.
    fx.gw.rewrite_config(&fx.config(SITE_V2));
    assert!(poll_until(Duration::from_secs(5), || v2_in_effect(&fx.gw)).is_some(), "{}", fx.gw.proc.dump());
}

#[test]
fn sighup_reloads() {
    let fx = start();
    assert!(v1_in_effect(&fx.gw));
    // Replace the file but keep its modification time, so only the signal says "reload".
    let mtime = fs::metadata(&fx.gw.config).unwrap().modified().unwrap();
    let tmp = fx.gw.config.with_extension("next");
    fs::write(&tmp, fx.config(SITE_V2)).unwrap();
    fs::File::options().write(true).open(&tmp).unwrap().set_modified(mtime).unwrap();
    fs::rename(&tmp, &fx.gw.config).unwrap();

    fx.gw.proc.signal("HUP");
    let took = poll_until(Duration::from_secs(3), || v2_in_effect(&fx.gw));
    assert!(took.is_some(), "SIGHUP did not reload the config\n{}", fx.gw.proc.dump());
    assert!(v2_in_effect(&fx.gw));
}

#[test]
fn requests_in_flight_survive_a_reload() {
    let fx = start();
    let started = Instant::now();
    let slow: Vec<_> = ["--http1.1", "--http2"]
        .into_iter()
        .map(|proto| {
            let args: Vec<String> = vec![
                "--cacert".into(),
                s(&fx.gw.root).into(),
                "--resolve".into(),
                format!("localhost:{}:127.0.0.1", fx.gw.https),
                proto.into(),
                fx.gw.url("localhost", "/slow"),
            ];
            thread::spawn(move || curl(&args))
        })
        .collect();
    thread::sleep(Duration::from_millis(800));
    fx.gw.rewrite_config(&fx.config(SITE_V2));
    fx.gw.proc.signal("HUP");
    let applied = poll_until(Duration::from_secs(3), || v2_in_effect(&fx.gw));
    assert!(applied.is_some(), "reload not applied\n{}", fx.gw.proc.dump());
    assert!(started.elapsed() < Duration::from_millis(2900), "the reload should happen while /slow is in flight");
    for t in slow {
        let r = t.join().unwrap();
        assert!(r.ok(), "the in-flight request must complete with 200 across the reload: {r:?}\n{}", fx.gw.proc.dump());
        assert_eq!(r.upstream().path, "/slow");
    }
    assert!(started.elapsed() >= Duration::from_millis(2900), "the upstream really was slow");
}
