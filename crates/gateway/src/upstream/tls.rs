//! TLS to the origin: the rustls client configuration of one pool (trust
//! anchors from `tls.ca`, the optional client certificate for authenticated
//! origin pull) and the name each `https://` server is verified against.
//!
//! Only the configured CA bundle is trusted: an origin is usually certified by
//! a private CA, and the system roots would let any public certificate for the
//! name impersonate it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::TlsConnector;

use super::UpstreamError;
use super::config::{ServerAddr, UpstreamTls, refuse};

/// The TLS client side of one pool.
pub(super) struct OriginTls {
    pub(super) connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl OriginTls {
    /// Reads the PEM files of `tls` (relative to `base_dir`) and builds the client configuration.
    pub(super) fn load(upstream: &str, tls: &UpstreamTls, base_dir: &Path) -> Result<OriginTls, UpstreamError> {
        let mut roots = RootCertStore::empty();
        for (n, cert) in read_certs(upstream, "tls.ca", &base_dir.join(&tls.ca))?.into_iter().enumerate() {
            roots.add(cert).map_err(|e| {
                refuse(upstream, format!("tls.ca {:?}: certificate {n} is not a usable trust anchor: {e}", tls.ca))
            })?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| refuse(upstream, format!("tls: no usable protocol version: {e}")))?
            .with_root_certificates(roots);
        let mut config = match (&tls.client_cert, &tls.client_key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => {
                return Err(refuse(upstream, "tls.client_cert is set without tls.client_key"));
            }
            (None, Some(_)) => {
                return Err(refuse(upstream, "tls.client_key is set without tls.client_cert"));
            }
            (Some(cert), Some(key)) => {
                let chain = read_certs(upstream, "tls.client_cert", &base_dir.join(cert))?;
                let key = read_key(upstream, &base_dir.join(key))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    refuse(upstream, format!("tls.client_cert and tls.client_key cannot be used together: {e}"))
                })?
            }
        };
        // The pool speaks HTTP/1.1 to origins; say so rather than let a server guess.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name =
            match &tls.server_name {
                None => None,
                Some(name) => Some(ServerName::try_from(name.clone()).map_err(|_| {
                    refuse(upstream, format!("tls.server_name {name:?} is not a DNS name or IP address"))
                })?),
            };
        Ok(OriginTls { connector: TlsConnector::from(Arc::new(config)), server_name })
    }

    /// The SNI and verified name for `servers[index]`: `tls.server_name`, else the URL's host.
    pub(super) fn name_for(
        &self,
        upstream: &str,
        index: usize,
        addr: &ServerAddr,
    ) -> Result<ServerName<'static>, UpstreamError> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        ServerName::try_from(addr.host.clone()).map_err(|_| {
            refuse(
                upstream,
                format!(
                    "servers[{index}] host {:?} is not a name a certificate can be checked against; set tls.server_name",
                    addr.host
                ),
            )
        })
    }
}

fn read_file(upstream: &str, key: &str, path: &PathBuf) -> Result<Vec<u8>, UpstreamError> {
    std::fs::read(path).map_err(|e| refuse(upstream, format!("{key} {} cannot be read: {e}", path.display())))
}

fn read_certs(upstream: &str, key: &str, path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, UpstreamError> {
    let pem = read_file(upstream, key, path)?;
    let certs: Vec<CertificateDer<'static>> =
        pki::read_pem(&pem).map_err(|e| refuse(upstream, format!("{key} {} is not valid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(refuse(upstream, format!("{key} {} holds no CERTIFICATE block", path.display())));
    }
    Ok(certs)
}

fn read_key(upstream: &str, path: &PathBuf) -> Result<PrivateKeyDer<'static>, UpstreamError> {
    let pem = read_file(upstream, "tls.client_key", path)?;
    pki::read_first_pem::<PrivateKeyDer<'static>>(&pem).map_err(|e| {
        refuse(
            upstream,
            format!("tls.client_key {} holds no usable PEM private key (PKCS#8, RSA or EC): {e}", path.display()),
        )
    })
}
