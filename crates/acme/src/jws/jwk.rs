//! Account keys as JWK (RFC 7517, 7518 6, 8037): EC P-256 and P-384, RSA of 2048 to
//! 8192 bits, Ed25519; their RFC 7638 thumbprints and signature checks.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

impl Curve {
    fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }

    fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }
}

/// The members RFC 7638 hashes, decoded; RSA integers without leading zeros.
#[derive(Clone, Debug, PartialEq, Eq)]
enum KeyParams {
    Ec { curve: Curve, x: Vec<u8>, y: Vec<u8> },
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ed25519 { x: Vec<u8> },
}

/// An account's public key (RFC 7517): EC P-256 or P-384, RSA of 2048 to
/// 8192 bits, or OKP Ed25519. Checked when it is built, so a `Jwk` is always
/// usable to verify.
#[derive(Clone)]
pub struct Jwk {
    params: KeyParams,
    public: ParsedPublicKey,
    spki: Vec<u8>,
}

/// Members that only a private key has (RFC 7518 6.2.2, 6.3.2, RFC 8037 2; "k" is a symmetric key).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fn key_member<'a>(object: &'a serde_json::Map<String, Value>, name: &str) -> Result<&'a str, JwsError> {
    object.get(name).and_then(Value::as_str).ok_or_else(|| bad_key(format!("the JWK has no \"{name}\" string")))
}

fn key_bytes(object: &serde_json::Map<String, Value>, name: &str) -> Result<Vec<u8>, JwsError> {
    let text = key_member(object, name)?;
    URL_SAFE_NO_PAD.decode(text).map_err(|_| bad_key(format!("the JWK's \"{name}\" is not base64url without padding")))
}

/// A big-endian unsigned integer without its leading zero bytes (RFC 7518 6.3.1.1 forbids
/// them, but some libraries add one, and a key must hash the same either way).
fn without_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.drain(..zeros);
    bytes
}

fn bit_len(unsigned: &[u8]) -> usize {
    unsigned.first().map_or(0, |&top| unsigned.len() * 8 - top.leading_zeros() as usize)
}

impl Jwk {
    /// The key a JWK (RFC 7517) describes. Members other than the key's own
    /// ("alg", "use", "kid", ...) are ignored; private key members are refused.
    pub fn from_json(value: &Value) -> Result<Jwk, JwsError> {
        let object = value.as_object().ok_or_else(|| bad_key("the JWK is not a JSON object"))?;
        if let Some(name) = PRIVATE_MEMBERS.iter().find(|name| object.contains_key(**name)) {
            return Err(bad_key(format!("the JWK holds private key material (\"{name}\"); send the public key only")));
        }
        let params = match key_member(object, "kty")? {
            "EC" => {
                let curve = match key_member(object, "crv")? {
                    "P-256" => Curve::P256,
                    "P-384" => Curve::P384,
                    other => {
                        return Err(bad_key(format!(
                            "the EC curve {} is not accepted; use P-256 or P-384",
                            quote(other)
                        )));
                    }
                };
                let (x, y) = (key_bytes(object, "x")?, key_bytes(object, "y")?);
                for (name, coordinate) in [("x", &x), ("y", &y)] {
                    if coordinate.len() != curve.coordinate_len() {
                        return Err(bad_key(format!(
                            "the JWK's \"{name}\" is {} bytes; a {} coordinate is {} bytes",
                            coordinate.len(),
                            curve.name(),
                            curve.coordinate_len()
                        )));
                    }
                }
                KeyParams::Ec { curve, x, y }
            }
            "RSA" => {
                let n = without_leading_zeros(key_bytes(object, "n")?);
                let e = without_leading_zeros(key_bytes(object, "e")?);
                let bits = bit_len(&n);
                if !(2048..=8192).contains(&bits) {
                    return Err(bad_key(format!("the RSA key is {bits} bits; gatehouse takes 2048 to 8192 bits")));
                }
                if n.last().is_some_and(|b| b % 2 == 0) {
                    return Err(bad_key("the RSA modulus is even, so it is not a product of two primes"));
                }
                if e.len() > 4 || bit_len(&e) < 2 || e.last().is_some_and(|b| b % 2 == 0) {
                    return Err(bad_key("the RSA exponent must be an odd number from 3 to 2^32 (65537 is usual)"));
                }
                KeyParams::Rsa { n, e }
            }
            "OKP" => {
                let crv = key_member(object, "crv")?;
                if crv != "Ed25519" {
                    return Err(bad_key(format!("the OKP curve {} is not accepted; use Ed25519", quote(crv))));
                }
                let x = key_bytes(object, "x")?;
                if x.len() != 32 {
                    return Err(bad_key(format!("the JWK's \"x\" is {} bytes; an Ed25519 key is 32 bytes", x.len())));
                }
                KeyParams::Ed25519 { x }
            }
            other => {
                return Err(bad_key(format!(
                    "the key type {} is not accepted; use EC (P-256, P-384), RSA or OKP (Ed25519)",
                    quote(other)
                )));
            }
        };
        Jwk::from_params(params)
    }

    fn from_params(params: KeyParams) -> Result<Jwk, JwsError> {
        let public = match &params {
            KeyParams::Ec { curve, x, y } => {
                let algorithm = match curve {
                    Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
                    Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
                };
                let point = [&[0x04][..], x, y].concat();
                ParsedPublicKey::new(algorithm, point)
                    .map_err(|_| bad_key(format!("the JWK's point (x, y) is not on the {} curve", curve.name())))?
            }
            KeyParams::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
                .map_err(|_| bad_key("the JWK's \"n\" and \"e\" do not form an RSA public key"))?,
            KeyParams::Ed25519 { x } => ParsedPublicKey::new(&signature::ED25519, x)
                .map_err(|_| bad_key("the JWK's \"x\" is not an Ed25519 public key"))?,
        };
        let spki = public
            .as_der()
            .map_err(|_| bad_key("the JWK cannot be written as a SubjectPublicKeyInfo"))?
            .as_ref()
            .to_vec();
        Ok(Jwk { params, public, spki })
    }

    /// The JWK with only the members RFC 7638 requires (the form stored for an account).
    pub fn to_json(&self) -> Value {
        let b64 = |bytes: &[u8]| Value::String(URL_SAFE_NO_PAD.encode(bytes));
        match &self.params {
            KeyParams::Ec { curve, x, y } => {
                serde_json::json!({"crv": curve.name(), "kty": "EC", "x": b64(x), "y": b64(y)})
            }
            KeyParams::Rsa { n, e } => serde_json::json!({"e": b64(e), "kty": "RSA", "n": b64(n)}),
            KeyParams::Ed25519 { x } => serde_json::json!({"crv": "Ed25519", "kty": "OKP", "x": b64(x)}),
        }
    }

    /// The RFC 7638 thumbprint: SHA-256 of the required members in lexicographic
    /// order without whitespace, base64url without padding (43 characters).
    pub fn thumbprint(&self) -> String {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        // Written out rather than serialized: the order and spacing are the hash's input.
        let canonical = match &self.params {
            KeyParams::Ec { curve, x, y } => {
                format!(r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#, curve.name(), b64(x), b64(y))
            }
            KeyParams::Rsa { n, e } => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64(e), b64(n)),
            KeyParams::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(x)),
        };
        b64(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    }

    /// The one algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        match &self.params {
            KeyParams::Ec { curve: Curve::P256, .. } => Algorithm::Es256,
            KeyParams::Ec { curve: Curve::P384, .. } => Algorithm::Es384,
            KeyParams::Rsa { .. } => Algorithm::Rs256,
            KeyParams::Ed25519 { .. } => Algorithm::EdDsa,
        }
    }

    fn type_name(&self) -> &'static str {
        match &self.params {
            KeyParams::Ec { curve: Curve::P256, .. } => "EC P-256",
            KeyParams::Ec { curve: Curve::P384, .. } => "EC P-384",
            KeyParams::Rsa { .. } => "RSA",
            KeyParams::Ed25519 { .. } => "Ed25519",
        }
    }

    /// Checks `signature` over `message` with this key; `alg` must be the key's own algorithm.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> Result<(), JwsError> {
        if alg != self.algorithm() {
            return Err(JwsError::AlgorithmMismatch { alg, key: self.type_name(), key_alg: self.algorithm() });
        }
        self.public.verify_sig(message, signature).map_err(|_| JwsError::BadSignature)
    }

    /// The key as a DER SubjectPublicKeyInfo (RFC 5280), to compare with a certificate's key.
    pub fn spki_der(&self) -> Vec<u8> {
        self.spki.clone()
    }
}

impl PartialEq for Jwk {
    fn eq(&self, other: &Jwk) -> bool {
        self.params == other.params
    }
}

impl Eq for Jwk {}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk").field("type", &self.type_name()).field("thumbprint", &self.thumbprint()).finish()
    }
}
