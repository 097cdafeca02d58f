//! [`GatehouseAcme`]: `gatehouse serve` with an `[acme_server]` table, the server under test.

use super::*;

/// `gatehouse serve` with only an `[acme_server]` table, on a CA made by `ca init` in
/// `env`, validating http-01 on 127.0.0.1:`http_01_port`, tls-alpn-01 on
/// `tls_alpn_01_port` and resolving names and dns-01 records through `bind`.
/// The challenge ports are one per server, so the clients that listen on one take its
/// lock ([`GatehouseAcme::hold_http`], [`GatehouseAcme::hold_tls`]) for their run.
pub struct GatehouseAcme {
    pub daemon: Daemon,
    pub env: Env,
    pub bind: Bind9,
    pub port: u16,
    pub http_01_port: u16,
    pub tls_alpn_01_port: u16,
    pub config: String,
    http_lock: Mutex<()>,
    tls_lock: Mutex<()>,
    restartable: bool,
}

/// What a [`GatehouseAcme`] is started with besides the defaults of [`GatehouseAcme::start`].
#[derive(Debug, Clone, Default)]
pub struct AcmeServerOptions {
    /// Lines added to `[acme_server]`, e.g. `renewal_info_retry_secs = 2`.
    pub server_lines: String,
    /// Added to the end of the CA's `ca.toml` before the start, e.g. an
    /// `[acme_profiles.NAME]` table (the ones `ca init` wrote stay).
    pub ca_toml: String,
    /// [`GatehouseAcme::stop`] and [`GatehouseAcme::restart`] keep the data dir: the
    /// guard does not remove it, the [`Env`] does when dropped, so such a server must
    /// not live in a `static`.
    pub restartable: bool,
}

impl GatehouseAcme {
    /// `gatehouse ca init`, then `gatehouse serve --config T/acme.toml`; waits until it
    /// listens and answers its directory, and panics naming that first contact if not.
    #[track_caller]
    pub fn start() -> GatehouseAcme {
        GatehouseAcme::start_with(&AcmeServerOptions::default())
    }

    /// [`GatehouseAcme::start`] with `options`.
    #[track_caller]
    pub fn start_with(options: &AcmeServerOptions) -> GatehouseAcme {
        let bind = Bind9::start();
        let env = Env::new();
        if !options.ca_toml.is_empty() {
            let ca_toml = env.data().join("ca.toml");
            write(&ca_toml, format!("{}\n{}\n", read(&ca_toml), options.ca_toml));
        }
        let (port, http_01_port, tls_alpn_01_port) = (free_port(), free_port(), free_port());
        let config = format!(
            "[acme_server]\nlisten = \"127.0.0.1:{port}\"\nhttp_01_port = {http_01_port}\n\
             tls_alpn_01_port = {tls_alpn_01_port}\ndns_resolver = \"{}\"\n{}",
            bind.addr(),
            options.server_lines
        );
        env.write("acme.toml", &config);
        let daemon = serve(&env, port, &config, options.restartable);
        let server = GatehouseAcme {
            daemon,
            env,
            bind,
            port,
            http_01_port,
            tls_alpn_01_port,
            config,
            http_lock: Mutex::new(()),
            tls_lock: Mutex::new(()),
            restartable: options.restartable,
        };
        assert_directory(&server.directory(), &server.root());
        server
    }

    /// Stops the server (SIGTERM, as [`Daemon`]'s drop does) and waits until it is gone;
    /// only for a server started with [`AcmeServerOptions::restartable`].
    #[track_caller]
    pub fn stop(&mut self) {
        assert!(self.restartable, "stop() on a server whose guard removes its data dir when it stops");
        self.daemon.proc.close_stdin();
        let exited = self.daemon.proc.wait_exit(Duration::from_secs(20));
        assert!(exited.is_some(), "gatehouse's ACME server did not stop\n{}", self.daemon.proc.dump());
    }

    /// Starts the stopped server again: same port, config and data dir.
    #[track_caller]
    pub fn restart(&mut self) {
        assert!(self.restartable, "restart() on a server whose guard removed its data dir when it stopped");
        self.daemon = serve(&self.env, self.port, &self.config, false);
        assert_directory(&self.directory(), &self.root());
    }

    /// One server (and its bind9) for all the tests of a test binary, started by the
    /// first test that asks; when that start failed, every test fails with its message
    /// at once instead of starting again.
    #[track_caller]
    pub fn shared() -> &'static GatehouseAcme {
        static SHARED: OnceLock<Result<GatehouseAcme, String>> = OnceLock::new();
        let r = SHARED.get_or_init(|| {
            std::panic::catch_unwind(GatehouseAcme::start).map_err(|e| {
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|m| m.to_string()))
                    .unwrap_or_else(|| "gatehouse's ACME server did not start".into())
            })
        });
        match r {
            Ok(server) => server,
            Err(m) => panic!("the shared ACME server did not start: {m}"),
        }
    }

    /// `https://127.0.0.1:PORT/acme/directory`
    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/acme/directory", self.port)
    }

    /// The CA's root, which clients trust for the directory and issued chains verify to.
    pub fn root(&self) -> PathBuf {
        self.env.root()
    }

    /// The http-01 port, held for one client run.
    pub fn hold_http(&self) -> MutexGuard<'_, ()> {
        self.http_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tls-alpn-01 port, held for one client run.
    pub fn hold_tls(&self) -> MutexGuard<'_, ()> {
        self.tls_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A certbot for this server.
    pub fn certbot(&self) -> Certbot {
        Certbot::new(&self.directory(), &self.root())
    }

    /// A lego for this server.
    pub fn lego(&self) -> Lego {
        Lego::new(&self.directory(), &self.root())
    }

    /// `lego run` over http-01 for `names` (holding the http-01 port), asserting success.
    #[track_caller]
    pub fn obtain_http(&self, lego: &Lego, names: &[&str]) -> Issued {
        let _port = self.hold_http();
        assert_client_ok("lego --http run", &lego.obtain(Solver::Http(self.http_01_port), names));
        lego.issued(names[0])
    }

    /// The `ca list --json` entry of an issued certificate; panics when it is missing.
    #[track_caller]
    pub fn entry(&self, issued: &Issued) -> Value {
        let serial = issued.serial();
        let list = list_json(&self.env.data(), &[]);
        find_serial(&list, &serial)
            .cloned()
            .unwrap_or_else(|| panic!("serial {serial} is not in `gatehouse ca list --json`"))
    }

    /// The checks for every certificate this server issued: [`Issued::assert_valid`]
    /// against the root, the profile's lifetime (within 2 hours, for backdating), and
    /// a `ca list` entry with the same names, valid. Returns the entry.
    #[track_caller]
    pub fn assert_issued(&self, issued: &Issued, names: &[&str], lifetime_hours: i64) -> Value {
        issued.assert_valid(&self.root(), names);
        let hours = issued.lifetime_hours();
        assert!(
            (hours - lifetime_hours).abs() <= 2,
            "{} lasts {hours} h, want {lifetime_hours} h",
            issued.leaf.display()
        );
        let e = self.entry(issued);
        assert_eq!(e["status"], "valid", "{e}");
        let mut sans: Vec<String> = e["sans"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default();
        sans.sort();
        assert_eq!(sans, issued.sans(), "ca list sans vs the certificate: {e}");
        e
    }

    /// `gatehouse ca crl` as `openssl crl -text`.
    #[track_caller]
    pub fn crl_text(&self) -> String {
        let crl = self.env.path().join(format!("crl-{}.pem", super::super::time::unix_now()));
        self.env.gh_ok(&["ca", "crl", "--out", s(&crl)]);
        openssl_ok(&["crl", "-in", s(&crl), "-noout", "-text"])
    }

    /// Asserts `gatehouse ca list --json` shows `issued` revoked and the CRL lists it.
    #[track_caller]
    pub fn assert_revoked(&self, issued: &Issued) {
        let e = self.entry(issued);
        assert_eq!(e["status"], "revoked", "ca list after an ACME revocation: {e}");
        let crl = self.crl_text();
        let serial = norm_serial(&issued.serial());
        let listed =
            crl.lines().filter_map(|l| l.trim().strip_prefix("Serial Number:")).any(|x| norm_serial(x) == serial);
        assert!(listed, "serial {serial} is not in `gatehouse ca crl`:\n{crl}");
    }
}

/// `gatehouse serve --config T/acme.toml` under a guard (which removes `T` when it stops,
/// unless `keep`), listening on `port`.
#[track_caller]
fn serve(env: &Env, port: u16, config: &str, keep: bool) -> Daemon {
    let path = env.path().join("acme.toml");
    let mut c = gh_cmd(&env.data(), &["serve", "--config", s(&path)]);
    c.current_dir("/");
    let mut daemon = Daemon::spawn(&c, "gatehouse serve", (!keep).then(|| env.path()));
    daemon.wait_listening(
        port,
        &format!("gatehouse's ACME server (issue 9) did not come up with this config:\n{config}"),
    );
    daemon
}
