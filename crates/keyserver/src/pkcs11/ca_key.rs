//! The certificate authority's own key in a PKCS#11 token
//! (`gatehouse ca init --key-store pkcs11:...`): generated inside the token
//! (sensitive, never extractable), then used through [`pki::ExternalKey`] by
//! everything that issues (the `ca` commands, the gateway's internal CA, the
//! ACME server). [`open`] is the opener gatehouse installs with
//! [`pki::set_token_opener`].
//!
//! A key is opened once per process and kept (a module is initialized once:
//! `C_Initialize` twice is an error), so issuing again reuses the token's
//! login and session pool.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use aws_lc_rs::digest;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType as CkKeyType, ObjectClass};
use keyless::Opcode;
use rcgen::SignatureAlgorithm;

use super::Modules;
use super::objects::Found;
use crate::config::{PinSource, Pkcs11Keys};
use crate::keys::KeyType;

/// The DER OID of P-256 (`CKA_EC_PARAMS`).
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// The DER OID of P-384.
const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// The modules loaded, and the CA keys opened by URI.
type Opened = (Modules, HashMap<String, Arc<TokenCaKey>>);

/// What is open, for the life of the process.
fn opened() -> &'static Mutex<Opened> {
    static OPENED: OnceLock<Mutex<Opened>> = OnceLock::new();
    OPENED.get_or_init(Mutex::default)
}

/// A CA key in a token.
pub struct TokenCaKey {
    found: Found,
    algorithm: &'static SignatureAlgorithm,
    /// The operation that signs a certificate's digest, and that digest's hash (none
    /// for Ed25519, which signs the whole message).
    opcode: Opcode,
    hash: Option<&'static digest::Algorithm>,
    describe: String,
}

impl pki::ExternalKey for TokenCaKey {
    fn public_key(&self) -> &[u8] {
        &self.found.subject_public_key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let payload = match self.hash {
            Some(hash) => digest::digest(hash, message).as_ref().to_vec(),
            None => message.to_vec(),
        };
        super::perform(&self.found.key, self.opcode, &payload).map_err(|e| e.to_string())
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

/// Opens the CA key that `uri` names (relative paths from `base`): the one
/// private key the URI selects in its token.
pub fn open(uri: &str, base: &Path) -> Result<Arc<dyn pki::ExternalKey>, String> {
    let mut opened = opened().lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(key) = opened.1.get(uri) {
        return Ok(key.clone());
    }
    let keys = super::uri::parse(uri, base)?;
    let mut found = opened.0.keys(&keys).map_err(|e| e.to_string())?;
    let key = match found.len() {
        1 => found.remove(0),
        0 => return Err(format!("token {} holds no private key that {} selects", keys.token, shown(uri))),
        n => {
            let labels: Vec<&str> = found.iter().map(|f| f.key.label.as_str()).collect();
            return Err(format!(
                "{} selects {n} private keys in token {} ({}); name one with object=LABEL",
                shown(uri),
                keys.token,
                labels.join(", ")
            ));
        }
    };
    let key = Arc::new(ca_key(key, uri)?);
    opened.1.insert(uri.to_owned(), key.clone());
    Ok(key)
}

/// Generates a key of `key_type` in the token of `uri`, labelled with its
/// `object` (required; a label already used there is refused), and opens it.
pub fn generate(uri: &str, base: &Path, key_type: pki::KeyType) -> Result<Arc<dyn pki::ExternalKey>, String> {
    let keys = super::uri::parse(uri, base)?;
    let relative = |p: &Path| !p.is_absolute();
    let as_written = super::uri::parse(uri, Path::new(""))?;
    if relative(&as_written.module) || matches!(&as_written.pin, PinSource::File(f) if relative(f)) {
        return Err("give module-path and pin-source as absolute paths: the CA keeps the URI and reads it \
                    from other directories"
            .into());
    }
    if matches!(keys.pin, PinSource::Value(_)) {
        return Err("the URI holds the PIN (pin-value); a CA's key store names a pin file: pin-source=file:PATH".into());
    }
    let label = keys.object.clone().ok_or("the URI names no object; add ;object=LABEL for the new key")?;
    {
        let mut opened = opened().lock().unwrap_or_else(PoisonError::into_inner);
        let token = opened.0.token(&keys).map_err(|e| e.to_string())?;
        let by_label = Pkcs11Keys { id: None, ..keys.clone() };
        let existing = super::objects::private_keys(&token, &by_label).map_err(|e| e.to_string())?;
        if !existing.is_empty() {
            return Err(format!(
                "token {} already holds a private key labelled {label:?}; name another object, or delete it first",
                keys.token
            ));
        }
        let (mechanism, public, private) = templates(key_type, &label, keys.id.clone().unwrap_or_default())?;
        token
            .with_rw_session(|session| session.generate_key_pair(&mechanism, &public, &private).map(drop))
            .map_err(|e| format!("token {}: generating the key: {e}", keys.token))?;
    }
    open(uri, base)
}

/// The mechanism and the public and private templates of a new CA key: on the
/// token, private, sensitive, not extractable, for signing only.
fn templates(
    key_type: pki::KeyType,
    label: &str,
    id: Vec<u8>,
) -> Result<(Mechanism<'static>, Vec<Attribute>, Vec<Attribute>), String> {
    let common = |class| {
        vec![
            Attribute::Class(class),
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ]
    };
    let mut public = common(ObjectClass::PUBLIC_KEY);
    public.push(Attribute::Verify(true));
    let mut private = common(ObjectClass::PRIVATE_KEY);
    private.extend([
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
    ]);
    let mechanism = match key_type {
        pki::KeyType::EcdsaP256 | pki::KeyType::EcdsaP384 => {
            let oid = if key_type == pki::KeyType::EcdsaP256 { P256_OID } else { P384_OID };
            public.push(Attribute::KeyType(CkKeyType::EC));
            public.push(Attribute::EcParams(oid.to_vec()));
            private.push(Attribute::KeyType(CkKeyType::EC));
            Mechanism::EccKeyPairGen
        }
        pki::KeyType::Rsa2048 | pki::KeyType::Rsa3072 | pki::KeyType::Rsa4096 => {
            let bits: u64 = match key_type {
                pki::KeyType::Rsa2048 => 2048,
                pki::KeyType::Rsa3072 => 3072,
                _ => 4096,
            };
            public.push(Attribute::KeyType(CkKeyType::RSA));
            public.push(Attribute::ModulusBits(bits.into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            private.push(Attribute::KeyType(CkKeyType::RSA));
            Mechanism::RsaPkcsKeyPairGen
        }
        pki::KeyType::Ed25519 => {
            return Err("an Ed25519 CA key in a token is not supported; use ecdsa-p256, ecdsa-p384 or rsa".into());
        }
    };
    Ok((mechanism, public, private))
}

/// How a found key signs certificates.
fn ca_key(found: Found, uri: &str) -> Result<TokenCaKey, String> {
    let (algorithm, opcode, hash): (&'static SignatureAlgorithm, _, _) = match found.key.key_type {
        KeyType::EcdsaP256 => (&rcgen::PKCS_ECDSA_P256_SHA256, Opcode::EcdsaSignSha256, Some(&digest::SHA256)),
        KeyType::EcdsaP384 => (&rcgen::PKCS_ECDSA_P384_SHA384, Opcode::EcdsaSignSha384, Some(&digest::SHA384)),
        KeyType::Rsa => (&rcgen::PKCS_RSA_SHA256, Opcode::RsaSignSha256, Some(&digest::SHA256)),
        KeyType::Ed25519 => (&rcgen::PKCS_ED25519, Opcode::Ed25519Sign, None),
        KeyType::EcdsaP521 => return Err("a P-521 CA key is not supported; use P-256, P-384 or RSA".into()),
    };
    let describe = format!("{} (object {:?})", shown(uri), found.key.label);
    Ok(TokenCaKey { found, algorithm, opcode, hash, describe })
}

/// The URI as messages show it: without a `pin-value`.
fn shown(uri: &str) -> String {
    match uri.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query.split('&').filter(|q| !q.starts_with("pin-value=")).collect();
            if kept.is_empty() { path.to_owned() } else { format!("{path}?{}", kept.join("&")) }
        }
        None => uri.to_owned(),
    }
}
