use std::path::Path;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

use super::*;
use crate::config::Config;

struct Ca {
    issuer: pki::Issuer,
    dir: tempfile::TempDir,
    provider: Arc<CryptoProvider>,
}

fn ca() -> Ca {
    let material = pki::create_ca(&pki::CaInit { name: "Seam".into(), key_type: pki::KeyType::EcdsaP256, days: 30 })
        .expect("a test CA");
    let issuer = pki::Issuer::new(
        material.intermediate.der,
        material.intermediate.key,
        material.root.der,
        pki::CaSettings::default(),
    )
    .expect("an issuer");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ca { issuer, dir: tempfile::tempdir().expect("a temp dir"), provider }
}

impl Ca {
    /// A server certificate for `names`: (chain PEM with the intermediate, key PEM).
    fn issue(&self, names: &[&str]) -> (String, String) {
        let request = pki::LeafRequest {
            profile: pki::Profile::Server,
            subject: pki::Subject::common_name(names[0]),
            sans: names.iter().map(|n| pki::SubjectAltName::parse(n).expect("a name")).collect(),
            days: Some(10),
        };
        let (issued, key) = self.issuer.issue_with_new_key(&request, pki::KeyType::EcdsaP256).expect("issued");
        let chain = format!("{}{}", pki::pem_cert(&issued.der), pki::pem_cert(self.issuer.intermediate()));
        (chain, pki::encode_private_key(&key, None).expect("key PEM").to_string())
    }

    /// Writes `site.pem` and `site.key` (write, then rename over, as deploy tools do),
    /// each with a modification time of its own: the clock may not tick between two installs.
    fn install(&self, chain: &str, key: &str) {
        static INSTALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        for (name, text) in [("site.key", key), ("site.pem", chain)] {
            let tmp = self.dir.path().join(format!("{name}.new"));
            std::fs::write(&tmp, text).expect("write");
            let n = INSTALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + n);
            std::fs::File::options().write(true).open(&tmp).and_then(|f| f.set_modified(mtime)).expect("mtime");
            std::fs::rename(&tmp, self.dir.path().join(name)).expect("rename");
        }
    }

    fn source(&self) -> CertificateSource {
        CertificateSource::Files { cert: "site.pem".into(), key: "site.key".into() }
    }

    async fn load(&self, hosts: &[&str]) -> Result<SiteCertificate, CertificateError> {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        SiteCertificate::load(&self.source(), &hosts, self.dir.path(), &self.provider, &Issuers::default()).await
    }

    fn server_config(&self, site: &Arc<SiteCertificate>) -> Arc<ServerConfig> {
        let config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_cert_resolver(site.clone());
        Arc::new(config)
    }

    fn client(&self, name: &str) -> ClientConnection {
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.root().clone()).expect("root");
        let config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(name.to_owned()).expect("a server name");
        ClientConnection::new(Arc::new(config), name).expect("a client")
    }
}

/// Refreshes after the files have stayed the same for one look.
async fn refresh_settled(site: &SiteCertificate) -> Refresh {
    assert_eq!(site.refresh(false).await, Refresh::Unchanged, "files just changed are not read yet");
    site.refresh(false).await
}

fn leaf_der(chain_pem: &str) -> CertificateDer<'static> {
    pki::read_first_pem(chain_pem.as_bytes()).expect("a PEM certificate")
}

fn to_server(client: &mut ClientConnection, server: &mut ServerConnection) {
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).expect("client writes");
    }
    let mut rd = wire.as_slice();
    while !rd.is_empty() {
        server.read_tls(&mut rd).expect("server reads");
        server.process_new_packets().expect("server accepts");
    }
}

fn to_client(server: &mut ServerConnection, client: &mut ClientConnection) {
    let mut wire = Vec::new();
    while server.wants_write() {
        server.write_tls(&mut wire).expect("server writes");
    }
    let mut rd = wire.as_slice();
    while !rd.is_empty() {
        client.read_tls(&mut rd).expect("client reads");
        client.process_new_packets().expect("client accepts the server");
    }
}

/// A handshake begun: the server has read the ClientHello, picked its certificate and answered.
fn begin(ca: &Ca, config: &Arc<ServerConfig>) -> (ClientConnection, ServerConnection) {
    let mut client = ca.client("a.test");
    let mut server = ServerConnection::new(config.clone()).expect("a server");
    to_server(&mut client, &mut server);
    (client, server)
}

/// Completes the handshake; the leaf the client verified.
fn finish(mut client: ClientConnection, mut server: ServerConnection) -> CertificateDer<'static> {
    to_client(&mut server, &mut client);
    to_server(&mut client, &mut server);
    assert!(!client.is_handshaking() && !server.is_handshaking(), "the handshake completes");
    client.peer_certificates().expect("a server certificate")[0].clone()
}

#[tokio::test]
async fn new_handshakes_get_a_replaced_certificate_and_one_begun_keeps_its_own() {
    let ca = ca();
    let (first, first_key) = ca.issue(&["a.test"]);
    ca.install(&first, &first_key);
    let site = Arc::new(ca.load(&["a.test"]).await.expect("loaded"));
    let config = ca.server_config(&site);
    assert_eq!(finish_new(&ca, &config), leaf_der(&first));

    let (client, server) = begin(&ca, &config);
    let (second, second_key) = ca.issue(&["a.test"]);
    ca.install(&second, &second_key);
    assert_eq!(refresh_settled(&site).await, Refresh::Replaced);
    assert_eq!(finish(client, server), leaf_der(&first), "a handshake begun before keeps the certificate it got");
    assert_eq!(finish_new(&ca, &config), leaf_der(&second), "the next handshake gets the new certificate");
    assert_eq!(site.refresh(false).await, Refresh::Unchanged, "files read once per change");
}

fn finish_new(ca: &Ca, config: &Arc<ServerConfig>) -> CertificateDer<'static> {
    let (client, server) = begin(ca, config);
    finish(client, server)
}

#[tokio::test]
async fn a_broken_replacement_is_refused_and_the_certificate_serving_stays() {
    let ca = ca();
    let (first, first_key) = ca.issue(&["a.test"]);
    ca.install(&first, &first_key);
    let site = Arc::new(ca.load(&["a.test"]).await.expect("loaded"));
    let config = ca.server_config(&site);

    let (_, other_key) = ca.issue(&["a.test"]);
    ca.install(&first, &other_key);
    assert_eq!(refresh_settled(&site).await, Refresh::Refused, "a key that is not the certificate's");
    assert_eq!(finish_new(&ca, &config), leaf_der(&first));
    assert_eq!(site.refresh(false).await, Refresh::Unchanged, "refused once, not every time it is looked at");

    ca.install("not a certificate\n", &first_key);
    assert_eq!(refresh_settled(&site).await, Refresh::Refused, "a chain file without a certificate");
    assert_eq!(finish_new(&ca, &config), leaf_der(&first));

    let (second, second_key) = ca.issue(&["a.test"]);
    ca.install(&second, &second_key);
    assert_eq!(refresh_settled(&site).await, Refresh::Replaced, "a good pair after a bad one");
    assert_eq!(finish_new(&ca, &config), leaf_der(&second));
}

#[tokio::test]
async fn a_pair_written_one_file_at_a_time_is_read_once_both_are_in_place() {
    let ca = ca();
    let (first, first_key) = ca.issue(&["a.test"]);
    ca.install(&first, &first_key);
    let site = ca.load(&["a.test"]).await.expect("loaded");
    let (second, second_key) = ca.issue(&["a.test"]);
    // The key first: with the old certificate, it does not fit.
    ca.install(&first, &second_key);
    assert_eq!(site.refresh(false).await, Refresh::Unchanged);
    ca.install(&second, &second_key);
    assert_eq!(site.refresh(false).await, Refresh::Unchanged, "the certificate changed since the last look");
    assert_eq!(site.refresh(false).await, Refresh::Replaced, "no refusal of the half-written pair");
    assert_eq!(site.current().cert[0], leaf_der(&second));
}

#[tokio::test]
async fn a_replacement_that_drops_one_of_the_site_names_is_refused() {
    let ca = ca();
    let (both, both_key) = ca.issue(&["a.test", "b.test"]);
    ca.install(&both, &both_key);
    let site = ca.load(&["a.test", "b.test"]).await.expect("loaded");
    let (narrow, narrow_key) = ca.issue(&["a.test"]);
    let key = pki::read_first_pem(narrow_key.as_bytes()).expect("key");
    let narrow_chain = pki::read_pem(narrow.as_bytes()).unwrap();
    let refused = site.replace(certified_key(narrow_chain, key, &ca.provider).expect("a pair"));
    assert!(matches!(&refused, Err(CertificateError::NamesLost(lost)) if lost == &["b.test"]), "{refused:?}");
    assert_eq!(site.current().cert[0], leaf_der(&both));
}

#[tokio::test]
async fn a_certificate_that_cannot_be_loaded_names_what_is_wrong() {
    let ca = ca();
    let refused = ca.load(&["a.test"]).await.expect_err("no files yet");
    assert!(refused.to_string().contains("site.pem"), "{refused}");
    let (chain, _) = ca.issue(&["a.test"]);
    let (_, other_key) = ca.issue(&["a.test"]);
    ca.install(&chain, &other_key);
    assert!(matches!(ca.load(&["a.test"]).await, Err(CertificateError::KeyMismatch)));
    let none = Issuers::default();
    let internal = SiteCertificate::load(&CertificateSource::InternalCa, &[], ca.dir.path(), &ca.provider, &none);
    assert!(matches!(internal.await, Err(CertificateError::NoInternalCa)));
}

#[test]
fn subject_alt_names_cover_a_site_host_as_clients_match_them() {
    let leaf = Leaf {
        names: vec!["*.example.com".into(), "app.test".into(), "127.0.0.1".into(), "::1".into()],
        serial: String::new(),
        not_before: 0,
        not_after: 0,
    };
    for host in ["x.example.com", "*.example.com", "app.test", "127.0.0.1", "0:0:0:0:0:0:0:1"] {
        assert!(leaf.covers(host), "{host}");
    }
    for host in ["example.com", "a.b.example.com", "other.test", "127.0.0.2"] {
        assert!(!leaf.covers(host), "{host}");
    }
}

#[test]
fn a_certificate_table_becomes_a_source_or_says_what_is_wrong() {
    let config = |certificate: &str| {
        let text = format!(
            "[listen]\nhttps = \"127.0.0.1:8443\"\n[[site]]\nhosts = [\"a.test\"]\n{certificate}upstream = \"app\"\n\
             [[upstream]]\nname = \"app\"\nservers = [\"http://127.0.0.1:3000\"]\n"
        );
        Config::parse(Path::new("t.toml"), &text)
    };
    let files = config("certificate = { cert = \"c.pem\", key = \"k.pem\" }\n").expect("valid");
    assert_eq!(
        files.sites[0].certificate.source(),
        Ok(&CertificateSource::Files { cert: "c.pem".into(), key: "k.pem".into() })
    );
    let internal = config("certificate = { internal_ca = true }\n").expect("valid");
    assert_eq!(internal.sites[0].certificate.source(), Ok(&CertificateSource::InternalCa));
    for (certificate, message) in [
        ("", "site[0].certificate is missing; give cert and key files, internal_ca = true or acme = \"NAME\""),
        ("certificate = { cert = \"c.pem\" }\n", "site[0].certificate needs both cert and key"),
        ("certificate = { key = \"k.pem\", internal_ca = true }\n", "site[0].certificate needs both cert and key"),
        (
            "certificate = { cert = \"c.pem\", key = \"k.pem\", internal_ca = true }\n",
            "site[0].certificate has more than one of files, internal_ca = true and acme; choose one",
        ),
    ] {
        let refused = config(certificate).expect_err("refused");
        assert_eq!(refused.messages, [message]);
    }
}
