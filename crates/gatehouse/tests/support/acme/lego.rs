//! [`Lego`]: Debian's lego.

use super::*;

/// lego with its own `--path` in a temp dir, one ACME server, trusting `ca_bundle`
/// for that server's TLS (LEGO_CA_CERTIFICATES).
pub struct Lego {
    pub dir: TempDir,
    pub server: String,
    pub ca_bundle: PathBuf,
}

impl Lego {
    pub fn new(server: &str, ca_bundle: &Path) -> Lego {
        require(LEGO);
        Lego { dir: tmp(), server: server.into(), ca_bundle: ca_bundle.into() }
    }

    /// `lego --server URL --email E --accept-tos --path DIR SOLVER -d N... COMMAND ARGS...`
    pub fn run(&self, solver: Option<Solver>, names: &[&str], command: &str, args: &[&str]) -> Out {
        let mut c = Command::new(LEGO);
        c.args(["--server", &self.server, "--email", EMAIL, "--accept-tos", "--path", s(self.dir.path())]);
        match solver {
            Some(Solver::Http(port)) => {
                c.args(["--http", "--http.port", &format!("127.0.0.1:{port}")]);
            }
            Some(Solver::TlsAlpn(port)) => {
                c.args(["--tls", "--tls.port", &format!("127.0.0.1:{port}")]);
            }
            // No complete-propagation check: it would ask the zone's NS on port 53.
            Some(Solver::Dns(bind)) => {
                c.args(["--dns", "rfc2136", "--dns.resolvers", &bind.addr(), "--dns.disable-cp"]);
                c.envs(bind.lego_env());
            }
            None => {}
        }
        for n in names {
            c.args(["-d", n]);
        }
        c.arg(command).args(args);
        c.env("LEGO_CA_CERTIFICATES", &self.ca_bundle);
        c.current_dir(self.dir.path());
        run_limited(c, CLIENT_LIMIT)
    }

    /// `lego ... run`: a new account if needed, then a certificate for `names`.
    pub fn obtain(&self, solver: Solver, names: &[&str]) -> Out {
        self.run(Some(solver), names, "run", &[])
    }

    /// `lego ... renew --days DAYS --no-random-sleep` (renews when fewer than DAYS days
    /// are left; without the flag lego 4.9 first sleeps up to 8 minutes).
    pub fn renew(&self, solver: Solver, names: &[&str], days: u32) -> Out {
        self.run(Some(solver), names, "renew", &["--days", &days.to_string(), "--no-random-sleep"])
    }

    /// `lego ... revoke` for the certificate of `names` (the first is its file name).
    pub fn revoke(&self, names: &[&str]) -> Out {
        self.run(None, names, "revoke", &[])
    }

    /// The certificate lego stored for `name` (the first of its domains; a wildcard's
    /// `*` is `_` in the file name): `NAME.crt` (leaf + issuer), `NAME.key`.
    #[track_caller]
    pub fn issued(&self, name: &str) -> Issued {
        let base = name.replace('*', "_");
        let d = self.dir.path().join("certificates");
        let (crt, key) = (d.join(format!("{base}.crt")), d.join(format!("{base}.key")));
        assert!(crt.exists() && key.exists(), "lego wrote no {} / {}", crt.display(), key.display());
        // Outside certificates/: `lego revoke` moves every `NAME.*` there to archives/.
        split_bundle(&crt, &key, &self.dir.path().join("split").join(&base))
    }
}
