//! Certificates for the TLS tests, from the project's own CA (`pki`), and
//! the rustls configuration of an origin that requires a client certificate.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use pki::{CaInit, CaSettings, Issuer, KeyType, LeafRequest, Profile, Subject, SubjectAltName};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A root and issuing CA.
pub struct TestCa {
    issuer: Issuer,
}

/// A leaf certificate with its chain and key.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub key_pem: String,
}

impl Leaf {
    pub fn chain_pem(&self) -> String {
        self.chain.iter().map(|c| pki::pem_cert(c)).collect()
    }
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let ca = pki::create_ca(&CaInit { name: name.to_owned(), key_type: KeyType::EcdsaP256, days: 30 })
            .expect("create CA");
        let issuer =
            Issuer::new(ca.intermediate.der, ca.intermediate.key, ca.root.der, CaSettings::default()).expect("issuer");
        TestCa { issuer }
    }

    pub fn root_pem(&self) -> String {
        pki::pem_cert(self.issuer.root())
    }

    /// Issues a leaf for `cn` with `dns` and `ips` as subject alternative names.
    pub fn leaf(&self, profile: Profile, cn: &str, dns: &[&str], ips: &[IpAddr]) -> Leaf {
        let sans = dns
            .iter()
            .map(|d| SubjectAltName::Dns((*d).to_owned()))
            .chain(ips.iter().map(|ip| SubjectAltName::Ip(*ip)))
            .collect();
        let request = LeafRequest { profile, subject: Subject::common_name(cn), sans, days: None };
        let (issued, key) = self.issuer.issue_with_new_key(&request, KeyType::EcdsaP256).expect("issue leaf");
        let der = pki::private_key_der(&key).expect("key DER");
        Leaf {
            chain: vec![issued.der, self.issuer.intermediate().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.to_vec())),
            key_pem: key.serialize_pem(),
        }
    }

    /// A server configuration presenting `leaf` and requiring a client
    /// certificate issued by this CA.
    pub fn origin_config(&self, leaf: &Leaf) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.root().clone()).expect("root");
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .expect("client verifier");
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(leaf.chain.clone(), leaf.key.clone_key())
            .expect("server config");
        Arc::new(config)
    }
}

/// Writes `contents` to `dir/name`.
pub fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).expect("write test file");
}
