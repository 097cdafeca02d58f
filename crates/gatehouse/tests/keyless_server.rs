//! `gatehouse keyserver` (issue 11, item 2): a directory of private keys served to
//! gateways over mutual TLS in the gokeyless protocol. One key server (a real
//! process, on a CA from `gatehouse ca init`) serves most tests; each signature is
//! judged by `openssl pkeyutl -verify` against the key's public half, each refusal
//! is the error code the spec gives, and the frames of the spec's worked examples
//! are compared byte for byte.
mod support;
use support::keyless::*;
use support::*;

use std::collections::HashSet;
use std::time::Duration;

/// The request selector of a test key.
fn by_ski(key: &TestKey) -> KeySelector {
    KeySelector::Ski(Ski(key.ski))
}

#[test]
fn rsa_pkcs1_v1_5_signatures_of_pkcs8_and_pkcs1_keys_verify() {
    let ks = KeyServer::shared();
    let mut gw = ks.connect();
    for (id, name, hash, opcode) in [
        (1, "rsa-pkcs8", "sha256", Opcode::RsaSignSha256),
        (2, "rsa-pkcs1", "sha256", Opcode::RsaSignSha256),
        (3, "rsa-pkcs8", "sha384", Opcode::RsaSignSha384),
        (4, "rsa-pkcs1", "sha512", Opcode::RsaSignSha512),
    ] {
        let key = ks.key(name);
        let digest = digest(hash, TRANSCRIPT);
        let response = gw.call(&Message::request(id, opcode, by_ski(key), digest.clone()));
        let sig = signature(&response);
        assert_eq!(sig.len(), 256, "an RSA-2048 signature is 256 bytes");
        let opts = ["-pkeyopt", &format!("digest:{hash}")];
        assert!(openssl_verifies(&key.public, &digest, sig, &opts), "{name} {hash}: openssl rejects the signature");
        let other = digest_of_other(hash);
        assert!(!openssl_verifies(&key.public, &other, sig, &opts), "{name}: the judge accepts anything");
    }
}

#[test]
fn key_files_sign_legacy_pkcs1_digests_and_decrypt_raw_rsa() {
    let ks = KeyServer::shared();
    let mut gw = ks.connect();
    // SHA-1 and SHA-224 in a DigestInfo; TLS 1.0/1.1's bare MD5 || SHA-1 without one.
    for (id, name, hash, opcode) in [
        (5, "rsa-pkcs8", "sha1", Opcode::RsaSignSha1),
        (6, "rsa-pkcs1", "sha224", Opcode::RsaSignSha224),
        (7, "rsa-pkcs8", "md5-sha1", Opcode::RsaSignMd5Sha1),
    ] {
        let key = ks.key(name);
        let digest = openssl_digest(hash, TRANSCRIPT);
        let response = gw.call(&Message::request(id, opcode, by_ski(key), digest.clone()));
        let sig = signature(&response);
        let opts = ["-pkeyopt", &format!("digest:{hash}")];
        assert!(openssl_verifies(&key.public, &digest, sig, &opts), "{name} {hash}: openssl rejects the signature");
        let other = openssl_digest(hash, b"another transcript");
        assert!(!openssl_verifies(&key.public, &other, sig, &opts), "{name}: the judge accepts anything");
    }
    for (id, name) in [(8, "rsa-pkcs8"), (9, "rsa-pkcs1")] {
        let key = ks.key(name);
        let (block, cipher) = raw_rsa_ciphertext(&key.public);
        let response = gw.call(&Message::request(id, Opcode::RsaDecrypt, by_ski(key), cipher));
        assert_eq!(signature(&response), &block[..], "{name}: m = c^d mod n, left-padded, padding not removed");
    }
}

fn digest_of_other(hash: &str) -> Vec<u8> {
    digest(hash, b"another transcript")
}

#[test]
fn rsa_pss_sha256_signature_verifies_with_mgf1_sha256_and_a_32_byte_salt() {
    let ks = KeyServer::shared();
    let mut gw = ks.connect();
    let key = ks.key("rsa-pkcs8");
    let digest = digest("sha256", TRANSCRIPT);
    let response = gw.call(&Message::request(7, Opcode::RsaPssSignSha256, by_ski(key), digest.clone()));
    let opts = [
        "-pkeyopt",
        "digest:sha256",
        "-pkeyopt",
        "rsa_padding_mode:pss",
        "-pkeyopt",
        "rsa_pss_saltlen:32",
        "-pkeyopt",
        "rsa_mgf1_md:sha256",
    ];
    assert!(openssl_verifies(&key.public, &digest, signature(&response), &opts), "openssl rejects the PSS signature");
    let mut saltless = opts;
    saltless[5] = "rsa_pss_saltlen:0";
    assert!(!openssl_verifies(&key.public, &digest, signature(&response), &saltless), "salt length not checked");
}

#[test]
fn ecdsa_p256_sec1_and_pkcs8_and_p384_der_signatures_verify() {
    let ks = KeyServer::shared();
    let mut gw = ks.connect();
    for (id, name, hash, opcode) in [
        (11, "p256-sec1", "sha256", Opcode::EcdsaSignSha256),
        (12, "p256-pkcs8", "sha256", Opcode::EcdsaSignSha256),
        (13, "p384-der", "sha384", Opcode::EcdsaSignSha384),
    ] {
        let key = ks.key(name);
        let digest = digest(hash, TRANSCRIPT);
        let response = gw.call(&Message::request(id, opcode, by_ski(key), digest.clone()));
        let sig = signature(&response);
        assert_eq!(sig.first(), Some(&0x30), "{name}: not a DER SEQUENCE {{r, s}}: {sig:02X?}");
        assert!(openssl_verifies(&key.public, &digest, sig, &[]), "{name}: openssl rejects the ECDSA signature");
        assert!(!openssl_verifies(&key.public, &digest_of_other(hash), sig, &[]), "{name}: the judge accepts anything");
    }
}

#[test]
fn ed25519_signs_the_whole_message() {
    let ks = KeyServer::shared();
    let mut gw = ks.connect();
    let key = ks.key("ed25519");
    let response = gw.call(&Message::request(21, Opcode::Ed25519Sign, by_ski(key), TRANSCRIPT.to_vec()));
    let sig = signature(&response);
    assert_eq!(sig.len(), 64, "an Ed25519 signature is 64 bytes");
    assert!(openssl_verifies(&key.public, TRANSCRIPT, sig, &["-rawin"]), "openssl rejects the Ed25519 signature");
    assert!(!openssl_verifies(&key.public, b"another message", sig, &["-rawin"]), "the judge accepts anything");
}

/// The spec's worked ping frame (id 1, empty payload), byte for byte.
fn worked_ping() -> Vec<u8> {
    let mut frame = vec![0x01, 0x00, 0x03, 0xF8, 0x00, 0x00, 0x00, 0x01, 0x11, 0x00, 0x01, 0xF1, 0x20, 0x03, 0xF1];
    frame.resize(1024, 0);
    frame
}

#[test]
fn ping_is_answered_with_a_pong_echoing_its_payload() {
    let ks = KeyServer::shared();
    let mut gw = ks.connect();
    // The spec's worked ping; the pong is the same frame with opcode 0xF2.
    gw.send_raw(&worked_ping()).unwrap();
    let mut pong = worked_ping();
    pong[11] = 0xF2;
    assert_eq!(gw.recv_frame().unwrap(), pong, "the pong to the spec's worked ping");
    let response = gw.call(&Message::ping(0xDEAD_BEEF, b"are you there?".to_vec()));
    assert_eq!((response.opcode, response.payload()), (Some(Opcode::Pong), &b"are you there?"[..]));
}

#[test]
fn refusals_carry_the_spec_error_codes() {
    let ks = KeyServer::shared();
    let mut gw = ks.connect();
    let code = |gw: &mut Client, request: Message| gw.call(&request).error_code();
    let sha256 = digest("sha256", TRANSCRIPT);
    let (rsa, p256) = (by_ski(ks.key("rsa-pkcs8")), by_ski(ks.key("p256-pkcs8")));

    // Unknown SKI: 0x02, as the spec's worked reply to id 0x2A, byte for byte.
    let unknown = KeySelector::Ski(Ski([0x5A; 20]));
    gw.send(&Message::request(0x2A, Opcode::EcdsaSignSha256, unknown, sha256.clone()));
    let mut expected = vec![0x01, 0x00, 0x03, 0xF8, 0x00, 0x00, 0x00, 0x2A, 0x11, 0x00, 0x01, 0xFF];
    expected.extend_from_slice(&[0x12, 0x00, 0x01, 0x02, 0x20, 0x03, 0xED]);
    expected.resize(1024, 0);
    assert_eq!(gw.recv_frame().unwrap(), expected, "the spec's key-not-found reply");

    // No SKI: 0x08.
    let no_ski =
        Message { id: 31, opcode: Some(Opcode::EcdsaSignSha256), payload: Some(sha256.clone()), ..Message::default() };
    assert_eq!(code(&mut gw, no_ski), Some(ErrorCode::Internal));
    // A digest of the wrong length for the opcode's hash: 0x01.
    assert_eq!(
        code(&mut gw, Message::request(32, Opcode::EcdsaSignSha384, p256, sha256.clone())),
        Some(ErrorCode::CryptoFailure)
    );
    // A response opcode as a request: 0x06; an unknown opcode: 0x05.
    assert_eq!(code(&mut gw, Message::success(33, vec![1, 2, 3])), Some(ErrorCode::UnexpectedOpcode));
    assert_eq!(code(&mut gw, Message::request(34, Opcode::Unknown(0x99), p256, vec![])), Some(ErrorCode::BadOpcode));
    // Seal, unseal and custom are optional and not offered: 0x05.
    assert_eq!(code(&mut gw, Message::request(35, Opcode::Seal, p256, vec![1])), Some(ErrorCode::BadOpcode));
    // An opcode for another kind of key: 0x01.
    assert_eq!(
        code(&mut gw, Message::request(36, Opcode::EcdsaSignSha256, rsa, sha256.clone())),
        Some(ErrorCode::CryptoFailure)
    );
    assert_eq!(
        code(&mut gw, Message::request(37, Opcode::RsaSignSha256, p256, sha256.clone())),
        Some(ErrorCode::CryptoFailure)
    );
    // RSA decrypt of a ciphertext one byte shorter than the modulus: 0x01 too.
    assert_eq!(
        code(&mut gw, Message::request(38, Opcode::RsaDecrypt, rsa, vec![1; 255])),
        Some(ErrorCode::CryptoFailure)
    );
    // The connection still serves.
    assert_eq!(gw.call(&Message::ping(39, vec![])).opcode, Some(Opcode::Pong));
}

#[test]
fn fifty_requests_pipelined_on_one_connection_are_all_answered_with_their_ids() {
    let ks = KeyServer::shared();
    let mut gw = ks.connect();
    let sha256 = digest("sha256", TRANSCRIPT);
    let mut frames = Vec::new();
    let mut expected = HashSet::new();
    for i in 0..50u32 {
        let id = 5000 + i * 7;
        let request = match i % 4 {
            0 => Message::request(id, Opcode::RsaSignSha256, by_ski(ks.key("rsa-pkcs1")), sha256.clone()),
            1 => Message::request(id, Opcode::EcdsaSignSha256, by_ski(ks.key("p256-sec1")), sha256.clone()),
            2 => Message::request(id, Opcode::Ed25519Sign, by_ski(ks.key("ed25519")), TRANSCRIPT.to_vec()),
            _ => Message::ping(id, id.to_be_bytes().to_vec()),
        };
        frames.extend_from_slice(&request.encode().unwrap());
        expected.insert(id);
    }
    // All 50 in one write: none is answered before the last is sent.
    gw.send_raw(&frames).unwrap();
    let mut answered = HashSet::new();
    for _ in 0..50 {
        let response = gw.recv().unwrap_or_else(|e| panic!("{} answers, then: {e}", answered.len()));
        let ok = matches!(response.opcode, Some(Opcode::Response | Opcode::Pong));
        assert!(ok, "request {} failed: {response:?}", response.id);
        assert!(answered.insert(response.id), "request {} answered twice", response.id);
    }
    assert_eq!(answered, expected, "every id answered once");
}

#[test]
fn a_malformed_frame_closes_the_connection_without_a_reply() {
    let ks = KeyServer::shared();
    let mut gw = ks.connect();
    assert_eq!(gw.call(&Message::ping(1, vec![])).opcode, Some(Opcode::Pong));
    // An opcode item of two bytes is malformed (the spec).
    gw.send_raw(&[0x01, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x02, 0x11, 0x00, 0x02, 0xF1, 0xF1]).unwrap();
    gw.closed_without_reply().unwrap_or_else(|e| panic!("after a malformed frame: {e}"));
    let logged = wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
        ks.log().lines().find(|l| l.contains("malformed frame") && l.contains("opcode item")).map(str::to_owned)
    });
    let line = logged.unwrap_or_else(|| panic!("no log line for the malformed frame:\n{}", ks.log()));
    assert!(line.contains("peer=127.0.0.1:"), "the log line names no peer: {line}");
}

#[test]
fn another_major_version_is_answered_0x04_then_closed() {
    let ks = KeyServer::shared();
    let mut gw = ks.connect();
    let mut frame = Message::ping(77, vec![]).encode().unwrap();
    frame[0] = 0x02;
    gw.send_raw(&frame).unwrap();
    let response = gw.recv().expect("an answer to the version 2 frame");
    assert_eq!((response.id, response.error_code()), (77, Some(ErrorCode::VersionMismatch)));
    gw.closed_without_reply().unwrap_or_else(|e| panic!("after the version mismatch: {e}"));
}

#[test]
fn a_connection_without_requests_for_30_s_is_closed() {
    let ks = KeyServer::shared();
    let mut gw = ks.connect();
    assert_eq!(gw.call(&Message::ping(1, vec![])).opcode, Some(Opcode::Pong));
    let last_request = std::time::Instant::now();
    gw.closed_within(Duration::from_secs(45)).unwrap_or_else(|e| panic!("an idle connection: {e}"));
    let idle = last_request.elapsed();
    assert!(idle >= Duration::from_secs(29), "closed after {} ms, before the 30 s idle time", ms(idle));
}

#[test]
fn a_client_certificate_from_another_ca_or_none_is_refused_at_the_handshake() {
    let ks = KeyServer::shared();
    let stranger = ks.env.foreign_client("stranger");
    for (who, identity, reason) in
        [("another CA", Some(&stranger), "unknown_issuer"), ("no certificate", None, "no_client_certificate")]
    {
        // In TLS 1.3 the client finishes first; the refusal comes with the first read.
        let served = Client::connect(ks.port, &ks.root(), identity, Offer::Default).and_then(|mut gw| {
            gw.send(&Message::ping(1, vec![]));
            gw.recv()
        });
        assert!(served.is_err(), "{who}: the key server answered {served:?}");
        let logged = wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
            ks.log().lines().find(|l| l.contains("handshake refused") && l.contains(reason)).map(str::to_owned)
        });
        assert!(logged.is_some(), "{who}: no 'handshake refused' with reason {reason} in the log:\n{}", ks.log());
    }
}

#[test]
fn tls12_with_the_cloudflare_edge_suites_is_accepted() {
    // ECDHE-ECDSA-AES256-GCM-SHA384 with the shared server's EC identity.
    let ks = KeyServer::shared();
    let suite = rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384;
    let mut gw = ks.connect_offering(Offer::Tls12(suite));
    assert_eq!(gw.negotiated(), (Some(rustls::ProtocolVersion::TLSv1_2), Some(suite)));
    assert_eq!(gw.call(&Message::ping(1, vec![])).opcode, Some(Opcode::Pong));

    // ECDHE-RSA-AES256-GCM-SHA384 with a key server whose identity is RSA.
    let rsa = KeyServer::start("rsa-2048");
    let suite = rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384;
    let mut gw = rsa.connect_offering(Offer::Tls12(suite));
    assert_eq!(gw.negotiated(), (Some(rustls::ProtocolVersion::TLSv1_2), Some(suite)));
    let key = rsa.key("p384-der");
    let digest = digest("sha384", TRANSCRIPT);
    let response = gw.call(&Message::request(2, Opcode::EcdsaSignSha384, by_ski(key), digest.clone()));
    assert!(openssl_verifies(&key.public, &digest, signature(&response), &[]), "openssl rejects the signature");
}

#[test]
fn metrics_count_operations_errors_and_latency_by_key_type() {
    let ks = KeyServer::shared();
    let mut gw = ks.connect();
    let sha256 = digest("sha256", TRANSCRIPT);
    signature(&gw.call(&Message::request(1, Opcode::EcdsaSignSha256, by_ski(ks.key("p256-pkcs8")), sha256.clone())));
    let unknown = KeySelector::Ski(Ski([0x77; 20]));
    assert_eq!(
        gw.call(&Message::request(2, Opcode::EcdsaSignSha256, unknown, sha256)).error_code(),
        Some(ErrorCode::KeyNotFound)
    );
    // $ curl http://127.0.0.1:METRICS/metrics
    let body = curl(&[format!("http://127.0.0.1:{}/metrics", ks.metrics_port)]).body;
    for line in [
        "keyserver_operations_total{family=\"ecdsa\",result=\"ok\"}",
        "keyserver_operations_total{family=\"ecdsa\",result=\"error\"}",
        "keyserver_errors_total{code=\"key_not_found\"}",
        "keyserver_operation_duration_seconds_count{key_type=\"ecdsa_p256\"}",
        "keyserver_connections_total",
    ] {
        assert!(body.lines().any(|l| l.starts_with(line)), "no {line} in /metrics:\n{body}");
    }
}

#[test]
fn a_bad_configuration_exits_2_naming_the_key_the_file_or_pkcs11() {
    let d = tmp();
    mkdir(d.join("keys"));
    let head = "listen = \"127.0.0.1:1\"\ncertificate = { cert = \"ks.crt\", key = \"ks.key\" }\n";
    let run = |name: &str, text: &str| {
        let file = d.join(name);
        write(&file, text);
        gh_fails(&d, &["keyserver", "--config", s(&file)], 2)
    };
    // $ gatehouse keyserver --config unknown.toml   (a key the schema does not have)
    let err = run("unknown.toml", &format!("{head}colour = \"blue\"\n[[keys]]\ndir = \"keys\"\n"));
    assert!(err.contains("colour") && err.contains("line 3"), "the unknown key and its line: {err}");
    // $ gatehouse keyserver --config pkcs11.toml   (a token that is not there: the module names it)
    let err = run(
        "pkcs11.toml",
        &format!(
            "{head}[[keys]]\npkcs11 = {{ module = \"/usr/lib/softhsm/libsofthsm2.so\", token = \"t\", pin_file = \"pin\" }}\n"
        ),
    );
    assert!(err.contains("PKCS#11 module /usr/lib/softhsm/libsofthsm2.so"), "{err}");
    // $ gatehouse keyserver --config badkey.toml   (keys/broken.key is not a key)
    write(d.join("keys/broken.key"), "-----BEGIN PRIVATE KEY-----\nnot base64 at all!\n-----END PRIVATE KEY-----\n");
    let err = run("badkey.toml", &format!("{head}[[keys]]\ndir = \"keys\"\n"));
    assert!(err.contains("broken.key"), "the bad key file is not named: {err}");
}

/// `gatehouse config check` knows a key server file too: it loads every key and the
/// TLS identity as `gatehouse keyserver` would, binds nothing, and names what is wrong.
#[test]
fn config_check_loads_a_key_server_file_and_names_a_bad_key() {
    let ks = KeyServer::shared();
    let file = ks.env.path().join("keyserver.toml");
    // $ gatehouse config check keyserver.toml
    let o = ks.env.gh(&["config", "check", s(&file)]);
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(o.stdout.contains(&format!("{}: ok (key server, {} keys)", file.display(), KEYS.len())), "{}", o.all());

    let d = tmp();
    std::fs::create_dir_all(d.path().join("keys")).unwrap();
    write(d.path().join("keys/broken.key"), "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n");
    let broken = d.path().join("ks.toml");
    write(
        &broken,
        format!(
            "certificate = {{ cert = \"{}\", key = \"{}\" }}\n[[keys]]\ndir = \"keys\"\n",
            s(&ks.env.path().join("certs/localhost.fullchain.pem")),
            s(&ks.env.path().join("certs/localhost.key"))
        ),
    );
    let o = ks.env.gh(&["config", "check", s(&broken)]);
    assert_eq!(o.code, 2, "{}", o.all());
    assert!(o.stderr.contains("broken.key"), "the bad key file is not named: {}", o.all());
}
