//! The gateway tests' environment: a temp dir `T` with an internal CA in `T/data`
//! (from `gatehouse ca init`) and the certificates it issues in `T/certs` ([`Cert`]),
//! plus the bad certificates a verifier must refuse (expired, X.509 v1, another CA).

use std::fs;
use std::path::{Path, PathBuf};

use super::files::{TempDir, tmp};
use super::gatehouse::gh_in;
use super::openssl::{csr_ec, openssl_in, openssl_ok, pem_to_der, serial_of};
use super::process::Out;
use super::s;

/// A certificate and its key on disk.
#[derive(Debug, Clone)]
pub struct Cert {
    pub crt: PathBuf,
    pub key: PathBuf,
    /// Leaf + intermediate, when the CA wrote one.
    pub fullchain: Option<PathBuf>,
    /// The PKCS#12 bundle, when `ca issue --p12` wrote one.
    pub p12: Option<PathBuf>,
    /// Uppercase hex serial as `openssl x509 -serial` prints it.
    pub serial: String,
}

impl Cert {
    pub fn from_files(crt: PathBuf, key: PathBuf) -> Cert {
        let serial = serial_of(&crt);
        Cert { crt, key, fullchain: None, p12: None, serial }
    }

    /// What a server or client presents: the full chain when there is one, else the leaf.
    pub fn chain(&self) -> &Path {
        self.fullchain.as_deref().unwrap_or(&self.crt)
    }

    /// `--cert CRT --key KEY` for curl.
    pub fn curl_args(&self) -> Vec<String> {
        vec!["--cert".into(), s(&self.crt).into(), "--key".into(), s(&self.key).into()]
    }

    /// DER of the leaf.
    pub fn der(&self) -> Vec<u8> {
        pem_to_der(&fs::read_to_string(&self.crt).unwrap())
    }

    /// Lowercase hex SHA-256 of the leaf's DER.
    pub fn sha256_hex(&self) -> String {
        let o = openssl_ok(&["x509", "-in", s(&self.crt), "-noout", "-fingerprint", "-sha256"]);
        let v = o.trim().rsplit('=').next().unwrap().replace(':', "").to_lowercase();
        assert_eq!(v.len(), 64, "bad fingerprint output {o}");
        v
    }
}

/// A temp dir `T` with an internal CA in `T/data` and issued certificates in `T/certs`.
pub struct Env {
    pub dir: TempDir,
}

impl Env {
    /// `gatehouse --data-dir T/data ca init`
    pub fn new() -> Env {
        let env = Env::empty();
        env.gh_ok(&["ca", "init"]);
        fs::create_dir_all(env.path().join("certs")).unwrap();
        env
    }

    /// A temp dir without a CA.
    pub fn empty() -> Env {
        Env { dir: tmp() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn data(&self) -> PathBuf {
        self.path().join("data")
    }
    /// Puts `crl_url = URL` in the CA's `ca.toml`: certificates issued from then on name it.
    pub fn set_crl_url(&self, url: &str) {
        let path = self.data().join("ca.toml");
        let text = fs::read_to_string(&path).expect("ca.toml");
        fs::write(&path, format!("crl_url = \"{url}\"\n{text}")).expect("write ca.toml");
    }
    pub fn root(&self) -> PathBuf {
        self.data().join("ca/root.crt")
    }
    pub fn intermediate(&self) -> PathBuf {
        self.data().join("ca/intermediate.crt")
    }
    pub fn intermediate_key(&self) -> PathBuf {
        self.data().join("ca/intermediate.key")
    }

    /// `gatehouse --data-dir T/data ARGS...` (cwd T).
    pub fn gh(&self, args: &[&str]) -> Out {
        gh_in(&self.data(), self.path(), args)
    }

    #[track_caller]
    pub fn gh_ok(&self, args: &[&str]) -> String {
        let o = self.gh(args);
        assert_eq!(o.code, 0, "gatehouse {args:?} failed:\n{}", o.all());
        o.stdout
    }

    /// Writes `T/NAME` (making its directory) and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        if let Some(d) = p.parent() {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(&p, text).unwrap();
        p
    }

    /// `gatehouse ca issue --profile P --cn CN [--san ...] --out OUT [EXTRA...]`
    #[track_caller]
    pub fn issue_in(&self, out: &Path, profile: &str, cn: &str, sans: &[&str], extra: &[&str]) -> Cert {
        fs::create_dir_all(out).unwrap();
        let mut args = vec!["ca", "issue", "--profile", profile, "--cn", cn, "--out", s(out)];
        for san in sans {
            args.push("--san");
            args.push(san);
        }
        args.extend_from_slice(extra);
        self.gh_ok(&args);
        let crt = out.join(format!("{cn}.crt"));
        assert!(crt.exists(), "ca issue wrote no {}", crt.display());
        let p12 = out.join(format!("{cn}.p12"));
        let mut c = Cert::from_files(crt, out.join(format!("{cn}.key")));
        c.fullchain = Some(out.join(format!("{cn}.fullchain.pem")));
        c.p12 = p12.exists().then_some(p12);
        c
    }

    /// Same, in `T/certs`.
    #[track_caller]
    pub fn issue(&self, profile: &str, cn: &str, sans: &[&str]) -> Cert {
        self.issue_in(&self.path().join("certs"), profile, cn, sans, &[])
    }

    /// A client certificate from the internal CA.
    pub fn client(&self, cn: &str) -> Cert {
        self.issue("client", cn, &[])
    }

    /// Server certificate for `localhost` and `127.0.0.1` from the internal CA.
    pub fn localhost_server(&self) -> Cert {
        self.issue("server", "localhost", &["DNS:localhost", "IP:127.0.0.1"])
    }

    /// `certificate = { cert = ..., key = ... }` value with the file pair (fullchain).
    pub fn cert_toml(c: &Cert) -> String {
        format!("{{ cert = \"{}\", key = \"{}\" }}", s(c.chain()), s(&c.key))
    }

    /// A fresh EC key and CSR in T/certs; returns (csr, key).
    pub fn csr(&self, name: &str, cn: &str) -> (PathBuf, PathBuf) {
        csr_ec(&self.path().join("certs"), name, &format!("/CN={cn}"), None, &[])
    }

    /// An X.509 v1 client certificate signed by the internal intermediate key
    /// (`openssl x509 -req` without -extfile).
    pub fn v1_client(&self, cn: &str) -> Cert {
        let (csr, key) = self.csr(&format!("{cn}-v1"), cn);
        let crt = self.path().join("certs").join(format!("{cn}-v1.crt"));
        openssl_ok(&[
            "x509",
            "-req",
            "-in",
            s(&csr),
            "-CA",
            s(&self.intermediate()),
            "-CAkey",
            s(&self.intermediate_key()),
            "-set_serial",
            "0x5A17C0FFEE0001",
            "-days",
            "30",
            "-sha256",
            "-out",
            s(&crt),
        ]);
        let text = openssl_ok(&["x509", "-in", s(&crt), "-noout", "-text"]);
        assert!(text.contains("Version: 1 (0x0)"), "expected an X.509 v1 certificate:\n{text}");
        Cert::from_files(crt, key)
    }

    /// A v3 client certificate (EKU clientAuth) from the internal intermediate
    /// whose validity ended in 2020 (`openssl ca -startdate/-enddate`).
    pub fn expired_client(&self, cn: &str) -> Cert {
        self.openssl_ca(cn, cn, "extendedKeyUsage = clientAuth\n", "20200101000000Z", "20200201000000Z")
    }

    /// `openssl ca` with a minimal config in `T/openssl-ca-NAME`: a fresh key and CSR
    /// `NAME` for `CN=cn`, signed by the internal intermediate with `extensions` (lines
    /// added to the end-entity basics), valid from `start` to `end` (GeneralizedTime).
    pub fn openssl_ca(&self, name: &str, cn: &str, extensions: &str, start: &str, end: &str) -> Cert {
        let d = self.path().join(format!("openssl-ca-{name}"));
        fs::create_dir_all(d.join("newcerts")).unwrap();
        fs::write(d.join("index.txt"), "").unwrap();
        fs::write(
            d.join("ca.cnf"),
            format!(
                "[ca]\ndefault_ca = CA_default\n[CA_default]\ndir = .\ndatabase = index.txt\n\
                 new_certs_dir = newcerts\nserial = serial\nrand_serial = yes\ndefault_md = sha256\n\
                 policy = policy_any\ncopy_extensions = none\nunique_subject = no\n\
                 [policy_any]\ncommonName = supplied\n[ext]\n\
                 basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
                 subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n{extensions}"
            ),
        )
        .unwrap();
        let (csr, key) = self.csr(name, cn);
        let crt = d.join(format!("{name}.crt"));
        openssl_in(
            &d,
            &[
                "ca",
                "-config",
                "ca.cnf",
                "-batch",
                "-notext",
                "-cert",
                s(&self.intermediate()),
                "-keyfile",
                s(&self.intermediate_key()),
                "-in",
                s(&csr),
                "-out",
                s(&crt),
                "-startdate",
                start,
                "-enddate",
                end,
                "-extensions",
                "ext",
            ],
        );
        Cert::from_files(crt, key)
    }

    /// A second, unrelated CA in `T/NAME` (its own `ca init`, made once); returns its root certificate.
    #[track_caller]
    pub fn other_ca(&self, name: &str) -> PathBuf {
        let d = self.path().join(name);
        let root = d.join("ca/root.crt");
        if !root.exists() {
            let o = gh_in(&d, self.path(), &["ca", "init", "--name", "Unrelated Org"]);
            assert_eq!(o.code, 0, "ca init of a second CA failed:\n{}", o.all());
        }
        root
    }

    /// A partner CA in `T/partner` ("Partner Org"), trusted through `ca_files =
    /// ["partner/ca/root.crt"]` with its CRL in `crl_files = ["partner.crl"]` (written now),
    /// and its client `cn` (its `crt` is the full chain, leaf first, as the gateway needs it).
    #[track_caller]
    pub fn partner_ca(&self, cn: &str) -> (PartnerCa, Cert) {
        let partner = PartnerCa { dir: self.path().join("partner"), env_dir: self.path().to_owned() };
        partner.run(&["ca", "init", "--name", "Partner Org"]);
        let out = self.path().join("partner-certs");
        fs::create_dir_all(&out).unwrap();
        partner.run(&["ca", "issue", "--profile", "client", "--cn", cn, "--out", s(&out)]);
        partner.publish_crl();
        // The gateway knows only the partner's root: the client presents its full chain.
        let chain = out.join(format!("{cn}.fullchain.pem"));
        let mut client = Cert::from_files(chain.clone(), out.join(format!("{cn}.key")));
        client.fullchain = Some(chain);
        (partner, client)
    }

    /// A client certificate from a second, unrelated gatehouse CA (named differently).
    pub fn foreign_client(&self, cn: &str) -> Cert {
        let other = self.path().join("other-ca");
        self.other_ca("other-ca");
        let out = self.path().join("other-certs");
        fs::create_dir_all(&out).unwrap();
        let o = gh_in(&other, self.path(), &["ca", "issue", "--profile", "client", "--cn", cn, "--out", s(&out)]);
        assert_eq!(o.code, 0, "ca issue from the other CA failed:\n{}", o.all());
        Cert::from_files(out.join(format!("{cn}.crt")), out.join(format!("{cn}.key")))
    }
}

/// A second gatehouse CA whose CRL the gateway reads from a file (see [`Env::partner_ca`]).
pub struct PartnerCa {
    dir: PathBuf,
    env_dir: PathBuf,
}

impl PartnerCa {
    /// `gatehouse --data-dir T/partner ARGS` (cwd T), which must succeed.
    #[track_caller]
    fn run(&self, args: &[&str]) {
        let o = gh_in(&self.dir, &self.env_dir, args);
        assert_eq!(o.code, 0, "partner CA {args:?}:\n{}", o.all());
    }

    /// Writes the partner's CRL to `T/partner.crl`.
    #[track_caller]
    pub fn publish_crl(&self) {
        let crl = self.env_dir.join("partner.crl");
        self.run(&["ca", "crl", "--out", s(&crl)]);
    }

    /// Revokes `client` and publishes the new CRL.
    #[track_caller]
    pub fn revoke(&self, client: &Cert) {
        self.run(&["ca", "revoke", &client.serial]);
        self.publish_crl();
    }
}
