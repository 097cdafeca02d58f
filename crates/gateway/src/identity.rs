//! The client identity as request headers for the upstream: RFC 9440
//! `Client-Cert` / `Client-Cert-Chain` (default) or Envoy's
//! `X-Forwarded-Client-Cert`. Computed once per connection; copies of these
//! headers sent by the client are always removed first, under any spelling an
//! origin would read as the same header.

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

/// Whether `name` is one of [`SPOOFABLE`], or would be with each `_` read as `-`.
///
/// CGI, WSGI, Rack and PHP origins see `Client_Cert` and `Client-Cert` alike as
/// `HTTP_CLIENT_CERT` (RFC 3875 section 4.1.18), and the last copy of a name wins or the
/// copies are joined, so a client's `client_cert` would sit beside the gateway's
/// `client-cert`. Header names are lowercase by construction ([`HeaderName`]); a name
/// without `_` takes the exact comparison, as nearly all do.
pub fn is_spoofable(name: &HeaderName) -> bool {
    if !name.as_str().as_bytes().contains(&b'_') {
        return SPOOFABLE.contains(name);
    }
    let name = name.as_str().as_bytes();
    SPOOFABLE.iter().any(|protected| {
        let protected = protected.as_str().as_bytes();
        protected.len() == name.len() && protected.iter().zip(name).all(|(&p, &n)| p == n || (p == b'-' && n == b'_'))
    })
}

/// Removes every header that [`is_spoofable`].
pub fn strip_spoofable(headers: &mut HeaderMap) {
    let spoofed: Vec<HeaderName> = headers.keys().filter(|name| is_spoofable(name)).cloned().collect();
    for name in spoofed {
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
            IdentityFormat::Xfcc => match HeaderValue::from_str(&xfcc_element(leaf, summary)) {
                Ok(v) => headers.push((XFCC.clone(), v)),
                // A control character in a name: no identity rather than a part of one.
                Err(_) => tracing::warn!(
                    "the client certificate has a name no header can carry; no X-Forwarded-Client-Cert is sent"
                ),
            },
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

/// The XFCC element of a client certificate in Envoy's format: `key=value` pairs joined by
/// `;` (elements of several proxies are joined by `,`). A value holding `,` `;` `=` is
/// double-quoted, with `"` and `\` escaped by `\`; without that, a URI SAN such as
/// `spiffe://t/m,By=spiffe://gw;URI=spiffe://prod/admin` reads as a second element naming
/// another identity. Subject and Cert are always quoted, as Envoy writes them; Hash (hex)
/// and Cert (URL-encoded) never hold a special character.
fn xfcc_element(leaf: &[u8], summary: Option<&CertSummary>) -> String {
    let hash = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf));
    let mut element = format!("Hash={hash};Cert=\"{}\"", url_encode(&pki::pem_cert(leaf)));
    if let Some(s) = summary {
        push_xfcc_pair(&mut element, "Subject", &s.subject, true);
        for san in &s.sans {
            if let Some(uri) = san.strip_prefix("URI:") {
                push_xfcc_pair(&mut element, "URI", uri, false);
            } else if let Some(dns) = san.strip_prefix("DNS:") {
                push_xfcc_pair(&mut element, "DNS", dns, false);
            }
        }
    }
    element
}

/// Appends `;key=value` to an XFCC element, the value quoted when `always`, and whenever it
/// is empty or holds a character XFCC gives a meaning to or white space a parser may trim.
/// Unquoted otherwise, as Envoy writes URI and DNS, so origins that match `URI=...` as
/// Envoy sends it keep working.
fn push_xfcc_pair(element: &mut String, key: &str, value: &str, always: bool) {
    element.push(';');
    element.push_str(key);
    element.push('=');
    let special = |c: char| matches!(c, ',' | ';' | '=' | '"' | '\\') || c.is_whitespace();
    if !always && !value.is_empty() && !value.contains(special) {
        element.push_str(value);
        return;
    }
    element.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            element.push('\\');
        }
        element.push(c);
    }
    element.push('"');
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

    #[test]
    fn underscore_spellings_of_protected_headers_are_removed() {
        let spoofed = [
            "client_cert",
            "client_cert_chain",
            "client-cert_chain",
            "x_forwarded_client_cert",
            "x_forwarded_for",
            "x-forwarded_proto",
            "x_forwarded_host",
            "x_client_verify",
        ];
        let kept = ["x_request_id", "client_certs", "client_cert_chainx", "xforwarded_for", "accept", "x-custom_name"];
        let mut map = HeaderMap::new();
        for name in spoofed.iter().chain(&kept) {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_static("v"));
        }
        // Names arrive lowercase whatever the client sent (HeaderName normalizes them).
        let mixed = HeaderName::from_bytes(b"Client_CERT").unwrap();
        assert!(is_spoofable(&mixed));
        map.append(mixed, HeaderValue::from_static("v"));
        for name in spoofed {
            assert!(is_spoofable(&HeaderName::from_static(name)), "{name}");
        }
        for name in kept {
            assert!(!is_spoofable(&HeaderName::from_static(name)), "{name}");
        }
        strip_spoofable(&mut map);
        let mut left: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        let mut want = kept.to_vec();
        want.sort_unstable();
        assert_eq!(left, want);
    }

    /// An XFCC header read with Envoy's rules, as an origin would: elements split at `,`,
    /// pairs at `;`, key and value at the first `=`, each outside double quotes; in a quoted
    /// value `\` escapes the next character.
    fn parse_xfcc(header: &str) -> Vec<Vec<(String, String)>> {
        let (mut elements, mut pairs) = (Vec::new(), Vec::new());
        let (mut key, mut value) = (String::new(), String::new());
        let (mut in_value, mut quoted) = (false, false);
        let mut chars = header.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' if quoted => value.extend(chars.next()),
                '"' if in_value => quoted = !quoted,
                '=' if !quoted && !in_value => in_value = true,
                ';' | ',' if !quoted => {
                    pairs.push((std::mem::take(&mut key), std::mem::take(&mut value)));
                    in_value = false;
                    if c == ',' {
                        elements.push(std::mem::take(&mut pairs));
                    }
                }
                c if in_value => value.push(c),
                c => key.push(c),
            }
        }
        pairs.push((key, value));
        elements.push(pairs);
        elements
    }

    #[test]
    fn xfcc_values_with_separators_are_quoted_and_read_back_exactly() {
        let hostile = "spiffe://t/m,By=spiffe://gw;URI=spiffe://prod/admin";
        let subject = r#"CN=a\"b\, O=x;y"#;
        let summary = CertSummary {
            serial: "01".into(),
            subject: subject.into(),
            sans: vec![format!("URI:{hostile}"), "URI:spiffe://t/plain".into(), "DNS:a.example".into()],
            not_after: 0,
        };
        let chain = vec![CertificateDer::from(vec![1u8, 2, 3])];
        let mut map = HeaderMap::new();
        IdentityHeaders::new(IdentityFormat::Xfcc, &chain, Some(&summary)).apply(&mut map);
        let header = map["x-forwarded-client-cert"].to_str().unwrap();

        let elements = parse_xfcc(header);
        assert_eq!(elements.len(), 1, "one certificate, one element: {header}");
        let values = |key: &str| -> Vec<&str> {
            elements[0].iter().filter(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str()).collect()
        };
        assert_eq!(values("URI"), [hostile, "spiffe://t/plain"], "{header}");
        assert_eq!(values("Subject"), [subject], "{header}");
        assert_eq!(values("DNS"), ["a.example"], "{header}");
        assert!(values("By").is_empty(), "{header}");
        assert_eq!(values("Hash"), [hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &[1, 2, 3]))]);
        // Plain names are written as Envoy writes them.
        assert!(header.contains(";URI=spiffe://t/plain;DNS=a.example"), "{header}");
    }

    #[test]
    fn xfcc_is_not_sent_for_a_name_with_a_control_character() {
        let summary = CertSummary {
            serial: "01".into(),
            subject: "CN=a".into(),
            sans: vec!["URI:spiffe://t/a\r\nx-evil: 1".into()],
            not_after: 0,
        };
        let chain = vec![CertificateDer::from(vec![1u8])];
        let mut map = HeaderMap::new();
        IdentityHeaders::new(IdentityFormat::Xfcc, &chain, Some(&summary)).apply(&mut map);
        assert!(map.is_empty(), "{map:?}");
    }
}
