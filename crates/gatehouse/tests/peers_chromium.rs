//! A real browser in front of a gateway with `mtls = "require"`: Chromium
//! (headless) with an NSS database under $HOME/.pki/nssdb holding the gatehouse
//! root (trusted for TLS servers) and a client bundle made with
//! `gatehouse ca issue --p12 --p12-password-file`, imported with pk12util.
//! The managed policy AutoSelectCertificateForUrls lets headless Chromium pick
//! the certificate without a dialog. Without the bundle, the page does not load.
mod support;
use support::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const POLICY_DIR: &str = "/etc/chromium/policies/managed";
const MARKER: &str = "gatehouse-chromium-marker-7d41c2";

/// A managed Chromium policy file, removed on drop.
struct Policy(PathBuf);

impl Policy {
    fn auto_select(port: u16) -> Policy {
        fs::create_dir_all(POLICY_DIR).unwrap_or_else(|e| {
            panic!("cannot create {POLICY_DIR} (the test writes a managed policy; run as root): {e}")
        });
        let rule = serde_json::json!({ "pattern": format!("https://localhost:{port}"), "filter": {} }).to_string();
        let policy = serde_json::json!({ "AutoSelectCertificateForUrls": [rule] });
        let path = Path::new(POLICY_DIR).join(format!("gatehouse-test-{port}.json"));
        fs::write(&path, serde_json::to_string_pretty(&policy).unwrap()).unwrap();
        Policy(path)
    }
}

impl Drop for Policy {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[track_caller]
fn run_ok(program: &str, args: &[&str]) -> String {
    let mut c = Command::new(program);
    c.args(args);
    let o = run_limited(c, Duration::from_secs(30));
    assert_eq!(o.code, 0, "{program} {args:?} failed:\n{}", o.all());
    o.stdout
}

/// A fresh HOME with an NSS db at HOME/.pki/nssdb trusting `root` for TLS servers,
/// plus `p12` (with its password) when given.
fn nss_home(home: &Path, root: &Path, p12: Option<(&Path, &str)>) -> String {
    let db_dir = home.join(".pki/nssdb");
    fs::create_dir_all(&db_dir).unwrap();
    let db = format!("sql:{}", s(&db_dir));
    run_ok("certutil", &["-N", "-d", &db, "--empty-password"]);
    run_ok("certutil", &["-A", "-n", "gatehouse-root", "-t", "C,,", "-i", s(root), "-d", &db]);
    if let Some((p12, password)) = p12 {
        run_ok("pk12util", &["-i", s(p12), "-d", &db, "-W", password]);
    }
    run_ok("certutil", &["-L", "-d", &db])
}

/// `chromium --headless ... --dump-dom URL` with HOME set; killed (with its helpers) after 60 s.
fn dump_dom(home: &Path, profile: &Path, url: &str) -> Out {
    let mut c = Command::new("chromium");
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", s(profile)))
    .arg("--dump-dom")
    .arg(url)
    .env("HOME", home);
    run_limited(c, Duration::from_secs(60))
}

#[test]
fn chromium_with_the_p12_in_its_nss_db_gets_through_and_without_it_does_not() {
    require("chromium");
    require("certutil");
    require("pk12util");
    require(PYTHON);
    let env = Env::new();

    // The upstream: a page with a marker.
    let www = env.path().join("www");
    fs::create_dir_all(&www).unwrap();
    fs::write(www.join("index.html"), format!("<html><body><p id=\"m\">{MARKER}</p></body></html>\n")).unwrap();
    let files = FileServer::start(&env, &www);
    let port = files.port;

    // The gateway, quickstart-like: internal CA certificate, client certificates required.
    let https = free_port();
    let toml = format!(
        "[listen]\nhttps = \"127.0.0.1:{https}\"\n\n\
         [[site]]\nhosts = [\"localhost\", \"127.0.0.1\"]\ncertificate = {{ internal_ca = true }}\n\
         mtls = \"require\"\ntrust = {{ internal_ca = true }}\nupstream = \"app\"\n\n\
         [[upstream]]\nname = \"app\"\nservers = [\"http://127.0.0.1:{port}\"]\n"
    );
    let gw = Gateway::start(&env, "gw.toml", https, &toml);
    let url = format!("https://localhost:{https}/");

    // The browser bundle.
    let password = "peers-p12-Secret";
    let pwfile = env.write("p12-password.txt", &format!("{password}\n"));
    let bundle = env.issue_in(
        &env.path().join("browser"),
        "client",
        "browser-user",
        &[],
        &["--p12", "--p12-password-file", s(&pwfile)],
    );
    let p12 = bundle.p12.clone().expect("ca issue --p12 wrote no .p12");

    let _policy = Policy::auto_select(https);

    // 1. With the bundle imported in $HOME/.pki/nssdb.
    let home = env.path().join("home-with-cert");
    let listing = nss_home(&home, &env.root(), Some((&p12, password)));
    assert!(listing.contains("browser-user"), "pk12util did not import the bundle:\n{listing}");
    let out = dump_dom(&home, &env.path().join("profile-with-cert"), &url);
    assert!(
        out.stdout.contains(MARKER),
        "Chromium with the client certificate did not get the page (exit {}):\n{}\n{}",
        out.code,
        out.all(),
        gw.proc.dump()
    );
    // The gateway saw that very certificate: Chromium took it from the NSS db.
    let line = gw
        .proc
        .wait_json(Duration::from_secs(5), |v| v["event"] == "request" && v["path"] == "/")
        .unwrap_or_else(|| panic!("no access line\n{}", gw.proc.dump()));
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["client_verify"], "verified", "{line}");
    assert_eq!(line["client_subject"], "CN=browser-user", "{line}");

    // 2. A second HOME whose NSS db trusts the root but has no client certificate.
    let home2 = env.path().join("home-without-cert");
    let listing = nss_home(&home2, &env.root(), None);
    assert!(!listing.contains("browser-user"), "{listing}");
    let requests_before = gw.access_lines().len();
    let out = dump_dom(&home2, &env.path().join("profile-without-cert"), &url);
    assert!(
        !out.stdout.contains(MARKER),
        "Chromium without a client certificate got the page:\n{}\n{}",
        out.all(),
        gw.proc.dump()
    );
    // Refused at the handshake, as mtls = "require" says, and nothing was forwarded.
    let refusal = gw
        .proc
        .wait_json(Duration::from_secs(5), |v| v["event"] == "handshake_refused")
        .unwrap_or_else(|| panic!("no handshake_refused line for Chromium without a certificate\n{}", gw.proc.dump()));
    assert_eq!(refusal["reason"], "no_certificate", "{refusal}");
    assert_eq!(refusal["sni"], "localhost", "{refusal}");
    assert_eq!(
        gw.access_lines().len(),
        requests_before,
        "a request was served without a certificate\n{}",
        gw.proc.dump()
    );
}
