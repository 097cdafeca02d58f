//! `gatehouse keyserver` with its keys in a PKCS#11 token (issue 11, item 2):
//! softhsm2 with a token store of the test's own, key pairs generated inside the
//! token by `pkcs11-tool` and never exported. Only their public halves are read
//! out: openssl computes each SKI from them and judges each signature; the key
//! server finds the keys by those SKIs and has the token sign and decrypt.
//!
//! ```text
//! $ softhsm2-util --init-token --free --label gh --pin 1234 --so-pin 5678
//! $ pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so --login --pin 1234 \
//!     --keypairgen --key-type EC:prime256v1 --label ec1 --id 01
//! $ gatehouse keyserver --config keyserver.toml   # [[keys]] pkcs11 = { module, token = "gh", pin_file }
//! ```
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use support::acme::{Daemon, shared_fixture};
use support::keyless::softhsm::{SOFTHSM_MODULE, SoftHsm, TokenKeyPair};
use support::keyless::*;
use support::*;

const TOKEN: &str = "gh";
// Letters outside hex, so that no key identifier or port in the log can contain it by chance.
const PIN: &str = "pin-Kqw7";

/// The keys generated in the token: label, `pkcs11-tool --key-type`, `--id`.
const KEYS: [(&str, &str, &str); 4] = [
    ("ec1", "EC:prime256v1", "01"),
    ("ec2", "EC:secp384r1", "02"),
    ("rsa1", "rsa:2048", "03"),
    ("ed1", "EC:edwards25519", "04"),
];

/// A key server over the token `gh` (and a token store with a second token, `spare`).
struct TokenKeyServer {
    daemon: Daemon,
    env: Env,
    hsm: SoftHsm,
    port: u16,
    gateway: Cert,
    keys: Vec<(&'static str, TokenKeyPair)>,
}

impl TokenKeyServer {
    fn shared() -> &'static TokenKeyServer {
        static SHARED: OnceLock<Result<TokenKeyServer, String>> = OnceLock::new();
        shared_fixture(&SHARED, "key server over softhsm2", TokenKeyServer::start)
    }

    #[track_caller]
    fn start() -> TokenKeyServer {
        let env = Env::new();
        env.issue_in(&env.path().join("certs"), "server", "localhost", &["DNS:localhost", "IP:127.0.0.1"], &[]);
        let gateway = env.client("gateway");
        let hsm = SoftHsm::new(&env.path().join("hsm"));
        hsm.init_token(TOKEN, PIN);
        hsm.init_token("spare", "4321");
        let keys = KEYS.iter().map(|(label, kind, id)| (*label, hsm.keypairgen(TOKEN, PIN, kind, label, id))).collect();
        let pin = env.write("pin", &format!("{PIN}\n"));
        std::fs::set_permissions(&pin, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let port = free_port();
        let keys_toml =
            format!("pkcs11 = {{ module = \"{SOFTHSM_MODULE}\", token = \"{TOKEN}\", pin_file = \"pin\" }}");
        // The fixture lives in a static, whose destructor never runs: the daemon's guard removes T.
        let daemon = start_key_server(&env, &hsm, port, &keys_toml, "keyserver.toml", Some(env.path()));
        TokenKeyServer { daemon, env, hsm, port, gateway, keys }
    }

    #[track_caller]
    fn key(&self, label: &str) -> &TokenKeyPair {
        self.keys.iter().find(|(l, _)| *l == label).map(|(_, k)| k).unwrap_or_else(|| panic!("no key {label}"))
    }

    #[track_caller]
    fn connect(&self) -> Client {
        connect(self, self.port, &self.daemon)
    }
}

#[track_caller]
fn connect(ks: &TokenKeyServer, port: u16, daemon: &Daemon) -> Client {
    Client::connect(port, &ks.env.root(), Some(&ks.gateway), Offer::Default)
        .unwrap_or_else(|e| panic!("the gateway could not connect: {e}\n{}", daemon.proc.dump()))
}

/// The key server's file: listen on `port`, its certificate, one `[[keys]]` table.
fn key_server_toml(port: u16, keys: &str) -> String {
    format!(
        "listen = \"127.0.0.1:{port}\"\n\
         certificate = {{ cert = \"certs/localhost.fullchain.pem\", key = \"certs/localhost.key\" }}\n\
         [[keys]]\n{keys}\n"
    )
}

/// `gatehouse keyserver --config T/NAME` with `SOFTHSM2_CONF` of `hsm`, waited for.
#[track_caller]
fn start_key_server(env: &Env, hsm: &SoftHsm, port: u16, keys: &str, name: &str, cleanup: Option<&Path>) -> Daemon {
    let config = key_server_toml(port, keys);
    let file = env.write(name, &config);
    let mut c: Command = gh_cmd(&env.data(), &["keyserver", "--config", s(&file)]);
    c.current_dir("/").env("SOFTHSM2_CONF", &hsm.conf).env("GATEHOUSE_LOG", "info,keyserver=debug");
    let mut daemon = Daemon::spawn(&c, "gatehouse keyserver", cleanup);
    daemon.wait_listening(port, &format!("gatehouse keyserver did not come up with:\n{config}"));
    daemon
}

/// `gatehouse keyserver` with `keys` that must not start: its exit code and stderr.
fn key_server_refuses(ks: &TokenKeyServer, keys: &str) -> (i32, String) {
    let d = tmp();
    let file = d.join("keyserver.toml");
    write(&file, key_server_toml(free_port(), keys).replace("certs/", &format!("{}/certs/", s(ks.env.path()))));
    let mut c = gh_cmd(&ks.env.data(), &["keyserver", "--config", s(&file)]);
    c.env("SOFTHSM2_CONF", &ks.hsm.conf);
    let o = run_limited(c, Duration::from_secs(60));
    (o.code, o.stderr)
}

fn by_ski(key: &TokenKeyPair) -> KeySelector {
    KeySelector::Ski(Ski(key.ski))
}

#[test]
fn ecdsa_p256_and_p384_keys_in_the_token_sign_and_openssl_verifies() {
    let ks = TokenKeyServer::shared();
    let mut gw = ks.connect();
    for (id, label, hash, opcode) in [
        (1, "ec1", "sha256", Opcode::EcdsaSignSha256),
        (2, "ec2", "sha384", Opcode::EcdsaSignSha384),
        // A longer digest than P-256 takes, and a shorter one.
        (3, "ec1", "sha384", Opcode::EcdsaSignSha384),
        (4, "ec2", "sha1", Opcode::EcdsaSignSha1),
    ] {
        let key = ks.key(label);
        let other = digest(hash, b"another transcript");
        let digest = digest(hash, TRANSCRIPT);
        let response = gw.call(&Message::request(id, opcode, by_ski(key), digest.clone()));
        let sig = signature(&response);
        assert_eq!(sig.first(), Some(&0x30), "{label}: not a DER SEQUENCE {{r, s}}: {sig:02X?}");
        assert!(openssl_verifies(&key.public, &digest, sig, &[]), "{label} {hash}: openssl rejects the signature");
        assert!(!openssl_verifies(&key.public, &other, sig, &[]), "{label}: the judge accepts anything");
    }
}

#[test]
fn rsa_pkcs1_v1_5_and_pss_signatures_of_the_token_key_verify() {
    let ks = TokenKeyServer::shared();
    let mut gw = ks.connect();
    let key = ks.key("rsa1");
    // SHA-1 and SHA-224 too: the token signs a DigestInfo the key server builds.
    for (id, hash, opcode) in [
        (11, "sha256", Opcode::RsaSignSha256),
        (12, "sha384", Opcode::RsaSignSha384),
        (13, "sha512", Opcode::RsaSignSha512),
        (14, "sha1", Opcode::RsaSignSha1),
        (15, "sha224", Opcode::RsaSignSha224),
        // TLS 1.0/1.1's bare MD5 || SHA-1, no DigestInfo.
        (17, "md5-sha1", Opcode::RsaSignMd5Sha1),
    ] {
        let digest = openssl_digest(hash, TRANSCRIPT);
        let sig = gw.call(&Message::request(id, opcode, by_ski(key), digest.clone()));
        let opts = ["-pkeyopt", &format!("digest:{hash}")];
        assert!(openssl_verifies(&key.public, &digest, signature(&sig), &opts), "{hash}: openssl rejects it");
    }
    let digest = digest("sha256", TRANSCRIPT);
    let response = gw.call(&Message::request(16, Opcode::RsaPssSignSha256, by_ski(key), digest.clone()));
    let mut opts = [
        "-pkeyopt",
        "digest:sha256",
        "-pkeyopt",
        "rsa_padding_mode:pss",
        "-pkeyopt",
        "rsa_pss_saltlen:32",
        "-pkeyopt",
        "rsa_mgf1_md:sha256",
    ];
    let sig = signature(&response);
    assert_eq!(sig.len(), 256, "an RSA-2048 signature is 256 bytes");
    assert!(openssl_verifies(&key.public, &digest, sig, &opts), "openssl rejects the PSS signature");
    opts[5] = "rsa_pss_saltlen:0";
    assert!(!openssl_verifies(&key.public, &digest, sig, &opts), "the salt length is not checked");
}

#[test]
fn rsa_decrypt_gives_the_raw_block_of_the_token_key() {
    let ks = TokenKeyServer::shared();
    let mut gw = ks.connect();
    let key = ks.key("rsa1");
    let (block, cipher) = raw_rsa_ciphertext(&key.public);
    let response = gw.call(&Message::request(21, Opcode::RsaDecrypt, by_ski(key), cipher));
    assert_eq!(signature(&response), &block[..], "m = c^d mod n, left-padded, padding not removed");
    // A ciphertext of the wrong length is the token's refusal: crypto failure.
    let response = gw.call(&Message::request(22, Opcode::RsaDecrypt, by_ski(key), vec![1; 255]));
    assert_eq!(response.error_code(), Some(ErrorCode::CryptoFailure));
}

#[test]
fn ed25519_in_the_token_signs_the_whole_message() {
    let ks = TokenKeyServer::shared();
    let mut gw = ks.connect();
    let key = ks.key("ed1");
    let response = gw.call(&Message::request(31, Opcode::Ed25519Sign, by_ski(key), TRANSCRIPT.to_vec()));
    let sig = signature(&response);
    assert_eq!(sig.len(), 64, "an Ed25519 signature is 64 bytes");
    assert!(openssl_verifies(&key.public, TRANSCRIPT, sig, &["-rawin"]), "openssl rejects the Ed25519 signature");
    assert!(!openssl_verifies(&key.public, b"another message", sig, &["-rawin"]), "the judge accepts anything");
}

#[test]
fn every_token_key_is_listed_and_the_wrong_key_type_is_refused() {
    let ks = TokenKeyServer::shared();
    let log = ks.daemon.proc.stderr();
    assert!(log.contains("4 key(s): 1 rsa, 1 ecdsa_p256, 1 ecdsa_p384, 1 ed25519"), "{log}");
    assert!(!log.contains(PIN), "the PIN is in the log:\n{log}");
    let mut gw = ks.connect();
    let ecdsa_on_rsa = Message::request(41, Opcode::EcdsaSignSha256, by_ski(ks.key("rsa1")), vec![0; 32]);
    assert_eq!(gw.call(&ecdsa_on_rsa).error_code(), Some(ErrorCode::CryptoFailure));
}

#[test]
fn forty_pipelined_requests_to_token_keys_are_all_answered() {
    let ks = TokenKeyServer::shared();
    let mut gw = ks.connect();
    let digest = digest("sha256", TRANSCRIPT);
    // Sent before any answer is read: the token's sessions are used side by side.
    for id in 100..140u32 {
        let label = if id % 2 == 0 { "ec1" } else { "rsa1" };
        let opcode = if id % 2 == 0 { Opcode::EcdsaSignSha256 } else { Opcode::RsaPssSignSha256 };
        gw.send(&Message::request(id, opcode, by_ski(ks.key(label)), digest.clone()));
    }
    let mut answered = std::collections::BTreeSet::new();
    for _ in 100..140 {
        let response = gw.recv().unwrap_or_else(|e| panic!("{e}\n{}", ks.daemon.proc.dump()));
        assert_eq!(response.opcode, Some(Opcode::Response), "{response:?}");
        if response.id == 100 {
            assert!(openssl_verifies(&ks.key("ec1").public, &digest, response.payload(), &[]));
        }
        answered.insert(response.id);
    }
    assert_eq!(answered, (100..140).collect(), "every id answered once");
}

#[test]
fn a_pkcs11_uri_names_one_object_of_the_token() {
    let ks = TokenKeyServer::shared();
    let port = free_port();
    // pin-source relative to the file's directory, as every path of the file.
    let uri = format!("uri = \"pkcs11:token={TOKEN};object=ec1?module-path={SOFTHSM_MODULE}&pin-source=file:pin\"");
    let daemon = start_key_server(&ks.env, &ks.hsm, port, &uri, "keyserver-uri.toml", None);
    let mut gw = connect(ks, port, &daemon);
    let digest = digest("sha256", TRANSCRIPT);
    let response = gw.call(&Message::request(51, Opcode::EcdsaSignSha256, by_ski(ks.key("ec1")), digest.clone()));
    assert!(openssl_verifies(&ks.key("ec1").public, &digest, signature(&response), &[]));
    let other = gw.call(&Message::request(52, Opcode::EcdsaSignSha384, by_ski(ks.key("ec2")), vec![0; 48]));
    assert_eq!(other.error_code(), Some(ErrorCode::KeyNotFound), "only object ec1 is named");
}

#[test]
fn a_wrong_pin_exits_2_with_one_clear_error() {
    let ks = TokenKeyServer::shared();
    // The spare token, so that the shared token never sees a wrong PIN.
    let pin = ks.env.write("wrong-pin", "wrong-Zvx9\n");
    let keys = format!("pkcs11 = {{ module = \"{SOFTHSM_MODULE}\", token = \"spare\", pin_file = \"{}\" }}", s(&pin));
    let (code, err) = key_server_refuses(ks, &keys);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("wrong PIN for token spare (pin_file {})", s(&pin))), "{err}");
    assert!(!err.contains("wrong-Zvx9"), "the PIN is shown: {err}");
}

#[test]
fn an_unknown_token_label_exits_2_listing_the_labels_there_are() {
    let ks = TokenKeyServer::shared();
    let pin = ks.env.path().join("pin");
    let keys = format!("pkcs11 = {{ module = \"{SOFTHSM_MODULE}\", token = \"nope\", pin_file = \"{}\" }}", s(&pin));
    let (code, err) = key_server_refuses(ks, &keys);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no token labelled \"nope\"") && err.contains("\"gh\"") && err.contains("\"spare\""), "{err}");
}

// ------------------------------------------------------------------ a keyless site

/// A certificate from the internal CA for `host` with the token key's public half:
/// `openssl x509 -new -force_pubkey` (no CSR: the private key cannot sign one here).
#[track_caller]
fn certificate_for(ks: &TokenKeyServer, public: &Path, host: &str) -> PathBuf {
    // A directory per call: tests running side by side make certificates for the same hosts.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = ks.env.path().join("sites").join(n.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let ext = dir.join(format!("{host}.ext"));
    write(
        &ext,
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n\
             subjectAltName=DNS:{host}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
        ),
    );
    let crt = dir.join(format!("{host}.crt"));
    openssl_ok(&[
        "x509",
        "-new",
        "-subj",
        &format!("/CN={host}"),
        "-force_pubkey",
        s(public),
        "-CA",
        s(&ks.env.intermediate()),
        "-CAkey",
        s(&ks.env.intermediate_key()),
        "-extfile",
        s(&ext),
        "-days",
        "2",
        "-out",
        s(&crt),
    ]);
    let chain = dir.join(format!("{host}.fullchain.pem"));
    write(&chain, format!("{}{}", read(&crt), read(ks.env.intermediate())));
    chain
}

#[test]
fn a_keyless_site_whose_key_is_in_the_token_serves_curl_over_tls_1_3_and_1_2() {
    let ks = TokenKeyServer::shared();
    let servers = format!("servers = [\"127.0.0.1:{}\"]\nserver_name = \"localhost\"", ks.port);
    let (gw, _upstream) = token_sites_gateway(ks, "gw-token.toml", "", &servers);
    curl_token_sites(&gw, &ks.daemon);
}

#[test]
fn a_token_key_server_signs_through_the_tunnel() {
    let ks = TokenKeyServer::shared();
    let tunnel = free_port();
    let listen = format!("keyless_tunnel = \"127.0.0.1:{tunnel}\"");
    let servers = "servers = []\nserver_name = \"keys.token.test\"";
    let (gw, _upstream) = token_sites_gateway(ks, "gw-token-tunnel.toml", &listen, servers);
    // The key server dials out with a client certificate; it opens no port for gateways.
    let cert = ks.env.issue("client", "token-tunnel-ks", &["DNS:keys.token.test"]);
    let config = ks.env.write(
        "keyserver-tunnel.toml",
        &format!(
            "tunnel = \"localhost:{tunnel}\"\ncertificate = {{ cert = \"{}\", key = \"{}\" }}\n[[keys]]\n\
             pkcs11 = {{ module = \"{SOFTHSM_MODULE}\", token = \"{TOKEN}\", pin_file = \"pin\" }}\n",
            s(cert.chain()),
            s(&cert.key)
        ),
    );
    let mut c: Command = gh_cmd(&ks.env.data(), &["keyserver", "--config", s(&config)]);
    c.current_dir("/").env("SOFTHSM2_CONF", &ks.hsm.conf).env("GATEHOUSE_LOG", "info,keyserver=debug");
    let mut server = Daemon::spawn(&c, "gatehouse keyserver (tunnel, token)", None);
    server.wait_stderr("the tunnel", |l| l.contains("attached to the gateway's keyless tunnel"));
    curl_token_sites(&gw, &server);
}

/// The token keys' sites: label, host.
const TOKEN_SITES: [(&str, &str); 3] = [("ec1", "ec.token.test"), ("rsa1", "rsa.token.test"), ("ed1", "ed.token.test")];

/// A gateway serving [`TOKEN_SITES`] through the `[[keyless]]` table `hsm` with
/// `servers` (its lines), `listen_extra` in `[listen]`; and its upstream.
#[track_caller]
fn token_sites_gateway(ks: &TokenKeyServer, name: &str, listen_extra: &str, servers: &str) -> (Gateway, Upstream) {
    let upstream = Upstream::start(&ks.env);
    let https = free_port();
    let mut toml = format!(
        "{}{listen_extra}\n[runtime]\nworker_threads = 1\n\n[[keyless]]\nname = \"hsm\"\n{servers}\ntimeout_ms = 3000\n",
        listen_toml(https, None, None),
    );
    for (label, host) in TOKEN_SITES {
        let chain = certificate_for(ks, &ks.key(label).public, host);
        toml.push_str(&format!(
            "\n[[site]]\nhosts = [\"{host}\"]\ncertificate = {{ cert = \"{}\", keyless = \"hsm\" }}\nupstream = \"app\"\n",
            s(&chain)
        ));
    }
    toml.push_str(&upstream_toml("app", &upstream.url()));
    (Gateway::start(&ks.env, name, https, &toml), upstream)
}

/// curl over TLS 1.3 and 1.2 to each of [`TOKEN_SITES`], through to the upstream.
#[track_caller]
fn curl_token_sites(gw: &Gateway, key_server: &Daemon) {
    for (_, host) in TOKEN_SITES {
        for version in [["--tlsv1.3", "--tls-max", "1.3"], ["--tlsv1.2", "--tls-max", "1.2"]] {
            let r = gw.curl(host, "/through-the-token", &version);
            assert_eq!(r.status, 200, "curl {version:?} {host}: {r:?}\n{}\n{}", gw.proc.dump(), key_server.proc.dump());
        }
    }
}
