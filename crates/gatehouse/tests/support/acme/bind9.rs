//! [`Bind9`]: `named` as the authoritative server of `example.test`, taking RFC 2136 updates.

use super::*;

/// `named -g` serving `example.test` on 127.0.0.1:`port` (UDP and TCP): SOA, NS, and
/// A 127.0.0.1 for `example.test` and `*.example.test`, so every name a client asks a
/// certificate for resolves to the client's listeners. The TSIG key `key_name`
/// (hmac-sha256) may add and delete TXT records at `_acme-challenge` names (RFC 2136).
pub struct Bind9 {
    pub daemon: Daemon,
    pub dir: TempDir,
    pub port: u16,
    pub key_name: String,
    /// As named and certbot spell it.
    pub algorithm: &'static str,
    /// Base64, as tsig-keygen printed it.
    pub secret: String,
}

impl Bind9 {
    #[track_caller]
    pub fn start() -> Bind9 {
        require(NAMED);
        require(TSIG_KEYGEN);
        let (dir, path) = fixture_dir();
        let key_name = "acme-update".to_string();
        let algorithm = "hmac-sha256";
        let mut c = Command::new(TSIG_KEYGEN);
        c.args(["-a", algorithm, &key_name]);
        let key = run_limited(c, Duration::from_secs(30));
        assert_eq!(key.code, 0, "tsig-keygen: {}", key.all());
        let secret = key
            .stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("secret \""))
            .and_then(|l| l.strip_suffix("\";"))
            .unwrap_or_else(|| panic!("no secret in tsig-keygen output: {}", key.stdout))
            .to_string();
        write(path.join("key.conf"), &key.stdout);
        write(
            path.join("zone"),
            "$TTL 1\n\
             @ IN SOA ns.example.test. hostmaster.example.test. 1 60 60 600 1\n\
             @ IN NS ns.example.test.\n\
             @ IN A 127.0.0.1\n\
             * IN A 127.0.0.1\n",
        );
        let port = free_port();
        let d = s(&path);
        // `wildcard *.example.test` covers `_acme-challenge.NAME.example.test`; the apex
        // (and a wildcard certificate for it) needs its own `name` grant.
        let conf = format!(
            "include \"{d}/key.conf\";\n\
             options {{\n  directory \"{d}\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n  \
             pid-file none;\n  recursion no;\n  dnssec-validation no;\n  notify no;\n  \
             session-keyfile \"{d}/session.key\";\n  managed-keys-directory \"{d}\";\n}};\n\
             controls {{ }};\n\
             zone \"{ZONE}\" {{\n  type primary;\n  file \"{d}/zone\";\n  journal \"{d}/zone.jnl\";\n  \
             update-policy {{\n    grant {key_name} wildcard *.{ZONE} TXT;\n    grant {key_name} name _acme-challenge.{ZONE} TXT;\n  }};\n}};\n"
        );
        let conf_path = path.join("named.conf");
        write(&conf_path, &conf);
        // As root named keeps root unless given -u; it needs nothing else here.
        let mut c = Command::new(NAMED);
        c.args(["-g", "-n", "1", "-c", s(&conf_path)]);
        let mut daemon = Daemon::spawn(&c, "named", Some(&path));
        daemon.wait_stderr("`running`", |l| l.ends_with(" running"));
        daemon.wait_listening(port, &conf);
        Bind9 { daemon, dir, port, key_name, algorithm, secret }
    }

    /// `127.0.0.1:PORT`, for `dns_resolver`, `-dnsserver` and `--dns.resolvers`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `dig +short -p PORT @127.0.0.1 NAME TYPE` (records, quotes kept off TXT strings).
    #[track_caller]
    pub fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        require(DIG);
        let mut c = Command::new(DIG);
        c.args(["+short", "+tries=1", "+time=5", "-p", &self.port.to_string(), "@127.0.0.1", name, rtype]);
        let o = run_limited(c, Duration::from_secs(20));
        assert_eq!(o.code, 0, "dig {name} {rtype}: {}", o.all());
        o.stdout.lines().map(|l| l.trim().trim_matches('"').to_string()).filter(|l| !l.is_empty()).collect()
    }

    /// The TXT records at `name` (e.g. `_acme-challenge.example.test`).
    pub fn txt(&self, name: &str) -> Vec<String> {
        self.dig(name, "TXT")
    }

    /// certbot-dns-rfc2136's credentials INI in `dir` (mode 600, as certbot wants).
    pub fn certbot_credentials(&self, dir: &Path) -> PathBuf {
        let p = dir.join("rfc2136.ini");
        write(
            &p,
            format!(
                "dns_rfc2136_server = 127.0.0.1\ndns_rfc2136_port = {}\ndns_rfc2136_name = {}\n\
                 dns_rfc2136_secret = {}\ndns_rfc2136_algorithm = {}\n",
                self.port,
                self.key_name,
                self.secret,
                self.algorithm.to_uppercase()
            ),
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    /// lego's rfc2136 provider settings (`lego dnshelp -c rfc2136`); names end in a dot
    /// as miekg/dns, under lego, wants them.
    pub fn lego_env(&self) -> Vec<(String, String)> {
        vec![
            ("RFC2136_NAMESERVER".into(), self.addr()),
            ("RFC2136_TSIG_KEY".into(), format!("{}.", self.key_name)),
            ("RFC2136_TSIG_SECRET".into(), self.secret.clone()),
            ("RFC2136_TSIG_ALGORITHM".into(), format!("{}.", self.algorithm)),
            ("RFC2136_PROPAGATION_TIMEOUT".into(), "30".into()),
            ("RFC2136_POLLING_INTERVAL".into(), "1".into()),
            ("RFC2136_TTL".into(), "1".into()),
            // lego solves names that share one `_acme-challenge` record (a wildcard and
            // its base) one after the other, 60 s apart by default.
            ("RFC2136_SEQUENCE_INTERVAL".into(), "1".into()),
        ]
    }
}
