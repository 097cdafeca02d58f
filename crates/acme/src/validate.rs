//! Checking a challenge against the network, as the CA must before it
//! certifies a name: http-01 and dns-01 (RFC 8555 8.3, 8.4) and tls-alpn-01
//! (RFC 8737), for DNS names and IP addresses (RFC 8738).
//!
//! Names are resolved through the configured resolver (`dns_resolver`, else
//! the system's). Each check is bounded in time and in what it reads.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use http_body_util::{BodyExt, Empty, Limited};
use pki::SubjectAltName;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use store::AcmeIdentifier;
use tokio::net::TcpStream;

/// Time allowed for one attempt at a challenge (resolve, connect, read).
const ATTEMPT_TIME: Duration = Duration::from_secs(10);
/// The most of an http-01 response read.
const HTTP_BODY_LIMIT: usize = 8 * 1024;
/// The ALPN protocol of tls-alpn-01.
const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// id-pe-acmeIdentifier (RFC 8737 3).
const ACME_IDENTIFIER_OID: &str = "1.3.6.1.5.5.7.1.31";

/// Where challenges are looked for.
#[derive(Clone)]
pub struct Validator {
    resolver: TokioResolver,
    http_01_port: u16,
    tls_alpn_01_port: u16,
    tls: Arc<rustls::ClientConfig>,
}

impl Validator {
    /// A validator resolving through `dns_resolver` (the system's resolver when `None`).
    pub fn new(
        dns_resolver: Option<SocketAddr>,
        http_01_port: u16,
        tls_alpn_01_port: u16,
    ) -> Result<Validator, String> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match dns_resolver {
            Some(address) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = address.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = address.port();
                let server = NameServerConfig::new(address.ip(), true, vec![udp, tcp]);
                Resolver::builder_with_config(ResolverConfig::from_name_servers(vec![server]), provider)
            }
            None => {
                Resolver::builder(provider).map_err(|e| format!("cannot read the system's DNS configuration: {e}"))?
            }
        };
        // A record added for a challenge must be seen at once: nothing is cached.
        let options: &mut ResolverOpts = builder.options_mut();
        options.cache_size = 0;
        options.timeout = Duration::from_secs(3);
        options.attempts = 2;
        let resolver = builder.build().map_err(|e| format!("cannot set up the DNS resolver: {e}"))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            // TLS 1.3: its handshake signature is checked against the key alone (below), as the
            // challenge certificate's critical acmeIdentifier extension is one webpki refuses.
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("TLS client: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        tls.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
        Ok(Validator { resolver, http_01_port, tls_alpn_01_port, tls: Arc::new(tls) })
    }

    /// Checks one challenge once; `Err` says what was found instead, for the client.
    pub async fn check(&self, kind: &str, identifier: &AcmeIdentifier, key_authorization: &str) -> Result<(), String> {
        let attempt = async {
            match kind {
                "http-01" => self.http_01(identifier, key_authorization).await,
                "dns-01" => self.dns_01(identifier, key_authorization).await,
                "tls-alpn-01" => self.tls_alpn_01(identifier, key_authorization).await,
                other => Err(format!("unknown challenge type {other}")),
            }
        };
        tokio::time::timeout(ATTEMPT_TIME, attempt)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", ATTEMPT_TIME.as_secs())))
    }

    /// The addresses of an identifier: itself for an IP, else its A and AAAA records.
    async fn addresses(&self, identifier: &AcmeIdentifier) -> Result<Vec<IpAddr>, String> {
        if identifier.kind == "ip" {
            return identifier.value.parse().map(|ip| vec![ip]).map_err(|_| "not an IP address".to_owned());
        }
        let found = self
            .resolver
            .lookup_ip(format!("{}.", identifier.value))
            .await
            .map_err(|e| format!("DNS lookup of {} failed: {e}", identifier.value))?;
        let addresses: Vec<IpAddr> = found.iter().collect();
        if addresses.is_empty() {
            return Err(format!("{} has no A or AAAA record", identifier.value));
        }
        Ok(addresses)
    }

    async fn http_01(&self, identifier: &AcmeIdentifier, key_authorization: &str) -> Result<(), String> {
        let token = key_authorization.split('.').next().unwrap_or_default();
        let host = match identifier.value.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => identifier.value.clone(),
        };
        let mut last = String::new();
        for ip in self.addresses(identifier).await? {
            let address = SocketAddr::new(ip, self.http_01_port);
            match http_get(address, &host, &format!("/.well-known/acme-challenge/{token}")).await {
                Ok((200, body)) if body.trim_ascii() == key_authorization.as_bytes() => return Ok(()),
                Ok((200, body)) => {
                    let shown = String::from_utf8_lossy(&body[..body.len().min(64)]).escape_debug().to_string();
                    last = format!(
                        "http://{host}:{}/.well-known/acme-challenge/{token} answered \"{shown}\", not the key authorization",
                        self.http_01_port
                    );
                }
                Ok((status, _)) => {
                    last = format!(
                        "http://{host}:{}/.well-known/acme-challenge/{token} answered status {status}",
                        self.http_01_port
                    );
                }
                Err(e) => last = format!("cannot fetch the challenge from {address}: {e}"),
            }
        }
        Err(last)
    }

    async fn dns_01(&self, identifier: &AcmeIdentifier, key_authorization: &str) -> Result<(), String> {
        if identifier.kind != "dns" {
            return Err("dns-01 proves DNS names only".to_owned());
        }
        let name = format!("_acme-challenge.{}.", identifier.value);
        let expected = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, key_authorization.as_bytes()));
        let found =
            self.resolver.txt_lookup(name.as_str()).await.map_err(|e| format!("no TXT record at {name}: {e}"))?;
        let mut seen = Vec::new();
        for record in found.answers() {
            if let RData::TXT(txt) = &record.data {
                let value: Vec<u8> = txt.txt_data.iter().flat_map(|part| part.iter().copied()).collect();
                if value == expected.as_bytes() {
                    return Ok(());
                }
                seen.push(String::from_utf8_lossy(&value).chars().take(64).collect::<String>());
            }
        }
        Err(format!("the TXT records at {name} ({}) do not hold the expected digest", seen.join(", ")))
    }

    async fn tls_alpn_01(&self, identifier: &AcmeIdentifier, key_authorization: &str) -> Result<(), String> {
        // RFC 8738 6: an IP address is named in SNI by its reverse-mapping name.
        let sni = match identifier.value.parse::<IpAddr>() {
            Ok(ip) => pki::reverse_dns_name(ip),
            Err(_) => identifier.value.clone(),
        };
        let server_name = ServerName::try_from(sni.clone()).map_err(|_| format!("{sni} cannot be sent as SNI"))?;
        let expected = digest::digest(&digest::SHA256, key_authorization.as_bytes());
        let mut last = String::new();
        for ip in self.addresses(identifier).await? {
            let address = SocketAddr::new(ip, self.tls_alpn_01_port);
            let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
            let tcp = match TcpStream::connect(address).await {
                Ok(tcp) => tcp,
                Err(e) => {
                    last = format!("cannot connect to {address}: {e}");
                    continue;
                }
            };
            let tls = match connector.connect(server_name.clone(), tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    last = format!("TLS with {address} failed: {e}");
                    continue;
                }
            };
            let (_, session) = tls.get_ref();
            if session.alpn_protocol() != Some(ACME_TLS_ALPN) {
                last = format!("{address} did not negotiate the acme-tls/1 protocol");
                continue;
            }
            let Some(certificate) = session.peer_certificates().and_then(|c| c.first()) else {
                last = format!("{address} presented no certificate");
                continue;
            };
            match check_alpn_certificate(certificate, identifier, expected.as_ref()) {
                Ok(()) => return Ok(()),
                Err(e) => last = format!("the certificate from {address} {e}"),
            }
        }
        Err(last)
    }
}

/// RFC 8737 3: the certificate names exactly the identifier and carries the
/// critical acmeIdentifier extension holding SHA-256 of the key authorization.
fn check_alpn_certificate(
    der: &CertificateDer<'_>,
    identifier: &AcmeIdentifier,
    expected: &[u8],
) -> Result<(), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| "does not parse".to_owned())?;
    // The one place SANs are read (pki); a name of a type it leaves out still counts here.
    let names = pki::subject_alt_names(&cert);
    let all_names = cert.subject_alternative_name().ok().flatten().map_or(0, |san| san.value.general_names.len());
    let wanted = match identifier.value.parse::<IpAddr>() {
        Ok(ip) => SubjectAltName::Ip(ip),
        Err(_) => SubjectAltName::Dns(identifier.value.to_ascii_lowercase()),
    };
    if names != [wanted.clone()] || all_names != 1 {
        let shown: Vec<String> = names.iter().map(ToString::to_string).collect();
        return Err(format!("names {shown:?}, not exactly {wanted}"));
    }
    let extension = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == ACME_IDENTIFIER_OID)
        .ok_or("has no acmeIdentifier extension")?;
    if !extension.critical {
        return Err("has an acmeIdentifier extension that is not critical".to_owned());
    }
    // The extension's value is a DER OCTET STRING of 32 bytes.
    let value = extension.value;
    if value.len() != 34 || value[0] != 0x04 || value[1] != 32 || &value[2..] != expected {
        return Err("has an acmeIdentifier that is not the digest of the key authorization".to_owned());
    }
    Ok(())
}

/// A plain HTTP/1.1 GET: status and the start of the body.
async fn http_get(address: SocketAddr, host: &str, path: &str) -> Result<(u16, Bytes), String> {
    let tcp = TcpStream::connect(address).await.map_err(|e| e.to_string())?;
    let io = hyper_util::rt::TokioIo::new(tcp);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "gatehouse-acme-validator")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), HTTP_BODY_LIMIT)
        .collect()
        .await
        .map_err(|_| format!("the response is over {HTTP_BODY_LIMIT} bytes"))?
        .to_bytes();
    Ok((status, body))
}

/// tls-alpn-01 proves control through the certificate's contents, not its
/// chain: any certificate is taken, and its handshake signature still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("tls-alpn-01 is checked over TLS 1.3 only".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert)
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        let spki = rustls::pki_types::SubjectPublicKeyInfoDer::from(parsed.public_key().raw);
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &spki,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
