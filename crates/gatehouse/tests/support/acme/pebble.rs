//! [`Pebble`]: Debian's pebble, the reference server that proves this harness.

use super::*;

/// Debian's pebble on 127.0.0.1: the ACME API on `port`, management on `mgmt_port`,
/// validating http-01 on `http_port` and tls-alpn-01 on `tls_port` of the address
/// `dns` gives for the identifier. Its API's TLS certificate comes from a throwaway
/// CA made here (`tls_root`; Debian ships none); the CA that signs what pebble issues
/// is made anew at each start and read from `/roots/0` ([`Pebble::issuing_root`]).
pub struct Pebble {
    pub daemon: Daemon,
    pub dir: TempDir,
    pub port: u16,
    pub mgmt_port: u16,
    pub http_port: u16,
    pub tls_port: u16,
    pub tls_root: PathBuf,
}

impl Pebble {
    /// Starts pebble without its test-only sleeps and random nonce rejections (so a run
    /// is fast and the same each time); authorizations are never reused, so each
    /// order proves its challenge.
    #[track_caller]
    pub fn start(http_port: u16, tls_port: u16, dns: &Bind9) -> Pebble {
        require(PEBBLE);
        let (dir, path) = fixture_dir();
        let tls_root = throwaway_tls(&path);
        let (port, mgmt_port) = (free_port(), free_port());
        let config = path.join("pebble-config.json");
        let json = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
                "certificate": s(&path.join("tls.crt")),
                "privateKey": s(&path.join("tls.key")),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        write(&config, json.to_string());
        let mut c = Command::new(PEBBLE);
        c.args(["-config", s(&config), "-dnsserver", &dns.addr()]);
        c.envs([("PEBBLE_VA_NOSLEEP", "1"), ("PEBBLE_WFE_NONCEREJECT", "0"), ("PEBBLE_AUTHZREUSE", "0")]);
        let mut daemon = Daemon::spawn(&c, "pebble", Some(&path));
        daemon.wait_listening(port, &json.to_string());
        daemon.wait_listening(mgmt_port, &json.to_string());
        Pebble { daemon, dir, port, mgmt_port, http_port, tls_port, tls_root }
    }

    /// `https://localhost:PORT/dir`
    pub fn directory(&self) -> String {
        format!("https://localhost:{}/dir", self.port)
    }

    /// The root of what pebble issues (`GET /roots/0` on the management port), in the
    /// pebble dir as `issuing-root.pem`.
    #[track_caller]
    pub fn issuing_root(&self) -> PathBuf {
        let url = format!("https://localhost:{}/roots/0", self.mgmt_port);
        let r = curl(&["--cacert", s(&self.tls_root), &url]);
        assert!(r.status == 200 && r.body.contains("BEGIN CERTIFICATE"), "GET {url}: {r:?}");
        let p = self.dir.path().join("issuing-root.pem");
        write(&p, &r.body);
        p
    }
}

/// A CA and a certificate for `localhost` and 127.0.0.1 signed by it, in DIR
/// (`tls-root.crt`, `tls.crt`, `tls.key`); returns the CA certificate.
#[track_caller]
fn throwaway_tls(dir: &Path) -> PathBuf {
    let (root, root_key) = (dir.join("tls-root.crt"), dir.join("tls-root.key"));
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let mut a = vec!["req", "-x509"];
    a.extend_from_slice(&ec);
    a.extend_from_slice(&["-keyout", s(&root_key), "-out", s(&root), "-days", "2", "-subj", "/CN=ACME test TLS root"]);
    openssl_ok(&a);
    let (csr, key, crt) = (dir.join("tls.csr"), dir.join("tls.key"), dir.join("tls.crt"));
    let mut a = vec!["req", "-new"];
    a.extend_from_slice(&ec);
    a.extend_from_slice(&["-keyout", s(&key), "-out", s(&csr), "-subj", "/CN=localhost"]);
    openssl_ok(&a);
    let ext = dir.join("tls.ext");
    write(
        &ext,
        "basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost,IP:127.0.0.1\n\
         subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n",
    );
    openssl_ok(&[
        "x509",
        "-req",
        "-in",
        s(&csr),
        "-CA",
        s(&root),
        "-CAkey",
        s(&root_key),
        "-set_serial",
        "0x1",
        "-days",
        "2",
        "-sha256",
        "-extfile",
        s(&ext),
        "-out",
        s(&crt),
    ]);
    root
}
