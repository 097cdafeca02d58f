//! testssl.sh (Debian's), the scanner auditors run against a TLS endpoint, on a
//! gateway site as a deployment has it: a certificate from the internal CA with a
//! CRL distribution point, client certificates asked for (`optional`), HSTS.
//!
//! Every finding testssl grades is read from its JSON report. Nothing may be graded
//! HIGH or CRITICAL but `cipher_order`, which is chosen: the gateway offers only
//! AEAD suites with forward secrecy and lets the client pick among them, as
//! Mozilla's intermediate configuration and nginx's default do (a client without
//! AES hardware then gets ChaCha20). Beyond the grades, the protocols, cipher
//! classes and named attacks are checked one by one, so a finding that testssl
//! grades lower, or renames, is not missed either.
mod support;
use support::*;

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::time::Duration;

/// Findings testssl may grade above MEDIUM here, with why.
const CHOSEN: [&str; 1] = ["cipher_order"];

#[test]
fn testssl_finds_no_weak_protocol_cipher_or_known_attack() {
    require("testssl");
    let env = Env::new();
    // As a CA that publishes its CRL has it: the site's certificate names where.
    env.set_crl_url("http://ca.test/intermediate.crl");
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(
        &env,
        &up,
        "",
        "mtls = \"optional\"\ntrust = { internal_ca = true }\nhsts_max_age = 31536000\n",
    );

    let report = env.path().join("testssl.json");
    let mut cmd = Command::new("testssl");
    cmd.args(["--quiet", "--color", "0", "--warnings", "off", "--nodns", "none", "--ip", "127.0.0.1"])
        .args(["--connect-timeout", "10", "--openssl-timeout", "10"])
        .args(["--add-ca", s(&env.root()), "--jsonfile", s(&report)])
        .arg(format!("localhost:{}", gw.https))
        .current_dir(env.path());
    let out = run_limited(cmd, Duration::from_secs(900));
    let text = fs::read_to_string(&report).unwrap_or_else(|e| panic!("no testssl report ({e}): {}", out.all()));
    let findings: Vec<Value> = serde_json::from_str(&text).expect("testssl's JSON report");
    let by_id: BTreeMap<&str, (&str, &str)> = findings
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap_or(""),
                (f["severity"].as_str().unwrap_or(""), f["finding"].as_str().unwrap_or("")),
            )
        })
        .collect();
    let finding = |id: &str| {
        let ids: Vec<&str> = by_id.keys().copied().collect();
        by_id.get(id).copied().unwrap_or_else(|| panic!("testssl reported no {id}, only {ids:?}:\n{}", out.all()))
    };

    // The scan reached the site and spoke HTTP to it (else half the checks are skipped).
    let (_, negotiated) = finding("protocol_negotiated");
    assert!(negotiated.contains("TLS1.3"), "default protocol: {negotiated}");
    assert_eq!(finding("service").1, "HTTP", "service: {:?}", finding("service"));
    assert!(finding("HSTS_time").1.contains("31536000"), "HSTS: {:?}", finding("HSTS_time"));

    let graded: Vec<String> = findings
        .iter()
        .filter(|f| matches!(f["severity"].as_str(), Some("HIGH" | "CRITICAL")))
        .filter(|f| !CHOSEN.contains(&f["id"].as_str().unwrap_or("")))
        .map(|f| format!("{} {}: {}", f["severity"], f["id"], f["finding"]))
        .collect();
    assert!(graded.is_empty(), "testssl grades these HIGH or CRITICAL:\n{}", graded.join("\n"));

    for id in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        assert_eq!(finding(id).1, "not offered", "{id}");
    }
    assert!(finding("TLS1_3").1.starts_with("offered"), "{:?}", finding("TLS1_3"));
    for class in ["NULL", "aNULL", "EXPORT", "LOW", "3DES_IDEA", "AVERAGE"] {
        let id = format!("cipherlist_{class}");
        assert_eq!(finding(&id).1, "not offered", "{id}");
    }
    assert_eq!(finding("PFS").0, "OK", "forward secrecy: {:?}", finding("PFS"));
    for attack in [
        "heartbleed",
        "CCS",
        "ticketbleed",
        "ROBOT",
        "secure_renego",
        "secure_client_renego",
        "CRIME_TLS",
        "BREACH",
        "POODLE_SSL",
        "fallback_SCSV",
        "SWEET32",
        "FREAK",
        "DROWN",
        "LOGJAM",
        "BEAST",
        "LUCKY13",
        "RC4",
    ] {
        let (severity, text) = finding(attack);
        assert!(matches!(severity, "OK" | "INFO"), "{attack}: {severity} {text}");
        assert!(!text.starts_with("VULNERABLE") && !text.contains("potentially VULNERABLE"), "{attack}: {text}");
    }
    assert!(finding("cert_crlDistributionPoints").1.contains("http://ca.test/intermediate.crl"));
    assert_eq!(finding("cert_chain_of_trust").0, "OK", "{:?}", finding("cert_chain_of_trust"));
}
