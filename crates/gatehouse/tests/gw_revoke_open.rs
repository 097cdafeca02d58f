//! Revocation reaches connections that stay open: a client certificate revoked
//! (by `gatehouse ca revoke`, or in a CRL file) after its handshake gets 403
//! with reason `revoked` on the next request of its open connection, within
//! the same time as new handshakes are refused, and the HTTP/1.1 connection is
//! closed; a TLS session resumed after the revocation gets nothing.
mod support;
use support::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A keep-alive HTTP/1.1 connection to the gateway presenting `client`.
fn open_with_certificate(gw: &Gateway, client: &Cert) -> BufReader<Tls> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&gw.root).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(client.chain()).unwrap().map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_file(&client.key).unwrap();
    let mut config =
        rustls::ClientConfig::builder().with_root_certificates(roots).with_client_auth_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", gw.https)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    BufReader::new(rustls::StreamOwned::new(conn, tcp))
}

/// One request on the open connection: (status, body, the connection was closed after it).
fn get(conn: &mut BufReader<Tls>, path: &str) -> (u16, String, bool) {
    write!(conn.get_mut(), "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    conn.get_mut().flush().unwrap();
    let mut line = String::new();
    conn.read_line(&mut line).unwrap();
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (mut length, mut close) = (0usize, false);
    loop {
        line.clear();
        conn.read_line(&mut line).unwrap();
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap(),
            "connection" => close = value.trim().eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).unwrap();
    (status, String::from_utf8_lossy(&body).into_owned(), close)
}

/// Sends requests on `conn` until one is refused (at most `limit`); the refused one.
fn until_refused(conn: &mut BufReader<Tls>, limit: Duration) -> Option<(u16, String, bool)> {
    wait_for(limit, Duration::from_millis(100), || {
        let answer = get(conn, "/still-here");
        (answer.0 != 200).then_some(answer)
    })
}

#[test]
fn a_certificate_revoked_by_the_internal_ca_is_refused_on_its_open_connection() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "", "mtls = \"require\"\ntrust = { internal_ca = true }\n");
    let alice = env.client("alice");
    let bob = env.client("bob");
    let mut open = open_with_certificate(&gw, &alice);
    let mut other = open_with_certificate(&gw, &bob);
    assert_eq!(get(&mut open, "/before").0, 200);
    assert_eq!(get(&mut other, "/before").0, 200);

    env.gh_ok(&["ca", "revoke", &alice.serial]);
    let refused = until_refused(&mut open, Duration::from_secs(10));
    let (status, body, close) = refused.unwrap_or_else(|| panic!("still served after 10 s\n{}", gw.proc.dump()));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("revoked"), "{body}");
    assert!(close, "the connection of a revoked certificate is closed");
    let line = gw.proc.wait_json(Duration::from_secs(5), |v| v["path"] == "/still-here" && v["refused"] == "revoked");
    assert!(line.is_some(), "{}", gw.proc.dump());
    // Bob's open connection is not affected.
    assert_eq!(get(&mut other, "/after").0, 200);
}

#[test]
fn a_certificate_revoked_in_a_crl_file_is_refused_on_its_open_connection() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let (partner, carol) = env.partner_ca("carol");
    let gw = Gateway::localhost(
        &env,
        &up,
        "",
        "mtls = \"optional\"\ntrust = { ca_files = [\"partner/ca/root.crt\"], crl_files = [\"partner.crl\"] }\n\
         [[site.route]]\npath_prefix = \"/\"\nmtls = \"require\"\n",
    );
    let mut open = open_with_certificate(&gw, &carol);
    assert_eq!(get(&mut open, "/before").0, 200);

    partner.revoke(&carol);
    let refused = until_refused(&mut open, Duration::from_secs(10));
    let (status, body, _) = refused.unwrap_or_else(|| panic!("still served after 10 s\n{}", gw.proc.dump()));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("revoked"), "{body}");
}

/// A session resumed after its certificate was revoked: resumption skips the
/// certificate's verification in the handshake, so the check after the handshake is
/// what refuses it; for TLS 1.3 and 1.2 alike, on a `require` site the resumed
/// connection gets no answer and the refusal is logged.
#[test]
fn a_session_resumed_with_a_revoked_certificate_gets_no_request_through() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let gw = Gateway::localhost(&env, &up, "", "mtls = \"require\"\ntrust = { internal_ca = true }\n");
    let alice = env.client("alice");
    let request = "GET /resumed HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut sessions = Vec::new();
    for version in ["-tls1_3", "-tls1_2"] {
        let session = env.path().join(format!("session{version}.pem"));
        let first = gw.s_client(
            &[
                version,
                "-servername",
                "localhost",
                "-CAfile",
                s(&gw.root),
                "-cert",
                s(&alice.crt),
                "-key",
                s(&alice.key),
                "-sess_out",
                s(&session),
                "-ign_eof",
            ],
            request,
        );
        assert!(first.stdout.contains("HTTP/1.1 200"), "{version} before the revocation:\n{}", first.all());
        sessions.push((version, session));
    }

    env.gh_ok(&["ca", "revoke", &alice.serial]);
    // New handshakes with the certificate are refused once the gateway has the revocation.
    let refused = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        (gw.curl_cert("localhost", "/new", &alice, &[]).status != 200).then_some(())
    });
    assert!(refused.is_some(), "the revocation did not reach the gateway\n{}", gw.proc.dump());

    for (version, session) in &sessions {
        let before = gw.proc.stdout_lines().len();
        let resumed = gw.s_client(
            &[version, "-servername", "localhost", "-CAfile", s(&gw.root), "-sess_in", s(session), "-ign_eof"],
            request,
        );
        assert!(resumed.stdout.contains("Reused,"), "{version}: the session was not resumed:\n{}", resumed.all());
        assert!(
            !resumed.stdout.contains("HTTP/1.1 200"),
            "{version}: a resumed session was served:\n{}",
            resumed.all()
        );
        let line = gw.proc.wait_stdout_after(before, Duration::from_secs(5), |l| {
            l.contains("\"event\":\"client_cert_refused\"") && l.contains("\"reason\":\"revoked\"")
        });
        assert!(line.is_some(), "{version}: no client_cert_refused line\n{}", gw.proc.dump());
    }
}
