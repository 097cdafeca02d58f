//! `gatehouse serve` as a test fixture ([`Gateway`]): its config pieces, requests
//! through it with curl and `openssl s_client`, its JSON log lines, and the admin
//! listener's /metrics.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use super::curl::{Resp, curl};
use super::env::{Cert, Env};
use super::gatehouse::gh_cmd;
use super::net::free_port;
use super::openssl::s_client;
use super::process::{Out, Proc};
use super::upstream::Upstream;
use super::{Value, s};

/// `gatehouse --data-dir T/data serve --config T/NAME`, run from `/` (so relative
/// paths in the config must resolve against the config's directory); killed on drop.
pub struct Gateway {
    pub proc: Proc,
    pub https: u16,
    pub config: PathBuf,
    pub root: PathBuf,
}

/// `[listen]` block on 127.0.0.1 with the given ports.
pub fn listen_toml(https: u16, http: Option<u16>, admin: Option<u16>) -> String {
    let mut t = format!("[listen]\nhttps = \"127.0.0.1:{https}\"\n");
    if let Some(p) = http {
        t.push_str(&format!("http = \"127.0.0.1:{p}\"\n"));
    }
    if let Some(p) = admin {
        t.push_str(&format!("admin = \"127.0.0.1:{p}\"\n"));
    }
    t
}

/// `[[upstream]] name = NAME servers = [URL]`
pub fn upstream_toml(name: &str, url: &str) -> String {
    format!("\n[[upstream]]\nname = \"{name}\"\nservers = [\"{url}\"]\n")
}

/// The server certificate for localhost/127.0.0.1 (issued once per Env).
pub fn localhost_cert(env: &Env) -> Cert {
    let crt = env.path().join("certs/localhost.crt");
    if crt.exists() {
        let mut c = Cert::from_files(crt, env.path().join("certs/localhost.key"));
        c.fullchain = Some(env.path().join("certs/localhost.fullchain.pem"));
        c
    } else {
        env.localhost_server()
    }
}

/// A config with one site for `localhost` and `127.0.0.1` (certificate from files) whose
/// upstream is `app` = the python upstream. `top` goes before the site (its own tables),
/// `site` inside `[[site]]` (keys, then any `[[site.route]]`).
pub fn localhost_config(env: &Env, listen: &str, up: &Upstream, top: &str, site: &str) -> String {
    let cert = localhost_cert(env);
    format!(
        "{listen}\n{top}\n[[site]]\nhosts = [\"localhost\", \"127.0.0.1\"]\ncertificate = {}\nupstream = \"app\"\n{site}\n{}",
        Env::cert_toml(&cert),
        upstream_toml("app", &up.url())
    )
}

impl Gateway {
    /// Writes the config file `T/NAME` and starts the gateway; waits until the https port accepts.
    #[track_caller]
    pub fn start(env: &Env, name: &str, https: u16, toml: &str) -> Gateway {
        let config = env.write(name, toml);
        let mut c = gh_cmd(&env.data(), &["serve", "--config", s(&config)]);
        c.current_dir("/");
        let mut proc = Proc::spawn(c, "gatehouse serve");
        proc.wait_listening(https, Duration::from_secs(20), &format!("config:\n{toml}"));
        Gateway { proc, https, config, root: env.root() }
    }

    /// Starts a gateway with [`localhost_config`] on a free https port (config `T/gw.toml`).
    #[track_caller]
    pub fn localhost(env: &Env, up: &Upstream, top: &str, site: &str) -> Gateway {
        let https = free_port();
        let toml = localhost_config(env, &listen_toml(https, None, None), up, top, site);
        Gateway::start(env, "gw.toml", https, &toml)
    }

    /// `https://HOST:PORT/PATH`
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.https)
    }

    /// curl `https://HOST:PORT/PATH` with `--cacert root`, `--resolve HOST:PORT:127.0.0.1`
    /// (for a name) and `extra` curl args.
    pub fn curl(&self, host: &str, path: &str, extra: &[&str]) -> Resp {
        let mut args: Vec<String> = vec!["--cacert".into(), s(&self.root).into()];
        if host.parse::<std::net::IpAddr>().is_err() {
            args.push("--resolve".into());
            args.push(format!("{host}:{}:127.0.0.1", self.https));
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        args.push(self.url(host, path));
        curl(&args)
    }

    /// Waits up to 20 s (revocations must reach a gateway within 2 s; CI machines are
    /// slow) until `https://localhost/` answers 200 to `cert` exactly when `served`;
    /// whether it came to that.
    pub fn until_answer(&self, cert: &Cert, served: bool) -> bool {
        super::net::wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
            ((self.curl_cert("localhost", "/", cert, &[]).status == 200) == served).then_some(())
        })
        .is_some()
    }

    /// Same, presenting a client certificate.
    pub fn curl_cert(&self, host: &str, path: &str, cert: &Cert, extra: &[&str]) -> Resp {
        let ca = cert.curl_args();
        let mut all: Vec<&str> = ca.iter().map(String::as_str).collect();
        all.extend_from_slice(extra);
        self.curl(host, path, &all)
    }

    /// `openssl s_client -connect 127.0.0.1:PORT ARGS` with `input` on stdin (then EOF).
    pub fn s_client(&self, args: &[&str], input: &str) -> Out {
        s_client(self.https, args, input)
    }

    /// Access lines (`"event":"request"`).
    /// `openssl s_client` to `host` with `args`, the handshake verified against the
    /// root (hostname included); panics unless it completed; its stdout.
    #[track_caller]
    pub fn s_client_verified(&self, host: &str, args: &[&str]) -> String {
        let mut all =
            vec!["-servername", host, "-verify_hostname", host, "-verify_return_error", "-CAfile", s(&self.root)];
        all.extend_from_slice(args);
        let o = self.s_client(&all, "");
        assert!(
            o.stdout.contains("Verify return code: 0 (ok)") && o.stdout.contains("Cipher is"),
            "s_client {host} {args:?} did not complete a verified handshake:\n{}\n{}",
            o.all(),
            self.proc.dump()
        );
        o.stdout
    }

    pub fn access_lines(&self) -> Vec<Value> {
        self.proc.json_lines().into_iter().filter(|v| v["event"] == "request").collect()
    }

    /// Waits for the access line of a request id.
    pub fn access_line_for(&self, request_id: &str) -> Option<Value> {
        self.proc.wait_json(Duration::from_secs(5), |v| v["event"] == "request" && v["request_id"] == request_id)
    }

    /// Waits for a handshake/client-cert log line with this event and reason.
    pub fn wait_refusal(&self, event: &str, reason: &str, limit: Duration) -> Option<Value> {
        self.proc.wait_json(limit, |v| v["event"] == event && v["reason"] == reason)
    }

    /// Replaces the config file (write + rename, same path).
    pub fn rewrite_config(&self, toml: &str) {
        let tmp = self.config.with_extension("toml.new");
        fs::write(&tmp, toml).unwrap();
        fs::rename(&tmp, &self.config).unwrap();
    }
}

// ---------------------------------------------------------------- admin /metrics

/// `GET http://127.0.0.1:ADMIN/metrics` body.
#[track_caller]
pub fn metrics(admin: u16) -> String {
    let r = curl(&[format!("http://127.0.0.1:{admin}/metrics")]);
    assert_eq!(r.status, 200, "GET /metrics: {r:?}");
    r.body
}

/// The value of one Prometheus sample line `NAME{LABELS} VALUE`.
pub fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}
