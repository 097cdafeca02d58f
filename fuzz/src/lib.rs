//! The properties the fuzz targets check, shared by the libFuzzer targets in
//! `fuzz_targets/` and by the plain `cargo test` run in `tests/` (seed corpus
//! plus a deterministic generator), so that the targets are exercised even
//! where cargo-fuzz cannot run.
//!
//! Every check panics, with the input and what was wrong, when a property
//! fails; that is what libFuzzer records as a crash.
//!
//! Findings that are known and reported can be tolerated so that a run goes on
//! looking for others: `GATEHOUSE_FUZZ_KNOWN=config-newline,config-long` (see
//! [`known`]). Without it every property is enforced.

use std::path::Path;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use base64::Engine;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use rustls_pki_types::CertificateDer;

use gateway::config::IdentityFormat;
use gateway::identity::{self, IdentityHeaders};
use gateway::target::{canonical_path, under_prefix};
use gateway::trust::CertSummary;

/// Whether the finding `id` is listed in `GATEHOUSE_FUZZ_KNOWN` (comma-separated),
/// and so is not to stop the run. Ids: `config-newline` (an error message that is
/// not one line), `config-long` (an error message of 4 KiB or more).
pub fn known(id: &str) -> bool {
    static KNOWN: OnceLock<Vec<String>> = OnceLock::new();
    KNOWN
        .get_or_init(|| {
            std::env::var("GATEHOUSE_FUZZ_KNOWN")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .iter()
        .any(|k| k == id)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

// ---------------------------------------------------------------------------
// path_canonical
// ---------------------------------------------------------------------------

/// Whether canonical `path` is under the route prefix `/admin`, written as a
/// segment comparison: the first segment, without its `;` parameters, is `admin`.
fn first_segment_is_admin(path: &str, case_insensitive: bool) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let first = rest.split('/').next().unwrap_or_default();
    let bare = first.split(';').next().unwrap_or_default();
    if case_insensitive { bare.eq_ignore_ascii_case("admin") } else { bare == "admin" }
}

/// `canonical_path` on any `&str`: whatever it accepts comes out canonical.
pub fn check_path(input: &str) {
    let Ok(result) = canonical_path(input) else {
        return;
    };
    if let Some(changed) = &result {
        assert_ne!(changed, input, "Ok(Some) must be a different spelling");
    }
    let canonical = result.as_deref().unwrap_or(input);
    let why = |what: &str| format!("{input:?} -> {canonical:?}: {what}");

    assert_eq!(canonical_path(canonical), Ok(None), "{}", why("not a fixed point"));
    assert!(canonical.starts_with('/'), "{}", why("does not start with '/'"));
    assert!(!canonical.contains("//"), "{}", why("has '//'"));
    for segment in canonical.split('/') {
        assert!(segment != "." && segment != "..", "{}", why("has a dot segment"));
    }
    let bytes = canonical.as_bytes();
    for (i, _) in canonical.match_indices('%') {
        let (hi, lo) = (bytes.get(i + 1).copied(), bytes.get(i + 2).copied());
        let (Some(hi), Some(lo)) = (hi, lo) else {
            panic!("{}", why("'%' without two hex digits"));
        };
        assert!(
            matches!(hi, b'0'..=b'9' | b'A'..=b'F') && matches!(lo, b'0'..=b'9' | b'A'..=b'F'),
            "{}",
            why("'%' not followed by two uppercase hex digits")
        );
        let value = hex_value(hi).unwrap() << 4 | hex_value(lo).unwrap();
        assert!(!is_unreserved(value), "{}", why("keeps an encoded unreserved character"));
    }

    for case_insensitive in [false, true] {
        assert_eq!(
            under_prefix(canonical, "/admin", case_insensitive),
            first_segment_is_admin(canonical, case_insensitive),
            "{} (case_insensitive = {case_insensitive})",
            why("under_prefix(\"/admin\") disagrees with the segment comparison")
        );
    }
    // Every segment-boundary prefix of a path (no trailing slash) has the path under it.
    let mut end = 0;
    for segment in canonical[1..].split('/') {
        end += 1 + segment.len();
        let prefix = &canonical[..end];
        if prefix.len() > 1 && !prefix.ends_with('/') {
            assert!(under_prefix(canonical, prefix, false), "{}", why(&format!("not under its own prefix {prefix:?}")));
            // A prefix is one whole segment: one more character is another name.
            let longer = format!("{prefix}x");
            assert!(!under_prefix(canonical, &longer, false) || canonical.starts_with(&longer));
        }
    }
}

// ---------------------------------------------------------------------------
// config_read
// ---------------------------------------------------------------------------

/// The longest error message accepted, bytes.
pub const MAX_MESSAGE: usize = 4096;

/// `Config::parse` on any text: never panics; an error has at least one message,
/// each one line of fewer than [`MAX_MESSAGE`] bytes.
pub fn check_config(text: &str) {
    let Err(error) = gateway::Config::parse(Path::new("fuzz.toml"), text) else {
        return;
    };
    assert!(!error.messages.is_empty(), "an error with no message for {text:?}");
    for message in &error.messages {
        if !known("config-newline") {
            assert!(
                !message.contains(['\n', '\r']),
                "an error message is not one line: {message:?}"
            );
        }
        if !known("config-long") {
            assert!(
                message.len() < MAX_MESSAGE,
                "an error message of {} bytes (input {} bytes): {:?}...",
                message.len(),
                text.len(),
                message.chars().take(300).collect::<String>()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// identity_headers
// ---------------------------------------------------------------------------

/// The kind of a SAN, as `CertSummary::sans` spells it.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum SanKind {
    Uri,
    Dns,
    Email,
    Ip,
    /// The text as it is (which may itself start with `URI:`).
    Raw,
}

/// A `CertSummary` from fuzz input.
#[derive(Debug, Clone, Arbitrary)]
pub struct SummaryInput {
    pub serial: String,
    pub subject: String,
    pub sans: Vec<(SanKind, String)>,
    pub not_after: i64,
}

impl SummaryInput {
    pub fn summary(&self) -> CertSummary {
        CertSummary {
            serial: self.serial.clone(),
            subject: self.subject.clone(),
            sans: self
                .sans
                .iter()
                .map(|(kind, value)| {
                    let prefix = match kind {
                        SanKind::Uri => "URI:",
                        SanKind::Dns => "DNS:",
                        SanKind::Email => "email:",
                        SanKind::Ip => "IP:",
                        SanKind::Raw => "",
                    };
                    format!("{prefix}{value}")
                })
                .collect(),
            not_after: self.not_after,
        }
    }
}

/// One input of the identity target: a client chain (arbitrary DER bytes, leaf
/// first), a summary of the leaf, and a header name a client might send.
#[derive(Debug, Clone, Arbitrary)]
pub struct IdentityInput {
    pub chain: Vec<Vec<u8>>,
    pub summary: Option<SummaryInput>,
    pub header_name: Vec<u8>,
}

/// An XFCC header value read with Envoy's rules, as an origin would: elements
/// split at unquoted `,`, pairs at unquoted `;`, key and value at the first `=`;
/// a value may be a `"..."` string in which `\` escapes the next character.
/// Stricter than a lenient reader: anything an encoder should never write (a pair
/// without `=`, text after a closing quote, a `"` or `\` in an unquoted value, an
/// unterminated quote) is an error.
pub fn parse_xfcc(header: &str) -> Result<Vec<Vec<(String, String)>>, String> {
    let mut elements = Vec::new();
    let mut pairs = Vec::new();
    let mut chars = header.chars().peekable();
    loop {
        let mut key = String::new();
        loop {
            match chars.next() {
                Some('=') => break,
                Some(c @ (',' | ';' | '"' | '\\')) => return Err(format!("{c:?} in the key {key:?}")),
                Some(c) => key.push(c),
                None => return Err(format!("the key {key:?} has no '='")),
            }
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.push(chars.next().ok_or("a '\\' at the end")?),
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("the value of {key:?} has no closing quote")),
                }
            }
            if !matches!(chars.peek(), None | Some(',' | ';')) {
                return Err(format!("text after the quoted value of {key:?}"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c == ';' {
                    break;
                }
                if c == '"' || c == '\\' {
                    return Err(format!("{c:?} in the unquoted value of {key:?}"));
                }
                value.push(c);
                chars.next();
            }
        }
        pairs.push((key, value));
        match chars.next() {
            Some(';') => {}
            Some(',') => elements.push(std::mem::take(&mut pairs)),
            None => {
                elements.push(pairs);
                return Ok(elements);
            }
            Some(c) => unreachable!("stopped at {c:?}"),
        }
    }
}

/// The DER inside the `Cert` value of an XFCC element (URL-encoded PEM).
fn der_of_xfcc_cert(value: &str) -> Result<Vec<u8>, String> {
    let bytes = value.as_bytes();
    let mut pem = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err("a bad %XX".into());
            };
            pem.push(hi << 4 | lo);
            i += 3;
        } else if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            pem.push(b);
            i += 1;
        } else {
            return Err(format!("{:?} is not URL-encoded", b as char));
        }
    }
    let pem = String::from_utf8(pem).map_err(|e| e.to_string())?;
    let lines: Vec<&str> = pem.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.first() != Some(&"-----BEGIN CERTIFICATE-----") || lines.last() != Some(&"-----END CERTIFICATE-----") {
        return Err(format!("not a PEM certificate: {pem:?}"));
    }
    let body: String = lines[1..lines.len() - 1].concat();
    base64::engine::general_purpose::STANDARD.decode(body).map_err(|e| e.to_string())
}

/// A character no header value may carry (`HeaderValue` refuses it).
fn is_header_forbidden(c: char) -> bool {
    (c < ' ' && c != '\t') || c == '\x7f'
}

/// The identity headers of one input, for each format, and `is_spoofable` of its header name.
pub fn check_identity(input: &IdentityInput) {
    check_spoofable(&input.header_name);

    let chain: Vec<CertificateDer<'static>> = input.chain.iter().map(|d| CertificateDer::from(d.clone())).collect();
    let summary = input.summary.as_ref().map(SummaryInput::summary);
    let b64 = |der: &[u8]| base64::engine::general_purpose::STANDARD.encode(der);

    for format in [IdentityFormat::Rfc9440, IdentityFormat::Xfcc, IdentityFormat::None] {
        let mut map = HeaderMap::new();
        IdentityHeaders::new(format, &chain, summary.as_ref()).apply(&mut map);
        for (name, value) in &map {
            assert!(
                HeaderValue::from_bytes(value.as_bytes()).is_ok()
                    && !value.as_bytes().iter().any(|&b| b == b'\r' || b == b'\n' || b == 0),
                "{format:?}: {name} is not a valid header value: {value:?}"
            );
        }
        let names: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        let Some(leaf) = chain.first() else {
            assert!(map.is_empty(), "{format:?} without a certificate sent {names:?}");
            continue;
        };
        match format {
            IdentityFormat::None => assert!(map.is_empty(), "format none sent {names:?}"),
            IdentityFormat::Rfc9440 => {
                let want_names: &[&str] =
                    if chain.len() > 1 { &["client-cert", "client-cert-chain"] } else { &["client-cert"] };
                assert_eq!(names, want_names);
                assert_eq!(map["client-cert"].as_bytes(), format!(":{}:", b64(leaf)).as_bytes());
                if chain.len() > 1 {
                    let list: Vec<String> = chain[1..].iter().map(|c| format!(":{}:", b64(c))).collect();
                    assert_eq!(map["client-cert-chain"].as_bytes(), list.join(", ").as_bytes());
                }
            }
            IdentityFormat::Xfcc => check_xfcc(leaf, summary.as_ref(), &map),
        }
    }
}

fn check_xfcc(leaf: &[u8], summary: Option<&CertSummary>, map: &HeaderMap) {
    // The values that go into the element; only they can hold a character no header carries.
    let mut expected = vec![
        ("Hash".to_owned(), hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf))),
        ("Cert".to_owned(), String::new()), // compared by decoding below
    ];
    if let Some(s) = summary {
        expected.push(("Subject".to_owned(), s.subject.clone()));
        for san in &s.sans {
            if let Some(uri) = san.strip_prefix("URI:") {
                expected.push(("URI".to_owned(), uri.to_owned()));
            } else if let Some(dns) = san.strip_prefix("DNS:") {
                expected.push(("DNS".to_owned(), dns.to_owned()));
            }
        }
    }
    let unsendable = expected.iter().any(|(_, v)| v.contains(is_header_forbidden));
    let Some(value) = map.get("x-forwarded-client-cert") else {
        assert!(unsendable, "no XFCC for a summary a header can carry: {summary:?}");
        assert!(map.is_empty());
        return;
    };
    assert!(!unsendable, "an XFCC was sent for a name with a control character: {value:?}");
    assert_eq!(map.len(), 1, "{map:?}");
    // A value is bytes; the encoder writes UTF-8 (non-ASCII names as obs-text).
    let text = std::str::from_utf8(value.as_bytes()).expect("the XFCC value is UTF-8");
    let elements = parse_xfcc(text).unwrap_or_else(|e| panic!("XFCC {text:?} does not parse: {e}"));
    assert_eq!(elements.len(), 1, "one certificate, one element: {text:?} read as {elements:?}");
    let pairs = &elements[0];
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    let want_keys: Vec<&str> = expected.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, want_keys, "XFCC {text:?}");
    for ((key, got), (_, want)) in pairs.iter().zip(&expected) {
        if key == "Cert" {
            let der = der_of_xfcc_cert(got).unwrap_or_else(|e| panic!("Cert in {text:?}: {e}"));
            assert_eq!(der, leaf, "Cert in {text:?} is not the leaf");
        } else {
            assert_eq!(got, want, "{key} in {text:?}");
        }
    }
    // URI and DNS values, read back, are the summary's SANs exactly and in order.
    if let Some(s) = summary {
        for (key, prefix) in [("URI", "URI:"), ("DNS", "DNS:")] {
            let got: Vec<&str> = pairs.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect();
            let want: Vec<&str> = s.sans.iter().filter_map(|san| san.strip_prefix(prefix)).collect();
            assert_eq!(got, want, "{key} values of {text:?}");
        }
    }
}

/// `is_spoofable` of any header name: true iff the name, lowercase and with each
/// `_` read as `-`, is one of `identity::SPOOFABLE`.
pub fn check_spoofable(name: &[u8]) {
    let Ok(header) = HeaderName::from_bytes(name) else {
        return;
    };
    let spelled = header.as_str().to_ascii_lowercase().replace('_', "-");
    let expected = identity::SPOOFABLE.iter().any(|p| p.as_str() == spelled);
    assert_eq!(identity::is_spoofable(&header), expected, "is_spoofable({:?})", header.as_str());
}

// ---------------------------------------------------------------------------
// A deterministic generator for the plain `cargo test` run.
// ---------------------------------------------------------------------------

/// xorshift64: the same sequence on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

// ---------------------------------------------------------------------------
// roster_read
// ---------------------------------------------------------------------------

/// The longest message about one line of a roster, bytes (input is quoted at most 60 characters).
pub const MAX_ROSTER_MESSAGE: usize = 1024;

/// `pki::read_roster` on any bytes: never panics; rows have a non-empty cn, unique
/// without regard to case, on increasing lines, and no row is the header itself;
/// problems are one line each, bounded, on a line that exists.
pub fn check_roster(data: &[u8]) {
    let lines = data.split(|&b| b == b'\n').count() as u64;
    match pki::read_roster(data, |_| Ok(())) {
        Ok(rows) => {
            let mut seen = std::collections::HashSet::new();
            let mut last = 0;
            for row in &rows {
                assert!(!row.cn.is_empty(), "a row with an empty cn from {data:?}");
                assert!(seen.insert(row.cn.to_lowercase()), "cn {:?} twice from {data:?}", row.cn);
                assert!(row.line > last && row.line <= lines.max(1), "row line {} after {last} in {data:?}", row.line);
                assert!(row.line > 1, "the header line became a row: {data:?}");
                last = row.line;
            }
        }
        Err(problems) => {
            assert!(!problems.is_empty(), "refused with no problem: {data:?}");
            for problem in &problems {
                let message = problem.to_string();
                assert!(!message.contains(['\n', '\r']), "a problem is not one line: {message:?}");
                assert!(message.len() < MAX_ROSTER_MESSAGE, "a problem of {} bytes: {message:?}", message.len());
                assert!(problem.line >= 1 && problem.line <= lines.max(1), "problem on line {} of {lines}", problem.line);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// csr_check
// ---------------------------------------------------------------------------

/// Words of parser internals that an error for a user must not show.
const PARSER_INTERNALS: [&str; 6] = ["NomError", "Der(", "UnexpectedTag", "Eof", "nom::", "X509Error"];

/// One issuer for every input: a CA made once, with the default settings.
fn fuzz_issuer() -> &'static pki::Issuer {
    static ISSUER: OnceLock<pki::Issuer> = OnceLock::new();
    ISSUER.get_or_init(|| {
        let init = pki::CaInit { name: "fuzz".into(), key_type: pki::KeyType::EcdsaP256, days: 30 };
        let ca = pki::create_ca(&init).expect("a CA");
        pki::Issuer::new(ca.intermediate.der, ca.intermediate.key, ca.root.der, pki::CaSettings::default())
            .expect("an issuer")
    })
}

fn check_message(what: &str, message: &str, data: &[u8]) {
    assert!(!message.contains(['\n', '\r']), "{what} is not one line: {message:?}");
    assert!(message.len() < MAX_ROSTER_MESSAGE, "{what} of {} bytes for {} input bytes", message.len(), data.len());
    for word in PARSER_INTERNALS {
        assert!(!message.contains(word), "{what} shows parser internals ({word}): {message:?}");
    }
}

/// `CheckedCsr::parse` on any bytes, then the CA's checks of what it asks for under each
/// profile: never panics; every refusal is one line, bounded, in words (no parser
/// internals); what the checks accept, the issuer signs.
pub fn check_csr(data: &[u8]) {
    let csr = match pki::CheckedCsr::parse(data) {
        Ok(csr) => csr,
        Err(e) => return check_message("a CSR refusal", &e.to_string(), data),
    };
    let issuer = fuzz_issuer();
    for profile in [pki::Profile::Server, pki::Profile::Client] {
        let request = csr.to_request(profile, issuer.settings().policy(profile), None);
        match issuer.check_request(&request) {
            Ok(()) => {
                let issued = issuer.issue(&request, csr.public_key(), csr.key_is_rsa());
                assert!(issued.is_ok(), "checked, then not signed: {:?}", issued.err());
            }
            Err(e) => check_message("a name refusal", &e.to_string(), data),
        }
    }
}

// ---------------------------------------------------------------------------
// acme_jws
// ---------------------------------------------------------------------------

/// The ACME problem types the JWS layer answers with (badNonce is the server's).
const JWS_PROBLEMS: [&str; 4] = ["malformed", "badSignatureAlgorithm", "badPublicKey", "unauthorized"];

/// The account key of the seeds in `seeds/acme_jws` (made by Python's `cryptography`).
const SEED_ACCOUNT_KEY: &str = r#"{"kty":"EC","crv":"P-256","x":"nem9YAaLGvaJUKjeK_8kb7x0tdVun1SvG3gbYlJX9NY","y":"KhFHLnJB8OKsau95kODiAhY_vUxlIHIyRGGBcHBV_ac"}"#;

/// The HMAC key of the seeds' external account binding (kid `eab-1`).
const SEED_EAB_KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

const SEED_NEW_ACCOUNT_URL: &str = "https://acme.test/acme/new-account";

fn check_jws_error(what: &str, error: &acme::jws::JwsError, data: &[u8]) {
    assert!(JWS_PROBLEMS.contains(&error.problem_type()), "{what} has the problem type {}", error.problem_type());
    check_message(what, &error.to_string(), data);
}

/// A key's thumbprint is 43 base64url characters, and its stored form is the same key.
fn check_key(key: &acme::jws::Jwk) {
    let thumbprint = key.thumbprint();
    assert!(
        thumbprint.len() == 43 && thumbprint.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "a thumbprint that is not 43 base64url characters: {thumbprint:?}"
    );
    let stored = acme::jws::Jwk::from_json(&key.to_json()).expect("a key's stored form reads back");
    assert_eq!(stored, *key, "a key's stored form is another key");
    assert!(!key.spki_der().is_empty(), "a key without a SubjectPublicKeyInfo");
}

fn check_eab(binding: &serde_json::Value, outer: &acme::jws::Jwk, data: &[u8]) {
    let hmac_key = |kid: &str| (kid == "eab-1").then(|| SEED_EAB_KEY.to_vec());
    match acme::jws::verify_external_account_binding(binding, outer, SEED_NEW_ACCOUNT_URL, hmac_key) {
        Ok(kid) => assert_eq!(kid, "eab-1", "a binding accepted for a kid with no key"),
        Err(e) => check_jws_error("a binding refusal", &e, data),
    }
}

/// `acme::jws::parse` on any bytes, then `verify` with the key the request carries, its
/// payload as JSON, and the bytes as a JWK and as an external account binding: never
/// panics; every refusal is one line under 1 KiB, in words, with one of the JWS layer's
/// problem types; every key accepted has a 43-character thumbprint and reads back from
/// its stored form.
pub fn check_jws(data: &[u8]) {
    match acme::jws::parse(data) {
        Err(e) => check_jws_error("a request refusal", &e, data),
        Ok(request) => {
            if let acme::jws::KeyRef::Jwk(key) = &request.key {
                check_key(key);
                if let Err(e) = request.verify(key) {
                    check_jws_error("a signature refusal", &e, data);
                }
            }
            match request.payload_json::<serde_json::Value>() {
                Ok(payload) => {
                    if let (Some(binding), acme::jws::KeyRef::Jwk(key)) =
                        (payload.get("externalAccountBinding"), &request.key)
                    {
                        check_eab(binding, key, data);
                    }
                }
                Err(e) => check_jws_error("a payload refusal", &e, data),
            }
        }
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        match acme::jws::Jwk::from_json(&value) {
            Ok(key) => check_key(&key),
            Err(e) => check_jws_error("a key refusal", &e, data),
        }
        static SEED_KEY: OnceLock<acme::jws::Jwk> = OnceLock::new();
        let outer = SEED_KEY.get_or_init(|| {
            acme::jws::Jwk::from_json(&serde_json::from_str(SEED_ACCOUNT_KEY).expect("JSON")).expect("the seeds' key")
        });
        check_eab(&value, outer, data);
    }
}

// ---------------------------------------------------------------------------
// keyless_decode
// ---------------------------------------------------------------------------

/// `keyless::decode` on any bytes: never panics; a whole frame is the header's
/// length and re-encodes, padded (to at least 1024 bytes) and not, to a frame
/// that decodes to the same message; "need more" asks for more than is there
/// (8 bytes, then the header's frame length); a malformed frame is one line
/// under 1 KiB.
pub fn check_keyless(data: &[u8]) {
    let frame_len = data.get(..4).map(|h| 8 + usize::from(u16::from_be_bytes([h[2], h[3]])));
    match keyless::decode(data) {
        Ok(keyless::Decoded::Complete { message, consumed }) => {
            assert_eq!(Some(consumed), frame_len, "consumed is not the header's frame length");
            assert!(consumed <= data.len(), "consumed {consumed} of {} bytes", data.len());
            for padding in [keyless::Padding::ToMinimum, keyless::Padding::Off] {
                let again = message.encode_with(padding).expect("a decoded message fits in a frame");
                if padding == keyless::Padding::ToMinimum {
                    assert!(again.len() >= keyless::MIN_FRAME_LEN, "a padded frame of {} bytes", again.len());
                }
                match keyless::decode(&again) {
                    Ok(keyless::Decoded::Complete { message: back, consumed }) => {
                        assert_eq!(back, message, "re-encoded ({padding:?}) and decoded, the message changed");
                        assert_eq!(consumed, again.len(), "the re-encoded frame is not consumed whole");
                    }
                    other => panic!("the re-encoded frame ({padding:?}) does not decode: {other:?}"),
                }
            }
        }
        Ok(keyless::Decoded::Incomplete { needed }) => {
            assert!(needed > data.len(), "asks for {needed} bytes with {} there", data.len());
            let expected = if data.len() < keyless::HEADER_LEN { keyless::HEADER_LEN } else { frame_len.unwrap_or(0) };
            assert_eq!(needed, expected, "asks for the wrong number of bytes");
        }
        Err(error) => {
            let text = error.to_string();
            assert!(
                !text.is_empty() && text.len() < 1024 && !text.contains(['\n', '\r']),
                "malformed message: {text:?}"
            );
        }
    }
}
