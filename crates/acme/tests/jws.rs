//! The JWS layer against RFC examples, keys made by aws-lc-rs, requests made by
//! another implementation (Python's `cryptography`, in `fuzz/seeds/acme_jws`),
//! and the ways a request goes wrong.

use acme::jws::{self, Algorithm, Jwk, JwsError, KeyRef};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
    RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

const URL: &str = "https://acme.test/acme/new-account";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A freshly generated account key that signs the way an ACME client does.
enum Signer {
    Ec(EcdsaKeyPair, &'static str, usize),
    Rsa(RsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl Signer {
    fn new(alg: Algorithm) -> Signer {
        match alg {
            Algorithm::Es256 => {
                Signer::Ec(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(), "P-256", 32)
            }
            Algorithm::Es384 => {
                Signer::Ec(EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap(), "P-384", 48)
            }
            Algorithm::Rs256 => Signer::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap()),
            Algorithm::EdDsa => Signer::Ed(Ed25519KeyPair::generate().unwrap()),
        }
    }

    fn jwk(&self) -> Value {
        match self {
            Signer::Ec(pair, crv, len) => {
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": crv, "x": b64(&point[1..1 + len]), "y": b64(&point[1 + len..])})
            }
            Signer::Rsa(pair) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Signer::Ed(pair) => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())}),
        }
    }

    fn spki(&self) -> Vec<u8> {
        match self {
            Signer::Ec(pair, ..) => pair.public_key().as_der().unwrap().as_ref().to_vec(),
            Signer::Rsa(pair) => pair.public_key().as_der().unwrap().as_ref().to_vec(),
            Signer::Ed(pair) => pair.public_key().as_der().unwrap().as_ref().to_vec(),
        }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Signer::Ec(pair, ..) => pair.sign(&rng, message).unwrap().as_ref().to_vec(),
            Signer::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature).unwrap();
                signature
            }
            Signer::Ed(pair) => pair.sign(message).as_ref().to_vec(),
        }
    }

    /// A flattened JWS of `payload` (`None`: POST-as-GET) under `header`, as bytes.
    fn request(&self, header: &Value, payload: Option<&Value>) -> Vec<u8> {
        let protected = b64(header.to_string().as_bytes());
        let payload = payload.map_or(String::new(), |p| b64(p.to_string().as_bytes()));
        let signature = b64(&self.sign(format!("{protected}.{payload}").as_bytes()));
        json!({"protected": protected, "payload": payload, "signature": signature}).to_string().into_bytes()
    }

    fn header(&self, alg: &str) -> Value {
        json!({"alg": alg, "jwk": self.jwk(), "nonce": "bm9uY2U", "url": URL})
    }
}

fn problem(result: Result<impl std::fmt::Debug, JwsError>) -> (&'static str, String) {
    let error = result.expect_err("an error");
    let detail = error.to_string();
    assert!(!detail.contains(['\n', '\r']) && detail.len() <= 300, "not one short line: {detail:?}");
    (error.problem_type(), detail)
}

fn parse_problem(body: &[u8]) -> (&'static str, String) {
    problem(jws::parse(body))
}

fn account_key(request: &jws::Request) -> &Jwk {
    match &request.key {
        KeyRef::Jwk(key) => key,
        KeyRef::Kid(kid) => panic!("a kid {kid}, not a jwk"),
    }
}

#[test]
fn rfc7638_thumbprint() {
    // RFC 7638 3.1.
    let key = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    let jwk = Jwk::from_json(&key).unwrap();
    assert_eq!(jwk.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    assert_eq!(jwk.algorithm(), Algorithm::Rs256);
    // Stored form: the required members only, and the same key read back.
    let stored = jwk.to_json();
    assert_eq!(stored.as_object().unwrap().keys().collect::<Vec<_>>(), ["e", "kty", "n"]);
    assert_eq!(Jwk::from_json(&stored).unwrap(), jwk);
    assert_eq!(jws::key_authorization("tok", &jwk), "tok.NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
}

#[test]
fn rfc8037_ed25519_thumbprint() {
    // RFC 8037 A.3.
    let key = json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
    assert_eq!(Jwk::from_json(&key).unwrap().thumbprint(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
}

#[test]
fn sign_then_verify_each_algorithm() {
    for alg in Algorithm::ALL {
        let signer = Signer::new(alg);
        let payload = json!({"termsOfServiceAgreed": true});
        let request = jws::parse(&signer.request(&signer.header(alg.name()), Some(&payload))).unwrap();
        assert_eq!((request.alg, request.url.as_str(), request.nonce.as_deref()), (alg, URL, Some("bm9uY2U")));
        let key = account_key(&request);
        request.verify(key).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(key.spki_der(), signer.spki(), "{alg}");
        assert_eq!(key.thumbprint().len(), 43);
        assert!(!request.is_post_as_get());
        assert_eq!(request.payload_json::<Value>().unwrap(), payload);

        let get = jws::parse(&signer.request(&signer.header(alg.name()), None)).unwrap();
        assert!(get.is_post_as_get());
        get.verify(account_key(&get)).unwrap();
        assert_eq!(problem(get.payload_json::<Value>()).0, "malformed");
    }
}

#[test]
fn kid_request_verifies_with_the_stored_key() {
    let signer = Signer::new(Algorithm::Es256);
    let stored = Jwk::from_json(&signer.jwk()).unwrap().to_json();
    let header = json!({"alg": "ES256", "kid": "https://acme.test/acme/acct/7", "nonce": "n", "url": URL});
    let request = jws::parse(&signer.request(&header, Some(&json!({})))).unwrap();
    assert_eq!(request.key, KeyRef::Kid("https://acme.test/acme/acct/7".into()));
    request.verify(&Jwk::from_json(&stored).unwrap()).unwrap();
    let other = Jwk::from_json(&Signer::new(Algorithm::Es256).jwk()).unwrap();
    assert_eq!(problem(request.verify(&other)), ("malformed", JwsError::BadSignature.to_string()));
}

/// The body with one of its three members replaced.
fn with_member(body: &[u8], name: &str, value: &str) -> Vec<u8> {
    let mut object: Value = serde_json::from_slice(body).unwrap();
    object[name] = Value::String(value.into());
    object.to_string().into_bytes()
}

#[test]
fn tampering_is_caught() {
    for alg in Algorithm::ALL {
        let signer = Signer::new(alg);
        let body = signer.request(&signer.header(alg.name()), Some(&json!({"contact": ["mailto:a@example.test"]})));
        let object: Value = serde_json::from_slice(&body).unwrap();
        let member = |name: &str| object[name].as_str().unwrap().to_owned();

        let payload = with_member(&body, "payload", &b64(br#"{"contact":["mailto:b@example.test"]}"#));
        let mut signature = URL_SAFE_NO_PAD.decode(member("signature")).unwrap();
        signature[5] ^= 1;
        let signature = with_member(&body, "signature", &b64(&signature));
        let header = signer.header(alg.name());
        let mut changed = header.clone();
        changed["url"] = json!("https://acme.test/acme/new-order");
        let protected = with_member(&body, "protected", &b64(changed.to_string().as_bytes()));
        for tampered in [payload, signature, protected] {
            let request = jws::parse(&tampered).unwrap();
            let (kind, detail) = problem(request.verify(account_key(&request)));
            assert_eq!(
                (kind, detail.as_str()),
                ("malformed", "the JWS signature does not verify with the account key")
            );
        }
        // A signature of the wrong length, or none.
        for bytes in [&b""[..], &[0u8; 7][..]] {
            let request = jws::parse(&with_member(&body, "signature", &b64(bytes))).unwrap();
            assert_eq!(problem(request.verify(account_key(&request))).0, "malformed");
        }
    }
}

#[test]
fn algorithm_must_fit_the_key() {
    let signer = Signer::new(Algorithm::Es256);
    for alg in ["ES384", "RS256", "EdDSA"] {
        let request = jws::parse(&signer.request(&signer.header(alg), None)).unwrap();
        let (kind, detail) = problem(request.verify(account_key(&request)));
        assert_eq!(kind, "badSignatureAlgorithm", "{alg}");
        assert!(detail.contains("EC P-256") && detail.contains("ES256"), "{detail}");
    }
}

#[test]
fn refused_algorithms() {
    let signer = Signer::new(Algorithm::Es256);
    for alg in ["none", "HS256", "HS512", "ES512", "PS256", "RS384", "Ed25519", "es256", ""] {
        let (kind, detail) = parse_problem(&signer.request(&signer.header(alg), None));
        assert_eq!(kind, "badSignatureAlgorithm", "{alg}: {detail}");
        assert!(detail.contains("ES256, ES384, RS256 or EdDSA"), "{detail}");
    }
    let (_, none) = parse_problem(&signer.request(&signer.header("none"), None));
    assert!(none.contains("must be signed"), "{none}");
    let (_, mac) = parse_problem(&signer.request(&signer.header("HS256"), None));
    assert!(mac.contains("external account binding"), "{mac}");
    let (kind, long) = parse_problem(&signer.request(&signer.header(&"A".repeat(5000)), None));
    assert_eq!(kind, "badSignatureAlgorithm");
    assert!(long.len() < 200, "{long}");
}

#[test]
fn header_members() {
    let signer = Signer::new(Algorithm::EdDsa);
    let header = signer.header("EdDSA");
    let case = |change: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut header = header.clone();
        change(header.as_object_mut().unwrap());
        signer.request(&header, None)
    };
    let refused = [
        ("both", case(&|h| drop(h.insert("kid".into(), json!("https://acme.test/acct/1")))), "both"),
        ("neither", case(&|h| drop(h.remove("jwk"))), "neither"),
        ("no url", case(&|h| drop(h.remove("url"))), "\"url\""),
        ("no alg", case(&|h| drop(h.remove("alg"))), "\"alg\""),
        ("url number", case(&|h| drop(h.insert("url".into(), json!(5)))), "\"url\""),
        ("empty kid", case(&|h| drop(h.insert("kid".into(), json!("")))), "\"kid\""),
        ("crit", case(&|h| drop(h.insert("crit".into(), json!(["b64"])))), "crit"),
        ("b64", case(&|h| drop(h.insert("b64".into(), json!(false)))), "b64"),
    ];
    for (name, body, word) in refused {
        let (kind, detail) = parse_problem(&body);
        assert_eq!(kind, "malformed", "{name}: {detail}");
        assert!(detail.contains(word), "{name}: {detail}");
    }
    // A missing nonce is the server's badNonce, not a parse error.
    let request = jws::parse(&case(&|h| drop(h.remove("nonce")))).unwrap();
    assert_eq!(request.nonce, None);
    // Unknown header parameters are ignored (RFC 7515 4).
    jws::parse(&case(&|h| drop(h.insert("typ".into(), json!("JOSE"))))).unwrap();
}

#[test]
fn serialization_shapes() {
    let signer = Signer::new(Algorithm::Es256);
    let body = signer.request(&signer.header("ES256"), Some(&json!({})));
    let object: Value = serde_json::from_slice(&body).unwrap();
    let general = json!({
        "payload": object["payload"],
        "signatures": [{"protected": object["protected"], "signature": object["signature"]}],
    });
    assert!(parse_problem(general.to_string().as_bytes()).1.contains("flattened"));
    let mut unprotected = object.clone();
    unprotected["header"] = json!({"kid": "x"});
    assert!(parse_problem(unprotected.to_string().as_bytes()).1.contains("unprotected"));
    // Unknown top-level members are ignored (RFC 7515 7.2.1).
    let mut extra = object.clone();
    extra["extra"] = json!(1);
    jws::parse(extra.to_string().as_bytes()).unwrap();
    // Padding, and the standard alphabet, are not base64url without padding.
    let padded = with_member(&body, "signature", &format!("{}==", object["signature"].as_str().unwrap()));
    assert!(parse_problem(&padded).1.contains("padding"));
    assert_eq!(parse_problem(&with_member(&body, "payload", "a+b/")).0, "malformed");
    // A repeated member is refused rather than read one way here and another elsewhere.
    let text = String::from_utf8(body.clone()).unwrap();
    let repeated = text.replacen('{', r#"{"payload":"e30","#, 1);
    assert!(parse_problem(repeated.as_bytes()).1.contains("duplicate"), "{repeated}");
    let header = format!(r#"{{"alg":"ES256","alg":"none","jwk":{},"nonce":"n","url":"u"}}"#, signer.jwk());
    assert!(parse_problem(&with_member(&body, "protected", &b64(header.as_bytes()))).1.contains("duplicate"));
}

#[test]
fn garbage_and_oversized_bodies() {
    let inputs: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"[1,2,3]".to_vec(),
        format!("\"{}\"", "x".repeat(10_000)).into_bytes(),
        b"{\"protected\":".to_vec(),
        b"{\"protected\":\"e30\",\"payload\":\"\",\"signature\":\"\"}".to_vec(),
        b"{\"protected\":\"bm90IGpzb24\",\"payload\":\"\",\"signature\":\"\"}".to_vec(),
        b"{\"protected\":5,\"payload\":\"\",\"signature\":\"\"}".to_vec(),
        vec![0xff; 100],
        "[".repeat(10_000).into_bytes(),
    ];
    for input in inputs {
        let (kind, detail) = parse_problem(&input);
        assert_eq!(kind, "malformed", "{detail}");
        assert!(detail.len() < 200, "{detail}");
    }
    let big = vec![b' '; jws::MAX_BODY_BYTES + 1];
    assert_eq!(parse_problem(&big), ("malformed", "the request body is 65537 bytes; the limit is 65536".into()));
}

#[test]
fn payload_errors_are_sentences() {
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct NewOrder {
        identifiers: Vec<String>,
    }
    let signer = Signer::new(Algorithm::Es256);
    let long = "é\n".repeat(500);
    for payload in [json!({}), json!({"identifiers": long}), json!({"identifiers": [{"x": long}]})] {
        let request = jws::parse(&signer.request(&signer.header("ES256"), Some(&payload))).unwrap();
        let (kind, detail) = problem(request.payload_json::<NewOrder>());
        assert_eq!(kind, "malformed");
        assert!(detail.len() < 300, "{detail}");
    }
    let request = jws::parse(&signer.request(&signer.header("ES256"), Some(&json!({})))).unwrap();
    assert!(problem(request.payload_json::<NewOrder>()).1.contains("missing field `identifiers`"));
}

fn rsa_jwk_of_bits(bits: usize) -> Value {
    let mut n = vec![0x5a; bits / 8];
    n[0] = 0xc3;
    json!({"kty": "RSA", "n": b64(&n), "e": "AQAB"})
}

#[test]
fn refused_keys() {
    let p256 = Signer::new(Algorithm::Es256).jwk();
    let mut off_curve = p256.clone();
    off_curve["y"] = json!(b64(&[7; 32]));
    let mut short_x = p256.clone();
    short_x["x"] = json!(b64(&[7; 31]));
    let mut private = p256.clone();
    private["d"] = json!(b64(&[7; 32]));
    let mut p521 = p256.clone();
    p521["crv"] = json!("P-521");
    let mut even = rsa_jwk_of_bits(2048);
    even["n"] = json!(b64(&[0xc2; 256]));
    let mut e_one = rsa_jwk_of_bits(2048);
    e_one["e"] = json!("AQ");
    let refused = [
        rsa_jwk_of_bits(1024),
        rsa_jwk_of_bits(2040),
        rsa_jwk_of_bits(16384),
        even,
        e_one,
        off_curve,
        short_x,
        private,
        p521,
        json!({"kty": "OKP", "crv": "X25519", "x": b64(&[9; 32])}),
        json!({"kty": "OKP", "crv": "Ed448", "x": b64(&[9; 57])}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&[9; 31])}),
        json!({"kty": "oct", "k": "c2VjcmV0"}),
        json!({"kty": "EC", "crv": "P-256", "x": 5, "y": "AA"}),
        json!("not an object"),
    ];
    for key in refused {
        let (kind, detail) = problem(Jwk::from_json(&key));
        assert_eq!(kind, "badPublicKey", "{key}: {detail}");
    }
    // In a request, the same refusals are badPublicKey too.
    let signer = Signer::new(Algorithm::Rs256);
    let mut header = signer.header("RS256");
    header["jwk"] = rsa_jwk_of_bits(1024);
    let (kind, detail) = parse_problem(&signer.request(&header, None));
    assert_eq!(
        (kind, detail.as_str()),
        ("badPublicKey", "the RSA key is 1024 bits; gatehouse takes 2048 to 8192 bits")
    );
    // A leading zero in "n" is tolerated and does not change the thumbprint.
    let rsa = signer.jwk();
    let mut padded = rsa.clone();
    let n = URL_SAFE_NO_PAD.decode(rsa["n"].as_str().unwrap()).unwrap();
    padded["n"] = json!(b64(&[&[0][..], &n].concat()));
    assert_eq!(Jwk::from_json(&padded).unwrap().thumbprint(), Jwk::from_json(&rsa).unwrap().thumbprint());
}

#[test]
fn requests_from_another_implementation() {
    // Made by Python's `cryptography` (see fuzz/README.md): ES256, ES384 (kid), RS256, EdDSA.
    let seeds = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/seeds/acme_jws/");
    for name in ["es256-new-account.json", "rs256-jwk.json", "eddsa-post-as-get.json", "es256-eab.json"] {
        let body = std::fs::read(format!("{seeds}{name}")).unwrap();
        let request = jws::parse(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        request.verify(account_key(&request)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let eab_body = std::fs::read(format!("{seeds}es256-eab.json")).unwrap();
    let request = jws::parse(&eab_body).unwrap();
    let payload: Value = request.payload_json().unwrap();
    let kid = jws::verify_external_account_binding(
        &payload["externalAccountBinding"],
        account_key(&request),
        "https://acme.test/acme/new-account",
        |kid| (kid == "eab-1").then(|| b"0123456789abcdef0123456789abcdef".to_vec()),
    );
    assert_eq!(kid.unwrap(), "eab-1");
    for (name, kind) in [
        ("bad-signature.json", "malformed"),
        ("es384-with-p256.json", "badSignatureAlgorithm"),
        ("alg-none.json", "badSignatureAlgorithm"),
        ("jwk-and-kid.json", "malformed"),
        ("general-serialization.json", "malformed"),
    ] {
        let body = std::fs::read(format!("{seeds}{name}")).unwrap();
        let outcome = jws::parse(&body).and_then(|request| request.verify(account_key(&request)));
        assert_eq!(problem(outcome).0, kind, "{name}");
    }
}

const EAB_KEY: &[u8] = b"an external account's HMAC key!!";

/// An external account binding for `account_key`, as a client builds it.
fn eab(alg: &str, kid: &str, url: &str, payload: &Value, mac_key: &[u8]) -> Value {
    let protected = b64(json!({"alg": alg, "kid": kid, "url": url}).to_string().as_bytes());
    let payload = b64(payload.to_string().as_bytes());
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, mac_key), format!("{protected}.{payload}").as_bytes());
    json!({"protected": protected, "payload": payload, "signature": b64(tag.as_ref())})
}

fn check_eab(binding: &Value, key: &Jwk) -> Result<String, JwsError> {
    jws::verify_external_account_binding(binding, key, URL, |kid| (kid == "kid-1").then(|| EAB_KEY.to_vec()))
}

#[test]
fn external_account_binding() {
    let signer = Signer::new(Algorithm::Es256);
    let key = Jwk::from_json(&signer.jwk()).unwrap();
    let jwk = signer.jwk();
    assert_eq!(check_eab(&eab("HS256", "kid-1", URL, &jwk, EAB_KEY), &key).unwrap(), "kid-1");

    let other = Signer::new(Algorithm::Es256).jwk();
    let cases = [
        (eab("HS256", "kid-1", "https://acme.test/acme/new-order", &jwk, EAB_KEY), "malformed"),
        (eab("HS256", "kid-1", URL, &other, EAB_KEY), "unauthorized"),
        (eab("HS256", "kid-2", URL, &jwk, EAB_KEY), "unauthorized"),
        (eab("HS256", "kid-1", URL, &jwk, b"another key"), "unauthorized"),
        (eab("ES256", "kid-1", URL, &jwk, EAB_KEY), "badSignatureAlgorithm"),
        (eab("HS256", "", URL, &jwk, EAB_KEY), "malformed"),
        (eab("HS256", "kid-1", URL, &json!({"kty": "RSA"}), EAB_KEY), "badPublicKey"),
        (json!("a string"), "malformed"),
        (json!({"protected": "e30", "payload": "", "signature": ""}), "malformed"),
    ];
    for (binding, kind) in cases {
        let (got, detail) = problem(check_eab(&binding, &key));
        assert_eq!(got, kind, "{binding}: {detail}");
    }
    // "nonce" must not be in the binding's header (RFC 8555 7.3.4).
    let protected = b64(json!({"alg": "HS256", "kid": "kid-1", "url": URL, "nonce": "n"}).to_string().as_bytes());
    let payload = b64(jwk.to_string().as_bytes());
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, EAB_KEY), format!("{protected}.{payload}").as_bytes());
    let with_nonce = json!({"protected": protected, "payload": payload, "signature": b64(tag.as_ref())});
    assert!(problem(check_eab(&with_nonce, &key)).1.contains("nonce"));
}
