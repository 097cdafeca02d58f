//! Private keys made by `openssl genpkey` in every format a key directory takes,
//! their SKI as openssl computes it (`subjectKeyIdentifier=hash`), and
//! `openssl pkeyutl -verify` as the judge of the signatures the key server makes.

use std::path::{Path, PathBuf};

use crate::support::files::{read_bytes, tmp, write};
use crate::support::openssl::{openssl, openssl_ok};
use crate::support::s;

/// A private key in a key directory, with its public key and SKI.
#[derive(Debug, Clone)]
pub struct TestKey {
    /// The `.key` file the key server reads.
    pub file: PathBuf,
    /// Its public key, PEM SPKI.
    pub public: PathBuf,
    /// Its SKI, as openssl writes `subjectKeyIdentifier=hash` in a certificate.
    pub ski: [u8; 20],
}

/// How a key is made: `openssl genpkey` options, then an optional conversion.
#[derive(Debug, Clone, Copy)]
pub enum KeyFormat {
    /// RSA 2048, PKCS#8 PEM (`genpkey`'s output).
    RsaPkcs8,
    /// RSA 2048, PKCS#1 PEM (`openssl rsa -traditional`).
    RsaPkcs1,
    /// EC P-256, SEC1 PEM (`openssl ec`).
    P256Sec1,
    /// EC P-256, PKCS#8 PEM.
    P256Pkcs8,
    /// EC P-384, PKCS#8 DER (`openssl pkey -outform DER`).
    P384Der,
    /// Ed25519, PKCS#8 PEM.
    Ed25519,
}

impl KeyFormat {
    fn genpkey(self) -> &'static [&'static str] {
        match self {
            KeyFormat::RsaPkcs8 | KeyFormat::RsaPkcs1 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            KeyFormat::P256Sec1 | KeyFormat::P256Pkcs8 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            KeyFormat::P384Der => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            KeyFormat::Ed25519 => &["-algorithm", "ED25519"],
        }
    }
}

/// `openssl genpkey` into `dir/NAME.key` in `format`; its public key and SKI beside it.
#[track_caller]
pub fn make_key(dir: &Path, name: &str, format: KeyFormat) -> TestKey {
    let file = dir.join(format!("{name}.key"));
    let made = dir.join(format!("{name}.genpkey.pem"));
    let mut args = vec!["genpkey"];
    args.extend_from_slice(format.genpkey());
    args.extend_from_slice(&["-out", s(&made)]);
    openssl_ok(&args);
    let (input, output) = (s(&made), s(&file));
    match format {
        KeyFormat::RsaPkcs1 => {
            openssl_ok(&["rsa", "-in", input, "-traditional", "-out", output]);
            assert!(read_bytes(&file).starts_with(b"-----BEGIN RSA PRIVATE KEY-----"), "not PKCS#1");
        }
        KeyFormat::P256Sec1 => {
            openssl_ok(&["ec", "-in", input, "-out", output]);
            assert!(read_bytes(&file).starts_with(b"-----BEGIN EC PRIVATE KEY-----"), "not SEC1");
        }
        KeyFormat::P384Der => {
            openssl_ok(&["pkey", "-in", input, "-outform", "DER", "-out", output]);
        }
        _ => std::fs::rename(&made, &file).unwrap(),
    }
    let _ = std::fs::remove_file(&made);
    let public = dir.join(format!("{name}.pub.pem"));
    let inform = if matches!(format, KeyFormat::P384Der) { "DER" } else { "PEM" };
    openssl_ok(&["pkey", "-inform", inform, "-in", output, "-pubout", "-out", s(&public)]);
    TestKey { ski: openssl_ski(&file, inform), file, public }
}

/// The SKI openssl puts in a certificate for the key (`subjectKeyIdentifier=hash`).
#[track_caller]
fn openssl_ski(key: &Path, inform: &str) -> [u8; 20] {
    let d = tmp();
    let crt = d.join("ski.crt");
    openssl_ok(&[
        "req",
        "-new",
        "-x509",
        "-keyform",
        inform,
        "-key",
        s(key),
        "-subj",
        "/CN=ski",
        "-days",
        "1",
        "-addext",
        "subjectKeyIdentifier=hash",
        "-out",
        s(&crt),
    ]);
    let text = openssl_ok(&["x509", "-in", s(&crt), "-noout", "-ext", "subjectKeyIdentifier"]);
    let hex: String = text.lines().nth(1).unwrap_or_default().trim().replace(':', "");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or_else(|_| panic!("SKI in {text}")))
        .collect();
    bytes.try_into().unwrap_or_else(|_| panic!("SKI of 20 bytes expected in {text}"))
}

/// `openssl pkeyutl -verify -pubin -inkey PUBLIC -in DATA -sigfile SIG OPTS...`:
/// whether openssl calls `signature` valid for `data` (a digest, or with `-rawin`
/// the whole message) and the public key.
pub fn openssl_verifies(public: &Path, data: &[u8], signature: &[u8], opts: &[&str]) -> bool {
    let d = tmp();
    let (data_file, sig_file) = (d.join("data"), d.join("sig"));
    write(&data_file, data);
    write(&sig_file, signature);
    let mut args =
        vec!["pkeyutl", "-verify", "-pubin", "-inkey", s(public), "-in", s(&data_file), "-sigfile", s(&sig_file)];
    args.extend_from_slice(opts);
    let o = openssl(&args);
    o.code == 0 && o.stdout.contains("Signature Verified Successfully")
}

/// A digest of `message` by `hash` ("sha256", "sha384", ...), made by aws-lc.
pub fn digest(hash: &str, message: &[u8]) -> Vec<u8> {
    use aws_lc_rs::digest as d;
    let algorithm = match hash {
        "sha1" => &d::SHA1_FOR_LEGACY_USE_ONLY,
        "sha256" => &d::SHA256,
        "sha384" => &d::SHA384,
        "sha512" => &d::SHA512,
        other => panic!("no digest {other} here"),
    };
    d::digest(algorithm, message).as_ref().to_vec()
}

/// The digest openssl makes of `data` by `hash` (any openssl names: "sha224", "md5-sha1", ...).
pub fn openssl_digest(hash: &str, data: &[u8]) -> Vec<u8> {
    let d = tmp();
    let (input, output) = (d.join("in"), d.join("out"));
    write(&input, data);
    openssl_ok(&["dgst", &format!("-{hash}"), "-binary", "-out", s(&output), s(&input)]);
    read_bytes(&output)
}

/// A 256-byte block shaped as TLS RSA key exchange's padded premaster (00 02 ...),
/// and its raw encryption (no padding added) by openssl with the RSA-2048 `public` key:
/// what RSA decrypt must give back, and what it is given.
pub fn raw_rsa_ciphertext(public: &Path) -> (Vec<u8>, Vec<u8>) {
    let mut block = vec![0x00, 0x02];
    block.extend((0..254u32).map(|i| u8::try_from(i % 251 + 1).unwrap()));
    let d = tmp();
    let (plain, cipher) = (d.join("block"), d.join("cipher"));
    write(&plain, &block);
    openssl_ok(&[
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        s(public),
        "-pkeyopt",
        "rsa_padding_mode:none",
        "-in",
        s(&plain),
        "-out",
        s(&cipher),
    ]);
    (block, read_bytes(&cipher))
}
