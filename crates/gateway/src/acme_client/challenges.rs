//! The answers to http-01 and tls-alpn-01 challenges while an order waits for
//! them: the plain-HTTP listener looks up `/.well-known/acme-challenge/TOKEN`
//! here before it redirects, and the TLS listener a ClientHello that offers
//! only `acme-tls/1` (RFC 8737). An answer is there from just before the CA
//! is told to validate until the order is done ([`Presented`] takes it away).
//! On a shared database the answers are also written there (`answers.rs`), and
//! an answer this instance does not hold is looked for there.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use store::{AnswerKind, ChallengeAnswer};

use super::AcmeError;
use super::answers::{Published, SharedAnswers};

/// The ALPN protocol of tls-alpn-01.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The path prefix of http-01 answers.
pub const HTTP_01_PREFIX: &str = "/.well-known/acme-challenge/";

/// Answers by token (http-01) and by name (tls-alpn-01), and the database that
/// shares them with the other instances, if there is one.
#[derive(Default)]
pub struct Challenges {
    http: RwLock<HashMap<String, String>>,
    tls_alpn: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    shared: Option<SharedAnswers>,
}

impl Challenges {
    /// Answers shared through `shared` as well as held here.
    pub(crate) fn shared(shared: SharedAnswers) -> Challenges {
        Challenges { shared: Some(shared), ..Challenges::default() }
    }

    /// The answer to an http-01 validation request for `path`: this instance's, else
    /// one another instance shared. Anything but the challenge path is answered
    /// `None` at once, without asking the database.
    pub async fn http_01_answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(HTTP_01_PREFIX)?;
        if let Some(answer) = self.http_01(token) {
            return Some(answer);
        }
        self.shared.as_ref()?.http_01(token).await
    }

    /// The challenge certificate for a tls-alpn-01 validation of SNI `name` (lowercase):
    /// this instance's, else one made now for the digest another instance shared.
    pub async fn tls_alpn_01_answer(&self, name: &str, provider: &CryptoProvider) -> Option<Arc<CertifiedKey>> {
        if let Some(key) = self.tls_alpn_01(name) {
            return Some(key);
        }
        let (identifier, digest) = self.shared.as_ref()?.tls_alpn_01(name).await?;
        match tls_alpn_01_certificate(&identifier, &digest, provider) {
            Ok(key) => Some(Arc::new(key)),
            Err(e) => {
                tracing::warn!(%identifier, error = %e, "cannot make the tls-alpn-01 certificate of a shared answer");
                None
            }
        }
    }

    /// Writes an answer just presented into the shared database, for the other
    /// instances to serve; `None` when nothing is shared.
    pub(crate) async fn share(
        &self,
        kind: AnswerKind,
        name: &str,
        identifier: &str,
        value: String,
    ) -> Result<Option<Published>, AcmeError> {
        let Some(shared) = &self.shared else { return Ok(None) };
        let answer = ChallengeAnswer { kind, name: name.to_owned(), identifier: identifier.to_owned(), value };
        shared.publish(answer).await.map(Some)
    }

    /// The key authorization to answer at `/.well-known/acme-challenge/{token}`.
    pub fn http_01(&self, token: &str) -> Option<String> {
        self.http.read().unwrap_or_else(PoisonError::into_inner).get(token).cloned()
    }

    /// The answer to `path` if it is an http-01 challenge path with a token being validated.
    pub fn http_01_path(&self, path: &str) -> Option<String> {
        self.http_01(path.strip_prefix(HTTP_01_PREFIX)?)
    }

    /// The challenge certificate for `name` (lowercase), while its validation runs.
    pub fn tls_alpn_01(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.tls_alpn.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    /// Answers the http-01 challenge `token` until the guard drops.
    pub fn present_http_01(self: &Arc<Self>, token: &str, key_authorization: &str) -> Presented {
        let mut http = self.http.write().unwrap_or_else(PoisonError::into_inner);
        http.insert(token.to_owned(), key_authorization.to_owned());
        Presented { challenges: self.clone(), key: Key::Http(token.to_owned()) }
    }

    /// Answers tls-alpn-01 for `name` with a certificate carrying `digest` (SHA-256 of the
    /// key authorization) until the guard drops.
    pub fn present_tls_alpn_01(
        self: &Arc<Self>,
        name: &str,
        digest: &[u8],
        provider: &CryptoProvider,
    ) -> Result<Presented, String> {
        let key = tls_alpn_01_certificate(name, digest, provider)?;
        let name = tls_alpn_01_sni(name);
        self.tls_alpn.write().unwrap_or_else(PoisonError::into_inner).insert(name.clone(), Arc::new(key));
        Ok(Presented { challenges: self.clone(), key: Key::TlsAlpn(name) })
    }
}

/// The SNI name a validation of `identifier` carries: RFC 8738 §6 validates an IP
/// address with its reverse-DNS name.
pub(crate) fn tls_alpn_01_sni(identifier: &str) -> String {
    match identifier.parse::<std::net::IpAddr>() {
        Ok(ip) => pki::reverse_dns_name(ip),
        Err(_) => identifier.to_ascii_lowercase(),
    }
}

enum Key {
    Http(String),
    TlsAlpn(String),
}

/// An answer being given; dropping it takes the answer away.
pub struct Presented {
    challenges: Arc<Challenges>,
    key: Key,
}

impl Drop for Presented {
    fn drop(&mut self) {
        match &self.key {
            Key::Http(token) => {
                self.challenges.http.write().unwrap_or_else(PoisonError::into_inner).remove(token);
            }
            Key::TlsAlpn(name) => {
                self.challenges.tls_alpn.write().unwrap_or_else(PoisonError::into_inner).remove(name);
            }
        }
    }
}

/// RFC 8737 §3: a self-signed certificate for `name` whose critical acmeIdentifier
/// extension holds the SHA-256 digest of the key authorization.
fn tls_alpn_01_certificate(name: &str, digest: &[u8], provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params = CertificateParams::new(vec![name.to_owned()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = provider.key_provider.load_private_key(der).map_err(|e| e.to_string())?;
    Ok(CertifiedKey::new(vec![CertificateDer::from(cert.der().to_vec())], signing))
}

/// A self-signed certificate for `hosts` (lowercase; wildcards and IP addresses taken as
/// they are) that a site serves until its first ACME certificate arrives: clients refuse
/// it, and it names no other site.
pub fn placeholder(hosts: &[String], provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params = CertificateParams::new(hosts.to_vec()).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, "gatehouse placeholder: ACME certificate pending");
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = provider.key_provider.load_private_key(der).map_err(|e| e.to_string())?;
    Ok(CertifiedKey::new(vec![CertificateDer::from(cert.der().to_vec())], signing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_there_until_its_guard_drops() {
        let challenges = Arc::new(Challenges::default());
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let http = challenges.present_http_01("tok", "tok.thumb");
        assert_eq!(challenges.http_01_path("/.well-known/acme-challenge/tok").as_deref(), Some("tok.thumb"));
        assert_eq!(challenges.http_01_path("/.well-known/acme-challenge/other"), None);
        let tls = challenges.present_tls_alpn_01("A.test", &[7; 32], &provider).expect("a challenge certificate");
        let ip = challenges.present_tls_alpn_01("127.0.0.1", &[7; 32], &provider).expect("a challenge certificate");
        assert!(challenges.tls_alpn_01("a.test").is_some());
        assert!(challenges.tls_alpn_01("1.0.0.127.in-addr.arpa").is_some());
        drop((http, tls, ip));
        assert_eq!(challenges.http_01("tok"), None);
        assert!(challenges.tls_alpn_01("a.test").is_none());
    }
}
