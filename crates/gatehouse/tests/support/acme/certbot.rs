//! [`Certbot`]: the certbot of scripts/test.sh's virtualenv.

use super::*;

/// certbot with its own config, work and logs dirs in a temp dir, one ACME server
/// (`--server`), trusting `ca_bundle` for that server's TLS (REQUESTS_CA_BUNDLE).
pub struct Certbot {
    pub dir: TempDir,
    pub server: String,
    pub ca_bundle: PathBuf,
}

impl Certbot {
    pub fn new(server: &str, ca_bundle: &Path) -> Certbot {
        require(CERTBOT);
        Certbot { dir: tmp(), server: server.into(), ca_bundle: ca_bundle.into() }
    }

    /// `certbot SUBCOMMAND ARGS...` with the dirs, server, account flags and trust.
    pub fn run(&self, subcommand: &str, args: &[&str]) -> Out {
        let d = self.dir.path();
        let mut c = Command::new(CERTBOT);
        c.arg(subcommand);
        c.arg("--config-dir").arg(d.join("config"));
        c.arg("--work-dir").arg(d.join("work"));
        c.arg("--logs-dir").arg(d.join("logs"));
        c.args(["--server", &self.server, "--non-interactive", "--agree-tos", "-m", EMAIL, "--no-eff-email"]);
        c.args(args);
        c.env("REQUESTS_CA_BUNDLE", &self.ca_bundle);
        c.current_dir(d);
        run_limited(c, CLIENT_LIMIT)
    }

    /// The authenticator flags for a solver.
    fn solver_args(&self, solver: Solver) -> Vec<String> {
        match solver {
            Solver::Http(port) => vec![
                "--standalone".into(),
                "--preferred-challenges".into(),
                "http-01".into(),
                "--http-01-port".into(),
                port.to_string(),
                "--http-01-address".into(),
                "127.0.0.1".into(),
            ],
            // The records are on the only authoritative server the moment it answers
            // the update: nothing to wait for.
            Solver::Dns(bind) => vec![
                "--dns-rfc2136".into(),
                "--dns-rfc2136-credentials".into(),
                s(&bind.certbot_credentials(self.dir.path())).into(),
                "--dns-rfc2136-propagation-seconds".into(),
                "0".into(),
            ],
            Solver::TlsAlpn(_) => panic!("certbot has no tls-alpn-01 authenticator"),
        }
    }

    /// `certbot certonly --cert-name NAME AUTHENTICATOR -d N... EXTRA...`
    pub fn certonly(&self, cert_name: &str, solver: Solver, names: &[&str], extra: &[&str]) -> Out {
        let mut args: Vec<String> = vec!["--cert-name".into(), cert_name.into()];
        args.extend(self.solver_args(solver));
        for n in names {
            args.push("-d".into());
            args.push(n.to_string());
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run("certonly", &args)
    }

    /// `certbot renew --cert-name NAME --no-random-sleep-on-renew EXTRA...` (the
    /// authenticator comes from the lineage's renewal config). Without
    /// `--force-renewal`, certbot renews only when due: by ARI when the server has
    /// renewalInfo, else by its own threshold.
    pub fn renew(&self, cert_name: &str, extra: &[&str]) -> Out {
        let mut args = vec!["--cert-name", cert_name, "--no-random-sleep-on-renew"];
        args.extend_from_slice(extra);
        self.run("renew", &args)
    }

    /// `certbot revoke --cert-path LIVE/cert.pem --no-delete-after-revoke EXTRA...`
    pub fn revoke(&self, cert_name: &str, extra: &[&str]) -> Out {
        let cert = self.live_dir(cert_name).join("cert.pem");
        let mut args = vec!["--cert-path", s(&cert), "--no-delete-after-revoke"];
        args.extend_from_slice(extra);
        self.run("revoke", &args)
    }

    /// `CONFIG/live/NAME`
    pub fn live_dir(&self, cert_name: &str) -> PathBuf {
        self.dir.path().join("config/live").join(cert_name)
    }

    /// The lineage's current files: cert.pem, chain.pem and privkey.pem.
    #[track_caller]
    pub fn live(&self, cert_name: &str) -> Issued {
        let d = self.live_dir(cert_name);
        let i = Issued { leaf: d.join("cert.pem"), chain: d.join("chain.pem"), key: d.join("privkey.pem") };
        for p in [&i.leaf, &i.chain, &i.key] {
            assert!(p.exists(), "certbot wrote no {}", p.display());
        }
        i
    }

    /// The text of certbot's debug log (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("logs/letsencrypt.log")).unwrap_or_default()
    }
}
