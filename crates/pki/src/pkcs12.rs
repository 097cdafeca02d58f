//! PKCS#12 bundles (RFC 7292) of a key, its certificate and the chain, in
//! the two forms people need: modern (PBES2 AES-256-CBC, PBKDF2, HMAC-SHA256
//! MAC) and legacy (PBE-SHA1-3DES, SHA-1 MAC), which iOS and old Windows
//! import and modern OpenSSL reads with `-legacy`.

use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey, PrivateKeyChain,
};

use crate::error::{Error, Result};

/// PBKDF2 / PKCS#12 KDF iterations, OpenSSL's default.
const ITERATIONS: u32 = 2048;

/// Which PKCS#12 encryption to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pkcs12Format {
    /// AES-256-CBC with PBKDF2-HMAC-SHA256, HMAC-SHA256 MAC.
    #[default]
    Modern,
    /// 3DES with the PKCS#12 SHA-1 KDF, HMAC-SHA1 MAC.
    Legacy,
}

/// Builds a bundle: `key_pkcs8` is the private key (PKCS#8 DER), `chain`
/// the certificates leaf first. `friendly_name` labels the key and leaf.
pub fn build_pkcs12(
    friendly_name: &str,
    key_pkcs8: &[u8],
    chain: &[&[u8]],
    password: &str,
    format: Pkcs12Format,
) -> Result<Vec<u8>> {
    let key = PrivateKey::from_der(key_pkcs8).map_err(Error::Pkcs12)?;
    let certs = chain
        .iter()
        .map(|der| Certificate::from_der(der))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Error::Pkcs12)?;
    let leaf = chain.first().ok_or(Error::Pkcs12WithoutCertificate)?;
    let local_key_id = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, leaf).as_ref().to_vec();
    let mut store = KeyStore::new();
    store.add_entry(friendly_name, KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, certs)));
    let (encryption, mac) = match format {
        Pkcs12Format::Modern => (EncryptionAlgorithm::PbeWithHmacSha256AndAes256, MacAlgorithm::HmacSha256),
        Pkcs12Format::Legacy => (EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc, MacAlgorithm::HmacSha1),
    };
    store
        .writer(password)
        .encryption_algorithm(encryption)
        .encryption_iterations(ITERATIONS)
        .mac_algorithm(mac)
        .mac_iterations(ITERATIONS)
        .write()
        .map_err(Error::Pkcs12)
}

/// A random password for a bundle: 20 characters from an alphabet without
/// look-alikes (about 115 bits), easy to type on a phone.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    aws_lc_rs::rand::fill(&mut bytes).expect("the OS random number generator failed");
    // 256 % 56 != 0 gives a slight bias towards the first 32 symbols; at 20 symbols that costs under 2 bits.
    bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_reader_in_both_forms() {
        let key = crate::key::KeyType::EcdsaP256.generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["alice".to_owned()]).unwrap().self_signed(&key).unwrap();
        for format in [Pkcs12Format::Modern, Pkcs12Format::Legacy] {
            let p12 = build_pkcs12("alice", &key.serialize_der(), &[cert.der()], "pw", format).unwrap();
            let read = KeyStore::from_pkcs12(&p12, "pw", p12_keystore::Pkcs12ImportPolicy::Relaxed).unwrap();
            let (_, chain) = read.private_key_chain().unwrap();
            assert_eq!(chain.certs()[0].as_der(), cert.der().as_ref());
            assert!(KeyStore::from_pkcs12(&p12, "wrong", p12_keystore::Pkcs12ImportPolicy::Relaxed).is_err());
        }
    }

    #[test]
    fn passwords_are_long_and_differ() {
        let (a, b) = (generate_password(), generate_password());
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
    }
}
