//! Client-certificate chain building: only roots are trust anchors; the internal CA's
//! intermediate and the intermediates of `ca_files` bundles are known intermediates that a
//! client sending only its leaf is verified through, with their constraints checked
//! (basicConstraints pathLen, name constraints). Also the end-entity checks webpki leaves
//! to the gateway: keyUsage must allow digitalSignature, RSA keys need 2048 bits.
//!
//! Sub-CAs, leaves and a partner CA are made with openssl (`T/chain`); each refusal is
//! shown on a `require` site (the handshake fails, `handshake_refused` line) and on an
//! `optional` site (the connection goes on, `client_cert_refused` line, 403 on the route
//! that requires a certificate).
mod support;
use support::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const INTERNAL: &str = "trust = { internal_ca = true }";

/// How long a log line may take to appear after the request that causes it.
const LOG_WAIT: Duration = Duration::from_secs(5);

/// extensions of a CA certificate made here (`pathlen`: `",pathlen:N"` or "").
fn ca_ext(pathlen: &str, more: &str) -> String {
    format!(
        "basicConstraints = critical,CA:TRUE{pathlen}\nkeyUsage = critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n{more}"
    )
}

/// extensions of a client certificate made here, with `key_usage`.
fn client_ext(key_usage: &str, more: &str) -> String {
    format!(
        "basicConstraints = critical,CA:FALSE\nkeyUsage = critical,{key_usage}\nextendedKeyUsage = clientAuth\n\
         subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n{more}"
    )
}

/// The directory of everything made with openssl here.
fn chain_dir(env: &Env) -> PathBuf {
    let d = env.path().join("chain");
    fs::create_dir_all(&d).unwrap();
    d
}

/// A serial no other certificate of these tests has.
fn fresh_serial() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("0x{nanos:x}")
}

/// The internal CA's issuing intermediate and its key, as an issuer for openssl.
fn internal_intermediate(env: &Env) -> Cert {
    Cert::from_files(env.intermediate(), env.intermediate_key())
}

/// `openssl x509 -req`: a certificate for `CN=name` (EC P-256 key, or RSA of `rsa_bits`)
/// signed by `issuer` with the extension lines `ext`, in `T/chain/NAME.{crt,key}`.
#[track_caller]
fn sign(env: &Env, name: &str, issuer: &Cert, ext: &str, rsa_bits: Option<u32>) -> Cert {
    let d = chain_dir(env);
    let subj = format!("/O=Chain Tests/CN={name}");
    let (csr, key) = match rsa_bits {
        Some(bits) => csr_rsa(&d, name, bits, &subj, None, &[]),
        None => csr_ec(&d, name, &subj, None, &[]),
    };
    let extfile = d.join(format!("{name}.ext"));
    fs::write(&extfile, format!("[v3]\n{ext}")).unwrap();
    let crt = d.join(format!("{name}.crt"));
    let serial = fresh_serial();
    openssl_ok(&[
        "x509",
        "-req",
        "-in",
        s(&csr),
        "-CA",
        s(&issuer.crt),
        "-CAkey",
        s(&issuer.key),
        "-set_serial",
        &serial,
        "-days",
        "30",
        "-sha256",
        "-extfile",
        s(&extfile),
        "-extensions",
        "v3",
        "-out",
        s(&crt),
    ]);
    Cert::from_files(crt, key)
}

/// A self-signed root `CN=name` (EC P-256) in `T/chain/NAME.{crt,key}`.
#[track_caller]
fn self_signed_root(env: &Env, name: &str) -> Cert {
    let d = chain_dir(env);
    let cnf = d.join(format!("{name}.cnf"));
    fs::write(&cnf, format!("[req]\ndistinguished_name = dn\n[dn]\n[v3]\n{}", ca_ext("", ""))).unwrap();
    let (crt, key) = (d.join(format!("{name}.crt")), d.join(format!("{name}.key")));
    openssl_ok(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        s(&key),
        "-out",
        s(&crt),
        "-subj",
        &format!("/O=Chain Tests/CN={name}"),
        "-days",
        "30",
        "-config",
        s(&cnf),
        "-extensions",
        "v3",
    ]);
    Cert::from_files(crt, key)
}

/// What the client presents: `leaf` followed by the CAs it sends (nearest first), in
/// `T/chain/NAME.chain.pem`, with the leaf's key.
fn presenting(env: &Env, leaf: &Cert, cas: &[&Cert]) -> Cert {
    let mut pem = read(&leaf.crt);
    for ca in cas {
        pem.push_str(&read(&ca.crt));
    }
    let path = chain_dir(env).join(format!("{}.chain.pem", leaf.crt.file_stem().unwrap().to_str().unwrap()));
    fs::write(&path, pem).unwrap();
    Cert::from_files(path, leaf.key.clone())
}

/// A bundle file `T/chain/NAME.pem` of the certificates given.
fn bundle(env: &Env, name: &str, certs: &[&Path]) -> PathBuf {
    let pem: String = certs.iter().map(|c| read(c)).collect();
    let path = chain_dir(env).join(format!("{name}.pem"));
    fs::write(&path, pem).unwrap();
    path
}

/// A gateway for localhost with config `T/NAME` and `site` keys (the upstream is `up`).
fn gateway(env: &Env, up: &Upstream, name: &str, site: &str) -> Gateway {
    let https = free_port();
    let toml = localhost_config(env, &listen_toml(https, None, None), up, "", site);
    Gateway::start(env, name, https, &toml)
}

fn require_site(trust: &str) -> String {
    format!("mtls = \"require\"\n{trust}\n")
}

/// An optional site whose `/test1` route requires a verified certificate.
fn optional_site(trust: &str) -> String {
    format!("mtls = \"optional\"\n{trust}\n[[site.route]]\npath_prefix = \"/test1\"\nmtls = \"require\"\n")
}

/// On a `require` site: the handshake fails and one `handshake_refused` line names `reason`.
#[track_caller]
fn assert_handshake_refused(gw: &Gateway, cert: &Cert, reason: &str, curl_extra: &[&str]) -> Value {
    let r = gw.curl_cert("localhost", "/", cert, curl_extra);
    assert_ne!(r.exit, 0, "{reason}: the handshake must fail: {r:?}\n{}", gw.proc.dump());
    assert_ne!(r.status, 200, "{r:?}");
    let line = gw
        .wait_refusal("handshake_refused", reason, LOG_WAIT)
        .unwrap_or_else(|| panic!("no handshake_refused line with reason {reason}\n{}", gw.proc.dump()));
    assert_eq!(line["sni"], "localhost", "{line}");
    assert!(line["detail"].as_str().is_some_and(|d| !d.is_empty()), "{line}");
    line
}

/// On an `optional` site: the connection goes on (200 on `/`, nothing forwarded), one
/// `client_cert_refused` line names `reason`, and `/test1` answers 403.
#[track_caller]
fn assert_refused_after_handshake(gw: &Gateway, cert: &Cert, reason: &str, curl_extra: &[&str]) -> Value {
    let r = gw.curl_cert("localhost", "/", cert, curl_extra);
    assert!(r.ok(), "{reason}: in optional mode the connection goes on: {r:?}\n{}", gw.proc.dump());
    assert!(r.upstream().all("client-cert").is_empty(), "{reason}: a refused certificate is not forwarded: {r:?}");
    let line = gw
        .wait_refusal("client_cert_refused", reason, LOG_WAIT)
        .unwrap_or_else(|| panic!("no client_cert_refused line with reason {reason}\n{}", gw.proc.dump()));
    assert_eq!(line["sni"], "localhost", "{line}");
    assert!(line["detail"].as_str().is_some_and(|d| !d.is_empty()), "{line}");

    let r = gw.curl_cert("localhost", "/test1", cert, &[curl_extra, &["-H", "Accept: application/json"]].concat());
    assert_eq!(r.status, 403, "{reason}: the route requiring a certificate refuses it: {r:?}");
    let v = r.json();
    assert_eq!(v["error"], "route_requires_certificate", "{v}");
    assert!(v["reason"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
    line
}

/// `cert` is refused with `reason` on a require site and on an optional site trusting `trust`.
#[track_caller]
fn refused_on_both(env: &Env, trust: &str, cert: &Cert, reason: &str, curl_extra: &[&str]) {
    let up = Upstream::start(env);
    let required = gateway(env, &up, "require.toml", &require_site(trust));
    assert_handshake_refused(&required, cert, reason, curl_extra);
    let optional = gateway(env, &up, "optional.toml", &optional_site(trust));
    assert_refused_after_handshake(&optional, cert, reason, curl_extra);
}

/// `cert` (leaf only) is verified on a require site and on an optional site's `/test1`.
#[track_caller]
fn verified_on_both(env: &Env, trust: &str, cert: &Cert) {
    let up = Upstream::start(env);
    let required = gateway(env, &up, "require.toml", &require_site(trust));
    let r = required.curl_cert("localhost", "/", cert, &[]);
    assert!(r.ok(), "require site: {r:?}\n{}", required.proc.dump());
    assert_eq!(r.upstream().all("client-cert").len(), 1, "{r:?}");

    let optional = gateway(env, &up, "optional.toml", &optional_site(trust));
    let r = optional.curl_cert("localhost", "/test1", cert, &[]);
    assert!(r.ok(), "optional site, route requiring a certificate: {r:?}\n{}", optional.proc.dump());
    let id = r.upstream().one("x-request-id").expect("x-request-id");
    let line = optional.access_line_for(&id).expect("access line");
    assert_eq!(line["client_verify"], "verified", "{line}");
}

#[track_caller]
fn assert_leaf_only(cert: &Cert) {
    let n = pem_certs(&read(&cert.crt)).len();
    assert_eq!(n, 1, "{} should hold the leaf alone, holds {n} certificates", cert.crt.display());
}

// ---------------------------------------------------------------- the internal CA

#[test]
fn a_client_sending_only_its_leaf_verifies_through_the_internal_intermediate() {
    let env = Env::new();
    let alice = env.client("alice");
    assert_leaf_only(&alice);
    verified_on_both(&env, INTERNAL, &alice);
}

#[test]
fn the_certificate_request_names_the_root_and_the_intermediate() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = gateway(&env, &up, "require.toml", &require_site(INTERNAL));
    let o = gw.s_client(&["-servername", "localhost", "-CAfile", s(&gw.root)], "");
    let names = o.stdout.split("Acceptable client certificate CA names").nth(1).unwrap_or_else(|| {
        panic!("no CA names in the CertificateRequest:\n{}", o.all());
    });
    for ca in [env.root(), env.intermediate()] {
        let subject = subject_of(&ca);
        let cn = subject.split(',').find_map(|rdn| rdn.strip_prefix("CN=")).expect("a CN");
        assert!(names.contains(cn), "browsers pick a certificate by these names; {cn} is missing:\n{names}");
    }
}

#[test]
fn a_leaf_under_a_sub_ca_of_the_intermediate_is_refused_by_its_path_length() {
    let env = Env::new();
    let intermediate = internal_intermediate(&env);
    let text = x509_text(&intermediate.crt);
    assert!(text.contains("pathlen:0"), "the internal intermediate should say pathlen:0:\n{text}");
    let sub = sign(&env, "rogue-sub-ca", &intermediate, &ca_ext("", ""), None);
    let leaf = sign(&env, "under-sub-ca", &sub, &client_ext("digitalSignature", ""), None);
    // openssl, the independent judge, refuses the same chain.
    let o = openssl(&[
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        s(&env.root()),
        "-untrusted",
        s(&bundle(&env, "untrusted", &[&sub.crt, &intermediate.crt])),
        s(&leaf.crt),
    ]);
    assert_ne!(o.code, 0, "openssl verify accepts a chain the intermediate's pathlen:0 forbids: {}", o.all());

    refused_on_both(&env, INTERNAL, &presenting(&env, &leaf, &[&sub]), "path_length", &[]);
}

#[test]
fn a_chain_of_five_sub_cas_below_the_intermediate_is_refused() {
    let env = Env::new();
    let mut issuer = internal_intermediate(&env);
    let mut subs = Vec::new();
    for i in 1..=5 {
        let sub = sign(&env, &format!("sub-ca-{i}"), &issuer, &ca_ext("", ""), None);
        subs.push(sub.clone());
        issuer = sub;
    }
    let leaf = sign(&env, "deep-leaf", &issuer, &client_ext("digitalSignature", ""), None);
    let sent: Vec<&Cert> = subs.iter().rev().collect();
    refused_on_both(&env, INTERNAL, &presenting(&env, &leaf, &sent), "path_length", &[]);
}

#[test]
fn a_leaf_whose_key_usage_lacks_digital_signature_is_refused() {
    let env = Env::new();
    let leaf = sign(&env, "no-digital-signature", &internal_intermediate(&env), &client_ext("keyAgreement", ""), None);
    let ku = x509_ext(&leaf.crt, "keyUsage");
    assert!(ku.contains("Key Agreement") && !ku.contains("Digital Signature"), "{ku}");
    refused_on_both(&env, INTERNAL, &leaf, "bad_key_usage", &[]);
}

fn rsa_1024_client(env: &Env) -> Cert {
    let leaf = sign(env, "rsa-1024", &internal_intermediate(env), &client_ext("digitalSignature", ""), Some(1024));
    let text = x509_text(&leaf.crt);
    assert!(text.contains("(1024 bit)"), "expected an RSA-1024 certificate:\n{text}");
    leaf
}

/// `GET PATH` presenting `cert` over `openssl s_client` at security level 0, so that it offers
/// an RSA-1024 key as an old client would (curl, at Debian's level 2, refuses to load one).
/// `-quiet` reads until the gateway closes (`Connection: close`); returns (status, response).
fn weak_client_get(gw: &Gateway, cert: &Cert, path: &str, tls: &[&str]) -> (u16, Out) {
    let mut args =
        vec!["-servername", "localhost", "-CAfile", s(&gw.root), "-cert", s(&cert.crt), "-key", s(&cert.key)];
    args.extend_from_slice(&["-cipher", "DEFAULT@SECLEVEL=0", "-quiet"]);
    args.extend_from_slice(tls);
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    let o = gw.s_client(&args, &request);
    let status = o.stdout.lines().next().and_then(|l| l.strip_prefix("HTTP/1.1 ")).and_then(|l| l.get(..3));
    (status.and_then(|c| c.parse().ok()).unwrap_or(0), o)
}

#[test]
fn an_rsa_1024_client_on_an_optional_site_completes_the_handshake_and_is_refused_as_weak_key() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = gateway(&env, &up, "optional.toml", &optional_site(INTERNAL));
    let weak = rsa_1024_client(&env);
    for tls in [&["-tls1_3"][..], &["-tls1_2"]] {
        let (status, o) = weak_client_get(&gw, &weak, "/", tls);
        assert_eq!(
            status,
            200,
            "{tls:?}: the handshake completes, the open route serves:\n{}\n{}",
            o.all(),
            gw.proc.dump()
        );
        assert!(
            !o.stdout.to_lowercase().contains("client-cert"),
            "{tls:?}: a refused certificate is not forwarded:\n{}",
            o.stdout
        );
        let (status, o) = weak_client_get(&gw, &weak, "/test1", tls);
        assert_eq!(status, 403, "{tls:?}: the route requiring a certificate refuses it:\n{}", o.all());
        assert!(o.stdout.contains("route_requires_certificate"), "{}", o.stdout);
    }
    let line = gw
        .wait_refusal("client_cert_refused", "weak_key", LOG_WAIT)
        .unwrap_or_else(|| panic!("no client_cert_refused line with reason weak_key\n{}", gw.proc.dump()));
    assert!(line["detail"].as_str().is_some_and(|d| d.contains("1024")), "the detail names the key size: {line}");
    assert_eq!(line["client_serial"].as_str(), Some(weak.serial.as_str()), "{line}");
    let verdicts: Vec<_> =
        gw.access_lines().iter().map(|l| (l["tls_version"].clone(), l["client_verify"].clone())).collect();
    for version in ["TLSv1.3", "TLSv1.2"] {
        assert!(
            verdicts.contains(&(Value::from(version), Value::from("refused:weak_key"))),
            "{version}: access lines should say refused:weak_key: {verdicts:?}"
        );
    }
}

#[test]
fn an_rsa_1024_client_on_a_require_site_fails_the_handshake_as_weak_key() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = gateway(&env, &up, "require.toml", &require_site(INTERNAL));
    let (status, o) = weak_client_get(&gw, &rsa_1024_client(&env), "/", &[]);
    assert_eq!(status, 0, "the handshake must fail:\n{}", o.all());
    let line = gw
        .wait_refusal("handshake_refused", "weak_key", LOG_WAIT)
        .unwrap_or_else(|| panic!("no handshake_refused line with reason weak_key\n{}", gw.proc.dump()));
    assert!(line["detail"].as_str().is_some_and(|d| d.contains("1024")), "{line}");
    assert!(gw.access_lines().is_empty(), "nothing was served\n{}", gw.proc.dump());
}

// ---------------------------------------------------------------- ca_files bundles

/// A partner CA made with openssl: a root and an intermediate (pathlen:0, names permitted
/// under `partner.test`).
struct Partner {
    root: Cert,
    intermediate: Cert,
}

fn partner(env: &Env) -> Partner {
    let root = self_signed_root(env, "partner-root");
    let constraints = "nameConstraints = critical,permitted;DNS:partner.test\n";
    let intermediate = sign(env, "partner-issuing", &root, &ca_ext(",pathlen:0", constraints), None);
    Partner { root, intermediate }
}

fn ca_files(files: &[&Path]) -> String {
    let list: Vec<String> = files.iter().map(|f| format!("\"{}\"", s(f))).collect();
    format!("trust = {{ ca_files = [{}] }}", list.join(", "))
}

#[test]
fn a_bundle_of_root_and_intermediate_anchors_at_the_root_and_keeps_the_intermediate_constraints() {
    let env = Env::new();
    let p = partner(&env);
    let trust = ca_files(&[&bundle(&env, "partner-bundle", &[&p.intermediate.crt, &p.root.crt])]);

    let carol = sign(
        &env,
        "carol",
        &p.intermediate,
        &client_ext("digitalSignature", "subjectAltName = DNS:carol.partner.test\n"),
        None,
    );
    assert_leaf_only(&carol);
    verified_on_both(&env, &trust, &carol);

    let sub = sign(&env, "partner-sub-ca", &p.intermediate, &ca_ext("", ""), None);
    let under = sign(
        &env,
        "under-partner-sub",
        &sub,
        &client_ext("digitalSignature", "subjectAltName = DNS:x.partner.test\n"),
        None,
    );
    refused_on_both(&env, &trust, &presenting(&env, &under, &[&sub]), "path_length", &[]);

    let outside = sign(
        &env,
        "outside",
        &p.intermediate,
        &client_ext("digitalSignature", "subjectAltName = DNS:evil.example\n"),
        None,
    );
    refused_on_both(&env, &trust, &outside, "name_constraints", &[]);
}

#[test]
fn a_bundle_holding_only_an_intermediate_is_still_an_anchor() {
    let env = Env::new();
    let p = partner(&env);
    let trust = ca_files(&[&p.intermediate.crt]);
    let dave = sign(
        &env,
        "dave",
        &p.intermediate,
        &client_ext("digitalSignature", "subjectAltName = DNS:dave.partner.test\n"),
        None,
    );
    verified_on_both(&env, &trust, &dave);
}
