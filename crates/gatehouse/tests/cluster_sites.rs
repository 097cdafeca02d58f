//! Site certificates of gateways sharing one PostgreSQL (issue 12): two `gatehouse
//! serve` instances with empty data dirs of their own and an ACME-managed site, against
//! gatehouse's own ACME server over dns-01 (so either instance can prove the name).
//! Exactly one orders, under the renewal lease, and both serve the certificate it
//! stored; the holder killed mid-order is replaced once its lease runs out; without a
//! passphrase to encrypt site keys, serve refuses to start. Two instances of one
//! internal CA starting at once issue one site certificate and serve it both.

mod support;

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::*;

const ACME: &str = "shared";
const TOOK_LEASE: &str = "took the renewal lease; ordering";
const PASSPHRASE: &str = "correct horse battery staple";

fn server() -> &'static GatehouseAcme {
    static SERVER: OnceLock<Result<GatehouseAcme, String>> = OnceLock::new();
    shared_fixture(&SERVER, "gatehouse ACME server", GatehouseAcme::start)
}

/// `gatehouse serve` in `dir` with `storage = URL` and one dns-01 site for `host`,
/// the CA passphrase in its environment and the lease TTL `ttl_secs` if given.
#[track_caller]
fn start(dir: &Path, storage: &str, host: &str, upstream: &Upstream, ttl_secs: Option<u64>) -> Edge {
    let server = server();
    let secret = dir.join("tsig.secret");
    write(&secret, format!("{}\n", server.bind.secret));
    let body = format!(
        "{}{}",
        acme_toml(ACME, &server.directory(), &server.root(), "dns-01", &rfc2136_toml(&server.bind, &secret)),
        acme_site_toml(&[host], ACME)
    );
    let (https, admin) = (free_port(), free_port());
    let toml = format!("storage = \"{storage}\"\n{}", edge_toml(https, free_port(), admin, &body, &upstream.url()));
    let data = mkdir(dir.join("data"));
    let path = dir.join("edge.toml");
    write(&path, &toml);
    let mut c = gh_cmd(&data, &["serve", "--config", s(&path)]);
    c.current_dir("/").env("GATEHOUSE_LOG", "info").env(PASS_ENV, PASSPHRASE);
    if let Some(ttl) = ttl_secs {
        c.env("GATEHOUSE_RENEWAL_LEASE_SECS", ttl.to_string());
    }
    let mut proc = Proc::spawn(c, "gatehouse serve (shared ACME site)");
    proc.wait_listening(https, Duration::from_secs(60), &format!("config:\n{toml}"));
    Edge { proc, https, admin, data, config: toml }
}

/// The serial of the leaf a handshake for `host` gets.
#[track_caller]
fn served_serial(edge: &Edge, host: &str, into: &Path) -> String {
    let mut issued = edge.served(host, into);
    // The data dir's copy of what the store holds: the key must be the served certificate's.
    issued.key = edge.stored_dir(ACME, host).join("key.pem");
    issued.assert_valid(&server().root(), &[host]);
    let o = openssl(&["x509", "-in", s(&issued.leaf), "-noout", "-serial"]);
    norm_serial(o.stdout.trim().trim_start_matches("serial="))
}

/// The ACME server's orders for `host`, read from its database.
fn orders_for(host: &str) -> u64 {
    let db = server().env.data().join("gatehouse.db");
    let query = format!("SELECT count(*) FROM acme_orders WHERE identifiers LIKE '%\"{host}\"%'");
    let o = std::process::Command::new("sqlite3").arg(&db).arg(query).output().expect("run sqlite3");
    let text = String::from_utf8_lossy(&o.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("sqlite3 {}: {text} {}", db.display(), String::from_utf8_lossy(&o.stderr)))
}

/// Certificates the ACME server's CA issued that name `host`.
fn issued_for(host: &str) -> usize {
    let list = list_json(&server().env.data(), &[]);
    list.iter().filter(|entry| entry.to_string().contains(&format!("\"{host}\""))).count()
}

/// Waits until one of `edges` logs `what`; its index.
#[track_caller]
fn first_to_log(edges: &mut [&mut Edge], what: &str, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        for (i, edge) in edges.iter_mut().enumerate() {
            if !edge.lines(0, what).is_empty() {
                return i;
            }
            if let Some(st) = edge.proc.try_exit() {
                panic!("gateway {i} exited ({st}) before logging {what:?}\n{}", edge.proc.dump());
            }
        }
        assert!(Instant::now() < deadline, "no gateway logged {what:?} within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_instances_order_once_and_serve_the_same_certificate() {
    let storage = test_cluster::database_blocking();
    let (env, host) = (Env::empty(), "both.example.test");
    let upstream = Upstream::start(&env);
    let (dir_a, dir_b) = (tmp(), tmp());
    let mut a = start(dir_a.path(), &storage, host, &upstream, None);
    let mut b = start(dir_b.path(), &storage, host, &upstream, None);
    a.wait_certificate(0, OBTAINED);
    b.wait_certificate(0, OBTAINED);

    let took = a.lines(0, TOOK_LEASE).len() + b.lines(0, TOOK_LEASE).len();
    assert_eq!(took, 1, "instances that took the lease\nA:\n{}\nB:\n{}", a.proc.dump(), b.proc.dump());
    assert_eq!(orders_for(host), 1, "orders the ACME server got for {host}");
    assert_eq!(a.orders(ACME, "ok") + b.orders(ACME, "ok"), 1.0, "orders counted in the two instances' metrics");
    assert_eq!(issued_for(host), 1, "certificates the CA issued for {host}");
    let serial_a = served_serial(&a, host, &dir_a.path().join("served"));
    let serial_b = served_serial(&b, host, &dir_b.path().join("served"));
    assert_eq!(serial_a, serial_b, "the two instances serve different certificates");

    // A third instance, started once the certificate is stored, serves it at once.
    let dir_c = tmp();
    let mut c = start(dir_c.path(), &storage, host, &upstream, None);
    assert_eq!(served_serial(&c, host, &dir_c.path().join("served")), serial_a);
    assert!(c.lines(0, NO_CERTIFICATE_YET).is_empty(), "{}", c.proc.dump());
    c.wait_log(0, SCHEDULED, LOG_LIMIT);
    assert!(c.lines(0, TOOK_LEASE).is_empty(), "the third instance ordered: {}", c.proc.dump());
    assert_eq!(orders_for(host), 1);
}

#[test]
fn the_holder_killed_mid_order_is_replaced_once_its_lease_runs_out() {
    let storage = test_cluster::database_blocking();
    let (env, host) = (Env::empty(), "killed.example.test");
    let upstream = Upstream::start(&env);
    let (dir_a, dir_b) = (tmp(), tmp());
    let mut a = start(dir_a.path(), &storage, host, &upstream, Some(4));
    let mut b = start(dir_b.path(), &storage, host, &upstream, Some(4));
    let holder = first_to_log(&mut [&mut a, &mut b], TOOK_LEASE, ORDER_LIMIT);
    let (dead, survivor, survivor_dir) = if holder == 0 { (&mut a, &mut b, &dir_b) } else { (&mut b, &mut a, &dir_a) };
    dead.proc.signal("KILL");
    assert!(dead.proc.wait_exit(Duration::from_secs(20)).is_some());
    assert!(dead.lines(0, OBTAINED).is_empty(), "the holder finished before it was killed; {}", dead.proc.dump());

    let took = survivor.wait_log(0, TOOK_LEASE, ORDER_LIMIT);
    let obtained = survivor.wait_certificate(took.index, OBTAINED);
    assert!(
        survivor.lines(0, TOOK_LEASE).len() == 1,
        "the survivor took the lease more than once: {}",
        survivor.proc.dump()
    );
    let serial = served_serial(survivor, host, &survivor_dir.path().join("served"));
    assert_eq!(serial, obtained.serial());
}

/// `gatehouse serve` in `dir` (a copy of the CA's data dir) with `storage = URL` and one
/// site for `host` with a certificate from the internal CA; not yet waited for.
fn start_internal(dir: &Path, storage: &str, host: &str, upstream: &Upstream) -> (Proc, u16, String) {
    let https = free_port();
    let site =
        format!("\n[[site]]\nhosts = [\"{host}\"]\ncertificate = {{ internal_ca = true }}\nupstream = \"app\"\n");
    let toml =
        format!("storage = \"{storage}\"\n{}", edge_toml(https, free_port(), free_port(), &site, &upstream.url()));
    let path = dir.join("edge.toml");
    write(&path, &toml);
    let mut c = gh_cmd(&dir.join("data"), &["serve", "--config", s(&path)]);
    c.current_dir("/").env("GATEHOUSE_LOG", "info").env(PASS_ENV, PASSPHRASE);
    (Proc::spawn(c, "gatehouse serve (internal CA site)"), https, toml)
}

#[test]
fn two_instances_of_one_internal_ca_starting_at_once_issue_one_site_certificate() {
    let storage = test_cluster::database_blocking();
    let (env, host) = (Env::empty(), "internal.example.test");
    let upstream = Upstream::start(&env);
    let (dir_a, dir_b) = (tmp(), tmp());
    let (data_a, data_b) = (mkdir(dir_a.path().join("data")), mkdir(dir_b.path().join("data")));
    let init = gh_env(&data_a, &["--storage", &storage, "ca", "init"], &[(PASS_ENV, PASSPHRASE)]);
    assert_eq!(init.code, 0, "{}", init.all());
    // The CA's keys are in the data dir (another part of issue 12 moves them into the database).
    let copied = std::process::Command::new("cp").arg("-a").arg(format!("{}/.", s(&data_a))).arg(&data_b).status();
    assert!(copied.expect("run cp").success());

    let (mut a, https_a, toml_a) = start_internal(dir_a.path(), &storage, host, &upstream);
    let (mut b, https_b, toml_b) = start_internal(dir_b.path(), &storage, host, &upstream);
    a.wait_listening(https_a, Duration::from_secs(60), &toml_a);
    b.wait_listening(https_b, Duration::from_secs(60), &toml_b);

    let issuing = "took the lease; issuing";
    let issued = a.stderr().matches(issuing).count() + b.stderr().matches(issuing).count();
    assert_eq!(issued, 1, "instances that issued\nA:\n{}\nB:\n{}", a.dump(), b.dump());
    let list = list_json(&data_a, &["--storage", &storage]);
    let named = list.iter().filter(|entry| entry.to_string().contains(&format!("\"{host}\""))).count();
    assert_eq!(named, 1, "certificates issued for {host}: {list:?}");
    let serial = |port: u16| {
        let o = s_client(port, &["-servername", host], "");
        let leaf = pem_certs(&o.stdout).into_iter().next().unwrap_or_else(|| panic!("no certificate: {}", o.all()));
        let leaf_path = dir_a.path().join(format!("leaf-{port}.pem"));
        write(&leaf_path, leaf);
        let o = openssl(&["x509", "-in", s(&leaf_path), "-noout", "-serial"]);
        norm_serial(o.stdout.trim().trim_start_matches("serial="))
    };
    assert_eq!(serial(https_a), serial(https_b), "the two instances serve different certificates");
}

#[test]
fn serve_on_postgres_without_a_passphrase_refuses_to_share_site_keys() {
    let storage = test_cluster::database_blocking();
    let server = server();
    let dir = tmp();
    let body = format!(
        "{}{}",
        acme_toml(ACME, &server.directory(), &server.root(), "http-01", ""),
        acme_site_toml(&["nokey.example.test"], ACME)
    );
    let toml = format!(
        "storage = \"{storage}\"\n{}",
        edge_toml(free_port(), free_port(), free_port(), &body, "http://127.0.0.1:9")
    );
    let path = dir.path().join("edge.toml");
    write(&path, &toml);
    let data = mkdir(dir.path().join("data"));
    let o = run_limited(gh_cmd(&data, &["serve", "--config", s(&path)]), Duration::from_secs(120));
    assert!(o.code != 0, "serve started without a passphrase: {}", o.all());
    assert!(
        o.stderr.contains("needs a passphrase to encrypt their keys") && o.stderr.contains("GATEHOUSE_CA_PASSPHRASE"),
        "{}",
        o.all()
    );
    assert_eq!(o.stderr.trim().lines().count(), 1, "{}", o.all());
}
