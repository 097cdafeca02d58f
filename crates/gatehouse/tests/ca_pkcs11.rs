//! The CA's own key in a PKCS#11 token (issue 11): `gatehouse ca init --key-store
//! pkcs11:...` generates the intermediate's key inside a softhsm2 token (sensitive,
//! never extractable) and keeps only its URI; `ca issue`, `ca revoke`, `ca crl` and a
//! gateway serving an internal-CA site certificate then sign through the token,
//! judged by openssl and curl. Bad key stores are refused with one sentence.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::keyless::softhsm::{SOFTHSM_MODULE, SoftHsm};
use support::*;

const TOKEN: &str = "ca";
const PIN: &str = "ca-pin-Rw5q";

/// A data dir and a softhsm2 token store with token `ca`, and the pin file.
struct TokenCa {
    dir: TempDir,
    hsm: SoftHsm,
    pin: PathBuf,
}

impl TokenCa {
    fn new() -> TokenCa {
        let dir = tmp();
        let hsm = SoftHsm::new(&dir.path().join("hsm"));
        hsm.init_token(TOKEN, PIN);
        let pin = dir.path().join("ca.pin");
        std::fs::write(&pin, format!("{PIN}\n")).unwrap();
        std::fs::set_permissions(&pin, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        TokenCa { dir, hsm, pin }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn uri(&self, object: &str) -> String {
        format!("pkcs11:token={TOKEN};object={object}?module-path={SOFTHSM_MODULE}&pin-source=file:{}", s(&self.pin))
    }

    /// `gatehouse --data-dir DATA ARGS` with the token store's SOFTHSM2_CONF.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = gh_cmd(&self.data(), args);
        c.current_dir(self.dir.path()).env("SOFTHSM2_CONF", &self.hsm.conf);
        c
    }

    fn gh(&self, args: &[&str]) -> Out {
        run_limited(self.command(args), Duration::from_secs(60))
    }

    #[track_caller]
    fn gh_ok(&self, args: &[&str]) -> String {
        let o = self.gh(args);
        assert_eq!(o.code, 0, "gatehouse {args:?}:\n{}", o.all());
        o.stdout
    }

    fn ca_file(&self, name: &str) -> PathBuf {
        self.data().join("ca").join(name)
    }
}

#[track_caller]
fn serial_of(cert: &Path) -> String {
    let out = openssl_ok(&["x509", "-in", s(cert), "-noout", "-serial"]);
    out.trim().trim_start_matches("serial=").to_owned()
}

#[test]
fn the_intermediate_key_in_a_token_issues_revokes_signs_crls_and_serves() {
    let ca = TokenCa::new();
    let init = ca.gh_ok(&["ca", "init", "--key-store", &ca.uri("issuing")]);
    assert!(init.contains("the intermediate's key is in the token"), "{init}");
    // No key file for the intermediate: only the URI, private to the owner.
    assert!(!ca.ca_file("intermediate.key").exists());
    let reference = read(ca.ca_file("intermediate.pkcs11"));
    assert_eq!(reference.trim(), ca.uri("issuing"));
    assert!(!reference.contains(PIN), "the PIN is in the reference");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(ca.ca_file("intermediate.pkcs11")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // The key was made in the token and cannot leave it.
    let listed = ca.hsm.list_private_keys(TOKEN, PIN);
    assert!(listed.contains("label:      issuing") || listed.contains("label: issuing"), "{listed}");
    assert!(listed.contains("never extractable") && listed.contains("sensitive"), "{listed}");
    // The intermediate certificate carries the token key's public key.
    let (root, intermediate) = (ca.ca_file("root.crt"), ca.ca_file("intermediate.crt"));
    openssl_ok(&["verify", "-CAfile", s(&root), s(&intermediate)]);

    // Issue: the leaf chains, signed by the token.
    let out = ca.dir.path().join("out");
    ca.gh_ok(&["ca", "issue", "--profile", "server", "--cn", "www.token.test", "--out", s(&out)]);
    let leaf = out.join("www.token.test.crt");
    let verified = openssl_ok(&["verify", "-CAfile", s(&root), "-untrusted", s(&intermediate), s(&leaf)]);
    assert!(verified.contains(": OK"), "{verified}");

    // Revoke, then a CRL signed by the token that openssl checks and that lists the serial.
    let serial = serial_of(&leaf);
    ca.gh_ok(&["ca", "revoke", &serial]);
    let crl = ca.dir.path().join("ca.crl");
    ca.gh_ok(&["ca", "crl", "--out", s(&crl)]);
    let crl_text = openssl_ok(&["crl", "-in", s(&crl), "-CAfile", s(&intermediate), "-noout", "-text"]);
    assert!(crl_text.to_uppercase().contains(&serial.to_uppercase()), "{crl_text}");
    let chain = ca.dir.path().join("chain.pem");
    std::fs::write(&chain, format!("{}{}", read(&root), read(&intermediate))).unwrap();
    let o = openssl(&["verify", "-crl_check", "-CAfile", s(&chain), "-CRLfile", s(&crl), s(&leaf)]);
    assert!(o.all().contains("certificate revoked"), "{}", o.all());

    // The gateway's internal CA issues its site certificate through the token.
    let upstream_env = Env::empty();
    let upstream = Upstream::start(&upstream_env);
    let https = free_port();
    let toml = format!(
        "{}\n[[site]]\nhosts = [\"localhost\"]\ncertificate = {{ internal_ca = true }}\nupstream = \"app\"\n{}",
        listen_toml(https, None, None),
        upstream_toml("app", &upstream.url())
    );
    let config = ca.dir.path().join("gw.toml");
    std::fs::write(&config, &toml).unwrap();
    let mut proc = Proc::spawn(ca.command(&["serve", "--config", s(&config)]), "gatehouse serve (token CA)");
    proc.wait_listening(https, Duration::from_secs(30), &toml);
    let r = curl(&["--cacert", s(&root), &format!("https://localhost:{https}/through-the-token")]);
    assert_eq!(r.status, 200, "{r:?}\n{}", proc.dump());
}

#[test]
fn the_root_key_can_be_made_in_the_token_too() {
    let ca = TokenCa::new();
    let same = ca.gh(&["ca", "init", "--key-store", &ca.uri("issuing"), "--root-key-store", &ca.uri("issuing")]);
    assert_eq!(same.code, 2, "{}", same.all());
    assert!(same.stderr.contains("names the same key as --key-store"), "{}", same.stderr);
    let init = ca.gh_ok(&["ca", "init", "--key-store", &ca.uri("issuing"), "--root-key-store", &ca.uri("root")]);
    assert!(init.contains("the root's is in"), "{init}");
    assert!(!ca.ca_file("root.key").exists() && !ca.ca_file("intermediate.key").exists());
    assert_eq!(read(ca.ca_file("root.pkcs11")).trim(), ca.uri("root"));
    let listed = ca.hsm.list_private_keys(TOKEN, PIN);
    assert!(listed.contains("root") && listed.contains("issuing"), "{listed}");
    // The root signed itself and the intermediate in the token: openssl checks both.
    let (root, intermediate) = (ca.ca_file("root.crt"), ca.ca_file("intermediate.crt"));
    openssl_ok(&["verify", "-CAfile", s(&root), s(&intermediate)]);
    let out = ca.dir.path().join("out");
    ca.gh_ok(&["ca", "issue", "--profile", "client", "--cn", "alice", "--out", s(&out)]);
    openssl_ok(&["verify", "-CAfile", s(&root), "-untrusted", s(&intermediate), s(&out.join("alice.crt"))]);
}

#[test]
fn bad_key_stores_are_refused_before_anything_is_written() {
    let ca = TokenCa::new();
    let refused = |uri: &str, says: &str| {
        let o = ca.gh(&["ca", "init", "--key-store", uri]);
        assert_eq!(o.code, 2, "{uri}: {}", o.all());
        assert!(o.stderr.contains(says), "{uri}: wanted {says:?} in {}", o.stderr);
        assert!(!o.stderr.contains(PIN), "the PIN is shown: {}", o.stderr);
        assert!(!ca.data().join("ca").exists(), "{uri}: a CA was written");
    };
    refused(
        &format!("pkcs11:token={TOKEN};object=x?module-path={SOFTHSM_MODULE}&pin-source=file:ca.pin"),
        "give module-path and pin-source as absolute paths",
    );
    refused(
        &format!("pkcs11:token={TOKEN}?module-path={SOFTHSM_MODULE}&pin-source=file:{}", s(&ca.pin)),
        "names no object",
    );
    refused(&format!("pkcs11:token={TOKEN};object=x?module-path={SOFTHSM_MODULE}&pin-value={PIN}"), "pin-value");
    refused(
        &format!("pkcs11:token=nosuch;object=x?module-path={SOFTHSM_MODULE}&pin-source=file:{}", s(&ca.pin)),
        "no token labelled \"nosuch\"",
    );
    // A label already taken in the token.
    ca.hsm.keypairgen(TOKEN, PIN, "EC:prime256v1", "taken", "07");
    refused(&ca.uri("taken"), "already holds a private key labelled \"taken\"");
}
