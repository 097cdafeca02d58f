//! Challenge answers and the ACME account shared by gateways on one PostgreSQL
//! (issue 12): two `gatehouse serve` instances with empty data dirs of their own and
//! one ACME site, ordering from gatehouse's own ACME server over http-01 or
//! tls-alpn-01. A load balancer in front of them (a TCP relay here) sends the CA's
//! validation to the instance that does NOT hold the renewal lease, so the order
//! succeeds only if that instance reads the answer the orderer shared through the
//! database. Two instances registering at once end with one account, stored once
//! (its key encrypted) and used by both. With the database down, an instance serves
//! as before and answers a challenge request it cannot look up as any other path.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use support::*;

const ACME: &str = "shared";
const TOOK_LEASE: &str = "took the renewal lease; ordering";
const FROM_DATABASE: &str = "answering a validation with the answer another instance shared";
const PASSPHRASE: &str = "correct horse battery staple";

fn server() -> &'static GatehouseAcme {
    static SERVER: OnceLock<Result<GatehouseAcme, String>> = OnceLock::new();
    shared_fixture(&SERVER, "gatehouse ACME server", GatehouseAcme::start)
}

/// One `gatehouse serve` of the cluster, and its plain-HTTP port.
struct Instance {
    edge: Edge,
    http: u16,
}

/// `gatehouse serve` in `dir` with `storage = URL` and one site for each of `hosts`,
/// proving names with `challenge`, the CA passphrase in its environment.
#[track_caller]
fn start(dir: &Path, storage: &str, hosts: &[&str], challenge: &str, upstream: &Upstream) -> Instance {
    let server = server();
    let secret = dir.join("tsig.secret");
    write(&secret, format!("{}\n", server.bind.secret));
    let dns = if challenge == "dns-01" { rfc2136_toml(&server.bind, &secret) } else { String::new() };
    let mut body = acme_toml(ACME, &server.directory(), &server.root(), challenge, &dns);
    for host in hosts {
        body.push_str(&acme_site_toml(&[host], ACME));
    }
    let (https, http, admin) = (free_port(), free_port(), free_port());
    let toml = format!("storage = \"{storage}\"\n{}", edge_toml(https, http, admin, &body, &upstream.url()));
    let data = mkdir(dir.join("data"));
    let path = dir.join("edge.toml");
    write(&path, &toml);
    let mut c = gh_cmd(&data, &["serve", "--config", s(&path)]);
    c.current_dir("/").env("GATEHOUSE_LOG", "info").env(PASS_ENV, PASSPHRASE);
    let mut proc = Proc::spawn(c, "gatehouse serve (shared challenge answers)");
    proc.wait_listening(https, Duration::from_secs(60), &format!("config:\n{toml}"));
    Instance { edge: Edge { proc, https, admin, data, config: toml }, http }
}

/// Waits until one of `instances` logs `what`; its index.
#[track_caller]
fn first_to_log(instances: &mut [&mut Instance], what: &str, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        for (i, instance) in instances.iter_mut().enumerate() {
            if !instance.edge.lines(0, what).is_empty() {
                return i;
            }
            if let Some(st) = instance.edge.proc.try_exit() {
                panic!("gateway {i} exited ({st}) before logging {what:?}\n{}", instance.edge.proc.dump());
            }
        }
        assert!(Instant::now() < deadline, "no gateway logged {what:?} within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `psql URL -tAc SQL`: the rows, one a line.
#[track_caller]
fn psql(url: &str, sql: &str) -> String {
    let o = std::process::Command::new("psql").args([url, "-tAc", sql]).output().expect("run psql");
    assert!(o.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A load balancer for the CA's validations: a TCP relay on the port the ACME server
/// validates on, forwarding each connection to the port it is pointed at. Connections
/// that come before it is pointed wait, so a test can first learn which instance
/// orders and then send the validation to the other.
struct Balancer {
    target: Arc<(Mutex<Option<u16>>, Condvar)>,
    forwarded: Arc<Mutex<Vec<u16>>>,
}

impl Balancer {
    #[track_caller]
    fn listen(port: u16) -> Balancer {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| panic!("listen on {port}: {e}"));
        let balancer = Balancer { target: Arc::default(), forwarded: Arc::default() };
        let (target, forwarded) = (balancer.target.clone(), balancer.forwarded.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (target, forwarded) = (target.clone(), forwarded.clone());
                std::thread::spawn(move || {
                    let (lock, pointed) = &*target;
                    let guard = lock.lock().unwrap();
                    let (guard, _) =
                        pointed.wait_timeout_while(guard, Duration::from_secs(60), |t| t.is_none()).unwrap();
                    let Some(port) = *guard else { return };
                    drop(guard);
                    forwarded.lock().unwrap().push(port);
                    if let Ok(upstream) = TcpStream::connect(("127.0.0.1", port)) {
                        relay(client, upstream);
                    }
                });
            }
        });
        balancer
    }

    fn point_at(&self, port: u16) {
        let (lock, pointed) = &*self.target;
        *lock.lock().unwrap() = Some(port);
        pointed.notify_all();
    }

    /// The ports connections were forwarded to, in order.
    fn forwarded(&self) -> Vec<u16> {
        self.forwarded.lock().unwrap().clone()
    }
}

/// Copies both ways until each side has closed its half.
fn relay(client: TcpStream, upstream: TcpStream) {
    fn pipe(mut from: TcpStream, mut to: TcpStream) {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    }
    let (client_back, upstream_back) = match (client.try_clone(), upstream.try_clone()) {
        (Ok(c), Ok(u)) => (c, u),
        _ => return,
    };
    let back = std::thread::spawn(move || pipe(upstream_back, client_back));
    pipe(client, upstream);
    let _ = back.join();
}

/// Both instances serve `host` from `challenge`; validation goes, through the balancer
/// on the ACME server's `port`, to the instance that does not hold the lease. Both get
/// the certificate, and no answer is left in the database after.
#[track_caller]
fn validated_by_the_other(storage: &str, host: &str, challenge: &str, port: u16) {
    let balancer = Balancer::listen(port);
    let env = Env::empty();
    let upstream = Upstream::start(&env);
    let (dir_a, dir_b) = (tmp(), tmp());
    let mut a = start(dir_a.path(), storage, &[host], challenge, &upstream);
    let mut b = start(dir_b.path(), storage, &[host], challenge, &upstream);
    let holder = first_to_log(&mut [&mut a, &mut b], TOOK_LEASE, ORDER_LIMIT);
    let (holder, other) = if holder == 0 { (&mut a, &mut b) } else { (&mut b, &mut a) };
    let other_port = if challenge == "http-01" { other.http } else { other.edge.https };
    balancer.point_at(other_port);

    holder.edge.wait_certificate(0, OBTAINED);
    other.edge.wait_certificate(0, OBTAINED);
    let forwarded = balancer.forwarded();
    assert!(
        !forwarded.is_empty() && forwarded.iter().all(|p| *p == other_port),
        "validations forwarded to {forwarded:?}, want only the instance without the lease on {other_port}"
    );
    assert!(
        !other.edge.lines(0, FROM_DATABASE).is_empty(),
        "the instance without the lease did not answer from the database:\n{}",
        other.edge.proc.dump()
    );
    assert!(other.edge.lines(0, TOOK_LEASE).is_empty(), "both ordered:\n{}", other.edge.proc.dump());
    let left = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
        (psql(storage, "SELECT count(*) FROM acme_client_answers") == "0").then_some(())
    });
    assert!(left.is_some(), "answers left: {}", psql(storage, "SELECT kind, name FROM acme_client_answers"));
}

#[test]
fn an_http_01_validation_reaching_the_instance_without_the_lease_is_answered_from_the_database() {
    let storage = test_cluster::database_blocking();
    let server = server();
    // The http-01 port is the balancer's for this test.
    let _port = server.hold_http();
    validated_by_the_other(&storage, "http.example.test", "http-01", server.http_01_port);
}

#[test]
fn a_tls_alpn_01_validation_reaching_the_instance_without_the_lease_is_answered_from_the_database() {
    let storage = test_cluster::database_blocking();
    let server = server();
    let _port = server.hold_tls();
    validated_by_the_other(&storage, "alpn.example.test", "tls-alpn-01", server.tls_alpn_01_port);
}

/// The ACME server's account ids of the orders for `hosts`, read from its database.
fn order_accounts(hosts: &[&str]) -> Vec<String> {
    let db = server().env.data().join("gatehouse.db");
    let like: Vec<String> = hosts.iter().map(|h| format!("identifiers LIKE '%\"{h}\"%'")).collect();
    let query = format!("SELECT DISTINCT account_id FROM acme_orders WHERE {}", like.join(" OR "));
    let o = std::process::Command::new("sqlite3").arg(&db).arg(query).output().expect("run sqlite3");
    String::from_utf8_lossy(&o.stdout).lines().map(str::to_owned).collect()
}

/// The status of account `id` in the ACME server's database.
fn account_status(id: &str) -> String {
    let db = server().env.data().join("gatehouse.db");
    let query = format!("SELECT status FROM acme_accounts WHERE id = '{id}'");
    let o = std::process::Command::new("sqlite3").arg(&db).arg(query).output().expect("run sqlite3");
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// The account id in a data dir's `acme/ACME/account.json`.
fn cached_account(instance: &Instance) -> String {
    let text = read(instance.edge.data.join("acme").join(ACME).join("account.json"));
    let json: Value = serde_json::from_str(&text).expect("account.json is JSON");
    json["credentials"]["id"].as_str().expect("an account id").to_owned()
}

#[test]
fn two_instances_registering_at_once_share_one_account() {
    let storage = test_cluster::database_blocking();
    let env = Env::empty();
    let upstream = Upstream::start(&env);
    let (one, two) = ("account-one.example.test", "account-two.example.test");
    let (dir_a, dir_b) = (tmp(), tmp());
    // A site each, so that both order at once (each under its own lease) and both need
    // the account at once.
    let mut a = start(dir_a.path(), &storage, &[one], "dns-01", &upstream);
    let mut b = start(dir_b.path(), &storage, &[two], "dns-01", &upstream);
    a.edge.wait_certificate(0, OBTAINED);
    b.edge.wait_certificate(0, OBTAINED);

    let accounts = order_accounts(&[one, two]);
    assert_eq!(accounts.len(), 1, "the ACME server saw orders from accounts {accounts:?}");
    let stored = psql(&storage, "SELECT directory, name, account_url FROM acme_client_accounts");
    assert_eq!(stored.lines().count(), 1, "stored accounts: {stored}");
    let fields: Vec<&str> = stored.split('|').collect();
    assert_eq!(fields[..2], [server().directory().as_str(), ACME], "{stored}");
    assert!(fields[2].ends_with(&format!("/{}", accounts[0])), "stored {stored}, ordered with {}", accounts[0]);
    let key = psql(&storage, "SELECT key_pem FROM acme_client_accounts");
    assert!(key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"), "the account key is stored in the clear");
    let shared = |i: &Instance| i.edge.lines(0, "ACME account shared through the database").len();
    assert_eq!(shared(&a) + shared(&b), 1, "instances that stored the account\nA:\n{}", a.edge.proc.dump());
    let registered = a.edge.lines(0, ACCOUNT_REGISTERED).len() + b.edge.lines(0, ACCOUNT_REGISTERED).len();
    let lost = |i: &Instance| i.edge.lines(0, "shared its ACME account first; using that one").len();
    assert_eq!(lost(&a) + lost(&b), registered - 1, "a loser of the race did not take the stored account");
    eprintln!("accounts registered at the CA by the two instances starting at once: {registered}");
    // The loser's own account, never used, is deactivated at the CA.
    let losers = [&a, &b].map(|i| i.edge.lines(0, "shared its ACME account first; using that one"));
    for line in losers.iter().flatten() {
        let ours = line.field("ours").unwrap_or_else(|| panic!("no ours= in {}", line.text));
        let id = ours.rsplit('/').next().unwrap_or_default();
        assert_eq!(account_status(id), "deactivated", "the losing account {ours}");
    }
    assert_eq!(cached_account(&a), fields[2], "instance A's data dir copy");
    assert_eq!(cached_account(&b), fields[2], "instance B's data dir copy");

    // A third instance, started once the account is stored, registers none.
    let dir_c = tmp();
    let three = "account-three.example.test";
    let mut c = start(dir_c.path(), &storage, &[three], "dns-01", &upstream);
    c.edge.wait_certificate(0, OBTAINED);
    assert!(c.edge.lines(0, ACCOUNT_REGISTERED).is_empty(), "C registered an account:\n{}", c.edge.proc.dump());
    assert_eq!(order_accounts(&[one, two, three]), accounts);
}

#[test]
fn with_the_database_down_an_instance_serves_and_answers_challenge_requests_it_cannot_look_up() {
    let mut cluster = test_cluster::Private::start();
    let storage = cluster.database_blocking();
    let env = Env::empty();
    let upstream = Upstream::start(&env);
    let (dir, host) = (tmp(), "down.example.test");
    let mut a = start(dir.path(), &storage, &[host], "dns-01", &upstream);
    a.edge.wait_certificate(0, OBTAINED);

    // $ pg_ctl stop -m fast
    cluster.stop();
    assert_upstream_answered(&curl_edge(&a.edge, host, "/while-down", &server().root()), "/while-down");

    // A challenge path with a token of the right shape is looked up, finds nothing (the
    // database is away), and gets what any path gets: the redirect to HTTPS.
    let token = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
    let url = format!("http://{host}:{}/.well-known/acme-challenge/{token}", a.http);
    let asked = Instant::now();
    let r = curl(&["--resolve", &format!("{host}:{}:127.0.0.1", a.http), &url]);
    let took = asked.elapsed();
    assert_eq!(r.status, 308, "{r:?}");
    eprintln!("a challenge request with the database down was answered in {} ms", ms(took));

    // A tls-alpn-01 probe for a name with no answer is closed; ordinary handshakes go on.
    let probe = s_client(a.edge.https, &["-servername", host, "-alpn", "acme-tls/1"], "");
    assert!(pem_certs(&probe.stdout).is_empty(), "an acme-tls/1 probe got a certificate: {}", probe.all());
    assert_upstream_answered(&curl_edge(&a.edge, host, "/after-probe", &server().root()), "/after-probe");
    assert!(a.edge.proc.try_exit().is_none(), "{}", a.edge.proc.dump());
}
