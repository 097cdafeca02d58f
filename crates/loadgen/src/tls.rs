//! rustls client configuration: TLS 1.3 only, aws-lc-rs, client certificate,
//! no session resumption, and a server-chain cache so that the load
//! generator's own cost per full handshake stays small.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::BoxError;

/// Key exchange group offered (one key share only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kx {
    /// X25519, what OpenSSL 3.0 and Go clients send by default.
    X25519,
    /// NIST P-256 (secp256r1).
    P256,
    /// Hybrid post-quantum X25519MLKEM768.
    X25519mlkem768,
}

pub struct TlsOptions<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
    pub alpn: &'a [&'a [u8]],
    pub kx: Kx,
    /// Verify the server chain once per distinct chain instead of on every handshake.
    pub verify_cache: bool,
}

pub fn client_config(o: &TlsOptions<'_>) -> Result<Arc<ClientConfig>, BoxError> {
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = vec![match o.kx {
        Kx::X25519 => aws_lc_rs::kx_group::X25519,
        Kx::P256 => aws_lc_rs::kx_group::SECP256R1,
        Kx::X25519mlkem768 => aws_lc_rs::kx_group::X25519MLKEM768,
    }];
    // TLS_AES_128_GCM_SHA256 first, as Go and OpenSSL clients order them on
    // AES-NI machines (the baseline's client); the server may still choose.
    provider.cipher_suites = vec![
        aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256,
        aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
        aws_lc_rs::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    // aws-lc seeds its RNG (CPU-jitter entropy, tens of ms of CPU) on first
    // use: do it now rather than inside the measured window.
    let mut warm = [0u8; 32];
    provider.secure_random.fill(&mut warm).map_err(|e| format!("RNG: {e:?}"))?;
    let provider = Arc::new(provider);

    let mut roots = RootCertStore::empty();
    let mut n = 0;
    for cert in CertificateDer::pem_file_iter(o.ca).map_err(|e| format!("{}: {e}", o.ca.display()))? {
        let cert = cert.map_err(|e| format!("{}: {e}", o.ca.display()))?;
        roots.add(cert).map_err(|e| format!("{}: {e}", o.ca.display()))?;
        n += 1;
    }
    if n == 0 {
        return Err(format!("{}: no certificate found", o.ca.display()).into());
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let verifier: Arc<dyn ServerCertVerifier> = if o.verify_cache {
        Arc::new(CachingVerifier { inner: webpki, verified: Mutex::new(Vec::new()) })
    } else {
        webpki
    };

    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(o.cert)
        .map_err(|e| format!("{}: {e}", o.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", o.cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate found", o.cert.display()).into());
    }
    let key = PrivateKeyDer::from_pem_file(o.key).map_err(|e| format!("{}: {e}", o.key.display()))?;

    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, key)?;
    // Every handshake is a full one: no tickets, no session cache, no 0-RTT.
    config.resumption = Resumption::disabled();
    config.enable_early_data = false;
    config.alpn_protocols = o.alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

struct VerifiedChain {
    end_entity: Vec<u8>,
    intermediates: Vec<Vec<u8>>,
    server_name: ServerName<'static>,
}

/// Verifies a server's certificate chain with webpki the first time it is
/// seen and remembers it; the same chain for the same name is then accepted
/// without re-verifying the two chain signatures. The handshake signature
/// (CertificateVerify, proof of the server's key) is still verified on every
/// handshake. The server side (what is being measured) is unaffected.
struct CachingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    verified: Mutex<Vec<VerifiedChain>>,
}

impl std::fmt::Debug for CachingVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingVerifier").finish_non_exhaustive()
    }
}

impl ServerCertVerifier for CachingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        {
            let cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            let hit = cache.iter().any(|c| {
                c.end_entity.as_slice() == end_entity.as_ref()
                    && c.server_name == *server_name
                    && c.intermediates.len() == intermediates.len()
                    && c.intermediates.iter().zip(intermediates).all(|(a, b)| a.as_slice() == b.as_ref())
            });
            if hit {
                return Ok(ServerCertVerified::assertion());
            }
        }
        let ok = self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() < 16 {
            cache.push(VerifiedChain {
                end_entity: end_entity.to_vec(),
                intermediates: intermediates.iter().map(|c| c.to_vec()).collect(),
                server_name: server_name.to_owned(),
            });
        }
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
