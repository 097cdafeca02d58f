//! The client identity as request headers for the upstream: RFC 9440
//! `Client-Cert` / `Client-Cert-Chain` (default) or Envoy's
//! `X-Forwarded-Client-Cert`. Computed once per connection; copies of these
//! headers sent by the client are always removed first.

use base64::Engine;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use rustls::pki_types::CertificateDer;

use crate::config::IdentityFormat;
use crate::trust::CertSummary;

/// `Client-Cert` (RFC 9440).
pub static CLIENT_CERT: HeaderName = HeaderName::from_static("client-cert");
/// `Client-Cert-Chain` (RFC 9440).
pub static CLIENT_CERT_CHAIN: HeaderName = HeaderName::from_static("client-cert-chain");
/// `X-Forwarded-Client-Cert` (Envoy).
pub static XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// Headers a client must never be able to set: identity and forwarding information.
pub static SPOOFABLE: [HeaderName; 8] = [
    HeaderName::from_static("client-cert"),
    HeaderName::from_static("client-cert-chain"),
    HeaderName::from_static("x-forwarded-client-cert"),
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-client-verify"),
];

/// Whether `name` is one of [`SPOOFABLE`].
pub fn is_spoofable(name: &HeaderName) -> bool {
    SPOOFABLE.contains(name)
}

/// Removes every header in [`SPOOFABLE`].
pub fn strip_spoofable(headers: &mut HeaderMap) {
    for name in &SPOOFABLE {
        headers.remove(name);
    }
}

/// Identity headers of one connection, ready to copy into each request.
#[derive(Debug, Clone, Default)]
pub struct IdentityHeaders(Vec<(HeaderName, HeaderValue)>);

impl IdentityHeaders {
    /// Builds the headers for a client chain (leaf first).
    pub fn new(
        format: IdentityFormat,
        chain: &[CertificateDer<'static>],
        summary: Option<&CertSummary>,
    ) -> IdentityHeaders {
        let Some(leaf) = chain.first().filter(|_| format != IdentityFormat::None) else {
            return IdentityHeaders::default();
        };
        let b64 = |der: &[u8]| base64::engine::general_purpose::STANDARD.encode(der);
        let mut headers = Vec::new();
        match format {
            IdentityFormat::Rfc9440 => {
                // sf-binary: ":base64:"; the chain is an sf-list of them, without the leaf.
                if let Ok(v) = HeaderValue::from_str(&format!(":{}:", b64(leaf))) {
                    headers.push((CLIENT_CERT.clone(), v));
                }
                if chain.len() > 1 {
                    let list: Vec<String> = chain[1..].iter().map(|c| format!(":{}:", b64(c))).collect();
                    if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
                        headers.push((CLIENT_CERT_CHAIN.clone(), v));
                    }
                }
            }
            IdentityFormat::None => {}
            IdentityFormat::Xfcc => {
                let hash = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf));
                let pem = pki::pem_cert(leaf);
                let mut parts = vec![format!("Hash={hash}"), format!("Cert=\"{}\"", url_encode(&pem))];
                if let Some(s) = summary {
                    parts.push(format!("Subject=\"{}\"", s.subject.replace('"', "\\\"")));
                    for san in &s.sans {
                        if let Some(uri) = san.strip_prefix("URI:") {
                            parts.push(format!("URI={uri}"));
                        } else if let Some(dns) = san.strip_prefix("DNS:") {
                            parts.push(format!("DNS={dns}"));
                        }
                    }
                }
                if let Ok(v) = HeaderValue::from_str(&parts.join(";")) {
                    headers.push((XFCC.clone(), v));
                }
            }
        }
        IdentityHeaders(headers)
    }

    /// Adds the headers to a request.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.0 {
            headers.insert(name.clone(), value.clone());
        }
    }
}

fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9440_headers_are_sf_binary() {
        let chain = vec![CertificateDer::from(vec![1u8, 2, 3]), CertificateDer::from(vec![4u8])];
        let h = IdentityHeaders::new(IdentityFormat::Rfc9440, &chain, None);
        let mut map = HeaderMap::new();
        h.apply(&mut map);
        assert_eq!(map["client-cert"], ":AQID:");
        assert_eq!(map["client-cert-chain"], ":BA==:");
    }

    #[test]
    fn format_none_sends_nothing() {
        let chain = vec![CertificateDer::from(vec![1u8, 2, 3])];
        let mut map = HeaderMap::new();
        IdentityHeaders::new(IdentityFormat::None, &chain, None).apply(&mut map);
        assert!(map.is_empty());
    }

    #[test]
    fn spoofed_headers_are_removed() {
        let mut map = HeaderMap::new();
        map.insert("client-cert", HeaderValue::from_static(":Zm9v:"));
        map.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        map.insert("accept", HeaderValue::from_static("*/*"));
        strip_spoofable(&mut map);
        assert_eq!(map.len(), 1);
        assert!(map.contains_key("accept"));
    }
}
