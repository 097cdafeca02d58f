//! The private keys of a token, each with the public key its SKI is computed
//! from, exactly as for a key file: RSA → DER `RSAPublicKey` of `CKA_MODULUS`
//! and `CKA_PUBLIC_EXPONENT`; EC → the uncompressed point of `CKA_EC_POINT`,
//! which tokens give as a DER OCTET STRING (PKCS#11 §2.3.3) or, some of them,
//! bare; Ed25519 (`CKK_EC_EDWARDS`) → the 32-byte key.
//!
//! An RSA private key object carries its modulus and public exponent. An EC
//! one does not carry its point, so it is read from the public key object with
//! the same `CKA_ID` (or, without an id, the same label), else from the private
//! key's `CKA_PUBLIC_KEY_INFO` or `CKA_EC_POINT` where a token offers them. A
//! key whose public half cannot be found, or of a kind or curve the server does
//! not sign with, is left out with a warning naming it.

use std::sync::Arc;

use cryptoki::error::Error;
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use pkcs8::ObjectIdentifier;
use pkcs8::der::asn1::{OctetStringRef, PrintableStringRef, SequenceOf, UintRef};
use pkcs8::der::{Decode, Encode};

use super::token::Token;
use crate::config::Pkcs11Keys;
use crate::keys::KeyType;

/// A private key that stays in its token.
pub(crate) struct TokenKey {
    pub(crate) token: Arc<Token>,
    pub(crate) handle: ObjectHandle,
    pub(crate) key_type: KeyType,
    /// RSA: the modulus's length in bytes, that of signatures and decrypted blocks.
    pub(crate) modulus_len: usize,
    /// `CKA_LABEL`, for logs.
    pub(crate) label: String,
    /// `CKA_ID`, for logs.
    pub(crate) id: Vec<u8>,
}

/// A key found in a token, with the contents of its subjectPublicKey BIT STRING.
pub(crate) struct Found {
    pub(crate) key: TokenKey,
    pub(crate) subject_public_key: Vec<u8>,
}

/// The attributes read from a key object; those a token does not have are `None`.
#[derive(Default)]
struct Attributes {
    key_type: Option<CkKeyType>,
    id: Vec<u8>,
    label: String,
    modulus: Option<Vec<u8>>,
    exponent: Option<Vec<u8>>,
    ec_params: Option<Vec<u8>>,
    ec_point: Option<Vec<u8>>,
    public_key_info: Option<Vec<u8>>,
}

const READ: [AttributeType; 8] = [
    AttributeType::KeyType,
    AttributeType::Id,
    AttributeType::Label,
    AttributeType::Modulus,
    AttributeType::PublicExponent,
    AttributeType::EcParams,
    AttributeType::EcPoint,
    AttributeType::PublicKeyInfo,
];

fn read(session: &Session, object: ObjectHandle) -> Result<Attributes, Error> {
    let mut a = Attributes::default();
    for attribute in session.get_attributes(object, &READ)? {
        let present = |v: Vec<u8>| (!v.is_empty()).then_some(v);
        match attribute {
            Attribute::KeyType(t) => a.key_type = Some(t),
            Attribute::Id(id) => a.id = id,
            Attribute::Label(label) => a.label = String::from_utf8_lossy(&label).into_owned(),
            Attribute::Modulus(n) => a.modulus = present(n),
            Attribute::PublicExponent(e) => a.exponent = present(e),
            Attribute::EcParams(p) => a.ec_params = present(p),
            Attribute::EcPoint(p) => a.ec_point = present(p),
            Attribute::PublicKeyInfo(spki) => a.public_key_info = present(spki),
            _ => {}
        }
    }
    Ok(a)
}

/// Every private key of `token` that `keys` selects (its `object` and `id`).
pub(crate) fn private_keys(token: &Arc<Token>, keys: &Pkcs11Keys) -> Result<Vec<Found>, Error> {
    token.with_session(|session| {
        let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
        if let Some(label) = &keys.object {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = &keys.id {
            template.push(Attribute::Id(id.clone()));
        }
        let mut found = Vec::new();
        for handle in session.find_objects(&template)? {
            let private = read(session, handle)?;
            match public_half(session, &private)? {
                Ok((key_type, subject_public_key, modulus_len)) => found.push(Found {
                    key: TokenKey {
                        token: token.clone(),
                        handle,
                        key_type,
                        modulus_len,
                        label: private.label,
                        id: private.id,
                    },
                    subject_public_key,
                }),
                Err(why) => tracing::warn!(
                    token = %token.label(),
                    object = %private.label,
                    id = %hex::encode(&private.id),
                    "private key left out: {why}"
                ),
            }
        }
        Ok(found)
    })
}

/// The key's type, subjectPublicKey contents and (RSA) modulus length, or why
/// the key cannot be used.
type PublicHalf = Result<(KeyType, Vec<u8>, usize), String>;

fn public_half(session: &Session, private: &Attributes) -> Result<PublicHalf, Error> {
    let Some(kind) = private.key_type else {
        return Ok(Err("the token gives no CKA_KEY_TYPE".to_owned()));
    };
    if kind == CkKeyType::RSA {
        let public = match (&private.modulus, &private.exponent) {
            (Some(_), Some(_)) => None,
            _ => public_object(session, private, kind)?,
        };
        let from = public.as_ref().unwrap_or(private);
        let (Some(n), Some(e)) = (&from.modulus, &from.exponent) else {
            return Ok(Err("neither it nor a public key object gives the modulus and exponent".to_owned()));
        };
        let n = strip_zeros(n);
        return Ok(rsa_public_key(n, e).map(|der| (KeyType::Rsa, der, n.len())));
    }
    if kind != CkKeyType::EC && kind != CkKeyType::EC_EDWARDS {
        return Ok(Err(format!("its key type {kind} is not RSA, EC or EC_EDWARDS")));
    }
    let public = public_object(session, private, kind)?;
    let params = private.ec_params.as_ref().or(public.as_ref().and_then(|p| p.ec_params.as_ref()));
    let curve = match params.map(|p| curve(kind, p)) {
        None => return Ok(Err("the token gives no CKA_EC_PARAMS".to_owned())),
        Some(Err(why)) => return Ok(Err(why)),
        Some(Ok(curve)) => curve,
    };
    let point_len = match curve {
        KeyType::EcdsaP256 => 65,
        KeyType::EcdsaP384 => 97,
        KeyType::EcdsaP521 => 133,
        _ => 32,
    };
    let point = public
        .as_ref()
        .and_then(|p| p.ec_point.as_deref())
        .and_then(|p| unwrap_point(p, point_len))
        .or_else(|| private.public_key_info.as_deref().and_then(spki_key))
        .or_else(|| private.ec_point.as_deref().and_then(|p| unwrap_point(p, point_len)));
    Ok(match point {
        Some(point) if point.len() == point_len && (curve == KeyType::Ed25519 || point[0] == 4) => {
            Ok((curve, point, 0))
        }
        Some(_) => Err("its public point is not an uncompressed point of its curve".to_owned()),
        None => Err("no public key object with its CKA_ID holds its public point".to_owned()),
    })
}

/// The public key object with the private key's `CKA_ID` (or, without an id,
/// its label) and key type.
fn public_object(session: &Session, private: &Attributes, kind: CkKeyType) -> Result<Option<Attributes>, Error> {
    let selector = if !private.id.is_empty() {
        Attribute::Id(private.id.clone())
    } else if !private.label.is_empty() {
        Attribute::Label(private.label.as_bytes().to_vec())
    } else {
        return Ok(None);
    };
    let template = [Attribute::Class(ObjectClass::PUBLIC_KEY), Attribute::KeyType(kind), selector];
    match session.find_objects(&template)?.first() {
        Some(handle) => read(session, *handle).map(Some),
        None => Ok(None),
    }
}

const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// The curve `CKA_EC_PARAMS` names: an OID, or for `CKK_EC_EDWARDS` the
/// PrintableString `edwards25519` that PKCS#11 3.0 also allows.
fn curve(kind: CkKeyType, params: &[u8]) -> Result<KeyType, String> {
    if let Ok(oid) = ObjectIdentifier::from_der(params) {
        return match oid {
            _ if kind == CkKeyType::EC_EDWARDS && oid == ED25519 => Ok(KeyType::Ed25519),
            _ if kind == CkKeyType::EC && oid == P256 => Ok(KeyType::EcdsaP256),
            _ if kind == CkKeyType::EC && oid == P384 => Ok(KeyType::EcdsaP384),
            _ if kind == CkKeyType::EC && oid == P521 => Ok(KeyType::EcdsaP521),
            _ => Err(format!("its curve {oid} is not P-256, P-384, P-521 or Ed25519")),
        };
    }
    match PrintableStringRef::from_der(params) {
        Ok(name) if kind == CkKeyType::EC_EDWARDS && name.as_str() == "edwards25519" => Ok(KeyType::Ed25519),
        Ok(name) => Err(format!("its curve {} is not P-256, P-384, P-521 or Ed25519", name.as_str())),
        Err(_) => Err("its CKA_EC_PARAMS is neither an OID nor a curve name".to_owned()),
    }
}

/// The point of `CKA_EC_POINT`: bare when it has the point's length, else the
/// contents of the DER OCTET STRING it is. The length decides, since a bare
/// uncompressed point also starts with 0x04, the OCTET STRING tag.
fn unwrap_point(value: &[u8], point_len: usize) -> Option<Vec<u8>> {
    if value.len() == point_len {
        return Some(value.to_vec());
    }
    OctetStringRef::from_der(value).ok().map(|o| o.as_bytes().to_vec())
}

/// The subjectPublicKey contents of a DER SubjectPublicKeyInfo.
fn spki_key(der: &[u8]) -> Option<Vec<u8>> {
    pkcs8::spki::SubjectPublicKeyInfoRef::try_from(der).ok().map(|spki| spki.subject_public_key.raw_bytes().to_vec())
}

/// DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
fn rsa_public_key(n: &[u8], e: &[u8]) -> Result<Vec<u8>, String> {
    let encoded = (|| {
        let mut sequence = SequenceOf::<UintRef<'_>, 2>::new();
        sequence.add(UintRef::new(n)?)?;
        sequence.add(UintRef::new(e)?)?;
        sequence.to_der()
    })();
    encoded.map_err(|e| format!("its modulus and exponent cannot be encoded: {e}"))
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_points_bare_or_in_an_octet_string() {
        let point: Vec<u8> = std::iter::once(4).chain(std::iter::repeat_n(0x41, 64)).collect();
        let mut wrapped = vec![0x04, 0x41];
        wrapped.extend_from_slice(&point);
        assert_eq!(unwrap_point(&point, 65), Some(point.clone()));
        assert_eq!(unwrap_point(&wrapped, 65), Some(point));
        let ed = [7u8; 32];
        assert_eq!(unwrap_point(&[&[0x04, 0x20][..], &ed].concat(), 32), Some(ed.to_vec()));
    }

    #[test]
    fn curves_by_oid_or_by_name() {
        assert_eq!(
            curve(CkKeyType::EC, &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
            Ok(KeyType::EcdsaP256)
        );
        assert_eq!(curve(CkKeyType::EC, &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22]), Ok(KeyType::EcdsaP384));
        let mut name = vec![0x13, 12];
        name.extend_from_slice(b"edwards25519");
        assert_eq!(curve(CkKeyType::EC_EDWARDS, &name), Ok(KeyType::Ed25519));
        assert_eq!(curve(CkKeyType::EC_EDWARDS, &[0x06, 0x03, 0x2b, 0x65, 0x70]), Ok(KeyType::Ed25519));
        assert!(
            curve(CkKeyType::EC, &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a]).unwrap_err().contains("1.3.132.0.10")
        );
    }

    #[test]
    fn rsa_public_key_is_der_with_positive_integers() {
        let der = rsa_public_key(&[0x80, 0x01], &[0x01, 0x00, 0x01]).unwrap();
        assert_eq!(der, [0x30, 0x0a, 0x02, 0x03, 0x00, 0x80, 0x01, 0x02, 0x03, 0x01, 0x00, 0x01]);
    }
}
