//! gatehouse's ACME client (issue 10) against gatehouse's own ACME server (issue 9):
//! renewal by the server's renewal information (RFC 9773) after `gatehouse ca revoke`,
//! a 3-minute profile renewed by the gateway on its own while a connection opened
//! before stays up, and faults: the server down at renewal time (the old certificate
//! keeps serving, a later attempt succeeds), a wrong TSIG secret, an http-01
//! validation that cannot connect. Each fault is logged with the words that explain it
//! and counted in `gatehouse_acme_orders_total`.
//!
//! One server (with `renewal_info_retry_secs = 2` and the profile `quick`, 3 minutes)
//! and its bind9 serve the tests; a gateway that listens on one of its challenge ports
//! holds that port's lock for its life. The test that stops its server has its own.

mod support;

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::*;

/// The account's name in the gateway's config.
const ACME: &str = "internal";
/// A 3-minute certificate (notBefore backdated by a quarter of that) has its renewal
/// window, the last third of its life, from some 105 s to 155 s after it is issued.
const QUICK_PROFILE: &str = "[acme_profiles.quick]\ndescription = \"3 minutes, for renewal tests\"\n\
                             minutes = 3\nidentifiers = [\"dns\"]\n";
/// How long a renewal of a `quick` certificate may take to come: its window ends some
/// 155 s after issue; the rest is for a busy machine.
const QUICK_RENEWAL_LIMIT: Duration = Duration::from_secs(240);

/// The server options of this file: renewal information looked at again every 2 s (the
/// client waits at least 5), and the `quick` profile.
fn options(restartable: bool) -> AcmeServerOptions {
    AcmeServerOptions {
        server_lines: "renewal_info_retry_secs = 2\n".into(),
        ca_toml: QUICK_PROFILE.into(),
        restartable,
    }
}

fn server() -> &'static GatehouseAcme {
    static SERVER: OnceLock<Result<GatehouseAcme, String>> = OnceLock::new();
    shared_fixture(&SERVER, "gatehouse ACME server", || GatehouseAcme::start_with(&options(false)))
}

/// A gateway with one `[[acme]]` table for `server` and one site for `hosts`, listening
/// on `https` and `http` (the challenge port of the server the test holds, or a free one).
struct Site<'a> {
    server: &'a GatehouseAcme,
    challenge: &'a str,
    extra: String,
    hosts: &'a [&'a str],
    https: u16,
    http: u16,
}

impl Site<'_> {
    #[track_caller]
    fn start(&self, dir: &Path, upstream: &Upstream) -> Edge {
        let admin = free_port();
        let body = format!(
            "{}{}",
            acme_toml(ACME, &self.server.directory(), &self.server.root(), self.challenge, &self.extra),
            acme_site_toml(self.hosts, ACME)
        );
        let toml = edge_toml(self.https, self.http, admin, &body, &upstream.url());
        Edge::start(dir, self.https, admin, &toml)
    }
}

/// What a new handshake for `host` gets, with the gateway's key, checked against the
/// server's root and `ca list`.
#[track_caller]
fn served(edge: &Edge, server: &GatehouseAcme, host: &str, into: &Path) -> Issued {
    let mut issued = edge.served(host, into);
    issued.key = edge.stored_dir(ACME, host).join("key.pem");
    issued.assert_valid(&server.root(), &[host]);
    issued
}

/// The serial of the last certificate the gateway logged obtaining or renewing before
/// line `before`.
#[track_caller]
fn serving_before(edge: &Edge, before: usize) -> String {
    let mut got: Vec<LogLine> = [OBTAINED, RENEWED].iter().flat_map(|e| edge.lines(0, e)).collect();
    got.retain(|l| l.index < before && l.text.contains(" acme="));
    got.sort_by_key(|l| l.index);
    got.last().unwrap_or_else(|| panic!("no certificate logged before line {before}\n{}", edge.proc.dump())).serial()
}

#[test]
fn ari_after_ca_revoke_renews_without_restart() {
    let server = server();
    let _port = server.hold_http();
    let (dir, env) = (tmp(), Env::empty());
    let upstream = Upstream::start(&env);
    let host = "r.example.test";
    let site = Site {
        server,
        challenge: "http-01",
        extra: String::new(),
        hosts: &[host],
        https: free_port(),
        http: server.http_01_port,
    };
    let mut edge = site.start(&dir, &upstream);
    let obtained = edge.wait_certificate(0, OBTAINED);
    let first = served(&edge, server, host, &dir.join("first"));
    server.assert_issued(&first, &[host], SERVER_PROFILE_HOURS);
    assert_eq!(norm_serial(&first.serial()), obtained.serial());
    let scheduled = edge.wait_log(obtained.index, SCHEDULED, LOG_LIMIT);
    assert_eq!(scheduled.field("reason").as_deref(), Some("the CA's renewal information"), "{}", scheduled.text);

    server.env.gh_ok(&["ca", "revoke", &first.serial()]);
    let renewed = edge.wait_certificate(scheduled.index, RENEWED);
    assert_ne!(renewed.serial(), obtained.serial(), "{}", renewed.text);
    let second = served(&edge, server, host, &dir.join("second"));
    assert_eq!(norm_serial(&second.serial()), renewed.serial(), "new handshakes get the renewed certificate");
    server.assert_issued(&second, &[host], SERVER_PROFILE_HOURS);
    server.assert_revoked(&first);
    assert_upstream_answered(&curl_edge(&edge, host, "/renewed", &server.root()), "/renewed");
    assert_eq!(edge.orders(ACME, "ok"), 2.0, "{}", edge.metrics());
}

#[test]
fn a_short_lived_certificate_is_renewed_while_a_connection_stays_open() {
    let server = server();
    let _port = server.hold_tls();
    let (dir, env) = (tmp(), Env::empty());
    let upstream = Upstream::start(&env);
    let host = "q.example.test";
    let site = Site {
        server,
        challenge: "tls-alpn-01",
        extra: "profile = \"quick\"\n".into(),
        hosts: &[host],
        https: server.tls_alpn_01_port,
        http: free_port(),
    };
    let mut edge = site.start(&dir, &upstream);
    let obtained = edge.wait_certificate(0, OBTAINED);
    let first = served(&edge, server, host, &dir.join("first"));
    let (not_before, not_after) = first.validity();
    assert!(not_after - not_before <= 5 * 60, "profile quick (3 minutes) gave {} s", not_after - not_before);
    let scheduled = edge.wait_log(obtained.index, SCHEDULED, LOG_LIMIT);
    assert_eq!(scheduled.field("reason").as_deref(), Some("the CA's renewal information"), "{}", scheduled.text);

    let mut kept = KeptConnection::open(&dir, edge.https, host, &server.root());
    assert_eq!(kept.serial, obtained.serial(), "the kept connection's handshake");
    kept.get("/before");
    // Requests on the connection while the renewal comes, well within the idle timeout.
    let start = Instant::now();
    let mut asked = Instant::now();
    let renewed = loop {
        if let Some(line) = edge.lines(obtained.index, RENEWED).into_iter().next() {
            break line;
        }
        if let Some(failed) = edge.lines(obtained.index, ORDER_FAILED).into_iter().next() {
            panic!("the renewal failed: {}\n{}", failed.text, edge.proc.dump());
        }
        assert!(
            start.elapsed() < QUICK_RENEWAL_LIMIT,
            "no renewal within {QUICK_RENEWAL_LIMIT:?}\n{}",
            edge.proc.dump()
        );
        if asked.elapsed() > Duration::from_secs(10) {
            kept.get(&format!("/during-{}", start.elapsed().as_secs()));
            asked = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_ne!(renewed.serial(), obtained.serial(), "{}", renewed.text);
    let second = served(&edge, server, host, &dir.join("second"));
    assert_eq!(norm_serial(&second.serial()), renewed.serial(), "new handshakes get the renewed certificate");
    assert_upstream_answered(&curl_edge(&edge, host, "/new-connection", &server.root()), "/new-connection");
    kept.get("/after");
}

#[test]
fn the_server_down_at_renewal_keeps_the_old_certificate_until_a_retry_succeeds() {
    let mut server = GatehouseAcme::start_with(&options(true));
    let (dir, env) = (tmp(), Env::empty());
    let upstream = Upstream::start(&env);
    let host = "down.example.test";
    let site = Site {
        server: &server,
        challenge: "http-01",
        extra: "profile = \"quick\"\n".into(),
        hosts: &[host],
        https: free_port(),
        http: server.http_01_port,
    };
    let mut edge = site.start(&dir, &upstream);
    let obtained = edge.wait_certificate(0, OBTAINED);
    server.stop();

    // Due by the CA's window, or (its renewal information out of reach) at two thirds.
    let failed = edge.wait_log(obtained.index, ORDER_FAILED, QUICK_RENEWAL_LIMIT);
    assert!(failed.text.contains("ERROR"), "{}", failed.text);
    assert_eq!(failed.field("hosts").as_deref(), Some(host), "{}", failed.text);
    assert_eq!(failed.field("retry_in_secs").as_deref(), Some("10"), "first retry: {}", failed.text);
    let old = serving_before(&edge, failed.index);
    let during = edge.served(host, &dir.join("during"));
    assert_eq!(norm_serial(&during.serial()), old, "the certificate served while the server is down");
    assert!(edge.orders(ACME, "failed") >= 1.0, "{}", edge.metrics());

    server.restart();
    let renewed = edge.wait_log(failed.index + 1, RENEWED, QUICK_RENEWAL_LIMIT);
    assert_ne!(renewed.serial(), old, "{}", renewed.text);
    let after = served(&edge, &server, host, &dir.join("after"));
    assert_eq!(norm_serial(&after.serial()), renewed.serial());

    // What the operator reads: which server could not be reached, and why.
    let error = failed.field("error").unwrap_or_default();
    let address = format!("127.0.0.1:{}", server.port);
    assert!(
        error.contains(&address) && error.to_lowercase().contains("refused"),
        "want the server's address ({address}) and \"refused\" in the error: {}",
        failed.text
    );
}

#[test]
fn a_wrong_tsig_secret_fails_the_order_naming_the_key() {
    let server = server();
    let (dir, env) = (tmp(), Env::empty());
    let upstream = Upstream::start(&env);
    let host = "t.example.test";
    let secret = dir.join("wrong.secret");
    // Valid base64 of the right length, but not the server's.
    write(&secret, "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE=\n");
    let site = Site {
        server,
        challenge: "dns-01",
        extra: rfc2136_toml(&server.bind, &secret),
        hosts: &[host],
        https: free_port(),
        http: free_port(),
    };
    let mut edge = site.start(&dir, &upstream);
    let failed = edge.wait_log(0, ORDER_FAILED, ORDER_LIMIT);
    let error = failed.field("error").unwrap_or_default();
    for words in [&server.bind.key_name, host] {
        assert!(error.contains(words), "want {words:?} in the error: {}", failed.text);
    }
    assert!(!error.contains(&server.bind.secret), "the error shows the secret: {}", failed.text);
    assert!(edge.lines(0, OBTAINED).is_empty(), "{}", edge.proc.dump());
    assert_placeholder(&edge.served(host, &dir.join("served")), host);
    assert!(server.bind.txt(&format!("_acme-challenge.{host}")).is_empty());
    assert!(edge.orders(ACME, "failed") >= 1.0, "{}", edge.metrics());
}

#[test]
fn an_http01_validation_that_cannot_connect_fails_with_the_servers_problem() {
    let server = server();
    // Held, so that nothing listens on the port the server fetches http-01 from.
    let _port = server.hold_http();
    let (dir, env) = (tmp(), Env::empty());
    let upstream = Upstream::start(&env);
    let host = "v.example.test";
    let site = Site {
        server,
        challenge: "http-01",
        extra: String::new(),
        hosts: &[host],
        https: free_port(),
        http: free_port(),
    };
    let mut edge = site.start(&dir, &upstream);
    let failed = edge.wait_log(0, ORDER_FAILED, ORDER_LIMIT);
    assert_eq!(failed.field("retry_in_secs").as_deref(), Some("10"), "{}", failed.text);
    assert!(edge.orders(ACME, "failed") >= 1.0, "{}", edge.metrics());
    assert_eq!(edge.orders(ACME, "ok"), 0.0, "{}", edge.metrics());
    assert_placeholder(&edge.served(host, &dir.join("served")), host);

    // The next attempt comes after the backoff, and the one after it later still.
    let again = edge.wait_log(failed.index + 1, ORDER_FAILED, Duration::from_secs(60));
    assert_eq!(again.field("retry_in_secs").as_deref(), Some("20"), "{}", again.text);

    // The server's problem: the name, the challenge, where it connected and what it got.
    let error = failed.field("error").unwrap_or_default();
    let words = [host.to_string(), "http-01".into(), format!("127.0.0.1:{}", server.http_01_port)];
    for w in &words {
        assert!(error.contains(w.as_str()), "want {w:?} in the error: {}", failed.text);
    }
    assert!(error.to_lowercase().contains("refused"), "want the connection refused in the error: {}", failed.text);
}

/// `gatehouse agent` as a daemon (no `--once`): it obtains the certificate over dns-01,
/// writes its files and runs its reload command; revoking that certificate makes it
/// renew on the renewal information, write the new files and reload again, without a
/// restart.
#[test]
fn the_agent_daemon_obtains_and_renews_after_a_revocation() {
    let server = server();
    let dir = tmp();
    let data = mkdir(dir.join("data"));
    let name = "daemon.example.test";
    let secret = dir.join("tsig.secret");
    write(&secret, format!("{}\n", server.bind.secret));
    let (cert, reloads) = (dir.join("out/cert.pem"), dir.join("reloads"));
    let toml = format!(
        "{}\n[[certificate]]\nnames = [\"{name}\"]\nacme = \"{ACME}\"\ncert = \"{}\"\nkey = \"{}\"\n\
         reload = \"echo reloaded >> {}\"\n",
        acme_toml(ACME, &server.directory(), &server.root(), "dns-01", &rfc2136_toml(&server.bind, &secret)),
        s(&cert),
        s(&dir.join("out/key.pem")),
        s(&reloads),
    );
    let config = dir.join("agent.toml");
    write(&config, &toml);
    let mut c = gh_cmd(&data, &["agent", "--config", s(&config)]);
    c.env("GATEHOUSE_LOG", "info");
    let mut agent = Daemon::spawn(&c, "gatehouse agent", None);
    let reloads_done = || std::fs::read_to_string(&reloads).map(|t| t.lines().count()).unwrap_or(0);
    let serial_of = |pem: &Path| {
        let o = openssl(&["x509", "-in", s(pem), "-noout", "-serial"]);
        norm_serial(o.stdout.trim().trim_start_matches("serial="))
    };
    wait_agent(&mut agent, "certificate obtained and reload", |log| {
        log.contains("certificate obtained") && reloads_done() == 1
    });
    let first = serial_of(&cert);
    assert_eq!(mode(dir.join("out/key.pem")), 0o600);
    server.env.gh_ok(&["ca", "revoke", &first]);
    wait_agent(&mut agent, "certificate renewed and a second reload", |log| {
        log.contains("certificate renewed") && reloads_done() == 2
    });
    let second = serial_of(&cert);
    assert_ne!(second, first, "the files still hold the revoked certificate");
    assert_eq!(reloads_done(), 2, "one reload per new certificate:\n{}", agent.proc.dump());
}

/// Waits until `done` holds of the agent's stderr (and whatever else it looks at).
#[track_caller]
fn wait_agent(agent: &mut Daemon, what: &str, done: impl Fn(&str) -> bool) {
    let start = Instant::now();
    while !done(&agent.proc.stderr()) {
        assert!(agent.proc.try_exit().is_none(), "the agent exited before {what}:\n{}", agent.proc.dump());
        assert!(start.elapsed() < ORDER_LIMIT, "no {what} within {ORDER_LIMIT:?}:\n{}", agent.proc.dump());
        std::thread::sleep(Duration::from_millis(100));
    }
}
