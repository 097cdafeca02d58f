//! What a client proves and what it wrote: [`Solver`], [`Issued`], and the checks of both.

use super::*;

/// How a client answers challenges.
#[derive(Clone, Copy)]
pub enum Solver<'a> {
    /// http-01 on 127.0.0.1:PORT (certbot `--standalone`, lego `--http`).
    Http(u16),
    /// tls-alpn-01 on 127.0.0.1:PORT (lego `--tls`; certbot has none).
    TlsAlpn(u16),
    /// dns-01 through RFC 2136 updates to this bind9.
    Dns(&'a Bind9),
}

/// What a client wrote: the leaf, the CA certificates it was given after it (the
/// chain without the leaf), and the private key.
#[derive(Debug, Clone)]
pub struct Issued {
    pub leaf: PathBuf,
    pub chain: PathBuf,
    pub key: PathBuf,
}

impl Issued {
    /// Copies the three files into `dir` (a client overwrites or relinks its own at
    /// renewal), for comparing the old certificate with the new.
    #[track_caller]
    pub fn keep_copy(&self, dir: &Path) -> Issued {
        mkdir(dir);
        let copy = |from: &Path, name: &str| {
            let to = dir.join(name);
            fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
            to
        };
        Issued {
            leaf: copy(&self.leaf, "leaf.pem"),
            chain: copy(&self.chain, "chain.pem"),
            key: copy(&self.key, "key.pem"),
        }
    }

    /// Uppercase hex serial as `openssl x509 -serial` prints it.
    pub fn serial(&self) -> String {
        super::super::openssl::serial_of(&self.leaf)
    }

    /// The subjectAltName entries, e.g. `["DNS:a.example.test"]`, sorted.
    pub fn sans(&self) -> Vec<String> {
        let text = x509_ext(&self.leaf, "subjectAltName");
        let mut v: Vec<String> = text
            .lines()
            .skip(1)
            .flat_map(|l| l.split(',').map(|p| p.trim().replace("IP Address:", "IP:")).collect::<Vec<_>>())
            .filter(|p| !p.is_empty())
            .collect();
        v.sort();
        v
    }

    /// (notBefore, notAfter) as Unix times.
    pub fn validity(&self) -> (i64, i64) {
        let o = openssl_ok(&["x509", "-in", s(&self.leaf), "-noout", "-startdate", "-enddate"]);
        let get = |k: &str| {
            o.lines()
                .find_map(|l| l.trim().strip_prefix(k))
                .map(openssl_time)
                .unwrap_or_else(|| panic!("no {k} in {o}"))
        };
        (get("notBefore="), get("notAfter="))
    }

    /// Lifetime in whole hours (notAfter - notBefore).
    pub fn lifetime_hours(&self) -> i64 {
        let (nb, na) = self.validity();
        (na - nb) / 3600
    }

    /// `openssl x509 -ext extendedKeyUsage` text.
    pub fn eku(&self) -> String {
        x509_ext(&self.leaf, "extendedKeyUsage")
    }

    /// The checks every issued certificate passes: `openssl verify -purpose sslserver
    /// -CAfile ROOT -untrusted CHAIN LEAF`, EKU serverAuth, exactly the DNS names
    /// `names` in the SAN, and the key on disk matching the certificate.
    #[track_caller]
    pub fn assert_valid(&self, root: &Path, names: &[&str]) {
        let o = openssl(&[
            "verify",
            "-purpose",
            "sslserver",
            "-CAfile",
            s(root),
            "-untrusted",
            s(&self.chain),
            s(&self.leaf),
        ]);
        assert!(
            o.code == 0 && o.stdout.contains(": OK"),
            "openssl verify -CAfile {} -untrusted {} {}: {}",
            root.display(),
            self.chain.display(),
            self.leaf.display(),
            o.all()
        );
        let eku = self.eku();
        assert!(eku.contains("TLS Web Server Authentication"), "no EKU serverAuth in {}:\n{eku}", self.leaf.display());
        let mut want: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
        want.sort();
        assert_eq!(self.sans(), want, "subjectAltName of {}", self.leaf.display());
        assert_eq!(
            cert_pubkey(&self.leaf),
            key_pubkey(&self.key, None),
            "{} does not match its key",
            self.key.display()
        );
    }
}

/// Splits a PEM bundle file (leaf first) into `leaf.pem` and `chain.pem` beside it.
#[track_caller]
pub(super) fn split_bundle(bundle: &Path, key: &Path, into: &Path) -> Issued {
    let certs = pem_certs(&read(bundle));
    assert!(certs.len() >= 2, "{} holds {} certificate(s), want the leaf and its chain", bundle.display(), certs.len());
    mkdir(into);
    let (leaf, chain) = (into.join("leaf.pem"), into.join("chain.pem"));
    write(&leaf, &certs[0]);
    write(&chain, certs[1..].concat());
    Issued { leaf, chain, key: key.to_path_buf() }
}

/// Asserts a client run succeeded, with its whole output otherwise.
#[track_caller]
pub fn assert_client_ok(what: &str, o: &Out) {
    assert_eq!(
        o.code, 0,
        "{what} failed (exit {}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.code, o.stdout, o.stderr
    );
}

/// GET the ACME directory with curl trusting `ca_bundle`; panics with a sentence that
/// names the first contact when the server does not answer a directory (so a missing
/// server fails here, not inside a client's retries).
#[track_caller]
pub fn assert_directory(url: &str, ca_bundle: &Path) -> Value {
    let r = curl(&["--cacert", s(ca_bundle), url]);
    assert!(
        r.exit == 0 && r.status == 200,
        "ACME server: GET {url} (trusting {}) gave curl exit {}, HTTP {}: {}{}",
        ca_bundle.display(),
        r.exit,
        r.status,
        r.stderr,
        r.body
    );
    let v: Value =
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("ACME directory {url} is not JSON ({e}): {}", r.body));
    for k in ["newNonce", "newAccount", "newOrder", "revokeCert"] {
        assert!(v[k].is_string(), "ACME directory {url} has no {k}: {v}");
    }
    v
}
