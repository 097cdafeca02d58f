//! [`KeyServer`]: `gatehouse keyserver --config T/keyserver.toml` on an internal CA
//! made by `gatehouse ca init`, with a server certificate for localhost and a key
//! directory holding a key of every format ([`KeyFormat`]); a gateway client
//! certificate issued by the same CA.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::client::{Client, Offer};
use super::keys::{KeyFormat, TestKey, make_key};
use crate::support::acme::{Daemon, shared_fixture};
use crate::support::env::{Cert, Env};
use crate::support::gatehouse::gh_cmd;
use crate::support::net::free_port;
use crate::support::{openssl_ok, read, s};

/// The keys of the fixture's key directory, by name: `NAME.key` in `T/keys`.
pub const KEYS: [(&str, KeyFormat); 6] = [
    ("rsa-pkcs8", KeyFormat::RsaPkcs8),
    ("rsa-pkcs1", KeyFormat::RsaPkcs1),
    ("p256-sec1", KeyFormat::P256Sec1),
    ("p256-pkcs8", KeyFormat::P256Pkcs8),
    ("p384-der", KeyFormat::P384Der),
    ("ed25519", KeyFormat::Ed25519),
];

/// A running key server and what a gateway needs to reach it.
pub struct KeyServer {
    pub daemon: Daemon,
    pub env: Env,
    pub port: u16,
    pub metrics_port: u16,
    /// The gateway's client certificate, from the internal CA.
    pub gateway: Cert,
    keys: Vec<(&'static str, TestKey)>,
}

impl KeyServer {
    /// One key server for all the tests of a binary.
    #[track_caller]
    pub fn shared() -> &'static KeyServer {
        static SHARED: OnceLock<Result<KeyServer, String>> = OnceLock::new();
        shared_fixture(&SHARED, "key server", || KeyServer::start("ecdsa-p256"))
    }

    /// `gatehouse ca init`; a server certificate for localhost (its key of
    /// `key_type`) and a client certificate `gateway`; the keys; then
    /// `gatehouse keyserver`, waited for until it listens.
    #[track_caller]
    pub fn start(key_type: &str) -> KeyServer {
        let env = Env::new();
        env.issue_in(
            &env.path().join("certs"),
            "server",
            "localhost",
            &["DNS:localhost", "IP:127.0.0.1"],
            &["--key-type", key_type],
        );
        let gateway = env.client("gateway");
        let dir = env.path().join("keys");
        std::fs::create_dir_all(&dir).unwrap();
        let keys = KEYS.iter().map(|(name, format)| (*name, make_key(&dir, name, *format))).collect();
        let (port, metrics_port) = (free_port(), free_port());
        // Relative paths: they are taken from the file's directory.
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\nmetrics = \"127.0.0.1:{metrics_port}\"\n\
             certificate = {{ cert = \"certs/localhost.fullchain.pem\", key = \"certs/localhost.key\" }}\n\
             [[keys]]\ndir = \"keys\"\n"
        );
        let file = env.write("keyserver.toml", &config);
        let mut c: Command = gh_cmd(&env.data(), &["keyserver", "--config", s(&file)]);
        c.current_dir("/").env("GATEHOUSE_LOG", "info,keyserver=debug");
        let mut daemon = Daemon::spawn(&c, "gatehouse keyserver", Some(env.path()));
        daemon.wait_listening(port, &format!("gatehouse keyserver did not come up with:\n{config}"));
        KeyServer { daemon, env, port, metrics_port, gateway, keys }
    }

    /// The key made as `name` (one of [`KEYS`]).
    #[track_caller]
    pub fn key(&self, name: &str) -> &TestKey {
        self.keys.iter().find(|(n, _)| *n == name).map(|(_, k)| k).unwrap_or_else(|| panic!("no key {name}"))
    }

    /// The internal CA's root: what the gateway trusts the key server's certificate by.
    pub fn root(&self) -> PathBuf {
        self.env.root()
    }

    /// A connection as the gateway, the handshake done.
    #[track_caller]
    pub fn connect(&self) -> Client {
        self.connect_offering(Offer::Default)
    }

    /// The same, offering `offer`.
    #[track_caller]
    pub fn connect_offering(&self, offer: Offer) -> Client {
        Client::connect(self.port, &self.root(), Some(&self.gateway), offer)
            .unwrap_or_else(|e| panic!("the gateway could not connect: {e}\n{}", self.daemon.proc.dump()))
    }

    /// A certificate from the internal CA for `host` with the public key of `key`
    /// (a CSR made with the key file, which stays where it is: the gateway never
    /// reads it), as the chain a server sends: the leaf, then the intermediate.
    #[track_caller]
    pub fn site_certificate(&self, key: &Path, host: &str) -> PathBuf {
        // A directory per call: tests running side by side make certificates for the same hosts.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.env.path().join("sites").join(n.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let csr = dir.join(format!("{host}.csr"));
        let subject = format!("/CN={host}");
        let san = format!("subjectAltName=DNS:{host}");
        openssl_ok(&["req", "-new", "-key", s(key), "-subj", &subject, "-addext", &san, "-out", s(&csr)]);
        let crt = dir.join(format!("{host}.crt"));
        self.env.gh_ok(&["ca", "sign", s(&csr), "--profile", "server", "--out", s(&crt)]);
        let chain = dir.join(format!("{host}.fullchain.pem"));
        let text = format!("{}{}", read(&crt), read(self.env.intermediate()));
        std::fs::write(&chain, text).unwrap();
        chain
    }

    /// The key server's log so far.
    pub fn log(&self) -> String {
        self.daemon.proc.stderr()
    }
}
