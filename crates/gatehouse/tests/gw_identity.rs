//! The identity the upstream sees: Client-Cert (RFC 9440 sf-binary of the leaf DER),
//! Client-Cert-Chain, spoofed identity/forwarding headers removed, X-Forwarded-*,
//! X-Request-Id (= the access line's request_id), Host kept, and the xfcc and none formats.
mod support;
use support::*;

const OPTIONAL: &str = "mtls = \"optional\"\ntrust = { internal_ca = true }\n";

const SPOOF: [&str; 14] = [
    "-H",
    "Client-Cert: :c3Bvb2ZlZA==:",
    "-H",
    "Client-Cert-Chain: :c3Bvb2ZlZA==:",
    "-H",
    "X-Forwarded-Client-Cert: Hash=0000;Subject=\"CN=admin\"",
    "-H",
    "X-Forwarded-For: 6.6.6.6",
    "-H",
    "X-Forwarded-Proto: http",
    "-H",
    "X-Forwarded-Host: evil.example",
    "-H",
    "Forwarded: for=6.6.6.6;proto=http",
];

#[test]
fn client_cert_is_colon_base64_of_the_leaf_der() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "", OPTIONAL);
    let alice = env.client("alice");
    for proto in ["--http1.1", "--http2"] {
        let r = gw.curl_cert("localhost", "/id", &alice, &[proto]);
        assert!(r.ok(), "{r:?}");
        let got = r.upstream();
        assert_eq!(got.one("client-cert"), Some(format!(":{}:", base64(&alice.der()))), "{proto}: {got:?}");
        // curl sent only the leaf: no chain header.
        assert!(got.all("client-cert-chain").is_empty(), "{proto}: {got:?}");
        assert!(got.all("x-forwarded-client-cert").is_empty(), "rfc9440 format sends no XFCC: {got:?}");
    }
}

#[test]
fn client_cert_chain_carries_the_rest_of_what_the_client_sent() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "", OPTIONAL);
    let alice = env.client("alice");
    let fullchain = alice.fullchain.clone().unwrap();
    let r = gw.curl("localhost", "/", &["--cert", s(&fullchain), "--key", s(&alice.key)]);
    assert!(r.ok(), "{r:?}");
    let got = r.upstream();
    assert_eq!(got.one("client-cert"), Some(format!(":{}:", base64(&alice.der()))), "{got:?}");
    let inter = pem_to_der(&std::fs::read_to_string(env.intermediate()).unwrap());
    assert_eq!(got.one("client-cert-chain"), Some(format!(":{}:", base64(&inter))), "{got:?}");
}

#[test]
fn spoofed_identity_and_forwarding_headers_are_replaced_or_removed() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "", OPTIONAL);
    let alice = env.client("alice");
    for proto in ["--http1.1", "--http2"] {
        // With a verified certificate: the real identity replaces the spoofed one.
        let mut args = vec![proto];
        args.extend_from_slice(&SPOOF);
        let r = gw.curl_cert("localhost", "/", &alice, &args);
        assert!(r.ok(), "{r:?}");
        let got = r.upstream();
        assert_eq!(got.one("client-cert"), Some(format!(":{}:", base64(&alice.der()))), "{proto}: {got:?}");
        assert!(got.all("client-cert-chain").is_empty(), "{proto}: spoofed chain must go: {got:?}");
        assert!(got.all("x-forwarded-client-cert").is_empty(), "{proto}: spoofed XFCC must go: {got:?}");
        assert_eq!(got.one("x-forwarded-for").as_deref(), Some("127.0.0.1"), "{proto}: {got:?}");
        assert_eq!(got.one("x-forwarded-proto").as_deref(), Some("https"), "{proto}: {got:?}");
        // X-Forwarded-Host: the host the client asked for (with or without the port).
        let xfh = got.one("x-forwarded-host").unwrap_or_default();
        assert!(xfh == "localhost" || xfh == format!("localhost:{}", gw.https), "{proto}: {got:?}");
        assert!(got.all("forwarded").is_empty(), "{proto}: spoofed Forwarded must go: {got:?}");
        let all = format!("{:?}", got.headers);
        assert!(!all.contains("6.6.6.6") && !all.contains("c3Bvb2ZlZA") && !all.contains("evil"), "{proto}: {all}");

        // Without a certificate: spoofed identity is removed and nothing replaces it.
        let mut args = vec![proto];
        args.extend_from_slice(&SPOOF);
        let r = gw.curl("localhost", "/", &args);
        assert!(r.ok(), "{r:?}");
        let got = r.upstream();
        for h in ["client-cert", "client-cert-chain", "x-forwarded-client-cert", "forwarded"] {
            assert!(got.all(h).is_empty(), "{proto}: spoofed {h} reached the upstream: {got:?}");
        }
        assert_eq!(got.one("x-forwarded-for").as_deref(), Some("127.0.0.1"), "{proto}: {got:?}");
        assert_eq!(got.one("x-forwarded-proto").as_deref(), Some("https"), "{proto}: {got:?}");
    }
}

#[test]
fn request_id_is_sent_upstream_and_logged() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "", OPTIONAL);
    let mut ids = Vec::new();
    for proto in ["--http1.1", "--http2"] {
        let r = gw.curl("localhost", "/rid", &[proto, "-H", "X-Request-Id: client-chosen"]);
        assert!(r.ok(), "{r:?}");
        let id = r.upstream().one("x-request-id").expect("X-Request-Id sent upstream");
        assert!(!id.is_empty());
        let line = gw
            .access_line_for(&id)
            .unwrap_or_else(|| panic!("no access line with request_id {id}\n{}", gw.proc.dump()));
        assert_eq!(line["path"], "/rid", "{line}");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "request ids must differ");
}

#[test]
fn host_is_kept_http1() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "", OPTIONAL);
    let r = gw.curl("localhost", "/", &["--http1.1"]);
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.upstream().one("host"), Some(format!("localhost:{}", gw.https)), "{r:?}");
}

#[test]
fn host_is_kept_http2() {
    // HTTP/2 carries the Host as :authority; the upstream (HTTP/1.1) should get the same value.
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "", OPTIONAL);
    let r = gw.curl("localhost", "/", &["--http2"]);
    assert!(r.ok() && r.http_version == "2", "{r:?}");
    assert_eq!(r.upstream().one("host"), Some(format!("localhost:{}", gw.https)), "{r:?}");
}

#[test]
fn xfcc_format_sends_x_forwarded_client_cert_with_the_sha256_hash() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "[identity]\nformat = \"xfcc\"\n", OPTIONAL);
    let alice = env.client("alice");
    let r = gw.curl_cert("localhost", "/", &alice, &["-H", "X-Forwarded-Client-Cert: Hash=0000"]);
    assert!(r.ok(), "{r:?}");
    let got = r.upstream();
    let xfcc = got.one("x-forwarded-client-cert").unwrap_or_else(|| panic!("no XFCC header: {got:?}"));
    let hash =
        xfcc.split(';').find_map(|p| p.trim().strip_prefix("Hash=")).unwrap_or_else(|| panic!("no Hash= in {xfcc}"));
    assert_eq!(hash.to_lowercase(), alice.sha256_hex(), "Hash= must be the SHA-256 of the leaf DER: {xfcc}");
    assert!(got.all("client-cert").is_empty(), "xfcc format: no Client-Cert: {got:?}");

    // No certificate: the spoofed header is removed.
    let r = gw.curl("localhost", "/", &["-H", "X-Forwarded-Client-Cert: Hash=0000"]);
    assert!(r.ok(), "{r:?}");
    assert!(r.upstream().all("x-forwarded-client-cert").is_empty(), "{r:?}");
}

#[test]
fn format_none_sends_no_identity_and_still_strips_spoofed_copies() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "[identity]\nformat = \"none\"\n", OPTIONAL);
    let alice = env.client("alice");
    let r = gw.curl_cert("localhost", "/", &alice, &SPOOF);
    assert!(r.ok(), "{r:?}");
    let got = r.upstream();
    for name in ["client-cert", "client-cert-chain", "x-forwarded-client-cert", "forwarded"] {
        assert!(got.all(name).is_empty(), "format none: no {name}: {got:?}");
    }
    // The forwarding headers are the gateway's own, not the client's.
    assert_eq!(got.one("x-forwarded-proto").as_deref(), Some("https"), "{got:?}");
    assert_eq!(got.one("x-forwarded-host").as_deref(), Some("localhost"), "{got:?}");
    assert_ne!(got.one("x-forwarded-for").as_deref(), Some("6.6.6.6"), "{got:?}");
}
