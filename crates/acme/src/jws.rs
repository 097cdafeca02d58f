//! JSON Web Signatures as ACME uses them (RFC 8555 6.2, RFC 7515, 7518, 8037).
//!
//! This module owns the request envelope: the flattened JSON serialization
//! of a JWS, its protected header, the account key carried in it (a JWK),
//! signature checks, RFC 7638 thumbprints (key authorizations) and the
//! external account binding of RFC 8555 7.3.4. It does not know nonces,
//! accounts or URLs beyond comparing strings: the server checks those.
//!
//! Written on aws-lc-rs by hand: the subset ACME needs is small, and each
//! choice (which algorithms, which key sizes, what an error says) is one the
//! server must be able to defend, so it is spelled out here.
//!
//! Every error is one sentence on one line that says what was expected; no
//! more than about 60 characters of the input are ever repeated in it.

use std::fmt;

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

mod jwk;

pub use jwk::Jwk;

/// The largest request body [`parse`] reads; ACME requests are small (a CSR
/// is the largest payload), so anything bigger is refused before parsing.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How many characters of the input an error message may repeat.
const ECHO_CHARS: usize = 60;

/// A JWS signature algorithm an account key may use ("alg", RFC 7518 3.1, RFC 8037 3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256, signature `r || s` (64 bytes).
    Es256,
    /// ECDSA on P-384 with SHA-384, signature `r || s` (96 bytes).
    Es384,
    /// RSASSA-PKCS1-v1_5 with SHA-256, keys of 2048 to 8192 bits.
    Rs256,
    /// Ed25519 (RFC 8037); no other EdDSA curve is accepted.
    EdDsa,
}

impl Algorithm {
    /// Every algorithm accepted for account keys, in the order the errors list them.
    pub const ALL: [Algorithm; 4] = [Algorithm::Es256, Algorithm::Es384, Algorithm::Rs256, Algorithm::EdDsa];

    /// The "alg" header value.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::Rs256 => "RS256",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    /// The algorithm an "alg" header value names, if it is one accepted for account keys.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|alg| alg.name() == name)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a request, a key or an external account binding was refused. Each
/// variant maps to one ACME problem type ([`JwsError::problem_type`]); the
/// message is the problem's detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// The body is larger than [`MAX_BODY_BYTES`].
    #[error("the request body is {len} bytes; the limit is {MAX_BODY_BYTES}")]
    BodyTooLarge {
        /// The body's length.
        len: usize,
    },
    /// The JWS, its header or its payload is not shaped as RFC 8555 requires; the detail says how.
    #[error("{0}")]
    Malformed(String),
    /// "alg" names an algorithm that is not accepted for account keys ("none", a MAC, ...).
    #[error("the JWS algorithm {alg} is not accepted{}; use ES256, ES384, RS256 or EdDSA", unsupported_reason(alg))]
    UnsupportedAlgorithm {
        /// The "alg" value, quoted and cut short.
        alg: String,
    },
    /// "alg" is accepted, but not for this key's type or curve.
    #[error("the JWS algorithm {alg} does not fit the account key, which is {key} and signs with {key_alg}")]
    AlgorithmMismatch {
        /// The algorithm in the header.
        alg: Algorithm,
        /// The key's type, as the message names it ("EC P-256", "RSA", "Ed25519").
        key: &'static str,
        /// The algorithm the key signs with.
        key_alg: Algorithm,
    },
    /// The JWK is not a public key gatehouse accepts; the detail says which part is wrong.
    #[error("{0}")]
    BadPublicKey(String),
    /// The signature does not verify with the key (a Boulder-compatible `malformed`).
    #[error("the JWS signature does not verify with the account key")]
    BadSignature,
    /// An external account binding uses an algorithm other than a MAC.
    #[error("the external account binding algorithm {alg} is not accepted; use HS256, HS384 or HS512")]
    EabAlgorithm {
        /// The "alg" value, quoted and cut short.
        alg: String,
    },
    /// No external account key has this kid (or it was revoked).
    #[error("the external account binding key id {kid} is not known to this server")]
    EabUnknownKey {
        /// The kid, quoted and cut short.
        kid: String,
    },
    /// The external account binding's MAC does not verify with the key for its kid.
    #[error("the external account binding MAC does not verify with the key of its key id")]
    EabBadMac,
    /// The external account binding signs a key other than the account key of the request.
    #[error("the external account binding's payload is not the account key of this request")]
    EabKeyMismatch,
}

impl JwsError {
    /// The ACME error type (RFC 8555 6.7) without its `urn:ietf:params:acme:error:` prefix.
    pub fn problem_type(&self) -> &'static str {
        match self {
            JwsError::BodyTooLarge { .. } | JwsError::Malformed(_) | JwsError::BadSignature => "malformed",
            JwsError::UnsupportedAlgorithm { .. }
            | JwsError::AlgorithmMismatch { .. }
            | JwsError::EabAlgorithm { .. } => "badSignatureAlgorithm",
            JwsError::BadPublicKey(_) => "badPublicKey",
            JwsError::EabUnknownKey { .. } | JwsError::EabBadMac | JwsError::EabKeyMismatch => "unauthorized",
        }
    }
}

fn unsupported_reason(alg: &str) -> &'static str {
    match alg {
        "\"none\"" => " (a request must be signed)",
        "\"HS256\"" | "\"HS384\"" | "\"HS512\"" => " (MAC algorithms are for the external account binding only)",
        _ => "",
    }
}

fn malformed(detail: impl Into<String>) -> JwsError {
    JwsError::Malformed(detail.into())
}

fn bad_key(detail: impl Into<String>) -> JwsError {
    JwsError::BadPublicKey(detail.into())
}

/// `text` between double quotes, escaped so that it stays on one line, and cut
/// to about [`ECHO_CHARS`] characters.
fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        let escaped: String = c.escape_debug().collect();
        if out.len() + escaped.len() > ECHO_CHARS + 1 {
            out.push_str("...");
            break;
        }
        out.push_str(&escaped);
    }
    out.push('"');
    out
}

/// A serde_json error as part of a sentence: control characters escaped, any
/// quoted or backquoted piece of input cut short, and the whole bounded.
/// serde writes strings between `"` escaped, but names between backquotes as
/// they are, so a backquote only closes a name before `,`, ` ` or the end.
fn serde_message(error: &serde_json::Error) -> String {
    const LIMIT: usize = 160;
    let text: Vec<char> = error.to_string().chars().collect();
    let mut out = String::new();
    let mut open: Option<char> = None;
    let mut in_span = 0;
    let mut escaped = false;
    for (i, &c) in text.iter().enumerate() {
        if out.len() >= LIMIT {
            out.push_str("...");
            break;
        }
        let closes = match open {
            Some('"') => c == '"' && !escaped,
            Some(_) => c == '`' && matches!(text.get(i + 1), None | Some(',' | ' ')),
            None => false,
        };
        if closes {
            open = None;
            out.push(c);
        } else if open.is_some() {
            escaped = c == '\\' && !escaped;
            in_span += 1;
            if in_span <= ECHO_CHARS {
                push_escaped(&mut out, c);
            } else if in_span == ECHO_CHARS + 1 {
                out.push_str("...");
            }
        } else {
            if c == '"' || c == '`' {
                open = Some(c);
                in_span = 0;
                escaped = false;
            }
            push_escaped(&mut out, c);
        }
    }
    out
}

/// `c`, or its escape when it is a control character (so that a message stays on one line).
fn push_escaped(out: &mut String, c: char) {
    if c.is_control() {
        out.extend(c.escape_default());
    } else {
        out.push(c);
    }
}

fn base64url(text: &str, what: &str) -> Result<Vec<u8>, JwsError> {
    URL_SAFE_NO_PAD.decode(text).map_err(|_| {
        let hint = if text.ends_with('=') { " (padding '=' is not allowed)" } else { "" };
        malformed(format!("{what} is not base64url without padding{hint}"))
    })
}

/// A JSON object read into `T`, whose fields are all `Option<Value>`: serde
/// then refuses a repeated member, and no error can repeat input.
fn json_object<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, JwsError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(malformed(format!("{what} is not a JSON object")));
    }
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => malformed(format!("{what} is refused: {}", serde_message(&e))),
        _ => malformed(format!("{what} is not valid JSON: {}", serde_message(&e))),
    })
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// How a request names its key (RFC 8555 6.2): the key itself, or an account URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRef {
    /// "jwk": newAccount, and revocation by the certificate's key.
    Jwk(Jwk),
    /// "kid": the account URL, for every other request.
    Kid(String),
}

/// One ACME request body, parsed and checked for shape but not yet verified.
#[derive(Clone, Debug)]
pub struct Request {
    /// The header's "alg".
    pub alg: Algorithm,
    /// The header's "jwk" or "kid".
    pub key: KeyRef,
    /// The header's "nonce"; `None` when absent, which the server answers with badNonce (RFC 8555 6.5).
    pub nonce: Option<String>,
    /// The header's "url", to compare with the URL the request was sent to.
    pub url: String,
    /// The decoded payload; empty for POST-as-GET.
    pub payload: Vec<u8>,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

/// The members of a flattened JWS (RFC 7515 7.2.2), and the two that must not be there.
#[derive(Deserialize)]
struct Flattened {
    protected: Option<Value>,
    payload: Option<Value>,
    signature: Option<Value>,
    header: Option<Value>,
    signatures: Option<Value>,
}

/// The protected header parameters ACME uses, and those it refuses.
#[derive(Deserialize)]
struct Header {
    alg: Option<Value>,
    jwk: Option<Value>,
    kid: Option<Value>,
    nonce: Option<Value>,
    url: Option<Value>,
    crit: Option<Value>,
    b64: Option<Value>,
}

/// The three strings of a flattened JWS, checked for the members ACME refuses.
fn flattened_parts(jws: Flattened, what: &str) -> Result<(String, String, String), JwsError> {
    if jws.signatures.is_some() {
        return Err(malformed(format!(
            "{what} uses the general JWS serialization (\"signatures\"); send the flattened JSON serialization"
        )));
    }
    if jws.header.is_some() {
        return Err(malformed(format!(
            "{what} has an unprotected \"header\"; every header parameter belongs in \"protected\" (RFC 8555 6.2)"
        )));
    }
    let string = |value: Option<Value>, name: &str| match value {
        Some(Value::String(text)) => Ok(text),
        _ => Err(malformed(format!("{what} has no \"{name}\" string"))),
    };
    Ok((string(jws.protected, "protected")?, string(jws.payload, "payload")?, string(jws.signature, "signature")?))
}

/// Refuses the header parameters that change how a JWS is read (RFC 7515 4.1.11, RFC 7797).
fn refuse_extensions(crit: &Option<Value>, b64: &Option<Value>, what: &str) -> Result<(), JwsError> {
    if crit.is_some() {
        return Err(malformed(format!("{what} has \"crit\"; no JWS extension is supported")));
    }
    if b64.as_ref().is_some_and(|b64| b64 != &Value::Bool(true)) {
        return Err(malformed(format!("{what} sets \"b64\"; only base64url-encoded payloads are accepted")));
    }
    Ok(())
}

fn header_string(value: Option<Value>, name: &str) -> Result<Option<String>, JwsError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if !text.is_empty() => Ok(Some(text)),
        Some(_) => Err(malformed(format!("the protected header's \"{name}\" is not a non-empty string"))),
    }
}

/// Reads an ACME request body: the flattened JSON serialization of a JWS
/// whose protected header has "alg", "url", "nonce" and exactly one of "jwk"
/// and "kid". A missing "nonce" is left to the server, whose answer is
/// badNonce (RFC 8555 6.5). Checks shape and encoding only;
/// [`Request::verify`] checks the signature.
pub fn parse(body: &[u8]) -> Result<Request, JwsError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(JwsError::BodyTooLarge { len: body.len() });
    }
    let (protected, payload, signature) = flattened_parts(json_object(body, "the request body")?, "the request")?;
    if protected.is_empty() {
        return Err(malformed("the request's \"protected\" header is empty"));
    }
    let header: Header = json_object(&base64url(&protected, "the \"protected\" header")?, "the protected header")?;
    refuse_extensions(&header.crit, &header.b64, "the protected header")?;

    let alg = match header.alg {
        Some(Value::String(name)) => {
            Algorithm::from_name(&name).ok_or_else(|| JwsError::UnsupportedAlgorithm { alg: quote(&name) })?
        }
        Some(_) => return Err(malformed("the protected header's \"alg\" is not a string")),
        None => return Err(malformed("the protected header has no \"alg\"")),
    };
    let key = match (header.jwk, header_string(header.kid, "kid")?) {
        (Some(jwk), None) => KeyRef::Jwk(Jwk::from_json(&jwk)?),
        (None, Some(kid)) => KeyRef::Kid(kid),
        (Some(_), Some(_)) => {
            return Err(malformed("the protected header has both \"jwk\" and \"kid\"; send exactly one"));
        }
        (None, None) => {
            return Err(malformed(
                "the protected header has neither \"jwk\" nor \"kid\"; send \"jwk\" for newAccount, \"kid\" otherwise",
            ));
        }
    };
    let nonce = header_string(header.nonce, "nonce")?;
    let url = header_string(header.url, "url")?.ok_or_else(|| malformed("the protected header has no \"url\""))?;
    let payload_bytes = base64url(&payload, "the payload")?;
    let signature_bytes = base64url(&signature, "the signature")?;
    Ok(Request {
        alg,
        key,
        nonce,
        url,
        payload: payload_bytes,
        signing_input: format!("{protected}.{payload}").into_bytes(),
        signature: signature_bytes,
    })
}

impl Request {
    /// Checks the signature with `key` (the "jwk" of the request, or the account's key for a "kid").
    pub fn verify(&self, key: &Jwk) -> Result<(), JwsError> {
        key.verify(self.alg, &self.signing_input, &self.signature)
    }

    /// Whether this is a POST-as-GET: the payload is exactly the empty string (RFC 8555 6.3).
    pub fn is_post_as_get(&self) -> bool {
        self.payload.is_empty()
    }

    /// The payload read as JSON into `T`; a mismatch is `malformed` with serde's
    /// account of what was expected.
    pub fn payload_json<T: DeserializeOwned>(&self) -> Result<T, JwsError> {
        if self.payload.is_empty() {
            return Err(malformed("the payload is empty (a POST-as-GET), but this request takes a JSON object"));
        }
        serde_json::from_slice(&self.payload)
            .map_err(|e| malformed(format!("the payload is not the JSON this request takes: {}", serde_message(&e))))
    }
}

/// The key authorization of a challenge: `token "." thumbprint` (RFC 8555 8.1).
pub fn key_authorization(token: &str, account_key: &Jwk) -> String {
    format!("{token}.{}", account_key.thumbprint())
}

/// Checks a newAccount's "externalAccountBinding" (RFC 8555 7.3.4): a
/// flattened JWS with a MAC ("HS256", "HS384" or "HS512") whose protected
/// header has the "kid" of an external account key, the same "url" as the
/// request and no "nonce", and whose payload is the account key `outer_key`.
/// `hmac_key_for` gives the MAC key of a kid, `None` if it is unknown or
/// revoked. Returns the kid.
pub fn verify_external_account_binding(
    eab: &Value,
    outer_key: &Jwk,
    url: &str,
    hmac_key_for: impl Fn(&str) -> Option<Vec<u8>>,
) -> Result<String, JwsError> {
    const WHAT: &str = "the external account binding";
    if !eab.is_object() {
        return Err(malformed("the external account binding is not a JWS object"));
    }
    let jws = Flattened::deserialize(eab).map_err(|_| malformed("the external account binding is not a JWS object"))?;
    let (protected, payload, signature) = flattened_parts(jws, WHAT)?;
    let header_bytes = base64url(&protected, "the external account binding's \"protected\" header")?;
    let header: EabHeader = json_object(&header_bytes, "the external account binding's protected header")?;
    refuse_extensions(&header.crit, &header.b64, "the external account binding's protected header")?;
    let alg = match &header.alg {
        Some(Value::String(name)) => match name.as_str() {
            "HS256" => hmac::HMAC_SHA256,
            "HS384" => hmac::HMAC_SHA384,
            "HS512" => hmac::HMAC_SHA512,
            _ => return Err(JwsError::EabAlgorithm { alg: quote(name) }),
        },
        _ => return Err(malformed("the external account binding's protected header has no \"alg\" string")),
    };
    if header.nonce.is_some() {
        return Err(malformed("the external account binding's protected header must not have a \"nonce\""));
    }
    let kid = match header.kid {
        Some(Value::String(kid)) if !kid.is_empty() => kid,
        _ => return Err(malformed("the external account binding's protected header has no \"kid\" string")),
    };
    match header.url {
        Some(Value::String(eab_url)) if eab_url == url => {}
        Some(Value::String(_)) => {
            return Err(malformed("the external account binding's \"url\" differs from the newAccount request's"));
        }
        _ => return Err(malformed("the external account binding's protected header has no \"url\" string")),
    }
    let mac = base64url(&signature, "the external account binding's signature")?;
    let key = hmac_key_for(&kid).ok_or_else(|| JwsError::EabUnknownKey { kid: quote(&kid) })?;
    let signing_input = format!("{protected}.{payload}");
    hmac::verify(&hmac::Key::new(alg, &key), signing_input.as_bytes(), &mac).map_err(|_| JwsError::EabBadMac)?;

    let payload = base64url(&payload, "the external account binding's payload")?;
    let bound: Value = serde_json::from_slice(&payload)
        .map_err(|_| malformed("the external account binding's payload is not a JSON JWK"))?;
    if Jwk::from_json(&bound)? != *outer_key {
        return Err(JwsError::EabKeyMismatch);
    }
    Ok(kid)
}

/// The protected header of an external account binding.
#[derive(Deserialize)]
struct EabHeader {
    alg: Option<Value>,
    kid: Option<Value>,
    url: Option<Value>,
    nonce: Option<Value>,
    crit: Option<Value>,
    b64: Option<Value>,
}
