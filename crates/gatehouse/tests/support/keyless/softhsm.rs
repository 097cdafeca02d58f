//! [`SoftHsm`]: softhsm2 with a token store of the test's own (`SOFTHSM2_CONF`
//! names a config whose `directories.tokendir` is in the test's temp dir, so the
//! system's tokens are never touched), tokens made by `softhsm2-util`, and key
//! pairs generated inside a token by `pkcs11-tool --keypairgen`. The private
//! keys never leave the token: only the public halves are read out, to compute
//! the SKI as openssl does (`subjectKeyIdentifier=hash`) and to verify
//! signatures with `openssl pkeyutl`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::files::{tmp, write};
use crate::support::openssl::openssl_ok;
use crate::support::process::{Out, require, run_limited};
use crate::support::s;

/// softhsm2's PKCS#11 module, as Debian installs it.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const SOFTHSM_UTIL: &str = "/usr/bin/softhsm2-util";
const PKCS11_TOOL: &str = "/usr/bin/pkcs11-tool";
const LIMIT: Duration = Duration::from_secs(120);

/// A private softhsm2 token store.
pub struct SoftHsm {
    /// The file `SOFTHSM2_CONF` names.
    pub conf: PathBuf,
    dir: PathBuf,
}

/// A key pair generated in a token: its public half, read out, and SKI.
#[derive(Debug, Clone)]
pub struct TokenKeyPair {
    /// The public key, PEM SPKI.
    pub public: PathBuf,
    /// SHA-1 of its subjectPublicKey, as openssl writes `subjectKeyIdentifier=hash`.
    pub ski: [u8; 20],
}

impl SoftHsm {
    /// A token store in `dir/tokens`, configured by `dir/softhsm2.conf`.
    #[track_caller]
    pub fn new(dir: &Path) -> SoftHsm {
        for program in [SOFTHSM_UTIL, PKCS11_TOOL, SOFTHSM_MODULE] {
            require(program);
        }
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.join("softhsm2.conf");
        write(&conf, format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", s(&tokens)));
        SoftHsm { conf, dir: dir.to_owned() }
    }

    fn run(&self, program: &str, args: &[&str]) -> Out {
        let mut c = Command::new(program);
        c.args(args).env("SOFTHSM2_CONF", &self.conf);
        run_limited(c, LIMIT)
    }

    #[track_caller]
    fn run_ok(&self, program: &str, args: &[&str]) -> String {
        let o = self.run(program, args);
        assert_eq!(o.code, 0, "{program} {args:?} failed:\n{}", o.all());
        o.stdout
    }

    /// `softhsm2-util --init-token --free --label LABEL --pin PIN --so-pin 5678`
    #[track_caller]
    pub fn init_token(&self, label: &str, pin: &str) {
        self.run_ok(SOFTHSM_UTIL, &["--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", "5678"]);
    }

    fn tool(&self, token: &str, pin: &str, args: &[&str]) -> String {
        let mut all = vec!["--module", SOFTHSM_MODULE, "--token-label", token, "--login", "--pin", pin];
        all.extend_from_slice(args);
        self.run_ok(PKCS11_TOOL, &all)
    }

    /// `pkcs11-tool --list-objects --type privkey` of `token`.
    #[track_caller]
    pub fn list_private_keys(&self, token: &str, pin: &str) -> String {
        self.tool(token, pin, &["--list-objects", "--type", "privkey"])
    }

    /// `pkcs11-tool --keypairgen --key-type KEY_TYPE --label LABEL --id ID` in
    /// `token` (`rsa:2048`, `EC:prime256v1`, `EC:secp384r1`, `EC:edwards25519`);
    /// then the public half read out.
    #[track_caller]
    pub fn keypairgen(&self, token: &str, pin: &str, key_type: &str, label: &str, id: &str) -> TokenKeyPair {
        self.tool(token, pin, &["--keypairgen", "--key-type", key_type, "--label", label, "--id", id]);
        let der = self.dir.join(format!("{label}.pub.der"));
        // pkcs11-tool 0.23 cannot write EdDSA or P-384 public keys ("cannot create
        // EVP_PKEY"): an EC key's SPKI is built here from the CKA_EC_POINT it lists.
        let spki_prefix: Option<&[u8]> = match key_type {
            "EC:prime256v1" => Some(&[
                0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
                0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
            ]),
            "EC:secp384r1" => Some(&[
                0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81,
                0x04, 0x00, 0x22, 0x03, 0x62, 0x00,
            ]),
            // RFC 8410.
            "EC:edwards25519" => Some(&[0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]),
            _ => None,
        };
        match spki_prefix {
            Some(prefix) => {
                // CKA_EC_POINT is a DER OCTET STRING (tag 04, a one-byte length here).
                let listed = self.listed_ec_point(token, pin, label);
                let point = match listed.as_slice() {
                    [0x04, len, point @ ..] if usize::from(*len) == point.len() => point,
                    _ => panic!("the EC_POINT of {label} is not an OCTET STRING: {listed:02x?}"),
                };
                write(&der, [prefix, point].concat());
            }
            None => {
                self.tool(token, pin, &["--read-object", "--type", "pubkey", "--label", label, "-o", s(&der)]);
            }
        }
        let public = self.dir.join(format!("{label}.pub.pem"));
        openssl_ok(&["pkey", "-pubin", "-inform", "DER", "-in", s(&der), "-out", s(&public)]);
        TokenKeyPair { ski: openssl_ski_of_public(&public), public }
    }

    /// The `EC_POINT:` that `pkcs11-tool --list-objects` shows for the public key
    /// `label` (each object lists its EC_POINT before its label).
    #[track_caller]
    fn listed_ec_point(&self, token: &str, pin: &str, label: &str) -> Vec<u8> {
        let listing = self.tool(token, pin, &["--list-objects", "--type", "pubkey"]);
        let mut point = None;
        for line in listing.lines().map(str::trim) {
            if line.contains("Key Object;") {
                point = None;
            } else if let Some(hex) = line.strip_prefix("EC_POINT:") {
                point = Some(unhex(hex.trim()));
            } else if line.strip_prefix("label:").is_some_and(|l| l.trim() == label) {
                return point.unwrap_or_else(|| panic!("no EC_POINT listed for {label}:\n{listing}"));
            }
        }
        panic!("no public key {label} listed:\n{listing}")
    }
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or_else(|_| panic!("not hex: {hex}")))
        .collect()
}

/// The SKI openssl writes (`subjectKeyIdentifier=hash`) into a certificate for
/// the public key `public` (`x509 -new -force_pubkey`, signed by a throwaway key).
#[track_caller]
pub fn openssl_ski_of_public(public: &Path) -> [u8; 20] {
    let d = tmp();
    let (signer, ext, crt) = (d.join("signer.pem"), d.join("ext.cnf"), d.join("ski.crt"));
    openssl_ok(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", s(&signer)]);
    write(&ext, "subjectKeyIdentifier=hash\n");
    openssl_ok(&[
        "x509",
        "-new",
        "-subj",
        "/CN=ski",
        "-key",
        s(&signer),
        "-force_pubkey",
        s(public),
        "-extfile",
        s(&ext),
        "-days",
        "1",
        "-out",
        s(&crt),
    ]);
    let text = openssl_ok(&["x509", "-in", s(&crt), "-noout", "-ext", "subjectKeyIdentifier"]);
    let hex: String = text.lines().nth(1).unwrap_or_default().trim().replace(':', "");
    unhex(&hex).try_into().unwrap_or_else(|_| panic!("SKI of 20 bytes expected in {text}"))
}
